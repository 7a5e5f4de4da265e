//! Login throttling (issue 6): per username and per client address, in the
//! database, with DRF's 429 answer; a lock never tells whether the username
//! exists; `portcullis user unlock` lifts it.

use std::sync::Arc;
use std::time::Duration;

use portcullis_token::{Clock as _, ManualClock, SystemClock};
use serde_json::json;

use crate::cli::portcullis;
use crate::helpers::{Backend, Reply, TestApp, run};

const PAIR: &str = "/api/token/";
const SLIDING: &str = "/api/token/sliding/";
const NO_ACCOUNT: &str = r#"{"detail":"No active account found with the given credentials"}"#;

fn throttled_body(seconds: u64) -> String {
    let unit = if seconds == 1 { "second" } else { "seconds" };
    format!(r#"{{"detail":"Request was throttled. Expected available in {seconds} {unit}."}}"#)
}

fn assert_throttled(reply: &Reply, seconds: u64) {
    assert_eq!(reply.status, 429, "{}", reply.body);
    assert_eq!(
        reply.header("retry-after"),
        Some(seconds.to_string().as_str())
    );
    assert_eq!(reply.body, throttled_body(seconds));
}

fn assert_refused(reply: &Reply) {
    assert_eq!(reply.status, 401, "{}", reply.body);
    assert_eq!(reply.body, NO_ACCOUNT);
}

/// Without delays: three failures lock a username for `LOGIN_LOCKOUT`,
/// existing or not, on both login endpoints, even for the right password.
async fn lock_after_limit(backend: Backend) {
    let app = TestApp::spawn(
        backend,
        "login_failure_limit = 3\nlogin_backoff_after = 3\nlogin_lockout = \"15m\"\n",
    )
    .await;
    app.user("alice", "right", true, false).await;
    app.user("bob", "right", true, false).await;
    for username in ["alice", "nobody"] {
        for _ in 0..3 {
            assert_refused(&app.try_login(PAIR, username, "wrong", &[]).await);
        }
        // The lock is the same for an account and for no account.
        assert_throttled(&app.try_login(PAIR, username, "right", &[]).await, 900);
        assert_throttled(&app.try_login(SLIDING, username, "right", &[]).await, 900);
    }
    // Other usernames are untouched.
    assert_eq!(app.try_login(PAIR, "bob", "right", &[]).await.status, 200);

    let out = run(portcullis(&app.db, &["user", "unlock", "alice"]), "").await;
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "alice is unlocked.\n"),
        "{}",
        out.stderr
    );
    assert_eq!(app.try_login(PAIR, "alice", "right", &[]).await.status, 200);
    let out = run(portcullis(&app.db, &["user", "unlock", "nobody"]), "").await;
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "nobody is unlocked.\n"),
        "{}",
        out.stderr
    );
    let out = run(portcullis(&app.db, &["user", "unlock", "nobody"]), "").await;
    assert_eq!(out.stdout, "nobody had no failed logins to clear.\n");
    assert_refused(&app.try_login(PAIR, "nobody", "wrong", &[]).await);
}

/// After `LOGIN_BACKOFF_AFTER` failures each one delays the next attempt,
/// twice as long each time.
async fn delays_grow(backend: Backend) {
    let clock = Arc::new(ManualClock::starting_now());
    let app = TestApp::spawn_on(
        backend,
        "login_failure_limit = 10\nlogin_backoff_after = 2\n",
        &clock,
    )
    .await;
    app.user("alice", "right", true, false).await;
    assert_refused(&app.try_login(PAIR, "alice", "wrong", &[]).await);
    assert_refused(&app.try_login(PAIR, "alice", "wrong", &[]).await);
    assert_refused(&app.try_login(PAIR, "alice", "wrong", &[]).await);
    assert_throttled(&app.try_login(PAIR, "alice", "right", &[]).await, 2);
    move_past_the_delay(&app, &clock, "alice").await;
    assert_refused(&app.try_login(PAIR, "alice", "wrong", &[]).await);
    assert_throttled(&app.try_login(PAIR, "alice", "right", &[]).await, 4);
    move_past_the_delay(&app, &clock, "alice").await;
    // A success clears the username's count: the delays start over.
    assert_eq!(app.try_login(PAIR, "alice", "right", &[]).await.status, 200);
    assert_refused(&app.try_login(PAIR, "alice", "wrong", &[]).await);
    assert_refused(&app.try_login(PAIR, "alice", "wrong", &[]).await);
    assert_eq!(app.try_login(PAIR, "alice", "right", &[]).await.status, 200);
}

/// Move the server's clock to the end of the username's delay.
async fn move_past_the_delay(app: &TestApp, clock: &ManualClock, username: &str) {
    let key = portcullis_core::throttle_key_for_username(username);
    let until = app
        .auth
        .throttle_store()
        .login_blocked_until(&key)
        .await
        .unwrap();
    let left = until.saturating_sub(clock.now_millis());
    assert!(left > 0, "not blocked");
    clock.advance(Duration::from_millis(left.unsigned_abs()));
}

/// Per client address: `X-Forwarded-For` counts only from a trusted proxy.
async fn per_address(backend: Backend) {
    let settings = "login_failure_limit = 0\nlogin_address_failure_limit = 3\n";
    let behind_proxy = TestApp::spawn(
        backend,
        &format!("{settings}trusted_proxies = [\"127.0.0.1/32\"]\n"),
    )
    .await;
    let from = |ip: &'static str| [("X-Forwarded-For", ip)];
    for username in ["a", "b", "c"] {
        let reply = behind_proxy
            .try_login(PAIR, username, "x", &from("203.0.113.1"))
            .await;
        assert_refused(&reply);
    }
    let reply = behind_proxy
        .try_login(PAIR, "d", "x", &from("203.0.113.1"))
        .await;
    assert_throttled(&reply, 900);
    // Another client behind the same proxy is not affected; a client that
    // writes its own header in front of the proxy's gains nothing.
    assert_refused(
        &behind_proxy
            .try_login(PAIR, "d", "x", &from("203.0.113.2"))
            .await,
    );
    let forged = [("X-Forwarded-For", "198.51.100.7, 203.0.113.1")];
    assert_throttled(&behind_proxy.try_login(PAIR, "e", "x", &forged).await, 900);

    // Without TRUSTED_PROXIES the header is ignored: the peer is counted.
    let direct = TestApp::spawn(backend, settings).await;
    for ip in ["203.0.113.1", "203.0.113.2", "203.0.113.3"] {
        assert_refused(&direct.try_login(PAIR, "a", "x", &from(ip)).await);
    }
    assert_throttled(
        &direct.try_login(PAIR, "a", "x", &from("203.0.113.4")).await,
        900,
    );
}

/// The counters are in the database: failures on one node lock the
/// username on another.
async fn shared_between_nodes(backend: Backend) {
    let settings = "login_failure_limit = 2\nlogin_backoff_after = 2\n";
    let one = TestApp::spawn(backend, settings).await;
    let two = one.another_node(settings).await;
    one.user("alice", "right", true, false).await;
    assert_refused(&one.try_login(PAIR, "alice", "wrong", &[]).await);
    assert_refused(&two.try_login(PAIR, "alice", "wrong", &[]).await);
    assert_throttled(&one.try_login(PAIR, "alice", "right", &[]).await, 900);
    assert_throttled(&two.try_login(PAIR, "alice", "right", &[]).await, 900);
    two.stop().await;
}

/// The password-change endpoint's old-password check is throttled as a
/// login: a stolen access token cannot guess the password without limit.
async fn password_change_throttled(backend: Backend) {
    let app = TestApp::spawn(
        backend,
        "login_failure_limit = 2\nlogin_backoff_after = 2\n",
    )
    .await;
    app.user("alice", "right", true, false).await;
    let (_, access) = app.login("alice", "right").await;
    let body = json!({"old_password": "wrong", "new_password": "N3w-passw0rd!"});
    for _ in 0..2 {
        let reply = app
            .post_bearer("/api/users/me/password/", &access, body.clone())
            .await;
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (400, r#"{"old_password":["Wrong password."]}"#)
        );
    }
    let reply = app
        .post_bearer("/api/users/me/password/", &access, body)
        .await;
    assert_throttled(&reply, 900);
    assert_throttled(&app.try_login(PAIR, "alice", "right", &[]).await, 900);
}

/// The store's counting step on each backend: the window restarts the
/// count, a block never shrinks, clearing forgets.
async fn store_counts_in_windows(backend: Backend) {
    let app = TestApp::spawn(backend, "").await;
    let store = app.auth.throttle_store();
    let key = "u:test";
    let at = |failures, window_start, blocked_until| portcullis_core::LoginFailures {
        failures,
        window_start,
        blocked_until,
    };
    assert_eq!(store.login_blocked_until(key).await.unwrap(), 0);
    assert_eq!(
        store.record_login_failure(key, 1_000, 0).await.unwrap(),
        at(1, 1_000, 0)
    );
    assert_eq!(
        store.record_login_failure(key, 2_000, 500).await.unwrap(),
        at(2, 1_000, 0)
    );
    store.block_login(key, 9_000).await.unwrap();
    store.block_login(key, 5_000).await.unwrap();
    assert_eq!(store.login_blocked_until(key).await.unwrap(), 9_000);
    // The window that started at 1 000 is over once window_expired reaches it.
    assert_eq!(
        store.record_login_failure(key, 7_000, 1_000).await.unwrap(),
        at(1, 7_000, 9_000)
    );
    assert!(store.clear_login_failures(key).await.unwrap());
    assert!(!store.clear_login_failures(key).await.unwrap());
    assert_eq!(store.login_blocked_until(key).await.unwrap(), 0);
}

/// Throttle rows whose window is over and that block nothing are removed
/// by the pruning task (`PRUNE_INTERVAL`), or by
/// `portcullis tokens flush-expired` when the task is off; a row that
/// still blocks is kept.
async fn expired_rows_are_pruned(backend: Backend) {
    for interval in [1, 0] {
        // Ten seconds behind the wall clock: the rows are stamped in the
        // past, so `tokens flush-expired` (a process on the wall clock)
        // finds the counts expired and the lock not.
        let clock = Arc::new(ManualClock::at_millis(
            SystemClock.now_millis().saturating_sub(10_000),
        ));
        let app = TestApp::spawn_on(
            backend,
            &format!("login_failure_window = 1\nlogin_lockout = 60\nlogin_failure_limit = 2\nprune_interval = {interval}\n"),
            &clock,
        )
        .await;
        app.user("alice", "alice-pass", true, false).await;
        let bad = json!({"username": "alice", "password": "wrong"});
        assert_eq!(app.post("/api/token/", bad.clone()).await.status, 401);
        // The username key and the address key.
        assert_eq!(app.db.count_rows("login_failures").await, 2);
        // bob reaches the limit and is locked for a minute: his row stays.
        for _ in 0..2 {
            let reply = app
                .post("/api/token/", json!({"username": "bob", "password": "x"}))
                .await;
            assert_eq!(reply.status, 401, "{}", reply.body);
        }
        assert_eq!(app.db.count_rows("login_failures").await, 3);
        clock.advance(Duration::from_millis(2_100));
        if interval == 0 {
            assert_eq!(app.db.count_rows("login_failures").await, 3);
            let mut flush = portcullis(&app.db, &["tokens", "flush-expired"]);
            flush.env("PORTCULLIS_LOGIN_FAILURE_WINDOW", "1");
            let out = run(flush, "").await;
            assert_eq!(out.code, 0, "{}", out.stderr);
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        // alice's username row and the address row go; bob's lock stays.
        while app.db.count_rows("login_failures").await != 1 {
            assert!(
                std::time::Instant::now() < deadline,
                "expired throttle rows were not pruned"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let reply = app
            .post("/api/token/", json!({"username": "bob", "password": "x"}))
            .await;
        assert_eq!(reply.status, 429, "{}", reply.body);
        app.stop().await;
    }
}

crate::both_backends!(
    store_counts_in_windows,
    expired_rows_are_pruned,
    lock_after_limit,
    delays_grow,
    per_address,
    shared_between_nodes,
    password_change_throttled
);

/// A bad `TRUSTED_PROXIES` entry stops the server with the setting named.
#[tokio::test]
async fn bad_trusted_proxies_are_refused_at_start() {
    let err = portcullis::config::Settings::from_toml("trusted_proxies = [\"10.0.0.0/33\"]\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("trusted_proxies"), "{err}");
    assert!(
        err.contains("\"10.0.0.0/33\": the prefix length must be 0 to 32"),
        "{err}"
    );
}
