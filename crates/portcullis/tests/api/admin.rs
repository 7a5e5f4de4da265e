//! Staff endpoints (issue 4): see and end any user's sessions, deactivate
//! or delete a user through the API, and the CLI's `user delete` and
//! `set-password`; every way of disabling an account or resetting its
//! password ends its sessions (ASVS V7.4.2).

use serde_json::json;

use crate::cli::portcullis;
use crate::helpers::{Backend, TestApp, claims, run};
use crate::user_cache::next_me;

const BLACKLISTED: &str = r#"{"detail":"Token is blacklisted","code":"token_not_valid"}"#;
const ACCESS_REVOKED: &str = r#"{"detail":"Given token not valid for any token type","code":"token_not_valid","messages":[{"token_class":"AccessToken","token_type":"access","message":"Token is blacklisted"}]}"#;
const NOT_AUTHENTICATED: &str = r#"{"detail":"Authentication credentials were not provided."}"#;
const FORBIDDEN: &str = r#"{"detail":"You do not have permission to perform this action."}"#;
const NOT_FOUND: &str = r#"{"detail":"Not found."}"#;
const INACTIVE: &str = r#"{"detail":"User is inactive","code":"user_inactive"}"#;
const USER_NOT_FOUND: &str = r#"{"detail":"User not found","code":"user_not_found"}"#;
const NO_ACCOUNT: &str = r#"{"detail":"No active account found for the given token."}"#;

/// (method, path) of every staff endpoint for user `id`.
fn endpoints(id: &str) -> [(reqwest::Method, String); 4] {
    [
        (
            reqwest::Method::GET,
            format!("/api/admin/users/{id}/sessions/"),
        ),
        (
            reqwest::Method::DELETE,
            format!("/api/admin/users/{id}/sessions/"),
        ),
        (
            reqwest::Method::POST,
            format!("/api/admin/users/{id}/deactivate/"),
        ),
        (reqwest::Method::DELETE, format!("/api/admin/users/{id}/")),
    ]
}

/// (status, body) of a request with an optional bearer token.
async fn call(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    bearer: Option<&str>,
) -> (u16, String) {
    let mut request = app.client.request(method, app.url(path));
    if let Some(token) = bearer {
        request = request.header("Authorization", format!("Bearer {token}"));
    }
    let reply = crate::helpers::Reply::read(request.send().await.unwrap()).await;
    (reply.status, reply.body)
}

async fn me(app: &TestApp, access: &str) -> (u16, String) {
    let reply = app.get("/api/users/me/", Some(access)).await;
    (reply.status, reply.body)
}

async fn refresh(app: &TestApp, refresh: &str) -> (u16, String) {
    let reply = app
        .post("/api/token/refresh/", json!({"refresh": refresh}))
        .await;
    (reply.status, reply.body)
}

/// DRF's `IsAdminUser` order: anonymous 401, non-staff 403 (even for a
/// user that does not exist), then staff get 404 for an unknown user or a
/// non-numeric id. Nothing was ended by the refusals.
async fn staff_only(backend: Backend) {
    let app = TestApp::spawn(backend, "rotate_refresh_tokens = true\n").await;
    let alice = app.user("alice", "alice-pass", true, false).await;
    app.user("root", "root-pass", true, true).await;
    let (_, alice_access) = app.login("alice", "alice-pass").await;
    let (_, root_access) = app.login("root", "root-pass").await;
    let id = alice.id.to_string();
    for (method, path) in endpoints(&id) {
        assert_eq!(
            call(&app, method.clone(), &path, None).await,
            (401, NOT_AUTHENTICATED.to_owned()),
            "{method} {path}"
        );
        assert_eq!(
            call(&app, method.clone(), &path, Some(&alice_access)).await,
            (403, FORBIDDEN.to_owned()),
            "{method} {path}"
        );
    }
    for id in ["999999", "abc"] {
        for (method, path) in endpoints(id) {
            assert_eq!(
                call(&app, method.clone(), &path, Some(&root_access)).await,
                (404, NOT_FOUND.to_owned()),
                "{method} {path}"
            );
        }
    }
    assert_eq!(me(&app, &alice_access).await.0, 200);
    app.stop().await;
}

/// Staff list a user's live sessions (with client address) and end them
/// all: the user's access and refresh tokens stop working, others' do not.
async fn staff_list_and_end_sessions(backend: Backend) {
    let app = TestApp::spawn(backend, "rotate_refresh_tokens = true\n").await;
    let alice = app.user("alice", "alice-pass", true, false).await;
    app.user("root", "root-pass", true, true).await;
    let (alice_refresh, alice_access) = app.login("alice", "alice-pass").await;
    let (other_refresh, other_access) = app.login("alice", "alice-pass").await;
    let (_, root_access) = app.login("root", "root-pass").await;
    let path = format!("/api/admin/users/{}/sessions/", alice.id);
    let listed = app.get(&path, Some(&root_access)).await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    let mut ids: Vec<_> = listed
        .json
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            assert_eq!(s["ip_address"], "127.0.0.1");
            assert_eq!(s["current"], false);
            s["id"].as_str().unwrap().to_owned()
        })
        .collect();
    ids.sort();
    let mut expected = vec![
        claims(&alice_refresh)["sid"].as_str().unwrap().to_owned(),
        claims(&other_refresh)["sid"].as_str().unwrap().to_owned(),
    ];
    expected.sort();
    assert_eq!(ids, expected);
    let ended = app.delete_bearer(&path, &root_access).await;
    assert_eq!((ended.status, ended.body.as_str()), (204, ""));
    for access in [&alice_access, &other_access] {
        assert_eq!(me(&app, access).await, (401, ACCESS_REVOKED.to_owned()));
    }
    for token in [&alice_refresh, &other_refresh] {
        assert_eq!(refresh(&app, token).await, (401, BLACKLISTED.to_owned()));
    }
    let listed = app.get(&path, Some(&root_access)).await;
    assert_eq!((listed.status, listed.body.as_str()), (200, "[]"));
    assert_eq!(me(&app, &root_access).await.0, 200);
    // Ending them is logout-all on their behalf: a new login works.
    let (_, fresh) = app.login("alice", "alice-pass").await;
    assert_eq!(me(&app, &fresh).await.0, 200);
    app.stop().await;
}

/// `POST /api/admin/users/{id}/deactivate/` ends every session and
/// deactivates: the access token is refused at once and the refresh token
/// too (blacklisted), each with simplejwt's answer for an inactive user,
/// and the user cannot log in.
async fn staff_deactivate_ends_sessions(backend: Backend) {
    let app = TestApp::spawn(backend, "rotate_refresh_tokens = true\n").await;
    let alice = app.user("alice", "alice-pass", true, false).await;
    app.user("bob", "bob-pass", true, false).await;
    app.user("root", "root-pass", true, true).await;
    let (alice_refresh, alice_access) = app.login("alice", "alice-pass").await;
    let (_, bob_access) = app.login("bob", "bob-pass").await;
    let (_, root_access) = app.login("root", "root-pass").await;
    let done = app
        .post_bearer(
            &format!("/api/admin/users/{}/deactivate/", alice.id),
            &root_access,
            json!({}),
        )
        .await;
    assert_eq!((done.status, done.body.as_str()), (204, ""));
    assert_eq!(me(&app, &alice_access).await, (401, INACTIVE.to_owned()));
    assert_eq!(
        refresh(&app, &alice_refresh).await,
        (401, NO_ACCOUNT.to_owned())
    );
    // The answer names the account, though the token is blacklisted.
    assert!(
        app.auth
            .token_store()
            .is_blacklisted(claims(&alice_refresh)["jti"].as_str().unwrap())
            .await
            .unwrap()
    );
    let login = app
        .post(
            "/api/token/",
            json!({"username": "alice", "password": "alice-pass"}),
        )
        .await;
    assert_eq!(
        (login.status, login.body.as_str()),
        (
            401,
            r#"{"detail":"No active account found with the given credentials"}"#
        )
    );
    assert!(
        !app.auth
            .user_store()
            .user_by_id(alice.id)
            .await
            .unwrap()
            .unwrap()
            .is_active
    );
    assert_eq!(me(&app, &bob_access).await.0, 200);
    app.stop().await;
}

/// `DELETE /api/admin/users/{id}/` ends every session and deletes the
/// account (its tokens get simplejwt's answers for a deleted user); a
/// second delete is a 404.
async fn staff_delete_ends_sessions(backend: Backend) {
    let app = TestApp::spawn(backend, "rotate_refresh_tokens = true\n").await;
    let alice = app.user("alice", "alice-pass", true, false).await;
    app.user("root", "root-pass", true, true).await;
    let (alice_refresh, alice_access) = app.login("alice", "alice-pass").await;
    let (_, root_access) = app.login("root", "root-pass").await;
    let path = format!("/api/admin/users/{}/", alice.id);
    let deleted = app.delete_bearer(&path, &root_access).await;
    assert_eq!((deleted.status, deleted.body.as_str()), (204, ""));
    assert_eq!(
        me(&app, &alice_access).await,
        (401, USER_NOT_FOUND.to_owned())
    );
    assert_eq!(
        refresh(&app, &alice_refresh).await,
        (401, NO_ACCOUNT.to_owned())
    );
    assert!(
        app.auth
            .user_store()
            .user_by_id(alice.id)
            .await
            .unwrap()
            .is_none()
    );
    let again = app.delete_bearer(&path, &root_access).await;
    assert_eq!((again.status, again.body.as_str()), (404, NOT_FOUND));
    app.stop().await;
}

/// The CLI's `user delete` ends the sessions too: on the running server
/// (another process) the next request with the access token is refused,
/// and the refresh token, blacklisted, gets simplejwt's answer for a
/// deleted user. (`user deactivate` is `cli::deactivate_ends_sessions`.)
async fn cli_delete_ends_sessions(backend: Backend) {
    let app = TestApp::spawn(backend, "rotate_refresh_tokens = true\n").await;
    app.user("alice", "alice-pass", true, false).await;
    let (alice_refresh, alice_access) = app.login("alice", "alice-pass").await;
    assert_eq!(me(&app, &alice_access).await.0, 200);
    let out = run(portcullis(&app.db, &["user", "delete", "alice"]), "").await;
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "alice was deleted.\n"),
        "{}",
        out.stderr
    );
    let me = next_me(&app, backend, &alice_access).await;
    assert_eq!((me.status, me.body.as_str()), (401, USER_NOT_FOUND));
    assert_eq!(
        refresh(&app, &alice_refresh).await,
        (401, NO_ACCOUNT.to_owned())
    );
    app.stop().await;
}

/// `user set-password` ends every session of the account, as the
/// console's password form does: whoever knew the old password is out.
async fn cli_set_password_ends_sessions(backend: Backend) {
    let app = TestApp::spawn(backend, "rotate_refresh_tokens = true\n").await;
    app.user("alice", "alice-pass", true, false).await;
    let (alice_refresh, alice_access) = app.login("alice", "alice-pass").await;
    assert_eq!(me(&app, &alice_access).await.0, 200);
    let out = run(
        portcullis(
            &app.db,
            &["user", "set-password", "alice", "--password-stdin"],
        ),
        "alice-new-pass\n",
    )
    .await;
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "Password changed for alice.\n"),
        "{}",
        out.stderr
    );
    // The refresh token is checked against the database: refused at once.
    assert_eq!(
        refresh(&app, &alice_refresh).await,
        (401, BLACKLISTED.to_owned())
    );
    // The ended session reaches this server's access checks as any change
    // from another process does (PostgreSQL's NOTIFY, else the reload of
    // ended sessions once a second): wait for it, without timing it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let me = loop {
        let reply = me(&app, &alice_access).await;
        if reply.0 != 200 || std::time::Instant::now() > deadline {
            break reply;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(me, (401, ACCESS_REVOKED.to_owned()));
    app.login("alice", "alice-new-pass").await;
    app.stop().await;
}

crate::both_backends!(
    staff_only,
    staff_list_and_end_sessions,
    staff_deactivate_ends_sessions,
    staff_delete_ends_sessions,
    cli_delete_ends_sessions,
    cli_set_password_ends_sessions,
);
