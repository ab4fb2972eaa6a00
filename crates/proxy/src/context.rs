//! What every request of a worker sees: the worker's per-thread state (its snapshot handle,
//! upstream pools, settings). The request path (`forward`, `tls`, `stream`) depends on this
//! module, not on the worker's threads and listeners (`worker`), which depend on it.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use sluice_core::service::ConnectionMode;
use sluice_core::settings::Timeouts;

use crate::snapshot::{Snapshot, SnapshotCell};
use crate::upstream::Upstreams;

/// The per-thread state every request of a worker sees.
pub(crate) struct Worker {
    pub(crate) snapshot: SnapshotCell,
    /// This worker's handle on the current snapshot: requests clone the `Rc` (no atomic
    /// operation shared with other workers) and it is refreshed when the writer publishes.
    /// The extra allocation happens once per publication, not per request.
    #[allow(clippy::redundant_allocation)]
    pub(crate) current: std::cell::RefCell<Rc<Arc<Snapshot>>>,
    pub(crate) upstreams: Rc<Upstreams>,
    pub(crate) timeouts: Timeouts,
    pub(crate) connection_mode: ConnectionMode,
    /// The first TLS port, for `httpsOnly` redirects.
    pub(crate) https_port: Option<u16>,
    /// Traffic counters and the statistics page.
    pub(crate) stats: crate::stats_page::StatsConfig,
    /// The global compression default.
    pub(crate) compression: Option<sluice_core::service::Compression>,
    /// The request log, when on (this worker's copy).
    pub(crate) access_log: Option<Rc<crate::access_log::AccessLog>>,
    /// How long a client connection may stay without a complete request header section.
    pub(crate) idle_limit: Duration,
    /// The Swarm tasks the listener reports.
    pub(crate) membership: Arc<crate::membership::MembershipCell>,
    /// Spare buffers of the pass-through path ([`crate::passthrough`]).
    pub(crate) buffers: crate::wire::Buffers,
}

impl Worker {
    /// The drain deadline of the task behind `addr`, for a tunnel to it: `None` unless the
    /// route's service is one whose tasks the listener reports.
    pub(crate) fn drain_of(
        &self,
        service: &sluice_core::service::Service,
        target: crate::upstream::Target<'_>,
        addr: std::net::SocketAddr,
    ) -> Option<crate::membership::Drain> {
        if !target.tasks_first || !self.membership.load().services.contains_key(target.host) {
            return None;
        }
        let timeout = sluice_core::membership::drain_timeout(service);
        Some(self.membership.drain(target.host, addr.ip(), timeout))
    }

    /// The current snapshot, as of this request.
    #[allow(clippy::redundant_allocation)]
    pub(crate) fn current_snapshot(&self) -> Rc<Arc<Snapshot>> {
        let published = self.snapshot.load();
        let mut current = self.current.borrow_mut();
        if !Arc::ptr_eq(&**current, &*published) {
            *current = Rc::new(arc_swap::Guard::into_inner(published));
        }
        current.clone()
    }
}
