//! Access-token revocation, checked on every authenticated request without
//! touching the database (ASVS 5.0 V7.4.1).
//!
//! Access tokens are self-contained, so ending a session must be
//! remembered until its access tokens expire on their own: a set of ended
//! sessions (`sid`) and a per-user "not valid before" instant. Both live
//! in memory; every node reloads them from the database every second
//! ([`crate::AuthService::reload_revocations`]), so a revocation made on
//! one node is enforced by all within about a second, and the node that
//! made it enforces it at once. Only what may still hold unexpired access
//! tokens is kept: the set is bounded by `ACCESS_TOKEN_LIFETIME`.
//!
//! Invariant: entries are only ever added (a reload merges), and dropped
//! once older than the window, so a reload that raced a local revocation
//! never forgets it.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::Revocations;

#[derive(Debug, Default)]
struct Snapshot {
    /// Ended session id → when.
    sessions: HashMap<String, i64>,
    /// User id → tokens issued before this instant are refused.
    not_before: HashMap<i64, i64>,
}

/// The in-memory revocation state of one node.
#[derive(Debug, Clone, Default)]
pub(crate) struct RevocationCache {
    inner: Arc<RwLock<Snapshot>>,
}

impl RevocationCache {
    /// Whether a token of this session, user and issue time is revoked.
    /// A token of a session is judged by its session alone (every way to
    /// end tokens ends their sessions too), so a password change can keep
    /// the current session; one without is judged by its user's instant.
    pub(crate) fn is_revoked(&self, sid: Option<&str>, user: Option<i64>, iat: i64) -> bool {
        let Ok(snapshot) = self.inner.read() else {
            return false;
        };
        match sid {
            Some(sid) => snapshot.sessions.contains_key(sid),
            None => user
                .and_then(|user| snapshot.not_before.get(&user))
                .is_some_and(|&not_before| iat < not_before),
        }
    }

    /// Merge what the database says and forget what is older than `since`.
    pub(crate) fn merge(&self, revocations: Revocations, since: i64) {
        let Ok(mut snapshot) = self.inner.write() else {
            return;
        };
        snapshot.sessions.retain(|_, at| *at >= since);
        snapshot.not_before.retain(|_, at| *at >= since);
        for (id, at) in revocations.sessions {
            snapshot.sessions.insert(id, at);
        }
        for (user, at) in revocations.users_not_before {
            let entry = snapshot.not_before.entry(user).or_insert(at);
            *entry = (*entry).max(at);
        }
    }

    /// A revocation made here: enforced at once on this node.
    pub(crate) fn note(&self, revocations: Revocations) {
        self.merge(revocations, i64::MIN);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sessions are judged by their session alone, tokens without one by
    /// their user's not-before instant; a reload never forgets what was
    /// noted here, and what is older than the window is dropped.
    #[test]
    fn revocations_are_kept_merged_and_expired() {
        let cache = RevocationCache::default();
        assert!(!cache.is_revoked(Some("s1"), Some(1), 0));
        cache.note(Revocations {
            sessions: vec![("s1".to_owned(), 100)],
            users_not_before: vec![(1, 100)],
        });
        assert!(cache.is_revoked(Some("s1"), Some(2), 500));
        // A live session of a user who logged out everywhere later: the
        // session decides (a password change keeps the current one).
        assert!(!cache.is_revoked(Some("s2"), Some(1), 50));
        assert!(cache.is_revoked(None, Some(1), 99));
        assert!(!cache.is_revoked(None, Some(1), 100));
        assert!(!cache.is_revoked(None, None, 0));

        // A reload that does not know of s1 yet keeps it; a later
        // not-before wins over an earlier one.
        cache.merge(
            Revocations {
                sessions: vec![("s3".to_owned(), 120)],
                users_not_before: vec![(1, 90), (2, 130)],
            },
            50,
        );
        assert!(cache.is_revoked(Some("s1"), None, 0));
        assert!(cache.is_revoked(Some("s3"), None, 0));
        assert!(cache.is_revoked(None, Some(1), 99));
        assert!(cache.is_revoked(None, Some(2), 129));

        // Older than the window: forgotten.
        cache.merge(Revocations::default(), 110);
        assert!(!cache.is_revoked(Some("s1"), None, 0));
        assert!(!cache.is_revoked(None, Some(1), 99));
        assert!(cache.is_revoked(Some("s3"), None, 0));
        assert!(cache.is_revoked(None, Some(2), 129));
    }
}
