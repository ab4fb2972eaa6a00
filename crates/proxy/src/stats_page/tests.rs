use super::*;
use sluice_core::credentials::Credentials;

fn page(auth: StatsAuth) -> StatsPage {
    StatsPage {
        uri: "/admin?stats".into(),
        auth,
        membership: None,
        acme: None,
    }
}

#[test]
fn formats_follow_the_uri_prefix() {
    let p = page(StatsAuth::Open);
    assert_eq!(p.format("/admin?stats"), Some(Format::Html));
    assert_eq!(p.format("/admin?stats;csv"), Some(Format::Csv));
    assert_eq!(p.format("/admin?stats;csv;norefresh"), Some(Format::Csv));
    assert_eq!(p.format("/admin?stats;json"), Some(Format::Json));
    assert_eq!(p.format("/admin"), None);
    assert_eq!(p.format("/demo/admin?stats"), None);
}

#[test]
fn credentials_are_required_unless_open() {
    let hub = StatsHub::new();
    let snapshot = Snapshot::empty();
    let locked = page(StatsAuth::Basic(Credentials {
        user: "my-user".into(),
        password: "my-pass".into(),
    }));
    let r = locked.respond(Format::Csv, &HeaderMap::new(), &hub, &snapshot);
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()["www-authenticate"],
        "Basic realm=\"Strictly Private\""
    );
    let mut h = HeaderMap::new();
    h.insert(
        http::header::AUTHORIZATION,
        HeaderValue::from_str(&crate::auth::basic_header("my-user", "my-pass")).unwrap(),
    );
    assert_eq!(
        locked.respond(Format::Csv, &h, &hub, &snapshot).status(),
        200
    );
    let open = page(StatsAuth::Open);
    let r = open.respond(Format::Html, &HeaderMap::new(), &hub, &snapshot);
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("default-src 'none'"));
}

#[test]
fn dashboard_is_self_contained_and_points_at_its_json() {
    let html = page(StatsAuth::Open).dashboard(&StatsHub::new().report(&Snapshot::empty()), None);
    assert!(html.contains("content=\"/admin?stats;json\""));
    assert!(!html.contains("{{"));
    for external in ["https://", "<link", " src="] {
        assert!(!html.contains(external), "external resource: {external}");
    }
    // The only URL is the SVG namespace name, which is never fetched.
    assert_eq!(html.matches("http://").count(), 1);
    assert!(html.contains("http://www.w3.org/2000/svg"));
    assert_eq!(html_escape("a\"<b>&'"), "a&quot;&lt;b&gt;&amp;&#39;");
}

#[test]
fn dashboard_rows_are_rendered_on_the_server_and_escaped() {
    let mut report = StatsHub::new().report(&Snapshot::empty());
    report.destinations.push(DestReport {
        service: "evil<script>alert(1)</script>".into(),
        destination: 0,
        index: 0,
        backend: "b\"x".into(),
        port: 80,
        paths: vec!["/demo".into()],
        domains: vec![],
        requests: 7,
        responses: crate::stats::ClassReport {
            xx2: 7,
            ..Default::default()
        },
        bytes_in: 0,
        bytes_out: 10,
        current: 0,
        peak: 1,
        errors: crate::stats::ErrorReport::default(),
        denied: 0,
        unauthorized: 0,
        latency: crate::stats::LatencyReport::default(),
        upstreams: vec![crate::stats::UpstreamReport {
            address: "127.0.0.1:9000".into(),
            requests: 7,
            failures: 0,
            health: "up",
            ejections: 0,
            changed_ms: 0,
        }],
    });
    let html = page(StatsAuth::Open).dashboard(&report, None);
    assert!(!html.contains("<script>alert"), "unescaped service name");
    assert!(html.contains(
        "data-service=\"evil&lt;script&gt;alert(1)&lt;/script&gt;\" data-backend=\"b&quot;x\""
    ));
    assert!(html.contains("<td class=\"num requests\">7</td>"));
    assert!(html.contains("2xx <b>7</b>"));
    assert!(html.contains("127.0.0.1:9000"));
    assert!(html.contains("1 of 1 destinations"));
    assert!(html.contains("id=\"empty\" hidden"));
    assert!(!html.contains("{{"));
}

#[tokio::test(start_paused = true)]
async fn the_dashboard_shows_each_services_tasks_and_their_state() {
    use sluice_core::membership::{Membership, Task, TaskSet, TaskState};
    let task = |id: &str, desired, ip: &str| Task {
        id: id.into(),
        addresses: vec![ip.parse().unwrap()],
        state: TaskState::Running,
        desired_state: desired,
    };
    let received = Membership {
        observed_at_ms: 1,
        services: [(
            "web<b>".to_owned(),
            TaskSet {
                observed_at_ms: 1,
                version: 1,
                tasks: vec![
                    task("aaaaaaaaaaaaaaaaaaaa", TaskState::Running, "10.0.1.3/24"),
                    task("bbbb", TaskState::Shutdown, "10.0.1.4/24"),
                ],
            },
        )]
        .into(),
    };
    let cell = MembershipCell::new();
    let empty = page(StatsAuth::Open)
        .with_membership(cell.clone())
        .dashboard(&StatsHub::new().report(&Snapshot::empty()), None);
    assert!(empty.contains("No task sets from the listener"));
    assert!(!empty.contains("class=\"empty\" hidden>No task sets"));
    cell.publish(TaskMap::compile(
        &cell.load(),
        received,
        &[],
        tokio::time::Instant::now(),
    ));
    tokio::time::advance(std::time::Duration::from_secs(7)).await;
    let marked = task_rows(&cell.load(), &["10.0.1.3".parse().unwrap()].into());
    assert_eq!(
        marked
            .matches("<span class=\"task-state ejected\">ejected</span>")
            .count(),
        1,
        "{marked}"
    );
    assert!(marked.contains(
        "<span class=\"task-state ready\">ready</span> <span class=\"task-state ejected\">"
    ));
    let html = page(StatsAuth::Open)
        .with_membership(cell)
        .dashboard(&StatsHub::new().report(&Snapshot::empty()), None);
    assert!(html.contains("data-service=\"web&lt;b&gt;\" data-state=\"ready\""));
    assert!(html.contains("<td title=\"aaaaaaaaaaaaaaaaaaaa\">aaaaaaaaaaaa</td><td>10.0.1.3</td>"));
    assert!(html.contains("<span class=\"task-state draining\">draining</span> <small>7 s</small>"));
    assert!(html.contains("running / shutdown"));
    assert!(html.contains("class=\"empty\" hidden>No task sets"));
    assert!(!html.contains("{{"));
}

#[test]
fn the_dashboard_and_its_json_show_the_acme_certificates() {
    use crate::acme_notices::{CertNotice, CertState, Orderer};
    let cell = AcmeNoticeCell::new();
    let p = page(StatsAuth::Open).with_acme(cell.clone());
    let report = StatsHub::new().report(&Snapshot::empty());
    let none = p.dashboard(&report, Some(&cell.load()));
    assert!(
        none.contains("<section id=\"acme-section\" hidden>"),
        "{none}"
    );
    cell.publish(AcmeNotices {
        orderer: Orderer::This,
        certificates: vec![CertNotice {
            name: "acme-app.example.com".into(),
            domains: vec!["app.example.com".into()],
            state: CertState::Failing,
            valid_until: None,
            failures: 2,
            last_error: Some("ACME: error trying to connect: \"refused\"".into()),
            next_attempt: Some("2026-01-01T00:00:20Z".into()),
        }],
    });
    let html = p.dashboard(&report, Some(&cell.load()));
    assert!(html.contains("<section id=\"acme-section\">"));
    assert!(html.contains("data-name=\"acme-app.example.com\" data-state=\"failing\""));
    assert!(html.contains(
        "<td class=\"err acme-error\">ACME: error trying to connect: &quot;refused&quot;</td>"
    ));
    assert!(html.contains("<td>2026-01-01T00:00:20Z</td><td>this replica</td>"));
    assert!(!html.contains("{{"));
    let resp = p.respond(
        Format::Json,
        &HeaderMap::new(),
        &StatsHub::new(),
        &Snapshot::empty(),
    );
    assert_eq!(resp.status(), 200);
    let ProxyBody::Full(Some(body)) = resp.into_body() else {
        panic!("not a complete body");
    };
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["acme"]["certificates"][0]["state"], "failing");
    assert_eq!(json["acme"]["certificates"][0]["failures"], 2);
    assert!(json["destinations"].is_array());
    // A page without the cell keeps the plain report.
    let plain = json_with(&report, None);
    assert!(!plain.contains("\"acme\""));
}

#[test]
fn csv_has_haproxy_columns_on_every_row() {
    let hub = StatsHub::new();
    let report = hub.report(&Snapshot::empty());
    let text = csv(&report);
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    assert!(header.starts_with("# pxname,svname,qcur,"));
    assert_eq!(header.split(',').count(), 84);
    let fe = lines.next().unwrap();
    assert!(fe.starts_with("services,FRONTEND,"));
    assert_eq!(fe.split(',').count(), 84);
    assert_eq!(csv_field("a,b\nc"), "a_b_c");
}
