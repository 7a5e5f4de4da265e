//! Server settings kept in the database (the generated signing key) and
//! the signing key set (`portcullis keys …`).

use async_trait::async_trait;
use portcullis_token::StoredKey;

use crate::StoreError;

/// Where settings and signing keys live.
#[async_trait]
pub trait KeyStore: Send + Sync + std::fmt::Debug {
    /// A server setting kept in the database (the generated signing key).
    async fn setting(&self, key: &str) -> Result<Option<String>, StoreError>;
    /// Store a setting unless one is already there; returns the value that
    /// won, so nodes starting together agree.
    async fn init_setting(&self, key: &str, value: &str) -> Result<String, StoreError>;

    /// Every key of the key set, oldest first.
    async fn signing_keys(&self) -> Result<Vec<StoredKey>, StoreError>;
    /// Add a key and, in the same transaction, retire the key it
    /// supersedes at the given time (rotation). `Conflict` if the kid exists.
    async fn add_signing_key(
        &self,
        key: &StoredKey,
        supersedes: Option<(&str, i64)>,
    ) -> Result<(), StoreError>;
    /// Make a key retire at `at`, unless it retires earlier already.
    /// `false` if there is no such key.
    async fn retire_signing_key(&self, kid: &str, at: i64) -> Result<bool, StoreError>;
}
