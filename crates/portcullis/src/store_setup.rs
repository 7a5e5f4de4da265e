//! The database and the keys, as every command opens them: `serve`, the
//! `user …` and `keys …` commands and `tokens flush-expired` share one way
//! to reach the store and one way to build the flows on top of it.

use std::collections::HashSet;
use std::sync::Arc;

use portcullis_core::{AuthService, AuthSettings, KeyStore as _, PasswordHasher, Store};
use portcullis_store::SqlStore;
use portcullis_token::{Clock, SigningKeys, TokenEngine, is_hmac};

use crate::config::{ConfigError, Loaded, secret_bytes};
use crate::keyring;

/// Where a generated HMAC secret is kept (in the database, so every node
/// that shares it signs with the same key).
const GENERATED_KEY_SETTING: &str = "generated_signing_key";

/// Open (creating and migrating) the configured database.
pub async fn open_store(loaded: &Loaded) -> anyhow::Result<SqlStore> {
    SqlStore::connect(&loaded.config.database_url)
        .await
        .map_err(|e| anyhow::Error::new(e).context(loaded.origin("database_url")))
}

/// The configured key pair, or — for HMAC with no key configured — the
/// key generated on first start and kept in the database, as Django's
/// `startproject` writes a `SECRET_KEY`. There is no built-in default key.
pub async fn load_keys(loaded: &Loaded, store: &SqlStore) -> anyhow::Result<SigningKeys> {
    let token_settings = loaded.token_settings()?;
    let algorithm = token_settings.algorithm;
    let verifying = loaded.verifying_key()?;
    let key_origin = if loaded.config.signing_key.is_some() {
        loaded.origin("signing_key")
    } else {
        loaded.origin("signing_key_file")
    };
    if let Some(secret) = loaded.signing_key()? {
        return SigningKeys::new(
            algorithm,
            secret_bytes(&secret),
            verifying.as_deref().map(str::as_bytes),
        )
        .map_err(|e| ConfigError(format!("{key_origin}: {e}")).into());
    }
    if !is_hmac(algorithm) {
        return Err(ConfigError(format!(
            "{} needs a private key: set SIGNING_KEY_FILE to a PEM file (for example one made by `openssl genpkey -algorithm ed25519 -out signing.pem` for EdDSA)",
            loaded.origin("algorithm")
        ))
        .into());
    }
    let secret = if let Some(secret) = store.setting(GENERATED_KEY_SETTING).await? {
        secret
    } else {
        let candidate = SigningKeys::generate_hmac_secret()?;
        // Nodes starting together agree: the first insert wins.
        let secret = store
            .init_setting(GENERATED_KEY_SETTING, &candidate)
            .await?;
        if secret == candidate {
            tracing::warn!(
                "no SIGNING_KEY is configured: generated a random signing key and stored it in the database; set SIGNING_KEY to share a key with other services"
            );
        }
        secret
    };
    SigningKeys::new(algorithm, secret.as_bytes(), None).map_err(|e| {
        ConfigError(format!(
            "the generated signing key in the database does not suit {}: {e}",
            loaded.origin("algorithm")
        ))
        .into()
    })
}

/// The flows over `store` with the configured keys (the database's key set
/// installed), on `clock`.
pub async fn auth_service(
    loaded: &Loaded,
    store: &SqlStore,
    hasher: PasswordHasher,
    settings: AuthSettings,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<AuthService> {
    let keys = load_keys(loaded, store).await?;
    let engine = TokenEngine::new(loaded.token_settings()?, keys, clock);
    keyring::reload(&engine, store, &mut HashSet::new()).await?;
    let store: Arc<dyn Store> = Arc::new(store.clone());
    Ok(AuthService::new(engine, store, hasher, settings))
}

/// The password hasher with `workers` slots (one per core for `serve`).
pub fn hasher(loaded: &Loaded, workers: usize) -> Result<PasswordHasher, ConfigError> {
    PasswordHasher::new(loaded.hash_params()?, workers)
        .map_err(|e| ConfigError(portcullis_core::error_chain(&e).to_string()))
}
