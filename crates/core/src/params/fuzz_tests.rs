//! Property tests that feed the parser arbitrary and mutated-valid input from its three
//! sources (query strings, `com.df.*` labels, `DFP_SERVICE[_N]_*` variables). For each input:
//! no panic, and a rejection names a parameter; an accepted service builds into a route
//! table, passes its regex budget check and answers requests without panicking.

use std::collections::HashMap;
use std::sync::Arc;

use http::HeaderMap;
use proptest::prelude::*;

use super::*;
use crate::route::{RequestFacts, RouteTable};
use crate::service::Service;

/// Cases per property (5 properties: 5 × 1,000 inputs per `cargo test`).
const CASES: u32 = 1000;

/// Values that steer the parser into its branches, mixed with arbitrary text.
const INTERESTING: &[&str] = &[
    "",
    "0",
    "1",
    "80",
    "443",
    "65535",
    "65536",
    "-1",
    "true",
    "false",
    "tRuE",
    "/",
    "/api",
    "/a,/b",
    "path_reg",
    "path_beg",
    "path_dir",
    "req_ssl_sni -i -m reg",
    "req_ssl_sni -m dom",
    "http",
    "tcp",
    "sni",
    "hdr_reg(host)",
    "hdr_dom(host)",
    "example.com",
    "*.example.com",
    "^/a.c",
    "(a",
    "\\w{100}",
    "a{99999}",
    "(?i)x+",
    "u:p",
    "u:p,v",
    "X-A:b",
    "X-A b",
    "^/x,/y,g:^/z,/w",
    "\\1\\",
    "301",
    "sticky-server",
    "gzip deflate",
    "http-keep-alive",
    "GET,POST",
    "5s",
    "%zz",
    "\u{0}",
    "é",
];

fn known_names() -> Vec<&'static str> {
    KNOWN_PARAMS.iter().map(|p| p.name).collect()
}

/// A parameter name: mostly known (sometimes with an index), sometimes anything.
fn key() -> impl Strategy<Value = String> {
    let names = known_names();
    prop_oneof![
        4 => (proptest::sample::select(names.clone()), 0u8..=4).prop_map(|(name, i)| {
            if i == 0 {
                name.to_string()
            } else {
                format!("{name}.{i}")
            }
        }),
        1 => (proptest::sample::select(names), any::<u8>())
            .prop_map(|(name, i)| format!("{name}.{i}")),
        1 => "[a-zA-Z.0-9_]{0,12}",
    ]
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::sample::select(INTERESTING).prop_map(str::to_string),
        2 => any::<String>().prop_map(|s| s.chars().take(40).collect()),
        1 => "[/a-z0-9.^$*+?(){}\\[\\]|\\\\,:-]{0,30}",
    ]
}

fn params() -> impl Strategy<Value = Vec<(String, String)>> {
    proptest::collection::vec((key(), value()), 0..12)
}

/// Valid services to mutate.
const VALID: &[&str] = &[
    "serviceName=a&port=80&servicePath=/a",
    "serviceName=b&servicePath.1=/x&port.1=80&servicePath.2=/y&port.2=81&serviceDomain=b.com",
    "serviceName=c&port=80&pathType=path_reg&servicePath=^/c/[0-9]%2B&reqPathSearchReplace=^/c,/",
    "serviceName=d&port=80&serviceDomain=^d\\.&serviceDomainAlgo=hdr_reg(host)",
    "serviceName=e&reqMode=tcp&srcPort=5000&port=5000",
    "serviceName=f&reqMode=sni&srcPort=443&port=443&pathType=req_ssl_sni -m reg&servicePath=^f",
    "serviceName=g&port=80&httpsPort=443&servicePath=/g&users=u:p&redirectWhenHttpProto=true",
];

/// One edit of a valid query's parameters.
#[derive(Debug, Clone)]
enum Mutation {
    /// Replace the value of the n-th parameter.
    SetValue(usize, String),
    /// Drop the n-th parameter.
    Drop(usize),
    /// Add (or overwrite) a parameter.
    Add(String, String),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), value()).prop_map(|(n, v)| Mutation::SetValue(n, v)),
        any::<usize>().prop_map(Mutation::Drop),
        (key(), value()).prop_map(|(k, v)| Mutation::Add(k, v)),
    ]
}

fn mutate(mut params: Params, mutations: &[Mutation]) -> Params {
    for m in mutations {
        let keys: Vec<String> = params.keys().cloned().collect();
        match m {
            Mutation::SetValue(n, v) if !keys.is_empty() => {
                params.insert(keys[n % keys.len()].clone(), v.clone());
            }
            Mutation::Drop(n) if !keys.is_empty() => {
                params.remove(&keys[n % keys.len()]);
            }
            Mutation::Add(k, v) => {
                params.insert(k.clone(), v.clone());
            }
            _ => {}
        }
    }
    params
}

/// The parameter names an error may mention: every known name.
fn names_a_parameter(error: &ParamError) -> bool {
    match error.param() {
        Some(param) => {
            let base = param.split('.').next().unwrap_or(param);
            known_param(base).is_some()
        }
        // The shape errors name their parameters in the message.
        None => {
            let message = error.to_string();
            ["servicePath", "srcPort", "port"]
                .iter()
                .any(|name| message.contains(name))
        }
    }
}

/// Parses; on success, puts the service through the route table; on failure, checks the
/// error. Returns the error text for the assertion message.
fn check(params: &Params) -> Result<(), String> {
    match parse_service(params, &ParseContext::default()) {
        Ok(service) => {
            exercise_table(service);
            Ok(())
        }
        Err(error) if names_a_parameter(&error) => Ok(()),
        Err(error) => Err(format!("{error} (for {params:?})")),
    }
}

fn exercise_table(service: Service) {
    let base: Vec<Arc<Service>> = VALID
        .iter()
        .map(|q| Arc::new(parse_service(&params_from_query(q), &ParseContext::default()).unwrap()))
        .collect();
    let table = RouteTable::build(&base);
    let service = Arc::new(service);
    if table.check_regex_budget(&service).is_err() {
        return;
    }
    let updated = table.update(&[Arc::clone(&service)], &[]);
    let rebuilt = RouteTable::build(base.iter().chain([&service]));
    let headers = HeaderMap::new();
    for path in ["/", "/a", "/c/12", "/x/y", "/g"] {
        for host in [None, Some("a.com"), Some("d.example.com")] {
            let facts = RequestFacts {
                host,
                path,
                path_and_query: path,
                local_port: 80,
                headers: &headers,
            };
            let _ = updated.decide(&facts);
            let _ = rebuilt.decide(&facts);
        }
    }
    let _ = updated.render();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn arbitrary_query_strings(query in any::<String>()) {
        prop_assert_eq!(check(&params_from_query(&query)), Ok(()));
    }

    #[test]
    fn generated_parameter_maps(pairs in params()) {
        // A minimal valid service underneath, so that most maps get past the shape checks.
        let mut params = params_from_query("serviceName=fuzz&port=80&servicePath=/");
        params.extend(pairs);
        prop_assert_eq!(check(&params), Ok(()));
    }

    #[test]
    fn mutated_valid_queries(
        which in 0..VALID.len(),
        mutations in proptest::collection::vec(mutation(), 1..5),
    ) {
        let params = mutate(params_from_query(VALID[which]), &mutations);
        let query: String = params
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        prop_assert_eq!(check(&params), Ok(()));
        // The same text through the query decoder (percent signs and `+` now mean something).
        prop_assert_eq!(check(&params_from_query(&query)), Ok(()));
    }

    #[test]
    fn label_maps(pairs in params(), noise in proptest::collection::vec((".{0,20}", ".{0,20}"), 0..4)) {
        let mut labels: Vec<(String, String)> = pairs
            .into_iter()
            .map(|(k, v)| (format!("{LABEL_PREFIX}{k}"), v))
            .collect();
        labels.extend(noise);
        // The first value of a key wins: these only fill in what the generated labels lack.
        for (k, v) in [("serviceName", "fuzz"), ("port", "80"), ("servicePath", "/")] {
            labels.push((format!("{LABEL_PREFIX}{k}"), v.into()));
        }
        let params = params_from_labels(labels.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        prop_assert_eq!(check(&params), Ok(()));
    }

    #[test]
    fn environment_maps(
        pairs in proptest::collection::vec((0u8..3, key(), value()), 0..14),
    ) {
        let mut vars: HashMap<String, String> = HashMap::new();
        vars.insert(format!("{ENV_SERVICE_PREFIX}_SERVICE_NAME"), "fuzz".into());
        vars.insert(format!("{ENV_SERVICE_PREFIX}_1_SERVICE_NAME"), "fuzz1".into());
        for prefix in [ENV_SERVICE_PREFIX.to_string(), format!("{ENV_SERVICE_PREFIX}_1")] {
            vars.insert(format!("{prefix}_PORT"), "80".into());
            vars.insert(format!("{prefix}_SERVICE_PATH"), "/".into());
        }
        for (service, key, value) in pairs {
            let (name, index) = match key.split_once('.') {
                Some((name, index)) => (name, format!("_{index}")),
                None => (key.as_str(), String::new()),
            };
            let Some(known) = known_param(name) else {
                continue;
            };
            let prefix = match service {
                0 => ENV_SERVICE_PREFIX.to_string(),
                n => format!("{ENV_SERVICE_PREFIX}_{n}"),
            };
            vars.insert(format!("{prefix}_{}{index}", known.env_name()), value);
        }
        for params in services_from_env(&vars) {
            prop_assert_eq!(check(&params), Ok(()));
        }
    }
}
