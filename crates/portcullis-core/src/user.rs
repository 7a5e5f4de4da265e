//! Accounts, shaped like Django's `auth_user` so that a Django user table
//! maps onto them column for column.

use std::fmt;

/// A stored account.
#[derive(Clone, PartialEq, Eq)]
pub struct User {
    /// Integer primary key; tokens carry it as `user_id`.
    pub id: i64,
    /// Unique login name, at most 150 characters.
    pub username: String,
    /// Email address, possibly empty.
    pub email: String,
    /// The password hash: an Argon2id PHC string, a Django hash imported by
    /// `portcullis import django` (until its first login), or `!…` for none.
    pub password: String,
    /// Inactive users cannot log in or authenticate.
    pub is_active: bool,
    /// Staff users may use the admin endpoints.
    pub is_staff: bool,
    /// Superusers hold every permission.
    pub is_superuser: bool,
    /// When the account was created, Unix seconds.
    pub date_joined: i64,
    /// The last successful login, Unix seconds.
    pub last_login: Option<i64>,
}

impl fmt::Debug for User {
    // The password hash stays out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("username", &self.username)
            .field("is_active", &self.is_active)
            .field("is_staff", &self.is_staff)
            .finish_non_exhaustive()
    }
}

/// An account to create.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// The validated name.
    pub username: Username,
    /// Email address, possibly empty.
    pub email: String,
    /// The password hash, already computed.
    pub password_hash: String,
    /// Whether the account may log in.
    pub is_active: bool,
    /// Staff flag.
    pub is_staff: bool,
    /// Superuser flag.
    pub is_superuser: bool,
    /// Creation time, Unix seconds.
    pub date_joined: i64,
}

/// A username that Django would accept: 1 to 150 characters of letters,
/// digits and `@ . + - _` (Django's `UnicodeUsernameValidator`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

/// Why [`Username::parse`] refused a name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidUsername {
    /// No characters.
    #[error("the username is empty")]
    Empty,
    /// More than 150 characters (the count).
    #[error("the username is {0} characters long; at most 150 are allowed")]
    TooLong(usize),
    /// A character Django's validator refuses.
    #[error("the username contains {0:?}; only letters, digits and @ . + - _ are allowed")]
    Character(char),
}

impl Username {
    /// Validate a username, saying what is wrong.
    pub fn parse(raw: &str) -> Result<Self, InvalidUsername> {
        if raw.is_empty() {
            return Err(InvalidUsername::Empty);
        }
        let count = raw.chars().count();
        if count > 150 {
            return Err(InvalidUsername::TooLong(count));
        }
        if let Some(bad) = raw
            .chars()
            .find(|c| !(c.is_alphanumeric() || matches!(c, '@' | '.' | '+' | '-' | '_')))
        {
            return Err(InvalidUsername::Character(bad));
        }
        Ok(Self(raw.to_owned()))
    }

    /// The name.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_follow_django() {
        assert!(Username::parse("alice.b+c@d-e_f").is_ok());
        assert!(Username::parse("zoë").is_ok());
        assert_eq!(
            Username::parse("").unwrap_err().to_string(),
            "the username is empty"
        );
        assert_eq!(
            Username::parse("a b").unwrap_err().to_string(),
            "the username contains ' '; only letters, digits and @ . + - _ are allowed"
        );
        assert!(Username::parse(&"a".repeat(150)).is_ok());
        assert_eq!(
            Username::parse(&"a".repeat(151)).unwrap_err().to_string(),
            "the username is 151 characters long; at most 150 are allowed"
        );
    }
}
