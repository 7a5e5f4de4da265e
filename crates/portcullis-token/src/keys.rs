//! Signing and verifying keys, checked when they are loaded so that a bad
//! key stops the start instead of failing the first login.
//!
//! HMAC secrets are used as their UTF-8 bytes, as simplejwt uses
//! `SIGNING_KEY`. Asymmetric keys are PEM; when no verifying key is given,
//! the public half is derived from the private key.

use std::fmt;

use aws_lc_rs::hmac;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair,
    KeyPair, RsaKeyPair,
};
use jsonwebtoken::jwk::{Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use rustls_pki_types::{PrivateKeyDer, pem::PemObject};
use thiserror::Error;

/// The algorithms portcullis signs and verifies with.
pub const SUPPORTED_ALGORITHMS: &[&str] = &[
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256",
    "ES384", "EdDSA",
];

/// A key that cannot be used, with what is wrong in words a user can act on.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum KeyError {
    /// The algorithm name is not one portcullis supports.
    #[error("unknown algorithm {0:?}; allowed: {allowed}", allowed = SUPPORTED_ALGORITHMS.join(", "))]
    UnknownAlgorithm(String),
    /// RFC 7518 §3.2: an HMAC key must be at least as long as the hash output.
    #[error(
        "the {algorithm} key is {got} bytes; RFC 7518 §3.2 requires at least {min} bytes (generate one with `openssl rand -base64 48`)"
    )]
    HmacTooShort {
        /// The configured algorithm.
        algorithm: &'static str,
        /// The minimum length in bytes.
        min: usize,
        /// The configured length in bytes.
        got: usize,
    },
    /// A PEM key was given as an HMAC secret (PyJWT refuses this too).
    #[error(
        "the {0} key looks like a PEM key; an HMAC algorithm takes a shared secret string, an asymmetric algorithm (RS256, ES256, EdDSA, …) takes a PEM key"
    )]
    PemAsHmacSecret(&'static str),
    /// The private key does not parse or does not suit the algorithm.
    #[error("the signing key is not a valid {algorithm} private key in PEM form: {reason}")]
    BadPrivateKey {
        /// The configured algorithm.
        algorithm: &'static str,
        /// What went wrong.
        reason: String,
    },
    /// The public key does not parse or does not suit the algorithm.
    #[error("the verifying key is not a valid {algorithm} public key in PEM form: {reason}")]
    BadPublicKey {
        /// The configured algorithm.
        algorithm: &'static str,
        /// What went wrong.
        reason: String,
    },
    /// The verifying key does not verify what the signing key signs.
    #[error("the verifying key does not match the signing key")]
    Mismatch,
}

/// The configured key pair: one algorithm, one key to sign, one to verify.
#[derive(Clone)]
pub struct SigningKeys {
    algorithm: Algorithm,
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// The HMAC secret prepared once: jsonwebtoken builds an `hmac::Key`
    /// (the secret hashed into inner and outer pads) on every sign and
    /// verify, which was a tenth of a `/api/users/me/` request. `None` for
    /// asymmetric keys.
    hmac: Option<hmac::Key>,
}

impl fmt::Debug for SigningKeys {
    // Never print key material.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKeys")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// Whether `signature` (base64url, as in the token) signs `message` under
/// `algorithm` with this key. The algorithm is the key's, never the
/// token's. HMAC uses the prepared key and aws-lc's constant-time
/// comparison (`hmac::verify`); other algorithms go through jsonwebtoken.
pub(crate) fn verify_signature(
    algorithm: Algorithm,
    decoding: &DecodingKey,
    prepared: Option<&hmac::Key>,
    message: &[u8],
    signature: &[u8],
) -> bool {
    use base64::Engine as _;
    match prepared {
        Some(key) => base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(signature)
            .is_ok_and(|tag| hmac::verify(key, message, &tag).is_ok()),
        None => std::str::from_utf8(signature).is_ok_and(|signature| {
            jsonwebtoken::crypto::verify(signature, message, decoding, algorithm).unwrap_or(false)
        }),
    }
}

/// Parse an algorithm name as simplejwt's `ALGORITHM` setting spells it.
pub fn parse_algorithm(name: &str) -> Result<Algorithm, KeyError> {
    if !SUPPORTED_ALGORITHMS.contains(&name) {
        return Err(KeyError::UnknownAlgorithm(name.to_owned()));
    }
    name.parse()
        .map_err(|_| KeyError::UnknownAlgorithm(name.to_owned()))
}

/// The canonical name of an algorithm (`"HS256"`, `"EdDSA"`, …).
#[must_use]
pub fn algorithm_name(algorithm: Algorithm) -> &'static str {
    match algorithm {
        Algorithm::HS256 => "HS256",
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::EdDSA => "EdDSA",
        // `Algorithm` is non-exhaustive; `parse_algorithm` admits no other.
        _ => "unsupported",
    }
}

/// Whether the algorithm uses a shared secret.
#[must_use]
pub fn is_hmac(algorithm: Algorithm) -> bool {
    matches!(
        algorithm,
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
    )
}

impl SigningKeys {
    /// Load and check a key pair.
    ///
    /// For HMAC, `signing` is the secret and `verifying` is ignored (as in
    /// simplejwt). For asymmetric algorithms both are PEM; without
    /// `verifying` the public key is derived from `signing`.
    pub fn new(
        algorithm: Algorithm,
        signing: &[u8],
        verifying: Option<&[u8]>,
    ) -> Result<Self, KeyError> {
        let name = algorithm_name(algorithm);
        let keys = if is_hmac(algorithm) {
            let min = match algorithm {
                Algorithm::HS384 => 48,
                Algorithm::HS512 => 64,
                _ => 32,
            };
            if signing.trim_ascii_start().starts_with(b"-----BEGIN") {
                return Err(KeyError::PemAsHmacSecret(name));
            }
            if signing.len() < min {
                return Err(KeyError::HmacTooShort {
                    algorithm: name,
                    min,
                    got: signing.len(),
                });
            }
            let prepared = match algorithm {
                Algorithm::HS384 => hmac::HMAC_SHA384,
                Algorithm::HS512 => hmac::HMAC_SHA512,
                _ => hmac::HMAC_SHA256,
            };
            Self {
                algorithm,
                encoding: EncodingKey::from_secret(signing),
                decoding: DecodingKey::from_secret(signing),
                hmac: Some(hmac::Key::new(prepared, signing)),
            }
        } else {
            let (encoding, derived) = load_private(algorithm, signing)?;
            let decoding = match verifying {
                Some(pem) => load_public(algorithm, pem)?,
                None => derived,
            };
            Self {
                algorithm,
                encoding,
                decoding,
                hmac: None,
            }
        };
        keys.check_pair()?;
        Ok(keys)
    }

    /// Keys that only verify: an HMAC secret, or an asymmetric public PEM
    /// (`VERIFYING_KEY` alone), for services that check tokens another
    /// process signs. Signing with them fails: the encoding half is an
    /// empty placeholder of another key family, which jsonwebtoken refuses.
    pub fn verifying_only(algorithm: Algorithm, key: &[u8]) -> Result<Self, KeyError> {
        if is_hmac(algorithm) {
            return Self::new(algorithm, key, None);
        }
        Ok(Self {
            algorithm,
            encoding: EncodingKey::from_secret(&[]),
            decoding: load_public(algorithm, key)?,
            hmac: None,
        })
    }

    /// A new random HMAC secret: 64 random bytes, base64url-encoded (86
    /// characters), long enough for HS512.
    pub fn generate_hmac_secret() -> Result<String, KeyError> {
        use base64::Engine as _;
        let mut bytes = [0_u8; 64];
        aws_lc_rs::rand::fill(&mut bytes).map_err(|_| KeyError::BadPrivateKey {
            algorithm: "HS256",
            reason: "the system random number generator failed".to_owned(),
        })?;
        Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
    }

    /// The algorithm these keys are pinned to.
    #[must_use]
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The public key as a JWK with `alg` and `use: "sig"` (no `kid`), or
    /// `None` for HMAC: `Jwk::from_decoding_key` would export the secret
    /// itself as an `oct` key, and an HMAC key must never be published.
    #[must_use]
    pub fn public_jwk(&self) -> Option<Jwk> {
        if is_hmac(self.algorithm) {
            return None;
        }
        let mut jwk = Jwk::from_decoding_key(&self.decoding, Some(self.algorithm)).ok()?;
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        Some(jwk)
    }

    /// The RFC 7638 thumbprint (SHA-256, base64url) of the public key, or
    /// `None` for HMAC.
    #[must_use]
    pub fn thumbprint(&self) -> Option<String> {
        self.public_jwk()?
            .thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256)
            .ok()
    }

    pub(crate) fn decoding(&self) -> &DecodingKey {
        &self.decoding
    }

    /// The prepared HMAC key, for HS256/384/512.
    pub(crate) fn hmac(&self) -> Option<&hmac::Key> {
        self.hmac.as_ref()
    }

    /// The base64url signature of `message` (a JWS signing input).
    pub(crate) fn sign(&self, message: &[u8]) -> Result<String, jsonwebtoken::errors::Error> {
        use base64::Engine as _;
        match &self.hmac {
            Some(key) => {
                Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .encode(hmac::sign(key, message)))
            }
            None => jsonwebtoken::crypto::sign(message, &self.encoding, self.algorithm),
        }
    }

    /// Sign a probe and verify it, so a mismatched pair fails at start.
    fn check_pair(&self) -> Result<(), KeyError> {
        let name = algorithm_name(self.algorithm);
        let probe = b"portcullis key check";
        let signature =
            jsonwebtoken::crypto::sign(probe, &self.encoding, self.algorithm).map_err(|e| {
                KeyError::BadPrivateKey {
                    algorithm: name,
                    reason: e.to_string(),
                }
            })?;
        match jsonwebtoken::crypto::verify(&signature, probe, &self.decoding, self.algorithm) {
            Ok(true) => Ok(()),
            Ok(false) => Err(KeyError::Mismatch),
            Err(e) => Err(KeyError::BadPublicKey {
                algorithm: name,
                reason: e.to_string(),
            }),
        }
    }
}

/// Parse a private PEM key and derive its public half.
fn load_private(algorithm: Algorithm, pem: &[u8]) -> Result<(EncodingKey, DecodingKey), KeyError> {
    let name = algorithm_name(algorithm);
    let bad = |reason: String| KeyError::BadPrivateKey {
        algorithm: name,
        reason,
    };
    let der = PrivateKeyDer::from_pem_slice(pem)
        .map_err(|e| bad(format!("no PEM private key found ({e})")))?;
    match algorithm {
        Algorithm::RS256
        | Algorithm::RS384
        | Algorithm::RS512
        | Algorithm::PS256
        | Algorithm::PS384
        | Algorithm::PS512 => {
            let pair = match &der {
                PrivateKeyDer::Pkcs1(k) => RsaKeyPair::from_der(k.secret_pkcs1_der()),
                PrivateKeyDer::Pkcs8(k) => RsaKeyPair::from_pkcs8(k.secret_pkcs8_der()),
                _ => {
                    return Err(bad(
                        "expected an RSA key (BEGIN PRIVATE KEY or BEGIN RSA PRIVATE KEY)"
                            .to_owned(),
                    ));
                }
            }
            .map_err(|e| bad(format!("{e} (RSA keys must be 2048 to 8192 bits)")))?;
            let encoding = EncodingKey::from_rsa_pem(pem).map_err(|e| bad(e.to_string()))?;
            Ok((
                encoding,
                DecodingKey::from_rsa_der(pair.public_key().as_ref()),
            ))
        }
        Algorithm::ES256 | Algorithm::ES384 => {
            let curve = if algorithm == Algorithm::ES256 {
                &ECDSA_P256_SHA256_FIXED_SIGNING
            } else {
                &ECDSA_P384_SHA384_FIXED_SIGNING
            };
            let pair = EcdsaKeyPair::from_private_key_der(curve, der.secret_der()).map_err(|e| {
                bad(format!(
                    "{e} (ES256 needs a P-256 key, ES384 a P-384 key: `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256`)"
                ))
            })?;
            let pkcs8 = pair.to_pkcs8v1().map_err(|e| bad(e.to_string()))?;
            Ok((
                EncodingKey::from_ec_der(pkcs8.as_ref()),
                DecodingKey::from_ec_der(pair.public_key().as_ref()),
            ))
        }
        Algorithm::EdDSA => {
            let pair = Ed25519KeyPair::from_pkcs8(der.secret_der()).map_err(|e| {
                bad(format!(
                    "{e} (EdDSA needs an Ed25519 key: `openssl genpkey -algorithm ed25519`)"
                ))
            })?;
            let pkcs8 = pair.to_pkcs8v1().map_err(|e| bad(e.to_string()))?;
            Ok((
                EncodingKey::from_ed_der(pkcs8.as_ref()),
                DecodingKey::from_ed_der(pair.public_key().as_ref()),
            ))
        }
        _ => Err(bad(
            "an HMAC algorithm takes a secret, not a PEM key".to_owned()
        )),
    }
}

/// Parse a public PEM key (SubjectPublicKeyInfo, or PKCS#1 for RSA).
fn load_public(algorithm: Algorithm, pem: &[u8]) -> Result<DecodingKey, KeyError> {
    let name = algorithm_name(algorithm);
    let key = match algorithm {
        Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(pem),
        Algorithm::EdDSA => DecodingKey::from_ed_pem(pem),
        _ => DecodingKey::from_rsa_pem(pem),
    };
    key.map_err(|e| KeyError::BadPublicKey {
        algorithm: name,
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_rules() {
        assert_eq!(
            SigningKeys::new(Algorithm::HS256, b"short", None).unwrap_err(),
            KeyError::HmacTooShort {
                algorithm: "HS256",
                min: 32,
                got: 5
            }
        );
        assert_eq!(
            SigningKeys::new(Algorithm::HS512, &[b'k'; 40], None).unwrap_err(),
            KeyError::HmacTooShort {
                algorithm: "HS512",
                min: 64,
                got: 40
            }
        );
        assert_eq!(
            SigningKeys::new(
                Algorithm::HS256,
                b"-----BEGIN PUBLIC KEY-----\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                None
            )
            .unwrap_err(),
            KeyError::PemAsHmacSecret("HS256")
        );
        assert!(SigningKeys::new(Algorithm::HS256, &[b'k'; 32], None).is_ok());
        let secret = SigningKeys::generate_hmac_secret().unwrap();
        assert_eq!(secret.len(), 86);
        assert_ne!(secret, SigningKeys::generate_hmac_secret().unwrap());
    }

    #[test]
    fn algorithm_names_round_trip() {
        for name in SUPPORTED_ALGORITHMS {
            assert_eq!(algorithm_name(parse_algorithm(name).unwrap()), *name);
        }
        assert_eq!(
            parse_algorithm("none").unwrap_err(),
            KeyError::UnknownAlgorithm("none".to_owned())
        );
        assert!(parse_algorithm("hs256").is_err());
    }

    #[test]
    fn asymmetric_garbage_is_refused_with_the_reason() {
        let err = SigningKeys::new(Algorithm::ES256, b"not a pem", None).unwrap_err();
        assert!(
            matches!(
                err,
                KeyError::BadPrivateKey {
                    algorithm: "ES256",
                    ..
                }
            ),
            "{err}"
        );
    }
}
