//! The DRF tutorial's resource, in axum: items that belong to the user who
//! created them. Every route needs a valid portcullis access token (the
//! [`RequireAuth`] layer, DRF's `IsAuthenticated`); anyone authenticated
//! may read, only the owner may change or delete (DRF's `IsOwnerOrReadOnly`:
//! 403 otherwise). Storage is in memory.
//!
//! Its tests log in against a real portcullis server:
//! `crates/portcullis/tests/api/library.rs`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use portcullis_verify::{AuthError, AuthUser, Permission, RequireAuth, Verifier};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// One item.
#[derive(Debug, Clone, Serialize)]
pub struct Item {
    /// Assigned on creation.
    pub id: u64,
    /// The creator's user id (`USER_ID_CLAIM`), read only.
    pub owner: String,
    /// What the item says.
    pub title: String,
}

/// The body of a create or update.
#[derive(Debug, Deserialize)]
struct ItemInput {
    title: Option<String>,
}

#[derive(Debug, Default)]
struct Items {
    next_id: u64,
    items: BTreeMap<u64, Item>,
}

/// The in-memory store.
#[derive(Debug, Clone, Default)]
pub struct Store(Arc<Mutex<Items>>);

impl Store {
    fn lock(&self) -> MutexGuard<'_, Items> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The API's errors: the verifier's refusals and DRF's 400/404 bodies.
#[derive(Debug)]
enum ApiError {
    Auth(AuthError),
    TitleRequired,
    NotFound,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            Self::Auth(e) => e.into_response(),
            Self::TitleRequired => (
                StatusCode::BAD_REQUEST,
                Json(json!({"title": ["This field is required."]})),
            )
                .into_response(),
            Self::NotFound => {
                (StatusCode::NOT_FOUND, Json(json!({"detail": "Not found."}))).into_response()
            }
        }
    }
}

/// `/items/` and `/items/{id}/`, every route behind the layer.
pub fn router(verifier: Verifier) -> Router {
    Router::new()
        .route("/items/", get(list).post(create))
        .route("/items/{id}/", get(read).put(update).delete(destroy))
        .with_state(Store::default())
        .layer(RequireAuth::new(verifier, Permission::IsAuthenticated))
}

async fn list(State(store): State<Store>) -> Json<Vec<Item>> {
    Json(store.lock().items.values().cloned().collect())
}

async fn create(
    user: AuthUser,
    State(store): State<Store>,
    Json(input): Json<ItemInput>,
) -> Result<(StatusCode, Json<Item>), ApiError> {
    let title = input.title.ok_or(ApiError::TitleRequired)?;
    let mut items = store.lock();
    items.next_id += 1;
    let item = Item {
        id: items.next_id,
        owner: user.id().to_owned(),
        title,
    };
    items.items.insert(item.id, item.clone());
    Ok((StatusCode::CREATED, Json(item)))
}

async fn read(Path(id): Path<u64>, State(store): State<Store>) -> Result<Json<Item>, ApiError> {
    store
        .lock()
        .items
        .get(&id)
        .cloned()
        .map(Json)
        .ok_or(ApiError::NotFound)
}

/// The owned item, or 404 / 403 (DRF checks existence first).
fn owned<'a>(items: &'a mut Items, id: u64, user: &AuthUser) -> Result<&'a mut Item, ApiError> {
    let item = items.items.get_mut(&id).ok_or(ApiError::NotFound)?;
    if item.owner != user.id() {
        return Err(ApiError::Auth(AuthError::forbidden()));
    }
    Ok(item)
}

async fn update(
    user: AuthUser,
    Path(id): Path<u64>,
    State(store): State<Store>,
    Json(input): Json<ItemInput>,
) -> Result<Json<Item>, ApiError> {
    let mut items = store.lock();
    let item = owned(&mut items, id, &user)?;
    item.title = input.title.ok_or(ApiError::TitleRequired)?;
    Ok(Json(item.clone()))
}

async fn destroy(
    user: AuthUser,
    Path(id): Path<u64>,
    State(store): State<Store>,
) -> Result<StatusCode, ApiError> {
    let mut items = store.lock();
    owned(&mut items, id, &user)?;
    items.items.remove(&id);
    Ok(StatusCode::NO_CONTENT)
}
