//! Reading a Django deployment's database, for `portcullis import django`:
//! `auth_user` and, when the app is installed, simplejwt's
//! `token_blacklist_outstandingtoken` and `token_blacklist_blacklistedtoken`
//! (simplejwt-5.5.1.md §5.1 and §8).
//!
//! Read only: the Django database is opened without migrations and, for
//! SQLite, read-only. Datetimes are returned as the text the database
//! gives (`2026-11-23 20:39:12.851144`, or with `+00` on PostgreSQL, whose
//! session is set to UTC), the same shape as `dumpdata`, so one parser
//! serves both sources. Integer columns are cast to `BIGINT` because Django
//! makes `auth_user.id` an `integer` and sqlx decodes PostgreSQL types strictly.

use std::str::FromStr;
use std::time::Duration;

use portcullis_core::StoreError;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

use crate::pool::{Pool, db_error};

/// One `auth_user` row (the name columns are not kept by portcullis).
#[derive(Clone, sqlx::FromRow)]
pub struct DjangoUser {
    /// Primary key; tokens carry it as `user_id`.
    pub id: i64,
    /// As stored: Django's ORM does not validate it.
    pub username: String,
    /// Possibly empty.
    pub email: String,
    /// The Django password hash.
    pub password: String,
    /// `is_active`.
    pub is_active: bool,
    /// `is_staff`.
    pub is_staff: bool,
    /// `is_superuser`.
    pub is_superuser: bool,
    /// A Django datetime, as text.
    pub date_joined: String,
    /// A Django datetime, as text.
    pub last_login: Option<String>,
}

impl std::fmt::Debug for DjangoUser {
    // The hash stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DjangoUser")
            .field("id", &self.id)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// One `OutstandingToken` row with its `BlacklistedToken`, if any. The raw
/// token column is not read: portcullis keeps only the `jti`.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DjangoToken {
    /// The token id.
    pub jti: String,
    /// The user, if any.
    pub user_id: Option<i64>,
    /// A Django datetime, as text.
    pub created_at: Option<String>,
    /// A Django datetime, as text.
    pub expires_at: String,
    /// A Django datetime, as text, when blacklisted.
    pub blacklisted_at: Option<String>,
}

/// The last value `auth_user`'s identity (or serial) sequence handed out;
/// 0 when it never did, or when `id` has no sequence.
///
/// Reading a sequence takes its own privilege: a role granted only
/// `SELECT ON ALL TABLES` (the usual read-only role) may read `auth_user` but
/// not `auth_user_id_seq`. Going on with `MAX(id)` would let portcullis give
/// a deleted Django user's id to someone new, so this stops and names the
/// `GRANT` that is missing.
async fn postgres_sequence(pool: &sqlx::PgPool) -> Result<i64, StoreError> {
    let Some(sequence) =
        sqlx::query_scalar::<_, Option<String>>("SELECT pg_get_serial_sequence('auth_user', 'id')")
            .fetch_one(pool)
            .await
            .map_err(db_error)?
    else {
        return Ok(0);
    };
    let last = sqlx::query_scalar::<_, Option<i64>>("SELECT pg_sequence_last_value($1::regclass)")
        .bind(&sequence)
        .fetch_one(pool)
        .await;
    match last {
        Ok(last) => Ok(last.unwrap_or(0)),
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42501") => {
            let role = sqlx::query_scalar::<_, String>("SELECT quote_ident(current_user)")
                .fetch_one(pool)
                .await
                .unwrap_or_else(|_| "<role>".to_owned());
            Err(StoreError::unusable(format!(
                "{}: portcullis reads it to learn the highest user id Django ever generated (deleted users included) and never give it out again; \
                 run GRANT SELECT ON SEQUENCE {sequence} TO {role}",
                e.message()
            )))
        }
        Err(e) => Err(db_error(e)),
    }
}

/// A Django database, opened for reading.
#[derive(Debug)]
pub struct DjangoDatabase {
    pool: Pool,
}

impl DjangoDatabase {
    /// Open `sqlite:///path/db.sqlite3` (read-only; it must exist) or
    /// `postgres://…`. Nothing is migrated or written.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let pool = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let options = PgConnectOptions::from_str(url)
                .map_err(|e| StoreError::database("invalid PostgreSQL URL", e))?
                .options([("TimeZone", "UTC"), ("DateStyle", "ISO")]);
            Pool::Postgres(
                PgPoolOptions::new()
                    .max_connections(2)
                    .acquire_timeout(Duration::from_secs(5))
                    .connect_with(options)
                    .await
                    .map_err(|e| {
                        StoreError::database("cannot connect to the Django PostgreSQL database", e)
                    })?,
            )
        } else if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)
                .map_err(|e| StoreError::database("invalid SQLite URL", e))?
                .read_only(true)
                .create_if_missing(false);
            Pool::Sqlite(
                SqlitePoolOptions::new()
                    .max_connections(1)
                    .connect_with(options)
                    .await
                    .map_err(|e| {
                        StoreError::database("cannot open the Django SQLite database", e)
                    })?,
            )
        } else {
            return Err(StoreError::unusable(
                "the Django database URL must start with sqlite: (for example sqlite:///srv/app/db.sqlite3) or postgres://",
            ));
        };
        let db = Self { pool };
        if !db.has_table("auth_user").await? {
            return Err(StoreError::unusable(
                "this database has no auth_user table: is it the Django project's database, with django.contrib.auth migrated?",
            ));
        }
        Ok(db)
    }

    /// Every `auth_user` row, by id.
    pub async fn users(&self) -> Result<Vec<DjangoUser>, StoreError> {
        on_pool!(self, pool => sqlx::query_as::<_, DjangoUser>(
            "SELECT CAST(id AS BIGINT) AS id, username, email, password, is_active, is_staff, is_superuser, \
             CAST(date_joined AS TEXT) AS date_joined, CAST(last_login AS TEXT) AS last_login \
             FROM auth_user ORDER BY id",
        )
        .fetch_all(pool)
        .await)
        .map_err(db_error)
    }

    /// The outstanding tokens with their blacklisting, or `None` when
    /// simplejwt's `token_blacklist` app was never migrated here.
    pub async fn tokens(&self) -> Result<Option<Vec<DjangoToken>>, StoreError> {
        if !self.has_table("token_blacklist_outstandingtoken").await?
            || !self.has_table("token_blacklist_blacklistedtoken").await?
        {
            return Ok(None);
        }
        on_pool!(self, pool => sqlx::query_as::<_, DjangoToken>(
            "SELECT o.jti, CAST(o.user_id AS BIGINT) AS user_id, CAST(o.created_at AS TEXT) AS created_at, \
             CAST(o.expires_at AS TEXT) AS expires_at, CAST(b.blacklisted_at AS TEXT) AS blacklisted_at \
             FROM token_blacklist_outstandingtoken o \
             LEFT JOIN token_blacklist_blacklistedtoken b ON b.token_id = o.id ORDER BY o.id",
        )
        .fetch_all(pool)
        .await)
        .map(Some)
        .map_err(db_error)
    }

    /// The largest user id Django ever generated, deleted users included:
    /// portcullis must never give that id to someone else, or a token Django
    /// issued to the deleted user would name them.
    pub async fn highest_user_id_ever(&self) -> Result<i64, StoreError> {
        let max = on_pool!(self, pool => sqlx::query_scalar::<_, Option<i64>>(
            "SELECT CAST(MAX(id) AS BIGINT) FROM auth_user",
        )
        .fetch_one(pool)
        .await)
        .map_err(db_error)?
        .unwrap_or(0);
        // Where the next id comes from differs by dialect.
        let generated = match &self.pool {
            Pool::Sqlite(pool) => {
                sqlx::query_scalar::<_, i64>(
                    "SELECT seq FROM sqlite_sequence WHERE name = 'auth_user'",
                )
                .fetch_optional(pool)
                .await
            }
            Pool::Postgres(pool) => return Ok(max.max(postgres_sequence(pool).await?)),
        }
        .map_err(db_error)?
        .unwrap_or(0);
        Ok(max.max(generated))
    }

    /// Close the connections.
    pub async fn close(&self) {
        on_pool!(self, pool => pool.close().await);
    }

    async fn has_table(&self, name: &str) -> Result<bool, StoreError> {
        let found = match &self.pool {
            Pool::Sqlite(pool) => sqlx::query_scalar::<_, i64>(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = $1",
            )
            .bind(name)
            .fetch_optional(pool)
            .await
            .map(|found| found.is_some()),
            Pool::Postgres(pool) => {
                sqlx::query_scalar::<_, i32>("SELECT 1 WHERE to_regclass($1) IS NOT NULL")
                    .bind(name)
                    .fetch_optional(pool)
                    .await
                    .map(|found| found.is_some())
            }
        }
        .map_err(db_error)?;
        Ok(found)
    }
}
