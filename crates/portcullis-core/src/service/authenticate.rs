//! The tokens a request presents: `JWTAuthentication` (an access or
//! sliding token in the `Authorization` header, its account, and the
//! revocations simplejwt does not have) and `TokenVerifyView`.

use portcullis_token::{
    AuthHeader, Rejection, Token, TokenError, TokenType, UserIdClaim, parse_authorization,
};
use serde_json::Value;

use super::{AuthService, Authenticated, SESSION_CLAIM, token_user_id};
use crate::{AuthError, TokenMessage, User};

impl AuthService {
    /// `TokenVerifySerializer.validate`: any token type; the blacklist is
    /// consulted only with `BLACKLIST_AFTER_ROTATION` (simplejwt's rule,
    /// kept for compatibility), and then answers a 400.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn verify(&self, raw: &str) -> Result<(), AuthError> {
        let token = self.decode_cached(raw.as_bytes()).await?;
        token.verify(self.engine.settings(), self.engine.now(), None)?;
        if self.settings.blacklist_after_rotation
            && let Some(jti) = token.jti(self.engine.settings())
            && self.store.is_blacklisted(jti).await?
        {
            return Err(AuthError::VerifyBlacklisted);
        }
        Ok(())
    }

    /// `JWTAuthentication.authenticate`: `Ok(None)` for anonymous requests.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn authenticate(
        &self,
        header: Option<&[u8]>,
    ) -> Result<Option<Authenticated>, AuthError> {
        let raw = match parse_authorization(header, &self.settings.auth_header_types) {
            AuthHeader::Anonymous => return Ok(None),
            AuthHeader::Malformed => return Err(Rejection::BadAuthorizationHeader.into()),
            AuthHeader::Token(raw) => raw,
        };
        let token = self.validated_token(raw).await?;
        // simplejwt's `get_user` next. Its answers come before the
        // revocation check (which simplejwt does not have): a deactivated
        // or deleted user's token, whose sessions ended with the account,
        // is refused as simplejwt refuses it, "User is inactive" or
        // "User not found".
        let id = match token.user_id(self.engine.settings()) {
            UserIdClaim::Missing => return Err(Rejection::NoUserIdentification.into()),
            // 5.5.1 answers 500 for an id the database cannot coerce.
            UserIdClaim::Falsy | UserIdClaim::NotAnId => return Err(Rejection::UserNotFound.into()),
            UserIdClaim::Id(id) => id,
        };
        let user = self.users.user_by_id(id).await?;
        let user = self.check_user(&token, user)?;
        if self.is_revoked(&token) {
            // The revocation may be the account change's own doing (a
            // deactivation or deletion ends the sessions) and reach this
            // node before the account change does (on PostgreSQL the two
            // notifications race): the account is read again from the
            // database, so the answer still names the account first.
            self.check_user(&token, self.store.user_by_id(id).await?)?;
            // simplejwt's shape for a blacklisted token on an authenticated
            // endpoint (its sliding tokens answer this way).
            let token_type = match self.engine.settings().token_type_claim.as_deref() {
                Some(claim) if token.get(claim).and_then(Value::as_str) == Some("sliding") => {
                    TokenType::Sliding
                }
                _ => TokenType::Access,
            };
            return Err(Rejection::NoValidTokenType(vec![TokenMessage {
                token_type,
                error: TokenError::Blacklisted,
            }])
            .into());
        }
        Ok(Some(Authenticated { user, token }))
    }

    /// simplejwt's `get_user` checks of an access token's account, in its
    /// order: found, active, and (with `CHECK_REVOKE_TOKEN`) the password
    /// the token was issued under.
    fn check_user(&self, token: &Token, user: Option<User>) -> Result<User, AuthError> {
        let user = user.ok_or(Rejection::UserNotFound)?;
        if self.settings.check_user_is_active && !user.is_active {
            return Err(Rejection::UserInactive.into());
        }
        if self.settings.check_revoke_token && !self.revoke_claim_matches(token, &user) {
            return Err(Rejection::PasswordChanged.into());
        }
        Ok(user)
    }

    /// Whether a validated token's session ended or its user logged out
    /// everywhere after it was issued. Memory only.
    fn is_revoked(&self, token: &Token) -> bool {
        self.revocations.is_revoked(
            token.get(SESSION_CLAIM).and_then(Value::as_str),
            token_user_id(token, self.engine.settings()),
            token.time_claim("iat").unwrap_or(i64::MIN),
        )
    }

    /// `JWTAuthentication.get_validated_token`: try each accepted class in
    /// order and collect why each failed. The loop, the access-token rule
    /// and the `messages` are `portcullis_token`'s, shared with
    /// `portcullis-verify`; only refresh and sliding tokens consult the store.
    async fn validated_token(&self, raw: &[u8]) -> Result<Token, AuthError> {
        portcullis_token::validated_token(
            &self.settings.auth_token_classes,
            |token_type| async move {
                Ok(match token_type {
                    TokenType::Access => portcullis_token::check_access(
                        self.decode_cached(raw).await,
                        &self.engine,
                        token_type,
                    ),
                    _ => match std::str::from_utf8(raw) {
                        Ok(raw) => match self.validate_stored(raw, token_type).await {
                            Ok(token) => Ok(token),
                            Err(AuthError::Token(e)) => Err(e),
                            Err(other) => return Err(other),
                        },
                        Err(_) => Err(TokenError::Invalid),
                    },
                })
            },
        )
        .await?
        .map_err(|messages| Rejection::NoValidTokenType(messages).into())
    }
}
