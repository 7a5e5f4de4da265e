//! The portcullis domain: users, password hashing, the storage contract and
//! the simplejwt flows (obtain, refresh, verify, blacklist, sliding, and
//! authenticating a request).
//!
//! This crate knows nothing of HTTP or SQL: the HTTP layer turns
//! [`AuthError`] into responses, and a storage crate implements [`Store`]
//! (one trait per aggregate, see `store/`).

mod audit;
mod directory;
mod error;
mod maintenance;
mod password;
mod revocation;
mod service;
mod store;
mod throttle;
mod user;
mod user_cache;

pub use audit::{Actor, AuditAction, AuditEntry, AuditFilter, AuditRecord, AuditStore, Target};
pub use directory::{UserDirectory, UserQuery};
pub use error::{AuthError, Rejection, TokenMessage, error_chain};
pub use password::{HashParams, HasherError, PasswordHasher, UnusableHash, Verified};
pub use service::{
    AuthService, AuthSettings, Authenticated, Credentials, KeySource, SESSION_CLAIM, TokenPair,
};
pub use store::{
    Client, DatabaseError, ImportedUser, KeyStore, LoginFailures, OutstandingToken, Revocations,
    RotationClaim, Session, SessionStore, Store, StoreError, Successor, ThrottleStore, TokenStore,
    Upserted, UserStore,
};
pub use throttle::{ThrottleSettings, throttle_key_for_username};
pub use user::{InvalidUsername, NewUser, User, Username};

/// Counter of logins (`/api/token/`, `/api/token/sliding/`) by `result`:
/// `success`, `bad_credentials` (unknown user or wrong password),
/// `inactive` (right password, inactive account) or `error`. Recorded
/// through the `metrics` facade; the server installs the exporter.
pub const LOGINS_TOTAL: &str = "portcullis_logins_total";

/// Histogram of the seconds a password hash or verification waited for a
/// hashing slot (the semaphore sized to the cores).
pub const HASH_QUEUE_SECONDS: &str = "portcullis_password_hash_queue_seconds";
