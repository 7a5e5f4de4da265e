//! Sign and verify an access token with each algorithm portcullis offers:
//! the cost of `POST /api/token/` and `/refresh/` (sign) and of every
//! authenticated request (verify, and verify of a token found in the
//! verified-token cache), without HTTP or a database.
//!
//! `cargo bench -p portcullis-token --bench sign_verify`

// A benchmark whose setup fails has nothing to measure: stopping loudly is right.
#![allow(clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use portcullis_token::{
    Algorithm, SigningKeys, SystemClock, TokenEngine, TokenSettings, TokenType, algorithm_name,
    generate_key,
};

const ALGORITHMS: [Algorithm; 8] = [
    Algorithm::HS256,
    Algorithm::HS384,
    Algorithm::HS512,
    Algorithm::RS256,
    Algorithm::PS256,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

fn engine(algorithm: Algorithm) -> TokenEngine {
    let key = generate_key(algorithm, None).expect("a generated key");
    let keys = SigningKeys::new(algorithm, key.private_key.as_bytes(), None).expect("keys");
    let settings = TokenSettings {
        algorithm,
        ..TokenSettings::default()
    };
    TokenEngine::new(settings, keys, Arc::new(SystemClock))
}

fn sign_verify(c: &mut Criterion) {
    for algorithm in ALGORITHMS {
        let name = algorithm_name(algorithm);
        let engine = engine(algorithm);
        let token = engine
            .for_user(TokenType::Access, 42, [])
            .expect("an access token");
        let raw = engine.encode(&token).expect("signed");
        let mut group = c.benchmark_group(name);
        group.bench_function("sign", |b| {
            b.iter(|| engine.encode(black_box(&token)).expect("signed"));
        });
        group.bench_function("verify", |b| {
            b.iter(|| engine.decode(black_box(raw.as_bytes())).expect("valid"));
        });
        // The same token again, found in the verified-token cache.
        group.bench_function("verify (cached)", |b| {
            b.iter(|| {
                engine
                    .decode_cached(black_box(raw.as_bytes()))
                    .expect("valid")
            });
        });
        group.finish();
    }
}

criterion_group!(benches, sign_verify);
criterion_main!(benches);
