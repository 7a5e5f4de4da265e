//! The login throttle's counts: failed logins per throttle key (a
//! username or a client address) within a window, and blocks.

use async_trait::async_trait;

use crate::StoreError;

/// A throttled key's failed logins, as [`ThrottleStore::record_login_failure`]
/// leaves them. Times are Unix milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginFailures {
    /// Failures since `window_start`.
    pub failures: i64,
    /// When the counting window started.
    pub window_start: i64,
    /// No attempt is let through before this instant (0: none blocked).
    pub blocked_until: i64,
}

/// Where the login throttle counts.
#[async_trait]
pub trait ThrottleStore: Send + Sync + std::fmt::Debug {
    /// When the next login attempt for this throttle key is let through
    /// (Unix milliseconds; 0 or a past instant: now).
    async fn login_blocked_until(&self, key: &str) -> Result<i64, StoreError>;
    /// Count a failed login for a throttle key, atomically: the count
    /// restarts at 1 when the window that started at or before
    /// `window_expired` is over. Returns the row as it now is.
    async fn record_login_failure(
        &self,
        key: &str,
        now: i64,
        window_expired: i64,
    ) -> Result<LoginFailures, StoreError>;
    /// Block a throttle key until `until` (never shortening a block).
    async fn block_login(&self, key: &str, until: i64) -> Result<(), StoreError>;
    /// Forget a throttle key's failures and block (a successful login,
    /// `portcullis user unlock`). `false` if there were none.
    async fn clear_login_failures(&self, key: &str) -> Result<bool, StoreError>;
    /// Delete the throttle rows that no longer matter: not blocked at
    /// `now` and with a window that started before `window_start_before`
    /// (their count would be reset at the next failure anyway). Unix
    /// milliseconds. Part of the pruning task and `tokens flush-expired`.
    async fn prune_login_failures(
        &self,
        now: i64,
        window_start_before: i64,
    ) -> Result<u64, StoreError>;
}
