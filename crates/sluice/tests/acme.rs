//! ACME certificates shared by three replicas, against a real ACME server on loopback:
//! Debian's `pebble` with `pebble-challtestsrv` as its DNS (every name resolves to 127.0.0.4).
//!
//! The replicas listen on 127.0.0.2–.4 (API) and find each other in a hosts file; their data
//! planes bind `0.0.0.0` on ports of their own, so the replica pebble validates against is the
//! one whose port pebble's configuration names (`httpPort`/`tlsPort`): never the one that
//! orders (the lowest address, .2).
//!
//! Without pebble installed the tests are skipped, except on CI (`CI` set), where they fail.

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::support::{basic_auth, Backend, Proxy, TempDir};
use crate::tls::{client_config, tls_connect};

const USER: &str = "acme-admin";
const PASS: &str = "acme-secret";
const SERVICE: &str = "proxy-acme";

/// True when pebble can run; false (test skipped) when it is missing outside CI.
fn pebble_installed() -> bool {
    let found = ["/usr/bin/pebble", "/usr/bin/pebble-challtestsrv"]
        .iter()
        .all(|p| Path::new(p).exists());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but pebble is not installed (apt-get install pebble; scripts/test.sh does it)"
        );
        eprintln!("skipped: pebble is not installed (apt-get install pebble)");
    }
    found
}

fn free_port(ip: &str) -> u16 {
    StdTcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process whose output lines are kept; killed on drop.
struct Running {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Running {
    fn start(cmd: &mut Command) -> Running {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    lines.lock().unwrap().push(line);
                }
            });
        }
        Running { child, lines }
    }

    fn count(&self, needle: &str) -> usize {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    fn text(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Pebble and its DNS. `validity` is the certificate lifetime in seconds (`None`: pebble's
/// default); `http_port`/`tls_port` are where pebble validates.
struct Pebble {
    acme: Running,
    _dns: Running,
    directory: String,
    management: SocketAddr,
    ca_file: PathBuf,
    config: PathBuf,
}

impl Pebble {
    fn start(dir: &Path, http_port: u16, tls_port: u16, validity: Option<u64>) -> Pebble {
        // Pebble's own endpoint needs a certificate: a test CA and a leaf for 127.0.0.1.
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "sluice test CA");
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        let cert = params.signed_by(&key, &issuer).unwrap();
        let ca_file = dir.join("pebble-ca.pem");
        std::fs::write(&ca_file, ca_cert.pem()).unwrap();
        std::fs::write(dir.join("pebble-cert.pem"), cert.pem()).unwrap();
        std::fs::write(dir.join("pebble-key.pem"), key.serialize_pem()).unwrap();

        let dns_port = {
            let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            s.local_addr().unwrap().port()
        };
        let dns_management = free_port("127.0.0.1");
        let dns = Running::start(
            Command::new("/usr/bin/pebble-challtestsrv")
                .args(["-defaultIPv4", "127.0.0.4", "-defaultIPv6", ""])
                .args(["-dns01", &format!("127.0.0.1:{dns_port}")])
                .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
                .args(["-management", &format!("127.0.0.1:{dns_management}")]),
        );
        let listen: SocketAddr = ([127, 0, 0, 1], free_port("127.0.0.1")).into();
        let management: SocketAddr = ([127, 0, 0, 1], free_port("127.0.0.1")).into();
        let config = dir.join("pebble.json");
        let validity = validity.map_or(String::new(), |s| {
            format!(r#","certificateValidityPeriod":{s}"#)
        });
        std::fs::write(
            &config,
            format!(
                r#"{{"pebble":{{"listenAddress":"{listen}","managementListenAddress":"{management}","certificate":"{}","privateKey":"{}","httpPort":{http_port},"tlsPort":{tls_port},"ocspResponderURL":"","externalAccountBindingRequired":false{validity}}}}}"#,
                dir.join("pebble-cert.pem").display(),
                dir.join("pebble-key.pem").display(),
            ),
        )
        .unwrap();
        let acme = Self::run(&config, dns_port);
        let pebble = Pebble {
            acme,
            _dns: dns,
            directory: format!("https://{listen}/dir"),
            management,
            ca_file,
            config,
        };
        pebble.wait_listening();
        pebble
    }

    fn run(config: &Path, dns_port: u16) -> Running {
        Running::start(
            Command::new("/usr/bin/pebble")
                .args(["-config", config.to_str().unwrap()])
                .args(["-dnsserver", &format!("127.0.0.1:{dns_port}")])
                // Full speed, no random nonce rejections, a fresh authorization per order (so
                // every order is validated against a replica).
                .env("PEBBLE_VA_NOSLEEP", "1")
                .env("PEBBLE_WFE_NONCEREJECT", "0")
                .env("PEBBLE_AUTHZREUSE", "0"),
        )
    }

    fn wait_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.acme.count("ACME directory available") == 0 {
            assert!(
                Instant::now() < deadline,
                "pebble did not start:\n{}",
                self.acme.text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Orders pebble created, and certificates it issued.
    fn orders(&self) -> usize {
        self.acme.count("Added order")
    }

    fn issued(&self) -> usize {
        self.acme.count("Issued certificate serial")
    }

    /// Pebble's root CA, which issued chains verify against.
    fn root(&self) -> CertificateDer<'static> {
        let ca = CertificateDer::from_pem_file(&self.ca_file).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca).unwrap();
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let mut stream = tls_connect(self.management, "127.0.0.1", Arc::new(config)).unwrap();
        let (status, _, body) = crate::tls::exchange(&mut stream, "127.0.0.1", "/roots/0");
        assert_eq!(status, 200, "{body}");
        CertificateDer::from_pem_slice(body.as_bytes()).unwrap()
    }
}

/// One replica: the proxy and its data-plane ports.
struct Replica {
    proxy: Proxy,
    ip: &'static str,
    http: u16,
    tls: u16,
}

/// Ports for three replicas, chosen before pebble (which must know where to validate).
fn ports() -> [(u16, u16); 3] {
    [0, 1, 2].map(|_| (free_port("0.0.0.0"), free_port("0.0.0.0")))
}

fn start_replica(
    dir: &TempDir,
    pebble: &Pebble,
    api_port: u16,
    ip: &'static str,
    (http, tls): (u16, u16),
    extra: &[(&str, &str)],
) -> Replica {
    let mut builder = Proxy::builder()
        .env("IP", ip)
        .env("PORT", &api_port.to_string())
        .env("SERVICE_NAME", SERVICE)
        .env("HOSTS_FILE", dir.0.join("hosts").to_str().unwrap())
        .env("DEFAULT_PORTS", &format!("{http},{tls}:ssl"))
        .env("API_USER", USER)
        .env("API_PASS", PASS)
        .env("ACME_DIRECTORY", &pebble.directory)
        .env("ACME_CA_FILE", pebble.ca_file.to_str().unwrap())
        .env("ACME_EMAIL", "ops@example.com")
        .env("ACME_LEASE_TIMEOUT", "2");
    for (k, v) in extra {
        builder = builder.env(k, v);
    }
    Replica {
        proxy: builder.start(),
        ip,
        http,
        tls,
    }
}

const IPS: [&str; 3] = ["127.0.0.2", "127.0.0.3", "127.0.0.4"];

fn replicas(
    dir: &TempDir,
    pebble: &Pebble,
    ports: [(u16, u16); 3],
    extra: &[(&str, &str)],
) -> Vec<Replica> {
    let api_port = free_port(IPS[0]);
    let hosts: String = IPS
        .iter()
        .map(|ip| format!("{ip} tasks.{SERVICE}\n"))
        .collect();
    std::fs::write(dir.0.join("hosts"), hosts).unwrap();
    let replicas: Vec<Replica> = IPS
        .iter()
        .zip(ports)
        .map(|(ip, ports)| start_replica(dir, pebble, api_port, ip, ports, extra))
        .collect();
    for r in &replicas {
        wait_for(&format!("{} ready", r.ip), Duration::from_secs(20), || {
            api(r, "ping").0 == 200
        });
    }
    replicas
}

/// `GET` on the replica's API with the credentials: (status, body).
fn api(r: &Replica, path_and_query: &str) -> (u16, String) {
    let resp = crate::support::client()
        .get(format!(
            "http://{}:{}/v1/docker-flow-proxy/{path_and_query}",
            r.ip,
            r.proxy.api.port()
        ))
        .header("Authorization", basic_auth(USER, PASS))
        .send()
        .unwrap();
    (resp.status().as_u16(), resp.text().unwrap_or_default())
}

fn metrics(r: &Replica) -> String {
    crate::support::client()
        .get(format!("http://{}:{}/metrics", r.ip, r.proxy.api.port()))
        .send()
        .unwrap()
        .text()
        .unwrap()
}

/// The value of an unlabelled (or the first matching) sample.
fn metric(r: &Replica, sample: &str) -> f64 {
    metrics(r)
        .lines()
        .find(|l| l.starts_with(sample) && l[sample.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The certificate (leaf DER) the replica's TLS port serves for `domain`, verified against
/// pebble's root; `None` while it serves none that verifies.
fn served(r: &Replica, domain: &str, root: &CertificateDer<'static>) -> Option<Vec<u8>> {
    let addr: SocketAddr = ([127, 0, 0, 1], r.tls).into();
    let stream = tls_connect(addr, domain, client_config(&[root], &[b"http/1.1"], None)).ok()?;
    Some(stream.conn.peer_certificates()?.first()?.to_vec())
}

/// The statistics page of the replica's HTTP port (`options`: `""` or `";json"`).
fn dashboard(r: &Replica, options: &str) -> String {
    let resp = crate::support::client()
        .get(format!("http://127.0.0.1:{}/admin?stats{options}", r.http))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    resp.text().unwrap()
}

/// The `acme` part of the statistics page's JSON form.
fn acme_on_dashboard(r: &Replica) -> serde_json::Value {
    let json: serde_json::Value = serde_json::from_str(&dashboard(r, ";json")).unwrap();
    json["acme"].clone()
}

fn listed(r: &Replica, name: &str) -> bool {
    let (status, body) = api(r, "certs");
    status == 200 && body.contains(&format!("\"ProxyServiceName\":\"{name}\""))
}

fn ask_for(r: &Replica, backend: &Backend, domain: &str) {
    let (status, body) = api(
        r,
        &format!(
            "reconfigure?serviceName=site&servicePath=/&port={}&outboundHostname=127.0.0.1\
             &serviceDomain={domain}&acmeDomain={domain}&distribute=true",
            backend.port()
        ),
    );
    assert_eq!(status, 200, "{body}");
}

fn logs(replicas: &[Replica]) -> String {
    replicas
        .iter()
        .map(|r| format!("--- {}\n{}", r.ip, r.proxy.log_text()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Waits until every replica lists `name`; returns the spread between the first and the last.
fn spread_until_listed(replicas: &[Replica], name: &str, limit: Duration) -> Duration {
    let deadline = Instant::now() + limit;
    let mut first_seen: Vec<Option<Instant>> = vec![None; replicas.len()];
    while first_seen.iter().any(Option::is_none) {
        assert!(
            Instant::now() < deadline,
            "{name} not on every replica within {limit:?}: {first_seen:?}\n{}",
            logs(replicas)
        );
        for (i, r) in replicas.iter().enumerate() {
            if first_seen[i].is_none() && listed(r, name) {
                first_seen[i] = Some(Instant::now());
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let seen: Vec<Instant> = first_seen.into_iter().flatten().collect();
    let (min, max) = (seen.iter().min().unwrap(), seen.iter().max().unwrap());
    max.duration_since(*min)
}

#[test]
fn one_order_per_domain_served_by_every_replica() {
    if !pebble_installed() {
        return;
    }
    let dir = TempDir::new("acme-one");
    let ports = ports();
    // Pebble validates HTTP-01 against the third replica (.4), which does not order.
    let pebble = Pebble::start(&dir.0, ports[2].0, ports[2].1, None);
    let replicas = replicas(&dir, &pebble, ports, &[]);
    let backend = Backend::start("site");
    let domain = "one.example.com";
    ask_for(&replicas[1], &backend, domain);
    let name = format!("acme-{domain}");
    let spread = spread_until_listed(&replicas, &name, Duration::from_secs(60));
    assert!(spread <= Duration::from_secs(1), "spread {spread:?}");
    eprintln!("acme: every replica listed the new certificate within {spread:?} of the first");

    let root = pebble.root();
    let leafs: Vec<Vec<u8>> = replicas
        .iter()
        .map(|r| {
            served(r, domain, &root)
                .unwrap_or_else(|| panic!("{} serves no verified certificate", r.ip))
        })
        .collect();
    assert!(
        leafs.windows(2).all(|w| w[0] == w[1]),
        "one certificate everywhere"
    );
    // Exactly one order, made by the lowest address.
    assert_eq!(pebble.orders(), 1, "{}", pebble.acme.text());
    assert_eq!(pebble.issued(), 1);
    let orders: Vec<f64> = replicas
        .iter()
        .map(|r| metric(r, "sluice_acme_orders_total"))
        .collect();
    assert_eq!(orders, [1.0, 0.0, 0.0]);
    assert_eq!(metric(&replicas[0], "sluice_acme_lease_holder"), 1.0);
    assert_eq!(metric(&replicas[2], "sluice_acme_lease_holder"), 0.0);
    // The account went to every replica, owner-only; so did the key (CERTS_DIR files).
    use std::os::unix::fs::PermissionsExt as _;
    for r in &replicas {
        for file in [
            r.proxy.data_dir.join("acme-account.json"),
            r.proxy.data_dir.join("certs").join(&name),
        ] {
            let mode = std::fs::metadata(&file)
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()))
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{}", file.display());
        }
    }
    // The site is served over HTTPS through the new certificate.
    let addr: SocketAddr = ([127, 0, 0, 1], replicas[2].tls).into();
    let mut stream =
        tls_connect(addr, domain, client_config(&[&root], &[b"http/1.1"], None)).unwrap();
    let (status, head, _) = crate::tls::exchange(&mut stream, domain, "/hello");
    assert_eq!(status, 200, "{head}");
    // A token no replica published falls through to routing (here: the site's backend).
    let r = replicas[1].proxy.get_on(
        ([127, 0, 0, 1], replicas[1].http).into(),
        "/.well-known/acme-challenge/not-ours",
        &[("Host", domain)],
    );
    assert_eq!(r.header("x-backend"), Some("site"), "{}", r.body);
    // A replica that starts later has the certificate as soon as it is ready, and does not
    // order (its address is the highest).
    std::fs::write(
        dir.0.join("hosts"),
        IPS.iter()
            .chain(["127.0.0.5"].iter())
            .map(|ip| format!("{ip} tasks.{SERVICE}\n"))
            .collect::<String>(),
    )
    .unwrap();
    let late = start_replica(
        &dir,
        &pebble,
        replicas[0].proxy.api.port(),
        "127.0.0.5",
        (free_port("0.0.0.0"), free_port("0.0.0.0")),
        &[],
    );
    wait_for("the late replica ready", Duration::from_secs(20), || {
        api(&late, "ping").0 == 200
    });
    assert!(listed(&late, &name), "{}", late.proxy.log_text());
    assert_eq!(served(&late, domain, &root), Some(leafs[0].clone()));
    // Nothing more is ordered while the certificate is fresh.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(pebble.orders(), 1);
    assert_eq!(metric(&late, "sluice_acme_orders_total"), 0.0);
}

#[test]
fn a_replica_that_dies_mid_order_is_replaced() {
    if !pebble_installed() {
        return;
    }
    let dir = TempDir::new("acme-takeover");
    let ports = ports();
    let pebble = Pebble::start(&dir.0, ports[2].0, ports[2].1, None);
    let mut replicas = replicas(&dir, &pebble, ports, &[]);
    let backend = Backend::start("site");
    let domain = "takeover.example.com";
    ask_for(&replicas[1], &backend, domain);
    // Kill the orderer as soon as it has created the order (before the CA has validated it).
    wait_for("the order", Duration::from_secs(30), || {
        replicas[0].proxy.log_text().contains("ACME order created")
    });
    let dead = replicas.remove(0);
    drop(dead);
    let issued_at_kill = pebble.issued();
    assert_eq!(issued_at_kill, 0, "the order finished before the kill");
    let name = format!("acme-{domain}");
    spread_until_listed(&replicas, &name, Duration::from_secs(60));
    let root = pebble.root();
    let leafs: Vec<Vec<u8>> = replicas
        .iter()
        .map(|r| served(r, domain, &root).unwrap())
        .collect();
    assert_eq!(leafs[0], leafs[1]);
    assert_eq!(pebble.issued(), 1, "one certificate in the end");
    assert_eq!(pebble.orders(), 2, "the abandoned order and the new one");
    assert_eq!(metric(&replicas[0], "sluice_acme_lease_holder"), 1.0);
    assert_eq!(metric(&replicas[0], "sluice_acme_orders_total"), 1.0);
}

#[test]
fn short_lived_certificates_renew_and_survive_the_ca_going_down() {
    if !pebble_installed() {
        return;
    }
    let dir = TempDir::new("acme-renew");
    let ports = ports();
    // TLS-ALPN-01 this time, validated on the second replica; 12 s certificates renew at ~8 s.
    let mut pebble = Pebble::start(&dir.0, ports[1].0, ports[1].1, Some(12));
    let replicas = replicas(
        &dir,
        &pebble,
        ports,
        &[
            ("ACME_CHALLENGE", "tls-alpn-01"),
            ("STATS_USER", "none"),
            ("STATS_PASS", "none"),
        ],
    );
    let backend = Backend::start("site");
    let domain = "renew.example.com";
    ask_for(&replicas[0], &backend, domain);
    let name = format!("acme-{domain}");
    spread_until_listed(&replicas, &name, Duration::from_secs(60));
    let root = pebble.root();
    let first = served(&replicas[2], domain, &root).unwrap();
    // Renewed before it expires, and the new one reaches every replica.
    wait_for("a renewal", Duration::from_secs(30), || {
        pebble.issued() >= 2
    });
    wait_for(
        "the renewed certificate everywhere",
        Duration::from_secs(5),
        || {
            replicas
                .iter()
                .all(|r| served(r, domain, &root).is_some_and(|leaf| leaf != first))
        },
    );
    let renewed = served(&replicas[2], domain, &root).unwrap();
    for r in &replicas {
        wait_for(
            "the dashboard shows it valid",
            Duration::from_secs(5),
            || {
                let state = acme_on_dashboard(r)["certificates"][0]["state"].clone();
                state == "valid"
            },
        );
    }

    // The CA goes away: the next renewal fails, the failure shows in /metrics and the status
    // endpoint, and the current certificate keeps serving.
    pebble.acme.stop();
    let holder = &replicas[0];
    wait_for("a failed renewal", Duration::from_secs(30), || {
        metric(holder, "sluice_acme_failures_total") >= 1.0
    });
    assert!(
        metrics(holder).contains(&format!(
            "sluice_acme_certificate_failing{{certificate=\"{name}\"}} 1"
        )),
        "{}",
        metrics(holder)
    );
    let (status, body) = api(holder, "acme");
    assert_eq!(status, 200);
    assert!(body.contains("\"LastError\":\"ACME"), "{body}");
    // The dashboard shows the failure on the holder and on a replica that does not order
    // (which reads it from the holder), in its HTML and JSON forms.
    for r in [&replicas[0], &replicas[2]] {
        wait_for(
            "the failure on the dashboard",
            Duration::from_secs(10),
            || acme_on_dashboard(r)["certificates"][0]["state"] == "failing",
        );
        let acme = acme_on_dashboard(r);
        let cert = &acme["certificates"][0];
        assert_eq!(cert["name"], name.as_str(), "{acme}");
        assert!(
            cert["last_error"].as_str().unwrap().starts_with("ACME"),
            "{acme}"
        );
        assert!(cert["failures"].as_u64().unwrap() >= 1, "{acme}");
        assert!(cert["next_attempt"].is_string(), "{acme}");
        assert!(cert["valid_until"].is_string(), "{acme}");
        let html = dashboard(r, "");
        assert!(
            html.contains(&format!("data-name=\"{name}\" data-state=\"failing\"")),
            "{html}"
        );
        assert!(html.contains("<td class=\"err acme-error\">ACME"), "{html}");
    }
    assert_eq!(acme_on_dashboard(&replicas[0])["orderer"]["kind"], "this");
    assert_eq!(
        acme_on_dashboard(&replicas[2])["orderer"]["address"],
        replicas[0].ip
    );
    for r in &replicas {
        assert_eq!(
            served(r, domain, &root).as_deref(),
            Some(&renewed[..]),
            "{}",
            r.ip
        );
    }
    let _ = &pebble.config;
}

#[test]
fn keys_are_never_handed_out_without_credentials() {
    // No CA needed: the account endpoint refuses before it reads anything.
    let p = Proxy::start();
    let r = p.api("acme/account", "");
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("API_USER"), "{}", r.body);
    // The start-up error saying why keys are not shared.
    wait_for("the log line", Duration::from_secs(5), || {
        p.log_text().contains("API_USER and API_PASS are not set")
    });
    let p = Proxy::builder()
        .env("API_USER", USER)
        .env("API_PASS", PASS)
        .start();
    assert_eq!(p.api("acme/account", "").status, 401);
}

#[test]
fn a_bad_acme_domain_is_refused_naming_it() {
    let p = Proxy::start();
    let r = p.reconfigure(
        "serviceName=s&servicePath=/&port=1&acmeDomain=ok.example.com,bad_name.example.com",
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.body.contains("acmeDomain") && r.body.contains("bad_name.example.com"),
        "{}",
        r.body
    );
    assert!(
        p.api("config", "type=json").json().get("s").is_none(),
        "nothing stored"
    );
}
