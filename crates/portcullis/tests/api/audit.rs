//! The audit trail (issue 18), what `console.rs` does not cover: the
//! console's profile change and single session end, the staff API's
//! session end and delete, `import django`; that a change which fails
//! records nothing; and that no password, hash, token or key reaches the
//! table, whichever way the change was made.
//!
//! Each recorded action and where its test is:
//!
//! | action | console | staff API | CLI |
//! |---|---|---|---|
//! | `user.create` | — | — | `console::cli_and_staff_api_are_recorded` |
//! | `user.update` | here | — | — |
//! | `user.set_password` | `console::console_changes…` | — | `console::cli_and_staff_api…` |
//! | `user.activate` | `console::console_changes…` | — | `console::cli_and_staff_api…` |
//! | `user.deactivate` | `console::console_changes…` | `console::cli_and_staff_api…` | `console::cli_and_staff_api…` |
//! | `user.delete` | `console::console_changes…` | here | `console::cli_and_staff_api…` |
//! | `user.unlock` | `console::console_changes…` | — | `console::cli_and_staff_api…` |
//! | `session.end` | here, `browser::a_superuser…` | — | — |
//! | `sessions.end_all` | `console::console_changes…` | here | — |
//! | `key.generate`, `key.rotate`, `key.retire` | `console::console_changes…` | — | `console::cli_and_staff_api…` |
//! | `import.django` | — | — | here |

use serde_json::{Value, json};
use sqlx::Connection as _;

use crate::cli::portcullis;
use crate::console::{Browser, audit_lines, sql, staff};
use crate::helpers::{Backend, TestApp, run};

/// Every row of the audit table, every column, as text: what a secret
/// would have to hide in.
async fn audit_table(app: &TestApp) -> Vec<String> {
    const ROW: &str = "SELECT actor_kind || '|' || actor_name || '|' || COALESCE(CAST(actor_id AS TEXT), '') \
        || '|' || action || '|' || COALESCE(CAST(target_id AS TEXT), '') || '|' || COALESCE(target_name, '') \
        || '|' || detail || '|' || COALESCE(address, '') || '|' || CAST(at AS TEXT) FROM audit_log ORDER BY id";
    strings(app, ROW).await
}

/// The first column of every row of `query`, as text.
async fn strings(app: &TestApp, query: &'static str) -> Vec<String> {
    if app.db.url.starts_with("postgres") {
        let mut conn = sqlx::PgConnection::connect(&app.db.url).await.unwrap();
        sqlx::query_scalar(query)
            .fetch_all(&mut conn)
            .await
            .unwrap()
    } else {
        let mut conn = sqlx::SqliteConnection::connect(&app.db.url).await.unwrap();
        sqlx::query_scalar(query)
            .fetch_all(&mut conn)
            .await
            .unwrap()
    }
}

/// `(actor, action, target, detail)` of every entry, oldest first.
async fn entries(app: &TestApp) -> Vec<(String, String, Value, String)> {
    audit_lines(app)
        .await
        .into_iter()
        .rev()
        .map(|l| {
            (
                l["actor"].as_str().unwrap().to_owned(),
                l["action"].as_str().unwrap().to_owned(),
                l["target"].clone(),
                l["detail"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn entry(
    actor: &str,
    action: &str,
    target: Value,
    detail: &str,
) -> (String, String, Value, String) {
    (
        actor.to_owned(),
        action.to_owned(),
        target,
        detail.to_owned(),
    )
}

/// The console's profile change (`user.update`) and the end of one session
/// (`session.end`), with who, what, on whom and from where.
async fn console_update_and_session_end(backend: Backend) {
    let app = TestApp::spawn(backend, "refresh_reuse_detection = true\n").await;
    let root = staff(&app, "root", true).await;
    let erin = app.user("erin", "erin-pass", true, false).await;
    let (refresh, _) = app.login("erin", "erin-pass").await;
    let sid = crate::helpers::claims(&refresh)["sid"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut browser = Browser::new(&app);
    browser.login("root", "staff-pass").await;
    let path = format!("/admin/users/{}/", erin.id);

    let saved = browser
        .post(
            &path,
            &[
                ("email", "erin@example.org"),
                ("is_active", "on"),
                ("is_staff", "on"),
            ],
        )
        .await;
    assert_eq!(saved.status, 303, "{}", saved.body);
    let ended = browser
        .post(&format!("{path}sessions/{sid}/end/"), &[])
        .await;
    assert_eq!(ended.status, 303, "{}", ended.body);
    // The same session again: nothing was ended, nothing is recorded.
    let again = browser
        .post(&format!("{path}sessions/{sid}/end/"), &[])
        .await;
    assert_eq!(again.status, 303);
    assert!(
        browser
            .get(&path)
            .await
            .body
            .contains("That session had ended already.")
    );

    let lines = audit_lines(&app).await;
    assert_eq!(lines.len(), 2, "{lines:?}");
    let short: String = sid.chars().take(8).collect();
    assert_eq!(
        lines[0],
        json!({
            "id": lines[0]["id"], "at": lines[0]["at"], "actor": "root", "actor_id": root,
            "os_user": null, "action": "session.end", "target": "erin", "target_id": erin.id,
            "detail": format!("session {short}…"), "address": "127.0.0.1",
        })
    );
    assert_eq!(
        lines[1],
        json!({
            "id": lines[1]["id"], "at": lines[1]["at"], "actor": "root", "actor_id": root,
            "os_user": null, "action": "user.update", "target": "erin", "target_id": erin.id,
            "detail": "email changed, is_staff: no -> yes", "address": "127.0.0.1",
        })
    );
    assert!(
        !serde_json::to_string(&lines).unwrap().contains(&sid),
        "the whole session id stays out"
    );
}

/// The staff API's `DELETE …/sessions/` and `DELETE /api/admin/users/{id}/`;
/// refused calls (anonymous, not staff, unknown user) record nothing.
async fn staff_api_end_all_and_delete(backend: Backend) {
    let app = TestApp::spawn(backend, "").await;
    let ops = staff(&app, "ops", false).await;
    let frank = app.user("frank", "frank-pass", true, false).await;
    app.user("gina", "gina-pass", true, false).await;
    let (_, staff_token) = app.login("ops", "staff-pass").await;
    let (_, plain_token) = app.login("gina", "gina-pass").await;
    let sessions = format!("/api/admin/users/{}/sessions/", frank.id);
    let account = format!("/api/admin/users/{}/", frank.id);

    // Refused: nothing done, nothing recorded.
    let anonymous = app.client.delete(app.url(&sessions)).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    assert_eq!(app.delete_bearer(&sessions, &plain_token).await.status, 403);
    assert_eq!(app.delete_bearer(&account, &plain_token).await.status, 403);
    let unknown = app
        .delete_bearer("/api/admin/users/9999/", &staff_token)
        .await;
    assert_eq!(
        (unknown.status, unknown.body.as_str()),
        (404, r#"{"detail":"Not found."}"#)
    );
    assert_eq!(
        app.delete_bearer("/api/admin/users/9999/sessions/", &staff_token)
            .await
            .status,
        404
    );
    assert!(audit_lines(&app).await.is_empty());

    assert_eq!(app.delete_bearer(&sessions, &staff_token).await.status, 204);
    assert_eq!(app.delete_bearer(&account, &staff_token).await.status, 204);
    // Deleted already: a 404, and no second entry.
    assert_eq!(app.delete_bearer(&account, &staff_token).await.status, 404);

    let lines = audit_lines(&app).await;
    assert_eq!(
        entries(&app).await,
        [
            entry("ops", "sessions.end_all", json!("frank"), "staff API"),
            entry("ops", "user.delete", json!("frank"), "staff API"),
        ]
    );
    for line in &lines {
        assert_eq!(line["actor_id"], ops);
        assert_eq!(line["target_id"], frank.id);
        assert_eq!(line["address"], "127.0.0.1");
    }
    let text = audit_table(&app).await.join("\n");
    for secret in [&staff_token, &plain_token, "staff-pass", "frank-pass"] {
        assert!(!text.contains(secret), "{secret} reached the audit trail");
    }
}

const DJANGO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/django");

/// `portcullis import django` is one entry with its counts; a failed
/// import records nothing; no Django password, hash, token or
/// `SECRET_KEY` reaches the trail.
async fn import_django_is_recorded(backend: Backend) {
    let app = TestApp::spawn(backend, "").await;
    let missing = run(
        portcullis(
            &app.db,
            &["import", "django", "--from-json", "/nonexistent/dump.json"],
        ),
        "",
    )
    .await;
    assert_ne!(missing.code, 0);
    assert!(
        audit_lines(&app).await.is_empty(),
        "a failed import records nothing"
    );

    let from = format!("sqlite://{DJANGO}/django.sqlite3");
    let out = run(
        portcullis(&app.db, &["import", "django", "--from", &from]),
        "",
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let lines = audit_lines(&app).await;
    assert_eq!(
        entries(&app).await,
        [entry(
            "cli",
            "import.django",
            Value::Null,
            "users: 9 imported, 0 updated; tokens: 7 imported, 0 updated"
        )]
    );
    assert!(lines[0]["os_user"].is_string());
    assert_eq!(lines[0]["address"], Value::Null);

    let fixture: Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{DJANGO}/tokens.json")).unwrap())
            .unwrap();
    let mut secrets = vec![fixture["secret_key"].as_str().unwrap().to_owned()];
    for user in fixture["users"].as_object().unwrap().values() {
        // Users with an unusable (or no) password have none to leak.
        secrets.extend(user["password"].as_str().map(str::to_owned));
    }
    for pair in fixture["tokens"].as_object().unwrap().values() {
        for token in pair.as_object().unwrap().values() {
            secrets.push(token.as_str().unwrap().to_owned());
        }
    }
    // The hashes as stored after the import (Django's formats, kept).
    secrets.extend(strings(&app, "SELECT password FROM users").await);
    assert!(secrets.len() > 20, "{secrets:?}");
    let text = audit_table(&app).await.join("\n");
    for secret in &secrets {
        assert!(
            !text.contains(secret.as_str()),
            "{secret} reached the audit trail"
        );
    }
}

/// A change that fails — refused by the form, for an unknown account or
/// key, or a duplicate — records nothing, from the console and the CLI;
/// the one that succeeds afterwards is recorded (the trail works).
async fn failed_changes_record_nothing(backend: Backend) {
    let app = TestApp::spawn(backend, "").await;
    let root = staff(&app, "root", true).await;
    let hana = app.user("hana", "hana-pass", true, false).await;
    let db = &app.db;

    let mut browser = Browser::new(&app);
    browser.login("root", "staff-pass").await;
    let path = format!("/admin/users/{}/", hana.id);
    for (form, fields, status) in [
        (
            "",
            vec![("email", "not an email"), ("is_active", "on")],
            422,
        ),
        (
            "password/",
            vec![("password", "one-pass"), ("password2", "other-pass")],
            422,
        ),
        (
            "password/",
            vec![("password", " padded "), ("password2", " padded ")],
            422,
        ),
    ] {
        let reply = browser.post(&format!("{path}{form}"), &fields).await;
        assert_eq!(reply.status, status, "{form} {fields:?}: {}", reply.body);
    }
    // Taking away one's own access, deleting oneself, an unknown account,
    // an unknown algorithm.
    let own = browser
        .post(
            &format!("/admin/users/{root}/"),
            &[("email", "root@example.com")],
        )
        .await;
    assert_eq!(own.status, 422);
    let own_delete = browser
        .post(&format!("/admin/users/{root}/delete/"), &[])
        .await;
    assert_eq!(own_delete.status, 403);
    for path in [
        "/admin/users/9999/",
        "/admin/users/9999/password/",
        "/admin/users/9999/delete/",
        "/admin/users/9999/unlock/",
        "/admin/users/9999/sessions/end-all/",
        "/admin/keys/nokid/retire/",
    ] {
        let reply = browser
            .post(path, &[("password", "x-pass"), ("password2", "x-pass")])
            .await;
        assert_eq!(reply.status, 404, "{path}: {}", reply.body);
    }
    let bad_alg = browser
        .post("/admin/keys/generate/", &[("algorithm", "none")])
        .await;
    assert_eq!(bad_alg.status, 400);

    // The CLI: unknown users and keys, a duplicate, a bad algorithm. (`user
    // unlock` of an unknown name succeeds: unknown names are throttled too.)
    for (args, stdin) in [
        (
            vec!["user", "create", "hana", "--password-stdin"],
            "dup-pass\n",
        ),
        (
            vec!["user", "set-password", "nobody", "--password-stdin"],
            "x-pass\n",
        ),
        (vec!["user", "activate", "nobody"], ""),
        (vec!["user", "deactivate", "nobody"], ""),
        (vec!["user", "delete", "nobody"], ""),
        (vec!["keys", "retire", "--", "nokid"], ""),
        (vec!["keys", "generate", "--alg", "none"], ""),
    ] {
        let out = run(portcullis(db, &args), stdin).await;
        assert_ne!(out.code, 0, "{args:?} should fail: {}", out.stdout);
    }
    assert_eq!(
        audit_table(&app).await,
        Vec::<String>::new(),
        "no failed change is recorded"
    );

    // What does succeed is recorded, once each.
    let saved = browser
        .post(&path, &[("email", "hana@example.org"), ("is_active", "on")])
        .await;
    assert_eq!(saved.status, 303);
    let out = run(portcullis(db, &["user", "deactivate", "hana"]), "").await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        entries(&app).await,
        [
            entry("root", "user.update", json!("hana"), "email changed"),
            entry("cli", "user.deactivate", json!("hana"), "sessions ended"),
        ]
    );
}

/// Every channel, with known secrets: console and CLI passwords, the
/// tokens of the staff API's caller and its target, the generated keys'
/// private material. The trail has an entry for each change and none of
/// the secrets, in the table, `audit list --json` or `audit export`.
async fn no_secret_reaches_the_trail(backend: Backend) {
    const CONSOLE_PASSWORD: &str = "console-Secret-7f3a9c";
    const CLI_PASSWORD: &str = "cli-Secret-2b8e4d";
    const CLI_PASSWORD_2: &str = "cli-Secret-again-91c0";
    let app = TestApp::spawn(backend, "refresh_reuse_detection = true\n").await;
    let db = &app.db;
    staff(&app, "root", true).await;

    let out = run(
        portcullis(db, &["user", "create", "ivy", "--password-stdin"]),
        &format!("{CLI_PASSWORD}\n"),
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = run(
        portcullis(db, &["user", "set-password", "ivy", "--password-stdin"]),
        &format!("{CLI_PASSWORD_2}\n"),
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let ivy = app
        .auth
        .user_store()
        .user_by_username("ivy")
        .await
        .unwrap()
        .unwrap();
    let (ivy_refresh, ivy_access) = app.login("ivy", CLI_PASSWORD_2).await;

    let mut browser = Browser::new(&app);
    browser.login("root", "staff-pass").await;
    let path = format!("/admin/users/{}/", ivy.id);
    let set = browser
        .post(
            &format!("{path}password/"),
            &[
                ("password", CONSOLE_PASSWORD),
                ("password2", CONSOLE_PASSWORD),
            ],
        )
        .await;
    assert_eq!(set.status, 303);
    let generated = browser
        .post(
            "/admin/keys/generate/",
            &[("algorithm", "ES256"), ("activate", "on")],
        )
        .await;
    assert_eq!(generated.status, 303);
    assert_eq!(browser.post("/admin/keys/rotate/", &[]).await.status, 303);
    let out = run(portcullis(db, &["keys", "generate", "--alg", "HS256"]), "").await;
    assert_eq!(out.code, 0, "{}", out.stderr);

    let (root_refresh, root_access) = app.login("root", "staff-pass").await;
    let reply = app
        .post_bearer(
            &format!("/api/admin/users/{}/deactivate/", ivy.id),
            &root_access,
            json!({}),
        )
        .await;
    assert_eq!(reply.status, 204);

    let actions: Vec<String> = entries(&app).await.into_iter().map(|e| e.1).collect();
    assert_eq!(
        actions,
        [
            "user.create",
            "user.set_password",
            "user.set_password",
            "key.generate",
            "key.rotate",
            "key.generate",
            "user.deactivate"
        ]
    );

    let mut secrets: Vec<String> = [
        CONSOLE_PASSWORD,
        CLI_PASSWORD,
        CLI_PASSWORD_2,
        "staff-pass",
        "$argon2",
        &ivy_refresh,
        &ivy_access,
        &root_refresh,
        &root_access,
        crate::helpers::SIGNING_KEY,
    ]
    .map(str::to_owned)
    .to_vec();
    // Each token's signature alone, too.
    for token in [&ivy_refresh, &ivy_access, &root_refresh, &root_access] {
        secrets.push(token.rsplit('.').next().unwrap().to_owned());
    }
    // The keys' private material: the whole PEM, and each line of its body
    // (an HMAC secret is one line).
    let private = strings(&app, "SELECT private_key FROM signing_keys").await;
    assert_eq!(private.len(), 3, "the three generated keys");
    for key in private {
        for line in key
            .lines()
            .filter(|l| !l.starts_with("-----") && l.len() >= 16)
        {
            secrets.push(line.to_owned());
        }
        secrets.push(key);
    }
    let hashes = strings(&app, "SELECT password FROM users").await;
    secrets.extend(hashes);

    let table = audit_table(&app).await;
    assert_eq!(table.len(), 7);
    let listed = run(portcullis(db, &["audit", "list", "--json"]), "").await;
    let exported = run(portcullis(db, &["audit", "export"]), "").await;
    assert_eq!(listed.stdout.lines().count(), 7);
    assert_eq!(exported.stdout.lines().count(), 7);
    let page = browser.get("/admin/audit/").await;
    assert_eq!(page.status, 200);
    for (place, text) in [
        ("the audit table", table.join("\n")),
        ("audit list --json", listed.stdout),
        ("audit export", exported.stdout),
        ("the console's audit page", page.body),
    ] {
        for secret in &secrets {
            assert!(
                !text.contains(secret.as_str()),
                "{secret:?} reached {place}"
            );
        }
    }
}

crate::both_backends!(
    console_update_and_session_end,
    staff_api_end_all_and_delete,
    import_django_is_recorded,
    failed_changes_record_nothing,
    no_secret_reaches_the_trail,
);

/// The SQL helper in `console.rs` writes; this one only reads. Both run on
/// a connection of their own, as another process would.
#[tokio::test]
async fn the_table_dump_sees_every_column() {
    let app = TestApp::spawn(Backend::Sqlite, "").await;
    sql(
        &app,
        "INSERT INTO audit_log (at, actor_kind, actor_name, actor_id, action, target_id, target_name, detail, address) \
         VALUES (7, 'staff', 'a', 1, 'user.update', 2, 'b', 'c', '10.0.0.1')",
    )
    .await;
    assert_eq!(
        audit_table(&app).await,
        ["staff|a|1|user.update|2|b|c|10.0.0.1|7"]
    );
}
