use std::collections::HashMap;

use super::*;

fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    let mut map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    // Never read the real /run/secrets in tests.
    map.entry("SECRETS_DIR".to_owned())
        .or_insert_with(|| "/nonexistent-sluice-secrets".to_owned());
    map
}

fn parse(pairs: &[(&str, &str)]) -> Result<ListenerSettings, ListenerSettingsError> {
    ListenerSettings::from_vars(&vars(pairs))
}

#[test]
fn image_defaults_apply() {
    let s = parse(&[]).unwrap();
    assert_eq!(
        s.docker_host,
        DockerHost::Unix("/var/run/docker.sock".into())
    );
    assert_eq!(s.rules.notify_label.key, "com.df.notify");
    assert_eq!(s.rules.notify_label.value, None);
    assert_eq!(s.rules.name_prefix, None);
    assert_eq!(
        s.retry,
        RetryPolicy {
            retries: 50,
            interval: Duration::from_secs(5)
        }
    );
    assert_eq!(s.notify_timeout, Duration::from_secs(30));
    assert_eq!(s.resync_interval, Duration::from_secs(30));
    assert!(s.use_events);
    assert!(s.endpoints.is_empty());
    assert!(s.credentials.is_none());
    assert!(s.unsupported.is_empty());
}

#[test]
fn walkthrough_service_definition() {
    let s = parse(&[
        (
            "DF_NOTIFY_CREATE_SERVICE_URL",
            "http://proxy:8080/v1/docker-flow-proxy/reconfigure",
        ),
        (
            "DF_NOTIFY_REMOVE_SERVICE_URL",
            "http://proxy:8080/v1/docker-flow-proxy/remove",
        ),
    ])
    .unwrap();
    assert_eq!(
        s.endpoints(),
        vec!["create=http://proxy:8080/v1/docker-flow-proxy/reconfigure remove=http://proxy:8080/v1/docker-flow-proxy/remove"]
    );
}

#[test]
fn url_precedence_aliases_and_fallback() {
    let s = parse(&[
        ("DF_NOTIF_CREATE_SERVICE_URL", "http://legacy/c"),
        ("DF_NOTIFY_CREATE_SERVICE_URL", "http://new/c"),
        ("DF_NOTIFICATION_URL", "http://both/x"),
    ])
    .unwrap();
    assert_eq!(
        s.endpoints(),
        vec![
            "create=http://legacy/c remove=-",
            "create=- remove=http://both/x"
        ]
    );
    let s = parse(&[("DF_NOTIFICATION_URL", "http://both/x")]).unwrap();
    assert_eq!(
        s.endpoints(),
        vec!["create=http://both/x remove=http://both/x"]
    );
}

#[test]
fn methods_match_urls_by_index_and_the_last_repeats() {
    let s = parse(&[
        (
            "DF_NOTIFY_CREATE_SERVICE_URL",
            " http://host1/c , http://host2/c,,http://host3/c",
        ),
        ("DF_NOTIFY_CREATE_SERVICE_METHOD", "get,Post"),
        (
            "DF_NOTIFY_REMOVE_SERVICE_URL",
            "http://host1/r,http://host2/r",
        ),
        ("DF_NOTIFY_REMOVE_SERVICE_METHOD", "DELETE"),
    ])
    .unwrap();
    let methods: Vec<(String, String)> = s
        .endpoints
        .iter()
        .map(|e| {
            let m =
                |t: &Option<Target>| t.as_ref().map_or("-".to_owned(), |t| t.method.to_string());
            (m(&e.create), m(&e.remove))
        })
        .collect();
    assert_eq!(
        methods,
        vec![
            ("GET".to_owned(), "DELETE".to_owned()),
            ("POST".to_owned(), "DELETE".to_owned()),
            ("POST".to_owned(), "-".to_owned()),
        ]
    );
    assert!(matches!(
        parse(&[("DF_NOTIFY_CREATE_SERVICE_METHOD", "GET,,POST")]),
        Err(ListenerSettingsError::InvalidMethod {
            name: "DF_NOTIFY_CREATE_SERVICE_METHOD",
            ..
        })
    ));
}

#[test]
fn bad_urls_are_errors_with_redacted_values() {
    let err = parse(&[("DF_NOTIFY_CREATE_SERVICE_URL", "https://user:pw@proxy/c")]).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("DF_NOTIFY_CREATE_SERVICE_URL"), "{text}");
    assert!(text.contains("user:REDACTED@proxy"), "{text}");
    assert!(!text.contains("pw"), "{text}");
    assert!(matches!(
        parse(&[("DF_NOTIFY_REMOVE_SERVICE_URL", "proxy:8080/remove")]),
        Err(ListenerSettingsError::InvalidUrl { .. })
    ));
}

#[test]
fn secrets_are_appended() {
    let dir = std::env::temp_dir().join(format!("sluice-docker-secrets-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("df_notify_create_service_url"),
        " http://secret:8080/c \n",
    )
    .unwrap();
    std::fs::write(
        dir.join("df_notify_remove_service_url"),
        "http://secret:8080/r",
    )
    .unwrap();
    std::fs::write(dir.join("df_notify_create_node_url"), "http://n/").unwrap();
    let dir_str = dir.to_string_lossy().into_owned();
    let s = parse(&[
        ("SECRETS_DIR", dir_str.as_str()),
        ("DF_NOTIFY_CREATE_SERVICE_URL", "http://proxy/c"),
    ])
    .unwrap();
    assert_eq!(
        s.endpoints(),
        vec![
            "create=http://proxy/c remove=-",
            "create=http://secret:8080/c remove=http://secret:8080/r"
        ]
    );
    assert_eq!(s.unsupported().len(), 1, "{:?}", s.unsupported());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn numbers_and_booleans_are_validated() {
    let s = parse(&[
        ("DF_RETRY", "3"),
        ("DF_RETRY_INTERVAL", "0"),
        ("DF_SERVICE_POLLING_INTERVAL", "7"),
        ("DF_USE_DOCKER_SERVICE_EVENTS", "False"),
        ("DF_NOTIFY_TIMEOUT", "2"),
    ])
    .unwrap();
    assert_eq!(s.retry.retries, 3);
    assert_eq!(s.retry.interval, Duration::ZERO);
    assert_eq!(s.resync_interval, Duration::from_secs(7));
    assert!(!s.use_events);
    assert_eq!(s.notify_timeout, Duration::from_secs(2));
    assert_eq!(
        parse(&[("DF_SERVICE_POLLING_INTERVAL", "-1")])
            .unwrap()
            .resync_interval,
        Duration::from_secs(30)
    );
    for (name, value) in [
        ("DF_RETRY", "abc"),
        ("DF_RETRY", "-1"),
        ("DF_RETRY_INTERVAL", "1.5"),
        ("DF_SERVICE_POLLING_INTERVAL", "x"),
        ("DF_NOTIFY_TIMEOUT", "0"),
    ] {
        match parse(&[(name, value)]) {
            Err(ListenerSettingsError::InvalidNumber { name: n, .. }) => assert_eq!(n, name),
            other => panic!("{name}={value}: {other:?}"),
        }
    }
    assert!(matches!(
        parse(&[("DF_USE_DOCKER_SERVICE_EVENTS", "yes please")]),
        Err(ListenerSettingsError::InvalidBool { .. })
    ));
}

#[test]
fn booleans_are_gos_parse_bool_set_like_the_proxy() {
    for (value, expected) in [
        ("1", true),
        ("t", true),
        ("T", true),
        ("TRUE", true),
        ("true", true),
        ("True", true),
        (" true ", true),
        ("0", false),
        ("f", false),
        ("F", false),
        ("FALSE", false),
        ("false", false),
        ("False", false),
    ] {
        let s = parse(&[("DF_USE_DOCKER_SERVICE_EVENTS", value)]).unwrap();
        assert_eq!(s.use_events, expected, "{value:?}");
        assert_eq!(
            sluice_core::env::parse_go_bool(value.trim()),
            Some(expected)
        );
    }
    for value in ["tRuE", "fAlSe", "yes", "on", "2"] {
        assert!(
            matches!(
                parse(&[("DF_USE_DOCKER_SERVICE_EVENTS", value)]),
                Err(ListenerSettingsError::InvalidBool { .. })
            ),
            "{value:?} was accepted"
        );
        assert_eq!(sluice_core::env::parse_go_bool(value), None, "{value:?}");
    }
}

#[test]
fn numbers_are_digits_only_like_the_proxy() {
    for value in ["+3", "3 4", "0x3"] {
        assert!(
            matches!(
                parse(&[("DF_RETRY", value)]),
                Err(ListenerSettingsError::InvalidNumber {
                    name: "DF_RETRY",
                    ..
                })
            ),
            "{value:?} was accepted"
        );
    }
    assert_eq!(parse(&[("DF_RETRY", " 7 ")]).unwrap().retry.retries, 7);
    assert_eq!(
        parse(&[("DF_SERVICE_POLLING_INTERVAL", "-5")])
            .unwrap()
            .resync_interval,
        Duration::from_secs(30)
    );
    assert!(matches!(
        parse(&[("DF_SERVICE_POLLING_INTERVAL", "--5")]),
        Err(ListenerSettingsError::InvalidNumber { .. })
    ));
}

#[test]
fn docker_hosts() {
    let host = |v: &str| parse(&[("DF_DOCKER_HOST", v)]).map(|s| s.docker_host);
    assert_eq!(
        host("unix:///tmp/d.sock").unwrap(),
        DockerHost::Unix("/tmp/d.sock".into())
    );
    assert_eq!(
        host("tcp://10.0.0.1:2375").unwrap(),
        DockerHost::Tcp("tcp://10.0.0.1:2375".into())
    );
    assert_eq!(
        host("http://d:2375/").unwrap(),
        DockerHost::Tcp("tcp://d:2375".into())
    );
    for bad in [
        "unix://",
        "https://d:2376",
        "ssh://me@d",
        "/var/run/docker.sock",
        "tcp://",
    ] {
        assert!(
            matches!(
                host(bad),
                Err(ListenerSettingsError::InvalidDockerHost { .. })
            ),
            "{bad}"
        );
    }
}

#[test]
fn labels_prefix_credentials_and_backoff() {
    let s = parse(&[
        ("DF_NOTIFY_LABEL", "com.df.notifyDev=yes"),
        ("DF_SERVICE_NAME_PREFIX", "dev1"),
        ("DF_PROXY_USER", "admin"),
        ("DF_PROXY_PASS", "secret"),
    ])
    .unwrap();
    assert_eq!(s.rules.notify_label.key, "com.df.notifyDev");
    assert_eq!(s.rules.notify_label.value.as_deref(), Some("yes"));
    assert_eq!(s.rules.name_prefix.as_deref(), Some("dev1"));
    assert!(s.credentials.as_ref().unwrap().is_sensitive());
    assert!(
        !format!("{s:?}").contains("YWRtaW46c2VjcmV0"),
        "credentials leak in Debug"
    );
    assert!(matches!(
        parse(&[("DF_PROXY_USER", "admin")]),
        Err(ListenerSettingsError::IncompleteCredentials {
            missing: "DF_PROXY_PASS",
            ..
        })
    ));
    assert!(matches!(
        parse(&[("DF_NOTIFY_LABEL", "=true")]),
        Err(ListenerSettingsError::InvalidNotifyLabel { .. })
    ));
    assert!(s
        .clone()
        .with_reconnect_backoff(Duration::ZERO, Duration::from_secs(1))
        .is_err());
    assert!(s
        .with_reconnect_backoff(Duration::from_millis(10), Duration::from_secs(1))
        .is_ok());
}
