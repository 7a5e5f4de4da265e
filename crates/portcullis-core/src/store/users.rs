//! Accounts: created, read, changed and deleted, and brought in from
//! another system with their ids (`portcullis import django`).

use async_trait::async_trait;

use crate::{NewUser, StoreError, User};

/// An account brought from another system (`portcullis import django`),
/// keeping its id so the `user_id` claims of tokens already issued still
/// name the same person.
#[derive(Debug, Clone)]
pub struct ImportedUser {
    /// The id the account had there.
    pub id: i64,
    /// The account; its hash is kept as it was there (a Django hash is
    /// verified as such and rehashed on the first login).
    pub account: NewUser,
    /// The last successful login, Unix seconds.
    pub last_login: Option<i64>,
}

/// What an idempotent import did with one row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upserted {
    /// The row was new.
    Inserted,
    /// A row with that key was there and now holds the imported values.
    Updated,
}

/// Where accounts live. The account cache (`user_cache.rs`) wraps this
/// trait, and only this one: every write here must make it forget the
/// account.
#[async_trait]
pub trait UserStore: Send + Sync + std::fmt::Debug {
    /// Create an account; `Conflict` if the username is taken.
    async fn create_user(&self, user: &NewUser) -> Result<User, StoreError>;
    /// An account by id.
    async fn user_by_id(&self, id: i64) -> Result<Option<User>, StoreError>;
    /// A number that moves whenever an account may have been changed by
    /// another process or node since the last call (another server on the
    /// database, the `portcullis user …` commands): the account cache
    /// forgets every account when it moves. Cheap (memory, or one local
    /// read on SQLite), called before every cached read; where it cannot
    /// tell, it moves. Changes made through this handle need not move it.
    fn account_changes(&self) -> u64;
    /// An account by exact username.
    async fn user_by_username(&self, username: &str) -> Result<Option<User>, StoreError>;
    /// Every account, by id.
    async fn list_users(&self) -> Result<Vec<User>, StoreError>;
    /// Replace a password hash. `false` if there is no such user.
    async fn set_password(&self, id: i64, hash: &str) -> Result<bool, StoreError>;
    /// Activate or deactivate. `false` if there is no such user.
    async fn set_active(&self, id: i64, active: bool) -> Result<bool, StoreError>;
    /// Delete an account (its outstanding tokens keep a null user, as in
    /// simplejwt). `false` if there is no such user.
    async fn delete_user(&self, id: i64) -> Result<bool, StoreError>;
    /// Record a successful login.
    async fn update_last_login(&self, id: i64, at: i64) -> Result<(), StoreError>;
    /// Insert or overwrite the account with this id. `Conflict` if another
    /// id holds the username. Ids generated later are always above it.
    /// A password portcullis already manages (Argon2id: rehashed at login or
    /// changed here) is kept, and `last_login` never moves backwards, so a
    /// re-run of an import cannot undo what happened since.
    async fn upsert_user_with_id(&self, user: &ImportedUser) -> Result<Upserted, StoreError>;
    /// Make every id generated from now on greater than `id`, so ids that
    /// existed elsewhere (even deleted ones) are never handed out again.
    async fn reserve_user_ids(&self, id: i64) -> Result<(), StoreError>;
}
