//! Sessions: the family of refresh tokens one login starts, its atomic
//! rotation step (reuse detection), and the revocations every node must
//! honour.

use async_trait::async_trait;

use crate::{OutstandingToken, StoreError};

/// A refresh token's successor, as recorded when it was rotated: enough
/// to sign the same successor again within the grace window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Successor {
    /// The successor's `jti`.
    pub jti: String,
    /// Its `iat`, Unix seconds.
    pub created_at: i64,
    /// Its `exp`, Unix seconds.
    pub expires_at: i64,
}

/// What the atomic rotation step found (see [`SessionStore::rotate_in_family`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RotationClaim {
    /// This caller rotated the token; its successor is recorded.
    Won,
    /// The token had been rotated already, at `rotated_at`.
    AlreadyRotated {
        /// When, Unix seconds.
        rotated_at: i64,
        /// Into what.
        successor: Successor,
    },
    /// The token is blacklisted or its session has ended.
    Ended,
}

/// A session: a family of refresh tokens started by one login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The `jti` of the family's first refresh token (the `sid` claim).
    pub id: String,
    /// Its user.
    pub user_id: Option<i64>,
    /// Login time, Unix seconds.
    pub created_at: i64,
    /// The last refresh, Unix seconds.
    pub last_used_at: i64,
    /// The `exp` of its newest refresh token.
    pub expires_at: i64,
    /// The client it was last used from (login or refresh).
    pub client: Client,
}

/// Who sent a login or refresh, as the HTTP layer saw it: shown with the
/// session so its owner can recognise it (ASVS 5.0 V7.5.2). Informative
/// only: it never decides anything, so a forged user agent harms nobody.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Client {
    /// The client address (the TCP peer).
    pub ip_address: Option<String>,
    /// The `User-Agent` header, cut to [`Client::MAX_USER_AGENT`] characters.
    pub user_agent: Option<String>,
}

impl Client {
    /// Longer user agents are cut: the column must not grow without bound.
    pub const MAX_USER_AGENT: usize = 512;

    /// A client from what the request carried.
    #[must_use]
    pub fn new(ip_address: Option<String>, user_agent: Option<&str>) -> Self {
        Self {
            ip_address,
            user_agent: user_agent.map(|ua| ua.chars().take(Self::MAX_USER_AGENT).collect()),
        }
    }
}

/// What every node must refuse, as read from the database.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Revocations {
    /// Ended sessions whose access tokens may still be unexpired, and when
    /// they ended.
    pub sessions: Vec<(String, i64)>,
    /// Per user, the instant before which their tokens are refused.
    pub users_not_before: Vec<(i64, i64)>,
}

/// Where sessions and their revocations live.
#[async_trait]
pub trait SessionStore: Send + Sync + std::fmt::Debug {
    /// Start a session; its first refresh token is recorded in its family.
    async fn start_session(
        &self,
        session: &Session,
        first: &OutstandingToken,
    ) -> Result<(), StoreError>;
    /// The atomic rotation step of reuse detection, in one transaction:
    /// mark `presented` (recorded in `family` if it never was) rotated into
    /// `successor` unless it is rotated or blacklisted already, or its
    /// session has ended. Of concurrent callers exactly one wins; the
    /// others are told what the winner recorded. The session's last use
    /// and client are updated whoever wins.
    async fn rotate_in_family(
        &self,
        presented: &OutstandingToken,
        family: &str,
        successor: &OutstandingToken,
        now: i64,
        client: &Client,
    ) -> Result<RotationClaim, StoreError>;
    /// End a session: mark it revoked and blacklist every refresh token of
    /// its family. `false` if it had ended already or does not exist.
    async fn revoke_session(&self, id: &str, at: i64) -> Result<bool, StoreError>;
    /// A user's live sessions (not ended, not expired at `now`), newest first.
    /// Also what staff see at `GET /api/admin/users/{id}/sessions/`.
    async fn live_sessions(&self, user_id: i64, now: i64) -> Result<Vec<Session>, StoreError>;
    /// logout-all: refuse the user's tokens issued before `at`, end every
    /// session but `except` and blacklist every outstanding token of
    /// theirs outside it. Returns the sessions that ended.
    async fn end_sessions(
        &self,
        user_id: i64,
        except: Option<&str>,
        at: i64,
    ) -> Result<Vec<String>, StoreError>;
    /// Sessions revoked at or after `since` and users whose not-before
    /// instant is at or after `since` (what may still hold live access tokens).
    async fn revocations(&self, since: i64) -> Result<Revocations, StoreError>;
}
