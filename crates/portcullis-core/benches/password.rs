//! Hash and verify a password at the default cost (Argon2id, m = 19 MiB,
//! t = 2, p = 1): one login's CPU time, and so the unit of the login
//! target (cores ÷ one verification).
//!
//! `cargo bench -p portcullis-core --bench password`

// A benchmark whose setup fails has nothing to measure: stopping loudly is right.
#![allow(clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use portcullis_core::{HashParams, PasswordHasher};
use secrecy::SecretString;

fn password(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let hasher = PasswordHasher::new(HashParams::default(), 1).expect("a hasher");
    let secret = || SecretString::from("correct horse battery staple");
    let stored = runtime.block_on(hasher.hash(secret())).expect("a hash");

    let mut group = c.benchmark_group("argon2id-default");
    // Each iteration takes tens of milliseconds.
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("hash", |b| {
        b.iter(|| runtime.block_on(hasher.hash(secret())).expect("a hash"));
    });
    group.bench_function("verify", |b| {
        b.iter(|| {
            let verified = runtime
                .block_on(hasher.verify(secret(), Some(black_box(stored.clone()))))
                .expect("verified");
            assert!(verified.matched);
        });
    });
    group.bench_function("verify-unknown-user", |b| {
        b.iter(|| {
            runtime
                .block_on(hasher.verify(secret(), None))
                .expect("verified")
        });
    });
    group.finish();
}

criterion_group!(benches, password);
criterion_main!(benches);
