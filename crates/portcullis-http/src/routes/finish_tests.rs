//! The handler wrapper [`Finish`] against the `Router::layer` it replaced:
//! the same handlers, once wrapped and once behind a `map_response` layer
//! doing the same finishing, answer every request alike — status, every
//! header, body — including extractor rejections (a missing or bad token,
//! a body that does not parse, a content type no parser takes), a method
//! the view lacks, and `HEAD`, whose body axum strips around either.

use std::sync::Arc;

use axum::Json;
use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::response::Response;
use axum::routing::{get, post};
use portcullis_core::{AuthService, AuthSettings, HashParams, PasswordHasher, Store};
use portcullis_token::{Algorithm, SigningKeys, SystemClock, TokenEngine, TokenSettings};
use serde_json::{Value, json};
use tower::ServiceExt as _;

use super::{Finish, method_not_allowed};
use crate::{ApiError, AppState, AuthUser, DrfData, HttpSettings};

const READ: &str = "GET, HEAD, OPTIONS";
const WRITE: &str = "POST, OPTIONS";

async fn me(_: AuthUser) -> Json<Value> {
    Json(json!({"me": true}))
}

async fn echo(_: DrfData) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({"parsed": true})))
}

async fn hello() -> Json<Value> {
    Json(json!({"hello": "world"}))
}

/// The routes with each handler wrapped, as `routes/` builds them.
fn wrapped(state: &AppState) -> axum::Router {
    let (read, write) = (Finish::view(READ), Finish::view(WRITE));
    axum::Router::new()
        .route(
            "/me/",
            get(read.wrap(me)).fallback(read.wrap(method_not_allowed)),
        )
        .route(
            "/hello/",
            get(read.wrap(hello)).fallback(read.wrap(method_not_allowed)),
        )
        .route(
            "/echo/",
            post(write.wrap(echo)).fallback(write.wrap(method_not_allowed)),
        )
        .with_state(state.clone())
}

/// The same routes behind a layer per view that finishes every response.
fn layered(state: &AppState) -> axum::Router {
    let finishing = |allow: &'static str| {
        axum::middleware::map_response_with_state(
            state.clone(),
            move |State(state): State<AppState>, mut response: Response| async move {
                Finish::view(allow).apply(&mut response, &state);
                response
            },
        )
    };
    axum::Router::new()
        .merge(
            axum::Router::new()
                .route("/me/", get(me).fallback(method_not_allowed))
                .route("/hello/", get(hello).fallback(method_not_allowed))
                .layer(finishing(READ)),
        )
        .merge(
            axum::Router::new()
                .route("/echo/", post(echo).fallback(method_not_allowed))
                .layer(finishing(WRITE)),
        )
        .with_state(state.clone())
}

pub(super) async fn state() -> (AppState, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("db.sqlite3").display()
    );
    let store: Arc<dyn Store> = Arc::new(portcullis_store::SqlStore::connect(&url).await.unwrap());
    let keys = SigningKeys::new(
        Algorithm::HS256,
        b"finish-test-signing-key-0123456789abcdef",
        None,
    )
    .unwrap();
    let engine = TokenEngine::new(TokenSettings::default(), keys, Arc::new(SystemClock));
    let hasher = PasswordHasher::new(HashParams::default(), 1).unwrap();
    let auth = AuthService::new(engine, store, hasher, AuthSettings::default());
    (AppState::new(auth, HttpSettings::default()), dir)
}

/// Status, headers (sorted) and body.
pub(super) type Answer = (u16, Vec<(String, String)>, Vec<u8>);

/// Method, path, headers, body.
type Case<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, &'a str);

pub(super) async fn answer(router: &axum::Router, request: Request) -> Answer {
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let mut headers: Vec<(String, String)> = response
        .headers()
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
        .collect();
    headers.sort();
    let body = to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap()
        .to_vec();
    (status, headers, body)
}

pub(super) fn request(method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Request {
    let mut builder = Request::builder().method(method).uri(path);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Body::from(body.to_owned())).unwrap()
}

#[tokio::test]
async fn the_wrapper_answers_as_the_layer_did() {
    let (state, _dir) = state().await;
    let (wrapped, layered) = (wrapped(&state), layered(&state));
    let json = ("content-type", "application/json");
    let cases: Vec<Case<'_>> = vec![
        ("GET", "/hello/", vec![], ""),
        ("HEAD", "/hello/", vec![], ""),
        ("DELETE", "/hello/", vec![], ""),
        ("GET", "/me/", vec![], ""),
        ("HEAD", "/me/", vec![], ""),
        (
            "GET",
            "/me/",
            vec![("authorization", "Bearer not.a.token")],
            "",
        ),
        ("GET", "/me/", vec![("authorization", "Basic YTpi")], ""),
        ("GET", "/me/", vec![("authorization", "Bearer")], ""),
        ("PUT", "/me/", vec![], ""),
        ("POST", "/echo/", vec![json], r#"{"token": "x"}"#),
        ("POST", "/echo/", vec![json], "{not json"),
        ("POST", "/echo/", vec![("content-type", "text/plain")], "x"),
        ("GET", "/echo/", vec![], ""),
    ];
    for (method, path, headers, body) in cases {
        let ours = answer(&wrapped, request(method, path, &headers, body)).await;
        let theirs = answer(&layered, request(method, path, &headers, body)).await;
        assert_eq!(ours, theirs, "{method} {path} {headers:?}");
    }
    // The cases above did reach what they name: a 401 with the challenge,
    // a parse error, a 405 with the view's Allow.
    let refused = answer(&wrapped, request("GET", "/me/", &[], "")).await;
    assert_eq!(refused.0, 401);
    assert!(
        refused.1.contains(&(
            "www-authenticate".to_owned(),
            r#"Bearer realm="api""#.to_owned()
        )),
        "{:?}",
        refused.1
    );
    let unparsed = answer(&wrapped, request("POST", "/echo/", &[json], "{not json")).await;
    assert_eq!(unparsed.0, 400);
    let not_allowed = answer(&wrapped, request("PUT", "/me/", &[], "")).await;
    assert_eq!(not_allowed.0, 405);
    assert!(
        not_allowed
            .1
            .contains(&("allow".to_owned(), READ.to_owned())),
        "{:?}",
        not_allowed.1
    );
}
