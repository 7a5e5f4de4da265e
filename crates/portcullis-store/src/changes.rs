//! Whether anyone changed an account since the account cache last looked:
//! [`portcullis_core::UserStore::account_changes`], so that a change made by
//! another process (another node, `portcullis user deactivate`) is seen by
//! the very next request, as simplejwt, which reads the user every time,
//! sees it.
//!
//! - **SQLite**: one read-only connection of its own asks `PRAGMA
//!   data_version`, which changes when any other connection (of this
//!   process or another) committed. Only then is the `account_changes`
//!   counter read, which triggers move on every change of an account row
//!   (migration `account_changes`): logins and refreshes written meanwhile
//!   do not empty the cache. Both reads are local and take microseconds.
//! - **PostgreSQL**: a trigger announces every change of an account row on
//!   [`ACCOUNT_CHANNEL`] when its transaction commits; a task listens and
//!   moves the counter. A change on another node is therefore seen once its
//!   notification arrives, a few milliseconds after the commit. Until the
//!   listener is connected (and while it reconnects), every call moves the
//!   counter: nothing is served from the cache that a lost notification
//!   might have made stale.
//!
//! Wherever a read fails, the answer is a moved counter: the cost is a
//! database read, never a stale account.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use rusqlite::Connection;
use sqlx::PgPool;
use sqlx::postgres::PgListener;

use crate::sqlite::open_reader;

/// The PostgreSQL `LISTEN`/`NOTIFY` channel announcing changed accounts
/// (the payload is the account's id).
pub const ACCOUNT_CHANNEL: &str = "portcullis_accounts";

/// How a store tells that accounts changed elsewhere.
#[derive(Debug, Clone)]
pub(crate) enum AccountChanges {
    /// An in-memory SQLite database: only this process can write it, and
    /// its writes go through the account cache.
    Local,
    /// A SQLite file.
    Sqlite(Arc<SqliteWatch>),
    /// PostgreSQL.
    Postgres(Arc<PgWatch>),
}

impl AccountChanges {
    pub(crate) fn current(&self) -> u64 {
        match self {
            Self::Local => 0,
            Self::Sqlite(watch) => watch.current(),
            Self::Postgres(watch) => watch.current(),
        }
    }
}

/// The SQLite side: a connection of its own, so that its `data_version`
/// moves for every commit made by anyone else.
#[derive(Debug)]
pub(crate) struct SqliteWatch {
    path: PathBuf,
    state: Mutex<SqliteState>,
}

#[derive(Debug, Default)]
struct SqliteState {
    connection: Option<Connection>,
    /// `PRAGMA data_version` when the counter was last read.
    data_version: Option<i64>,
    /// The `account_changes` counter as last read.
    counter: Option<i64>,
    /// What [`SqliteWatch::current`] answers; moves with the counter.
    epoch: u64,
}

impl SqliteWatch {
    pub(crate) fn new(path: PathBuf) -> Self {
        Self {
            path,
            state: Mutex::new(SqliteState::default()),
        }
    }

    fn current(&self) -> u64 {
        let Ok(mut state) = self.state.lock() else {
            return u64::MAX;
        };
        match self.read(&mut state) {
            Ok(epoch) => epoch,
            Err(e) => {
                tracing::debug!(error = %e, "cannot tell whether accounts changed; assuming they did");
                // Read everything again next time, on a fresh connection.
                state.connection = None;
                state.data_version = None;
                state.epoch = state.epoch.wrapping_add(1);
                state.epoch
            }
        }
    }

    fn read(&self, state: &mut SqliteState) -> rusqlite::Result<u64> {
        if state.connection.is_none() {
            state.connection = Some(open_reader(&self.path)?);
        }
        let Some(connection) = state.connection.as_ref() else {
            return Ok(state.epoch);
        };
        let data_version: i64 = connection
            .prepare_cached("PRAGMA data_version")?
            .query_row([], |row| row.get(0))?;
        if state.data_version == Some(data_version) {
            return Ok(state.epoch);
        }
        let counter: i64 = connection
            .prepare_cached("SELECT version FROM account_changes WHERE id = 1")?
            .query_row([], |row| row.get(0))?;
        state.data_version = Some(data_version);
        if state.counter != Some(counter) {
            state.counter = Some(counter);
            state.epoch = state.epoch.wrapping_add(1);
        }
        Ok(state.epoch)
    }
}

/// The PostgreSQL side: a counter moved by a listening task, started by
/// the first question (the `portcullis` commands never ask, and so never
/// open the listening connection).
#[derive(Debug)]
pub(crate) struct PgWatch {
    pool: PgPool,
    version: AtomicU64,
    listening: AtomicBool,
    started: AtomicBool,
}

impl PgWatch {
    pub(crate) fn new(pool: PgPool) -> Arc<Self> {
        Arc::new(Self {
            pool,
            version: AtomicU64::new(0),
            listening: AtomicBool::new(false),
            started: AtomicBool::new(false),
        })
    }

    fn current(self: &Arc<Self>) -> u64 {
        if !self.started.swap(true, Ordering::AcqRel) {
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => drop(runtime.spawn(listen(Arc::downgrade(self)))),
                Err(_) => self.started.store(false, Ordering::Release),
            }
        }
        if self.listening.load(Ordering::Acquire) {
            self.version.load(Ordering::Acquire)
        } else {
            self.moved()
        }
    }

    fn moved(&self) -> u64 {
        self.version.fetch_add(1, Ordering::AcqRel).wrapping_add(1)
    }
}

/// Listen on [`ACCOUNT_CHANNEL`] for as long as the store lives,
/// reconnecting after a failure.
async fn listen(watch: Weak<PgWatch>) {
    loop {
        let Some(pool) = watch
            .upgrade()
            .map(|w| w.pool.clone())
            .filter(|pool| !pool.is_closed())
        else {
            return;
        };
        let listener = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(ACCOUNT_CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        }
        .await;
        drop(pool);
        match listener {
            Ok(mut listener) => {
                let Some(w) = watch.upgrade() else { return };
                w.listening.store(true, Ordering::Release);
                // What changed before the LISTEN took effect is unknown.
                w.moved();
                drop(w);
                loop {
                    let received = listener.try_recv().await;
                    let Some(w) = watch.upgrade() else { return };
                    w.moved();
                    if !matches!(received, Ok(Some(_))) {
                        // The connection was lost (notifications meanwhile
                        // with it): no cache until it is back.
                        w.listening.store(false, Ordering::Release);
                        if let Err(e) = received
                            && !w.pool.is_closed()
                        {
                            tracing::warn!(error = %e, "the account change listener failed; reconnecting");
                        }
                        break;
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for account changes; retrying");
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
