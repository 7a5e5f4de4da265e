//! The portcullis token engine: simplejwt-shaped JSON Web Tokens.
//!
//! This crate knows nothing of SQL, and of HTTP only DRF's wire format for
//! errors ([`drf`]: the bodies, the statuses of [`Rejection`], the
//! `WWW-Authenticate` challenge), which the server and `portcullis-verify`
//! share so both send the same bytes. It turns settings and keys into
//! signed tokens and back, and applies the validation rules of
//! djangorestframework-simplejwt 5.5.1 (which delegates the JOSE layer to
//! PyJWT 2.10) with the exact error strings its clients see:
//!
//! 1. [`TokenEngine::decode`] is PyJWT's `jwt.decode`: signature, pinned
//!    algorithm, then `iat`, `nbf`, `exp`, `iss`, `aud`, `sub`, `jti` rules.
//! 2. The caller may consult the blacklist (simplejwt checks it between the
//!    two stages for refresh and sliding tokens).
//! 3. [`Token::verify`] is simplejwt's `Token.verify`: `exp` present, `jti`
//!    present, `token_type` as expected.
//!
//! Invariant: the algorithm a token may use is the one its key allows
//! (RFC 8725 §3.1). The `alg` header only has to agree; it never chooses.

mod auth_header;
mod cache;
mod claims;
mod clock;
pub mod drf;
mod engine;
mod error;
mod keys;
mod keyset;
mod reject;
mod settings;

pub use auth_header::{AuthHeader, auth_header_name, parse_authorization};
pub use claims::{Claims, Token, TokenType, UserIdClaim};
pub use clock::{Clock, ManualClock, SystemClock};
pub use engine::{JwksDocument, SignError, TokenEngine};
pub use error::TokenError;
pub use jsonwebtoken::Algorithm;
pub use keys::{
    KeyError, SUPPORTED_ALGORITHMS, SigningKeys, algorithm_name, is_hmac, parse_algorithm,
};
pub use keyset::{
    GeneratedKey, KeyRing, KeyState, RemoteKeys, StoredKey, generate_key, key_states,
};
pub use reject::{Rejection, TokenMessage, check_access, validated_token};
pub use settings::{Audience, TokenSettings};
