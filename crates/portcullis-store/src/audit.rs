//! The audit trail's SQL ([`AuditStore`]): one append-only table,
//! `audit_log`, read newest first by id with the actor and target
//! filters each answered by an index.

use async_trait::async_trait;
use portcullis_core::{
    Actor, AuditAction, AuditEntry, AuditFilter, AuditRecord, AuditStore, StoreError, Target,
};

use crate::SqlStore;
use crate::pool::db_error;

#[derive(sqlx::FromRow)]
struct AuditRow {
    id: i64,
    at: i64,
    actor_kind: String,
    actor_name: String,
    actor_id: Option<i64>,
    action: String,
    target_id: Option<i64>,
    target_name: Option<String>,
    detail: String,
    address: Option<String>,
}

impl AuditRow {
    /// `None` for a row this version cannot read (an action of a newer one).
    fn into_record(self) -> Option<AuditRecord> {
        let actor = match (self.actor_kind.as_str(), self.actor_id) {
            ("staff", Some(id)) => Actor::Staff {
                id,
                username: self.actor_name,
            },
            _ => Actor::Cli {
                os_user: self.actor_name,
            },
        };
        Some(AuditRecord {
            id: self.id,
            entry: AuditEntry {
                at: self.at,
                actor,
                action: AuditAction::parse(&self.action)?,
                target: self.target_name.map(|name| Target {
                    id: self.target_id,
                    name,
                }),
                detail: self.detail,
                address: self.address,
            },
        })
    }
}

const AUDIT_COLUMNS: &str =
    "id, at, actor_kind, actor_name, actor_id, action, target_id, target_name, detail, address";

#[async_trait]
impl AuditStore for SqlStore {
    async fn record_audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        // The CLI's operating-system user is the actor's name for `cli`
        // rows; a staff row keeps the account's id and username.
        let (kind, name, id) = match &entry.actor {
            Actor::Staff { id, username } => ("staff", username.as_str(), Some(*id)),
            Actor::Cli { os_user } => ("cli", os_user.as_str(), None),
        };
        execute!(
            self,
            "INSERT INTO audit_log (at, actor_kind, actor_name, actor_id, action, target_id, target_name, detail, address) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            entry.at,
            kind,
            name,
            id,
            entry.action.as_str(),
            entry.target.as_ref().and_then(|t| t.id),
            entry.target.as_ref().map(|t| t.name.as_str()),
            entry.detail.as_str(),
            entry.address.as_deref(),
        )
        .map(|_| ())
    }

    async fn audit_entries(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>, StoreError> {
        // `cli` names every command-line row, whoever ran it.
        let (kind, name) = match filter.actor.as_deref() {
            Some("cli") => (Some("cli"), None),
            Some(name) => (Some("staff"), Some(name)),
            None => (None, None),
        };
        let sql = format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_log \
             WHERE ($1 IS NULL OR actor_kind = $1) AND ($2 IS NULL OR actor_name = $2) \
             AND ($3 IS NULL OR target_name = $3) AND ($4 IS NULL OR id < $4) \
             ORDER BY id DESC LIMIT $5"
        );
        let rows = on_pool!(self, pool => sqlx::query_as::<_, AuditRow>(sqlx::AssertSqlSafe(sql))
            .bind(kind)
            .bind(name)
            .bind(filter.target.as_deref())
            .bind(filter.before)
            .bind(i64::from(filter.limit))
            .fetch_all(pool)
            .await)
        .map_err(db_error)?;
        Ok(rows.into_iter().filter_map(AuditRow::into_record).collect())
    }

    async fn prune_audit(&self, before: i64) -> Result<u64, StoreError> {
        execute!(self, "DELETE FROM audit_log WHERE at < $1", before)
    }
}
