//! Behaviour beyond the recorded replay: atomic rotation under
//! concurrency, path variants, last-login, password-hash upgrades,
//! health probes and request limits — each on both backends.

use portcullis_core::{HashParams, PasswordHasher};
use serde_json::json;

use crate::helpers::{Backend, Reply, TestApp};

/// 5.5.1 races here (reference §1.2): with rotation and
/// blacklist-after-rotation, 50 concurrent refreshes of one token give
/// exactly one success; the others are told the token is blacklisted.
async fn concurrent_rotation_has_one_winner(backend: Backend) {
    let app = TestApp::spawn(
        backend,
        "rotate_refresh_tokens = true\nblacklist_after_rotation = true\nrefresh_reuse_detection = false\n",
    )
    .await;
    app.user("alice", "alice-pass", true, false).await;
    let (refresh, _) = app.login("alice", "alice-pass").await;
    let mut winners = Vec::new();
    for (status, body) in app.concurrent_refreshes(&refresh, 50).await {
        match status {
            200 => winners.push(body),
            401 => assert_eq!(
                body,
                r#"{"detail":"Token is blacklisted","code":"token_not_valid"}"#
            ),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one refresh may win: {winners:?}");
    let rotated: serde_json::Value = serde_json::from_str(&winners[0]).unwrap();
    let next = app
        .post(
            "/api/token/refresh/",
            json!({"refresh": rotated["refresh"]}),
        )
        .await;
    assert_eq!(next.status, 200, "the one successor is live: {}", next.body);
    app.stop().await;
}

/// Every endpoint answers with and without its trailing slash.
async fn paths_without_trailing_slash(backend: Backend) {
    let app = TestApp::spawn(backend, "").await;
    app.user("alice", "alice-pass", true, false).await;
    let login = app
        .post(
            "/api/token",
            json!({"username": "alice", "password": "alice-pass"}),
        )
        .await;
    assert_eq!(login.status, 200);
    let refresh = login.json["refresh"].as_str().unwrap();
    let access = login.json["access"].as_str().unwrap();
    assert_eq!(app.get("/api/users/me", Some(access)).await.status, 200);
    assert_eq!(
        app.post("/api/token/refresh", json!({"refresh": refresh}))
            .await
            .status,
        200
    );
    assert_eq!(
        app.post("/api/token/verify", json!({"token": access}))
            .await
            .body,
        "{}"
    );
    let sliding = app
        .post(
            "/api/token/sliding",
            json!({"username": "alice", "password": "alice-pass"}),
        )
        .await;
    assert_eq!(sliding.status, 200);
    assert_eq!(
        app.post(
            "/api/token/sliding/refresh",
            json!({"token": sliding.json["token"]})
        )
        .await
        .status,
        200
    );
    assert_eq!(
        app.post("/api/token/blacklist", json!({"refresh": refresh}))
            .await
            .body,
        "{}"
    );
    let wrong = app.get("/api/token", None).await;
    assert_eq!(
        (wrong.status, wrong.body.as_str()),
        (405, r#"{"detail":"Method \"GET\" not allowed."}"#)
    );
    assert_eq!(wrong.header("allow"), Some("POST, OPTIONS"));
    let missing = app.get("/api/nothing/", None).await;
    assert_eq!(
        (missing.status, missing.body.as_str()),
        (404, r#"{"detail":"Not found."}"#)
    );
    app.stop().await;
}

/// `UPDATE_LAST_LOGIN` sets `last_login` on obtain (pair and sliding),
/// and nothing does without it.
async fn last_login(backend: Backend) {
    for enabled in [false, true] {
        let app = TestApp::spawn(backend, &format!("update_last_login = {enabled}\n")).await;
        let user = app.user("alice", "alice-pass", true, false).await;
        assert_eq!(user.last_login, None);
        app.login("alice", "alice-pass").await;
        let after = app.auth.store().user_by_id(user.id).await.unwrap().unwrap();
        assert_eq!(after.last_login.is_some(), enabled);
        app.stop().await;
    }
}

/// A hash made with weaker parameters is upgraded at the next login, as
/// Django's `check_password` does.
async fn outdated_hash_is_upgraded(backend: Backend) {
    let app = TestApp::spawn(backend, "").await;
    let user = app.user("alice", "placeholder", true, false).await;
    let weak = PasswordHasher::new(
        HashParams {
            memory_kib: 32,
            iterations: 1,
            parallelism: 1,
        },
        1,
    )
    .unwrap();
    let old = weak.hash("alice-pass".into()).await.unwrap();
    assert!(old.contains("m=32,"));
    app.auth.store().set_password(user.id, &old).await.unwrap();
    app.login("alice", "alice-pass").await;
    let stored = app
        .auth
        .store()
        .user_by_id(user.id)
        .await
        .unwrap()
        .unwrap()
        .password;
    assert!(
        stored.starts_with("$argon2id$v=19$m=64,t=1,p=1$"),
        "{stored}"
    );
    app.login("alice", "alice-pass").await;
    app.stop().await;
}

/// `/healthz` answers while the process runs; `/readyz` while the database does.
async fn health_and_readiness(backend: Backend) {
    let app = TestApp::spawn(backend, "").await;
    let health = app.get("/healthz", None).await;
    assert_eq!(
        (health.status, health.body.as_str()),
        (200, r#"{"status":"ok"}"#)
    );
    let ready = app.get("/readyz", None).await;
    assert_eq!(
        (ready.status, ready.body.as_str()),
        (200, r#"{"status":"ready"}"#)
    );
    app.stop().await;
}

/// Bodies over `MAX_BODY_BYTES` and tokens over `MAX_TOKEN_BYTES` are
/// refused with a clear 4xx, never a 500.
async fn size_limits(backend: Backend) {
    let app = TestApp::spawn(backend, "max_body_bytes = 4096\nmax_token_bytes = 1024\n").await;
    let huge = json!({"username": "a".repeat(5000), "password": "x"});
    let reply = app.post("/api/token/", huge).await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (
            413,
            r#"{"detail":"Request body is larger than the limit of 4096 bytes."}"#
        )
    );
    let token = format!("eyJhbGciOiJIUzI1NiJ9.{}.sig", "A".repeat(2000));
    let reply = app
        .post("/api/token/verify/", json!({"token": token}))
        .await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (
            401,
            r#"{"detail":"Token is invalid","code":"token_not_valid"}"#
        )
    );
    app.stop().await;
}

/// Every response of a DRF view carries DRF's `Allow` and `Vary: Accept`,
/// refusals from the authentication extractor and the 405 of a method the
/// view lacks included, and every 401 of the API names the first of
/// `AUTH_HEADER_TYPES` in `WWW-Authenticate`. The replay covers the token
/// and `me` views; these are the rest.
async fn views_finish_every_response(backend: Backend) {
    let app = TestApp::spawn(backend, "auth_header_types = [\"JWT\", \"Bearer\"]\n").await;
    app.user("alice", "alice-pass", true, false).await;
    let (_, access) = app.login("alice", "alice-pass").await;
    let views = [
        ("POST", "/api/token/logout/", "POST, OPTIONS"),
        ("POST", "/api/token/logout-all/", "POST, OPTIONS"),
        ("GET", "/api/sessions/", "GET, HEAD, OPTIONS"),
        ("DELETE", "/api/sessions/abc/", "DELETE, OPTIONS"),
        ("POST", "/api/users/me/password/", "POST, OPTIONS"),
        (
            "GET",
            "/api/admin/users/1/sessions/",
            "GET, DELETE, HEAD, OPTIONS",
        ),
        ("POST", "/api/admin/users/1/deactivate/", "POST, OPTIONS"),
        ("DELETE", "/api/admin/users/1/", "DELETE, OPTIONS"),
    ];
    for (method, path, allow) in views {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let anonymous = Reply::read(
            app.client
                .request(method, app.url(path))
                .json(&json!({}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(anonymous.status, 401, "{path}: {}", anonymous.body);
        assert_eq!(anonymous.header("allow"), Some(allow), "{path}");
        assert_eq!(anonymous.header("vary"), Some("Accept"), "{path}");
        assert_eq!(
            anonymous.header("www-authenticate"),
            Some("JWT realm=\"api\""),
            "{path}"
        );
        let put = app
            .client
            .put(app.url(path))
            .header("Authorization", format!("JWT {access}"))
            .send()
            .await
            .unwrap();
        let status = put.status().as_u16();
        let headers = put.headers().clone();
        assert_eq!(status, 405, "{path}");
        assert_eq!(headers["allow"], allow, "{path}");
        assert_eq!(headers["vary"], "Accept", "{path}");
        assert!(!headers.contains_key("www-authenticate"), "{path}");
    }
    let forward = app.get("/auth/verify", None).await;
    assert_eq!(forward.status, 401);
    assert_eq!(
        forward.header("www-authenticate"),
        Some("JWT realm=\"api\"")
    );
    assert_eq!(forward.header("allow"), None);
    assert_eq!(forward.header("vary"), None);
    let missing = app.get("/api/nothing/", None).await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.header("allow"), None);
    app.stop().await;
}

crate::both_backends!(
    concurrent_rotation_has_one_winner,
    paths_without_trailing_slash,
    views_finish_every_response,
    last_login,
    outdated_hash_is_upgraded,
    health_and_readiness,
    size_limits,
);
