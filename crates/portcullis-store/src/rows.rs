//! The rows the store reads, as sqlx decodes them, and what they become
//! in the domain.

use portcullis_core::{Client, RotationClaim, Session, Successor, User};
use portcullis_token::StoredKey;

pub(crate) const USER_COLUMNS: &str =
    "id, username, email, password, is_active, is_staff, is_superuser, date_joined, last_login";

#[derive(sqlx::FromRow)]
pub(crate) struct UserRow {
    pub(crate) id: i64,
    pub(crate) username: String,
    email: String,
    password: String,
    is_active: bool,
    is_staff: bool,
    is_superuser: bool,
    date_joined: i64,
    last_login: Option<i64>,
}

impl From<UserRow> for User {
    fn from(r: UserRow) -> Self {
        Self {
            id: r.id,
            username: r.username,
            email: r.email,
            password: r.password,
            is_active: r.is_active,
            is_staff: r.is_staff,
            is_superuser: r.is_superuser,
            date_joined: r.date_joined,
            last_login: r.last_login,
        }
    }
}

/// A [`UserRow`] as an inline read returns it, in [`USER_COLUMNS`] order.
pub(crate) fn user_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        id: row.get(0)?,
        username: row.get(1)?,
        email: row.get(2)?,
        password: row.get(3)?,
        is_active: row.get(4)?,
        is_staff: row.get(5)?,
        is_superuser: row.get(6)?,
        date_joined: row.get(7)?,
        last_login: row.get(8)?,
    })
}

#[derive(sqlx::FromRow)]
pub(crate) struct KeyRow {
    kid: String,
    algorithm: String,
    private_key: String,
    public_key: Option<String>,
    created_at: i64,
    activates_at: Option<i64>,
    retires_at: Option<i64>,
}

impl From<KeyRow> for StoredKey {
    fn from(r: KeyRow) -> Self {
        Self {
            kid: r.kid,
            algorithm: r.algorithm,
            private_key: r.private_key,
            public_key: r.public_key,
            created_at: r.created_at,
            activates_at: r.activates_at,
            retires_at: r.retires_at,
        }
    }
}

/// One row of `sessions` as listed.
#[derive(sqlx::FromRow)]
pub(crate) struct SessionRow {
    id: String,
    user_id: Option<i64>,
    created_at: i64,
    last_used_at: i64,
    expires_at: i64,
    ip_address: Option<String>,
    user_agent: Option<String>,
}

impl From<SessionRow> for Session {
    fn from(r: SessionRow) -> Self {
        Self {
            id: r.id,
            user_id: r.user_id,
            created_at: r.created_at,
            last_used_at: r.last_used_at,
            expires_at: r.expires_at,
            client: Client {
                ip_address: r.ip_address,
                user_agent: r.user_agent,
            },
        }
    }
}

/// What a rotation that lost finds on the presented token's row.
#[derive(sqlx::FromRow)]
pub(crate) struct RotatedRow {
    blacklisted_at: Option<i64>,
    rotated_at: Option<i64>,
    successor_jti: Option<String>,
    successor_created_at: Option<i64>,
    successor_expires_at: Option<i64>,
}

impl From<RotatedRow> for RotationClaim {
    fn from(r: RotatedRow) -> Self {
        match r {
            RotatedRow {
                blacklisted_at: None,
                rotated_at: Some(rotated_at),
                successor_jti: Some(jti),
                successor_created_at: Some(created_at),
                successor_expires_at: Some(expires_at),
            } => Self::AlreadyRotated {
                rotated_at,
                successor: Successor {
                    jti,
                    created_at,
                    expires_at,
                },
            },
            _ => Self::Ended,
        }
    }
}
