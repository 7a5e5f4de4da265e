//! Finding accounts among many (the staff console's user list): a search by
//! username or email prefix, sorted by username, paged by key so that the
//! hundredth page costs what the first does.

use async_trait::async_trait;

use crate::{StoreError, User};

/// One page of a user search.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserQuery {
    /// Accounts whose username or email starts with this (case-sensitive,
    /// so an index answers it); empty: every account.
    pub prefix: String,
    /// Only usernames sorting after this (the last one of the page before).
    pub after: Option<String>,
    /// At most this many.
    pub limit: u32,
}

/// The account search.
#[async_trait]
pub trait UserDirectory: Send + Sync + std::fmt::Debug {
    /// The accounts matching `query`, by username.
    async fn search_users(&self, query: &UserQuery) -> Result<Vec<User>, StoreError>;
    /// Change an account's email and staff and superuser flags. `false` if
    /// there is no such user. The caller then writes through the
    /// [`crate::AuthService::user_store`] (`set_active`), which makes this node
    /// forget its cached copy of the account.
    async fn update_profile(
        &self,
        id: i64,
        email: &str,
        is_staff: bool,
        is_superuser: bool,
    ) -> Result<bool, StoreError>;
}
