//! Kept-alive HTTP/1.1 connections to one upstream, as nginx's `keepalive`
//! keeps them.
//!
//! Not hyper-util's pooled client: it hashes a `(scheme, authority)` key
//! into a shared map on every checkout and return, races a checkout
//! against a lazy connect, rewrites the URI to origin form, and spawns a
//! task per request to put the connection back (its cost:
//! BENCHMARKS.md, `bench/profile proxied`). An upstream
//! here is one plain-HTTP address, so its pool is one list: a checkout
//! pops the most recently used connection, and the response body puts it
//! back when it ends ([`Lease`]).
//!
//! What the pooled client did and this keeps: a request the upstream never
//! saw (a kept connection it closed meanwhile) is sent again on a new
//! connection; connections idle for [`IDLE_TIMEOUT`] are not reused;
//! upgrades (WebSocket) work on the connection that carries them, which is
//! then never reused.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::uri::Authority;
use axum::http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

/// A kept connection unused for this long is closed rather than reused
/// (the pooled client's default; applications close theirs sooner).
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// The most idle connections kept per upstream; more concurrent requests
/// than this still get their own connections, closed when done.
const MAX_IDLE: usize = 256;

/// One upstream's idle connections.
#[derive(Default)]
pub(crate) struct Pool {
    /// A stack: pushed on return, popped on checkout, so it stays ordered
    /// by `since`, oldest first.
    idle: Mutex<Vec<Idle>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("Pool").field("idle", &idle.len()).finish()
    }
}

struct Idle {
    sender: SendRequest<Body>,
    since: Instant,
}

/// Why a request could not be sent or answered.
#[derive(Debug)]
pub(crate) enum SendError {
    /// No connection could be opened.
    Connect(std::io::Error),
    /// Opening a connection took longer than `UPSTREAM_CONNECT_TIMEOUT`.
    ConnectTimeout,
    /// The exchange failed (the upstream closed, sent garbage, …).
    Http(hyper::Error),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Connect(_) => f.write_str("cannot connect"),
            Self::ConnectTimeout => f.write_str("connecting timed out"),
            Self::Http(_) => f.write_str("the exchange failed"),
        }
    }
}

impl std::error::Error for SendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Connect(e) => Some(e),
            Self::ConnectTimeout => None,
            Self::Http(e) => Some(e),
        }
    }
}

impl Pool {
    /// Send `request` (origin-form URI, `Host` set) on a kept connection,
    /// or on a new one to `authority`. The [`Lease`] puts the connection
    /// back once the response body has been read to its end.
    pub(crate) async fn send(
        self: &Arc<Self>,
        authority: &Authority,
        mut request: Request<Body>,
        connect_timeout: Duration,
    ) -> Result<(Response<Incoming>, Lease), SendError> {
        loop {
            let (mut sender, kept) = match self.take() {
                Some(sender) => (sender, true),
                None => (connect(authority, connect_timeout).await?, false),
            };
            if kept && sender.ready().await.is_err() {
                // Closed by the upstream while idle: the request is still
                // ours; try the next one.
                continue;
            }
            match sender.try_send_request(request).await {
                Ok(response) => {
                    let lease = Lease {
                        pool: Arc::clone(self),
                        sender: Some(sender),
                    };
                    return Ok((response, lease));
                }
                Err(mut e) => match e.take_message() {
                    // Not written: the upstream never saw it, so sending it
                    // again is safe whatever the method.
                    Some(unsent) if kept => request = unsent,
                    _ => return Err(SendError::Http(e.into_error())),
                },
            }
        }
    }

    /// The most recently used idle connection still open and not too old.
    fn take(&self) -> Option<SendRequest<Body>> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some(entry) = idle.pop() {
            if !entry.sender.is_closed() && entry.since.elapsed() < IDLE_TIMEOUT {
                return Some(entry.sender);
            }
        }
        None
    }

    fn put(&self, sender: SendRequest<Body>) {
        if sender.is_closed() {
            return;
        }
        let now = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        // Connections left at the bottom since a burst are closed once too
        // old, not kept open for ever.
        let expired =
            idle.partition_point(|e| now.saturating_duration_since(e.since) >= IDLE_TIMEOUT);
        idle.drain(..expired);
        if idle.len() < MAX_IDLE {
            idle.push(Idle { sender, since: now });
        }
    }
}

/// A connection lent to one exchange. Dropped without [`Lease::release`]
/// (body not read to its end, an upgrade, an error), its connection closes.
pub(crate) struct Lease {
    pool: Arc<Pool>,
    sender: Option<SendRequest<Body>>,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease").finish_non_exhaustive()
    }
}

impl Lease {
    /// The exchange is over: the connection may carry the next request.
    pub(crate) fn release(mut self) {
        if let Some(sender) = self.sender.take() {
            self.pool.put(sender);
        }
    }
}

/// A new connection to `authority`, its HTTP/1.1 handling spawned (with
/// upgrades, for WebSocket).
async fn connect(authority: &Authority, timeout: Duration) -> Result<SendRequest<Body>, SendError> {
    // `Authority::host` keeps an IPv6 literal's brackets.
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let port = authority.port_u16().unwrap_or(80);
    // An IP literal is parsed, a name resolved on the blocking pool.
    let stream =
        match tokio::time::timeout(timeout, tokio::net::TcpStream::connect((host, port))).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return Err(SendError::Connect(e)),
            Err(_) => return Err(SendError::ConnectTimeout),
        };
    // Small requests and answers go out at once, as with nginx's
    // `tcp_nodelay`; a failure only costs latency.
    stream.set_nodelay(true).ok();
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(SendError::Http)?;
    tokio::spawn(async move {
        if let Err(e) = connection.with_upgrades().await {
            tracing::debug!(error = %e, "an upstream connection ended");
        }
    });
    Ok(sender)
}
