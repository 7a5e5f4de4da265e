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

/// How many email matches are read from the email index before the search
/// takes the range to be dense (see `search_users`).
const SPARSE: i64 = 1000;

impl SqlStore {
    /// `column` compared in byte order: SQLite's default, PostgreSQL's
    /// `COLLATE "C"` (whose indexes the migrations make).
    fn ordered(&self, column: &str) -> String {
        match &self.pool {
            Pool::Sqlite(_) => column.to_owned(),
            Pool::Postgres(_) => format!("{column} COLLATE \"C\""),
        }
    }
}

#[async_trait]
impl UserDirectory for SqlStore {
    async fn search_users(&self, query: &UserQuery) -> Result<Vec<User>, StoreError> {
        let after = query.after.as_deref().unwrap_or("");
        let limit = i64::from(query.limit);
        if query.prefix.is_empty() {
            let sql = format!(
                "SELECT {USER_COLUMNS} FROM users WHERE {u} > $1 ORDER BY {u} LIMIT $2",
                u = self.ordered("username")
            );
            let rows =
                on_pool!(self, pool => sqlx::query_as::<_, UserRow>(sqlx::AssertSqlSafe(sql))
                .bind(after)
                .bind(limit)
                .fetch_all(pool)
                .await)
                .map_err(db_error)?;
            return Ok(rows.into_iter().map(User::from).collect());
        }
        // The two ways an account matches, each asked in a way no planner
        // can get wrong, merged here. One query with `username range OR
        // email range ORDER BY username LIMIT` leaves the planner to guess
        // how many emails match, and both guess wrong somewhere: among
        // 100,000 accounts PostgreSQL walked the username index for an email
        // prefix of 100 accounts (22 ms) and SQLite sorted 10,000 for one of
        // 10,000 (15 ms); BENCHMARKS.md has the figures.
        let (u, e) = (self.ordered("username"), self.ordered("email"));
        let end = format!("{}{AFTER_EVERY_SUFFIX}", query.prefix);
        // The accounts whose `column` is in the prefix's range, after
        // `after`, in `order`, at most `limit`.
        let range = |column: &str, order: &str, limit: i64| {
            let sql = format!(
                "SELECT {USER_COLUMNS} FROM users \
                 WHERE {column} >= $1 AND {column} < $2 AND {u} > $3 ORDER BY {order} LIMIT $4"
            );
            let (prefix, end) = (query.prefix.as_str(), end.as_str());
            async move {
                on_pool!(self, pool => sqlx::query_as::<_, UserRow>(sqlx::AssertSqlSafe(sql))
                    .bind(prefix)
                    .bind(end)
                    .bind(after)
                    .bind(limit)
                    .fetch_all(pool)
                    .await)
                .map_err(db_error)
            }
        };
        // By username: its index gives the range in the order wanted.
        let mut rows = range(&u, &u, limit).await?;
        // By email: count the range on the email index alone (it holds
        // the email and the row's key, so no row is read), up to SPARSE.
        let probe = format!(
            "SELECT COUNT(*) FROM (SELECT 1 FROM users WHERE {e} >= $1 AND {e} < $2 LIMIT $3) AS probe"
        );
        let counted: i64 = on_pool!(self, pool => sqlx::query_scalar(sqlx::AssertSqlSafe(probe))
            .bind(query.prefix.as_str())
            .bind(end.as_str())
            .bind(SPARSE)
            .fetch_one(pool)
            .await)
        .map_err(db_error)?;
        let mut by_email = if counted < SPARSE {
            // Few match: read them all from the email index; sorted below.
            range(&e, &e, SPARSE).await?
        } else {
            // Many match: walk the username index and filter, which finds
            // a page within `limit` × accounts ÷ SPARSE rows. SQLite's `+`
            // keeps it off the email index (PostgreSQL's statistics see
            // the range's size and need no telling).
            let plain = match &self.pool {
                Pool::Sqlite(_) => "+email",
                Pool::Postgres(_) => e.as_str(),
            };
            range(plain, &u, limit).await?
        };
        rows.append(&mut by_email);
        // Byte order, as SQLite's BINARY and PostgreSQL's "C" compare.
        rows.sort_by(|a, b| a.username.cmp(&b.username));
        rows.dedup_by_key(|r| r.id);
        rows.truncate(usize::try_from(query.limit).unwrap_or(usize::MAX));
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
