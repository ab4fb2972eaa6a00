//! Basic authentication, secrets and control-API protection, against the real binary: the
//! seed's "Basic Authentication" walkthrough plus every rule of `docs/auth-stats.md`.

use crate::support::{
    basic_auth as basic, echoed_headers, go_demo_with as go_demo, raw_request, Backend, Proxy,
    TempDir,
};

/// `mkpasswd -m sha-512 password`, from the seed walkthrough.
const SEED_HASH: &str = "$6$F2eJJA.G$BfoxX38MoNS10tywEzQZVDZOAjJn9wyTZJecYg.CymjwE8Rgm7xJn0KG3faT36GZbOtrsu4ba.vhsnHrPCNAa0";

fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn global_users_seed_walkthrough() {
    let p = Proxy::builder().env("USERS", "my-user:my-pass").start();
    let b = Backend::start("go-demo");
    go_demo(&p, &b, "");
    let r = p.get("/demo/hello", &[]);
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Basic realm=\"defaultRealm\"")
    );
    assert_eq!(r.header("content-type"), Some("text/html"));
    assert_eq!(r.header("cache-control"), Some("no-cache"));
    assert!(r.body.contains("401 Unauthorized"), "{}", r.body);
    assert_eq!(b.hit_count(), 0, "nothing reached the backend");

    let auth = basic("my-user", "my-pass");
    let r = p.get("/demo/hello", &[("authorization", &auth)]);
    assert_eq!(r.status, 200, "{}", r.body);
    let seen = echoed_headers(&r.body);
    assert!(
        !seen.contains_key("authorization"),
        "the checked Authorization header is not forwarded: {seen:?}"
    );
    let wrong = basic("my-user", "nope");
    assert_eq!(
        p.get("/demo/hello", &[("authorization", &wrong)]).status,
        401
    );
}

#[test]
fn several_global_users_separated_by_commas() {
    let p = Proxy::builder()
        .env("USERS", "my-user-1:my-pass-1,my-user-2:my-pass-2")
        .start();
    let b = Backend::start("go-demo");
    go_demo(&p, &b, "");
    for (u, pw) in [("my-user-1", "my-pass-1"), ("my-user-2", "my-pass-2")] {
        let auth = basic(u, pw);
        assert_eq!(
            p.get("/demo/hello", &[("authorization", &auth)]).status,
            200
        );
    }
    let crossed = basic("my-user-1", "my-pass-2");
    assert_eq!(
        p.get("/demo/hello", &[("authorization", &crossed)]).status,
        401
    );
}

#[test]
fn service_users_override_the_global_ones() {
    let p = Proxy::builder().env("USERS", "global:gpass").start();
    let b = Backend::start("go-demo");
    go_demo(&p, &b, "&users=admin:password");
    let r = p.get("/demo/hello", &[]);
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Basic realm=\"go-demoRealm\"")
    );
    let admin = basic("admin", "password");
    assert_eq!(
        p.get("/demo/hello", &[("authorization", &admin)]).status,
        200
    );
    let global = basic("global", "gpass");
    assert_eq!(
        p.get("/demo/hello", &[("authorization", &global)]).status,
        401,
        "service users replace the global ones for that service"
    );
    // Another service without users keeps the global protection.
    let r = p.reconfigure(&format!(
        "serviceName=other&servicePath=/other&port={}&outboundHostname=127.0.0.1",
        b.port()
    ));
    assert_eq!(r.status, 200);
    let r = p.get("/other", &[]);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Basic realm=\"defaultRealm\"")
    );
    assert_eq!(p.get("/other", &[("authorization", &global)]).status, 200);
    assert_eq!(p.get("/other", &[("authorization", &admin)]).status, 401);
}

#[test]
fn seed_sha512_hash_and_users_pass_encrypted() {
    let p = Proxy::start();
    let b = Backend::start("go-demo");
    go_demo(
        &p,
        &b,
        &format!("&usersPassEncrypted=true&users=admin:{}", encode(SEED_HASH)),
    );
    assert_eq!(p.get("/demo/hello", &[]).status, 401);
    let good = basic("admin", "password");
    assert_eq!(
        p.get("/demo/hello", &[("authorization", &good)]).status,
        200
    );
    // Again on the same connection pool: served from the verified-credentials memory.
    assert_eq!(
        p.get("/demo/hello", &[("authorization", &good)]).status,
        200
    );
    let hash_as_password = basic("admin", SEED_HASH);
    assert_eq!(
        p.get("/demo/hello", &[("authorization", &hash_as_password)])
            .status,
        401
    );
}

#[test]
fn users_secret_from_the_secrets_dir() {
    let secrets = TempDir::new("secrets");
    std::fs::write(
        secrets.0.join("dfp_users_monitoring"),
        format!("observer:{SEED_HASH}\n"),
    )
    .unwrap();
    let p = Proxy::builder()
        .env("SECRETS_DIR", secrets.0.to_str().unwrap())
        .start();
    let b = Backend::start("go-demo");
    go_demo(&p, &b, "&usersPassEncrypted=true&usersSecret=monitoring");
    let observer = basic("observer", "password");
    assert_eq!(p.get("/demo/hello", &[]).status, 401);
    assert_eq!(
        p.get("/demo/hello", &[("authorization", &observer)]).status,
        200
    );

    // A usersSecret whose file does not exist fails closed.
    let r = p.reconfigure(&format!(
        "serviceName=locked&servicePath=/locked&port={}&outboundHostname=127.0.0.1&usersSecret=absent",
        b.port()
    ));
    assert_eq!(r.status, 200);
    let r = p.get("/locked", &[("authorization", &observer)]);
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Basic realm=\"lockedRealm\"")
    );

    // The file appears later: /reload reads secrets again.
    std::fs::write(secrets.0.join("dfp_users_absent"), "late:comer\n").unwrap();
    assert_eq!(p.api("reload", "").status, 200);
    let late = basic("late", "comer");
    assert_eq!(p.get("/locked", &[("authorization", &late)]).status, 200);
}

#[test]
fn users_without_password_take_it_from_the_global_users() {
    let p = Proxy::builder()
        .env("USERS", "Observer:from-global")
        .start();
    let b = Backend::start("go-demo");
    go_demo(&p, &b, "&users=observer");
    let r = p.get(
        "/demo/hello",
        &[("authorization", &basic("observer", "from-global"))],
    );
    assert_eq!(r.status, 200);
}

#[test]
fn ignore_authorization_skips_global_and_service_users() {
    let p = Proxy::builder().env("USERS", "my-user:my-pass").start();
    let b = Backend::start("go-demo");
    let r = p.reconfigure(&format!(
        "serviceName=go-demo&users=admin:password&outboundHostname=127.0.0.1\
         &servicePath.1=/private&port.1={0}\
         &servicePath.2=/public&port.2={0}&ignoreAuthorization.2=true",
        b.port()
    ));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(p.get("/private", &[]).status, 401);
    let r = p.get("/public", &[]);
    assert_eq!(r.status, 200);
    // Without a check the client's header is passed on untouched.
    let r = p.get("/public", &[("authorization", "Bearer token")]);
    assert_eq!(
        echoed_headers(&r.body)
            .get("authorization")
            .map(String::as_str),
        Some("Bearer token")
    );
}

#[test]
fn malformed_authorization_headers_are_401_never_500() {
    let p = Proxy::builder().env("USERS", "my-user:my-pass").start();
    let b = Backend::start("go-demo");
    go_demo(&p, &b, "");
    let huge = format!("Basic {}", "QUFB".repeat(3000));
    for bad in [
        "Basic",
        "Basic ",
        "Basic !!!!",
        "Basic bm9jb2xvbg==",
        "Bearer bXktdXNlcjpteS1wYXNz",
        "basic=bXktdXNlcjpteS1wYXNz",
        huge.as_str(),
    ] {
        let r = p.get("/demo/hello", &[("authorization", bad)]);
        assert_eq!(r.status, 401, "{bad}");
    }
    // Non-UTF-8 bytes and a repeated header, sent raw.
    let addr = p.http[0];
    let raw = raw_request(
        addr,
        "GET /demo/hello HTTP/1.1\r\nHost: x\r\nAuthorization: Basic \u{ff}\u{fe}\r\nConnection: close\r\n\r\n",
    );
    assert!(raw.starts_with("HTTP/1.1 401"), "{raw}");
    let twice = format!(
        "GET /demo/hello HTTP/1.1\r\nHost: x\r\nAuthorization: {0}\r\nAuthorization: {0}\r\nConnection: close\r\n\r\n",
        basic("my-user", "my-pass")
    );
    assert!(raw_request(addr, &twice).starts_with("HTTP/1.1 401"));
    // The scheme is case-insensitive.
    let lower = basic("my-user", "my-pass").replacen("Basic", "bAsIc", 1);
    assert_eq!(
        p.get("/demo/hello", &[("authorization", &lower)]).status,
        200
    );
}

#[test]
fn deny_rules_answer_before_authentication() {
    let p = Proxy::builder().env("USERS", "my-user:my-pass").start();
    let b = Backend::start("go-demo");
    go_demo(&p, &b, "&deniedMethods=DELETE");
    let r = p.request_on("DELETE", p.http[0], "/demo/hello", &[]);
    assert_eq!(r.status, 403);
}

#[test]
fn secrets_override_environment_variables() {
    let secrets = TempDir::new("secrets");
    std::fs::write(secrets.0.join("dfp_users"), "secret-user:secret-pass\n").unwrap();
    std::fs::write(secrets.0.join("dfp_timeout_server"), "1\n").unwrap();
    let p = Proxy::builder()
        .env("SECRETS_DIR", secrets.0.to_str().unwrap())
        .env("USERS", "env-user:env-pass")
        .env("TIMEOUT_SERVER", "30")
        .start();
    let b = Backend::start("go-demo");
    go_demo(&p, &b, "");
    let secret = basic("secret-user", "secret-pass");
    assert_eq!(
        p.get("/demo/hello", &[("authorization", &secret)]).status,
        200
    );
    let env = basic("env-user", "env-pass");
    assert_eq!(p.get("/demo/hello", &[("authorization", &env)]).status, 401);
    // dfp_timeout_server=1 wins over TIMEOUT_SERVER=30: the 4 s backend times out.
    let started = std::time::Instant::now();
    let r = p.get("/demo/slow", &[("authorization", &secret)]);
    assert_eq!(r.status, 504);
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
}

#[test]
fn passwords_and_hashes_are_never_echoed() {
    let p = Proxy::start();
    let b = Backend::start("go-demo");
    let r = p.reconfigure(&format!(
        "serviceName=go-demo&servicePath=/demo&port={}&outboundHostname=127.0.0.1\
         &users=admin:s3cr3t-pw,hashed:{}&usersPassEncrypted=false",
        b.port(),
        encode(SEED_HASH)
    ));
    assert_eq!(r.status, 200);
    for body in [
        r.body,
        p.api("config", "type=json").body,
        p.api("config", "").body,
    ] {
        assert!(!body.contains("s3cr3t-pw"), "{body}");
        assert!(!body.contains("BfoxX38MoNS10tyw"), "{body}");
    }
    assert!(!p.log_text().contains("s3cr3t-pw"));
}

#[test]
fn api_credentials_protect_the_control_api() {
    let p = Proxy::builder()
        .env("API_USER", "ops")
        .env("API_PASS", "k3y")
        .start();
    let r = p.api("reconfigure", "serviceName=a&servicePath=/a&port=1");
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Basic realm=\"Sluice API\"")
    );
    assert_eq!(p.api("config", "").status, 401);
    assert_eq!(
        p.api("ping", "").status,
        200,
        "the liveness probe stays open"
    );
    let client = crate::support::client();
    let metrics = client
        .get(format!("http://{}/metrics", p.api))
        .send()
        .unwrap();
    assert_eq!(metrics.status(), 200, "Prometheus scrapes stay open");
    let ok = client
        .get(format!(
            "http://{}/v1/docker-flow-proxy/reconfigure?serviceName=a&servicePath=/a&port=1",
            p.api
        ))
        .header("authorization", basic("ops", "k3y"))
        .send()
        .unwrap();
    assert_eq!(ok.status(), 200);
    let wrong = client
        .get(format!("http://{}/v1/docker-flow-proxy/config", p.api))
        .header("authorization", basic("ops", "nope"))
        .send()
        .unwrap();
    assert_eq!(wrong.status(), 401);
}

#[test]
fn half_configured_api_credentials_stop_startup() {
    let err = match Proxy::builder().env("API_USER", "ops").try_start() {
        Ok(_) => panic!("started with API_USER but no API_PASS"),
        Err(e) => e,
    };
    assert!(err.contains("API_PASS"), "{err}");
}
