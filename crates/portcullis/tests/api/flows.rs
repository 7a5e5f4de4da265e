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
        let after = app
            .auth
            .user_store()
            .user_by_id(user.id)
            .await
            .unwrap()
            .unwrap();
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
    app.auth
        .user_store()
        .set_password(user.id, &old)
        .await
        .unwrap();
    app.login("alice", "alice-pass").await;
    let stored = app
        .auth
        .user_store()
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

/// Refreshing the token of an account that changed answers what
/// simplejwt answers, though portcullis ended the account's sessions (and
/// so blacklisted the token) when it changed: a deactivated or deleted
/// account is "No active account found for the given token." (no `code`),
/// a changed password under `CHECK_REVOKE_TOKEN` is "The user's password
/// has been changed."; only an account that is fine again hears
/// "Token is blacklisted". With and without rotation and sessions, for
/// refresh and sliding tokens, the account changed by staff through the
/// API (`admin.rs` and `user_cache.rs` make the change from another
/// process).
async fn refresh_names_the_account_before_the_blacklist(backend: Backend) {
    const NO_ACCOUNT: &str = r#"{"detail":"No active account found for the given token."}"#;
    const CHANGED: &str = r#"{"detail":"The user's password has been changed."}"#;
    const BLACKLISTED: &str = r#"{"detail":"Token is blacklisted","code":"token_not_valid"}"#;
    for settings in [
        "",
        "rotate_refresh_tokens = true\n",
        "rotate_refresh_tokens = true\nblacklist_after_rotation = true\nrefresh_reuse_detection = false\n",
    ] {
        let app = TestApp::spawn(backend, settings).await;
        let alice = app.user("alice", "alice-pass", true, false).await;
        app.user("root", "root-pass", true, true).await;
        let (_, root) = app.login("root", "root-pass").await;
        let (refresh, _) = app.login("alice", "alice-pass").await;
        let sliding = app
            .post(
                "/api/token/sliding/",
                json!({"username": "alice", "password": "alice-pass"}),
            )
            .await
            .json["token"]
            .as_str()
            .unwrap()
            .to_owned();
        let path = format!("/api/admin/users/{}/", alice.id);
        let done = app
            .post_bearer(&format!("{path}deactivate/"), &root, json!({}))
            .await;
        assert_eq!(done.status, 204, "{}", done.body);
        assert_eq!(
            refreshed(&app, &refresh).await,
            (401, NO_ACCOUNT.to_owned()),
            "{settings}"
        );
        let slid = app
            .post("/api/token/sliding/refresh/", json!({"token": sliding}))
            .await;
        assert_eq!(
            (slid.status, slid.body.as_str()),
            (401, NO_ACCOUNT),
            "{settings}"
        );
        assert!(
            app.auth
                .user_store()
                .set_active(alice.id, true)
                .await
                .unwrap()
        );
        assert_eq!(
            refreshed(&app, &refresh).await,
            (401, BLACKLISTED.to_owned()),
            "{settings}"
        );

        let (refresh, _) = app.login("alice", "alice-pass").await;
        assert_eq!(app.delete_bearer(&path, &root).await.status, 204);
        assert_eq!(
            refreshed(&app, &refresh).await,
            (401, NO_ACCOUNT.to_owned()),
            "{settings}"
        );
        app.stop().await;
    }

    // CHECK_REVOKE_TOKEN: a password change (which ends every other
    // session) is named, on every try.
    let app = TestApp::spawn(backend, "check_revoke_token = true\n").await;
    app.user("alice", "alice-pass", true, false).await;
    let (old_refresh, _) = app.login("alice", "alice-pass").await;
    let (_, access) = app.login("alice", "alice-pass").await;
    let changed = app
        .post_bearer(
            "/api/users/me/password/",
            &access,
            json!({"old_password": "alice-pass", "new_password": "alice-new-pass"}),
        )
        .await;
    assert_eq!(changed.status, 200, "{}", changed.body);
    for _ in 0..2 {
        assert_eq!(
            refreshed(&app, &old_refresh).await,
            (401, CHANGED.to_owned())
        );
    }
    app.stop().await;
}

async fn refreshed(app: &TestApp, refresh: &str) -> (u16, String) {
    let reply = app
        .post("/api/token/refresh/", json!({"refresh": refresh}))
        .await;
    (reply.status, reply.body)
}

crate::both_backends!(
    refresh_names_the_account_before_the_blacklist,
    concurrent_rotation_has_one_winner,
    paths_without_trailing_slash,
    views_finish_every_response,
    last_login,
    outdated_hash_is_upgraded,
    health_and_readiness,
    size_limits,
);
