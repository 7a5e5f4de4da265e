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
//!
//! Every change is recorded in the audit trail (issue 18), with the staff
//! account and the client address.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use portcullis_core::{Actor, AuditAction, AuditEntry, Authenticated, Target};
use serde_json::Value;

use super::sessions::sessions_json;
use super::{Routes, method_not_allowed, view_at};
use crate::openapi as doc;
use crate::{ApiError, AppState, ClientAddr, StaffUser};

pub(crate) fn router() -> Routes {
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

#[utoipa::path(
    get,
    path = "/api/admin/users/{id}/sessions/",
    tag = "admin",
    operation_id = "admin_users_sessions_list",
    summary = "A user's live sessions",
    params(("id" = i64, Path, description = "The user's id")),
    responses(
        (status = 200, description = "The sessions (`current` marks the caller's own)", body = Vec<doc::SessionInfo>),
        (status = 401, response = doc::Unauthorized),
        (status = 403, response = doc::Forbidden),
        (status = 404, response = doc::NotFound),
    ),
    security(("jwtAuth" = [])),
)]
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

/// Do `change` to the user in the path, answer 204 (404 if there is no
/// such user), and record it as `action` done by `staff`.
async fn change<F, Fut>(
    state: &AppState,
    staff: &Authenticated,
    ClientAddr(address): ClientAddr,
    id: &str,
    action: AuditAction,
    change: F,
) -> Result<StatusCode, ApiError>
where
    F: FnOnce(i64) -> Fut,
    Fut: Future<Output = Result<bool, portcullis_core::AuthError>>,
{
    let id = user_id(id)?;
    let user = state
        .auth()
        .user_store()
        .user_by_id(id)
        .await
        .map_err(portcullis_core::AuthError::from)?
        .ok_or(ApiError::NotFound)?;
    let done = change(id).await?;
    if done {
        let actor = Actor::Staff {
            id: staff.user.id,
            username: staff.user.username.clone(),
        };
        let entry = AuditEntry::new(
            state.auth().engine().now(),
            actor,
            action,
            Some(Target::user(user.id, &user.username)),
        )
        .detail("staff API")
        .address(address.map(|ip| ip.to_string()));
        state.record_audit(entry).await;
    }
    no_content(done)
}

#[utoipa::path(
    delete,
    path = "/api/admin/users/{id}/sessions/",
    tag = "admin",
    operation_id = "admin_users_sessions_destroy",
    summary = "End every session of a user",
    params(("id" = i64, Path, description = "The user's id")),
    responses(
        (status = 204, description = "Every session has ended"),
        (status = 401, response = doc::Unauthorized),
        (status = 403, response = doc::Forbidden),
        (status = 404, response = doc::NotFound),
    ),
    security(("jwtAuth" = [])),
)]
async fn end_all(
    State(state): State<AppState>,
    StaffUser(staff): StaffUser,
    address: ClientAddr,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let auth = state.auth().clone();
    change(
        &state,
        &staff,
        address,
        &id,
        AuditAction::SessionsEndAll,
        |id| async move { auth.end_sessions_of(id).await },
    )
    .await
}

#[utoipa::path(
    post,
    path = "/api/admin/users/{id}/deactivate/",
    tag = "admin",
    operation_id = "admin_users_deactivate_create",
    summary = "Deactivate a user",
    description = "Ends every session of the user, then deactivates the account.",
    params(("id" = i64, Path, description = "The user's id")),
    responses(
        (status = 204, description = "Deactivated"),
        (status = 401, response = doc::Unauthorized),
        (status = 403, response = doc::Forbidden),
        (status = 404, response = doc::NotFound),
    ),
    security(("jwtAuth" = [])),
)]
async fn deactivate(
    State(state): State<AppState>,
    StaffUser(staff): StaffUser,
    address: ClientAddr,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let auth = state.auth().clone();
    change(
        &state,
        &staff,
        address,
        &id,
        AuditAction::UserDeactivate,
        |id| async move { auth.deactivate_user(id).await },
    )
    .await
}

#[utoipa::path(
    delete,
    path = "/api/admin/users/{id}/",
    tag = "admin",
    operation_id = "admin_users_destroy",
    summary = "Delete a user",
    description = "Ends every session of the user, then deletes the account.",
    params(("id" = i64, Path, description = "The user's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, response = doc::Unauthorized),
        (status = 403, response = doc::Forbidden),
        (status = 404, response = doc::NotFound),
    ),
    security(("jwtAuth" = [])),
)]
async fn remove(
    State(state): State<AppState>,
    StaffUser(staff): StaffUser,
    address: ClientAddr,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let auth = state.auth().clone();
    change(
        &state,
        &staff,
        address,
        &id,
        AuditAction::UserDelete,
        |id| async move { auth.delete_user(id).await },
    )
    .await
}
