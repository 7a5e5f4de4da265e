//! The store suite: the storage contract (`portcullis_core::store`, one
//! trait per aggregate) checked against both backends directly, without
//! the HTTP layer: one test body per group of methods, run on SQLite (a
//! temporary file) and on PostgreSQL, asserting exact values.
//!
//! PostgreSQL runs for real at `PORTCULLIS_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`), one fresh database per test;
//! an unreachable server fails the test, it is never skipped.
//!
//! The batched rotations of SQLite (`src/sqlite/rotation.rs`) are checked against the
//! statement-by-statement path they replace: the same rotations, concurrent
//! and sequential, through a store that batches and one that never does,
//! give the same answers and leave the same rows (every column of
//! `outstanding_tokens` and `sessions`). The grace window for a repeated
//! rotation is not the store's: the store answers `AlreadyRotated` with
//! when and into what, and the flows (`portcullis-core`'s
//! `service/refresh.rs`) decide; `tests/api/sessions.rs` checks that over
//! HTTP.

// Test code: a failed unwrap is a failed test, which is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::atomic::{AtomicUsize, Ordering};

use portcullis_core::{
    Client, ImportedUser, KeyStore as _, LoginFailures, NewUser, OutstandingToken, Revocations,
    RotationClaim, Session, SessionStore as _, Store as _, StoreError, Successor,
    ThrottleStore as _, TokenStore as _, Upserted, User, UserDirectory as _, UserQuery,
    UserStore as _, Username,
};
use portcullis_store::SqlStore;
use portcullis_token::StoredKey;
use sqlx::Connection as _;

/// A fresh, empty database of one backend, removed when dropped.
struct Database {
    url: String,
    _dir: Option<tempfile::TempDir>,
    postgres: Option<(String, String)>,
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

impl Database {
    async fn new(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                Self {
                    url: format!("sqlite://{}", dir.path().join("store.sqlite3").display()),
                    _dir: Some(dir),
                    postgres: None,
                }
            }
            Backend::Postgres => {
                let admin = std::env::var("PORTCULLIS_TEST_POSTGRES_URL")
                    .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
                let name = format!(
                    "portcullis_store_{}_{}",
                    std::process::id(),
                    COUNTER.fetch_add(1, Ordering::Relaxed)
                );
                let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap_or_else(|e| {
                    panic!("PostgreSQL at {admin} (PORTCULLIS_TEST_POSTGRES_URL) is unreachable: {e}")
                });
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
                    .execute(&mut conn)
                    .await
                    .unwrap();
                conn.close().await.ok();
                let (base, _) = admin.rsplit_once('/').unwrap();
                Self {
                    url: format!("{base}/{name}"),
                    _dir: None,
                    postgres: Some((admin.clone(), name)),
                }
            }
        }
    }

    async fn store(&self) -> SqlStore {
        SqlStore::connect(&self.url).await.unwrap()
    }

    async fn drop_database(self) {
        if let Some((admin, name)) = &self.postgres
            && let Ok(mut conn) = sqlx::PgConnection::connect(admin).await
        {
            let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&mut conn)
                .await
                .ok();
        }
    }
}

/// `name::sqlite` and `name::postgres` from `async fn name(&SqlStore, &Database)`.
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                use super::*;
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    run(Backend::Sqlite, super::$name).await;
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    run(Backend::Postgres, super::$name).await;
                }
            }
        )*
    };
}

async fn run<F>(backend: Backend, test: impl FnOnce(SqlStore, String) -> F)
where
    F: Future<Output = ()>,
{
    let db = Database::new(backend).await;
    let store = db.store().await;
    test(store.clone(), db.url.clone()).await;
    store.close().await;
    db.drop_database().await;
}

fn new_user(name: &str) -> NewUser {
    NewUser {
        username: Username::parse(name).unwrap(),
        email: format!("{name}@example.com"),
        password_hash: "!".to_owned(),
        is_active: true,
        is_staff: false,
        is_superuser: false,
        date_joined: 1_700_000_000,
    }
}

fn token(jti: &str, user: Option<&User>, expires_at: i64) -> OutstandingToken {
    OutstandingToken {
        jti: jti.to_owned(),
        user_id: user.map(|u| u.id),
        created_at: Some(1_700_000_000),
        expires_at,
    }
}

const LATER: i64 = 4_000_000_000;

/// Whether the database answers (`Store::ping`, `/readyz`).
async fn ping(store: SqlStore, _url: String) {
    store.ping().await.unwrap();
    assert!(matches!(store.backend(), "sqlite" | "postgres"));
}

/// The account `new_user(name)` becomes, with the id the store gave it.
fn stored(id: i64, name: &str) -> User {
    User {
        id,
        username: name.to_owned(),
        email: format!("{name}@example.com"),
        password: "!".to_owned(),
        is_active: true,
        is_staff: false,
        is_superuser: false,
        date_joined: 1_700_000_000,
        last_login: None,
    }
}

/// Accounts (`UserStore`): create, conflict, read, change, delete.
async fn users(store: SqlStore, _url: String) {
    let alice = store.create_user(&new_user("alice")).await.unwrap();
    assert_eq!(alice, stored(alice.id, "alice"));
    match store.create_user(&new_user("alice")).await {
        Err(StoreError::Conflict(message)) => {
            assert_eq!(message, "a user named \"alice\" already exists");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        store.user_by_id(alice.id).await.unwrap(),
        Some(alice.clone())
    );
    assert_eq!(
        store.user_by_username("alice").await.unwrap(),
        Some(alice.clone())
    );
    assert_eq!(store.user_by_username("Alice").await.unwrap(), None);
    assert!(store.set_active(alice.id, false).await.unwrap());
    assert!(store.set_password(alice.id, "new-hash").await.unwrap());
    store
        .update_last_login(alice.id, 1_700_000_100)
        .await
        .unwrap();
    assert_eq!(
        store.user_by_id(alice.id).await.unwrap(),
        Some(User {
            is_active: false,
            password: "new-hash".to_owned(),
            last_login: Some(1_700_000_100),
            ..alice.clone()
        })
    );
    assert!(!store.set_active(alice.id + 100, true).await.unwrap());
    assert!(!store.set_password(alice.id + 100, "x").await.unwrap());
    assert!(store.delete_user(alice.id).await.unwrap());
    assert!(!store.delete_user(alice.id).await.unwrap());
    assert_eq!(store.user_by_id(alice.id).await.unwrap(), None);
    let bob = store.create_user(&new_user("bob")).await.unwrap();
    assert!(bob.id > alice.id, "ids are never handed out again");
    let carol = store.create_user(&new_user("carol")).await.unwrap();
    assert_eq!(
        store.list_users().await.unwrap(),
        [stored(bob.id, "bob"), stored(carol.id, "carol")]
    );
}

/// Imports (`UserStore::upsert_user_with_id`, `reserve_user_ids`): ids
/// kept, re-runs never undo a managed password or a later login, and ids
/// generated afterwards come after every imported or reserved one.
async fn imports(store: SqlStore, _url: String) {
    let imported = |id: i64, name: &str, hash: &str, last_login| ImportedUser {
        id,
        account: NewUser {
            password_hash: hash.to_owned(),
            ..new_user(name)
        },
        last_login,
    };
    assert_eq!(
        store
            .upsert_user_with_id(&imported(500, "dora", "pbkdf2_sha256$1$a$b", Some(10)))
            .await
            .unwrap(),
        Upserted::Inserted
    );
    assert_eq!(
        store.user_by_id(500).await.unwrap(),
        Some(User {
            password: "pbkdf2_sha256$1$a$b".to_owned(),
            last_login: Some(10),
            ..stored(500, "dora")
        })
    );
    // A password portcullis manages now (rehashed at a login) is kept, and
    // an older last login does not overwrite a newer one.
    assert!(store.set_password(500, "$argon2id$v=19$new").await.unwrap());
    store.update_last_login(500, 20).await.unwrap();
    assert_eq!(
        store
            .upsert_user_with_id(&imported(500, "dora", "pbkdf2_sha256$1$a$c", Some(15)))
            .await
            .unwrap(),
        Upserted::Updated
    );
    let dora = store.user_by_id(500).await.unwrap().unwrap();
    assert_eq!(
        (dora.password.as_str(), dora.last_login),
        ("$argon2id$v=19$new", Some(20))
    );
    // A Django hash is replaced by a re-run (it was never rehashed here).
    assert_eq!(
        store
            .upsert_user_with_id(&imported(501, "eve", "pbkdf2_sha256$1$a$b", None))
            .await
            .unwrap(),
        Upserted::Inserted
    );
    store
        .upsert_user_with_id(&imported(501, "eve", "pbkdf2_sha256$1$a$d", Some(30)))
        .await
        .unwrap();
    let eve = store.user_by_id(501).await.unwrap().unwrap();
    assert_eq!(
        (eve.password.as_str(), eve.last_login),
        ("pbkdf2_sha256$1$a$d", Some(30))
    );
    match store
        .upsert_user_with_id(&imported(502, "dora", "!", None))
        .await
    {
        Err(StoreError::Conflict(message)) => {
            assert_eq!(
                message,
                "the username \"dora\" belongs to another account here"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(store.user_by_id(502).await.unwrap(), None);
    assert_eq!(store.create_user(&new_user("fred")).await.unwrap().id, 502);
    // Reserving never moves the next id backwards.
    store.reserve_user_ids(900).await.unwrap();
    store.reserve_user_ids(700).await.unwrap();
    assert_eq!(store.create_user(&new_user("gina")).await.unwrap().id, 901);
}

/// A change of an account made through another handle (another process)
/// moves `account_changes`; a write that is no account's does not have to.
async fn account_changes_move_for_changes_elsewhere(store: SqlStore, url: String) {
    let alice = store.create_user(&new_user("alice")).await.unwrap();
    let elsewhere = SqlStore::connect(&url).await.unwrap();
    for change in 0..3 {
        let before = store.account_changes();
        match change {
            0 => assert!(elsewhere.set_active(alice.id, false).await.unwrap()),
            1 => assert!(elsewhere.set_password(alice.id, "x").await.unwrap()),
            _ => assert!(elsewhere.delete_user(alice.id).await.unwrap()),
        }
        // PostgreSQL: the notification arrives a few milliseconds after
        // the commit.
        let started = std::time::Instant::now();
        while store.account_changes() == before {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(2),
                "change {change} was never seen"
            );
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
    }
    elsewhere.close().await;
}

/// Outstanding tokens and the blacklist (`TokenStore`): exactly one caller
/// blacklists, imports never undo a blacklisting, the flush removes what
/// expired (sessions included) and counts the tokens.
async fn tokens(store: SqlStore, url: String) {
    let alice = store.create_user(&new_user("alice")).await.unwrap();
    let live = token("live", Some(&alice), LATER);
    store.record_outstanding(&live).await.unwrap();
    store.record_outstanding(&live).await.unwrap();
    assert!(!store.is_blacklisted("live").await.unwrap());
    assert!(!store.is_blacklisted("never-seen").await.unwrap());
    assert!(store.blacklist(&live, 1_700_000_001).await.unwrap());
    assert!(!store.blacklist(&live, 1_700_000_002).await.unwrap());
    assert!(store.is_blacklisted("live").await.unwrap());
    // Never seen before: recorded, then blacklisted; an unknown user is
    // kept as none, as a foreign key must.
    let stranger = OutstandingToken {
        user_id: Some(alice.id + 100),
        ..token("new", None, LATER)
    };
    assert!(store.blacklist(&stranger, 1).await.unwrap());
    assert!(store.is_blacklisted("new").await.unwrap());
    // A re-import never undoes a blacklisting.
    assert_eq!(
        store.upsert_outstanding(&live, None).await.unwrap(),
        Upserted::Updated
    );
    assert!(store.is_blacklisted("live").await.unwrap());
    assert_eq!(
        store
            .upsert_outstanding(&token("imported", None, 10), Some(5))
            .await
            .unwrap(),
        Upserted::Inserted
    );
    assert!(store.is_blacklisted("imported").await.unwrap());
    store
        .start_session(
            &Session {
                expires_at: 10,
                ..session("short", &alice)
            },
            &token("short", Some(&alice), 10),
        )
        .await
        .unwrap();
    let rows = dump(&url).await;
    assert_eq!(
        rows.tokens,
        [
            "imported user=None created=Some(1700000000) expires=10 blacklisted=Some(5) rotated=None successor=None family=None".to_owned(),
            format!("live user=Some({}) created=Some(1700000000) expires=4000000000 blacklisted=Some(1700000001) rotated=None successor=None family=None", alice.id),
            "new user=None created=Some(1700000000) expires=4000000000 blacklisted=Some(1) rotated=None successor=None family=None".to_owned(),
            format!("short user=Some({}) created=Some(1700000000) expires=10 blacklisted=None rotated=None successor=None family=Some(\"short\")", alice.id),
        ]
    );
    assert_eq!(store.flush_expired(9).await.unwrap(), 0);
    assert_eq!(store.flush_expired(10).await.unwrap(), 2);
    let rows = dump(&url).await;
    assert_eq!(rows.tokens.len(), 2);
    assert!(rows.tokens.iter().all(|row| !row.contains("expires=10 ")));
    assert_eq!(rows.sessions, Vec::<String>::new());
    assert!(!store.is_blacklisted("imported").await.unwrap());
    assert!(store.is_blacklisted("live").await.unwrap());
}

fn session(id: &str, user: &User) -> Session {
    Session {
        id: id.to_owned(),
        user_id: Some(user.id),
        created_at: 1_700_000_000,
        last_used_at: 1_700_000_000,
        expires_at: LATER,
        client: Client::new(Some("192.0.2.1".to_owned()), Some("suite")),
    }
}

/// Sessions (`SessionStore` but the rotation): start, list, revoke,
/// logout-all and what other nodes reload.
async fn sessions(store: SqlStore, _url: String) {
    let alice = store.create_user(&new_user("alice")).await.unwrap();
    let bob = store.create_user(&new_user("bob")).await.unwrap();
    for (n, id) in ["s1", "s2", "s3"].into_iter().enumerate() {
        let started = Session {
            created_at: 1_700_000_000 + i64::try_from(n).unwrap(),
            ..session(id, &alice)
        };
        store
            .start_session(&started, &token(id, Some(&alice), LATER))
            .await
            .unwrap();
    }
    store
        .start_session(&session("b1", &bob), &token("b1", Some(&bob), LATER))
        .await
        .unwrap();
    let at = |id: &str, created_at| Session {
        created_at,
        ..session(id, &alice)
    };
    // Newest first; expired sessions are not live.
    assert_eq!(
        store.live_sessions(alice.id, 1_700_000_001).await.unwrap(),
        [
            at("s3", 1_700_000_002),
            at("s2", 1_700_000_001),
            at("s1", 1_700_000_000)
        ]
    );
    assert_eq!(store.live_sessions(alice.id, LATER).await.unwrap(), []);
    assert!(store.revoke_session("s1", 1_700_000_010).await.unwrap());
    assert!(!store.revoke_session("s1", 1_700_000_011).await.unwrap());
    assert!(!store.revoke_session("none", 1_700_000_011).await.unwrap());
    assert!(store.is_blacklisted("s1").await.unwrap());
    let mut ended = store
        .end_sessions(alice.id, Some("s3"), 1_700_000_020)
        .await
        .unwrap();
    ended.sort();
    assert_eq!(ended, ["s2"]);
    assert!(store.is_blacklisted("s2").await.unwrap());
    assert!(!store.is_blacklisted("s3").await.unwrap());
    assert!(!store.is_blacklisted("b1").await.unwrap());
    assert_eq!(
        store.live_sessions(alice.id, 1_700_000_021).await.unwrap(),
        [at("s3", 1_700_000_002)]
    );
    assert_eq!(
        store.live_sessions(bob.id, 1_700_000_021).await.unwrap(),
        [session("b1", &bob)]
    );
    let mut revocations = store.revocations(1_700_000_010).await.unwrap();
    revocations.sessions.sort();
    assert_eq!(
        revocations,
        Revocations {
            sessions: vec![
                ("s1".to_owned(), 1_700_000_010),
                ("s2".to_owned(), 1_700_000_020)
            ],
            users_not_before: vec![(alice.id, 1_700_000_020)],
        }
    );
    // A later logout-all wins; an earlier one never moves it back.
    assert_eq!(
        store
            .end_sessions(alice.id, None, 1_700_000_015)
            .await
            .unwrap(),
        ["s3"]
    );
    assert_eq!(
        store.revocations(1_700_000_016).await.unwrap(),
        Revocations {
            sessions: vec![("s2".to_owned(), 1_700_000_020)],
            users_not_before: vec![(alice.id, 1_700_000_020)],
        }
    );
    assert_eq!(
        store.revocations(1_700_000_021).await.unwrap(),
        Revocations::default()
    );
}

/// The rotation step (`SessionStore::rotate_in_family`), one caller at a
/// time: a win records the successor in the family and touches the
/// session; a repeat is told when and into what (reuse detection); an
/// ended session or a blacklisted token is `Ended`, with nothing written.
async fn rotation(store: SqlStore, url: String) {
    let alice = store.create_user(&new_user("alice")).await.unwrap();
    let first = token("r0", Some(&alice), LATER - 10);
    store
        .start_session(&session("r0", &alice), &first)
        .await
        .unwrap();
    let phone = Client::new(Some("198.51.100.2".to_owned()), Some("phone"));
    let next = OutstandingToken {
        created_at: Some(1_700_000_100),
        ..token("r1", Some(&alice), LATER)
    };
    assert_eq!(
        store
            .rotate_in_family(&first, "r0", &next, 1_700_000_100, &phone)
            .await
            .unwrap(),
        RotationClaim::Won
    );
    let laptop = Client::new(Some("203.0.113.9".to_owned()), Some("laptop"));
    let again = token("r1-again", Some(&alice), LATER + 5);
    assert_eq!(
        store
            .rotate_in_family(&first, "r0", &again, 1_700_000_105, &laptop)
            .await
            .unwrap(),
        RotationClaim::AlreadyRotated {
            rotated_at: 1_700_000_100,
            successor: Successor {
                jti: "r1".to_owned(),
                created_at: 1_700_000_100,
                expires_at: LATER,
            },
        }
    );
    // The session was used last by the loser, and lives as long as its
    // newest refresh token.
    assert_eq!(
        store.live_sessions(alice.id, 1_700_000_200).await.unwrap(),
        [Session {
            last_used_at: 1_700_000_105,
            client: laptop.clone(),
            ..session("r0", &alice)
        }]
    );
    // A token from before sessions starts its family.
    let old = token("old", Some(&alice), LATER);
    assert_eq!(
        store
            .rotate_in_family(
                &old,
                "old",
                &token("old-1", Some(&alice), LATER),
                1_700_000_110,
                &phone
            )
            .await
            .unwrap(),
        RotationClaim::Won
    );
    // Reuse ends the session (the flows call revoke_session): every later
    // rotation in it is refused.
    assert!(store.revoke_session("r0", 1_700_000_120).await.unwrap());
    assert_eq!(
        store
            .rotate_in_family(
                &next,
                "r0",
                &token("r2", Some(&alice), LATER),
                1_700_000_130,
                &phone
            )
            .await
            .unwrap(),
        RotationClaim::Ended
    );
    // A blacklisted token is refused, though its family's session is
    // started (and touched) on the way, as for any token from before
    // sessions; the token itself stays outside the family.
    store
        .blacklist(&token("black", Some(&alice), LATER), 1_700_000_140)
        .await
        .unwrap();
    assert_eq!(
        store
            .rotate_in_family(
                &token("black", Some(&alice), LATER),
                "black",
                &token("black-1", Some(&alice), LATER),
                1_700_000_150,
                &phone
            )
            .await
            .unwrap(),
        RotationClaim::Ended
    );
    let id = alice.id;
    assert_eq!(
        dump(&url).await,
        Rows {
            tokens: vec![
                format!(
                    "black user=Some({id}) created=Some(1700000000) expires=4000000000 blacklisted=Some(1700000140) rotated=None successor=None family=None"
                ),
                format!(
                    "old user=Some({id}) created=Some(1700000000) expires=4000000000 blacklisted=None rotated=Some(1700000110) successor=Some((\"old-1\", 1700000000, 4000000000)) family=Some(\"old\")"
                ),
                format!(
                    "old-1 user=Some({id}) created=Some(1700000000) expires=4000000000 blacklisted=None rotated=None successor=None family=Some(\"old\")"
                ),
                format!(
                    "r0 user=Some({id}) created=Some(1700000000) expires=3999999990 blacklisted=Some(1700000120) rotated=Some(1700000100) successor=Some((\"r1\", 1700000100, 4000000000)) family=Some(\"r0\")"
                ),
                format!(
                    "r1 user=Some({id}) created=Some(1700000100) expires=4000000000 blacklisted=Some(1700000120) rotated=None successor=None family=Some(\"r0\")"
                ),
            ],
            sessions: vec![
                format!(
                    "black user=Some({id}) created=1700000150 used=1700000150 expires=4000000000 revoked=None client=Some(\"198.51.100.2\")/Some(\"phone\")"
                ),
                format!(
                    "old user=Some({id}) created=1700000110 used=1700000110 expires=4000000000 revoked=None client=Some(\"198.51.100.2\")/Some(\"phone\")"
                ),
                format!(
                    "r0 user=Some({id}) created=1700000000 used=1700000105 expires=4000000000 revoked=Some(1700000120) client=Some(\"203.0.113.9\")/Some(\"laptop\")"
                ),
            ],
        }
    );
}

/// Login throttling (`ThrottleStore`): the window restarts, blocks never
/// shorten, pruning keeps what still blocks or counts.
async fn throttle(store: SqlStore, _url: String) {
    assert_eq!(store.login_blocked_until("k").await.unwrap(), 0);
    let failures = |failures, window_start, blocked_until| LoginFailures {
        failures,
        window_start,
        blocked_until,
    };
    assert_eq!(
        store.record_login_failure("k", 100, 0).await.unwrap(),
        failures(1, 100, 0)
    );
    assert_eq!(
        store.record_login_failure("k", 200, 50).await.unwrap(),
        failures(2, 100, 0)
    );
    // The window that started at 100 is over by now.
    assert_eq!(
        store.record_login_failure("k", 300, 100).await.unwrap(),
        failures(1, 300, 0)
    );
    store.block_login("k", 1_000).await.unwrap();
    store.block_login("k", 500).await.unwrap();
    // Blocking a key without failures records nothing.
    store.block_login("other", 1_000).await.unwrap();
    assert_eq!(store.login_blocked_until("other").await.unwrap(), 0);
    assert_eq!(store.login_blocked_until("k").await.unwrap(), 1_000);
    assert_eq!(
        store.record_login_failure("k", 400, 100).await.unwrap(),
        failures(2, 300, 1_000)
    );
    assert_eq!(store.prune_login_failures(999, 10_000).await.unwrap(), 0);
    assert_eq!(store.prune_login_failures(1_000, 300).await.unwrap(), 0);
    assert_eq!(store.prune_login_failures(1_000, 10_000).await.unwrap(), 1);
    assert_eq!(store.login_blocked_until("k").await.unwrap(), 0);
    store.record_login_failure("k", 2_000, 0).await.unwrap();
    assert!(store.clear_login_failures("k").await.unwrap());
    assert!(!store.clear_login_failures("k").await.unwrap());
    assert_eq!(
        store.record_login_failure("k", 3_000, 0).await.unwrap(),
        failures(1, 3_000, 0)
    );
}

/// Server settings (`KeyStore::setting`, `init_setting`): the first value
/// wins.
async fn settings(store: SqlStore, _url: String) {
    assert_eq!(store.setting("a").await.unwrap(), None);
    assert_eq!(store.init_setting("a", "first").await.unwrap(), "first");
    assert_eq!(store.init_setting("a", "second").await.unwrap(), "first");
    assert_eq!(store.setting("a").await.unwrap().as_deref(), Some("first"));
    assert_eq!(store.setting("b").await.unwrap(), None);
}

/// The key set (`KeyStore`'s signing keys): oldest first, kids unique,
/// retiring never extends a key's life.
async fn keys(store: SqlStore, _url: String) {
    let key = |kid: &str, created_at| StoredKey {
        kid: kid.to_owned(),
        algorithm: "HS256".to_owned(),
        private_key: "k".repeat(32),
        public_key: None,
        created_at,
        activates_at: Some(created_at),
        retires_at: None,
    };
    assert_eq!(store.signing_keys().await.unwrap(), []);
    store.add_signing_key(&key("one", 10), None).await.unwrap();
    match store.add_signing_key(&key("one", 11), None).await {
        Err(StoreError::Conflict(message)) => {
            assert_eq!(message, "a key with kid \"one\" already exists");
        }
        other => panic!("{other:?}"),
    }
    let two = StoredKey {
        algorithm: "EdDSA".to_owned(),
        public_key: Some("public".to_owned()),
        activates_at: Some(30),
        ..key("two", 20)
    };
    store
        .add_signing_key(&two, Some(("one", 500)))
        .await
        .unwrap();
    assert!(store.retire_signing_key("one", 900).await.unwrap());
    assert!(!store.retire_signing_key("none", 900).await.unwrap());
    assert!(store.retire_signing_key("two", 800).await.unwrap());
    assert!(store.retire_signing_key("two", 700).await.unwrap());
    assert_eq!(
        store.signing_keys().await.unwrap(),
        [
            StoredKey {
                retires_at: Some(500),
                ..key("one", 10)
            },
            StoredKey {
                retires_at: Some(700),
                ..two
            }
        ]
    );
}

/// Every row of `outstanding_tokens` and `sessions`, one line each, by key.
#[derive(Debug, PartialEq, Eq)]
struct Rows {
    tokens: Vec<String>,
    sessions: Vec<String>,
}

type TokenRow = (
    String,
    Option<i64>,
    Option<i64>,
    i64,
    Option<i64>,
    Option<i64>,
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<String>,
);
type SessionRow = (
    String,
    Option<i64>,
    i64,
    i64,
    i64,
    Option<i64>,
    Option<String>,
    Option<String>,
);

const TOKEN_ROWS: &str = "SELECT jti, user_id, created_at, expires_at, blacklisted_at, rotated_at, \
     successor_jti, successor_created_at, successor_expires_at, family_id \
     FROM outstanding_tokens ORDER BY jti";
const SESSION_ROWS: &str = "SELECT id, user_id, created_at, last_used_at, expires_at, revoked_at, \
     ip_address, user_agent FROM sessions ORDER BY id";

/// The rows of the database at `url`, read apart from the store.
async fn dump(url: &str) -> Rows {
    // The same reads through each backend's own connection type.
    macro_rules! read {
        ($connection:ty) => {{
            let mut conn = <$connection>::connect(url).await.unwrap();
            let tokens: Vec<TokenRow> = sqlx::query_as(TOKEN_ROWS)
                .fetch_all(&mut conn)
                .await
                .unwrap();
            let sessions: Vec<SessionRow> = sqlx::query_as(SESSION_ROWS)
                .fetch_all(&mut conn)
                .await
                .unwrap();
            conn.close().await.unwrap();
            (tokens, sessions)
        }};
    }
    let (tokens, sessions) = if url.starts_with("sqlite:") {
        read!(sqlx::SqliteConnection)
    } else {
        read!(sqlx::PgConnection)
    };
    Rows {
        tokens: tokens
            .into_iter()
            .map(|(jti, user, created, expires, blacklisted, rotated, s_jti, s_created, s_expires, family)| {
                let successor = s_jti.map(|jti| (jti, s_created.unwrap_or(-1), s_expires.unwrap_or(-1)));
                format!("{jti} user={user:?} created={created:?} expires={expires} blacklisted={blacklisted:?} rotated={rotated:?} successor={successor:?} family={family:?}")
            })
            .collect(),
        sessions: sessions
            .into_iter()
            .map(|(id, user, created, used, expires, revoked, ip, agent)| {
                format!("{id} user={user:?} created={created} used={used} expires={expires} revoked={revoked:?} client={ip:?}/{agent:?}")
            })
            .collect(),
    }
}

/// One run of rotations: eight concurrent rotations of one token, then
/// concurrent rotations of eight sessions at once (several wins in one
/// batch, one of them repeated within it), a rotation of the winner's
/// successor, a token from before sessions (its family starts), a token of
/// an ended session, a blacklisted token, a repeat of the first (reuse),
/// and a rotation in the session that reuse ended. Returns every answer,
/// in a form that does not depend on which concurrent caller won, and
/// every row left.
async fn rotations(store: &SqlStore, url: &str) -> (Vec<String>, Rows) {
    let alice = store.create_user(&new_user("alice")).await.unwrap();
    let client = Client::new(Some("192.0.2.7".to_owned()), Some("suite"));
    let first = token("t0", Some(&alice), LATER - 10);
    store
        .start_session(&session("t0", &alice), &first)
        .await
        .unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..8 {
        let (store, first, client) = (store.clone(), first.clone(), client.clone());
        let successor = token(&format!("t1-{n}"), Some(&alice), LATER);
        tasks.spawn(async move {
            store
                .rotate_in_family(&first, "t0", &successor, 1_700_000_100, &client)
                .await
                .unwrap()
        });
    }
    let mut claims = Vec::new();
    while let Some(claim) = tasks.join_next().await {
        claims.push(claim.unwrap());
    }
    let winners = claims.iter().filter(|c| **c == RotationClaim::Won).count();
    let successors: std::collections::BTreeSet<String> = claims
        .iter()
        .filter_map(|c| match c {
            RotationClaim::AlreadyRotated {
                rotated_at: 1_700_000_100,
                successor: Successor { jti, .. },
            } => Some(jti.clone()),
            _ => None,
        })
        .collect();
    let mut answers = vec![format!(
        "{winners} won, {} told one successor",
        claims.len() - winners
    )];
    assert_eq!(successors.len(), 1, "{claims:?}");
    let winner = successors.into_iter().next().unwrap();

    // Eight sessions rotated at once, the first of them twice.
    for n in 0..8 {
        let id = format!("m{n}");
        store
            .start_session(&session(&id, &alice), &token(&id, Some(&alice), LATER - 10))
            .await
            .unwrap();
    }
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..9 {
        let (store, client) = (store.clone(), client.clone());
        let family = format!("m{}", n % 8);
        let presented = token(&family, Some(&alice), LATER - 10);
        let successor = token(&format!("m{n}-next"), Some(&alice), LATER);
        tasks.spawn(async move {
            let claim = store
                .rotate_in_family(&presented, &family, &successor, 1_700_000_150, &client)
                .await
                .unwrap();
            (family, claim)
        });
    }
    let mut claims = Vec::new();
    while let Some(claim) = tasks.join_next().await {
        let (family, claim) = claim.unwrap();
        claims.push(match claim {
            RotationClaim::AlreadyRotated { rotated_at, .. } => {
                format!("{family}: rotated at {rotated_at}")
            }
            other => format!("{family}: {other:?}"),
        });
    }
    claims.sort();
    answers.extend(claims);
    // Which of m0's two rotations won is up to the scheduler.
    let m0_winner = if dump(url)
        .await
        .tokens
        .iter()
        .any(|r| r.starts_with("m0-next "))
    {
        "m0-next"
    } else {
        "m8-next"
    };

    let mut rotate = async |presented: OutstandingToken, family: &str, next: &str| {
        let successor = token(next, Some(&alice), LATER + 10);
        let claim = store
            .rotate_in_family(&presented, family, &successor, 1_700_000_200, &client)
            .await
            .unwrap();
        answers.push(format!("{}: {claim:?}", presented.jti).replace(&winner, "WINNER"));
    };
    rotate(token(&winner, Some(&alice), LATER), "t0", "t2").await;
    rotate(token("old", Some(&alice), LATER), "old", "old-next").await;
    store
        .start_session(
            &session("ended", &alice),
            &token("ended", Some(&alice), LATER),
        )
        .await
        .unwrap();
    store.revoke_session("ended", 1_700_000_150).await.unwrap();
    rotate(token("ended", Some(&alice), LATER), "ended", "ended-next").await;
    store
        .blacklist(&token("black", Some(&alice), LATER), 1_700_000_150)
        .await
        .unwrap();
    rotate(token("black", Some(&alice), LATER), "black", "black-next").await;
    rotate(first.clone(), "t0", "t1-late").await;
    store.revoke_session("t0", 1_700_000_250).await.unwrap();
    rotate(token("t2", Some(&alice), LATER + 10), "t0", "t3").await;

    let mut rows = dump(url).await;
    for row in rows.tokens.iter_mut().chain(rows.sessions.iter_mut()) {
        *row = row
            .replace(&winner, "WINNER")
            .replace(m0_winner, "M0-WINNER");
    }
    rows.tokens.sort();
    (answers, rows)
}

/// The console's account search (`UserDirectory::search_users`) against a
/// plain filter and sort of every account: a username or email prefix,
/// byte order, paged by the last username, an account matching both ways
/// listed once. 1,200 accounts, so an email prefix takes either path of the
/// search: few matches (read from the email index) and many (at least
/// 1,000: the username index, filtered).
async fn user_search(store: SqlStore, url: String) {
    // Usernames u0001…u1200; emails e…@example.com in another order.
    let fill = if url.starts_with("postgres") {
        "INSERT INTO users (username, email, password, is_active, is_staff, is_superuser, date_joined) \
         SELECT 'u' || lpad(i::text, 4, '0'), 'e' || lpad(((i * 7) % 1200)::text, 4, '0') || '@example.com', \
                '!', TRUE, FALSE, FALSE, 0 FROM generate_series(1, 1200) AS i"
    } else {
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1200) \
         INSERT INTO users (username, email, password, is_active, is_staff, is_superuser, date_joined) \
         SELECT printf('u%04d', i), printf('e%04d@example.com', (i * 7) % 1200), '!', 1, 0, 0, 0 FROM n"
    };
    if url.starts_with("postgres") {
        let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
        sqlx::query(fill).execute(&mut conn).await.unwrap();
    } else {
        let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::query(fill).execute(&mut conn).await.unwrap();
    }
    // Both ways at once, case and non-ASCII (byte order: `E` < `e` < `é`).
    for (name, email) in [
        ("eve", "u-eve@example.com"),
        ("Eve", "Eve@example.com"),
        ("\u{e9}lodie", "e0001x@example.com"),
        ("ezra", "ezra@example.com"),
        ("u0500x", "e0500@example.org"),
    ] {
        let mut user = new_user("placeholder");
        user.username = Username::parse(name).unwrap();
        user.email = email.to_owned();
        store.create_user(&user).await.unwrap();
    }
    let everyone = store.list_users().await.unwrap();
    assert_eq!(everyone.len(), 1205);
    let expected = |prefix: &str, after: &str| {
        let mut names: Vec<String> = everyone
            .iter()
            .filter(|u| u.username.starts_with(prefix) || u.email.starts_with(prefix))
            .filter(|u| u.username.as_str() > after)
            .map(|u| u.username.clone())
            .collect();
        names.sort();
        names
    };
    for prefix in [
        "", "e", "e0", "e1", "e11", "e0001", "E", "u", "u05", "u0500", "\u{e9}", "x",
    ] {
        // One page of 51, and every page of 51 after it.
        let all = expected(prefix, "");
        let mut listed = Vec::new();
        let mut after = None;
        loop {
            let page = store
                .search_users(&UserQuery {
                    prefix: prefix.to_owned(),
                    after: after.clone(),
                    limit: 51,
                })
                .await
                .unwrap();
            let names: Vec<String> = page.iter().map(|u| u.username.clone()).collect();
            let from = after.as_deref().unwrap_or("");
            let want: Vec<String> = expected(prefix, from).into_iter().take(51).collect();
            assert_eq!(names, want, "prefix {prefix:?} after {after:?}");
            listed.extend(names);
            if page.len() < 51 {
                break;
            }
            after = page.last().map(|u| u.username.clone());
        }
        assert_eq!(listed, all, "every page of {prefix:?}");
    }
    // The paths are both taken: "e" matches 1,200 emails, "e1" 200.
    assert!(expected("e", "").len() >= 1000 && expected("e1", "").len() < 1000);
}

/// The batched rotations (SQLite) answer and write what the general path
/// answers and writes, on SQLite and on PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_rotations_match_the_general_path() {
    let batched_db = Database::new(Backend::Sqlite).await;
    let general_db = Database::new(Backend::Sqlite).await;
    let postgres_db = Database::new(Backend::Postgres).await;
    let batched = batched_db.store().await;
    let general = general_db.store().await.without_batched_rotations();
    let postgres = postgres_db.store().await;
    let expected = rotations(&general, &general_db.url).await;
    assert_eq!(expected.0[0], "1 won, 7 told one successor");
    assert_eq!(
        expected.0[1..10],
        [
            "m0: Won",
            "m0: rotated at 1700000150",
            "m1: Won",
            "m2: Won",
            "m3: Won",
            "m4: Won",
            "m5: Won",
            "m6: Won",
            "m7: Won"
        ]
    );
    assert_eq!(
        expected.0[10..],
        [
            "WINNER: Won",
            "old: Won",
            "ended: Ended",
            "black: Ended",
            "t0: AlreadyRotated { rotated_at: 1700000100, successor: Successor { jti: \"WINNER\", created_at: 1700000000, expires_at: 4000000000 } }",
            "t2: Ended",
        ]
    );
    assert_eq!(rotations(&batched, &batched_db.url).await, expected);
    assert_eq!(rotations(&postgres, &postgres_db.url).await, expected);
    for store in [batched, general, postgres] {
        store.close().await;
    }
    postgres_db.drop_database().await;
}

both_backends!(
    ping,
    users,
    imports,
    account_changes_move_for_changes_elsewhere,
    tokens,
    sessions,
    rotation,
    throttle,
    settings,
    keys,
    user_search,
);
