//! What a protected endpoint answers when authentication fails, shared by
//! the server and by `portcullis-verify` so both send the same bytes (in
//! DRF's wire format, [`crate::drf`]).
//!
//! simplejwt's `JWTAuthentication.get_validated_token` tries each class of
//! `AUTH_TOKEN_CLASSES` in order and, when none validates the token, lists
//! why each failed in `messages`. DRF then renders the exception as a JSON
//! body and adds `WWW-Authenticate` to every 401 (`authenticate_header`).

use std::future::Future;

use serde_json::{Value, json};

use crate::{Token, TokenError, TokenType};

/// One entry of the `messages` list in a protected endpoint's 401.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenMessage {
    /// Which class was tried.
    pub token_type: TokenType,
    /// Why it failed.
    pub error: TokenError,
}

/// Why a protected endpoint refused a request, with simplejwt's and DRF's
/// exact bodies ([`Rejection::body`]) and status codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// No credentials: DRF's `NotAuthenticated`, 401.
    NotAuthenticated,
    /// A known scheme with zero or several values after it, 401.
    BadAuthorizationHeader,
    /// No accepted token class validated the token, 401 with `messages`.
    NoValidTokenType(Vec<TokenMessage>),
    /// The token has no `USER_ID_CLAIM`, 401.
    NoUserIdentification,
    /// The token's user does not exist (server only: it reads the user), 401.
    UserNotFound,
    /// The token's user is inactive (server only), 401.
    UserInactive,
    /// `CHECK_REVOKE_TOKEN` and the password changed (server only), 401.
    PasswordChanged,
    /// Authenticated but not allowed: DRF's `PermissionDenied`, 403.
    PermissionDenied,
}

impl Rejection {
    /// The message, as in `detail`.
    #[must_use]
    pub fn message(&self) -> &'static str {
        match self {
            Self::NotAuthenticated => "Authentication credentials were not provided.",
            Self::BadAuthorizationHeader => {
                "Authorization header must contain two space-delimited values"
            }
            Self::NoValidTokenType(_) => "Given token not valid for any token type",
            Self::NoUserIdentification => "Token contained no recognizable user identification",
            Self::UserNotFound => "User not found",
            Self::UserInactive => "User is inactive",
            Self::PasswordChanged => "The user's password has been changed.",
            Self::PermissionDenied => "You do not have permission to perform this action.",
        }
    }

    /// The HTTP status: 403 for [`Rejection::PermissionDenied`], else 401.
    #[must_use]
    pub fn status(&self) -> u16 {
        match self {
            Self::PermissionDenied => 403,
            _ => 401,
        }
    }

    /// simplejwt's `code`, when the body has one.
    #[must_use]
    pub fn code(&self) -> Option<&'static str> {
        match self {
            Self::NotAuthenticated | Self::PermissionDenied => None,
            Self::BadAuthorizationHeader => Some("bad_authorization_header"),
            Self::NoValidTokenType(_) | Self::NoUserIdentification => Some("token_not_valid"),
            Self::UserNotFound => Some("user_not_found"),
            Self::UserInactive => Some("user_inactive"),
            Self::PasswordChanged => Some("password_changed"),
        }
    }

    /// The JSON body: `{"detail", ["code",] ["messages"]}` in this order.
    #[must_use]
    pub fn body(&self) -> Value {
        let mut body = crate::drf::error_body(self.message(), self.code());
        if let Self::NoValidTokenType(messages) = self {
            let messages = messages
                .iter()
                .map(|m| {
                    json!({
                        "token_class": m.token_type.class_name(),
                        "token_type": m.token_type.as_str(),
                        "message": m.error.to_string(),
                    })
                })
                .collect();
            body.insert("messages".to_owned(), Value::Array(messages));
        }
        Value::Object(body)
    }
}

/// `detail`, the message (so a refusal can stand as an error of its own,
/// as `portcullis-core`'s `AuthError::Rejected` does).
impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for Rejection {}

/// `JWTAuthentication.get_validated_token`: try each class in order with
/// `attempt`, which answers the class's verdict on the token (outer `Err`:
/// a failure that is not the token's fault, returned as is). The first
/// class that validates wins; otherwise every failure is listed (the
/// `messages` of [`Rejection::NoValidTokenType`]).
pub async fn validated_token<E, F, Fut>(
    classes: &[TokenType],
    mut attempt: F,
) -> Result<Result<Token, Vec<TokenMessage>>, E>
where
    F: FnMut(TokenType) -> Fut,
    Fut: Future<Output = Result<Result<Token, TokenError>, E>>,
{
    let mut messages = Vec::new();
    for &token_type in classes {
        match attempt(token_type).await? {
            Ok(token) => return Ok(Ok(token)),
            Err(error) => messages.push(TokenMessage { token_type, error }),
        }
    }
    Ok(Err(messages))
}

/// The stateless verdict on an access token already decoded by
/// [`crate::TokenEngine::decode`]: simplejwt's `AccessToken.verify` (no
/// blacklist: access tokens are never blacklisted).
pub fn check_access(
    decoded: Result<Token, TokenError>,
    engine: &crate::TokenEngine,
    token_type: TokenType,
) -> Result<Token, TokenError> {
    let token = decoded?;
    token.verify(engine.settings(), engine.now(), Some(token_type))?;
    Ok(token)
}
