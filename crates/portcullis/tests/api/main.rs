//! One integration-test binary: every test talks HTTP to a real
//! `portcullis` server (built in-process on port 0, or the real binary),
//! on SQLite and on PostgreSQL.

// Test code: a failed unwrap is a failed test, which is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod admin;
mod audit;
mod browser;
mod cli;
mod compat;
mod config;
mod console;
mod cookies;
mod django;
mod durability;
mod flows;
mod front;
mod front_helpers;
mod hardening;
mod helpers;
mod hostile;
mod idle;
mod interop;
mod keys;
mod library;
mod limits;
mod multinode;
mod observability;
mod openapi;
mod secrets;
mod sessions;
mod shutdown;
mod throttle;
mod tls;
mod token_cache;
mod user_cache;
#[cfg(feature = "wsgi")]
mod wsgi;
