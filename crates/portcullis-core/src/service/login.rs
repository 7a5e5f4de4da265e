//! Logins: `TokenObtainPairView`, `TokenObtainSlidingView` and the staff
//! console's login, all behind one credential check and the login
//! throttle (see `throttle.rs`).

use portcullis_token::{Rejection, TokenType};

use super::{AuthService, Credentials, TokenPair};
use crate::throttle::{ThrottleKey, block_for, wait_seconds};
use crate::{AuthError, Client, User};

impl AuthService {
    /// `TokenObtainPairSerializer.validate`: check the credentials, then
    /// issue and record a refresh token and derive its access token. With
    /// sessions, the session remembers `client`.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn obtain_pair(
        &self,
        credentials: Credentials,
        client: &Client,
    ) -> Result<TokenPair, AuthError> {
        let user = self.login(credentials).await?;
        let refresh = if self.settings.refresh_reuse_detection {
            self.start_session(&user, client).await?
        } else {
            self.issue(TokenType::Refresh, &user).await?
        };
        let access = self.engine.access_from_refresh(&refresh)?;
        let pair = TokenPair {
            refresh: self.encode(&refresh)?,
            access: self.encode(&access)?,
        };
        self.after_login(&user).await?;
        Ok(pair)
    }

    /// `TokenObtainSlidingSerializer.validate`.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn obtain_sliding(&self, credentials: Credentials) -> Result<String, AuthError> {
        let user = self.login(credentials).await?;
        let sliding = self.issue(TokenType::Sliding, &user).await?;
        let token = self.encode(&sliding)?;
        self.after_login(&user).await?;
        Ok(token)
    }

    /// The staff console's login: the credential check and throttling of
    /// `/api/token/` (same counts, same locks), without issuing a token.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn check_login(&self, credentials: Credentials) -> Result<User, AuthError> {
        let user = self.login(credentials).await?;
        self.after_login(&user).await?;
        Ok(user)
    }

    /// `django.contrib.auth.authenticate` plus `USER_AUTHENTICATION_RULE`.
    /// Unknown users verify a dummy hash; inactive users verify their real
    /// one: all three failures take the same time. The user id goes into
    /// the span so a refused imported hash is logged with its owner.
    ///
    /// Throttled (see `throttle.rs`): a blocked username or address is
    /// refused before any lookup or hashing; every refusal counts against
    /// both, whatever its cause; a success clears the username's count.
    #[tracing::instrument(skip_all, fields(user_id = tracing::field::Empty))]
    async fn login(&self, credentials: Credentials) -> Result<User, AuthError> {
        let keys = self
            .settings
            .throttle
            .keys(&credentials.username, credentials.client);
        if let Err(refused) = self.check_throttle(&keys).await {
            if matches!(refused, AuthError::Throttled(_)) {
                metrics::counter!(crate::LOGINS_TOTAL, "result" => "throttled").increment(1);
            }
            return Err(refused);
        }
        let outcome = self.check_credentials(credentials).await;
        let result = match &outcome {
            Ok(_) => "success",
            Err(AuthError::NoActiveAccount) => "bad_credentials",
            Err(AuthError::Rejected(Rejection::UserInactive)) => "inactive",
            Err(_) => "error",
        };
        metrics::counter!(crate::LOGINS_TOTAL, "result" => result).increment(1);
        match outcome {
            // simplejwt gives an inactive account the same answer as a wrong
            // password (only the metric tells them apart), and both count
            // against the throttle alike.
            Err(AuthError::NoActiveAccount | AuthError::Rejected(Rejection::UserInactive)) => {
                self.count_failure(&keys).await?;
                Err(AuthError::NoActiveAccount)
            }
            Ok(user) => {
                if let Some(key) = keys
                    .first()
                    .filter(|_| self.settings.throttle.failure_limit > 0)
                {
                    self.store.clear_login_failures(&key.key).await?;
                }
                Ok(user)
            }
            Err(e) => Err(e),
        }
    }

    /// Refuse with 429 if any of the keys is blocked.
    pub(super) async fn check_throttle(&self, keys: &[ThrottleKey]) -> Result<(), AuthError> {
        let now = self.engine.now_millis();
        let mut until = 0;
        for key in keys {
            until = until.max(self.store.login_blocked_until(&key.key).await?);
        }
        if until > now {
            return Err(AuthError::Throttled(wait_seconds(until, now)));
        }
        Ok(())
    }

    /// Count a failure against every key, blocking those it takes over a
    /// threshold.
    pub(super) async fn count_failure(&self, keys: &[ThrottleKey]) -> Result<(), AuthError> {
        let settings = &self.settings.throttle;
        let now = self.engine.now_millis();
        let window_expired = now.saturating_sub(settings.window.saturating_mul(1000));
        let lockout = settings.lockout.saturating_mul(1000);
        for key in keys {
            let row = self
                .store
                .record_login_failure(&key.key, now, window_expired)
                .await?;
            if let Some(block) = block_for(row.failures, key, lockout) {
                self.store
                    .block_login(&key.key, now.saturating_add(block))
                    .await?;
                tracing::info!(
                    failures = row.failures,
                    seconds = block / 1000,
                    kind = if key.key.starts_with("a:") {
                        "address"
                    } else {
                        "username"
                    },
                    "login throttled"
                );
            }
        }
        Ok(())
    }

    /// The credential check proper.
    async fn check_credentials(&self, credentials: Credentials) -> Result<User, AuthError> {
        let user = self.users.user_by_username(&credentials.username).await?;
        if let Some(user) = &user {
            tracing::Span::current().record("user_id", user.id);
        }
        let stored = user.as_ref().map(|u| u.password.clone());
        let verified = self
            .hasher
            .verify(credentials.password.clone(), stored)
            .await?;
        let Some(mut user) = user.filter(|_| verified.matched) else {
            return Err(AuthError::NoActiveAccount);
        };
        if self.settings.check_user_is_active && !user.is_active {
            return Err(Rejection::UserInactive.into());
        }
        if verified.needs_rehash {
            // Django's `check_password` upgrades outdated hashes on login;
            // an imported Django hash always becomes Argon2id here.
            let hash = self.hasher.hash(credentials.password).await?;
            self.users.set_password(user.id, &hash).await?;
            user.password = hash;
        }
        Ok(user)
    }

    async fn after_login(&self, user: &User) -> Result<(), AuthError> {
        if self.settings.update_last_login {
            self.users
                .update_last_login(user.id, self.engine.now())
                .await?;
        }
        Ok(())
    }
}
