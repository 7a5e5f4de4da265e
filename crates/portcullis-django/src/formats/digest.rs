//! The plain-digest hashers: salted `md5$<salt>$<hex>` (Django's test hasher, still verified)
//! and the legacy `sha1$<salt>$<hex>`, unsalted MD5 (32 bare hex digits or `md5$$<hex>`) and
//! unsalted SHA-1 (`sha1$$<hex>`).
//!
//! Django removed the SHA-1 and unsalted hashers in 5.1, but rows written by them may still be
//! stored. Salted forms hash `salt_utf8 + password_utf8`; the digest is lowercase hex.

use md5::Md5;
use sha1::{Digest as _, Sha1};

use crate::HashError;
use crate::util::{Opaque, ct_eq, lower_hex};

/// Which digest a plain-digest hash uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// MD5, 16 bytes.
    Md5,
    /// SHA-1, 20 bytes.
    Sha1,
}

impl Kind {
    fn digest(self, salt: &[u8], password: &[u8]) -> Vec<u8> {
        match self {
            Kind::Md5 => Md5::new()
                .chain_update(salt)
                .chain_update(password)
                .finalize()
                .to_vec(),
            Kind::Sha1 => Sha1::new()
                .chain_update(salt)
                .chain_update(password)
                .finalize()
                .to_vec(),
        }
    }

    fn parse_hex(self, hex: &str) -> Result<Vec<u8>, HashError> {
        Ok(match self {
            Kind::Md5 => {
                lower_hex::<16>(hex, "md5: digest is not 32 lowercase hex digits")?.to_vec()
            }
            Kind::Sha1 => {
                lower_hex::<20>(hex, "sha1: digest is not 40 lowercase hex digits")?.to_vec()
            }
        })
    }
}

/// A parsed salted `md5` or `sha1` hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaltedDigestHash {
    kind: Kind,
    salt: String,
    digest: Opaque<Vec<u8>>,
}

impl SaltedDigestHash {
    /// Parses what follows `md5$` / `sha1$` (the unsalted `$$` forms are handled before).
    pub(crate) fn parse(rest: &str, kind: Kind) -> Result<Self, HashError> {
        // Django: `algorithm, salt, hash = encoded.split("$", 2)`.
        let Some((salt, hex)) = rest.split_once('$') else {
            return Err(HashError::Malformed(
                "md5/sha1: expected <salt>$<hexdigest>",
            ));
        };
        if salt.is_empty() {
            return Err(HashError::Malformed("md5/sha1: empty salt"));
        }
        Ok(Self {
            kind,
            salt: salt.to_owned(),
            digest: Opaque(kind.parse_hex(hex)?),
        })
    }

    pub(crate) fn verify(&self, password: &str) -> bool {
        let derived = self.kind.digest(self.salt.as_bytes(), password.as_bytes());
        ct_eq(&derived, &self.digest.0)
    }
}

/// A parsed `unsalted_md5` or `unsalted_sha1` hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsaltedDigestHash {
    kind: Kind,
    digest: Opaque<Vec<u8>>,
}

impl UnsaltedDigestHash {
    /// Parses the hex digest alone (prefix already removed).
    pub(crate) fn parse(hex: &str, kind: Kind) -> Result<Self, HashError> {
        Ok(Self {
            kind,
            digest: Opaque(kind.parse_hex(hex)?),
        })
    }

    pub(crate) fn verify(&self, password: &str) -> bool {
        let derived = self.kind.digest(b"", password.as_bytes());
        ct_eq(&derived, &self.digest.0)
    }
}
