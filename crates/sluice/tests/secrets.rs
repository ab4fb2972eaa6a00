//! Nothing the API logs or answers shows a secret: `users` passwords and `serviceCert` keys,
//! in valid and invalid requests, and in the errors of a distribution that failed.

use std::time::{Duration, Instant};

use crate::service_cert::encode;
use crate::support::{Proxy, TempDir};
use crate::tls::TestCert;

const PASSWORD: &str = "S3cretPw";

#[test]
fn the_api_never_logs_or_echoes_a_secret() {
    let dir = TempDir::new("secrets");
    let hosts = dir.0.join("hosts");
    // One peer that does not answer: the distribution error names its URL.
    std::fs::write(&hosts, "127.0.0.9 tasks.proxy-secrets\n").unwrap();
    let p = Proxy::builder()
        .data_dir(&dir.0)
        .env("LOG_LEVEL", "debug")
        .env("SERVICE_NAME", "proxy-secrets")
        .env("HOSTS_FILE", hosts.to_str().unwrap())
        .start();
    let cert = TestCert::self_signed(&["secret.example.com"]);
    // A line of the key's base64 body stands for the key.
    let key_line = cert
        .key_pem
        .lines()
        .find(|l| !l.starts_with("-----") && l.len() >= 40)
        .unwrap()
        .to_string();
    let key_only = cert.key_pem.clone();
    let corrupt_key = cert
        .bundle()
        .replacen(&key_line, &format!("{key_line}$%"), 1);
    let requests = [
        // Valid, distributed to the dead peer: 500 naming it.
        format!(
            "serviceName=s1&serviceDomain=secret.example.com&port=1&users=admin:{PASSWORD}&serviceCert={}&distribute=true",
            encode(&cert.bundle())
        ),
        // Bad users value.
        format!("serviceName=s2&servicePath=/s2&port=1&users=:{PASSWORD}"),
        // Another bad value beside a good users value.
        format!("serviceName=s3&servicePath=/s3&port=x&users=admin:{PASSWORD}"),
        // A key without its certificate, and a bundle whose key is corrupt.
        format!("serviceName=s4&servicePath=/s4&port=1&serviceCert={}", encode(&key_only)),
        format!("serviceName=s5&servicePath=/s5&port=1&serviceCert={}", encode(&corrupt_key)),
        // A control character in a secret next to one in another value.
        format!("serviceName=s6&servicePath=/s6%0d&port=1&users=admin:{PASSWORD}%0d"),
    ];
    let mut statuses = Vec::new();
    for query in &requests {
        let r = p.reconfigure(query);
        statuses.push(r.status);
        assert!(!r.body.contains(PASSWORD), "{query}: {}", r.body);
        assert!(!r.body.contains(&key_line), "{query}: {}", r.body);
    }
    assert_eq!(statuses, [500, 400, 400, 400, 400, 400]);
    let r = p.api(
        "remove",
        &format!("serviceName=s1&distribute=true&users=admin:{PASSWORD}"),
    );
    assert!(!r.body.contains(PASSWORD), "{}", r.body);
    // Every request was logged (five rejections and the distribution failures).
    let deadline = Instant::now() + Duration::from_secs(5);
    while p.log_text().matches("reconfigure rejected").count() < 5 {
        assert!(Instant::now() < deadline, "{}", p.log_text());
        std::thread::sleep(Duration::from_millis(20));
    }
    let logs = p.log_text();
    assert!(
        logs.contains("127.0.0.9"),
        "the failed peer is logged: {logs}"
    );
    assert!(!logs.contains(PASSWORD), "{logs}");
    assert!(!logs.contains(&key_line), "{logs}");
    assert!(!logs.contains("PRIVATE KEY-----\n"), "{logs}");
}
