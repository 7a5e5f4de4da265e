//! `scrypt$<N>$<salt>$<r>$<p>$<b64hash>` (Django 4.0+).
//!
//! Django: `hashlib.scrypt(password_utf8, salt=salt_utf8, n=N, r=r, p=p, dklen=64)`, standard
//! base64, padded. Defaults N = 2^14, r = 8, p = 1 (4.0–5.0) or p = 5 (5.1+).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::util::{Opaque, canonical_u32, check_cost, ct_eq};
use crate::{CostLimits, HashError};

/// Django always derives 64 bytes.
const KEY_LEN: usize = 64;
const ALGORITHM: &str = "scrypt";

/// A parsed `scrypt` hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScryptHash {
    log_n: u8,
    r: u32,
    p: u32,
    salt: String,
    hash: Opaque<[u8; KEY_LEN]>,
}

impl ScryptHash {
    /// Parses what follows `scrypt$`.
    pub(crate) fn parse(rest: &str, limits: &CostLimits) -> Result<Self, HashError> {
        // Django: `algorithm, work_factor, salt, block_size, parallelism, hash_ = encoded.split("$", 6)`,
        // which fails on a seventh field.
        let fields: Vec<&str> = rest.split('$').collect();
        let [n, salt, r, p, hash] = fields.as_slice() else {
            return Err(HashError::Malformed(
                "scrypt: expected <N>$<salt>$<r>$<p>$<hash>",
            ));
        };
        let n = canonical_u32(n, "scrypt: N is not a decimal number")?;
        // hashlib.scrypt: "n must be a power of 2 greater than 1".
        if n < 2 || !n.is_power_of_two() {
            return Err(HashError::Malformed(
                "scrypt: N must be a power of 2 greater than 1",
            ));
        }
        let limit_n = 1u64
            .checked_shl(limits.max_scrypt_log_n.into())
            .unwrap_or(u64::MAX);
        check_cost(ALGORITHM, "N (work factor)", n.into(), limit_n)?;
        let r = canonical_u32(r, "scrypt: r is not a decimal number")?;
        let p = canonical_u32(p, "scrypt: p is not a decimal number")?;
        check_cost(
            ALGORITHM,
            "r (block size)",
            r.into(),
            limits.max_scrypt_r.into(),
        )?;
        check_cost(
            ALGORITHM,
            "p (parallelism)",
            p.into(),
            limits.max_scrypt_p.into(),
        )?;
        // scrypt's V array is 128·N·r bytes; N ≤ 2^31 and r < 2^32, so this fits a u64.
        check_cost(
            ALGORITHM,
            "memory (KiB)",
            u64::from(n) * u64::from(r) / 8,
            limits.max_scrypt_memory_kib.into(),
        )?;
        // n is a power of two in u32, so this is at most 31.
        let log_n = u8::try_from(n.trailing_zeros())
            .map_err(|_| HashError::Malformed("scrypt: N out of range"))?;
        // Validates r ≥ 1, p ≥ 1 and p·r ≤ 2^30 - 1, so verify cannot fail on them.
        scrypt::Params::new(log_n, r, p)
            .map_err(|_| HashError::Malformed("scrypt: parameters out of scrypt's range"))?;
        if salt.is_empty() {
            return Err(HashError::Malformed("scrypt: empty salt"));
        }
        if hash.len() != KEY_LEN.div_ceil(3) * 4 {
            return Err(HashError::Malformed("scrypt: hash has the wrong length"));
        }
        let key: [u8; KEY_LEN] = STANDARD
            .decode(hash)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or(HashError::Malformed(
                "scrypt: hash is not 64 bytes of padded base64",
            ))?;
        Ok(Self {
            log_n,
            r,
            p,
            salt: (*salt).to_owned(),
            hash: Opaque(key),
        })
    }

    /// log2 of the work factor N.
    #[must_use]
    pub fn log_n(&self) -> u8 {
        self.log_n
    }

    /// Block size r.
    #[must_use]
    pub fn r(&self) -> u32 {
        self.r
    }

    /// Parallelism p.
    #[must_use]
    pub fn p(&self) -> u32 {
        self.p
    }

    pub(crate) fn verify(&self, password: &str) -> Result<bool, HashError> {
        let params = scrypt::Params::new(self.log_n, self.r, self.p)
            .map_err(|_| HashError::Malformed("scrypt: parameters out of scrypt's range"))?;
        let mut key = [0u8; KEY_LEN];
        scrypt::scrypt(password.as_bytes(), self.salt.as_bytes(), &params, &mut key)
            .map_err(|_| HashError::Malformed("scrypt: invalid output length"))?;
        Ok(ct_eq(&key, &self.hash.0))
    }
}
