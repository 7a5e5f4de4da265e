//! The store suite: the storage contract (`portcullis_core::Store`) checked
//! against both backends directly, without the HTTP layer.
//!
//! PostgreSQL runs for real at `PORTCULLIS_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`), one fresh database per test;
//! an unreachable server fails the test, it is never skipped.
//!
//! The batched rotations of SQLite (`rotation.rs`) are checked against the
//! statement-by-statement path they replace: the same rotations, concurrent
//! and sequential, through a store that batches and one that never does,
//! give the same answers and leave the same rows.

// Test code: a failed unwrap is a failed test, which is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::atomic::{AtomicUsize, Ordering};

use portcullis_core::{
    Client, NewUser, OutstandingToken, RotationClaim, Session, Store, StoreError, Successor,
    Upserted, User, UserDirectory as _, UserQuery, Username,
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

/// Accounts: create, conflict, read, change, delete.
async fn users(store: SqlStore, _url: String) {
    let alice = store.create_user(&new_user("alice")).await.unwrap();
    assert!(matches!(
        store.create_user(&new_user("alice")).await,
        Err(StoreError::Conflict(_))
    ));
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
    let changed = store.user_by_id(alice.id).await.unwrap().unwrap();
    assert_eq!(
        (
            changed.is_active,
            changed.password.as_str(),
            changed.last_login
        ),
        (false, "new-hash", Some(1_700_000_100))
    );
    assert!(!store.set_active(alice.id + 100, true).await.unwrap());
    assert!(store.delete_user(alice.id).await.unwrap());
    assert!(!store.delete_user(alice.id).await.unwrap());
    assert_eq!(store.user_by_id(alice.id).await.unwrap(), None);
    let bob = store.create_user(&new_user("bob")).await.unwrap();
    assert!(bob.id > alice.id, "ids are never handed out again");
    assert_eq!(
        store
            .list_users()
            .await
            .unwrap()
            .iter()
            .map(|u| u.id)
            .collect::<Vec<_>>(),
        [bob.id]
    );
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

/// Outstanding tokens and the blacklist: exactly one caller blacklists.
async fn tokens(store: SqlStore, _url: String) {
    let alice = store.create_user(&new_user("alice")).await.unwrap();
    let live = token("live", Some(&alice), LATER);
    store.record_outstanding(&live).await.unwrap();
    store.record_outstanding(&live).await.unwrap();
    assert!(!store.is_blacklisted("live").await.unwrap());
    assert!(store.blacklist(&live, 1_700_000_001).await.unwrap());
    assert!(!store.blacklist(&live, 1_700_000_002).await.unwrap());
    assert!(store.is_blacklisted("live").await.unwrap());
    // Never seen before: recorded, then blacklisted.
    assert!(
        store
            .blacklist(&token("new", None, LATER), 1)
            .await
            .unwrap()
    );
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
    assert_eq!(store.flush_expired(10).await.unwrap(), 1);
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

/// Sessions: start, list, revoke, logout-all and what other nodes reload.
async fn sessions(store: SqlStore, _url: String) {
    let alice = store.create_user(&new_user("alice")).await.unwrap();
    for id in ["s1", "s2", "s3"] {
        store
            .start_session(&session(id, &alice), &token(id, Some(&alice), LATER))
            .await
            .unwrap();
    }
    assert_eq!(
        store
            .live_sessions(alice.id, 1_700_000_001)
            .await
            .unwrap()
            .len(),
        3
    );
    assert!(store.revoke_session("s1", 1_700_000_010).await.unwrap());
    assert!(!store.revoke_session("s1", 1_700_000_011).await.unwrap());
    assert!(store.is_blacklisted("s1").await.unwrap());
    let mut ended = store
        .end_sessions(alice.id, Some("s3"), 1_700_000_020)
        .await
        .unwrap();
    ended.sort();
    assert_eq!(ended, ["s2"]);
    assert!(store.is_blacklisted("s2").await.unwrap());
    assert!(!store.is_blacklisted("s3").await.unwrap());
    let live: Vec<String> = store
        .live_sessions(alice.id, 1_700_000_021)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(live, ["s3"]);
    let mut revocations = store.revocations(1_700_000_010).await.unwrap();
    revocations.sessions.sort();
    assert_eq!(
        revocations.sessions,
        [
            ("s1".to_owned(), 1_700_000_010),
            ("s2".to_owned(), 1_700_000_020)
        ]
    );
    assert_eq!(revocations.users_not_before, [(alice.id, 1_700_000_020)]);
    assert!(
        store
            .revocations(1_700_000_021)
            .await
            .unwrap()
            .sessions
            .is_empty()
    );
}

/// Login throttling: the window restarts, blocks never shorten.
async fn throttle(store: SqlStore, _url: String) {
    assert_eq!(store.login_blocked_until("k").await.unwrap(), 0);
    assert_eq!(
        store
            .record_login_failure("k", 100, 0)
            .await
            .unwrap()
            .failures,
        1
    );
    let row = store.record_login_failure("k", 200, 50).await.unwrap();
    assert_eq!((row.failures, row.window_start), (2, 100));
    // The window that started at 100 is over by now.
    let row = store.record_login_failure("k", 300, 100).await.unwrap();
    assert_eq!((row.failures, row.window_start), (1, 300));
    store.block_login("k", 1_000).await.unwrap();
    store.block_login("k", 500).await.unwrap();
    assert_eq!(store.login_blocked_until("k").await.unwrap(), 1_000);
    assert_eq!(store.prune_login_failures(999, 10_000).await.unwrap(), 0);
    assert_eq!(store.prune_login_failures(1_000, 10_000).await.unwrap(), 1);
    store.record_login_failure("k", 2_000, 0).await.unwrap();
    assert!(store.clear_login_failures("k").await.unwrap());
    assert!(!store.clear_login_failures("k").await.unwrap());
}

/// Settings and the key set.
async fn settings_and_keys(store: SqlStore, _url: String) {
    assert_eq!(store.setting("a").await.unwrap(), None);
    assert_eq!(store.init_setting("a", "first").await.unwrap(), "first");
    assert_eq!(store.init_setting("a", "second").await.unwrap(), "first");
    let key = |kid: &str, created_at| StoredKey {
        kid: kid.to_owned(),
        algorithm: "HS256".to_owned(),
        private_key: "k".repeat(32),
        public_key: None,
        created_at,
        activates_at: Some(created_at),
        retires_at: None,
    };
    store.add_signing_key(&key("one", 10), None).await.unwrap();
    assert!(matches!(
        store.add_signing_key(&key("one", 11), None).await,
        Err(StoreError::Conflict(_))
    ));
    store
        .add_signing_key(&key("two", 20), Some(("one", 500)))
        .await
        .unwrap();
    // Retiring never extends a key's life.
    assert!(store.retire_signing_key("one", 900).await.unwrap());
    assert!(!store.retire_signing_key("none", 900).await.unwrap());
    let keys = store.signing_keys().await.unwrap();
    assert_eq!(
        keys.iter()
            .map(|k| (k.kid.as_str(), k.retires_at))
            .collect::<Vec<_>>(),
        [("one", Some(500)), ("two", None)]
    );
}

/// One run of rotations: eight concurrent rotations of one token, then a
/// rotation of the winner's successor, a token from before sessions (its
/// family starts), a token of an ended session, a blacklisted token, and a
/// repeat of the first. Returns every answer, in a form that does not
/// depend on which concurrent caller won, and the rows left.
async fn rotations(store: &SqlStore) -> (Vec<String>, Vec<(String, bool)>) {
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

    let mut rows = Vec::new();
    for jti in [
        "t0",
        "t2",
        "old",
        "old-next",
        "ended",
        "ended-next",
        "black",
        "black-next",
        "t1-late",
    ] {
        rows.push((jti.to_owned(), store.is_blacklisted(jti).await.unwrap()));
    }
    let mut sessions: Vec<(String, i64, i64)> = store
        .live_sessions(alice.id, 1_700_000_300)
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.id, s.last_used_at, s.expires_at))
        .collect();
    sessions.sort();
    answers.push(format!("live sessions: {sessions:?}"));
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
    let expected = rotations(&general).await;
    assert_eq!(expected.0[0], "1 won, 7 told one successor");
    assert_eq!(rotations(&batched).await, expected);
    assert_eq!(rotations(&postgres).await, expected);
    for store in [batched, general, postgres] {
        store.close().await;
    }
    postgres_db.drop_database().await;
}

both_backends!(
    users,
    account_changes_move_for_changes_elsewhere,
    tokens,
    sessions,
    throttle,
    settings_and_keys,
    user_search,
);
