//! End-to-end checks of the built `sluice-demo` binary: startup line, protocols, request logs and SIGTERM handling.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

/// A running `sluice-demo` child whose stdout lines are collected by a reader thread.
struct Demo {
    child: Child,
    lines: Receiver<String>,
    addr: SocketAddr,
}

impl Demo {
    fn start(args: &[&str], hostname: &str) -> Demo {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sluice-demo"))
            .args(args)
            .args(["--port", "0", "--host", "127.0.0.1"])
            .env("HOSTNAME", hostname)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let first = lines.recv_timeout(Duration::from_secs(20)).unwrap();
        let addr = first
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"));
        let addr = addr.parse().unwrap();
        Demo { child, lines, addr }
    }

    /// Waits until a stdout line satisfies `pred`.
    fn wait_line(&self, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) if pred(&line) => return line,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        panic!("no matching log line");
    }

    /// Sends SIGTERM and returns whether the process exited successfully within the timeout.
    fn terminate(&mut self) -> bool {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("process did not exit after SIGTERM");
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request with `Connection: close`; returns the raw response.
fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn http_backend_serves_logs_and_drains_on_sigterm() {
    let mut demo = Demo::start(&["http"], "replica-7");
    let hello = http_get(demo.addr, "/demo/hello");
    assert!(hello.starts_with("HTTP/1.1 200 OK\r\n"), "{hello}");
    assert!(
        hello
            .to_ascii_lowercase()
            .contains("\r\nx-served-by: replica-7\r\n"),
        "{hello}"
    );
    assert!(hello.ends_with("\r\n\r\nhello, world!\n"), "{hello}");
    let line = demo.wait_line(|l| l.contains("/demo/hello"));
    assert!(line.contains("GET") && line.contains("replica-7"), "{line}");

    let replica = http_get(demo.addr, "/demo/replica");
    assert!(replica.ends_with("\r\n\r\nreplica-7\n"), "{replica}");

    // A request in flight when SIGTERM arrives still completes.
    let addr = demo.addr;
    let slow = std::thread::spawn(move || http_get(addr, "/demo/slow?ms=600"));
    std::thread::sleep(Duration::from_millis(200));
    assert!(demo.terminate(), "exit status should be 0");
    let slow = slow.join().unwrap();
    assert!(slow.starts_with("HTTP/1.1 200 OK"), "{slow}");
    assert!(slow.ends_with("slept 600 ms\n"), "{slow}");
}

#[test]
fn http_backend_on_sigterm_exit_cuts_requests_in_flight() {
    let mut demo = Demo::start(&["http", "--on-sigterm", "exit"], "r");
    let addr = demo.addr;
    let slow = std::thread::spawn(move || http_get(addr, "/demo/slow?ms=3000"));
    std::thread::sleep(Duration::from_millis(200));
    let asked = Instant::now();
    assert!(demo.terminate(), "exit status should be 0");
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "did not exit at once"
    );
    // The request in flight gets no answer: the connection closes without a response.
    assert_eq!(slow.join().unwrap(), "");
}

#[test]
fn health_command_follows_healthy_after() {
    let demo = Demo::start(&["http", "--healthy-after", "1"], "r");
    let url = format!("http://{}/demo/health", demo.addr);
    let health = || {
        Command::new(env!("CARGO_BIN_EXE_sluice-demo"))
            .args(["health", "--url", &url])
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success()
    };
    assert!(!health(), "healthy before --healthy-after");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !health() {
        assert!(Instant::now() < deadline, "never healthy");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn tcp_backend_speaks_the_line_protocol() {
    let mut demo = Demo::start(&["tcp"], "r");
    let mut stream = TcpStream::connect(demo.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(b"PING\r\n*1\r\n$4\r\nPING\r\nECHO hi there\r\nFOO\r\nQUIT\r\n")
        .unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).unwrap();
    assert_eq!(
        out,
        "+PONG\r\n+PONG\r\n+hi there\r\n-ERR unknown command\r\n+OK\r\n"
    );
    assert!(demo.terminate());
}

#[test]
fn bench_backend_keeps_alive_with_several_threads() {
    let mut demo = Demo::start(&["bench", "--threads", "2"], "r");
    for _ in 0..4 {
        let mut stream = TcpStream::connect(demo.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        for _ in 0..3 {
            stream
                .write_all(b"GET /svc1/x HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 1024];
            while !got.ends_with(b"Hello, World!") {
                let n = stream.read(&mut buf).unwrap();
                assert!(n > 0, "closed early");
                got.extend_from_slice(&buf[..n]);
            }
            assert!(got.starts_with(b"HTTP/1.1 200 OK\r\n"));
        }
    }
    assert!(demo.terminate());
}
