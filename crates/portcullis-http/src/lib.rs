//! The portcullis HTTP layer: simplejwt's endpoints with DRF's exact
//! request parsing and response bodies.
//!
//! Handlers are short: they take a [`DrfData`] body and the [`AuthUser`]
//! extractor, call [`portcullis_core::AuthService`], and return
//! `Result<_, ApiError>`. [`ApiError`] is the one place errors become
//! responses. This crate knows nothing of SQL.

mod auth;
mod body;
mod client;
pub mod cookie;
mod error;
mod identity;
pub mod openapi;
mod python_json;
pub mod request_id;
mod routes;
mod state;

use axum::Router;

pub use auth::{AuthUser, MaybeAuthUser, StaffUser};
pub use body::{DrfData, parse_body};
pub use client::{Cidr, ClientAddr, ClientInfo, client_address, write_ip};
pub use cookie::RefreshCookie;
pub use error::{ApiError, MountError};
pub use identity::IdentityHeaders;
pub use routes::Route;
pub use state::{AppState, HttpSettings, ReadinessCheck};

/// Every route, with the table of them ([`route_table`]).
fn routes(http: &HttpSettings) -> routes::Routes {
    routes::token::router()
        .merge(routes::sessions::router())
        .merge(routes::admin::router())
        .merge(routes::users::router())
        .merge(routes::health::router())
        .merge(routes::well_known::router())
        .merge(routes::forward_auth::router())
        .merge(routes::schema::router(http))
}

/// The whole API.
pub fn router(state: AppState) -> Router {
    let (router, _) = routes(state.http()).into_parts();
    router
        .fallback(|| async { ApiError::NotFound })
        .with_state(state)
}

/// What [`router`] routes with these settings: the table built with the
/// router itself, which the OpenAPI document is checked against.
#[must_use]
pub fn route_table(http: &HttpSettings) -> Vec<Route> {
    routes(http).into_parts().1
}

/// The paths the API answers itself. They come before every `[[static]]`
/// and `[[upstream]]` mount, so a mount whose prefix is one of them could
/// never be reached at its root; the configuration refuses such a mount.
pub const API_PATHS: &[&str] = &[
    "/api/token/",
    "/api/token/refresh/",
    "/api/token/verify/",
    "/api/token/blacklist/",
    "/api/token/logout/",
    "/api/token/logout-all/",
    "/api/token/sliding/",
    "/api/token/sliding/refresh/",
    "/api/sessions/",
    "/api/users/me/",
    "/api/users/me/password/",
    "/healthz",
    "/readyz",
    "/.well-known/jwks.json",
    "/.well-known/oauth-authorization-server",
    "/auth/verify",
    "/api/schema/",
    "/api/schema/docs/",
];
