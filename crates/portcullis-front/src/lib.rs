//! The production front: what lets an API deployment drop the nginx in
//! front of its application server.
//!
//! - [`StaticMount`]: `[[static]]` directories served with precompressed
//!   variants, validators, conditional and range requests, and no way out
//!   of the directory.
//! - [`Upstream`]: `[[upstream]]` routes forwarded to an HTTP application
//!   (gunicorn, anything), authenticated by portcullis on the way.
//!
//! - `WsgiMount` (feature `wsgi`): `[[wsgi]]` prefixes served by a Python
//!   WSGI app that portcullis runs itself (`portcullis-wsgi`).
//!
//! Routing precedence: the API's own routes ([`portcullis_http::API_PATHS`]
//! and the rest of the router) come first; a request no route takes goes to
//! the mount with the longest matching prefix, `[[static]]`,
//! `[[upstream]]` and `[[wsgi]]` alike; a request no mount takes is the API's 404.

mod proxy;
mod static_cache;
mod static_files;
#[cfg(feature = "wsgi")]
mod wsgi;

use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use portcullis_http::{ApiError, AppState};

pub use proxy::{AuthMode, ForwardedProto, ProxyTimeouts, Upstream};
pub use static_files::StaticMount;
#[cfg(feature = "wsgi")]
pub use wsgi::{LocalPort, WsgiMount};

/// Every mount, ready to serve. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Front {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Longest prefix first, so the first match is the most specific.
    mounts: Vec<Mount>,
    state: AppState,
    timeouts: ProxyTimeouts,
}

#[derive(Debug)]
enum Mount {
    Static(StaticMount),
    Upstream(Upstream),
    #[cfg(feature = "wsgi")]
    Wsgi(WsgiMount),
}

impl Mount {
    fn prefix(&self) -> &str {
        match self {
            Self::Static(mount) => &mount.prefix,
            Self::Upstream(upstream) => &upstream.prefix,
            #[cfg(feature = "wsgi")]
            Self::Wsgi(mount) => &mount.prefix,
        }
    }
}

impl Front {
    /// The front for these mounts, authenticating with `state`'s service.
    #[must_use]
    pub fn new(
        state: AppState,
        statics: Vec<StaticMount>,
        upstreams: Vec<Upstream>,
        timeouts: ProxyTimeouts,
    ) -> Self {
        let mut mounts: Vec<Mount> = statics
            .into_iter()
            .map(Mount::Static)
            .chain(upstreams.into_iter().map(Mount::Upstream))
            .collect();
        mounts.sort_by_key(|mount| std::cmp::Reverse(mount.prefix().len()));
        Self {
            inner: Arc::new(Inner {
                mounts,
                state,
                timeouts,
            }),
        }
    }

    /// Add `[[wsgi]]` mounts, under the same longest-prefix rule.
    #[cfg(feature = "wsgi")]
    #[must_use]
    pub fn with_wsgi(self, mounts: Vec<WsgiMount>) -> Self {
        let mut inner = match Arc::try_unwrap(self.inner) {
            Ok(inner) => inner,
            // Cloned already (serving): mounts are added before that.
            Err(shared) => return Self { inner: shared },
        };
        inner.mounts.extend(mounts.into_iter().map(Mount::Wsgi));
        inner
            .mounts
            .sort_by_key(|mount| std::cmp::Reverse(mount.prefix().len()));
        Self {
            inner: Arc::new(inner),
        }
    }

    /// `api` with the mounts behind it: they answer what no API route
    /// takes. Outside the API's layers on purpose: an application's own
    /// 401 goes back as it was sent, without the API's `WWW-Authenticate`.
    pub fn behind(self, api: Router) -> Router {
        if self.inner.mounts.is_empty() {
            return api;
        }
        api.fallback(move |request: Request| {
            let front = self.clone();
            async move { front.handle(request).await }
        })
    }

    /// Answer one request with the mount that takes it.
    pub async fn handle(&self, request: Request) -> Response {
        let inner = &*self.inner;
        let mount = {
            let path = request.uri().path();
            inner.mounts.iter().find(|m| path.starts_with(m.prefix()))
        };
        match mount {
            Some(Mount::Static(mount)) => mount.serve(&request),
            Some(Mount::Upstream(upstream)) => {
                upstream
                    .forward(request, &inner.state, inner.timeouts)
                    .await
            }
            #[cfg(feature = "wsgi")]
            Some(Mount::Wsgi(mount)) => mount.serve(request, &inner.state).await,
            None => ApiError::NotFound.into_response(),
        }
    }
}
