//! The token settings (simplejwt's `SIMPLE_JWT` names): algorithm,
//! lifetimes, audience and issuer, claim names.

use portcullis_token::{Audience, TokenSettings};
use serde::Deserialize;

use super::values::{List, Seconds};
use super::{ConfigError, Origins};

/// The token settings, as written.
#[derive(Deserialize)]
#[serde(default)]
pub(super) struct TokenSection {
    /// `ALGORITHM`.
    algorithm: String,
    /// `ACCESS_TOKEN_LIFETIME`.
    access_token_lifetime: Seconds,
    /// `REFRESH_TOKEN_LIFETIME`.
    refresh_token_lifetime: Seconds,
    /// `SLIDING_TOKEN_LIFETIME`.
    sliding_token_lifetime: Seconds,
    /// `SLIDING_TOKEN_REFRESH_LIFETIME`.
    sliding_token_refresh_lifetime: Seconds,
    /// `AUDIENCE`: one value or a list.
    audience: Option<List>,
    /// `ISSUER`.
    issuer: Option<String>,
    /// `LEEWAY`.
    leeway: Seconds,
    /// `USER_ID_CLAIM`.
    user_id_claim: String,
    /// `TOKEN_TYPE_CLAIM`; empty turns type checks off.
    token_type_claim: String,
    /// `JTI_CLAIM`.
    jti_claim: String,
    /// `SLIDING_TOKEN_REFRESH_EXP_CLAIM`.
    sliding_token_refresh_exp_claim: String,
    /// `MAX_TOKEN_BYTES`: longer tokens are invalid without parsing.
    max_token_bytes: usize,
    /// `TOKEN_CACHE_SIZE`: verified tokens remembered (entries); 0 turns it off.
    token_cache_size: usize,
}

impl Default for TokenSection {
    fn default() -> Self {
        let defaults = TokenSettings::default();
        Self {
            algorithm: "HS256".to_owned(),
            access_token_lifetime: Seconds(defaults.access_token_lifetime),
            refresh_token_lifetime: Seconds(defaults.refresh_token_lifetime),
            sliding_token_lifetime: Seconds(defaults.sliding_token_lifetime),
            sliding_token_refresh_lifetime: Seconds(defaults.sliding_token_refresh_lifetime),
            audience: None,
            issuer: None,
            leeway: Seconds(0),
            user_id_claim: defaults.user_id_claim,
            token_type_claim: "token_type".to_owned(),
            jti_claim: defaults.jti_claim,
            sliding_token_refresh_exp_claim: defaults.sliding_refresh_exp_claim,
            max_token_bytes: defaults.max_token_bytes,
            token_cache_size: defaults.token_cache_size,
        }
    }
}

impl TokenSection {
    /// The token settings, checked.
    pub(super) fn parse(self, origins: &Origins) -> Result<TokenSettings, ConfigError> {
        let algorithm = portcullis_token::parse_algorithm(&self.algorithm)
            .map_err(|e| ConfigError(format!("{}: {e}", origins.origin("algorithm"))))?;
        let required = |key: &str, value: String| {
            if value.trim().is_empty() {
                Err(ConfigError(format!(
                    "{} must not be empty",
                    origins.origin(key)
                )))
            } else {
                Ok(value)
            }
        };
        Ok(TokenSettings {
            algorithm,
            access_token_lifetime: self.access_token_lifetime.0,
            refresh_token_lifetime: self.refresh_token_lifetime.0,
            sliding_token_lifetime: self.sliding_token_lifetime.0,
            sliding_token_refresh_lifetime: self.sliding_token_refresh_lifetime.0,
            audience: match self.audience.map(|l| l.0) {
                None => None,
                Some(mut many) => match many.len() {
                    0 => None,
                    1 => many.pop().map(Audience::One),
                    _ => Some(Audience::Many(many)),
                },
            },
            issuer: self.issuer.filter(|s| !s.is_empty()),
            leeway: self.leeway.0,
            user_id_claim: required("user_id_claim", self.user_id_claim)?,
            token_type_claim: Some(self.token_type_claim).filter(|s| !s.is_empty()),
            jti_claim: required("jti_claim", self.jti_claim)?,
            sliding_refresh_exp_claim: required(
                "sliding_token_refresh_exp_claim",
                self.sliding_token_refresh_exp_claim,
            )?,
            max_token_bytes: self.max_token_bytes,
            token_cache_size: self.token_cache_size,
        })
    }
}
