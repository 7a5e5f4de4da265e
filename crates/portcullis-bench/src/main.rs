//! Helpers of the load harness (`bench/run`), kept out of the server.
//!
//! - `fixed`: the ceiling. A minimal axum server answering every request
//!   with the same small body: the most requests per second this machine
//!   serves over HTTP/1.1 with this stack. It is also the upstream of the
//!   proxy row, so "proxied" and "direct" differ only by the proxy hop.
//! - `hold`: open many keep-alive connections, make one request on each,
//!   and keep them open idle, so the harness can read the server's
//!   resident set with 10,000 idle clients.
//! - `argon2`: time one password verification at the configured
//!   (default) cost, the unit of the login target
//!   (cores ÷ one verification's time).
//! - `console-search`: fill a fresh database with 100,000 accounts (one
//!   SQL statement, no Argon2), then time the staff console's account
//!   search (`UserDirectory::search_users`, the query behind
//!   `/admin/users/?q=…`) for the kinds of search a person makes.
//! - `login-timing` and `revocation-delay` (`timing.rs`): the timing
//!   targets of issues 6 and 4, measured against running servers.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::Router;
use axum::http::header;
use clap::{Parser, Subcommand};
use portcullis_core::{HashParams, PasswordHasher};
use secrecy::SecretString;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

mod search;
mod timing;

/// The load harness's helpers.
#[derive(Debug, Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Answer every request with a fixed body (the ceiling, and the upstream).
    Fixed {
        /// Where to listen.
        #[arg(long)]
        bind: SocketAddr,
    },
    /// Open `count` keep-alive connections, make one request on each, then
    /// hold them idle until killed.
    Hold {
        /// The server.
        #[arg(long)]
        addr: SocketAddr,
        /// How many connections.
        #[arg(long, default_value_t = 10_000)]
        count: usize,
        /// The path requested once on each connection.
        #[arg(long, default_value = "/healthz")]
        path: String,
    },
    /// Print the milliseconds one Argon2id verification takes at the
    /// default cost (the median of `count`, one at a time).
    Argon2 {
        /// How many verifications.
        #[arg(long, default_value_t = 20)]
        count: usize,
    },
    /// Fill an empty database with accounts and time the console's search.
    ConsoleSearch {
        /// An empty database: `sqlite:///tmp/x.db?mode=rwc` or `postgres://…`.
        #[arg(long)]
        database_url: String,
        /// How many accounts.
        #[arg(long, default_value_t = 100_000)]
        accounts: u32,
        /// Searches per kind.
        #[arg(long, default_value_t = 200)]
        runs: usize,
    },
    /// Time failed logins of an unknown user, a wrong password and an
    /// inactive user (`alice`, and `ina` inactive with `ina-pass`).
    LoginTiming {
        /// The server, such as `http://127.0.0.1:18500`.
        #[arg(long)]
        url: String,
        /// Samples of each kind.
        #[arg(long, default_value_t = 40)]
        rounds: usize,
    },
    /// Time how long a session ended on one node is still accepted by
    /// another.
    RevocationDelay {
        /// The node the sessions are ended on.
        #[arg(long)]
        first: String,
        /// The node that must refuse the token.
        #[arg(long)]
        other: String,
        /// An active user of the shared database.
        #[arg(long)]
        username: String,
        /// Its password.
        #[arg(long)]
        password: String,
        /// How many sessions to end.
        #[arg(long, default_value_t = 10)]
        runs: usize,
    },
}

/// The fixed body: about the size of `GET /api/users/me/`'s answer.
const BODY: &str = "{\"id\":1,\"username\":\"bench\",\"email\":\"bench@example.com\"}";

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        match cli.command {
            Command::Fixed { bind } => fixed(bind).await,
            Command::Hold { addr, count, path } => hold(addr, count, &path).await,
            Command::Argon2 { count } => argon2(count).await,
            Command::ConsoleSearch {
                database_url,
                accounts,
                runs,
            } => search::run(&database_url, accounts, runs).await,
            Command::LoginTiming { url, rounds } => timing::login_timing(&url, rounds).await,
            Command::RevocationDelay {
                first,
                other,
                username,
                password,
                runs,
            } => timing::revocation_delay(&first, &other, &username, &password, runs).await,
        }
    })
}

async fn fixed(bind: SocketAddr) -> anyhow::Result<()> {
    let app =
        Router::new().fallback(|| async { ([(header::CONTENT_TYPE, "application/json")], BODY) });
    let listener = TcpListener::bind(bind)
        .await
        .with_context(|| format!("cannot listen on {bind}"))?;
    println!("listening on {}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}

async fn hold(addr: SocketAddr, count: usize, path: &str) -> anyhow::Result<()> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: keep-alive\r\n\r\n");
    let mut held = Vec::with_capacity(count);
    let mut buffer = vec![0_u8; 4096];
    for i in 0..count {
        let mut stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connection {} of {count} (raise `ulimit -n`?)", i + 1))?;
        stream.write_all(request.as_bytes()).await?;
        // One answer per connection is enough to know the server accepted
        // and served it; its size is small enough for one read.
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buffer))
            .await
            .context("no answer within 10 s")??;
        anyhow::ensure!(
            buffer
                .get(..read)
                .is_some_and(|b| b.starts_with(b"HTTP/1.1 200")),
            "connection {} was not answered 200",
            i + 1
        );
        held.push(stream);
    }
    println!("holding {} idle keep-alive connections", held.len());
    // Until the harness kills us.
    std::future::pending::<()>().await;
    Ok(())
}

async fn argon2(count: usize) -> anyhow::Result<()> {
    let hasher = PasswordHasher::new(HashParams::default(), 1).map_err(anyhow::Error::msg)?;
    let password = || SecretString::from("correct horse battery staple");
    let stored = hasher.hash(password()).await.map_err(anyhow::Error::msg)?;
    let mut times = Vec::with_capacity(count.max(1));
    for _ in 0..count.max(1) {
        let start = Instant::now();
        let verified = hasher
            .verify(password(), Some(stored.clone()))
            .await
            .map_err(anyhow::Error::msg)?;
        times.push(start.elapsed());
        anyhow::ensure!(verified.matched, "the password did not verify");
    }
    times.sort();
    let median = times.get(times.len() / 2).copied().unwrap_or_default();
    println!("{:.2}", median.as_secs_f64() * 1000.0);
    Ok(())
}
