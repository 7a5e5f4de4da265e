//! SQLite point reads answered on the caller's own thread.
//!
//! sqlx runs each SQLite connection on a thread of its own: a query is sent
//! to that thread and its answer sent back, two thread wake-ups around a
//! lookup that itself takes a few microseconds. On the hottest reads (the
//! blacklist check of every refresh, the account behind a token) those
//! hand-offs were most of the request: a third of the server's CPU time in
//! the refresh row of `bench/run` was spent switching threads (issue
//! "Benchmarks that prove the speed", `perf record` of that row).
//!
//! So those reads open connections of their own (rusqlite, on the same
//! SQLite library sqlx links) and run on the calling thread. What keeps
//! that safe on an async worker thread:
//! - The connections are read-only (`SQLITE_OPEN_READ_ONLY` and
//!   `PRAGMA query_only`) and the database is in WAL mode, where a reader
//!   never waits for the writer or for a checkpoint.
//! - The busy handler is off: in the rare cases where a WAL reader would
//!   wait (another process recovering the WAL after a crash), the read
//!   fails at once and the caller takes sqlx's path, which may wait.
//!   Any other error does the same, so sqlx still reports every failure.
//! - Each read is one indexed lookup of one row; the pages are normally in
//!   SQLite's page cache or the operating system's.
//!
//! A read sees every transaction committed before it began, as a read on
//! sqlx's pool does: this node's own writes are seen by its next read.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension as _};

/// Connections kept for reuse; more may be open at once (one per thread
/// reading at that instant), the extra ones are closed after use.
const IDLE_CONNECTIONS: usize = 16;

/// Prepared statements each connection keeps.
const STATEMENTS: usize = 16;

/// Read-only connections to one SQLite file, lent to one caller at a time.
#[derive(Debug)]
pub(crate) struct InlineReader {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl InlineReader {
    /// Readers of the file at `path`, which must exist (the writer
    /// created it and switched it to WAL).
    pub(crate) fn new(path: PathBuf) -> Self {
        Self {
            path,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Run `read` on a connection of this thread's own. `None` when it
    /// cannot be done here and now (no connection could be opened, the
    /// database is busy, any other error): the caller then asks sqlx,
    /// which waits where waiting is needed and reports what is wrong.
    pub(crate) fn read<T>(
        &self,
        read: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Option<T> {
        let connection = match self.idle.lock().ok()?.pop() {
            Some(connection) => connection,
            None => open_reader(&self.path).ok()?,
        };
        let result = read(&connection);
        if let Err(e) = &result {
            tracing::debug!(error = %e, "inline SQLite read failed; asking the pool");
        }
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < IDLE_CONNECTIONS
        {
            idle.push(connection);
        }
        result.ok()
    }
}

/// A read-only connection to the SQLite file at `path` that never waits:
/// a busy database is sqlx's to wait for, not this thread's.
pub(crate) fn open_reader(path: &Path) -> rusqlite::Result<Connection> {
    let connection = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    connection.busy_timeout(Duration::ZERO)?;
    connection.pragma_update(None, "query_only", true)?;
    connection.set_prepared_statement_cache_capacity(STATEMENTS);
    Ok(connection)
}

/// `SELECT … WHERE key = $1` for at most one row, mapped by `row`.
pub(crate) fn one_row<T>(
    connection: &Connection,
    sql: &str,
    key: impl rusqlite::ToSql,
    row: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Option<T>> {
    connection
        .prepare_cached(sql)?
        .query_row([key], row)
        .optional()
}
