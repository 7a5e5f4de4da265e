//! Server settings and the signing key set ([`portcullis_core::KeyStore`])
//! in the `server_settings` and `signing_keys` tables.

use async_trait::async_trait;
use portcullis_core::{KeyStore, StoreError};
use portcullis_token::StoredKey;

use crate::SqlStore;
use crate::pool::{BeginWrite as _, db_error};
use crate::rows::KeyRow;

/// Retire a key at `$1` unless it already retires earlier: retiring never
/// extends a key's life.
const RETIRE_KEY: &str = "UPDATE signing_keys SET retires_at = $1 \
     WHERE kid = $2 AND (retires_at IS NULL OR retires_at > $1)";

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
            .ok_or_else(|| StoreError::unusable(format!("setting {key} vanished after insert")))
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
