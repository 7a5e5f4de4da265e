//! Discovery: the published key set (RFC 7517 §5) and a minimal RFC 8414
//! metadata document, so a resource server in any language can verify
//! tokens offline and libraries that take an issuer URL find the keys.

use std::convert::Infallible;

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use portcullis_core::AuthError;
use serde_json::{Value, json};

use super::Routes;
use crate::openapi as doc;
use crate::{ApiError, AppState};

pub(crate) fn router() -> Routes {
    Routes::default()
        .route("/.well-known/jwks.json", &["GET"], get(jwks))
        .route(
            "/.well-known/oauth-authorization-server",
            &["GET"],
            get(metadata),
        )
}

/// The entity tags of an `If-None-Match` request header (RFC 9110 §13.1.2).
#[derive(Debug)]
pub(crate) struct IfNoneMatch(Option<String>);

impl IfNoneMatch {
    fn matches(&self, etag: &str) -> bool {
        self.0.as_deref().is_some_and(|tags| {
            tags.split(',')
                .map(|t| t.trim().trim_start_matches("W/"))
                .any(|t| t == etag || t == "*")
        })
    }
}

impl<S: Send + Sync> FromRequestParts<S> for IfNoneMatch {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        Ok(Self(
            parts
                .headers
                .get(header::IF_NONE_MATCH)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        ))
    }
}

/// `scheme://host` of the request: `X-Forwarded-Proto: https` from a TLS
/// proxy, otherwise http (portcullis itself serves plain HTTP).
#[derive(Debug)]
pub(crate) struct RequestOrigin(String);

impl<S: Send + Sync> FromRequestParts<S> for RequestOrigin {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        let text = |name| {
            parts
                .headers
                .get(name)
                .and_then(|v: &HeaderValue| v.to_str().ok())
        };
        let scheme = match text(header::HeaderName::from_static("x-forwarded-proto")) {
            Some(proto) if proto.eq_ignore_ascii_case("https") => "https",
            _ => "http",
        };
        let host = text(header::HOST)
            .or_else(|| {
                parts
                    .uri
                    .authority()
                    .map(axum::http::uri::Authority::as_str)
            })
            .unwrap_or("localhost");
        Ok(Self(format!("{scheme}://{host}")))
    }
}

/// The public keys: pending, active and verify-only keys of the set and
/// the configured asymmetric key; never an HMAC key. Cached for at most
/// half the publish delay, so a verifier's copy is refreshed before a
/// newly published key starts signing.
#[utoipa::path(
    get,
    path = "/.well-known/jwks.json",
    tag = "discovery",
    operation_id = "jwks_retrieve",
    summary = "The published public keys (RFC 7517)",
    params(("If-None-Match" = Option<String>, Header, description = "An entity tag of a copy held")),
    responses(
        (status = 200, description = "The key set; empty with an HMAC key", body = doc::Jwks,
            headers(
                ("Cache-Control" = String, description = "`public, max-age=N`, half of `KEY_PUBLISH_DELAY` (at most 300 s)"),
                ("ETag" = String, description = "The key set's entity tag"),
            )),
        (status = 304, description = "The copy held is current",
            headers(
                ("Cache-Control" = String),
                ("ETag" = String),
            )),
    ),
)]
async fn jwks(State(state): State<AppState>, if_none_match: IfNoneMatch) -> Response {
    let document = match state.auth().engine().jwks() {
        Ok(document) => document,
        Err(e) => return ApiError::Auth(AuthError::Sign(e)).into_response(),
    };
    let cache = format!("public, max-age={}", state.http().jwks_max_age);
    let headers = [
        (header::CACHE_CONTROL, cache),
        (header::ETAG, document.etag.clone()),
    ];
    if if_none_match.matches(&document.etag) {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    (
        headers,
        [(header::CONTENT_TYPE, "application/json")],
        document.body,
    )
        .into_response()
}

/// RFC 8414 §2, minimal and honest: portcullis is not an OAuth server, so
/// it lists no response types and no grant types (omitting
/// `grant_types_supported` would claim the default, authorization code and
/// implicit). The issuer is `ISSUER` when it is a URL, otherwise the
/// origin the request was made to.
#[utoipa::path(
    get,
    path = "/.well-known/oauth-authorization-server",
    tag = "discovery",
    operation_id = "oauth_authorization_server_retrieve",
    summary = "RFC 8414 metadata",
    responses(
        (status = 200, description = "The issuer and where its keys and token endpoint are", body = doc::ServerMetadata),
    ),
)]
async fn metadata(
    State(state): State<AppState>,
    RequestOrigin(origin): RequestOrigin,
) -> Json<Value> {
    let issuer = state
        .http()
        .issuer
        .clone()
        .filter(|i| i.starts_with("https://") || i.starts_with("http://"))
        .unwrap_or(origin);
    let base = issuer.trim_end_matches('/');
    Json(json!({
        "issuer": issuer,
        "jwks_uri": format!("{base}/.well-known/jwks.json"),
        "token_endpoint": format!("{base}/api/token/"),
        "response_types_supported": [],
        "grant_types_supported": [],
    }))
}
