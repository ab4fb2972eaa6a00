//! Per-destination bounds on requests forwarded at once (`maxConn`), shared by every worker:
//! a request takes a slot before it goes upstream and gives it back when its response body is
//! done; with every slot taken it waits up to `TIMEOUT_QUEUE` (then 503), as in HAProxy's
//! server queue.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::Semaphore;

/// One destination's slots: `(destination index, maxConn, slots)`.
type DestSlots = (usize, u32, Arc<Semaphore>);

/// The slots of every destination with a `maxConn`.
#[derive(Debug, Default)]
pub(crate) struct Limits {
    /// By service name.
    slots: Mutex<HashMap<Box<str>, Vec<DestSlots>>>,
}

impl Limits {
    /// The slots of `service`'s destination `dest` with `max` of them. A changed `max` gets new
    /// slots: requests holding old ones finish on them.
    pub(crate) fn slots(&self, service: &str, dest: usize, max: u32) -> Arc<Semaphore> {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        if !slots.contains_key(service) {
            slots.insert(Box::from(service), Vec::new());
        }
        let Some(list) = slots.get_mut(service) else {
            return Arc::new(Semaphore::new(max as usize));
        };
        match list.iter_mut().find(|(d, _, _)| *d == dest) {
            Some((_, m, sem)) if *m == max => sem.clone(),
            Some(entry) => {
                *entry = (dest, max, Arc::new(Semaphore::new(max as usize)));
                entry.2.clone()
            }
            None => {
                let sem = Arc::new(Semaphore::new(max as usize));
                list.push((dest, max, sem.clone()));
                sem
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_shared_per_destination_and_renewed_with_their_bound() {
        let limits = Limits::default();
        let a = limits.slots("web", 0, 2);
        assert!(Arc::ptr_eq(&a, &limits.slots("web", 0, 2)));
        assert!(!Arc::ptr_eq(&a, &limits.slots("web", 1, 2)));
        assert!(!Arc::ptr_eq(&a, &limits.slots("api", 0, 2)));
        let b = limits.slots("web", 0, 3);
        assert_eq!(b.available_permits(), 3);
        assert!(!Arc::ptr_eq(&a, &b));
    }
}
