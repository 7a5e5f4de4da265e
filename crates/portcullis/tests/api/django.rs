//! Moving over from Django (issue 8): `portcullis import django` through the
//! real binary, from the fixture database Django wrote and from its
//! `dumpdata`, each run twice; then logins with every imported hash format
//! (rehashed to Argon2id), tokens that simplejwt itself signed, Django's
//! blacklist, and the cost caps. The Django database is read both as SQLite
//! and as PostgreSQL (the same rows, replayed from `django.postgres.sql`). See
//! `fixtures/django/make_fixture.py` and `make_postgres_fixture.py`.

use std::process::Command;

use portcullis_core::{ImportedUser, NewUser, OutstandingToken, Upserted, Username};
use serde_json::{Value, json};
use sqlx::Connection as _;

use crate::both_backends;
use crate::helpers::{Backend, TestApp, TestDatabase, claims};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/django");

/// `tokens.json`: the `SECRET_KEY`, the users' passwords, the tokens Django issued.
fn fixture() -> Value {
    let text = std::fs::read_to_string(format!("{FIXTURE}/tokens.json")).expect("tokens.json");
    serde_json::from_str(&text).expect("tokens.json is JSON")
}

fn token(name: &str, kind: &str) -> String {
    fixture()["tokens"][name][kind]
        .as_str()
        .unwrap_or_else(|| panic!("no {kind} token for {name}"))
        .to_owned()
}

/// A server that signs with the Django project's `SECRET_KEY`, as a
/// migrating deployment configures it.
async fn spawn(backend: Backend) -> TestApp {
    let db = TestDatabase::new(backend).await;
    let secret = fixture()["secret_key"].as_str().unwrap().to_owned();
    let toml = format!(
        "bind = \"127.0.0.1:0\"\ndatabase_url = \"{}\"\nsigning_key = \"{secret}\"\nlog = \"warn\"\n\
         password_hash_memory_kib = 64\npassword_hash_iterations = 1\n",
        db.url
    );
    TestApp::spawn_with(db, &toml).await
}

/// Run `portcullis import django ARGS` against the app's database.
fn import(app: &TestApp, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["import", "django"])
        .args(args)
        .env("PORTCULLIS_DATABASE_URL", &app.db.url)
        .env("PORTCULLIS_PASSWORD_HASH_MEMORY_KIB", "64")
        .env("PORTCULLIS_PASSWORD_HASH_ITERATIONS", "1")
        .env("PORTCULLIS_LOG", "error")
        .env_remove("PORTCULLIS_CONFIG")
        .output()
        .expect("run portcullis");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

const SKIPPED: &str = r#"  skipped user 10 "john doe": invalid username: the username contains ' '; only letters, digits and @ . + - _ are allowed
  skipped user 11 "ivan": password hash cannot be used: unsupported Django password hasher: crypt (Django's CryptPasswordHasher, removed in Django 5.0, stored the host's crypt(3) output, usually DES; no maintained pure-Rust crypt(3) exists, so these users must reset their passwords)
  skipped user 12 "mallory": password hash cannot be used: pbkdf2_sha256 hash asks for iterations = 4000000000, above the configured limit of 10000000; raise CostLimits if this hash is genuine
"#;

/// Import twice: the first run inserts, the second updates, nothing doubles.
async fn import_twice(app: &TestApp, args: &[&str]) {
    let (code, first, stderr) = import(app, args);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        first,
        format!(
            "Users: 9 imported, 0 updated, 3 skipped.\n{SKIPPED}Tokens: 7 imported, 0 updated (1 blacklisted), 0 expired left behind.\n"
        )
    );
    // No terminal, no progress counter.
    assert!(!stderr.contains('\r'), "{stderr:?}");
    let (code, second, stderr) = import(app, args);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        second,
        format!(
            "Users: 0 imported, 9 updated, 3 skipped.\n{SKIPPED}Tokens: 0 imported, 7 updated (1 blacklisted), 0 expired left behind.\n"
        )
    );
    let users = app.auth.user_store().list_users().await.unwrap();
    let names: Vec<(i64, &str)> = users.iter().map(|u| (u.id, u.username.as_str())).collect();
    assert_eq!(
        names,
        [
            (1, "alice"),
            (2, "bob"),
            (3, "carol"),
            (4, "dave"),
            (5, "erin"),
            (6, "frank"),
            (7, "grace"),
            (8, "henry"),
            (9, "zoë")
        ]
    );
    let henry = &users[7];
    assert!(henry.is_staff && henry.is_superuser && henry.is_active);
    assert!(!users[6].is_active, "grace is inactive in Django");
    assert_eq!(users[0].email, "alice@example.com");
    // Django wrote every row at 2026-11-23 20:39:12.xxx UTC, whatever the column type.
    for user in &users {
        assert_eq!(
            (user.date_joined, user.last_login),
            (1_795_466_352, None),
            "{}",
            user.username
        );
    }
}

async fn login(app: &TestApp, username: &str, password: &str) -> crate::helpers::Reply {
    app.post(
        "/api/token/",
        json!({"username": username, "password": password}),
    )
    .await
}

const NO_ACCOUNT: &str = r#"{"detail":"No active account found with the given credentials"}"#;
const BLACKLISTED: &str = r#"{"detail":"Token is blacklisted","code":"token_not_valid"}"#;

/// Every hash format Django wrote logs in and becomes Argon2id.
async fn every_format_logs_in_and_is_rehashed(app: &TestApp) {
    let fixture = fixture();
    let store = app.auth.user_store();
    for (name, algorithm) in [
        ("alice", "pbkdf2_sha256"),
        ("bob", "argon2"),
        ("carol", "bcrypt_sha256"),
        ("dave", "scrypt"),
        ("erin", "md5"),
        ("henry", "pbkdf2_sha1"),
        ("zoë", "bcrypt"),
    ] {
        let user = &fixture["users"][name];
        assert_eq!(user["algorithm"], algorithm);
        let id = user["id"].as_i64().unwrap();
        let before = store.user_by_id(id).await.unwrap().unwrap().password;
        assert!(before.starts_with(&format!("{algorithm}$")), "{name}");
        let password = user["password"].as_str().unwrap();
        let wrong = login(app, name, &format!("{password}x")).await;
        assert_eq!(
            (wrong.status, wrong.body.as_str()),
            (401, NO_ACCOUNT),
            "{name}"
        );
        assert_eq!(
            store.user_by_id(id).await.unwrap().unwrap().password,
            before
        );
        let (refresh, access) = app.login(name, password).await;
        assert_eq!(claims(&refresh)["user_id"], json!(id.to_string()), "{name}");
        let me = app.get("/api/users/me/", Some(&access)).await;
        assert_eq!(me.status, 200, "{name}: {}", me.body);
        assert_eq!(me.json["username"], name);
        let after = store.user_by_id(id).await.unwrap().unwrap().password;
        assert!(
            after.starts_with("$argon2id$v=19$m=64,t=1,p=1$"),
            "{name}: {after}"
        );
        // The new hash takes the same password, and no longer asks for a rehash.
        let (_, _) = app.login(name, password).await;
        assert_eq!(store.user_by_id(id).await.unwrap().unwrap().password, after);
    }
    // Inactive in Django, inactive here; unusable passwords never match.
    let grace = login(app, "grace", "grace-inactive-pw").await;
    assert_eq!((grace.status, grace.body.as_str()), (401, NO_ACCOUNT));
    let frank = login(app, "frank", "!").await;
    assert_eq!((frank.status, frank.body.as_str()), (401, NO_ACCOUNT));
    let skipped = login(app, "john doe", "john-pw").await;
    assert_eq!((skipped.status, skipped.body.as_str()), (401, NO_ACCOUNT));
}

/// A re-run after the switch keeps the Argon2id hashes made at login and
/// the newer `last_login`: it cannot undo what happened in portcullis.
async fn reimport_keeps_what_portcullis_learned(app: &TestApp, args: &[&str]) {
    let store = app.auth.user_store();
    let alice_id = fixture()["users"]["alice"]["id"].as_i64().unwrap();
    let before = store.user_by_id(alice_id).await.unwrap().unwrap();
    assert!(before.password.starts_with("$argon2id$"));
    store
        .update_last_login(alice_id, 4_000_000_000)
        .await
        .unwrap();
    let (code, _, stderr) = import(app, args);
    assert_eq!(code, 0, "{stderr}");
    let after = store.user_by_id(alice_id).await.unwrap().unwrap();
    assert_eq!(after.password, before.password);
    assert_eq!(after.last_login, Some(4_000_000_000));
    let password = fixture()["users"]["alice"]["password"]
        .as_str()
        .unwrap()
        .to_owned();
    app.login("alice", &password).await;
}

/// Tokens simplejwt signed keep working; its blacklist holds.
async fn django_tokens_keep_working(app: &TestApp) {
    for name in ["carol", "zoë", "alice_int_user_id"] {
        let refreshed = app
            .post(
                "/api/token/refresh/",
                json!({"refresh": token(name, "refresh")}),
            )
            .await;
        assert_eq!(refreshed.status, 200, "{name}: {}", refreshed.body);
        let access = refreshed.json["access"].as_str().unwrap();
        let me = app.get("/api/users/me/", Some(access)).await;
        assert_eq!(me.status, 200, "{name}: {}", me.body);
        // Django's own access token, too.
        let me = app
            .get("/api/users/me/", Some(&token(name, "access")))
            .await;
        assert_eq!(me.status, 200, "{name}: {}", me.body);
    }
    // simplejwt ≤ 5.4 wrote integer ids; both name the same user.
    assert_eq!(
        claims(&token("alice_int_user_id", "access"))["user_id"],
        json!(1)
    );
    let me = app
        .get(
            "/api/users/me/",
            Some(&token("alice_int_user_id", "access")),
        )
        .await;
    assert_eq!(
        me.body,
        r#"{"id":1,"username":"alice","email":"alice@example.com"}"#
    );
    // Logged out in Django: still logged out.
    let revoked = app
        .post(
            "/api/token/refresh/",
            json!({"refresh": token("dave_blacklisted", "refresh")}),
        )
        .await;
    assert_eq!((revoked.status, revoked.body.as_str()), (401, BLACKLISTED));
    let again = app
        .post(
            "/api/token/blacklist/",
            json!({"refresh": token("dave_blacklisted", "refresh")}),
        )
        .await;
    assert_eq!((again.status, again.body.as_str()), (401, BLACKLISTED));
    // A token of a user that was not imported names nobody.
    let orphan = app
        .post(
            "/api/token/refresh/",
            json!({"refresh": token("john_doe", "refresh")}),
        )
        .await;
    assert_eq!(
        (orphan.status, orphan.body.as_str()),
        (
            401,
            r#"{"detail":"No active account found for the given token."}"#
        )
    );
}

/// Django gave out ids up to 13 (the last user was deleted): new accounts
/// start after it, so a token of the deleted user can never name them.
async fn ids_django_used_are_never_reused(app: &TestApp) {
    let user = app.user("newcomer", "newcomer-pw", true, false).await;
    assert_eq!(user.id, 14);
}

async fn import_from_the_django_database(backend: Backend) {
    let app = spawn(backend).await;
    let url = format!("sqlite://{FIXTURE}/django.sqlite3");
    import_twice(&app, &["--from", &url]).await;
    every_format_logs_in_and_is_rehashed(&app).await;
    reimport_keeps_what_portcullis_learned(&app, &["--from", &url]).await;
    django_tokens_keep_working(&app).await;
    ids_django_used_are_never_reused(&app).await;
}

/// A fresh PostgreSQL database holding `django.postgres.sql`: the SQLite
/// fixture's rows as Django's `migrate` lays them out there.
async fn django_postgres_source() -> TestDatabase {
    let source = TestDatabase::new(Backend::Postgres).await;
    let mut conn = sqlx::PgConnection::connect(&source.url)
        .await
        .expect("connect to the Django source database");
    sqlx::raw_sql(include_str!("../fixtures/django/django.postgres.sql"))
        .execute(&mut conn)
        .await
        .expect("load django.postgres.sql");
    conn.close().await.ok();
    source
}

/// The same Django data in PostgreSQL, as `migrate` made it: `timestamptz`
/// datetimes, `integer` ids, and an identity sequence ahead of `MAX(id)`.
async fn import_from_a_django_postgres_database(backend: Backend) {
    let source = django_postgres_source().await;
    let app = spawn(backend).await;
    import_twice(&app, &["--from", &source.url]).await;
    every_format_logs_in_and_is_rehashed(&app).await;
    reimport_keeps_what_portcullis_learned(&app, &["--from", &source.url]).await;
    django_tokens_keep_working(&app).await;
    ids_django_used_are_never_reused(&app).await;
}

/// The usual read-only role (`GRANT SELECT ON ALL TABLES`) cannot read the
/// id sequence: the import stops and names the missing grant rather than
/// fall back to `MAX(id)` and later hand the deleted user's id to someone new.
async fn a_read_only_role_needs_the_id_sequence(backend: Backend) {
    let source = django_postgres_source().await;
    let role = format!(
        "portcullis_test_ro_{}_{}",
        std::process::id(),
        matches!(backend, Backend::Postgres)
    );
    let mut conn = sqlx::PgConnection::connect(&source.url).await.unwrap();
    // Roles left by test processes that panicked before their cleanup.
    let stale: Vec<String> = sqlx::query_scalar(
        "SELECT rolname FROM pg_roles WHERE rolname LIKE 'portcullis\\_test\\_ro\\_%'",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    for name in stale {
        let pid = name.split('_').nth(3).unwrap_or_default();
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let sql = format!("DROP ROLE IF EXISTS {name}");
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&mut conn)
                .await
                .ok();
        }
    }
    for sql in [
        format!("DROP ROLE IF EXISTS {role}"),
        format!("CREATE ROLE {role} LOGIN"),
        format!("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    let (base, rest) = source.url.split_once("://").unwrap();
    let (_, host_and_db) = rest.split_once('@').unwrap_or(("", rest));
    let url = format!("{base}://{role}@{host_and_db}");

    let app = spawn(backend).await;
    let (code, stdout, stderr) = import(&app, &["--from", &url]);
    assert_eq!((code, stdout.as_str()), (1, ""), "{stderr}");
    assert_eq!(
        stderr,
        format!(
            "error: database error: permission denied for sequence auth_user_id_seq: portcullis reads it to learn the highest user id Django ever generated (deleted users included) and never give it out again; run GRANT SELECT ON SEQUENCE public.auth_user_id_seq TO {role}\n"
        )
    );
    assert!(app.auth.user_store().list_users().await.unwrap().is_empty());

    let grant = format!("GRANT SELECT ON SEQUENCE public.auth_user_id_seq TO {role}");
    sqlx::query(sqlx::AssertSqlSafe(grant))
        .execute(&mut conn)
        .await
        .unwrap();
    import_twice(&app, &["--from", &url]).await;
    ids_django_used_are_never_reused(&app).await;

    // Roles are global to the server: remove it before the database goes.
    for sql in [format!("DROP OWNED BY {role}"), format!("DROP ROLE {role}")] {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    conn.close().await.ok();
}

async fn import_from_dumpdata(backend: Backend) {
    let app = spawn(backend).await;
    let path = format!("{FIXTURE}/dumpdata.json");
    import_twice(&app, &["--from-json", &path]).await;
    let (refresh, _) = app.login("dave", "dave-scrypt-pw").await;
    assert_eq!(claims(&refresh)["user_id"], "4");
    django_tokens_keep_working(&app).await;
    // dumpdata does not carry the deleted user's id: the highest kept one is reserved.
    assert_eq!(
        app.user("newcomer", "newcomer-pw", true, false).await.id,
        13
    );
}

/// A row an attacker wrote (4e9 PBKDF2 iterations) is refused unverified:
/// the login fails at once instead of burning the CPU for minutes.
async fn cost_caps_refuse_a_hostile_hash(backend: Backend) {
    let app = spawn(backend).await;
    let user = app.user("victim", "password", true, false).await;
    let hostile = "pbkdf2_sha256$4000000000$seasalt1234567890abcde$iJXqWb58pYVmtwDUMmjHYocr95POBFCKvDBnKmocqUU=";
    let store = app.auth.user_store();
    assert!(store.set_password(user.id, hostile).await.unwrap());
    let started = std::time::Instant::now();
    let reply = login(&app, "victim", "password").await;
    assert_eq!((reply.status, reply.body.as_str()), (401, NO_ACCOUNT));
    // Not a timing assertion on speed, only a guard against hashing at all:
    // 4e9 iterations would take well over ten minutes.
    assert!(started.elapsed().as_secs() < 60);
    assert_eq!(
        store.user_by_id(user.id).await.unwrap().unwrap().password,
        hostile
    );
    // Under the caps, the same format is verified.
    let sane =
        "pbkdf2_sha256$260000$seasalt1234567890abcde$I2WehpkXUMFZ+G4aVfMTStWMthDl6qThiw4pLtJbD38=";
    assert!(store.set_password(user.id, sane).await.unwrap());
    app.login("victim", "password").await;
}

/// The store methods the import uses, on both backends.
async fn store_upserts_keep_ids_and_blacklists(backend: Backend) {
    let app = spawn(backend).await;
    let store = app.auth.user_store();
    let account = |name: &str, active: bool| NewUser {
        username: Username::parse(name).unwrap(),
        email: String::new(),
        password_hash: "!".to_owned(),
        is_active: active,
        is_staff: false,
        is_superuser: false,
        date_joined: 1_700_000_000,
    };
    let imported = ImportedUser {
        id: 500,
        account: account("imported", true),
        last_login: Some(1_700_000_100),
    };
    assert_eq!(
        store.upsert_user_with_id(&imported).await.unwrap(),
        Upserted::Inserted
    );
    let again = ImportedUser {
        account: account("renamed", false),
        ..imported.clone()
    };
    assert_eq!(
        store.upsert_user_with_id(&again).await.unwrap(),
        Upserted::Updated
    );
    let stored = store.user_by_id(500).await.unwrap().unwrap();
    assert_eq!(
        (
            stored.username.as_str(),
            stored.is_active,
            stored.last_login
        ),
        ("renamed", false, Some(1_700_000_100))
    );
    // Another id with a taken name is a conflict, not an overwrite.
    let clash = ImportedUser {
        id: 501,
        account: account("renamed", true),
        last_login: None,
    };
    assert!(matches!(
        store.upsert_user_with_id(&clash).await,
        Err(portcullis_core::StoreError::Conflict(_))
    ));
    // Generated ids go past imported and reserved ones, and never back.
    assert_eq!(
        store.create_user(&account("next", true)).await.unwrap().id,
        501
    );
    store.reserve_user_ids(900).await.unwrap();
    store.reserve_user_ids(10).await.unwrap();
    assert_eq!(
        store.create_user(&account("later", true)).await.unwrap().id,
        901
    );

    let tokens = app.auth.token_store();
    let token = OutstandingToken {
        jti: "a".repeat(32),
        user_id: Some(500),
        created_at: Some(1),
        expires_at: i64::from(u32::MAX),
    };
    assert_eq!(
        tokens.upsert_outstanding(&token, Some(5)).await.unwrap(),
        Upserted::Inserted
    );
    assert!(tokens.is_blacklisted(&token.jti).await.unwrap());
    // A re-run without the blacklisting does not undo it.
    assert_eq!(
        tokens.upsert_outstanding(&token, None).await.unwrap(),
        Upserted::Updated
    );
    assert!(tokens.is_blacklisted(&token.jti).await.unwrap());
    // An unknown user is kept as none, as simplejwt's foreign key would.
    let orphan = OutstandingToken {
        jti: "b".repeat(32),
        user_id: Some(4242),
        ..token
    };
    assert_eq!(
        tokens.upsert_outstanding(&orphan, None).await.unwrap(),
        Upserted::Inserted
    );
    assert!(!tokens.is_blacklisted(&orphan.jti).await.unwrap());
}

both_backends!(
    import_from_the_django_database,
    import_from_a_django_postgres_database,
    a_read_only_role_needs_the_id_sequence,
    import_from_dumpdata,
    cost_caps_refuse_a_hostile_hash,
    store_upserts_keep_ids_and_blacklists,
);
