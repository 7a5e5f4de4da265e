//! The account cache behind every authenticated request (issue 7): a
//! write through this node is seen by the next request, and so is one by
//! another process (another node, the CLI): issue 15.

use std::time::{Duration, Instant};

use crate::cli::portcullis;
use crate::helpers::{Backend, Reply, TestApp, run};

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
    let store = app.auth.user_store();
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

/// Another process's change (the real `portcullis user …` commands on
/// the same database) is seen by the very next request, though the account
/// was cached by the one before: simplejwt reads the user on every request.
/// `CHECK_REVOKE_TOKEN` sees a password set elsewhere the same way.
async fn changes_elsewhere_are_seen_by_the_next_request(backend: Backend) {
    let app = TestApp::spawn(backend, "check_revoke_token = true\n").await;
    let user = app.user("alice", "alice-pass", true, false).await;
    let ok = format!(
        r#"{{"id":{},"username":"alice","email":"alice@example.com"}}"#,
        user.id
    );

    let (_, access) = app.login("alice", "alice-pass").await;
    me(&app, &access, 200, &ok).await;
    elsewhere(
        &app,
        &["user", "set-password", "alice", "--password-stdin"],
        "new-pass\n",
    )
    .await;
    let reply = next_me(&app, backend, &access).await;
    assert_eq!((reply.status, reply.body.as_str()), (401, REVOKED));

    let (_, access) = app.login("alice", "new-pass").await;
    me(&app, &access, 200, &ok).await;
    elsewhere(&app, &["user", "deactivate", "alice"], "").await;
    let reply = next_me(&app, backend, &access).await;
    assert_eq!((reply.status, reply.body.as_str()), (401, INACTIVE));

    elsewhere(&app, &["user", "activate", "alice"], "").await;
    let (_, access) = app.login("alice", "new-pass").await;
    me(&app, &access, 200, &ok).await;
    elsewhere(&app, &["user", "delete", "alice"], "").await;
    let reply = next_me(&app, backend, &access).await;
    assert_eq!((reply.status, reply.body.as_str()), (401, NOT_FOUND));
    app.stop().await;
}

/// Run a `portcullis` command on the app's database (another process).
async fn elsewhere(app: &TestApp, args: &[&str], stdin: &str) {
    let out = run(portcullis(&app.db, args), stdin).await;
    assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
}

/// `GET /api/users/me/` right after another process changed the account.
///
/// On SQLite this is exactly the next request: the server asks the
/// database whether anything was committed before it answers from its
/// cache. On PostgreSQL the change reaches the server as the notification
/// the writer's commit sends, a few milliseconds after the command
/// returned; the request may come first, so on PostgreSQL only this polls,
/// for at most one second (a tenth of the cache's own expiry, which
/// therefore cannot be what ends the wait).
pub(crate) async fn next_me(app: &TestApp, backend: Backend, access: &str) -> Reply {
    let started = Instant::now();
    loop {
        let reply = app.get("/api/users/me/", Some(access)).await;
        if backend == Backend::Sqlite
            || reply.status != 200
            || started.elapsed() > Duration::from_secs(1)
        {
            return reply;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn me(app: &TestApp, access: &str, status: u16, body: &str) {
    let reply = app.get("/api/users/me/", Some(access)).await;
    assert_eq!((reply.status, reply.body.as_str()), (status, body));
}

crate::both_backends!(
    writes_here_are_seen_at_once,
    changes_elsewhere_are_seen_by_the_next_request
);
