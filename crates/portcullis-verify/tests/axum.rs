//! The layer, the extractors and the permissions, in process: tokens are
//! signed by portcullis-token's engine, as the server signs them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use axum::routing::get;
use portcullis_token::{
    Algorithm, SigningKeys, SystemClock, TokenEngine, TokenSettings, TokenType, generate_key,
};
use portcullis_verify::{AuthUser, MaybeAuthUser, Permission, RequireAuth, Verifier};
use serde_json::{Value, json};
use tower::ServiceExt as _;

const SECRET: &str = "a-test-secret-of-at-least-32-bytes-long";
const NOT_PROVIDED: &str = r#"{"detail":"Authentication credentials were not provided."}"#;
const FORBIDDEN: &str = r#"{"detail":"You do not have permission to perform this action."}"#;

fn engine(keys: SigningKeys) -> TokenEngine {
    TokenEngine::new(TokenSettings::default(), keys, Arc::new(SystemClock))
}

/// An access token for user 7 with `extra` claims.
fn token(engine: &TokenEngine, extra: &[(&str, Value)]) -> String {
    let extra = extra.iter().map(|(k, v)| ((*k).to_owned(), v.clone()));
    let token = engine.for_user(TokenType::Access, 7, extra).unwrap();
    engine.encode(&token).unwrap()
}

fn hs_engine() -> TokenEngine {
    engine(SigningKeys::new(Algorithm::HS256, SECRET.as_bytes(), None).unwrap())
}

fn hs_verifier() -> Verifier {
    Verifier::builder().signing_key(SECRET).build().unwrap()
}

async fn me(user: AuthUser) -> String {
    format!("{}:{}:{}", user.id(), user.is_staff(), user.username())
}

async fn maybe(MaybeAuthUser(user): MaybeAuthUser) -> String {
    user.map_or_else(|| "anonymous".to_owned(), |u| u.id().to_owned())
}

fn app(verifier: Verifier, permission: Permission) -> Router {
    Router::new()
        .route("/me", get(me))
        .route("/maybe", get(maybe))
        .layer(RequireAuth::new(verifier, permission))
}

async fn send(app: &Router, path: &str, authorization: Option<&str>) -> (u16, String, String) {
    let mut request = Request::get(path);
    if let Some(value) = authorization {
        request = request.header("Authorization", value);
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let www = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = axum::body::to_bytes(response.into_body(), 1 << 16)
        .await
        .unwrap();
    (status, String::from_utf8(body.to_vec()).unwrap(), www)
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[tokio::test]
async fn authenticated_requests_reach_the_handler_with_the_claims() {
    let engine = hs_engine();
    let app = app(hs_verifier(), Permission::IsAuthenticated);
    let plain = token(&engine, &[]);
    assert_eq!(send(&app, "/me", Some(&bearer(&plain))).await.1, "7:false:");
    let staff = token(
        &engine,
        &[("is_staff", json!(true)), ("username", json!("ann"))],
    );
    assert_eq!(
        send(&app, "/me", Some(&bearer(&staff))).await.1,
        "7:true:ann"
    );
    let anonymous = send(&app, "/me", None).await;
    assert_eq!(
        anonymous,
        (
            401,
            NOT_PROVIDED.to_owned(),
            r#"Bearer realm="api""#.to_owned()
        )
    );
}

#[tokio::test]
async fn staff_only_and_custom_permissions_answer_drf_403() {
    let engine = hs_engine();
    let plain = bearer(&token(&engine, &[]));
    let staff = bearer(&token(&engine, &[("is_staff", json!(true))]));
    let admin = app(hs_verifier(), Permission::IsAdminUser);
    assert_eq!(
        send(&admin, "/me", Some(&plain)).await,
        (403, FORBIDDEN.to_owned(), String::new())
    );
    assert_eq!(send(&admin, "/me", Some(&staff)).await.0, 200);
    // Anonymous is "not provided" (401), not 403, as in DRF.
    assert_eq!(send(&admin, "/me", None).await.1, NOT_PROVIDED);

    let scoped = app(
        hs_verifier(),
        Permission::custom(|user| user.claim("scope") == Some(&json!("items:write"))),
    );
    let writer = bearer(&token(&engine, &[("scope", json!("items:write"))]));
    assert_eq!(send(&scoped, "/me", Some(&writer)).await.0, 200);
    assert_eq!(send(&scoped, "/me", Some(&plain)).await.0, 403);
}

#[tokio::test]
async fn allow_any_lets_anonymous_through_but_not_a_bad_token() {
    let engine = hs_engine();
    let app = app(hs_verifier(), Permission::AllowAny);
    assert_eq!(send(&app, "/maybe", None).await.1, "anonymous");
    let valid = bearer(&token(&engine, &[]));
    assert_eq!(send(&app, "/maybe", Some(&valid)).await.1, "7");
    assert_eq!(
        send(&app, "/maybe", Some("Bearer nonsense")).await,
        (
            401,
            r#"{"detail":"Given token not valid for any token type","code":"token_not_valid","messages":[{"token_class":"AccessToken","token_type":"access","message":"Token is invalid"}]}"#.to_owned(),
            r#"Bearer realm="api""#.to_owned()
        )
    );
    // AuthUser on an anonymous-allowed route: DRF's 401, challenged.
    assert_eq!(
        send(&app, "/me", None).await,
        (
            401,
            NOT_PROVIDED.to_owned(),
            r#"Bearer realm="api""#.to_owned()
        )
    );
}

#[tokio::test]
async fn header_types_name_the_scheme() {
    let engine = hs_engine();
    let verifier = Verifier::builder()
        .signing_key(SECRET)
        .auth_header_types(["JWT", "Bearer"])
        .build()
        .unwrap();
    let app = app(verifier, Permission::IsAuthenticated);
    let raw = token(&engine, &[]);
    assert_eq!(send(&app, "/me", Some(&format!("JWT {raw}"))).await.0, 200);
    let refused = send(&app, "/me", Some("JWT")).await;
    assert_eq!(
        refused,
        (
            401,
            r#"{"detail":"Authorization header must contain two space-delimited values","code":"bad_authorization_header"}"#.to_owned(),
            r#"JWT realm="api""#.to_owned()
        )
    );
}

#[tokio::test]
async fn auth_header_name_in_django_form() {
    let verifier = Verifier::builder()
        .signing_key(SECRET)
        .auth_header_name("HTTP_X_ACCESS_TOKEN")
        .build()
        .unwrap();
    let app = app(verifier, Permission::IsAuthenticated);
    let request = Request::get("/me")
        .header("X-Access-Token", bearer(&token(&hs_engine(), &[])))
        .body(Body::empty())
        .unwrap();
    assert_eq!(app.clone().oneshot(request).await.unwrap().status(), 200);
    // Authorization is not read any more.
    let raw = token(&hs_engine(), &[]);
    assert_eq!(send(&app, "/me", Some(&bearer(&raw))).await.0, 401);
}

#[tokio::test]
async fn a_public_pem_alone_verifies() {
    let key = generate_key(Algorithm::ES256, None).unwrap();
    let signer =
        engine(SigningKeys::new(Algorithm::ES256, key.private_key.as_bytes(), None).unwrap());
    let verifier = Verifier::builder()
        .algorithm(Algorithm::ES256)
        .verifying_key_pem(key.public_key.unwrap())
        .build()
        .unwrap();
    let app = app(verifier, Permission::IsAuthenticated);
    assert_eq!(
        send(&app, "/me", Some(&bearer(&token(&signer, &[]))))
            .await
            .0,
        200
    );
    // An HMAC token with the same claims is refused: the key pins the algorithm.
    assert_eq!(
        send(&app, "/me", Some(&bearer(&token(&hs_engine(), &[]))))
            .await
            .0,
        401
    );
}

#[tokio::test]
async fn a_verifier_needs_a_key_and_an_http_jwk_url() {
    assert!(Verifier::builder().build().is_err());
    assert!(
        Verifier::builder()
            .jwk_url("file:///etc/passwd")
            .build()
            .is_err()
    );
    assert!(Verifier::builder().signing_key("short").build().is_err());
}

#[tokio::test]
async fn extractors_without_the_layer_answer_500() {
    let app = Router::new()
        .route("/me", get(me))
        .route("/maybe", get(maybe));
    for path in ["/me", "/maybe"] {
        assert_eq!(
            send(&app, path, None).await,
            (
                500,
                r#"{"detail":"A server error occurred."}"#.to_owned(),
                String::new()
            ),
            "{path}"
        );
    }
}
