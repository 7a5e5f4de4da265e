//! Django password-hash strings (`portcullis import django` reads them from
//! another database): parsing never panics, and verification with small
//! cost caps never panics nor runs away.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_django::{CostLimits, DjangoHash, verify};

/// Caps low enough that the fuzzer spends its time on parsing, not hashing.
const LIMITS: CostLimits = CostLimits {
    max_pbkdf2_iterations: 1_000,
    max_argon2_memory_kib: 256,
    max_argon2_time: 2,
    max_argon2_lanes: 2,
    max_bcrypt_cost: 5,
    max_scrypt_log_n: 8,
    max_scrypt_r: 8,
    max_scrypt_p: 1,
    max_scrypt_memory_kib: 1024,
};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (password, encoded) = text.split_once('\n').unwrap_or(("password", text));
    let _ = DjangoHash::parse(encoded, &LIMITS);
    let _ = verify(password, encoded, &LIMITS);
});
