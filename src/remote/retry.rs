//! Retries with capped exponential backoff and full jitter (as AWS's architecture blog
//! describes it): the wait before retry k is uniform in [0, min(cap, base * 2^k)), or the
//! server's `Retry-After` when it gives one (capped too).
//!
//! A small helper rather than a crate: `backoff` is unmaintained (RustSec lists it so) and
//! `backon`'s blocking API needs more than the thirty lines here. The jitter only spreads
//! retries in time; no result depends on it, so it need not come from the run's seed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// First backoff ceiling: a restarted server or a momentary overload usually answers by then.
const BASE: Duration = Duration::from_millis(500);
/// Longest single wait.
const CAP: Duration = Duration::from_secs(8);

/// What one attempt gave.
pub(crate) enum Attempt<T> {
    /// Success.
    Done(T),
    /// A transient failure (its message, and the server's Retry-After seconds if any).
    Retry(String, Option<f64>),
    /// A failure that retrying will not fix.
    Fail(String),
}

/// Why the attempts ended without success.
#[derive(Debug)]
pub(crate) struct Failure {
    /// The last failure's message.
    pub message: String,
    /// Attempts made.
    pub attempts: u32,
}

/// A retry policy: a bounded number of attempts with jittered exponential backoff.
#[derive(Clone, Debug)]
pub(crate) struct Backoff {
    attempts: u32,
    base: Duration,
    cap: Duration,
    state: Arc<AtomicU64>,
}

impl Backoff {
    /// At most `attempts` attempts (at least 1).
    pub fn new(attempts: u32) -> Self {
        Self::with_delays(attempts, BASE, CAP)
    }

    /// At most `attempts` attempts, waits growing from `base` up to `cap`.
    pub(crate) fn with_delays(attempts: u32, base: Duration, cap: Duration) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9E37_79B9_7F4A_7C15);
        Self {
            attempts: attempts.max(1),
            base,
            cap,
            state: Arc::new(AtomicU64::new(seed | 1)),
        }
    }

    /// Runs `f` until it is done, fails for good, or the attempts are spent.
    pub fn run<T>(&self, mut f: impl FnMut() -> Attempt<T>) -> Result<T, Failure> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match f() {
                Attempt::Done(v) => return Ok(v),
                Attempt::Fail(message) => {
                    return Err(Failure {
                        message,
                        attempts: attempt,
                    })
                }
                Attempt::Retry(message, retry_after) => {
                    if attempt >= self.attempts {
                        return Err(Failure {
                            message,
                            attempts: attempt,
                        });
                    }
                    std::thread::sleep(self.delay(attempt - 1, retry_after));
                }
            }
        }
    }

    /// The wait before retry `k` (0-based).
    fn delay(&self, k: u32, retry_after: Option<f64>) -> Duration {
        if let Some(s) = retry_after.filter(|s| s.is_finite() && *s >= 0.0) {
            return Duration::from_secs_f64(s).min(self.cap);
        }
        let ceiling = self
            .base
            .saturating_mul(1u32 << k.min(16))
            .min(self.cap)
            .as_secs_f64();
        Duration::from_secs_f64(ceiling * self.uniform())
    }

    /// A uniform draw in [0, 1) from a shared splitmix64 stream.
    fn uniform(&self) -> f64 {
        let mut z = self
            .state
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_transient_failures_up_to_the_bound() {
        let b = Backoff::with_delays(3, Duration::from_millis(1), Duration::from_millis(2));
        let mut calls = 0;
        let r: Result<u32, _> = b.run(|| {
            calls += 1;
            Attempt::Retry("503".into(), None)
        });
        let failure = r.unwrap_err();
        assert_eq!((calls, failure.attempts), (3, 3));
        assert_eq!(failure.message, "503");
        let mut calls = 0;
        let ok = b.run(|| {
            calls += 1;
            if calls < 3 {
                Attempt::Retry("503".into(), None)
            } else {
                Attempt::Done(calls)
            }
        });
        assert_eq!(ok.unwrap(), 3);
    }

    #[test]
    fn permanent_failures_are_not_retried() {
        let b = Backoff::with_delays(5, Duration::from_millis(1), Duration::from_millis(2));
        let mut calls = 0;
        let r: Result<(), _> = b.run(|| {
            calls += 1;
            Attempt::Fail("400".into())
        });
        assert_eq!((calls, r.unwrap_err().attempts), (1, 1));
    }

    #[test]
    fn waits_stay_under_the_growing_ceiling() {
        let b = Backoff::with_delays(9, Duration::from_millis(100), Duration::from_millis(400));
        for k in 0..8 {
            let ceiling = (100u64 << k).min(400);
            for _ in 0..20 {
                assert!(b.delay(k, None) < Duration::from_millis(ceiling));
            }
        }
        assert_eq!(b.delay(0, Some(9.0)), Duration::from_millis(400));
    }
}
