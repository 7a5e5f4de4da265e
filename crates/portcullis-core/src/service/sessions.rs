//! Sessions (refresh-token families, `REFRESH_REUSE_DETECTION`): started
//! at login, listed, ended one at a time or all at once, and the
//! revocations every node reloads.

use portcullis_token::{Token, TokenError, TokenType};
use serde_json::Value;

use super::{AuthService, Authenticated, SESSION_CLAIM, token_user_id};
use crate::{AuthError, Client, Revocations, Session, User};

impl AuthService {
    /// A login's refresh token, starting a session named by its own `jti`.
    pub(super) async fn start_session(
        &self,
        user: &User,
        client: &Client,
    ) -> Result<Token, AuthError> {
        let mut refresh = self.unrecorded(TokenType::Refresh, user)?;
        let jti = refresh
            .jti(self.engine.settings())
            .ok_or(TokenError::NoId)?
            .to_owned();
        refresh.set(SESSION_CLAIM, Value::String(jti.clone()));
        let record = self.record(&refresh)?;
        let session = Session {
            id: jti,
            user_id: record.user_id,
            created_at: record.created_at.unwrap_or_else(|| self.engine.now()),
            last_used_at: record.created_at.unwrap_or_else(|| self.engine.now()),
            expires_at: record.expires_at,
            client: client.clone(),
        };
        self.store.start_session(&session, &record).await?;
        Ok(refresh)
    }

    /// `POST /api/token/logout/`: end the caller's session, its access
    /// tokens included; a refresh token sent along is blacklisted too (the
    /// only thing to end when sessions are off).
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn logout(
        &self,
        auth: &Authenticated,
        refresh: Option<&str>,
    ) -> Result<(), AuthError> {
        let sid = auth.token.get(SESSION_CLAIM).and_then(Value::as_str);
        if sid.is_none() && refresh.is_none() {
            return Err(AuthError::NoSession);
        }
        if let Some(raw) = refresh {
            let refresh = self.validate_stored(raw, TokenType::Refresh).await?;
            if token_user_id(&refresh, self.engine.settings()) != Some(auth.user.id) {
                return Err(TokenError::Invalid.into());
            }
            self.blacklist_token(&refresh).await?;
            if let Some(other) = refresh.get(SESSION_CLAIM).and_then(Value::as_str) {
                self.end_session(other).await?;
            }
        }
        if let Some(sid) = sid {
            self.end_session(sid).await?;
        }
        Ok(())
    }

    /// `POST /api/token/logout-all/`: every token the user holds stops
    /// working (ASVS V7.4.1): a not-valid-before instant, every session
    /// ended, every outstanding refresh token blacklisted.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn logout_all(&self, user: &User) -> Result<(), AuthError> {
        self.end_sessions(user.id, None).await
    }

    /// End every session of the user but `except`, here and in the database
    /// (which tells the other nodes).
    pub(super) async fn end_sessions(
        &self,
        user_id: i64,
        except: Option<&str>,
    ) -> Result<(), AuthError> {
        let now = self.engine.now();
        let ended = self.store.end_sessions(user_id, except, now).await?;
        self.revocations.note(Revocations {
            sessions: ended.into_iter().map(|id| (id, now)).collect(),
            users_not_before: vec![(user_id, now)],
        });
        Ok(())
    }

    /// `GET /api/admin/users/{id}/sessions/`: any user's live sessions;
    /// `None` if there is no such user. Staff only: the caller checks.
    pub async fn sessions_of(&self, user_id: i64) -> Result<Option<Vec<Session>>, AuthError> {
        if self.users.user_by_id(user_id).await?.is_none() {
            return Ok(None);
        }
        Ok(Some(
            self.store.live_sessions(user_id, self.engine.now()).await?,
        ))
    }

    /// `DELETE /api/admin/users/{id}/sessions/`: logout-all on a user's
    /// behalf. `false` if there is no such user.
    pub async fn end_sessions_of(&self, user_id: i64) -> Result<bool, AuthError> {
        if self.users.user_by_id(user_id).await?.is_none() {
            return Ok(false);
        }
        self.end_sessions(user_id, None).await?;
        Ok(true)
    }

    /// `GET /api/sessions/`: the user's live sessions, newest first.
    pub async fn sessions(&self, user: &User) -> Result<Vec<Session>, AuthError> {
        Ok(self.store.live_sessions(user.id, self.engine.now()).await?)
    }

    /// `DELETE /api/sessions/{id}/`: end one of the user's live sessions.
    /// `false` if the user has no such live session (a 404: another user's
    /// session is not even said to exist).
    pub async fn end_user_session(&self, user: &User, id: &str) -> Result<bool, AuthError> {
        if !self.sessions(user).await?.iter().any(|s| s.id == id) {
            return Ok(false);
        }
        self.end_session(id).await?;
        Ok(true)
    }

    /// Reload what every node must refuse from the database; run every
    /// second by the server.
    pub async fn reload_revocations(&self) -> Result<(), AuthError> {
        let settings = self.engine.settings();
        // Older revocations can only concern expired access tokens.
        let window = settings
            .access_token_lifetime
            .max(settings.sliding_token_lifetime)
            .saturating_add(settings.leeway)
            .saturating_add(1);
        let since = self.engine.now().saturating_sub(window);
        let revocations = self.store.revocations(since).await?;
        self.revocations.merge(revocations, since);
        Ok(())
    }

    /// End one session here and in the database.
    pub(super) async fn end_session(&self, sid: &str) -> Result<(), AuthError> {
        let now = self.engine.now();
        self.store.revoke_session(sid, now).await?;
        self.revocations.note(Revocations {
            sessions: vec![(sid.to_owned(), now)],
            users_not_before: Vec::new(),
        });
        Ok(())
    }
}
