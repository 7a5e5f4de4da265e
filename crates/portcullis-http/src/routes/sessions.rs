//! Sessions (issue 4): `POST /api/token/logout/` ends the caller's
//! session, `POST /api/token/logout-all/` every session of the caller.
//! Both need an access token (`IsAuthenticated`), so an anonymous request
//! is a 401 before anything else, and answer `{}` as simplejwt's blacklist
//! view does.

use axum::extract::State;
use axum::middleware::map_response;
use axum::routing::{MethodRouter, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::{drf_headers, method_not_allowed};
use crate::{ApiError, AppState, AuthUser, DrfData};

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
