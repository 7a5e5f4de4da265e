//! `portcullis-bench console-search`: the staff console's account search
//! over many accounts (issue 18: "100,000 accounts stay fast").
//!
//! The accounts are written by one `INSERT … SELECT` over a generated
//! series, so filling 100,000 takes a second, not the hours Argon2 would:
//! usernames `user000001` …, emails `m…@example.com` in another order
//! (a multiplicative permutation of the ids), so an email search cannot
//! ride on the username order. Then each kind of search runs `runs` times
//! through the store the console uses, and the median, p99 and worst
//! times are printed in milliseconds.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use portcullis_core::{UserDirectory as _, UserQuery};
use portcullis_store::SqlStore;
use sqlx::Connection as _;

/// The console's page size plus one (it asks one more to know there is a
/// next page).
const LIMIT: u32 = 51;

/// Fill `url` with `accounts` accounts and time the searches.
pub(crate) async fn run(url: &str, accounts: u32, runs: usize) -> anyhow::Result<()> {
    let store = SqlStore::connect(url).await.context("open the database")?;
    store.migrate().await.context("migrate")?;
    let start = Instant::now();
    fill(url, accounts).await?;
    println!(
        "{} ({}): {accounts} accounts written in {:.1} s",
        store.backend(),
        url.split('?').next().unwrap_or(url),
        start.elapsed().as_secs_f64()
    );
    // The kinds of search: what matches, and how much of the table.
    let searches: [(&str, &str, Option<&str>); 11] = [
        ("first page, no search", "", None),
        ("a page deep in the list", "", Some("user090000")),
        ("username prefix, every account", "user", None),
        ("username prefix, 1,000 accounts", "user099", None),
        ("username prefix, 1 account", "user012345", None),
        ("email prefix, every account", "m", None),
        ("email prefix, 10,000 accounts", "m04", None),
        ("email prefix, 1,000 accounts", "m042", None),
        ("email prefix, 100 accounts", "m0420", None),
        ("email prefix, 1 account", "m042042@", None),
        ("no account matches", "zed", None),
    ];
    println!(
        "{:<34} {:>7} {:>9} {:>9} {:>9}",
        "search (51 rows at most)", "rows", "p50 ms", "p99 ms", "max ms"
    );
    for (name, prefix, after) in searches {
        let query = UserQuery {
            prefix: prefix.to_owned(),
            after: after.map(str::to_owned),
            limit: LIMIT,
        };
        let mut rows = 0;
        let mut times = Vec::with_capacity(runs);
        for i in 0..runs + 5 {
            let start = Instant::now();
            rows = store.search_users(&query).await?.len();
            // The first five warm the caches and the prepared statement.
            if i >= 5 {
                times.push(start.elapsed());
            }
        }
        times.sort();
        let at = |q: f64| {
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                clippy::cast_precision_loss
            )]
            let index = ((times.len() as f64 * q).ceil() as usize).saturating_sub(1);
            ms(times.get(index).copied().unwrap_or_default())
        };
        println!(
            "{name:<34} {rows:>7} {:>9.3} {:>9.3} {:>9.3}",
            at(0.5),
            at(0.99),
            at(1.0)
        );
    }
    store.close().await;
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// One statement each: a recursive series on SQLite, `generate_series` on
/// PostgreSQL; then fresh planner statistics, as a live database has.
async fn fill(url: &str, accounts: u32) -> anyhow::Result<()> {
    // 7919 is prime and does not divide 100,000: `i * 7919 % n` is a
    // permutation of the ids, so emails are unique but in another order.
    if url.starts_with("postgres") {
        let mut conn = sqlx::PgConnection::connect(url).await?;
        sqlx::query(
            "INSERT INTO users (username, email, password, is_active, is_staff, is_superuser, date_joined) \
             SELECT 'user' || lpad(i::text, 6, '0'), 'm' || lpad(((i::bigint * 7919) % $1)::text, 6, '0') || '@example.com', \
                    '!', TRUE, FALSE, FALSE, 0 \
             FROM generate_series(1, $1) AS i",
        )
        .bind(i64::from(accounts))
        .execute(&mut conn)
        .await
        .context("insert the accounts")?;
        sqlx::query("ANALYZE users").execute(&mut conn).await?;
    } else {
        let mut conn = sqlx::SqliteConnection::connect(url).await?;
        sqlx::query(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $1) \
             INSERT INTO users (username, email, password, is_active, is_staff, is_superuser, date_joined) \
             SELECT printf('user%06d', i), printf('m%06d@example.com', (i * 7919) % $1), '!', 1, 0, 0, 0 FROM n",
        )
        .bind(i64::from(accounts))
        .execute(&mut conn)
        .await
        .context("insert the accounts")?;
        sqlx::query("ANALYZE").execute(&mut conn).await?;
    }
    Ok(())
}
