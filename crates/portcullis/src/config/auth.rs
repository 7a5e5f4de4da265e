//! The flow settings: rotation and reuse detection, what authenticates a
//! request, login throttling, and the password hash's cost.

use portcullis_core::{AuthSettings, HashParams, ThrottleSettings};
use portcullis_token::TokenType;
use serde::Deserialize;

use super::values::{List, Seconds};
use super::{ConfigError, Origins};

/// The flow settings, as written.
#[derive(Deserialize)]
#[serde(default)]
pub(super) struct AuthSection {
    /// `ROTATE_REFRESH_TOKENS`.
    rotate_refresh_tokens: bool,
    /// `BLACKLIST_AFTER_ROTATION`.
    blacklist_after_rotation: bool,
    /// `UPDATE_LAST_LOGIN`.
    update_last_login: bool,
    /// `REFRESH_REUSE_DETECTION`: sessions and reuse detection; unset:
    /// on exactly when `ROTATE_REFRESH_TOKENS` is.
    refresh_reuse_detection: Option<bool>,
    /// `REFRESH_REUSE_GRACE`: how long a rotated refresh token is answered
    /// with its successor again; 0 turns the window off.
    refresh_reuse_grace: Seconds,
    /// `AUTH_HEADER_TYPES`.
    auth_header_types: List,
    /// `AUTH_TOKEN_CLASSES`: `AccessToken` and/or `SlidingToken`.
    auth_token_classes: List,
    /// `CHECK_USER_IS_ACTIVE`.
    check_user_is_active: bool,
    /// `CHECK_REVOKE_TOKEN`.
    check_revoke_token: bool,
    /// `REVOKE_TOKEN_CLAIM`.
    revoke_token_claim: String,
    /// `LOGIN_FAILURE_LIMIT`: failed logins per username within the window
    /// that lock it; 0: no username throttling.
    login_failure_limit: u32,
    /// `LOGIN_ADDRESS_FAILURE_LIMIT`: failed logins per client address within
    /// the window that lock it; 0: no address throttling.
    login_address_failure_limit: u32,
    /// `LOGIN_FAILURE_WINDOW`: how long failures are counted.
    login_failure_window: Seconds,
    /// `LOGIN_LOCKOUT`: how long a lock lasts.
    login_lockout: Seconds,
    /// `LOGIN_BACKOFF_AFTER`: failures per username before each further one
    /// delays the next attempt (2 s, 4 s, 8 s, …).
    login_backoff_after: u32,
    /// `PASSWORD_HASH_MEMORY_KIB`: Argon2id memory cost.
    password_hash_memory_kib: u32,
    /// `PASSWORD_HASH_ITERATIONS`: Argon2id time cost.
    password_hash_iterations: u32,
    /// `PASSWORD_HASH_PARALLELISM`: Argon2id lanes.
    password_hash_parallelism: u32,
}

impl Default for AuthSection {
    fn default() -> Self {
        let auth = AuthSettings::default();
        let hash = HashParams::default();
        Self {
            rotate_refresh_tokens: auth.rotate_refresh_tokens,
            blacklist_after_rotation: auth.blacklist_after_rotation,
            update_last_login: auth.update_last_login,
            refresh_reuse_detection: None,
            refresh_reuse_grace: Seconds(auth.refresh_reuse_grace),
            auth_header_types: List(auth.auth_header_types),
            auth_token_classes: List(vec!["AccessToken".to_owned()]),
            check_user_is_active: auth.check_user_is_active,
            check_revoke_token: auth.check_revoke_token,
            revoke_token_claim: auth.revoke_token_claim,
            login_failure_limit: auth.throttle.failure_limit,
            login_address_failure_limit: auth.throttle.address_failure_limit,
            login_failure_window: Seconds(auth.throttle.window),
            login_lockout: Seconds(auth.throttle.lockout),
            login_backoff_after: auth.throttle.backoff_after,
            password_hash_memory_kib: hash.memory_kib,
            password_hash_iterations: hash.iterations,
            password_hash_parallelism: hash.parallelism,
        }
    }
}

impl AuthSection {
    /// The flow settings and the Argon2id parameters, checked.
    pub(super) fn parse(
        self,
        origins: &Origins,
    ) -> Result<(AuthSettings, HashParams), ConfigError> {
        let types = self.auth_header_types.0;
        if types.is_empty() {
            return Err(ConfigError(format!(
                "{} must name at least one scheme, such as Bearer",
                origins.origin("auth_header_types")
            )));
        }
        if let Some(bad) = types.iter().find(|t| t.contains(char::is_whitespace)) {
            return Err(ConfigError(format!(
                "{}: {bad:?} contains whitespace; a scheme is one word such as Bearer or JWT",
                origins.origin("auth_header_types")
            )));
        }
        let mut classes = Vec::new();
        for name in &self.auth_token_classes.0 {
            match TokenType::from_class_name(name) {
                Some(t @ (TokenType::Access | TokenType::Sliding)) => classes.push(t),
                _ => {
                    return Err(ConfigError(format!(
                        "{}: {name:?} is not a token class that authenticates; allowed: AccessToken, SlidingToken",
                        origins.origin("auth_token_classes")
                    )));
                }
            }
        }
        if classes.is_empty() {
            return Err(ConfigError(format!(
                "{} must not be empty",
                origins.origin("auth_token_classes")
            )));
        }
        let hash = HashParams {
            memory_kib: self.password_hash_memory_kib,
            iterations: self.password_hash_iterations,
            parallelism: self.password_hash_parallelism,
        };
        if hash.iterations == 0 || hash.parallelism == 0 || hash.memory_kib < 8 * hash.parallelism {
            return Err(ConfigError(format!(
                "{}, {} and {} are not valid Argon2 parameters: iterations and parallelism must be at least 1 and memory at least 8 KiB per lane",
                origins.origin("password_hash_memory_kib"),
                origins.origin("password_hash_iterations"),
                origins.origin("password_hash_parallelism"),
            )));
        }
        let auth = AuthSettings {
            rotate_refresh_tokens: self.rotate_refresh_tokens,
            blacklist_after_rotation: self.blacklist_after_rotation,
            update_last_login: self.update_last_login,
            check_user_is_active: self.check_user_is_active,
            check_revoke_token: self.check_revoke_token,
            revoke_token_claim: self.revoke_token_claim,
            auth_token_classes: classes,
            auth_header_types: types,
            refresh_reuse_detection: self
                .refresh_reuse_detection
                .unwrap_or(self.rotate_refresh_tokens),
            refresh_reuse_grace: self.refresh_reuse_grace.0,
            throttle: ThrottleSettings {
                failure_limit: self.login_failure_limit,
                address_failure_limit: self.login_address_failure_limit,
                window: self.login_failure_window.0,
                lockout: self.login_lockout.0,
                backoff_after: self.login_backoff_after,
            },
        };
        Ok((auth, hash))
    }
}
