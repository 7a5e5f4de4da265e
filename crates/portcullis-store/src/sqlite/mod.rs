//! What only SQLite gets: the fast paths that replace a general one, each
//! with a test against the path it replaces.
//!
//! - `inline.rs`: the hottest point reads (the account behind a token, the
//!   blacklist check) on the caller's thread instead of a hop to sqlx's
//!   connection thread; tested below against sqlx's pool.
//! - `rotation.rs`: refresh-token rotations written in batches instead of
//!   one transaction each; tested against the statement-by-statement path
//!   (`SqlStore::rotate_in_family`'s general path) in the store suite,
//!   `tests/store.rs`.

mod inline;
mod rotation;

pub(crate) use inline::{InlineReader, one_row, open_reader};
pub(crate) use rotation::RotationQueue;

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use portcullis_core::{
        NewUser, OutstandingToken, TokenStore as _, User, UserStore as _, Username,
    };

    use super::*;
    use crate::SqlStore;
    use crate::rows::{USER_COLUMNS, user_from_row};

    async fn file_store(dir: &tempfile::TempDir) -> SqlStore {
        let url = format!("sqlite://{}", dir.path().join("db.sqlite3").display());
        SqlStore::connect(&url).await.unwrap()
    }

    async fn alice(store: &SqlStore) -> User {
        store
            .create_user(&NewUser {
                username: Username::parse("alice").unwrap(),
                email: "alice@example.com".to_owned(),
                password_hash: "!".to_owned(),
                is_active: true,
                is_staff: false,
                is_superuser: false,
                date_joined: 1_700_000_000,
            })
            .await
            .unwrap()
    }

    fn token(user: &User) -> OutstandingToken {
        OutstandingToken {
            jti: "a1b2".to_owned(),
            user_id: Some(user.id),
            created_at: Some(1_700_000_000),
            expires_at: 4_000_000_000,
        }
    }

    /// The inline readers answer themselves (no fallback), and see each
    /// write committed before the read.
    #[tokio::test]
    async fn inline_reads_see_every_committed_write() {
        let dir = tempfile::tempdir().unwrap();
        let store = file_store(&dir).await;
        let inline = store.inline.clone().expect("a SQLite file reads inline");
        let by_id = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
        let blacklisted =
            "SELECT id FROM outstanding_tokens WHERE jti = $1 AND blacklisted_at IS NOT NULL";

        let user = alice(&store).await;
        let read = inline.read(|c| one_row(c, &by_id, user.id, user_from_row));
        assert_eq!(read, Some(Some(user.clone())));
        assert_eq!(
            inline.read(|c| one_row(c, &by_id, user.id + 1, user_from_row)),
            Some(None)
        );

        assert!(store.set_active(user.id, false).await.unwrap());
        let read = inline.read(|c| one_row(c, &by_id, user.id, user_from_row));
        assert_eq!(read.flatten().map(|u| u.is_active), Some(false));
        assert_eq!(
            store
                .user_by_id(user.id)
                .await
                .unwrap()
                .map(|u| u.is_active),
            Some(false)
        );

        let token = token(&user);
        store.record_outstanding(&token).await.unwrap();
        assert_eq!(
            inline.read(|c| one_row(c, blacklisted, "a1b2", |_| Ok(()))),
            Some(None)
        );
        assert!(!store.is_blacklisted("a1b2").await.unwrap());
        assert!(store.blacklist(&token, 1_700_000_001).await.unwrap());
        assert_eq!(
            inline.read(|c| one_row(c, blacklisted, "a1b2", |_| Ok(()))),
            Some(Some(()))
        );
        assert!(store.is_blacklisted("a1b2").await.unwrap());
    }

    /// A read the inline connections cannot make is made by sqlx's pool,
    /// with the same answer.
    #[tokio::test]
    async fn a_failed_inline_read_is_asked_of_the_pool() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = file_store(&dir).await;
        let user = alice(&store).await;
        store.blacklist(&token(&user), 1_700_000_001).await.unwrap();
        let nowhere = Arc::new(InlineReader::new(dir.path().join("missing.sqlite3")));
        assert_eq!(nowhere.read(|_| Ok(())), None);
        store.inline = Some(nowhere);

        assert_eq!(store.user_by_id(user.id).await.unwrap(), Some(user));
        assert!(store.is_blacklisted("a1b2").await.unwrap());
        assert!(!store.is_blacklisted("c3d4").await.unwrap());
    }

    /// No inline reader, and no stray file named after sqlx's in-memory
    /// database in the working directory.
    #[tokio::test]
    async fn an_in_memory_database_is_read_by_the_pool_only() {
        let store = SqlStore::connect("sqlite::memory:").await.unwrap();
        assert!(store.inline.is_none());
        let user = alice(&store).await;
        assert_eq!(store.user_by_id(user.id).await.unwrap(), Some(user));
        let stray = std::fs::read_dir(".")
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().contains("in-memory"))
            .count();
        assert_eq!(stray, 0);
    }
}
