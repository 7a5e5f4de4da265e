//! Sessions (issue 4): `POST /api/token/logout/` ends the caller's
//! session, `POST /api/token/logout-all/` every session of the caller.
//! `GET /api/sessions/` lists the caller's live sessions and
//! `DELETE /api/sessions/{id}/` ends one (204; 404 for a session that is
//! not the caller's or no longer live). All need an access token (`IsAuthenticated`), so an anonymous request
//! is a 401 before anything else, and answer `{}` as simplejwt's blacklist
//! view does.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::middleware::map_response;
use axum::routing::{MethodRouter, delete, get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::{drf_headers, method_not_allowed};
use crate::{ApiError, AppState, AuthUser, DrfData};
use portcullis_core::SESSION_CLAIM;

type JsonResult = Result<Json<Value>, ApiError>;

pub(crate) fn router() -> Router<AppState> {
    let routes: [(&str, MethodRouter<AppState>); 2] = [
        ("/api/token/logout/", post(logout)),
        ("/api/token/logout-all/", post(logout_all)),
    ];
    routes
        .into_iter()
        .fold(Router::new(), |app, (path, view)| {
            let view = view.fallback(method_not_allowed);
            app.route(path, view.clone())
                .route(path.trim_end_matches('/'), view)
        })
        .layer(map_response(drf_headers("POST, OPTIONS")))
        .merge(
            Router::new()
                .route("/api/sessions/", get(list).fallback(method_not_allowed))
                .route("/api/sessions", get(list).fallback(method_not_allowed))
                .layer(map_response(drf_headers("GET, HEAD, OPTIONS"))),
        )
        .merge(
            Router::new()
                .route(
                    "/api/sessions/{id}/",
                    delete(end).fallback(method_not_allowed),
                )
                .route(
                    "/api/sessions/{id}",
                    delete(end).fallback(method_not_allowed),
                )
                .layer(map_response(drf_headers("DELETE, OPTIONS"))),
        )
}

async fn logout(
    State(state): State<AppState>,
    AuthUser(auth): AuthUser,
    data: DrfData,
) -> JsonResult {
    let refresh = data.optional_string("refresh")?;
    state.auth().logout(&auth, refresh.as_deref()).await?;
    Ok(Json(json!({})))
}

async fn logout_all(State(state): State<AppState>, AuthUser(auth): AuthUser) -> JsonResult {
    state.auth().logout_all(&auth.user).await?;
    Ok(Json(json!({})))
}

/// Times are Unix seconds, as in the tokens; `current` marks the session
/// of the access token that asked.
async fn list(State(state): State<AppState>, AuthUser(auth): AuthUser) -> JsonResult {
    let current = auth.token.get(SESSION_CLAIM).and_then(Value::as_str);
    let sessions = state.auth().sessions(&auth.user).await?;
    Ok(Json(Value::Array(
        sessions
            .into_iter()
            .map(|s| {
                json!({
                    "id": s.id,
                    "created_at": s.created_at,
                    "last_used_at": s.last_used_at,
                    "expires_at": s.expires_at,
                    "current": current == Some(s.id.as_str()),
                })
            })
            .collect(),
    )))
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
