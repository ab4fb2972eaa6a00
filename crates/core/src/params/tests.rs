use std::collections::HashMap;

use proptest::prelude::*;

use super::headers::*;
use super::known::*;
use super::rewrites::*;
use super::*;
use crate::service::*;

fn parse(query: &str) -> Result<Service, ParamError> {
    parse_service(&params_from_query(query), &ParseContext::default())
}

fn ok(query: &str) -> Service {
    match parse(query) {
        Ok(service) => service,
        Err(e) => panic!("{query}: {e}"),
    }
}

fn err(query: &str) -> ParamError {
    match parse(query) {
        Ok(service) => panic!("{query} parsed: {service:?}"),
        Err(e) => e,
    }
}

/// (param, value, reason) of an `Invalid` error.
fn invalid(query: &str) -> (String, String, String) {
    match err(query) {
        ParamError::Invalid {
            param,
            value,
            reason,
        } => (param, value, reason),
        other => panic!("{query}: expected Invalid, got {other:?}"),
    }
}

fn path_texts(d: &Destination) -> Vec<&str> {
    d.paths.iter().map(PathPattern::text).collect()
}

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

const BASE: &str = "serviceName=go-demo&servicePath=/demo&port=8080";

// --- sources ---------------------------------------------------------------------------

#[test]
fn query_is_percent_decoded_with_plus_as_space() {
    let p = params_from_query(
        "?serviceName=go-demo&addReqHeader=X-A+hello%20there&servicePath=%2Fa%2Cb",
    );
    assert_eq!(p["serviceName"], "go-demo");
    assert_eq!(p["addReqHeader"], "X-A hello there");
    assert_eq!(p["servicePath"], "/a,b");
}

#[test]
fn query_first_value_wins_and_odd_pairs_are_tolerated() {
    let p = params_from_query("port=1&port=2&&flag&=x&bad=%zz&u=%C3%A9");
    assert_eq!(p["port"], "1");
    assert_eq!(p["flag"], "");
    assert!(!p.contains_key(""));
    assert_eq!(p["bad"], "%zz");
    assert_eq!(p["u"], "é");
    assert_eq!(p.len(), 4);
}

#[test]
fn query_decoded_key_with_index() {
    let p = params_from_query("servicePath%2E1=/x");
    assert_eq!(p["servicePath.1"], "/x");
}

#[test]
fn labels_keep_only_com_df_and_strip_the_prefix() {
    let labels = [
        ("com.df.servicePath.1", "/api"),
        ("com.df.notify", "true"),
        ("com.docker.stack.namespace", "demo"),
        ("com.df.", "ignored"),
        ("other", "x"),
    ];
    let p = params_from_labels(labels.iter().copied());
    assert_eq!(p.len(), 2);
    assert_eq!(p["servicePath.1"], "/api");
    assert_eq!(p["notify"], "true");
}

#[test]
fn labels_parse_like_queries() {
    let labels = [
        ("com.df.serviceName", "go-demo"),
        ("com.df.servicePath", "/demo"),
        ("com.df.port", "8080"),
        ("com.df.notify", "true"),
        ("com.df.distribute", "true"),
    ];
    let s = parse_service(&params_from_labels(labels), &ParseContext::default()).unwrap();
    assert_eq!(s.name, "go-demo");
    assert!(s.distribute);
    assert_eq!(s.destinations[0].port, Some(8080));
}

#[test]
fn env_services_are_read_in_order_and_stop_at_the_first_gap() {
    let vars = env(&[
        ("DFP_SERVICE_SERVICE_NAME", "zero"),
        ("DFP_SERVICE_PORT", "80"),
        ("DFP_SERVICE_1_SERVICE_NAME", "one"),
        ("DFP_SERVICE_1_SERVICE_PATH", "/one"),
        ("DFP_SERVICE_1_PORT", "8080"),
        ("DFP_SERVICE_2_SERVICE_NAME", "two"),
        ("DFP_SERVICE_4_SERVICE_NAME", "four"),
    ]);
    let services = services_from_env(&vars);
    let names: Vec<&str> = services.iter().map(|p| p["serviceName"].as_str()).collect();
    assert_eq!(names, ["zero", "one", "two"]);
    assert_eq!(services[0]["port"], "80");
    assert_eq!(services[1]["servicePath"], "/one");
    assert_eq!(services[1]["port"], "8080");
    assert_eq!(services[1].len(), 3);
}

#[test]
fn env_without_unindexed_service_still_reads_numbered_ones() {
    let vars = env(&[
        ("DFP_SERVICE_PORT", "80"),
        ("DFP_SERVICE_1_SERVICE_NAME", "one"),
    ]);
    let services = services_from_env(&vars);
    assert_eq!(services.len(), 1);
    assert_eq!(services[0]["serviceName"], "one");
    assert!(!services[0].contains_key("port"));
}

#[test]
fn env_translates_indexed_destinations_with_their_real_index() {
    let vars = env(&[
        ("DFP_SERVICE_1_SERVICE_NAME", "api"),
        ("DFP_SERVICE_1_SERVICE_PATH_1", "/a"),
        ("DFP_SERVICE_1_PORT_1", "81"),
        ("DFP_SERVICE_1_PORT_2", "82"),
        ("DFP_SERVICE_1_HTTPS_PORT_2", "443"),
        ("DFP_SERVICE_1_USER_AGENT_2", "Mobile"),
        ("DFP_SERVICE_1_SERVICE_PATH", "/fallback"),
        ("DFP_SERVICE_1_PORT_4", "84"),
        ("DFP_SERVICE_1_DISCOVERYTYPE", "DNS"),
        ("DFP_SERVICE_1_USERS", "a:b"),
        ("DFP_SERVICE_1_SERVICE_DOMAIN_MATCH_ALL", "true"),
        ("DFP_SERVICE_1_NODE_INFO", "internal"),
        ("DFP_SERVICE_1_NOTIFY", "true"),
    ]);
    let services = services_from_env(&vars);
    let p = &services[0];
    assert_eq!(p["servicePath.1"], "/a");
    assert_eq!(p["port.1"], "81");
    assert_eq!(p["port.2"], "82");
    assert_eq!(p["httpsPort.2"], "443");
    assert_eq!(p["userAgent.2"], "Mobile");
    assert_eq!(p["servicePath"], "/fallback");
    assert_eq!(p["discoveryType"], "DNS");
    assert_eq!(p["users"], "a:b");
    assert_eq!(p["serviceDomainMatchAll"], "true");
    assert!(
        !p.contains_key("port.4"),
        "index 3 is missing, so 4 is not read"
    );
    assert!(!p.contains_key("nodeInfo") && !p.contains_key("notify"));

    let s = parse_service(p, &ParseContext::default()).unwrap();
    let indexes: Vec<u8> = s.destinations.iter().map(|d| d.index).collect();
    assert_eq!(indexes, [1, 2]);
    assert_eq!(path_texts(&s.destinations[1]), ["/fallback"]);
    assert_eq!(s.destinations[1].user_agents, ["mobile"]);
}

#[test]
fn env_snake_name_wins_over_the_legacy_spelling() {
    let vars = env(&[
        ("DFP_SERVICE_SERVICE_NAME", "x"),
        ("DFP_SERVICE_SERVICE_DOMAIN_ALGO", "hdr_dom(host)"),
        ("DFP_SERVICE_SERVICEDOMAINALGO", "hdr(host)"),
    ]);
    assert_eq!(
        services_from_env(&vars)[0]["serviceDomainAlgo"],
        "hdr_dom(host)"
    );
    let vars = env(&[
        ("DFP_SERVICE_SERVICE_NAME", "x"),
        ("DFP_SERVICE_SERVICEDOMAINALGO", "hdr(host)"),
    ]);
    assert_eq!(
        services_from_env(&vars)[0]["serviceDomainAlgo"],
        "hdr(host)"
    );
}

#[test]
fn env_round_trip_of_every_known_parameter() {
    let mut params = Params::new();
    for (n, p) in KNOWN_PARAMS
        .iter()
        .filter(|p| p.handling != ParamHandling::Internal)
        .enumerate()
    {
        params.insert(p.name.to_string(), format!("v{n}"));
        if p.scope == ParamScope::Destination {
            for i in 1..=3 {
                params.insert(format!("{}.{i}", p.name), format!("v{n}.{i}"));
            }
        }
    }
    let mut vars = HashMap::new();
    for (key, value) in &params {
        let suffix = param_key_to_env(key).unwrap();
        assert_eq!(env_to_param_key(&suffix).as_deref(), Some(key.as_str()));
        vars.insert(format!("DFP_SERVICE_7_{suffix}"), value.clone());
    }
    for n in 1..7 {
        vars.insert(format!("DFP_SERVICE_{n}_SERVICE_NAME"), format!("s{n}"));
    }
    let services = services_from_env(&vars);
    assert_eq!(services.len(), 7);
    assert_eq!(services[6], params);
}

#[test]
fn env_name_translation_both_ways() {
    assert_eq!(
        param_key_to_env("servicePath.2").as_deref(),
        Some("SERVICE_PATH_2")
    );
    assert_eq!(
        param_key_to_env("sslVerifyNone").as_deref(),
        Some("SSL_VERIFY_NONE")
    );
    assert_eq!(param_key_to_env("clitcpka").as_deref(), Some("CLITCPKA"));
    assert_eq!(param_key_to_env("serviceName.1"), None, "service level");
    assert_eq!(param_key_to_env("nodeInfo"), None, "internal");
    assert_eq!(param_key_to_env("bogus"), None);
    assert_eq!(
        env_to_param_key("SERVICE_PATH_2").as_deref(),
        Some("servicePath.2")
    );
    assert_eq!(
        env_to_param_key("HTTPS_PORT_99").as_deref(),
        Some("httpsPort.99")
    );
    assert_eq!(env_to_param_key("HTTPS_PORT_100"), None);
    assert_eq!(env_to_param_key("HTTPS_PORT_0"), None);
    assert_eq!(
        env_to_param_key("DISCOVERYTYPE").as_deref(),
        Some("discoveryType")
    );
    assert_eq!(
        env_to_param_key("USERS_PASS_ENCRYPTED").as_deref(),
        Some("usersPassEncrypted")
    );
    assert_eq!(env_to_param_key("SERVICE_NAME_1"), None);
    assert_eq!(env_to_param_key("NOPE"), None);
}

#[test]
fn known_param_table_has_unique_names_and_env_names() {
    let mut names: Vec<&str> = KNOWN_PARAMS.iter().map(|p| p.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), KNOWN_PARAMS.len());
    let mut envs: Vec<String> = KNOWN_PARAMS.iter().map(KnownParam::env_name).collect();
    envs.sort_unstable();
    envs.dedup();
    assert_eq!(envs.len(), KNOWN_PARAMS.len());
    assert_eq!(
        known_param("reqPathSearchReplace").unwrap().env_name(),
        "REQ_PATH_SEARCH_REPLACE"
    );
}

// --- basics ----------------------------------------------------------------------------

#[test]
fn minimal_service_with_defaults() {
    let s = ok(BASE);
    assert_eq!(s.name, "go-demo");
    assert_eq!(s.acl_name, "go-demo");
    assert_eq!(s.replicas, None);
    assert!(!s.distribute && !s.sticky && !s.is_default_backend);
    assert!(s.warnings.is_empty());
    assert_eq!(s.destinations.len(), 1);
    let d = &s.destinations[0];
    assert_eq!(d.index, 0);
    assert_eq!(d.req_mode, ReqMode::Http);
    assert_eq!(d.path_type, PathType::Beg);
    assert!(matches!(&d.paths[..], [PathPattern::Prefix(p)] if p == "/demo"));
    assert_eq!(d.port, Some(8080));
    assert_eq!(d.src_port, None);
    assert_eq!(d.https_redirect_code.get(), 302);
    assert!(!d.https_only);
    assert!(d.rewrites.is_empty());
}

#[test]
fn params_are_kept_exactly() {
    let p = params_from_query(&format!(
        "{BASE}&nodeInfo=x&users=a:secret&unknown=1&empty="
    ));
    let s = parse_service(&p, &ParseContext::default()).unwrap();
    assert_eq!(s.params, p);
    let replay = parse_service(&s.params, &ParseContext::default()).unwrap();
    assert_eq!(replay.users, s.users);
}

#[test]
fn acl_name_and_replicas() {
    let s = ok(&format!("{BASE}&aclName=01-first&replicas=3"));
    assert_eq!(s.acl_name, "01-first");
    assert_eq!(s.replicas, Some(3));
    assert_eq!(ok(&format!("{BASE}&replicas=0")).replicas, Some(0));
    assert_eq!(ok(&format!("{BASE}&replicas=")).replicas, None);
    let (param, value, _) = invalid(&format!("{BASE}&replicas=-1"));
    assert_eq!((param.as_str(), value.as_str()), ("replicas", "-1"));
    assert_eq!(invalid(&format!("{BASE}&replicas=two")).0, "replicas");
}

#[test]
fn service_level_flags_and_texts() {
    let s = ok(&format!(
        "{BASE}&distribute=true&isDefaultBackend=1&redirectWhenHttpProto=T\
         &redirectUnlessHttpsProto=True&proxyInstanceName=+edge+&serviceCert=A\\nB"
    ));
    assert!(s.distribute && s.is_default_backend);
    assert!(s.redirect_when_http_proto && s.redirect_unless_https_proto);
    assert_eq!(s.proxy_instance_name.as_deref(), Some("edge"));
    assert_eq!(s.service_cert.as_deref(), Some("A\nB"));
}

#[test]
fn go_bool_set_is_accepted_and_nothing_else() {
    for t in ["1", "t", "T", "TRUE", "true", "True"] {
        assert_eq!(parse_go_bool(t), Some(true), "{t}");
        assert!(ok(&format!("{BASE}&sslVerifyNone={t}")).destinations[0].ssl_verify_none);
    }
    for f in ["0", "f", "F", "FALSE", "false", "False"] {
        assert_eq!(parse_go_bool(f), Some(false), "{f}");
        assert!(!ok(&format!("{BASE}&distribute={f}")).distribute);
    }
    for bad in ["yes", "tRUE", "2", "on"] {
        assert_eq!(parse_go_bool(bad), None, "{bad}");
    }
    let e = err(&format!("{BASE}&httpsOnly=yes"));
    assert_eq!(
        e.to_string(),
        "invalid value \"yes\" for parameter httpsOnly: not a boolean (use true/false, 1/0, t/f, TRUE/FALSE, True/False)"
    );
    assert_eq!(e.param(), Some("httpsOnly"));
    assert_eq!(invalid(&format!("{BASE}&distribute=on")).0, "distribute");
}

// --- mandatory parameters ----------------------------------------------------------------

#[test]
fn missing_service_name() {
    let e = err("servicePath=/demo&port=8080");
    assert_eq!(e, ParamError::MissingServiceName);
    assert_eq!(e.to_string(), "serviceName parameter is mandatory.");
    assert!(!e.is_conflict());
    assert_eq!(
        err("serviceName=&servicePath=/demo&port=8080"),
        ParamError::MissingServiceName
    );
}

#[test]
fn service_name_must_be_a_dns_friendly_name() {
    let (param, value, reason) = invalid("serviceName=go%20demo&servicePath=/&port=80");
    assert_eq!((param.as_str(), value.as_str()), ("serviceName", "go demo"));
    assert!(reason.contains("letters"));
    assert_eq!(
        invalid("serviceName=a/b&servicePath=/&port=80").0,
        "serviceName"
    );
    let long = "a".repeat(256);
    assert!(
        invalid(&format!("serviceName={long}&servicePath=/&port=80"))
            .2
            .contains("255")
    );
    let max = "a".repeat(255);
    assert_eq!(
        ok(&format!("serviceName={max}&servicePath=/&port=80")).name,
        max
    );
    assert_eq!(
        ok("serviceName=my_stack.web-1&servicePath=/&port=80").name,
        "my_stack.web-1"
    );
}

#[test]
fn http_without_path_or_domain_is_a_conflict() {
    let e = err("serviceName=go-demo&port=8080");
    assert_eq!(e, ParamError::HttpWithoutPathOrDomain);
    assert!(e.is_conflict());
    assert_eq!(
        e.to_string(),
        "When using reqMode http, servicePath or serviceDomain are mandatory"
    );
    assert_eq!(
        err("serviceName=go-demo"),
        ParamError::HttpWithoutPathOrDomain
    );
}

#[test]
fn non_http_needs_src_port_and_port() {
    let e = err("serviceName=db&reqMode=tcp&port=5432");
    assert_eq!(e, ParamError::NonHttpWithoutPorts);
    assert_eq!(
        e.to_string(),
        "When NOT using reqMode http (e.g. tcp), srcPort and port parameters are mandatory."
    );
    assert_eq!(
        err("serviceName=db&reqMode=sni&srcPort=443"),
        ParamError::NonHttpWithoutPorts
    );
    assert_eq!(
        err("serviceName=db&reqMode=tcp&srcPort=5432&httpsPort=1"),
        ParamError::NonHttpWithoutPorts,
        "the httpsPort default srcPort must not satisfy the check"
    );
    let s = ok("serviceName=db&reqMode=TCP&srcPort=5432&port=5432&clitcpka=true&checkTcp=1&timeoutClient=7");
    let d = &s.destinations[0];
    assert_eq!(d.req_mode, ReqMode::Tcp);
    assert_eq!((d.src_port, d.port), (Some(5432), Some(5432)));
    assert!(d.clitcpka && d.check_tcp);
    assert_eq!(d.timeout_client, Some(7));
    assert!(d.paths.is_empty(), "no default path outside http");
}

#[test]
fn missing_port() {
    let e = err("serviceName=go-demo&servicePath=/demo");
    assert_eq!(e, ParamError::MissingPort);
    assert_eq!(
        e.to_string(),
        "When MODE is set to \"service\" or \"swarm\", the port query is mandatory"
    );
    let s = ok("serviceName=go-demo&servicePath=/demo&httpsPort=8443");
    let d = &s.destinations[0];
    assert_eq!(d.port, None);
    assert_eq!(d.https_port, Some(8443));
}

#[test]
fn every_destination_is_validated() {
    assert_eq!(
        err("serviceName=x&servicePath.1=/a&port.1=1&servicePath.2=/b"),
        ParamError::MissingPort
    );
    assert_eq!(
        err("serviceName=x&servicePath.1=/a&port.1=1&port.2=2"),
        ParamError::HttpWithoutPathOrDomain
    );
    assert_eq!(
        err("serviceName=x&servicePath.1=/a&port.1=1&port.2=2&reqMode.2=tcp"),
        ParamError::NonHttpWithoutPorts
    );
}

// --- typed values --------------------------------------------------------------------------

#[test]
fn ports_are_checked_with_the_indexed_name() {
    let e = err("serviceName=x&servicePath.1=/a&port.1=abc");
    assert_eq!(
        e.to_string(),
        "invalid value \"abc\" for parameter port.1: not a port number (1-65535)"
    );
    assert_eq!(e.param(), Some("port.1"));
    assert_eq!(invalid(&format!("{BASE}&srcPort=0")).0, "srcPort");
    assert_eq!(invalid("serviceName=x&servicePath=/&port=65536").1, "65536");
    assert_eq!(invalid("serviceName=x&servicePath=/&port=%2B80").1, "+80");
    assert_eq!(invalid(&format!("{BASE}&httpsPort=-1")).0, "httpsPort");
    assert_eq!(
        invalid(&format!("{BASE}&httpsPort=1&srcHttpsPort=x")).0,
        "srcHttpsPort"
    );
    assert_eq!(
        ok("serviceName=x&servicePath=/&port=65535").destinations[0].port,
        Some(65535)
    );
}

#[test]
fn fallback_value_errors_name_the_unindexed_parameter() {
    let (param, value, _) = invalid("serviceName=x&servicePath.1=/a&port.1=1&timeoutServer=1s");
    assert_eq!((param.as_str(), value.as_str()), ("timeoutServer", "1s"));
}

#[test]
fn max_conn_is_a_positive_number() {
    let s = ok(&format!("{BASE}&maxConn=2"));
    assert_eq!(s.destinations[0].max_conn, Some(2));
    assert_eq!(ok(BASE).destinations[0].max_conn, None);
    for bad in ["0", "-1", "x"] {
        let (param, value, _) = invalid(&format!("{BASE}&maxConn={bad}"));
        assert_eq!((param.as_str(), value.as_str()), ("maxConn", bad));
    }
}

#[test]
fn timeouts_are_whole_seconds() {
    let s = ok(&format!("{BASE}&timeoutServer=60&timeoutTunnel=0"));
    assert_eq!(s.destinations[0].timeout_server, Some(60));
    assert_eq!(s.destinations[0].timeout_tunnel, Some(0));
    assert_eq!(s.destinations[0].timeout_client, None);
    for bad in ["10s", "-1", "1.5", "abc"] {
        let (param, value, reason) = invalid(&format!("{BASE}&timeoutTunnel={bad}"));
        assert_eq!((param.as_str(), value.as_str()), ("timeoutTunnel", bad));
        assert!(reason.contains("seconds"));
    }
}

#[test]
fn https_redirect_code() {
    assert_eq!(
        ok(&format!("{BASE}&httpsRedirectCode=301")).destinations[0]
            .https_redirect_code
            .get(),
        301
    );
    assert_eq!(
        ok(&format!("{BASE}&httpsRedirectCode=308")).destinations[0]
            .https_redirect_code
            .get(),
        308
    );
    for bad in ["200", "abc", "3011"] {
        let (param, _, reason) = invalid(&format!("{BASE}&httpsRedirectCode={bad}"));
        assert_eq!(param, "httpsRedirectCode");
        assert!(reason.contains("301, 302, 303, 307 or 308"));
    }
}

#[test]
fn destination_flags_methods_and_hosts() {
    let s = ok(&format!(
        "{BASE}&sslVerifyNone=true&denyHttp=true&verifyClientSsl=true&ignoreAuthorization=true\
         &allowedMethods=GET,+POST,&deniedMethods=DELETE&outboundHostname=backend.example.com\
         &serviceGroup=grp&balanceGroup=LeastConn"
    ));
    let d = &s.destinations[0];
    assert!(d.ssl_verify_none && d.deny_http && d.verify_client_ssl && d.ignore_authorization);
    assert_eq!(d.allowed_methods, ["GET", "POST"]);
    assert_eq!(d.denied_methods, ["DELETE"]);
    assert_eq!(d.outbound_hostname.as_deref(), Some("backend.example.com"));
    assert_eq!(d.service_group.as_deref(), Some("grp"));
    assert_eq!(d.balance_group, Some(Balance::LeastConn));
    assert_eq!(
        ok(&format!("{BASE}&balanceGroup=source")).destinations[0].balance_group,
        Some(Balance::Source)
    );
    assert_eq!(
        ok(&format!("{BASE}&balanceGroup=roundrobin")).destinations[0].balance_group,
        Some(Balance::RoundRobin)
    );
    assert_eq!(
        invalid(&format!("{BASE}&balanceGroup=uri")).0,
        "balanceGroup"
    );
    assert_eq!(
        invalid(&format!("{BASE}&allowedMethods=GET,BAD%20M")).1,
        "BAD M"
    );
    assert_eq!(
        invalid(&format!("{BASE}&outboundHostname=a/b")).0,
        "outboundHostname"
    );
    assert_eq!(
        ok(&format!("{BASE}&outboundHostname=10.0.0.1")).destinations[0]
            .outbound_hostname
            .as_deref(),
        Some("10.0.0.1")
    );
}

#[test]
fn req_mode_is_case_insensitive_and_closed() {
    assert_eq!(
        ok(&format!("{BASE}&reqMode=HTTP")).destinations[0].req_mode,
        ReqMode::Http
    );
    let (param, value, reason) = invalid(&format!("{BASE}&reqMode=udp"));
    assert_eq!((param.as_str(), value.as_str()), ("reqMode", "udp"));
    assert!(reason.contains("http, tcp or sni"));
}

// --- indexing ----------------------------------------------------------------------------

#[test]
fn indexed_destinations_fall_back_to_unindexed_values() {
    let s = ok(
        "serviceName=x&outboundHostname=h&httpsOnly=true&servicePath=/common\
                &port.1=81&servicePath.1=/one&port.2=82&outboundHostname.2=other&port=99",
    );
    assert_eq!(
        s.destinations.len(),
        2,
        "the un-indexed destination is not created"
    );
    let (d1, d2) = (&s.destinations[0], &s.destinations[1]);
    assert_eq!((d1.index, d2.index), (1, 2));
    assert_eq!(path_texts(d1), ["/one"]);
    assert_eq!(path_texts(d2), ["/common"]);
    assert_eq!((d1.port, d2.port), (Some(81), Some(82)));
    assert_eq!(d1.outbound_hostname.as_deref(), Some("h"));
    assert_eq!(d2.outbound_hostname.as_deref(), Some("other"));
    assert!(d1.https_only && d2.https_only);
}

#[test]
fn indexes_are_created_by_any_of_the_four_parameters() {
    let s = ok("serviceName=x&port=80&serviceDomain=d.com&servicePath.1=/a&serviceDomain.2=b.com&httpsPort.3=443&port.4=84");
    let idx: Vec<u8> = s.destinations.iter().map(|d| d.index).collect();
    assert_eq!(idx, [1, 2, 3, 4]);
    assert_eq!(s.destinations[1].port, Some(80));
    assert_eq!(path_texts(&s.destinations[1]), ["/"]);
    assert_eq!(s.destinations[2].src_port, Some(80));
    assert!(s.destinations[3].domains[0].matches("d.com"));
    assert!(
        s.destinations[0].domains[0].matches("d.com"),
        "the domain falls back too"
    );
}

#[test]
fn indexes_must_be_contiguous() {
    let s = ok("serviceName=x&servicePath.1=/a&port.1=1&servicePath.3=/c&port.3=3");
    assert_eq!(s.destinations.len(), 1);
    let s = ok("serviceName=x&servicePath=/u&port=9&servicePath.2=/b&port.2=2");
    assert_eq!(
        s.destinations.len(),
        1,
        "no index 1: the un-indexed destination is used"
    );
    assert_eq!(s.destinations[0].index, 0);
    let s = ok("serviceName=x&servicePath=/u&port=9&pathType.1=path");
    assert_eq!(
        s.destinations[0].index, 0,
        "pathType.1 alone does not create index 1"
    );
    let s = ok("serviceName=x&servicePath=/u&port=9&servicePath.01=/z&port.0=3");
    assert_eq!(s.destinations[0].index, 0);
}

#[test]
fn up_to_99_indexes() {
    let mut query = String::from("serviceName=x&servicePath=/p");
    for i in 1..=100 {
        query.push_str(&format!("&port.{i}={}", 1000 + i));
    }
    let s = ok(&query);
    assert_eq!(s.destinations.len(), 99);
    assert_eq!(s.destinations[98].index, 99);
    assert_eq!(s.destinations[98].port, Some(1099));
}

// --- paths -------------------------------------------------------------------------------

#[test]
fn path_types_compile_to_patterns() {
    let get = |pt: &str| {
        ok(&format!("{BASE}&pathType={pt}&servicePathExclude=/demo/x")).destinations[0].clone()
    };
    let d = get("path_beg");
    assert!(matches!(&d.paths[..], [PathPattern::Prefix(_)]));
    assert!(matches!(&d.path_excludes[..], [PathPattern::Prefix(p)] if p == "/demo/x"));
    assert_eq!(get("path").path_type, PathType::Exact);
    assert!(matches!(&get("path").paths[..], [PathPattern::Exact(_)]));
    assert!(matches!(
        &get("path_end").paths[..],
        [PathPattern::Suffix(_)]
    ));
    assert!(matches!(
        &get("path_sub").paths[..],
        [PathPattern::Substring(_)]
    ));
    assert!(matches!(&get("path_dir").paths[..], [PathPattern::Dir(_)]));
    assert!(matches!(
        &get("url_beg").paths[..],
        [PathPattern::UrlPrefix(_)]
    ));
    let reg = get("path_reg");
    assert!(matches!(&reg.paths[..], [PathPattern::Regex(_)]));
    assert!(reg.paths[0].matches("/x/demo", "/x/demo"));
    assert!(
        !reg.paths[0].matches("/DEMO", "/DEMO"),
        "path_reg is case-sensitive"
    );
    assert_eq!(get("PATH_BEG").path_type, PathType::Beg);
}

#[test]
fn path_lists_are_split_and_trimmed() {
    let s = ok("serviceName=x&port=1&servicePath=/a,+/b+,,/c");
    assert_eq!(path_texts(&s.destinations[0]), ["/a", "/b", "/c"]);
    let ctx = ParseContext {
        separator: ";".into(),
        ..ParseContext::default()
    };
    let s = parse_service(
        &params_from_query("serviceName=x&port=1&servicePath=/a,b;/c"),
        &ctx,
    )
    .unwrap();
    assert_eq!(path_texts(&s.destinations[0]), ["/a,b", "/c"]);
}

#[test]
fn unsupported_path_types_are_rejected() {
    for bad in [
        "hdr(host)",
        "path_beg%20-i",
        "path_reg%20-m%20beg",
        "req_ssl_sni",
    ] {
        let (param, _, reason) = invalid(&format!("{BASE}&pathType={bad}"));
        assert_eq!(param, "pathType");
        assert!(
            reason.contains("pathType") || reason.contains("reqMode=sni"),
            "{bad}: {reason}"
        );
    }
    assert!(invalid(&format!("{BASE}&pathType=foo"))
        .2
        .starts_with("unsupported pathType"));
    let (_, value, reason) =
        invalid("serviceName=x&port=1&pathType=path_reg&servicePath=/a(%3F=b)");
    assert_eq!(value, "/a(?=b)");
    assert!(reason.contains("look-around"), "{reason}");
}

#[test]
fn sni_destinations() {
    let base = "serviceName=tls&reqMode=sni&srcPort=443&port=8443";
    let d = ok(&format!("{base}&servicePath=Api.Example.COM")).destinations[0].clone();
    assert_eq!(d.path_type, PathType::Sni(SniMatch::Exact));
    assert!(
        matches!(&d.paths[..], [PathPattern::Sni(SniPattern::Exact(p))] if p == "api.example.com")
    );
    let methods = [
        ("str", SniMatch::Exact),
        ("beg", SniMatch::Prefix),
        ("end", SniMatch::Suffix),
        ("sub", SniMatch::Substring),
        ("reg", SniMatch::Regex),
        ("dom", SniMatch::Domain),
    ];
    for (m, want) in methods {
        let d = ok(&format!(
            "{base}&servicePath=Example&pathType=req_ssl_sni+-i+-m+{m}"
        ))
        .destinations[0]
            .clone();
        assert_eq!(d.path_type, PathType::Sni(want), "{m}");
        let PathPattern::Sni(p) = &d.paths[0] else {
            panic!("not sni")
        };
        assert!(p.matches("example"), "{m}");
    }
    let d = ok(&format!(
        "{base}&servicePath=%5Ea%5Cd&pathType=req_ssl_sni+-m+reg"
    ))
    .destinations[0]
        .clone();
    let PathPattern::Sni(p) = &d.paths[0] else {
        panic!("not sni")
    };
    assert!(
        p.matches("a1") && p.matches("A1") && !p.matches("ab"),
        "regex keeps \\d and is case-insensitive"
    );
    assert_eq!(
        ok(&format!("{base}&pathType=req.ssl_sni+-m+beg+-i")).destinations[0].path_type,
        PathType::Sni(SniMatch::Prefix)
    );
    for bad in [
        "path_beg",
        "req_ssl_sni+-m+foo",
        "req_ssl_sni+-m",
        "req_ssl_sni+-m+beg+-m+end",
        "req_ssl_sni+-x",
    ] {
        assert_eq!(
            invalid(&format!("{base}&pathType={bad}")).0,
            "pathType",
            "{bad}"
        );
    }
}

// --- domains -----------------------------------------------------------------------------

#[test]
fn default_domain_algo_matches_the_whole_host() {
    let s = ok("serviceName=x&port=80&serviceDomain=Example.com,+www.example.com");
    let d = &s.destinations[0];
    assert_eq!(d.domains.len(), 2);
    assert!(d.domains[0].matches("example.com"));
    assert!(!d.domains[0].matches("example.com.evil.net"));
    assert!(!d.domains[0].matches("example.community"));
    assert!(
        matches!(&d.paths[..], [PathPattern::Prefix(p)] if p == "/"),
        "domain only → path /"
    );
}

#[test]
fn wildcard_applies_to_its_own_pattern_only() {
    let s = ok("serviceName=x&port=80&serviceDomain=*domain.com,exact.org,*.Other.net");
    let d = &s.destinations[0];
    assert!(matches!(&d.domains[0], DomainPattern::Suffix(s) if s == "domain.com"));
    assert!(d.domains[0].matches("my-domain.com"));
    assert!(matches!(&d.domains[1], DomainPattern::Exact(s) if s == "exact.org"));
    assert!(!d.domains[1].matches("sub.exact.org"));
    assert!(matches!(&d.domains[2], DomainPattern::Suffix(s) if s == ".other.net"));
    assert_eq!(d.domains[2].text(), "*.other.net");
}

#[test]
fn domain_algorithms() {
    let dom = |algo: &str, domain: &str| {
        ok(&format!(
            "serviceName=x&port=80&serviceDomain={domain}&serviceDomainAlgo={algo}"
        ))
        .destinations[0]
            .domains[0]
            .clone()
    };
    assert!(matches!(dom("hdr(host)", "a.com"), DomainPattern::Exact(_)));
    assert!(matches!(
        dom("hdr_beg(host)", "a.com"),
        DomainPattern::Exact(_)
    ));
    assert!(matches!(
        dom("hdr_end(host)", "a.com"),
        DomainPattern::Suffix(_)
    ));
    assert!(matches!(
        dom("HDR_DOM(host)", "a.com"),
        DomainPattern::Domain(_)
    ));
    assert!(matches!(
        dom("req.ssl_sni", "a.com"),
        DomainPattern::Exact(_)
    ));
    assert!(matches!(
        dom("req_ssl_sni", "a.com"),
        DomainPattern::Exact(_)
    ));
    let reg = dom("hdr_reg(host)", "%5Eapi%5C.%5Cd%2B%5C.example%5C.com%24");
    assert!(matches!(reg, DomainPattern::Regex(_)));
    assert!(reg.matches("api.1.example.com") && reg.matches("API.2.EXAMPLE.COM"));
    assert!(
        !reg.matches("api.x.example.com"),
        "\\d is not lower-cased into \\D"
    );
    let (param, value, reason) =
        invalid("serviceName=x&port=80&serviceDomain=a.com&serviceDomainAlgo=hdr_sub(host)");
    assert_eq!(
        (param.as_str(), value.as_str()),
        ("serviceDomainAlgo", "hdr_sub(host)")
    );
    assert!(reason.contains("hdr_dom(host)"));
    assert_eq!(
        invalid("serviceName=x&port=80&serviceDomain=(&serviceDomainAlgo=hdr_reg(host)").0,
        "serviceDomain"
    );
}

#[test]
fn domain_match_all_and_context_default() {
    let s = ok("serviceName=x&port=80&serviceDomain=a.com&serviceDomainMatchAll=true&serviceDomainAlgo=hdr(host)");
    assert!(matches!(
        s.destinations[0].domains[0],
        DomainPattern::Domain(_)
    ));
    assert!(s.destinations[0].domains[0].matches("www.a.com"));
    let ctx = ParseContext {
        default_domain_algo: DomainAlgo::End,
        ..ParseContext::default()
    };
    let s = parse_service(
        &params_from_query("serviceName=x&port=80&serviceDomain=a.com"),
        &ctx,
    )
    .unwrap();
    assert!(matches!(
        s.destinations[0].domains[0],
        DomainPattern::Suffix(_)
    ));
    assert_eq!(
        invalid("serviceName=x&port=80&serviceDomain=a.com&serviceDomainMatchAll=maybe").0,
        "serviceDomainMatchAll"
    );
}

#[test]
fn domains_that_could_never_match_are_rejected() {
    let (param, value, reason) =
        invalid("serviceName=x&port=80&serviceDomain=ok.com,example.com:8080");
    assert_eq!(
        (param.as_str(), value.as_str()),
        ("serviceDomain", "example.com:8080")
    );
    assert!(reason.contains("port"));
    assert!(invalid("serviceName=x&port=80&serviceDomain=a.*.com")
        .2
        .contains("wildcard"));
    assert_eq!(
        invalid("serviceName=x&port=80&serviceDomain=a.com/x").1,
        "a.com/x"
    );
    let s = ok("serviceName=x&port=80&serviceDomain=Example.COM.");
    assert!(s.destinations[0].domains[0].matches("example.com"));
}

#[test]
fn redirect_from_domain_requires_service_domain() {
    let s = ok("serviceName=x&port=80&serviceDomain=new.com&redirectFromDomain=Old.com,*old.net");
    let d = &s.destinations[0];
    assert!(d.redirect_from_domains[0].matches("old.com"));
    assert!(d.redirect_from_domains[1].matches("x.old.net"));
    let (param, value, reason) = invalid(&format!("{BASE}&redirectFromDomain=old.com"));
    assert_eq!(
        (param.as_str(), value.as_str()),
        ("redirectFromDomain", "old.com")
    );
    assert!(reason.contains("serviceDomain"));
    assert_eq!(
        invalid("serviceName=x&servicePath.1=/a&port.1=1&redirectFromDomain.1=o.com").0,
        "redirectFromDomain.1"
    );
}

// --- https -------------------------------------------------------------------------------

#[test]
fn https_only_from_context_applies_to_every_destination() {
    let ctx = ParseContext {
        https_only: true,
        ..ParseContext::default()
    };
    let p = params_from_query(
        "serviceName=x&servicePath.1=/a&port.1=1&servicePath.2=/b&port.2=2&httpsOnly.2=false",
    );
    let s = parse_service(&p, &ctx).unwrap();
    assert!(s.destinations.iter().all(|d| d.https_only));
    let s =
        ok("serviceName=x&servicePath.1=/a&port.1=1&servicePath.2=/b&port.2=2&httpsOnly.2=true");
    assert!(!s.destinations[0].https_only && s.destinations[1].https_only);
}

#[test]
fn https_port_defaults_source_ports() {
    let d = ok(&format!("{BASE}&httpsPort=8443")).destinations[0].clone();
    assert_eq!(
        (d.src_port, d.src_https_port, d.https_port),
        (Some(80), Some(443), Some(8443))
    );
    let d = ok(&format!(
        "{BASE}&httpsPort=8443&srcPort=8080&srcHttpsPort=8443"
    ))
    .destinations[0]
        .clone();
    assert_eq!((d.src_port, d.src_https_port), (Some(8080), Some(8443)));
    let d = ok(BASE).destinations[0].clone();
    assert_eq!((d.src_port, d.src_https_port), (None, None));
}

// --- rewrites ----------------------------------------------------------------------------

#[test]
fn rewrite_pairs_translate_backreferences() {
    let s = ok(&format!(
        "{BASE}&reqPathSearchReplace=%5E/demo/(.*)$,/api/%5C1/x:/a/,/b/,gi"
    ));
    let r = &s.destinations[0].rewrites;
    assert_eq!(r.len(), 2);
    assert_eq!(r[0].replace, "/api/${1}/x");
    assert_eq!(r[0].source, "^/demo/(.*)$,/api/\\1/x");
    assert!(!r[0].global);
    assert_eq!(r[0].apply("/demo/hello"), "/api/hello/x");
    assert!(r[1].global);
    assert_eq!(r[1].apply("/A/x/a/"), "/b/x/b/");
}

#[test]
fn replacement_translation() {
    assert_eq!(translate_replacement(r"\1\9\0").unwrap(), "${1}${9}${0}");
    assert_eq!(translate_replacement(r"\1a").unwrap(), "${1}a");
    assert_eq!(translate_replacement("$1 cost $").unwrap(), "$$1 cost $$");
    assert_eq!(translate_replacement(r"a\\b\q").unwrap(), r"a\b\q");
    assert_eq!(translate_replacement(r"\x41\x24").unwrap(), "A$$");
    assert!(translate_replacement(r"\xZZ").is_err());
    assert!(translate_replacement(r"\x4").is_err());
    assert!(translate_replacement("end\\").is_err());
    let r = parse_rewrite_pair(r"(\w+)-(\w+),\2-\1").unwrap();
    assert_eq!(r.apply("/ab-cd"), "/cd-ab");
    let r = parse_rewrite_pair("/x,$").unwrap();
    assert_eq!(r.apply("/x/y"), "$/y", "a literal dollar");
}

#[test]
fn rewrite_errors() {
    let (param, value, reason) = invalid(&format!("{BASE}&reqPathSearchReplace=/a,/b,x"));
    assert_eq!(
        (param.as_str(), value.as_str()),
        ("reqPathSearchReplace", "/a,/b,x")
    );
    assert!(reason.contains("flag 'x'"));
    assert!(invalid(&format!("{BASE}&reqPathSearchReplace=/a"))
        .2
        .contains("search,replace"));
    assert!(invalid(&format!("{BASE}&reqPathSearchReplace=/a,/b,g,i"))
        .2
        .contains("search,replace"));
    assert!(invalid(&format!("{BASE}&reqPathSearchReplace=,/b"))
        .2
        .contains("empty"));
    let reason = invalid(&format!("{BASE}&reqPathSearchReplace=a(%3F!b),c")).2;
    assert!(reason.contains("look-around"), "{reason}");
    let reason = invalid(&format!("{BASE}&reqPathSearchReplace=(a)%5C1,c")).2;
    assert!(reason.contains("backreferences"), "{reason}");
    assert!(!reason.contains('\n'));
    assert_eq!(
        invalid("serviceName=x&servicePath.1=/a&port.1=1&reqPathSearchReplace.1=/a,/b,z").0,
        "reqPathSearchReplace.1"
    );
}

#[test]
fn deprecated_search_replace_comes_first_in_every_destination() {
    let s = ok("serviceName=x&servicePath.1=/something&port.1=1&servicePath.2=/b&port.2=2\
                &reqPathSearch=/something/&reqPathReplace=/demo/&reqPathSearchReplace.1=/demo/,/v2/");
    let d1 = &s.destinations[0];
    assert_eq!(d1.rewrites.len(), 2);
    assert_eq!(d1.rewrites[0].source, "/something/,/demo/");
    let path = d1
        .rewrites
        .iter()
        .fold("/something/x".to_string(), |p, r| r.apply(&p));
    assert_eq!(path, "/v2/x");
    assert_eq!(s.destinations[1].rewrites.len(), 1);
    let s = ok(&format!("{BASE}&reqPathSearch=/something"));
    assert_eq!(
        s.destinations[0].rewrites[0].apply("/something/else"),
        "/else"
    );
    assert!(ok(&format!("{BASE}&reqPathReplace=/x")).destinations[0]
        .rewrites
        .is_empty());
    assert_eq!(
        invalid(&format!("{BASE}&reqPathSearch=(")).0,
        "reqPathSearch"
    );
    assert_eq!(
        invalid(&format!("{BASE}&reqPathSearch=a&reqPathReplace=b%5C")).0,
        "reqPathReplace"
    );
}

// --- headers -----------------------------------------------------------------------------

#[test]
fn header_operations_in_order() {
    let s = ok(&format!(
        "{BASE}&delReqHeader=X-Drop&setReqHeader=X-Set+one&addReqHeader=X-Add+a,X-Add2+b\
         &addResHeader=X-R+1&setResHeader=Strict-Transport-Security+%22max-age=31536000;+includeSubDomains%22\
         &delResHeader=Server"
    ));
    let text = |t: &str| HeaderValue(vec![ValuePart::Text(t.into())]);
    assert_eq!(
        s.request_headers,
        [
            HeaderOp::Add {
                name: "x-add".into(),
                value: text("a"),
                when: HeaderCondition::Always
            },
            HeaderOp::Add {
                name: "x-add2".into(),
                value: text("b"),
                when: HeaderCondition::Always
            },
            HeaderOp::Set {
                name: "x-set".into(),
                value: text("one"),
                when: HeaderCondition::Always
            },
            HeaderOp::Del {
                name: "x-drop".into()
            },
        ]
    );
    assert_eq!(
        s.response_headers,
        [
            HeaderOp::Add {
                name: "x-r".into(),
                value: text("1"),
                when: HeaderCondition::Always
            },
            HeaderOp::Set {
                name: "strict-transport-security".into(),
                value: text("max-age=31536000; includeSubDomains"),
                when: HeaderCondition::Always
            },
            HeaderOp::Del {
                name: "server".into()
            },
        ]
    );
}

#[test]
fn deprecated_header_aliases() {
    let s = ok(&format!("{BASE}&addHeader=X-Old+1&setHeader=X-OldSet+2"));
    assert_eq!(s.request_headers.len(), 2);
    let s = ok(&format!("{BASE}&addHeader=X-Old+1&addReqHeader=X-New+2"));
    assert!(matches!(&s.request_headers[..], [HeaderOp::Add { name, .. }] if name == "x-new"));
}

#[test]
fn header_items_quoting_and_separators() {
    let (name, value, when) = parse_header_item(r#"X-A "a \"quoted\" \\ value""#).unwrap();
    assert_eq!(name, "x-a");
    assert_eq!(value.as_literal(), Some(r#"a "quoted" \ value"#));
    assert_eq!(when, HeaderCondition::Always);
    assert_eq!(
        parse_header_item("X-A 'single \" q'")
            .unwrap()
            .1
            .as_literal(),
        Some("single \" q")
    );
    assert_eq!(
        parse_header_item("X-A \"\"").unwrap().1.as_literal(),
        Some("")
    );
    assert_eq!(
        parse_header_item("X-A  two words ").unwrap().1.as_literal(),
        Some("two words")
    );
    assert!(parse_header_item("X-A \"open")
        .unwrap_err()
        .contains("unterminated"));
    assert!(parse_header_item("X-A \"a\"b")
        .unwrap_err()
        .contains("closing quote"));
    assert!(parse_header_item("X-A").unwrap_err().contains("missing"));
    assert!(parse_header_item("X-A if { ssl_fc }")
        .unwrap_err()
        .contains("missing"));
    assert!(parse_header_item("X-A: v")
        .unwrap_err()
        .contains("header name"));

    let items = split_outside_quotes(r#"Cache-Control "no-cache, no-store",X-B it's,X-C c"#, ",");
    assert_eq!(
        items,
        [r#"Cache-Control "no-cache, no-store""#, "X-B it's", "X-C c"]
    );
    let s = ok(&format!(
        "{BASE}&addResHeader=Cache-Control+%22no-cache,+no-store%22,X-B+b"
    ));
    assert_eq!(s.response_headers.len(), 2);
    let ctx = ParseContext {
        separator: "|".into(),
        ..ParseContext::default()
    };
    let p = params_from_query(&format!("{BASE}&addReqHeader=X-A+a,b|X-B+c"));
    let s = parse_service(&p, &ctx).unwrap();
    assert_eq!(s.request_headers.len(), 2);
}

#[test]
fn header_placeholders() {
    let (_, value, _) = parse_header_item("X-Forwarded-Port %[dst_port]").unwrap();
    assert_eq!(value.0, [ValuePart::LocalPort]);
    let (_, value, _) = parse_header_item("X-Client ip=%[src];tls=%[ssl_fc];100%%").unwrap();
    assert_eq!(
        value.0,
        [
            ValuePart::Text("ip=".into()),
            ValuePart::ClientIp,
            ValuePart::Text(";tls=".into()),
            ValuePart::Tls,
            ValuePart::Text(";100%".into()),
        ]
    );
    assert_eq!(value.render("10.0.0.1", 80, true), "ip=10.0.0.1;tls=1;100%");
    assert_eq!(
        parse_header_item("X-P 5%").unwrap().1.as_literal(),
        Some("5%")
    );
    let quoted = parse_header_item("X-Q \"port %[dst_port]\"").unwrap().1;
    assert_eq!(quoted.render("", 443, false), "port 443");

    let (param, value, reason) = invalid(&format!(
        "{BASE}&addReqHeader=X-Host+%25%5Benv(HOSTNAME)%5D"
    ));
    assert_eq!(
        (param.as_str(), value.as_str()),
        ("addReqHeader", "X-Host %[env(HOSTNAME)]")
    );
    assert!(
        reason.contains("%[src], %[dst_port] and %[ssl_fc]"),
        "{reason}"
    );
    assert!(parse_header_item("X-A %[req.hdr(host)]")
        .unwrap_err()
        .contains("unsupported placeholder"));
    assert!(parse_header_item("X-A %[src")
        .unwrap_err()
        .contains("unterminated"));
}

#[test]
fn header_conditions() {
    let cond = |item: &str| parse_header_item(item).map(|(_, _, c)| c);
    assert_eq!(cond("X-A 1 if { ssl_fc }"), Ok(HeaderCondition::IfTls));
    assert_eq!(
        cond("X-A 1 unless { ssl_fc }"),
        Ok(HeaderCondition::UnlessTls)
    );
    assert_eq!(cond("X-A 1 if !{ ssl_fc }"), Ok(HeaderCondition::UnlessTls));
    assert_eq!(cond("X-A 1 unless !{ ssl_fc }"), Ok(HeaderCondition::IfTls));
    assert_eq!(
        cond("X-A \"a b\" if { ssl_fc }"),
        Ok(HeaderCondition::IfTls)
    );
    assert_eq!(
        parse_header_item("X-A gift if { ssl_fc }")
            .unwrap()
            .1
            .as_literal(),
        Some("gift")
    );
    assert!(cond("X-A 1 if { src 10.0.0.1 }")
        .unwrap_err()
        .contains("unsupported condition"));
    assert!(cond("X-A \"1\" when { ssl_fc }")
        .unwrap_err()
        .contains("unsupported condition"));
    let (param, _, _) = invalid(&format!("{BASE}&setResHeader=X-A+1+if+%7B+path_beg+/a+%7D"));
    assert_eq!(param, "setResHeader");
}

#[test]
fn header_values_and_names_are_validated() {
    assert_eq!(
        invalid(&format!("{BASE}&delReqHeader=Bad%20Name")).0,
        "delReqHeader"
    );
    assert!(parse_header_item("X-A a\u{1}b")
        .unwrap_err()
        .contains("header value"));
    assert_eq!(
        invalid(&format!("{BASE}&addResHeader=X%28%29+v")).1,
        "X() v"
    );
}

#[test]
fn service_headers_and_user_agents() {
    let s = ok(&format!(
        "{BASE}&serviceHeader=X-Version:+2,X-Url:http://a:1&userAgent=Mobile,+Android"
    ));
    let d = &s.destinations[0];
    assert_eq!(
        d.service_headers,
        [
            ("x-version".to_string(), "2".to_string()),
            ("x-url".to_string(), "http://a:1".to_string())
        ]
    );
    assert_eq!(d.user_agents, ["mobile", "android"]);
    let (param, value, reason) = invalid(&format!("{BASE}&serviceHeader=X-Version"));
    assert_eq!(
        (param.as_str(), value.as_str()),
        ("serviceHeader", "X-Version")
    );
    assert!(reason.contains("Name:value"));
    assert_eq!(
        invalid(&format!("{BASE}&serviceHeader=Bad%20Name:1")).0,
        "serviceHeader"
    );
}

// --- users -------------------------------------------------------------------------------

#[test]
fn users_split_on_the_first_colon() {
    let s = ok(&format!(
        "{BASE}&users=+admin+:+p%3Aa:ss+,bob,carol:,%0Adave:x&usersPassEncrypted=true"
    ));
    assert_eq!(
        s.users,
        [
            User {
                name: "admin".into(),
                password: Some("p:a:ss".into())
            },
            User {
                name: "bob".into(),
                password: None
            },
            User {
                name: "carol".into(),
                password: None
            },
            User {
                name: "dave".into(),
                password: Some("x".into())
            },
        ]
    );
    assert!(s.users_pass_encrypted);
    assert!(
        !format!("{:?}", s.users).contains("p:a:ss"),
        "passwords are redacted in Debug"
    );
}

#[test]
fn user_errors_redact_the_value() {
    let (param, value, reason) = invalid(&format!("{BASE}&users=:secret"));
    assert_eq!((param.as_str(), value.as_str()), ("users", "<redacted>"));
    assert!(reason.contains("no name"));
    assert!(invalid(&format!("{BASE}&users=,+,")).2.contains("no user"));
    assert!(!err(&format!("{BASE}&users=:topsecret"))
        .to_string()
        .contains("topsecret"));
}

#[test]
fn users_secret_is_a_plain_name() {
    assert_eq!(
        ok(&format!("{BASE}&usersSecret=monitoring"))
            .users_secret
            .as_deref(),
        Some("monitoring")
    );
    assert_eq!(
        ok(&format!("{BASE}&usersSecret=a.b_c-1"))
            .users_secret
            .as_deref(),
        Some("a.b_c-1")
    );
    for bad in ["../etc/passwd", "a/b", "a%5Cb", "a+b"] {
        assert_eq!(
            invalid(&format!("{BASE}&usersSecret={bad}")).0,
            "usersSecret",
            "{bad}"
        );
    }
    assert_eq!(
        invalid(&format!("{BASE}&usersPassEncrypted=encrypted")).0,
        "usersPassEncrypted"
    );
}

// --- modes and options -------------------------------------------------------------------

#[test]
fn connection_modes() {
    let mode = |m: &str| ok(&format!("{BASE}&connectionMode={m}")).connection_mode;
    assert_eq!(mode("http-keep-alive"), Some(ConnectionMode::KeepAlive));
    assert_eq!(mode("http-server-close"), Some(ConnectionMode::ServerClose));
    assert_eq!(mode("httpclose"), Some(ConnectionMode::Close));
    assert_eq!(mode("forceclose"), Some(ConnectionMode::Close));
    assert_eq!(ok(BASE).connection_mode, None);
    let (param, value, reason) = invalid(&format!("{BASE}&connectionMode=http-tunnel"));
    assert_eq!(
        (param.as_str(), value.as_str()),
        ("connectionMode", "http-tunnel")
    );
    assert!(reason.contains("http-tunnel is not supported"));
    assert!(invalid(&format!("{BASE}&connectionMode=close"))
        .2
        .contains("unsupported connectionMode"));
}

#[test]
fn compression() {
    let c = ok(&format!("{BASE}&compressionAlgo=gzip+raw-deflate,identity+gzip&compressionType=text/html+Text/CSS,application/json")).compression.unwrap();
    assert_eq!(
        c.algos,
        [
            CompressionAlgo::Gzip,
            CompressionAlgo::Deflate,
            CompressionAlgo::Identity
        ]
    );
    assert_eq!(c.types, ["text/html", "text/css", "application/json"]);
    assert_eq!(
        ok(&format!("{BASE}&compressionType=text/html")).compression,
        None
    );
    let c = ok(&format!("{BASE}&compressionAlgo=deflate"))
        .compression
        .unwrap();
    assert!(c.types.is_empty());
    let (param, value, _) = invalid(&format!("{BASE}&compressionAlgo=gzip+br"));
    assert_eq!((param.as_str(), value.as_str()), ("compressionAlgo", "br"));
}

#[test]
fn session_and_discovery_types() {
    assert!(ok(&format!("{BASE}&sessionType=sticky-server")).sticky);
    assert_eq!(
        invalid(&format!("{BASE}&sessionType=cookie")).0,
        "sessionType"
    );
    for ok_type in ["DNS", "dns", "Overlay"] {
        assert!(ok(&format!("{BASE}&discoveryType={ok_type}"))
            .warnings
            .is_empty());
    }
    assert_eq!(
        invalid(&format!("{BASE}&discoveryType=consul")).0,
        "discoveryType"
    );
}

#[test]
fn unsupported_parameters() {
    for p in ["backendExtra", "templateFePath", "templateBePath"] {
        let e = err(&format!("{BASE}&{p}=x"));
        assert!(
            matches!(&e, ParamError::Unsupported { param, .. } if param == p),
            "{e:?}"
        );
        assert!(e
            .to_string()
            .starts_with(&format!("parameter {p} is not supported: ")));
        assert!(!e.is_conflict());
        assert_eq!(e.param(), Some(p));
    }
    assert!(
        ok(&format!("{BASE}&backendExtra=")).warnings.is_empty(),
        "empty = absent"
    );
}

#[test]
fn ignored_parameters() {
    let s = ok(&format!(
        "{BASE}&userDef=x&aclCondition=x&tasks=1.2.3.4&isGlobal=true&useGlobalUsers=true&debug=true\
         &debugFormat=x&servicePort=1&lookupRetry=x&lookupRetryInterval=x&nodeInfo=x&notify=true&whatever=1"
    ));
    assert!(s.warnings.is_empty());
    let s = ok(&format!("{BASE}&checkResolvers=true"));
    assert_eq!(s.warnings.len(), 1);
    assert!(s.warnings[0].contains("checkResolvers"));
    assert!(ok(&format!("{BASE}&checkResolvers=false"))
        .warnings
        .is_empty());
}

#[test]
fn error_param_accessor() {
    assert_eq!(ParamError::MissingServiceName.param(), Some("serviceName"));
    assert_eq!(ParamError::MissingPort.param(), None);
    assert_eq!(ParamError::NonHttpWithoutPorts.param(), None);
}

// --- properties ------------------------------------------------------------------------

fn param_key() -> impl Strategy<Value = String> {
    let names: Vec<&'static str> = KNOWN_PARAMS.iter().map(|p| p.name).collect();
    prop_oneof![
        (
            prop::sample::select(names.clone()),
            prop::option::of(0u8..=101)
        )
            .prop_map(|(n, i)| match i {
                Some(i) => format!("{n}.{i}"),
                None => n.to_string(),
            }),
        (prop::sample::select(names), 1u8..=3).prop_map(|(n, i)| format!("{n}.{i}")),
        "[a-zA-Z.]{0,12}",
    ]
}

fn param_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[0-9]{1,6}",
        "(true|false|yes|1|0)",
        "[ -~]{0,24}",
        "[/a-z,:*%\\[\\]{}()\\\\ \"'.!^$?+|-]{0,24}",
        any::<String>(),
    ]
}

proptest! {
    #[test]
    fn query_parsing_never_panics(query in any::<String>()) {
        let params = params_from_query(&query);
        prop_assert!(!params.contains_key(""));
    }

    #[test]
    fn service_parsing_never_panics(
        mut params in prop::collection::btree_map(param_key(), param_value(), 0..16),
        named in any::<bool>(),
        sep in prop_oneof![Just(",".to_string()), Just(";".to_string()), Just(String::new()), Just("::".to_string())],
    ) {
        if named {
            params.insert("serviceName".into(), "svc".into());
        }
        let ctx = ParseContext { separator: sep, ..ParseContext::default() };
        if let Ok(service) = parse_service(&params, &ctx) {
            prop_assert_eq!(&service.params, &params);
            prop_assert!(!service.destinations.is_empty());
            for d in &service.destinations {
                prop_assert!(d.port.is_some() || d.https_port.is_some());
            }
        }
    }

    #[test]
    fn header_items_never_panic(item in any::<String>()) {
        let _ = parse_header_item(&item);
        let _ = split_outside_quotes(&item, ",");
        let _ = translate_replacement(&item);
    }
}

// --- the parser reads only known names -------------------------------------------------------

#[test]
#[cfg(debug_assertions)]
#[should_panic(expected = "\"usres\", which is not in KNOWN_PARAMS")]
fn misspelt_parameter_name_fails_a_debug_assertion() {
    let params = params_from_query(BASE);
    let src = super::value::Source { params: &params };
    let _ = src.service("usres");
}

#[test]
#[cfg(debug_assertions)]
#[should_panic(expected = "\"users\" per destination")]
fn service_parameter_read_per_destination_fails_a_debug_assertion() {
    let params = params_from_query(BASE);
    let src = super::value::Source { params: &params };
    let _ = src.dest("users", 1);
}

#[test]
fn drain_timeout_is_checked() {
    let s = ok(&format!("{BASE}&drainTimeout=45"));
    assert_eq!(
        crate::membership::drain_timeout(&s),
        std::time::Duration::from_secs(45)
    );
    let s = ok(BASE);
    assert_eq!(
        crate::membership::drain_timeout(&s),
        crate::membership::DEFAULT_DRAIN_TIMEOUT
    );
    for bad in ["10s", "-1", "86401"] {
        let (param, value, _) = invalid(&format!("{BASE}&drainTimeout={bad}"));
        assert_eq!((param.as_str(), value.as_str()), ("drainTimeout", bad));
    }
}
