//! Behaviour beyond the recorded replay: atomic rotation under
//! concurrency, path variants, last-login, password-hash upgrades,
//! health probes and request limits — each on both backends.

use portcullis_core::{HashParams, PasswordHasher};
use serde_json::json;

use crate::helpers::{Backend, TestApp};

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

crate::both_backends!(
    concurrent_rotation_has_one_winner,
    paths_without_trailing_slash,
    last_login,
    outdated_hash_is_upgraded,
    health_and_readiness,
    size_limits,
);
