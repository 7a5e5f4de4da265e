//! The portcullis domain: users, password hashing, the storage contract and
//! the simplejwt flows (obtain, refresh, verify, blacklist, sliding, and
//! authenticating a request).
//!
//! This crate knows nothing of HTTP or SQL: the HTTP layer turns
//! [`AuthError`] into responses, and a storage crate implements [`Store`].

mod error;
mod password;
mod revocation;
mod service;
mod store;
mod throttle;
mod user;
mod user_cache;

pub use error::{AuthError, TokenMessage};
pub use password::{HashParams, PasswordHasher, Verified};
pub use service::{
    AuthService, AuthSettings, Authenticated, Credentials, KeySource, SESSION_CLAIM, TokenPair,
};
pub use store::{
    Client, ImportedUser, LoginFailures, OutstandingToken, Revocations, RotationClaim, Session,
    Store, StoreError, Successor, Upserted,
};
pub use throttle::{ThrottleSettings, throttle_key_for_username};
pub use user::{NewUser, User, Username};
