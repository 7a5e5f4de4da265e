//! `argon2$argon2id$v=19$m=102400,t=2,p=8$<b64salt>$<b64hash>` (Django 3.2+), the older
//! `argon2$argon2i$v=19$m=512,t=2,p=2$…`, and very old hashes without `v=`.
//!
//! After the `argon2` prefix comes a PHC string that Django hands to argon2-cffi, i.e. to the
//! reference libargon2 decoder. We parse it by hand rather than with the `argon2` crate's PHC
//! parser so that the rules are libargon2's: a missing `v=` means version 0x10 (the crate would
//! default to 0x13), the fields come in exactly the order `m=,t=,p=`, salt and hash are
//! unpadded standard base64, and the hash length is whatever the stored hash decodes to
//! (32 bytes from argon2-cffi ≥ 21.2, 16 from older releases).

use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;

use crate::util::{Opaque, check_cost, ct_eq, digits_u32};
use crate::{CostLimits, HashError};

/// The Argon2 variant named in the hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Argon2Variant {
    /// `argon2id`: Django's choice since 3.2.
    Argon2id,
    /// `argon2i`: Django before 3.2.
    Argon2i,
    /// `argon2d`: never written by Django, but its verifier (argon2-cffi) accepts it.
    Argon2d,
}

/// The Argon2 version named in the hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Argon2Version {
    /// 0x10 (`v=16`, or no `v=` field at all).
    V0x10,
    /// 0x13 (`v=19`), the current version.
    V0x13,
}

/// A parsed `argon2` hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Argon2Hash {
    variant: Argon2Variant,
    version: Argon2Version,
    memory_kib: u32,
    time: u32,
    lanes: u32,
    salt: Opaque<Vec<u8>>,
    hash: Opaque<Vec<u8>>,
}

const ALGORITHM: &str = "argon2";

impl Argon2Hash {
    /// Parses what follows `argon2$` (a PHC string without its leading `$`).
    pub(crate) fn parse(rest: &str, limits: &CostLimits) -> Result<Self, HashError> {
        let fields: Vec<&str> = rest.split('$').collect();
        let (variant, version, params, salt, hash) = match fields.as_slice() {
            [variant, version, params, salt, hash] => {
                (*variant, Some(*version), *params, *salt, *hash)
            }
            [variant, params, salt, hash] => (*variant, None, *params, *salt, *hash),
            _ => {
                return Err(HashError::Malformed(
                    "argon2: expected <variant>$[v=<version>$]m=<m>,t=<t>,p=<p>$<salt>$<hash>",
                ));
            }
        };
        let variant = match variant {
            "argon2id" => Argon2Variant::Argon2id,
            "argon2i" => Argon2Variant::Argon2i,
            "argon2d" => Argon2Variant::Argon2d,
            _ => return Err(HashError::Malformed("argon2: unknown variant")),
        };
        let version = match version {
            None => Argon2Version::V0x10,
            Some(v) => match v
                .strip_prefix("v=")
                .map(|n| digits_u32(n, "argon2: bad version"))
            {
                Some(Ok(0x13)) => Argon2Version::V0x13,
                Some(Ok(0x10)) => Argon2Version::V0x10,
                _ => return Err(HashError::Malformed("argon2: version must be v=19 or v=16")),
            },
        };
        let (memory_kib, time, lanes) = parse_params(params)?;
        check_cost(
            ALGORITHM,
            "memory (KiB)",
            memory_kib.into(),
            limits.max_argon2_memory_kib.into(),
        )?;
        check_cost(
            ALGORITHM,
            "time (passes)",
            time.into(),
            limits.max_argon2_time.into(),
        )?;
        check_cost(
            ALGORITHM,
            "lanes",
            lanes.into(),
            limits.max_argon2_lanes.into(),
        )?;

        let salt = STANDARD_NO_PAD
            .decode(salt)
            .map_err(|_| HashError::Malformed("argon2: salt is not unpadded base64"))?;
        let hash = STANDARD_NO_PAD
            .decode(hash)
            .map_err(|_| HashError::Malformed("argon2: hash is not unpadded base64"))?;
        if salt.len() < argon2::MIN_SALT_LEN {
            return Err(HashError::Malformed("argon2: salt shorter than 8 bytes"));
        }
        // Validates m ≥ 8·p, t ≥ 1, 1 ≤ p < 2^24 and the output length, so that verify
        // cannot fail later on these grounds.
        params_for(memory_kib, time, lanes, hash.len())?;
        Ok(Self {
            variant,
            version,
            memory_kib,
            time,
            lanes,
            salt: Opaque(salt),
            hash: Opaque(hash),
        })
    }

    /// The variant: argon2id, argon2i or argon2d.
    #[must_use]
    pub fn variant(&self) -> Argon2Variant {
        self.variant
    }

    /// The version: 0x13, or 0x10 for `v=16` and version-less hashes.
    #[must_use]
    pub fn version(&self) -> Argon2Version {
        self.version
    }

    /// Memory cost in KiB (PHC `m=`).
    #[must_use]
    pub fn memory_kib(&self) -> u32 {
        self.memory_kib
    }

    /// Number of passes (PHC `t=`).
    #[must_use]
    pub fn time(&self) -> u32 {
        self.time
    }

    /// Degree of parallelism (PHC `p=`).
    #[must_use]
    pub fn lanes(&self) -> u32 {
        self.lanes
    }

    pub(crate) fn verify(&self, password: &str) -> Result<bool, HashError> {
        let algorithm = match self.variant {
            Argon2Variant::Argon2id => Algorithm::Argon2id,
            Argon2Variant::Argon2i => Algorithm::Argon2i,
            Argon2Variant::Argon2d => Algorithm::Argon2d,
        };
        let version = match self.version {
            Argon2Version::V0x10 => Version::V0x10,
            Argon2Version::V0x13 => Version::V0x13,
        };
        let params = params_for(self.memory_kib, self.time, self.lanes, self.hash.0.len())?;
        let mut out = vec![0u8; self.hash.0.len()];
        Argon2::new(algorithm, version, params)
            .hash_password_into(password.as_bytes(), &self.salt.0, &mut out)
            .map_err(|_| HashError::Malformed("argon2: parameters rejected by Argon2"))?;
        Ok(ct_eq(&out, &self.hash.0))
    }
}

/// `m=<m>,t=<t>,p=<p>`, in that order, as libargon2's `decode_string` requires.
fn parse_params(params: &str) -> Result<(u32, u32, u32), HashError> {
    const WHAT: &str = "argon2: parameters must be m=<memory>,t=<time>,p=<lanes>";
    let mut parts = params.split(',');
    let (Some(m), Some(t), Some(p), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HashError::Malformed(WHAT));
    };
    let field = |s: &str, key: &str| match s.strip_prefix(key) {
        Some(n) => digits_u32(n, WHAT),
        None => Err(HashError::Malformed(WHAT)),
    };
    Ok((field(m, "m=")?, field(t, "t=")?, field(p, "p=")?))
}

fn params_for(
    memory_kib: u32,
    time: u32,
    lanes: u32,
    hash_len: usize,
) -> Result<Params, HashError> {
    Params::new(memory_kib, time, lanes, Some(hash_len))
        .map_err(|_| HashError::Malformed("argon2: parameters out of Argon2's range"))
}
