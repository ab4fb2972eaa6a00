//! Passive health of upstream addresses, and the retry budget of each service.
//!
//! One [`Health`] is shared by every worker thread (and read by the statistics report). The
//! request path never takes a lock: each address's state is a handful of atomics behind an
//! `ArcSwap` map, which is copied and extended (read-copy-update) only when an address is
//! seen for the first time.
//!
//! **Ejection.** An address that fails [`EJECT_AFTER`] times in a row (connect refused or
//! timed out, connection reset before a response) is ejected: requests skip it for a backoff
//! of [`FIRST_BACKOFF`], doubling after every failed probe up to [`MAX_BACKOFF`]. A connect
//! *timeout* ejects already when it is the second failure in a row: a dead address costs the
//! whole connect timeout each time it is tried, so it is not tried a third time.
//!
//! **Probe.** When the backoff is over, the next request that comes across the address starts
//! one probe of it (see [`Health::admit`]): a TCP connect in the background, within the
//! connect timeout, while requests keep skipping the address. A probe rather than a trial
//! request, so that no client pays a dead address's connect timeout (a node that is gone
//! answers nothing). Success re-admits the address and resets its backoff (should it accept
//! connections but fail requests, it is ejected again after [`EJECT_AFTER`] failures);
//! failure ejects it for twice as long. A probe with no outcome is forgotten after
//! [`PROBE_STALE`].
//!
//! **Retry budget.** Each service may retry at most [`RETRY_RATIO`] of its requests over a
//! sliding [`BUDGET_WINDOW`], plus [`RETRY_FLOOR_PER_SEC`] per second of the window, so that
//! a dying service is not hammered with retries while a quiet one can still retry. The
//! window is ten one-second buckets of atomics; a bucket is reset by whichever thread first
//! sees that its second is over, so counts are approximate under races (never unbounded).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::time::Instant;

/// Failures in a row that eject an address.
pub const EJECT_AFTER: u32 = 3;
/// Failures in a row that eject an address when the last one was a connect timeout.
pub const EJECT_AFTER_TIMEOUT: u32 = 2;
/// The first ejection's length.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest ejection.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A probe with no outcome after this long is given up, and another one may start.
pub const PROBE_STALE: Duration = Duration::from_secs(30);
/// Retries allowed per request of the window.
pub const RETRY_RATIO: f64 = 0.2;
/// Retries always allowed, per second of the window.
pub const RETRY_FLOOR_PER_SEC: u32 = 3;
/// The retry budget's sliding window.
pub const BUDGET_WINDOW: Duration = Duration::from_secs(10);
const BUCKETS: usize = 10;
/// Addresses (and services) remembered before those unused for [`FORGET_AFTER`] are dropped.
const MAX_ENTRIES: usize = 4096;
/// An address not chosen for this long may be forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(600);
/// Stands for "no time" in the millisecond atomics.
const NEVER: u64 = 0;

/// How an attempt on an address failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The connection was refused or broke while connecting.
    Refused,
    /// The connect timed out.
    ConnectTimeout,
    /// The connection was reset or closed before any response byte.
    Reset,
}

/// Whether a request may use an address now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// The address is in rotation.
    Yes,
    /// The address's backoff is over: the caller starts its probe (and skips it meanwhile).
    Probe,
    /// The address is ejected (since the given time, for ordering).
    No {
        /// When it was ejected (milliseconds since the [`Health`] started, plus one).
        since: u64,
    },
}

/// The state of one address (atomics, shared by every worker).
#[derive(Debug, Default)]
pub struct AddrHealth {
    /// Failures in a row.
    failures: AtomicU32,
    /// When the current ejection started (see [`Health::now`]), or [`NEVER`].
    ejected_at: AtomicU64,
    /// When the current ejection ends.
    ejected_until: AtomicU64,
    /// The current ejection's length in ms (the next failed probe doubles it).
    backoff_ms: AtomicU64,
    /// When the running probe started, or [`NEVER`].
    probe: AtomicU64,
    /// Ejections so far.
    ejections: AtomicU64,
    /// When a request last chose the address.
    used: AtomicU64,
}

/// What the statistics report shows of an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AddrReport {
    /// Whether it is ejected now (including while its probe runs).
    pub ejected: bool,
    /// How many times it was ejected.
    pub ejections: u64,
}

/// One second of a service's retry budget.
#[derive(Debug, Default)]
struct Bucket {
    second: AtomicU64,
    requests: AtomicU32,
    retries: AtomicU32,
}

/// What is kept per service: its retry budget (see the module documentation), and whether
/// it ever had an address.
#[derive(Debug, Default)]
pub struct ServiceHealth {
    buckets: [Bucket; BUCKETS],
    used: AtomicU64,
    known: AtomicBool,
}

/// Passive health and retry budgets, shared by every worker.
#[derive(Debug)]
pub struct Health {
    epoch: Instant,
    addrs: ArcSwap<HashMap<SocketAddr, Arc<AddrHealth>>>,
    services: ArcSwap<HashMap<Box<str>, Arc<ServiceHealth>>>,
}

impl Default for Health {
    fn default() -> Self {
        Health::new()
    }
}

impl Health {
    /// No address known yet.
    pub fn new() -> Health {
        Health {
            epoch: Instant::now(),
            addrs: ArcSwap::default(),
            services: ArcSwap::default(),
        }
    }

    /// Milliseconds since the epoch, plus one (0 is [`NEVER`]).
    fn now(&self) -> u64 {
        ms(self.epoch.elapsed()).saturating_add(1)
    }

    /// The state of `addr`, created on first sight.
    fn addr(&self, addr: SocketAddr) -> Arc<AddrHealth> {
        if let Some(state) = self.addrs.load().get(&addr) {
            return state.clone();
        }
        let now = self.now();
        let forget = ms(FORGET_AFTER);
        let mut created = None;
        self.addrs.rcu(|current| {
            let mut next = HashMap::clone(current);
            if next.len() >= MAX_ENTRIES {
                next.retain(|_, s| now.saturating_sub(s.used.load(Ordering::Relaxed)) < forget);
            }
            let state = next.entry(addr).or_default().clone();
            state.used.store(now, Ordering::Relaxed);
            created = Some(state);
            next
        });
        created.unwrap_or_default()
    }

    /// Whether a request may use `addr` now. [`Admit::Probe`] asks the caller to start the
    /// address's probe, whose outcome it reports ([`Health::succeeded`] or
    /// [`Health::failed`]); one caller at a time gets it.
    pub fn admit(&self, addr: SocketAddr) -> Admit {
        let known = self.addrs.load();
        match known.get(&addr) {
            Some(state) => self.admit_state(state),
            None => {
                drop(known);
                self.admit_state(&self.addr(addr))
            }
        }
    }

    fn admit_state(&self, state: &AddrHealth) -> Admit {
        let now = self.now();
        state.used.store(now, Ordering::Relaxed);
        let since = state.ejected_at.load(Ordering::Acquire);
        if since == NEVER {
            return Admit::Yes;
        }
        if now < state.ejected_until.load(Ordering::Acquire) {
            return Admit::No { since };
        }
        let probe = state.probe.load(Ordering::Acquire);
        let stale = probe != NEVER && now.saturating_sub(probe) >= ms(PROBE_STALE);
        if (probe == NEVER || stale)
            && state
                .probe
                .compare_exchange(probe, now, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            return Admit::Probe;
        }
        Admit::No { since }
    }

    /// An attempt on `addr` got a response, or its probe connected.
    pub fn succeeded(&self, addr: SocketAddr) {
        let known = self.addrs.load();
        let Some(state) = known.get(&addr) else {
            return;
        };
        if state.failures.load(Ordering::Relaxed) != 0 {
            state.failures.store(0, Ordering::Relaxed);
        }
        if state.ejected_at.load(Ordering::Acquire) != NEVER {
            state.backoff_ms.store(0, Ordering::Relaxed);
            state.probe.store(NEVER, Ordering::Release);
            state.ejected_at.store(NEVER, Ordering::Release);
            tracing::info!(%addr, "upstream address re-admitted");
        }
    }

    /// An attempt on `addr` failed with `fault`. Returns true when this ejected the address.
    pub fn failed(&self, addr: SocketAddr, fault: Fault) -> bool {
        let state = self.addr(addr);
        let now = self.now();
        let failures = state
            .failures
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        let ejected = state.ejected_at.load(Ordering::Acquire) != NEVER;
        let backoff = if ejected {
            // A probe (or a request that tried it anyway) failed: eject for twice as long.
            let previous = state
                .backoff_ms
                .load(Ordering::Relaxed)
                .max(ms(FIRST_BACKOFF));
            (previous * 2).min(ms(MAX_BACKOFF))
        } else {
            let limit = match fault {
                Fault::ConnectTimeout => EJECT_AFTER_TIMEOUT,
                Fault::Refused | Fault::Reset => EJECT_AFTER,
            };
            if failures < limit {
                return false;
            }
            ms(FIRST_BACKOFF)
        };
        state.backoff_ms.store(backoff, Ordering::Relaxed);
        state.ejected_until.store(now + backoff, Ordering::Release);
        state.probe.store(NEVER, Ordering::Release);
        // Of several workers failing at once, one ejects.
        let first = !ejected
            && state
                .ejected_at
                .compare_exchange(NEVER, now, Ordering::AcqRel, Ordering::Acquire)
                .is_ok();
        if first {
            state.ejections.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%addr, ?fault, failures, "upstream address ejected");
        }
        first
    }

    /// What the statistics report shows of `addr` (nothing when it was never chosen).
    pub fn report(&self, addr: SocketAddr) -> AddrReport {
        match self.addrs.load().get(&addr) {
            Some(state) => AddrReport {
                ejected: state.ejected_at.load(Ordering::Relaxed) != NEVER,
                ejections: state.ejections.load(Ordering::Relaxed),
            },
            None => AddrReport::default(),
        }
    }

    /// The state of `service` (an upstream host), created on first sight.
    pub fn service(&self, service: &str) -> Arc<ServiceHealth> {
        if let Some(budget) = self.services.load().get(service) {
            return budget.clone();
        }
        let now = self.now();
        let forget = ms(FORGET_AFTER);
        let mut created = None;
        self.services.rcu(|current| {
            let mut next = HashMap::clone(current);
            if next.len() >= MAX_ENTRIES {
                next.retain(|_, b| now.saturating_sub(b.used.load(Ordering::Relaxed)) < forget);
            }
            let budget = next.entry(Box::from(service)).or_default().clone();
            created = Some(budget);
            next
        });
        created.unwrap_or_default()
    }

    /// Counts a request of the service.
    pub fn request(&self, budget: &ServiceHealth) {
        let now = self.now();
        budget.used.store(now, Ordering::Relaxed);
        budget
            .bucket(now / 1000)
            .requests
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Takes one retry from `budget` when it has one left; false when it is spent.
    pub fn try_retry(&self, budget: &ServiceHealth) -> bool {
        let second = self.now() / 1000;
        let (requests, retries) = budget.window(second);
        let allowed = f64::from(requests) * RETRY_RATIO
            + f64::from(RETRY_FLOOR_PER_SEC) * BUDGET_WINDOW.as_secs_f64();
        if f64::from(retries) + 1.0 > allowed {
            return false;
        }
        budget
            .bucket(second)
            .retries
            .fetch_add(1, Ordering::Relaxed);
        true
    }
}

impl ServiceHealth {
    /// The service has (had) an address.
    pub fn mark_known(&self) {
        if !self.known.load(Ordering::Relaxed) {
            self.known.store(true, Ordering::Relaxed);
        }
    }

    /// Whether the service ever had an address (while it was remembered).
    pub fn known(&self) -> bool {
        self.known.load(Ordering::Relaxed)
    }

    /// The bucket of `second`, emptied first when it still holds an older second.
    fn bucket(&self, second: u64) -> &Bucket {
        let bucket = &self.buckets[(second % BUCKETS as u64) as usize];
        let seen = bucket.second.load(Ordering::Acquire);
        if seen != second
            && bucket
                .second
                .compare_exchange(seen, second, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            bucket.requests.store(0, Ordering::Relaxed);
            bucket.retries.store(0, Ordering::Relaxed);
        }
        bucket
    }

    /// Requests and retries over the window ending with `second`.
    fn window(&self, second: u64) -> (u32, u32) {
        let oldest = second.saturating_sub(BUCKETS as u64 - 1);
        self.buckets
            .iter()
            .filter(|b| (oldest..=second).contains(&b.second.load(Ordering::Acquire)))
            .fold((0u32, 0u32), |(req, ret), b| {
                (
                    req.saturating_add(b.requests.load(Ordering::Relaxed)),
                    ret.saturating_add(b.retries.load(Ordering::Relaxed)),
                )
            })
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;
