//! Verify the password hashes Django keeps in `auth_user.password`, so a team can move its user
//! table to portcullis without resetting anyone's password.
//!
//! Every format Django has ever written is recognised (reference: simplejwt-5.5.1.md §8, checked
//! against Django 5.2 and 4.2 with `tests/vectors/make_vectors.py`):
//!
//! | prefix | [`DjangoHash`] variant |
//! |---|---|
//! | `pbkdf2_sha256$`, `pbkdf2_sha1$` | [`DjangoHash::Pbkdf2Sha256`], [`DjangoHash::Pbkdf2Sha1`] |
//! | `argon2$` (argon2id, argon2i, argon2d; `v=19`, `v=16` or no `v=`) | [`DjangoHash::Argon2`] |
//! | `bcrypt_sha256$`, `bcrypt$` | [`DjangoHash::BcryptSha256`], [`DjangoHash::Bcrypt`] |
//! | `scrypt$` | [`DjangoHash::Scrypt`] |
//! | `md5$`, `sha1$` (salted) | [`DjangoHash::Md5`], [`DjangoHash::Sha1`] |
//! | 32 hex digits, `md5$$`, `sha1$$` | [`DjangoHash::UnsaltedMd5`], [`DjangoHash::UnsaltedSha1`] |
//! | `!…`, empty | [`DjangoHash::Unusable`]: never matches |
//! | `crypt$$` | refused with [`HashError::Unsupported`] (see [`DjangoHash::parse`]) |
//!
//! Invariants the whole crate keeps:
//! * **Never panics**, whatever the stored string holds; a row Django itself could not have
//!   written is [`HashError::Malformed`], and error messages never echo the row (it might be a
//!   plaintext password someone stored by mistake).
//! * **Costs are checked while parsing**, before any key derivation runs, against
//!   [`CostLimits`]: a hostile row cannot make the server burn CPU or memory
//!   ([`HashError::CostTooHigh`]).
//! * **Constant-time comparison** of the derived value with the stored one (`subtle`), as
//!   Django's `constant_time_compare` does.
//! * Passwords are hashed as their UTF-8 bytes, exactly as Django's `password.encode()`.
//!
//! ```
//! use portcullis_django::{CostLimits, DjangoHash, HashError, verify};
//!
//! let limits = CostLimits::default();
//! let row = "md5$seasalt1234567890abcde$3359237fa834c79f497ce5e9f0f0c2f6";
//! assert_eq!(verify("password", row, &limits), Ok(true));
//! assert_eq!(verify("wrong", row, &limits), Ok(false));
//! assert_eq!(verify("password", "!unusable", &limits), Ok(false));
//! assert!(matches!(
//!     DjangoHash::parse("pbkdf2_sha256$4000000000$salt$x", &limits),
//!     Err(HashError::CostTooHigh { .. })
//! ));
//! ```
//!
//! Verification is CPU-bound (up to seconds at high costs): callers run it on a blocking pool
//! behind a semaphore, never on an async worker (STYLE.md habit 5).

mod error;
mod formats;
mod hash;
mod limits;
mod util;

pub use error::HashError;
pub use formats::argon2::{Argon2Hash, Argon2Variant, Argon2Version};
pub use formats::bcrypt::{BcryptHash, BcryptVersion};
pub use formats::digest::{SaltedDigestHash, UnsaltedDigestHash};
pub use formats::pbkdf2::Pbkdf2Hash;
pub use formats::scrypt::ScryptHash;
pub use hash::DjangoHash;
pub use limits::CostLimits;

/// Checks `password` against a stored Django `auth_user.password` value.
///
/// Returns `Ok(true)` only when Django's own `check_password` would. A wrong password is
/// `Ok(false)`, and so is an unusable password (`!…` or the empty string), whatever the
/// password. A row that cannot be parsed, names an unknown hasher, or asks for more work than
/// `limits` allow is an error, and no hashing is done for it.
///
/// This is [`DjangoHash::parse`] followed by [`DjangoHash::verify`].
pub fn verify(password: &str, encoded: &str, limits: &CostLimits) -> Result<bool, HashError> {
    DjangoHash::parse(encoded, limits)?.verify(password)
}

/// Whether a Django hash should be replaced after a successful login: always `true`.
///
/// portcullis stores its own Argon2id PHC strings; a Django hash of any kind, even an Argon2id
/// one with the same parameters, is rehashed with the current configuration the first time its
/// user logs in, so imported rows disappear as users come back (Django's own `must_update` does
/// the same when the preferred hasher changes).
#[must_use]
pub fn needs_rehash(_hash: &DjangoHash) -> bool {
    true
}
