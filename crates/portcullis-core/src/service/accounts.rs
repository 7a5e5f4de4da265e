//! Changes to an account that must end its sessions (a new password, a
//! deactivation, a deletion; ASVS V7.4.2, V7.4.3), and tokens issued to a
//! user without a login.

use portcullis_token::TokenType;
use secrecy::SecretString;
use serde_json::Value;

use super::{AuthService, Authenticated, SESSION_CLAIM};
use crate::{AuthError, User};

impl AuthService {
    /// simplejwt's `Token.for_user`: a signed token of any type for a user,
    /// recorded as outstanding when it is a refresh or sliding token. No
    /// credential check and, as in simplejwt, no `is_active` check: this is
    /// for administrators and tests, never for an endpoint.
    pub async fn token_for_user(
        &self,
        token_type: TokenType,
        user: &User,
    ) -> Result<String, AuthError> {
        let token = if token_type == TokenType::Access {
            self.unrecorded(token_type, user)?
        } else {
            self.issue(token_type, user).await?
        };
        self.encode(&token)
    }

    /// `POST /api/users/me/password/`: check the old password, set the new
    /// one, and end every other session (ASVS V7.4.3); the caller's own
    /// session lives on. Without sessions every token issued before is
    /// refused, the caller's included.
    #[tracing::instrument(level = "debug", skip_all, fields(user_id = auth.user.id))]
    pub async fn change_password(
        &self,
        auth: &Authenticated,
        old: SecretString,
        new: SecretString,
    ) -> Result<(), AuthError> {
        // A stolen access token must not become a way to guess the
        // password without limit: the old password is throttled as a login.
        let keys = self.settings.throttle.keys(&auth.user.username, None);
        self.check_throttle(&keys).await?;
        let verified = self
            .hasher
            .verify(old, Some(auth.user.password.clone()))
            .await?;
        if !verified.matched {
            self.count_failure(&keys).await?;
            return Err(AuthError::WrongPassword);
        }
        let hash = self.hasher.hash(new).await?;
        self.users.set_password(auth.user.id, &hash).await?;
        let current = auth.token.get(SESSION_CLAIM).and_then(Value::as_str);
        self.end_sessions(auth.user.id, current).await
    }

    /// Set a user's password for them (staff in the console, the CLI's
    /// `user set-password`), ending every session of the account: whoever
    /// knew the old password is out. `false` if there is no such user.
    pub async fn set_password(
        &self,
        user_id: i64,
        password: SecretString,
    ) -> Result<bool, AuthError> {
        let hash = self.hasher.hash(password).await?;
        if !self.users.set_password(user_id, &hash).await? {
            return Ok(false);
        }
        self.end_sessions_of(user_id).await
    }

    /// Deactivate a user, ending every session first (ASVS V7.4.2): a
    /// disabled account keeps no session, even if it is enabled again.
    /// `false` if there is no such user. The CLI's `user deactivate` too.
    pub async fn deactivate_user(&self, user_id: i64) -> Result<bool, AuthError> {
        if !self.end_sessions_of(user_id).await? {
            return Ok(false);
        }
        Ok(self.users.set_active(user_id, false).await?)
    }

    /// Delete a user, ending every session first (ASVS V7.4.2); the
    /// blacklisted tokens outlive the account. `false` if there is no
    /// such user. The CLI's `user delete` too.
    pub async fn delete_user(&self, user_id: i64) -> Result<bool, AuthError> {
        if !self.end_sessions_of(user_id).await? {
            return Ok(false);
        }
        Ok(self.users.delete_user(user_id).await?)
    }
}
