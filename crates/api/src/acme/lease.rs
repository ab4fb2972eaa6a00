//! Who orders: the lowest live replica address holds the lease.
//!
//! Every replica probes the others (`tasks.<SERVICE_NAME>` on `PORT`, `GET …/ping`; any HTTP
//! answer, 503 included, means alive) and remembers when each last answered. A peer is live
//! while it answered within `ACME_LEASE_TIMEOUT`; a peer never heard from yet counts as heard
//! at this replica's start, so a replica that just started waits one timeout before taking
//! over from a lower one that may only be starting too. The holder is the lowest address
//! among this replica and its live peers. When the holder dies, the next lowest sees it silent
//! for the timeout and takes over; a replica whose own address is unknown never ranks above a
//! live peer.
//!
//! Decisions are pure functions of the observations and the clock ([`Lease::holder`]), so the
//! rules are tested with a fake clock.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use tokio::time::Instant;

/// The outcome of a lease decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    /// This replica orders.
    Me,
    /// This live peer orders.
    Peer(IpAddr),
}

/// Observations of the peers. See the module documentation.
#[derive(Debug)]
pub struct Lease {
    timeout: Duration,
    started: Instant,
    last_seen: BTreeMap<IpAddr, Instant>,
}

impl Lease {
    /// A lease whose holder is presumed dead after `timeout` of silence.
    pub fn new(timeout: Duration, now: Instant) -> Lease {
        Lease {
            timeout,
            started: now,
            last_seen: BTreeMap::new(),
        }
    }

    /// Records one probe round: every listed peer and whether it answered. Peers no longer
    /// listed are forgotten.
    pub fn observe(&mut self, probes: &[(IpAddr, bool)], now: Instant) {
        let started = self.started;
        self.last_seen
            .retain(|ip, _| probes.iter().any(|(p, _)| p == ip));
        for (ip, answered) in probes {
            let seen = self.last_seen.entry(*ip).or_insert(started);
            if *answered {
                *seen = now;
            }
        }
    }

    /// The peers that answered within the timeout (or have not had a timeout yet).
    pub fn live_peers(&self, now: Instant) -> Vec<IpAddr> {
        self.last_seen
            .iter()
            .filter(|(_, seen)| now.saturating_duration_since(**seen) < self.timeout)
            .map(|(ip, _)| *ip)
            .collect()
    }

    /// Who orders now: the lowest of `own` and the live peers.
    pub fn holder(&self, own: Option<IpAddr>, now: Instant) -> Holder {
        let lowest_peer = self.live_peers(now).into_iter().min();
        match (own, lowest_peer) {
            (_, None) => Holder::Me,
            (Some(own), Some(peer)) if own < peer => Holder::Me,
            (_, Some(peer)) => Holder::Peer(peer),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[tokio::test(start_paused = true)]
    async fn the_lowest_live_address_holds_and_the_next_takes_over() {
        let timeout = Duration::from_secs(3);
        let start = Instant::now();
        let mut lease = Lease::new(timeout, start);
        // Replica .3 sees .2 and .4; .2 is lower, so it holds from the start (even before it
        // answered: it may only be starting).
        lease.observe(&[(ip(2), false), (ip(4), true)], start);
        assert_eq!(lease.holder(Some(ip(3)), start), Holder::Peer(ip(2)));
        tokio::time::advance(Duration::from_secs(1)).await;
        lease.observe(&[(ip(2), true), (ip(4), true)], Instant::now());
        // .2 goes silent: it keeps the lease for the timeout after its last answer ...
        tokio::time::advance(Duration::from_millis(2900)).await;
        lease.observe(&[(ip(2), false), (ip(4), true)], Instant::now());
        assert_eq!(
            lease.holder(Some(ip(3)), Instant::now()),
            Holder::Peer(ip(2))
        );
        // ... and then .3 takes over; .4 still defers to .3.
        tokio::time::advance(Duration::from_millis(200)).await;
        lease.observe(&[(ip(2), false), (ip(4), true)], Instant::now());
        assert_eq!(lease.holder(Some(ip(3)), Instant::now()), Holder::Me);
        assert_eq!(lease.live_peers(Instant::now()), [ip(4)]);
        // .2 comes back and answers: it holds again.
        lease.observe(&[(ip(2), true), (ip(4), true)], Instant::now());
        assert_eq!(
            lease.holder(Some(ip(3)), Instant::now()),
            Holder::Peer(ip(2))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn alone_or_unknown() {
        let now = Instant::now();
        let mut lease = Lease::new(Duration::from_secs(3), now);
        assert_eq!(lease.holder(Some(ip(9)), now), Holder::Me, "no peers");
        assert_eq!(lease.holder(None, now), Holder::Me, "no peers, own unknown");
        lease.observe(&[(ip(9), true)], now);
        assert_eq!(lease.holder(None, now), Holder::Peer(ip(9)));
        // A peer that left the list is forgotten at once.
        lease.observe(&[], now);
        assert_eq!(lease.holder(None, now), Holder::Me);
    }
}
