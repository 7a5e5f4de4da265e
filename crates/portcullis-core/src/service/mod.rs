//! The simplejwt flows, step for step, over a [`Store`] and a
//! [`TokenEngine`]. Each method cites the simplejwt code it mirrors and
//! says where portcullis deliberately does better.
//!
//! One file per flow: `login.rs` (obtain a pair or a sliding token, the
//! console's login, the throttle), `refresh.rs` (refresh, rotation and
//! reuse detection, blacklist, sliding refresh), `authenticate.rs` (a
//! request's token, verify), `sessions.rs` (sessions and revocations),
//! `accounts.rs` (password changes, deactivation, deletion). This file
//! holds [`AuthService`] and the steps they share: decoding, the blacklist
//! check, recording and signing tokens.

use std::net::IpAddr;
use std::sync::Arc;

use md5::{Digest as _, Md5};
use portcullis_token::{Token, TokenEngine, TokenError, TokenType, UserIdClaim};
use secrecy::SecretString;
use serde_json::Value;

mod accounts;
mod authenticate;
mod login;
mod refresh;
mod sessions;

use crate::revocation::RevocationCache;
use crate::throttle::ThrottleSettings;
use crate::user_cache::CachingUsers;
use crate::{
    AuthError, KeyStore, OutstandingToken, PasswordHasher, SessionStore, Store, StoreError,
    ThrottleStore, TokenStore, User, UserStore,
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
/// Its `Debug` shows the tokens' lengths, never their bytes (a token in a
/// log is a credential in the log).
pub struct TokenPair {
    /// The refresh token.
    pub refresh: String,
    /// The access token.
    pub access: String,
}

impl std::fmt::Debug for TokenPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redacted = |token: &str| format!("<redacted, {} bytes>", token.len());
        f.debug_struct("TokenPair")
            .field("refresh", &format_args!("{}", redacted(&self.refresh)))
            .field("access", &format_args!("{}", redacted(&self.access)))
            .finish()
    }
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

    /// The engine's decode; a token whose kid nobody knows makes the
    /// `JWK_URL` keys be refetched (rate-limited) and is then tried again.
    async fn decode(&self, raw: &[u8]) -> Result<Token, TokenError> {
        self.decode_with(raw, TokenEngine::decode).await
    }

    /// [`Self::decode`] through the verified-token cache
    /// ([`TokenEngine::decode_cached`]): for the tokens presented again and
    /// again (access tokens, verify). Refresh tokens, used once, skip it.
    async fn decode_cached(&self, raw: &[u8]) -> Result<Token, TokenError> {
        self.decode_with(raw, TokenEngine::decode_cached).await
    }

    async fn decode_with(
        &self,
        raw: &[u8],
        decode: fn(&TokenEngine, &[u8]) -> Result<Token, TokenError>,
    ) -> Result<Token, TokenError> {
        match decode(&self.engine, raw) {
            Err(TokenError::Invalid) => {
                if let Some(source) = &self.key_source
                    && self.engine.unknown_kid(raw).is_some()
                    && source.refresh_for_unknown_kid(&self.engine).await
                {
                    decode(&self.engine, raw)
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

    /// Decode a refresh or sliding token and say whether it is blacklisted.
    async fn decode_stored(&self, raw: &str) -> Result<(Token, bool), AuthError> {
        let token = self.decode(raw.as_bytes()).await?;
        // 5.5.1 answers 500 here (KeyError on a missing jti).
        let jti = token.jti(self.engine.settings()).ok_or(TokenError::NoId)?;
        let blacklisted = self.store.is_blacklisted(jti).await?;
        Ok((token, blacklisted))
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
            .map_err(AuthError::from)
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
        Ok(self.engine.encode(token)?)
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

fn token_user_id(token: &Token, settings: &portcullis_token::TokenSettings) -> Option<i64> {
    match token.user_id(settings) {
        UserIdClaim::Id(id) => Some(id),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::TokenPair;

    /// `{:?}` of a login's tokens shows neither token, only their length.
    #[test]
    fn token_pairs_debug_without_their_tokens() {
        let pair = TokenPair {
            refresh: "eyJhbGciOiJIUzI1NiJ9.eyJ0b2tlbl90eXBlIjoicmVmcmVzaCJ9.c2ln".to_owned(),
            access: "eyJhbGciOiJIUzI1NiJ9.eyJ0b2tlbl90eXBlIjoiYWNjZXNzIn0.c2ln".to_owned(),
        };
        for shown in [format!("{pair:?}"), format!("{pair:#?}")] {
            for part in pair.refresh.split('.').chain(pair.access.split('.')) {
                assert!(!shown.contains(part), "{shown} shows {part}");
            }
        }
        assert_eq!(
            format!("{pair:?}"),
            "TokenPair { refresh: <redacted, 58 bytes>, access: <redacted, 57 bytes> }"
        );
    }
}
