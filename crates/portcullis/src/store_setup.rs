//! The database and the keys, as every command opens them: `serve`, the
//! `user …` and `keys …` commands and `tokens flush-expired` share one way
//! to reach the store and one way to build the flows on top of it.

use std::collections::HashSet;
use std::sync::Arc;

use portcullis_core::{AuthService, KeyStore as _, PasswordHasher, Store};
use portcullis_store::SqlStore;
use portcullis_token::{Clock, SigningKeys, TokenEngine, is_hmac};
use secrecy::ExposeSecret as _;

use crate::config::{ConfigError, Settings, secret_bytes};
use crate::keyring;

/// Where a generated HMAC secret is kept (in the database, so every node
/// that shares it signs with the same key).
const GENERATED_KEY_SETTING: &str = "generated_signing_key";

/// Open (creating and migrating) the configured database.
pub async fn open_store(settings: &Settings) -> anyhow::Result<SqlStore> {
    SqlStore::connect(settings.store.database_url.expose_secret())
        .await
        .map_err(|e| anyhow::Error::new(e).context(settings.origin("database_url")))
}

/// The configured key pair, or — for HMAC with no key configured — the
/// key generated on first start and kept in the database, as Django's
/// `startproject` writes a `SECRET_KEY`. There is no built-in default key.
pub async fn load_keys(settings: &Settings, store: &SqlStore) -> anyhow::Result<SigningKeys> {
    let algorithm = settings.tokens.algorithm;
    let keys = &settings.keys;
    if let Some(secret) = &keys.signing_key {
        return SigningKeys::new(
            algorithm,
            secret_bytes(secret),
            keys.verifying_key.as_deref().map(str::as_bytes),
        )
        .map_err(|e| ConfigError(format!("{}: {e}", keys.signing_key_origin)).into());
    }
    if !is_hmac(algorithm) {
        return Err(ConfigError(format!(
            "{} needs a private key: set SIGNING_KEY_FILE to a PEM file (for example one made by `openssl genpkey -algorithm ed25519 -out signing.pem` for EdDSA)",
            settings.origin("algorithm")
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
            settings.origin("algorithm")
        ))
        .into()
    })
}

/// The flows over `store` with the configured keys (the database's key set
/// installed), on `clock`.
pub async fn auth_service(
    settings: &Settings,
    store: &SqlStore,
    hasher: PasswordHasher,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<AuthService> {
    let keys = load_keys(settings, store).await?;
    let engine = TokenEngine::new(settings.tokens.clone(), keys, clock);
    keyring::reload(&engine, store, &mut HashSet::new()).await?;
    let store: Arc<dyn Store> = Arc::new(store.clone());
    Ok(AuthService::new(
        engine,
        store,
        hasher,
        settings.auth.clone(),
    ))
}

/// The password hasher with `workers` slots (one per core for `serve`).
pub fn hasher(settings: &Settings, workers: usize) -> Result<PasswordHasher, ConfigError> {
    PasswordHasher::new(settings.hash, workers)
        .map_err(|e| ConfigError(portcullis_core::error_chain(&e).to_string()))
}
