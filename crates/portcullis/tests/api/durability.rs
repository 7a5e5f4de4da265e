//! Answered means committed: the real binary killed with SIGKILL while
//! refresh tokens rotate loses no rotation it answered. SQLite commits
//! rotations in groups (`portcullis-store/src/sqlite/rotation.rs`), so an
//! answer sent before its group reached the database would show here as
//! a rotated token that works again after the restart.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{Backend, Served, TestDatabase, binary, run, serve_in};

/// Sessions rotating at once, each a chain of refreshes one after another.
const CHAINS: usize = 16;

/// Rotations answered (over all chains, on average this many per chain)
/// before the kill.
const ROUNDS: usize = 8;

/// What simplejwt answers for a refresh token that was rotated away.
fn blacklisted() -> Value {
    json!({"detail": "Token is blacklisted", "code": "token_not_valid"})
}

fn server(dir: &std::path::Path, db: &TestDatabase) -> tokio::process::Command {
    let mut command = serve_in(dir);
    command
        .env("PORTCULLIS_DATABASE_URL", &db.url)
        .env("PORTCULLIS_ROTATE_REFRESH_TOKENS", "true")
        .env("PORTCULLIS_BLACKLIST_AFTER_ROTATION", "true")
        .env("PORTCULLIS_REFRESH_REUSE_GRACE", "0");
    command
}

async fn refresh(client: &reqwest::Client, served: &Served, token: &str) -> Option<(u16, Value)> {
    let response = client
        .post(served.url("/api/token/refresh/"))
        .json(&json!({ "refresh": token }))
        .send()
        .await
        .ok()?;
    let status = response.status().as_u16();
    Some((status, response.json().await.ok()?))
}

async fn sigkill_under_rotation_loses_no_answered_rotation(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDatabase::new(backend).await;
    let mut create = binary();
    create
        .args(["user", "create", "kim", "--password-stdin"])
        .env("PORTCULLIS_DATABASE_URL", &db.url)
        .env("PORTCULLIS_PASSWORD_HASH_MEMORY_KIB", "64")
        .env("PORTCULLIS_PASSWORD_HASH_ITERATIONS", "1");
    let created = run(create, "kim-password\n").await;
    assert_eq!(created.code, 0, "{created:?}");

    let served = Arc::new(Served::start(server(dir.path(), &db)).await.unwrap());
    // Rotations answered so far, over all chains.
    let progress = Arc::new(AtomicUsize::new(0));
    let mut chains = tokio::task::JoinSet::new();
    for _ in 0..CHAINS {
        let served = Arc::clone(&served);
        let progress = Arc::clone(&progress);
        chains.spawn(async move {
            let login = served.login("kim", "kim-password").await;
            let mut answered = vec![login["refresh"].as_str().unwrap().to_owned()];
            // A fresh connection per chain, so the kill cuts requests in
            // flight on every one of them.
            let client = reqwest::Client::new();
            while let Some((status, body)) =
                refresh(&client, &served, answered.last().unwrap()).await
            {
                assert_eq!(status, 200, "{body}");
                answered.push(body["refresh"].as_str().unwrap().to_owned());
                progress.fetch_add(1, Ordering::Relaxed);
            }
            answered
        });
    }
    // Rotations run on every chain; then the server dies mid-stream.
    let deadline = tokio::time::Instant::now() + Duration::from_mins(1);
    while progress.load(Ordering::Relaxed) < CHAINS * ROUNDS {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} rotations within a minute",
            progress.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    served.signal("KILL").await;
    let mut answered = Vec::new();
    while let Some(chain) = chains.join_next().await {
        answered.push(chain.unwrap());
    }
    let rotations: usize = answered.iter().map(|chain| chain.len() - 1).sum();
    assert!(rotations >= CHAINS * ROUNDS, "{rotations} rotations");

    let served = Served::start(server(dir.path(), &db)).await.unwrap();
    let client = reqwest::Client::new();
    for chain in &answered {
        let [.., rotated, last] = chain.as_slice() else {
            // A chain the kill cut before its first rotation: nothing answered.
            continue;
        };
        // The last answered token works, unless the request the kill cut
        // had rotated it already (committed, never answered).
        let (status, body) = refresh(&client, &served, last).await.unwrap();
        assert!(
            status == 200 || (status == 401 && body == blacklisted()),
            "the last answered refresh token: {status} {body}"
        );
        // The one before it was rotated and the rotation answered: it must
        // stay rotated away after the restart.
        let (status, body) = refresh(&client, &served, rotated).await.unwrap();
        assert_eq!(
            (status, body),
            (401, blacklisted()),
            "a rotation answered before the kill ({rotations} in all) was lost"
        );
    }
    served.terminate().await;
}

crate::both_backends!(sigkill_under_rotation_loses_no_answered_rotation);
