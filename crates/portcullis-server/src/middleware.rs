//! What every request passes through before and after the router: the
//! request id, the body limit, the request timeout, HSTS, the metrics and
//! the access log. One middleware, applied with `Router::layer` so it runs
//! after routing and sees axum's [`MatchedPath`] (the route label).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use portcullis_http::ApiError;
use tracing::Instrument as _;

use crate::access_log;
use crate::metrics::{UNMATCHED, record_request};

/// The request id header, read and returned. A `HeaderName`, not a
/// `&str`: a `&str` name is parsed and hashed again on every use.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The longest client-sent request id we keep; longer ones are replaced.
const MAX_REQUEST_ID: usize = 128;

/// What the middleware needs to know.
#[derive(Debug)]
pub(crate) struct Middleware {
    pub(crate) max_body_bytes: usize,
    pub(crate) request_timeout: Duration,
    /// `Strict-Transport-Security`, on the TLS listener only (RFC 6797
    /// §7.2: a host must not send it over plain HTTP).
    pub(crate) hsts: Option<HeaderValue>,
    /// `None` when `ACCESS_LOG=off` or `LOG` filters the access lines out.
    pub(crate) access_log: Option<access_log::Format>,
}

/// The middleware.
pub(crate) async fn middleware(
    State(config): State<Arc<Middleware>>,
    mut request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let id = request_id(request.headers());
    // Handlers and an upstream behind the proxy see the same id.
    request.headers_mut().insert(REQUEST_ID, id.clone());
    let method = request.method().clone();
    // A shared string: cloned, not copied.
    let route = request.extensions().get::<MatchedPath>().cloned();
    let route = route.as_ref().map_or(UNMATCHED, MatchedPath::as_str);
    // The query is left out of the log: it may carry a token. The URI is
    // kept rather than its path copied: it shares hyper's bytes.
    let uri = request.uri().clone();
    let remote = request
        .extensions()
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0);
    let version = request.version();
    // Every event while serving the request carries its id at LOG=debug;
    // at the default level the span would cost more than the rest of the
    // middleware, and the rare error line takes the id from the task-local.
    let span = tracing::debug_span!("request", request_id = %id.to_str().unwrap_or_default());

    let mut response = if too_large(request.headers(), config.max_body_bytes) {
        ApiError::PayloadTooLarge(config.max_body_bytes).into_response()
    } else {
        // A body without a (truthful) Content-Length is cut at the limit
        // while it streams; readers see an error and answer 413. A request
        // with no body (most of them) is not wrapped.
        let request = if http_body::Body::is_end_stream(request.body()) {
            request
        } else {
            request.map(|body| Body::new(http_body_util::Limited::new(body, config.max_body_bytes)))
        };
        let served = portcullis_http::request_id::scope(id.clone(), next.run(request));
        match tokio::time::timeout(config.request_timeout, served.instrument(span)).await {
            Ok(response) => response,
            Err(_) => timed_out(config.request_timeout),
        }
    };

    let headers = response.headers_mut();
    headers.insert(REQUEST_ID, id.clone());
    if let Some(hsts) = &config.hsts {
        headers
            .entry(header::STRICT_TRANSPORT_SECURITY)
            .or_insert_with(|| hsts.clone());
    }
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    record_request(&method, route, response.status(), elapsed);
    if let Some(format) = config.access_log {
        access_log::record(
            format,
            &access_log::Entry {
                request_id: id.to_str().unwrap_or_default(),
                remote,
                method: method.as_str(),
                path: uri.path(),
                route,
                version,
                status,
                duration_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
            },
        );
    }
    response
}

/// The client's `X-Request-Id` if it is a sane token (1–128 characters of
/// `A–Z a–z 0–9 - _ . : / + =`, as proxies and tracing systems make them),
/// else a fresh UUID v4. A bad one is replaced, not refused: it is only a
/// correlation aid, and a log must not carry what a client injected.
fn request_id(headers: &HeaderMap) -> HeaderValue {
    headers
        .get(REQUEST_ID)
        .filter(|v| {
            let bytes = v.as_bytes();
            !bytes.is_empty()
                && bytes.len() <= MAX_REQUEST_ID
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:/+=".contains(b))
        })
        .cloned()
        .unwrap_or_else(uuid_v4)
}

/// A random UUID (RFC 9562 version 4), in its hyphenated lowercase form.
/// The bits come from a fast thread-local generator (`fastrand`, seeded
/// once per thread from the system): a request id must be unique, not
/// unpredictable, and the system's random source is several times slower.
/// Written into a fixed buffer, group by group, rather than formatted
/// through `write!` (docs/architecture.md, "Fast paths").
fn uuid_v4() -> HeaderValue {
    // The byte ranges of 8-4-4-4-12, and where their digits go.
    const GROUPS: [(usize, usize, usize); 5] =
        [(0, 4, 0), (4, 6, 9), (6, 8, 14), (8, 10, 19), (10, 16, 24)];
    let mut bytes = fastrand::u128(..).to_le_bytes();
    if let Some(b) = bytes.get_mut(6) {
        *b = (*b & 0x0f) | 0x40;
    }
    if let Some(b) = bytes.get_mut(8) {
        *b = (*b & 0x3f) | 0x80;
    }
    let mut text = [b'-'; 36];
    for (from, to, at) in GROUPS {
        if let (Some(group), Some(digits)) =
            (bytes.get(from..to), text.get_mut(at..at + 2 * (to - from)))
        {
            let _ = hex::encode_to_slice(group, digits);
        }
    }
    HeaderValue::from_bytes(&text).unwrap_or_else(|_| HeaderValue::from_static("-"))
}

fn too_large(headers: &HeaderMap, limit: usize) -> bool {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|length| length > u64::try_from(limit).unwrap_or(u64::MAX))
}

/// 408: the only slow parts of a request here are the client sending its
/// body and the queue for a password-hashing slot; both say "try again"
/// (RFC 9110 §15.5.9), and the connection is closed as 408 asks.
fn timed_out(limit: Duration) -> Response {
    ApiError::RequestTimeout(limit.as_secs()).into_response()
}

/// The plain-HTTP listener's only answer: 308 to the same path and query
/// on HTTPS, at the TLS listener's port (RFC 9110 §15.4.9 keeps the method
/// and body, unlike 301).
pub(crate) async fn redirect(
    State(https_port): State<u16>,
    request: Request,
) -> Result<Response, ApiError> {
    let authority = match request.headers().get(header::HOST) {
        Some(host) => host
            .to_str()
            .ok()
            .and_then(|h| h.parse::<axum::http::uri::Authority>().ok()),
        None => request.uri().authority().cloned(),
    }
    .ok_or(ApiError::MissingHost)?;
    let host = authority.host();
    if host.is_empty() || authority.as_str().contains('@') {
        return Err(ApiError::MissingHost);
    }
    let port = if https_port == 443 {
        String::new()
    } else {
        format!(":{https_port}")
    };
    let target = request
        .uri()
        .path_and_query()
        .map_or("/", axum::http::uri::PathAndQuery::as_str);
    let location = HeaderValue::from_str(&format!("https://{host}{port}{target}"))
        .map_err(|_| ApiError::MissingHost)?;
    Ok((
        StatusCode::PERMANENT_REDIRECT,
        [(header::LOCATION, location)],
    )
        .into_response())
}
