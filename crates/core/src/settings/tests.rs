use std::cell::RefCell;

use std::collections::HashMap;

use super::*;
use crate::service::CompressionAlgo;

fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn acme_settings_are_read_and_checked() {
    let s = Settings::from_vars(&vars(&[])).unwrap();
    assert_eq!(s.acme, AcmeSettings::default());
    let s = Settings::from_vars(&vars(&[
        ("ACME_DIRECTORY", "https://127.0.0.1:14000/dir"),
        ("ACME_EMAIL", "ops@example.com"),
        ("ACME_CA_FILE", "/ca.pem"),
        ("ACME_CHALLENGE", "TLS-ALPN-01"),
        ("ACME_LEASE_TIMEOUT", "3"),
    ]))
    .unwrap();
    assert_eq!(s.acme.directory, "https://127.0.0.1:14000/dir");
    assert_eq!(s.acme.email.as_deref(), Some("ops@example.com"));
    assert_eq!(s.acme.ca_file, Some(PathBuf::from("/ca.pem")));
    assert_eq!(s.acme.challenge, AcmeChallenge::TlsAlpn01);
    assert_eq!(s.acme.lease_timeout, Duration::from_secs(3));
    for (var, value) in [
        ("ACME_DIRECTORY", "http://x/dir"),
        ("ACME_EMAIL", "nobody"),
        ("ACME_CHALLENGE", "dns-01"),
        ("ACME_LEASE_TIMEOUT", "0"),
    ] {
        let e = error(&[(var, value)]).to_string();
        assert!(e.contains(var) && e.contains(value), "{e}");
    }
}

fn error(pairs: &[(&str, &str)]) -> SettingsError {
    match Settings::from_vars(&vars(pairs)) {
        Ok(s) => panic!("{pairs:?} parsed: {s:?}"),
        Err(e) => e,
    }
}

fn error_var(pairs: &[(&str, &str)]) -> String {
    let SettingsError::Invalid { var, .. } = error(pairs);
    var
}

/// Records every variable read.
struct Recording {
    inner: HashMap<String, String>,
    read: RefCell<Vec<String>>,
}

impl Vars for Recording {
    fn var(&self, key: &str) -> Option<String> {
        self.read.borrow_mut().push(key.to_string());
        self.inner.var(key)
    }
}

#[test]
fn defaults() {
    let s = Settings::from_vars(&HashMap::new()).unwrap();
    assert_eq!(s, Settings::default());
    assert_eq!(s.ip, IpAddr::from([0, 0, 0, 0]));
    assert_eq!(s.port, 8080);
    assert_eq!(
        s.default_ports,
        [PortSpec {
            port: 80,
            ssl: false
        }]
    );
    assert!(s.bind_ports.is_empty());
    assert_eq!(s.data_dir, PathBuf::from("/var/lib/sluice"));
    assert_eq!(s.secrets_dir, PathBuf::from("/run/secrets"));
    assert_eq!(s.certs_dir, PathBuf::from("/certs"));
    assert_eq!(s.parse, ParseContext::default());
    assert_eq!(s.parse.separator, ",");
    assert_eq!(s.parse.default_domain_algo, DomainAlgo::Beg);
    assert!(!s.parse.https_only);
    let t = s.timeouts;
    assert_eq!(
        [
            t.connect,
            t.client,
            t.server,
            t.queue,
            t.tunnel,
            t.http_request,
            t.http_keep_alive
        ],
        [5, 20, 20, 30, 3600, 5, 15].map(Duration::from_secs)
    );
    assert_eq!(s.service_name, "proxy");
    assert!(s.listener_addresses.is_empty());
    assert_eq!(s.proxy_instance_name, "docker-flow");
    assert!(!s.filter_proxy_instance_name);
    assert!(s.skip_address_validation);
    assert_eq!(s.connection_mode, ConnectionMode::KeepAlive);
    assert!(s.worker_threads >= 1);
    assert_eq!(s.shutdown_grace, Duration::from_secs(10));
    assert_eq!(s.reload_interval, Duration::from_millis(5000));
    assert_eq!(s.reload_attempts, 5);
    assert!(!s.repeat_reload);
    assert_eq!(s.listener_resync_interval, Duration::from_secs(15));
    assert_eq!(s.users, None);
    assert!(!s.users_pass_encrypted);
    assert_eq!(s.stats, None);
    assert_eq!(s.api_auth, None);
    assert!(!s.default_ports_set);
    assert!(s.enable_h2);
    assert_eq!(s.ca_file, None);
    assert!(s.preferred_certificates.is_empty());
    assert_eq!(s.compression, None);
}

#[test]
fn certificates_add_a_tls_port_only_to_the_default() {
    let plain = PortSpec {
        port: 80,
        ssl: false,
    };
    let tls = PortSpec {
        port: 443,
        ssl: true,
    };
    let d = Settings::from_vars(&vars(&[("BIND_PORTS", "8080")])).unwrap();
    let extra = PortSpec {
        port: 8080,
        ssl: false,
    };
    assert_eq!(d.listener_ports(false), [plain, extra]);
    assert_eq!(d.listener_ports(true), [plain, tls, extra]);
    let given = Settings::from_vars(&vars(&[("DEFAULT_PORTS", "80")])).unwrap();
    assert_eq!(given.listener_ports(true), [plain]);
    let given = Settings::from_vars(&vars(&[("DEFAULT_PORTS", "80,8443:ssl")])).unwrap();
    assert_eq!(
        given.listener_ports(true),
        [
            plain,
            PortSpec {
                port: 8443,
                ssl: true
            }
        ]
    );
    assert_eq!(error_var(&[("ENABLE_H2", "yes")]), "ENABLE_H2");
}

#[test]
fn every_variable_is_read() {
    let v = vars(&[
        ("IP", "127.0.0.1"),
        ("PORT", "0"),
        ("DEFAULT_PORTS", "8080, 8443:ssl"),
        ("BIND_PORTS", "9000,,9443:ssl"),
        ("DATA_DIR", "/data"),
        ("SECRETS_DIR", "/s"),
        ("CERTS_DIR", "/c"),
        ("SEPARATOR", ";"),
        ("SERVICE_DOMAIN_ALGO", "hdr_dom(host)"),
        ("HTTPS_ONLY", "true"),
        ("TIMEOUT_CONNECT", "1"),
        ("TIMEOUT_CLIENT", "2"),
        ("TIMEOUT_SERVER", "3"),
        ("TIMEOUT_QUEUE", "4"),
        ("TIMEOUT_TUNNEL", "0"),
        ("TIMEOUT_HTTP_REQUEST", "6"),
        ("TIMEOUT_HTTP_KEEP_ALIVE", "7"),
        ("SERVICE_NAME", "edge"),
        ("LISTENER_ADDRESS", " swarm-listener , ,other "),
        ("PROXY_INSTANCE_NAME", "public"),
        ("FILTER_PROXY_INSTANCE_NAME", "1"),
        ("SKIP_ADDRESS_VALIDATION", "false"),
        ("CONNECTION_MODE", "http-server-close"),
        ("WORKER_THREADS", "3"),
        ("SHUTDOWN_GRACE", "30"),
        ("RELOAD_INTERVAL", "250"),
        ("RELOAD_ATTEMPTS", "9"),
        ("REPEAT_RELOAD", "True"),
        ("LISTENER_RESYNC_INTERVAL", "0"),
        ("USERS", "a:1,b:2:3"),
        ("USERS_PASS_ENCRYPTED", "true"),
        ("STATS_USER_ENV", "STATS_USER"),
        ("STATS_PASS_ENV", "STATS_PASS"),
        ("STATS_URI_ENV", "STATS_URI"),
        ("STATS_USER", "admin"),
        ("STATS_PASS", "secret"),
        ("STATS_URI", "/stats"),
        ("STATS_PORT", "9000"),
        ("API_USER", "api"),
        ("API_PASS", "key"),
        ("ENABLE_H2", "false"),
        ("CA_FILE", "/ca.pem"),
        ("PREFERRED_CERTIFICATE", "main*, ,other.pem"),
        ("COMPRESSION_ALGO", "gzip;deflate"),
        ("COMPRESSION_TYPE", "Text/HTML text/css"),
    ]);
    let recording = Recording {
        inner: v,
        read: RefCell::new(Vec::new()),
    };
    let s = Settings::from_vars(&recording).unwrap();
    assert_eq!(s.ip, IpAddr::from([127, 0, 0, 1]));
    assert_eq!(s.port, 0);
    assert_eq!(
        s.default_ports,
        [
            PortSpec {
                port: 8080,
                ssl: false
            },
            PortSpec {
                port: 8443,
                ssl: true
            }
        ]
    );
    assert_eq!(
        s.bind_ports,
        [
            PortSpec {
                port: 9000,
                ssl: false
            },
            PortSpec {
                port: 9443,
                ssl: true
            }
        ]
    );
    assert_eq!(s.data_dir, PathBuf::from("/data"));
    assert_eq!(s.secrets_dir, PathBuf::from("/s"));
    assert_eq!(s.certs_dir, PathBuf::from("/c"));
    assert_eq!(
        s.parse,
        ParseContext {
            separator: ";".into(),
            default_domain_algo: DomainAlgo::Dom,
            https_only: true
        }
    );
    let t = s.timeouts;
    assert_eq!(
        [
            t.connect,
            t.client,
            t.server,
            t.queue,
            t.tunnel,
            t.http_request,
            t.http_keep_alive
        ],
        [1, 2, 3, 4, 0, 6, 7].map(Duration::from_secs)
    );
    assert_eq!(s.service_name, "edge");
    assert_eq!(s.listener_addresses, ["swarm-listener", "other"]);
    assert_eq!(s.proxy_instance_name, "public");
    assert!(s.filter_proxy_instance_name);
    assert!(!s.skip_address_validation);
    assert_eq!(s.connection_mode, ConnectionMode::ServerClose);
    assert_eq!(s.worker_threads, 3);
    assert_eq!(s.shutdown_grace, Duration::from_secs(30));
    assert_eq!(s.reload_interval, Duration::from_millis(250));
    assert_eq!(s.reload_attempts, 9);
    assert!(s.repeat_reload);
    assert!(s.listener_resync_interval.is_zero());
    let users = s.users.clone().unwrap();
    assert_eq!(users.len(), 2);
    assert_eq!(users[1].password.as_deref(), Some("2:3"));
    assert!(s.users_pass_encrypted);
    assert_eq!(
        s.stats,
        Some(StatsSettings {
            auth: StatsAuth::Basic(Credentials {
                user: "admin".into(),
                password: "secret".into()
            }),
            uri: "/stats".into(),
            port: Some(9000),
        })
    );
    assert_eq!(
        s.api_auth,
        Some(Credentials {
            user: "api".into(),
            password: "key".into()
        })
    );
    assert!(s.default_ports_set);
    assert!(!s.enable_h2);
    assert_eq!(s.ca_file, Some(PathBuf::from("/ca.pem")));
    assert_eq!(s.preferred_certificates, ["main*", "other.pem"]);
    assert_eq!(
        s.compression,
        Some(Compression {
            algos: vec![CompressionAlgo::Gzip, CompressionAlgo::Deflate],
            types: vec!["text/html".into(), "text/css".into()],
        }),
        "split on SEPARATOR (here ';') and whitespace, as the service parameters"
    );

    let mut read = recording.read.into_inner();
    read.sort();
    read.dedup();
    let mut known: Vec<String> = known_variables().iter().map(|v| v.to_string()).collect();
    known.sort();
    assert_eq!(read, known, "known_variables() lists exactly what is read");
}

#[test]
fn max_connections_is_a_positive_number() {
    assert_eq!(Settings::default().max_connections, 10_000);
    let s = Settings::from_vars(&vars(&[("MAX_CONNECTIONS", "200")])).unwrap();
    assert_eq!(s.max_connections, 200);
    assert_eq!(error_var(&[("MAX_CONNECTIONS", "0")]), "MAX_CONNECTIONS");
    assert_eq!(error_var(&[("MAX_CONNECTIONS", "many")]), "MAX_CONNECTIONS");
}

#[test]
fn worker_threads_zero_means_cpus() {
    let s = Settings::from_vars(&vars(&[("WORKER_THREADS", "0")])).unwrap();
    assert_eq!(s.worker_threads, Settings::default().worker_threads);
    assert_eq!(error_var(&[("WORKER_THREADS", "-1")]), "WORKER_THREADS");
}

#[test]
fn ipv6_and_bad_ip() {
    let s = Settings::from_vars(&vars(&[("IP", "::")])).unwrap();
    assert!(s.ip.is_ipv6());
    let e = error(&[("IP", "x")]);
    assert_eq!(e.to_string(), "invalid IP=\"x\": not an IP address");
}

#[test]
fn bad_values_name_the_variable() {
    let cases: &[(&str, &str)] = &[
        ("PORT", "65536"),
        ("PORT", "http"),
        ("DEFAULT_PORTS", "80,abc"),
        ("BIND_PORTS", "8443 accept-proxy:ssl"),
        ("SERVICE_DOMAIN_ALGO", "hdr_sub(host)"),
        ("HTTPS_ONLY", "yes"),
        ("TIMEOUT_CONNECT", "5s"),
        ("TIMEOUT_CLIENT", "-1"),
        ("TIMEOUT_SERVER", "1.5"),
        ("TIMEOUT_QUEUE", "x"),
        ("TIMEOUT_TUNNEL", "1h"),
        ("TIMEOUT_HTTP_REQUEST", "x"),
        ("TIMEOUT_HTTP_KEEP_ALIVE", "x"),
        ("FILTER_PROXY_INSTANCE_NAME", "on"),
        ("SKIP_ADDRESS_VALIDATION", "nope"),
        ("CONNECTION_MODE", "http-tunnel"),
        ("SHUTDOWN_GRACE", "soon"),
        ("RELOAD_INTERVAL", "5s"),
        ("RELOAD_ATTEMPTS", "-2"),
        ("REPEAT_RELOAD", "2"),
        ("LISTENER_RESYNC_INTERVAL", "15s"),
        ("USERS_PASS_ENCRYPTED", "yes"),
        ("STATS_PORT", "x"),
        ("COMPRESSION_ALGO", "br"),
    ];
    for (var, value) in cases {
        let e = error(&[(var, value)]);
        let SettingsError::Invalid {
            var: got, value: v, ..
        } = &e;
        assert_eq!((got.as_str(), v.as_str()), (*var, *value));
        assert!(
            e.to_string()
                .starts_with(&format!("invalid {var}={value:?}: ")),
            "{e}"
        );
    }
}

#[test]
fn booleans_use_the_go_set() {
    for t in ["1", "t", "T", "TRUE", "true", "True"] {
        assert!(
            Settings::from_vars(&vars(&[("REPEAT_RELOAD", t)]))
                .unwrap()
                .repeat_reload
        );
    }
    for f in ["0", "f", "F", "FALSE", "false", "False"] {
        assert!(
            !Settings::from_vars(&vars(&[("SKIP_ADDRESS_VALIDATION", f)]))
                .unwrap()
                .skip_address_validation
        );
    }
}

#[test]
fn empty_values_take_defaults() {
    let s = Settings::from_vars(&vars(&[
        ("PORT", ""),
        ("SEPARATOR", ""),
        ("DEFAULT_PORTS", ""),
    ]))
    .unwrap();
    assert_eq!(s, Settings::default());
}

#[test]
fn port_specs() {
    assert_eq!(
        PortSpec::parse("80"),
        Ok(PortSpec {
            port: 80,
            ssl: false
        })
    );
    assert_eq!(
        PortSpec::parse(" 443:ssl "),
        Ok(PortSpec {
            port: 443,
            ssl: true
        })
    );
    assert_eq!(
        PortSpec::parse("0"),
        Ok(PortSpec {
            port: 0,
            ssl: false
        })
    );
    let e = PortSpec::parse("8443 accept-proxy:ssl").unwrap_err();
    assert!(
        e.contains("bind option 'accept-proxy' is not supported"),
        "{e}"
    );
    assert!(PortSpec::parse("8443 accept-proxy")
        .unwrap_err()
        .contains("accept-proxy"));
    assert!(PortSpec::parse("443:tls").unwrap_err().contains(":tls"));
    assert!(PortSpec::parse("70000").unwrap_err().contains("not a port"));
    assert!(PortSpec::parse(":ssl").unwrap_err().contains("not a port"));
    assert_eq!(PortSpec::parse_list(" , "), Ok(Vec::new()));
    assert_eq!(
        PortSpec {
            port: 443,
            ssl: true
        }
        .to_string(),
        "443:ssl"
    );
    assert_eq!(
        PortSpec {
            port: 80,
            ssl: false
        }
        .to_string(),
        "80"
    );
    let e = error(&[("BIND_PORTS", "8085,8443 accept-proxy:ssl")]);
    assert_eq!(
        e.to_string(),
        "invalid BIND_PORTS=\"8085,8443 accept-proxy:ssl\": bind option 'accept-proxy' is not supported"
    );
}

#[test]
fn global_users_drop_entries_without_password_and_fail_closed() {
    let s = Settings::from_vars(&vars(&[("USERS", "my-user:my-pass\nnopass")])).unwrap();
    let users = s.users.unwrap();
    assert_eq!(users.len(), 1);
    assert_eq!(users[0].name, "my-user");
    let s = Settings::from_vars(&vars(&[("USERS", "nopass, :x")])).unwrap();
    assert_eq!(s.users, Some(Vec::new()), "asked for but unusable");
}

#[test]
fn stats_need_both_values_and_open_only_on_none_none() {
    assert_eq!(
        Settings::from_vars(&vars(&[("STATS_USER", "u")]))
            .unwrap()
            .stats,
        None
    );
    let s = Settings::from_vars(&vars(&[("STATS_USER", "None"), ("STATS_PASS", "NONE")]))
        .unwrap()
        .stats
        .unwrap();
    assert_eq!(s.auth, StatsAuth::Open);
    assert_eq!(s.uri, DEFAULT_STATS_URI);
    assert_eq!(s.port, None);
    let s = Settings::from_vars(&vars(&[
        ("STATS_USER", "none"),
        ("STATS_PASS", "secret"),
        ("STATS_PORT", "80"),
    ]))
    .unwrap()
    .stats
    .unwrap();
    assert!(
        matches!(s.auth, StatsAuth::Basic(_)),
        "one 'none' is not open"
    );
    assert_eq!(s.port, None, "port 80 is the HTTP listener itself");
    assert_eq!(error_var(&[("STATS_URI", "admin")]), "STATS_URI");
}

#[test]
fn stats_indirection_reads_the_named_variables() {
    let s = Settings::from_vars(&vars(&[
        ("STATS_USER_ENV", "MY_USER"),
        ("STATS_PASS_ENV", "MY_PASS"),
        ("STATS_URI_ENV", "MY_URI"),
        ("MY_USER", "x"),
        ("MY_PASS", "y"),
        ("MY_URI", "/s"),
        ("STATS_USER", "ignored"),
    ]))
    .unwrap()
    .stats
    .unwrap();
    assert_eq!(
        s.auth,
        StatsAuth::Basic(Credentials {
            user: "x".into(),
            password: "y".into()
        })
    );
    assert_eq!(s.uri, "/s");
}

#[test]
fn api_credentials_come_in_pairs() {
    assert_eq!(error_var(&[("API_USER", "u")]), "API_PASS");
    assert_eq!(error_var(&[("API_PASS", "p")]), "API_USER");
}

#[test]
fn compression_defaults_follow_the_service_parameter_rules() {
    let c = Settings::from_vars(&vars(&[("COMPRESSION_ALGO", "raw-deflate identity,gzip")]))
        .unwrap()
        .compression
        .unwrap();
    assert_eq!(
        c.algos,
        [
            CompressionAlgo::Deflate,
            CompressionAlgo::Identity,
            CompressionAlgo::Gzip
        ]
    );
    assert!(c.types.is_empty(), "no COMPRESSION_TYPE = every type");
    let types_only = Settings::from_vars(&vars(&[("COMPRESSION_TYPE", "text/plain")]));
    assert_eq!(
        types_only.unwrap().compression,
        None,
        "no effect without an algorithm"
    );
    let e = error(&[("COMPRESSION_ALGO", "gzip br")]);
    assert_eq!(
        e,
        SettingsError::Invalid {
            var: "COMPRESSION_ALGO".into(),
            value: "br".into(),
            reason: "unsupported compression algorithm (identity, gzip, deflate or raw-deflate)"
                .into(),
        }
    );
}

#[test]
fn known_variables_are_unique() {
    let mut names = known_variables().to_vec();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), known_variables().len());
}
