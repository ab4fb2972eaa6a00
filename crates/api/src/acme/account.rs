//! The ACME account: one per proxy service, shared by every replica.
//!
//! The credentials (account URL and private key) live in `DATA_DIR/acme-account.json`, written
//! 0600 through a temporary file and a rename. The holder of the lease loads them, else copies
//! them from a peer (`GET /v1/docker-flow-proxy/acme/account`, API credentials required), else
//! registers a new account and sends the credentials to every peer (`PUT` of the same path), so
//! a replica that takes over orders with the same account.

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use instant_acme::{Account, AccountCredentials, NewAccount};
use serde_json::Value;

use super::AcmeError;
use crate::ApiState;

/// The path of the account endpoint on the peers.
pub const ACCOUNT_PATH: &str = "/v1/docker-flow-proxy/acme/account";

/// The credentials file in `DATA_DIR`.
pub fn account_file(data_dir: &Path) -> PathBuf {
    data_dir.join("acme-account.json")
}

/// The directory URL the credentials were made for.
fn directory_of(json: &[u8]) -> Option<String> {
    serde_json::from_slice::<Value>(json).ok()?["directory"]
        .as_str()
        .map(str::to_string)
}

/// Writes the credentials 0600 (temporary file, then rename).
pub fn write_credentials(data_dir: &Path, json: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(data_dir)?;
    let target = account_file(data_dir);
    let temp = data_dir.join(".acme-account.json.tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temp)?;
    file.write_all(json)?;
    file.sync_all()?;
    std::fs::rename(&temp, &target)
}

/// Checks credentials received from a peer: JSON of an account for `directory`.
pub fn check_credentials(json: &[u8], directory: &str) -> Result<(), String> {
    let _: AccountCredentials =
        serde_json::from_slice(json).map_err(|e| format!("not ACME account credentials: {e}"))?;
    match directory_of(json) {
        Some(d) if d == directory => Ok(()),
        other => Err(format!(
            "the account is for directory {other:?}, not ACME_DIRECTORY {directory}"
        )),
    }
}

fn builder(state: &ApiState) -> Result<instant_acme::AccountBuilder, AcmeError> {
    match &state.settings.acme.ca_file {
        Some(path) => Account::builder_with_root(path),
        None => Account::builder(),
    }
    .map_err(AcmeError::Client)
}

/// The account the holder orders with (see the module documentation). A new account's
/// contact is `ACME_EMAIL`, else `service_email` (a service's `acmeEmail`).
pub async fn account(
    state: &ApiState,
    peers: &[IpAddr],
    service_email: Option<&str>,
) -> Result<Account, AcmeError> {
    let settings = &state.settings;
    let directory = &settings.acme.directory;
    let file = account_file(&settings.data_dir);
    let stored = tokio::fs::read(&file)
        .await
        .ok()
        .filter(|json| check_credentials(json, directory).is_ok());
    let stored = match stored {
        Some(json) => Some(json),
        None => from_peers(state, peers, directory).await,
    };
    if let Some(json) = stored {
        let credentials: AccountCredentials =
            serde_json::from_slice(&json).map_err(|e| AcmeError::Account(e.to_string()))?;
        return builder(state)?
            .from_credentials(credentials)
            .await
            .map_err(AcmeError::Client);
    }
    let email = settings
        .acme
        .email
        .as_deref()
        .or(service_email)
        .map(|e| format!("mailto:{e}"));
    let contact: Vec<&str> = email.iter().map(String::as_str).collect();
    let (account, credentials) = builder(state)?
        .create(
            &NewAccount {
                contact: &contact,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            directory.clone(),
            None,
        )
        .await
        .map_err(AcmeError::Client)?;
    let json = serde_json::to_vec(&credentials).map_err(|e| AcmeError::Account(e.to_string()))?;
    let dir = settings.data_dir.clone();
    let stored = json.clone();
    tokio::task::spawn_blocking(move || write_credentials(&dir, &stored))
        .await
        .map_err(|e| AcmeError::Account(e.to_string()))?
        .map_err(|e| AcmeError::Account(format!("cannot write {}: {e}", file.display())))?;
    tracing::info!(account = %account.id(), "ACME account registered");
    if super::may_distribute_keys(state) {
        let failed = super::send_to_peers(state, peers, ACCOUNT_PATH, json.into()).await;
        for failure in failed {
            tracing::warn!(%failure, "ACME account not sent to a replica");
        }
    }
    Ok(account)
}

async fn from_peers(state: &ApiState, peers: &[IpAddr], directory: &str) -> Option<Vec<u8>> {
    if !super::may_distribute_keys(state) {
        return None;
    }
    for ip in peers {
        let url = format!(
            "http://{}{ACCOUNT_PATH}",
            SocketAddr::new(*ip, state.settings.port)
        );
        let Ok(json) = state.peer_client.get(&url).await else {
            continue;
        };
        if check_credentials(&json, directory).is_err() {
            continue;
        }
        let dir = state.settings.data_dir.clone();
        let stored = json.to_vec();
        match tokio::task::spawn_blocking(move || write_credentials(&dir, &stored)).await {
            Ok(Ok(())) => tracing::info!(%ip, "ACME account copied from a replica"),
            _ => tracing::warn!(%ip, "ACME account copied from a replica but not written"),
        }
        return Some(json.to_vec());
    }
    None
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn credentials_are_written_owner_only() {
        let dir = std::env::temp_dir().join(format!("sluice-acme-account-{}", std::process::id()));
        write_credentials(&dir, b"{}").unwrap();
        let mode = std::fs::metadata(account_file(&dir))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn foreign_credentials_are_refused() {
        assert!(check_credentials(b"{}", "https://a/dir").is_err());
        assert!(check_credentials(b"not json", "https://a/dir").is_err());
    }
}
