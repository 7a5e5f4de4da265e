//! The staff console (`portcullis-console`) wired to this server: its key
//! steps are the `portcullis keys` ones (`keyring.rs`), its stores the
//! server's database.

use std::sync::Arc;

use async_trait::async_trait;
use axum::Router;
use portcullis_console::{ConsoleSettings, ConsoleState, KeyAdmin, NewKey};
use portcullis_core::AuthService;
use portcullis_store::SqlStore;
use portcullis_token::{Clock, algorithm_name};

use crate::config::{Rotation, Settings};
use crate::keyring;

/// `keys generate` and `keys rotate`, for the console.
#[derive(Debug)]
struct Keys {
    store: SqlStore,
    policy: Rotation,
    /// `ALGORITHM`: what a rotation without an active stored key makes.
    algorithm: &'static str,
    /// The server's clock.
    clock: Arc<dyn Clock>,
}

#[async_trait]
impl KeyAdmin for Keys {
    async fn generate(&self, algorithm: &str, activate: bool) -> Result<NewKey, String> {
        let now = self.clock.now();
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
            self.algorithm,
            self.clock.now(),
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
    settings: &Settings,
    auth: &AuthService,
    store: &SqlStore,
    tls: bool,
) -> Option<Router> {
    let idle_timeout = settings.console?;
    let keys = Keys {
        store: store.clone(),
        policy: settings.keys.rotation,
        algorithm: algorithm_name(settings.tokens.algorithm),
        clock: auth.engine().clock(),
    };
    let settings = ConsoleSettings {
        tls,
        idle_timeout,
        trusted_proxies: settings.http.trusted_proxies.clone(),
    };
    let state = ConsoleState::new(
        auth.clone(),
        Arc::new(store.clone()),
        Arc::new(store.clone()),
        Arc::new(keys),
        settings,
    );
    Some(portcullis_console::router(state))
}
