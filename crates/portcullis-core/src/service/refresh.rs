//! Presenting a refresh or sliding token: `TokenRefreshView` (with
//! rotation, and reuse detection within sessions), `TokenBlacklistView` and
//! `TokenRefreshSlidingView`.

use portcullis_token::{Token, TokenError, TokenType, UserIdClaim};
use serde_json::Value;

use super::{AuthService, SESSION_CLAIM};
use crate::{AuthError, Client, RotationClaim, Successor, User};

impl AuthService {
    /// `TokenRefreshSerializer.validate`. Returns the access token and, with
    /// rotation, the new refresh token.
    ///
    /// Better than 5.5.1, as its master branch does: a deleted user or an
    /// unusable `user_id` is a 401 (5.5.1: a 500), and `CHECK_REVOKE_TOKEN`
    /// is enforced here too (5.5.1 issues an access token that then fails).
    /// With `BLACKLIST_AFTER_ROTATION`, blacklisting the presented token is
    /// the atomic gate: of concurrent refreshes of one token, exactly one
    /// succeeds (5.5.1 lets them all through). With sessions, `client` is
    /// recorded as the session's last user. The answer names the first
    /// reason simplejwt would give (see `validate_refreshable`).
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn refresh(
        &self,
        raw: &str,
        client: &Client,
    ) -> Result<(String, Option<String>), AuthError> {
        let refresh = self.validate_refreshable(raw, TokenType::Refresh).await?;
        self.check_refresh_user(&refresh, true).await?;
        let access = self.engine.access_from_refresh(&refresh)?;
        let access = self.encode(&access)?;
        if !self.settings.rotate_refresh_tokens {
            return Ok((access, None));
        }
        if self.settings.refresh_reuse_detection {
            let rotated = self.rotate_in_family(&refresh, client).await?;
            return Ok((access, Some(self.encode(&rotated)?)));
        }
        if self.settings.blacklist_after_rotation && !self.blacklist_token(&refresh).await? {
            return Err(TokenError::Blacklisted.into());
        }
        let rotated = self.engine.rotate(&refresh)?;
        self.outstand(&rotated).await?;
        Ok((access, Some(self.encode(&rotated)?)))
    }

    /// `TokenBlacklistSerializer.validate`. Blacklisting twice is refused
    /// with "Token is blacklisted", as in simplejwt.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn blacklist(&self, raw: &str) -> Result<(), AuthError> {
        let refresh = self.validate_stored(raw, TokenType::Refresh).await?;
        if self.blacklist_token(&refresh).await? {
            // With sessions, blacklisting is logging out: the session ends,
            // its access tokens included.
            if let Some(sid) = refresh.get(SESSION_CLAIM).and_then(Value::as_str) {
                self.end_session(sid).await?;
            }
            Ok(())
        } else {
            Err(TokenError::Blacklisted.into())
        }
    }

    /// `TokenRefreshSlidingSerializer.validate`: the token must still be
    /// within `exp` (simplejwt's rule) and `refresh_exp`; `jti` and
    /// `refresh_exp` are kept. The user checks of simplejwt's master branch
    /// apply (5.5.1 has none).
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn refresh_sliding(&self, raw: &str) -> Result<String, AuthError> {
        let sliding = self.validate_refreshable(raw, TokenType::Sliding).await?;
        let settings = self.engine.settings();
        sliding.check_exp(
            &settings.sliding_refresh_exp_claim,
            self.engine.now(),
            settings.leeway,
        )?;
        self.check_refresh_user(&sliding, true).await?;
        self.encode(&self.engine.slide(&sliding))
    }

    /// [`Self::validate_stored`] for the refresh endpoints, where a
    /// blacklisted token of a deactivated or deleted account, or (with
    /// `CHECK_REVOKE_TOKEN`) of a changed password, is refused for that
    /// reason ("No active account found for the given token.", "The
    /// user's password has been changed."), not as blacklisted: portcullis
    /// ends an account's sessions when the account changes (ASVS V7.4.2,
    /// V7.4.3), simplejwt does not, so the account is the first reason
    /// simplejwt would give. A client told "blacklisted" would log in
    /// again, and cannot.
    async fn validate_refreshable(
        &self,
        raw: &str,
        token_type: TokenType,
    ) -> Result<Token, AuthError> {
        let (token, blacklisted) = self.decode_stored(raw).await?;
        if blacklisted {
            self.check_refresh_user(&token, false).await?;
            return Err(TokenError::Blacklisted.into());
        }
        token.verify(self.engine.settings(), self.engine.now(), Some(token_type))?;
        Ok(token)
    }

    /// The user checks of simplejwt master's refresh serializers: the user
    /// must exist and be active, and with `CHECK_REVOKE_TOKEN` the password
    /// must not have changed (then the token is blacklisted too, unless
    /// `blacklist` is false: it is already).
    async fn check_refresh_user(&self, token: &Token, blacklist: bool) -> Result<(), AuthError> {
        if let Some(user) = self.token_user(token).await?
            && self.settings.check_revoke_token
            && !self.revoke_claim_matches(token, &user)
        {
            if blacklist {
                self.blacklist_token(token).await?;
            }
            return Err(AuthError::PasswordChangedOnRefresh);
        }
        Ok(())
    }

    /// The refresh serializer's user checks (`USER_AUTHENTICATION_RULE`).
    /// `None` when the token names no user (a falsy or absent claim), which
    /// simplejwt lets through.
    async fn token_user(&self, token: &Token) -> Result<Option<User>, AuthError> {
        match token.user_id(self.engine.settings()) {
            UserIdClaim::Missing | UserIdClaim::Falsy => Ok(None),
            UserIdClaim::NotAnId => Err(AuthError::NoActiveAccountForToken),
            UserIdClaim::Id(id) => match self.users.user_by_id(id).await? {
                Some(user) if user.is_active || !self.settings.check_user_is_active => {
                    Ok(Some(user))
                }
                _ => Err(AuthError::NoActiveAccountForToken),
            },
        }
    }

    /// Rotation with reuse detection (RFC 9700 §4.14.2, RFC 6819
    /// §5.2.2.3). The store's atomic step picks one winner; a repeat
    /// within `REFRESH_REUSE_GRACE` gets the winner's successor again
    /// (two tabs refreshing at once stay logged in, as with Supabase Auth), so
    /// there is never more than one live successor; a repeat after it is
    /// reuse, and ends the session: its refresh tokens are blacklisted and
    /// its access tokens refused.
    async fn rotate_in_family(&self, refresh: &Token, client: &Client) -> Result<Token, AuthError> {
        let settings = self.engine.settings();
        let presented = self.record(refresh)?;
        // A token issued before sessions were on starts its family now.
        let family = match refresh.get(SESSION_CLAIM).and_then(Value::as_str) {
            Some(sid) => sid.to_owned(),
            None => presented.jti.clone(),
        };
        let mut rotated = self.engine.rotate(refresh)?;
        rotated.set(SESSION_CLAIM, Value::String(family.clone()));
        let successor = self.record(&rotated)?;
        let now = self.engine.now();
        match self
            .store
            .rotate_in_family(&presented, &family, &successor, now, client)
            .await?
        {
            RotationClaim::Won => Ok(rotated),
            // A grace of 0 is "never", even for a loser whose `now` was read
            // in the second before the winner's `rotated_at`.
            RotationClaim::AlreadyRotated {
                rotated_at,
                successor,
            } if self.settings.refresh_reuse_grace > 0
                && now < rotated_at.saturating_add(self.settings.refresh_reuse_grace) =>
            {
                Ok(reissue(&rotated, settings, &successor))
            }
            RotationClaim::AlreadyRotated { .. } => {
                tracing::warn!(
                    session = %family,
                    "a rotated refresh token was reused; its session is ended"
                );
                self.end_session(&family).await?;
                Err(TokenError::Blacklisted.into())
            }
            RotationClaim::Ended => Err(TokenError::Blacklisted.into()),
        }
    }
}

/// The successor the winning rotation recorded, rebuilt from the claims
/// every rotation of one token shares plus the recorded `jti`, `iat` and
/// `exp`. HMAC and Ed25519 signatures are deterministic, so it is the very
/// same string; an ECDSA one differs in its signature only, and names the
/// same token (same `jti`). No raw token is ever stored.
fn reissue(
    rotated: &Token,
    settings: &portcullis_token::TokenSettings,
    successor: &Successor,
) -> Token {
    let mut token = rotated.clone();
    token.set(&settings.jti_claim, Value::String(successor.jti.clone()));
    token.set("exp", Value::from(successor.expires_at));
    token.set("iat", Value::from(successor.created_at));
    token
}
