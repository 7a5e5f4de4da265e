//! Secrets stay secret (issue 6): with logging at its most verbose, the real
//! binary's output of logins, refreshes, password changes and failures holds
//! no password, signing key or token; `Debug` of every settings and key
//! holder redacts them.

use serde_json::{Value, json};

use crate::helpers::{Backend, Served, TestApp, TestDatabase, binary, run};

const SIGNING_KEY: &str = "log-test-signing-key-7d1e4c9a0b2f5e8d3c6a9f1b4e7d0c3a";
const PASSWORD: &str = "Corr3ct-H0rse-Battery";
const WRONG: &str = "Wr0ng-Guess-Xylophone";
const NEW_PASSWORD: &str = "N3w-Passw0rd-Quokka";

fn portcullis(db: &TestDatabase) -> tokio::process::Command {
    let mut command = binary();
    command
        .env("PORTCULLIS_DATABASE_URL", &db.url)
        .env("PORTCULLIS_SIGNING_KEY", SIGNING_KEY)
        .env("PORTCULLIS_PASSWORD_HASH_MEMORY_KIB", "64")
        .env("PORTCULLIS_PASSWORD_HASH_ITERATIONS", "1")
        .env("PORTCULLIS_LOGIN_FAILURE_LIMIT", "3")
        .env("PORTCULLIS_LOGIN_BACKOFF_AFTER", "3")
        .env("PORTCULLIS_ROTATE_REFRESH_TOKENS", "true")
        .env("PORTCULLIS_REFRESH_REUSE_GRACE", "0");
    command
}

/// The status and the body of a JSON POST: every step below asserts both,
/// so a step that failed early cannot leave the log's silence meaningless.
async fn post(
    client: &reqwest::Client,
    url: String,
    body: Value,
    bearer: Option<&str>,
) -> (u16, String) {
    let mut request = client.post(url).json(&body);
    if let Some(token) = bearer {
        request = request.header("Authorization", format!("Bearer {token}"));
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

async fn login_status(client: &reqwest::Client, served: &Served, username: &str) -> u16 {
    let (status, _) = post(
        client,
        served.url("/api/token/"),
        json!({"username": username, "password": WRONG}),
        None,
    )
    .await;
    status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_hold_no_password_key_or_token() {
    let db = TestDatabase::new(Backend::Sqlite).await;
    let mut create = portcullis(&db);
    create.args(["user", "create", "alice", "--password-stdin"]);
    let out = run(create, &format!("{PASSWORD}\n")).await;
    assert_eq!(out.code, 0, "{}", out.stderr);

    let mut serve = portcullis(&db);
    serve.env("PORTCULLIS_LOG", "trace");
    let served = Served::start(serve).await.unwrap();
    let client = reqwest::Client::new();
    let mut tokens: Vec<String> = Vec::new();

    let pair = served.login("alice", PASSWORD).await;
    let refresh = pair["refresh"].as_str().unwrap().to_owned();
    let access = pair["access"].as_str().unwrap().to_owned();
    tokens.extend([refresh.clone(), access.clone()]);
    let (status, rotated) = post(
        &client,
        served.url("/api/token/refresh/"),
        json!({"refresh": refresh}),
        None,
    )
    .await;
    assert_eq!(status, 200, "{rotated}");
    let rotated: Value = serde_json::from_str(&rotated).unwrap();
    tokens.push(rotated["access"].as_str().unwrap().to_owned());
    tokens.push(rotated["refresh"].as_str().unwrap().to_owned());
    // Reuse of the rotated refresh token (no grace) ends the session: a failure path.
    let reuse = post(
        &client,
        served.url("/api/token/refresh/"),
        json!({"refresh": refresh}),
        None,
    )
    .await;
    assert_eq!(
        reuse,
        (
            401,
            r#"{"detail":"Token is blacklisted","code":"token_not_valid"}"#.to_owned()
        )
    );
    let verified = post(
        &client,
        served.url("/api/token/verify/"),
        json!({"token": rotated["access"]}),
        None,
    )
    .await;
    assert_eq!(verified, (200, "{}".to_owned()));
    let tampered = format!("{access}x");
    let refused = post(
        &client,
        served.url("/api/token/verify/"),
        json!({"token": tampered}),
        None,
    )
    .await;
    assert_eq!(
        refused,
        (
            401,
            r#"{"detail":"Token is invalid","code":"token_not_valid"}"#.to_owned()
        )
    );
    let me = client
        .get(served.url("/api/users/me/"))
        .header("Authorization", format!("Bearer {tampered}"))
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 401);
    // Failures, up to and past the lock, for a real and an unknown user:
    // three refusals, then the lock's 429.
    for username in ["alice", "mallory"] {
        let mut statuses = Vec::new();
        for _ in 0..4 {
            statuses.push(login_status(&client, &served, username).await);
        }
        assert_eq!(statuses, [401, 401, 401, 429], "{username}");
    }
    // A password change (after unlocking) with the new password.
    let mut unlock = portcullis(&db);
    unlock.args(["user", "unlock", "alice"]);
    assert_eq!(run(unlock, "").await.code, 0);
    let fresh = served.login("alice", PASSWORD).await;
    let fresh_access = fresh["access"].as_str().unwrap().to_owned();
    tokens.push(fresh_access.clone());
    tokens.push(fresh["refresh"].as_str().unwrap().to_owned());
    let body = json!({"old_password": PASSWORD, "new_password": NEW_PASSWORD});
    let changed = post(
        &client,
        served.url("/api/users/me/password/"),
        body,
        Some(&fresh_access),
    )
    .await;
    assert_eq!(changed, (200, "{}".to_owned()));
    let body = json!({"old_password": WRONG, "new_password": NEW_PASSWORD});
    let wrong = post(
        &client,
        served.url("/api/users/me/password/"),
        body,
        Some(&fresh_access),
    )
    .await;
    assert_eq!(
        wrong,
        (400, r#"{"old_password":["Wrong password."]}"#.to_owned())
    );

    let (code, log) = served.terminate().await;
    assert_eq!(code, 0, "{log}");
    // The log is really verbose, so its silence on secrets means something.
    assert!(log.contains("TRACE") || log.contains("DEBUG"), "{log}");
    assert!(log.contains("login throttled"), "{log}");
    for secret in [PASSWORD, WRONG, NEW_PASSWORD, SIGNING_KEY] {
        assert!(!log.contains(secret), "the log holds {secret:?}:\n{log}");
    }
    for token in &tokens {
        for (i, part) in token.split('.').enumerate() {
            // The header segment is the same for every token and not secret.
            if i > 0 {
                assert!(!log.contains(part), "the log holds part of a token:\n{log}");
            }
        }
    }
}

/// `Debug` of the configuration, the keys and the whole service (engine,
/// key set, store, hasher) never shows a secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_output_redacts_secrets() {
    let app = TestApp::spawn(Backend::Sqlite, "").await;
    let settings = portcullis::config::Settings::from_toml(&format!(
        "signing_key = \"{SIGNING_KEY}\"\ndatabase_url = \"postgres://portcullis:db-Pa55word@127.0.0.1/x\"\n"
    ))
    .unwrap();
    let mut shown = vec![
        format!("{settings:?}"),
        format!("{settings:#?}"),
        format!("{:?}", app.auth),
        format!("{:?}", app.auth.engine()),
        format!("{:?}", app.auth.engine().key_ring()),
    ];
    for key in app.auth.key_store().signing_keys().await.unwrap() {
        shown.push(format!("{key:?}"));
    }
    let keys = portcullis_token::SigningKeys::new(
        portcullis_token::Algorithm::HS256,
        SIGNING_KEY.as_bytes(),
        None,
    )
    .unwrap();
    shown.push(format!("{keys:?}"));
    for text in shown {
        for secret in [SIGNING_KEY, crate::helpers::SIGNING_KEY, "db-Pa55word"] {
            assert!(!text.contains(secret), "Debug shows {secret:?}: {text}");
        }
    }
}
