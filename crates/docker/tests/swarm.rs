//! End-to-end test against a real Docker Engine in swarm mode.
//!
//! Ignored by a plain `cargo test`; `scripts/e2e.sh` runs it after `docker swarm init` with
//! `cargo test -p sluice-docker --test swarm -- --ignored`, and then it fails if anything is
//! missing. Needs a local daemon on /var/run/docker.sock that is a swarm manager
//! (`docker swarm init --advertise-addr 127.0.0.1`) and the `docker` CLI. Nothing is
//! pulled: the test imports a tiny image built from the host's `sleep` binary as
//! `sluice-test/idle:latest`, and removes it (if it created it) and its service at the end,
//! even on failure.

// Test code: panicking on unexpected command or I/O failures is the point (house rules
// allow unwrap in tests; clippy only exempts `#[test]` functions, not their helpers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use axum::http::{StatusCode, Uri};
use axum::Router;
use sluice_docker::{ListenerSettings, SwarmListener};
use tokio::sync::mpsc;

const IMAGE: &str = "sluice-test/idle:latest";

/// Runs a command and returns stdout, panicking with stderr on failure.
fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} {args:?}: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn succeeds(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Removes what the test created, also when it panics.
struct Cleanup {
    services: Vec<String>,
    image_created: bool,
    dir: Option<PathBuf>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for service in &self.services {
            let _ = Command::new("docker")
                .args(["service", "rm", service])
                .output();
        }
        if self.image_created {
            // Tasks of a removed service keep the image busy for a moment.
            for _ in 0..30 {
                if succeeds("docker", &["image", "rm", IMAGE]) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        }
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Imports a FROM-scratch image holding the host's `sleep` and its shared libraries.
fn build_idle_image(cleanup: &mut Cleanup) {
    if succeeds("docker", &["image", "inspect", IMAGE]) {
        return;
    }
    let sleep = ["/usr/bin/sleep", "/bin/sleep"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("no sleep binary on the host");
    let root = std::env::temp_dir().join(format!("sluice-idle-image-{}", std::process::id()));
    cleanup.dir = Some(root.clone());
    let rootfs = root.join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    std::fs::copy(sleep, rootfs.join("bin/sleep")).unwrap();
    for line in run("ldd", &[sleep]).lines() {
        let lib = line
            .split_whitespace()
            .find(|w| w.starts_with('/'))
            .map(PathBuf::from);
        if let Some(lib) = lib {
            let dest = rootfs.join(lib.strip_prefix("/").unwrap());
            std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
            std::fs::copy(&lib, &dest).unwrap();
        }
    }
    let tar = root.join("rootfs.tar");
    run(
        "tar",
        &[
            "-C",
            rootfs.to_str().unwrap(),
            "-cf",
            tar.to_str().unwrap(),
            ".",
        ],
    );
    run(
        "docker",
        &[
            "import",
            "-c",
            r#"ENTRYPOINT ["/bin/sleep","infinity"]"#,
            tar.to_str().unwrap(),
            IMAGE,
        ],
    );
    cleanup.image_created = true;
}

/// One request seen by the mock proxy.
#[derive(Debug)]
struct Seen {
    at: Instant,
    path: String,
    params: BTreeMap<String, String>,
    query: String,
}

async fn mock_proxy() -> (std::net::SocketAddr, mpsc::UnboundedReceiver<Seen>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = Router::new().fallback(move |uri: Uri| {
        let tx = tx.clone();
        async move {
            let query = uri.query().unwrap_or("").to_owned();
            let params = query
                .split('&')
                .filter_map(|p| p.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            let _ = tx.send(Seen {
                at: Instant::now(),
                path: uri.path().to_owned(),
                params,
                query,
            });
            StatusCode::OK
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, rx)
}

/// Waits for the next notification about `service` on `path`, skipping other services.
async fn expect(
    rx: &mut mpsc::UnboundedReceiver<Seen>,
    service: &str,
    path: &str,
    deadline: Instant,
    what: &str,
) -> Seen {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let seen = tokio::time::timeout(left, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no {what} notification in time"))
            .expect("mock proxy stopped");
        if seen.params.get("serviceName").map(String::as_str) == Some(service) {
            assert_eq!(seen.path, path, "{what}: {seen:?}");
            return seen;
        }
    }
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: test\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// How long a notification may take after the Docker CLI returns. A bound for the test
/// to fail on, not a latency target (the latency is printed; it is far below this).
const NOTIFIED_WITHIN: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Docker Swarm; run by scripts/e2e.sh"]
async fn listener_follows_a_real_swarm() {
    let state = run("docker", &["info", "--format", "{{.Swarm.LocalNodeState}}"]);
    assert_eq!(
        state.trim(),
        "active",
        "this Docker daemon is not in a swarm; run `docker swarm init --advertise-addr 127.0.0.1`"
    );

    let name = format!("sluice-it-{}", std::process::id());
    let mut cleanup = Cleanup {
        services: vec![name.clone()],
        image_created: false,
        dir: None,
    };
    build_idle_image(&mut cleanup);

    let (proxy, mut seen) = mock_proxy().await;
    let vars: HashMap<String, String> = [
        (
            "DF_NOTIFY_CREATE_SERVICE_URL",
            format!("http://{proxy}/v1/docker-flow-proxy/reconfigure"),
        ),
        (
            "DF_NOTIFY_REMOVE_SERVICE_URL",
            format!("http://{proxy}/v1/docker-flow-proxy/remove"),
        ),
        ("DF_RETRY_INTERVAL", "1".to_owned()),
        ("SECRETS_DIR", "/nonexistent-sluice-secrets".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let settings = ListenerSettings::from_vars(&vars).unwrap();
    let listener = SwarmListener::new(settings).unwrap();
    let api = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api_addr = api.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(listener.run(api, async move {
        let _ = stop_rx.await;
    }));

    // The first listing is done once get-services answers 200.
    let (status, _) = http_get(api_addr, "/v1/docker-flow-swarm-listener/get-services").await;
    assert_eq!(status, 200, "get-services after start-up");

    // Create.
    let started = Instant::now();
    run(
        "docker",
        &[
            "service",
            "create",
            "--detach",
            "--no-resolve-image",
            "--name",
            &name,
            "--label",
            "com.df.notify=true",
            "--label",
            "com.df.servicePath=/demo",
            "--label",
            "com.df.port=8080",
            IMAGE,
        ],
    );
    let created = Instant::now();
    let create = expect(
        &mut seen,
        &name,
        "/v1/docker-flow-proxy/reconfigure",
        created + NOTIFIED_WITHIN,
        "create",
    )
    .await;
    assert_eq!(
        create.query,
        format!("distribute=true&port=8080&replicas=1&serviceName={name}&servicePath=%2Fdemo")
    );
    eprintln!(
        "create notification {:?} after the CLI returned ({:?} after it started)",
        create.at.saturating_duration_since(created),
        create.at.duration_since(started)
    );

    // Label change.
    run(
        "docker",
        &[
            "service",
            "update",
            "--detach",
            "--label-add",
            "com.df.servicePath=/other",
            &name,
        ],
    );
    let update = expect(
        &mut seen,
        &name,
        "/v1/docker-flow-proxy/reconfigure",
        Instant::now() + NOTIFIED_WITHIN,
        "label update",
    )
    .await;
    assert_eq!(update.params["servicePath"], "%2Fother");

    // Replica change.
    run(
        "docker",
        &["service", "update", "--detach", "--replicas", "2", &name],
    );
    let scaled = expect(
        &mut seen,
        &name,
        "/v1/docker-flow-proxy/reconfigure",
        Instant::now() + NOTIFIED_WITHIN,
        "scale",
    )
    .await;
    assert_eq!(scaled.params["replicas"], "2");

    // get-services reflects the current parameters.
    let (status, body) = http_get(api_addr, "/v1/docker-flow-swarm-listener/get-services").await;
    assert_eq!(status, 200);
    let services: Vec<BTreeMap<String, String>> = serde_json::from_str(&body).unwrap();
    let ours = services
        .iter()
        .find(|s| s.get("serviceName") == Some(&name))
        .unwrap_or_else(|| panic!("{name} missing from get-services: {body}"));
    assert_eq!(ours["servicePath"], "/other");
    assert_eq!(ours["replicas"], "2");

    // Losing the notify label removes it; getting it back creates it again.
    run(
        "docker",
        &[
            "service",
            "update",
            "--detach",
            "--label-rm",
            "com.df.notify",
            &name,
        ],
    );
    expect(
        &mut seen,
        &name,
        "/v1/docker-flow-proxy/remove",
        Instant::now() + NOTIFIED_WITHIN,
        "label removed",
    )
    .await;
    run(
        "docker",
        &[
            "service",
            "update",
            "--detach",
            "--label-add",
            "com.df.notify=true",
            &name,
        ],
    );
    expect(
        &mut seen,
        &name,
        "/v1/docker-flow-proxy/reconfigure",
        Instant::now() + NOTIFIED_WITHIN,
        "label restored",
    )
    .await;

    // Remove.
    run("docker", &["service", "rm", &name]);
    let removed = expect(
        &mut seen,
        &name,
        "/v1/docker-flow-proxy/remove",
        Instant::now() + NOTIFIED_WITHIN,
        "remove",
    )
    .await;
    assert_eq!(
        removed.query,
        format!("distribute=true&port=8080&serviceName={name}&servicePath=%2Fother")
    );
    cleanup.services.clear();

    // The mock proxy saw the request before the listener read its answer and counted it:
    // poll until the count is there.
    let counted = "sluice_listener_notifications_sent_total{kind=\"remove\"} 2";
    let deadline = Instant::now() + NOTIFIED_WITHIN;
    loop {
        let (status, metrics) = http_get(api_addr, "/metrics").await;
        assert_eq!(status, 200);
        if metrics.contains(counted) {
            break;
        }
        assert!(Instant::now() < deadline, "no {counted:?} in\n{metrics}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let _ = stop_tx.send(());
    tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .expect("listener did not stop")
        .unwrap()
        .unwrap();
    drop(cleanup);
}
