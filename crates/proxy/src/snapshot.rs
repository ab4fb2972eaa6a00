//! The routing snapshot: an immutable compiled view of the service set, published by the one
//! writer through an [`ArcSwap`] and read by every request without a lock.

use std::sync::Arc;

use arc_swap::ArcSwap;
use sluice_core::route::RouteTable;
use sluice_core::stream::StreamTable;

use crate::auth::AuthTable;
use crate::stats::{Report, RouteStats, StatsHub};

/// One published routing state.
pub struct Snapshot {
    /// Increases by one with every published change.
    pub generation: u64,
    /// A hash of the service set's parameters: equal on replicas with the same routes.
    pub digest: String,
    /// The compiled HTTP routes.
    pub table: RouteTable,
    /// The basic-auth gates (global and per service).
    pub auth: AuthTable,
    /// The counters of each route of `table`, by route position.
    pub stats: RouteStats,
    /// The compiled layer-4 (tcp and sni) routes.
    pub stream: StreamTable,
}

impl Snapshot {
    /// The state before any service is configured.
    pub fn empty() -> Snapshot {
        Snapshot {
            generation: 0,
            digest: String::new(),
            table: RouteTable::build(std::iter::empty()),
            auth: AuthTable::default(),
            stats: RouteStats::default(),
            stream: StreamTable::default(),
        }
    }
}

/// Where the current snapshot is published.
pub type SnapshotCell = Arc<ArcSwap<Snapshot>>;

/// A cell holding the empty snapshot.
pub fn new_cell() -> SnapshotCell {
    Arc::new(ArcSwap::from_pointee(Snapshot::empty()))
}

impl StatsHub {
    /// A consistent-enough reading of every counter, labelled from `snapshot`'s routes.
    pub fn report(&self, snapshot: &Snapshot) -> Report {
        self.report_for(&snapshot.table, snapshot.generation, &snapshot.digest)
    }
}
