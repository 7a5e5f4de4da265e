//! Encoding and decoding: the PyJWT half of simplejwt's `TokenBackend`, and
//! the constructors of simplejwt's token classes.

use std::sync::{Arc, RwLock};

use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{Jwk, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::{Value, json};

use crate::cache::{TokenCache, Verified};
use crate::claims::{Name, claim_name, numeric_date};
use crate::keys::{algorithm_name, verify_signature};
use crate::keyset::{KeyRing, LoadedKey, RemoteKeys};
use crate::{Claims, Clock, SigningKeys, Token, TokenError, TokenSettings, TokenType};

/// Signing failed: the keys were checked at load time, so this means the
/// system random generator or the crypto library failed.
#[derive(Debug, thiserror::Error)]
#[error("could not sign a token")]
pub struct SignError(#[source] Box<dyn std::error::Error + Send + Sync>);

impl SignError {
    pub(crate) fn new(cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self(cause.into())
    }
}

/// Builds, signs and verifies tokens with the configured key pair, the
/// database's key set and (optionally) another issuer's keys.
///
/// The key set and the remote keys are immutable snapshots behind a
/// `RwLock<Arc<…>>`: a request holds the read lock only to clone the `Arc`,
/// and a reload swaps the whole snapshot, so the hot path never waits on
/// key parsing or the database.
#[derive(Debug, Clone)]
pub struct TokenEngine {
    settings: Arc<TokenSettings>,
    keys: Arc<SigningKeys>,
    clock: Arc<dyn Clock>,
    /// The configured key's public JWK, with its RFC 7638 thumbprint as kid.
    configured_jwk: Option<Arc<Jwk>>,
    ring: Arc<RwLock<Arc<KeyRing>>>,
    remote: Arc<RwLock<Arc<RemoteKeys>>>,
    /// The header segment of a token signed with the configured key, as
    /// `encode` writes it (`{"alg":…,"typ":"JWT"}`). A token whose header
    /// is exactly these bytes is not parsed again: it names no kid and the
    /// key's algorithm, so its base64 and JSON are skipped (docs/architecture.md,
    /// "Fast paths").
    configured_header: Option<Arc<str>>,
    /// Tokens already verified (`TOKEN_CACHE_SIZE`), for
    /// [`TokenEngine::decode_cached`]; `None` when turned off.
    verified: Option<Arc<TokenCache<Verifier>>>,
}

/// The published key set and its entity tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksDocument {
    /// `{"keys":[…]}`: public keys only.
    pub body: String,
    /// A strong `ETag` value, quoted.
    pub etag: String,
}

/// The current snapshot; a poisoned lock still holds a consistent `Arc`.
fn snapshot<T>(lock: &RwLock<Arc<T>>) -> Arc<T> {
    match lock.read() {
        Ok(guard) => Arc::clone(&guard),
        Err(poisoned) => Arc::clone(&poisoned.into_inner()),
    }
}

fn replace<T>(lock: &RwLock<Arc<T>>, value: T) {
    let value = Arc::new(value);
    match lock.write() {
        Ok(mut guard) => *guard = value,
        Err(poisoned) => *poisoned.into_inner() = value,
    }
}

impl TokenEngine {
    /// An engine whose kid-less tokens use `keys` (and so `keys.algorithm()`).
    #[must_use]
    pub fn new(mut settings: TokenSettings, keys: SigningKeys, clock: Arc<dyn Clock>) -> Self {
        settings.algorithm = keys.algorithm();
        // The key pins the algorithm (RFC 8725 §3.1: the key decides, `alg`
        // must merely agree; see `decode`). The claim rules are PyJWT's and
        // read our injected clock, so they are applied in `decode` too.
        let configured_jwk = keys.public_jwk().and_then(|mut jwk| {
            let kid = jwk.thumbprint(ThumbprintHash::SHA256).ok()?;
            jwk.common.key_id = Some(kid);
            Some(Arc::new(jwk))
        });
        let configured_header = serde_json::to_vec(&configured_header(keys.algorithm()))
            .ok()
            .map(|header| Arc::from(URL_SAFE_NO_PAD.encode(header)));
        let verified = (settings.token_cache_size > 0)
            .then(|| TokenCache::new(settings.token_cache_size))
            .flatten()
            .map(Arc::new);
        Self {
            settings: Arc::new(settings),
            keys: Arc::new(keys),
            clock,
            configured_jwk,
            ring: Arc::default(),
            remote: Arc::default(),
            configured_header,
            verified,
        }
    }

    /// Install a new key set (from the database). Takes effect for the
    /// next token signed or verified.
    pub fn install_keys(&self, ring: KeyRing) {
        replace(&self.ring, ring);
    }

    /// The key set in use.
    #[must_use]
    pub fn key_ring(&self) -> Arc<KeyRing> {
        snapshot(&self.ring)
    }

    /// Install another issuer's keys (`JWK_URL`).
    pub fn install_remote_keys(&self, keys: RemoteKeys) {
        replace(&self.remote, keys);
    }

    /// The kid of the configured key as published (its RFC 7638
    /// thumbprint); `None` for HMAC.
    #[must_use]
    pub fn configured_kid(&self) -> Option<&str> {
        self.configured_jwk
            .as_ref()
            .and_then(|jwk| jwk.common.key_id.as_deref())
    }

    /// The token's `kid` when no key of ours or of the remote issuer has
    /// it: the cue to refetch `JWK_URL`.
    #[must_use]
    pub fn unknown_kid(&self, raw: &[u8]) -> Option<String> {
        let raw = std::str::from_utf8(raw).ok()?;
        let kid = jsonwebtoken::decode_header(raw).ok()?.kid?;
        self.verifier(&kid, self.now()).is_none().then_some(kid)
    }

    /// The published key set at this moment: every unretired asymmetric
    /// key of the set and the configured asymmetric key. Never an HMAC key.
    pub fn jwks(&self) -> Result<JwksDocument, SignError> {
        let ring = self.key_ring();
        let now = self.now();
        let mut keys: Vec<&Jwk> = ring.published(now).collect();
        if let Some(configured) = &self.configured_jwk {
            keys.push(configured);
        }
        let body = serde_json::to_string(&json!({ "keys": keys })).map_err(SignError::new)?;
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, body.as_bytes());
        let etag = format!(
            "\"{}\"",
            hex::encode(digest.as_ref().get(..16).unwrap_or_default())
        );
        Ok(JwksDocument { body, etag })
    }

    /// The key for a token that names `kid`: ours (unless retired), the
    /// configured key under its thumbprint, or the remote issuer's.
    fn verifier(&self, kid: &str, now: i64) -> Option<Verifier> {
        if let Some(key) = self.key_ring().verifier(kid, now) {
            return Some(Verifier::Key(Arc::clone(key)));
        }
        if self.configured_kid() == Some(kid) {
            return Some(Verifier::Configured);
        }
        snapshot(&self.remote)
            .get(kid)
            .map(|key| Verifier::Key(Arc::clone(key)))
    }

    /// The key a token naming `kid` (or none) is checked with at `now`.
    /// A token with a kid we know is verified by that key only, with that
    /// key's algorithm; one without is simplejwt's, for the configured
    /// key, and so is one whose kid nobody knows: simplejwt ignores the
    /// header's kid, and some libraries and gateways add one. A kid of a
    /// retired key stays refused.
    fn choose(&self, kid: Option<&str>, now: i64) -> Result<Verifier, TokenError> {
        match kid {
            None => Ok(Verifier::Configured),
            Some(kid) => match self.verifier(kid, now) {
                Some(verifier) => Ok(verifier),
                None if self.key_ring().knows(kid) => Err(TokenError::Invalid),
                None => Ok(Verifier::Configured),
            },
        }
    }

    /// The rules in force.
    #[must_use]
    pub fn settings(&self) -> &TokenSettings {
        &self.settings
    }

    /// The current time, from the injected clock.
    #[must_use]
    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    /// The injected clock itself, for what keeps time beside the engine
    /// (console sessions).
    #[must_use]
    pub fn clock(&self) -> Arc<dyn Clock> {
        Arc::clone(&self.clock)
    }

    /// The engine's clock, in Unix milliseconds.
    #[must_use]
    pub fn now_millis(&self) -> i64 {
        self.clock.now_millis()
    }

    /// PyJWT's `jwt.decode` as simplejwt calls it: signature and algorithm,
    /// then `iat`, `nbf`, `exp`, `iss`, `aud`, `sub`, `jti`, in PyJWT's
    /// order. Only an expired `exp` is reported as such; everything else is
    /// "Token is invalid".
    pub fn decode(&self, raw: &[u8]) -> Result<Token, TokenError> {
        if raw.len() > self.settings.max_token_bytes {
            return Err(TokenError::Invalid);
        }
        self.decode_at(raw, self.now())
            .map(|verified| verified.token)
    }

    /// [`Self::decode`], through the verified-token cache (`cache.rs`): a
    /// token decoded before is answered with the claims decoding read, if
    /// its time claims still pass now and the key that verified it is
    /// still the one its header leads to; otherwise (and for any token not
    /// seen before) it is decoded in full, and remembered if valid. The
    /// answer is always the one [`Self::decode`] gives.
    pub fn decode_cached(&self, raw: &[u8]) -> Result<Token, TokenError> {
        let Some(cache) = &self.verified else {
            return self.decode(raw);
        };
        if raw.len() > self.settings.max_token_bytes {
            return Err(TokenError::Invalid);
        }
        let now = self.now();
        if let Some(hit) = cache.get(raw) {
            if hit.in_time(now, self.settings.leeway)
                && self
                    .choose(hit.kid.as_deref(), now)
                    .is_ok_and(|key| key.is(&hit.key))
            {
                return Ok(hit.token.clone());
            }
            cache.remove(raw);
        }
        let verified = self.decode_at(raw, now)?;
        if verified.exp.is_none() {
            return Ok(verified.token);
        }
        let token = verified.token.clone();
        cache.insert(raw, verified);
        Ok(token)
    }

    /// How many verified tokens are cached (0 with the cache off).
    #[must_use]
    pub fn cached_tokens(&self) -> usize {
        self.verified.as_ref().map_or(0, |cache| cache.len())
    }

    /// `decode` at `now`, with what the cache keeps of it.
    fn decode_at(&self, raw: &[u8], now: i64) -> Result<Verified<Verifier>, TokenError> {
        // JWS compact form, split as jsonwebtoken does (exactly three
        // parts); the header is parsed once, into jsonwebtoken's `Header`
        // so that what it refuses (an unknown `alg`, a mistyped field)
        // is still refused.
        let (message, header, payload, signature) = split_jws(raw).ok_or(TokenError::Invalid)?;
        let (alg, kid) = if self
            .configured_header
            .as_deref()
            .is_some_and(|ours| ours.as_bytes() == header)
        {
            (self.keys.algorithm(), None)
        } else {
            let header = URL_SAFE_NO_PAD
                .decode(header)
                .map_err(|_| TokenError::Invalid)?;
            let header: jsonwebtoken::Header =
                serde_json::from_slice(&header).map_err(|_| TokenError::Invalid)?;
            (header.alg, header.kid)
        };
        // Either way `alg` must merely agree with the key's (RFC 8725 §3.1):
        // the header never picks the algorithm.
        let verifier = self.choose(kid.as_deref(), now)?;
        let signed_by_key = verifier.with_key(self, |algorithm, decoding, prepared| {
            alg == algorithm && verify_signature(algorithm, decoding, prepared, message, signature)
        });
        if !signed_by_key {
            return Err(TokenError::Invalid);
        }
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| TokenError::Invalid)?;
        let Payload(claims) = serde_json::from_slice(&payload).map_err(|_| TokenError::Invalid)?;
        let leeway = self.settings.leeway;

        let mut not_before = None;
        for name in ["iat", "nbf"] {
            if let Some(value) = claims.get(name) {
                let at = numeric_date(value).ok_or(TokenError::Invalid)?;
                if at > now.saturating_add(leeway) {
                    return Err(TokenError::Invalid);
                }
                not_before = not_before.max(Some(at));
            }
        }
        let mut expires = None;
        if let Some(value) = claims.get("exp") {
            let exp = numeric_date(value).ok_or(TokenError::Invalid)?;
            if exp <= now.saturating_sub(leeway) {
                return Err(TokenError::Expired);
            }
            expires = Some(exp);
        }
        if let Some(issuer) = &self.settings.issuer {
            match claims.get("iss") {
                Some(Value::String(iss)) if iss == issuer => {}
                _ => return Err(TokenError::Invalid),
            }
        }
        if let Some(audience) = &self.settings.audience {
            let accepted = audience.values();
            let ok = match claims.get("aud") {
                Some(Value::String(aud)) => accepted.contains(aud),
                Some(Value::Array(auds)) => {
                    auds.iter().all(Value::is_string)
                        && auds
                            .iter()
                            .filter_map(Value::as_str)
                            .any(|aud| accepted.iter().any(|a| a == aud))
                }
                _ => false,
            };
            if !ok {
                return Err(TokenError::Invalid);
            }
        }
        // PyJWT ≥ 2.10: `sub` and `jti`, when present, must be strings.
        for name in ["sub", "jti"] {
            if claims.get(name).is_some_and(|v| !v.is_string()) {
                return Err(TokenError::Invalid);
            }
        }
        Ok(Verified::new(
            Token::from_claims(claims),
            kid,
            verifier,
            expires,
            not_before,
        ))
    }

    /// Sign a token. `aud` and `iss` are set from the settings at this point,
    /// as simplejwt's `TokenBackend.encode` does.
    pub fn encode(&self, token: &Token) -> Result<String, SignError> {
        let mut token = token.clone();
        if let Some(audience) = &self.settings.audience {
            token.set("aud", audience.to_claim());
        }
        if let Some(issuer) = &self.settings.issuer {
            token.set("iss", Value::String(issuer.clone()));
        }
        // The set's active key wins over the configured one. PyJWT writes
        // the header with sorted keys: {"alg":…,"kid":…,"typ":"JWT"}.
        let ring = self.key_ring();
        let (header, signing) = match ring.signer(self.now()) {
            Some((
                kid,
                LoadedKey {
                    algorithm,
                    signing: Some(signing),
                    ..
                },
            )) => (
                json!({"alg": algorithm_name(*algorithm), "kid": kid, "typ": "JWT"}),
                signing,
            ),
            _ => (configured_header(self.keys.algorithm()), self.keys.as_ref()),
        };
        let header = serde_json::to_vec(&header).map_err(SignError::new)?;
        let payload = serde_json::to_vec(token.claims()).map_err(SignError::new)?;
        let mut message = URL_SAFE_NO_PAD.encode(header);
        message.push('.');
        message.push_str(&URL_SAFE_NO_PAD.encode(payload));
        let signature = signing.sign(message.as_bytes()).map_err(SignError::new)?;
        message.push('.');
        message.push_str(&signature);
        Ok(message)
    }

    /// A new token of the given type for a user: simplejwt's
    /// `Token.for_user`, claims in simplejwt's order, then `extra` claims
    /// (such as `hash_password`).
    pub fn for_user(
        &self,
        token_type: TokenType,
        user_id: i64,
        extra: impl IntoIterator<Item = (String, Value)>,
    ) -> Result<Token, SignError> {
        let mut token = self.blank(token_type, self.now())?;
        token.set(
            &self.settings.user_id_claim,
            Value::String(user_id.to_string()),
        );
        for (name, value) in extra {
            token.set(&name, value);
        }
        Ok(token)
    }

    /// simplejwt's `RefreshToken.access_token`: a fresh access token that
    /// copies every claim of the refresh token but the type, `exp`, `iat`
    /// and `jti`.
    pub fn access_from_refresh(&self, refresh: &Token) -> Result<Token, SignError> {
        let now = self.now();
        let mut access = self.blank(TokenType::Access, now)?;
        let s = &self.settings;
        for (name, value) in refresh.claims() {
            let skip = name == "exp"
                || name == "iat"
                || name == "jti"
                || name == s.jti_claim
                || s.token_type_claim.as_deref() == Some(name);
            if !skip {
                access.set(name, value.clone());
            }
        }
        Ok(access)
    }

    /// Rotation: the same claims with a new `jti`, `exp` and `iat`, each
    /// keeping its position (simplejwt mutates the payload in place).
    pub fn rotate(&self, refresh: &Token) -> Result<Token, SignError> {
        let now = self.now();
        let mut next = refresh.clone();
        next.set(&self.settings.jti_claim, Value::String(new_jti()?));
        next.set(
            "exp",
            json!(now.saturating_add(self.settings.refresh_token_lifetime)),
        );
        next.set("iat", json!(now));
        Ok(next)
    }

    /// Sliding refresh: new `exp` and `iat`; `jti` and `refresh_exp` stay.
    #[must_use]
    pub fn slide(&self, sliding: &Token) -> Token {
        let now = self.now();
        let mut next = sliding.clone();
        next.set(
            "exp",
            json!(now.saturating_add(self.settings.sliding_token_lifetime)),
        );
        next.set("iat", json!(now));
        next
    }

    /// simplejwt's `Token()` with no argument: `token_type, exp, iat, jti`
    /// (and `refresh_exp` for sliding tokens).
    fn blank(&self, token_type: TokenType, now: i64) -> Result<Token, SignError> {
        let s = &self.settings;
        let lifetime = match token_type {
            TokenType::Access => s.access_token_lifetime,
            TokenType::Refresh => s.refresh_token_lifetime,
            TokenType::Sliding => s.sliding_token_lifetime,
        };
        let mut token = Token::from_claims(Claims::new());
        if let Some(type_claim) = &s.token_type_claim {
            token.set(type_claim, Value::String(token_type.as_str().to_owned()));
        }
        token.set("exp", json!(now.saturating_add(lifetime)));
        token.set("iat", json!(now));
        token.set(&s.jti_claim, Value::String(new_jti()?));
        if token_type == TokenType::Sliding {
            token.set(
                &s.sliding_refresh_exp_claim,
                json!(now.saturating_add(s.sliding_token_refresh_lifetime)),
            );
        }
        Ok(token)
    }
}

/// A compact token's parts: (signing input, header, payload, signature).
type Jws<'a> = (&'a [u8], &'a [u8], &'a [u8], &'a [u8]);

/// A compact token split at its last two dots, as two `rsplitn(2, '.')`
/// split it. The header may
/// hold dots (and is then refused when decoded). Found from both ends: the
/// first dot closes the header unless the payload holds one too, which is
/// checked without an early exit (vectorized) rather than scanned for byte
/// by byte from the end.
fn split_jws(raw: &[u8]) -> Option<Jws<'_>> {
    let (message, signature) = raw.split_at(raw.iter().rposition(|b| *b == b'.')?);
    let signature = signature.get(1..)?;
    let (header, payload) = message.split_at(message.iter().position(|b| *b == b'.')?);
    let payload = payload.get(1..)?;
    if payload
        .iter()
        .fold(0_u8, |dots, b| dots | u8::from(*b == b'.'))
        == 0
    {
        return Some((message, header, payload, signature));
    }
    let (header, payload) = message.split_at(message.iter().rposition(|b| *b == b'.')?);
    Some((message, header, payload.get(1..)?, signature))
}

/// The header of a token signed with the configured key.
fn configured_header(algorithm: Algorithm) -> Value {
    json!({"alg": algorithm_name(algorithm), "typ": "JWT"})
}

/// The key a token is checked with: the configured one, or a key of the
/// set or of the remote issuer, held by its `Arc`. A reload keeps the
/// `Arc` of a kid it keeps (`KeyRing::load`), so the same `Arc` means the
/// same key, and holding it means its address is never reused for another.
#[derive(Debug)]
enum Verifier {
    Configured,
    Key(Arc<LoadedKey>),
}

impl Verifier {
    fn with_key<R>(
        &self,
        engine: &TokenEngine,
        f: impl FnOnce(Algorithm, &DecodingKey, Option<&hmac::Key>) -> R,
    ) -> R {
        match self {
            Self::Configured => {
                let keys = &engine.keys;
                f(keys.algorithm(), keys.decoding(), keys.hmac())
            }
            Self::Key(key) => f(
                key.algorithm,
                &key.decoding,
                key.signing.as_ref().and_then(SigningKeys::hmac),
            ),
        }
    }

    /// Whether both are the same key.
    fn is(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Configured, Self::Configured) => true,
            (Self::Key(a), Self::Key(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

/// The payload's claims, read in one pass. As with PyJWT's `json.loads`
/// a repeated claim takes its last value, except the registered claims
/// jsonwebtoken reads strictly (`exp`, `nbf`, `sub`, `iss`, `aud`): a token
/// naming one of them twice is refused, as it was when jsonwebtoken decoded
/// the payload (`hardening::duplicate_json_keys`).
struct Payload(Claims);

impl<'de> serde::Deserialize<'de> for Payload {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Payload;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object of claims")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Payload, A::Error> {
                let mut claims = Claims::with_capacity(map.size_hint().unwrap_or(8));
                while let Some(name) = map.next_key_seed(ClaimName)? {
                    let value = map.next_value::<Value>()?;
                    let strict = matches!(name.as_ref(), "exp" | "nbf" | "sub" | "iss" | "aud");
                    if claims.insert(name, value).is_some() && strict {
                        return Err(serde::de::Error::custom("a registered claim is repeated"));
                    }
                }
                Ok(Payload(claims))
            }
        }
        deserializer.deserialize_map(Visit)
    }
}

/// A claim name read from a payload: a common one is shared, not copied.
struct ClaimName;

impl<'de> serde::de::DeserializeSeed<'de> for ClaimName {
    type Value = Name;
    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Name, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl serde::de::Visitor<'_> for ClaimName {
    type Value = Name;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a claim name")
    }
    fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<Name, E> {
        Ok(claim_name(name))
    }
}

/// A token id as simplejwt makes it: `uuid4().hex`, 32 lowercase hex digits.
fn new_jti() -> Result<String, SignError> {
    let mut bytes = [0_u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| SignError::new("random generator failed"))?;
    // RFC 9562 §5.4: version 4, variant 10xx.
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    Ok(hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::{Algorithm, Audience};

    /// A clock stopped at one instant.
    #[derive(Debug)]
    struct Fixed(i64);
    impl Clock for Fixed {
        fn now(&self) -> i64 {
            self.0
        }
    }

    const NOW: i64 = 1_800_000_000;
    const KEY: &[u8] = b"unit-test-signing-key-0123456789abcdef";

    fn engine(settings: TokenSettings) -> TokenEngine {
        let keys = SigningKeys::new(Algorithm::HS256, KEY, None).unwrap();
        TokenEngine::new(settings, keys, Arc::new(Fixed(NOW)))
    }

    fn signed(engine: &TokenEngine, claims: Value) -> String {
        let Value::Object(claims) = claims else {
            panic!("an object")
        };
        engine.encode(&Token::from_claims(claims)).unwrap()
    }

    #[test]
    fn header_and_claims_are_simplejwt_shaped() {
        let e = engine(TokenSettings::default());
        let token = e.for_user(TokenType::Sliding, 7, []).unwrap();
        let keys: Vec<&str> = token.claims().keys().collect();
        assert_eq!(
            keys,
            ["token_type", "exp", "iat", "jti", "refresh_exp", "user_id"]
        );
        assert_eq!(token.get("exp"), Some(&json!(NOW + 300)));
        assert_eq!(token.get("refresh_exp"), Some(&json!(NOW + 86_400)));
        assert_eq!(token.get("user_id"), Some(&json!("7")));
        let jti = token.jti(e.settings()).unwrap();
        assert!(
            jti.len() == 32
                && jti
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        let raw = e.encode(&token).unwrap();
        assert!(
            raw.starts_with("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."),
            "{{\"alg\":\"HS256\",\"typ\":\"JWT\"}}"
        );
        assert_eq!(e.decode(raw.as_bytes()).unwrap(), token);
    }

    #[test]
    fn access_from_refresh_copies_all_but_the_volatile_claims() {
        let e = engine(TokenSettings::default());
        let mut refresh = e
            .for_user(
                TokenType::Refresh,
                1,
                [("custom".to_owned(), json!([1, 2]))],
            )
            .unwrap();
        refresh.set("user_id", json!(1));
        let access = e.access_from_refresh(&refresh).unwrap();
        let keys: Vec<&str> = access.claims().keys().collect();
        assert_eq!(
            keys,
            ["token_type", "exp", "iat", "jti", "user_id", "custom"]
        );
        assert_eq!(access.get("token_type"), Some(&json!("access")));
        assert_eq!(
            access.get("user_id"),
            Some(&json!(1)),
            "copied as is, as simplejwt does"
        );
        assert_ne!(access.jti(e.settings()), refresh.jti(e.settings()));
        let rotated = e.rotate(&refresh).unwrap();
        assert_eq!(
            rotated.claims().keys().collect::<Vec<_>>(),
            refresh.claims().keys().collect::<Vec<_>>()
        );
        assert_ne!(rotated.jti(e.settings()), refresh.jti(e.settings()));
    }

    /// PyJWT: expired iff `exp <= now - leeway`; `iat`/`nbf` in the future
    /// (beyond the leeway) are invalid, not expired.
    #[test]
    fn time_claims_follow_pyjwt_at_the_boundaries() {
        let e = engine(TokenSettings {
            leeway: 10,
            ..TokenSettings::default()
        });
        let at = |claims| e.decode(signed(&e, claims).as_bytes()).map(|_| ());
        assert_eq!(at(json!({"exp": NOW - 10})), Err(TokenError::Expired));
        assert_eq!(at(json!({"exp": NOW - 9})), Ok(()));
        // A float exp truncates like Python's int(): NOW - 9.5 is NOW - 10.
        assert_eq!(
            at(json!({"exp": 1_799_999_990.5})),
            Err(TokenError::Expired)
        );
        assert_eq!(at(json!({"exp": 1_799_999_991.5})), Ok(()));
        assert_eq!(at(json!({"iat": NOW + 10})), Ok(()));
        assert_eq!(at(json!({"iat": NOW + 11})), Err(TokenError::Invalid));
        assert_eq!(at(json!({"nbf": NOW + 11})), Err(TokenError::Invalid));
        assert_eq!(at(json!({"exp": "1900000000"})), Err(TokenError::Invalid));
        assert_eq!(at(json!({"exp": true})), Err(TokenError::Invalid));
        assert_eq!(at(json!({"exp": 1e300})), Err(TokenError::Invalid));
        assert_eq!(
            at(json!({"iat": NOW + 11, "exp": NOW - 100})),
            Err(TokenError::Invalid),
            "iat is checked first"
        );
        assert_eq!(at(json!({"jti": 5})), Err(TokenError::Invalid));
        assert_eq!(at(json!({"sub": 5})), Err(TokenError::Invalid));
    }

    #[test]
    fn audience_and_issuer_are_required_when_configured() {
        let e = engine(TokenSettings {
            audience: Some(Audience::Many(vec!["api".into(), "admin".into()])),
            issuer: Some("me".into()),
            ..TokenSettings::default()
        });
        let at = |claims| e.decode(signed(&e, claims).as_bytes()).map(|_| ());
        // encode() writes the configured aud and iss…
        assert_eq!(at(json!({})), Ok(()));
        let raw = signed(&e, json!({}));
        let decoded = e.decode(raw.as_bytes()).unwrap();
        assert_eq!(decoded.get("aud"), Some(&json!(["api", "admin"])));
        assert_eq!(decoded.get("iss"), Some(&json!("me")));
        // …and decode checks what another signer wrote.
        let other = engine(TokenSettings::default());
        let foreign = |claims| e.decode(signed(&other, claims).as_bytes()).map(|_| ());
        assert_eq!(foreign(json!({"aud": "admin", "iss": "me"})), Ok(()));
        assert_eq!(foreign(json!({"aud": ["x", "api"], "iss": "me"})), Ok(()));
        assert_eq!(
            foreign(json!({"aud": "x", "iss": "me"})),
            Err(TokenError::Invalid)
        );
        assert_eq!(
            foreign(json!({"aud": ["api", 1], "iss": "me"})),
            Err(TokenError::Invalid)
        );
        assert_eq!(foreign(json!({"iss": "me"})), Err(TokenError::Invalid));
        assert_eq!(foreign(json!({"aud": "api"})), Err(TokenError::Invalid));
        assert_eq!(
            foreign(json!({"aud": "api", "iss": "you"})),
            Err(TokenError::Invalid)
        );
        // Without AUDIENCE, an aud in the token is ignored.
        assert_eq!(
            other
                .decode(signed(&other, json!({"aud": "anything"})).as_bytes())
                .map(|_| ()),
            Ok(())
        );
    }

    /// Our own header is recognised by its bytes; any other is parsed, and
    /// decides as before (its `alg` must be the key's).
    #[test]
    fn headers_other_than_ours_are_parsed() {
        let e = engine(TokenSettings::default());
        let sign = |header: &str| {
            let message = format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode(header),
                URL_SAFE_NO_PAD.encode(r#"{"exp":1900000000,"jti":"x"}"#)
            );
            let key = hmac::Key::new(hmac::HMAC_SHA256, KEY);
            let tag = hmac::sign(&key, message.as_bytes());
            format!("{message}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
        };
        let at = |header: &str| e.decode(sign(header).as_bytes()).map(|_| ());
        assert_eq!(
            e.configured_header.as_deref(),
            Some("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9")
        );
        assert_eq!(at(r#"{"alg":"HS256","typ":"JWT"}"#), Ok(()));
        assert_eq!(at(r#"{"typ":"JWT","alg":"HS256"}"#), Ok(()));
        assert_eq!(at(r#"{"alg":"HS256"}"#), Ok(()));
        assert_eq!(
            at(r#"{"alg":"HS384","typ":"JWT"}"#),
            Err(TokenError::Invalid)
        );
        assert_eq!(at(r#"{"alg":"none"}"#), Err(TokenError::Invalid));
        // A kid nobody knows is ignored, as simplejwt ignores it; the
        // configured key and its algorithm still decide.
        assert_eq!(at(r#"{"alg":"HS256","kid":"unknown"}"#), Ok(()));
        assert_eq!(
            at(r#"{"alg":"HS384","kid":"unknown"}"#),
            Err(TokenError::Invalid)
        );
    }

    /// A kid of the key set's is checked with that key only, retired or
    /// not: a retired kid is refused even when the configured key signed
    /// the token, and only a kid no key has falls back to the configured key.
    #[test]
    fn a_retired_kid_is_refused_and_an_unknown_one_ignored() {
        let e = engine(TokenSettings::default());
        let stored = |kid: &str, retires_at| crate::StoredKey {
            kid: kid.to_owned(),
            algorithm: "HS256".to_owned(),
            private_key: String::from_utf8(KEY.to_vec()).unwrap(),
            public_key: None,
            created_at: NOW - 100,
            activates_at: Some(NOW - 100),
            retires_at,
        };
        let (ring, errors) = KeyRing::load(
            &[stored("old", Some(NOW - 1)), stored("live", None)],
            &KeyRing::default(),
        );
        assert!(errors.is_empty(), "{errors:?}");
        e.install_keys(ring);
        let with_kid = |kid: &str| {
            let message = format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"HS256","kid":"{kid}","typ":"JWT"}}"#)),
                URL_SAFE_NO_PAD.encode(r#"{"exp":1900000000,"jti":"x"}"#)
            );
            let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, KEY), message.as_bytes());
            let raw = format!("{message}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()));
            e.decode(raw.as_bytes()).map(|_| ())
        };
        assert_eq!(with_kid("live"), Ok(()));
        assert_eq!(with_kid("old"), Err(TokenError::Invalid));
        assert_eq!(with_kid("nobody"), Ok(()));
    }

    /// A clock the test moves.
    #[derive(Debug)]
    struct Moving(std::sync::atomic::AtomicI64);
    impl Clock for Moving {
        fn now(&self) -> i64 {
            self.0.load(std::sync::atomic::Ordering::Relaxed)
        }
    }
    impl Moving {
        fn set(&self, now: i64) {
            self.0.store(now, std::sync::atomic::Ordering::Relaxed);
        }
    }

    fn moving(settings: TokenSettings) -> (TokenEngine, Arc<Moving>) {
        let clock = Arc::new(Moving(NOW.into()));
        let keys = SigningKeys::new(Algorithm::HS256, KEY, None).unwrap();
        let engine = TokenEngine::new(settings, keys, Arc::clone(&clock) as Arc<dyn Clock>);
        (engine, clock)
    }

    /// An HS256 token with this header, signed with `key`.
    fn hs256(header: &str, claims: &Value, key: &[u8]) -> String {
        let message = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), message.as_bytes());
        format!("{message}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
    }

    /// Through the cache, every token gets the answer `decode` gives, the
    /// first time and every time after; only valid tokens with an `exp`
    /// are remembered.
    #[test]
    fn cached_decoding_answers_as_decoding_does() {
        let (e, _) = moving(TokenSettings {
            leeway: 5,
            ..TokenSettings::default()
        });
        let valid = signed(&e, json!({"exp": NOW + 60, "iat": NOW, "jti": "a"}));
        let mut forged = valid.clone();
        forged.pop();
        forged.push(if valid.ends_with('A') { 'B' } else { 'A' });
        let tokens = [
            valid.clone(),
            forged,
            signed(&e, json!({"exp": NOW - 5, "jti": "b"})),
            signed(&e, json!({"exp": NOW + 60, "iat": NOW + 6})),
            signed(&e, json!({"exp": NOW + 60, "nbf": NOW + 6})),
            signed(&e, json!({"jti": "no exp"})),
            signed(&e, json!({"exp": NOW + 60, "jti": 5})),
            hs256(
                r#"{"alg":"HS256","kid":"nobody"}"#,
                &json!({"exp": NOW + 60}),
                KEY,
            ),
            "a.b.c".to_owned(),
        ];
        for round in 0..3 {
            for raw in &tokens {
                assert_eq!(
                    e.decode_cached(raw.as_bytes()),
                    e.decode(raw.as_bytes()),
                    "round {round}: {raw}"
                );
            }
        }
        assert_eq!(
            e.cached_tokens(),
            2,
            "the valid one and the kid nobody knows"
        );
        let off = engine(TokenSettings {
            token_cache_size: 0,
            ..TokenSettings::default()
        });
        assert_eq!(
            off.decode_cached(valid.as_bytes()),
            off.decode(valid.as_bytes())
        );
        assert_eq!(off.cached_tokens(), 0);
    }

    /// A cached token is reused until `exp` with the leeway, never after,
    /// and not while the clock stands before its `iat`.
    #[test]
    fn a_cached_token_expires_when_decoding_says_so() {
        let (e, clock) = moving(TokenSettings {
            leeway: 2,
            ..TokenSettings::default()
        });
        let raw = signed(&e, json!({"exp": NOW + 10, "iat": NOW, "jti": "x"}));
        assert!(e.decode_cached(raw.as_bytes()).is_ok());
        clock.set(NOW + 11);
        assert!(e.decode_cached(raw.as_bytes()).is_ok(), "within the leeway");
        clock.set(NOW + 12);
        assert_eq!(e.decode_cached(raw.as_bytes()), Err(TokenError::Expired));
        assert_eq!(e.cached_tokens(), 0, "an expired entry is dropped");
        clock.set(NOW);
        assert!(e.decode_cached(raw.as_bytes()).is_ok());
        clock.set(NOW - 3);
        assert_eq!(
            e.decode_cached(raw.as_bytes()),
            Err(TokenError::Invalid),
            "iat beyond the leeway once the clock went back"
        );
    }

    /// A cached token whose key retires (by its time or by a reload),
    /// disappears or is replaced is refused on the next decode, as decoding
    /// refuses it; the configured key still decides for kids nobody knows.
    #[test]
    fn a_cached_token_follows_its_key() {
        const OTHER: &[u8] = b"unit-test-other-signing-key-0123456789ab";
        let (e, clock) = moving(TokenSettings::default());
        let stored = |secret: &[u8], retires_at| crate::StoredKey {
            kid: "k".to_owned(),
            algorithm: "HS256".to_owned(),
            private_key: String::from_utf8(secret.to_vec()).unwrap(),
            public_key: None,
            created_at: NOW - 100,
            activates_at: Some(NOW - 100),
            retires_at,
        };
        let install = |key: Option<crate::StoredKey>, previous: &KeyRing| {
            let (ring, errors) = KeyRing::load(key.as_slice(), previous);
            assert!(errors.is_empty(), "{errors:?}");
            e.install_keys(ring);
        };
        let claims = json!({"exp": NOW + 600, "jti": "x"});
        let raw = hs256(r#"{"alg":"HS256","kid":"k","typ":"JWT"}"#, &claims, OTHER);
        let decode = || e.decode_cached(raw.as_bytes()).map(|_| ());

        // Retired by the clock, with no reload.
        install(Some(stored(OTHER, Some(NOW + 5))), &KeyRing::default());
        assert_eq!(decode(), Ok(()));
        assert_eq!(decode(), Ok(()));
        assert_eq!(e.cached_tokens(), 1);
        clock.set(NOW + 5);
        assert_eq!(decode(), Err(TokenError::Invalid));
        assert_eq!(
            e.decode(raw.as_bytes()).map(|_| ()),
            Err(TokenError::Invalid)
        );

        // Reloaded with the same key: still the same key, still a hit.
        clock.set(NOW);
        install(Some(stored(OTHER, None)), &KeyRing::default());
        assert_eq!(decode(), Ok(()));
        install(Some(stored(OTHER, None)), &e.key_ring());
        assert_eq!(decode(), Ok(()));

        // Retired by a reload.
        install(Some(stored(OTHER, Some(NOW))), &e.key_ring());
        assert_eq!(decode(), Err(TokenError::Invalid));

        // Removed: the kid is nobody's, so the configured key decides,
        // and it did not sign the token.
        install(Some(stored(OTHER, None)), &KeyRing::default());
        assert_eq!(decode(), Ok(()));
        install(None, &e.key_ring());
        assert_eq!(decode(), Err(TokenError::Invalid));

        // Replaced under the same kid by other material.
        install(Some(stored(OTHER, None)), &KeyRing::default());
        assert_eq!(decode(), Ok(()));
        install(Some(stored(KEY, None)), &KeyRing::default());
        assert_eq!(decode(), Err(TokenError::Invalid));
    }

    /// The split answers what `rsplitn(2, '.')` twice did.
    #[test]
    fn tokens_split_at_their_last_two_dots() {
        fn rsplit(raw: &[u8]) -> Option<Jws<'_>> {
            let mut parts = raw.rsplitn(2, |b| *b == b'.');
            let (signature, message) = (parts.next()?, parts.next()?);
            let mut parts = message.rsplitn(2, |b| *b == b'.');
            let (payload, header) = (parts.next()?, parts.next()?);
            Some((message, header, payload, signature))
        }
        for raw in [
            &b""[..],
            b".",
            b"..",
            b"...",
            b"a.b",
            b"a.b.c",
            b"a.b.c.d",
            b"a..c",
            b".b.",
            b"h.e.a.d.p.s",
            b"head.pay.load.sig",
            b"abc",
        ] {
            assert_eq!(split_jws(raw), rsplit(raw), "{raw:?}");
        }
    }

    #[test]
    fn garbage_and_oversized_tokens_are_invalid() {
        let e = engine(TokenSettings {
            max_token_bytes: 64,
            ..TokenSettings::default()
        });
        for raw in [
            &b""[..],
            b"a.b.c",
            b"\xff\xfe",
            b"eyJhbGciOiJIUzI1NiJ9..",
            &[b'a'; 65][..],
        ] {
            assert_eq!(
                e.decode(raw).map(|_| ()),
                Err(TokenError::Invalid),
                "{raw:?}"
            );
        }
    }
}
