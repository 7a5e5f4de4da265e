//! Time is injected: every expiry decision reads a [`Clock`], so tests move
//! time instead of sleeping. This is the one module allowed to read the
//! system time.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// A source of the current time, in whole seconds since the Unix epoch.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current time as Unix seconds.
    fn now(&self) -> i64;

    /// The current time as Unix milliseconds (login throttling measures
    /// delays of a few seconds, which whole seconds would make jumpy).
    fn now_millis(&self) -> i64 {
        self.now().saturating_mul(1000)
    }
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // the one sanctioned reader of the system time
    fn now(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
    }

    #[allow(clippy::disallowed_methods)] // the one sanctioned reader of the system time
    fn now_millis(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }
}

/// A clock that moves only when told: tests start a server on one and
/// move time forward instead of sleeping (a token's expiry, a throttle's
/// window, a console session's idle timeout).
#[derive(Debug, Default)]
pub struct ManualClock {
    millis: std::sync::atomic::AtomicI64,
}

impl ManualClock {
    /// Stopped at `millis` (Unix milliseconds).
    #[must_use]
    pub fn at_millis(millis: i64) -> Self {
        Self {
            millis: std::sync::atomic::AtomicI64::new(millis),
        }
    }

    /// Stopped at the wall clock's current time.
    #[must_use]
    pub fn starting_now() -> Self {
        Self::at_millis(SystemClock.now_millis())
    }

    /// Move forward by `by`.
    pub fn advance(&self, by: std::time::Duration) {
        let by = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.millis
            .fetch_add(by, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> i64 {
        self.now_millis().div_euclid(1000)
    }

    fn now_millis(&self) -> i64 {
        self.millis.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let clock = ManualClock::at_millis(1_800_000_000_500);
        assert_eq!(
            (clock.now(), clock.now_millis()),
            (1_800_000_000, 1_800_000_000_500)
        );
        clock.advance(std::time::Duration::from_millis(600));
        assert_eq!(
            (clock.now(), clock.now_millis()),
            (1_800_000_001, 1_800_000_001_100)
        );
    }
}
