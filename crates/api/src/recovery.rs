//! Startup: the services saved in `DATA_DIR`, as far as they are still usable.
//!
//! A damaged state file or an entry that no longer validates never stops the proxy (under
//! Swarm that would be a crash loop with every route down): the proxy starts with every valid
//! entry, a damaged file is kept aside ([`Store::recover`]), each dropped entry is logged with
//! its service name and the reason (secret values are never shown) and counted in `/metrics`
//! (`sluice_state_dropped_entries_total`, `sluice_state_damaged_files_total`), and the
//! listener's sync fills in the rest.

use sluice_core::params::ParseContext;

use crate::admission::admit;
use sluice_core::service::Service;

use crate::metrics::Counters;
use crate::store::{Store, StoreError};

/// The saved services that still validate. Fails only when the file cannot be read or set
/// aside (see [`Store::recover`]).
pub fn saved_services(
    store: &Store,
    parse: &ParseContext,
    counters: &Counters,
) -> Result<Vec<Service>, StoreError> {
    let found = store.recover()?;
    if let Some(damaged) = &found.damaged {
        tracing::error!(
            path = %store.path().display(),
            aside = %damaged.aside.display(),
            reason = %damaged.reason,
            "the state file is damaged: moved aside, starting without it"
        );
        counters.damaged_file();
    }
    for (name, reason) in &found.dropped {
        tracing::error!(service = %name, %reason, "saved service dropped");
        counters.dropped_entry();
    }
    let mut services = Vec::with_capacity(found.services.len());
    for (name, params) in found.services {
        // Parameter errors never carry a secret value (core redacts `users`).
        match admit(&params, parse) {
            Ok(service) => services.push(service),
            Err(error) => {
                tracing::error!(service = %name, reason = %error, "saved service dropped: it no longer validates");
                counters.dropped_entry();
            }
        }
    }
    Ok(services)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_entries_are_dropped_and_counted() {
        let dir = std::env::temp_dir().join(format!("sluice-recovery-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Store::open(&dir).unwrap();
        std::fs::write(
            store.path(),
            br#"{"version":1,"services":{
                "good":{"serviceName":"good","servicePath":"/g","port":"1"},
                "bad":{"serviceName":"bad","servicePath":"/b","port":"x","users":"u:S3cret"},
                "shape":[1]}}"#,
        )
        .unwrap();
        let counters = Counters::default();
        let services = saved_services(&store, &ParseContext::default(), &counters).unwrap();
        assert_eq!(services.len(), 1);
        assert_eq!(services[0].name, "good");
        assert_eq!(counters.dropped_entries(), 2);
        assert_eq!(counters.damaged_files(), 0);
        std::fs::write(store.path(), b"").unwrap();
        assert!(saved_services(&store, &ParseContext::default(), &counters)
            .unwrap()
            .is_empty());
        assert_eq!(counters.damaged_files(), 1);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
