//! The account and token commands, through the real binary, on both
//! backends: what they print, what they refuse, and that the server sees
//! their effect.

use serde_json::json;

use crate::helpers::{Backend, TestApp, TestDatabase, binary, run};

/// `portcullis ARGS…` against a database, with cheap hashing.
pub(crate) fn portcullis(db: &TestDatabase, args: &[&str]) -> tokio::process::Command {
    let mut command = binary();
    command
        .args(args)
        .env("PORTCULLIS_DATABASE_URL", &db.url)
        .env("PORTCULLIS_PASSWORD_HASH_MEMORY_KIB", "64")
        .env("PORTCULLIS_PASSWORD_HASH_ITERATIONS", "1");
    command
}

async fn user_lifecycle(backend: Backend) {
    let db = TestDatabase::new(backend).await;

    let out = run(
        portcullis(
            &db,
            &[
                "user",
                "create",
                "alice",
                "--email",
                "alice@example.com",
                "--password-stdin",
            ],
        ),
        "first-pass\n",
    )
    .await;
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "Created user alice with id 1.\n"),
        "{}",
        out.stderr
    );
    let out = run(
        portcullis(
            &db,
            &[
                "user",
                "create",
                "carol",
                "--staff",
                "--inactive",
                "--password-stdin",
            ],
        ),
        "carol-pass\n",
    )
    .await;
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "Created user carol with id 2.\n"),
        "{}",
        out.stderr
    );

    // Refusals say what was wrong and exit non-zero.
    let out = run(
        portcullis(&db, &["user", "create", "alice", "--password-stdin"]),
        "x\n",
    )
    .await;
    assert_eq!(
        (out.code, out.stderr.as_str()),
        (1, "error: a user named \"alice\" already exists\n")
    );
    let out = run(
        portcullis(&db, &["user", "create", "bad name", "--password-stdin"]),
        "x\n",
    )
    .await;
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr,
        "error: invalid username: the username contains ' '; only letters, digits and @ . + - _ are allowed\n"
    );
    let out = run(
        portcullis(&db, &["user", "create", "dave", "--password-stdin"]),
        "\n",
    )
    .await;
    assert_eq!(
        (out.code, out.stderr.as_str()),
        (1, "error: the password is empty\n")
    );
    let out = run(
        portcullis(&db, &["user", "create", "dave", "--password-stdin"]),
        " padded \n",
    )
    .await;
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .starts_with("error: the password starts or ends with whitespace"),
        "{}",
        out.stderr
    );
    let out = run(portcullis(&db, &["user", "create", "dave"]), "").await;
    assert_eq!(
        (out.code, out.stderr.as_str()),
        (
            1,
            "error: no terminal to ask for the password on; pass --password-stdin and write it to standard input\n"
        )
    );
    for args in [
        &["user", "set-password", "zed", "--password-stdin"][..],
        &["user", "activate", "zed"],
        &["user", "deactivate", "zed"],
        &["user", "delete", "zed"],
    ] {
        let out = run(portcullis(&db, args), "pw\n").await;
        assert_eq!(
            (out.code, out.stderr.as_str()),
            (1, "error: no user named \"zed\"\n"),
            "{args:?}"
        );
    }

    let out = run(portcullis(&db, &["user", "list"]), "").await;
    assert_eq!(out.code, 0);
    let rows: Vec<Vec<&str>> = out
        .stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows[0],
        ["id", "username", "email", "active", "staff", "superuser"]
    );
    assert_eq!(
        rows[1],
        ["1", "alice", "alice@example.com", "yes", "no", "no"]
    );
    // carol has no email: the column is blank.
    assert_eq!(rows[2], ["2", "carol", "no", "yes", "no"]);
    assert_eq!(rows.len(), 3);

    let out = run(
        portcullis(&db, &["user", "set-password", "alice", "--password-stdin"]),
        "second-pass\n",
    )
    .await;
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "Password changed for alice.\n")
    );
    let out = run(portcullis(&db, &["user", "activate", "carol"]), "").await;
    assert_eq!((out.code, out.stdout.as_str()), (0, "carol is active.\n"));

    // The server sees what the commands did.
    let url = db.url.clone();
    let app = TestApp::spawn_with(db, &server_toml(&url)).await;
    let wrong = app
        .post(
            "/api/token/",
            json!({"username": "alice", "password": "first-pass"}),
        )
        .await;
    assert_eq!(wrong.status, 401);
    assert_eq!(
        wrong.body,
        r#"{"detail":"No active account found with the given credentials"}"#
    );
    app.login("alice", "second-pass").await;
    app.login("carol", "carol-pass").await;

    // Deactivation and deletion take effect on the running server.
    let db_url = url.clone();
    let with = |args: &[&str]| {
        let mut command = binary();
        command.args(args).env("PORTCULLIS_DATABASE_URL", &db_url);
        command
    };
    let out = run(with(&["user", "deactivate", "alice"]), "").await;
    assert_eq!((out.code, out.stdout.as_str()), (0, "alice is inactive.\n"));
    assert_eq!(
        app.post(
            "/api/token/",
            json!({"username": "alice", "password": "second-pass"})
        )
        .await
        .status,
        401
    );
    let out = run(with(&["user", "delete", "carol"]), "").await;
    assert_eq!((out.code, out.stdout.as_str()), (0, "carol was deleted.\n"));
    assert_eq!(
        app.post(
            "/api/token/",
            json!({"username": "carol", "password": "carol-pass"})
        )
        .await
        .status,
        401
    );
    app.stop().await;
}

fn server_toml(url: &str) -> String {
    format!(
        "bind = \"127.0.0.1:0\"\ndatabase_url = \"{url}\"\nsigning_key = \"{}\"\nlog = \"warn\"\npassword_hash_memory_kib = 64\npassword_hash_iterations = 1\n",
        crate::helpers::SIGNING_KEY
    )
}

async fn migrate_and_flush(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let name = if backend == Backend::Sqlite {
        "sqlite"
    } else {
        "postgres"
    };
    for _ in 0..2 {
        let out = run(portcullis(&db, &["migrate"]), "").await;
        assert_eq!(
            (out.code, out.stdout.clone()),
            (0, format!("The {name} database is up to date.\n")),
            "{}",
            out.stderr
        );
    }
    // Two tokens: one expired long ago, one live.
    let url = db.url.clone();
    let app = TestApp::spawn_with(db, &server_toml(&url)).await;
    let store = app.auth.token_store();
    for (jti, expires_at) in [
        ("a".repeat(32), 1_000),
        ("b".repeat(32), i64::from(i32::MAX)),
    ] {
        store
            .record_outstanding(&portcullis_core::OutstandingToken {
                jti,
                user_id: None,
                created_at: Some(0),
                expires_at,
            })
            .await
            .unwrap();
    }
    let out = run(portcullis(&app.db, &["tokens", "flush-expired"]), "").await;
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "Removed 1 expired token record(s).\n"),
        "{}",
        out.stderr
    );
    let out = run(portcullis(&app.db, &["tokens", "flush-expired"]), "").await;
    assert_eq!(out.stdout, "Removed 0 expired token record(s).\n");
    app.stop().await;
}

/// Deactivating an account from the CLI ends its sessions (ASVS V7.4.2):
/// activated again, its old tokens stay refused, on the running server
/// within about a second.
async fn deactivate_ends_sessions(backend: Backend) {
    let app = TestApp::spawn(backend, "rotate_refresh_tokens = true\n").await;
    app.user("alice", "alice-pass", true, false).await;
    let (refresh, access) = app.login("alice", "alice-pass").await;
    // Not-valid-before counts whole seconds: let the login's second pass.
    let iat = crate::helpers::claims(&access)["iat"].as_i64().unwrap();
    while crate::helpers::now() <= iat {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    for command in ["deactivate", "activate"] {
        let out = run(portcullis(&app.db, &["user", command, "alice"]), "").await;
        assert_eq!(out.code, 0, "{}", out.stderr);
    }
    let started = std::time::Instant::now();
    loop {
        let me = app.get("/api/users/me/", Some(&access)).await;
        if me.status == 401 {
            assert!(me.body.contains("Token is blacklisted"), "{}", me.body);
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(2),
            "{}",
            me.body
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let again = app
        .post(
            "/api/token/refresh/",
            serde_json::json!({"refresh": refresh}),
        )
        .await;
    assert_eq!(
        (again.status, again.body.as_str()),
        (
            401,
            r#"{"detail":"Token is blacklisted","code":"token_not_valid"}"#
        )
    );
    let (_, fresh) = app.login("alice", "alice-pass").await;
    assert_eq!(app.get("/api/users/me/", Some(&fresh)).await.status, 200);
    app.stop().await;
}

crate::both_backends!(user_lifecycle, migrate_and_flush, deactivate_ends_sessions);

/// Without `--password-stdin`, the password is asked twice on the terminal
/// (a real pseudo-terminal, through util-linux `script`).
#[tokio::test]
async fn password_prompted_twice_on_a_terminal() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    async fn prompt_session(
        db: &TestDatabase,
        username: &str,
        answers: [&str; 2],
    ) -> (i32, String) {
        let command_line = format!(
            "{} user create {username}",
            env!("CARGO_BIN_EXE_portcullis")
        );
        let mut command = tokio::process::Command::new("script");
        command
            .args(["-qe", "-c", &command_line, "/dev/null"])
            .env("PORTCULLIS_DATABASE_URL", &db.url)
            .env("PORTCULLIS_PASSWORD_HASH_MEMORY_KIB", "64")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().expect("util-linux script");
        let mut stdin = child.stdin.take().unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let mut seen = String::new();
        for (prompt, answer) in [
            ("Password: ", answers[0]),
            ("Password (again): ", answers[1]),
        ] {
            let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
            while !seen.contains(prompt) {
                let mut buffer = [0_u8; 256];
                let n = tokio::time::timeout_at(deadline, stdout.read(&mut buffer))
                    .await
                    .expect("prompt")
                    .unwrap();
                assert!(n > 0, "the program ended before asking: {seen}");
                seen.push_str(&String::from_utf8_lossy(&buffer[..n]));
            }
            seen = seen.replacen(prompt, "", 1);
            stdin
                .write_all(format!("{answer}\r").as_bytes())
                .await
                .unwrap();
        }
        let mut rest = String::new();
        stdout.read_to_string(&mut rest).await.unwrap();
        let status = child.wait().await.unwrap();
        (status.code().unwrap_or(-1), format!("{seen}{rest}"))
    }

    let db = TestDatabase::new(Backend::Sqlite).await;
    let (code, output) = prompt_session(&db, "bob", ["one", "two"]).await;
    assert_eq!(code, 1);
    assert!(
        output.contains("error: the two passwords differ"),
        "{output}"
    );
    let (code, output) = prompt_session(&db, "bob", ["tty-pass", "tty-pass"]).await;
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("Created user bob with id 1."), "{output}");
    // Whether the typed password echoes is rpassword's business, and racy
    // to observe: it prints the prompt before it turns echo off, so an
    // answer typed at once may echo. Not asserted here.
}
