//! The database settings: where it is, and how long what it keeps lives.

use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

use super::values::Seconds;

/// The default database: a SQLite file in the working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://portcullis.sqlite3";

/// The database settings, as written.
#[derive(Deserialize)]
#[serde(default)]
pub(super) struct StoreSection {
    /// `DATABASE_URL`.
    database_url: SecretString,
    /// `PRUNE_INTERVAL`: how often `serve` deletes expired token and
    /// session records (what `portcullis tokens flush-expired` does), so no
    /// cron job is needed; 0 turns it off.
    prune_interval: Seconds,
    /// `AUDIT_RETENTION`: audit entries older than this are deleted with
    /// the other pruning (`PRUNE_INTERVAL`, `tokens flush-expired`).
    audit_retention: Seconds,
}

impl Default for StoreSection {
    fn default() -> Self {
        Self {
            database_url: DEFAULT_DATABASE_URL.into(),
            prune_interval: Seconds(3600),
            audit_retention: Seconds(365 * 86_400),
        }
    }
}

/// The database settings, checked.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    /// `DATABASE_URL`: it may hold a password, so it is never shown.
    pub database_url: SecretString,
    /// `PRUNE_INTERVAL`; `None`: off.
    pub prune_interval: Option<Duration>,
    /// `AUDIT_RETENTION`, seconds.
    pub audit_retention: i64,
}

impl StoreSection {
    /// The database settings.
    pub(super) fn parse(self) -> StoreSettings {
        StoreSettings {
            database_url: self.database_url,
            prune_interval: u64::try_from(self.prune_interval.0)
                .ok()
                .filter(|&s| s > 0)
                .map(Duration::from_secs),
            audit_retention: self.audit_retention.0,
        }
    }
}
