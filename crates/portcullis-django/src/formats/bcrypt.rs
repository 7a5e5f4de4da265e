//! `bcrypt_sha256$$2b$12$<22-char salt><31-char hash>` and `bcrypt$$2b$12$…`.
//!
//! Django hands the part after its prefix (a standard 60-character modular-crypt bcrypt string)
//! to pyca/bcrypt, re-hashes the password with that salt and cost, and compares the whole
//! string. pyca/bcrypt is itself built on the `bcrypt` crate used here, so truncation at 72
//! bytes and the `$2a$`/`$2b$`/`$2x$`/`$2y$` prefixes behave the same. `bcrypt_sha256` first
//! replaces the password by the lowercase hex of its SHA-256 (64 ASCII bytes), which lifts the
//! 72-byte limit.
//!
//! Passwords longer than 72 bytes under plain `bcrypt` are truncated, as every bcrypt before
//! pyca/bcrypt 5.0 did when the hash was made (pyca/bcrypt 5.0 raises `ValueError` instead, so
//! Django with it errors on such a login rather than answering).
//!
//! The string is parsed here, not by `bcrypt::verify`, so that the cost is checked against
//! [`CostLimits`] before hashing and a malformed row is an error rather than a panic
//! (RUSTSEC-2026-0199 affected `bcrypt::verify` before 0.19.2).

use base64::Engine as _;
use base64::alphabet::BCRYPT;
use base64::engine::general_purpose::{GeneralPurpose, NO_PAD};
use sha2::{Digest as _, Sha256};

use crate::util::{Opaque, check_cost, ct_eq};
use crate::{CostLimits, HashError};

/// bcrypt's own base64 (`./A-Za-z0-9`), unpadded, canonical trailing bits only.
const BCRYPT_B64: GeneralPurpose = GeneralPurpose::new(&BCRYPT, NO_PAD);
const MODULAR_CRYPT_LEN: usize = 60;

/// The bcrypt revision in the hash's `$2?$` prefix. All four hash identically here (as in
/// pyca/bcrypt); the prefix is kept so the re-encoded string matches the stored one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BcryptVersion {
    /// `$2a$`: written by older bcrypt libraries.
    TwoA,
    /// `$2b$`: what Django writes today.
    TwoB,
    /// `$2x$`: `crypt_blowfish`'s marker for its old sign-extension bug hashes.
    TwoX,
    /// `$2y$`: `crypt_blowfish`'s (PHP's) marker for correct hashes.
    TwoY,
}

/// Whether the password is pre-hashed with SHA-256 (`bcrypt_sha256`) or not (`bcrypt`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Prehash {
    /// `bcrypt_sha256`: bcrypt of `hex(sha256(password))`.
    Sha256Hex,
    /// `bcrypt`: bcrypt of the password itself.
    None,
}

/// A parsed `bcrypt_sha256` or `bcrypt` hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BcryptHash {
    prehash: Prehash,
    version: BcryptVersion,
    cost: u32,
    salt: Opaque<[u8; 16]>,
    /// The full modular-crypt string (`$2b$12$…`, 60 ASCII characters).
    encoded: Opaque<String>,
}

impl BcryptHash {
    /// Parses what follows `bcrypt_sha256$` or `bcrypt$`: exactly `$2?$NN$` + 53 characters.
    pub(crate) fn parse(
        rest: &str,
        prehash: Prehash,
        limits: &CostLimits,
    ) -> Result<Self, HashError> {
        let algorithm = match prehash {
            Prehash::Sha256Hex => "bcrypt_sha256",
            Prehash::None => "bcrypt",
        };
        let bytes = rest.as_bytes();
        // Index-free: a hostile row may be any length and any bytes (RUSTSEC-2026-0199 was a
        // panic on exactly that).
        let (Some(prefix), Some(cost), Some(sep), Some(salt), Some(hash)) = (
            bytes.get(..4),
            bytes.get(4..6),
            bytes.get(6..7),
            rest.get(7..29),
            rest.get(29..),
        ) else {
            return Err(HashError::Malformed(
                "bcrypt: expected $2b$<cost>$<53 characters>",
            ));
        };
        if bytes.len() != MODULAR_CRYPT_LEN || sep != b"$" {
            return Err(HashError::Malformed(
                "bcrypt: expected $2b$<cost>$<53 characters>",
            ));
        }
        let version = match prefix {
            b"$2a$" => BcryptVersion::TwoA,
            b"$2b$" => BcryptVersion::TwoB,
            b"$2x$" => BcryptVersion::TwoX,
            b"$2y$" => BcryptVersion::TwoY,
            _ => {
                return Err(HashError::Malformed(
                    "bcrypt: prefix must be $2a$, $2b$, $2x$ or $2y$",
                ));
            }
        };
        let cost = match cost {
            [t @ b'0'..=b'9', u @ b'0'..=b'9'] => u32::from(t - b'0') * 10 + u32::from(u - b'0'),
            _ => {
                return Err(HashError::Malformed(
                    "bcrypt: cost must be two decimal digits",
                ));
            }
        };
        check_cost(
            algorithm,
            "cost",
            cost.into(),
            limits.max_bcrypt_cost.into(),
        )?;
        if !(4..=31).contains(&cost) {
            return Err(HashError::Malformed(
                "bcrypt: cost must be between 04 and 31",
            ));
        }
        let salt: [u8; 16] = BCRYPT_B64
            .decode(salt)
            .ok()
            .and_then(|s| s.try_into().ok())
            .ok_or(HashError::Malformed(
                "bcrypt: salt is not 22 characters of bcrypt base64",
            ))?;
        // The checksum is only compared as text, but a row that is not bcrypt base64 can
        // never match: say so instead of hashing.
        match BCRYPT_B64.decode(hash) {
            Ok(h) if h.len() == 23 => {}
            _ => {
                return Err(HashError::Malformed(
                    "bcrypt: hash is not 31 characters of bcrypt base64",
                ));
            }
        }
        Ok(Self {
            prehash,
            version,
            cost,
            salt: Opaque(salt),
            encoded: Opaque(rest.to_owned()),
        })
    }

    /// The bcrypt revision prefix.
    #[must_use]
    pub fn version(&self) -> BcryptVersion {
        self.version
    }

    /// The cost (log2 of the number of rounds).
    #[must_use]
    pub fn cost(&self) -> u32 {
        self.cost
    }

    pub(crate) fn verify(&self, password: &str) -> Result<bool, HashError> {
        let version = match self.version {
            BcryptVersion::TwoA => bcrypt::Version::TwoA,
            BcryptVersion::TwoB => bcrypt::Version::TwoB,
            BcryptVersion::TwoX => bcrypt::Version::TwoX,
            BcryptVersion::TwoY => bcrypt::Version::TwoY,
        };
        let parts = match self.prehash {
            Prehash::Sha256Hex => {
                // Django: `binascii.hexlify(hashlib.sha256(password.encode()).digest())`.
                let mut hex = [0_u8; 64];
                hex::encode_to_slice(Sha256::digest(password.as_bytes()), &mut hex)
                    .map_err(|_| HashError::Malformed("bcrypt: SHA-256 digest is not 32 bytes"))?;
                bcrypt::hash_with_salt(hex, self.cost, self.salt.0)
            }
            Prehash::None => bcrypt::hash_with_salt(password.as_bytes(), self.cost, self.salt.0),
        }
        .map_err(|_| HashError::Malformed("bcrypt: parameters rejected by bcrypt"))?;
        // Django compares the whole re-encoded string, as we do.
        let derived = parts.format_for_version(version);
        Ok(ct_eq(derived.as_bytes(), self.encoded.0.as_bytes()))
    }
}
