//! The mounts: what answers a request no API route takes.
//!
//! Routing precedence: the API's own routes ([`portcullis_http::API_PATHS`]
//! and the rest of the router) come first; a request no route takes goes to
//! the mount with the longest matching prefix, whatever its kind
//! (`[[static]]`, `[[upstream]]`, `[[wsgi]]`); a request no mount takes is
//! the API's 404.
//!
//! A kind of mount is a variant of [`Mount`]: its prefix and its answer
//! are matched in [`Mount::prefix`] and [`Mounts::handle`], the only two
//! places that know every kind.

use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use portcullis_http::{ApiError, AppState};

use crate::proxy::Upstream;
use crate::static_files::StaticMount;
#[cfg(feature = "wsgi")]
use crate::wsgi::WsgiMount;

/// Every mount, ready to serve. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Mounts {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Longest prefix first, so the first match is the most specific.
    mounts: Vec<Mount>,
    state: AppState,
}

/// One mount, of any kind.
#[derive(Debug)]
pub enum Mount {
    /// `[[static]]`: files from a directory.
    Static(StaticMount),
    /// `[[upstream]]`: an HTTP application behind the proxy.
    Upstream(Upstream),
    /// `[[wsgi]]` (feature `wsgi`): a Python WSGI app that portcullis runs
    /// itself (`portcullis-wsgi`).
    #[cfg(feature = "wsgi")]
    Wsgi(WsgiMount),
}

impl Mount {
    /// The path prefix the mount answers under (starts and ends with `/`).
    #[must_use]
    pub fn prefix(&self) -> &str {
        match self {
            Self::Static(mount) => &mount.prefix,
            Self::Upstream(upstream) => &upstream.prefix,
            #[cfg(feature = "wsgi")]
            Self::Wsgi(mount) => &mount.prefix,
        }
    }
}

impl Mounts {
    /// These mounts, authenticating with `state`'s service.
    #[must_use]
    pub fn new(state: AppState, mut mounts: Vec<Mount>) -> Self {
        mounts.sort_by_key(|mount| std::cmp::Reverse(mount.prefix().len()));
        Self {
            inner: Arc::new(Inner { mounts, state }),
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
            let mounts = self.clone();
            async move { mounts.handle(request).await }
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
            Some(Mount::Upstream(upstream)) => upstream.forward(request, &inner.state).await,
            #[cfg(feature = "wsgi")]
            Some(Mount::Wsgi(mount)) => mount.serve(request, &inner.state).await,
            None => ApiError::NotFound.into_response(),
        }
    }
}
