//! The storage contract. Implementations live in `portcullis-store`
//! (SQLite and PostgreSQL) and must pass the same tests.
//!
//! Refresh and sliding tokens are recorded by `jti` only, never raw
//! (simplejwt stores the raw token, its issue #803).

use async_trait::async_trait;
use portcullis_token::StoredKey;

use crate::{NewUser, User};

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique constraint refused the write (a taken username).
    #[error("{0}")]
    Conflict(String),
    /// The database URL cannot be used; the message says how to fix it.
    #[error("{0}")]
    InvalidUrl(String),
    /// The database failed or could not be reached.
    #[error("database error: {0}")]
    Database(String),
}

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

/// Where accounts, issued tokens and the blacklist live.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Whether the database answers.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Create an account; `Conflict` if the username is taken.
    async fn create_user(&self, user: &NewUser) -> Result<User, StoreError>;
    /// An account by id.
    async fn user_by_id(&self, id: i64) -> Result<Option<User>, StoreError>;
    /// An account by exact username.
    async fn user_by_username(&self, username: &str) -> Result<Option<User>, StoreError>;
    /// Every account, by id.
    async fn list_users(&self) -> Result<Vec<User>, StoreError>;
    /// Replace a password hash. `false` if there is no such user.
    async fn set_password(&self, id: i64, hash: &str) -> Result<bool, StoreError>;
    /// Activate or deactivate. `false` if there is no such user.
    async fn set_active(&self, id: i64, active: bool) -> Result<bool, StoreError>;
    /// Delete an account (its outstanding tokens keep a null user, as in
    /// simplejwt). `false` if there is no such user.
    async fn delete_user(&self, id: i64) -> Result<bool, StoreError>;
    /// Record a successful login.
    async fn update_last_login(&self, id: i64, at: i64) -> Result<(), StoreError>;

    /// Record an issued refresh or sliding token (idempotent by `jti`).
    async fn record_outstanding(&self, token: &OutstandingToken) -> Result<(), StoreError>;
    /// Whether a `jti` is blacklisted.
    async fn is_blacklisted(&self, jti: &str) -> Result<bool, StoreError>;
    /// Blacklist a token, recording it first if it was never seen.
    /// Returns `true` only for the one caller that blacklisted it: this is
    /// the atomic step that makes concurrent rotations of one refresh
    /// token yield exactly one success.
    async fn blacklist(&self, token: &OutstandingToken, at: i64) -> Result<bool, StoreError>;
    /// simplejwt's `flushexpiredtokens`: delete outstanding tokens (and
    /// their blacklist entries) whose `exp` is at or before `now`.
    async fn flush_expired(&self, now: i64) -> Result<u64, StoreError>;

    /// A server setting kept in the database (the generated signing key).
    async fn setting(&self, key: &str) -> Result<Option<String>, StoreError>;
    /// Store a setting unless one is already there; returns the value that
    /// won, so nodes starting together agree.
    async fn init_setting(&self, key: &str, value: &str) -> Result<String, StoreError>;

    /// Every key of the key set, oldest first.
    async fn signing_keys(&self) -> Result<Vec<StoredKey>, StoreError>;
    /// Add a key and, in the same transaction, retire the key it
    /// supersedes at the given time (rotation). `Conflict` if the kid exists.
    async fn add_signing_key(
        &self,
        key: &StoredKey,
        supersedes: Option<(&str, i64)>,
    ) -> Result<(), StoreError>;
    /// Make a key retire at `at`, unless it retires earlier already.
    /// `false` if there is no such key.
    async fn retire_signing_key(&self, kid: &str, at: i64) -> Result<bool, StoreError>;
}
