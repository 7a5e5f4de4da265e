//! Staff endpoints (issue 4, ASVS 5.0 V7.4.2 and V7.4.5): see and end any
//! user's sessions, deactivate or delete a user. DRF's `IsAdminUser`:
//! anonymous requests are a 401, non-staff a 403, an unknown user a 404
//! `{"detail":"Not found."}`.
//!
//! - `GET /api/admin/users/{id}/sessions/`: the user's live sessions, as
//!   `GET /api/sessions/` lists the caller's.
//! - `DELETE /api/admin/users/{id}/sessions/`: logout-all for that user → 204.
//! - `POST /api/admin/users/{id}/deactivate/`: end every session, then
//!   deactivate → 204 (as `portcullis user deactivate`).
//! - `DELETE /api/admin/users/{id}/`: end every session, then delete → 204
//!   (as `portcullis user delete`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde_json::Value;

use super::sessions::sessions_json;
use super::{method_not_allowed, view_at};
use crate::{ApiError, AppState, StaffUser};

pub(crate) fn router() -> Router<AppState> {
    view_at(
        "/api/admin/users/{id}/sessions/",
        "GET, DELETE, HEAD, OPTIONS",
        |view| {
            get(view.wrap(list))
                .delete(view.wrap(end_all))
                .fallback(view.wrap(method_not_allowed))
        },
    )
    .merge(view_at(
        "/api/admin/users/{id}/deactivate/",
        "POST, OPTIONS",
        |view| post(view.wrap(deactivate)).fallback(view.wrap(method_not_allowed)),
    ))
    .merge(view_at(
        "/api/admin/users/{id}/",
        "DELETE, OPTIONS",
        |view| delete(view.wrap(remove)).fallback(view.wrap(method_not_allowed)),
    ))
}

/// A user id from the path; anything else names no user (404, as Django's
/// `<int:pk>` converter finds no route).
fn user_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse().map_err(|_| ApiError::NotFound)
}

/// 204 when `done`, else 404.
fn no_content(done: bool) -> Result<StatusCode, ApiError> {
    if done {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound)
    }
}

async fn list(
    State(state): State<AppState>,
    StaffUser(auth): StaffUser,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let sessions = state
        .auth()
        .sessions_of(user_id(&id)?)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(sessions_json(&auth, sessions))
}

async fn end_all(
    State(state): State<AppState>,
    _: StaffUser,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    no_content(state.auth().end_sessions_of(user_id(&id)?).await?)
}

async fn deactivate(
    State(state): State<AppState>,
    _: StaffUser,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    no_content(state.auth().deactivate_user(user_id(&id)?).await?)
}

async fn remove(
    State(state): State<AppState>,
    _: StaffUser,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    no_content(state.auth().delete_user(user_id(&id)?).await?)
}
