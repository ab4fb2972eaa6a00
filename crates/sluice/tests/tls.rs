//! TLS termination, certificates (files, PUT, listing), HTTP/2, client certificates,
//! `httpsOnly` and `sslVerifyNone`, against the real binary.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls_pki_types::pem::PemObject;

use crate::support::{Backend, Proxy, TempDir};

/// A certificate made for a test: its PEM parts and DER.
pub(crate) struct TestCert {
    pub(crate) cert_pem: String,
    pub(crate) key_pem: String,
    pub(crate) der: CertificateDer<'static>,
}

impl TestCert {
    pub(crate) fn self_signed(names: &[&str]) -> TestCert {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.self_signed(&key).unwrap();
        TestCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }

    pub(crate) fn bundle(&self) -> String {
        format!("{}{}", self.cert_pem, self.key_pem)
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client trusting exactly `roots`, offering `alpn`, optionally with a client certificate.
pub(crate) fn client_config(
    roots: &[&CertificateDer<'static>],
    alpn: &[&[u8]],
    client_cert: Option<(&str, &str)>,
) -> Arc<rustls::ClientConfig> {
    let mut store = rustls::RootCertStore::empty();
    for r in roots {
        store.add((*r).clone()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(store);
    let mut config = match client_cert {
        None => builder.with_no_client_auth(),
        Some((cert_pem, key_pem)) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap(),
            )
            .unwrap(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

pub(crate) type TlsStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// Connects and completes the handshake.
pub(crate) fn tls_connect(
    addr: SocketAddr,
    sni: &str,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<TlsStream> {
    let tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    let conn =
        rustls::ClientConnection::new(config, ServerName::try_from(sni.to_string()).unwrap())
            .map_err(std::io::Error::other)?;
    let mut stream = rustls::StreamOwned::new(conn, tcp);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock)?;
    }
    Ok(stream)
}

/// One HTTP/1.1 exchange on an open stream; returns (status, head, body).
pub(crate) fn exchange<S: Read + Write>(
    stream: &mut S,
    host: &str,
    path: &str,
) -> (u16, String, String) {
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").unwrap();
    stream.flush().unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "connection closed before the response head");
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).to_string();
    let status: u16 = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = raw[head_end..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "connection closed in the body");
        body.extend_from_slice(&buf[..n]);
    }
    (status, head, String::from_utf8_lossy(&body).to_string())
}

fn put_cert(p: &Proxy, query: &str, body: &str) -> (u16, String) {
    let resp = crate::support::client()
        .put(format!(
            "http://{}/v1/docker-flow-proxy/cert?{query}",
            p.api
        ))
        .body(body.to_string())
        .send()
        .unwrap();
    (resp.status().as_u16(), resp.text().unwrap())
}

/// A proxy with a plain port (`http[0]`) and a TLS port (`http[1]`), certificates preloaded.
fn tls_proxy(dir: &TempDir, certs: &[(&str, &TestCert)], extra: &[(&str, &str)]) -> Proxy {
    std::fs::create_dir_all(dir.0.join("certs")).unwrap();
    for (name, cert) in certs {
        std::fs::write(dir.0.join("certs").join(name), cert.bundle()).unwrap();
    }
    let mut b = Proxy::builder().data_dir(&dir.0).env("BIND_PORTS", "0:ssl");
    for (k, v) in extra {
        b = b.env(k, v);
    }
    b.start()
}

#[test]
fn terminates_tls_with_sni_and_adds_certificates_hot() {
    let a = TestCert::self_signed(&["a.example.com"]);
    let b = TestCert::self_signed(&["*.b.example.com"]);
    let dir = TempDir::new("tls");
    let p = tls_proxy(&dir, &[("a.pem", &a)], &[]);
    let backend = Backend::start("tls-backend");
    let r = p.reconfigure(&format!(
        "serviceName=web&servicePath=/demo&port={}&outboundHostname=127.0.0.1",
        backend.port()
    ));
    assert_eq!(r.status, 200, "{}", r.body);
    let tls_addr = p.http[1];

    let mut first = tls_connect(
        tls_addr,
        "a.example.com",
        client_config(&[&a.der], &[b"http/1.1"], None),
    )
    .unwrap();
    let (status, _, body) = exchange(&mut first, "a.example.com", "/demo/x");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("x-forwarded-proto: https"), "{body}");

    // Not yet known: the default certificate (a) is presented, which b's trust rejects.
    assert!(tls_connect(
        tls_addr,
        "api.b.example.com",
        client_config(&[&b.der], &[], None)
    )
    .is_err());

    // Bad inputs change nothing.
    let (status, text) = put_cert(&p, "certName=bad.pem", "not a certificate");
    assert_eq!(status, 400);
    assert!(text.contains("no CERTIFICATE"), "{text}");
    let (status, text) = put_cert(&p, "certName=..%2Fescape.pem", &b.bundle());
    assert_eq!(status, 400);
    assert!(text.contains("certName"), "{text}");
    assert!(!dir.0.join("escape.pem").exists());
    let (status, text) = put_cert(&p, "", &b.bundle());
    assert_eq!(status, 400);
    assert!(text.contains("certName is mandatory"), "{text}");
    let (status, text) = put_cert(&p, "certName=b.pem", "");
    assert_eq!(status, 400);
    assert!(text.contains("Body is empty"), "{text}");

    let (status, text) = put_cert(&p, "certName=b.pem", &b.bundle());
    assert_eq!(status, 200, "{text}");
    let mut second = tls_connect(
        tls_addr,
        "api.b.example.com",
        client_config(&[&b.der], &[], None),
    )
    .unwrap();
    let (status, _, _) = exchange(&mut second, "api.b.example.com", "/demo/y");
    assert_eq!(status, 200);

    // The connection opened before the change still works.
    let (status, _, _) = exchange(&mut first, "a.example.com", "/demo/again");
    assert_eq!(status, 200);

    // The listing has both certificates and no private key.
    let certs = p.api("certs", "");
    assert_eq!(certs.status, 200);
    assert!(!certs.body.contains("PRIVATE KEY"), "{}", certs.body);
    let json = certs.json();
    let names: Vec<&str> = json["Certs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["ProxyServiceName"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a.pem", "b.pem"]);
    assert_eq!(json["Certs"][1]["DnsNames"][0], "*.b.example.com");
    assert!(json["Certs"][0]["CertContent"]
        .as_str()
        .unwrap()
        .starts_with("-----BEGIN CERTIFICATE-----"));

    // Without API credentials no bundle (private key) is handed out.
    let bundle = p.api("cert", "certName=a.pem");
    assert_eq!(bundle.status, 403, "{}", bundle.body);
}

#[test]
fn negotiates_http2_when_enabled() {
    let a = TestCert::self_signed(&["h2.example.com"]);
    let dir = TempDir::new("h2");
    let p = tls_proxy(&dir, &[("a.pem", &a)], &[]);
    let backend = Backend::start("h2-backend");
    p.reconfigure(&format!(
        "serviceName=web&servicePath=/&port={}&outboundHostname=127.0.0.1",
        backend.port()
    ));
    let config = client_config(&[&a.der], &[b"h2", b"http/1.1"], None);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let addr = p.http[1];
    let (alpn, status, body) = rt.block_on(async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(ServerName::try_from("h2.example.com").unwrap(), tcp)
            .await
            .unwrap();
        let alpn = tls.get_ref().1.alpn_protocol().map(|p| p.to_vec());
        let (mut sender, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(tls),
        )
        .await
        .unwrap();
        tokio::spawn(conn);
        let req = hyper::Request::get("https://h2.example.com/over-h2?q=1")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        let status = resp.status().as_u16();
        use http_body_util::BodyExt;
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (alpn, status, String::from_utf8_lossy(&body).to_string())
    });
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("GET /over-h2?q=1"), "{body}");
    assert!(body.contains("host: h2.example.com"), "{body}");

    // ENABLE_H2=false offers only HTTP/1.1.
    let dir2 = TempDir::new("h1");
    let p2 = tls_proxy(&dir2, &[("a.pem", &a)], &[("ENABLE_H2", "false")]);
    let s = tls_connect(
        p2.http[1],
        "h2.example.com",
        client_config(&[&a.der], &[b"h2", b"http/1.1"], None),
    )
    .unwrap();
    assert_eq!(s.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
}

#[test]
fn https_only_redirects_to_the_tls_port() {
    let a = TestCert::self_signed(&["shop.example.com"]);
    let dir = TempDir::new("httpsonly");
    let p = tls_proxy(&dir, &[("a.pem", &a)], &[]);
    let backend = Backend::start("shop");
    p.reconfigure(&format!(
        "serviceName=shop&servicePath=/shop&port={}&outboundHostname=127.0.0.1&httpsOnly=true",
        backend.port()
    ));
    let r = p.get("/shop/cart?x=1", &[("Host", "shop.example.com:8080")]);
    assert_eq!(r.status, 302);
    assert_eq!(
        r.header("location"),
        Some(
            format!(
                "https://shop.example.com:{}/shop/cart?x=1",
                p.http[1].port()
            )
            .as_str()
        )
    );
    let mut s = tls_connect(
        p.http[1],
        "shop.example.com",
        client_config(&[&a.der], &[], None),
    )
    .unwrap();
    assert_eq!(exchange(&mut s, "shop.example.com", "/shop/cart").0, 200);
}

#[test]
fn client_certificates_are_verified_against_ca_file() {
    // A CA, a client certificate it signed, and a server certificate.
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let client_key = rcgen::KeyPair::generate().unwrap();
    let client_cert = rcgen::CertificateParams::new(vec!["client".to_string()])
        .unwrap()
        .signed_by(&client_key, &issuer)
        .unwrap();
    let server = TestCert::self_signed(&["secure.example.com"]);

    let dir = TempDir::new("mtls");
    let ca_file = dir.0.join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let p = tls_proxy(
        &dir,
        &[("s.pem", &server)],
        &[("CA_FILE", ca_file.to_str().unwrap())],
    );
    let backend = Backend::start("secure");
    p.reconfigure(&format!(
        "serviceName=secure&servicePath=/secure&port={}&outboundHostname=127.0.0.1&verifyClientSsl=true",
        backend.port()
    ));
    let mut anonymous = tls_connect(
        p.http[1],
        "secure.example.com",
        client_config(&[&server.der], &[], None),
    )
    .unwrap();
    assert_eq!(
        exchange(&mut anonymous, "secure.example.com", "/secure").0,
        403
    );
    let with_cert = client_config(
        &[&server.der],
        &[],
        Some((&client_cert.pem(), &client_key.serialize_pem())),
    );
    let mut verified = tls_connect(p.http[1], "secure.example.com", with_cert).unwrap();
    assert_eq!(
        exchange(&mut verified, "secure.example.com", "/secure").0,
        200
    );
}

/// A TLS backend answering every request with a fixed body.
pub(crate) fn tls_backend(cert: &TestCert, reply: &'static str) -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der.clone()],
                PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).unwrap(),
            )
            .unwrap(),
    );
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(tcp) = stream else { continue };
            let config = config.clone();
            std::thread::spawn(move || {
                let Ok(conn) = rustls::ServerConnection::new(config) else {
                    return;
                };
                let mut tls = rustls::StreamOwned::new(conn, tcp);
                let mut buf = [0u8; 4096];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = write!(
                    tls,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{reply}",
                    reply.len()
                );
                let _ = tls.flush();
                tls.conn.send_close_notify();
                let _ = tls.conn.complete_io(&mut tls.sock);
            });
        }
    });
    addr
}

#[test]
fn ssl_verify_none_speaks_tls_to_the_upstream() {
    let cert = TestCert::self_signed(&["internal"]);
    let upstream = tls_backend(&cert, "from-tls-upstream");
    let p = Proxy::start();
    let r = p.reconfigure(&format!(
        "serviceName=secure-up&servicePath=/up&port={}&outboundHostname=127.0.0.1&sslVerifyNone=true",
        upstream.port()
    ));
    assert_eq!(r.status, 200, "{}", r.body);
    let r = p.get("/up", &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body, "from-tls-upstream");
}

#[test]
fn service_cert_is_stored_and_served() {
    let cert = TestCert::self_signed(&["svc.example.com"]);
    let dir = TempDir::new("servicecert");
    // DEFAULT_PORTS explicitly given: certificates do not add 443.
    let p = tls_proxy(&dir, &[], &[]);
    let backend = Backend::start("svc");
    let pem = cert.bundle().replace('\n', "\\n");
    let encoded: String = pem
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    let r = p.reconfigure(&format!(
        "serviceName=svc&serviceDomain=svc.example.com&port={}&outboundHostname=127.0.0.1&serviceCert={encoded}",
        backend.port()
    ));
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(dir.0.join("certs/svc.example.com").exists());
    let mut s = tls_connect(
        p.http[1],
        "svc.example.com",
        client_config(&[&cert.der], &[], None),
    )
    .unwrap();
    assert_eq!(exchange(&mut s, "svc.example.com", "/").0, 200);

    let bad = p.reconfigure("serviceName=svc2&servicePath=/x&port=1&serviceCert=garbage");
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(bad.body.contains("no CERTIFICATE"), "{}", bad.body);
    assert!(p.api("config", "type=json").json().get("svc2").is_none());
}

/// Two replicas with API credentials on 127.0.0.2 and 127.0.0.3 sharing one API port, found
/// through `tasks.<SERVICE_NAME>` in a hosts file.
#[test]
fn certificates_travel_between_replicas_with_credentials() {
    let dir = TempDir::new("certsync");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.2:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let hosts = dir.0.join("hosts");
    std::fs::write(&hosts, "127.0.0.2 tasks.edge\n127.0.0.3 tasks.edge\n").unwrap();
    let start = |ip: &str| {
        Proxy::builder()
            .env("IP", ip)
            .env("PORT", &port.to_string())
            .env("SERVICE_NAME", "edge")
            .env("HOSTS_FILE", hosts.to_str().unwrap())
            .env("API_USER", "ops")
            .env("API_PASS", "s3cret")
            .start()
    };
    let client = crate::support::client();
    let put = |api: SocketAddr, query: &str, body: String| {
        client
            .put(format!("http://{api}/v1/docker-flow-proxy/cert?{query}"))
            .basic_auth("ops", Some("s3cret"))
            .body(body)
            .send()
            .unwrap()
    };
    let listing = |api: SocketAddr| -> serde_json::Value {
        client
            .get(format!("http://{api}/v1/docker-flow-proxy/certs"))
            .basic_auth("ops", Some("s3cret"))
            .send()
            .unwrap()
            .json()
            .unwrap()
    };
    let names = |v: &serde_json::Value| -> Vec<String> {
        v["Certs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["ProxyServiceName"].as_str().unwrap().to_string())
            .collect()
    };

    let a = start("127.0.0.2");
    let first = TestCert::self_signed(&["first.example.com"]);
    let resp = put(a.api, "certName=first.pem", first.bundle());
    assert_eq!(resp.status(), 200);

    // A replica started later copies its peer's certificate before it serves.
    let b = start("127.0.0.3");
    assert_eq!(names(&listing(b.api)), ["first.pem"]);
    // The bundle endpoint wants the credentials.
    let anonymous = client
        .get(format!(
            "http://{}/v1/docker-flow-proxy/cert?certName=first.pem",
            a.api
        ))
        .send()
        .unwrap();
    assert_eq!(anonymous.status(), 401);

    // distribute=true stores it on every replica.
    let second = TestCert::self_signed(&["second.example.com"]);
    let resp = put(
        a.api,
        "certName=second.pem&distribute=true",
        second.bundle(),
    );
    let status = resp.status();
    let text = resp.text().unwrap();
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("Distributed"), "{text}");
    assert_eq!(names(&listing(b.api)), ["first.pem", "second.pem"]);
}
