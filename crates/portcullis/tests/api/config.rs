//! Settings through the real binary: the layering (defaults < TOML file <
//! environment), the messages for bad values, the generated signing key,
//! and graceful shutdown on SIGTERM.

use serde_json::json;

use crate::helpers::{Backend, Served, TestDatabase, binary, claims, run};

/// `portcullis serve` with a fresh SQLite database in `dir`.
fn serve_in(dir: &std::path::Path) -> tokio::process::Command {
    let mut command = binary();
    command
        .current_dir(dir)
        // The test suite's own variables are not settings and must not stop a start.
        .env("PORTCULLIS_TEST_POSTGRES_URL", "postgres://unused")
        .env("PORTCULLIS_PASSWORD_HASH_MEMORY_KIB", "64")
        .env("PORTCULLIS_PASSWORD_HASH_ITERATIONS", "1");
    command
}

async fn start_error(command: tokio::process::Command) -> String {
    match Served::start(command).await {
        Ok(_) => panic!("the server started despite a bad setting"),
        Err(log) => log,
    }
}

#[tokio::test]
async fn bad_settings_stop_the_start_and_say_why() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (
            vec![("PORTCULLIS_ALGORITHM", "HS257")],
            "error: ALGORITHM (`algorithm`, from environment variable PORTCULLIS_ALGORITHM): unknown algorithm \"HS257\"; allowed: HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA",
        ),
        (
            vec![("PORTCULLIS_SIGNING_KEY", "too-short")],
            "error: SIGNING_KEY (`signing_key`, from environment variable PORTCULLIS_SIGNING_KEY): the HS256 key is 9 bytes; RFC 7518 §3.2 requires at least 32 bytes (generate one with `openssl rand -base64 48`)",
        ),
        (
            vec![
                ("PORTCULLIS_ALGORITHM", "ES256"),
                ("PORTCULLIS_SIGNING_KEY", "not a pem"),
            ],
            "error: SIGNING_KEY (`signing_key`, from environment variable PORTCULLIS_SIGNING_KEY): the signing key is not a valid ES256 private key in PEM form: no PEM private key found",
        ),
        (
            vec![("PORTCULLIS_ALGORITHM", "EdDSA")],
            "error: ALGORITHM (`algorithm`, from environment variable PORTCULLIS_ALGORITHM) needs a private key: set SIGNING_KEY_FILE to a PEM file",
        ),
        (
            vec![("PORTCULLIS_ACCESS_TOKEN_LIFETIME", "soon")],
            "error: invalid setting: \"soon\" is not a duration: use whole seconds (300) or a number with a unit (30s, 5m, 1h, 1d) for key \"ACCESS_TOKEN_LIFETIME\" in `PORTCULLIS_` environment variable(s)",
        ),
        (
            vec![("PORTCULLIS_DATABASE_URL", "mysql://localhost/x")],
            "error: DATABASE_URL (`database_url`, from environment variable PORTCULLIS_DATABASE_URL): the database URL must start with sqlite:",
        ),
        (vec![("PORTCULLIS_BIND", "localhost")], "error: BIND"),
    ];
    for (env, expected) in cases {
        let mut command = serve_in(dir.path());
        command.envs(env.iter().copied());
        if env.iter().any(|(k, _)| *k == "PORTCULLIS_BIND") {
            // Served::start sets BIND itself; run the command directly.
            command.arg("serve");
            let out = run(command, "").await;
            assert_eq!(out.code, 1);
            assert!(
                out.stderr.contains("is not an address; use HOST:PORT"),
                "{}",
                out.stderr
            );
            continue;
        }
        let log = start_error(command).await;
        assert!(
            log.contains(expected),
            "{env:?}: expected {expected:?} in:\n{log}"
        );
        assert!(log.ends_with("(exit code Some(1))"), "{log}");
    }
}

/// A misspelt environment variable is named as written, with the nearest
/// known name, and nothing else (not the list of every setting); a name
/// near none is named alone.
#[tokio::test]
async fn an_unknown_setting_in_the_environment_is_named_with_the_nearest() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "PORTCULLIS_ACESS_TOKEN_LIFETIME",
            "error: the environment variable `PORTCULLIS_ACESS_TOKEN_LIFETIME` is not a setting; did you mean `PORTCULLIS_ACCESS_TOKEN_LIFETIME`?\n",
        ),
        (
            "PORTCULLIS_ROTATE_REFRESH_TOKEN",
            "error: the environment variable `PORTCULLIS_ROTATE_REFRESH_TOKEN` is not a setting; did you mean `PORTCULLIS_ROTATE_REFRESH_TOKENS`?\n",
        ),
        (
            "PORTCULLIS_COLOUR",
            "error: the environment variable `PORTCULLIS_COLOUR` is not a setting\n",
        ),
    ];
    for (name, expected) in cases {
        let mut command = serve_in(dir.path());
        command.env(name, "true").arg("serve");
        let out = run(command, "").await;
        assert_eq!((out.code, out.stderr.as_str()), (1, expected), "{name}");
        assert_eq!(out.stdout, "");
    }
}

/// A misspelt setting in the file is named as written, with the nearest
/// known name, and nothing else (not the list of every setting).
#[tokio::test]
async fn an_unknown_setting_in_the_file_is_named_with_the_nearest() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("portcullis.toml");
    std::fs::write(&file, "acess_token_lifetime = \"5m\"\n").unwrap();
    let mut command = serve_in(dir.path());
    command.arg("--config").arg(&file).arg("serve");
    let out = run(command, "").await;
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr,
        format!(
            "error: `acess_token_lifetime` in config file {} is not a setting; did you mean `access_token_lifetime`?\n",
            file.display()
        )
    );
}

#[tokio::test]
async fn asymmetric_key_problems_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let (one, _) = crate::interop::pem_pair("EdDSA");
    let (_, other_public) = crate::interop::pem_pair("EdDSA");
    let signing = dir.path().join("signing.pem");
    std::fs::write(&signing, &one).unwrap();

    let mut command = serve_in(dir.path());
    command
        .env("PORTCULLIS_ALGORITHM", "EdDSA")
        .env("PORTCULLIS_SIGNING_KEY_FILE", &signing)
        .env("PORTCULLIS_VERIFYING_KEY", &other_public);
    let log = start_error(command).await;
    assert!(
        log.contains("the verifying key does not match the signing key"),
        "{log}"
    );

    let mut command = serve_in(dir.path());
    command
        .env("PORTCULLIS_ALGORITHM", "HS256")
        .env("PORTCULLIS_SIGNING_KEY_FILE", &signing);
    let log = start_error(command).await;
    assert!(
        log.contains("SIGNING_KEY_FILE (`signing_key_file`, from environment variable PORTCULLIS_SIGNING_KEY_FILE): the HS256 key looks like a PEM key"),
        "{log}"
    );

    let mut command = serve_in(dir.path());
    command.env(
        "PORTCULLIS_SIGNING_KEY_FILE",
        dir.path().join("missing.pem"),
    );
    let log = start_error(command).await;
    assert!(log.contains("SIGNING_KEY_FILE (`signing_key_file`, from environment variable PORTCULLIS_SIGNING_KEY_FILE): cannot read"), "{log}");

    // And a good pair starts, signs with EdDSA and serves.
    let mut command = serve_in(dir.path());
    command
        .env("PORTCULLIS_ALGORITHM", "EdDSA")
        .env("PORTCULLIS_SIGNING_KEY_FILE", &signing);
    let served = Served::start(command).await.unwrap();
    let (code, _) = served.terminate().await;
    assert_eq!(code, 0);
}

/// defaults < TOML file < environment, with the file from `--config` or
/// `PORTCULLIS_CONFIG`; a bad value in the file names the file.
#[tokio::test]
async fn file_then_environment() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("portcullis.toml");
    std::fs::write(
        &file,
        "access_token_lifetime = \"2m\"\nrefresh_token_lifetime = 600\n",
    )
    .unwrap();
    let out = run(
        {
            let mut c = serve_in(dir.path());
            c.args(["user", "create", "alice", "--password-stdin"]);
            c
        },
        "alice-pass\n",
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);

    for via_env in [false, true] {
        let mut command = serve_in(dir.path());
        if via_env {
            command.env("PORTCULLIS_CONFIG", &file);
        } else {
            command.arg("--config").arg(&file);
        }
        command.env("PORTCULLIS_REFRESH_TOKEN_LIFETIME", "1h");
        let served = Served::start(command).await.unwrap();
        let reply = served.login("alice", "alice-pass").await;
        let access = claims(reply["access"].as_str().unwrap());
        let refresh = claims(reply["refresh"].as_str().unwrap());
        assert_eq!(
            access["exp"].as_i64().unwrap() - access["iat"].as_i64().unwrap(),
            120,
            "from the file"
        );
        assert_eq!(
            refresh["exp"].as_i64().unwrap() - refresh["iat"].as_i64().unwrap(),
            3600,
            "env wins over the file"
        );
        assert_eq!(served.terminate().await.0, 0);
    }

    std::fs::write(&file, "leeway = \"forever\"\n").unwrap();
    let mut command = serve_in(dir.path());
    command.arg("--config").arg(&file);
    let log = start_error(command).await;
    assert!(
        log.contains("\"forever\" is not a duration") && log.contains("portcullis.toml"),
        "{log}"
    );

    let mut command = serve_in(dir.path());
    command.arg("--config").arg(dir.path().join("nope.toml"));
    let log = start_error(command).await;
    assert!(
        log.contains("the config file") && log.contains("nope.toml does not exist"),
        "{log}"
    );
}

/// With no key configured, the first start generates one and keeps it in
/// the database: tokens survive a restart, and a second node on the same
/// database uses the same key.
async fn generated_key_is_kept(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDatabase::new(backend).await;
    let command = |dir: &std::path::Path| {
        let mut c = serve_in(dir);
        c.env("PORTCULLIS_DATABASE_URL", &db.url);
        c
    };
    let out = run(
        {
            let mut c = command(dir.path());
            c.args(["user", "create", "alice", "--password-stdin"]);
            c
        },
        "alice-pass\n",
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);

    let first = Served::start(command(dir.path())).await.unwrap();
    let second = Served::start(command(dir.path())).await.unwrap();
    let client = reqwest::Client::new();
    let pair: serde_json::Value = client
        .post(first.url("/api/token/"))
        .json(&json!({"username": "alice", "password": "alice-pass"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let me = client
        .get(second.url("/api/users/me/"))
        .bearer_auth(pair["access"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    let (code, log) = first.terminate().await;
    assert_eq!(code, 0);
    assert!(
        log.contains("generated a random signing key and stored it in the database"),
        "{log}"
    );
    let (code, log) = second.terminate().await;
    assert_eq!(code, 0);
    assert!(
        !log.contains("generated a random signing key"),
        "the second node must reuse the key:\n{log}"
    );
    // Never the key itself in the log.
    assert!(!log.contains(pair["access"].as_str().unwrap()));
}

crate::both_backends!(generated_key_is_kept);

/// SIGTERM: stop accepting, finish in-flight work, exit 0.
#[tokio::test]
async fn sigterm_stops_gracefully() {
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start(serve_in(dir.path())).await.unwrap();
    let health = reqwest::get(served.url("/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().await.unwrap(), r#"{"status":"ok"}"#);
    let base = served.base.clone();
    let (code, log) = served.terminate().await;
    assert_eq!(code, 0, "{log}");
    assert!(
        log.contains("shutdown signal received") && log.contains("portcullis stopped"),
        "{log}"
    );
    assert!(
        reqwest::get(format!("{base}/healthz")).await.is_err(),
        "still accepting after SIGTERM"
    );
    // The default database was created in the working directory, private:
    // it holds the signing key.
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(dir.path().join("portcullis.sqlite3"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
}
