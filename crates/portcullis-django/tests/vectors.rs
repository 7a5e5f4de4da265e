//! Integration tests for `portcullis-django`.
//!
//! Known answers only come from real Django: the reference vectors of simplejwt-5.5.1.md §8
//! (Django 5.2.19), and `tests/vectors/django-*.json`, written by
//! `tests/vectors/make_vectors.py` with Django 5.2 and 4.2 whose `check_password` decided each
//! `expected`. Nothing here recomputes a hash itself: a test that reimplements the code under
//! test proves nothing.
//!
//! The rest are the hostile-row properties: costs refused before work, malformed rows are
//! errors and never panics, unusable passwords never match.

// clippy.toml allows these inside `#[test]` functions only; the helpers below are test code too.
#![allow(
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use portcullis_django::{CostLimits, DjangoHash, HashError, needs_rehash, verify};
use proptest::prelude::*;
use serde::Deserialize;

fn defaults() -> CostLimits {
    CostLimits::default()
}

// ---- simplejwt-5.5.1.md §8 reference vectors (Django 5.2.19) ------------------------------

/// Password `password`, salt `seasalt1234567890abcde`.
const REFERENCE_PASSWORD: &[&str] = &[
    "pbkdf2_sha256$1000000$seasalt1234567890abcde$iJXqWb58pYVmtwDUMmjHYocr95POBFCKvDBnKmocqUU=",
    "pbkdf2_sha256$260000$seasalt1234567890abcde$I2WehpkXUMFZ+G4aVfMTStWMthDl6qThiw4pLtJbD38=",
    "scrypt$16384$seasalt1234567890abcde$8$5$4Obsn3McwAAFrXPc7NAXFXNV2D8hZC10npsRQ6YHB+zeaTA8c0hVaDIsjv5XvY3gH9j7dnvTz/TXOjODPVWsgw==",
    "argon2$argon2id$v=19$m=102400,t=2,p=8$c2Vhc2FsdDEyMzQ1Njc4OTBhYmNkZQ$nQ/875Voa4W7MYiY0wepjM1VWwhqVwe9hUCAhosjd5k",
    "md5$seasalt1234567890abcde$3359237fa834c79f497ce5e9f0f0c2f6",
];

/// Random-salt samples for `correct horse battery staple`.
const REFERENCE_HORSE: &[&str] = &[
    "pbkdf2_sha1$1000000$1WrCMjzk3BoDWdWomkzjWw$RvQBXMK65azo7jpfhJ/EV4gQ6pQ=",
    "bcrypt_sha256$$2b$12$rtgmhetkQFWQyMZ2SKIm9eK7ZTuE7rCfZmJrGeVJG7nXCfaInO9iy",
    "bcrypt$$2b$12$ERU0SKQJ0DwoxCLDTx9Zmu5jf0LdgfzFXBsLVWL30W/zPC.fbCcra",
];

#[test]
fn reference_vectors_verify_with_the_right_password_only() {
    for (password, rows) in [
        ("password", REFERENCE_PASSWORD),
        ("correct horse battery staple", REFERENCE_HORSE),
    ] {
        for row in rows {
            assert_eq!(verify(password, row, &defaults()), Ok(true), "{row}");
            assert_eq!(verify("Password", row, &defaults()), Ok(false), "{row}");
        }
    }
}

#[test]
fn reference_vectors_parse_to_the_right_variant() {
    let algorithms: Vec<&str> = REFERENCE_PASSWORD
        .iter()
        .chain(REFERENCE_HORSE)
        .map(|row| DjangoHash::parse(row, &defaults()).unwrap().algorithm())
        .collect();
    assert_eq!(
        algorithms,
        [
            "pbkdf2_sha256",
            "pbkdf2_sha256",
            "scrypt",
            "argon2",
            "md5",
            "pbkdf2_sha1",
            "bcrypt_sha256",
            "bcrypt"
        ]
    );
    let DjangoHash::Argon2(argon) = DjangoHash::parse(REFERENCE_PASSWORD[3], &defaults()).unwrap()
    else {
        panic!("not argon2");
    };
    assert_eq!(
        (argon.memory_kib(), argon.time(), argon.lanes()),
        (102_400, 2, 8)
    );
}

// ---- vectors generated with real Django (tests/vectors/make_vectors.py) ------------------

#[derive(Deserialize)]
struct VectorFile {
    django: String,
    vectors: Vec<Vector>,
}

#[derive(Deserialize)]
struct Vector {
    note: String,
    password: String,
    encoded: String,
    expected: bool,
}

fn load(name: &str) -> VectorFile {
    let path = format!("{}/tests/vectors/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Runs every vector of one file and returns the notes seen, so callers can assert coverage.
fn check_file(name: &str, expected_django: &str) -> Vec<String> {
    let file = load(name);
    assert!(file.django.starts_with(expected_django), "{}", file.django);
    let mut failures = Vec::new();
    for v in &file.vectors {
        let got = verify(&v.password, &v.encoded, &defaults());
        let ok = if v.note.starts_with("crypt") {
            matches!(got, Err(HashError::Unsupported(_)))
        } else {
            got == Ok(v.expected)
        };
        if !ok {
            failures.push(format!(
                "{} | {:?} | {} => {got:?}, Django said {}",
                v.note, v.password, v.encoded, v.expected
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    file.vectors.into_iter().map(|v| v.note).collect()
}

#[test]
fn django_5_2_vectors_agree_with_django() {
    let notes = check_file("django-5.2.json", "5.2");
    for family in [
        "pbkdf2_sha256",
        "pbkdf2_sha1",
        "argon2id",
        "argon2i 16-byte",
        "argon2i without v=",
        "argon2id v=16",
        "argon2d",
        "bcrypt_sha256 $2b$",
        "bcrypt_sha256 $2a$",
        "bcrypt $2b$",
        "bcrypt $2a$",
        "scrypt",
        "md5 salted",
        "unusable",
    ] {
        assert!(
            notes.iter().any(|n| n.starts_with(family)),
            "no {family} vector"
        );
    }
}

#[test]
fn django_4_2_legacy_vectors_agree_with_django() {
    let notes = check_file("django-4.2.json", "4.2");
    for family in [
        "sha1 salted",
        "unsalted_sha1",
        "unsalted_md5 (bare hex)",
        "unsalted_md5 (md5$$ form)",
        "crypt",
    ] {
        assert!(
            notes.iter().any(|n| n.starts_with(family)),
            "no {family} vector"
        );
    }
}

#[test]
fn generated_vectors_cover_awkward_passwords() {
    let file = load("django-5.2.json");
    for password in ["", "  leading and trailing spaces  ", "é", "🔑🦀 emoji"] {
        assert!(
            file.vectors
                .iter()
                .any(|v| v.password == password && v.expected),
            "no matching vector for {password:?}"
        );
    }
}

#[test]
fn passwords_are_not_normalised() {
    // Django hashes the exact UTF-8 bytes: no trimming, no Unicode normalisation.
    let file = load("django-5.2.json");
    let spaced = file
        .vectors
        .iter()
        .find(|v| v.password == "  leading and trailing spaces  " && v.note.starts_with("md5"))
        .unwrap();
    assert_eq!(
        verify("leading and trailing spaces", &spaced.encoded, &defaults()),
        Ok(false)
    );
    let accented = file
        .vectors
        .iter()
        .find(|v| v.password == "é" && v.note.starts_with("md5"))
        .unwrap();
    // "e" + U+0301 COMBINING ACUTE ACCENT renders like "é" (U+00E9) but is other bytes.
    assert_eq!(
        verify("e\u{301}", &accented.encoded, &defaults()),
        Ok(false)
    );
}

// ---- unusable passwords ------------------------------------------------------------------

#[test]
fn unusable_passwords_never_match() {
    let rows = [
        "",
        "!",
        "!Wq0v1n1PZ2oQ7sXhXk3nW2qkq3d1d6m0Jm7x1y2z",
        // An unusable marker in front of a real hash must not resurrect it.
        "!pbkdf2_sha256$260000$seasalt1234567890abcde$I2WehpkXUMFZ+G4aVfMTStWMthDl6qThiw4pLtJbD38=",
    ];
    for row in rows {
        assert_eq!(
            DjangoHash::parse(row, &defaults()),
            Ok(DjangoHash::Unusable)
        );
        for password in ["", "!", "password", row] {
            assert_eq!(verify(password, row, &defaults()), Ok(false), "{row:?}");
        }
    }
}

// ---- costs are refused before any work ---------------------------------------------------

/// `(algorithm, what, value, limit)` of a `CostTooHigh`.
type CostCase = (&'static str, &'static str, u64, u64);

fn cost_error(row: &str, limits: &CostLimits) -> CostCase {
    match DjangoHash::parse(row, limits) {
        Err(HashError::CostTooHigh {
            algorithm,
            what,
            value,
            limit,
        }) => (algorithm, what, value, limit),
        other => panic!("{row}: expected CostTooHigh, got {other:?}"),
    }
}

#[test]
fn cost_too_high_for_every_tunable_format() {
    // With the default limits: each of these would take minutes, or gigabytes, if hashed.
    let d = defaults();
    let cases: &[(&str, CostCase)] = &[
        (
            "pbkdf2_sha256$4000000000$seasalt1234567890abcde$iJXqWb58pYVmtwDUMmjHYocr95POBFCKvDBnKmocqUU=",
            ("pbkdf2_sha256", "iterations", 4_000_000_000, 10_000_000),
        ),
        (
            "pbkdf2_sha1$10000001$1WrCMjzk3BoDWdWomkzjWw$RvQBXMK65azo7jpfhJ/EV4gQ6pQ=",
            ("pbkdf2_sha1", "iterations", 10_000_001, 10_000_000),
        ),
        (
            "argon2$argon2id$v=19$m=4194304,t=2,p=8$c2Vhc2FsdDEyMzQ1Njc4OTBhYmNkZQ$nQ/875Voa4W7MYiY0wepjM1VWwhqVwe9hUCAhosjd5k",
            ("argon2", "memory (KiB)", 4_194_304, 1_048_576),
        ),
        (
            "argon2$argon2id$v=19$m=102400,t=1000,p=8$c2Vhc2FsdDEyMzQ1Njc4OTBhYmNkZQ$nQ/875Voa4W7MYiY0wepjM1VWwhqVwe9hUCAhosjd5k",
            ("argon2", "time (passes)", 1000, 10),
        ),
        (
            "argon2$argon2i$m=102400,t=2,p=255$c2Vhc2FsdDEyMzQ1Njc4OTBhYmNkZQ$nQ/875Voa4W7MYiY0wepjM1VWwhqVwe9hUCAhosjd5k",
            ("argon2", "lanes", 255, 64),
        ),
        (
            "bcrypt_sha256$$2b$31$rtgmhetkQFWQyMZ2SKIm9eK7ZTuE7rCfZmJrGeVJG7nXCfaInO9iy",
            ("bcrypt_sha256", "cost", 31, 16),
        ),
        (
            "bcrypt$$2a$17$ERU0SKQJ0DwoxCLDTx9Zmu5jf0LdgfzFXBsLVWL30W/zPC.fbCcra",
            ("bcrypt", "cost", 17, 16),
        ),
        (
            "scrypt$1073741824$seasalt1234567890abcde$8$5$4Obsn3McwAAFrXPc7NAXFXNV2D8hZC10npsRQ6YHB+zeaTA8c0hVaDIsjv5XvY3gH9j7dnvTz/TXOjODPVWsgw==",
            ("scrypt", "N (work factor)", 1 << 30, 1 << 16),
        ),
        (
            "scrypt$16384$seasalt1234567890abcde$1024$5$4Obsn3McwAAFrXPc7NAXFXNV2D8hZC10npsRQ6YHB+zeaTA8c0hVaDIsjv5XvY3gH9j7dnvTz/TXOjODPVWsgw==",
            ("scrypt", "r (block size)", 1024, 16),
        ),
        (
            "scrypt$16384$seasalt1234567890abcde$8$1000$4Obsn3McwAAFrXPc7NAXFXNV2D8hZC10npsRQ6YHB+zeaTA8c0hVaDIsjv5XvY3gH9j7dnvTz/TXOjODPVWsgw==",
            ("scrypt", "p (parallelism)", 1000, 8),
        ),
    ];
    for (row, expected) in cases {
        assert_eq!(cost_error(row, &d), *expected, "{row}");
        assert!(matches!(
            verify("password", row, &d),
            Err(HashError::CostTooHigh { .. })
        ));
    }
}

#[test]
fn tightened_limits_refuse_django_defaults() {
    let tight = CostLimits {
        max_pbkdf2_iterations: 999_999,
        max_argon2_memory_kib: 65_536,
        max_argon2_time: 1,
        max_argon2_lanes: 4,
        max_bcrypt_cost: 10,
        max_scrypt_log_n: 13,
        max_scrypt_r: 4,
        max_scrypt_p: 1,
        max_scrypt_memory_kib: 8 * 1024,
    };
    assert_eq!(
        cost_error(REFERENCE_PASSWORD[0], &tight),
        ("pbkdf2_sha256", "iterations", 1_000_000, 999_999)
    );
    assert_eq!(
        cost_error(REFERENCE_PASSWORD[2], &tight),
        ("scrypt", "N (work factor)", 16_384, 8_192)
    );
    assert_eq!(
        cost_error(REFERENCE_PASSWORD[3], &tight),
        ("argon2", "memory (KiB)", 102_400, 65_536)
    );
    assert_eq!(
        cost_error(REFERENCE_HORSE[1], &tight),
        ("bcrypt_sha256", "cost", 12, 10)
    );
    // The limit itself is allowed.
    let exact = CostLimits {
        max_pbkdf2_iterations: 260_000,
        ..tight
    };
    assert_eq!(verify("password", REFERENCE_PASSWORD[1], &exact), Ok(true));
}

#[test]
fn cost_error_message_says_what_and_how_much() {
    let err = DjangoHash::parse(
        "pbkdf2_sha256$4000000000$salt$iJXqWb58pYVmtwDUMmjHYocr95POBFCKvDBnKmocqUU=",
        &defaults(),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "pbkdf2_sha256 hash asks for iterations = 4000000000, above the configured limit of \
         10000000; raise CostLimits if this hash is genuine"
    );
}

// ---- malformed and unsupported rows ------------------------------------------------------

#[test]
fn hostile_rows_are_malformed_not_panics() {
    let rows = [
        "$",
        "$$$$",
        "no-dollar-sign-here",
        "0123456789abcdef0123456789abcdeX", // 32 chars, not hex
        "5F4DCC3B5AA765D61D8327DEB882CF99", // unsalted md5 in uppercase: Django never wrote it
        "md5$$5f4dcc3b",
        "sha1$$zz",
        "md5$$5f4dcc3b5aa765d61d8327deb882cf99ff",
        "md5$salt",
        "md5$$",
        "sha1$salt$",
        "pbkdf2_sha256$",
        "pbkdf2_sha256$$salt$hash",
        "pbkdf2_sha256$-1$salt$iJXqWb58pYVmtwDUMmjHYocr95POBFCKvDBnKmocqUU=",
        "pbkdf2_sha256$+1000$salt$iJXqWb58pYVmtwDUMmjHYocr95POBFCKvDBnKmocqUU=",
        "pbkdf2_sha256$01000$salt$iJXqWb58pYVmtwDUMmjHYocr95POBFCKvDBnKmocqUU=",
        "pbkdf2_sha256$0$salt$iJXqWb58pYVmtwDUMmjHYocr95POBFCKvDBnKmocqUU=",
        "pbkdf2_sha256$99999999999999999999999999$salt$iJXqWb58pYVmtwDUMmjHYocr95POBFCKvDBnKmocqUU=",
        "pbkdf2_sha256$1000$$iJXqWb58pYVmtwDUMmjHYocr95POBFCKvDBnKmocqUU=",
        "pbkdf2_sha256$1000$salt$!!!!Wb58pYVmtwDUMmjHYocr95POBFCKvDBnKmocqUU=",
        "pbkdf2_sha256$1000$salt$iJXqWb58pYVmtwDUMmjHYocr95POBFCKvDBnKmocqUU",
        "pbkdf2_sha256$1000$salt$RvQBXMK65azo7jpfhJ/EV4gQ6pQ=", // a SHA-1-sized key
        "pbkdf2_sha256$١٠٠٠$salt$iJXqWb58pYVmtwDUMmjHYocr95POBFCKvDBnKmocqUU=", // Arabic digits
        "pbkdf2_sha1$1000$salt$iJXqWb58pYVmtwDUMmjHYocr95POBFCKvDBnKmocqUU=",
        "argon2$",
        "argon2$argon2id",
        "argon2$argon2x$v=19$m=64,t=1,p=1$c2Vhc2FsdDEy$bscSfpCQZ7TvnOuuEM1RaQ",
        "argon2$argon2id$v=18$m=64,t=1,p=1$c2Vhc2FsdDEy$bscSfpCQZ7TvnOuuEM1RaQ",
        "argon2$argon2id$v=19$t=1,m=64,p=1$c2Vhc2FsdDEy$bscSfpCQZ7TvnOuuEM1RaQ",
        "argon2$argon2id$v=19$m=64,t=1,p=1,keyid=abc$c2Vhc2FsdDEy$bscSfpCQZ7TvnOuuEM1RaQ",
        "argon2$argon2id$v=19$m=64,t=0,p=1$c2Vhc2FsdDEy$bscSfpCQZ7TvnOuuEM1RaQ",
        "argon2$argon2id$v=19$m=8,t=1,p=2$c2Vhc2FsdDEy$bscSfpCQZ7TvnOuuEM1RaQ", // m < 8p
        "argon2$argon2id$v=19$m=64,t=1,p=99999999999$c2Vhc2FsdDEy$bscSfpCQZ7TvnOuuEM1RaQ",
        "argon2$argon2id$v=19$m=64,t=1,p=1$c2FsdA$bscSfpCQZ7TvnOuuEM1RaQ", // 4-byte salt
        "argon2$argon2id$v=19$m=64,t=1,p=1$c2Vhc2FsdDEy$YWI",              // 2-byte hash
        "argon2$argon2id$v=19$m=64,t=1,p=1$c2Vhc2FsdDEy$bscSfpCQZ7TvnOuuEM1RaQ==",
        "argon2$argon2id$v=19$m=64,t=1,p=1$c2Vhc2FsdDEy$bscSfp*QZ7TvnOuuEM1RaQ",
        "argon2$argon2id$v=19$m=64,t=1,p=1$c2Vhc2FsdDEy$bscSfpCQZ7TvnOuuEM1RaQ$extra",
        "bcrypt$",
        "bcrypt$$2b$12$",
        "bcrypt$$2b$12$ERU0SKQJ0DwoxCLDTx9Zmu5jf0LdgfzFXBsLVWL30W/zPC.fbCcr",
        "bcrypt$$2b$12$ERU0SKQJ0DwoxCLDTx9Zmu5jf0LdgfzFXBsLVWL30W/zPC.fbCcraa",
        "bcrypt$$2c$12$ERU0SKQJ0DwoxCLDTx9Zmu5jf0LdgfzFXBsLVWL30W/zPC.fbCcra",
        "bcrypt$$2b$1x$ERU0SKQJ0DwoxCLDTx9Zmu5jf0LdgfzFXBsLVWL30W/zPC.fbCcra",
        "bcrypt$$2b$03$ERU0SKQJ0DwoxCLDTx9Zmu5jf0LdgfzFXBsLVWL30W/zPC.fbCcra",
        "bcrypt$$2b$12$ERU0SKQJ0DwoxCLDTx9Zmu5jf0LdgfzFXBsLVWL30W/zPC.fbCcr+",
        "bcrypt$$2b$12$ERU0SKQJ0DwoxCLDTx9Zmu5jf0LdgfzFXBsLVWL30W/zPC.fbCcré", // RUSTSEC-2026-0199
        "bcrypt$$2b$12$éRU0SKQJ0DwoxCLDTx9Zmu5jf0LdgfzFXBsLVWL30W/zPC.fbCcr",
        "bcrypt_sha256$2b$12$rtgmhetkQFWQyMZ2SKIm9eK7ZTuE7rCfZmJrGeVJG7nXCfaInO9iy",
        "scrypt$",
        "scrypt$16384$salt$8$5",
        "scrypt$16385$salt$8$5$4Obsn3McwAAFrXPc7NAXFXNV2D8hZC10npsRQ6YHB+zeaTA8c0hVaDIsjv5XvY3gH9j7dnvTz/TXOjODPVWsgw==",
        "scrypt$1$salt$8$5$4Obsn3McwAAFrXPc7NAXFXNV2D8hZC10npsRQ6YHB+zeaTA8c0hVaDIsjv5XvY3gH9j7dnvTz/TXOjODPVWsgw==",
        "scrypt$16384$salt$0$5$4Obsn3McwAAFrXPc7NAXFXNV2D8hZC10npsRQ6YHB+zeaTA8c0hVaDIsjv5XvY3gH9j7dnvTz/TXOjODPVWsgw==",
        "scrypt$16384$salt$8$0$4Obsn3McwAAFrXPc7NAXFXNV2D8hZC10npsRQ6YHB+zeaTA8c0hVaDIsjv5XvY3gH9j7dnvTz/TXOjODPVWsgw==",
        "scrypt$16384$salt$8$5$4Obsn3McwAAFrXPc7NAXFXNV2D8hZC10npsRQ6YHB+zeaTA8c0hVaDIsjv5XvY3gH9j7dnvTz/TXOjODPVWsgw",
        "scrypt$16384$salt$8$5$aGVsbG8=",
        "scrypt$16384$$8$5$4Obsn3McwAAFrXPc7NAXFXNV2D8hZC10npsRQ6YHB+zeaTA8c0hVaDIsjv5XvY3gH9j7dnvTz/TXOjODPVWsgw==",
        "scrypt$16384$salt$8$5$4Obsn3McwAAFrXPc7NAXFXNV2D8hZC10npsRQ6YHB+zeaTA8c0hVaDIsjv5XvY3gH9j7dnvTz/TXOjODPVWsgw==$x",
    ];
    assert!(rows.len() > 12);
    for row in rows {
        match verify("password", row, &defaults()) {
            Err(HashError::Malformed(msg)) => {
                assert!(!msg.is_empty());
                assert!(!msg.contains(row), "message echoes the row: {msg}");
            }
            other => panic!("{row:?}: expected Malformed, got {other:?}"),
        }
    }
}

#[test]
fn a_hostile_giant_row_is_malformed() {
    let giant = format!("pbkdf2_sha256$1000$salt${}", "A".repeat(1 << 20));
    assert!(matches!(
        verify("password", &giant, &defaults()),
        Err(HashError::Malformed(_))
    ));
    let digits = format!("pbkdf2_sha256${}$salt$x", "9".repeat(100_000));
    assert!(matches!(
        verify("password", &digits, &defaults()),
        Err(HashError::Malformed(_))
    ));
}

#[test]
fn unknown_prefixes_are_unsupported_and_named_only_when_safe() {
    assert_eq!(
        DjangoHash::parse("sha512$salt$abcdef", &defaults()),
        Err(HashError::Unsupported(
            "unknown algorithm prefix \"sha512\"".to_owned()
        ))
    );
    // A plaintext password that happens to contain `$` is not repeated into the logs.
    let Err(HashError::Unsupported(msg)) = DjangoHash::parse("my secret pässword$1", &defaults())
    else {
        panic!("expected Unsupported");
    };
    assert!(!msg.contains("secret"), "{msg}");
}

#[test]
fn crypt_is_unsupported_with_an_explanation() {
    let err = verify("password", "crypt$$abJnggxhB/yWI", &defaults()).unwrap_err();
    let HashError::Unsupported(ref msg) = err else {
        panic!("expected Unsupported, got {err:?}");
    };
    assert!(msg.contains("crypt(3)") && msg.contains("DES"), "{msg}");
    assert!(
        err.to_string()
            .starts_with("unsupported Django password hasher: crypt")
    );
}

// ---- API odds and ends ---------------------------------------------------------------------

#[test]
fn every_django_hash_needs_rehash() {
    for row in REFERENCE_PASSWORD
        .iter()
        .chain(REFERENCE_HORSE)
        .chain(&["!x"])
    {
        assert!(needs_rehash(&DjangoHash::parse(row, &defaults()).unwrap()));
    }
}

#[test]
fn debug_does_not_show_digests() {
    let hash = DjangoHash::parse(REFERENCE_PASSWORD[1], &defaults()).unwrap();
    let debug = format!("{hash:?}");
    assert!(debug.contains("260000"), "{debug}");
    assert!(!debug.contains("I2WehpkX"), "{debug}");
    assert!(debug.contains("<32 bytes>"), "{debug}");
}

#[test]
fn default_limits_are_generous_enough_for_django() {
    let d = defaults();
    assert!(d.max_pbkdf2_iterations >= 1_200_000); // Django 6.0
    assert!(
        d.max_argon2_memory_kib >= 102_400 && d.max_argon2_time >= 2 && d.max_argon2_lanes >= 8
    );
    assert!(d.max_bcrypt_cost >= 12);
    assert!(d.max_scrypt_log_n >= 14 && d.max_scrypt_r >= 8 && d.max_scrypt_p >= 5);
    // Django's default scrypt needs 16 MiB; stock Django stops at OpenSSL's 32 MiB.
    assert!(d.max_scrypt_memory_kib >= 32 * 1024);
}

#[test]
fn scrypt_memory_is_capped_even_within_the_n_and_r_limits() {
    let d = defaults();
    // N = 2^16 and r = 16 are each within their limits, but together need 128 MiB.
    let row = "scrypt$65536$seasalt1234567890abcde$16$1$4Obsn3McwAAFrXPc7NAXFXNV2D8hZC10npsRQ6YHB+zeaTA8c0hVaDIsjv5XvY3gH9j7dnvTz/TXOjODPVWsgw==";
    assert_eq!(
        cost_error(row, &d),
        ("scrypt", "memory (KiB)", 131_072, 65_536)
    );
    // 32 MiB, the most a stock Django can verify, is accepted.
    let row = "scrypt$32768$seasalt1234567890abcde$8$1$4Obsn3McwAAFrXPc7NAXFXNV2D8hZC10npsRQ6YHB+zeaTA8c0hVaDIsjv5XvY3gH9j7dnvTz/TXOjODPVWsgw==";
    assert!(DjangoHash::parse(row, &d).is_ok());
}

// ---- parse never panics --------------------------------------------------------------------

/// Limits so small that whatever parses is cheap to verify, so the properties can run
/// `verify` on every generated row.
fn tiny() -> CostLimits {
    CostLimits {
        max_pbkdf2_iterations: 8,
        max_argon2_memory_kib: 64,
        max_argon2_time: 1,
        max_argon2_lanes: 2,
        max_bcrypt_cost: 4,
        max_scrypt_log_n: 4,
        max_scrypt_r: 2,
        max_scrypt_p: 1,
        max_scrypt_memory_kib: 4,
    }
}

fn prefix() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "",
        "!",
        "pbkdf2_sha256$",
        "pbkdf2_sha1$",
        "argon2$",
        "argon2$argon2id$v=19$",
        "argon2$argon2i$m=",
        "bcrypt$",
        "bcrypt_sha256$$2b$",
        "bcrypt$$2a$04$",
        "scrypt$",
        "scrypt$16$",
        "md5$",
        "md5$$",
        "sha1$",
        "sha1$$",
        "crypt$$",
    ])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn parse_and_verify_never_panic_on_any_string(row in any::<String>(), pw in any::<String>()) {
        let _ = verify(&pw, &row, &tiny());
    }

    #[test]
    fn parse_and_verify_never_panic_near_real_formats(
        prefix in prefix(),
        tail in r"[0-9a-zA-Z$=,./+!é🦀 -]{0,120}",
        pw in any::<String>(),
    ) {
        let row = format!("{prefix}{tail}");
        let result = verify(&pw, &row, &tiny());
        // Only unusable values may be Ok(false) for free: nothing random matches a real hash.
        if row.is_empty() || row.starts_with('!') {
            prop_assert_eq!(result, Ok(false));
        }
    }

    #[test]
    fn mutated_reference_rows_never_panic(index in 0usize..8, at in 0usize..200, byte in any::<char>()) {
        let rows: Vec<&str> = REFERENCE_PASSWORD.iter().chain(REFERENCE_HORSE).copied().collect();
        let row = rows[index];
        let mut chars: Vec<char> = row.chars().collect();
        let at = at % chars.len();
        chars[at] = byte;
        let mutated: String = chars.into_iter().collect();
        // Parse only: the costs here are Django's real (slow) ones.
        let _ = DjangoHash::parse(&mutated, &defaults());
        let _ = DjangoHash::parse(&mutated, &tiny());
    }
}
