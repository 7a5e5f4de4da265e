//! Every way a simplejwt flow can refuse, mapped one-to-one to the bodies
//! simplejwt sends. The HTTP layer owns the mapping to status codes.

pub use portcullis_token::TokenMessage;
use portcullis_token::{Rejection, TokenError};

use crate::StoreError;

/// Why a request was refused.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// A token endpoint rejected its token: 401 `{"detail","code":"token_not_valid"}`.
    #[error("{0}")]
    Token(#[from] TokenError),
    /// Login failed: 401 `{"detail":"No active account found with the given credentials"}`.
    #[error("No active account found with the given credentials")]
    NoActiveAccount,
    /// Refresh for a missing or inactive user: 401, no `code`.
    #[error("No active account found for the given token.")]
    NoActiveAccountForToken,
    /// Refresh after a password change (`CHECK_REVOKE_TOKEN`): 401, no `code`.
    #[error("The user's password has been changed.")]
    PasswordChangedOnRefresh,
    /// The verify endpoint found the token blacklisted: 400 `non_field_errors`.
    #[error("Token is blacklisted")]
    VerifyBlacklisted,
    /// No credentials on a protected endpoint.
    #[error("Authentication credentials were not provided.")]
    NotAuthenticated,
    /// `Bearer` with zero or several values.
    #[error("Authorization header must contain two space-delimited values")]
    BadAuthorizationHeader,
    /// No accepted token class validated the token.
    #[error("Given token not valid for any token type")]
    NoValidTokenType(Vec<TokenMessage>),
    /// The token has no `USER_ID_CLAIM`.
    #[error("Token contained no recognizable user identification")]
    NoUserIdentification,
    /// The token's user does not exist.
    #[error("User not found")]
    UserNotFound,
    /// The token's user is inactive.
    #[error("User is inactive")]
    UserInactive,
    /// `CHECK_REVOKE_TOKEN` and the password changed since issue.
    #[error("The user's password has been changed.")]
    PasswordChanged,
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
    /// Something else failed inside (signing, hashing): 500, logged.
    #[error("internal error: {0}")]
    Internal(String),
}

impl AuthError {
    /// The protected-endpoint refusal this is, shared with `portcullis-verify`
    /// (which answers the same bodies); `None` for the token endpoints' own
    /// errors and for internal failures.
    #[must_use]
    pub fn rejection(&self) -> Option<Rejection> {
        Some(match self {
            Self::NotAuthenticated => Rejection::NotAuthenticated,
            Self::BadAuthorizationHeader => Rejection::BadAuthorizationHeader,
            Self::NoValidTokenType(messages) => Rejection::NoValidTokenType(messages.clone()),
            Self::NoUserIdentification => Rejection::NoUserIdentification,
            Self::UserNotFound => Rejection::UserNotFound,
            Self::UserInactive => Rejection::UserInactive,
            Self::PasswordChanged => Rejection::PasswordChanged,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::AuthError;

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
}
