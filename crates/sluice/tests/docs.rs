//! The user docs stay true: every variable the proxy reads and every parameter it parses is
//! documented, and `--help` lists the same variables as the docs.

use sluice_core::params::{ParamHandling, KNOWN_PARAMS};
use sluice_core::settings::known_variables;

fn doc(name: &str) -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/");
    std::fs::read_to_string(format!("{path}{name}")).unwrap()
}

/// The variables table that `--help` prints, included as it is (it depends only on `std`).
#[allow(dead_code)]
#[path = "../src/variables.rs"]
mod variables;

use variables::{Variable, LISTENER, PROXY};

/// The variables named in the first column of `docs/configuration.md`'s tables, for the proxy
/// section and the listener section.
fn documented_variables() -> (Vec<String>, Vec<String>) {
    let text = doc("configuration.md");
    let (proxy, listener) = text
        .split_once("## `sluice listener`")
        .expect("configuration.md has a `sluice listener` section");
    let names = |section: &str| -> Vec<String> {
        section
            .lines()
            .filter(|l| l.starts_with("| `"))
            .filter_map(|l| l.split('|').nth(1))
            .flat_map(|cell| cell.split('`').skip(1).step_by(2).map(str::to_owned))
            // Variables are upper case; other tables (e.g. the request log's fields) are not.
            .filter(|name| !name.starts_with(|c: char| c.is_ascii_lowercase()))
            .collect()
    };
    (names(proxy), names(listener))
}

fn names(table: &[Variable]) -> Vec<&'static str> {
    table.iter().map(|v| v.name).collect()
}

#[test]
fn every_variable_is_in_the_configuration_reference() {
    let text = doc("configuration.md");
    let missing: Vec<&str> = known_variables()
        .iter()
        .copied()
        .chain(names(PROXY))
        .chain(names(LISTENER))
        .filter(|v| !text.contains(&format!("`{v}`")))
        .collect();
    assert!(missing.is_empty(), "undocumented variables: {missing:?}");
}

/// The help table, the docs' tables and what the proxy's settings read are the same set.
#[test]
fn the_help_table_matches_the_docs_and_the_settings() {
    let (proxy_doc, listener_doc) = documented_variables();
    let not_in_help: Vec<&str> = known_variables()
        .iter()
        .copied()
        .filter(|v| !names(PROXY).contains(v))
        .collect();
    assert!(
        not_in_help.is_empty(),
        "read by the proxy but missing from crates/sluice/src/variables.rs: {not_in_help:?}"
    );
    for (program, doc, table) in [
        ("proxy", &proxy_doc, PROXY),
        ("listener", &listener_doc, LISTENER),
    ] {
        let table = names(table);
        let extra: Vec<&String> = doc
            .iter()
            .filter(|v| !table.contains(&v.as_str()))
            .collect();
        assert!(
            extra.is_empty(),
            "documented for `sluice {program}` but missing from its help table: {extra:?}"
        );
        let undocumented: Vec<&&str> = table
            .iter()
            .filter(|v| !doc.contains(&v.to_string()))
            .collect();
        assert!(
            undocumented.is_empty(),
            "in the `sluice {program}` help table but not in its docs section: {undocumented:?}"
        );
    }
}

/// `sluice proxy --help` and `sluice listener --help` name every documented variable, with
/// its default and meaning.
#[test]
fn help_names_every_documented_variable() {
    let (proxy_doc, listener_doc) = documented_variables();
    for (program, doc, table) in [
        ("proxy", proxy_doc, PROXY),
        ("listener", listener_doc, LISTENER),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args([program, "--help"])
            .output()
            .unwrap();
        assert!(out.status.success(), "sluice {program} --help failed");
        let help = String::from_utf8(out.stdout).unwrap();
        let lines: Vec<&str> = help.lines().map(str::trim_start).collect();
        for name in &doc {
            let v = table
                .iter()
                .find(|v| v.name == name.as_str())
                .unwrap_or_else(|| panic!("{name} is not in the help table"));
            assert!(
                lines.iter().any(|l| l.starts_with(&format!("{name} "))
                    && l.contains(v.default)
                    && l.ends_with(v.meaning)),
                "`sluice {program} --help` does not list {name} with its default and meaning:\n{help}"
            );
        }
    }
}

#[test]
fn every_parameter_is_in_the_labels_reference() {
    let text = doc("labels.md");
    let missing: Vec<&str> = KNOWN_PARAMS
        .iter()
        .filter(|p| !matches!(p.handling, ParamHandling::Internal))
        .map(|p| p.name)
        .filter(|name| !text.contains(&format!("`{name}`")))
        .collect();
    assert!(missing.is_empty(), "undocumented parameters: {missing:?}");
}
