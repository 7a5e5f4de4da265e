//! Every way a simplejwt flow can refuse. A protected endpoint's refusals
//! are the token crate's [`Rejection`] as they are (bodies shared with
//! `portcullis-verify`); the variants here are the token endpoints' own.
//! The HTTP layer owns the mapping to status codes.

use std::error::Error;
use std::fmt;

pub use portcullis_token::{Rejection, TokenMessage};
use portcullis_token::{SignError, TokenError};

use crate::StoreError;
use crate::password::HasherError;

/// Why a request was refused.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// A token endpoint rejected its token: 401 `{"detail","code":"token_not_valid"}`.
    #[error("{0}")]
    Token(#[from] TokenError),
    /// A protected endpoint refused the request (no or bad credentials,
    /// an unknown or inactive user, a changed password): the body and
    /// status of [`Rejection`].
    #[error("{0}")]
    Rejected(#[from] Rejection),
    /// Login failed: 401 `{"detail":"No active account found with the given credentials"}`.
    #[error("No active account found with the given credentials")]
    NoActiveAccount,
    /// Refresh for a missing or inactive user: 401, no `code`.
    #[error("No active account found for the given token.")]
    NoActiveAccountForToken,
    /// Refresh after a password change (`CHECK_REVOKE_TOKEN`): 401 with
    /// [`Rejection::PasswordChanged`]'s message but no `code` (simplejwt's
    /// `TokenRefreshSerializer` raises `AuthenticationFailed` without one).
    #[error("{}", Rejection::PasswordChanged.message())]
    PasswordChangedOnRefresh,
    /// The verify endpoint found the token blacklisted: 400 `non_field_errors`.
    #[error("{}", TokenError::Blacklisted)]
    VerifyBlacklisted,
    /// Logout with a token that names no session (`REFRESH_REUSE_DETECTION`
    /// off) and no refresh token to blacklist: 400.
    #[error("This token belongs to no session: send the refresh token to end.")]
    NoSession,
    /// A password change with a wrong old password: 400
    /// `{"old_password":["Wrong password."]}`.
    #[error("Wrong password.")]
    WrongPassword,
    /// Login throttling refused the attempt: 429 with `Retry-After` and
    /// DRF's `Throttled` body; the value is the wait in whole seconds.
    #[error("Request was throttled. Expected available in {0} second{s}.", s = if *.0 == 1 { "" } else { "s" })]
    Throttled(u64),
    /// The storage failed: 500, logged, never shown.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Hashing or verifying a password failed: 500, logged.
    #[error("internal error")]
    Hash(#[from] HasherError),
    /// Signing a token (or writing the JWKS) failed: 500, logged.
    #[error("internal error")]
    Sign(#[from] SignError),
}

/// An error and every cause under it, as `error: cause: cause's cause`:
/// what the log and the command line show of a failure (the way
/// `anyhow` writes `{:#}`), so the chain its [`Error::source`]s keep is
/// never cut to the outermost message.
#[must_use]
pub fn error_chain(e: &dyn Error) -> impl fmt::Display + '_ {
    ErrorChain(e)
}

struct ErrorChain<'a>(&'a dyn Error);

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::AuthError;
    use crate::StoreError;

    /// DRF's `Throttled` wording, singular at exactly one second.
    #[test]
    fn throttled_wording_is_drfs() {
        assert_eq!(
            AuthError::Throttled(1).to_string(),
            "Request was throttled. Expected available in 1 second."
        );
        assert_eq!(
            AuthError::Throttled(900).to_string(),
            "Request was throttled. Expected available in 900 seconds."
        );
    }

    /// A storage failure keeps what caused it, for the log.
    #[test]
    fn internal_failures_keep_their_cause() {
        let cause = std::io::Error::other("disk on fire");
        let e = AuthError::from(StoreError::database("cannot write", cause));
        assert_eq!(e.to_string(), "database error: cannot write");
        assert_eq!(
            e.source().map(ToString::to_string).as_deref(),
            Some("disk on fire")
        );
        assert_eq!(
            crate::error_chain(&e).to_string(),
            "database error: cannot write: disk on fire"
        );
    }
}
