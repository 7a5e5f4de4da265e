//! One integration-test binary: every test talks HTTP to a real
//! `portcullis` server (built in-process on port 0, or the real binary),
//! on SQLite and on PostgreSQL.

mod helpers;

mod cli;
mod compat;
mod config;
mod django;
mod flows;
mod interop;
