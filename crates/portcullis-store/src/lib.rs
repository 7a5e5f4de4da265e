//! portcullis storage: SQLite (the embedded default) and PostgreSQL behind
//! one [`SqlStore`].
//!
//! Both dialects run the same SQL text (`$1` placeholders, `RETURNING` and
//! `ON CONFLICT` work in both); only the migrations differ. Queries are
//! checked at run time rather than compile time, so the same store test
//! suite runs against both backends: `tests/store.rs`, one contract test
//! per trait of `portcullis_core::store` on SQLite and on PostgreSQL, and
//! the batched rotations against the statement-by-statement path.
//!
//! Layout: `pool.rs` opens the database (pools, migrations, how a write
//! transaction begins); `rows.rs` holds the rows as sqlx decodes them; one
//! file per aggregate implements its trait (`users.rs`, `tokens.rs`,
//! `sessions.rs`, `throttle.rs`, `keys.rs`, and `directory.rs`, `audit.rs`);
//! `changes.rs` tells the account cache of changes made elsewhere;
//! `sqlite/` holds the SQLite-only fast paths; `django.rs` reads a Django
//! database for `portcullis import django`.

use std::sync::Arc;

/// A [`portcullis_core::Store`] on SQLite or PostgreSQL.
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
    /// (see `sqlite/rotation.rs`).
    rotations: Option<RotationQueue>,
    /// SQLite files only: the hottest point reads, answered on the
    /// caller's thread (see `sqlite/inline.rs`).
    inline: Option<Arc<InlineReader>>,
    /// Whether accounts changed elsewhere (see `changes.rs`).
    changes: AccountChanges,
}

/// Run the same statement on whichever pool is in use. The body is
/// expanded once per backend, so each is type-checked for its driver.
macro_rules! on_pool {
    ($self:expr, $pool:ident => $body:expr) => {
        match &$self.pool {
            $crate::pool::Pool::Sqlite($pool) => $body,
            $crate::pool::Pool::Postgres($pool) => $body,
        }
    };
}

/// [`on_pool!`] for a write: the body gets the writer pool.
macro_rules! on_writer {
    ($self:expr, $pool:ident => $body:expr) => {
        match &$self.writer {
            $crate::pool::Pool::Sqlite($pool) => $body,
            $crate::pool::Pool::Postgres($pool) => $body,
        }
    };
}

/// Execute one writing statement with its binds on the writer pool, and
/// count the rows it changed.
macro_rules! execute {
    ($self:expr, $sql:expr $(, $bind:expr)* $(,)?) => {
        on_writer!($self, pool => sqlx::query($sql)$(.bind($bind))*.execute(pool).await.map(|r| r.rows_affected()))
            .map_err($crate::pool::db_error)
    };
}

mod audit;
mod changes;
mod directory;
mod django;
mod keys;
mod pool;
mod rows;
mod sessions;
mod sqlite;
mod throttle;
mod tokens;
mod users;

use changes::AccountChanges;
use pool::Pool;
use sqlite::{InlineReader, RotationQueue};

pub use changes::ACCOUNT_CHANNEL;
pub use django::{DjangoDatabase, DjangoToken, DjangoUser};
pub use sessions::{REVOCATION_CHANNEL, RevocationListener};
