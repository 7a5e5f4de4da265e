//! Kept-alive HTTP/1.1 connections to one upstream, as nginx's `keepalive`
//! keeps them, each driven by the request that uses it.
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
//! No task per connection either: hyper's connection state machine (the
//! [`Link`]'s driver) is polled by the request's own task, first while
//! waiting for the response head ([`Pool::send`]), then by the response
//! body as the server sends it ([`Lease::drive`]). A spawned driver made
//! every exchange hop tasks twice (request task → connection task → back),
//! each hop a wake-up and often another worker thread woken. An idle
//! connection is not polled at all: an end the upstream sent meanwhile is
//! read by the next request's first poll, before its request is written,
//! and that request is then sent on another connection.
//!
//! What the pooled client did and this keeps: a request the upstream never
//! saw (a kept connection it closed meanwhile) is sent again on a new
//! connection; connections idle for [`IDLE_TIMEOUT`] are not reused;
//! upgrades (WebSocket) work on the connection that carries them, which is
//! then never reused.

use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::uri::Authority;
use axum::http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

use super::ProxyTimeouts;

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
    link: Link,
    since: Instant,
}

/// One connection to the upstream: the handle requests are sent on, and
/// hyper's state machine that reads and writes the socket, polled by
/// whoever uses the connection.
struct Link {
    sender: SendRequest<Body>,
    /// hyper's connection `with_upgrades`, so that a `101 Switching
    /// Protocols` hands the socket over (a type hyper does not name, hence
    /// the box: one per connection, not per request). Never polled again
    /// once it has ended: the link is dropped then.
    driver: Pin<Box<dyn Future<Output = hyper::Result<()>> + Send>>,
    /// `UPSTREAM_READ_TIMEOUT` for whichever wait the connection is in
    /// (the response head, the next part of its body). One per
    /// connection, reset for each wait: a later deadline on a timer that
    /// is already registered costs tokio one atomic operation, where a
    /// timer made per request costs a registration and a removal, each
    /// under the timer wheel's lock.
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl Link {
    /// Poll the connection: `Ready` once it has ended (closed by either
    /// side, failed, or upgraded), after which the link must be dropped.
    fn poll_driver(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match self.driver.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(())) => Poll::Ready(()),
            Poll::Ready(Err(e)) => {
                tracing::debug!(error = %e, "an upstream connection ended");
                Poll::Ready(())
            }
        }
    }
}

/// Why a request could not be sent or answered.
#[derive(Debug)]
pub(crate) enum SendError {
    /// No connection could be opened.
    Connect(std::io::Error),
    /// Opening a connection took longer than `UPSTREAM_CONNECT_TIMEOUT`.
    ConnectTimeout,
    /// No response head within `UPSTREAM_READ_TIMEOUT` of sending.
    ReadTimeout,
    /// The exchange failed (the upstream closed, sent garbage, …).
    Http(hyper::Error),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Connect(_) => f.write_str("cannot connect"),
            Self::ConnectTimeout => f.write_str("connecting timed out"),
            Self::ReadTimeout => f.write_str("no answer in time"),
            Self::Http(_) => f.write_str("the exchange failed"),
        }
    }
}

impl std::error::Error for SendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Connect(e) => Some(e),
            Self::ConnectTimeout | Self::ReadTimeout => None,
            Self::Http(e) => Some(e),
        }
    }
}

impl Pool {
    /// Send `request` (origin-form URI, `Host` set) on a kept connection,
    /// or on a new one to `authority`, driving the connection until the
    /// response head arrives (within `timeouts.read`). The [`Lease`] goes
    /// on driving it for the body, and puts it back once the body has been
    /// read to its end.
    pub(crate) async fn send(
        self: &Arc<Self>,
        authority: &Authority,
        mut request: Request<Body>,
        timeouts: ProxyTimeouts,
    ) -> Result<(Response<Incoming>, Lease), SendError> {
        loop {
            let (mut link, kept) = match self.take() {
                Some(link) => (link, true),
                None => (connect(authority, timeouts.connect).await?, false),
            };
            // A kept connection is not polled while idle: if the upstream
            // closed it meanwhile, the driver's first poll reads that end
            // before it writes anything, and the request comes back
            // unsent. (Not wanted by its driver, `try_send_request`
            // gives the request back at once.)
            let answer = link.sender.try_send_request(request);
            let mut lease = Lease {
                pool: Arc::clone(self),
                link: Some(link),
                holds_waker: false,
            };
            match exchange(&mut lease, answer, timeouts.read).await {
                None => return Err(SendError::ReadTimeout),
                Some(Ok(response)) => return Ok((response, lease)),
                Some(Err(mut e)) => match e.take_message() {
                    // Not written: the upstream never saw it, so sending it
                    // again is safe whatever the method.
                    Some(unsent) if kept => request = unsent,
                    _ => return Err(SendError::Http(e.into_error())),
                },
            }
        }
    }

    /// The most recently used idle connection not too old.
    fn take(&self) -> Option<Link> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some(entry) = idle.pop() {
            if entry.since.elapsed() < IDLE_TIMEOUT {
                return Some(entry.link);
            }
        }
        None
    }

    fn put(&self, link: Link) {
        let now = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        // Connections left at the bottom since a burst are closed once too
        // old, not kept open for ever.
        let expired =
            idle.partition_point(|e| now.saturating_duration_since(e.since) >= IDLE_TIMEOUT);
        // Dropping a link closes its socket: done after the lock is let go.
        let expired: Vec<Idle> = if expired == 0 {
            Vec::new()
        } else {
            idle.drain(..expired).collect()
        };
        let unkept = if idle.len() < MAX_IDLE {
            idle.push(Idle { link, since: now });
            None
        } else {
            Some(link)
        };
        drop(idle);
        drop((expired, unkept));
    }
}

/// Drive the lease's connection until `answer`, the response to the
/// request just queued on it, arrives; `None` if it has not within
/// `timeout`.
///
/// The answer is settled only by the connection, in one of its polls here
/// or when it is dropped, both in this task: it is polled with a waker
/// that does nothing (see [`Lease::drive_quietly`]).
async fn exchange<A>(lease: &mut Lease, answer: A, timeout: Duration) -> Option<A::Output>
where
    A: Future,
{
    let mut answer = pin!(answer);
    lease.start_timeout(timeout);
    poll_fn(|cx| {
        let quiet = &mut Context::from_waker(Waker::noop());
        if lease.drive_quietly() {
            if let Poll::Ready(outcome) = answer.as_mut().poll(quiet) {
                return Poll::Ready(Some(outcome));
            }
            if lease.drive_and_wait(cx) {
                if let Poll::Ready(outcome) = answer.as_mut().poll(quiet) {
                    return Poll::Ready(Some(outcome));
                }
                return lease.poll_timeout(cx).map(|()| None);
            }
        }
        // The connection ended, and dropping it settled the answer (an
        // error, and the request itself if it was never written).
        answer.as_mut().poll(cx).map(Some)
    })
    .await
}

/// A connection lent to one exchange, driven by its response body.
/// Dropped without [`Lease::release`] (body not read to its end, an error),
/// its connection closes.
pub(crate) struct Lease {
    pool: Arc<Pool>,
    /// `None` once the connection ended.
    link: Option<Link>,
    /// Whether the connection's last poll was given the task's waker.
    holds_waker: bool,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease").finish_non_exhaustive()
    }
}

impl Lease {
    /// Poll the connection with a waker that does nothing: it does what it
    /// can now (reads more of the answer into the response body, writes
    /// more of the request) and leaves no wake-up behind. Whether there was
    /// a connection to poll.
    ///
    /// Why not the task's waker: a connection wakes the waker it was last
    /// polled with whenever its other side moves (the body's reader takes
    /// a chunk, a request is queued), and both sides are in this task.
    /// Holding this task's waker, it would wake the task that is running
    /// already, which then runs once more for nothing (and tokio wakes
    /// another worker thread to take it). So the task's waker is given
    /// only by [`Lease::drive_and_wait`], last before the task waits.
    pub(crate) fn drive_quietly(&mut self) -> bool {
        self.holds_waker = false;
        self.poll(&mut Context::from_waker(Waker::noop()))
    }

    /// Poll the connection with `cx`'s waker, so that the task is woken
    /// when the connection can go on: the last poll before the task
    /// returns `Pending`. Whether there was a connection to poll.
    pub(crate) fn drive_and_wait(&mut self, cx: &mut Context<'_>) -> bool {
        self.holds_waker = true;
        self.poll(cx)
    }

    /// Start a wait of at most `timeout` from now (see [`Link::timer`]).
    pub(crate) fn start_timeout(&mut self, timeout: Duration) {
        if let Some(link) = &mut self.link {
            let deadline = tokio::time::Instant::now() + timeout;
            link.timer.as_mut().reset(deadline);
        }
    }

    /// Whether the wait started last has lasted its timeout; if not, the
    /// task is woken when it has. Never, once the connection ended.
    pub(crate) fn poll_timeout(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match &mut self.link {
            Some(link) => link.timer.as_mut().poll(cx),
            None => Poll::Pending,
        }
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(link) = &mut self.link else {
            return false;
        };
        if link.poll_driver(cx).is_ready() {
            self.link = None;
        }
        true
    }

    /// Drive the connection until it ends: for a `101 Switching Protocols`,
    /// that is when it hands its socket to the response's upgrade.
    pub(crate) async fn finish(mut self) {
        if let Some(mut link) = self.link.take() {
            poll_fn(|cx| link.poll_driver(cx)).await;
        }
    }

    /// The response was read to its end: the connection may carry the next
    /// request once it is also done writing this one.
    pub(crate) fn release(mut self) {
        let Some(mut link) = self.link.take() else {
            return;
        };
        // An idle connection wakes no one: it is polled again when taken.
        // One that holds this task's waker would wake it when the next
        // request is queued on it.
        if self.holds_waker
            && link
                .poll_driver(&mut Context::from_waker(Waker::noop()))
                .is_ready()
        {
            return;
        }
        // Wanting a request again: both messages are done.
        if link.sender.is_ready() {
            self.pool.put(link);
            return;
        }
        // The upstream answered before it read all of the request's body:
        // the rest is still to be sent, and no response body is left to
        // drive the connection. A task of its own finishes the request
        // (bounded, as an idle connection is) and then keeps the
        // connection. Rare: applications read the body before answering.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let pool = Arc::clone(&self.pool);
        runtime.spawn(async move {
            let done = {
                let ready = poll_fn(|cx| {
                    if link.poll_driver(cx).is_ready() {
                        return Poll::Ready(false);
                    }
                    link.sender.poll_ready(cx).map(|ready| ready.is_ok())
                });
                tokio::time::timeout(IDLE_TIMEOUT, ready).await
            };
            if let Ok(true) = done {
                pool.put(link);
            }
        });
    }
}

/// A new connection to `authority`, its HTTP/1.1 handling left to the
/// caller to drive.
async fn connect(authority: &Authority, timeout: Duration) -> Result<Link, SendError> {
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
    Ok(Link {
        sender,
        driver: Box::pin(connection.with_upgrades()),
        // Set for each wait before it is polled.
        timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
    })
}
