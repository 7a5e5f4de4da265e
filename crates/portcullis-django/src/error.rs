//! The one error type of this crate.
//!
//! Messages say what was wrong with a stored hash without quoting it: a password column can hold
//! a plaintext password by mistake, and these messages end up in logs.

/// Why a stored Django password value could not be verified.
///
/// A wrong password is not an error: [`crate::verify`] answers `Ok(false)` for it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashError {
    /// The value names a hasher this crate does not verify: an unknown prefix (named in the
    /// message when it looks like an algorithm name), or Django's `crypt` hasher.
    #[error("unsupported Django password hasher: {0}")]
    Unsupported(String),
    /// The value is not something Django could have written: a field is missing, not a
    /// number, not valid base64 or hex, has the wrong length, or holds parameters the
    /// algorithm rejects.
    #[error("malformed Django password hash: {0}")]
    Malformed(&'static str),
    /// A cost parameter in the value is above the configured [`crate::CostLimits`]; nothing
    /// was hashed.
    #[error(
        "{algorithm} hash asks for {what} = {value}, above the configured limit of {limit}; \
         raise CostLimits if this hash is genuine"
    )]
    CostTooHigh {
        /// Django's algorithm name, as [`crate::DjangoHash::algorithm`] gives it.
        algorithm: &'static str,
        /// Which parameter, e.g. `"iterations"` or `"memory (KiB)"`.
        what: &'static str,
        /// The value the stored hash asks for.
        value: u64,
        /// The configured maximum.
        limit: u64,
    },
}
