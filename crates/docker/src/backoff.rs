//! Exponential backoff for reconnecting to the Docker Engine.
//!
//! Owns only the delay arithmetic: the first delay is `initial`, each further one doubles,
//! capped at `max`; [`Backoff::reset`] starts over after a successful connection. The
//! watcher does the (interruptible) sleeping. Bounds are validated at construction so a
//! zero or inverted range cannot produce a hot reconnect loop.

use std::time::Duration;

use thiserror::Error;

/// Invalid backoff bounds.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum BackoffError {
    /// The first delay must be greater than zero.
    #[error("backoff initial delay must be greater than zero (got {initial:?})")]
    ZeroInitial {
        /// The rejected initial delay.
        initial: Duration,
    },
    /// The cap must not be below the first delay.
    #[error("backoff max delay {max:?} is below the initial delay {initial:?}")]
    MaxBelowInitial {
        /// The configured initial delay.
        initial: Duration,
        /// The rejected max delay.
        max: Duration,
    },
}

/// Exponential backoff state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    /// Validates the bounds.
    pub(crate) fn new(initial: Duration, max: Duration) -> Result<Self, BackoffError> {
        if initial.is_zero() {
            return Err(BackoffError::ZeroInitial { initial });
        }
        if max < initial {
            return Err(BackoffError::MaxBelowInitial { initial, max });
        }
        Ok(Self {
            initial,
            max,
            failures: 0,
        })
    }

    /// The delay before the next attempt; each call doubles the following one.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let factor = 1u32.checked_shl(self.failures.min(31)).unwrap_or(u32::MAX);
        let delay = self.initial.saturating_mul(factor).min(self.max);
        self.failures = self.failures.saturating_add(1);
        delay
    }

    /// Starts over after a success.
    pub(crate) fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(500), Duration::from_secs(4)).unwrap();
        let delays: Vec<u128> = (0..6).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(delays, vec![500, 1000, 2000, 4000, 4000, 4000]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(500));
    }

    #[test]
    fn many_failures_do_not_overflow() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(30)).unwrap();
        for _ in 0..200 {
            assert!(b.next_delay() <= Duration::from_secs(30));
        }
        assert_eq!(b.next_delay(), Duration::from_secs(30));
    }

    #[test]
    fn rejects_invalid_bounds() {
        assert_eq!(
            Backoff::new(Duration::ZERO, Duration::from_secs(1)),
            Err(BackoffError::ZeroInitial {
                initial: Duration::ZERO
            })
        );
        assert_eq!(
            Backoff::new(Duration::from_secs(2), Duration::from_secs(1)),
            Err(BackoffError::MaxBelowInitial {
                initial: Duration::from_secs(2),
                max: Duration::from_secs(1)
            })
        );
        assert!(Backoff::new(Duration::from_secs(1), Duration::from_secs(1)).is_ok());
    }
}
