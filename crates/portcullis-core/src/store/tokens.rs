//! Issued refresh and sliding tokens (simplejwt's `OutstandingToken`) and
//! the blacklist (its `BlacklistedToken`), recorded by `jti`.

use async_trait::async_trait;

use crate::{StoreError, Upserted};

/// simplejwt's `OutstandingToken` row, minus the raw token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutstandingToken {
    /// The token id.
    pub jti: String,
    /// The user, if the token names one that exists.
    pub user_id: Option<i64>,
    /// Issue time, Unix seconds.
    pub created_at: Option<i64>,
    /// The token's `exp`, Unix seconds.
    pub expires_at: i64,
}

/// Where issued tokens and the blacklist live.
#[async_trait]
pub trait TokenStore: Send + Sync + std::fmt::Debug {
    /// Record an issued refresh or sliding token (idempotent by `jti`).
    async fn record_outstanding(&self, token: &OutstandingToken) -> Result<(), StoreError>;
    /// Whether a `jti` is blacklisted.
    async fn is_blacklisted(&self, jti: &str) -> Result<bool, StoreError>;
    /// Blacklist a token, recording it first if it was never seen.
    /// Returns `true` only for the one caller that blacklisted it: this is
    /// the atomic step that makes concurrent rotations of one refresh
    /// token yield exactly one success.
    async fn blacklist(&self, token: &OutstandingToken, at: i64) -> Result<bool, StoreError>;
    /// Import an outstanding token by `jti`, blacklisted if `blacklisted_at`
    /// is set. A re-run updates the row; a blacklisting already recorded is
    /// never undone. The user is kept only if it exists.
    async fn upsert_outstanding(
        &self,
        token: &OutstandingToken,
        blacklisted_at: Option<i64>,
    ) -> Result<Upserted, StoreError>;
    /// simplejwt's `flushexpiredtokens`: delete outstanding tokens (and
    /// their blacklist entries) and sessions whose `exp` is at or before
    /// `now`. One code path for the CLI (`portcullis tokens flush-expired`)
    /// and the server's pruning task (`PRUNE_INTERVAL`).
    async fn flush_expired(&self, now: i64) -> Result<u64, StoreError>;
}
