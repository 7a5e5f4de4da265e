//! A short-lived cache of accounts by id, in front of the [`Store`], so an
//! authenticated request does not cost a database round trip.
//!
//! `JWTAuthentication` reads the token's user on every request (simplejwt
//! does a `User.objects.get` each time): to check `is_active`, the
//! `CHECK_REVOKE_TOKEN` password version, and to answer `/api/users/me/`.
//! That read was the largest cost of an authenticated request.
//!
//! Invariants:
//! - Every write of an account made through this process goes through
//!   [`CachingStore`]'s `Store` methods, which drop the account's entry
//!   before they return: this node never serves an account older than its
//!   own last write. New writes must be added here too — the trait has no
//!   default methods, so a new one cannot be forgotten.
//! - Writes by other processes (another node, the `portcullis user …`
//!   commands) are seen by the next read, as simplejwt sees them: before
//!   every cached answer the store is asked whether any account changed
//!   elsewhere ([`Store::account_changes`]: on SQLite one local read, on
//!   PostgreSQL a notification the writer's commit sends, which takes a
//!   few milliseconds to arrive), and if so every entry is forgotten.
//!   Entries also expire after [`USER_CACHE_TTL`] whatever happens.
//! - A read that raced a write never stores what it read: entries are only
//!   stored if no account was written here since the read began (a
//!   generation counter), and only served while the store's change number
//!   is the one observed before they were read.
//! - Memory is bounded: at most [`USER_CACHE_CAPACITY`] accounts; a full
//!   cache drops its expired entries, then everything.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use portcullis_token::StoredKey;

use crate::{
    Client, ImportedUser, LoginFailures, NewUser, OutstandingToken, Revocations, RotationClaim,
    Session, Store, StoreError, Upserted, User,
};

/// The longest an entry is served, even when no change was announced: a
/// bound on the harm of a change the store failed to announce (none is
/// known to be possible), not the way changes are seen.
pub(crate) const USER_CACHE_TTL: Duration = Duration::from_secs(10);

/// At most this many accounts are cached (a few hundred bytes each).
pub(crate) const USER_CACHE_CAPACITY: usize = 10_000;

#[derive(Debug, Default)]
struct Cache {
    entries: RwLock<Entries>,
    /// Bumped by every write of an account made here.
    generation: AtomicU64,
}

#[derive(Debug, Default)]
struct Entries {
    users: HashMap<i64, (User, Instant)>,
    /// The store's [`Store::account_changes`] observed before every entry
    /// here was read.
    changes: u64,
}

impl Cache {
    fn get(&self, id: i64, now: Instant, changes: u64) -> Option<User> {
        let entries = self.entries.read().ok()?;
        if entries.changes != changes {
            return None;
        }
        let (user, at) = entries.users.get(&id)?;
        (now.duration_since(*at) < USER_CACHE_TTL).then(|| user.clone())
    }

    /// Keep `user`, read after `read_since` was the generation and
    /// `changes` the store's change number.
    fn put(&self, user: &User, read_since: u64, read_at: Instant, changes: u64) {
        let Ok(mut guard) = self.entries.write() else {
            return;
        };
        // Checked under the lock: a write that bumps the generation and then
        // takes the lock to drop the entry is either seen here or comes after.
        if self.generation.load(Ordering::Acquire) != read_since {
            return;
        }
        let entries = &mut *guard;
        if entries.changes != changes {
            // Accounts changed elsewhere: what was read before is stale.
            entries.users.clear();
            entries.changes = changes;
        }
        let entries = &mut entries.users;
        if entries.len() >= USER_CACHE_CAPACITY {
            entries.retain(|_, (_, at)| read_at.duration_since(*at) < USER_CACHE_TTL);
            if entries.len() >= USER_CACHE_CAPACITY {
                entries.clear();
            }
        }
        entries.insert(user.id, (user.clone(), read_at));
    }

    /// Forget one account (`None`: all of them).
    fn invalidate(&self, id: Option<i64>) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        if let Ok(mut entries) = self.entries.write() {
            match id {
                Some(id) => drop(entries.users.remove(&id)),
                None => entries.users.clear(),
            }
        }
    }
}

/// A [`Store`] that answers [`Store::user_by_id`] from memory until the
/// account is written here, any account is changed elsewhere, or
/// [`USER_CACHE_TTL`] passed.
#[derive(Debug)]
pub(crate) struct CachingStore {
    inner: Arc<dyn Store>,
    users: Cache,
}

impl CachingStore {
    pub(crate) fn new(inner: Arc<dyn Store>) -> Self {
        Self {
            inner,
            users: Cache::default(),
        }
    }
}

#[async_trait]
impl Store for CachingStore {
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }

    async fn create_user(&self, user: &NewUser) -> Result<User, StoreError> {
        self.inner.create_user(user).await
    }

    fn account_changes(&self) -> u64 {
        self.inner.account_changes()
    }

    async fn user_by_id(&self, id: i64) -> Result<Option<User>, StoreError> {
        let now = Instant::now();
        let changes = self.inner.account_changes();
        if let Some(user) = self.users.get(id, now, changes) {
            return Ok(Some(user));
        }
        let generation = self.users.generation.load(Ordering::Acquire);
        let user = self.inner.user_by_id(id).await?;
        if let Some(user) = &user {
            self.users.put(user, generation, now, changes);
        }
        Ok(user)
    }

    async fn user_by_username(&self, username: &str) -> Result<Option<User>, StoreError> {
        // Logins read the database: they pay for a password hash anyway.
        self.inner.user_by_username(username).await
    }

    async fn list_users(&self) -> Result<Vec<User>, StoreError> {
        self.inner.list_users().await
    }

    async fn set_password(&self, id: i64, hash: &str) -> Result<bool, StoreError> {
        let changed = self.inner.set_password(id, hash).await;
        self.users.invalidate(Some(id));
        changed
    }

    async fn set_active(&self, id: i64, active: bool) -> Result<bool, StoreError> {
        let changed = self.inner.set_active(id, active).await;
        self.users.invalidate(Some(id));
        changed
    }

    async fn delete_user(&self, id: i64) -> Result<bool, StoreError> {
        let deleted = self.inner.delete_user(id).await;
        self.users.invalidate(Some(id));
        deleted
    }

    async fn update_last_login(&self, id: i64, at: i64) -> Result<(), StoreError> {
        let updated = self.inner.update_last_login(id, at).await;
        self.users.invalidate(Some(id));
        updated
    }

    async fn upsert_user_with_id(&self, user: &ImportedUser) -> Result<Upserted, StoreError> {
        let upserted = self.inner.upsert_user_with_id(user).await;
        self.users.invalidate(Some(user.id));
        upserted
    }

    async fn reserve_user_ids(&self, id: i64) -> Result<(), StoreError> {
        self.inner.reserve_user_ids(id).await
    }

    async fn record_outstanding(&self, token: &OutstandingToken) -> Result<(), StoreError> {
        self.inner.record_outstanding(token).await
    }

    async fn is_blacklisted(&self, jti: &str) -> Result<bool, StoreError> {
        self.inner.is_blacklisted(jti).await
    }

    async fn blacklist(&self, token: &OutstandingToken, at: i64) -> Result<bool, StoreError> {
        self.inner.blacklist(token, at).await
    }

    async fn upsert_outstanding(
        &self,
        token: &OutstandingToken,
        blacklisted_at: Option<i64>,
    ) -> Result<Upserted, StoreError> {
        self.inner.upsert_outstanding(token, blacklisted_at).await
    }

    async fn flush_expired(&self, now: i64) -> Result<u64, StoreError> {
        self.inner.flush_expired(now).await
    }

    async fn start_session(
        &self,
        session: &Session,
        first: &OutstandingToken,
    ) -> Result<(), StoreError> {
        self.inner.start_session(session, first).await
    }

    async fn rotate_in_family(
        &self,
        presented: &OutstandingToken,
        family: &str,
        successor: &OutstandingToken,
        now: i64,
        client: &Client,
    ) -> Result<RotationClaim, StoreError> {
        self.inner
            .rotate_in_family(presented, family, successor, now, client)
            .await
    }

    async fn revoke_session(&self, id: &str, at: i64) -> Result<bool, StoreError> {
        self.inner.revoke_session(id, at).await
    }

    async fn live_sessions(&self, user_id: i64, now: i64) -> Result<Vec<Session>, StoreError> {
        self.inner.live_sessions(user_id, now).await
    }

    async fn end_sessions(
        &self,
        user_id: i64,
        except: Option<&str>,
        at: i64,
    ) -> Result<Vec<String>, StoreError> {
        self.inner.end_sessions(user_id, except, at).await
    }

    async fn revocations(&self, since: i64) -> Result<Revocations, StoreError> {
        self.inner.revocations(since).await
    }

    async fn login_blocked_until(&self, key: &str) -> Result<i64, StoreError> {
        self.inner.login_blocked_until(key).await
    }

    async fn record_login_failure(
        &self,
        key: &str,
        now: i64,
        window_expired: i64,
    ) -> Result<LoginFailures, StoreError> {
        self.inner
            .record_login_failure(key, now, window_expired)
            .await
    }

    async fn block_login(&self, key: &str, until: i64) -> Result<(), StoreError> {
        self.inner.block_login(key, until).await
    }

    async fn clear_login_failures(&self, key: &str) -> Result<bool, StoreError> {
        self.inner.clear_login_failures(key).await
    }

    async fn prune_login_failures(
        &self,
        now: i64,
        window_start_before: i64,
    ) -> Result<u64, StoreError> {
        self.inner
            .prune_login_failures(now, window_start_before)
            .await
    }

    async fn setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.inner.setting(key).await
    }

    async fn init_setting(&self, key: &str, value: &str) -> Result<String, StoreError> {
        self.inner.init_setting(key, value).await
    }

    async fn signing_keys(&self) -> Result<Vec<StoredKey>, StoreError> {
        self.inner.signing_keys().await
    }

    async fn add_signing_key(
        &self,
        key: &StoredKey,
        supersedes: Option<(&str, i64)>,
    ) -> Result<(), StoreError> {
        self.inner.add_signing_key(key, supersedes).await
    }

    async fn retire_signing_key(&self, kid: &str, at: i64) -> Result<bool, StoreError> {
        self.inner.retire_signing_key(kid, at).await
    }
}
