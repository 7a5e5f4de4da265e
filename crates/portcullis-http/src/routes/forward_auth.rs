//! `/auth/verify`: forward-auth for a proxy that stays in front (nginx
//! `auth_request`, Traefik `forwardAuth`, Caddy `forward_auth`). The proxy
//! sends the client's headers here before it forwards a request; a valid
//! access token — checked exactly as `GET /api/users/me/` checks it,
//! revocation included — answers 200 with the identity headers for the
//! proxy to copy onto the forwarded request; anything else answers
//! simplejwt's 401 body with `WWW-Authenticate`, which the proxy returns.
//!
//! Every method is answered alike: nginx's subrequest and Traefik keep the
//! client's method, and a `POST` must be authenticated like a `GET`.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::routing::any;

use super::{Finish, Routes};
use crate::openapi as doc;
use crate::{AppState, AuthUser};

/// Every method is routed; the document describes `GET` and `POST`, the
/// two a proxy sends in practice.
pub(crate) fn router() -> Routes {
    Routes::default().route(
        "/auth/verify",
        &["GET", "POST"],
        any(Finish::plain().wrap(verify)),
    )
}

#[utoipa::path(
    method(get, post),
    path = "/auth/verify",
    tag = "forward-auth",
    operation_id = "auth_verify",
    summary = "Forward-auth: check the access token of a request a proxy is about to forward",
    description = "Every method is answered alike. The identity header names are settings (`IDENTITY_HEADER_USER_ID`, `IDENTITY_HEADER_USERNAME`, `IDENTITY_HEADER_IS_STAFF`); the defaults are shown.",
    responses(
        (status = 200, description = "A valid access token: the identity headers, no body",
            headers(
                ("X-Portcullis-User-Id" = String, description = "The user's id, in decimal"),
                ("X-Portcullis-Username" = String, description = "The username"),
                ("X-Portcullis-Is-Staff" = String, description = "`true` or `false`"),
                ("Cache-Control" = String, description = "`no-store`"),
            )),
        (status = 401, response = doc::Unauthorized),
    ),
    security(("jwtAuth" = [])),
)]
async fn verify(
    State(state): State<AppState>,
    AuthUser(auth): AuthUser,
) -> (StatusCode, HeaderMap) {
    let mut headers = HeaderMap::new();
    state.http().identity.insert(&mut headers, &auth.user);
    // A verdict about one token: no cache may keep it.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    (StatusCode::OK, headers)
}
