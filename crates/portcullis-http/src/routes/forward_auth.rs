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

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::routing::any;

use super::Finish;
use crate::{AppState, AuthUser};

pub(crate) fn router() -> Router<AppState> {
    Router::new().route("/auth/verify", any(Finish::plain().wrap(verify)))
}

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
