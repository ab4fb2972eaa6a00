//! The process's variables: the environment, with Docker secrets overlaid.
//!
//! A variable `NAME` can also be given as the file `SECRETS_DIR/dfp_<name in lower case>`
//! (trailing newline trimmed); the secret wins over the environment variable.

use std::path::PathBuf;

use sluice_core::settings::Vars;

/// Environment plus `SECRETS_DIR/dfp_*` files.
pub(crate) struct ProcessVars {
    secrets_dir: PathBuf,
}

impl ProcessVars {
    /// Reads secrets from `SECRETS_DIR` (default `/run/secrets`).
    pub(crate) fn from_env() -> ProcessVars {
        let secrets_dir = std::env::var_os("SECRETS_DIR")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/run/secrets"));
        ProcessVars { secrets_dir }
    }
}

impl Vars for ProcessVars {
    fn var(&self, key: &str) -> Option<String> {
        let secret = self
            .secrets_dir
            .join(format!("dfp_{}", key.to_ascii_lowercase()));
        if let Ok(text) = std::fs::read_to_string(secret) {
            let value = text.trim_end_matches(['\n', '\r']);
            if !value.is_empty() {
                return Some(value.to_string());
            }
        }
        std::env::var(key).ok().filter(|v| !v.is_empty())
    }
}
