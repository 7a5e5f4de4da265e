//! Equal timing (issue 6): a login for an unknown user, with a wrong
//! password, or for an inactive user takes the same time, so response
//! times do not tell which usernames exist or are active.
//!
//! Robust on a small, busy machine: real Argon2id (parameters reduced, the
//! same for all three), many samples taken interleaved so that load spikes
//! hit every kind alike, compared by median with a relative tolerance.
//! Throttling is raised out of the way.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::{Backend, TestApp};

const ROUNDS: usize = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_take_the_same_time() {
    let db = crate::helpers::TestDatabase::new(Backend::Sqlite).await;
    let toml = format!(
        "bind = \"127.0.0.1:0\"\ndatabase_url = \"{}\"\nsigning_key = \"{}\"\nlog = \"warn\"\n\
         password_hash_memory_kib = 8192\npassword_hash_iterations = 2\n\
         login_failure_limit = 1000000\nlogin_address_failure_limit = 1000000\nlogin_backoff_after = 1000000\n",
        db.url,
        crate::helpers::SIGNING_KEY
    );
    let app = TestApp::spawn_with(db, &toml).await;
    app.user("alice", "alice-pass", true, false).await;
    app.user("ina", "ina-pass", false, false).await;
    let kinds = [
        ("unknown user", "nobody", "alice-pass"),
        ("wrong password", "alice", "not-her-pass"),
        ("inactive user", "ina", "ina-pass"),
    ];
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); kinds.len()];
    // Warm up connections and caches; not measured.
    for (_, username, password) in kinds {
        let reply = app.try_login("/api/token/", username, password, &[]).await;
        assert_eq!(reply.status, 401, "{}", reply.body);
    }
    for round in 0..ROUNDS {
        // Rotate the order every round so no kind always goes first.
        for i in 0..kinds.len() {
            let k = (i + round) % kinds.len();
            let (_, username, password) = kinds[k];
            let body = json!({"username": username, "password": password});
            let started = Instant::now();
            let response = app
                .client
                .post(app.url("/api/token/"))
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            response.bytes().await.unwrap();
            samples[k].push(started.elapsed());
            assert_eq!(status, 401);
        }
    }
    let medians: Vec<Duration> = samples
        .iter_mut()
        .map(|s| {
            s.sort();
            s[s.len() / 2]
        })
        .collect();
    let slowest = *medians.iter().max().unwrap();
    let fastest = *medians.iter().min().unwrap();
    let report: Vec<String> = kinds
        .iter()
        .zip(&medians)
        .map(|((name, _, _), m)| format!("{name}: {m:?}"))
        .collect();
    // Skipping the hash for one kind would make it several times faster;
    // scheduling noise on a busy machine stays well under a third.
    assert!(
        fastest.as_secs_f64() >= slowest.as_secs_f64() * 0.7,
        "medians differ by more than 30%: {report:?}"
    );
    eprintln!("login medians: {report:?}");
}
