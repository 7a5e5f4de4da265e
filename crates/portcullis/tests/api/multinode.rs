//! Three real `portcullis serve` processes sharing one PostgreSQL
//! database (issue 4): a session ended on the first node is refused by
//! the third (PostgreSQL `LISTEN`/`NOTIFY`; the once-a-second reload is
//! only the fallback). How soon — the issue's target is within one
//! second — is measured by `bench/timing revocation`, not asserted here:
//! a timed assertion fails on a loaded machine.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{Backend, SIGNING_KEY, Served, TestDatabase, binary, run};

/// simplejwt's body for a blacklisted token on an authenticated endpoint.
const ACCESS_REVOKED: &str = r#"{"detail":"Given token not valid for any token type","code":"token_not_valid","messages":[{"token_class":"AccessToken","token_type":"access","message":"Token is blacklisted"}]}"#;

/// How long the third node may take before the test gives up: far above
/// the issue's one second, so only a change that never arrives fails.
const GIVE_UP: Duration = Duration::from_secs(20);

fn node_command(db: &TestDatabase) -> tokio::process::Command {
    let mut command = binary();
    command
        .env("PORTCULLIS_DATABASE_URL", &db.url)
        .env("PORTCULLIS_SIGNING_KEY", SIGNING_KEY)
        .env("PORTCULLIS_ROTATE_REFRESH_TOKENS", "true")
        .env("PORTCULLIS_PASSWORD_HASH_MEMORY_KIB", "64")
        .env("PORTCULLIS_PASSWORD_HASH_ITERATIONS", "1");
    command
}

/// Three nodes on one fresh database, with the user alice.
async fn cluster() -> (TestDatabase, Vec<Served>) {
    let db = TestDatabase::new(Backend::Postgres).await;
    let mut create = node_command(&db);
    create.args(["user", "create", "alice", "--password-stdin"]);
    let out = run(create, "alice-pass\n").await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(Served::start(node_command(&db)).await.unwrap());
    }
    (db, nodes)
}

/// (status, body) of `GET /api/users/me/` on a node.
async fn me(client: &reqwest::Client, node: &Served, access: &str) -> (u16, String) {
    let response = client
        .get(node.url("/api/users/me/"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// POST `path` on `node` with the access token; then poll `other` every
/// 50 ms until it refuses `victim`.
async fn ended_elsewhere(nodes: &[Served], path: &str, caller: &str, victim: &str) {
    let client = reqwest::Client::new();
    let (first, third) = (&nodes[0], &nodes[2]);
    assert_eq!(me(&client, third, victim).await.0, 200);
    let response = client
        .post(first.url(path))
        .bearer_auth(caller)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let answered = Instant::now();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "{}");
    loop {
        let (status, body) = me(&client, third, victim).await;
        if status == 401 {
            assert_eq!(body, ACCESS_REVOKED);
            break;
        }
        assert_eq!(status, 200, "{body}");
        assert!(
            answered.elapsed() < GIVE_UP,
            "node 3 still accepted the token {:?} after {path} on node 1",
            answered.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn stop(nodes: Vec<Served>) {
    for node in nodes {
        let (code, log) = node.terminate().await;
        assert_eq!(code, 0, "{log}");
    }
}

/// logout-all on node 1: the access token fails on node 3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_all_reaches_every_node() {
    let (_db, nodes) = cluster().await;
    let pair: Value = nodes[0].login("alice", "alice-pass").await;
    let access = pair["access"].as_str().unwrap();
    ended_elsewhere(&nodes, "/api/token/logout-all/", access, access).await;
    stop(nodes).await;
}

/// Logging out one session on node 1 (the login was on node 2): its
/// access token fails on node 3; another session lives on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_reaches_every_node() {
    let (_db, nodes) = cluster().await;
    let pair: Value = nodes[1].login("alice", "alice-pass").await;
    let other: Value = nodes[1].login("alice", "alice-pass").await;
    let access = pair["access"].as_str().unwrap();
    ended_elsewhere(&nodes, "/api/token/logout/", access, access).await;
    let client = reqwest::Client::new();
    let other = other["access"].as_str().unwrap();
    assert_eq!(me(&client, &nodes[2], other).await.0, 200);
    stop(nodes).await;
}
