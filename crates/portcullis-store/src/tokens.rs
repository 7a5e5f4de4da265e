//! Outstanding tokens and the blacklist ([`portcullis_core::TokenStore`])
//! in the `outstanding_tokens` table.

use async_trait::async_trait;
use portcullis_core::{OutstandingToken, StoreError, TokenStore, Upserted};

use crate::SqlStore;
use crate::pool::db_error;
use crate::sqlite::one_row;

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
