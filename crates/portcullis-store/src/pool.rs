//! Opening the database: the pools a URL selects (SQLite's one writer
//! beside its readers, or one PostgreSQL pool), the embedded migrations,
//! how a write transaction starts, and the health check.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use portcullis_core::{Store, StoreError};
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

use crate::SqlStore;
use crate::changes::{AccountChanges, PgWatch, SqliteWatch};
use crate::sqlite::{InlineReader, RotationQueue};

/// The database a URL selects.
#[derive(Debug, Clone)]
pub(crate) enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// SQLite connections for reads. WAL lets readers run beside the writer;
/// more than a few buy nothing on the two cores the targets assume.
pub(crate) const SQLITE_READERS: u32 = 8;

/// Prepared statements the SQLite writer connection keeps: every write
/// of the store, and the batch statements of `sqlite/rotation.rs` (two per batch
/// size).
pub(crate) const WRITER_STATEMENTS: usize = 256;

/// How a write transaction starts.
pub(crate) trait BeginWrite {
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
pub(crate) fn db_error(e: sqlx::Error) -> StoreError {
    StoreError::driver(e)
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
                .map_err(|e| StoreError::database("cannot connect to PostgreSQL", e))?;
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
            let cannot = |e| StoreError::database("cannot open the SQLite database", e);
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
        result.map_err(|e| StoreError::database("migration failed", e))
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

    /// Close every connection.
    pub async fn close(&self) {
        on_pool!(self, pool => pool.close().await);
        on_writer!(self, pool => pool.close().await);
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
        Err(e) => Err(StoreError::database(
            format!("cannot create the SQLite database {}", path.display()),
            e,
        )),
    }
}

#[async_trait]
impl Store for SqlStore {
    async fn ping(&self) -> Result<(), StoreError> {
        on_pool!(self, pool => sqlx::query("SELECT 1").execute(pool).await.map(|_| ()))
            .map_err(db_error)
    }
}
