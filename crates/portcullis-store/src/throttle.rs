//! The login throttle's counts ([`portcullis_core::ThrottleStore`]) in the
//! `login_failures` table.

use async_trait::async_trait;
use portcullis_core::{LoginFailures, StoreError, ThrottleStore};

use crate::SqlStore;
use crate::pool::db_error;

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
