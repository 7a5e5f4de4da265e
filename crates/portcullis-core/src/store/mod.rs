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

use std::borrow::Cow;
use std::error::Error;
use std::fmt;
use std::sync::Arc;

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
    #[error(transparent)]
    Database(DatabaseError),
}

impl StoreError {
    /// The driver failed: its error is the source.
    pub fn driver(source: impl Error + Send + Sync + 'static) -> Self {
        Self::Database(DatabaseError {
            context: None,
            source: Some(Arc::new(source)),
        })
    }

    /// The driver failed while doing `context` ("cannot open the SQLite
    /// database"): its error is the source.
    pub fn database(
        context: impl Into<Cow<'static, str>>,
        source: impl Error + Send + Sync + 'static,
    ) -> Self {
        Self::Database(DatabaseError {
            context: Some(context.into()),
            source: Some(Arc::new(source)),
        })
    }

    /// The database cannot be used, for a reason of its own (no driver
    /// error behind it).
    pub fn unusable(context: impl Into<Cow<'static, str>>) -> Self {
        Self::Database(DatabaseError {
            context: Some(context.into()),
            source: None,
        })
    }
}

/// What [`StoreError::Database`] holds: `database error[: context]`, and
/// the driver's error as [`Error::source`] (shown after it by the log and
/// by the command line, which write the whole chain).
#[derive(Debug, Clone)]
pub struct DatabaseError {
    context: Option<Cow<'static, str>>,
    source: Option<Arc<dyn Error + Send + Sync>>,
}

impl fmt::Display for DatabaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("database error")?;
        if let Some(context) = &self.context {
            write!(f, ": {context}")?;
        }
        Ok(())
    }
}

impl Error for DatabaseError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn Error + 'static))
    }
}

/// Every aggregate in one database: what the server opens at start and
/// the flows ([`crate::AuthService`]) run on.
#[async_trait]
pub trait Store: UserStore + TokenStore + SessionStore + ThrottleStore + KeyStore {
    /// Whether the database answers.
    async fn ping(&self) -> Result<(), StoreError>;
}
