//! The audit trail (issue 18): who changed what, on which account, when and
//! from where. Every administrative change is recorded, whether it came from
//! the staff console, the staff JSON API or the `portcullis` command line,
//! so "who deactivated this account, and when?" has an answer (neither
//! simplejwt nor Django keeps one outside Django admin's `LogEntry`).
//!
//! Invariant: an entry never holds a password, a password hash, a token or
//! a key. The `detail` of an entry is built by the recording code from
//! named fields (flags, a kid, an algorithm, a count), never from a request
//! body, and [`AuditEntry::new`] is the only way to make one.

use async_trait::async_trait;
use serde::Serialize;

use crate::StoreError;

/// Who made a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Actor {
    /// A staff account, through the console or the staff API.
    Staff {
        /// Its id.
        id: i64,
        /// Its username at the time.
        username: String,
    },
    /// The `portcullis` command line, run by this operating-system user.
    Cli {
        /// `$USER` (or `$LOGNAME`, or `unknown`).
        os_user: String,
    },
}

impl Actor {
    /// The command line, as the operating-system user running it.
    #[must_use]
    pub fn cli_from_env() -> Self {
        let os_user = std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .ok()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| "unknown".to_owned());
        Self::Cli { os_user }
    }

    /// How the trail names the actor: the staff username, or `cli`.
    #[must_use]
    pub fn name(&self) -> &str {
        match self {
            Self::Staff { username, .. } => username,
            Self::Cli { .. } => "cli",
        }
    }
}

/// What was done. Stored by its [`AuditAction::as_str`] name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditAction {
    /// An account was created.
    UserCreate,
    /// Email, active, staff or superuser changed.
    UserUpdate,
    /// A password was set by an administrator.
    UserSetPassword,
    /// An account was activated.
    UserActivate,
    /// An account was deactivated (its sessions ended).
    UserDeactivate,
    /// An account was deleted (its sessions ended).
    UserDelete,
    /// A login lock was lifted.
    UserUnlock,
    /// One session was ended.
    SessionEnd,
    /// Every session of an account was ended.
    SessionsEndAll,
    /// A signing key was generated.
    KeyGenerate,
    /// A rotation was started (a new key published).
    KeyRotate,
    /// A key was retired.
    KeyRetire,
    /// Accounts and tokens were imported from Django.
    ImportDjango,
}

impl AuditAction {
    /// Every action, for parsing and for the console's filter.
    pub const ALL: [Self; 13] = [
        Self::UserCreate,
        Self::UserUpdate,
        Self::UserSetPassword,
        Self::UserActivate,
        Self::UserDeactivate,
        Self::UserDelete,
        Self::UserUnlock,
        Self::SessionEnd,
        Self::SessionsEndAll,
        Self::KeyGenerate,
        Self::KeyRotate,
        Self::KeyRetire,
        Self::ImportDjango,
    ];

    /// The stored name, such as `user.deactivate`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UserCreate => "user.create",
            Self::UserUpdate => "user.update",
            Self::UserSetPassword => "user.set_password",
            Self::UserActivate => "user.activate",
            Self::UserDeactivate => "user.deactivate",
            Self::UserDelete => "user.delete",
            Self::UserUnlock => "user.unlock",
            Self::SessionEnd => "session.end",
            Self::SessionsEndAll => "sessions.end_all",
            Self::KeyGenerate => "key.generate",
            Self::KeyRotate => "key.rotate",
            Self::KeyRetire => "key.retire",
            Self::ImportDjango => "import.django",
        }
    }

    /// The action stored as `name`.
    #[must_use]
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == name)
    }
}

/// What a change was made to: an account (by id and the username it had)
/// or a signing key (by kid).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Target {
    /// The account's id; `None` for a key, or a username that names no
    /// account (`user unlock` of an unknown name).
    pub id: Option<i64>,
    /// The username or kid.
    pub name: String,
}

impl Target {
    /// An account.
    #[must_use]
    pub fn user(id: i64, username: &str) -> Self {
        Self {
            id: Some(id),
            name: username.to_owned(),
        }
    }

    /// A name without an id: a signing key's kid, or a username.
    #[must_use]
    pub fn named(name: &str) -> Self {
        Self {
            id: None,
            name: name.to_owned(),
        }
    }
}

/// One change, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// When, Unix seconds.
    pub at: i64,
    /// Who.
    pub actor: Actor,
    /// What.
    pub action: AuditAction,
    /// On what, if on one thing.
    pub target: Option<Target>,
    /// The particulars, such as `is_staff: no -> yes` (never a secret).
    pub detail: String,
    /// The client address of the request (`None` for the command line).
    pub address: Option<String>,
}

impl AuditEntry {
    /// An entry with no detail and no address.
    #[must_use]
    pub fn new(at: i64, actor: Actor, action: AuditAction, target: Option<Target>) -> Self {
        Self {
            at,
            actor,
            action,
            target,
            detail: String::new(),
            address: None,
        }
    }

    /// With these particulars.
    #[must_use]
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = detail.into();
        self
    }

    /// From this client address.
    #[must_use]
    pub fn address(mut self, address: Option<String>) -> Self {
        self.address = address;
        self
    }
}

/// A stored entry, with its id (ids grow with time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// The row id.
    pub id: i64,
    /// The entry.
    pub entry: AuditEntry,
}

impl AuditRecord {
    /// The record as one JSON object (`portcullis audit list --json` writes
    /// one a line).
    #[must_use]
    pub fn to_json(&self) -> serde_json::Value {
        let e = &self.entry;
        let (actor_id, os_user) = match &e.actor {
            Actor::Staff { id, .. } => (Some(*id), None),
            Actor::Cli { os_user } => (None, Some(os_user.as_str())),
        };
        serde_json::json!({
            "id": self.id,
            "at": e.at,
            "actor": e.actor.name(),
            "actor_id": actor_id,
            "os_user": os_user,
            "action": e.action.as_str(),
            "target": e.target.as_ref().map(|t| t.name.as_str()),
            "target_id": e.target.as_ref().and_then(|t| t.id),
            "detail": e.detail,
            "address": e.address,
        })
    }
}

/// Which entries to list: newest first, `limit` of them, older than the
/// id `before` (keyset paging).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Only this actor ([`Actor::name`]: a staff username, or `cli`).
    pub actor: Option<String>,
    /// Only changes to this username or kid.
    pub target: Option<String>,
    /// Only entries with an id below this.
    pub before: Option<i64>,
    /// At most this many.
    pub limit: u32,
}

/// Where the audit trail lives.
#[async_trait]
pub trait AuditStore: Send + Sync + std::fmt::Debug {
    /// Record one change.
    async fn record_audit(&self, entry: &AuditEntry) -> Result<(), StoreError>;
    /// Entries matching the filter, newest first.
    async fn audit_entries(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>, StoreError>;
    /// Delete the entries recorded before `before` (Unix seconds):
    /// `AUDIT_RETENTION`, with the other pruning. Returns how many.
    async fn prune_audit(&self, before: i64) -> Result<u64, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_parses_back_from_its_name() {
        for action in AuditAction::ALL {
            assert_eq!(AuditAction::parse(action.as_str()), Some(action));
        }
        assert_eq!(AuditAction::parse("user.explode"), None);
    }
}
