//! The storage contract, one trait per aggregate of the domain:
//! [`UserStore`] (accounts), [`TokenStore`] (outstanding refresh and
//! sliding tokens and the blacklist), [`SessionStore`] (sessions, their
//! refresh-token families and what every node must refuse),
//! [`ThrottleStore`] (failed logins) and [`KeyStore`] (server settings and
//! the signing key set). [`Store`] bundles them with what concerns the
//! database as a whole.
//!
//! Implementations live in `portcullis-store` (SQLite and PostgreSQL) and
//! must pass the same tests (its `tests/store.rs`, the store suite).
//!
//! Refresh and sliding tokens are recorded by `jti` only, never raw
//! (simplejwt stores the raw token, its issue #803).

use async_trait::async_trait;

mod keys;
mod sessions;
mod throttle;
mod tokens;
mod users;

pub use keys::KeyStore;
pub use sessions::{Client, Revocations, RotationClaim, Session, SessionStore, Successor};
pub use throttle::{LoginFailures, ThrottleStore};
pub use tokens::{OutstandingToken, TokenStore};
pub use users::{ImportedUser, Upserted, UserStore};

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

/// Every aggregate in one database: what the server opens at start and
/// the flows ([`crate::AuthService`]) run on.
#[async_trait]
pub trait Store: UserStore + TokenStore + SessionStore + ThrottleStore + KeyStore {
    /// Whether the database answers.
    async fn ping(&self) -> Result<(), StoreError>;
}
