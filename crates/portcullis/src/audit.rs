//! The audit trail from the command line: `portcullis audit list` (a
//! table, or JSON lines with `--json`), `audit export` (JSON lines), and
//! the recording of every administrative command (actor `cli` with the
//! operating-system user).

use portcullis_core::{Actor, AuditAction, AuditEntry, AuditFilter, AuditStore as _, Target};
use portcullis_store::SqlStore;
use portcullis_token::{Clock as _, SystemClock};

use crate::cli::AuditCommand;
use crate::config::Settings;
use crate::store_setup::open_store;

/// Entries read per query when exporting everything.
const BATCH: u32 = 1000;

/// Record a command's change. The change is made: a failed write is
/// reported on standard error and does not fail the command.
pub(crate) async fn record(
    store: &SqlStore,
    action: AuditAction,
    target: Option<Target>,
    detail: impl Into<String>,
) {
    let entry =
        AuditEntry::new(SystemClock.now(), Actor::cli_from_env(), action, target).detail(detail);
    if let Err(e) = store.record_audit(&entry).await {
        eprintln!(
            "warning: the audit trail did not record {}: {}",
            action.as_str(),
            portcullis_core::error_chain(&e)
        );
    }
}

/// Run `portcullis audit …`.
pub async fn command(command: AuditCommand, settings: &Settings) -> anyhow::Result<()> {
    let store = open_store(settings).await?;
    let (filter, json, all) = match command {
        AuditCommand::List {
            actor,
            target,
            limit,
            json,
        } => (
            AuditFilter {
                actor,
                target,
                before: None,
                limit,
            },
            json,
            false,
        ),
        AuditCommand::Export => (
            AuditFilter {
                limit: BATCH,
                ..AuditFilter::default()
            },
            true,
            true,
        ),
    };
    if !json {
        println!(
            "{:<23} {:<20} {:<18} {:<24} {:<16} detail",
            "when", "who", "what", "on", "from"
        );
    }
    let mut filter = filter;
    loop {
        let records = store.audit_entries(&filter).await?;
        for record in &records {
            if json {
                println!("{}", record.to_json());
            } else {
                let e = &record.entry;
                let who = match &e.actor {
                    Actor::Cli { os_user } => format!("cli ({os_user})"),
                    staff @ Actor::Staff { .. } => staff.name().to_owned(),
                };
                println!(
                    "{:<23} {:<20} {:<18} {:<24} {:<16} {}",
                    portcullis_console::format_time(e.at),
                    who,
                    e.action.as_str(),
                    e.target.as_ref().map_or("", |t| t.name.as_str()),
                    e.address.as_deref().unwrap_or(""),
                    e.detail
                );
            }
        }
        match records.last() {
            Some(last) if all && records.len() == BATCH as usize => filter.before = Some(last.id),
            _ => break,
        }
    }
    store.close().await;
    Ok(())
}
