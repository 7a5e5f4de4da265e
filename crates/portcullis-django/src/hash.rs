//! [`DjangoHash`]: a stored `auth_user.password` value, parsed.
//!
//! The dispatch mirrors Django's `identify_hasher`: bare 32-character values and `md5$$` are
//! unsalted MD5, `sha1$$` is unsalted SHA-1, `!…` is an unusable password, and everything else
//! is chosen by the text before the first `$`.

use crate::formats::argon2::Argon2Hash;
use crate::formats::bcrypt::{BcryptHash, Prehash};
use crate::formats::digest::{Kind, SaltedDigestHash, UnsaltedDigestHash};
use crate::formats::pbkdf2::{Pbkdf2Hash, Prf};
use crate::formats::scrypt::ScryptHash;
use crate::{CostLimits, HashError};

/// What a stored Django `auth_user.password` value says.
///
/// Made only by [`DjangoHash::parse`], which has already checked the format and the costs, so
/// [`DjangoHash::verify`] does bounded work. `Debug` shows parameters but never salts' bytes
/// or digests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DjangoHash {
    /// `pbkdf2_sha256$<iterations>$<salt>$<b64>`: Django's default hasher.
    Pbkdf2Sha256(Pbkdf2Hash),
    /// `pbkdf2_sha1$<iterations>$<salt>$<b64>`.
    Pbkdf2Sha1(Pbkdf2Hash),
    /// `argon2$argon2id$v=19$m=…,t=…,p=…$<salt>$<hash>`, also argon2i/argon2d and `v=`-less.
    Argon2(Argon2Hash),
    /// `bcrypt_sha256$$2b$<cost>$…`: bcrypt of the SHA-256 hex of the password.
    BcryptSha256(BcryptHash),
    /// `bcrypt$$2b$<cost>$…`: bcrypt of the password (first 72 bytes).
    Bcrypt(BcryptHash),
    /// `scrypt$<N>$<salt>$<r>$<p>$<b64>` (Django 4.0+).
    Scrypt(ScryptHash),
    /// `md5$<salt>$<hex>`: salted MD5.
    Md5(SaltedDigestHash),
    /// `sha1$<salt>$<hex>`: salted SHA-1 (removed from Django in 5.1).
    Sha1(SaltedDigestHash),
    /// 32 lowercase hex digits, or `md5$$<hex>`: unsalted MD5 (removed from Django in 5.1).
    UnsaltedMd5(UnsaltedDigestHash),
    /// `sha1$$<hex>`: unsalted SHA-1 (removed from Django in 5.1).
    UnsaltedSha1(UnsaltedDigestHash),
    /// `!…` (`set_unusable_password`) or the empty string: no password matches.
    Unusable,
}

/// Django's `UNUSABLE_PASSWORD_PREFIX`.
const UNUSABLE_PREFIX: char = '!';

impl DjangoHash {
    /// Parses a stored `auth_user.password` value, checking every cost against `limits`.
    ///
    /// Fails with [`HashError::Unsupported`] for an unknown algorithm prefix and for Django's
    /// `crypt` hasher (`crypt$$…`, the platform's crypt(3), usually DES: there is no
    /// maintained pure-Rust implementation, see the message), with
    /// [`HashError::CostTooHigh`] for costs above `limits`, and with [`HashError::Malformed`]
    /// for anything Django could not have written.
    pub fn parse(encoded: &str, limits: &CostLimits) -> Result<DjangoHash, HashError> {
        if encoded.is_empty() || encoded.starts_with(UNUSABLE_PREFIX) {
            return Ok(DjangoHash::Unusable);
        }
        // identify_hasher: "Ancient versions of Django created plain MD5 passwords and
        // accepted MD5 passwords with an empty salt."
        if !encoded.contains('$') {
            if encoded.len() == 32 {
                return UnsaltedDigestHash::parse(encoded, Kind::Md5).map(DjangoHash::UnsaltedMd5);
            }
            return Err(HashError::Malformed(
                "no algorithm prefix (no '$' in the value)",
            ));
        }
        if let Some(hex) = encoded.strip_prefix("md5$$") {
            return UnsaltedDigestHash::parse(hex, Kind::Md5).map(DjangoHash::UnsaltedMd5);
        }
        if let Some(hex) = encoded.strip_prefix("sha1$$") {
            return UnsaltedDigestHash::parse(hex, Kind::Sha1).map(DjangoHash::UnsaltedSha1);
        }
        let (algorithm, rest) = encoded.split_once('$').ok_or(HashError::Malformed(
            "no algorithm prefix (no '$' in the value)",
        ))?;
        match algorithm {
            "" => Err(HashError::Malformed("empty algorithm prefix")),
            "pbkdf2_sha256" => {
                Pbkdf2Hash::parse(rest, Prf::Sha256, limits).map(DjangoHash::Pbkdf2Sha256)
            }
            "pbkdf2_sha1" => Pbkdf2Hash::parse(rest, Prf::Sha1, limits).map(DjangoHash::Pbkdf2Sha1),
            "argon2" => Argon2Hash::parse(rest, limits).map(DjangoHash::Argon2),
            "bcrypt_sha256" => {
                BcryptHash::parse(rest, Prehash::Sha256Hex, limits).map(DjangoHash::BcryptSha256)
            }
            "bcrypt" => BcryptHash::parse(rest, Prehash::None, limits).map(DjangoHash::Bcrypt),
            "scrypt" => ScryptHash::parse(rest, limits).map(DjangoHash::Scrypt),
            "md5" => SaltedDigestHash::parse(rest, Kind::Md5).map(DjangoHash::Md5),
            "sha1" => SaltedDigestHash::parse(rest, Kind::Sha1).map(DjangoHash::Sha1),
            "crypt" => Err(HashError::Unsupported(
                "crypt (Django's CryptPasswordHasher, removed in Django 5.0, stored the host's \
                 crypt(3) output, usually DES; no maintained pure-Rust crypt(3) exists, so these \
                 users must reset their passwords)"
                    .to_owned(),
            )),
            other => Err(HashError::Unsupported(describe_unknown(other))),
        }
    }

    /// Django's name for the algorithm (`"pbkdf2_sha256"`, `"argon2"`, `"unsalted_md5"`, …),
    /// or `"unusable"` for [`DjangoHash::Unusable`]. Suitable for metrics labels.
    #[must_use]
    pub fn algorithm(&self) -> &'static str {
        match self {
            DjangoHash::Pbkdf2Sha256(_) => "pbkdf2_sha256",
            DjangoHash::Pbkdf2Sha1(_) => "pbkdf2_sha1",
            DjangoHash::Argon2(_) => "argon2",
            DjangoHash::BcryptSha256(_) => "bcrypt_sha256",
            DjangoHash::Bcrypt(_) => "bcrypt",
            DjangoHash::Scrypt(_) => "scrypt",
            DjangoHash::Md5(_) => "md5",
            DjangoHash::Sha1(_) => "sha1",
            DjangoHash::UnsaltedMd5(_) => "unsalted_md5",
            DjangoHash::UnsaltedSha1(_) => "unsalted_sha1",
            DjangoHash::Unusable => "unusable",
        }
    }

    /// Checks `password` (hashed as its UTF-8 bytes, like Django) against this hash, with a
    /// constant-time comparison. [`DjangoHash::Unusable`] never matches.
    ///
    /// CPU-bound for the slow hashers: run it off the async runtime. An error here means the
    /// underlying primitive refused parameters that parsing accepted, which should not happen.
    pub fn verify(&self, password: &str) -> Result<bool, HashError> {
        Ok(match self {
            DjangoHash::Pbkdf2Sha256(h) | DjangoHash::Pbkdf2Sha1(h) => h.verify(password),
            DjangoHash::Argon2(h) => h.verify(password)?,
            DjangoHash::BcryptSha256(h) | DjangoHash::Bcrypt(h) => h.verify(password)?,
            DjangoHash::Scrypt(h) => h.verify(password)?,
            DjangoHash::Md5(h) | DjangoHash::Sha1(h) => h.verify(password),
            DjangoHash::UnsaltedMd5(h) | DjangoHash::UnsaltedSha1(h) => h.verify(password),
            DjangoHash::Unusable => false,
        })
    }
}

/// Names an unknown prefix only when it looks like an algorithm name: a value such as
/// `hunter2$x` may be a plaintext password stored by mistake, and this message is logged.
fn describe_unknown(prefix: &str) -> String {
    let looks_like_name = !prefix.is_empty()
        && prefix.len() <= 32
        && prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if looks_like_name {
        format!("unknown algorithm prefix {prefix:?}")
    } else {
        "unknown algorithm prefix (not shown: it does not look like an algorithm name)".to_owned()
    }
}
