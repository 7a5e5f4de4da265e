//! The settings, the keys and the verdict on a request's credentials.
//!
//! Invariant: every rule comes from portcullis-token (the server's engine):
//! [`portcullis_token::TokenEngine::decode`], the class loop of
//! [`portcullis_token::validated_token`] and [`portcullis_token::check_access`].
//! This module only adds what a stateless verifier needs: keys without a
//! signing half, and a JWKS fetched over HTTP.

use std::convert::Infallible;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use portcullis_token::drf::Challenge;
use portcullis_token::{
    Algorithm, Audience, AuthHeader, Clock, KeyError, Rejection, RemoteKeys, SigningKeys,
    SystemClock, Token, TokenEngine, TokenError, TokenSettings, TokenType, is_hmac,
    parse_authorization,
};

use crate::AuthUser;

/// The least time between two JWKS fetches caused by unknown kids, so a
/// flood of forged kids cannot make us flood the issuer.
pub const JWKS_REFETCH_EVERY: Duration = Duration::from_secs(30);

/// Why a [`Verifier`] could not be built.
#[derive(Debug)]
pub enum BuildError {
    /// No `SIGNING_KEY`, `VERIFYING_KEY` or `JWK_URL` was given.
    NoKey,
    /// The key does not suit `ALGORITHM`.
    Key(KeyError),
    /// `JWK_URL` is not an http(s) URL, or no HTTP client could be built.
    JwkUrl(String),
    /// `AUTH_HEADER_NAME` or `AUTH_HEADER_TYPES` is not a valid header.
    Header(String),
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoKey => f.write_str("no SIGNING_KEY, VERIFYING_KEY or JWK_URL configured"),
            Self::Key(e) => write!(f, "bad key: {e}"),
            Self::JwkUrl(e) => write!(f, "bad JWK_URL: {e}"),
            Self::Header(e) => write!(f, "bad header setting: {e}"),
        }
    }
}

impl std::error::Error for BuildError {}

/// Why the JWKS at `JWK_URL` could not be fetched and installed.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    /// The request failed, or the issuer answered with an error status.
    #[error("cannot fetch JWK_URL {url}")]
    Fetch {
        /// `JWK_URL`.
        url: String,
        /// What failed.
        #[source]
        source: reqwest::Error,
    },
    /// The body broke off.
    #[error("cannot read JWK_URL")]
    Read(#[source] reqwest::Error),
    /// The body is over the limit (bytes).
    #[error("the JWKS at JWK_URL is larger than {0} bytes")]
    TooLarge(usize),
    /// The body is not a usable JWKS.
    #[error(transparent)]
    Document(#[from] KeyError),
}

/// Collects simplejwt's settings; [`VerifierBuilder::build`] checks them.
/// Defaults are simplejwt 5.5.1's.
pub struct VerifierBuilder {
    settings: TokenSettings,
    signing_key: Option<Vec<u8>>,
    verifying_key: Option<Vec<u8>>,
    jwk_url: Option<String>,
    auth_header_types: Vec<String>,
    auth_header_name: String,
    auth_token_classes: Vec<TokenType>,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for VerifierBuilder {
    // Never print key material.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifierBuilder")
            .field("settings", &self.settings)
            .field("jwk_url", &self.jwk_url)
            .field("auth_header_types", &self.auth_header_types)
            .field("auth_header_name", &self.auth_header_name)
            .field("auth_token_classes", &self.auth_token_classes)
            .finish_non_exhaustive()
    }
}

impl VerifierBuilder {
    /// `ALGORITHM` (default HS256): the only algorithm a kid-less token may use.
    #[must_use]
    pub fn algorithm(mut self, algorithm: Algorithm) -> Self {
        self.settings.algorithm = algorithm;
        self
    }

    /// `SIGNING_KEY`: the HMAC secret, or an asymmetric private PEM (its
    /// public half is derived; prefer [`Self::verifying_key_pem`]).
    #[must_use]
    pub fn signing_key(mut self, key: impl AsRef<[u8]>) -> Self {
        self.signing_key = Some(key.as_ref().to_vec());
        self
    }

    /// `VERIFYING_KEY`: the issuer's public PEM, for asymmetric algorithms.
    #[must_use]
    pub fn verifying_key_pem(mut self, pem: impl AsRef<[u8]>) -> Self {
        self.verifying_key = Some(pem.as_ref().to_vec());
        self
    }

    /// `JWK_URL`: the issuer's JWKS (portcullis serves
    /// `/.well-known/jwks.json`), fetched on the first token whose `kid` is
    /// unknown and refetched, at most every 30 seconds, on a new `kid`.
    #[must_use]
    pub fn jwk_url(mut self, url: impl Into<String>) -> Self {
        self.jwk_url = Some(url.into());
        self
    }

    /// `AUDIENCE`: one accepted value.
    #[must_use]
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.settings.audience = Some(Audience::One(audience.into()));
        self
    }

    /// `AUDIENCE`: several accepted values.
    #[must_use]
    pub fn audiences(mut self, audiences: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.settings.audience = Some(Audience::Many(
            audiences.into_iter().map(Into::into).collect(),
        ));
        self
    }

    /// `ISSUER`.
    #[must_use]
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.settings.issuer = Some(issuer.into());
        self
    }

    /// `LEEWAY`, seconds.
    #[must_use]
    pub fn leeway(mut self, seconds: i64) -> Self {
        self.settings.leeway = seconds;
        self
    }

    /// `AUTH_HEADER_TYPES` (default `["Bearer"]`); the first names the
    /// `WWW-Authenticate` scheme.
    #[must_use]
    pub fn auth_header_types(mut self, types: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.auth_header_types = types.into_iter().map(Into::into).collect();
        self
    }

    /// `AUTH_HEADER_NAME` (default `HTTP_AUTHORIZATION`; Django's `HTTP_`
    /// form and plain header names are both accepted).
    #[must_use]
    pub fn auth_header_name(mut self, name: impl Into<String>) -> Self {
        self.auth_header_name = name.into();
        self
    }

    /// `USER_ID_CLAIM` (default `user_id`).
    #[must_use]
    pub fn user_id_claim(mut self, claim: impl Into<String>) -> Self {
        self.settings.user_id_claim = claim.into();
        self
    }

    /// `TOKEN_TYPE_CLAIM` (default `token_type`); `None` turns type checks off.
    #[must_use]
    pub fn token_type_claim(mut self, claim: Option<String>) -> Self {
        self.settings.token_type_claim = claim;
        self
    }

    /// `JTI_CLAIM` (default `jti`).
    #[must_use]
    pub fn jti_claim(mut self, claim: impl Into<String>) -> Self {
        self.settings.jti_claim = claim.into();
        self
    }

    /// `AUTH_TOKEN_CLASSES` (default `[AccessToken]`), tried in order.
    /// Stateless: a sliding or refresh token is not checked against the
    /// server's blacklist.
    #[must_use]
    pub fn auth_token_classes(mut self, classes: impl IntoIterator<Item = TokenType>) -> Self {
        self.auth_token_classes = classes.into_iter().collect();
        self
    }

    /// The clock (default: the system's), so tests can set the time.
    #[must_use]
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Check the settings and load the keys.
    pub fn build(self) -> Result<Verifier, BuildError> {
        let algorithm = self.settings.algorithm;
        let keys = match (&self.verifying_key, &self.signing_key) {
            (Some(public), _) if !is_hmac(algorithm) => {
                SigningKeys::verifying_only(algorithm, public)
            }
            (_, Some(key)) if is_hmac(algorithm) => SigningKeys::verifying_only(algorithm, key),
            (_, Some(private)) => SigningKeys::new(algorithm, private, None),
            (_, None) if self.jwk_url.is_some() => {
                // Only the JWKS's keys: kid-less tokens meet a random secret
                // nobody knows, and are "Token is invalid".
                SigningKeys::generate_hmac_secret()
                    .and_then(|secret| SigningKeys::new(Algorithm::HS512, secret.as_bytes(), None))
            }
            _ => return Err(BuildError::NoKey),
        }
        .map_err(BuildError::Key)?;
        let jwks = self.jwk_url.as_deref().map(JwksSource::new).transpose()?;
        let name = portcullis_token::auth_header_name(&self.auth_header_name);
        let header_name =
            HeaderName::try_from(name).map_err(|e| BuildError::Header(e.to_string()))?;
        let challenge = Challenge::try_new(&self.auth_header_types)
            .map_err(|e| BuildError::Header(e.to_string()))?;
        Ok(Verifier {
            inner: Arc::new(Inner {
                engine: TokenEngine::new(self.settings, keys, self.clock),
                jwks,
                header_name,
                header_types: self.auth_header_types,
                classes: self.auth_token_classes,
                challenge,
            }),
        })
    }
}

/// Verifies the credentials of a request, as the portcullis server does
/// minus its database checks. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    engine: TokenEngine,
    jwks: Option<JwksSource>,
    header_name: HeaderName,
    header_types: Vec<String>,
    classes: Vec<TokenType>,
    challenge: Challenge,
}

impl Verifier {
    /// simplejwt's defaults; set at least a key.
    #[must_use]
    pub fn builder() -> VerifierBuilder {
        VerifierBuilder {
            settings: TokenSettings::default(),
            signing_key: None,
            verifying_key: None,
            jwk_url: None,
            auth_header_types: vec!["Bearer".to_owned()],
            auth_header_name: "HTTP_AUTHORIZATION".to_owned(),
            auth_token_classes: vec![TokenType::Access],
            clock: Arc::new(SystemClock),
        }
    }

    /// The `WWW-Authenticate` value of every 401.
    #[must_use]
    pub fn www_authenticate(&self) -> &HeaderValue {
        self.inner.challenge.value()
    }

    /// The challenge that gives a 401 its `WWW-Authenticate`, the same
    /// code the portcullis server uses.
    #[must_use]
    pub fn challenge(&self) -> &Challenge {
        &self.inner.challenge
    }

    /// The token settings in force.
    #[must_use]
    pub fn settings(&self) -> &TokenSettings {
        self.inner.engine.settings()
    }

    /// `JWTStatelessUserAuthentication.authenticate` on a request's
    /// headers: `Ok(None)` when anonymous.
    pub async fn authenticate_headers(
        &self,
        headers: &HeaderMap,
    ) -> Result<Option<AuthUser>, Rejection> {
        let value = headers
            .get(&self.inner.header_name)
            .map(HeaderValue::as_bytes);
        self.authenticate(value).await
    }

    /// `JWTStatelessUserAuthentication.authenticate` on the raw header value.
    pub async fn authenticate(&self, header: Option<&[u8]>) -> Result<Option<AuthUser>, Rejection> {
        let raw = match parse_authorization(header, &self.inner.header_types) {
            AuthHeader::Anonymous => return Ok(None),
            AuthHeader::Malformed => return Err(Rejection::BadAuthorizationHeader),
            AuthHeader::Token(raw) => raw,
        };
        let token = self.validated_token(raw).await?;
        AuthUser::from_token(token, self.settings())
            .map(Some)
            .ok_or(Rejection::NoUserIdentification)
    }

    /// Validate a raw token for the accepted classes (`AUTH_TOKEN_CLASSES`).
    pub async fn validated_token(&self, raw: &[u8]) -> Result<Token, Rejection> {
        let engine = &self.inner.engine;
        let Ok(verdict) =
            portcullis_token::validated_token(&self.inner.classes, |token_type| async move {
                Ok::<_, Infallible>(portcullis_token::check_access(
                    self.decode(raw).await,
                    engine,
                    token_type,
                ))
            })
            .await;
        verdict.map_err(Rejection::NoValidTokenType)
    }

    /// Fetch the JWKS now (it is otherwise fetched on the first unknown
    /// `kid`). A no-op without `JWK_URL`.
    pub async fn refresh_keys(&self) -> Result<(), JwksError> {
        match &self.inner.jwks {
            Some(jwks) => jwks.fetch(&self.inner.engine).await.map(|_| ()),
            None => Ok(()),
        }
    }

    /// The engine's decode; an unknown kid makes the JWKS be refetched
    /// (rate-limited) and the token tried again, as the server does.
    async fn decode(&self, raw: &[u8]) -> Result<Token, TokenError> {
        let engine = &self.inner.engine;
        match engine.decode(raw) {
            Err(TokenError::Invalid) => match &self.inner.jwks {
                Some(jwks)
                    if engine.unknown_kid(raw).is_some()
                        && matches!(jwks.refresh_for_unknown_kid(engine).await, Ok(true)) =>
                {
                    engine.decode(raw)
                }
                _ => Err(TokenError::Invalid),
            },
            other => other,
        }
    }
}

/// An issuer's JWKS over HTTP (`JWK_URL`), installed in a
/// [`TokenEngine`] as remote keys. The portcullis server uses this same
/// type for its own `JWK_URL`.
#[derive(Debug)]
pub struct JwksSource {
    url: String,
    client: reqwest::Client,
    /// When the last refetch for an unknown kid started.
    last: tokio::sync::Mutex<Option<Instant>>,
}

impl JwksSource {
    /// A source for `url` (http or https; redirects are not followed).
    pub fn new(url: &str) -> Result<Self, BuildError> {
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(BuildError::JwkUrl(format!(
                "JWK_URL must be an http(s) URL, got {url:?}"
            )));
        }
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| BuildError::JwkUrl(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            url: url.to_owned(),
            client,
            last: tokio::sync::Mutex::new(None),
        })
    }

    /// The URL.
    #[must_use]
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Fetch the document and install its usable keys; answers how many
    /// were kept and the kids of those skipped (not asymmetric signature keys).
    pub async fn fetch(&self, engine: &TokenEngine) -> Result<(usize, Vec<String>), JwksError> {
        const MAX_BYTES: usize = 1024 * 1024;
        let response = self
            .client
            .get(&self.url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|source| JwksError::Fetch {
                url: self.url.clone(),
                source,
            })?;
        let body = response.bytes().await.map_err(JwksError::Read)?;
        if body.len() > MAX_BYTES {
            return Err(JwksError::TooLarge(MAX_BYTES));
        }
        let (keys, skipped) = RemoteKeys::from_jwks(&body)?;
        let kept = keys.len();
        engine.install_remote_keys(keys);
        Ok((kept, skipped))
    }

    /// A token named a kid nobody knows: refetch, unless a refetch started
    /// less than [`JWKS_REFETCH_EVERY`] ago. `Ok(true)` when the keys are
    /// fresh (fetched now, or by a request we waited for), `Ok(false)` when
    /// rate-limited, `Err` when the fetch failed.
    pub async fn refresh_for_unknown_kid(&self, engine: &TokenEngine) -> Result<bool, JwksError> {
        let asked = Instant::now();
        // Held across the fetch: concurrent requests wait for one fetch.
        let mut last = self.last.lock().await;
        if let Some(at) = *last {
            // Another request refetched while we waited: use its result.
            if at >= asked {
                return Ok(true);
            }
            if at.elapsed() < JWKS_REFETCH_EVERY {
                return Ok(false);
            }
        }
        *last = Some(Instant::now());
        self.fetch(engine).await.map(|_| true)
    }
}
