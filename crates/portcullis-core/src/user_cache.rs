//! A short-lived cache of accounts by id, in front of the [`UserStore`], so
//! an authenticated request does not cost a database round trip. It wraps
//! the account store only: tokens, sessions, the throttle and keys go to
//! the store directly.
//!
//! `JWTAuthentication` reads the token's user on every request (simplejwt
//! does a `User.objects.get` each time): to check `is_active`, the
//! `CHECK_REVOKE_TOKEN` password version, and to answer `/api/users/me/`.
//! That read was the largest cost of an authenticated request.
//!
//! Invariants:
//! - Every write of an account made through this process goes through
//!   [`CachingUsers`]'s `UserStore` methods, which drop the account's entry
//!   before they return: this node never serves an account older than its
//!   own last write. New writes must be added here too — the trait has no
//!   default methods, so a new one cannot be forgotten.
//! - Writes by other processes (another node, the `portcullis user …`
//!   commands) are seen by the next read, as simplejwt sees them: before
//!   every cached answer the store is asked whether any account changed
//!   elsewhere ([`UserStore::account_changes`]: on SQLite one local read, on
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

use crate::{ImportedUser, NewUser, StoreError, Upserted, User, UserStore};

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
    /// The store's [`UserStore::account_changes`] observed before every entry
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

/// A [`UserStore`] that answers [`UserStore::user_by_id`] from memory until
/// the account is written here, any account is changed elsewhere, or
/// [`USER_CACHE_TTL`] passed.
#[derive(Debug)]
pub(crate) struct CachingUsers {
    inner: Arc<dyn UserStore>,
    users: Cache,
}

impl CachingUsers {
    pub(crate) fn new(inner: Arc<dyn UserStore>) -> Self {
        Self {
            inner,
            users: Cache::default(),
        }
    }
}

#[async_trait]
impl UserStore for CachingUsers {
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
}
