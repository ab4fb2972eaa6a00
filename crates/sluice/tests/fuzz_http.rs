//! Fuzzing the HTTP front through the real binary: a few thousand generated and mutated
//! request heads and chunked bodies (request line, headers, chunk sizes). Every answer is a
//! 2xx from the backend or a 4xx from the proxy (or a close before any response), the process
//! never dies, and the API still answers `/ping` afterwards.
//!
//! The generator is a fixed-seed xorshift, so a failure names a case that can be replayed:
//! `FUZZ_SEED=<seed> FUZZ_CASES=<n>` override the defaults.

use std::io::Write;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::{read_until_closed, Backend, Proxy};

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

const METHODS: &[&str] = &[
    "GET", "POST", "PUT", "HEAD", "DELETE", "OPTIONS", "PATCH", "get", "G ET", "", "GET\0",
    "\u{7f}", "CONNECT", "TRACE", "XYZZY",
];
const TARGETS: &[&str] = &[
    "/",
    "/a/b?c=d",
    "/%73ecure/x",
    "//x//y",
    "/./a/../b",
    "/x/%2e%2e/y",
    "/%2fa",
    "/a%5cb",
    "/a%00b",
    "/%zz",
    "/%",
    "*",
    "",
    "http://example.com/a",
    "http://other.example:99/a/../b",
    "example.com:443",
    "/a b",
    "/\u{e9}",
    "/a?%00",
    "/a#frag",
    "relative",
];
const VERSIONS: &[&str] = &[
    "HTTP/1.1",
    "HTTP/1.0",
    "HTTP/2.0",
    "HTTP/1.1x",
    "HTTP/0.9",
    "http/1.1",
    "",
    "HTTP/1.1 extra",
];
const HEADER_LINES: &[&str] = &[
    "Host: example.com",
    "Host: other.example",
    "Host:",
    "Host: a b",
    "X-Thing: value",
    "X-Thing : value",
    " folded: continuation",
    "NoColon",
    ": empty-name",
    "Bad\u{1}Name: x",
    "X-Nul: a\0b",
    "Content-Length: 5",
    "Content-Length: -1",
    "Content-Length: abc",
    "Content-Length: 99999999999999999999",
    "Content-Length: 5, 6",
    "Transfer-Encoding: chunked",
    "Transfer-Encoding: gzip, chunked",
    "Transfer-Encoding: chunked, gzip",
    "Transfer-Encoding:  chunked",
    "Transfer-Encoding: identity",
    "Connection: keep-alive, Upgrade",
    "Upgrade: websocket",
    "Expect: 100-continue",
    "Authorization: Basic !!!",
    "X-Long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
];
const CHUNK_SIZES: &[&str] = &[
    "5",
    "0",
    "zz",
    "-1",
    "0x5",
    "5;ext=1",
    "5 ",
    " 5",
    "ffffffffffffffffffff",
    "",
    "5\r",
    "3",
];
const LINE_ENDS: &[&str] = &["\r\n", "\r\n", "\r\n", "\n", "\r", "\r\r\n"];

/// One request: a head from the vocabularies above, maybe a body, then a few byte edits.
fn generate(rng: &mut Rng) -> Vec<u8> {
    let eol = if rng.chance(90) {
        "\r\n"
    } else {
        rng.pick(LINE_ENDS)
    };
    let mut text = String::new();
    let sep = if rng.chance(95) { " " } else { "  " };
    text.push_str(rng.pick(METHODS));
    text.push_str(sep);
    text.push_str(rng.pick(TARGETS));
    text.push_str(sep);
    text.push_str(rng.pick(VERSIONS));
    text.push_str(eol);
    if rng.chance(85) {
        text.push_str("Host: example.com");
        text.push_str(eol);
    }
    for _ in 0..rng.below(5) {
        text.push_str(rng.pick(HEADER_LINES));
        text.push_str(eol);
    }
    let chunked = rng.chance(35);
    if chunked {
        text.push_str("Transfer-Encoding: chunked");
        text.push_str(eol);
    }
    text.push_str(eol);
    if chunked {
        for _ in 0..rng.below(4) {
            let size = rng.pick(CHUNK_SIZES);
            text.push_str(size);
            text.push_str(eol);
            text.push_str(&"x".repeat(rng.below(8)));
            text.push_str(eol);
        }
        if rng.chance(70) {
            text.push('0');
            text.push_str(eol);
            text.push_str(eol);
        }
    } else if rng.chance(30) {
        text.push_str(&"y".repeat(rng.below(10)));
    }
    let mut bytes = text.into_bytes();
    if rng.chance(40) {
        for _ in 0..=rng.below(3) {
            let at = rng.below(bytes.len() + 1);
            let value = (rng.next() & 0xff) as u8;
            match rng.below(3) {
                0 if at < bytes.len() => bytes[at] = value,
                1 => bytes.insert(at, value),
                _ if at < bytes.len() => {
                    bytes.remove(at);
                }
                _ => {}
            }
        }
    }
    bytes
}

/// What came back for one request.
#[derive(Debug)]
enum Outcome {
    /// Closed (or silent) without a response.
    Closed,
    /// The status codes of the responses read (more than one when requests were pipelined).
    Statuses(Vec<u16>),
}

fn send(addr: SocketAddr, bytes: &[u8]) -> Outcome {
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return Outcome::Closed;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = stream.write_all(bytes);
    let _ = stream.shutdown(Shutdown::Write);
    let text = read_until_closed(&mut stream);
    let statuses: Vec<u16> = text
        .match_indices("HTTP/1.")
        .filter_map(|(at, _)| text.get(at + 9..at + 12))
        .filter_map(|code| code.parse().ok())
        .collect();
    if statuses.is_empty() {
        Outcome::Closed
    } else {
        Outcome::Statuses(statuses)
    }
}

#[test]
fn generated_and_mutated_requests_never_get_a_5xx_nor_crash_the_proxy() {
    let seed: u64 = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_5a1c_e000_0001);
    let cases: usize = std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let p = Proxy::builder()
        .env("TIMEOUT_HTTP_REQUEST", "2")
        .env("TIMEOUT_HTTP_KEEP_ALIVE", "2")
        .start();
    let b = Backend::start("fuzz");
    let r = p.reconfigure(&format!(
        "serviceName=fuzz&servicePath=/&port={}&outboundHostname=127.0.0.1",
        b.port()
    ));
    assert_eq!(r.status, 200, "{}", r.body);
    let addr = p.http[0];
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let next = next.clone();
            std::thread::spawn(move || {
                let mut failures = Vec::new();
                let (mut closed, mut answered) = (0usize, 0usize);
                loop {
                    let case = next.fetch_add(1, Ordering::SeqCst);
                    if case >= cases {
                        break;
                    }
                    let mut rng = Rng(seed ^ (case as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
                    rng.next();
                    let bytes = generate(&mut rng);
                    match send(addr, &bytes) {
                        Outcome::Closed => closed += 1,
                        Outcome::Statuses(statuses) => {
                            answered += 1;
                            // `OPTIONS *` names no path, so no route takes it (503, as in DFP).
                            let options_star = bytes.starts_with(b"OPTIONS * ");
                            let acceptable = |s: &u16| {
                                (100..300).contains(s)
                                    || (400..500).contains(s)
                                    || (options_star && *s == 503)
                            };
                            if !statuses.iter().all(acceptable) {
                                failures.push((case, statuses, bytes));
                            }
                        }
                    }
                }
                (closed, answered, failures)
            })
        })
        .collect();
    let (mut closed, mut answered, mut failures) = (0, 0, Vec::new());
    for t in threads {
        let (c, a, f) = t.join().unwrap();
        closed += c;
        answered += a;
        failures.extend(f);
    }
    let elapsed = started.elapsed();
    eprintln!(
        "fuzz_http: {cases} cases (seed {seed:#x}) in {elapsed:?}: {answered} answered, \
         {closed} closed without a response, {} failures",
        failures.len()
    );
    let ping = p.api("ping", "");
    assert_eq!(ping.status, 200, "the API no longer answers: {}", ping.body);
    assert!(
        p.get("/after", &[]).status == 200,
        "the data plane no longer answers"
    );
    let shown: Vec<String> = failures
        .iter()
        .take(5)
        .map(|(case, statuses, bytes)| {
            format!(
                "case {case}: {statuses:?} for {:?}",
                String::from_utf8_lossy(bytes)
            )
        })
        .collect();
    assert!(failures.is_empty(), "{}", shown.join("\n"));
    assert!(answered > cases / 4, "too few answers: {answered}");
    let logs = p.log_text();
    assert!(!logs.contains("panicked"), "{logs}");
}
