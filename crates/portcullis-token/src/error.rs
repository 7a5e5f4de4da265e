//! Token errors carry simplejwt's exact English messages, because clients
//! match on them (`detail` in the 401 body).

use thiserror::Error;

/// Why a token was refused. `Display` is the simplejwt message, verbatim.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TokenError {
    /// Any decoding or validation failure other than expiry (PyJWT's
    /// `InvalidTokenError` family: bad signature, wrong `alg`, `aud`, `iss`,
    /// `nbf`/`iat` in the future, malformed claims, oversized token).
    #[error("Token is invalid")]
    Invalid,
    /// `exp` is at or before now minus the leeway (PyJWT `ExpiredSignatureError`).
    #[error("Token is expired")]
    Expired,
    /// The token's `jti` is blacklisted.
    #[error("Token is blacklisted")]
    Blacklisted,
    /// The `jti` claim is missing.
    #[error("Token has no id")]
    NoId,
    /// The `token_type` claim is missing.
    #[error("Token has no type")]
    NoType,
    /// The `token_type` claim names another kind of token.
    #[error("Token has wrong type")]
    WrongType,
    /// A required time claim (`exp`, `refresh_exp`) is missing.
    #[error("Token has no '{0}' claim")]
    MissingClaim(String),
    /// A time claim checked by simplejwt itself (`refresh_exp`) has passed.
    #[error("Token '{0}' claim has expired")]
    ClaimExpired(String),
}
