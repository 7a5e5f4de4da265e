//! Building and running the server. `main` stays thin; tests call
//! [`Application::build`] with `BIND=127.0.0.1:0` and talk HTTP to it.

use std::collections::HashSet;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use portcullis_core::{AuthService, PasswordHasher, Store};
use portcullis_http::{AppState, HttpSettings};
use portcullis_store::SqlStore;
use portcullis_token::{SigningKeys, SystemClock, TokenEngine, is_hmac};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::{ConfigError, FrontSettings, Loaded, secret_bytes};
use crate::keyring::{self, RemoteJwks, Rotation};
use crate::server::{self, Listener, Tls};

/// Where a generated HMAC secret is kept (in the database, so every node
/// that shares it signs with the same key).
const GENERATED_KEY_SETTING: &str = "generated_signing_key";

/// A built, bound, not yet running server.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    /// The plain-HTTP listener that redirects to HTTPS (`HTTP_REDIRECT_BIND`).
    redirect: Option<TcpListener>,
    /// The admin listener for `/metrics` (`METRICS_BIND`).
    metrics: Option<TcpListener>,
    tls: Option<Arc<Tls>>,
    front: FrontSettings,
    /// Every route of the main listener, in one router: the serving loop
    /// wraps it with the front middleware (request id, limits, metrics).
    router: Router,
    store: SqlStore,
    auth: AuthService,
    rotation: Rotation,
    prune_interval: Option<Duration>,
    /// `AUDIT_RETENTION`, seconds.
    audit_retention: i64,
}

impl Application {
    /// Check every setting, open and migrate the database, load the keys and
    /// bind the listener.
    pub async fn build(loaded: &Loaded) -> anyhow::Result<Self> {
        let token_settings = loaded.token_settings()?;
        let auth_settings = loaded.auth_settings()?;
        let hash_params = loaded.hash_params()?;
        let http = HttpSettings {
            auth_header_name: loaded.auth_header_name()?,
            max_body_bytes: loaded.config.max_body_bytes,
            issuer: token_settings.issuer.clone(),
            // Half the publish delay: a verifier's cached JWKS is refreshed
            // before a newly published key starts signing.
            jwks_max_age: (loaded.config.key_publish_delay.0 / 2).min(300),
            identity: loaded.identity_headers()?,
            refresh_cookie: loaded.refresh_cookie()?,
            trusted_proxies: loaded.trusted_proxies()?,
        };
        let (statics, upstreams) = loaded.mounts()?;
        let proxy_timeouts = loaded.proxy_timeouts()?;
        let bind = loaded.bind()?;
        // Settings and certificate files first: a typo fails before the
        // database is touched.
        let front = loaded.front()?;
        let tls = match &front.tls {
            Some((cert, key)) => Some(Arc::new(Tls::load(cert, key).map_err(ConfigError)?)),
            None => None,
        };
        let store = open_store(loaded).await?;
        let keys = load_keys(loaded, &store).await?;
        let engine = TokenEngine::new(token_settings, keys, Arc::new(SystemClock));
        keyring::reload(&engine, &store, &mut HashSet::new()).await?;
        let hasher = PasswordHasher::new(hash_params, cores()).map_err(ConfigError)?;
        let store_dyn: Arc<dyn Store> = Arc::new(store.clone());
        let mut auth = AuthService::new(engine, store_dyn, hasher, auth_settings);
        if let Some(url) = loaded.config.jwk_url.as_deref().filter(|u| !u.is_empty()) {
            let remote = RemoteJwks::new(url)
                .map_err(|e| ConfigError(format!("{}: {e}", loaded.origin("jwk_url"))))?;
            // An issuer that is down at start is retried on the first
            // unknown kid; it must not keep us from serving our own tokens.
            if let Err(e) = remote.fetch(auth.engine()).await {
                tracing::warn!(error = %format!("{e:#}"), "cannot fetch JWK_URL at start");
            }
            auth = auth.with_key_source(Arc::new(remote));
        }
        // Installed before any request, so the first logins are counted.
        server::metrics::handle();
        let state = AppState::new(auth.clone(), http).with_audit(Arc::new(store.clone()));
        let mut api = portcullis_http::router(state.clone());
        if front.metrics_bind.is_none() {
            api = api.merge(server::metrics::router());
        }
        if let Some(console) = crate::console::router(loaded, &auth, &store, tls.is_some())? {
            api = api.merge(console);
        }
        // API routes first; then `[[static]]` and `[[upstream]]` mounts by
        // longest prefix (portcullis-front).
        let router =
            portcullis_front::Front::new(state, statics, upstreams, proxy_timeouts).behind(api);
        let listener = bind_listener(bind, "BIND").await?;
        let redirect = match front.redirect_bind {
            Some(addr) => Some(bind_listener(addr, "HTTP_REDIRECT_BIND").await?),
            None => None,
        };
        let metrics = match front.metrics_bind {
            Some(addr) => Some(bind_listener(addr, "METRICS_BIND").await?),
            None => None,
        };
        Ok(Self {
            listener,
            redirect,
            metrics,
            tls,
            front,
            router,
            store,
            auth,
            rotation: Rotation::from_settings(loaded)?,
            audit_retention: loaded.config.audit_retention.0,
            prune_interval: u64::try_from(loaded.config.prune_interval.0)
                .ok()
                .filter(|&s| s > 0)
                .map(Duration::from_secs),
        })
    }

    /// The flows the server runs (for administration and tests).
    #[must_use]
    pub fn auth(&self) -> &AuthService {
        &self.auth
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The plain-HTTP redirect listener's address, if `HTTP_REDIRECT_BIND` is set.
    pub fn redirect_addr(&self) -> Option<SocketAddr> {
        self.redirect.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The admin (`/metrics`) listener's address, if `METRICS_BIND` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Serve until `shutdown` completes; then stop accepting, let in-flight
    /// requests finish for at most `SHUTDOWN_TIMEOUT`, and return.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let addr = self.local_addr()?;
        let https_port = addr.port();
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        // Before "listening": a SIGHUP right after it must reload, not kill.
        let hangup = reload_on_hangup(self.tls.clone());
        tracing::info!(
            %addr,
            scheme,
            redirect_addr = ?self.redirect_addr(),
            metrics_addr = ?self.metrics_addr(),
            backend = self.store.backend(),
            "portcullis is listening"
        );
        // The background tasks live exactly as long as this future: a
        // JoinSet aborts them when dropped, so a server whose future is
        // dropped (not stopped) leaves no task holding a database
        // connection (the revocation listener holds one for good).
        let mut background = tokio::task::JoinSet::new();
        background.spawn(keyring::reload_task(
            self.auth.engine().clone(),
            self.store.clone(),
            self.rotation,
        ));
        background.spawn(revocation_task(self.auth.clone(), self.store.clone()));
        background.spawn(server::metrics::upkeep_task());
        if let Some(every) = self.prune_interval {
            background.spawn(prune_task(
                self.store.clone(),
                every,
                self.auth.settings().throttle.window,
                self.audit_retention,
            ));
        }
        let settings = Arc::new(self.front);
        let mut listeners = vec![Listener {
            name: "main",
            tcp: self.listener,
            router: server::main_router(self.router, &settings, self.tls.is_some()),
            tls: self.tls,
        }];
        if let Some(tcp) = self.redirect {
            listeners.push(Listener {
                name: "redirect",
                tcp,
                router: server::redirect_router(&settings, https_port),
                tls: None,
            });
        }
        if let Some(tcp) = self.metrics {
            listeners.push(Listener {
                name: "metrics",
                tcp,
                router: server::metrics_router(&settings),
                tls: None,
            });
        }
        let (stop, stopped) = watch::channel(false);
        let mut servers = tokio::task::JoinSet::new();
        for listener in listeners {
            servers.spawn(server::serve(
                listener,
                Arc::clone(&settings),
                stopped.clone(),
            ));
        }
        shutdown.await;
        stop.send_replace(true);
        while let Some(served) = servers.join_next().await {
            served.context("a listener failed")?;
        }
        background.shutdown().await;
        if let Some(hangup) = hangup {
            hangup.abort();
        }
        self.store.close().await;
        server::flush_access_log();
        tracing::info!("portcullis stopped");
        Ok(())
    }
}

async fn bind_listener(addr: SocketAddr, setting: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} ({setting})"))
}

/// On SIGHUP, read `TLS_CERT_FILE` and `TLS_KEY_FILE` again. Connections
/// already open keep the certificate they shook hands with; a bad file
/// keeps the old certificate. The handler is installed now (not when the
/// task first runs), so a SIGHUP right after start is not fatal.
fn reload_on_hangup(tls: Option<Arc<Tls>>) -> Option<tokio::task::JoinHandle<()>> {
    #[cfg(unix)]
    {
        let tls = tls?;
        let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .inspect_err(|e| tracing::error!(error = %e, "cannot listen for SIGHUP"))
            .ok()?;
        Some(tokio::spawn(async move {
            while hangup.recv().await.is_some() {
                match tls.reload() {
                    Ok(()) => tracing::info!("SIGHUP: reloaded the TLS certificate"),
                    Err(e) => tracing::error!(
                        error = %e,
                        "SIGHUP: cannot reload the TLS certificate; keeping the old one"
                    ),
                }
            }
        }))
    }
    #[cfg(not(unix))]
    {
        drop(tls);
        None
    }
}

/// Reload the sessions and users other nodes revoked, so their access
/// tokens are refused here too (issue 4: within one second). On
/// PostgreSQL a `LISTEN` connection makes that prompt: every node that
/// ends a session sends a `NOTIFY` after its commit, and each node
/// reloads on it. The reload every second stays, for SQLite and for
/// notifications lost while the listening connection was down. A failed
/// reload keeps what is known and is retried.
async fn revocation_task(auth: AuthService, store: SqlStore) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut listener = None;
    loop {
        if listener.is_none() {
            listener = store.revocation_listener().await.unwrap_or_else(|e| {
                tracing::warn!(error = %e, "cannot listen for revocations; reloading every second");
                None
            });
        }
        let notified = async {
            match listener.as_mut() {
                Some(listener) => listener.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tick.tick() => {}
            received = notified => {
                if let Err(e) = received {
                    tracing::warn!(error = %e, "lost the revocation listener; reconnecting");
                    listener = None;
                }
            }
        }
        if let Err(e) = auth.reload_revocations().await {
            tracing::warn!(error = %e, "cannot reload revocations");
        }
    }
}

/// Every `PRUNE_INTERVAL`, delete expired token and session records:
/// the same store call as `portcullis tokens flush-expired`, so no cron
/// job is needed. The first run is one interval after the start (a fleet
/// restarting together does not prune all at once); a failure is logged
/// and retried at the next tick.
async fn prune_task(
    store: SqlStore,
    every: Duration,
    login_failure_window: i64,
    audit_retention: i64,
) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match crate::commands::flush_expired(&store, login_failure_window, audit_retention).await {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, "pruned expired token records"),
            Err(e) => tracing::warn!(error = %e, "cannot prune expired token records"),
        }
    }
}

/// Open (creating and migrating) the configured database.
pub async fn open_store(loaded: &Loaded) -> anyhow::Result<SqlStore> {
    SqlStore::connect(&loaded.config.database_url)
        .await
        .map_err(|e| anyhow::anyhow!("{}: {e}", loaded.origin("database_url")))
}

/// The configured key pair, or — for HMAC with no key configured — the
/// key generated on first start and kept in the database, as Django's
/// `startproject` writes a `SECRET_KEY`. There is no built-in default key.
pub(crate) async fn load_keys(loaded: &Loaded, store: &SqlStore) -> anyhow::Result<SigningKeys> {
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

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed when this is
/// called, not when the future is first polled: a SIGTERM sent right after
/// "portcullis is listening" must stop the server gracefully, not kill it.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let listen = |kind| {
        tokio::signal::unix::signal(kind)
            .inspect_err(|e| tracing::error!(error = %e, "cannot listen for a shutdown signal"))
            .ok()
    };
    #[cfg(unix)]
    let (mut interrupt, mut terminate) = (
        listen(tokio::signal::unix::SignalKind::interrupt()),
        listen(tokio::signal::unix::SignalKind::terminate()),
    );
    async move {
        #[cfg(unix)]
        {
            let interrupt = async {
                match interrupt.as_mut() {
                    Some(signal) => drop(signal.recv().await),
                    None => std::future::pending().await,
                }
            };
            let terminate = async {
                match terminate.as_mut() {
                    Some(signal) => drop(signal.recv().await),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = interrupt => {}
                () = terminate => {}
            }
        }
        #[cfg(not(unix))]
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
        tracing::info!("shutdown signal received; finishing in-flight requests");
    }
}
