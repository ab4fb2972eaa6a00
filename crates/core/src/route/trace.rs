//! The trace: what [`RouteTable::decide_traced`](crate::route::RouteTable::decide_traced)
//! tells an observer while it decides. The data plane passes [`NoTrace`], whose calls
//! compile to nothing; explain records them.

use std::sync::Arc;

use super::routes::{Mismatch, Route};
use crate::service::Service;

/// A redirect rule that fired.
#[derive(Debug, Clone, Copy)]
pub struct RedirectFired<'t> {
    /// The service that declared it.
    pub service: &'t Arc<Service>,
    /// Its destination (index into `service.destinations`).
    pub dest: usize,
    /// The parameter behind it: `redirectFromDomain`, `redirectWhenHttpProto` or
    /// `redirectUnlessHttpsProto`.
    pub rule: &'static str,
}

/// What [`RouteTable::decide_traced`] reports while it decides.
///
/// [`RouteTable::decide_traced`]: crate::route::RouteTable::decide_traced
pub trait Trace {
    /// The index offered `route` and its check gave `outcome`.
    #[inline(always)]
    fn candidate(&mut self, route: &Route, outcome: Result<(), Mismatch>) {
        let _ = (route, outcome);
    }

    /// This redirect rule fired (the routes were not looked at).
    #[inline(always)]
    fn redirect(&mut self, fired: RedirectFired<'_>) {
        let _ = fired;
    }
}

/// The trace of the data plane: hears nothing, costs nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoTrace;

impl Trace for NoTrace {}
