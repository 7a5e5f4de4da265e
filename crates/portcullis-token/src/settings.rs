//! The token settings, named after simplejwt's `SIMPLE_JWT` keys.

use jsonwebtoken::Algorithm;
use serde_json::Value;

/// simplejwt's `AUDIENCE`: a single string or a list, written into `aud`
/// exactly as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audience {
    /// `AUDIENCE = "api"`
    One(String),
    /// `AUDIENCE = ["api", "admin"]`
    Many(Vec<String>),
}

impl Audience {
    /// The accepted audience values.
    #[must_use]
    pub fn values(&self) -> &[String] {
        match self {
            Self::One(one) => std::slice::from_ref(one),
            Self::Many(many) => many,
        }
    }

    /// The value written into the `aud` claim.
    #[must_use]
    pub fn to_claim(&self) -> Value {
        match self {
            Self::One(one) => Value::String(one.clone()),
            Self::Many(many) => Value::Array(many.iter().cloned().map(Value::String).collect()),
        }
    }
}

/// Everything that shapes a token, with simplejwt 5.5.1's defaults.
#[derive(Debug, Clone)]
pub struct TokenSettings {
    /// `ALGORITHM`. The only algorithm a token may use.
    pub algorithm: Algorithm,
    /// `ACCESS_TOKEN_LIFETIME`, seconds.
    pub access_token_lifetime: i64,
    /// `REFRESH_TOKEN_LIFETIME`, seconds.
    pub refresh_token_lifetime: i64,
    /// `SLIDING_TOKEN_LIFETIME`, seconds.
    pub sliding_token_lifetime: i64,
    /// `SLIDING_TOKEN_REFRESH_LIFETIME`, seconds.
    pub sliding_token_refresh_lifetime: i64,
    /// `AUDIENCE`: written at encode time, required and checked at decode.
    pub audience: Option<Audience>,
    /// `ISSUER`: written at encode time, required and checked at decode.
    pub issuer: Option<String>,
    /// `LEEWAY`, seconds, for `exp`, `nbf` and `iat`.
    pub leeway: i64,
    /// `USER_ID_CLAIM`.
    pub user_id_claim: String,
    /// `TOKEN_TYPE_CLAIM`; `None` turns type checking off (and no type claim is written).
    pub token_type_claim: Option<String>,
    /// `JTI_CLAIM`.
    pub jti_claim: String,
    /// `SLIDING_TOKEN_REFRESH_EXP_CLAIM`.
    pub sliding_refresh_exp_claim: String,
    /// Tokens longer than this many bytes are refused before any parsing.
    pub max_token_bytes: usize,
    /// `TOKEN_CACHE_SIZE`: how many verified tokens
    /// [`crate::TokenEngine::decode_cached`] remembers; 0 turns it off.
    pub token_cache_size: usize,
}

impl Default for TokenSettings {
    fn default() -> Self {
        Self {
            algorithm: Algorithm::HS256,
            access_token_lifetime: 300,
            refresh_token_lifetime: 86_400,
            sliding_token_lifetime: 300,
            sliding_token_refresh_lifetime: 86_400,
            audience: None,
            issuer: None,
            leeway: 0,
            user_id_claim: "user_id".to_owned(),
            token_type_claim: Some("token_type".to_owned()),
            jti_claim: "jti".to_owned(),
            sliding_refresh_exp_claim: "refresh_exp".to_owned(),
            max_token_bytes: 8 * 1024,
            token_cache_size: 10_000,
        }
    }
}
