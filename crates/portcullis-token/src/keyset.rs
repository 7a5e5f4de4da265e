//! The key set: keys with a `kid` and exactly one algorithm each
//! (RFC 8725 §3.1), one of which signs while the others only verify.
//!
//! A key's state is never stored; it follows from its times and the clock:
//!
//! * **retired** — `retires_at` has passed: neither published nor trusted;
//! * **active** — of the keys whose `activates_at` has passed and that are
//!   not retired, the one that activated last: it signs;
//! * **verify-only** — activated earlier but superseded: it verifies the
//!   tokens it signed until `retires_at` (set by rotation to the moment
//!   every token it signed has expired);
//! * **pending** — `activates_at` is in the future (or unset): published so
//!   that verifiers caching the JWKS know it before it signs.
//!
//! Because states are derived at the moment of use, a rotation scheduled
//! for 12:00 takes effect at 12:00 on every node, whatever their reload
//! period.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair,
    KeyPair as _, RsaKeyPair,
};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey};

use crate::keys::{algorithm_name, is_hmac, parse_algorithm};
use crate::{KeyError, SigningKeys};

/// A key as the database holds it. Times are Unix seconds.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredKey {
    /// The key id written into the token header.
    pub kid: String,
    /// The one algorithm this key is used with (`ES256`, `EdDSA`, …).
    pub algorithm: String,
    /// The private key as PEM, or the HMAC secret.
    pub private_key: String,
    /// The public key as PEM; `None` for HMAC.
    pub public_key: Option<String>,
    /// When the key was made.
    pub created_at: i64,
    /// When it starts signing; `None`: not scheduled to sign.
    pub activates_at: Option<i64>,
    /// When it stops verifying and is no longer published.
    pub retires_at: Option<i64>,
}

impl fmt::Debug for StoredKey {
    // Never print key material.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .field("created_at", &self.created_at)
            .field("activates_at", &self.activates_at)
            .field("retires_at", &self.retires_at)
            .finish_non_exhaustive()
    }
}

/// Where a key is in its life, derived from its times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    /// Published, verifies, does not sign yet.
    Pending,
    /// Signs (and verifies).
    Active,
    /// Superseded: verifies until it retires.
    VerifyOnly,
    /// Neither verifies nor is published.
    Retired,
}

impl KeyState {
    /// The name `portcullis keys list` shows.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Active => "active",
            Self::VerifyOnly => "verify-only",
            Self::Retired => "retired",
        }
    }
}

/// The times that decide a key's state.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Times {
    kid: String,
    created_at: i64,
    activates_at: Option<i64>,
    retires_at: Option<i64>,
}

impl Times {
    fn of(key: &StoredKey) -> Self {
        Self {
            kid: key.kid.clone(),
            created_at: key.created_at,
            activates_at: key.activates_at,
            retires_at: key.retires_at,
        }
    }

    fn retired(&self, now: i64) -> bool {
        self.retires_at.is_some_and(|at| at <= now)
    }

    fn activated(&self, now: i64) -> bool {
        self.activates_at.is_some_and(|at| at <= now)
    }
}

/// The index of the signing key: of the activated, unretired keys, the
/// one activated last (then the newest, then the greatest kid, so every
/// node picks the same one).
fn signer<'a>(times: impl Iterator<Item = &'a Times>, now: i64) -> Option<usize> {
    times
        .enumerate()
        .filter(|(_, t)| t.activated(now) && !t.retired(now))
        .max_by(|(_, a), (_, b)| {
            (a.activates_at, a.created_at, &a.kid).cmp(&(b.activates_at, b.created_at, &b.kid))
        })
        .map(|(i, _)| i)
}

fn state(times: &Times, is_signer: bool, now: i64) -> KeyState {
    if times.retired(now) {
        KeyState::Retired
    } else if is_signer {
        KeyState::Active
    } else if times.activated(now) {
        KeyState::VerifyOnly
    } else {
        KeyState::Pending
    }
}

/// The state of each key at `now`, in the order given.
#[must_use]
pub fn key_states(keys: &[StoredKey], now: i64) -> Vec<KeyState> {
    let times: Vec<Times> = keys.iter().map(Times::of).collect();
    let active = signer(times.iter(), now);
    times
        .iter()
        .enumerate()
        .map(|(i, t)| state(t, active == Some(i), now))
        .collect()
}

/// A parsed key, pinned to its algorithm.
pub(crate) struct LoadedKey {
    pub(crate) algorithm: Algorithm,
    /// `None` for keys we only verify with (another issuer's).
    pub(crate) signing: Option<SigningKeys>,
    pub(crate) decoding: DecodingKey,
    /// The public JWK with `kid`; `None` for HMAC (never published).
    pub(crate) jwk: Option<Jwk>,
}

impl fmt::Debug for LoadedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedKey")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl LoadedKey {
    fn from_stored(key: &StoredKey) -> Result<Self, KeyError> {
        let algorithm = parse_algorithm(&key.algorithm)?;
        let signing = SigningKeys::new(
            algorithm,
            key.private_key.as_bytes(),
            key.public_key.as_deref().map(str::as_bytes),
        )?;
        let jwk = signing.public_jwk().map(|mut jwk| {
            jwk.common.key_id = Some(key.kid.clone());
            jwk
        });
        Ok(Self {
            algorithm,
            decoding: signing.decoding().clone(),
            signing: Some(signing),
            jwk,
        })
    }
}

#[derive(Debug)]
struct RingKey {
    times: Times,
    key: Arc<LoadedKey>,
}

/// The database's key set, parsed: an immutable snapshot that the engine
/// swaps as a whole.
#[derive(Debug, Default)]
pub struct KeyRing {
    keys: Vec<RingKey>,
}

impl KeyRing {
    /// Parse stored keys, reusing the parsed keys of `previous` (a `kid`'s
    /// material never changes, only its times). Keys that do not parse are
    /// left out and returned with the reason.
    #[must_use]
    pub fn load(stored: &[StoredKey], previous: &Self) -> (Self, Vec<(String, KeyError)>) {
        let mut errors = Vec::new();
        let mut keys = Vec::with_capacity(stored.len());
        for key in stored {
            let reused = previous
                .keys
                .iter()
                .find(|k| k.times.kid == key.kid)
                .map(|k| Arc::clone(&k.key))
                .filter(|k| algorithm_name(k.algorithm) == key.algorithm);
            let loaded = match reused {
                Some(loaded) => loaded,
                None => match LoadedKey::from_stored(key) {
                    Ok(loaded) => Arc::new(loaded),
                    Err(e) => {
                        errors.push((key.kid.clone(), e));
                        continue;
                    }
                },
            };
            keys.push(RingKey {
                times: Times::of(key),
                key: loaded,
            });
        }
        (Self { keys }, errors)
    }

    /// The key that signs at `now`, with its kid.
    pub(crate) fn signer(&self, now: i64) -> Option<(&str, &LoadedKey)> {
        let index = signer(self.keys.iter().map(|k| &k.times), now)?;
        self.keys
            .get(index)
            .map(|k| (k.times.kid.as_str(), k.key.as_ref()))
    }

    /// The unretired key with this kid.
    pub(crate) fn verifier(&self, kid: &str, now: i64) -> Option<&Arc<LoadedKey>> {
        self.keys
            .iter()
            .find(|k| k.times.kid == kid && !k.times.retired(now))
            .map(|k| &k.key)
    }

    /// Whether any key of the set, retired or not, has this kid.
    pub(crate) fn knows(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.times.kid == kid)
    }

    /// The public JWKs of every unretired asymmetric key.
    pub(crate) fn published(&self, now: i64) -> impl Iterator<Item = &Jwk> {
        self.keys
            .iter()
            .filter(move |k| !k.times.retired(now))
            .filter_map(|k| k.key.jwk.as_ref())
    }
}

/// Keys of another issuer, from its JWKS (`JWK_URL`): verify only.
#[derive(Debug, Default)]
pub struct RemoteKeys {
    keys: HashMap<String, Arc<LoadedKey>>,
}

impl RemoteKeys {
    /// Parse a JWKS document. Only asymmetric signature keys with a `kid`
    /// are kept; each key's algorithm comes from its `alg`, or from its
    /// type and curve when `alg` is absent (RSA then means RS256, as in
    /// PyJWT's `PyJWK`), never from a token. Keys that cannot be used are
    /// skipped and named in the second value.
    pub fn from_jwks(document: &[u8]) -> Result<(Self, Vec<String>), KeyError> {
        let set: JwkSet = serde_json::from_slice(document).map_err(|e| KeyError::BadPublicKey {
            algorithm: "JWKS",
            reason: e.to_string(),
        })?;
        let mut keys = HashMap::new();
        let mut skipped = Vec::new();
        for jwk in &set.keys {
            let Some(kid) = jwk.common.key_id.clone() else {
                skipped.push("a key without kid".to_owned());
                continue;
            };
            match remote_key(jwk) {
                Some(key) => {
                    keys.insert(kid, Arc::new(key));
                }
                None => skipped.push(kid),
            }
        }
        Ok((Self { keys }, skipped))
    }

    /// How many keys were kept.
    #[must_use]
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key was kept.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub(crate) fn get(&self, kid: &str) -> Option<&Arc<LoadedKey>> {
        self.keys.get(kid)
    }
}

/// The algorithm a remote JWK is pinned to, and its verifying key.
fn remote_key(jwk: &Jwk) -> Option<LoadedKey> {
    if jwk
        .common
        .public_key_use
        .as_ref()
        .is_some_and(|u| *u != PublicKeyUse::Signature)
    {
        return None;
    }
    let by_type = match &jwk.algorithm {
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => Algorithm::ES256,
            EllipticCurve::P384 => Algorithm::ES384,
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            Algorithm::EdDSA
        }
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        // Never a shared secret from a URL.
        _ => return None,
    };
    let algorithm = match jwk.common.key_algorithm {
        None => by_type,
        Some(declared) => {
            let declared = key_algorithm(declared)?;
            let same_family = match by_type {
                Algorithm::RS256 => matches!(
                    declared,
                    Algorithm::RS256
                        | Algorithm::RS384
                        | Algorithm::RS512
                        | Algorithm::PS256
                        | Algorithm::PS384
                        | Algorithm::PS512
                ),
                other => declared == other,
            };
            if !same_family {
                return None;
            }
            declared
        }
    };
    let decoding = DecodingKey::from_jwk(jwk).ok()?;
    Some(LoadedKey {
        algorithm,
        signing: None,
        decoding,
        jwk: None,
    })
}

fn key_algorithm(alg: KeyAlgorithm) -> Option<Algorithm> {
    let name = match alg {
        KeyAlgorithm::RS256 => "RS256",
        KeyAlgorithm::RS384 => "RS384",
        KeyAlgorithm::RS512 => "RS512",
        KeyAlgorithm::PS256 => "PS256",
        KeyAlgorithm::PS384 => "PS384",
        KeyAlgorithm::PS512 => "PS512",
        KeyAlgorithm::ES256 => "ES256",
        KeyAlgorithm::ES384 => "ES384",
        KeyAlgorithm::EdDSA => "EdDSA",
        _ => return None,
    };
    parse_algorithm(name).ok()
}

/// A freshly generated key, ready to store.
#[derive(Clone)]
pub struct GeneratedKey {
    /// A random kid: 16 random bytes, base64url (22 characters).
    pub kid: String,
    /// The private key (PKCS#8 PEM) or the HMAC secret.
    pub private_key: String,
    /// The public key (SubjectPublicKeyInfo PEM); `None` for HMAC.
    pub public_key: Option<String>,
}

impl fmt::Debug for GeneratedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeneratedKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// Generate a key for `algorithm`. `bits` is the RSA modulus size (2048,
/// 3072, 4096 or 8192; 2048 when `None`) and must be `None` otherwise.
pub fn generate_key(algorithm: Algorithm, bits: Option<u32>) -> Result<GeneratedKey, KeyError> {
    let name = algorithm_name(algorithm);
    let failed = |what: &str| KeyError::BadPrivateKey {
        algorithm: name,
        reason: format!("key generation failed: {what}"),
    };
    let rsa = matches!(
        algorithm,
        Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512
    );
    if bits.is_some() && !rsa {
        return Err(failed("--bits applies to RSA keys (RS*, PS*) only"));
    }
    let (private_key, public_key) = if is_hmac(algorithm) {
        (SigningKeys::generate_hmac_secret()?, None)
    } else if rsa {
        let size = match bits.unwrap_or(2048) {
            2048 => aws_lc_rs::rsa::KeySize::Rsa2048,
            3072 => aws_lc_rs::rsa::KeySize::Rsa3072,
            4096 => aws_lc_rs::rsa::KeySize::Rsa4096,
            8192 => aws_lc_rs::rsa::KeySize::Rsa8192,
            _ => return Err(failed("RSA keys are 2048, 3072, 4096 or 8192 bits")),
        };
        let pair = RsaKeyPair::generate(size).map_err(|e| failed(&e.to_string()))?;
        let private = pair.as_der().map_err(|e| failed(&e.to_string()))?;
        let public = pair
            .public_key()
            .as_der()
            .map_err(|e| failed(&e.to_string()))?;
        (
            pem("PRIVATE KEY", private.as_ref()),
            Some(pem("PUBLIC KEY", public.as_ref())),
        )
    } else if algorithm == Algorithm::EdDSA {
        // PKCS#8 v1: jsonwebtoken's Ed25519 JWK export refuses v2.
        let pkcs8 = Ed25519KeyPair::generate_pkcs8v1(&aws_lc_rs::rand::SystemRandom::new())
            .map_err(|e| failed(&e.to_string()))?;
        let pair =
            Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|e| failed(&e.to_string()))?;
        let public = pair
            .public_key()
            .as_der()
            .map_err(|e| failed(&e.to_string()))?;
        (
            pem("PRIVATE KEY", pkcs8.as_ref()),
            Some(pem("PUBLIC KEY", public.as_ref())),
        )
    } else {
        let curve = if algorithm == Algorithm::ES256 {
            &ECDSA_P256_SHA256_FIXED_SIGNING
        } else {
            &ECDSA_P384_SHA384_FIXED_SIGNING
        };
        let pair = EcdsaKeyPair::generate(curve).map_err(|e| failed(&e.to_string()))?;
        let pkcs8 = pair.to_pkcs8v1().map_err(|e| failed(&e.to_string()))?;
        let public = pair
            .public_key()
            .as_der()
            .map_err(|e| failed(&e.to_string()))?;
        (
            pem("PRIVATE KEY", pkcs8.as_ref()),
            Some(pem("PUBLIC KEY", public.as_ref())),
        )
    };
    // Check the result the way the server will load it.
    SigningKeys::new(
        algorithm,
        private_key.as_bytes(),
        public_key.as_deref().map(str::as_bytes),
    )?;
    Ok(GeneratedKey {
        kid: new_kid().map_err(|()| failed("the system random number generator failed"))?,
        private_key,
        public_key,
    })
}

/// 16 random bytes, base64url without padding: URL-safe, unguessable, and
/// unrelated to the key (so a kid reveals nothing and never collides).
fn new_kid() -> Result<String, ()> {
    let mut bytes = [0_u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| ())?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// PEM armour, 64 characters a line (RFC 7468).
fn pem(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(kid: &str, created: i64, activates: Option<i64>, retires: Option<i64>) -> StoredKey {
        StoredKey {
            kid: kid.to_owned(),
            algorithm: "HS256".to_owned(),
            private_key: "k".repeat(32),
            public_key: None,
            created_at: created,
            activates_at: activates,
            retires_at: retires,
        }
    }

    #[test]
    fn states_follow_the_clock() {
        use KeyState::{Active, Pending, Retired, VerifyOnly};
        let keys = [
            key("old", 0, Some(10), Some(200)),
            key("new", 50, Some(100), None),
            key("spare", 60, None, None),
        ];
        assert_eq!(key_states(&keys, 5), [Pending, Pending, Pending]);
        assert_eq!(key_states(&keys, 60), [Active, Pending, Pending]);
        assert_eq!(key_states(&keys, 100), [VerifyOnly, Active, Pending]);
        assert_eq!(key_states(&keys, 200), [Retired, Active, Pending]);
        // Retiring the active key hands signing back to the previous one.
        let keys = [
            key("old", 0, Some(10), None),
            key("new", 50, Some(100), Some(150)),
        ];
        assert_eq!(key_states(&keys, 150), [Active, Retired]);
    }

    #[test]
    fn generated_keys_load_and_publish_only_public_parts() {
        for name in ["ES256", "ES384", "EdDSA", "PS256", "HS256"] {
            let algorithm = parse_algorithm(name).unwrap();
            let generated = generate_key(algorithm, None).unwrap();
            assert_eq!(generated.kid.len(), 22);
            let stored = StoredKey {
                kid: generated.kid.clone(),
                algorithm: name.to_owned(),
                private_key: generated.private_key.clone(),
                public_key: generated.public_key.clone(),
                created_at: 0,
                activates_at: Some(0),
                retires_at: None,
            };
            let (ring, errors) = KeyRing::load(&[stored], &KeyRing::default());
            assert!(errors.is_empty(), "{errors:?}");
            let published: Vec<&Jwk> = ring.published(1).collect();
            if name == "HS256" {
                assert!(published.is_empty());
            } else {
                let json = serde_json::to_value(published[0]).unwrap();
                assert_eq!(json["kid"], generated.kid.as_str());
                assert_eq!(json["alg"], name);
                assert_eq!(json["use"], "sig");
                assert!(json.get("d").is_none() && json.get("k").is_none());
            }
        }
        assert!(generate_key(Algorithm::ES256, Some(2048)).is_err());
        assert!(generate_key(Algorithm::RS256, Some(1024)).is_err());
    }

    #[test]
    fn remote_keys_take_their_algorithm_from_the_jwk() {
        let generated = generate_key(Algorithm::ES256, None).unwrap();
        let keys =
            SigningKeys::new(Algorithm::ES256, generated.private_key.as_bytes(), None).unwrap();
        let mut jwk = keys.public_jwk().unwrap();
        jwk.common.key_id = Some("a".to_owned());
        let mut no_alg = jwk.clone();
        no_alg.common.key_id = Some("b".to_owned());
        no_alg.common.key_algorithm = None;
        let mut lying = jwk.clone();
        lying.common.key_id = Some("c".to_owned());
        lying.common.key_algorithm = Some(KeyAlgorithm::HS256);
        let secret = serde_json::json!({"kty": "oct", "kid": "d", "k": "c2VjcmV0", "alg": "HS256"});
        let document = serde_json::json!({"keys": [jwk, no_alg, lying, secret]});
        let (remote, skipped) = RemoteKeys::from_jwks(document.to_string().as_bytes()).unwrap();
        assert_eq!(remote.get("a").unwrap().algorithm, Algorithm::ES256);
        assert_eq!(remote.get("b").unwrap().algorithm, Algorithm::ES256);
        assert_eq!(skipped, ["c", "d"]);
    }
}
