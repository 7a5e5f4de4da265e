//! The endpoints, one module per area; each exports `router()`, a
//! [`Routes`]: the axum router and the table of what it routes, built
//! together, so the OpenAPI document (`crate::openapi`) can be checked
//! against every route the server really has.

pub(crate) mod admin;
pub(crate) mod forward_auth;
pub(crate) mod health;
pub(crate) mod schema;
pub(crate) mod sessions;
pub(crate) mod token;
pub(crate) mod users;
pub(crate) mod well_known;

#[cfg(test)]
mod error_tests;
#[cfg(test)]
mod finish_tests;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::handler::Handler;
use axum::http::{HeaderValue, Method, header};
use axum::response::Response;
use axum::routing::MethodRouter;
use serde_json::{Value, json};

use crate::{ApiError, AppState};

/// What every response of a handler gets, extractor rejections included:
/// DRF's `finalize_response` headers (`Allow`, `Vary: Accept`) for a DRF
/// view, and on a 401 the `WWW-Authenticate` that names the scheme to use
/// (simplejwt #15: the first of `AUTH_HEADER_TYPES`, realm "api").
///
/// A handler wrapper rather than `Router::layer`: a layer wraps every
/// route in one more boxed service, cloned and boxed again on every
/// request, and the two layers this replaces were a twentieth of a
/// `GET /api/users/me/`. axum still strips a `HEAD` body and sets
/// `Content-Length` around the wrapped handler, as it did around the layer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Finish {
    /// `Some` for a DRF view: its `Allow`.
    allow: Option<&'static str>,
}

impl Finish {
    /// A DRF view answering `allow`.
    pub(crate) fn view(allow: &'static str) -> Self {
        Self { allow: Some(allow) }
    }

    /// An endpoint that is no DRF view (forward-auth): the 401 header only.
    pub(crate) fn plain() -> Self {
        Self { allow: None }
    }

    /// `handler`, finishing each of its responses.
    pub(crate) fn wrap<H>(self, handler: H) -> Finished<H> {
        Finished {
            handler,
            finish: self,
        }
    }

    fn apply(self, response: &mut Response, state: &AppState) {
        if let Some(allow) = self.allow {
            let headers = response.headers_mut();
            headers.insert(header::ALLOW, HeaderValue::from_static(allow));
            headers.insert(header::VARY, HeaderValue::from_static("Accept"));
        }
        state.challenge(response);
    }
}

/// A handler wrapped by [`Finish::wrap`].
#[derive(Debug, Clone)]
pub(crate) struct Finished<H> {
    handler: H,
    finish: Finish,
}

impl<H, T> Handler<T, AppState> for Finished<H>
where
    H: Handler<T, AppState>,
    // axum's handlers answer a boxed future, which is `Unpin`.
    H::Future: Unpin,
    T: 'static,
{
    type Future = Finishing<H::Future>;

    fn call(self, req: Request, state: AppState) -> Self::Future {
        Finishing {
            inner: self.handler.call(req, state.clone()),
            state,
            finish: self.finish,
        }
    }
}

/// The future of a [`Finished`] handler.
pub(crate) struct Finishing<F> {
    inner: F,
    state: AppState,
    finish: Finish,
}

impl<F: Future<Output = Response> + Unpin> Future for Finishing<F> {
    type Output = Response;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Response> {
        let this = &mut *self;
        Pin::new(&mut this.inner).poll(cx).map(|mut response| {
            this.finish.apply(&mut response, &this.state);
            response
        })
    }
}

/// One route of the API as the OpenAPI document must describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The path, as axum and OpenAPI both write it (`/api/sessions/{id}/`).
    /// A DRF view also answers it without its trailing slash; the document
    /// names the slashed path only, as drf-spectacular does.
    pub path: &'static str,
    /// The methods the document describes, upper case. `HEAD` (answered
    /// as `GET`) and `OPTIONS` (DRF's metadata) are not listed, as
    /// drf-spectacular lists neither.
    pub methods: Vec<&'static str>,
    /// `false` for the files of the docs page, which are no API.
    pub documented: bool,
}

/// A router and the table of its routes, grown together: no route can be
/// added to one without the other.
#[derive(Debug, Default)]
pub(crate) struct Routes {
    router: axum::Router<AppState>,
    table: Vec<Route>,
}

impl Routes {
    /// `methods` at `path`, answered by `method_router`.
    pub(crate) fn route(
        mut self,
        path: &'static str,
        methods: &[&'static str],
        method_router: MethodRouter<AppState>,
    ) -> Self {
        self.router = self.router.route(path, method_router);
        self.table.push(Route {
            path,
            methods: methods.to_vec(),
            documented: true,
        });
        self
    }

    /// A route the document does not describe (the docs page's files).
    pub(crate) fn undocumented(
        mut self,
        path: &'static str,
        method_router: MethodRouter<AppState>,
    ) -> Self {
        self.router = self.router.route(path, method_router);
        self.table.push(Route {
            path,
            methods: Vec::new(),
            documented: false,
        });
        self
    }

    /// Both routers' routes.
    pub(crate) fn merge(mut self, other: Routes) -> Self {
        self.router = self.router.merge(other.router);
        self.table.extend(other.table);
        self
    }

    /// The router and the table.
    pub(crate) fn into_parts(self) -> (axum::Router<AppState>, Vec<Route>) {
        (self.router, self.table)
    }
}

/// One view at `path` and at `path` without its trailing slash, with
/// DRF's `Allow` for it; `build` makes its method router from handlers
/// wrapped by the [`Finish`] it is given.
pub(crate) fn view_at(
    path: &'static str,
    allow: &'static str,
    build: impl FnOnce(Finish) -> MethodRouter<AppState>,
) -> Routes {
    let view = build(Finish::view(allow));
    let methods: Vec<&'static str> = allow
        .split(", ")
        .filter(|m| !matches!(*m, "HEAD" | "OPTIONS"))
        .collect();
    let mut routes = Routes::default().route(path, &methods, view.clone());
    // The unslashed twin is the same view: one entry in the table.
    routes.router = routes.router.route(path.trim_end_matches('/'), view);
    routes
}

/// DRF's `http_method_not_allowed`.
pub(crate) async fn method_not_allowed(method: Method) -> ApiError {
    ApiError::MethodNotAllowed(method.to_string())
}

/// DRF's `SimpleMetadata` answer to `OPTIONS`.
pub(crate) fn metadata(name: &str, description: &str, actions: Option<Value>) -> Value {
    let mut body = json!({
        "name": name,
        "description": description,
        "renders": ["application/json", "text/html"],
        "parses": ["application/json", "application/x-www-form-urlencoded", "multipart/form-data"],
    });
    if let (Some(actions), Some(object)) = (actions, body.as_object_mut()) {
        object.insert("actions".to_owned(), json!({ "POST": actions }));
    }
    body
}

/// One field of an `OPTIONS` action description.
pub(crate) fn field(label: &str, read_only: bool) -> Value {
    json!({"type": "string", "required": !read_only, "read_only": read_only, "label": label})
}
