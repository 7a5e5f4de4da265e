//! `[[upstream]]`: forward a request to an HTTP application, authenticated
//! on the way, as nginx's `proxy_pass` does — method, path, query, headers
//! and a streamed body in both directions; hop-by-hop headers dropped;
//! `X-Forwarded-*` set; WebSocket (any `Upgrade`) tunnelled.
//!
//! Connections to an upstream are kept and reused, as nginx's `keepalive`
//! does ([`pool`]).

mod pool;

use std::error::Error as _;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::http::uri::{Authority, PathAndQuery, Scheme};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri, Version, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body::Frame;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use portcullis_core::AuthError;
use portcullis_http::{ApiError, AppState, MountError};

use pool::{Lease, Pool, SendError};

/// Who may pass an `[[upstream]]` route (`auth = "required"`, `"optional"`
/// or `"none"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// A valid access token, else simplejwt's 401.
    Required,
    /// Anonymous requests pass without identity; a token that is sent must
    /// be valid (DRF's rule: a bad token is refused, not ignored).
    Optional,
    /// No authentication; identity headers are only removed.
    None,
}

/// `UPSTREAM_CONNECT_TIMEOUT` and `UPSTREAM_READ_TIMEOUT`.
#[derive(Debug, Clone, Copy)]
pub struct ProxyTimeouts {
    /// Opening a connection to the upstream.
    pub connect: Duration,
    /// Waiting for the response head once the connection is open, and then
    /// between two reads of its body (nginx's `proxy_read_timeout`).
    pub read: Duration,
}

/// The scheme of the connection a request came on, for
/// `X-Forwarded-Proto`. The server inserts it into the request's
/// extensions on TLS connections; without it, `http`.
#[derive(Debug, Clone, Copy)]
pub struct ForwardedProto(pub &'static str);

/// Why an `[[upstream]]` URL cannot be used; the message starts with the
/// URL as written.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamUrlError {
    /// Not a URL at all.
    #[error("{url:?} is not a URL ({source})")]
    NotAUrl {
        /// As written.
        url: String,
        /// The parser's reason.
        #[source]
        source: axum::http::uri::InvalidUri,
    },
    /// A URL, but not one the proxy can forward to.
    #[error("{url:?} {problem}")]
    Refused {
        /// As written.
        url: String,
        /// What is wrong with it.
        problem: &'static str,
    },
}

/// One `[[upstream]]` entry, checked.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// Starts and ends with `/`.
    pub prefix: String,
    authority: Authority,
    /// The URL's path without its trailing `/`, put before the forwarded
    /// path (empty for `http://host:port`).
    base_path: String,
    auth: AuthMode,
    strip_prefix: bool,
    timeouts: ProxyTimeouts,
    /// The kept connections, shared by the route's clones.
    pool: Arc<Pool>,
}

impl Upstream {
    /// A route; `url` must be `http://host:port` with an optional path.
    pub fn new(
        prefix: String,
        url: &str,
        auth: AuthMode,
        strip_prefix: bool,
        timeouts: ProxyTimeouts,
    ) -> Result<Self, UpstreamUrlError> {
        let uri: Uri = url.parse().map_err(|source| UpstreamUrlError::NotAUrl {
            url: url.to_owned(),
            source,
        })?;
        let refused = |problem| UpstreamUrlError::Refused {
            url: url.to_owned(),
            problem,
        };
        if uri.scheme() != Some(&Scheme::HTTP) {
            return Err(refused(
                "must start with http:// (the upstream is reached over plain HTTP, usually on localhost or a private network)",
            ));
        }
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| refused("names no host"))?;
        if authority.as_str().contains('@') {
            return Err(refused("must not carry credentials"));
        }
        if uri.query().is_some() {
            return Err(refused("must not have a query"));
        }
        Ok(Self {
            prefix,
            authority,
            base_path: uri.path().trim_end_matches('/').to_owned(),
            auth,
            strip_prefix,
            timeouts,
            pool: Arc::default(),
        })
    }

    pub(crate) async fn forward(&self, mut request: Request, state: &AppState) -> Response {
        let timeouts = self.timeouts;
        let user = match authenticate(self.auth, request.headers(), state).await {
            Ok(user) => user,
            Err(e) => return refusal(e, state),
        };
        // One pass over the few fields a request carries: usually none is
        // hop-by-hop, and then there is no `Connection: upgrade` either.
        let hop_by_hop = request.headers().keys().any(is_hop_by_hop);
        let upgrade = if hop_by_hop {
            upgrade_of(request.headers())
        } else {
            None
        };
        let client_upgrade = upgrade.is_some().then(|| hyper::upgrade::on(&mut request));
        let Some(uri) = self.upstream_uri(request.uri()) else {
            return ApiError::NotFound.into_response();
        };
        let (mut parts, body) = request.into_parts();
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| info.0.ip());
        let proto = parts
            .extensions
            .get::<ForwardedProto>()
            .map_or("http", |p| p.0);
        let headers = &mut parts.headers;
        // HTTP/2 names the host in the URI.
        if !headers.contains_key(header::HOST)
            && let Some(authority) = parts.uri.authority()
            && let Ok(host) = HeaderValue::from_str(authority.as_str())
        {
            headers.insert(header::HOST, host);
        }
        if hop_by_hop {
            remove_hop_by_hop(headers);
        }
        let identity = &state.http().identity;
        identity.remove(headers);
        if let Some(user) = &user {
            identity.insert(headers, user);
        }
        // An HTTP/1.0 client may name no host; HTTP/1.1 requires one, and
        // the upstream's own name goes (with no `X-Forwarded-Host`).
        if !forwarded_headers(headers, peer, proto)
            && let Ok(host) = HeaderValue::from_str(self.authority.as_str())
        {
            headers.insert(header::HOST, host);
        }
        if let Some(upgrade) = upgrade {
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            headers.insert(header::UPGRADE, upgrade);
        }
        parts.uri = uri;
        // The pooled client speaks HTTP/1.1 to the upstream whatever the
        // client spoke to us.
        parts.version = Version::HTTP_11;
        let outgoing = Request::from_parts(parts, body);
        let (mut response, lease) = match self.pool.send(&self.authority, outgoing, timeouts).await
        {
            Ok(answer) => answer,
            Err(e) => return self.failure(&e),
        };
        if response.status() == StatusCode::SWITCHING_PROTOCOLS
            && let Some(client_upgrade) = client_upgrade
        {
            let upstream_upgrade = hyper::upgrade::on(&mut response);
            // The connection hands its socket to the upgrade once driven
            // past the 101, and the tunnel outlives this request: a task
            // of its own (an upgrade is rare, a request is not).
            tokio::spawn(async move {
                lease.finish().await;
                tunnel(client_upgrade, upstream_upgrade).await;
            });
            let (parts, _) = response.into_parts();
            return Response::from_parts(parts, Body::empty());
        }
        let (mut parts, body) = response.into_parts();
        if parts.headers.keys().any(is_hop_by_hop) {
            remove_hop_by_hop(&mut parts.headers);
        }
        Response::from_parts(
            parts,
            Body::new(UpstreamBody::new(body, timeouts.read, lease)),
        )
    }

    /// The request target for the upstream, in origin form (`/path?q`),
    /// as HTTP/1.1 sends it to a server that is not a proxy.
    fn upstream_uri(&self, original: &Uri) -> Option<Uri> {
        let path_and_query = if self.base_path.is_empty() && !self.strip_prefix {
            // The common case: the path and query go as they came, shared,
            // not copied and parsed again.
            original.path_and_query()?.clone()
        } else {
            let path = original.path();
            let path = if self.strip_prefix {
                // The prefix's own trailing `/` stays: /app/x → /x.
                path.get(self.prefix.len() - 1..).unwrap_or("/")
            } else {
                path
            };
            let query = original.query();
            let mut joined = String::with_capacity(
                self.base_path.len() + path.len() + query.map_or(0, |q| q.len() + 1),
            );
            joined.push_str(&self.base_path);
            joined.push_str(path);
            if let Some(query) = query {
                joined.push('?');
                joined.push_str(query);
            }
            PathAndQuery::from_maybe_shared(Bytes::from(joined)).ok()?
        };
        Some(Uri::from(path_and_query))
    }

    /// 502 for an upstream that cannot be reached or broke the exchange,
    /// 504 for a connection attempt that timed out.
    fn failure(&self, e: &SendError) -> Response {
        let timed_out = match e {
            SendError::ReadTimeout => {
                tracing::warn!(upstream = %self.authority, prefix = %self.prefix, "the upstream did not answer in time");
                return gateway_timeout();
            }
            SendError::ConnectTimeout => true,
            SendError::Connect(e) => e.kind() == std::io::ErrorKind::TimedOut,
            SendError::Http(_) => false,
        };
        if timed_out {
            tracing::warn!(upstream = %self.authority, prefix = %self.prefix, "connecting to the upstream timed out");
            return gateway_timeout();
        }
        let mut source = e.source();
        while let Some(cause) = source {
            if let Some(io) = cause.downcast_ref::<std::io::Error>()
                && io.kind() == std::io::ErrorKind::TimedOut
            {
                tracing::warn!(upstream = %self.authority, prefix = %self.prefix, "connecting to the upstream timed out");
                return gateway_timeout();
            }
            source = cause.source();
        }
        tracing::warn!(upstream = %self.authority, prefix = %self.prefix, error = %portcullis_core::error_chain(e), "the upstream failed");
        ApiError::Mount(MountError::BadGateway).into_response()
    }
}

/// The user of the request's access token under `auth`: `None` for an
/// anonymous request a mode lets through.
pub(crate) async fn authenticate(
    auth: AuthMode,
    headers: &HeaderMap,
    state: &AppState,
) -> Result<Option<portcullis_core::User>, AuthError> {
    if auth == AuthMode::None {
        return Ok(None);
    }
    // Copied (a reference count) so the request is not borrowed across
    // the store's await.
    let token = headers.get(&state.http().auth_header_name).cloned();
    let header = token.as_ref().map(HeaderValue::as_bytes);
    match (state.auth().authenticate(header).await?, auth) {
        (Some(authenticated), _) => Ok(Some(authenticated.user)),
        (None, AuthMode::Required) => Err(portcullis_core::Rejection::NotAuthenticated.into()),
        (None, _) => Ok(None),
    }
}

/// simplejwt's answer to a refused token, with `WWW-Authenticate` on a 401.
pub(crate) fn refusal(e: AuthError, state: &AppState) -> Response {
    let mut response = ApiError::from(e).into_response();
    state.challenge(&mut response);
    response
}

fn gateway_timeout() -> Response {
    ApiError::Mount(MountError::GatewayTimeout).into_response()
}

/// The `Upgrade` value of a request asking to switch protocols.
fn upgrade_of(headers: &HeaderMap) -> Option<HeaderValue> {
    let asks = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    if asks {
        headers.get(header::UPGRADE).cloned()
    } else {
        None
    }
}

/// RFC 9110 §7.6.1: the fields `Connection` names, and the fixed
/// hop-by-hop ones, end at this hop. Called only when a field is one
/// (`is_hop_by_hop`: one pass over the few fields most messages carry,
/// instead of a lookup per hop-by-hop name, as usually none is).
fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
    ] {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    if headers.keys().any(|k| k.as_str().starts_with("proxy-")) {
        let proxies: Vec<HeaderName> = headers
            .keys()
            .filter(|k| k.as_str().starts_with("proxy-"))
            .cloned()
            .collect();
        for name in proxies {
            headers.remove(name);
        }
    }
}

/// Whether a field ends at this hop whatever `Connection` says (and
/// `Connection` itself).
fn is_hop_by_hop(name: &HeaderName) -> bool {
    name == header::CONNECTION
        || name == header::TE
        || name == header::TRAILER
        || name == header::TRANSFER_ENCODING
        || name == header::UPGRADE
        || name.as_str() == "keep-alive"
        // Proxy-Authenticate, Proxy-Authorization and the rest.
        || name.as_str().starts_with("proxy-")
}

/// `X-Forwarded-For` with the peer appended (nginx's
/// `$proxy_add_x_forwarded_for`), `X-Forwarded-Proto`, and
/// `X-Forwarded-Host` from the client's `Host`. Whether there is a `Host`.
fn forwarded_headers(
    headers: &mut HeaderMap,
    peer: Option<std::net::IpAddr>,
    proto: &'static str,
) -> bool {
    const FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
    const PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
    const HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
    if let Some(peer) = peer {
        let mut earlier = headers
            .get_all(&FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .peekable();
        let value = if earlier.peek().is_none() {
            peer_value(peer)
        } else {
            let mut value = String::with_capacity(48);
            for earlier in earlier {
                value.push_str(earlier);
                value.push_str(", ");
            }
            // Writing to a String cannot fail.
            let _ = portcullis_http::write_ip(&mut value, peer);
            // The String's buffer becomes the value's: no second copy.
            HeaderValue::from_maybe_shared(Bytes::from(value)).ok()
        };
        if let Some(value) = value {
            headers.insert(FOR, value);
        }
    }
    headers.insert(PROTO, HeaderValue::from_static(proto));
    if let Some(host) = headers.get(header::HOST).cloned() {
        headers.insert(HOST, host);
        true
    } else {
        headers.remove(HOST);
        false
    }
}

/// `peer` as a header value, kept for the last peer seen on this thread:
/// a keep-alive client's requests, and all of them behind a load balancer,
/// come from one address, and its value is then a reference count instead
/// of an address formatted, checked and copied into two allocations.
fn peer_value(peer: std::net::IpAddr) -> Option<HeaderValue> {
    thread_local! {
        static LAST: std::cell::RefCell<Option<(std::net::IpAddr, HeaderValue)>> =
            const { std::cell::RefCell::new(None) };
    }
    LAST.with_borrow_mut(|last| {
        if let Some((ip, value)) = last
            && *ip == peer
        {
            return Some(value.clone());
        }
        let mut text = String::with_capacity(39);
        // Writing to a String cannot fail.
        let _ = portcullis_http::write_ip(&mut text, peer);
        let value = HeaderValue::from_str(&text).ok()?;
        *last = Some((peer, value.clone()));
        Some(value)
    })
}

/// Copy bytes both ways once both sides have switched protocols.
async fn tunnel(client: hyper::upgrade::OnUpgrade, upstream: hyper::upgrade::OnUpgrade) {
    match tokio::try_join!(client, upstream) {
        Ok((client, upstream)) => {
            let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
            if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
                tracing::debug!(error = %e, "an upgraded connection ended");
            }
        }
        Err(e) => tracing::warn!(error = %e, "a protocol upgrade failed"),
    }
}

/// The upstream's body with `UPSTREAM_READ_TIMEOUT` between two frames: a
/// stalled upstream ends the response instead of holding it forever.
///
/// The connection's timer is started again only when the body first has
/// to wait: a small body that arrived with the head costs nothing there.
///
/// It also holds the connection's [`Lease`] and drives the connection
/// whenever `inner` has nothing ready: that poll is what reads the next
/// part of the upstream's answer into `inner` (and writes what is left of
/// the client's request), in the task that sends the response. A body
/// read to its end puts the connection back for the next request.
struct UpstreamBody {
    inner: Incoming,
    timeout: Duration,
    lease: Option<Lease>,
    /// Whether `inner` said it has no more frames.
    ended: bool,
    /// Whether a frame came since the connection's timer was last started.
    progressed: bool,
}

impl UpstreamBody {
    fn new(inner: Incoming, timeout: Duration, lease: Lease) -> Self {
        Self {
            inner,
            timeout,
            lease: Some(lease),
            ended: false,
            progressed: true,
        }
    }
}

impl UpstreamBody {
    /// `inner`'s next frame, the connection driven for it when none is
    /// ready. Only that connection puts frames into `inner`, and only when
    /// polled here: while there is one, `inner` needs no waker of its own
    /// (see [`Lease::drive_quietly`] for why wake-ups are avoided).
    fn poll_inner(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        use http_body::Body as _;
        let Some(lease) = &mut self.lease else {
            return Pin::new(&mut self.inner).poll_frame(cx);
        };
        let quiet = &mut Context::from_waker(std::task::Waker::noop());
        let mut inner = Pin::new(&mut self.inner);
        if let Poll::Ready(frame) = inner.as_mut().poll_frame(quiet) {
            return Poll::Ready(frame);
        }
        if lease.drive_quietly() {
            if let Poll::Ready(frame) = inner.as_mut().poll_frame(quiet) {
                return Poll::Ready(frame);
            }
            if lease.drive_and_wait(cx) {
                return inner.poll_frame(quiet);
            }
        }
        // The connection ended: what it sent is all in `inner` already.
        inner.poll_frame(cx)
    }
}

impl http_body::Body for UpstreamBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        match this.poll_inner(cx) {
            Poll::Ready(frame) => {
                this.progressed = true;
                this.ended = frame.is_none();
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                // Pending only while there is a connection to wait for.
                let Some(lease) = &mut this.lease else {
                    return Poll::Pending;
                };
                // The wait starts now: the time since the last frame is
                // what the limit bounds.
                if this.progressed {
                    this.progressed = false;
                    lease.start_timeout(this.timeout);
                }
                match lease.poll_timeout(cx) {
                    Poll::Ready(()) => {
                        Poll::Ready(Some(Err("the upstream stopped sending".into())))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for UpstreamBody {
    /// The server drops a body once it has sent it, often without asking
    /// for the end it already knows of (`is_end_stream`); a body dropped
    /// part-way (the client went away, an error) closes its connection.
    fn drop(&mut self) {
        if (self.ended || http_body::Body::is_end_stream(&self.inner))
            && let Some(lease) = self.lease.take()
        {
            lease.release();
        }
    }
}
