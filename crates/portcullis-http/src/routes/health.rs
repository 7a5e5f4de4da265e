//! Liveness and readiness probes for orchestrators.

use axum::Json;
use axum::extract::State;
use axum::routing::get;

use super::Routes;
use serde_json::{Value, json};

use crate::openapi as doc;
use crate::{ApiError, AppState};

pub(crate) fn router() -> Routes {
    Routes::default()
        .route("/healthz", &["GET"], get(healthz))
        .route("/readyz", &["GET"], get(readyz))
}

#[utoipa::path(
    get,
    path = "/healthz",
    tag = "health",
    operation_id = "healthz",
    summary = "Liveness: the process answers",
    responses(
        (status = 200, description = "Alive", body = doc::Status, example = json!({"status": "ok"})),
    ),
)]
/// The process answers.
async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// The database answers, and every other check passes (a `[[wsgi]]` app
/// has imported).
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "health",
    operation_id = "readyz",
    summary = "Readiness: the database answers and every `[[wsgi]]` app has imported",
    responses(
        (status = 200, description = "Ready", body = doc::Status, example = json!({"status": "ready"})),
        (status = 503, description = "Not ready: the database does not answer, or a `[[wsgi]]` app is still importing (`The application is still starting.`)", body = doc::ErrorDetail, example = json!({"detail": "The database is unreachable."})),
    ),
)]
async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    for check in &state.http().readiness {
        if let Err(what) = (check.0)() {
            tracing::debug!(%what, "not ready yet");
            return Err(ApiError::Starting);
        }
    }
    match state.auth().ping().await {
        Ok(()) => Ok(Json(json!({"status": "ready"}))),
        Err(e) => {
            let error = portcullis_core::error_chain(&e);
            tracing::warn!(%error, "readiness check failed");
            Err(ApiError::Unavailable)
        }
    }
}
