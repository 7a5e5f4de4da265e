//! Building and running the server. `main` stays thin; tests call
//! [`Application::build`] with `BIND=127.0.0.1:0` and talk HTTP to it.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use portcullis_core::AuthService;
use portcullis_http::AppState;
use portcullis_server::{Listener, Mounts, ServerSettings, Tls, metrics};
use portcullis_store::SqlStore;
use portcullis_token::{Clock, SystemClock};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::{ConfigError, Rotation, Settings};
use crate::keyring::{self, RemoteJwks};
use crate::store_setup::{auth_service, hasher, open_store};
use crate::wsgi::Apps;

/// A built, bound, not yet running server.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    /// The plain-HTTP listener that redirects to HTTPS (`HTTP_REDIRECT_BIND`).
    redirect: Option<TcpListener>,
    /// The admin listener for `/metrics` (`METRICS_BIND`).
    metrics: Option<TcpListener>,
    tls: Option<Arc<Tls>>,
    server: ServerSettings,
    /// Every route of the main listener, in one router: the serving loop
    /// wraps it with the middleware (request id, limits, metrics).
    router: Router,
    /// The `[[wsgi]]` apps' worker pools.
    apps: Apps,
    store: SqlStore,
    auth: AuthService,
    rotation: Rotation,
    prune_interval: Option<Duration>,
    /// `AUDIT_RETENTION`, seconds.
    audit_retention: i64,
}

impl Application {
    /// Open the mounts, read the certificate, open and migrate the
    /// database, load the keys and bind the listener.
    pub async fn build(settings: &Settings) -> anyhow::Result<Self> {
        Self::build_with_clock(settings, Arc::new(SystemClock)).await
    }

    /// [`Application::build`] on `clock`: every expiry, window and timeout
    /// the server decides (tokens, throttling, sessions of the API and the
    /// console, key rotation, pruning) reads it, so tests move time
    /// instead of sleeping.
    pub async fn build_with_clock(
        settings: &Settings,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Self> {
        let hasher = hasher(settings, cores())?;
        let mut http = settings.http.clone();
        // Directories and certificate files first: a typo fails before the
        // database is touched.
        let mounts = settings.mounts.open()?;
        let server = settings.server.clone();
        let tls = match &server.tls {
            Some((cert, key)) => Some(Arc::new(
                Tls::load(cert, key).map_err(|e| ConfigError(e.to_string()))?,
            )),
            None => None,
        };
        let rotation = settings.keys.rotation;
        let store = open_store(settings).await?;
        let mut auth = auth_service(settings, &store, hasher, clock).await?;
        if let Some(url) = &settings.keys.jwk_url {
            let remote = RemoteJwks::new(url)
                .map_err(|e| ConfigError(format!("{}: {e}", settings.origin("jwk_url"))))?;
            // An issuer that is down at start is retried on the first
            // unknown kid; it must not keep us from serving our own tokens.
            if let Err(e) = remote.fetch(auth.engine()).await {
                tracing::warn!(error = %format!("{e:#}"), "cannot fetch JWK_URL at start");
            }
            auth = auth.with_key_source(Arc::new(remote));
        }
        // Installed before any request, so the first logins are counted.
        metrics::handle();
        // The workers import the app while the rest starts; `/readyz` is
        // 503 until they have.
        let apps = Apps::start(&settings.mounts.wsgi, cores())?;
        http.readiness.extend(apps.readiness());
        let state = AppState::new(auth.clone(), http).with_audit(Arc::new(store.clone()));
        let mut api = portcullis_http::router(state.clone());
        if server.metrics_bind.is_none() {
            api = api.merge(metrics::router());
        }
        if let Some(console) = crate::console::router(settings, &auth, &store, tls.is_some()) {
            api = api.merge(console);
        }
        // API routes first; then the mounts by longest prefix.
        let mut all_mounts = mounts;
        all_mounts.extend(apps.mounts());
        let router = Mounts::new(state, all_mounts).behind(api);
        let listener = bind_listener(settings.bind, "BIND").await?;
        let redirect = match server.redirect_bind {
            Some(addr) => Some(bind_listener(addr, "HTTP_REDIRECT_BIND").await?),
            None => None,
        };
        let metrics = match server.metrics_bind {
            Some(addr) => Some(bind_listener(addr, "METRICS_BIND").await?),
            None => None,
        };
        Ok(Self {
            listener,
            redirect,
            metrics,
            tls,
            server,
            router,
            apps,
            store,
            auth,
            rotation,
            audit_retention: settings.store.audit_retention,
            prune_interval: settings.store.prune_interval,
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
        let hangup = reload_on_hangup(self.tls.clone(), self.apps.clone());
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
        background.spawn(metrics::upkeep_task());
        if let Some(every) = self.prune_interval {
            background.spawn(prune_task(
                self.auth.clone(),
                self.store.clone(),
                every,
                self.audit_retention,
            ));
        }
        let settings = Arc::new(self.server);
        let mut listeners = vec![Listener {
            name: "main",
            tcp: self.listener,
            router: portcullis_server::main_router(self.router, &settings, self.tls.is_some()),
            tls: self.tls,
        }];
        if let Some(tcp) = self.redirect {
            listeners.push(Listener {
                name: "redirect",
                tcp,
                router: portcullis_server::redirect_router(&settings, https_port),
                tls: None,
            });
        }
        if let Some(tcp) = self.metrics {
            listeners.push(Listener {
                name: "metrics",
                tcp,
                router: portcullis_server::metrics_router(&settings),
                tls: None,
            });
        }
        let (stop, stopped) = watch::channel(false);
        let mut servers = tokio::task::JoinSet::new();
        for listener in listeners {
            servers.spawn(portcullis_server::serve(
                listener,
                Arc::clone(&settings),
                stopped.clone(),
            ));
        }
        // An app that cannot be imported stops the server (as gunicorn's
        // arbiter halts on a boot error) instead of failing every request.
        let boot_failure = tokio::select! {
            () = shutdown => None,
            reason = self.apps.failed() => Some(reason),
        };
        stop.send_replace(true);
        while let Some(served) = servers.join_next().await {
            served.context("a listener failed")?;
        }
        self.apps.shutdown(settings.shutdown_timeout).await;
        background.shutdown().await;
        if let Some(hangup) = hangup {
            hangup.abort();
        }
        self.store.close().await;
        portcullis_server::flush_access_log();
        if let Some(reason) = boot_failure {
            anyhow::bail!("{reason}");
        }
        tracing::info!("portcullis stopped");
        Ok(())
    }
}

async fn bind_listener(addr: SocketAddr, setting: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} ({setting})"))
}

/// On SIGHUP, read `TLS_CERT_FILE` and `TLS_KEY_FILE` again, and load the
/// `[[wsgi]]` apps again in new workers (the old ones stop once the new
/// ones are ready). Connections already open keep the certificate they
/// shook hands with; a bad file keeps the old certificate. The handler is
/// installed now (not when the task first runs), so a SIGHUP right after
/// start is not fatal.
fn reload_on_hangup(tls: Option<Arc<Tls>>, apps: Apps) -> Option<tokio::task::JoinHandle<()>> {
    #[cfg(unix)]
    {
        if tls.is_none() && apps.is_empty() {
            return None;
        }
        let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .inspect_err(|e| tracing::error!(error = %e, "cannot listen for SIGHUP"))
            .ok()?;
        Some(tokio::spawn(async move {
            while hangup.recv().await.is_some() {
                apps.reload();
                let Some(tls) = &tls else { continue };
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
        drop((tls, apps));
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
                tracing::warn!(error = %portcullis_core::error_chain(&e), "cannot listen for revocations; reloading every second");
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
                    tracing::warn!(error = %portcullis_core::error_chain(&e), "lost the revocation listener; reconnecting");
                    listener = None;
                }
            }
        }
        if let Err(e) = auth.reload_revocations().await {
            tracing::warn!(error = %portcullis_core::error_chain(&e), "cannot reload revocations");
        }
    }
}

/// Every `PRUNE_INTERVAL`, delete expired token and session records:
/// what `portcullis tokens flush-expired` does, so no cron job is needed.
/// The first run is one interval after the start (a fleet restarting
/// together does not prune all at once); a failure is logged and retried
/// at the next tick.
async fn prune_task(auth: AuthService, store: SqlStore, every: Duration, audit_retention: i64) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match crate::commands::flush_expired(&auth, &store, audit_retention).await {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, "pruned expired token records"),
            Err(e) => {
                tracing::warn!(error = %portcullis_core::error_chain(&e), "cannot prune expired token records");
            }
        }
    }
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
