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

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::{method_not_allowed, view_at};
use crate::cookie::{self, CookieRefresh, SetCookies};
use crate::{ApiError, AppState, AuthUser, DrfData};
use portcullis_core::{SESSION_CLAIM, Session};

type JsonResult = Result<Json<Value>, ApiError>;
/// A body plus, in cookie mode, the cookies cleared.
type CookieResult = Result<(SetCookies, Json<Value>), ApiError>;

pub(crate) fn router() -> Router<AppState> {
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

async fn logout_all(State(state): State<AppState>, AuthUser(auth): AuthUser) -> CookieResult {
    state.auth().logout_all(&auth.user).await?;
    Ok((cookie::clear(&state), Json(json!({}))))
}

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
