//! The key settings: the configured signing and verifying keys (inline or
//! from a file), the rotation policy, and another issuer's JWKS.

use std::path::{Path, PathBuf};

use portcullis_token::TokenSettings;
use secrecy::SecretString;
use serde::Deserialize;

use super::values::Seconds;
use super::{ConfigError, Origins};

/// The key settings, as written.
#[derive(Deserialize)]
#[serde(default)]
pub(super) struct KeySection {
    /// `SIGNING_KEY`: an HMAC secret or a PEM private key.
    signing_key: Option<SecretString>,
    /// `SIGNING_KEY_FILE`: a file holding the signing key.
    signing_key_file: Option<PathBuf>,
    /// `VERIFYING_KEY`: a PEM public key (asymmetric algorithms).
    verifying_key: Option<String>,
    /// `VERIFYING_KEY_FILE`.
    verifying_key_file: Option<PathBuf>,
    /// `KEY_PUBLISH_DELAY`: how long a rotated-in key is published before
    /// it signs.
    key_publish_delay: Seconds,
    /// `KEY_ROTATION_INTERVAL`: rotate automatically this long after the
    /// active key started signing; unset: never.
    key_rotation_interval: Option<Seconds>,
    /// `JWK_URL`: another issuer's JWKS whose keys are trusted too.
    jwk_url: Option<String>,
}

impl Default for KeySection {
    fn default() -> Self {
        Self {
            signing_key: None,
            signing_key_file: None,
            verifying_key: None,
            verifying_key_file: None,
            key_publish_delay: Seconds(600),
            key_rotation_interval: None,
            jwk_url: None,
        }
    }
}

/// The key settings, checked and read.
#[derive(Debug, Clone)]
pub struct KeySettings {
    /// The configured signing key, from `SIGNING_KEY` or the file
    /// `SIGNING_KEY_FILE` names; `None`: neither is set.
    pub signing_key: Option<SecretString>,
    /// `SIGNING_KEY (… from …)` or `SIGNING_KEY_FILE (…)`: where the key
    /// came from, for the messages about it.
    pub signing_key_origin: String,
    /// The configured verifying key, from `VERIFYING_KEY` or
    /// `VERIFYING_KEY_FILE`.
    pub verifying_key: Option<String>,
    /// What shapes a rotation.
    pub rotation: Rotation,
    /// `JWK_URL`, when set and not empty.
    pub jwk_url: Option<String>,
}

/// The settings that shape a rotation.
#[derive(Debug, Clone, Copy)]
pub struct Rotation {
    /// `KEY_PUBLISH_DELAY`.
    pub publish_delay: i64,
    /// `KEY_ROTATION_INTERVAL`.
    pub interval: Option<i64>,
    /// The longest a token signed now can stay valid: the longest
    /// lifetime plus the leeway. A replaced key verifies this long after
    /// it stops signing.
    pub token_life: i64,
}

impl KeySection {
    /// The key settings, checked, with the key files read.
    pub(super) fn parse(
        self,
        origins: &Origins,
        tokens: &TokenSettings,
    ) -> Result<KeySettings, ConfigError> {
        let signing_key_origin = if self.signing_key.is_some() {
            origins.origin("signing_key")
        } else {
            origins.origin("signing_key_file")
        };
        let signing_key = inline_or_file(
            origins,
            "signing_key",
            self.signing_key,
            self.signing_key_file,
        )?;
        // An empty VERIFYING_KEY counts as unset (a file is taken as read).
        let empty_inline = self.verifying_key.as_deref() == Some("");
        let verifying_key = inline_or_file(
            origins,
            "verifying_key",
            self.verifying_key,
            self.verifying_key_file,
        )?
        .filter(|_| !empty_inline);
        Ok(KeySettings {
            signing_key,
            signing_key_origin,
            verifying_key,
            rotation: Rotation {
                publish_delay: self.key_publish_delay.0,
                interval: self.key_rotation_interval.map(|i| i.0).filter(|i| *i > 0),
                token_life: tokens
                    .access_token_lifetime
                    .max(tokens.refresh_token_lifetime)
                    .max(tokens.sliding_token_lifetime)
                    .saturating_add(tokens.leeway),
            },
            jwk_url: self.jwk_url.filter(|u| !u.is_empty()),
        })
    }
}

/// A key given inline (`key`) or as a file (`key_file`): at most one of
/// the two, the file read.
fn inline_or_file<T: From<String>>(
    origins: &Origins,
    key: &str,
    inline: Option<T>,
    file: Option<PathBuf>,
) -> Result<Option<T>, ConfigError> {
    let file_key = format!("{key}_file");
    match (inline, file) {
        (Some(_), Some(_)) => Err(ConfigError(format!(
            "both {} and {} are set; set only one",
            origins.origin(key),
            origins.origin(&file_key)
        ))),
        (Some(key), None) => Ok(Some(key)),
        (None, Some(path)) => {
            read_key_file(&path, &origins.origin(&file_key)).map(|k| Some(k.into()))
        }
        (None, None) => Ok(None),
    }
}

fn read_key_file(path: &Path, origin: &str) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("{origin}: cannot read {}: {e}", path.display())))?;
    // A secret written with `echo` ends in a newline that is not part of it.
    Ok(text.trim_end_matches(['\n', '\r']).to_owned())
}
