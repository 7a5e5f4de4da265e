//! The simplejwt flows, step for step, over a [`Store`] and a
//! [`TokenEngine`]. Each method cites the simplejwt code it mirrors and
//! says where portcullis deliberately does better.

use std::net::IpAddr;
use std::sync::Arc;

use md5::{Digest as _, Md5};
use portcullis_token::{
    AuthHeader, Token, TokenEngine, TokenError, TokenType, UserIdClaim, parse_authorization,
};
use secrecy::SecretString;
use serde_json::Value;

use crate::revocation::RevocationCache;
use crate::throttle::{ThrottleKey, ThrottleSettings, block_for, wait_seconds};
use crate::user_cache::CachingUsers;
use crate::{
    AuthError, Client, KeyStore, OutstandingToken, PasswordHasher, Revocations, RotationClaim,
    Session, SessionStore, Store, StoreError, Successor, ThrottleStore, TokenMessage, TokenStore,
    User, UserStore,
};

/// The claim naming a token's session (its refresh-token family), as
/// `OpenID` Connect names a session; written only with sessions on.
pub const SESSION_CLAIM: &str = "sid";

/// The simplejwt settings that shape the flows (the token shape itself is
/// in [`portcullis_token::TokenSettings`]).
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// `ROTATE_REFRESH_TOKENS`.
    pub rotate_refresh_tokens: bool,
    /// `BLACKLIST_AFTER_ROTATION`.
    pub blacklist_after_rotation: bool,
    /// `UPDATE_LAST_LOGIN`.
    pub update_last_login: bool,
    /// `CHECK_USER_IS_ACTIVE`.
    pub check_user_is_active: bool,
    /// `CHECK_REVOKE_TOKEN`.
    pub check_revoke_token: bool,
    /// `REVOKE_TOKEN_CLAIM`.
    pub revoke_token_claim: String,
    /// `AUTH_TOKEN_CLASSES`, in the order they are tried.
    pub auth_token_classes: Vec<TokenType>,
    /// `AUTH_HEADER_TYPES`; the first names the `WWW-Authenticate` scheme.
    pub auth_header_types: Vec<String>,
    /// `REFRESH_REUSE_DETECTION`: logins start sessions (refresh-token
    /// families, named by the `sid` claim) and, with rotation, a rotated
    /// refresh token presented after the grace window ends its session.
    pub refresh_reuse_detection: bool,
    /// `REFRESH_REUSE_GRACE`, seconds: how long a rotated refresh token is
    /// answered with its one successor again; 0: never.
    pub refresh_reuse_grace: i64,
    /// Login throttling (`LOGIN_*`).
    pub throttle: ThrottleSettings,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            rotate_refresh_tokens: false,
            blacklist_after_rotation: false,
            update_last_login: false,
            check_user_is_active: true,
            check_revoke_token: false,
            revoke_token_claim: "hash_password".to_owned(),
            auth_token_classes: vec![TokenType::Access],
            auth_header_types: vec!["Bearer".to_owned()],
            refresh_reuse_detection: false,
            refresh_reuse_grace: 10,
            throttle: ThrottleSettings::default(),
        }
    }
}

/// A username and password, whitespace already trimmed.
#[derive(Debug)]
pub struct Credentials {
    /// The `USERNAME_FIELD` value.
    pub username: String,
    /// The password.
    pub password: SecretString,
    /// The client's address (`TRUSTED_PROXIES` already applied), for login
    /// throttling; `None` where it is unknown.
    pub client: Option<IpAddr>,
}

/// The body of a successful login: refresh first, as simplejwt orders it.
#[derive(Debug)]
pub struct TokenPair {
    /// The refresh token.
    pub refresh: String,
    /// The access token.
    pub access: String,
}

/// A request that presented a valid token.
#[derive(Debug, Clone)]
pub struct Authenticated {
    /// The user, as this node last wrote it, or read within the last
    /// second.
    pub user: User,
    /// The validated token.
    pub token: Token,
}

/// Another issuer's keys (`JWK_URL`), refetched when a token names a kid
/// nobody knows.
#[async_trait::async_trait]
pub trait KeySource: Send + Sync + std::fmt::Debug {
    /// Refetch the keys if the rate limit allows, install them in the
    /// engine, and say whether they were refetched.
    async fn refresh_for_unknown_kid(&self, engine: &TokenEngine) -> bool;
}

/// The simplejwt flows.
#[derive(Debug, Clone)]
pub struct AuthService {
    engine: TokenEngine,
    /// The store, for everything but accounts; also read, past the cache,
    /// when a revoked token's user may have changed elsewhere (see
    /// [`Self::authenticate`]).
    store: Arc<dyn Store>,
    /// The store's accounts behind the account cache.
    users: Arc<dyn UserStore>,
    hasher: PasswordHasher,
    settings: Arc<AuthSettings>,
    key_source: Option<Arc<dyn KeySource>>,
    revocations: RevocationCache,
}

impl AuthService {
    /// Wire the flows together. Accounts read by id are cached, and
    /// forgotten whenever written through [`Self::user_store`] or changed
    /// elsewhere (see `user_cache.rs`): an authenticated request costs no
    /// database round trip.
    #[must_use]
    pub fn new(
        engine: TokenEngine,
        store: Arc<dyn Store>,
        hasher: PasswordHasher,
        settings: AuthSettings,
    ) -> Self {
        Self {
            engine,
            users: Arc::new(CachingUsers::new(Arc::clone(&store) as Arc<dyn UserStore>)),
            store,
            hasher,
            settings: Arc::new(settings),
            key_source: None,
            revocations: RevocationCache::default(),
        }
    }

    /// Also trust another issuer's keys, refetched on an unknown kid.
    #[must_use]
    pub fn with_key_source(mut self, source: Arc<dyn KeySource>) -> Self {
        self.key_source = Some(source);
        self
    }

    /// The token engine.
    #[must_use]
    pub fn engine(&self) -> &TokenEngine {
        &self.engine
    }

    /// The accounts, behind the account cache. Write accounts through it
    /// (not through another handle on the same database), so this node
    /// forgets its cached copy at once.
    #[must_use]
    pub fn user_store(&self) -> &dyn UserStore {
        &*self.users
    }

    /// The outstanding tokens and the blacklist.
    #[must_use]
    pub fn token_store(&self) -> &dyn TokenStore {
        &*self.store
    }

    /// The sessions and their revocations.
    #[must_use]
    pub fn session_store(&self) -> &dyn SessionStore {
        &*self.store
    }

    /// The login throttle's counts.
    #[must_use]
    pub fn throttle_store(&self) -> &dyn ThrottleStore {
        &*self.store
    }

    /// The server settings and the signing key set.
    #[must_use]
    pub fn key_store(&self) -> &dyn KeyStore {
        &*self.store
    }

    /// Whether the database answers (`/readyz`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.store.ping().await
    }

    /// The password hasher.
    #[must_use]
    pub fn hasher(&self) -> &PasswordHasher {
        &self.hasher
    }

    /// The flow settings.
    #[must_use]
    pub fn settings(&self) -> &AuthSettings {
        &self.settings
    }

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
        let access = self
            .engine
            .access_from_refresh(&refresh)
            .map_err(internal)?;
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
        let access = self
            .engine
            .access_from_refresh(&refresh)
            .map_err(internal)?;
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
        let rotated = self.engine.rotate(&refresh).map_err(internal)?;
        self.outstand(&rotated).await?;
        Ok((access, Some(self.encode(&rotated)?)))
    }

    /// `TokenVerifySerializer.validate`: any token type; the blacklist is
    /// consulted only with `BLACKLIST_AFTER_ROTATION` (simplejwt's rule,
    /// kept for compatibility), and then answers a 400.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn verify(&self, raw: &str) -> Result<(), AuthError> {
        let token = self.decode(raw.as_bytes()).await?;
        token.verify(self.engine.settings(), self.engine.now(), None)?;
        if self.settings.blacklist_after_rotation
            && let Some(jti) = token.jti(self.engine.settings())
            && self.store.is_blacklisted(jti).await?
        {
            return Err(AuthError::VerifyBlacklisted);
        }
        Ok(())
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

    /// `JWTAuthentication.authenticate`: `Ok(None)` for anonymous requests.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn authenticate(
        &self,
        header: Option<&[u8]>,
    ) -> Result<Option<Authenticated>, AuthError> {
        let raw = match parse_authorization(header, &self.settings.auth_header_types) {
            AuthHeader::Anonymous => return Ok(None),
            AuthHeader::Malformed => return Err(AuthError::BadAuthorizationHeader),
            AuthHeader::Token(raw) => raw,
        };
        let token = self.validated_token(raw).await?;
        // simplejwt's `get_user` next. Its answers come before the
        // revocation check (which simplejwt does not have): a deactivated
        // or deleted user's token, whose sessions ended with the account,
        // is refused as simplejwt refuses it, "User is inactive" or
        // "User not found".
        let id = match token.user_id(self.engine.settings()) {
            UserIdClaim::Missing => return Err(AuthError::NoUserIdentification),
            // 5.5.1 answers 500 for an id the database cannot coerce.
            UserIdClaim::Falsy | UserIdClaim::NotAnId => return Err(AuthError::UserNotFound),
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
            return Err(AuthError::NoValidTokenType(vec![TokenMessage {
                token_type,
                error: TokenError::Blacklisted,
            }]));
        }
        Ok(Some(Authenticated { user, token }))
    }

    /// simplejwt's `get_user` checks of an access token's account, in its
    /// order: found, active, and (with `CHECK_REVOKE_TOKEN`) the password
    /// the token was issued under.
    fn check_user(&self, token: &Token, user: Option<User>) -> Result<User, AuthError> {
        let user = user.ok_or(AuthError::UserNotFound)?;
        if self.settings.check_user_is_active && !user.is_active {
            return Err(AuthError::UserInactive);
        }
        if self.settings.check_revoke_token && !self.revoke_claim_matches(token, &user) {
            return Err(AuthError::PasswordChanged);
        }
        Ok(user)
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
            .await
            .map_err(AuthError::Internal)?;
        if !verified.matched {
            self.count_failure(&keys).await?;
            return Err(AuthError::WrongPassword);
        }
        let hash = self.hasher.hash(new).await.map_err(AuthError::Internal)?;
        self.users.set_password(auth.user.id, &hash).await?;
        let current = auth.token.get(SESSION_CLAIM).and_then(Value::as_str);
        self.end_sessions(auth.user.id, current).await
    }

    /// End every session of the user but `except`, here and in the database
    /// (which tells the other nodes).
    async fn end_sessions(&self, user_id: i64, except: Option<&str>) -> Result<(), AuthError> {
        let now = self.engine.now();
        let ended = self.store.end_sessions(user_id, except, now).await?;
        self.revocations.note(Revocations {
            sessions: ended.into_iter().map(|id| (id, now)).collect(),
            users_not_before: vec![(user_id, now)],
        });
        Ok(())
    }

    /// The staff console's login: the credential check and throttling of
    /// `/api/token/` (same counts, same locks), without issuing a token.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn check_login(&self, credentials: Credentials) -> Result<User, AuthError> {
        let user = self.login(credentials).await?;
        self.after_login(&user).await?;
        Ok(user)
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
    async fn end_session(&self, sid: &str) -> Result<(), AuthError> {
        let now = self.engine.now();
        self.store.revoke_session(sid, now).await?;
        self.revocations.note(Revocations {
            sessions: vec![(sid.to_owned(), now)],
            users_not_before: Vec::new(),
        });
        Ok(())
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
                        self.decode(raw).await,
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
        .map_err(AuthError::NoValidTokenType)
    }

    /// The engine's decode; a token whose kid nobody knows makes the
    /// `JWK_URL` keys be refetched (rate-limited) and is then tried again.
    async fn decode(&self, raw: &[u8]) -> Result<Token, TokenError> {
        match self.engine.decode(raw) {
            Err(TokenError::Invalid) => {
                if let Some(source) = &self.key_source
                    && self.engine.unknown_kid(raw).is_some()
                    && source.refresh_for_unknown_kid(&self.engine).await
                {
                    self.engine.decode(raw)
                } else {
                    Err(TokenError::Invalid)
                }
            }
            other => other,
        }
    }

    /// Decode a refresh or sliding token, then simplejwt's `BlacklistMixin.verify`:
    /// the blacklist first, then `Token.verify`.
    async fn validate_stored(&self, raw: &str, token_type: TokenType) -> Result<Token, AuthError> {
        let (token, blacklisted) = self.decode_stored(raw).await?;
        if blacklisted {
            return Err(TokenError::Blacklisted.into());
        }
        token.verify(self.engine.settings(), self.engine.now(), Some(token_type))?;
        Ok(token)
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

    /// Decode a refresh or sliding token and say whether it is blacklisted.
    async fn decode_stored(&self, raw: &str) -> Result<(Token, bool), AuthError> {
        let token = self.decode(raw.as_bytes()).await?;
        // 5.5.1 answers 500 here (KeyError on a missing jti).
        let jti = token.jti(self.engine.settings()).ok_or(TokenError::NoId)?;
        let blacklisted = self.store.is_blacklisted(jti).await?;
        Ok((token, blacklisted))
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
            Err(AuthError::UserInactive) => "inactive",
            Err(_) => "error",
        };
        metrics::counter!(crate::LOGINS_TOTAL, "result" => result).increment(1);
        match outcome {
            // simplejwt gives an inactive account the same answer as a wrong
            // password (only the metric tells them apart), and both count
            // against the throttle alike.
            Err(AuthError::NoActiveAccount | AuthError::UserInactive) => {
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
    async fn check_throttle(&self, keys: &[ThrottleKey]) -> Result<(), AuthError> {
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
    async fn count_failure(&self, keys: &[ThrottleKey]) -> Result<(), AuthError> {
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
            .await
            .map_err(AuthError::Internal)?;
        let Some(mut user) = user.filter(|_| verified.matched) else {
            return Err(AuthError::NoActiveAccount);
        };
        if self.settings.check_user_is_active && !user.is_active {
            return Err(AuthError::UserInactive);
        }
        if verified.needs_rehash {
            // Django's `check_password` upgrades outdated hashes on login;
            // an imported Django hash always becomes Argon2id here.
            let hash = self
                .hasher
                .hash(credentials.password)
                .await
                .map_err(AuthError::Internal)?;
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

    /// A login's refresh token, starting a session named by its own `jti`.
    async fn start_session(&self, user: &User, client: &Client) -> Result<Token, AuthError> {
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
        let mut rotated = self.engine.rotate(refresh).map_err(internal)?;
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

    /// `Token.for_user` plus the `OutstandingToken` row.
    async fn issue(&self, token_type: TokenType, user: &User) -> Result<Token, AuthError> {
        let token = self.unrecorded(token_type, user)?;
        self.outstand(&token).await?;
        Ok(token)
    }

    /// `Token.for_user` without the outstanding record; `CHECK_REVOKE_TOKEN`
    /// adds the password-version claim.
    fn unrecorded(&self, token_type: TokenType, user: &User) -> Result<Token, AuthError> {
        let mut extra = Vec::new();
        if self.settings.check_revoke_token {
            extra.push((
                self.settings.revoke_token_claim.clone(),
                Value::String(revoke_claim(user)),
            ));
        }
        self.engine
            .for_user(token_type, user.id, extra)
            .map_err(internal)
    }

    async fn outstand(&self, token: &Token) -> Result<(), AuthError> {
        let record = self.record(token)?;
        self.store.record_outstanding(&record).await?;
        Ok(())
    }

    async fn blacklist_token(&self, token: &Token) -> Result<bool, AuthError> {
        let record = self.record(token)?;
        Ok(self.store.blacklist(&record, self.engine.now()).await?)
    }

    fn record(&self, token: &Token) -> Result<OutstandingToken, AuthError> {
        let settings = self.engine.settings();
        let jti = token.jti(settings).ok_or(TokenError::NoId)?;
        Ok(OutstandingToken {
            jti: jti.to_owned(),
            user_id: token_user_id(token, settings),
            created_at: token.time_claim("iat"),
            expires_at: token.time_claim("exp").ok_or(TokenError::Invalid)?,
        })
    }

    fn revoke_claim_matches(&self, token: &Token, user: &User) -> bool {
        token
            .get(&self.settings.revoke_token_claim)
            .and_then(Value::as_str)
            .is_some_and(|claim| claim == revoke_claim(user))
    }

    fn encode(&self, token: &Token) -> Result<String, AuthError> {
        self.engine.encode(token).map_err(internal)
    }
}

/// simplejwt's `get_md5_hash_password`: MD5 of the stored hash string, in
/// uppercase hex. It identifies a password version; it protects nothing.
fn revoke_claim(user: &User) -> String {
    use std::fmt::Write as _;
    Md5::digest(user.password.as_bytes())
        .iter()
        .fold(String::with_capacity(32), |mut out, b| {
            let _ = write!(out, "{b:02X}");
            out
        })
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

fn token_user_id(token: &Token, settings: &portcullis_token::TokenSettings) -> Option<i64> {
    match token.user_id(settings) {
        UserIdClaim::Id(id) => Some(id),
        _ => None,
    }
}

fn internal(e: impl std::fmt::Display) -> AuthError {
    AuthError::Internal(e.to_string())
}
