use super::retry::{idempotent, may_retry};
use super::*;
use crate::names::SystemLookup;
use bytes::Bytes;
use http::Method;
use hyper::body::Body;

fn upstreams() -> Rc<Upstreams> {
    let names = Names::on(
        Arc::new(SystemLookup::default()),
        tokio::runtime::Handle::current(),
    );
    let shared = SharedUpstreams {
        names,
        membership: crate::membership::MembershipCell::new(),
        limits: Arc::default(),
        health: Arc::default(),
        queue_timeout: Duration::from_secs(1),
    };
    Upstreams::new(Duration::from_secs(1), shared)
}

fn target(host: &str) -> Target<'_> {
    Target {
        host,
        tasks_first: true,
        tls: false,
        max_conn: None,
    }
}

#[tokio::test(flavor = "current_thread")]
async fn ip_literals_are_not_looked_up() {
    let up = upstreams();
    let (addrs, _) = up.addresses(target("127.0.0.1")).await.unwrap();
    assert_eq!(&*addrs, &["127.0.0.1".parse::<IpAddr>().unwrap()]);
    assert!(up.names.is_empty());
}

#[tokio::test(flavor = "current_thread")]
async fn localhost_resolves_through_the_system_resolver() {
    let up = upstreams();
    let (addrs, _) = up.addresses(target("localhost")).await.unwrap();
    assert!(addrs.iter().any(|a| a.is_loopback()));
}

#[tokio::test(flavor = "current_thread")]
async fn unknown_names_are_a_resolve_error() {
    let up = upstreams();
    let err = up
        .addresses(target("no-such-service.invalid"))
        .await
        .unwrap_err();
    assert!(matches!(err, SendError::Resolve { .. }));
}

#[test]
fn idempotent_methods_are_those_of_rfc_9110() {
    for m in ["GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"] {
        assert!(idempotent(&m.parse().unwrap()), "{m}");
    }
    for m in ["POST", "PATCH", "CONNECT", "PURGE"] {
        assert!(!idempotent(&m.parse().unwrap()), "{m}");
    }
}

#[test]
fn retry_rules() {
    // Nothing was sent: any request may go to another address.
    assert!(may_retry(Outcome::NotConnected, false));
    assert!(may_retry(Outcome::NotSent, false));
    // Reset after sending: only a request that can be rebuilt.
    assert!(may_retry(Outcome::Reset, true));
    assert!(!may_retry(Outcome::Reset, false));
    // The upstream may be working on it, or answered garbage: never.
    assert!(!may_retry(Outcome::TimedOut, true));
    assert!(!may_retry(Outcome::Invalid, true));
}

#[test]
fn only_idempotent_requests_without_a_body_are_kept_for_a_replay() {
    let get = Request::get("/a?b")
        .header("x-a", "1")
        .body(Outgoing::Empty)
        .unwrap();
    let replay = Replay::of(&get).expect("a GET without a body is replayable");
    let again = replay.rebuild();
    assert_eq!(again.method(), Method::GET);
    assert_eq!(again.uri(), "/a?b");
    assert_eq!(again.headers()["x-a"], "1");
    assert!(again.body().is_end_stream());
    let post = Request::post("/a").body(Outgoing::Empty).unwrap();
    assert!(Replay::of(&post).is_none());
    let put_with_body = Request::put("/a")
        .body(http_body_util::Full::new(Bytes::from_static(b"x")))
        .unwrap();
    assert!(Replay::of(&put_with_body).is_none());
}

#[test]
fn sticky_tokens_are_stable_and_hide_the_address() {
    let a: IpAddr = "10.0.1.7".parse().unwrap();
    let b: IpAddr = "10.0.1.8".parse().unwrap();
    assert_eq!(sticky_token(a), sticky_token(a));
    assert_ne!(sticky_token(a), sticky_token(b));
    assert_eq!(sticky_token(a).len(), 12);
    assert!(!sticky_token(a).contains("10"));
}

fn ips(n: u8) -> Vec<IpAddr> {
    (1..=n).map(|i| IpAddr::from([127, 0, 0, i])).collect()
}

fn tries(plan: Plan) -> Vec<SocketAddr> {
    plan.tries
}

#[tokio::test(start_paused = true)]
async fn plans_skip_ejected_addresses_and_put_the_sticky_task_first() {
    let up = upstreams();
    let addrs = ips(4);
    let at = |i: usize| SocketAddr::new(addrs[i], 80);
    assert_eq!(
        tries(up.plan(&addrs, 1, 80, None)),
        vec![at(1), at(2), at(3)]
    );
    for _ in 0..crate::health::EJECT_AFTER {
        up.health.failed(at(2), Fault::Refused);
    }
    assert_eq!(
        tries(up.plan(&addrs, 1, 80, None)),
        vec![at(1), at(3), at(0)]
    );
    let token = sticky_token(addrs[3]);
    assert_eq!(
        tries(up.plan(&addrs, 0, 80, Some(&token))),
        vec![at(3), at(0), at(1)]
    );
    // A sticky task that is ejected is not chosen; nor is an unknown token.
    let token = sticky_token(addrs[2]);
    assert_eq!(
        tries(up.plan(&addrs, 0, 80, Some(&token))),
        vec![at(0), at(1), at(3)]
    );
    assert_eq!(
        tries(up.plan(&addrs, 0, 80, Some("nope"))),
        vec![at(0), at(1), at(3)]
    );
}

#[tokio::test(start_paused = true)]
async fn when_every_address_is_ejected_the_oldest_ejection_goes_first() {
    let up = upstreams();
    let addrs = ips(3);
    let at = |i: usize| SocketAddr::new(addrs[i], 80);
    for i in [2, 0, 1] {
        for _ in 0..crate::health::EJECT_AFTER {
            up.health.failed(at(i), Fault::Refused);
        }
        tokio::time::advance(Duration::from_millis(10)).await;
    }
    let plan = up.plan(&addrs, 0, 80, None);
    assert_eq!(plan.tries, vec![at(2), at(0), at(1)]);
    assert!(plan.probes.is_empty());
    // Once a backoff is over, the address is probed, by one request only.
    tokio::time::advance(crate::health::FIRST_BACKOFF - Duration::from_millis(25)).await;
    let plan = up.plan(&addrs, 0, 80, None);
    assert_eq!(plan.probes, vec![at(2)]);
    assert_eq!(plan.tries, vec![at(2), at(0), at(1)]);
    assert!(up.plan(&addrs, 0, 80, None).probes.is_empty());
}

/// Waits (bounded) until `addr`'s ejection is `ejected`.
async fn ejection_becomes(up: &Upstreams, addr: SocketAddr, ejected: bool) {
    for _ in 0..300 {
        if up.health.report(addr).ejected == ejected {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{addr} did not become ejected={ejected}");
}

#[tokio::test(flavor = "current_thread")]
async fn a_probe_that_connects_readmits_the_address() {
    let up = upstreams();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let live = listener.local_addr().unwrap();
    for _ in 0..crate::health::EJECT_AFTER {
        up.health.failed(live, Fault::Refused);
    }
    assert!(up.health.report(live).ejected);
    up.probe(live);
    ejection_becomes(&up, live, false).await;
}
