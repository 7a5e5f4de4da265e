//! The `portcullis` binary as a library, so tests can build the real
//! application on port 0 and drive the real CLI code.

pub mod audit;
pub mod cli;
pub mod commands;
pub mod config;
mod console;
pub mod import;
pub mod keyring;
pub mod keys;
pub mod startup;
pub mod store_setup;
pub mod wsgi;
