//! Safe retries, passive health, the wait for a ready task and sticky sessions across churn,
//! with real backends on loopback addresses named in a hosts file.

use std::io::Read;
use std::net::{SocketAddr, TcpListener as StdTcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::{client, Backend, Proxy, TempDir};

/// A hosts file naming the tasks of services, rewritten by the test as tasks come and go.
struct Hosts {
    _dir: TempDir,
    path: PathBuf,
}

impl Hosts {
    fn new(entries: &[(&str, &str)]) -> Hosts {
        let dir = TempDir::new("resilience");
        let path = dir.0.join("hosts");
        let hosts = Hosts { _dir: dir, path };
        hosts.set(entries);
        hosts
    }

    /// `(ip, name)` lines.
    fn set(&self, entries: &[(&str, &str)]) {
        let text: String = entries
            .iter()
            .map(|(ip, name)| format!("{ip} {name}\n"))
            .collect();
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &self.path).unwrap();
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

fn proxy(hosts: &Hosts, env: &[(&str, &str)]) -> Proxy {
    let mut builder = Proxy::builder().env("HOSTS_FILE", hosts.path().to_str().unwrap());
    for (k, v) in env {
        builder = builder.env(k, v);
    }
    builder.start()
}

fn add(p: &Proxy, query: &str) {
    let r = p.reconfigure(query);
    assert_eq!(r.status, 200, "{}", r.body);
}

/// A task that reads a request and closes the connection without answering; counts them.
fn closing_task(addr: SocketAddr) -> Arc<AtomicUsize> {
    let listener = StdTcpListener::bind(addr).unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 4096];
            if stream.read(&mut buf).unwrap_or(0) > 0 {
                seen.fetch_add(1, Ordering::SeqCst);
            }
            drop(stream);
        }
    });
    count
}

/// The value of one sample of the proxy's `/metrics` (`None` when absent).
fn metric(p: &Proxy, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let text = client()
        .get(format!("http://{}/metrics", p.api))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => *v,
            other => panic!("{name} is {other:?}"),
        })
}

/// Polls `check` every 50 ms for up to `within`.
fn eventually(within: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_get_whose_connection_closes_before_an_answer_is_retried_on_another_task() {
    let good = Backend::start_at("good", "127.0.10.2:0".parse().unwrap());
    let port = good.port();
    let closes = closing_task(format!("127.0.10.1:{port}").parse().unwrap());
    let hosts = Hosts::new(&[
        ("127.0.10.1", "tasks.resets"),
        ("127.0.10.2", "tasks.resets"),
    ]);
    let p = proxy(&hosts, &[]);
    add(
        &p,
        &format!("serviceName=resets&servicePath=/r&port={port}"),
    );
    for _ in 0..6 {
        let r = p.get("/r/x", &[]);
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.header("x-backend"), Some("good"));
    }
    assert!(
        closes.load(Ordering::SeqCst) > 0,
        "the closing task got no request"
    );
}

#[test]
fn a_post_that_was_sent_is_not_retried() {
    let good = Backend::start_at("good", "127.0.10.4:0".parse().unwrap());
    let port = good.port();
    let closes = closing_task(format!("127.0.10.3:{port}").parse().unwrap());
    let hosts = Hosts::new(&[("127.0.10.3", "tasks.posts"), ("127.0.10.4", "tasks.posts")]);
    let p = proxy(&hosts, &[]);
    add(&p, &format!("serviceName=posts&servicePath=/p&port={port}"));
    let (mut ok, mut broken) = (0, 0);
    for _ in 0..6 {
        let r = client()
            .post(format!("http://{}/p/x", p.http[0]))
            .body("payload")
            .send()
            .unwrap();
        match r.status().as_u16() {
            200 => ok += 1,
            502 => broken += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert!(broken > 0, "no POST reached the closing task");
    // Each POST that reached the closing task went nowhere else.
    assert_eq!(closes.load(Ordering::SeqCst), broken);
    assert_eq!(good.hit_count(), ok);
}

#[test]
fn a_refusing_task_is_ejected_and_readmitted_when_it_comes_back() {
    let good = Backend::start_at("good", "127.0.10.6:0".parse().unwrap());
    let port = good.port();
    let gone: SocketAddr = format!("127.0.10.5:{port}").parse().unwrap();
    let hosts = Hosts::new(&[
        ("127.0.10.5", "tasks.ejects"),
        ("127.0.10.6", "tasks.ejects"),
    ]);
    let p = proxy(&hosts, &[("STATS_USER", "none"), ("STATS_PASS", "none")]);
    add(
        &p,
        &format!("serviceName=ejects&servicePath=/e&port={port}"),
    );
    for _ in 0..8 {
        assert_eq!(p.get("/e/x", &[]).status, 200);
    }
    let address = gone.to_string();
    let ejected = [("service", "ejects"), ("address", address.as_str())];
    assert_eq!(metric(&p, "sluice_upstream_ejected", &ejected), Some(1.0));
    assert_eq!(
        metric(
            &p,
            "sluice_upstream_ejections_total",
            &[("service", "ejects")]
        ),
        Some(1.0)
    );
    // The statistics page shows it too.
    let report = p.get("/admin?stats;json", &[]).json();
    let upstreams = report["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["service"] == "ejects")
        .map(|d| d["upstreams"].clone())
        .unwrap();
    let health = upstreams
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["address"] == address.as_str())
        .map(|u| u["health"].clone());
    assert_eq!(health, Some(serde_json::json!("ejected")), "{upstreams}");
    // Back: its probe re-admits it, and it gets requests again.
    let back = Backend::start_at("back", gone);
    eventually(Duration::from_secs(10), "the task came back", || {
        assert_eq!(p.get("/e/x", &[]).status, 200);
        back.hit_count() > 0
    });
    assert_eq!(metric(&p, "sluice_upstream_ejected", &ejected), Some(0.0));
}

/// A listening socket whose accept queue is full: further SYNs are dropped, so connects to
/// it hang until their timeout (a task on a node that is gone). Kept open by the returned
/// values.
fn blackhole(
    addr: SocketAddr,
) -> (
    tokio::runtime::Runtime,
    tokio::net::TcpListener,
    Vec<TcpStream>,
) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _enter = rt.enter();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(addr).unwrap();
    let listener = socket.listen(0).unwrap();
    let mut fillers = Vec::new();
    for _ in 0..4 {
        if let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
            fillers.push(s);
        }
    }
    let probe = TcpStream::connect_timeout(&addr, Duration::from_millis(500));
    assert!(probe.is_err(), "the blackhole still accepts connections");
    (rt, listener, fillers)
}

#[test]
fn a_dead_task_costs_no_request_the_connect_timeout() {
    let good = Backend::start_at("good", "127.0.10.8:0".parse().unwrap());
    let port = good.port();
    let dead: SocketAddr = format!("127.0.10.7:{port}").parse().unwrap();
    let _dead = blackhole(dead);
    let hosts = Hosts::new(&[
        ("127.0.10.7", "tasks.deadnode"),
        ("127.0.10.8", "tasks.deadnode"),
    ]);
    let connect_timeout = Duration::from_secs(2);
    let p = proxy(&hosts, &[("TIMEOUT_CONNECT", "2")]);
    add(
        &p,
        &format!("serviceName=deadnode&servicePath=/d&port={port}"),
    );
    let mut times = Vec::new();
    for _ in 0..20 {
        let started = Instant::now();
        let r = p.get("/d/x", &[]);
        assert_eq!(r.status, 200, "{}", r.body);
        times.push(started.elapsed());
    }
    eprintln!("request times with a dead task: {times:?}");
    // A connect that has not answered within 200 ms is raced to the other task.
    let slowest = times.iter().max().unwrap();
    assert!(*slowest < connect_timeout, "a request took {slowest:?}");
    assert!(
        times.iter().any(|t| *t >= Duration::from_millis(200)),
        "no request went to the dead task first"
    );
    // The raced connects time out in the background and eject the dead task.
    let address = dead.to_string();
    let ejected = [("service", "deadnode"), ("address", address.as_str())];
    eventually(Duration::from_secs(10), "the dead task is ejected", || {
        p.get("/d/x", &[]);
        metric(&p, "sluice_upstream_ejected", &ejected) == Some(1.0)
    });
}

#[test]
fn a_service_without_tasks_waits_for_one_then_answers_503_with_retry_after() {
    let first = Backend::start_at("first", "127.0.10.9:0".parse().unwrap());
    let port = first.port();
    let hosts = Hosts::new(&[("127.0.10.9", "tasks.waits")]);
    let p = proxy(&hosts, &[("TIMEOUT_QUEUE", "3")]);
    add(&p, &format!("serviceName=waits&servicePath=/w&port={port}"));
    assert_eq!(p.get("/w/x", &[]).status, 200);
    // Its only task goes away (a one-replica stop-first update).
    hosts.set(&[]);
    drop(first);
    // Until the name cache lets go of the old address, the request fails at once (refused);
    // then it waits its TIMEOUT_QUEUE for a task.
    let mut waited = None;
    eventually(Duration::from_secs(20), "a request waited", || {
        let started = Instant::now();
        let r = p.get("/w/x", &[]);
        assert_eq!(r.status, 503, "{}", r.body);
        assert_eq!(r.header("retry-after"), Some("1"));
        let took = started.elapsed();
        if took >= Duration::from_secs(3) {
            waited = Some(took);
        }
        waited.is_some()
    });
    let waited = waited.unwrap();
    assert!(waited < Duration::from_secs(6), "waited {waited:?}");
    // A task that appears during the wait gets the waiting request.
    let asked = {
        let url = format!("http://{}/w/x", p.http[0]);
        std::thread::spawn(move || {
            let started = Instant::now();
            let r = client().get(url).send().unwrap();
            (r.status().as_u16(), started.elapsed())
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let second = Backend::start_at("second", format!("127.0.10.10:{port}").parse().unwrap());
    hosts.set(&[("127.0.10.10", "tasks.waits")]);
    let (status, took) = asked.join().unwrap();
    assert_eq!(status, 200);
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert_eq!(second.hit_count(), 1);
}

#[test]
fn a_name_that_never_resolved_is_a_503_at_once() {
    let hosts = Hosts::new(&[]);
    let p = proxy(&hosts, &[("TIMEOUT_QUEUE", "10")]);
    add(&p, "serviceName=never-there&servicePath=/n&port=80");
    let started = Instant::now();
    assert_eq!(p.get("/n", &[]).status, 503);
    assert!(started.elapsed() < Duration::from_secs(5));
}

fn sticky_cookie(r: &crate::support::Reply, service: &str) -> Option<String> {
    r.headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            let pair = v.split(';').next()?;
            pair.starts_with(&format!("{service}="))
                .then(|| pair.to_string())
        })
}

#[test]
fn a_sticky_cookie_survives_a_new_task_and_moves_when_its_task_is_gone() {
    let a = Backend::start_at("a", "127.0.10.12:0".parse().unwrap());
    let port = a.port();
    let b = Backend::start_at("b", format!("127.0.10.13:{port}").parse().unwrap());
    let hosts = Hosts::new(&[
        ("127.0.10.12", "tasks.sticky"),
        ("127.0.10.13", "tasks.sticky"),
    ]);
    let p = proxy(&hosts, &[]);
    add(
        &p,
        &format!("serviceName=sticky&servicePath=/s&port={port}&sessionType=sticky-server"),
    );
    // Stick to b (the second address in order).
    let (cookie, stuck) = loop {
        let r = p.get("/s/x", &[]);
        let cookie = sticky_cookie(&r, "sticky").expect("a new client gets a cookie");
        assert!(!cookie.contains("127.0"), "{cookie}");
        if r.header("x-backend") == Some("b") {
            break (cookie, "b");
        }
    };
    let with_cookie = |p: &Proxy| p.get("/s/x", &[("cookie", cookie.as_str())]);
    for _ in 0..6 {
        let r = with_cookie(&p);
        assert_eq!(r.header("x-backend"), Some(stuck));
        assert_eq!(sticky_cookie(&r, "sticky"), None, "the cookie is kept");
    }
    // A new task sorts first: b's position in the list changes, its cookie does not.
    let c = Backend::start_at("c", format!("127.0.10.11:{port}").parse().unwrap());
    hosts.set(&[
        ("127.0.10.11", "tasks.sticky"),
        ("127.0.10.12", "tasks.sticky"),
        ("127.0.10.13", "tasks.sticky"),
    ]);
    eventually(Duration::from_secs(10), "the new task is used", || {
        p.get("/s/x", &[]);
        c.hit_count() > 0
    });
    for _ in 0..6 {
        assert_eq!(with_cookie(&p).header("x-backend"), Some(stuck));
    }
    // b goes away: the client moves to another task and gets a new cookie.
    hosts.set(&[
        ("127.0.10.11", "tasks.sticky"),
        ("127.0.10.12", "tasks.sticky"),
    ]);
    drop(b);
    let moved = with_cookie(&p);
    assert_eq!(moved.status, 200, "{}", moved.body);
    let to = moved.header("x-backend").unwrap().to_string();
    assert_ne!(to, stuck);
    let new_cookie = sticky_cookie(&moved, "sticky").expect("a moved client gets a new cookie");
    assert_ne!(new_cookie, cookie);
    for _ in 0..4 {
        let r = p.get("/s/x", &[("cookie", new_cookie.as_str())]);
        assert_eq!(r.header("x-backend"), Some(to.as_str()));
    }
    // A cookie that names no task (an old index cookie, say) gets normal balancing.
    let r = p.get("/s/x", &[("cookie", "sticky=sticky_1")]);
    assert_eq!(r.status, 200);
    assert!(sticky_cookie(&r, "sticky").is_some());
}
