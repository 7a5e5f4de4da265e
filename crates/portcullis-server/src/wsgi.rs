//! `[[wsgi]]`: a Python WSGI app run by portcullis itself
//! ([`portcullis_wsgi`]), authenticated as `[[upstream]]` routes are.
//!
//! What the mount adds to the pool: the token check (`auth`), the identity
//! for the app (`REMOTE_USER` and the `X-Portcullis-*` headers as
//! `HTTP_X_PORTCULLIS_*`, the client's own copies removed first), the
//! client address under `TRUSTED_PROXIES`, the scheme (TLS, or a trusted
//! proxy's `X-Forwarded-Proto`), the request body received whole before
//! the app is called, and the failures as HTTP statuses with generic
//! bodies (the reason is in the log, never in the answer).

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::response::{IntoResponse, Response};
use portcullis_http::{ApiError, AppState, MountError};
use portcullis_wsgi::{Environ, Failure, Origin, Pool};

use crate::proxy::{AuthMode, ForwardedProto, authenticate};

/// One `[[wsgi]]` mount.
#[derive(Debug, Clone)]
pub struct WsgiMount {
    /// Starts and ends with `/`.
    pub prefix: String,
    auth: AuthMode,
    pool: Pool,
}

impl WsgiMount {
    /// A mount at `prefix` served by `pool`.
    #[must_use]
    pub fn new(prefix: String, auth: AuthMode, pool: Pool) -> Self {
        Self { prefix, auth, pool }
    }

    pub(crate) async fn serve(&self, request: Request, state: &AppState) -> Response {
        let (mut parts, body) = request.into_parts();
        let user = match authenticate(self.auth, &parts.headers, state).await {
            Ok(user) => user,
            Err(e) => return crate::proxy::refusal(e, state),
        };
        let identity = &state.http().identity;
        identity.remove(&mut parts.headers);
        if let Some(user) = &user {
            identity.insert(&mut parts.headers, user);
        }
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0);
        let trusted = &state.http().trusted_proxies;
        let remote_addr = portcullis_http::client_address(peer, &parts.headers, trusted);
        let from_proxy = peer.is_some_and(|p| trusted.iter().any(|c| c.contains(p.ip())));
        let scheme = scheme(&parts, from_proxy);
        let origin = Origin {
            remote_addr,
            // The peer's port means something only when the peer is the
            // client.
            remote_port: peer.filter(|_| !from_proxy).map(|p| p.port()),
            scheme,
            server_port: parts.extensions.get::<LocalPort>().map_or(80, |p| p.0),
            remote_user: user.as_ref().map(|u| u.username.as_str()),
        };
        // Received whole before the app is called: a slow upload holds a
        // connection task, never a worker.
        let body = match portcullis_wsgi::Body::receive(body, portcullis_wsgi::Body::MEMORY_LIMIT)
            .await
        {
            Ok(body) => body,
            Err(portcullis_wsgi::BodyError::Read(e)) => {
                let limited = over_limit(&e);
                if limited {
                    return ApiError::PayloadTooLarge(state.http().max_body_bytes).into_response();
                }
                return ApiError::Mount(MountError::IncompleteBody).into_response();
            }
            Err(e @ portcullis_wsgi::BodyError::Spool(_)) => {
                tracing::error!(prefix = %self.prefix, error = %e, "cannot store a request body");
                return failure(Failure::Body);
            }
        };
        let script_name = self.prefix.trim_end_matches('/');
        let Some(environ) = Environ::build(&parts, script_name, &origin, body.len()) else {
            return ApiError::NotFound.into_response();
        };
        match self.pool.call(&environ, body).await {
            Ok(response) => response.map(Body::new),
            Err(e) => failure(e),
        }
    }
}

/// Was the body cut by the front's `MAX_BODY_BYTES` (`Limited`)?
fn over_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(cause) = source {
        if cause.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = cause.source();
    }
    false
}

/// The listener's port, for `SERVER_PORT` when a request names no host.
/// The server inserts it into the request's extensions.
#[derive(Debug, Clone, Copy)]
pub struct LocalPort(pub u16);

/// `https` on a TLS connection, or when a trusted proxy says so with
/// `X-Forwarded-Proto` (as Django's `SECURE_PROXY_SSL_HEADER` would read
/// it, but decided here once, from the proxy rule).
fn scheme(parts: &axum::http::request::Parts, from_proxy: bool) -> &'static str {
    if parts
        .extensions
        .get::<ForwardedProto>()
        .is_some_and(|p| p.0 == "https")
    {
        return "https";
    }
    let forwarded_https = from_proxy
        && parts
            .headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"));
    if forwarded_https { "https" } else { "http" }
}

/// The answer for a request the app did not complete: a generic body; the
/// reason (a traceback, the worker's exit) is in the log only.
fn failure(failure: Failure) -> Response {
    ApiError::Mount(match failure {
        Failure::App | Failure::Body => MountError::ApplicationFailed,
        Failure::WorkerDied => MountError::WorkerDied,
        Failure::Timeout => MountError::ApplicationTimeout,
        Failure::Unavailable => MountError::ApplicationUnavailable,
    })
    .into_response()
}
