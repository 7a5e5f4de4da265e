//! Token decoding: any bytes are a token or an error, never a panic, and the
//! verified-token cache answers each as decoding does, twice over.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use portcullis_token::{Algorithm, Clock, SigningKeys, TokenEngine, TokenSettings};

#[derive(Debug)]
struct Fixed;

impl Clock for Fixed {
    fn now(&self) -> i64 {
        1_800_000_000
    }
}

const KEY: &[u8] = b"fuzz-signing-key-0123456789abcdef0123456789abcdef";

fn engine() -> &'static TokenEngine {
    static ENGINE: OnceLock<TokenEngine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let keys = SigningKeys::new(Algorithm::HS256, KEY, None).expect("HS256 key");
        TokenEngine::new(TokenSettings::default(), keys, Arc::new(Fixed))
    })
}

fuzz_target!(|data: &[u8]| {
    let decoded = engine().decode(data);
    if let Ok(token) = &decoded {
        let _ = token.claims().len();
    }
    for _ in 0..2 {
        assert_eq!(engine().decode_cached(data), decoded);
    }
    let _ = engine().unknown_kid(data);
});
