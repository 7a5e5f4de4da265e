//! Upper bounds on the work a stored hash may ask for.
//!
//! Every tunable Django hasher stores its cost in the hash itself, so a row written by an
//! attacker (or a corrupted import) could ask for a billion PBKDF2 iterations or 4 GiB of Argon2
//! memory. Parsing compares each cost with these limits before any hashing starts.

/// The most work a stored hash may ask for; above it parsing fails with
/// [`crate::HashError::CostTooHigh`] and nothing is hashed.
///
/// [`CostLimits::default`] accepts every default Django has shipped, with headroom for
/// deployments that raised them; see each field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CostLimits {
    /// Most PBKDF2 iterations (`pbkdf2_sha256`, `pbkdf2_sha1`). Default 10,000,000: Django 5.2
    /// uses 1,000,000 and 6.0 uses 1,200,000, so this leaves room for a few more releases and
    /// for sites that raised the count, while capping a hostile row at a few seconds of CPU.
    pub max_pbkdf2_iterations: u32,
    /// Most Argon2 memory, in KiB (the PHC `m=`). Default 1,048,576 (1 GiB): ten times
    /// Django's default of 102,400 KiB (100 MiB); RFC 9106's second recommended setting
    /// (64 MiB) fits too. Its first setting (2 GiB) does not: raise this if you used it.
    pub max_argon2_memory_kib: u32,
    /// Most Argon2 passes (the PHC `t=`). Default 10: Django uses 2 (3.2+ and before), RFC
    /// 9106 recommends 1 or 3, OWASP's lower-memory settings go up to 5.
    pub max_argon2_time: u32,
    /// Most Argon2 lanes (the PHC `p=`). Default 64: Django uses 8 (2 before 3.2). Lanes do
    /// not add work on their own (memory is split between them), so this limit is loose.
    pub max_argon2_lanes: u32,
    /// Highest bcrypt cost (log2 of the rounds). Default 16: Django uses 12, and each step
    /// doubles the time (16 is about 16 times Django's default).
    pub max_bcrypt_cost: u32,
    /// Largest scrypt `N`, as log2. Default 16 (N = 65,536): Django uses N = 2^14.
    pub max_scrypt_log_n: u8,
    /// Largest scrypt block size `r`. Default 16: Django uses 8.
    pub max_scrypt_r: u32,
    /// Largest scrypt parallelism `p`. Default 8: Django uses 5 (5.1+) or 1 (4.0–5.0). Each
    /// lane repeats the whole memory-hard mix (one after the other here), so `p` multiplies
    /// the time, not the memory.
    pub max_scrypt_p: u32,
    /// Most scrypt memory for one verification, in KiB: scrypt needs 128·N·r bytes.
    /// Default 65,536 (64 MiB). Django's default (N = 2^14, r = 8) needs 16 MiB, and Django
    /// itself cannot go past 32 MiB without a custom hasher: it calls Python's
    /// `hashlib.scrypt` with `maxmem = 0`, which means OpenSSL's 32 MiB ceiling. So 64 MiB
    /// accepts anything a stock Django could have verified, twice over, while the N and r
    /// limits alone would allow 128 MiB (2^16 · 16 · 128 bytes). Together with `p` the worst
    /// accepted row costs about 13 times Django's default (2^16 · 8 · 8 against
    /// 2^14 · 8 · 5).
    pub max_scrypt_memory_kib: u32,
}

impl Default for CostLimits {
    fn default() -> Self {
        Self {
            max_pbkdf2_iterations: 10_000_000,
            max_argon2_memory_kib: 1024 * 1024,
            max_argon2_time: 10,
            max_argon2_lanes: 64,
            max_bcrypt_cost: 16,
            max_scrypt_log_n: 16,
            max_scrypt_r: 16,
            max_scrypt_p: 8,
            max_scrypt_memory_kib: 64 * 1024,
        }
    }
}
