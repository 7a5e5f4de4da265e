//! `GET /api/users/me/`: the DRF view a simplejwt project writes to show
//! the logged-in user (`permission_classes = [IsAuthenticated]`).
//! Authentication comes first, so an anonymous `POST` is a 401, not a 405.
//! `POST /api/users/me/password/` changes the password and ends every
//! other session (ASVS V7.4.3).

use axum::Json;
use axum::extract::State;
use axum::http::Method;
use axum::routing::{get, post};
use serde::Serialize;
use serde_json::{Value, json};

use super::{Routes, metadata, view_at};
use crate::openapi as doc;
use crate::{ApiError, AppState, AuthUser, DrfData};

pub(crate) fn router() -> Routes {
    view_at("/api/users/me/", "GET, HEAD, OPTIONS", |view| {
        get(view.wrap(me))
            .options(view.wrap(options))
            .fallback(view.wrap(not_allowed))
    })
    .merge(view_at(
        "/api/users/me/password/",
        "POST, OPTIONS",
        |view| post(view.wrap(change_password)).fallback(view.wrap(not_allowed)),
    ))
}

/// `{"old_password","new_password"}` → `{}`; every other session ends.
#[utoipa::path(
    post,
    path = "/api/users/me/password/",
    tag = "users",
    operation_id = "users_me_password_create",
    summary = "Change the caller's password",
    description = "Checks the old password (throttled as a login), sets the new one and ends every other session.",
    request_body = doc::PasswordChangeRequest,
    responses(
        (status = 200, description = "Changed", body = doc::Empty),
        (status = 401, response = doc::Unauthorized),
        (status = 429, response = doc::Throttled),
    ),
    security(("jwtAuth" = [])),
)]
async fn change_password(
    State(state): State<AppState>,
    AuthUser(auth): AuthUser,
    data: DrfData,
) -> Result<Json<Value>, ApiError> {
    let [old, new] = data.strings(["old_password", "new_password"])?;
    state
        .auth()
        .change_password(&auth, old.into(), new.into())
        .await?;
    Ok(Json(json!({})))
}

/// The answer of `GET /api/users/me/`, in this key order. Serialized
/// straight from the user rather than through a `json!` value, which would
/// build and drop a map on every request (docs/architecture.md, "Fast paths").
#[derive(Serialize)]
struct Me {
    id: i64,
    username: String,
    email: String,
}

#[utoipa::path(
    get,
    path = "/api/users/me/",
    tag = "users",
    operation_id = "users_me_retrieve",
    summary = "The caller's account",
    responses(
        (status = 200, description = "The account", body = doc::Me),
        (status = 401, response = doc::Unauthorized),
    ),
    security(("jwtAuth" = [])),
)]
async fn me(AuthUser(auth): AuthUser) -> Json<Me> {
    let user = auth.user;
    Json(Me {
        id: user.id,
        username: user.username,
        email: user.email,
    })
}

async fn options(_: AuthUser) -> Json<Value> {
    Json(metadata("Me", "", None))
}

async fn not_allowed(_: AuthUser, method: Method) -> ApiError {
    ApiError::MethodNotAllowed(method.to_string())
}
