//! Console sessions: a random id in an `HttpOnly`, `SameSite=Strict`
//! cookie (`__Host-` and `Secure` under TLS), the session itself in this
//! node's memory with its CSRF token, its last use and the flash message
//! of the next page.
//!
//! Why memory and not the database: a console session is a person at one
//! browser for minutes; losing them on a restart costs a login, and no
//! token of theirs outlives the process. Behind a load balancer the
//! console wants sticky sessions (or one node serving `/admin/`).
//!
//! Invariants:
//! - A session is looked up by the SHA-256 of its cookie value, compared
//!   in the map (the map's lookup is no timing oracle for a 256-bit random
//!   value: guessing one is hopeless either way).
//! - A session unused for `ADMIN_IDLE_TIMEOUT` is gone: the next request
//!   finds none and is sent to the login page.
//! - Every logged-in request re-reads the account: a staff member who is
//!   deactivated, deleted or loses `is_staff` is out at their next click.
//! - Memory is bounded: at most [`MAX_SESSIONS`]; a full table drops its
//!   expired sessions, then the least recently used.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lc_rs::digest;
use portcullis_token::Clock;

/// At most this many console sessions at once.
pub(crate) const MAX_SESSIONS: usize = 10_000;

/// A confirmation (or warning) shown once, on the next page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Flash {
    /// `ok` or `error`: the message's style.
    pub(crate) kind: &'static str,
    /// The text (escaped when rendered).
    pub(crate) text: String,
}

#[derive(Debug, Clone)]
struct Entry {
    user_id: i64,
    csrf: String,
    /// Unix milliseconds, on the server's clock.
    last_seen: i64,
    flash: Option<Flash>,
}

/// A live session, as a request sees it.
#[derive(Debug, Clone)]
pub(crate) struct Current {
    /// The key in the table (the SHA-256 of the cookie value).
    pub(crate) key: String,
    /// The staff account.
    pub(crate) user_id: i64,
    /// The token every form of this session carries.
    pub(crate) csrf: String,
}

/// Every console session of this node.
#[derive(Debug, Clone)]
pub(crate) struct Sessions {
    table: Arc<Mutex<HashMap<String, Entry>>>,
    /// `ADMIN_IDLE_TIMEOUT`, milliseconds.
    idle: i64,
    clock: Arc<dyn Clock>,
}

impl Sessions {
    /// Sessions that end after `idle` unused, timed by `clock`.
    pub(crate) fn new(idle: Duration, clock: Arc<dyn Clock>) -> Self {
        Self {
            table: Arc::default(),
            idle: i64::try_from(idle.as_millis()).unwrap_or(i64::MAX),
            clock,
        }
    }

    /// Whether a session last used at `last_seen` is still live at `now`.
    fn live(&self, last_seen: i64, now: i64) -> bool {
        now.saturating_sub(last_seen) < self.idle
    }

    /// Start a session for `user_id`; returns the cookie value.
    pub(crate) fn start(&self, user_id: i64) -> String {
        let cookie = random_token();
        let now = self.clock.now_millis();
        let entry = Entry {
            user_id,
            csrf: random_token(),
            last_seen: now,
            flash: None,
        };
        if let Ok(mut table) = self.table.lock() {
            if table.len() >= MAX_SESSIONS {
                table.retain(|_, e| self.live(e.last_seen, now));
                if table.len() >= MAX_SESSIONS
                    && let Some(oldest) = table
                        .iter()
                        .min_by_key(|(_, e)| e.last_seen)
                        .map(|(k, _)| k.clone())
                {
                    table.remove(&oldest);
                }
            }
            table.insert(key_of(&cookie), entry);
        }
        cookie
    }

    /// The live session the cookie names, marked as used now; an expired
    /// one is removed.
    pub(crate) fn touch(&self, cookie: &str) -> Option<Current> {
        let key = key_of(cookie);
        let mut table = self.table.lock().ok()?;
        let entry = table.get_mut(&key)?;
        let now = self.clock.now_millis();
        if !self.live(entry.last_seen, now) {
            table.remove(&key);
            return None;
        }
        entry.last_seen = now;
        Some(Current {
            user_id: entry.user_id,
            csrf: entry.csrf.clone(),
            key,
        })
    }

    /// End a session (logout).
    pub(crate) fn end(&self, key: &str) {
        if let Ok(mut table) = self.table.lock() {
            table.remove(key);
        }
    }

    /// Keep a message for the session's next page.
    pub(crate) fn flash(&self, key: &str, flash: Flash) {
        if let Ok(mut table) = self.table.lock()
            && let Some(entry) = table.get_mut(key)
        {
            entry.flash = Some(flash);
        }
    }

    /// The message kept for this page, once.
    pub(crate) fn take_flash(&self, key: &str) -> Option<Flash> {
        self.table
            .lock()
            .ok()?
            .get_mut(key)
            .and_then(|e| e.flash.take())
    }
}

/// 32 random bytes as 64 hex digits.
pub(crate) fn random_token() -> String {
    let mut bytes = [0u8; 32];
    // The system generator does not fail on the platforms we build for;
    // if it ever did, an all-zero token must not be handed out.
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        tracing::error!("the system random generator failed");
        return String::new();
    }
    hex::encode(bytes)
}

fn key_of(cookie: &str) -> String {
    hex::encode(digest::digest(&digest::SHA256, cookie.as_bytes()))
}

/// Whether a submitted CSRF token is the expected one, in constant time.
pub(crate) fn csrf_matches(expected: &str, given: Option<&str>) -> bool {
    match given {
        Some(given) if !expected.is_empty() => {
            aws_lc_rs::constant_time::verify_slices_are_equal(expected.as_bytes(), given.as_bytes())
                .is_ok()
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use portcullis_token::ManualClock;

    use super::*;

    #[test]
    fn a_session_is_found_by_its_cookie_and_ends() {
        let sessions = Sessions::new(
            Duration::from_mins(1),
            Arc::new(ManualClock::starting_now()),
        );
        let cookie = sessions.start(7);
        let current = sessions.touch(&cookie).expect("live");
        assert_eq!(current.user_id, 7);
        assert_eq!(current.csrf.len(), 64);
        assert!(sessions.touch("not-the-cookie").is_none());
        sessions.end(&current.key);
        assert!(sessions.touch(&cookie).is_none());
    }

    #[test]
    fn an_idle_session_is_gone() {
        let sessions = Sessions::new(Duration::ZERO, Arc::new(ManualClock::starting_now()));
        let cookie = sessions.start(7);
        assert!(sessions.touch(&cookie).is_none());
    }

    #[test]
    fn a_session_lives_while_used_and_ends_after_the_idle_timeout() {
        let clock = Arc::new(ManualClock::starting_now());
        let sessions = Sessions::new(
            Duration::from_mins(30),
            Arc::clone(&clock) as Arc<dyn Clock>,
        );
        let cookie = sessions.start(7);
        clock.advance(Duration::from_mins(29));
        assert!(sessions.touch(&cookie).is_some(), "used within the timeout");
        clock.advance(Duration::from_mins(29));
        assert!(
            sessions.touch(&cookie).is_some(),
            "each use starts it again"
        );
        clock.advance(Duration::from_mins(30));
        assert!(sessions.touch(&cookie).is_none(), "unused for the timeout");
    }

    #[test]
    fn a_flash_is_shown_once() {
        let sessions = Sessions::new(
            Duration::from_mins(1),
            Arc::new(ManualClock::starting_now()),
        );
        let cookie = sessions.start(7);
        let key = sessions.touch(&cookie).expect("live").key;
        sessions.flash(
            &key,
            Flash {
                kind: "ok",
                text: "done".to_owned(),
            },
        );
        assert_eq!(
            sessions.take_flash(&key).map(|f| f.text).as_deref(),
            Some("done")
        );
        assert_eq!(sessions.take_flash(&key), None);
    }

    #[test]
    fn csrf_tokens_must_match_exactly() {
        assert!(csrf_matches("abc", Some("abc")));
        assert!(!csrf_matches("abc", Some("abd")));
        assert!(!csrf_matches("abc", None));
        assert!(!csrf_matches("", Some("")));
    }
}
