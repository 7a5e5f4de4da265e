//! `pbkdf2_sha256$<iterations>$<salt>$<b64hash>` and `pbkdf2_sha1$…` (Django's default hasher
//! and its SHA-1 sibling).
//!
//! Django: `base64.b64encode(pbkdf2_hmac(digest, password_utf8, salt_utf8, iterations))`, with
//! the digest's own size as the key length (32 bytes for SHA-256, 20 for SHA-1), standard
//! alphabet, padded. The salt is used as its UTF-8 text, never base64-decoded.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha1::Sha1;
use sha2::Sha256;

use crate::util::{Opaque, canonical_u32, check_cost, ct_eq};
use crate::{CostLimits, HashError};

/// Which PRF a PBKDF2 hash uses; fixes the key length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Prf {
    /// HMAC-SHA256, 32-byte key (`pbkdf2_sha256`).
    Sha256,
    /// HMAC-SHA1, 20-byte key (`pbkdf2_sha1`).
    Sha1,
}

impl Prf {
    const fn algorithm(self) -> &'static str {
        match self {
            Prf::Sha256 => "pbkdf2_sha256",
            Prf::Sha1 => "pbkdf2_sha1",
        }
    }

    const fn key_len(self) -> usize {
        match self {
            Prf::Sha256 => 32,
            Prf::Sha1 => 20,
        }
    }
}

/// A parsed `pbkdf2_sha256` or `pbkdf2_sha1` hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pbkdf2Hash {
    prf: Prf,
    iterations: u32,
    salt: String,
    hash: Opaque<Vec<u8>>,
}

impl Pbkdf2Hash {
    /// Parses what follows `pbkdf2_sha256$` / `pbkdf2_sha1$`.
    pub(crate) fn parse(rest: &str, prf: Prf, limits: &CostLimits) -> Result<Self, HashError> {
        // Django: `algorithm, iterations, salt, hash = encoded.split("$", 3)`.
        let mut fields = rest.splitn(3, '$');
        let (Some(iterations), Some(salt), Some(hash)) =
            (fields.next(), fields.next(), fields.next())
        else {
            return Err(HashError::Malformed(
                "pbkdf2: expected <iterations>$<salt>$<hash>",
            ));
        };
        let iterations = canonical_u32(iterations, "pbkdf2: iterations is not a decimal number")?;
        if iterations == 0 {
            return Err(HashError::Malformed(
                "pbkdf2: iterations must be at least 1",
            ));
        }
        check_cost(
            prf.algorithm(),
            "iterations",
            u64::from(iterations),
            u64::from(limits.max_pbkdf2_iterations),
        )?;
        // Django refuses to encode with an empty salt (`_check_encode_args`).
        if salt.is_empty() {
            return Err(HashError::Malformed("pbkdf2: empty salt"));
        }
        // Cheap length check first: the encoded key has a fixed length.
        if hash.len() != prf.key_len().div_ceil(3) * 4 {
            return Err(HashError::Malformed("pbkdf2: hash has the wrong length"));
        }
        let hash = STANDARD
            .decode(hash)
            .map_err(|_| HashError::Malformed("pbkdf2: hash is not standard padded base64"))?;
        if hash.len() != prf.key_len() {
            return Err(HashError::Malformed("pbkdf2: hash has the wrong length"));
        }
        Ok(Self {
            prf,
            iterations,
            salt: salt.to_owned(),
            hash: Opaque(hash),
        })
    }

    /// The iteration count stored in the hash.
    #[must_use]
    pub fn iterations(&self) -> u32 {
        self.iterations
    }

    pub(crate) fn verify(&self, password: &str) -> bool {
        let (pw, salt) = (password.as_bytes(), self.salt.as_bytes());
        match self.prf {
            Prf::Sha256 => {
                let key = pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(pw, salt, self.iterations);
                ct_eq(&key, &self.hash.0)
            }
            Prf::Sha1 => {
                let key = pbkdf2::pbkdf2_hmac_array::<Sha1, 20>(pw, salt, self.iterations);
                ct_eq(&key, &self.hash.0)
            }
        }
    }
}
