//! The staff console (`portcullis-console`) wired to this server: its key
//! steps are the `portcullis keys` ones (`keyring.rs`), its stores the
//! server's database.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use portcullis_console::{ConsoleSettings, ConsoleState, KeyAdmin, NewKey};
use portcullis_core::AuthService;
use portcullis_store::SqlStore;
use portcullis_token::{Clock as _, SystemClock};

use crate::config::{ConfigError, Loaded};
use crate::keyring::{self, Rotation};

/// `keys generate` and `keys rotate`, for the console.
#[derive(Debug)]
struct Keys {
    store: SqlStore,
    policy: Rotation,
    /// `ALGORITHM`: what a rotation without an active stored key makes.
    algorithm: String,
}

#[async_trait]
impl KeyAdmin for Keys {
    async fn generate(&self, algorithm: &str, activate: bool) -> Result<NewKey, String> {
        let now = SystemClock.now();
        keyring::add_key(
            &self.store,
            &self.policy,
            algorithm,
            None,
            activate.then_some(now),
            now,
        )
        .await
        .map(|k| NewKey {
            kid: k.kid,
            algorithm: k.algorithm,
            activates_at: k.activates_at,
        })
        .map_err(|e| format!("{e:#}"))
    }

    async fn rotate(&self) -> Result<NewKey, String> {
        keyring::rotate(
            &self.store,
            &self.policy,
            None,
            &self.algorithm,
            SystemClock.now(),
        )
        .await
        .map(|k| NewKey {
            kid: k.kid,
            algorithm: k.algorithm,
            activates_at: k.activates_at,
        })
        .map_err(|e| format!("{e:#}"))
    }
}

/// The console's routes, or `None` with `ADMIN_CONSOLE=false`.
pub(crate) fn router(
    loaded: &Loaded,
    auth: &AuthService,
    store: &SqlStore,
    tls: bool,
) -> Result<Option<Router>, ConfigError> {
    let c = &loaded.config;
    if !c.admin_console {
        return Ok(None);
    }
    let idle = u64::try_from(c.admin_idle_timeout.0)
        .ok()
        .filter(|&s| s > 0)
        .ok_or_else(|| {
            ConfigError(format!(
                "{} must be a positive number of seconds, such as 1800",
                loaded.origin("admin_idle_timeout")
            ))
        })?;
    let settings = ConsoleSettings {
        tls,
        idle_timeout: Duration::from_secs(idle),
        trusted_proxies: loaded.trusted_proxies()?,
    };
    let keys = Keys {
        store: store.clone(),
        policy: Rotation::from_settings(loaded)?,
        algorithm: c.algorithm.clone(),
    };
    let state = ConsoleState::new(
        auth.clone(),
        Arc::new(store.clone()),
        Arc::new(store.clone()),
        Arc::new(keys),
        settings,
    );
    Ok(Some(portcullis_console::router(state)))
}
