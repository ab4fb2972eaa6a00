//! Where basic-auth users come from when a service is applied: the global `USERS` (already
//! parsed into the settings) and the `SECRETS_DIR/dfp_users_<usersSecret>` files, read here
//! each time a service is applied or the routing table is re-published (`/reload`), so a
//! rotated secret takes effect without a restart.

use std::path::PathBuf;
use std::sync::Arc;

use sluice_core::service::Service;
use sluice_core::settings::Settings;
use sluice_proxy::auth::{service_gate, Gate, GlobalUsers, DEFAULT_REALM};

/// The inputs of every basic-auth gate.
#[derive(Debug, Clone, Default)]
pub struct UserSource {
    /// `SECRETS_DIR`; `None` reads no secret files.
    pub secrets_dir: Option<PathBuf>,
    /// `USERS` / `USERS_PASS_ENCRYPTED`; `None` when `USERS` is unset.
    pub global: Option<GlobalUsers>,
}

impl UserSource {
    /// The source the settings describe.
    pub fn from_settings(settings: &Settings) -> UserSource {
        UserSource {
            secrets_dir: Some(settings.secrets_dir.clone()),
            global: settings.users.as_ref().map(|users| GlobalUsers {
                users: users.clone(),
                encrypted: settings.users_pass_encrypted,
            }),
        }
    }

    /// The gate of the global users (realm `defaultRealm`), when `USERS` is set.
    pub fn global_gate(&self) -> Option<Arc<Gate>> {
        self.global
            .as_ref()
            .map(|g| Arc::new(Gate::new(DEFAULT_REALM, &g.users, g.encrypted)))
    }

    /// The gate of `service`'s own users, reading its `usersSecret` file when it names one.
    /// A missing or unreadable file counts as empty (the gate then fails closed).
    pub async fn service_gate(&self, service: &Service) -> Option<Arc<Gate>> {
        let secret = match (&service.users_secret, &self.secrets_dir) {
            (Some(name), Some(dir)) => {
                let path = dir.join(format!("dfp_users_{name}"));
                match tokio::fs::read_to_string(&path).await {
                    Ok(text) => Some(text),
                    Err(error) => {
                        tracing::warn!(
                            service = %service.name,
                            path = %path.display(),
                            %error,
                            "cannot read the usersSecret file"
                        );
                        None
                    }
                }
            }
            _ => None,
        };
        service_gate(service, secret.as_deref(), self.global.as_ref()).map(Arc::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::params::{params_from_query, parse_service};

    fn service(query: &str) -> Service {
        parse_service(
            &params_from_query(&format!("serviceName=svc&servicePath=/&port=1&{query}")),
            &Settings::default().parse,
        )
        .unwrap()
    }

    #[tokio::test]
    async fn secret_files_are_read_from_the_secrets_dir() {
        let dir = std::env::temp_dir().join(format!("sluice-users-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("dfp_users_monitoring"), "observer:pw\n").unwrap();
        let source = UserSource {
            secrets_dir: Some(dir.clone()),
            global: None,
        };
        let gate = source
            .service_gate(&service("usersSecret=monitoring"))
            .await
            .unwrap();
        assert_eq!(gate.user_count(), 1);
        assert_eq!(gate.realm(), "svcRealm");
        let missing = source
            .service_gate(&service("usersSecret=absent"))
            .await
            .unwrap();
        assert_eq!(missing.user_count(), 0, "a missing file fails closed");
        assert!(source.service_gate(&service("")).await.is_none());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn global_gate_follows_the_settings() {
        let mut settings = Settings::default();
        assert!(UserSource::from_settings(&settings).global_gate().is_none());
        settings.users = Some(Vec::new());
        let gate = UserSource::from_settings(&settings).global_gate().unwrap();
        assert_eq!((gate.realm(), gate.user_count()), (DEFAULT_REALM, 0));
    }
}
