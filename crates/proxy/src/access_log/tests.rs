use super::line::{push_addr, push_millis, push_time, push_u64, quote};
use super::*;

fn log(format: LogFormat) -> Rc<AccessLog> {
    Rc::new(AccessLog {
        errors_only: false,
        capture: vec![(HeaderName::from_static("host"), 4)],
        format,
    })
}

fn rendered(trace: &Trace) -> String {
    let entry = Entry {
        trace,
        total: Duration::from_micros(1500),
    };
    match trace.log.format {
        LogFormat::Text => {
            let mut out = String::new();
            entry.text(&mut out);
            out
        }
        LogFormat::Json => {
            let mut out = Vec::new();
            entry.json(&mut out).unwrap();
            String::from_utf8(out).unwrap()
        }
    }
}

fn idle() -> Rc<Cell<Instant>> {
    Rc::new(Cell::new(Instant::now()))
}

fn request(uri: &str) -> Request<String> {
    Request::builder()
        .uri(uri)
        .header("host", "example.com")
        .body(String::new())
        .unwrap()
}

#[test]
fn text_lines_have_every_field_and_quote_what_needs_it() {
    let mut req = request("/a%20b?password=hunter2&x=1");
    let mut trace =
        log(LogFormat::Text).http("127.0.0.1:5000".parse().unwrap(), 80, &idle(), &mut req);
    trace.routed("web");
    trace.answered(
        "10.0.0.1:8080".parse().unwrap(),
        1,
        Some(Instant::now()),
        Duration::from_millis(2),
    );
    trace.responded(&Response::new(String::from("hello")));
    let line = rendered(&trace);
    for field in FIELDS {
        assert!(
            line.contains(&format!("{field}=")),
            "{field} missing: {line}"
        );
    }
    assert!(line.contains(" service=web "), "{line}");
    assert!(line.contains(" upstream=10.0.0.1:8080 "), "{line}");
    assert!(
        line.contains(" status=200 bytes_in=0 bytes_out=- "),
        "{line}"
    );
    assert!(line.contains(" retries=1 termination=ok "), "{line}");
    assert!(line.contains(" t_total_ms=1.500 "), "{line}");
    assert!(line.contains(" t_connect_ms=2.000 "), "{line}");
    assert!(!line.contains(" t_wait_ms=- "), "{line}");
    assert!(line.contains(" header.host=exam"), "{line}");
    assert!(!line.contains("hunter2"), "{line}");
    assert!(
        line.contains("path=\"/a%20b?password=") || line.contains("path=/a%20b?password="),
        "{line}"
    );
    std::mem::forget(trace);
}

#[test]
fn json_lines_have_every_field() {
    let mut req = request("/x");
    let mut trace = log(LogFormat::Json).http("[::1]:5000".parse().unwrap(), 81, &idle(), &mut req);
    trace.end("no_route");
    trace.responded(&Response::new(String::new()));
    let value: serde_json::Value = serde_json::from_str(&rendered(&trace)).unwrap();
    for field in FIELDS {
        assert!(value.get(field).is_some(), "{field} missing: {value}");
    }
    assert_eq!(value["client"], "[::1]:5000");
    assert_eq!(value["port"], 81);
    assert_eq!(value["service"], serde_json::Value::Null);
    assert_eq!(value["termination"], "no_route");
    assert_eq!(value["t_total_ms"], 1.5);
    assert_eq!(value["header.host"], "exam");
    std::mem::forget(trace);
}

#[test]
fn request_ids_are_kept_when_sane_and_made_otherwise() {
    let log = log(LogFormat::Text);
    let client = "127.0.0.1:1".parse().unwrap();
    let mut req = request("/");
    req.headers_mut()
        .insert(&X_REQUEST_ID, HeaderValue::from_static("abc-123"));
    let trace = log.http(client, 80, &idle(), &mut req);
    assert_eq!(req.headers()[&X_REQUEST_ID], "abc-123");
    std::mem::forget(trace);
    let mut ids = Vec::new();
    for sent in ["", "a b", "<script>"] {
        let mut req = request("/");
        if !sent.is_empty() {
            req.headers_mut()
                .insert(&X_REQUEST_ID, HeaderValue::from_str(sent).unwrap());
        }
        let trace = log.http(client, 80, &idle(), &mut req);
        let id = req.headers()[&X_REQUEST_ID].to_str().unwrap().to_string();
        assert!(sane_request_id(id.as_bytes()) && id != sent, "{id}");
        ids.push(id);
        std::mem::forget(trace);
    }
    ids.dedup();
    assert_eq!(ids.len(), 3, "ids repeat: {ids:?}");
}

#[test]
fn only_failures_count_for_errors_only() {
    let log = log(LogFormat::Text);
    let client = "127.0.0.1:1".parse().unwrap();
    let outcome = |status: Option<u16>| {
        let mut trace = log.http(client, 80, &idle(), &mut request("/"));
        if let Some(status) = status {
            trace.responded(
                &Response::builder()
                    .status(status)
                    .body(String::new())
                    .unwrap(),
            );
        }
        let failed = trace.failed();
        std::mem::forget(trace);
        failed
    };
    assert!(!outcome(Some(200)));
    assert!(!outcome(Some(404)));
    assert!(outcome(Some(503)));
    assert!(outcome(None));
    let mut tcp = log.tcp(client, 9000);
    assert!(tcp.failed());
    tcp.end("closed");
    assert!(!tcp.failed());
    std::mem::forget(tcp);
}

#[test]
fn values_are_cut_on_character_boundaries_and_quoted() {
    assert_eq!(cut("héllo", 2), "h");
    assert_eq!(cut("abc", 5), "abc");
    let mut out = String::new();
    quote(&mut out, "a \"b\"\n");
    assert_eq!(out, "\"a \\\"b\\\"\\u{a}\"");
    let mut out = String::new();
    quote(&mut out, "");
    assert_eq!(out, "\"\"");
}

#[test]
fn queries_lose_secret_and_credential_values() {
    assert_eq!(redact_query("a=1&b=2"), "a=1&b=2");
    assert_eq!(
        redact_query("password=x&access_token=y&API_KEY=z&code=c&q=keep"),
        "password=REDACTED&access_token=REDACTED&API_KEY=REDACTED&code=REDACTED&q=keep"
    );
    assert_eq!(
        redact_query("users=u:p&tokenless"),
        "users=REDACTED&tokenless"
    );
}

#[test]
fn generated_ids_are_the_prefix_and_the_counter_in_hex() {
    for n in [0u64, 9, 10, 255, 0x1234_5678_9abc, u64::MAX] {
        let prefix = REQUEST_IDS.with(|ids| {
            let (prefix, _) = ids.get();
            ids.set((prefix, n));
            prefix
        });
        assert_eq!(new_request_id(), format!("{prefix:016x}-{n:x}").as_str());
    }
}

#[test]
fn times_are_rfc3339_utc() {
    let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_764_322_200_123);
    let mut out = String::new();
    push_time(&mut out, t);
    push_time(&mut out, t + Duration::from_millis(5));
    assert_eq!(out, "2025-11-28T09:30:00.123Z2025-11-28T09:30:00.128Z");
    let mut out = String::new();
    push_millis(&mut out, Duration::from_micros(1_391));
    out.push(' ');
    push_millis(&mut out, Duration::from_micros(7));
    out.push(' ');
    push_addr(&mut out, "10.0.0.7:51234".parse().unwrap());
    out.push(' ');
    push_u64(&mut out, 0);
    assert_eq!(out, "1.391 0.007 10.0.0.7:51234 0");
}
