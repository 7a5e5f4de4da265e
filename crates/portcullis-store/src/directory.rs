//! The account search ([`UserDirectory`]): prefix matches on `username` and
//! `email`, answered by range scans of their indexes (a `LIKE 'x%'` is not,
//! on SQLite without a `NOCASE` column or on PostgreSQL without
//! `text_pattern_ops`), sorted by username and paged by key, so a page
//! costs the same at account 100,000 as at account 1.
//!
//! The one place the dialects' SQL differs outside migrations and
//! `reserve_user_ids`: PostgreSQL compares with the database's collation,
//! in which a prefix range is not contiguous; `COLLATE "C"` (byte order,
//! SQLite's `BINARY`) makes it so, with indexes of that collation.

use async_trait::async_trait;
use portcullis_core::{StoreError, User, UserDirectory, UserQuery};

use crate::SqlStore;
use crate::pool::{Pool, db_error};
use crate::rows::{USER_COLUMNS, UserRow};

/// The greatest code point: `prefix` followed by it sorts after every
/// string that starts with `prefix`.
const AFTER_EVERY_SUFFIX: char = '\u{10FFFF}';

#[async_trait]
impl UserDirectory for SqlStore {
    async fn search_users(&self, query: &UserQuery) -> Result<Vec<User>, StoreError> {
        let collate = match &self.pool {
            Pool::Sqlite(_) => "",
            Pool::Postgres(_) => " COLLATE \"C\"",
        };
        let (u, e) = (format!("username{collate}"), format!("email{collate}"));
        let matching = if query.prefix.is_empty() {
            "TRUE".to_owned()
        } else {
            format!("(({u} >= $1 AND {u} < $2) OR ({e} >= $1 AND {e} < $2))")
        };
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users WHERE {matching} AND {u} > $3 ORDER BY {u} LIMIT $4"
        );
        let end = format!("{}{AFTER_EVERY_SUFFIX}", query.prefix);
        let rows = on_pool!(self, pool => sqlx::query_as::<_, UserRow>(sqlx::AssertSqlSafe(sql))
            .bind(query.prefix.as_str())
            .bind(end.as_str())
            .bind(query.after.as_deref().unwrap_or(""))
            .bind(i64::from(query.limit))
            .fetch_all(pool)
            .await)
        .map_err(db_error)?;
        Ok(rows.into_iter().map(User::from).collect())
    }

    async fn update_profile(
        &self,
        id: i64,
        email: &str,
        is_staff: bool,
        is_superuser: bool,
    ) -> Result<bool, StoreError> {
        Ok(execute!(
            self,
            "UPDATE users SET email = $1, is_staff = $2, is_superuser = $3 WHERE id = $4",
            email,
            is_staff,
            is_superuser,
            id
        )? == 1)
    }
}
