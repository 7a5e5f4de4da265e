//! Sessions (issue 4): refresh-token families with reuse detection, on
//! both backends.

use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, claims};

const BLACKLISTED: &str = r#"{"detail":"Token is blacklisted","code":"token_not_valid"}"#;

/// With `REFRESH_REUSE_GRACE=0`, 50 concurrent refreshes of one token give
/// exactly one success; the other 49 are reuse, which ends the session, so
/// the one successor is dead too.
async fn no_grace_one_winner(backend: Backend) {
    let app = TestApp::spawn(
        backend,
        "rotate_refresh_tokens = true\nrefresh_reuse_grace = 0\n",
    )
    .await;
    app.user("alice", "alice-pass", true, false).await;
    let (refresh, _) = app.login("alice", "alice-pass").await;
    let mut winners = Vec::new();
    for (status, body) in app.concurrent_refreshes(&refresh, 50).await {
        match status {
            200 => winners.push(body),
            401 => assert_eq!(body, BLACKLISTED),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one refresh may win: {winners:?}");
    let rotated: Value = serde_json::from_str(&winners[0]).unwrap();
    let next = app
        .post(
            "/api/token/refresh/",
            json!({"refresh": rotated["refresh"]}),
        )
        .await;
    assert_eq!((next.status, next.body.as_str()), (401, BLACKLISTED));
    app.stop().await;
}

/// With the default 10 s grace, 50 concurrent refreshes all succeed with
/// one and the same successor, which stays live; the session id travels
/// in `sid` through refresh and access tokens.
async fn grace_gives_one_successor(backend: Backend) {
    let app = TestApp::spawn(backend, "rotate_refresh_tokens = true\n").await;
    app.user("alice", "alice-pass", true, false).await;
    let (refresh, access) = app.login("alice", "alice-pass").await;
    let sid = claims(&refresh)["sid"].clone();
    assert_eq!(
        sid,
        claims(&refresh)["jti"],
        "a session is named by its first jti"
    );
    assert_eq!(claims(&access)["sid"], sid);
    let mut successors = Vec::new();
    for (status, body) in app.concurrent_refreshes(&refresh, 50).await {
        assert_eq!(status, 200, "{body}");
        let reply: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(claims(reply["access"].as_str().unwrap())["sid"], sid);
        successors.push(reply["refresh"].as_str().unwrap().to_owned());
    }
    successors.dedup();
    assert_eq!(successors.len(), 1, "one live successor: {successors:?}");
    let successor = &successors[0];
    assert_eq!(claims(successor)["sid"], sid);
    assert_ne!(claims(successor)["jti"], claims(&refresh)["jti"]);
    let next = app
        .post("/api/token/refresh/", json!({"refresh": successor}))
        .await;
    assert_eq!(next.status, 200, "the successor is live: {}", next.body);
    app.stop().await;
}

/// A rotated token presented after the grace window ends the session:
/// the reused token, the live successor and the session's access tokens.
async fn reuse_after_grace_ends_session(backend: Backend) {
    let app = TestApp::spawn(
        backend,
        "rotate_refresh_tokens = true\nrefresh_reuse_grace = 1\n",
    )
    .await;
    app.user("alice", "alice-pass", true, false).await;
    let (refresh, _) = app.login("alice", "alice-pass").await;
    let first = app
        .post("/api/token/refresh/", json!({"refresh": refresh}))
        .await;
    assert_eq!(first.status, 200, "{}", first.body);
    let successor = first.json["refresh"].as_str().unwrap().to_owned();
    let access = first.json["access"].as_str().unwrap().to_owned();
    // Within the window the same successor comes back; poll until the
    // window (1 s, counted in whole seconds) has passed.
    let reuse = loop {
        let again = app
            .post("/api/token/refresh/", json!({"refresh": refresh}))
            .await;
        if again.status != 200 {
            break again;
        }
        assert_eq!(again.json["refresh"].as_str(), Some(successor.as_str()));
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!((reuse.status, reuse.body.as_str()), (401, BLACKLISTED));
    let next = app
        .post("/api/token/refresh/", json!({"refresh": successor}))
        .await;
    assert_eq!((next.status, next.body.as_str()), (401, BLACKLISTED));
    let _ = access;
    app.stop().await;
}

/// With simplejwt's defaults (no rotation, so no reuse detection) tokens
/// stay simplejwt-shaped: no `sid`.
async fn default_tokens_have_no_sid(backend: Backend) {
    let app = TestApp::spawn(backend, "").await;
    app.user("alice", "alice-pass", true, false).await;
    let (refresh, access) = app.login("alice", "alice-pass").await;
    assert_eq!(claims(&refresh).get("sid"), None);
    assert_eq!(claims(&access).get("sid"), None);
    app.stop().await;
}

crate::both_backends!(
    no_grace_one_winner,
    grace_gives_one_successor,
    reuse_after_grace_ends_session,
    default_tokens_have_no_sid,
);
