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

/// A refresh token's successor, as recorded when it was rotated: enough
/// to sign the same successor again within the grace window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Successor {
    /// The successor's `jti`.
    pub jti: String,
    /// Its `iat`, Unix seconds.
    pub created_at: i64,
    /// Its `exp`, Unix seconds.
    pub expires_at: i64,
}

/// What the atomic rotation step found (see [`Store::rotate_in_family`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RotationClaim {
    /// This caller rotated the token; its successor is recorded.
    Won,
    /// The token had been rotated already, at `rotated_at`.
    AlreadyRotated {
        /// When, Unix seconds.
        rotated_at: i64,
        /// Into what.
        successor: Successor,
    },
    /// The token is blacklisted or its session has ended.
    Ended,
}

/// A session: a family of refresh tokens started by one login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The `jti` of the family's first refresh token (the `sid` claim).
    pub id: String,
    /// Its user.
    pub user_id: Option<i64>,
    /// Login time, Unix seconds.
    pub created_at: i64,
    /// The last refresh, Unix seconds.
    pub last_used_at: i64,
    /// The `exp` of its newest refresh token.
    pub expires_at: i64,
    /// The client it was last used from (login or refresh).
    pub client: Client,
}

/// Who sent a login or refresh, as the HTTP layer saw it: shown with the
/// session so its owner can recognise it (ASVS 5.0 V7.5.2). Informative
/// only: it never decides anything, so a forged user agent harms nobody.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Client {
    /// The client address (the TCP peer).
    pub ip_address: Option<String>,
    /// The `User-Agent` header, cut to [`Client::MAX_USER_AGENT`] characters.
    pub user_agent: Option<String>,
}

impl Client {
    /// Longer user agents are cut: the column must not grow without bound.
    pub const MAX_USER_AGENT: usize = 512;

    /// A client from what the request carried.
    #[must_use]
    pub fn new(ip_address: Option<String>, user_agent: Option<&str>) -> Self {
        Self {
            ip_address,
            user_agent: user_agent.map(|ua| ua.chars().take(Self::MAX_USER_AGENT).collect()),
        }
    }
}

/// What every node must refuse, as read from the database.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Revocations {
    /// Ended sessions whose access tokens may still be unexpired, and when
    /// they ended.
    pub sessions: Vec<(String, i64)>,
    /// Per user, the instant before which their tokens are refused.
    pub users_not_before: Vec<(i64, i64)>,
}

/// An account brought from another system (`portcullis import django`),
/// keeping its id so the `user_id` claims of tokens already issued still
/// name the same person.
#[derive(Debug, Clone)]
pub struct ImportedUser {
    /// The id the account had there.
    pub id: i64,
    /// The account; its hash is kept as it was there (a Django hash is
    /// verified as such and rehashed on the first login).
    pub account: NewUser,
    /// The last successful login, Unix seconds.
    pub last_login: Option<i64>,
}

/// What an idempotent import did with one row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upserted {
    /// The row was new.
    Inserted,
    /// A row with that key was there and now holds the imported values.
    Updated,
}

/// A throttled key's failed logins, as [`Store::record_login_failure`]
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

/// Where accounts, issued tokens and the blacklist live.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Whether the database answers.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Create an account; `Conflict` if the username is taken.
    async fn create_user(&self, user: &NewUser) -> Result<User, StoreError>;
    /// An account by id.
    async fn user_by_id(&self, id: i64) -> Result<Option<User>, StoreError>;
    /// A number that moves whenever an account may have been changed by
    /// another process or node since the last call (another server on the
    /// database, the `portcullis user …` commands): the account cache
    /// forgets every account when it moves. Cheap (memory, or one local
    /// read on SQLite), called before every cached read; where it cannot
    /// tell, it moves. Changes made through this handle need not move it.
    fn account_changes(&self) -> u64;
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
    /// Insert or overwrite the account with this id. `Conflict` if another
    /// id holds the username. Ids generated later are always above it.
    /// A password portcullis already manages (Argon2id: rehashed at login or
    /// changed here) is kept, and `last_login` never moves backwards, so a
    /// re-run of an import cannot undo what happened since.
    async fn upsert_user_with_id(&self, user: &ImportedUser) -> Result<Upserted, StoreError>;
    /// Make every id generated from now on greater than `id`, so ids that
    /// existed elsewhere (even deleted ones) are never handed out again.
    async fn reserve_user_ids(&self, id: i64) -> Result<(), StoreError>;

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

    /// Start a session; its first refresh token is recorded in its family.
    async fn start_session(
        &self,
        session: &Session,
        first: &OutstandingToken,
    ) -> Result<(), StoreError>;
    /// The atomic rotation step of reuse detection, in one transaction:
    /// mark `presented` (recorded in `family` if it never was) rotated into
    /// `successor` unless it is rotated or blacklisted already, or its
    /// session has ended. Of concurrent callers exactly one wins; the
    /// others are told what the winner recorded. The session's last use
    /// and client are updated whoever wins.
    async fn rotate_in_family(
        &self,
        presented: &OutstandingToken,
        family: &str,
        successor: &OutstandingToken,
        now: i64,
        client: &Client,
    ) -> Result<RotationClaim, StoreError>;
    /// End a session: mark it revoked and blacklist every refresh token of
    /// its family. `false` if it had ended already or does not exist.
    async fn revoke_session(&self, id: &str, at: i64) -> Result<bool, StoreError>;
    /// A user's live sessions (not ended, not expired at `now`), newest first.
    /// Also what staff see at `GET /api/admin/users/{id}/sessions/`.
    async fn live_sessions(&self, user_id: i64, now: i64) -> Result<Vec<Session>, StoreError>;
    /// logout-all: refuse the user's tokens issued before `at`, end every
    /// session but `except` and blacklist every outstanding token of
    /// theirs outside it. Returns the sessions that ended.
    async fn end_sessions(
        &self,
        user_id: i64,
        except: Option<&str>,
        at: i64,
    ) -> Result<Vec<String>, StoreError>;
    /// Sessions revoked at or after `since` and users whose not-before
    /// instant is at or after `since` (what may still hold live access tokens).
    async fn revocations(&self, since: i64) -> Result<Revocations, StoreError>;

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
