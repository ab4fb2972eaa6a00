//! The registry's gate for layer-4 (tcp/sni) listeners: a change that adds or moves a tcp or
//! sni port is checked and its ports are bound **before** the registry publishes it, so a port
//! conflict (400) or a port that cannot be bound (500) leaves everything as it was. After a
//! publication, ports no service uses any more are closed.

use std::sync::{Arc, OnceLock};

use sluice_core::service::{ReqMode, Service};
use sluice_core::stream::{PortConflict, StreamTable};
use sluice_proxy::stream::{StreamListenError, StreamListeners};

use crate::services::ServiceMap;

/// A change cannot be served on layer 4.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// Two services (or a service and the HTTP listener) want the same port.
    #[error(transparent)]
    Conflict(#[from] PortConflict),
    /// The port could not be bound.
    #[error(transparent)]
    Listen(#[from] StreamListenError),
}

impl StreamError {
    /// The port concerned.
    pub fn port(&self) -> u16 {
        match self {
            StreamError::Conflict(c) => c.port(),
            StreamError::Listen(l) => l.port(),
        }
    }

    /// True for a request that can never succeed as given (a conflict), false for a failure of
    /// this proxy (a bind error).
    pub fn is_client_error(&self) -> bool {
        matches!(self, StreamError::Conflict(_))
    }
}

/// Checks changes against the layer-4 listener set and keeps it in step with publications.
#[derive(Default)]
pub struct StreamGate {
    listeners: OnceLock<Arc<StreamListeners>>,
}

fn has_streams(service: &Service) -> bool {
    service
        .destinations
        .iter()
        .any(|d| d.req_mode != ReqMode::Http)
}

impl StreamGate {
    /// Connects the gate to the data plane's listener set (once; later calls are ignored).
    pub fn attach(&self, listeners: Arc<StreamListeners>) {
        let _ = self.listeners.set(listeners);
    }

    fn http_ports(&self) -> Vec<u16> {
        self.listeners
            .get()
            .map(|l| l.http_ports())
            .unwrap_or_default()
    }

    /// Checks that `services` with `service` added (or replaced) has no port conflict, without
    /// binding anything.
    pub fn conflicts(&self, services: &ServiceMap, service: &Service) -> Result<(), StreamError> {
        let candidate = Arc::new(service.clone());
        let others = services
            .iter()
            .filter(|(name, _)| **name != service.name)
            .map(|(_, s)| s);
        StreamTable::build(
            others.chain(std::iter::once(&candidate)),
            &self.http_ports(),
        )?;
        Ok(())
    }

    /// Checks that `services` with `service` added (or replaced) has no port conflict, and
    /// binds any new layer-4 port. Nothing is published or closed here.
    pub fn check(&self, services: &ServiceMap, service: &Service) -> Result<(), StreamError> {
        let replaces_streams = services.get(&service.name).is_some_and(|s| has_streams(s));
        if !has_streams(service) && !replaces_streams {
            return Ok(());
        }
        let candidate = Arc::new(service.clone());
        let others = services
            .iter()
            .filter(|(name, _)| **name != service.name)
            .map(|(_, s)| s);
        let table = StreamTable::build(
            others.chain(std::iter::once(&candidate)),
            &self.http_ports(),
        )?;
        if let Some(listeners) = self.listeners.get() {
            listeners.open(&table.ports())?;
        }
        Ok(())
    }

    /// The layer-4 table of a service set that passed [`StreamGate::check`]. Should it conflict
    /// anyway, the error is logged and `previous` is kept.
    pub fn table(&self, services: &ServiceMap, previous: &StreamTable) -> StreamTable {
        match StreamTable::build(services.values(), &self.http_ports()) {
            Ok(table) => table,
            Err(error) => {
                tracing::error!(%error, "layer-4 routes not updated");
                previous.clone()
            }
        }
    }

    /// After a publication: opens ports of `table` that are not open yet (startup), closes the
    /// ones it no longer has, and tells the workers.
    pub fn retain(&self, table: &StreamTable) {
        if let Some(listeners) = self.listeners.get() {
            let ports = table.ports();
            if let Err(error) = listeners.open(&ports) {
                tracing::error!(%error, "layer-4 listener not opened");
            }
            listeners.retain(&ports);
        }
    }
}

#[cfg(test)]
mod tests {
    use sluice_core::params::{params_from_query, parse_service, ParseContext};

    use super::*;

    fn svc(q: &str) -> Service {
        parse_service(&params_from_query(q), &ParseContext::default()).unwrap()
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("0.0.0.0:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    #[test]
    fn http_only_changes_skip_the_check() {
        let gate = StreamGate::default();
        gate.attach(StreamListeners::new(1, &[]));
        gate.check(
            &ServiceMap::new(),
            &svc("serviceName=a&servicePath=/&port=1"),
        )
        .unwrap();
    }

    #[test]
    fn conflicts_are_client_errors_and_bind_failures_are_not() {
        let gate = StreamGate::default();
        gate.attach(StreamListeners::new(1, &[8080]));
        let e = gate
            .check(
                &ServiceMap::new(),
                &svc("serviceName=a&reqMode=tcp&srcPort=8080&port=1"),
            )
            .unwrap_err();
        assert!(e.is_client_error());
        assert_eq!(e.port(), 8080);

        let busy = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
        let port = busy.local_addr().unwrap().port();
        let e = gate
            .check(
                &ServiceMap::new(),
                &svc(&format!("serviceName=a&reqMode=tcp&srcPort={port}&port=1")),
            )
            .unwrap_err();
        assert!(!e.is_client_error());
        assert_eq!(e.port(), port);
    }

    #[test]
    fn replacing_a_tcp_service_with_http_frees_its_port() {
        let gate = StreamGate::default();
        let listeners = StreamListeners::new(1, &[]);
        gate.attach(listeners.clone());
        let port = free_port();
        let tcp = svc(&format!("serviceName=a&reqMode=tcp&srcPort={port}&port=1"));
        gate.check(&ServiceMap::new(), &tcp).unwrap();
        assert_eq!(listeners.ports(), [port]);
        let mut map = ServiceMap::new();
        map.insert("a".into(), Arc::new(tcp));
        let table = gate.table(&map, &StreamTable::default());
        gate.retain(&table);
        assert_eq!(listeners.ports(), [port]);

        let http = svc("serviceName=a&servicePath=/&port=1");
        gate.check(&map, &http).unwrap();
        map.insert("a".into(), Arc::new(http));
        let table = gate.table(&map, &table);
        gate.retain(&table);
        assert!(listeners.ports().is_empty());
    }
}
