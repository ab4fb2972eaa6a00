//! Names: the addresses behind upstream host names, kept fresh off the request path.
//!
//! One [`Names`] is shared by every worker. A request asks it for a name's addresses and gets
//! the last answer from memory; lookups run in the background, on their own thread, at most
//! [`LOOKUP_SLOTS`] at a time, and never more than one per name (single flight):
//!
//! - a name asked for the first time (or after [`FORGET_AFTER`] without use) is looked up while
//!   the requests that want it wait; every request arriving meanwhile joins that one lookup;
//! - an answer is refreshed in the background once it is older than its freshness (2 s for
//!   task addresses, 250 ms for a fallback answer, 1 s for a failure), while requests go on
//!   being answered from it. A name keeps being refreshed while it is in use, whether or not
//!   requests arrive while it is due;
//! - an answer is served for at most [`MAX_STALE`] after it was fetched; only when every
//!   refresh over that time failed or hung does a request wait for the lookup in flight;
//! - a refresh that fails or only finds the fallback name does not replace task addresses
//!   until they are [`MAX_STALE`] old (a resolver hiccup does not take a service down);
//! - a failure (negative answer) is cached like any other answer, for its 1 s freshness.
//!
//! For a Swarm service (`tasks_first`), `tasks.<name>` (one record per running task) and
//! `<name>` (the fallback: the service's virtual IP, or an `/etc/hosts` entry) are asked at the
//! same time; task records win when there are any.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::{watch, Semaphore};
use tokio::time::Instant;

/// How long task addresses (or the plain name's addresses) are fresh.
pub const FRESH: Duration = Duration::from_millis(500);
/// How long a fallback answer is fresh: `<name>` standing in for a `tasks.<name>` without
/// records, as for a Swarm service whose tasks are not running yet, so that a starting task
/// is seen within this time.
pub const FRESH_FALLBACK: Duration = Duration::from_millis(250);
/// How long a failed lookup (a negative answer) is fresh: short, so that the first task of a
/// new service is seen within this time.
pub const FRESH_FAILURE: Duration = Duration::from_millis(250);
/// The oldest answer a request is given while its refresh is pending.
pub const MAX_STALE: Duration = Duration::from_secs(10);
/// A name not asked for during this long is forgotten (and no longer refreshed).
pub const FORGET_AFTER: Duration = Duration::from_secs(600);
/// How many lookups run at once, all names together (a bounded pool: the system resolver
/// blocks a thread per lookup).
pub const LOOKUP_SLOTS: usize = 4;
/// A lookup that takes longer counts as failed.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);
/// The bound of one lookup that retries a failed name.
pub const RETRY_TIMEOUT: Duration = Duration::from_millis(500);
/// How often due names are looked for.
const SWEEP: Duration = Duration::from_millis(100);

/// A pending lookup's result.
pub type LookupFuture = Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send>>;

/// Something that turns one name into addresses (the system resolver, or a test's stub).
pub trait Lookup: Send + Sync + 'static {
    /// Looks `name` up once.
    fn lookup(&self, name: &str) -> LookupFuture;
}

/// The system resolver, after the entries of `HOSTS_FILE` (see [`crate::resolve::lookup`]).
#[derive(Debug, Default)]
pub struct SystemLookup {
    hosts_file: Option<Arc<Path>>,
}

impl SystemLookup {
    /// A lookup that consults `hosts_file` first, when given.
    pub fn new(hosts_file: Option<PathBuf>) -> SystemLookup {
        SystemLookup {
            hosts_file: hosts_file.map(Arc::from),
        }
    }
}

impl Lookup for SystemLookup {
    fn lookup(&self, name: &str) -> LookupFuture {
        let name = name.to_owned();
        let hosts_file = self.hosts_file.clone();
        Box::pin(async move { crate::resolve::lookup(&name, hosts_file.as_deref()).await })
    }
}

/// What one lookup of a name found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    /// The lookup failed or found nothing.
    Failure,
    /// `<name>` standing in for a `tasks.<name>` without records.
    Fallback,
    /// Task records, or the name itself when task records were not asked for.
    Found,
}

impl Kind {
    fn fresh_for(self) -> Duration {
        match self {
            Kind::Found => FRESH,
            Kind::Fallback => FRESH_FALLBACK,
            Kind::Failure => FRESH_FAILURE,
        }
    }
}

/// One answer for a name, shared by every worker.
#[derive(Debug)]
struct Answer {
    result: Result<Arc<[IpAddr]>, Arc<str>>,
    kind: Kind,
    fetched: Instant,
    /// Round-robin position, advanced by each request.
    next: AtomicUsize,
}

/// A name's cached answer as [`Names::peek`] shows it.
#[derive(Debug, Clone)]
pub struct Cached {
    /// The addresses requests are given (empty after a failure).
    pub addresses: Vec<IpAddr>,
    /// Why the last lookup failed, when it did.
    pub error: Option<String>,
    /// What the answer is: task addresses, the service address, a failure, or expired.
    pub state: &'static str,
    /// How long ago it was fetched.
    pub age: Duration,
}

/// A name's addresses, or why it has none.
pub type Resolved = Result<(Arc<[IpAddr]>, usize), Arc<str>>;

impl Answer {
    fn take(&self) -> Resolved {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        self.result.clone().map(|addrs| (addrs, start))
    }
}

type Pending = watch::Receiver<Option<Arc<Answer>>>;

struct Entry {
    answer: Option<Arc<Answer>>,
    /// When the last lookup finished (or when the name was marked for refresh).
    checked: Instant,
    /// When a request last asked for the name.
    used: Instant,
    pending: Option<Pending>,
}

impl Entry {
    fn due(&self, now: Instant) -> bool {
        let fresh_for = self
            .answer
            .as_ref()
            .map_or(Duration::ZERO, |a| a.kind.fresh_for());
        self.pending.is_none() && now.duration_since(self.checked) >= fresh_for
    }

    /// The answer a request may be given now, if any.
    fn servable(&self, now: Instant) -> Option<&Arc<Answer>> {
        self.answer
            .as_ref()
            .filter(|a| now.duration_since(a.fetched) < MAX_STALE)
    }
}

/// Every name the data plane has asked for: `[plain, tasks-first]`, keyed by name so a hit
/// allocates nothing.
type Table = [HashMap<Box<str>, Entry>; 2];

/// The shared name cache (see the module documentation).
pub struct Names {
    me: Weak<Names>,
    table: Mutex<Table>,
    lookup: Arc<dyn Lookup>,
    slots: Arc<Semaphore>,
    /// Where lookups and the refresh sweep run.
    handle: Handle,
    /// Dropped with the cache: ends the lookup thread of [`Names::start`].
    _stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl std::fmt::Debug for Names {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Names").finish_non_exhaustive()
    }
}

impl Names {
    /// A cache whose lookups and refresh sweep run on their own thread (`sluice-names`), with
    /// at most [`LOOKUP_SLOTS`] blocking resolver threads.
    pub fn start(lookup: Arc<dyn Lookup>) -> std::io::Result<Arc<Names>> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .max_blocking_threads(LOOKUP_SLOTS)
            .build()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let names = Names::build(lookup, runtime.handle().clone(), Some(stop));
        std::thread::Builder::new()
            .name("sluice-names".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let _ = stopped.await;
                });
            })?;
        Ok(names)
    }

    /// A cache whose lookups and refresh sweep run on `handle`'s runtime.
    pub fn on(lookup: Arc<dyn Lookup>, handle: Handle) -> Arc<Names> {
        Names::build(lookup, handle, None)
    }

    fn build(
        lookup: Arc<dyn Lookup>,
        handle: Handle,
        stop: Option<tokio::sync::oneshot::Sender<()>>,
    ) -> Arc<Names> {
        let names = Arc::new_cyclic(|me| Names {
            me: me.clone(),
            table: Mutex::new([HashMap::new(), HashMap::new()]),
            lookup,
            slots: Arc::new(Semaphore::new(LOOKUP_SLOTS)),
            handle,
            _stop: stop,
        });
        names.handle.spawn(sweep(Arc::downgrade(&names)));
        names
    }

    /// Whether no name is cached.
    pub fn is_empty(&self) -> bool {
        self.table().iter().all(HashMap::is_empty)
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The addresses of `host` (of `tasks.<host>` first when `tasks_first`) and the
    /// round-robin position for this request. Waits only when no answer may be served.
    pub async fn resolve(&self, host: &str, tasks_first: bool) -> Resolved {
        let pending = {
            let now = Instant::now();
            let mut table = self.table();
            let map = &mut table[usize::from(tasks_first)];
            if !map.contains_key(host) {
                map.insert(
                    Box::from(host),
                    Entry {
                        answer: None,
                        checked: now,
                        used: now,
                        pending: None,
                    },
                );
            }
            let Some(entry) = map.get_mut(host) else {
                return Err(Arc::from("the name cache lost an entry"));
            };
            entry.used = now;
            if entry.due(now) {
                self.refresh(host, tasks_first, entry);
            }
            if let Some(answer) = entry.servable(now) {
                return answer.take();
            }
            match &entry.pending {
                Some(pending) => pending.clone(),
                None => self.refresh(host, tasks_first, entry),
            }
        };
        wait(pending).await
    }

    /// What the cache holds for `host` now, without looking it up or marking it used (for
    /// explain); `None` when no request asked for it yet or its first lookup is pending.
    pub fn peek(&self, host: &str, tasks_first: bool) -> Option<Cached> {
        let now = Instant::now();
        let table = self.table();
        let entry = table[usize::from(tasks_first)].get(host)?;
        let answer = entry.answer.as_ref()?;
        let (addresses, error) = match &answer.result {
            Ok(addrs) => (addrs.to_vec(), None),
            Err(error) => (Vec::new(), Some(error.to_string())),
        };
        let state = match (entry.servable(now).is_some(), answer.kind) {
            (false, _) => "expired",
            (true, Kind::Found) if tasks_first => "task addresses",
            (true, Kind::Found) => "resolved",
            (true, Kind::Fallback) => "service address (no task records)",
            (true, Kind::Failure) => "lookup failed",
        };
        Some(Cached {
            addresses,
            error,
            state,
            age: now.duration_since(answer.fetched),
        })
    }

    /// Marks `host` for a refresh now (one of its addresses failed); its answer is still
    /// served meanwhile.
    pub fn invalidate(&self, host: &str, tasks_first: bool) {
        let now = Instant::now();
        let mut table = self.table();
        if let Some(entry) = table[usize::from(tasks_first)].get_mut(host) {
            if let Some(past) = now.checked_sub(FRESH.max(FRESH_FAILURE)) {
                entry.checked = entry.checked.min(past);
            }
        }
    }

    /// Starts the one lookup of `host` (the caller holds the table and saw none pending).
    fn refresh(&self, host: &str, tasks_first: bool, entry: &mut Entry) -> Pending {
        let (done, pending) = watch::channel(None);
        entry.pending = Some(pending.clone());
        let me = self.me.clone();
        let lookup = self.lookup.clone();
        let slots = self.slots.clone();
        let host = host.to_owned();
        // A name that failed is asked again often; a resolver that is slow to say "no such
        // name" must not hold that retry (and so a service's first task) back for long.
        let limit = match entry.answer.as_deref() {
            Some(answer) if matches!(answer.kind, Kind::Failure) => RETRY_TIMEOUT,
            _ => LOOKUP_TIMEOUT,
        };
        self.handle.spawn(async move {
            let (result, kind) = query(&*lookup, &slots, &host, tasks_first, limit).await;
            let Some(names) = me.upgrade() else { return };
            let answer = names.settle(&host, tasks_first, result, kind);
            let _ = done.send(answer);
        });
        pending
    }

    /// Records a finished lookup; returns the entry's answer from now on.
    fn settle(
        &self,
        host: &str,
        tasks_first: bool,
        result: Result<Arc<[IpAddr]>, Arc<str>>,
        kind: Kind,
    ) -> Option<Arc<Answer>> {
        let now = Instant::now();
        let mut table = self.table();
        let entry = table[usize::from(tasks_first)].get_mut(host)?;
        entry.pending = None;
        entry.checked = now;
        let keep_old = entry
            .servable(now)
            .is_some_and(|old| old.kind > kind && old.kind == Kind::Found);
        if !keep_old {
            let next = entry
                .answer
                .as_ref()
                .map_or(0, |a| a.next.load(Ordering::Relaxed));
            entry.answer = Some(Arc::new(Answer {
                result,
                kind,
                fetched: now,
                next: AtomicUsize::new(next),
            }));
        }
        entry.answer.clone()
    }

    /// Starts the refreshes that are due; forgets names unused for [`FORGET_AFTER`].
    fn sweep_once(&self) {
        let now = Instant::now();
        let mut due = Vec::new();
        {
            let mut table = self.table();
            for (slot, map) in table.iter_mut().enumerate() {
                map.retain(|_, entry| {
                    entry.pending.is_some() || now.duration_since(entry.used) < FORGET_AFTER
                });
                due.extend(
                    map.iter()
                        .filter(|(_, entry)| entry.due(now))
                        .map(|(host, _)| (host.clone(), slot == 1)),
                );
            }
            for (host, tasks_first) in &due {
                if let Some(entry) = table[usize::from(*tasks_first)].get_mut(&**host) {
                    self.refresh(host, *tasks_first, entry);
                }
            }
        }
    }
}

/// Refreshes due names until the cache is dropped.
async fn sweep(names: Weak<Names>) {
    let mut tick = tokio::time::interval(SWEEP);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match names.upgrade() {
            Some(names) => names.sweep_once(),
            None => return,
        }
    }
}

async fn wait(mut pending: Pending) -> Resolved {
    match pending.wait_for(Option::is_some).await {
        Ok(answer) => match answer.as_ref() {
            Some(answer) => answer.take(),
            None => Err(Arc::from("the lookup was abandoned")),
        },
        Err(_) => Err(Arc::from("the lookup was abandoned")),
    }
}

/// One lookup of `name` in a pool slot, within [`LOOKUP_TIMEOUT`]; addresses sorted.
async fn ask(
    lookup: &dyn Lookup,
    slots: &Semaphore,
    name: &str,
    limit: Duration,
) -> Result<Vec<IpAddr>, String> {
    let Ok(_slot) = slots.acquire().await else {
        return Err("the resolver pool is closed".into());
    };
    match tokio::time::timeout(limit, lookup.lookup(name)).await {
        Ok(Ok(mut ips)) => {
            ips.sort();
            ips.dedup();
            Ok(ips)
        }
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("no answer within {limit:?}")),
    }
}

/// Looks `host` up, asking `tasks.<host>` and `<host>` at the same time when `tasks_first`.
async fn query(
    lookup: &dyn Lookup,
    slots: &Semaphore,
    host: &str,
    tasks_first: bool,
    limit: Duration,
) -> (Result<Arc<[IpAddr]>, Arc<str>>, Kind) {
    let plain = async {
        match ask(lookup, slots, host, limit).await {
            Ok(ips) if ips.is_empty() => Err(format!("{host} has no addresses")),
            other => other,
        }
    };
    let (tasks, plain) = if tasks_first {
        let tasks = format!("tasks.{host}");
        let (tasks, plain) = tokio::join!(ask(lookup, slots, &tasks, limit), plain);
        (Some(tasks), plain)
    } else {
        (None, plain.await)
    };
    match (tasks, plain) {
        (Some(Ok(ips)), _) if !ips.is_empty() => (Ok(Arc::from(ips)), Kind::Found),
        (Some(_), Ok(ips)) => (Ok(Arc::from(ips)), Kind::Fallback),
        (None, Ok(ips)) => (Ok(Arc::from(ips)), Kind::Found),
        (_, Err(reason)) => (Err(Arc::from(reason)), Kind::Failure),
    }
}

#[cfg(test)]
mod tests;
