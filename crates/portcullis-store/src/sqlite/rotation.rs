//! Refresh-token rotations on SQLite, written in batches (group commit).
//!
//! Why: SQLite runs one writer at a time, and sqlx runs each SQLite
//! connection on a thread of its own, so every statement is a round trip
//! between threads: two wake-ups, each waiting for a core when the machine
//! is busy. One rotation at a time, eight round trips each, is a queue that
//! moves at the pace of those wake-ups, not of SQLite (64 concurrent
//! rotations ran at 2% of the fixed-body ceiling, p50 37 ms; issue
//! "Benchmarks that prove the speed"). Here one task takes every rotation
//! waiting, and writes them all in one transaction of four round trips:
//! the more wait, the larger the batch, and the queue keeps up.
//!
//! What a batch does, in one `BEGIN IMMEDIATE` transaction on the writer
//! connection (nothing else writes meanwhile):
//! 1. one `SELECT` reads the state of each rotation's session and presented
//!    token;
//! 2. each rotation is decided from it, exactly as the general path
//!    (`SqlStore::rotate_in_family`) would decide it, statement for
//!    statement: a revoked session is `Ended` with nothing written; a live
//!    or missing session with a presented token that is missing, or neither
//!    rotated nor blacklisted, wins;
//! 3. one statement text writes every win: the session created (a token
//!    from before sessions starts its family) or touched (last use, client)
//!    with its expiry raised to the successor's; the presented token's row
//!    created already rotated, or set rotated; the successor's row created.
//!    The rows changed are counted: anything unexpected rolls the whole
//!    batch back and every rotation in it takes the general path;
//! 4. commit, then answer each rotation.
//!
//! What a batch does not decide is answered "take the general path" after
//! the commit: a presented token already rotated or blacklisted (a repeat
//! within the grace window, or reuse, which must tell the two apart and may
//! end the session), and a second rotation of a token or a session already
//! in the batch (it must see the first one's outcome). The general path
//! then runs on the same writer connection, after the batch, as if it had
//! come after it in the queue. So the outcome of every rotation is that of
//! the general path run at some instant between its call and its answer.
//!
//! The task is spawned on the first rotation and ends when the last clone
//! of the store is dropped. A rotation whose caller goes away (the client
//! hung up) is still written or not as a whole: the task is not cancelled
//! with the request, so a batch never stops half way.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::{Arc, OnceLock};

use portcullis_core::{Client, OutstandingToken, RotationClaim, StoreError};
use sqlx::SqlitePool;
use tokio::sync::{mpsc, oneshot};

use crate::pool::BeginWrite;

/// At most this many rotations in one transaction: as many as the
/// benchmark's concurrent clients. It bounds the statement texts the
/// writer connection prepares and caches (one per batch size, for the read
/// and for the write: 128 in all, within `WRITER_STATEMENTS`) and the
/// values bound to one statement text (12 per rotation, far below
/// SQLite's limit of 32,766).
const MAX_BATCH: usize = 64;

/// The answer to one rotation: its outcome, or `None` for "take the
/// general path".
type Answer = Result<Option<RotationClaim>, StoreError>;

/// A rotation waiting for the writer task.
struct Job {
    presented: OutstandingToken,
    family: String,
    successor: OutstandingToken,
    now: i64,
    client: Client,
    answer: oneshot::Sender<Answer>,
}

/// The way to the writer task (one per store; clones share it).
#[derive(Debug, Clone)]
pub(crate) struct RotationQueue {
    writer: SqlitePool,
    jobs: Arc<OnceLock<mpsc::UnboundedSender<Job>>>,
}

impl RotationQueue {
    pub(crate) fn new(writer: SqlitePool) -> Self {
        Self {
            writer,
            jobs: Arc::new(OnceLock::new()),
        }
    }

    /// Queue one rotation and wait for its answer: `Some` outcome, or
    /// `None` when the caller must run the general path.
    pub(crate) async fn rotate(
        &self,
        presented: &OutstandingToken,
        family: &str,
        successor: &OutstandingToken,
        now: i64,
        client: &Client,
    ) -> Answer {
        // Spawned here, not when the store opens: on the runtime that
        // serves, whatever runtime opened the store.
        let jobs = self.jobs.get_or_init(|| {
            let (send, receive) = mpsc::unbounded_channel();
            tokio::spawn(write_batches(self.writer.clone(), receive));
            send
        });
        let (answer, answered) = oneshot::channel();
        let job = Job {
            presented: presented.clone(),
            family: family.to_owned(),
            successor: successor.clone(),
            now,
            client: client.clone(),
            answer,
        };
        if jobs.send(job).is_err() {
            return Err(stopped());
        }
        answered.await.unwrap_or_else(|_| Err(stopped()))
    }
}

fn stopped() -> StoreError {
    StoreError::unusable("the SQLite rotation writer has stopped")
}

/// The writer task: every rotation waiting, up to [`MAX_BATCH`], in one
/// transaction, until the store is dropped.
async fn write_batches(writer: SqlitePool, mut jobs: mpsc::UnboundedReceiver<Job>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while jobs.recv_many(&mut batch, MAX_BATCH).await > 0 {
        match write_batch(&writer, &batch).await {
            Ok(outcomes) => {
                for (job, outcome) in batch.drain(..).zip(outcomes) {
                    job.answer.send(Ok(outcome)).ok();
                }
            }
            Err(e) => {
                // Rolled back (the transaction is dropped unfinished).
                let e = Arc::new(e);
                for job in batch.drain(..) {
                    let e = StoreError::driver(Arc::clone(&e));
                    job.answer.send(Err(e)).ok();
                }
            }
        }
    }
}

/// One batch (see the module's documentation): each job's outcome, in order.
async fn write_batch(
    writer: &SqlitePool,
    jobs: &[Job],
) -> Result<Vec<Option<RotationClaim>>, sqlx::Error> {
    let mut tx = writer.begin_write().await?;

    let mut read =
        sqlx::query_as::<_, (String, String, i64)>(sqlx::AssertSqlSafe(read_sql(jobs.len())));
    for job in jobs {
        read = read.bind(&job.family);
    }
    for job in jobs {
        read = read.bind(&job.presented.jti);
    }
    // Sessions that exist, and whether each is live (not revoked);
    // presented tokens that have a row, and whether each is open (neither
    // rotated nor blacklisted).
    let mut sessions = HashMap::new();
    let mut tokens = HashMap::new();
    for (table, key, open) in read.fetch_all(&mut *tx).await? {
        let map = if table == "s" {
            &mut sessions
        } else {
            &mut tokens
        };
        map.insert(key, open != 0);
    }

    let mut families = HashSet::new();
    let mut presented = HashSet::new();
    let mut outcomes = Vec::with_capacity(jobs.len());
    let mut winners = Vec::new();
    for job in jobs {
        let new_family = families.insert(job.family.as_str());
        let new_token = presented.insert(job.presented.jti.as_str());
        let outcome = if !(new_family && new_token) {
            // It must see the outcome of the one before it.
            None
        } else if sessions.get(&job.family) == Some(&false) {
            Some(RotationClaim::Ended)
        } else if tokens.get(&job.presented.jti) == Some(&false) {
            // Rotated or blacklisted: a repeat or reuse.
            None
        } else {
            winners.push(job);
            Some(RotationClaim::Won)
        };
        outcomes.push(outcome);
    }

    if !winners.is_empty() {
        let mut write = sqlx::query(sqlx::AssertSqlSafe(write_sql(winners.len())));
        for job in &winners {
            write = write
                .bind(&job.family)
                .bind(job.presented.user_id)
                .bind(job.now)
                .bind(job.presented.expires_at)
                .bind(job.successor.expires_at)
                .bind(job.client.ip_address.as_deref())
                .bind(job.client.user_agent.as_deref())
                .bind(&job.presented.jti)
                .bind(job.presented.created_at)
                .bind(&job.successor.jti)
                .bind(job.successor.created_at)
                .bind(job.successor.user_id);
        }
        let changed = write.execute(&mut *tx).await?.rows_affected();
        // Per win: the session, the presented token, the successor.
        let expected = u64::try_from(winners.len() * 3).unwrap_or(u64::MAX);
        if changed != expected {
            tracing::warn!(
                changed,
                expected,
                "a batch of rotations changed unexpected rows; each takes the general path"
            );
            tx.rollback().await?;
            return Ok(jobs.iter().map(|_| None).collect());
        }
    }
    tx.commit().await?;
    Ok(outcomes)
}

/// The state of `n` sessions (`$1`…`$n`) and presented tokens
/// (`$n+1`…`$2n`): (`'s'` or `'t'`, id, 1 if live or open).
fn read_sql(n: usize) -> String {
    let mut sql = String::from("SELECT 's', id, revoked_at IS NULL FROM sessions WHERE id IN (");
    push_list(&mut sql, 1, n);
    sql.push_str(
        ") UNION ALL SELECT 't', jti, rotated_at IS NULL AND blacklisted_at IS NULL \
         FROM outstanding_tokens WHERE jti IN (",
    );
    push_list(&mut sql, n + 1, n);
    sql.push(')');
    sql
}

/// `$first, …` (`n` placeholders).
fn push_list(sql: &mut String, first: usize, n: usize) {
    for i in first..first + n {
        if i > first {
            sql.push_str(", ");
        }
        write!(sql, "${i}").ok();
    }
}

/// One win's writes, its 12 values numbered from `$1` (see [`write_sql`]):
/// family, presented user, now, presented exp, successor exp, address,
/// user agent, presented jti, presented iat, successor jti, successor iat,
/// successor user. A new session gets the later of the two expiries (the
/// general path creates it with the presented token's and raises it to
/// the successor's); a user that does not exist is recorded as none, as a
/// foreign key must. The presented token's `ON CONFLICT` is the gate of
/// the general path (kept, although the read already checked it, so that
/// a change of mind shows as an unexpected count); the successor's is
/// never taken (its `jti` is new).
const WIN: &str = "\
INSERT INTO sessions (id, user_id, created_at, last_used_at, expires_at, ip_address, user_agent) \
 VALUES ($1, (SELECT id FROM users WHERE id = $2), $3, $3, MAX($4, $5), $6, $7) \
 ON CONFLICT (id) DO UPDATE SET last_used_at = excluded.last_used_at, \
 ip_address = excluded.ip_address, user_agent = excluded.user_agent, \
 expires_at = MAX(sessions.expires_at, $5) \
 WHERE sessions.revoked_at IS NULL; \
INSERT INTO outstanding_tokens (user_id, jti, created_at, expires_at, family_id, \
 rotated_at, successor_jti, successor_created_at, successor_expires_at) \
 VALUES ((SELECT id FROM users WHERE id = $2), $8, $9, $4, $1, $3, $10, $11, $5), \
 ((SELECT id FROM users WHERE id = $12), $10, $11, $5, $1, NULL, NULL, NULL, NULL) \
 ON CONFLICT (jti) DO UPDATE SET rotated_at = excluded.rotated_at, \
 successor_jti = excluded.successor_jti, successor_created_at = excluded.successor_created_at, \
 successor_expires_at = excluded.successor_expires_at, \
 family_id = COALESCE(outstanding_tokens.family_id, excluded.family_id) \
 WHERE outstanding_tokens.jti = $8 AND outstanding_tokens.rotated_at IS NULL \
 AND outstanding_tokens.blacklisted_at IS NULL; ";

/// Values per win in [`WIN`].
const WIN_VALUES: usize = 12;

/// [`WIN`] `n` times, the k-th with its values renumbered from
/// `$(12k + 1)`: sqlx binds `$N` to the N-th value across all statements
/// of one text.
fn write_sql(n: usize) -> String {
    let mut sql = String::with_capacity(WIN.len() * n);
    for k in 0..n {
        let base = k * WIN_VALUES;
        let mut rest = WIN;
        while let Some(at) = rest.find('$') {
            let (before, after) = rest.split_at(at);
            sql.push_str(before);
            let after = after.trim_start_matches('$');
            let digits = after
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(after.len());
            let (number, tail) = after.split_at(digits);
            let number: usize = number.parse().unwrap_or(0);
            write!(sql, "${}", number + base).ok();
            rest = tail;
        }
        sql.push_str(rest);
    }
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_sql_renumbers_each_win() {
        let two = write_sql(2);
        let (first, second) = two.split_at(WIN.len());
        assert_eq!(first, WIN);
        assert!(second.contains(
            "VALUES ($13, (SELECT id FROM users WHERE id = $14), $15, $15, MAX($16, $17), $18, $19)"
        ));
        assert!(
            second.contains("((SELECT id FROM users WHERE id = $24), $22, $23, $17, $13, NULL")
        );
        assert!(!second.contains("$1,") && !second.contains("$25"));
    }

    #[test]
    fn read_sql_lists_sessions_then_tokens() {
        assert_eq!(
            read_sql(2),
            "SELECT 's', id, revoked_at IS NULL FROM sessions WHERE id IN ($1, $2) UNION ALL \
             SELECT 't', jti, rotated_at IS NULL AND blacklisted_at IS NULL \
             FROM outstanding_tokens WHERE jti IN ($3, $4)"
        );
    }
}
