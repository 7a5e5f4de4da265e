//! The endpoints, one module per area; each exports `router()`.

pub(crate) mod admin;
pub(crate) mod forward_auth;
pub(crate) mod health;
pub(crate) mod sessions;
pub(crate) mod token;
pub(crate) mod users;
pub(crate) mod well_known;

use axum::http::{HeaderValue, Method, header};
use axum::response::Response;
use serde_json::{Value, json};

use crate::ApiError;

/// DRF's `finalize_response` headers, on every response of a view.
pub(crate) fn drf_headers(
    allow: &'static str,
) -> impl Fn(Response) -> std::future::Ready<Response> + Clone {
    move |mut response: Response| {
        let headers = response.headers_mut();
        headers.insert(header::ALLOW, HeaderValue::from_static(allow));
        headers.insert(header::VARY, HeaderValue::from_static("Accept"));
        std::future::ready(response)
    }
}

/// One view at `path` and at `path` without its trailing slash, with
/// DRF's `Allow` for it.
pub(crate) fn view_at(
    path: &str,
    view: axum::routing::MethodRouter<crate::AppState>,
    allow: &'static str,
) -> axum::Router<crate::AppState> {
    axum::Router::new()
        .route(path, view.clone())
        .route(path.trim_end_matches('/'), view)
        .layer(axum::middleware::map_response(drf_headers(allow)))
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
