//! portcullis-verify (issue 9) against the real server: the library and
//! the server agree on every token, and the example items API
//! (`examples/items-api`) works with tokens from a login, by shared secret
//! and by JWKS.
//!
//! These tests live here, not in the example's crate, because the server
//! harness lives here (`TestApp`, and the `portcullis` binary, which Cargo
//! only builds for this crate's tests); the example exposes its router as a
//! library so the tests mount the very router its binary serves.

use axum::body::Body;
use axum::http::Request;
use axum::routing::get;
use portcullis_verify::{Permission, RequireAuth, Verifier};
use serde_json::{Value, json};
use tower::ServiceExt as _;

use crate::helpers::{
    Backend, SIGNING_KEY, Served, TestApp, binary, mint_hs, mint_hs_with_header, now, run,
};
use crate::keys::{keys, printed_kid, signs_with};

const AUDIENCE: &str = "items";
const ISSUER: &str = "https://auth.example.com";

fn server_settings() -> String {
    format!("audience = \"{AUDIENCE}\"\nissuer = \"{ISSUER}\"\n")
}

fn verifier() -> Verifier {
    Verifier::builder()
        .signing_key(SIGNING_KEY)
        .audience(AUDIENCE)
        .issuer(ISSUER)
        .build()
        .unwrap()
}

/// The library's answer to an `Authorization` header: status, body and
/// `WWW-Authenticate`, from a route protected like `/api/users/me/`.
async fn library_answer(
    verifier: &Verifier,
    authorization: Option<&str>,
) -> (u16, String, Option<String>) {
    let app = axum::Router::new()
        .route("/api/users/me/", get(|| async { "ok" }))
        .layer(RequireAuth::new(
            verifier.clone(),
            Permission::IsAuthenticated,
        ));
    let mut request = Request::get("/api/users/me/");
    if let Some(value) = authorization {
        request = request.header("Authorization", value);
    }
    let response = app
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let www = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, String::from_utf8(body.to_vec()).unwrap(), www)
}

async fn server_answer(
    app: &TestApp,
    authorization: Option<&str>,
) -> (u16, String, Option<String>) {
    let mut request = app.client.get(app.url("/api/users/me/"));
    if let Some(value) = authorization {
        request = request.header("Authorization", value);
    }
    let reply = crate::helpers::Reply::read(request.send().await.unwrap()).await;
    let www = reply.header("www-authenticate").map(str::to_owned);
    (reply.status, reply.body, www)
}

/// An access token's claims as the server writes them, for `user_id`.
fn access_claims(user_id: &str) -> Value {
    let now = now();
    json!({
        "token_type": "access",
        "exp": now + 300,
        "iat": now,
        "jti": "0123456789abcdef0123456789abcdef",
        "user_id": user_id,
        "aud": AUDIENCE,
        "iss": ISSUER,
    })
}

fn with(mut claims: Value, name: &str, value: Value) -> Value {
    claims[name] = value;
    claims
}

fn without(mut claims: Value, name: &str) -> Value {
    claims.as_object_mut().unwrap().remove(name);
    claims
}

/// Every token of the server's token test set, answered by both: identical
/// status, body and `WWW-Authenticate`, except where the server reads its
/// database by design (a user that does not exist: the stateless library
/// accepts, as simplejwt's `JWTStatelessUserAuthentication` does).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn library_and_server_agree_on_every_token() {
    let app = TestApp::spawn(Backend::Sqlite, &server_settings()).await;
    let alice = app.user("alice", "alice-pass", true, false).await;
    let (refresh, access) = app.login("alice", "alice-pass").await;
    let id = alice.id.to_string();
    let valid = access_claims(&id);
    let key = SIGNING_KEY.as_bytes();
    let other_key = b"another-signing-key-0123456789abcdef0123456789";
    let none_token = {
        use base64::Engine as _;
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!(
            "{}.{}.",
            b64(r#"{"alg":"none","typ":"JWT"}"#),
            b64(&valid.to_string())
        )
    };
    let bearer = |token: &str| Some(format!("Bearer {token}"));
    let cases: Vec<(&str, Option<String>)> = vec![
        ("login access token", bearer(&access)),
        ("minted valid token", bearer(&mint_hs("HS256", key, &valid))),
        ("refresh token: wrong type", bearer(&refresh)),
        (
            "expired",
            bearer(&mint_hs(
                "HS256",
                key,
                &with(valid.clone(), "exp", json!(now() - 10)),
            )),
        ),
        ("wrong key", bearer(&mint_hs("HS256", other_key, &valid))),
        (
            "wrong audience",
            bearer(&mint_hs(
                "HS256",
                key,
                &with(valid.clone(), "aud", json!("other")),
            )),
        ),
        (
            "no audience",
            bearer(&mint_hs("HS256", key, &without(valid.clone(), "aud"))),
        ),
        (
            "wrong issuer",
            bearer(&mint_hs(
                "HS256",
                key,
                &with(valid.clone(), "iss", json!("evil")),
            )),
        ),
        (
            "unknown kid",
            bearer(&mint_hs_with_header(
                r#"{"alg":"HS256","kid":"nobody","typ":"JWT"}"#,
                "HS256",
                key,
                &valid,
            )),
        ),
        (
            "alg HS512 for an HS256 key",
            bearer(&mint_hs_with_header(
                r#"{"alg":"HS512","typ":"JWT"}"#,
                "HS512",
                key,
                &valid,
            )),
        ),
        ("alg none", bearer(&none_token)),
        ("garbage", bearer("garbage")),
        ("three dots of garbage", bearer("a.b.c")),
        (
            "not yet valid (nbf)",
            bearer(&mint_hs(
                "HS256",
                key,
                &with(valid.clone(), "nbf", json!(now() + 600)),
            )),
        ),
        (
            "issued in the future (iat)",
            bearer(&mint_hs(
                "HS256",
                key,
                &with(valid.clone(), "iat", json!(now() + 600)),
            )),
        ),
        (
            "no exp",
            bearer(&mint_hs("HS256", key, &without(valid.clone(), "exp"))),
        ),
        (
            "no jti",
            bearer(&mint_hs("HS256", key, &without(valid.clone(), "jti"))),
        ),
        (
            "no token type",
            bearer(&mint_hs(
                "HS256",
                key,
                &without(valid.clone(), "token_type"),
            )),
        ),
        (
            "sliding token type",
            bearer(&mint_hs(
                "HS256",
                key,
                &with(valid.clone(), "token_type", json!("sliding")),
            )),
        ),
        (
            "no user id",
            bearer(&mint_hs("HS256", key, &without(valid.clone(), "user_id"))),
        ),
        ("no header", None),
        ("another scheme: anonymous", Some(format!("Basic {access}"))),
        ("scheme alone", Some("Bearer".to_owned())),
        ("two values", Some(format!("Bearer {access} extra"))),
    ];
    let verifier = verifier();
    let mut accepted = Vec::new();
    for (name, authorization) in &cases {
        let server = server_answer(&app, authorization.as_deref()).await;
        let library = library_answer(&verifier, authorization.as_deref()).await;
        if server.0 == 200 {
            assert_eq!(library.0, 200, "{name}: the library refused {library:?}");
            accepted.push(*name);
        } else {
            assert_eq!(server, library, "{name}");
        }
    }
    // A kid nobody has is ignored by both, as simplejwt ignores it.
    assert_eq!(
        accepted,
        ["login access token", "minted valid token", "unknown kid"]
    );
    // The bodies are simplejwt's, not merely equal to each other.
    let invalid = library_answer(&verifier, bearer("garbage").as_deref()).await;
    assert_eq!(
        invalid,
        (
            401,
            r#"{"detail":"Given token not valid for any token type","code":"token_not_valid","messages":[{"token_class":"AccessToken","token_type":"access","message":"Token is invalid"}]}"#.to_owned(),
            Some(r#"Bearer realm="api""#.to_owned())
        )
    );
    assert_eq!(
        library_answer(&verifier, None).await.1,
        r#"{"detail":"Authentication credentials were not provided."}"#
    );

    // By design: the server reads the user, the stateless library cannot.
    let ghost = bearer(&mint_hs("HS256", key, &access_claims("999999")));
    let server = server_answer(&app, ghost.as_deref()).await;
    assert_eq!(
        (server.0, server.1.as_str()),
        (
            401,
            r#"{"detail":"User not found","code":"user_not_found"}"#
        )
    );
    assert_eq!(library_answer(&verifier, ghost.as_deref()).await.0, 200);
    app.stop().await;
}

/// The example API on port 0.
async fn serve_items(verifier: Verifier) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, items_api::router(verifier))
            .await
            .unwrap();
    });
    format!("http://{addr}")
}

async fn call(
    method: reqwest::Method,
    url: String,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = reqwest::Client::new().request(method, url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The DRF tutorial, with tokens from a login: anyone logged in reads,
/// only the owner changes; anonymous and forged requests get simplejwt's 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_api_with_a_shared_secret() {
    use reqwest::Method;
    let app = TestApp::spawn(Backend::Sqlite, &server_settings()).await;
    let alice = app.user("alice", "alice-pass", true, false).await;
    app.user("bob", "bob-pass", true, false).await;
    let (_, alice_token) = app.login("alice", "alice-pass").await;
    let (_, bob_token) = app.login("bob", "bob-pass").await;
    let items = serve_items(verifier()).await;
    let url = |path: &str| format!("{items}{path}");

    assert_eq!(
        call(Method::GET, url("/items/"), None, None).await,
        (
            401,
            json!({"detail": "Authentication credentials were not provided."})
        )
    );
    assert_eq!(
        call(Method::GET, url("/items/"), Some("forged"), None)
            .await
            .0,
        401
    );

    let created = call(
        Method::POST,
        url("/items/"),
        Some(&alice_token),
        Some(json!({"title": "alice's"})),
    )
    .await;
    assert_eq!(
        created,
        (
            201,
            json!({"id": 1, "owner": alice.id.to_string(), "title": "alice's"})
        )
    );
    assert_eq!(
        call(
            Method::POST,
            url("/items/"),
            Some(&bob_token),
            Some(json!({}))
        )
        .await,
        (400, json!({"title": ["This field is required."]}))
    );
    assert_eq!(
        call(Method::GET, url("/items/"), Some(&bob_token), None).await,
        (200, json!([created.1]))
    );
    assert_eq!(
        call(Method::GET, url("/items/1/"), Some(&bob_token), None).await,
        (200, created.1.clone())
    );
    let forbidden = json!({"detail": "You do not have permission to perform this action."});
    assert_eq!(
        call(
            Method::PUT,
            url("/items/1/"),
            Some(&bob_token),
            Some(json!({"title": "bob's now"}))
        )
        .await,
        (403, forbidden.clone())
    );
    assert_eq!(
        call(Method::DELETE, url("/items/1/"), Some(&bob_token), None).await,
        (403, forbidden)
    );
    assert_eq!(
        call(
            Method::PUT,
            url("/items/1/"),
            Some(&alice_token),
            Some(json!({"title": "renamed"}))
        )
        .await,
        (
            200,
            json!({"id": 1, "owner": alice.id.to_string(), "title": "renamed"})
        )
    );
    assert_eq!(
        call(Method::DELETE, url("/items/1/"), Some(&alice_token), None).await,
        (204, Value::Null)
    );
    assert_eq!(
        call(Method::GET, url("/items/1/"), Some(&alice_token), None).await,
        (404, json!({"detail": "Not found."}))
    );
    app.stop().await;
}

/// The example API trusting the server's JWKS only: a key made by the real
/// `portcullis keys` binary is fetched on the first token that names it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_api_with_the_servers_jwks() {
    use reqwest::Method;
    let app = TestApp::spawn(Backend::Sqlite, "").await;
    app.user("alice", "alice-pass", true, false).await;
    let verifier = Verifier::builder()
        .jwk_url(app.url("/.well-known/jwks.json"))
        .build()
        .unwrap();
    let items = serve_items(verifier).await;

    // Before any published key: the server signs with its HMAC secret,
    // which the JWKS never shows, so the API refuses.
    let (_, hmac_token) = app.login("alice", "alice-pass").await;
    assert_eq!(
        call(
            Method::GET,
            format!("{items}/items/"),
            Some(&hmac_token),
            None
        )
        .await
        .0,
        401
    );

    let kid = printed_kid(&keys(&app.db, &["generate", "--alg", "EdDSA", "--activate"], &[]).await);
    signs_with(&app, &kid).await;
    let (_, access) = app.login("alice", "alice-pass").await;
    assert_eq!(
        call(
            Method::POST,
            format!("{items}/items/"),
            Some(&access),
            Some(json!({"title": "t"}))
        )
        .await
        .0,
        201
    );
    app.stop().await;
}

/// The example API beside the real `portcullis serve` process: a user made
/// with the CLI logs in over HTTP and uses the API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_api_beside_the_real_binary() {
    use reqwest::Method;
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", dir.path().join("db.sqlite3").display());
    let portcullis = |args: &[&str]| {
        let mut command = binary();
        command
            .args(args)
            .env("PORTCULLIS_DATABASE_URL", &database)
            .env("PORTCULLIS_SIGNING_KEY", SIGNING_KEY)
            .env("PORTCULLIS_AUDIENCE", AUDIENCE)
            .env("PORTCULLIS_ISSUER", ISSUER)
            .env("PORTCULLIS_PASSWORD_HASH_MEMORY_KIB", "64")
            .env("PORTCULLIS_PASSWORD_HASH_ITERATIONS", "1");
        command
    };
    let out = run(
        portcullis(&["user", "create", "alice", "--password-stdin"]),
        "alice-pass\n",
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let served = Served::start(portcullis(&[])).await.unwrap();
    let login = served.login("alice", "alice-pass").await;
    let access = login["access"].as_str().unwrap();

    let items = serve_items(verifier()).await;
    let (status, item) = call(
        Method::POST,
        format!("{items}/items/"),
        Some(access),
        Some(json!({"title": "from the binary"})),
    )
    .await;
    assert_eq!((status, &item["title"]), (201, &json!("from the binary")));
    assert_eq!(
        call(Method::GET, format!("{items}/items/"), Some(access), None).await,
        (200, json!([item]))
    );
    assert_eq!(served.terminate().await.0, 0);
}
