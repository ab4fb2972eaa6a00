//! The user docs stay true: every variable the proxy reads and every parameter it parses is
//! documented.

use sluice_core::params::{ParamHandling, KNOWN_PARAMS};
use sluice_core::settings::known_variables;

fn doc(name: &str) -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/");
    std::fs::read_to_string(format!("{path}{name}")).unwrap()
}

#[test]
fn every_variable_is_in_the_configuration_reference() {
    let text = doc("configuration.md");
    let missing: Vec<&str> = known_variables()
        .iter()
        .copied()
        .chain(["HOSTS_FILE", "LOG_LEVEL", "LOG_FORMAT"])
        .filter(|v| !text.contains(&format!("`{v}`")))
        .collect();
    assert!(missing.is_empty(), "undocumented variables: {missing:?}");
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
