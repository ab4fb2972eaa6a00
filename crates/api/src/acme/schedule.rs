//! When to renew, and how long to wait after a failure.
//!
//! A certificate is renewed at two thirds of its lifetime, moved by a jitter of up to
//! ±1/24 of the lifetime (derived from the certificate name and expiry, so it is stable
//! across restarts and differs between certificates, which spreads renewals out). A failed
//! attempt waits [`backoff`]: 10 s doubling per consecutive failure, at most 6 h; a CA
//! rate-limit answer waits at least 1 h. The old certificate keeps serving meanwhile.

use std::time::Duration;

use sha2::{Digest, Sha256};

/// The first wait after a failure.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(10);
/// The longest wait between attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(6 * 3600);
/// The shortest wait after a `rateLimited` answer.
pub const RATE_LIMITED_BACKOFF: Duration = Duration::from_secs(3600);

/// The Unix time at which a certificate valid from `not_before` to `not_after` is renewed.
pub fn renew_at(name: &str, not_before: i64, not_after: i64) -> i64 {
    let lifetime = (not_after - not_before).max(0);
    let base = not_before + lifetime * 2 / 3;
    let span = lifetime / 24;
    if span == 0 {
        return base;
    }
    let digest = Sha256::new()
        .chain_update(name.as_bytes())
        .chain_update(not_after.to_be_bytes())
        .finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    let draw = (u64::from_be_bytes(first) % (2 * span as u64 + 1)) as i64;
    base - span + draw
}

/// The wait after `failures` consecutive failed attempts (at least 1).
pub fn backoff(failures: u32, rate_limited: bool) -> Duration {
    let doubled = FIRST_BACKOFF
        .saturating_mul(1u32 << failures.saturating_sub(1).min(20))
        .min(MAX_BACKOFF);
    if rate_limited {
        doubled.max(RATE_LIMITED_BACKOFF)
    } else {
        doubled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_is_near_two_thirds_of_the_lifetime() {
        let day = 86_400;
        let (start, end) = (1_000_000, 1_000_000 + 90 * day);
        let at = renew_at("a.example.com", start, end);
        let two_thirds = start + 60 * day;
        assert!((two_thirds - at).abs() <= 90 * day / 24, "{at}");
        assert_eq!(at, renew_at("a.example.com", start, end), "stable");
        let spread: std::collections::BTreeSet<i64> = (0..20)
            .map(|i| renew_at(&format!("d{i}.example.com"), start, end))
            .collect();
        assert!(spread.len() > 10, "jitter spreads renewals: {spread:?}");
        // A short-lived certificate (tests) still renews before it expires.
        let at = renew_at("x", 0, 30);
        assert!((19..=21).contains(&at), "{at}");
        assert_eq!(renew_at("x", 10, 5), 10, "a broken validity renews at once");
    }

    #[test]
    fn failures_back_off_exponentially_up_to_a_limit() {
        assert_eq!(backoff(1, false), Duration::from_secs(10));
        assert_eq!(backoff(2, false), Duration::from_secs(20));
        assert_eq!(backoff(4, false), Duration::from_secs(80));
        assert_eq!(backoff(40, false), MAX_BACKOFF);
        assert_eq!(backoff(1, true), RATE_LIMITED_BACKOFF);
        assert_eq!(backoff(40, true), MAX_BACKOFF);
    }
}
