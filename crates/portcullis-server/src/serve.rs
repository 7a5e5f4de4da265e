//! The accept loop: hyper's HTTP/1.1 and HTTP/2 connections over plain TCP
//! or rustls (the version read off the first bytes), with the limits that
//! keep slow or greedy clients from tying the server up, idle HTTP/1.1
//! connections parked without hyper's state (see `Connection::keep`), and
//! a bounded graceful shutdown.
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
//!   bytes either way for this long is closed (HTTP/1.1 and HTTP/2; a
//!   parked HTTP/1.1 connection at the next sweep after it).
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
use bytes::{Buf as _, Bytes, BytesMut};
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
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
    let shared = Arc::new(Shared {
        name,
        tls,
        router,
        builders: builders(&settings),
        settings: Arc::clone(&settings),
        sweep: tokio::sync::Notify::new(),
    });
    // In a JoinSet so that it is aborted however `serve` ends, also when
    // its own task is (a dropped `serve` must not leave it holding the
    // router and, through it, the store).
    let mut sweeper = JoinSet::new();
    sweeper.spawn({
        let shared = Arc::clone(&shared);
        let period = sweep_period(settings.keep_alive_timeout);
        async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                shared.sweep.notify_waiters();
            }
        }
    });
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
        ::metrics::gauge!(metrics::OPEN_CONNECTIONS, "listener" => name).increment(1);
        let connection = Connection {
            shared: Arc::clone(&shared),
            remote,
            stop: stop.clone(),
            _permit: permit,
            _open: OpenGuard(name),
        };
        connections.spawn(connection.run(stream));
    }
    // No new connections from here: the socket closes now, and parked
    // connections close (the others finish their requests first).
    drop(tcp);
    shared.sweep.notify_waiters();
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
    sweeper.abort_all();
}

/// How often parked connections look at the clock: a tenth of
/// `KEEP_ALIVE_TIMEOUT`, between 0.1 and 5 s, so that a parked connection
/// is closed at most that much after its time. Each sweep wakes every
/// parked connection (10,000 of them cost about 9 ms of one core a sweep).
fn sweep_period(keep_alive_timeout: Duration) -> Duration {
    (keep_alive_timeout / 10).clamp(Duration::from_millis(100), Duration::from_secs(5))
}

/// Resolves once `stop` is true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// The HTTP/1.1 and HTTP/2 connection settings, shared by every connection
/// of a listener.
struct Builders {
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
}

fn builders(settings: &ServerSettings) -> Builders {
    let mut http1 = http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        // HEADER_READ_TIMEOUT is ours (`Activity::head_overdue`, looked at
        // every PARK_AFTER): hyper's made, armed and dropped a timer for
        // every request, 3% of an authenticated request's instructions.
        .header_read_timeout(None)
        .max_buf_size(settings.max_header_bytes);
    let mut http2 = http2::Builder::new(TokioExecutor::new());
    http2
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(settings.max_header_bytes).unwrap_or(u32::MAX));
    Builders { http1, http2 }
}

/// What an HTTP/2 connection starts with (prior knowledge on plain TCP,
/// after ALPN `h2` over TLS); anything else is HTTP/1.x.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What every connection of a listener shares.
struct Shared {
    /// The `listener` label.
    name: &'static str,
    tls: Option<Arc<Tls>>,
    router: Router,
    builders: Builders,
    settings: Arc<ServerSettings>,
    /// Notified every [`sweep_period`] and when the server stops: parked
    /// connections wake on it to look at `KEEP_ALIVE_TIMEOUT` and `stop`.
    /// One shared wake-up rather than a timer and a `watch` wait in each:
    /// those were 176 of the bytes every parked connection's task holds.
    sweep: tokio::sync::Notify,
}

/// One accepted connection. Small on purpose: a parked connection's task
/// holds this, its socket and the wait.
struct Connection {
    shared: Arc<Shared>,
    remote: SocketAddr,
    stop: watch::Receiver<bool>,
    /// Its place under `MAX_CONNECTIONS`.
    _permit: tokio::sync::OwnedSemaphorePermit,
    _open: OpenGuard,
}

/// An HTTP/1.1 connection idle this long is parked (and a connection's
/// timeouts are checked this often). Short, so that a burst of clients
/// that each ask once and stay connected never holds many hyper states at
/// once: their buffers are freed, not left for the allocator to keep
/// (10,000 such clients, `BENCH_ROWS=memory bench/run`: 13.6–17.0 MiB
/// resident for them at 100 ms, 13.3–14.3 MiB at 50 ms).
const PARK_AFTER: Duration = Duration::from_millis(50);

/// What a connection speaks, by its first bytes.
#[derive(Debug, Clone, Copy)]
enum Version {
    Http1,
    Http2,
}

/// How one hyper connection ended.
enum Ended {
    /// The connection is over (closed by either side, an error, an
    /// upgrade, the server stopping).
    Closed,
    /// The connection is idle and was asked to hand its socket back.
    Parked,
}

impl Connection {
    // `run`, `keep` and `park` return async blocks rather than being
    // `async fn`s: an `async fn` keeps a second copy of its arguments in its
    // future (rust-lang/rust#62958), and these futures are what a parked
    // connection's task is made of.
    #[expect(
        clippy::manual_async_fn,
        reason = "an async fn would keep its arguments twice (rust-lang/rust#62958)"
    )]
    fn run(mut self, stream: TcpStream) -> impl Future<Output = ()> + Send + 'static {
        async move {
            if let Err(e) = stream.set_nodelay(true) {
                tracing::debug!(error = %e, "cannot set TCP_NODELAY");
            }
            let activity = Arc::new(Activity::new());
            match self.shared.tls.clone() {
                // Boxed: rustls's state is large, and a plain connection's task
                // should not be sized for it.
                Some(tls) => Box::pin(self.run_tls(tls, stream, activity)).await,
                None => {
                    if let Some(io) = Box::pin(self.begin(stream, &activity)).await {
                        self.keep(io, &activity).await;
                    }
                }
            }
        }
    }

    async fn run_tls(&mut self, tls: Arc<Tls>, stream: TcpStream, activity: Arc<Activity>) {
        // The handshake counts as reading the request head: a client that
        // stalls it is cut like a slow header.
        let handshake = tokio::time::timeout(
            self.shared.settings.header_read_timeout,
            tls.acceptor().accept(stream),
        )
        .await;
        match handshake {
            Ok(Ok(stream)) => {
                if let Some(io) = self.begin(stream, &activity).await {
                    self.keep(io, &activity).await;
                }
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, remote = %self.remote, "TLS handshake failed");
            }
            Err(_) => {
                tracing::debug!(remote = %self.remote, "TLS handshake timed out");
            }
        }
    }

    /// Keep serving an HTTP/1.1 connection. It is served by hyper while
    /// requests come and parked while it is idle: hyper's state is ended
    /// without closing the socket, and the task waits on the socket alone
    /// (hyper's buffers, 8 KiB to read and 8 KiB of response head, its
    /// timers and the dispatcher's state are freed). When bytes arrive, a
    /// new hyper connection takes the socket up again, with whatever the
    /// last one had read and not parsed. Every phase but that wait runs in
    /// a boxed future of its own, so that a parked connection's task is
    /// small.
    #[expect(
        clippy::manual_async_fn,
        reason = "an async fn would keep its arguments twice (rust-lang/rust#62958)"
    )]
    fn keep<'a, I: Transport>(
        &'a mut self,
        mut io: Tracked<I>,
        activity: &'a Arc<Activity>,
    ) -> impl Future<Output = ()> + Send + 'a {
        async move {
            loop {
                // Unless the next request had begun, wait for it.
                if io.unread.is_empty() && !self.park(&mut io, activity).await {
                    return;
                }
                io = match Box::pin(self.serve_http1(io, activity)).await {
                    Some(io) => io,
                    None => return,
                };
            }
        }
    }

    /// Tell the version from the first bytes, then serve HTTP/2 to the
    /// connection's end, or HTTP/1.1 until it is first parked.
    async fn begin<I: Transport>(&mut self, io: I, activity: &Arc<Activity>) -> Option<Tracked<I>> {
        let mut io = Tracked::new(io, activity);
        // The preface, like a request head, must arrive within
        // HEADER_READ_TIMEOUT.
        let sniffed =
            tokio::time::timeout(self.shared.settings.header_read_timeout, io.sniff()).await;
        match sniffed {
            Ok(Ok(Version::Http1)) => self.serve_http1(io, activity).await,
            Ok(Ok(Version::Http2)) => {
                let connection = self
                    .shared
                    .builders
                    .http2
                    .serve_connection(TokioIo::new(io), self.service(activity));
                tokio::pin!(connection);
                self.serve(
                    connection,
                    activity,
                    false,
                    http2::Connection::graceful_shutdown,
                )
                .await;
                None
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, remote = %self.remote, "connection ended before a request");
                None
            }
            Err(_) => {
                tracing::debug!(remote = %self.remote, "no request within HEADER_READ_TIMEOUT");
                None
            }
        }
    }

    /// The service that hands this connection's requests to the router,
    /// with what the handlers learn of the connection.
    fn service(
        &self,
        activity: &Arc<Activity>,
    ) -> impl hyper::service::HttpService<Incoming, ResBody = Answering, Future: Send + 'static>
    + Unpin
    + Send
    + 'static
    + use<> {
        // The proxy's X-Forwarded-Proto.
        let scheme = ForwardedProto(if self.shared.tls.is_some() {
            "https"
        } else {
            "http"
        });
        let remote = self.remote;
        let router = self.shared.router.clone();
        let activity = Arc::clone(activity);
        hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(remote));
            request.extensions_mut().insert(scheme);
            let busy = Busy::new(&activity);
            let router = router.clone();
            async move {
                let response = router.oneshot(request.map(axum::body::Body::new)).await;
                // The request stays in flight until hyper has sent the
                // whole body and dropped it.
                response.map(|response| response.map(|body| Answering { body, _busy: busy }))
            }
        })
    }

    /// One hyper HTTP/1.1 connection on `io`, until it ends; the socket
    /// back when it was parked.
    async fn serve_http1<I: Transport>(
        &mut self,
        io: Tracked<I>,
        activity: &Arc<Activity>,
    ) -> Option<Tracked<I>> {
        activity.parking.store(false, Ordering::Relaxed);
        let mut connection = self
            .shared
            .builders
            .http1
            .serve_connection(TokioIo::new(io), self.service(activity))
            .with_upgrades();
        let ended = self
            .serve(
                Pin::new(&mut connection),
                activity,
                true,
                http1::UpgradeableConnection::graceful_shutdown,
            )
            .await;
        if let Ended::Closed = ended {
            return None;
        }
        let parts = connection.into_parts()?;
        let mut io = parts.io.into_inner();
        io.unread_first(parts.read_buf);
        Some(io)
    }

    /// Wait for the parked connection's next request; `false` when the
    /// connection is to close instead (`KEEP_ALIVE_TIMEOUT`, the server
    /// stopping, an error). Polled by hand rather than through `select!`
    /// and async helpers: this state is what every idle connection holds.
    #[expect(
        clippy::manual_async_fn,
        reason = "an async fn would keep its arguments twice (rust-lang/rust#62958)"
    )]
    fn park<'a, I: Transport>(
        &'a mut self,
        io: &'a mut Tracked<I>,
        activity: &'a Activity,
    ) -> impl Future<Output = bool> + Send + 'a {
        async move {
            let idle_limit = self.shared.settings.keep_alive_timeout;
            let name = self.shared.name;
            ::metrics::gauge!(metrics::PARKED_CONNECTIONS, "listener" => name).increment(1);
            let _parked = ParkedGuard(name);
            let remote = &self.remote;
            loop {
                // Registered before `stop` and the idle time are read, so a
                // sweep or a stop in between is not missed.
                let swept = self.shared.sweep.notified();
                tokio::pin!(swept);
                swept.as_mut().enable();
                if *self.stop.borrow() {
                    return false;
                }
                if activity.idle_for() >= idle_limit {
                    tracing::debug!(remote = %remote, "closing an idle connection (KEEP_ALIVE_TIMEOUT)");
                    return false;
                }
                let woken = std::future::poll_fn(|cx| {
                    if let Poll::Ready(ready) = io.inner.poll_wait(cx) {
                        return Poll::Ready(Some(ready));
                    }
                    swept.as_mut().poll(cx).map(|()| None)
                })
                .await;
                match woken {
                    // A sweep: look at the clock and `stop` again.
                    None => {}
                    Some(Ok(first)) => {
                        io.unread = first;
                        return true;
                    }
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, remote = %remote, "a parked connection failed");
                        return false;
                    }
                }
            }
        }
    }

    /// Drive `connection` until it ends: a `graceful_shutdown` when the
    /// server stops or the connection has been idle for `KEEP_ALIVE_TIMEOUT`;
    /// for `http1`, also the end of a request head late past
    /// `HEADER_READ_TIMEOUT` and a hand-back ([`Ended::Parked`]) once idle
    /// for [`PARK_AFTER`].
    async fn serve<C>(
        &mut self,
        mut connection: Pin<&mut C>,
        activity: &Activity,
        http1: bool,
        graceful_shutdown: fn(Pin<&mut C>),
    ) -> Ended
    where
        C: Future<Output = hyper::Result<()>>,
    {
        let remote = self.remote;
        let settings = &self.shared.settings;
        let idle_limit = settings.keep_alive_timeout;
        let header_read_timeout = settings.header_read_timeout;
        let mut tick = tokio::time::interval(PARK_AFTER);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut closing = false;
        let mut parking = false;
        loop {
            tokio::select! {
                served = connection.as_mut() => {
                    if let Err(e) = served {
                        tracing::debug!(error = %e, remote = %remote, "connection ended with an error");
                        return Ended::Closed;
                    }
                    return if parking && !closing { Ended::Parked } else { Ended::Closed };
                }
                () = stopped(&mut self.stop), if !closing => {
                    // HTTP/1.1: close after the current response; HTTP/2: GOAWAY.
                    graceful_shutdown(connection.as_mut());
                    closing = true;
                }
                _ = tick.tick(), if !closing && !parking => {
                    // HTTP/1.1: a request head begun and not finished within
                    // HEADER_READ_TIMEOUT (slowloris) ends the connection, as
                    // hyper's own timeout did: no answer, the socket closed.
                    if http1 && activity.head_overdue(header_read_timeout) {
                        tracing::debug!(remote = %remote, "closing a connection whose request head is late (HEADER_READ_TIMEOUT)");
                        return Ended::Closed;
                    }
                    // A client that never completes a first request (an
                    // HTTP/2 client that sends its settings and then nothing)
                    // is cut as slow.
                    let never_asked = !activity.asked.load(Ordering::Relaxed)
                        && activity.epoch.elapsed() >= header_read_timeout;
                    if never_asked || activity.idle_for() >= idle_limit {
                        tracing::debug!(remote = %remote, "closing an idle connection (KEEP_ALIVE_TIMEOUT)");
                        graceful_shutdown(connection.as_mut());
                        closing = true;
                    } else if http1 && activity.parkable(PARK_AFTER) {
                        // hyper ends an idle HTTP/1.1 connection at once on a
                        // graceful shutdown; the socket's shutdown is skipped
                        // (Tracked::poll_shutdown) and the socket handed back.
                        activity.parking.store(true, Ordering::Relaxed);
                        graceful_shutdown(connection.as_mut());
                        parking = true;
                    }
                }
            }
        }
    }
}

/// A response body that keeps its request counted as in flight: a
/// connection streaming an answer, however slowly, is not idle.
struct Answering {
    body: axum::body::Body,
    _busy: Busy,
}

impl hyper::body::Body for Answering {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, axum::Error>>> {
        hyper::body::Body::poll_frame(Pin::new(&mut self.body), cx)
    }

    fn is_end_stream(&self) -> bool {
        hyper::body::Body::is_end_stream(&self.body)
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::Body::size_hint(&self.body)
    }
}

/// A socket under a connection: plain TCP or TLS.
trait Transport: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Ready once the peer has sent bytes, closed or failed, holding as
    /// little as possible meanwhile; with the bytes it had to read to know.
    fn poll_wait(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<Bytes>>;
}

impl Transport for TcpStream {
    fn poll_wait(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<Bytes>> {
        self.poll_read_ready(cx).map_ok(|()| Bytes::new())
    }
}

impl Transport for tokio_rustls::server::TlsStream<TcpStream> {
    /// rustls tells of a request only by decrypting it (and may hold bytes
    /// it decrypted earlier): its first byte is read here and kept for
    /// hyper.
    fn poll_wait(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<Bytes>> {
        let mut probe = [0_u8; 1];
        let mut first = ReadBuf::new(&mut probe);
        Pin::new(self)
            .poll_read(cx, &mut first)
            .map_ok(|()| Bytes::copy_from_slice(first.filled()))
    }
}

/// Decrements the open-connections gauge however the connection ends.
struct OpenGuard(&'static str);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        ::metrics::gauge!(metrics::OPEN_CONNECTIONS, "listener" => self.0).decrement(1);
    }
}

/// Decrements the parked-connections gauge when the wait ends.
struct ParkedGuard(&'static str);

impl Drop for ParkedGuard {
    fn drop(&mut self) {
        ::metrics::gauge!(metrics::PARKED_CONNECTIONS, "listener" => self.0).decrement(1);
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
    /// Bytes have arrived since the last answer: hyper may be holding part
    /// of the next request, whose `HEADER_READ_TIMEOUT` a park would restart.
    read_since_answer: AtomicBool,
    /// When the first of those bytes came (milliseconds since `epoch`).
    head_started_millis: AtomicU64,
    /// The connection is handing its socket back: hyper's shutdown of it
    /// is skipped.
    parking: AtomicBool,
}

impl Activity {
    fn new() -> Self {
        Self {
            epoch: Instant::now(),
            last_millis: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            asked: AtomicBool::new(false),
            read_since_answer: AtomicBool::new(false),
            head_started_millis: AtomicU64::new(0),
            parking: AtomicBool::new(false),
        }
    }

    /// Idle for at least `after`, with nothing of a next request read.
    fn parkable(&self, after: Duration) -> bool {
        !self.read_since_answer.load(Ordering::Relaxed) && self.idle_for() >= after
    }

    fn touch(&self) {
        self.last_millis.store(self.millis_now(), Ordering::Relaxed);
    }

    /// Bytes of a request have come in: the first since an answer starts
    /// the clock of its head.
    fn began_reading(&self) {
        if !self.read_since_answer.load(Ordering::Relaxed) {
            self.read_since_answer.store(true, Ordering::Relaxed);
            self.head_started_millis
                .store(self.millis_now(), Ordering::Relaxed);
        }
    }

    /// A request has begun to arrive and its head has not been parsed
    /// within `limit`. (Bytes that come while a request is in flight are
    /// the next one's; if its head is complete it is parsed as soon as the
    /// answer is out, and if not, its clock started with its first bytes.)
    fn head_overdue(&self, limit: Duration) -> bool {
        self.in_flight.load(Ordering::Relaxed) == 0
            && self.read_since_answer.load(Ordering::Relaxed)
            && Duration::from_millis(
                self.millis_now()
                    .saturating_sub(self.head_started_millis.load(Ordering::Relaxed)),
            ) >= limit
    }

    fn millis_now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn idle_for(&self) -> Duration {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return Duration::ZERO;
        }
        let last = Duration::from_millis(self.last_millis.load(Ordering::Relaxed));
        self.epoch.elapsed().saturating_sub(last)
    }
}

/// A request in flight on its connection, from its head to the end of
/// its answer.
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
        self.0.read_since_answer.store(false, Ordering::Relaxed);
        self.0.touch();
    }
}

/// A stream that records when it last read or wrote a byte, and first
/// gives out the bytes read from it earlier (the version sniff's, or
/// what a parked connection's hyper had read and not parsed).
struct Tracked<I> {
    inner: I,
    unread: Bytes,
    activity: Arc<Activity>,
}

impl<I> Tracked<I> {
    fn new(inner: I, activity: &Arc<Activity>) -> Self {
        activity.touch();
        Self {
            inner,
            unread: Bytes::new(),
            activity: Arc::clone(activity),
        }
    }

    /// Put `earlier` before the bytes not yet given out.
    fn unread_first(&mut self, earlier: Bytes) {
        if earlier.is_empty() {
            return;
        }
        if self.unread.is_empty() {
            self.unread = earlier;
            return;
        }
        let mut both = BytesMut::with_capacity(earlier.len() + self.unread.len());
        both.extend_from_slice(&earlier);
        both.extend_from_slice(&self.unread);
        self.unread = both.freeze();
    }
}

impl<I: AsyncRead + Unpin> Tracked<I> {
    /// Whether the connection speaks HTTP/2: reads until the first bytes
    /// differ from the preface or complete it, and keeps them unread.
    async fn sniff(&mut self) -> std::io::Result<Version> {
        let mut first = [0_u8; H2_PREFACE.len()];
        let mut filled = 0;
        while filled < first.len() {
            let Some(rest) = first.get_mut(filled..) else {
                break;
            };
            let read = tokio::io::AsyncReadExt::read(&mut self.inner, rest).await?;
            let sniffed = first.get(..filled + read).unwrap_or_default();
            filled += read;
            if read == 0 || !H2_PREFACE.starts_with(sniffed) {
                break;
            }
        }
        let sniffed = first.get(..filled).unwrap_or_default();
        if filled > 0 {
            self.activity.touch();
        }
        self.unread = Bytes::copy_from_slice(sniffed);
        Ok(if sniffed == H2_PREFACE {
            Version::Http2
        } else {
            Version::Http1
        })
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Tracked<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if !self.unread.is_empty() {
            let n = self.unread.len().min(buf.remaining());
            if let Some(bytes) = self.unread.get(..n) {
                buf.put_slice(bytes);
            }
            self.unread.advance(n);
            self.activity.began_reading();
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
            self.activity.began_reading();
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
        if self.activity.parking.load(Ordering::Relaxed) {
            // The connection is parked, not closed.
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
