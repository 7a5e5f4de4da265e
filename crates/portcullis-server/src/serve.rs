//! The accept loop: hyper-util's HTTP/1.1 + HTTP/2 connection builder over
//! plain TCP or rustls, with the limits that keep slow or greedy clients
//! from tying the server up, and a bounded graceful shutdown.
//!
//! Why not `axum::serve`: it has no TLS, no connection limit, no idle or
//! header timeouts and no bound on the drain. The router stays one
//! `axum::Router`; [`main_router`] and its siblings wrap it with the
//! middleware, and [`serve`] serves it.
//!
//! Limits, and what a client that breaks them sees:
//! - `MAX_CONNECTIONS`: the loop stops accepting while that many are open;
//!   further connections wait in the kernel's listen backlog.
//! - `HEADER_READ_TIMEOUT`: the TLS handshake and each request's head must
//!   arrive within it, else the connection is closed (a slowloris client
//!   sending a byte a second loses its connection).
//! - `KEEP_ALIVE_TIMEOUT`: a connection with no request in flight and no
//!   bytes either way for this long is closed (HTTP/1.1 and HTTP/2).
//! - `MAX_HEADER_BYTES`: 431 (HTTP/1.1) or a stream reset (HTTP/2).
//! - `MAX_BODY_BYTES`: 413, `REQUEST_TIMEOUT`: 408 (see the middleware).

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::HeaderValue;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tower::ServiceExt as _;

use crate::middleware::{self, Middleware};
use crate::proxy::ForwardedProto;
use crate::settings::{AccessLog, ServerSettings};
use crate::tls::Tls;
use crate::{access_log, metrics};

/// One listener and how to serve it.
#[derive(Debug)]
pub struct Listener {
    /// `main`, `redirect` or `metrics`: the `listener` label.
    pub name: &'static str,
    /// The bound socket.
    pub tcp: TcpListener,
    /// TLS on this listener, or plain HTTP.
    pub tls: Option<Arc<Tls>>,
    /// What answers its requests.
    pub router: Router,
}

/// The router of the main listener with the middleware around it.
pub fn main_router(router: Router, settings: &ServerSettings, tls: bool) -> Router {
    with_middleware(router, settings, tls)
}

/// The plain-HTTP listener that sends everything to HTTPS.
pub fn redirect_router(settings: &ServerSettings, https_port: u16) -> Router {
    with_middleware(
        Router::new()
            .fallback(middleware::redirect)
            .with_state(https_port),
        settings,
        false,
    )
}

/// The admin listener: `/metrics` only.
pub fn metrics_router(settings: &ServerSettings) -> Router {
    with_middleware(metrics::router(), settings, false)
}

fn with_middleware(router: Router, settings: &ServerSettings, tls: bool) -> Router {
    // Before the first request: the middleware keeps the recorder's
    // handles, which must be the real recorder's, not the no-op default.
    metrics::handle();
    let state = Arc::new(Middleware {
        max_body_bytes: settings.max_body_bytes,
        request_timeout: settings.request_timeout,
        hsts: tls.then(|| {
            HeaderValue::from_str(&format!("max-age={}", settings.hsts_max_age))
                .unwrap_or_else(|_| HeaderValue::from_static("max-age=31536000"))
        }),
        access_log: access_log_format(settings.access_log),
    });
    router.layer(axum::middleware::from_fn_with_state(
        state,
        middleware::middleware,
    ))
}

/// The access log's format, or `None` when it is off: by `ACCESS_LOG`, or
/// by a `LOG` filter that leaves out `portcullis::access` at `info`.
fn access_log_format(setting: AccessLog) -> Option<access_log::Format> {
    let format = match setting {
        AccessLog::Off => return None,
        AccessLog::Text => access_log::Format::Text,
        AccessLog::Json => access_log::Format::Json,
    };
    tracing::enabled!(target: access_log::TARGET, tracing::Level::INFO).then_some(format)
}

/// Write the access lines still buffered (the server is stopping).
pub fn flush_access_log() {
    access_log::flush();
}

/// Serve `listener` until `stop` turns true, then drain its connections for
/// at most `SHUTDOWN_TIMEOUT` and cut what is left.
pub async fn serve(
    listener: Listener,
    settings: Arc<ServerSettings>,
    mut stop: watch::Receiver<bool>,
) {
    let Listener {
        name,
        tcp,
        tls,
        router,
    } = listener;
    let builder = Arc::new(builder(&settings));
    let permits = Arc::new(Semaphore::new(settings.max_connections));
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let permit = tokio::select! {
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = stopped(&mut stop) => break,
        };
        let (stream, remote) = tokio::select! {
            accepted = tcp.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, or the peer gave up before
                    // we accepted: wait a little rather than spin.
                    tracing::warn!(error = %e, listener = name, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stopped(&mut stop) => break,
        };
        let connection = Connection {
            name,
            remote,
            tls: tls.clone(),
            router: router.clone(),
            builder: Arc::clone(&builder),
            settings: Arc::clone(&settings),
            stop: stop.clone(),
        };
        connections.spawn(async move {
            let _permit = permit;
            connection.run(stream).await;
        });
    }
    // No new connections from here: the socket closes now.
    drop(tcp);
    let open = connections.len();
    if open > 0 {
        tracing::info!(
            listener = name,
            open,
            "waiting for open connections to finish"
        );
    }
    let drained = tokio::time::timeout(settings.shutdown_timeout, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            listener = name,
            cut = connections.len(),
            "SHUTDOWN_TIMEOUT passed; closing the connections still open"
        );
        connections.shutdown().await;
    }
}

/// Resolves once `stop` is true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

fn builder(settings: &ServerSettings) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout)
        .max_buf_size(settings.max_header_bytes);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(settings.max_header_bytes).unwrap_or(u32::MAX));
    builder
}

/// One accepted connection.
struct Connection {
    name: &'static str,
    remote: SocketAddr,
    tls: Option<Arc<Tls>>,
    router: Router,
    builder: Arc<auto::Builder<TokioExecutor>>,
    settings: Arc<ServerSettings>,
    stop: watch::Receiver<bool>,
}

impl Connection {
    async fn run(self, stream: TcpStream) {
        ::metrics::gauge!(metrics::OPEN_CONNECTIONS, "listener" => self.name).increment(1);
        let _open = OpenGuard(self.name);
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let activity = Arc::new(Activity::new());
        match self.tls.clone() {
            Some(tls) => {
                // The handshake counts as reading the request head: a client
                // that stalls it is cut like a slow header.
                let handshake = tokio::time::timeout(
                    self.settings.header_read_timeout,
                    tls.acceptor().accept(stream),
                )
                .await;
                match handshake {
                    Ok(Ok(stream)) => self.drive(Tracked::new(stream, &activity), activity).await,
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, remote = %self.remote, "TLS handshake failed");
                    }
                    Err(_) => {
                        tracing::debug!(remote = %self.remote, "TLS handshake timed out");
                    }
                }
            }
            None => self.drive(Tracked::new(stream, &activity), activity).await,
        }
    }

    async fn drive<I>(mut self, io: Tracked<I>, activity: Arc<Activity>)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        // The proxy's X-Forwarded-Proto.
        let scheme = ForwardedProto(if self.tls.is_some() { "https" } else { "http" });
        let remote = self.remote;
        let router = self.router.clone();
        let in_service = Arc::clone(&activity);
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(remote));
            request.extensions_mut().insert(scheme);
            let busy = Busy::new(&in_service);
            let router = router.clone();
            async move {
                let response = router.oneshot(request.map(axum::body::Body::new)).await;
                drop(busy);
                response
            }
        });
        let builder = Arc::clone(&self.builder);
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
        tokio::pin!(connection);
        let idle_limit = self.settings.keep_alive_timeout;
        let mut tick = tokio::time::interval(
            (idle_limit / 4).clamp(Duration::from_millis(100), Duration::from_secs(1)),
        );
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut closing = false;
        loop {
            tokio::select! {
                served = connection.as_mut() => {
                    if let Err(e) = served {
                        tracing::debug!(error = %e, remote = %remote, "connection ended with an error");
                    }
                    break;
                }
                () = stopped(&mut self.stop), if !closing => {
                    // HTTP/1.1: close after the current response; HTTP/2: GOAWAY.
                    connection.as_mut().graceful_shutdown();
                    closing = true;
                }
                _ = tick.tick(), if !closing => {
                    // A client that never completes a first request (say, an
                    // HTTP/2 preface sent a byte at a time, which hyper's
                    // HTTP/1 header timeout does not see) is cut as slow.
                    let never_asked = !activity.asked.load(Ordering::Relaxed)
                        && activity.epoch.elapsed() >= self.settings.header_read_timeout;
                    if never_asked || activity.idle_for() >= idle_limit {
                        tracing::debug!(remote = %remote, "closing an idle connection (KEEP_ALIVE_TIMEOUT)");
                        connection.as_mut().graceful_shutdown();
                        closing = true;
                    }
                }
            }
        }
    }
}

/// Decrements the open-connections gauge however the connection ends.
struct OpenGuard(&'static str);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        ::metrics::gauge!(metrics::OPEN_CONNECTIONS, "listener" => self.0).decrement(1);
    }
}

/// When a connection last moved a byte, and how many requests it is
/// answering: idle means neither for `KEEP_ALIVE_TIMEOUT`.
#[derive(Debug)]
struct Activity {
    epoch: Instant,
    last_millis: AtomicU64,
    in_flight: AtomicUsize,
    /// A request has reached the router.
    asked: AtomicBool,
}

impl Activity {
    fn new() -> Self {
        Self {
            epoch: Instant::now(),
            last_millis: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            asked: AtomicBool::new(false),
        }
    }

    fn touch(&self) {
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_millis.store(now, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return Duration::ZERO;
        }
        let last = Duration::from_millis(self.last_millis.load(Ordering::Relaxed));
        self.epoch.elapsed().saturating_sub(last)
    }
}

/// A request in flight on its connection.
struct Busy(Arc<Activity>);

impl Busy {
    fn new(activity: &Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::Relaxed);
        activity.asked.store(true, Ordering::Relaxed);
        Self(Arc::clone(activity))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

/// A stream that records when it last read or wrote a byte.
struct Tracked<I> {
    inner: I,
    activity: Arc<Activity>,
}

impl<I> Tracked<I> {
    fn new(inner: I, activity: &Arc<Activity>) -> Self {
        activity.touch();
        Self {
            inner,
            activity: Arc::clone(activity),
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Tracked<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Tracked<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
