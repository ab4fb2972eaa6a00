use super::*;

fn task(id: &str, state: TaskState, desired: TaskState, addrs: &[&str]) -> Task {
    Task {
        id: id.to_owned(),
        addresses: addrs.iter().map(|a| a.parse().unwrap()).collect(),
        state,
        desired_state: desired,
    }
}

use TaskState::{Ended, Pending, Remove, Running, Shutdown};

fn set(version: u64, at: u64, tasks: Vec<Task>) -> TaskSet {
    TaskSet {
        observed_at_ms: at,
        version,
        tasks,
    }
}

fn membership(items: Vec<(&str, TaskSet)>) -> Membership {
    Membership {
        observed_at_ms: 500,
        services: items.into_iter().map(|(n, s)| (n.to_owned(), s)).collect(),
    }
}

#[test]
fn ready_needs_running_and_desired_running() {
    assert_eq!(task("a", Running, Running, &[]).phase(), Phase::Ready);
    // A HEALTHCHECK'ed task is `starting` (mapped to pending) until healthy.
    assert_eq!(task("a", Pending, Running, &[]).phase(), Phase::Out);
    assert_eq!(task("a", Running, Shutdown, &[]).phase(), Phase::Draining);
    assert_eq!(task("a", Running, Remove, &[]).phase(), Phase::Draining);
    assert_eq!(task("a", Shutdown, Shutdown, &[]).phase(), Phase::Out);
    assert_eq!(task("a", Ended, Shutdown, &[]).phase(), Phase::Out);
    assert_eq!(task("a", Pending, Shutdown, &[]).phase(), Phase::Out);
}

#[test]
fn docker_state_names_map() {
    assert_eq!(TaskState::from_docker("starting"), Some(Pending));
    assert_eq!(TaskState::from_docker("running"), Some(Running));
    assert_eq!(TaskState::from_docker("failed"), Some(Ended));
    assert_eq!(TaskState::from_docker("remove"), Some(Remove));
    assert_eq!(TaskState::from_docker("bogus"), None);
}

#[test]
fn json_form_round_trips_and_takes_docker_names() {
    let body = r#"{"services":{"go-demo":{"observedAtMs":1700000000123,"version":7,
        "tasks":[{"id":"t1","addresses":["10.0.1.5/24"],"state":"starting","desiredState":"running"}]}}}"#;
    let parsed: Membership = serde_json::from_str(body).unwrap();
    let s = &parsed.services["go-demo"];
    assert_eq!(s.observed_at_ms, 1_700_000_000_123);
    assert_eq!(s.tasks[0].state, Pending);
    assert_eq!(s.tasks[0].addresses[0].to_string(), "10.0.1.5/24");
    let again: Membership = serde_json::from_str(&serde_json::to_string(&parsed).unwrap()).unwrap();
    assert_eq!(again, parsed);
}

#[test]
fn json_errors_name_the_field() {
    let bad_addr = r#"{"services":{"a":{"observedAtMs":1,"tasks":[{"id":"t","addresses":["nope"],"state":"running","desiredState":"running"}]}}}"#;
    let error = serde_json::from_str::<Membership>(bad_addr).unwrap_err();
    assert!(error.to_string().contains("invalid IP address"), "{error}");
    let unknown = r#"{"services":{"a":{"observedAtMs":1,"taskz":[]}}}"#;
    let error = serde_json::from_str::<Membership>(unknown).unwrap_err();
    assert!(error.to_string().contains("taskz"), "{error}");
}

#[test]
fn diff_reports_create_task_update_and_remove() {
    let t1 = task("t1", Running, Running, &["10.0.0.3/24"]);
    let t2 = task("t2", Pending, Running, &["10.0.0.4/24"]);
    let old = membership(vec![
        ("a", set(1, 100, vec![t1.clone(), t2.clone()])),
        ("gone", set(1, 50, vec![t1.clone()])),
    ]);
    // t1 drains and t2 becomes ready: a task change of `a`; `gone` is removed; `b` is new.
    let t1_draining = task("t1", Running, Shutdown, &["10.0.0.3/24"]);
    let t2_ready = task("t2", Running, Running, &["10.0.0.4/24"]);
    let new = membership(vec![
        ("a", set(1, 200, vec![t2_ready.clone(), t1_draining])),
        ("b", set(3, 210, vec![t1.clone()])),
    ]);
    let changes = diff(&old, &new);
    let kinds: Vec<(&str, ChangeKind)> = changes
        .iter()
        .map(|c| (c.service.as_str(), c.kind))
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("a", ChangeKind::Task),
            ("b", ChangeKind::Create),
            ("gone", ChangeKind::Remove)
        ]
    );
    assert_eq!(changes[0].joined, vec!["t2"]);
    assert_eq!(changes[0].draining, vec!["t1"]);
    assert_eq!(changes[0].observed_at_ms, 200);
    assert_eq!(changes[2].left, vec!["t1"]);
    assert_eq!(
        changes[2].observed_at_ms, 500,
        "a removal is timed by the new membership"
    );

    // A new service version is an update, even with the same tasks.
    let bumped = membership(vec![("a", set(2, 300, vec![t2_ready.clone()]))]);
    let before = membership(vec![("a", set(1, 200, vec![t2_ready]))]);
    let changes = diff(&before, &bumped);
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].kind, ChangeKind::Update);
}

#[test]
fn resending_the_same_sets_changes_nothing() {
    let a = set(
        1,
        100,
        vec![
            task("t1", Running, Running, &["10.0.0.3/24"]),
            task("t2", Running, Running, &["10.0.0.4/24"]),
        ],
    );
    let mut reordered = a.clone();
    reordered.tasks.reverse();
    reordered.observed_at_ms = 999;
    let changes = diff(
        &membership(vec![("a", a)]),
        &membership(vec![("a", reordered)]),
    );
    assert!(changes.is_empty(), "{changes:?}");
}

#[test]
fn a_task_that_disappears_leaves() {
    let old = membership(vec![(
        "a",
        set(1, 1, vec![task("t1", Running, Running, &[])]),
    )]);
    let new = membership(vec![("a", set(1, 2, vec![]))]);
    let changes = diff(&old, &new);
    assert_eq!(changes[0].left, vec!["t1"]);
    assert_eq!(changes[0].kind, ChangeKind::Task);
}

#[test]
fn the_address_on_a_local_network_is_chosen() {
    let t = task("t", Running, Running, &["10.0.9.7/24", "10.0.1.5/24"]);
    let local: Vec<IpAddr> = vec!["172.17.0.2".parse().unwrap(), "10.0.1.2".parse().unwrap()];
    assert_eq!(address_on(&t, &local), Some("10.0.1.5".parse().unwrap()));
    let elsewhere: Vec<IpAddr> = vec!["192.168.0.1".parse().unwrap()];
    assert_eq!(address_on(&t, &elsewhere), None);
}

#[test]
fn drain_timeout_values_are_checked() {
    assert_eq!(check_drain_timeout("0"), Ok(0));
    assert_eq!(check_drain_timeout(" 45 "), Ok(45));
    assert!(check_drain_timeout("86401").is_err());
    assert!(check_drain_timeout("10s").is_err());
    assert!(check_drain_timeout("-1").is_err());
}
