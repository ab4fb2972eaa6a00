use super::*;

pub(crate) fn bundle(names: &[&str]) -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    let cert = params.self_signed(&key).unwrap();
    format!("{}{}", cert.pem(), key.serialize_pem())
}

struct Dir(PathBuf);
impl Dir {
    fn new(tag: &str) -> Dir {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let p = std::env::temp_dir().join(format!("sluice-certs-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(p.join("certs")).unwrap();
        std::fs::create_dir_all(p.join("secrets")).unwrap();
        Dir(p)
    }
    fn sources(&self, preferred: &[&str]) -> CertSources {
        CertSources {
            certs_dir: self.0.join("certs"),
            secrets_dir: self.0.join("secrets"),
            preferred: preferred.iter().map(|s| s.to_string()).collect(),
        }
    }
}
impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn names(store: &CertStore) -> Vec<String> {
    store.list().into_iter().map(|c| c.name).collect()
}

#[test]
fn loads_dirs_and_secrets_in_order_and_skips_bad_files() {
    let d = Dir::new("order");
    std::fs::write(d.0.join("certs/b.pem"), bundle(&["b.example.com"])).unwrap();
    std::fs::write(d.0.join("certs/a.pem"), bundle(&["a.example.com"])).unwrap();
    std::fs::write(d.0.join("certs/z.csr"), "not a certificate").unwrap();
    std::fs::write(d.0.join("secrets/cert-s"), bundle(&["s.example.com"])).unwrap();
    std::fs::write(d.0.join("secrets/dfp_users"), "x").unwrap();
    let store = CertStore::load(d.sources(&[]));
    assert_eq!(names(&store), ["a.pem", "b.pem", "cert-s"]);
    let problems = store.problems();
    assert_eq!(problems.len(), 1);
    assert!(problems[0].path.ends_with("z.csr"));
    assert!(
        problems[0].reason.contains("no CERTIFICATE"),
        "{}",
        problems[0].reason
    );
    let list = store.list();
    assert!(list[0].default && !list[1].default);
    assert_eq!(list[2].origin, CertOrigin::Secret);
    assert!(list[0].chain_pem.starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(!list[0].chain_pem.contains("PRIVATE KEY"));
    assert!(list[0].not_after > list[0].not_before);
}

#[test]
fn preferred_globs_pick_the_default() {
    let d = Dir::new("preferred");
    for n in ["a.pem", "main.pem", "other.pem"] {
        std::fs::write(d.0.join("certs").join(n), bundle(&["x.example.com"])).unwrap();
    }
    let store = CertStore::load(d.sources(&["oth*", "ma*.pem"]));
    assert_eq!(names(&store), ["other.pem", "main.pem", "a.pem"]);
}

#[test]
fn sni_lookup_prefers_exact_then_wildcard_then_default() {
    let d = Dir::new("sni");
    std::fs::write(d.0.join("certs/1-default"), bundle(&["default.example"])).unwrap();
    std::fs::write(d.0.join("certs/2-wild"), bundle(&["*.example.com"])).unwrap();
    std::fs::write(d.0.join("certs/3-exact"), bundle(&["api.example.com"])).unwrap();
    let store = CertStore::load(d.sources(&[]));
    let set = store.current.load();
    assert_eq!(set.find("API.example.com.").unwrap().info.name, "3-exact");
    assert_eq!(set.find("www.example.com").unwrap().info.name, "2-wild");
    assert!(set.find("a.b.example.com").is_none(), "one label only");
    assert!(set.find("example.com").is_none());
    assert_eq!(set.default_entry().unwrap().info.name, "1-default");
}

#[test]
fn put_validates_before_writing() {
    let d = Dir::new("put");
    let store = CertStore::load(d.sources(&[]));
    assert!(store.is_empty());
    for bad in ["../x", "a/b", "..", ".hidden", ""] {
        let e = store.put(bad, bundle(&["a"]).as_bytes()).unwrap_err();
        assert!(matches!(e, CertError::Name { .. }), "{bad}: {e}");
    }
    let e = store.put("x.pem", b"hello").unwrap_err();
    assert!(e.to_string().contains("no CERTIFICATE"), "{e}");
    let only_cert: String = bundle(&["a"])
        .split("-----BEGIN PRIVATE KEY-----")
        .next()
        .unwrap()
        .to_string();
    let e = store.put("x.pem", only_cert.as_bytes()).unwrap_err();
    assert!(e.to_string().contains("no PRIVATE KEY"), "{e}");
    // A key of another certificate.
    let one = bundle(&["a"]);
    let two = bundle(&["b"]);
    let cert_one = one.split("-----BEGIN PRIVATE KEY-----").next().unwrap();
    let key_two = &two[two.find("-----BEGIN PRIVATE KEY-----").unwrap()..];
    let e = store
        .put("x.pem", format!("{cert_one}{key_two}").as_bytes())
        .unwrap_err();
    assert!(e.to_string().contains("does not belong"), "{e}");
    assert!(!d.0.join("certs/x.pem").exists());
    assert!(store.is_empty());

    let info = store
        .put("x.pem", bundle(&["x.example.com"]).as_bytes())
        .unwrap();
    assert_eq!(info.dns_names, ["x.example.com"]);
    assert!(!store.is_empty());
    assert!(d.0.join("certs/x.pem").exists());
    assert!(store.bundle("x.pem").unwrap().len() > 100);
}

#[test]
fn changes_on_disk_are_noticed() {
    let d = Dir::new("watch");
    let store = CertStore::load(d.sources(&[]));
    assert!(!store.reload_if_changed());
    std::fs::write(d.0.join("certs/new.pem"), bundle(&["n.example"])).unwrap();
    assert!(store.reload_if_changed());
    assert_eq!(names(&store), ["new.pem"]);
    std::fs::remove_file(d.0.join("certs/new.pem")).unwrap();
    assert!(store.reload_if_changed());
    assert!(store.is_empty());
}

#[test]
fn an_unreadable_source_never_replaces_the_loaded_certificates() {
    let d = Dir::new("unreadable");
    std::fs::write(d.0.join("certs/a.pem"), bundle(&["a.example"])).unwrap();
    let store = CertStore::load(d.sources(&[]));
    assert_eq!(names(&store), ["a.pem"]);
    // The directory becomes unreadable (here: a file where the directory was; listing it
    // fails as it would with "too many open files").
    std::fs::rename(d.0.join("certs"), d.0.join("certs.moved")).unwrap();
    std::fs::write(d.0.join("certs"), b"not a directory").unwrap();
    assert!(!store.reload_if_changed());
    store.reload();
    assert_eq!(names(&store), ["a.pem"]);
    let err = store
        .put("b.pem", bundle(&["b.example"]).as_bytes())
        .unwrap_err();
    assert!(matches!(err, CertError::Io { .. }), "{err}");
    assert_eq!(names(&store), ["a.pem"]);
    // Readable again: changes are picked up.
    std::fs::remove_file(d.0.join("certs")).unwrap();
    std::fs::rename(d.0.join("certs.moved"), d.0.join("certs")).unwrap();
    std::fs::write(d.0.join("certs/b.pem"), bundle(&["b.example"])).unwrap();
    assert!(store.reload_if_changed());
    assert_eq!(names(&store), ["a.pem", "b.pem"]);
    // A directory that does not exist is "no certificates".
    std::fs::remove_dir_all(d.0.join("certs")).unwrap();
    assert!(store.reload_if_changed());
    assert!(store.is_empty());
}

#[test]
fn scan_failures_are_logged_at_most_once_a_minute() {
    let d = Dir::new("ratelimit");
    let store = CertStore::load(d.sources(&[]));
    std::fs::remove_dir_all(d.0.join("certs")).unwrap();
    std::fs::write(d.0.join("certs"), b"x").unwrap();
    for _ in 0..5 {
        store.reload();
    }
    let (last, suppressed) = *store.scan_failures.lock().unwrap();
    assert!(last.is_some());
    assert_eq!(suppressed, 4);
}

#[test]
fn globs() {
    assert!(glob_matches("*", "anything"));
    assert!(glob_matches("a*b", "ab"));
    assert!(glob_matches("a*b*c", "a-b-c"));
    assert!(!glob_matches("a*b*c", "a-c"));
    assert!(glob_matches("exact", "exact"));
    assert!(!glob_matches("exact", "exactly"));
    assert!(!glob_matches("ab*ba", "aba"));
}

#[test]
fn pem_encoding_round_trips() {
    let der: Vec<u8> = (0u8..=200).collect();
    let pem = to_pem(&der);
    let back = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
    assert_eq!(back.as_ref(), der.as_slice());
}
