//! Task membership pushed by the listener (`PUT /v1/sluice/tasks`): routing to ready tasks
//! without DNS, draining, tunnel drain deadlines, and refused bodies.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{client, replica_set, Backend, Proxy, TempDir};

/// `PUT /v1/sluice/tasks` with `body`; (status, response body).
fn put_tasks(p: &Proxy, body: &str, auth: Option<(&str, &str)>) -> (u16, String) {
    put_tasks_to(p, "", body, auth)
}

fn put_tasks_to(p: &Proxy, query: &str, body: &str, auth: Option<(&str, &str)>) -> (u16, String) {
    let mut req = client()
        .put(format!("http://{}/v1/sluice/tasks{query}", p.api))
        .body(body.to_owned());
    if let Some((user, pass)) = auth {
        req = req.basic_auth(user, Some(pass));
    }
    let resp = req.send().unwrap();
    let status = resp.status().as_u16();
    (status, resp.text().unwrap_or_default())
}

fn get_tasks(p: &Proxy) -> Value {
    let resp = client()
        .get(format!("http://{}/v1/sluice/tasks", p.api))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    resp.json().unwrap()
}

/// A task of `ma-web` as the listener sends it.
fn task(id: &str, ip: &str, state: &str, desired: &str) -> Value {
    json!({"id": id, "addresses": [format!("{ip}/8")], "state": state, "desiredState": desired})
}

fn membership(tasks: Vec<Value>) -> String {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    json!({"services": {"ma-web": {"observedAtMs": now_ms, "version": 1, "tasks": tasks}}})
        .to_string()
}

/// Two backends on one port at 127.0.0.2 and 127.0.0.3; `ma-web` has no DNS entry at all.
fn setup(extra: &str) -> (Proxy, Backend, Backend) {
    let a = Backend::start_at("task-a", "127.0.0.2:0".parse().unwrap());
    let port = a.port();
    let b = Backend::start_at("task-b", format!("127.0.0.3:{port}").parse().unwrap());
    let p = Proxy::start();
    let r = p.reconfigure(&format!(
        "serviceName=ma-web&servicePath=/m&port={port}{extra}"
    ));
    assert_eq!(r.status, 200, "{}", r.body);
    (p, a, b)
}

/// Pushes `ma-web` with task a ready (127.0.0.2) and task b still starting (127.0.0.3).
fn push_a_ready_b_starting(p: &Proxy) {
    let (status, body) = put_tasks(
        p,
        &membership(vec![
            task("a", "127.0.0.2", "running", "running"),
            task("b", "127.0.0.3", "starting", "running"),
        ]),
        None,
    );
    assert_eq!(status, 200, "{body}");
}

#[test]
fn routes_to_the_pushed_ready_tasks_without_dns() {
    let (p, a, b) = setup("");
    // Without a membership the name is looked up, and there is none.
    assert_eq!(p.get("/m/x", &[]).status, 503);
    let (status, body) = put_tasks(
        &p,
        &membership(vec![
            task("a", "127.0.0.2", "running", "running"),
            task("b", "127.0.0.3", "running", "running"),
            // Starting (a HEALTHCHECK not yet healthy): not ready.
            task("c", "127.0.0.4", "starting", "running"),
        ]),
        None,
    );
    assert_eq!(status, 200, "{body}");
    for _ in 0..20 {
        let r = p.get("/m/x", &[]);
        assert_eq!(r.status, 200, "{}", r.body);
    }
    assert!(
        a.hit_count() >= 5 && b.hit_count() >= 5,
        "{} {}",
        a.hit_count(),
        b.hit_count()
    );
    let held = get_tasks(&p);
    assert_eq!(
        held["membership"]["services"]["ma-web"]["tasks"][2]["id"],
        "c"
    );

    // The propagation of the new service is in /metrics.
    let metrics = client()
        .get(format!("http://{}/metrics", p.api))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains("sluice_propagation_seconds_count{kind=\"create\"} 1"),
        "{metrics}"
    );
}

#[test]
fn a_draining_task_gets_no_new_request_and_finishes_its_own() {
    let (p, a, b) = setup("");
    push_a_ready_b_starting(&p);
    // A slow request (4 s) in flight on task a.
    let http = p.http[0];
    let slow = std::thread::spawn(move || {
        let r = client()
            .get(format!("http://{http}/m/slow"))
            .send()
            .unwrap();
        (
            r.status().as_u16(),
            r.headers()["x-backend"].to_str().unwrap().to_owned(),
        )
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    while a.hit_count() == 0 {
        assert!(
            Instant::now() < deadline,
            "the slow request never reached task a"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // Swarm tells a to stop; b is running.
    let (status, body) = put_tasks(
        &p,
        &membership(vec![
            task("a", "127.0.0.2", "running", "shutdown"),
            task("b", "127.0.0.3", "running", "running"),
        ]),
        None,
    );
    assert_eq!(status, 200, "{body}");
    for _ in 0..10 {
        let r = p.get("/m/x", &[]);
        assert_eq!(r.header("x-backend"), Some("task-b"), "{}", r.body);
    }
    assert_eq!(
        a.hit_count(),
        1,
        "only the slow request went to the draining task"
    );
    assert_eq!(slow.join().unwrap(), (200, "task-a".to_owned()));
    assert!(b.hit_count() >= 10);
    let held = get_tasks(&p);
    assert_eq!(
        held["membership"]["services"]["ma-web"]["tasks"][0]["desiredState"],
        "shutdown"
    );
}

/// Opens an `Upgrade: echo` tunnel through the proxy and checks it echoes.
fn open_tunnel(http: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(http).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /m/ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).unwrap(), 1, "closed during the handshake");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(echoes(&mut s), "a fresh tunnel echoes");
    s
}

/// Whether the tunnel still carries bytes both ways.
fn echoes(s: &mut TcpStream) -> bool {
    if s.write_all(b"ping").is_err() {
        return false;
    }
    let mut got = [0u8; 4];
    s.read_exact(&mut got).is_ok() && &got == b"ping"
}

#[test]
fn a_tunnel_to_a_draining_task_closes_at_the_deadline_and_not_before() {
    let (p, _a, _b) = setup("&drainTimeout=2");
    let (status, body) = put_tasks(
        &p,
        &membership(vec![task("a", "127.0.0.2", "running", "running")]),
        None,
    );
    assert_eq!(status, 200, "{body}");
    let mut tunnel = open_tunnel(p.http[0]);
    let (status, body) = put_tasks(
        &p,
        &membership(vec![task("a", "127.0.0.2", "running", "shutdown")]),
        None,
    );
    assert_eq!(status, 200, "{body}");
    let drained_at = Instant::now();
    std::thread::sleep(Duration::from_millis(1_000));
    assert!(echoes(&mut tunnel), "open before the 2 s deadline");
    // Closed within a bound after the deadline.
    let mut closed = None;
    while drained_at.elapsed() < Duration::from_secs(8) {
        if !echoes(&mut tunnel) {
            closed = Some(drained_at.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let closed = closed.expect("the tunnel stayed open past its drain deadline");
    assert!(
        closed >= Duration::from_millis(1_900),
        "closed after {closed:?}"
    );
}

#[test]
fn a_bad_body_is_refused_naming_the_field_and_changes_nothing() {
    let (p, a, _b) = setup("");
    let good = membership(vec![task("a", "127.0.0.2", "running", "running")]);
    assert_eq!(put_tasks(&p, &good, None).0, 200);
    let before = get_tasks(&p);
    let bad = good.replace("127.0.0.2/8", "not-an-ip");
    let (status, body) = put_tasks(&p, &bad, None);
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("services.ma-web.tasks[0].addresses[0]"),
        "{body}"
    );
    let (status, body) = put_tasks(&p, r#"{"services":{"ma-web":{"tasks":[]}}}"#, None);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("observedAtMs"), "{body}");
    assert_eq!(get_tasks(&p), before);
    assert_eq!(p.get("/m/x", &[]).header("x-backend"), Some("task-a"));
    assert!(a.hit_count() >= 1);

    // A bad drainTimeout is refused by reconfigure, naming it.
    let r = p.reconfigure("serviceName=ma-web&servicePath=/m&port=80&drainTimeout=10s");
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("drainTimeout"), "{}", r.body);
}

#[test]
fn the_endpoint_needs_the_api_credentials() {
    let p = Proxy::builder()
        .env("API_USER", "ma-user")
        .env("API_PASS", "ma-pass")
        .start();
    let body = membership(vec![]);
    assert_eq!(put_tasks(&p, &body, None).0, 401);
    assert_eq!(put_tasks(&p, &body, Some(("ma-user", "ma-pass"))).0, 200);
}

#[test]
fn distribute_sends_the_task_sets_to_every_replica() {
    let dir = TempDir::new("ma-tasks");
    let ([a, b], _hosts) = replica_set(&dir, "ma-proxy", ["127.0.0.7", "127.0.0.8"]);
    let body = membership(vec![task("a", "127.0.0.2", "running", "running")]);
    let (status, text) = put_tasks_to(&a, "?distribute=true", &body, None);
    assert_eq!(status, 200, "{text}");
    assert!(
        text.contains("Distributed to all instances (1 peers)"),
        "{text}"
    );
    assert_eq!(get_tasks(&a)["membership"], get_tasks(&b)["membership"]);
    assert_eq!(
        get_tasks(&b)["membership"]["services"]["ma-web"]["tasks"][0]["id"],
        "a"
    );
}

#[test]
fn explain_shows_the_ready_tasks_the_data_plane_uses() {
    let (p, _a, _b) = setup("");
    push_a_ready_b_starting(&p);
    let url = reqwest::Url::parse_with_params(
        &format!("http://{}/v1/sluice/explain", p.api),
        &[("url", "/m/x")],
    )
    .unwrap();
    let body: Value = client().get(url).send().unwrap().json().unwrap();
    let upstream = &body["route"]["upstream"];
    assert_eq!(upstream["state"], "tasks", "{body}");
    assert_eq!(upstream["addresses"], json!(["127.0.0.2"]), "{body}");
    assert_eq!(upstream["ejected"], json!([]), "{body}");
}
