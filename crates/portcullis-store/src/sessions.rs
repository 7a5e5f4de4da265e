//! Sessions, their refresh-token families and revocations
//! ([`portcullis_core::SessionStore`]) in the `sessions` and
//! `outstanding_tokens` tables, and the PostgreSQL notifications that tell
//! every node of a revocation at once.

use async_trait::async_trait;
use portcullis_core::{
    Client, OutstandingToken, Revocations, RotationClaim, Session, SessionStore, StoreError,
};
use sqlx::postgres::PgListener;

use crate::SqlStore;
use crate::pool::{BeginWrite as _, Pool, db_error};
use crate::rows::{RotatedRow, SessionRow};

/// The PostgreSQL `LISTEN`/`NOTIFY` channel announcing ended sessions.
pub const REVOCATION_CHANNEL: &str = "portcullis_revocations";

/// Record a refresh token in a family (the user only if it exists, as a
/// foreign key must).
pub(crate) const RECORD_IN_FAMILY: &str = "INSERT INTO outstanding_tokens (user_id, jti, created_at, expires_at, family_id) \
     VALUES ((SELECT id FROM users WHERE id = $1), $2, $3, $4, $5) ON CONFLICT (jti) DO NOTHING";

impl SqlStore {
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

    /// Pass a revocation's result on, telling the other nodes first if it
    /// was stored.
    async fn notify_if_stored<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        if result.is_ok() {
            self.notify_revoked().await;
        }
        result
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
        self.notify_if_stored(result).await
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
        self.notify_if_stored(result).await
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
