//! State across restarts, env-defined services, and startup errors.

use crate::support::{Backend, Proxy, TempDir};

#[test]
fn restart_keeps_routes() {
    let dir = TempDir::new("state");
    let b = Backend::start("b");
    let p = Proxy::builder().data_dir(&dir.0).start();
    let r = p.reconfigure(&format!(
        "serviceName=keep&servicePath=/keep&port={}&outboundHostname=127.0.0.1",
        b.port()
    ));
    assert_eq!(r.status, 200);
    let status = p.terminate();
    assert!(status.success(), "{status}");
    let p = Proxy::builder().data_dir(&dir.0).start();
    assert_eq!(p.get("/keep/x", &[]).status, 200);
    assert!(p.api("config", "type=json").json()["keep"].is_object());
}

#[test]
fn env_defined_services_are_live_at_startup() {
    let b = Backend::start("env");
    let port = b.port().to_string();
    let p = Proxy::builder()
        .env("DFP_SERVICE_1_SERVICE_NAME", "go-demo-api")
        .env("DFP_SERVICE_1_SERVICE_PATH", "/demo")
        .env("DFP_SERVICE_1_PORT", &port)
        .env("DFP_SERVICE_1_OUTBOUND_HOSTNAME", "127.0.0.1")
        .start();
    assert_eq!(p.get("/demo/hello", &[]).header("x-backend"), Some("env"));
}

#[test]
fn bad_settings_name_the_variable() {
    let err = Proxy::builder()
        .env("TIMEOUT_SERVER", "soon")
        .try_start()
        .err()
        .expect("must not start");
    assert!(err.contains("TIMEOUT_SERVER"), "{err}");
    assert!(err.contains("soon"), "{err}");
}
