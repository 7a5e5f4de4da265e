//! Timings the test suite does not assert (they would flake on a loaded
//! machine), measured against running servers and reported with the
//! target each one has:
//!
//! - `login-timing`: a failed login takes the same time whether the user
//!   is unknown, the password wrong or the account inactive (issue 6):
//!   the medians of interleaved samples, within 30% of each other.
//! - `revocation-delay`: a session ended on one node is refused by
//!   another within one second (issue 4, PostgreSQL `LISTEN`/`NOTIFY`).

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

/// `bench/login-timing`: failed logins of the three kinds on `url` (users
/// `alice`, active, and `ina`, inactive with password `ina-pass`),
/// `rounds` of each, interleaved so load spikes hit every kind alike.
pub(crate) async fn login_timing(url: &str, rounds: usize) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let kinds = [
        ("unknown user", "nobody", "alice-pass"),
        ("wrong password", "alice", "not-her-pass"),
        ("inactive user", "ina", "ina-pass"),
    ];
    let login = format!("{url}/api/token/");
    let attempt = |username: &str, password: &str| {
        client
            .post(&login)
            .json(&json!({"username": username, "password": password}))
            .send()
    };
    // Warm up connections and caches; not measured.
    for (name, username, password) in kinds {
        let status = attempt(username, password).await?.status();
        if status != 401 {
            bail!("{name}: expected 401, got {status} (are alice and the inactive ina there?)");
        }
    }
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); kinds.len()];
    for round in 0..rounds {
        // Rotate the order every round so no kind always goes first.
        for i in 0..kinds.len() {
            let k = (i + round) % kinds.len();
            let Some(((_, username, password), times)) = kinds.get(k).zip(samples.get_mut(k))
            else {
                continue;
            };
            let started = Instant::now();
            let response = attempt(username, password).await?;
            response.bytes().await?;
            times.push(started.elapsed());
        }
    }
    let medians: Vec<Duration> = samples.iter_mut().map(|s| median(s)).collect();
    println!("{:<16} {:>12}", "failed login", "median");
    for ((name, _, _), m) in kinds.iter().zip(&medians) {
        println!("{name:<16} {:>9.2} ms", m.as_secs_f64() * 1000.0);
    }
    let slowest = medians.iter().max().copied().unwrap_or_default();
    let fastest = medians.iter().min().copied().unwrap_or_default();
    let ratio = fastest.as_secs_f64() / slowest.as_secs_f64().max(f64::MIN_POSITIVE);
    println!(
        "fastest / slowest: {:.0}% (target: at least 70%, medians within 30%): {}",
        ratio * 100.0,
        if ratio >= 0.7 { "met" } else { "missed" }
    );
    Ok(())
}

/// `bench/revocation-delay`: `runs` times, log in as `username` on
/// `first`, end every session there (`logout-all`), and time until `other`
/// refuses the access token, polling every 5 ms.
pub(crate) async fn revocation_delay(
    first: &str,
    other: &str,
    username: &str,
    password: &str,
    runs: usize,
) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let mut delays = Vec::with_capacity(runs);
    for _ in 0..runs {
        let pair: Value = client
            .post(format!("{first}/api/token/"))
            .json(&json!({"username": username, "password": password}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let access = pair
            .get("access")
            .and_then(Value::as_str)
            .context("no access token")?
            .to_owned();
        let me = || {
            client
                .get(format!("{other}/api/users/me/"))
                .bearer_auth(&access)
                .send()
        };
        if me().await?.status() != 200 {
            bail!("the other node refuses a fresh token");
        }
        // Not-valid-before counts whole seconds: a token of the second
        // the sessions end lives on, so start in a new second.
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        client
            .post(format!("{first}/api/token/logout-all/"))
            .bearer_auth(&access)
            .json(&json!({}))
            .send()
            .await?
            .error_for_status()?;
        let answered = Instant::now();
        loop {
            let status = me().await?.status();
            if status == 401 {
                break;
            }
            if answered.elapsed() > Duration::from_secs(30) {
                bail!("the other node still accepts the token after 30 s");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        delays.push(answered.elapsed());
    }
    let slowest = delays.iter().max().copied().unwrap_or_default();
    let median = median(&mut delays);
    println!(
        "session ended on one node, refused by another: median {:.1} ms, slowest {:.1} ms of {runs} (target: within 1 s): {}",
        median.as_secs_f64() * 1000.0,
        slowest.as_secs_f64() * 1000.0,
        if slowest < Duration::from_secs(1) {
            "met"
        } else {
            "missed"
        }
    );
    Ok(())
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples.get(samples.len() / 2).copied().unwrap_or_default()
}
