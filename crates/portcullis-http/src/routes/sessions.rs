//! Sessions (issue 4): `POST /api/token/logout/` ends the caller's
//! session, `POST /api/token/logout-all/` every session of the caller.
//! `GET /api/sessions/` lists the caller's live sessions and
//! `DELETE /api/sessions/{id}/` ends one (204; 404 for a session that is
//! not the caller's or no longer live), with the client address and user
//! agent of each session's last login or refresh. All need an access token
//! (`IsAuthenticated`), so an anonymous request is a 401 before anything
//! else, and answer `{}` as simplejwt's blacklist view does. In cookie mode
//! logout reads the refresh cookie and both logouts clear the cookies
//! (see [`crate::cookie`]).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use serde_json::{Value, json};

use super::{Routes, method_not_allowed, view_at};
use crate::cookie::{self, CookieRefresh, SetCookies};
use crate::openapi as doc;
use crate::{ApiError, AppState, AuthUser, DrfData};
use portcullis_core::{SESSION_CLAIM, Session};

type JsonResult = Result<Json<Value>, ApiError>;
/// A body plus, in cookie mode, the cookies cleared.
type CookieResult = Result<(SetCookies, Json<Value>), ApiError>;

pub(crate) fn router() -> Routes {
    view_at("/api/token/logout/", "POST, OPTIONS", |view| {
        post(view.wrap(logout)).fallback(view.wrap(method_not_allowed))
    })
    .merge(view_at("/api/token/logout-all/", "POST, OPTIONS", |view| {
        post(view.wrap(logout_all)).fallback(view.wrap(method_not_allowed))
    }))
    .merge(view_at("/api/sessions/", "GET, HEAD, OPTIONS", |view| {
        get(view.wrap(list)).fallback(view.wrap(method_not_allowed))
    }))
    .merge(view_at("/api/sessions/{id}/", "DELETE, OPTIONS", |view| {
        delete(view.wrap(end)).fallback(view.wrap(method_not_allowed))
    }))
}

/// The refresh token comes from the body or, in cookie mode, the cookie.
#[utoipa::path(
    post,
    path = "/api/token/logout/",
    tag = "sessions",
    operation_id = "token_logout_create",
    summary = "End the caller's session",
    description = "Ends the session of the access token (and blacklists the refresh token given, or in cookie mode the cookie's, which must be of that session).",
    request_body = doc::LogoutRequest,
    responses(
        (status = 200, description = "The session has ended", body = doc::Empty),
        (status = 401, response = doc::Unauthorized),
        (status = 403, response = doc::Forbidden),
    ),
    security(("jwtAuth" = [])),
)]
async fn logout(
    State(state): State<AppState>,
    AuthUser(auth): AuthUser,
    cookies: CookieRefresh,
    data: DrfData,
) -> CookieResult {
    let refresh = cookies.optional(&data)?;
    state.auth().logout(&auth, refresh.as_deref()).await?;
    Ok((cookie::clear(&state), Json(json!({}))))
}

#[utoipa::path(
    post,
    path = "/api/token/logout-all/",
    tag = "sessions",
    operation_id = "token_logout_all_create",
    summary = "End every session of the caller",
    responses(
        (status = 200, description = "Every session has ended", body = doc::Empty),
        (status = 401, response = doc::Unauthorized),
    ),
    security(("jwtAuth" = [])),
)]
async fn logout_all(State(state): State<AppState>, AuthUser(auth): AuthUser) -> CookieResult {
    state.auth().logout_all(&auth.user).await?;
    Ok((cookie::clear(&state), Json(json!({}))))
}

#[utoipa::path(
    get,
    path = "/api/sessions/",
    tag = "sessions",
    operation_id = "sessions_list",
    summary = "The caller's live sessions",
    responses(
        (status = 200, description = "The sessions", body = Vec<doc::SessionInfo>),
        (status = 401, response = doc::Unauthorized),
    ),
    security(("jwtAuth" = [])),
)]
async fn list(State(state): State<AppState>, AuthUser(auth): AuthUser) -> JsonResult {
    let sessions = state.auth().sessions(&auth.user).await?;
    Ok(sessions_json(&auth, sessions))
}

/// A list of sessions as `GET /api/sessions/` and the staff view show it.
/// Times are Unix seconds, as in the tokens; `ip_address` and `user_agent`
/// are those of the last login or refresh (`null` if unknown); `current`
/// marks the session of the access token that asked.
pub(crate) fn sessions_json(
    auth: &portcullis_core::Authenticated,
    sessions: Vec<Session>,
) -> Json<Value> {
    let current = auth.token.get(SESSION_CLAIM).and_then(Value::as_str);
    Json(Value::Array(
        sessions
            .into_iter()
            .map(|s| {
                json!({
                    "id": s.id,
                    "created_at": s.created_at,
                    "last_used_at": s.last_used_at,
                    "expires_at": s.expires_at,
                    "ip_address": s.client.ip_address,
                    "user_agent": s.client.user_agent,
                    "current": current == Some(s.id.as_str()),
                })
            })
            .collect(),
    ))
}

#[utoipa::path(
    delete,
    path = "/api/sessions/{id}/",
    tag = "sessions",
    operation_id = "sessions_destroy",
    summary = "End one of the caller's sessions",
    params(("id" = String, Path, description = "The session id, as `GET /api/sessions/` lists it")),
    responses(
        (status = 204, description = "The session has ended"),
        (status = 401, response = doc::Unauthorized),
        (status = 404, response = doc::NotFound),
    ),
    security(("jwtAuth" = [])),
)]
async fn end(
    State(state): State<AppState>,
    AuthUser(auth): AuthUser,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if state.auth().end_user_session(&auth.user, &id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound)
    }
}
