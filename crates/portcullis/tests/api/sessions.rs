//! Sessions (issue 4): refresh-token families with reuse detection, on
//! both backends.

use std::sync::Arc;
use std::time::Duration;

use portcullis_token::{Clock as _, ManualClock, SystemClock};
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, claims};

const BLACKLISTED: &str = r#"{"detail":"Token is blacklisted","code":"token_not_valid"}"#;

/// A revoked access token on an authenticated endpoint: simplejwt's shape
/// for a blacklisted token there.
const ACCESS_REVOKED: &str = r#"{"detail":"Given token not valid for any token type","code":"token_not_valid","messages":[{"token_class":"AccessToken","token_type":"access","message":"Token is blacklisted"}]}"#;

/// `GET /api/users/me/` with this access token: (status, body).
async fn me(app: &TestApp, access: &str) -> (u16, String) {
    let reply = app.get("/api/users/me/", Some(access)).await;
    (reply.status, reply.body)
}

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

/// Many sessions rotating at once, as under load: on SQLite, every write
/// waits its turn for the one writer connection, so none fails with
/// `database is locked` (a 500) and none waits in SQLite's busy handler.
/// Rotation with blacklist and no grace, over three rounds: 16 sessions
/// present their current token once each round (every one wins), and in
/// the first round 8 more present theirs twice at once: exactly one of
/// the two wins, the other is reuse and ends the session, so the winner's
/// successor is refused too.
async fn many_sessions_rotate_at_once(backend: Backend) {
    const SINGLE: usize = 16;
    const DOUBLE: usize = 8;
    let app = TestApp::spawn(
        backend,
        "rotate_refresh_tokens = true\nblacklist_after_rotation = true\nrefresh_reuse_grace = 0\n",
    )
    .await;
    app.user("alice", "alice-pass", true, false).await;
    let mut tokens = Vec::new();
    for _ in 0..SINGLE + DOUBLE {
        tokens.push(app.login("alice", "alice-pass").await.0);
    }
    for round in 0..3 {
        let sessions = if round == 0 { SINGLE + DOUBLE } else { SINGLE };
        let mut tasks = tokio::task::JoinSet::new();
        for (session, token) in tokens.iter().enumerate().take(sessions) {
            let times = if session < SINGLE { 1 } else { 2 };
            for _ in 0..times {
                let client = reqwest::Client::new();
                let url = app.url("/api/token/refresh/");
                let body = json!({"refresh": token});
                tasks.spawn(async move {
                    let response = client.post(url).json(&body).send().await.unwrap();
                    let status = response.status().as_u16();
                    (session, status, response.text().await.unwrap())
                });
            }
        }
        let mut replies = vec![Vec::new(); sessions];
        while let Some(result) = tasks.join_next().await {
            let (session, status, body) = result.unwrap();
            replies[session].push((status, body));
        }
        for (session, mut answers) in replies.into_iter().enumerate() {
            answers.sort();
            let winner = &answers[0];
            assert_eq!(
                winner.0, 200,
                "round {round}, session {session}: {answers:?}"
            );
            let reply: Value = serde_json::from_str(&winner.1).unwrap();
            let successor = reply["refresh"].as_str().unwrap().to_owned();
            assert_eq!(claims(&successor)["sid"], claims(&tokens[session])["sid"]);
            if session < SINGLE {
                assert_eq!(answers.len(), 1);
                tokens[session] = successor;
            } else {
                assert_eq!(
                    answers[1],
                    (401, BLACKLISTED.to_owned()),
                    "session {session}: exactly one of two may win"
                );
                let after = app
                    .post("/api/token/refresh/", json!({"refresh": successor}))
                    .await;
                assert_eq!((after.status, after.body.as_str()), (401, BLACKLISTED));
            }
        }
    }
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
    let clock = Arc::new(ManualClock::starting_now());
    let app = TestApp::spawn_on(
        backend,
        "rotate_refresh_tokens = true\nrefresh_reuse_grace = 1\n",
        &clock,
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
    assert_eq!(me(&app, &access).await.0, 200);
    // Within the window the same successor comes back.
    let again = app
        .post("/api/token/refresh/", json!({"refresh": refresh}))
        .await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.json["refresh"].as_str(), Some(successor.as_str()));
    // Past the window (1 s, counted in whole seconds) the reuse is one.
    clock.advance(Duration::from_secs(2));
    let reuse = app
        .post("/api/token/refresh/", json!({"refresh": refresh}))
        .await;
    assert_eq!((reuse.status, reuse.body.as_str()), (401, BLACKLISTED));
    let next = app
        .post("/api/token/refresh/", json!({"refresh": successor}))
        .await;
    assert_eq!((next.status, next.body.as_str()), (401, BLACKLISTED));
    assert_eq!(me(&app, &access).await, (401, ACCESS_REVOKED.to_owned()));
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

/// `POST /api/token/logout/` ends the caller's session: its access token
/// at once, its refresh token; another session of the user lives on.
async fn logout_ends_one_session(backend: Backend) {
    let app = TestApp::spawn(backend, "rotate_refresh_tokens = true\n").await;
    app.user("alice", "alice-pass", true, false).await;
    let (refresh, access) = app.login("alice", "alice-pass").await;
    let (other_refresh, other_access) = app.login("alice", "alice-pass").await;
    let anonymous = app.post("/api/token/logout/", json!({})).await;
    assert_eq!(
        (anonymous.status, anonymous.body.as_str()),
        (
            401,
            r#"{"detail":"Authentication credentials were not provided."}"#
        )
    );
    let out = app
        .post_bearer("/api/token/logout/", &access, json!({}))
        .await;
    assert_eq!((out.status, out.body.as_str()), (200, "{}"));
    assert_eq!(me(&app, &access).await, (401, ACCESS_REVOKED.to_owned()));
    let again = app
        .post("/api/token/refresh/", json!({"refresh": refresh}))
        .await;
    assert_eq!((again.status, again.body.as_str()), (401, BLACKLISTED));
    assert_eq!(me(&app, &other_access).await.0, 200);
    let other = app
        .post("/api/token/refresh/", json!({"refresh": other_refresh}))
        .await;
    assert_eq!(other.status, 200, "{}", other.body);
    app.stop().await;
}

/// `POST /api/token/logout-all/` ends every session of the caller, and a
/// login afterwards works.
async fn logout_all_ends_every_session(backend: Backend) {
    let app = TestApp::spawn(backend, "rotate_refresh_tokens = true\n").await;
    app.user("alice", "alice-pass", true, false).await;
    app.user("bob", "bob-pass", true, false).await;
    let (refresh, access) = app.login("alice", "alice-pass").await;
    let (other_refresh, other_access) = app.login("alice", "alice-pass").await;
    let (_, bob_access) = app.login("bob", "bob-pass").await;
    let out = app
        .post_bearer("/api/token/logout-all/", &access, json!({}))
        .await;
    assert_eq!((out.status, out.body.as_str()), (200, "{}"));
    for access in [&access, &other_access] {
        assert_eq!(me(&app, access).await, (401, ACCESS_REVOKED.to_owned()));
    }
    for refresh in [&refresh, &other_refresh] {
        let reply = app
            .post("/api/token/refresh/", json!({"refresh": refresh}))
            .await;
        assert_eq!((reply.status, reply.body.as_str()), (401, BLACKLISTED));
    }
    assert_eq!(me(&app, &bob_access).await.0, 200);
    let (_, fresh) = app.login("alice", "alice-pass").await;
    assert_eq!(me(&app, &fresh).await.0, 200);
    app.stop().await;
}

/// With simplejwt's defaults tokens name no session: logout needs the
/// refresh token to end (400 without it), and logout-all still refuses
/// every access token issued before it.
async fn logout_without_sessions(backend: Backend) {
    let clock = Arc::new(ManualClock::starting_now());
    let app = TestApp::spawn_on(backend, "", &clock).await;
    app.user("alice", "alice-pass", true, false).await;
    let (refresh, access) = app.login("alice", "alice-pass").await;
    let bare = app
        .post_bearer("/api/token/logout/", &access, json!({}))
        .await;
    assert_eq!(
        (bare.status, bare.body.as_str()),
        (
            400,
            r#"{"detail":"This token belongs to no session: send the refresh token to end."}"#
        )
    );
    let out = app
        .post_bearer("/api/token/logout/", &access, json!({"refresh": refresh}))
        .await;
    assert_eq!((out.status, out.body.as_str()), (200, "{}"));
    let again = app
        .post("/api/token/refresh/", json!({"refresh": refresh}))
        .await;
    assert_eq!((again.status, again.body.as_str()), (401, BLACKLISTED));
    // Not-valid-before is whole seconds, and a token of the same second
    // lives on (it may be a login made just after): let that second pass.
    clock.advance(Duration::from_secs(1));
    let all = app
        .post_bearer("/api/token/logout-all/", &access, json!({}))
        .await;
    assert_eq!((all.status, all.body.as_str()), (200, "{}"));
    assert_eq!(me(&app, &access).await, (401, ACCESS_REVOKED.to_owned()));
    app.stop().await;
}

/// A revocation another node wrote to the database (here: the store
/// directly, bypassing this node's memory) is enforced within about a
/// second by the reload task.
async fn revocation_elsewhere_is_enforced(backend: Backend) {
    let app = TestApp::spawn(backend, "rotate_refresh_tokens = true\n").await;
    app.user("alice", "alice-pass", true, false).await;
    let (refresh, access) = app.login("alice", "alice-pass").await;
    assert_eq!(me(&app, &access).await.0, 200);
    let sid = claims(&refresh)["sid"].as_str().unwrap().to_owned();
    let revoked_at = std::time::Instant::now();
    app.auth
        .session_store()
        .revoke_session(&sid, crate::helpers::now())
        .await
        .unwrap();
    loop {
        let (status, body) = me(&app, &access).await;
        if status == 401 {
            assert_eq!(body, ACCESS_REVOKED);
            break;
        }
        assert!(
            revoked_at.elapsed() < Duration::from_secs(2),
            "still accepted after 2 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.stop().await;
}

/// With sessions, simplejwt's blacklist endpoint is a logout: the
/// session's access token stops working too.
async fn blacklist_ends_session(backend: Backend) {
    let app = TestApp::spawn(backend, "rotate_refresh_tokens = true\n").await;
    app.user("alice", "alice-pass", true, false).await;
    let (refresh, access) = app.login("alice", "alice-pass").await;
    let out = app
        .post("/api/token/blacklist/", json!({"refresh": refresh}))
        .await;
    assert_eq!((out.status, out.body.as_str()), (200, "{}"));
    assert_eq!(me(&app, &access).await, (401, ACCESS_REVOKED.to_owned()));
    app.stop().await;
}

/// `GET /api/sessions/` lists the caller's live sessions, newest first;
/// `DELETE /api/sessions/{id}/` ends one of them (204), and another
/// user's or an ended one is a 404.
async fn list_and_end_sessions(backend: Backend) {
    let app = TestApp::spawn(backend, "rotate_refresh_tokens = true\n").await;
    app.user("alice", "alice-pass", true, false).await;
    app.user("bob", "bob-pass", true, false).await;
    let (first_refresh, first_access) = app.login("alice", "alice-pass").await;
    let (second_refresh, second_access) = app.login("alice", "alice-pass").await;
    let (bob_refresh, bob_access) = app.login("bob", "bob-pass").await;
    let first = claims(&first_refresh);
    let second = claims(&second_refresh);
    let listed = app.get("/api/sessions/", Some(&second_access)).await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    let mut expected = vec![
        json!({"id": first["sid"], "created_at": first["iat"], "last_used_at": first["iat"],
               "expires_at": first["exp"], "ip_address": "127.0.0.1", "user_agent": null,
               "current": false}),
        json!({"id": second["sid"], "created_at": second["iat"], "last_used_at": second["iat"],
               "expires_at": second["exp"], "ip_address": "127.0.0.1", "user_agent": null,
               "current": true}),
    ];
    // Newest first; two logins of one second are ordered by id.
    if first["iat"] == second["iat"] {
        expected.sort_by_key(|s| s["id"].as_str().unwrap().to_owned());
    } else {
        expected.reverse();
    }
    assert_eq!(listed.json, Value::Array(expected));
    let bob_sid = claims(&bob_refresh)["sid"].as_str().unwrap().to_owned();
    let foreign = app
        .delete_bearer(&format!("/api/sessions/{bob_sid}/"), &first_access)
        .await;
    assert_eq!(
        (foreign.status, foreign.body.as_str()),
        (404, r#"{"detail":"Not found."}"#)
    );
    assert_eq!(me(&app, &bob_access).await.0, 200);
    let first_sid = first["sid"].as_str().unwrap();
    let ended = app
        .delete_bearer(&format!("/api/sessions/{first_sid}/"), &second_access)
        .await;
    assert_eq!((ended.status, ended.body.as_str()), (204, ""));
    assert_eq!(
        me(&app, &first_access).await,
        (401, ACCESS_REVOKED.to_owned())
    );
    let listed = app.get("/api/sessions/", Some(&second_access)).await;
    assert_eq!(listed.json.as_array().map(Vec::len), Some(1));
    assert_eq!(listed.json[0]["id"], second["sid"]);
    let again = app
        .delete_bearer(&format!("/api/sessions/{first_sid}/"), &second_access)
        .await;
    assert_eq!(again.status, 404);
    app.stop().await;
}

/// `POST /api/users/me/password/` checks the old password, sets the new
/// one and ends every other session (ASVS V7.4.3); the caller's lives on.
async fn password_change_ends_other_sessions(backend: Backend) {
    let app = TestApp::spawn(backend, "rotate_refresh_tokens = true\n").await;
    app.user("alice", "alice-pass", true, false).await;
    let (refresh, access) = app.login("alice", "alice-pass").await;
    let (other_refresh, other_access) = app.login("alice", "alice-pass").await;
    let wrong = app
        .post_bearer(
            "/api/users/me/password/",
            &access,
            json!({"old_password": "nope", "new_password": "new-pass"}),
        )
        .await;
    assert_eq!(
        (wrong.status, wrong.body.as_str()),
        (400, r#"{"old_password":["Wrong password."]}"#)
    );
    let missing = app
        .post_bearer("/api/users/me/password/", &access, json!({}))
        .await;
    assert_eq!(
        (missing.status, missing.body.as_str()),
        (
            400,
            r#"{"old_password":["This field is required."],"new_password":["This field is required."]}"#
        )
    );
    assert_eq!(me(&app, &other_access).await.0, 200);
    let changed = app
        .post_bearer(
            "/api/users/me/password/",
            &access,
            json!({"old_password": "alice-pass", "new_password": "new-pass"}),
        )
        .await;
    assert_eq!((changed.status, changed.body.as_str()), (200, "{}"));
    assert_eq!(me(&app, &access).await.0, 200);
    assert_eq!(
        me(&app, &other_access).await,
        (401, ACCESS_REVOKED.to_owned())
    );
    let other = app
        .post("/api/token/refresh/", json!({"refresh": other_refresh}))
        .await;
    assert_eq!((other.status, other.body.as_str()), (401, BLACKLISTED));
    let own = app
        .post("/api/token/refresh/", json!({"refresh": refresh}))
        .await;
    assert_eq!(own.status, 200, "{}", own.body);
    let old = app
        .post(
            "/api/token/",
            json!({"username": "alice", "password": "alice-pass"}),
        )
        .await;
    assert_eq!(old.status, 401);
    app.login("alice", "new-pass").await;
    app.stop().await;
}

/// A session records the client address (the TCP peer) and user agent of
/// its login, and of each refresh as its last use; a user agent longer than
/// 512 characters is cut.
async fn sessions_show_the_client(backend: Backend) {
    let app = TestApp::spawn(backend, "rotate_refresh_tokens = true\n").await;
    app.user("alice", "alice-pass", true, false).await;
    let login = app
        .client
        .post(app.url("/api/token/"))
        .header("User-Agent", "agent-one/1.0")
        .json(&json!({"username": "alice", "password": "alice-pass"}))
        .send()
        .await
        .unwrap();
    let login = crate::helpers::Reply::read(login).await;
    assert_eq!(login.status, 200, "{}", login.body);
    let refresh = login.json["refresh"].as_str().unwrap();
    let access = login.json["access"].as_str().unwrap();
    let listed = app.get("/api/sessions/", Some(access)).await;
    let session = claims(refresh);
    assert_eq!(
        listed.json,
        json!([{"id": session["sid"], "created_at": session["iat"],
                "last_used_at": session["iat"], "expires_at": session["exp"],
                "ip_address": "127.0.0.1", "user_agent": "agent-one/1.0", "current": true}])
    );
    let long = "x".repeat(600);
    let refreshed = app
        .client
        .post(app.url("/api/token/refresh/"))
        .header("User-Agent", &long)
        .json(&json!({"refresh": refresh}))
        .send()
        .await
        .unwrap();
    let refreshed = crate::helpers::Reply::read(refreshed).await;
    assert_eq!(refreshed.status, 200, "{}", refreshed.body);
    let listed = app.get("/api/sessions/", Some(access)).await;
    let listed = &listed.json[0];
    assert_eq!(listed["user_agent"], "x".repeat(512));
    assert_eq!(listed["ip_address"], "127.0.0.1");
    assert_eq!(listed["created_at"], session["iat"]);
    let last_used = listed["last_used_at"].as_i64().unwrap();
    assert!(last_used >= session["iat"].as_i64().unwrap());
    assert!(last_used <= crate::helpers::now());
    app.stop().await;
}

/// `PRUNE_INTERVAL` makes the server delete expired token and session
/// records by itself; afterwards `portcullis tokens flush-expired` finds
/// nothing left. With `PRUNE_INTERVAL=0` the records stay until the CLI
/// removes them.
async fn pruning_task_removes_expired(backend: Backend) {
    // (PRUNE_INTERVAL, what the CLI then finds to remove)
    for (interval, left) in [(1, 0), (0, 1)] {
        let pruned = left == 0;
        // Ten seconds behind the wall clock: `tokens flush-expired` (a
        // process on the wall clock) finds the token expired.
        let clock = Arc::new(ManualClock::at_millis(
            SystemClock.now_millis().saturating_sub(10_000),
        ));
        let app = TestApp::spawn_on(
            backend,
            &format!(
                "rotate_refresh_tokens = true\nrefresh_token_lifetime = 1\nprune_interval = {interval}\n"
            ),
            &clock,
        )
        .await;
        app.user("alice", "alice-pass", true, false).await;
        let (refresh, _) = app.login("alice", "alice-pass").await;
        let exp = claims(&refresh)["exp"].as_i64().unwrap();
        assert_eq!(app.db.count_rows("outstanding_tokens").await, 1);
        assert_eq!(app.db.count_rows("sessions").await, 1);
        // Past its exp, the token must be gone at the next prune.
        clock.advance(Duration::from_secs(3));
        assert!(clock.now() > exp);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        if pruned {
            while app.db.count_rows("outstanding_tokens").await > 0
                || app.db.count_rows("sessions").await > 0
            {
                assert!(std::time::Instant::now() < deadline, "nothing was pruned");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        } else {
            // Longer than a prune interval of 1 s: nothing may run.
            tokio::time::sleep(Duration::from_millis(1_500)).await;
            assert_eq!(app.db.count_rows("outstanding_tokens").await, 1);
            assert_eq!(app.db.count_rows("sessions").await, 1);
        }
        let out = crate::helpers::run(
            crate::cli::portcullis(&app.db, &["tokens", "flush-expired"]),
            "",
        )
        .await;
        assert_eq!(
            (out.code, out.stdout),
            (0, format!("Removed {left} expired token record(s).\n")),
            "{}",
            out.stderr
        );
        assert_eq!(app.db.count_rows("sessions").await, 0);
        app.stop().await;
    }
}

crate::both_backends!(
    sessions_show_the_client,
    pruning_task_removes_expired,
    password_change_ends_other_sessions,
    list_and_end_sessions,
    logout_ends_one_session,
    logout_all_ends_every_session,
    logout_without_sessions,
    blacklist_ends_session,
    revocation_elsewhere_is_enforced,
    no_grace_one_winner,
    many_sessions_rotate_at_once,
    grace_gives_one_successor,
    reuse_after_grace_ends_session,
    default_tokens_have_no_sid,
);
