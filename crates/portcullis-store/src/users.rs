//! Accounts ([`portcullis_core::UserStore`]) in the `users` table.

use async_trait::async_trait;
use portcullis_core::{ImportedUser, NewUser, StoreError, Upserted, User, UserStore};

use crate::SqlStore;
use crate::pool::{Pool, db_error};
use crate::rows::{USER_COLUMNS, UserRow, user_from_row};
use crate::sqlite::one_row;

#[async_trait]
impl UserStore for SqlStore {
    async fn create_user(&self, user: &NewUser) -> Result<User, StoreError> {
        let sql = format!(
            "INSERT INTO users (username, email, password, is_active, is_staff, is_superuser, date_joined) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {USER_COLUMNS}"
        );
        let row = on_writer!(self, pool => sqlx::query_as::<_, UserRow>(sqlx::AssertSqlSafe(sql))
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
        if let Some(found) = self
            .inline
            .as_ref()
            .and_then(|inline| inline.read(|c| one_row(c, &sql, id, user_from_row)))
        {
            return Ok(found);
        }
        let row = on_pool!(self, pool => sqlx::query_as::<_, UserRow>(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(pool)
            .await)
        .map_err(db_error)?;
        Ok(row.map(User::from))
    }

    fn account_changes(&self) -> u64 {
        self.changes.current()
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
        Ok(execute!(
            self,
            "UPDATE users SET password = $1 WHERE id = $2",
            hash,
            id
        )? == 1)
    }

    async fn set_active(&self, id: i64, active: bool) -> Result<bool, StoreError> {
        Ok(execute!(
            self,
            "UPDATE users SET is_active = $1 WHERE id = $2",
            active,
            id
        )? == 1)
    }

    async fn delete_user(&self, id: i64) -> Result<bool, StoreError> {
        Ok(execute!(self, "DELETE FROM users WHERE id = $1", id)? == 1)
    }

    async fn update_last_login(&self, id: i64, at: i64) -> Result<(), StoreError> {
        execute!(
            self,
            "UPDATE users SET last_login = $1 WHERE id = $2",
            at,
            id
        )
        .map(|_| ())
    }

    async fn upsert_user_with_id(&self, user: &ImportedUser) -> Result<Upserted, StoreError> {
        let existed = self.user_by_id(user.id).await?.is_some();
        let done = on_writer!(self, pool => sqlx::query(
            "INSERT INTO users (id, username, email, password, is_active, is_staff, is_superuser, date_joined, last_login) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (id) DO UPDATE SET username = excluded.username, email = excluded.email, \
             is_active = excluded.is_active, is_staff = excluded.is_staff, \
             is_superuser = excluded.is_superuser, date_joined = excluded.date_joined, \
             password = CASE WHEN users.password LIKE '$argon2%' THEN users.password ELSE excluded.password END, \
             last_login = CASE WHEN users.last_login IS NULL OR excluded.last_login > users.last_login \
                 THEN excluded.last_login ELSE users.last_login END",
        )
        .bind(user.id)
        .bind(user.account.username.as_str())
        .bind(&user.account.email)
        .bind(&user.account.password_hash)
        .bind(user.account.is_active)
        .bind(user.account.is_staff)
        .bind(user.account.is_superuser)
        .bind(user.account.date_joined)
        .bind(user.last_login)
        .execute(pool)
        .await
        .map(|_| ()));
        match done {
            Ok(()) => {}
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Err(StoreError::Conflict(format!(
                    "the username {:?} belongs to another account here",
                    user.account.username.as_str()
                )));
            }
            Err(e) => return Err(db_error(e)),
        }
        // PostgreSQL's identity does not notice explicit ids; SQLite's
        // AUTOINCREMENT does, but one code path keeps both honest.
        self.reserve_user_ids(user.id).await?;
        Ok(if existed {
            Upserted::Updated
        } else {
            Upserted::Inserted
        })
    }

    async fn reserve_user_ids(&self, id: i64) -> Result<(), StoreError> {
        // The one place the dialects differ outside migrations: where the
        // next generated id lives. Both only ever move it forward.
        match &self.writer {
            Pool::Sqlite(pool) => {
                // sqlite_sequence holds the largest id AUTOINCREMENT ever
                // gave; SQLite documents editing it with plain SQL.
                sqlx::query(
                    "UPDATE sqlite_sequence SET seq = $1 WHERE name = 'users' AND seq < $1",
                )
                .bind(id)
                .execute(pool)
                .await
                .map_err(db_error)?;
                sqlx::query(
                    "INSERT INTO sqlite_sequence (name, seq) SELECT 'users', $1 \
                     WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'users')",
                )
                .bind(id)
                .execute(pool)
                .await
                .map_err(db_error)?;
            }
            Pool::Postgres(pool) => {
                // setval with is_called = true: the next id is the value + 1.
                // pg_sequence_last_value is NULL until the first nextval.
                sqlx::query(
                    "SELECT setval(pg_get_serial_sequence('users', 'id')::regclass, \
                     GREATEST($1, 1, COALESCE(pg_sequence_last_value(pg_get_serial_sequence('users', 'id')::regclass), 0)))",
                )
                .bind(id)
                .execute(pool)
                .await
                .map_err(db_error)?;
            }
        }
        Ok(())
    }
}
