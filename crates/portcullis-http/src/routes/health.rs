//! Liveness and readiness probes for orchestrators.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::{ApiError, AppState};

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

/// The process answers.
async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// The database answers, and every other check passes (a `[[wsgi]]` app
/// has imported).
async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    for check in &state.http().readiness {
        if let Err(what) = (check.0)() {
            tracing::debug!(%what, "not ready yet");
            return Err(ApiError::Unavailable);
        }
    }
    match state.auth().ping().await {
        Ok(()) => Ok(Json(json!({"status": "ready"}))),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            Err(ApiError::Unavailable)
        }
    }
}
