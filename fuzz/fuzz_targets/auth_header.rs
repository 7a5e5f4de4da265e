//! The `Authorization` header parser: never panics, and a token it yields
//! is one whitespace-free part of the input after an accepted scheme.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_token::{AuthHeader, parse_authorization};

fuzz_target!(|data: &[u8]| {
    let schemes = ["Bearer", "JWT"];
    match parse_authorization(Some(data), &schemes) {
        AuthHeader::Token(token) => {
            assert!(!token.is_empty());
            assert!(!token.iter().any(u8::is_ascii_whitespace));
            assert!(data.windows(token.len()).any(|w| w == token));
        }
        AuthHeader::Anonymous | AuthHeader::Malformed => {}
    }
});
