//! The state file at rest and at startup: owner-only mode, and no crash loop on a damaged file
//! or an entry that no longer validates.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::support::{client, Proxy, TempDir};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn metric(p: &Proxy, name: &str) -> f64 {
    let text = client()
        .get(format!("http://{}/metrics", p.api))
        .send()
        .unwrap()
        .text()
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

fn damaged_copies(dir: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("services.json.damaged-")
        })
        .collect()
}

#[test]
fn the_state_file_is_owner_only() {
    let dir = TempDir::new("mode");
    let file = dir.0.join("services.json");
    std::fs::write(
        &file,
        r#"{"version":1,"services":{"old":{"serviceName":"old","servicePath":"/old","port":"1"}}}"#,
    )
    .unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let p = Proxy::builder().data_dir(&dir.0).start();
    assert_eq!(mode(&file), 0o600, "an existing file is tightened");
    let r = p.reconfigure("serviceName=new&servicePath=/new&port=1&users=admin:pw");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(mode(&file), 0o600, "a rewritten file is created 0600");
}

fn starts_despite(content: &[u8], tag: &str) {
    let dir = TempDir::new(tag);
    std::fs::write(dir.0.join("services.json"), content).unwrap();
    let p = Proxy::builder().data_dir(&dir.0).start();
    assert_eq!(p.api("ping", "").status, 200);
    let copies = damaged_copies(&dir.0);
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert_eq!(std::fs::read(&copies[0]).unwrap(), content);
    assert_eq!(metric(&p, "sluice_state_damaged_files_total"), 1.0);
    assert!(p.log_text().contains("damaged"), "{}", p.log_text());
    // The proxy works and saves again.
    let r = p.reconfigure("serviceName=after&servicePath=/after&port=1");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(p.api("config", "type=json").json()["after"].is_object());
}

#[test]
fn a_truncated_state_file_does_not_stop_the_proxy() {
    starts_despite(
        br#"{"version":1,"services":{"a":{"serviceName":"a","servicePa"#,
        "truncated",
    );
}

#[test]
fn an_empty_state_file_does_not_stop_the_proxy() {
    starts_despite(b"", "empty");
}

#[test]
fn an_entry_that_no_longer_validates_is_dropped_alone() {
    let dir = TempDir::new("bad-entry");
    std::fs::write(
        dir.0.join("services.json"),
        r#"{"version":1,"services":{
            "good":{"serviceName":"good","servicePath":"/good","port":"1"},
            "broken":{"serviceName":"broken","servicePath":"/broken","port":"x","users":"admin:S3cretPw"}}}"#,
    )
    .unwrap();
    let p = Proxy::builder().data_dir(&dir.0).start();
    let config = p.api("config", "type=json").json();
    assert!(config["good"].is_object(), "{config}");
    assert!(config["broken"].is_null(), "{config}");
    assert!(damaged_copies(&dir.0).is_empty(), "the file itself is fine");
    assert_eq!(metric(&p, "sluice_state_dropped_entries_total"), 1.0);
    let logs = p.log_text();
    let line = logs
        .lines()
        .find(|l| l.contains("saved service dropped"))
        .unwrap_or_else(|| panic!("{logs}"));
    assert!(line.contains("broken") && line.contains("port"), "{line}");
    assert!(!logs.contains("S3cretPw"), "{logs}");
}
