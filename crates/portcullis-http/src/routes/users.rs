//! `GET /api/users/me/`: the DRF view a simplejwt project writes to show
//! the logged-in user (`permission_classes = [IsAuthenticated]`).
//! Authentication comes first, so an anonymous `POST` is a 401, not a 405.

use axum::http::Method;
use axum::middleware::map_response;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::{drf_headers, metadata};
use crate::{ApiError, AppState, AuthUser};

pub(crate) fn router() -> Router<AppState> {
    let view = get(me).options(options).fallback(not_allowed);
    Router::new()
        .route("/api/users/me/", view.clone())
        .route("/api/users/me", view)
        .layer(map_response(drf_headers("GET, HEAD, OPTIONS")))
}

async fn me(AuthUser(auth): AuthUser) -> Json<Value> {
    let user = auth.user;
    Json(json!({"id": user.id, "username": user.username, "email": user.email}))
}

async fn options(_: AuthUser) -> Json<Value> {
    Json(metadata("Me", "", None))
}

async fn not_allowed(_: AuthUser, method: Method) -> ApiError {
    ApiError::MethodNotAllowed(method.to_string())
}
