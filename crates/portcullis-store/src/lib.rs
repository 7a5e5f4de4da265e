//! portcullis storage: SQLite (the embedded default) and PostgreSQL behind
//! one [`SqlStore`].
//!
//! Both dialects run the same SQL text (`$1` placeholders, `RETURNING` and
//! `ON CONFLICT` work in both); only the migrations differ. Queries are
//! checked at run time rather than compile time, so the same store test
//! suite runs against both backends (see `tests/store.rs`).

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use portcullis_core::{NewUser, OutstandingToken, Store, StoreError, User};
use portcullis_token::StoredKey;
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

/// The database a URL selects.
#[derive(Debug, Clone)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// A [`Store`] on SQLite or PostgreSQL.
#[derive(Debug, Clone)]
pub struct SqlStore {
    pool: Pool,
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

/// Retire a key at `$1` unless it already retires earlier: retiring never
/// extends a key's life.
const RETIRE_KEY: &str = "UPDATE signing_keys SET retires_at = $1 \
     WHERE kid = $2 AND (retires_at IS NULL OR retires_at > $1)";

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
                pool: Pool::Postgres(pool),
            }
        } else if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)
                .map_err(|e| StoreError::InvalidUrl(format!("invalid SQLite URL: {e}")))?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(5))
                .foreign_keys(true);
            let pool = SqlitePoolOptions::new()
                .max_connections(8)
                .acquire_timeout(Duration::from_secs(5))
                .connect_with(options)
                .await
                .map_err(|e| {
                    StoreError::Database(format!("cannot open the SQLite database: {e}"))
                })?;
            Self {
                pool: Pool::Sqlite(pool),
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
        let result = match &self.pool {
            Pool::Sqlite(pool) => sqlx::migrate!("migrations/sqlite").run(pool).await,
            Pool::Postgres(pool) => sqlx::migrate!("migrations/postgres").run(pool).await,
        };
        result.map_err(|e| StoreError::Database(format!("migration failed: {e}")))
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
    }
}

#[async_trait]
impl Store for SqlStore {
    async fn ping(&self) -> Result<(), StoreError> {
        on_pool!(self, pool => sqlx::query("SELECT 1").execute(pool).await.map(|_| ()))
            .map_err(db_error)?;
        Ok(())
    }

    async fn create_user(&self, user: &NewUser) -> Result<User, StoreError> {
        let sql = format!(
            "INSERT INTO users (username, email, password, is_active, is_staff, is_superuser, date_joined) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {USER_COLUMNS}"
        );
        let row = on_pool!(self, pool => sqlx::query_as::<_, UserRow>(sqlx::AssertSqlSafe(sql))
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
        let row = on_pool!(self, pool => sqlx::query_as::<_, UserRow>(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(pool)
            .await)
        .map_err(db_error)?;
        Ok(row.map(User::from))
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
        let done =
            on_pool!(self, pool => sqlx::query("UPDATE users SET password = $1 WHERE id = $2")
            .bind(hash)
            .bind(id)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))
            .map_err(db_error)?;
        Ok(done == 1)
    }

    async fn set_active(&self, id: i64, active: bool) -> Result<bool, StoreError> {
        let done =
            on_pool!(self, pool => sqlx::query("UPDATE users SET is_active = $1 WHERE id = $2")
            .bind(active)
            .bind(id)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))
            .map_err(db_error)?;
        Ok(done == 1)
    }

    async fn delete_user(&self, id: i64) -> Result<bool, StoreError> {
        let done = on_pool!(self, pool => sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(id)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))
        .map_err(db_error)?;
        Ok(done == 1)
    }

    async fn update_last_login(&self, id: i64, at: i64) -> Result<(), StoreError> {
        on_pool!(self, pool => sqlx::query("UPDATE users SET last_login = $1 WHERE id = $2")
            .bind(at)
            .bind(id)
            .execute(pool)
            .await
            .map(|_| ()))
        .map_err(db_error)?;
        Ok(())
    }

    async fn record_outstanding(&self, token: &OutstandingToken) -> Result<(), StoreError> {
        // The user is recorded only if it exists, as a foreign key must.
        on_pool!(self, pool => sqlx::query(
            "INSERT INTO outstanding_tokens (user_id, jti, created_at, expires_at) \
             VALUES ((SELECT id FROM users WHERE id = $1), $2, $3, $4) \
             ON CONFLICT (jti) DO NOTHING",
        )
        .bind(token.user_id)
        .bind(&token.jti)
        .bind(token.created_at)
        .bind(token.expires_at)
        .execute(pool)
        .await
        .map(|_| ()))
        .map_err(db_error)?;
        Ok(())
    }

    async fn is_blacklisted(&self, jti: &str) -> Result<bool, StoreError> {
        let found = on_pool!(self, pool => sqlx::query_scalar::<_, i64>(
            "SELECT id FROM outstanding_tokens WHERE jti = $1 AND blacklisted_at IS NOT NULL",
        )
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
        let done = on_pool!(self, pool => sqlx::query(
            "UPDATE outstanding_tokens SET blacklisted_at = $1 WHERE jti = $2 AND blacklisted_at IS NULL",
        )
        .bind(at)
        .bind(&token.jti)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))
        .map_err(db_error)?;
        Ok(done == 1)
    }

    async fn flush_expired(&self, now: i64) -> Result<u64, StoreError> {
        on_pool!(self, pool => sqlx::query("DELETE FROM outstanding_tokens WHERE expires_at <= $1")
            .bind(now)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))
        .map_err(db_error)
    }

    async fn setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        on_pool!(self, pool => sqlx::query_scalar::<_, String>("SELECT value FROM server_settings WHERE key = $1")
            .bind(key)
            .fetch_optional(pool)
            .await)
        .map_err(db_error)
    }

    async fn init_setting(&self, key: &str, value: &str) -> Result<String, StoreError> {
        on_pool!(self, pool => sqlx::query(
            "INSERT INTO server_settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(value)
        .execute(pool)
        .await
        .map(|_| ()))
        .map_err(db_error)?;
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
        let result = on_pool!(self, pool => async {
            let mut tx = pool.begin().await?;
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
        on_pool!(self, pool => sqlx::query(RETIRE_KEY)
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
