//! portcullis storage: SQLite (the embedded default) and PostgreSQL behind
//! one [`SqlStore`].
//!
//! Both dialects run the same SQL text (`$1` placeholders, `RETURNING` and
//! `ON CONFLICT` work in both); only the migrations differ. Queries are
//! checked at run time rather than compile time, so the same store test
//! suite runs against both backends (`tests/store.rs`).

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use portcullis_core::{
    Client, ImportedUser, KeyStore, LoginFailures, NewUser, OutstandingToken, Revocations,
    RotationClaim, Session, SessionStore, Store, StoreError, Successor, ThrottleStore, TokenStore,
    Upserted, User, UserStore,
};
use portcullis_token::StoredKey;
use sqlx::postgres::{PgListener, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

/// The database a URL selects.
#[derive(Debug, Clone)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// A [`Store`] on SQLite or PostgreSQL.
///
/// Reads go to `pool`, writes to `writer`. On PostgreSQL both are the same
/// pool. On SQLite, which lets one connection write at a time, `writer` is
/// a pool of its own with a single connection: concurrent writers of this
/// process wait for it in a first-come, first-served queue, where each
/// costs nothing, instead of each holding a connection and contending for
/// the database's write lock, where the losers sleep in SQLite's busy
/// handler (1, 2, 5, 10… ms, however soon the lock is free) and their
/// requests wait for a lock that sits idle (issue "Benchmarks that prove
/// the speed": 64 concurrent rotations ran at 2% of the ceiling, p50 37 ms).
/// The busy handler is then only for writers in other processes (another
/// node on the same file, the `portcullis` commands).
#[derive(Debug, Clone)]
pub struct SqlStore {
    pool: Pool,
    writer: Pool,
    /// SQLite only: rotations go to one task that writes them in batches
    /// (see `rotation.rs`).
    rotations: Option<RotationQueue>,
    /// SQLite files only: the hottest point reads, answered on the
    /// caller's thread (see `inline.rs`).
    inline: Option<Arc<InlineReader>>,
    /// Whether accounts changed elsewhere (see `changes.rs`).
    changes: AccountChanges,
}

/// Run the same statement on whichever pool is in use. The body is
/// expanded once per backend, so each is type-checked for its driver.
macro_rules! on_pool {
    ($self:expr, $pool:ident => $body:expr) => {
        match &$self.pool {
            Pool::Sqlite($pool) => $body,
            Pool::Postgres($pool) => $body,
        }
    };
}

/// [`on_pool!`] for a write: the body gets the writer pool.
macro_rules! on_writer {
    ($self:expr, $pool:ident => $body:expr) => {
        match &$self.writer {
            Pool::Sqlite($pool) => $body,
            Pool::Postgres($pool) => $body,
        }
    };
}

/// Execute one writing statement with its binds on the writer pool, and
/// count the rows it changed.
macro_rules! execute {
    ($self:expr, $sql:expr $(, $bind:expr)* $(,)?) => {
        on_writer!($self, pool => sqlx::query($sql)$(.bind($bind))*.execute(pool).await.map(|r| r.rows_affected()))
            .map_err(db_error)
    };
}

mod audit;
mod changes;
mod directory;
mod django;
mod inline;

use changes::{AccountChanges, PgWatch, SqliteWatch};
use inline::{InlineReader, one_row};

pub use changes::ACCOUNT_CHANNEL;

pub use django::{DjangoDatabase, DjangoToken, DjangoUser};

/// The PostgreSQL `LISTEN`/`NOTIFY` channel announcing ended sessions.
pub const REVOCATION_CHANNEL: &str = "portcullis_revocations";

const USER_COLUMNS: &str =
    "id, username, email, password, is_active, is_staff, is_superuser, date_joined, last_login";

#[derive(sqlx::FromRow)]
struct UserRow {
    id: i64,
    username: String,
    email: String,
    password: String,
    is_active: bool,
    is_staff: bool,
    is_superuser: bool,
    date_joined: i64,
    last_login: Option<i64>,
}

impl From<UserRow> for User {
    fn from(r: UserRow) -> Self {
        Self {
            id: r.id,
            username: r.username,
            email: r.email,
            password: r.password,
            is_active: r.is_active,
            is_staff: r.is_staff,
            is_superuser: r.is_superuser,
            date_joined: r.date_joined,
            last_login: r.last_login,
        }
    }
}

/// A [`UserRow`] as an inline read returns it, in [`USER_COLUMNS`] order.
fn user_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        id: row.get(0)?,
        username: row.get(1)?,
        email: row.get(2)?,
        password: row.get(3)?,
        is_active: row.get(4)?,
        is_staff: row.get(5)?,
        is_superuser: row.get(6)?,
        date_joined: row.get(7)?,
        last_login: row.get(8)?,
    })
}

#[derive(sqlx::FromRow)]
struct KeyRow {
    kid: String,
    algorithm: String,
    private_key: String,
    public_key: Option<String>,
    created_at: i64,
    activates_at: Option<i64>,
    retires_at: Option<i64>,
}

impl From<KeyRow> for StoredKey {
    fn from(r: KeyRow) -> Self {
        Self {
            kid: r.kid,
            algorithm: r.algorithm,
            private_key: r.private_key,
            public_key: r.public_key,
            created_at: r.created_at,
            activates_at: r.activates_at,
            retires_at: r.retires_at,
        }
    }
}

/// Record a refresh token in a family (the user only if it exists, as a
/// foreign key must).
const RECORD_IN_FAMILY: &str = "INSERT INTO outstanding_tokens (user_id, jti, created_at, expires_at, family_id) \
     VALUES ((SELECT id FROM users WHERE id = $1), $2, $3, $4, $5) ON CONFLICT (jti) DO NOTHING";

/// One row of `sessions` as listed.
#[derive(sqlx::FromRow)]
struct SessionRow {
    id: String,
    user_id: Option<i64>,
    created_at: i64,
    last_used_at: i64,
    expires_at: i64,
    ip_address: Option<String>,
    user_agent: Option<String>,
}

impl From<SessionRow> for Session {
    fn from(r: SessionRow) -> Self {
        Self {
            id: r.id,
            user_id: r.user_id,
            created_at: r.created_at,
            last_used_at: r.last_used_at,
            expires_at: r.expires_at,
            client: Client {
                ip_address: r.ip_address,
                user_agent: r.user_agent,
            },
        }
    }
}

/// What a rotation that lost finds on the presented token's row.
#[derive(sqlx::FromRow)]
struct RotatedRow {
    blacklisted_at: Option<i64>,
    rotated_at: Option<i64>,
    successor_jti: Option<String>,
    successor_created_at: Option<i64>,
    successor_expires_at: Option<i64>,
}

impl From<RotatedRow> for RotationClaim {
    fn from(r: RotatedRow) -> Self {
        match r {
            RotatedRow {
                blacklisted_at: None,
                rotated_at: Some(rotated_at),
                successor_jti: Some(jti),
                successor_created_at: Some(created_at),
                successor_expires_at: Some(expires_at),
            } => Self::AlreadyRotated {
                rotated_at,
                successor: Successor {
                    jti,
                    created_at,
                    expires_at,
                },
            },
            _ => Self::Ended,
        }
    }
}

mod rotation;

use rotation::RotationQueue;

/// Retire a key at `$1` unless it already retires earlier: retiring never
/// extends a key's life.
const RETIRE_KEY: &str = "UPDATE signing_keys SET retires_at = $1 \
     WHERE kid = $2 AND (retires_at IS NULL OR retires_at > $1)";

/// SQLite connections for reads. WAL lets readers run beside the writer;
/// more than a few buy nothing on the two cores the targets assume.
const SQLITE_READERS: u32 = 8;

/// Prepared statements the SQLite writer connection keeps: every write
/// of the store, and the batch statements of `rotation.rs` (two per batch
/// size).
const WRITER_STATEMENTS: usize = 256;

/// How a write transaction starts.
trait BeginWrite {
    type Db: sqlx::Database;
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, Self::Db>, sqlx::Error>;
}

impl BeginWrite for SqlitePool {
    type Db = sqlx::Sqlite;
    /// `BEGIN IMMEDIATE` takes the write lock at once. A deferred `BEGIN`
    /// whose first statement reads takes a snapshot, and if another
    /// process writes before its first write, that write fails with
    /// `SQLITE_BUSY` at once, without the busy handler's retries.
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error> {
        self.begin_with("BEGIN IMMEDIATE").await
    }
}

impl BeginWrite for PgPool {
    type Db = sqlx::Postgres;
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
        self.begin().await
    }
}

#[allow(clippy::needless_pass_by_value)] // shaped for `map_err`
fn db_error(e: sqlx::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

impl SqlStore {
    /// Open the database a URL names, creating it if it is a missing
    /// SQLite file, and apply the embedded migrations.
    ///
    /// Accepted: `sqlite://relative.db`, `sqlite:///abs/path.db?mode=rwc`
    /// (as sqlx writes them), `postgres://…` and `postgresql://…`.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let store = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = PgPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(5))
                .connect(url)
                .await
                .map_err(|e| StoreError::Database(format!("cannot connect to PostgreSQL: {e}")))?;
            Self {
                changes: AccountChanges::Postgres(PgWatch::new(pool.clone())),
                pool: Pool::Postgres(pool.clone()),
                writer: Pool::Postgres(pool),
                rotations: None,
                inline: None,
            }
        } else if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)
                .map_err(|e| StoreError::InvalidUrl(format!("invalid SQLite URL: {e}")))?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(5))
                .foreign_keys(true);
            let path = options.get_filename().to_path_buf();
            let in_memory = is_in_memory(url, &path);
            if !in_memory {
                create_private_file(&path)?;
            }
            let open = |max: u32, options: SqliteConnectOptions| {
                SqlitePoolOptions::new()
                    .max_connections(max)
                    // Long enough for a queue of writers (each a fraction
                    // of a millisecond) behind a long one (a flush).
                    .acquire_timeout(Duration::from_secs(5))
                    // No ping before each use: a local file does not hang
                    // up, and on SQLite a ping is one more round trip to
                    // the connection's thread for every query.
                    .test_before_acquire(false)
                    .connect_with(options)
            };
            let cannot = |e| StoreError::Database(format!("cannot open the SQLite database: {e}"));
            // The writer first: it creates the file and switches it to WAL.
            let writer = open(
                1,
                options.clone().statement_cache_capacity(WRITER_STATEMENTS),
            )
            .await
            .map_err(cannot)?;
            let changes = if in_memory {
                AccountChanges::Local
            } else {
                AccountChanges::Sqlite(Arc::new(SqliteWatch::new(path.clone())))
            };
            let inline = (!in_memory).then(|| Arc::new(InlineReader::new(path)));
            let readers = open(SQLITE_READERS, options).await.map_err(cannot)?;
            Self {
                rotations: Some(RotationQueue::new(writer.clone())),
                inline,
                changes,
                pool: Pool::Sqlite(readers),
                writer: Pool::Sqlite(writer),
            }
        } else {
            return Err(StoreError::InvalidUrl(
                "the database URL must start with sqlite: (for example sqlite://portcullis.sqlite3) or postgres://".to_owned(),
            ));
        };
        store.migrate().await?;
        Ok(store)
    }

    /// Apply the embedded migrations (idempotent).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let result = match &self.writer {
            Pool::Sqlite(pool) => sqlx::migrate!("migrations/sqlite").run(pool).await,
            Pool::Postgres(pool) => sqlx::migrate!("migrations/postgres").run(pool).await,
        };
        result.map_err(|e| StoreError::Database(format!("migration failed: {e}")))
    }

    /// The same store with every rotation on the statement-by-statement
    /// path (`rotate_in_family`'s general path), never batched: what the
    /// store suite compares the SQLite batches with.
    #[doc(hidden)]
    #[must_use]
    pub fn without_batched_rotations(mut self) -> Self {
        self.rotations = None;
        self
    }

    /// `"sqlite"` or `"postgres"`.
    #[must_use]
    pub fn backend(&self) -> &'static str {
        match self.pool {
            Pool::Sqlite(_) => "sqlite",
            Pool::Postgres(_) => "postgres",
        }
    }

    /// On PostgreSQL, a connection listening on [`REVOCATION_CHANNEL`]:
    /// every node is told of a revocation made on any other at once,
    /// instead of at its next periodic reload (issue 4: "within one
    /// second"). `None` on SQLite, whose nodes share one file on one host
    /// and rely on the periodic reload.
    pub async fn revocation_listener(&self) -> Result<Option<RevocationListener>, StoreError> {
        let Pool::Postgres(pool) = &self.pool else {
            return Ok(None);
        };
        let mut listener = PgListener::connect_with(pool).await.map_err(db_error)?;
        listener
            .listen(REVOCATION_CHANNEL)
            .await
            .map_err(db_error)?;
        Ok(Some(RevocationListener(listener)))
    }

    /// Tell every listening node that sessions ended. Sent after the commit,
    /// so a node that reloads on it sees the change. A failed notification
    /// is logged, not returned: the revocation is stored, and the periodic
    /// reload still spreads it.
    async fn notify_revoked(&self) {
        if let Pool::Postgres(pool) = &self.pool
            && let Err(e) = sqlx::query("SELECT pg_notify($1, '')")
                .bind(REVOCATION_CHANNEL)
                .execute(pool)
                .await
        {
            tracing::warn!(error = %e, "cannot notify other nodes of a revocation");
        }
    }

    /// Close every connection.
    pub async fn close(&self) {
        on_pool!(self, pool => pool.close().await);
        on_writer!(self, pool => pool.close().await);
    }
}

/// A PostgreSQL connection listening for ended sessions (see
/// [`SqlStore::revocation_listener`]).
#[derive(Debug)]
pub struct RevocationListener(PgListener);

impl RevocationListener {
    /// Wait for the next notification. A lost connection is re-established
    /// by the next call (notifications sent meanwhile are lost, which the
    /// caller's periodic reload covers).
    /// Notifications already received with it are taken too: one reload
    /// covers a burst of revocations.
    pub async fn recv(&mut self) -> Result<(), StoreError> {
        self.0.recv().await.map_err(db_error)?;
        while self.0.next_buffered().is_some() {}
        Ok(())
    }
}

/// An in-memory SQLite database (`sqlite::memory:`, `mode=memory`): it has
/// no file to create, and a connection opened apart from sqlx's pool would
/// see another, empty database. (sqlx names `sqlite::memory:`
/// `file:sqlx-in-memory-N`, which must not become a file either.)
fn is_in_memory(url: &str, path: &std::path::Path) -> bool {
    path.as_os_str().is_empty()
        || path.to_str() == Some(":memory:")
        || url.contains(":memory:")
        || url.contains("mode=memory")
}

/// Create a missing SQLite file readable by its owner only: it holds the
/// signing keys. SQLite gives its `-wal` and `-shm` files the same mode.
/// An existing file keeps the mode its owner chose.
fn create_private_file(path: &std::path::Path) -> Result<(), StoreError> {
    if path.exists() {
        return Ok(());
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        // Another process created it first: fine.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(StoreError::Database(format!(
            "cannot create the SQLite database {}: {e}",
            path.display()
        ))),
    }
}

#[async_trait]
impl Store for SqlStore {
    async fn ping(&self) -> Result<(), StoreError> {
        on_pool!(self, pool => sqlx::query("SELECT 1").execute(pool).await.map(|_| ()))
            .map_err(db_error)
    }
}

#[async_trait]
impl UserStore for SqlStore {
    async fn create_user(&self, user: &NewUser) -> Result<User, StoreError> {
        let sql = format!(
            "INSERT INTO users (username, email, password, is_active, is_staff, is_superuser, date_joined) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {USER_COLUMNS}"
        );
        let row = on_writer!(self, pool => sqlx::query_as::<_, UserRow>(sqlx::AssertSqlSafe(sql))
            .bind(user.username.as_str())
            .bind(&user.email)
            .bind(&user.password_hash)
            .bind(user.is_active)
            .bind(user.is_staff)
            .bind(user.is_superuser)
            .bind(user.date_joined)
            .fetch_one(pool)
            .await);
        match row {
            Ok(row) => Ok(row.into()),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(StoreError::Conflict(
                format!("a user named {:?} already exists", user.username.as_str()),
            )),
            Err(e) => Err(db_error(e)),
        }
    }

    async fn user_by_id(&self, id: i64) -> Result<Option<User>, StoreError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
        if let Some(found) = self
            .inline
            .as_ref()
            .and_then(|inline| inline.read(|c| one_row(c, &sql, id, user_from_row)))
        {
            return Ok(found);
        }
        let row = on_pool!(self, pool => sqlx::query_as::<_, UserRow>(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(pool)
            .await)
        .map_err(db_error)?;
        Ok(row.map(User::from))
    }

    fn account_changes(&self) -> u64 {
        self.changes.current()
    }

    async fn user_by_username(&self, username: &str) -> Result<Option<User>, StoreError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE username = $1");
        let row = on_pool!(self, pool => sqlx::query_as::<_, UserRow>(sqlx::AssertSqlSafe(sql))
            .bind(username)
            .fetch_optional(pool)
            .await)
        .map_err(db_error)?;
        Ok(row.map(User::from))
    }

    async fn list_users(&self) -> Result<Vec<User>, StoreError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users ORDER BY id");
        let rows = on_pool!(self, pool => sqlx::query_as::<_, UserRow>(sqlx::AssertSqlSafe(sql))
            .fetch_all(pool)
            .await)
        .map_err(db_error)?;
        Ok(rows.into_iter().map(User::from).collect())
    }

    async fn set_password(&self, id: i64, hash: &str) -> Result<bool, StoreError> {
        Ok(execute!(
            self,
            "UPDATE users SET password = $1 WHERE id = $2",
            hash,
            id
        )? == 1)
    }

    async fn set_active(&self, id: i64, active: bool) -> Result<bool, StoreError> {
        Ok(execute!(
            self,
            "UPDATE users SET is_active = $1 WHERE id = $2",
            active,
            id
        )? == 1)
    }

    async fn delete_user(&self, id: i64) -> Result<bool, StoreError> {
        Ok(execute!(self, "DELETE FROM users WHERE id = $1", id)? == 1)
    }

    async fn update_last_login(&self, id: i64, at: i64) -> Result<(), StoreError> {
        execute!(
            self,
            "UPDATE users SET last_login = $1 WHERE id = $2",
            at,
            id
        )
        .map(|_| ())
    }

    async fn upsert_user_with_id(&self, user: &ImportedUser) -> Result<Upserted, StoreError> {
        let existed = self.user_by_id(user.id).await?.is_some();
        let done = on_writer!(self, pool => sqlx::query(
            "INSERT INTO users (id, username, email, password, is_active, is_staff, is_superuser, date_joined, last_login) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (id) DO UPDATE SET username = excluded.username, email = excluded.email, \
             is_active = excluded.is_active, is_staff = excluded.is_staff, \
             is_superuser = excluded.is_superuser, date_joined = excluded.date_joined, \
             password = CASE WHEN users.password LIKE '$argon2%' THEN users.password ELSE excluded.password END, \
             last_login = CASE WHEN users.last_login IS NULL OR excluded.last_login > users.last_login \
                 THEN excluded.last_login ELSE users.last_login END",
        )
        .bind(user.id)
        .bind(user.account.username.as_str())
        .bind(&user.account.email)
        .bind(&user.account.password_hash)
        .bind(user.account.is_active)
        .bind(user.account.is_staff)
        .bind(user.account.is_superuser)
        .bind(user.account.date_joined)
        .bind(user.last_login)
        .execute(pool)
        .await
        .map(|_| ()));
        match done {
            Ok(()) => {}
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Err(StoreError::Conflict(format!(
                    "the username {:?} belongs to another account here",
                    user.account.username.as_str()
                )));
            }
            Err(e) => return Err(db_error(e)),
        }
        // PostgreSQL's identity does not notice explicit ids; SQLite's
        // AUTOINCREMENT does, but one code path keeps both honest.
        self.reserve_user_ids(user.id).await?;
        Ok(if existed {
            Upserted::Updated
        } else {
            Upserted::Inserted
        })
    }

    async fn reserve_user_ids(&self, id: i64) -> Result<(), StoreError> {
        // The one place the dialects differ outside migrations: where the
        // next generated id lives. Both only ever move it forward.
        match &self.writer {
            Pool::Sqlite(pool) => {
                // sqlite_sequence holds the largest id AUTOINCREMENT ever
                // gave; SQLite documents editing it with plain SQL.
                sqlx::query(
                    "UPDATE sqlite_sequence SET seq = $1 WHERE name = 'users' AND seq < $1",
                )
                .bind(id)
                .execute(pool)
                .await
                .map_err(db_error)?;
                sqlx::query(
                    "INSERT INTO sqlite_sequence (name, seq) SELECT 'users', $1 \
                     WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'users')",
                )
                .bind(id)
                .execute(pool)
                .await
                .map_err(db_error)?;
            }
            Pool::Postgres(pool) => {
                // setval with is_called = true: the next id is the value + 1.
                // pg_sequence_last_value is NULL until the first nextval.
                sqlx::query(
                    "SELECT setval(pg_get_serial_sequence('users', 'id')::regclass, \
                     GREATEST($1, 1, COALESCE(pg_sequence_last_value(pg_get_serial_sequence('users', 'id')::regclass), 0)))",
                )
                .bind(id)
                .execute(pool)
                .await
                .map_err(db_error)?;
            }
        }
        Ok(())
    }
}

#[async_trait]
impl TokenStore for SqlStore {
    async fn upsert_outstanding(
        &self,
        token: &OutstandingToken,
        blacklisted_at: Option<i64>,
    ) -> Result<Upserted, StoreError> {
        let existed = on_pool!(self, pool => sqlx::query_scalar::<_, i64>(
            "SELECT id FROM outstanding_tokens WHERE jti = $1",
        )
        .bind(&token.jti)
        .fetch_optional(pool)
        .await)
        .map_err(db_error)?
        .is_some();
        // A blacklisting is never undone: the old value wins over NULL.
        on_writer!(self, pool => sqlx::query(
            "INSERT INTO outstanding_tokens (user_id, jti, created_at, expires_at, blacklisted_at) \
             VALUES ((SELECT id FROM users WHERE id = $1), $2, $3, $4, $5) \
             ON CONFLICT (jti) DO UPDATE SET user_id = excluded.user_id, created_at = excluded.created_at, \
             expires_at = excluded.expires_at, \
             blacklisted_at = COALESCE(outstanding_tokens.blacklisted_at, excluded.blacklisted_at)",
        )
        .bind(token.user_id)
        .bind(&token.jti)
        .bind(token.created_at)
        .bind(token.expires_at)
        .bind(blacklisted_at)
        .execute(pool)
        .await
        .map(|_| ()))
        .map_err(db_error)?;
        Ok(if existed {
            Upserted::Updated
        } else {
            Upserted::Inserted
        })
    }

    async fn record_outstanding(&self, token: &OutstandingToken) -> Result<(), StoreError> {
        // The user is recorded only if it exists, as a foreign key must.
        execute!(
            self,
            "INSERT INTO outstanding_tokens (user_id, jti, created_at, expires_at) \
             VALUES ((SELECT id FROM users WHERE id = $1), $2, $3, $4) \
             ON CONFLICT (jti) DO NOTHING",
            token.user_id,
            &token.jti,
            token.created_at,
            token.expires_at,
        )
        .map(|_| ())
    }

    async fn is_blacklisted(&self, jti: &str) -> Result<bool, StoreError> {
        const SQL: &str =
            "SELECT id FROM outstanding_tokens WHERE jti = $1 AND blacklisted_at IS NOT NULL";
        if let Some(found) = self
            .inline
            .as_ref()
            .and_then(|inline| inline.read(|c| one_row(c, SQL, jti, |_| Ok(()))))
        {
            return Ok(found.is_some());
        }
        let found = on_pool!(self, pool => sqlx::query_scalar::<_, i64>(SQL)
        .bind(jti)
        .fetch_optional(pool)
        .await)
        .map_err(db_error)?;
        Ok(found.is_some())
    }

    async fn blacklist(&self, token: &OutstandingToken, at: i64) -> Result<bool, StoreError> {
        // simplejwt's get_or_create of the OutstandingToken, then one
        // conditional UPDATE: only the caller that flips blacklisted_at from
        // NULL sees a row affected, however many race.
        self.record_outstanding(token).await?;
        let changed = execute!(
            self,
            "UPDATE outstanding_tokens SET blacklisted_at = $1 WHERE jti = $2 AND blacklisted_at IS NULL",
            at,
            &token.jti,
        )?;
        Ok(changed == 1)
    }

    async fn flush_expired(&self, now: i64) -> Result<u64, StoreError> {
        // A session outlives none of its refresh tokens: its expires_at is
        // the exp of the newest one.
        execute!(self, "DELETE FROM sessions WHERE expires_at <= $1", now)?;
        execute!(
            self,
            "DELETE FROM outstanding_tokens WHERE expires_at <= $1",
            now
        )
    }
}

#[async_trait]
impl SessionStore for SqlStore {
    async fn start_session(
        &self,
        session: &Session,
        first: &OutstandingToken,
    ) -> Result<(), StoreError> {
        on_writer!(self, pool => async {
            let mut tx = pool.begin_write().await?;
            sqlx::query(
                "INSERT INTO sessions \
                 (id, user_id, created_at, last_used_at, expires_at, ip_address, user_agent) \
                 VALUES ($1, (SELECT id FROM users WHERE id = $2), $3, $4, $5, $6, $7)",
            )
            .bind(&session.id)
            .bind(session.user_id)
            .bind(session.created_at)
            .bind(session.last_used_at)
            .bind(session.expires_at)
            .bind(session.client.ip_address.as_deref())
            .bind(session.client.user_agent.as_deref())
            .execute(&mut *tx)
            .await?;
            sqlx::query(RECORD_IN_FAMILY)
                .bind(first.user_id)
                .bind(&first.jti)
                .bind(first.created_at)
                .bind(first.expires_at)
                .bind(&session.id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await
        }
        .await)
        .map_err(db_error)
    }

    async fn rotate_in_family(
        &self,
        presented: &OutstandingToken,
        family: &str,
        successor: &OutstandingToken,
        now: i64,
        client: &Client,
    ) -> Result<RotationClaim, StoreError> {
        if let Some(queue) = &self.rotations
            && let Some(claim) = queue
                .rotate(presented, family, successor, now, client)
                .await?
        {
            return Ok(claim);
        }
        // Lock order: the session row first, then token rows, as
        // revoke_session does, so a rotation and a revocation of one
        // family serialise (PostgreSQL) and never deadlock. SQLite runs
        // one writer at a time (BEGIN IMMEDIATE takes the lock).
        on_writer!(self, pool => async {
            let mut tx = pool.begin_write().await?;
            // A token issued before sessions existed starts its family here.
            sqlx::query(
                "INSERT INTO sessions (id, user_id, created_at, last_used_at, expires_at) \
                 VALUES ($1, (SELECT id FROM users WHERE id = $2), $3, $3, $4) ON CONFLICT (id) DO NOTHING",
            )
            .bind(family)
            .bind(presented.user_id)
            .bind(now)
            .bind(presented.expires_at)
            .execute(&mut *tx)
            .await?;
            let live = sqlx::query(
                "UPDATE sessions SET last_used_at = $1, ip_address = $3, user_agent = $4 \
                 WHERE id = $2 AND revoked_at IS NULL",
            )
            .bind(now)
            .bind(family)
            .bind(client.ip_address.as_deref())
            .bind(client.user_agent.as_deref())
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if live == 0 {
                tx.rollback().await?;
                return Ok(RotationClaim::Ended);
            }
            sqlx::query(RECORD_IN_FAMILY)
                .bind(presented.user_id)
                .bind(&presented.jti)
                .bind(presented.created_at)
                .bind(presented.expires_at)
                .bind(family)
                .execute(&mut *tx)
                .await?;
            // The gate: only the caller that sets rotated_at wins.
            let won = sqlx::query(
                "UPDATE outstanding_tokens SET rotated_at = $1, successor_jti = $2, \
                 successor_created_at = $3, successor_expires_at = $4, \
                 family_id = COALESCE(family_id, $5) \
                 WHERE jti = $6 AND rotated_at IS NULL AND blacklisted_at IS NULL",
            )
            .bind(now)
            .bind(&successor.jti)
            .bind(successor.created_at)
            .bind(successor.expires_at)
            .bind(family)
            .bind(&presented.jti)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            let claim = if won {
                sqlx::query(RECORD_IN_FAMILY)
                    .bind(successor.user_id)
                    .bind(&successor.jti)
                    .bind(successor.created_at)
                    .bind(successor.expires_at)
                    .bind(family)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("UPDATE sessions SET expires_at = $1 WHERE id = $2 AND expires_at < $1")
                    .bind(successor.expires_at)
                    .bind(family)
                    .execute(&mut *tx)
                    .await?;
                RotationClaim::Won
            } else {
                sqlx::query_as::<_, RotatedRow>(
                    "SELECT blacklisted_at, rotated_at, successor_jti, successor_created_at, \
                     successor_expires_at FROM outstanding_tokens WHERE jti = $1",
                )
                .bind(&presented.jti)
                .fetch_optional(&mut *tx)
                .await?
                .map_or(RotationClaim::Ended, RotationClaim::from)
            };
            tx.commit().await?;
            Ok(claim)
        }
        .await)
        .map_err(db_error)
    }

    async fn revoke_session(&self, id: &str, at: i64) -> Result<bool, StoreError> {
        let result = on_writer!(self, pool => async {
            let mut tx = pool.begin_write().await?;
            let ended = sqlx::query(
                "UPDATE sessions SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
            )
            .bind(at)
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            sqlx::query(
                "UPDATE outstanding_tokens SET blacklisted_at = $1 \
                 WHERE family_id = $2 AND blacklisted_at IS NULL",
            )
            .bind(at)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(ended)
        }
        .await)
        .map_err(db_error);
        if result.is_ok() {
            self.notify_revoked().await;
        }
        result
    }

    async fn live_sessions(&self, user_id: i64, now: i64) -> Result<Vec<Session>, StoreError> {
        let rows = on_pool!(self, pool => sqlx::query_as::<_, SessionRow>(
            "SELECT id, user_id, created_at, last_used_at, expires_at, ip_address, user_agent \
             FROM sessions \
             WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2 \
             ORDER BY created_at DESC, id",
        )
        .bind(user_id)
        .bind(now)
        .fetch_all(pool)
        .await)
        .map_err(db_error)?;
        Ok(rows.into_iter().map(Session::from).collect())
    }

    async fn end_sessions(
        &self,
        user_id: i64,
        except: Option<&str>,
        at: i64,
    ) -> Result<Vec<String>, StoreError> {
        // Session ids are never empty: '' stands for "no exception".
        let except = except.unwrap_or("");
        let result = on_writer!(self, pool => async {
            let mut tx = pool.begin_write().await?;
            // Never moves backwards: a later logout-all wins.
            sqlx::query(
                "UPDATE users SET sessions_not_before = $1 WHERE id = $2 \
                 AND (sessions_not_before IS NULL OR sessions_not_before < $1)",
            )
            .bind(at)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
            let ended = sqlx::query_scalar::<_, String>(
                "UPDATE sessions SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL \
                 AND id <> $3 RETURNING id",
            )
            .bind(at)
            .bind(user_id)
            .bind(except)
            .fetch_all(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE outstanding_tokens SET blacklisted_at = $1 \
                 WHERE user_id = $2 AND blacklisted_at IS NULL \
                 AND (family_id IS NULL OR family_id <> $3)",
            )
            .bind(at)
            .bind(user_id)
            .bind(except)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(ended)
        }
        .await)
        .map_err(db_error);
        if result.is_ok() {
            self.notify_revoked().await;
        }
        result
    }

    async fn revocations(&self, since: i64) -> Result<Revocations, StoreError> {
        let sessions = on_pool!(self, pool => sqlx::query_as::<_, (String, i64)>(
            "SELECT id, revoked_at FROM sessions WHERE revoked_at >= $1",
        )
        .bind(since)
        .fetch_all(pool)
        .await)
        .map_err(db_error)?;
        let users_not_before = on_pool!(self, pool => sqlx::query_as::<_, (i64, i64)>(
            "SELECT id, sessions_not_before FROM users WHERE sessions_not_before >= $1",
        )
        .bind(since)
        .fetch_all(pool)
        .await)
        .map_err(db_error)?;
        Ok(Revocations {
            sessions,
            users_not_before,
        })
    }
}

#[async_trait]
impl ThrottleStore for SqlStore {
    async fn login_blocked_until(&self, key: &str) -> Result<i64, StoreError> {
        let until: Option<i64> = on_pool!(self, pool => {
            sqlx::query_scalar("SELECT blocked_until FROM login_failures WHERE throttle_key = $1")
                .bind(key)
                .fetch_optional(pool)
                .await
        })
        .map_err(db_error)?;
        Ok(until.unwrap_or(0))
    }

    async fn record_login_failure(
        &self,
        key: &str,
        now: i64,
        window_expired: i64,
    ) -> Result<LoginFailures, StoreError> {
        // One statement, so concurrent failures on several nodes all count.
        // Both dialects evaluate every SET expression on the old row.
        let row: (i64, i64, i64) = on_writer!(self, pool => {
            sqlx::query_as(
                "INSERT INTO login_failures (throttle_key, failures, window_start, blocked_until) \
                 VALUES ($1, 1, $2, 0) ON CONFLICT (throttle_key) DO UPDATE SET \
                 failures = CASE WHEN login_failures.window_start <= $3 THEN 1 \
                     ELSE login_failures.failures + 1 END, \
                 window_start = CASE WHEN login_failures.window_start <= $3 THEN $2 \
                     ELSE login_failures.window_start END \
                 RETURNING failures, window_start, blocked_until",
            )
            .bind(key)
            .bind(now)
            .bind(window_expired)
            .fetch_one(pool)
            .await
        })
        .map_err(db_error)?;
        Ok(LoginFailures {
            failures: row.0,
            window_start: row.1,
            blocked_until: row.2,
        })
    }

    async fn block_login(&self, key: &str, until: i64) -> Result<(), StoreError> {
        execute!(
            self,
            "UPDATE login_failures SET blocked_until = $2 \
             WHERE throttle_key = $1 AND blocked_until < $2",
            key,
            until
        )?;
        Ok(())
    }

    async fn clear_login_failures(&self, key: &str) -> Result<bool, StoreError> {
        let deleted = execute!(
            self,
            "DELETE FROM login_failures WHERE throttle_key = $1",
            key
        )?;
        Ok(deleted > 0)
    }

    async fn prune_login_failures(
        &self,
        now: i64,
        window_start_before: i64,
    ) -> Result<u64, StoreError> {
        execute!(
            self,
            "DELETE FROM login_failures WHERE blocked_until <= $1 AND window_start < $2",
            now,
            window_start_before
        )
    }
}

#[async_trait]
impl KeyStore for SqlStore {
    async fn setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        on_pool!(self, pool => sqlx::query_scalar::<_, String>("SELECT value FROM server_settings WHERE key = $1")
            .bind(key)
            .fetch_optional(pool)
            .await)
        .map_err(db_error)
    }

    async fn init_setting(&self, key: &str, value: &str) -> Result<String, StoreError> {
        execute!(
            self,
            "INSERT INTO server_settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
            key,
            value,
        )?;
        self.setting(key)
            .await?
            .ok_or_else(|| StoreError::Database(format!("setting {key} vanished after insert")))
    }

    async fn signing_keys(&self) -> Result<Vec<StoredKey>, StoreError> {
        let rows = on_pool!(self, pool => sqlx::query_as::<_, KeyRow>(
            "SELECT kid, algorithm, private_key, public_key, created_at, activates_at, retires_at \
             FROM signing_keys ORDER BY created_at, kid",
        )
        .fetch_all(pool)
        .await)
        .map_err(db_error)?;
        Ok(rows.into_iter().map(StoredKey::from).collect())
    }

    async fn add_signing_key(
        &self,
        key: &StoredKey,
        supersedes: Option<(&str, i64)>,
    ) -> Result<(), StoreError> {
        let result = on_writer!(self, pool => async {
            let mut tx = pool.begin_write().await?;
            sqlx::query(
                "INSERT INTO signing_keys \
                 (kid, algorithm, private_key, public_key, created_at, activates_at, retires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&key.kid)
            .bind(&key.algorithm)
            .bind(&key.private_key)
            .bind(&key.public_key)
            .bind(key.created_at)
            .bind(key.activates_at)
            .bind(key.retires_at)
            .execute(&mut *tx)
            .await?;
            if let Some((old, at)) = supersedes {
                sqlx::query(RETIRE_KEY).bind(at).bind(old).execute(&mut *tx).await?;
            }
            tx.commit().await
        }
        .await);
        match result {
            Ok(()) => Ok(()),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(StoreError::Conflict(
                format!("a key with kid {:?} already exists", key.kid),
            )),
            Err(e) => Err(db_error(e)),
        }
    }

    async fn retire_signing_key(&self, kid: &str, at: i64) -> Result<bool, StoreError> {
        on_writer!(self, pool => sqlx::query(RETIRE_KEY)
            .bind(at)
            .bind(kid)
            .execute(pool)
            .await
            .map(|_| ()))
        .map_err(db_error)?;
        let exists = on_pool!(self, pool => sqlx::query_scalar::<_, String>(
            "SELECT kid FROM signing_keys WHERE kid = $1",
        )
        .bind(kid)
        .fetch_optional(pool)
        .await)
        .map_err(db_error)?;
        Ok(exists.is_some())
    }
}

#[cfg(test)]
mod tests {
    use portcullis_core::Username;

    use super::*;

    async fn file_store(dir: &tempfile::TempDir) -> SqlStore {
        let url = format!("sqlite://{}", dir.path().join("db.sqlite3").display());
        SqlStore::connect(&url).await.unwrap()
    }

    async fn alice(store: &SqlStore) -> User {
        store
            .create_user(&NewUser {
                username: Username::parse("alice").unwrap(),
                email: "alice@example.com".to_owned(),
                password_hash: "!".to_owned(),
                is_active: true,
                is_staff: false,
                is_superuser: false,
                date_joined: 1_700_000_000,
            })
            .await
            .unwrap()
    }

    fn token(user: &User) -> OutstandingToken {
        OutstandingToken {
            jti: "a1b2".to_owned(),
            user_id: Some(user.id),
            created_at: Some(1_700_000_000),
            expires_at: 4_000_000_000,
        }
    }

    /// The inline readers answer themselves (no fallback), and see each
    /// write committed before the read.
    #[tokio::test]
    async fn inline_reads_see_every_committed_write() {
        let dir = tempfile::tempdir().unwrap();
        let store = file_store(&dir).await;
        let inline = store.inline.clone().expect("a SQLite file reads inline");
        let by_id = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
        let blacklisted =
            "SELECT id FROM outstanding_tokens WHERE jti = $1 AND blacklisted_at IS NOT NULL";

        let user = alice(&store).await;
        let read = inline.read(|c| one_row(c, &by_id, user.id, user_from_row));
        assert_eq!(read, Some(Some(user.clone())));
        assert_eq!(
            inline.read(|c| one_row(c, &by_id, user.id + 1, user_from_row)),
            Some(None)
        );

        assert!(store.set_active(user.id, false).await.unwrap());
        let read = inline.read(|c| one_row(c, &by_id, user.id, user_from_row));
        assert_eq!(read.flatten().map(|u| u.is_active), Some(false));
        assert_eq!(
            store
                .user_by_id(user.id)
                .await
                .unwrap()
                .map(|u| u.is_active),
            Some(false)
        );

        let token = token(&user);
        store.record_outstanding(&token).await.unwrap();
        assert_eq!(
            inline.read(|c| one_row(c, blacklisted, "a1b2", |_| Ok(()))),
            Some(None)
        );
        assert!(!store.is_blacklisted("a1b2").await.unwrap());
        assert!(store.blacklist(&token, 1_700_000_001).await.unwrap());
        assert_eq!(
            inline.read(|c| one_row(c, blacklisted, "a1b2", |_| Ok(()))),
            Some(Some(()))
        );
        assert!(store.is_blacklisted("a1b2").await.unwrap());
    }

    /// A read the inline connections cannot make is made by sqlx's pool,
    /// with the same answer.
    #[tokio::test]
    async fn a_failed_inline_read_is_asked_of_the_pool() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = file_store(&dir).await;
        let user = alice(&store).await;
        store.blacklist(&token(&user), 1_700_000_001).await.unwrap();
        let nowhere = Arc::new(InlineReader::new(dir.path().join("missing.sqlite3")));
        assert_eq!(nowhere.read(|_| Ok(())), None);
        store.inline = Some(nowhere);

        assert_eq!(store.user_by_id(user.id).await.unwrap(), Some(user));
        assert!(store.is_blacklisted("a1b2").await.unwrap());
        assert!(!store.is_blacklisted("c3d4").await.unwrap());
    }

    /// No inline reader, and no stray file named after sqlx's in-memory
    /// database in the working directory.
    #[tokio::test]
    async fn an_in_memory_database_is_read_by_the_pool_only() {
        let store = SqlStore::connect("sqlite::memory:").await.unwrap();
        assert!(store.inline.is_none());
        let user = alice(&store).await;
        assert_eq!(store.user_by_id(user.id).await.unwrap(), Some(user));
        let stray = std::fs::read_dir(".")
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().contains("in-memory"))
            .count();
        assert_eq!(stray, 0);
    }
}
