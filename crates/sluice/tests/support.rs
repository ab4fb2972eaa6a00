//! Test support: the real `sluice` binary started on port 0, and in-process backends.

#![allow(dead_code)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener as StdTcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

/// A temporary directory removed on drop.
pub(crate) struct TempDir(pub(crate) PathBuf);

impl TempDir {
    pub(crate) fn new(tag: &str) -> TempDir {
        static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("sluice-it-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A `Basic` authorization header value. A small local base64 encoder, so the tests do not
/// share the proxy's decoder (checked against RFC 7617's example below).
pub(crate) fn basic_auth(user: &str, pass: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let input = format!("{user}:{pass}").into_bytes();
    let mut out = String::from("Basic ");
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn basic_auth_matches_the_rfc_examples() {
    assert_eq!(
        basic_auth("Aladdin", "open sesame"),
        "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
    );
    assert_eq!(basic_auth("a", "b"), "Basic YTpi");
}

/// Routes `/demo` of the demo service `go-demo` to backend `b`.
pub(crate) fn go_demo(p: &Proxy, b: &Backend) {
    go_demo_with(p, b, "");
}

/// Like [`go_demo`], with more query parameters (`extra` starts with `&`).
pub(crate) fn go_demo_with(p: &Proxy, b: &Backend, extra: &str) {
    let r = p.reconfigure(&format!(
        "serviceName=go-demo&servicePath=/demo&port={}&outboundHostname=127.0.0.1{extra}",
        b.port()
    ));
    assert_eq!(r.status, 200, "{}", r.body);
}

/// A running `sluice proxy` process.
pub(crate) struct Proxy {
    child: Child,
    pub(crate) api: SocketAddr,
    pub(crate) http: Vec<SocketAddr>,
    pub(crate) logs: Arc<Mutex<Vec<String>>>,
    pub(crate) data_dir: PathBuf,
    client: reqwest::blocking::Client,
    /// The data directory when the builder made it: removed after the process (fields drop
    /// after `Drop::drop` has killed it).
    _owned_data_dir: Option<TempDir>,
}

pub(crate) struct ProxyBuilder {
    env: Vec<(String, String)>,
    data_dir: Option<PathBuf>,
}

impl ProxyBuilder {
    pub(crate) fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    pub(crate) fn data_dir(mut self, dir: &std::path::Path) -> Self {
        self.data_dir = Some(dir.to_path_buf());
        self
    }

    pub(crate) fn start(self) -> Proxy {
        self.try_start()
            .unwrap_or_else(|e| panic!("proxy did not start: {e}"))
    }

    /// Starts the proxy; returns its stderr/stdout text on an early exit.
    pub(crate) fn try_start(self) -> Result<Proxy, String> {
        let (data_dir, owned_data_dir) = match self.data_dir {
            Some(dir) => (dir, None),
            None => {
                let dir = TempDir::new("data");
                (dir.0.clone(), Some(dir))
            }
        };
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
        cmd.arg("proxy")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("PORT", "0")
            .env("IP", "127.0.0.1")
            .env("DEFAULT_PORTS", "0")
            .env("DATA_DIR", &data_dir)
            .env("SECRETS_DIR", data_dir.join("no-secrets"))
            .env("CERTS_DIR", data_dir.join("certs"))
            .env("WORKER_THREADS", "2")
            .env("SHUTDOWN_GRACE", "5")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().map_err(|e| e.to_string())?;
        let logs = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let logs = logs.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    logs.lock().unwrap().push(line);
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        let wanted_http = 1
            + self
                .env
                .iter()
                .find(|(k, _)| k == "BIND_PORTS")
                .map(|(_, v)| v.split(',').count())
                .unwrap_or(0)
            + self
                .env
                .iter()
                .find(|(k, _)| k == "DEFAULT_PORTS")
                .map(|(_, v)| v.split(',').count().saturating_sub(1))
                .unwrap_or(0);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                std::thread::sleep(Duration::from_millis(100));
                let text = logs.lock().unwrap().join("\n");
                return Err(format!("exited with {status}:\n{text}"));
            }
            let (api, http) = {
                let lines = logs.lock().unwrap();
                let api = lines
                    .iter()
                    .find(|l| l.contains("api listener bound"))
                    .and_then(|l| addr_field(l));
                let http: Vec<SocketAddr> = lines
                    .iter()
                    .filter(|l| l.contains("http listener bound"))
                    .filter_map(|l| addr_field(l))
                    .collect();
                (api, http)
            };
            if let Some(api) = api {
                if http.len() >= wanted_http {
                    let http = http
                        .into_iter()
                        .map(|a| SocketAddr::from(([127, 0, 0, 1], a.port())))
                        .collect();
                    return Ok(Proxy {
                        child,
                        api,
                        http,
                        logs,
                        data_dir,
                        client: client(),
                        _owned_data_dir: owned_data_dir,
                    });
                }
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return Err(format!(
                    "not ready in time:\n{}",
                    logs.lock().unwrap().join("\n")
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn addr_field(line: &str) -> Option<SocketAddr> {
    if let Some(at) = line.find("\"addr\":\"") {
        // LOG_FORMAT=json
        return line[at + 8..].split('"').next()?.parse().ok();
    }
    let at = line.find("addr=")?;
    line[at + 5..].split_whitespace().next()?.parse().ok()
}

pub(crate) fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// A response as the tests look at it.
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: reqwest::header::HeaderMap,
    pub(crate) body: String,
}

impl Reply {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

fn reply(resp: reqwest::blocking::Response) -> Reply {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.text().unwrap_or_default();
    Reply {
        status,
        headers,
        body,
    }
}

impl Proxy {
    pub(crate) fn builder() -> ProxyBuilder {
        ProxyBuilder {
            env: Vec::new(),
            data_dir: None,
        }
    }

    pub(crate) fn start() -> Proxy {
        Proxy::builder().start()
    }

    /// The proxy's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The proxy's resident memory (VmRSS), in KiB.
    pub(crate) fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    pub(crate) fn http_port(&self) -> u16 {
        self.http[0].port()
    }

    /// `GET /v1/docker-flow-proxy/<path>?<query>` on the API.
    pub(crate) fn api(&self, path: &str, query: &str) -> Reply {
        let url = format!("http://{}/v1/docker-flow-proxy/{path}?{query}", self.api);
        reply(self.client.get(url).send().unwrap())
    }

    pub(crate) fn reconfigure(&self, query: &str) -> Reply {
        self.api("reconfigure", query)
    }

    /// A request through the data plane (first HTTP port) with optional headers.
    pub(crate) fn get(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        self.get_on(self.http[0], path, headers)
    }

    pub(crate) fn get_on(&self, addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Reply {
        self.request_on("GET", addr, path, headers)
    }

    pub(crate) fn request_on(
        &self,
        method: &str,
        addr: SocketAddr,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Reply {
        let url = format!("http://{addr}{path}");
        let mut req = self
            .client
            .request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        reply(req.send().unwrap())
    }

    pub(crate) fn log_text(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub(crate) fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            assert!(Instant::now() < deadline, "proxy did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An in-process HTTP backend answering every request with its name, the request line and
/// the request headers, plus a few special paths.
pub(crate) struct Backend {
    pub(crate) addr: SocketAddr,
    pub(crate) hits: Arc<Mutex<Vec<String>>>,
    _runtime: Arc<tokio::runtime::Runtime>,
}

fn runtime() -> Arc<tokio::runtime::Runtime> {
    Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap(),
    )
}

impl Backend {
    /// A backend on 127.0.0.1 with a free port.
    pub(crate) fn start(name: &str) -> Backend {
        Backend::start_at(name, "127.0.0.1:0".parse().unwrap())
    }

    pub(crate) fn start_at(name: &str, addr: SocketAddr) -> Backend {
        let rt = runtime();
        let listener = StdTcpListener::bind(addr).unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(Mutex::new(Vec::new()));
        let name = name.to_string();
        let hits2 = hits.clone();
        rt.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let name = name.clone();
                let hits = hits2.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let name = name.clone();
                        let hits = hits.clone();
                        async move { Ok::<_, Infallible>(answer(&name, &hits, req).await) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades()
                        .await;
                });
            }
        });
        Backend {
            addr,
            hits,
            _runtime: rt,
        }
    }

    pub(crate) fn port(&self) -> u16 {
        self.addr.port()
    }

    pub(crate) fn hit_count(&self) -> usize {
        self.hits.lock().unwrap().len()
    }
}

async fn answer(
    name: &str,
    hits: &Mutex<Vec<String>>,
    mut req: Request<hyper::body::Incoming>,
) -> Response<Full<Bytes>> {
    let line = format!(
        "{} {}",
        req.method(),
        req.uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
    );
    hits.lock().unwrap().push(line.clone());
    let path = req.uri().path().to_string();
    if path.ends_with("/slow") {
        tokio::time::sleep(Duration::from_secs(4)).await;
    }
    if path.ends_with("/ws") && req.headers().contains_key("upgrade") {
        let on = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(upgraded) = on.await {
                let mut io = TokioIo::new(upgraded);
                let mut buf = [0u8; 1024];
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                while let Ok(n) = io.read(&mut buf).await {
                    if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        });
        return Response::builder()
            .status(101)
            .header("connection", "upgrade")
            .header("upgrade", "echo")
            .body(Full::new(Bytes::new()))
            .unwrap();
    }
    let mut body = format!("{name}\n{line}\n");
    for (k, v) in req.headers() {
        body.push_str(&format!("{k}: {}\n", v.to_str().unwrap_or("?")));
    }
    let _ = req.into_body().collect().await;
    Response::builder()
        .header("x-backend", name)
        .header("x-remove-me", "1")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

/// A TCP server that answers every connection with `bytes` and closes it.
pub(crate) fn raw_backend(bytes: &'static [u8]) -> SocketAddr {
    let listener = StdTcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf);
                let _ = stream.write_all(bytes);
            });
        }
    });
    addr
}

/// A free port on 127.0.0.1 that nothing listens on.
pub(crate) fn closed_port() -> u16 {
    let l = StdTcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Sends a raw HTTP/1.1 request and returns the raw response text (until close or timeout).
pub(crate) fn raw_request(addr: SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    read_until_closed(&mut stream)
}

/// Everything the peer sends until it closes (or the read timeout), as text.
pub(crate) fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses `name: value` lines of a backend's echo body.
pub(crate) fn echoed_headers(body: &str) -> HashMap<String, String> {
    body.lines()
        .skip(2)
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Proxies as replicas of one Swarm service: each listens on its own loopback address, all
/// share one API port, and they find each other as `tasks.<service>` in a hosts file (its path
/// is returned too, so a test can list more addresses later).
pub(crate) fn replica_set<const N: usize>(
    dir: &TempDir,
    service: &str,
    ips: [&str; N],
) -> ([Proxy; N], PathBuf) {
    let port = {
        let l = StdTcpListener::bind((ips[0], 0)).unwrap();
        l.local_addr().unwrap().port()
    };
    let hosts = dir.0.join("hosts");
    let lines: String = ips
        .iter()
        .map(|ip| format!("{ip} tasks.{service}\n"))
        .collect();
    std::fs::write(&hosts, lines).unwrap();
    let proxies = ips.map(|ip| {
        Proxy::builder()
            .env("IP", ip)
            .env("PORT", &port.to_string())
            .env("SERVICE_NAME", service)
            .env("HOSTS_FILE", hosts.to_str().unwrap())
            .start()
    });
    (proxies, hosts)
}

/// A loopback HTTP server (one request per connection, as the proxy's peer client sends them)
/// answering each request with the status line and JSON body `answer` gives for its head.
pub(crate) fn json_server(
    answer: impl Fn(&str) -> (&'static str, String) + Send + 'static,
) -> SocketAddr {
    let listener = StdTcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 4096];
            let n = stream.read(&mut buf).unwrap_or(0);
            let (status, body) = answer(&String::from_utf8_lossy(&buf[..n]));
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    addr
}
