//! The account cache behind every authenticated request (issue 7): a
//! write through this node is seen by the next request; a write by
//! another process (another node, the CLI) within about a second.

use std::time::{Duration, Instant};

use portcullis_store::SqlStore;

use crate::helpers::{Backend, TestApp};

const INACTIVE: &str = r#"{"detail":"User is inactive","code":"user_inactive"}"#;
const NOT_FOUND: &str = r#"{"detail":"User not found","code":"user_not_found"}"#;
const REVOKED: &str =
    r#"{"detail":"The user's password has been changed.","code":"password_changed"}"#;

/// Each write through the service's store is seen by the very next
/// request, though the account was cached by the one before.
async fn writes_here_are_seen_at_once(backend: Backend) {
    let app = TestApp::spawn(backend, "check_revoke_token = true\n").await;
    let user = app.user("alice", "alice-pass", true, false).await;
    let (_, access) = app.login("alice", "alice-pass").await;
    let store = app.auth.store();
    let ok = format!(
        r#"{{"id":{},"username":"alice","email":"alice@example.com"}}"#,
        user.id
    );

    me(&app, &access, 200, &ok).await;
    assert!(store.set_active(user.id, false).await.unwrap());
    me(&app, &access, 401, INACTIVE).await;
    assert!(store.set_active(user.id, true).await.unwrap());
    me(&app, &access, 200, &ok).await;
    // CHECK_REVOKE_TOKEN compares the token with the cached hash.
    let hash = app.auth.hasher().hash("new-pass".into()).await.unwrap();
    assert!(store.set_password(user.id, &hash).await.unwrap());
    me(&app, &access, 401, REVOKED).await;
    assert!(store.set_password(user.id, &user.password).await.unwrap());
    me(&app, &access, 200, &ok).await;
    assert!(store.delete_user(user.id).await.unwrap());
    me(&app, &access, 401, NOT_FOUND).await;
    app.stop().await;
}

/// Another process's write (here a second connection to the database, as
/// `portcullis user deactivate` or another node makes it) is seen within
/// about a second.
async fn writes_elsewhere_are_seen_within_a_second(backend: Backend) {
    let app = TestApp::spawn(backend, "").await;
    let user = app.user("bob", "bob-pass", true, false).await;
    let (_, access) = app.login("bob", "bob-pass").await;
    assert_eq!(app.get("/api/users/me/", Some(&access)).await.status, 200);
    let elsewhere = SqlStore::connect(&app.db.url).await.unwrap();
    assert!(
        portcullis_core::Store::set_active(&elsewhere, user.id, false)
            .await
            .unwrap()
    );
    let started = Instant::now();
    loop {
        let reply = app.get("/api/users/me/", Some(&access)).await;
        if reply.status == 401 {
            assert_eq!(reply.body, INACTIVE);
            break;
        }
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "still served 5 s after another process deactivated the account"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    elsewhere.close().await;
    app.stop().await;
}

async fn me(app: &TestApp, access: &str, status: u16, body: &str) {
    let reply = app.get("/api/users/me/", Some(access)).await;
    assert_eq!((reply.status, reply.body.as_str()), (status, body));
}

crate::both_backends!(
    writes_here_are_seen_at_once,
    writes_elsewhere_are_seen_within_a_second
);
