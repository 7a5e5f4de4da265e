//! Login throttling (issue 6): failed logins are counted per username and
//! per client address, in the database so that every node sees the same
//! counts. After `backoff_after` failures of a username each further one
//! delays the next attempt (2 s, 4 s, 8 s, …); at `failure_limit` (or
//! `address_failure_limit` for an address) the key is locked for `lockout`.
//! A blocked attempt is refused before any password is checked, with DRF's
//! `Throttled` answer.
//!
//! A lock never tells whether an account exists: the username key is a
//! hash of whatever was typed, counted and locked the same way whether or
//! not such a user exists, and a successful login (which needs the
//! password) is the only thing that clears it besides
//! `portcullis user unlock`.

use std::net::IpAddr;

use sha2::{Digest as _, Sha256};

/// The throttling settings (simplejwt has none; the names follow its style).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThrottleSettings {
    /// `LOGIN_FAILURE_LIMIT`: failures of one username within the window
    /// that lock it; 0 turns username throttling off.
    pub failure_limit: u32,
    /// `LOGIN_ADDRESS_FAILURE_LIMIT`: failures from one client address
    /// within the window that lock it; 0 turns address throttling off.
    pub address_failure_limit: u32,
    /// `LOGIN_FAILURE_WINDOW`, seconds: failures older than the window that
    /// holds them are forgotten.
    pub window: i64,
    /// `LOGIN_LOCKOUT`, seconds: how long a lock lasts.
    pub lockout: i64,
    /// `LOGIN_BACKOFF_AFTER`: failures of one username allowed before each
    /// further one delays the next attempt; at or above the limit: no delay.
    pub backoff_after: u32,
}

impl Default for ThrottleSettings {
    fn default() -> Self {
        Self {
            failure_limit: 10,
            address_failure_limit: 100,
            window: 15 * 60,
            lockout: 15 * 60,
            backoff_after: 5,
        }
    }
}

/// One counter a login attempt is checked against.
#[derive(Debug, Clone)]
pub(crate) struct ThrottleKey {
    pub(crate) key: String,
    pub(crate) limit: u32,
    pub(crate) backoff_after: u32,
}

/// The throttle key of a username: a SHA-256 of exactly what was typed
/// (usernames are case-sensitive, as in Django), so the table never holds a
/// password someone typed into the username field.
#[must_use]
pub fn throttle_key_for_username(username: &str) -> String {
    format!("u:{}", hex::encode(Sha256::digest(username.as_bytes())))
}

/// The throttle key of a client address. An IPv6 client is counted by its
/// /64, the smallest block a provider hands out: one host can use every
/// address in it.
#[must_use]
pub(crate) fn throttle_key_for_address(address: IpAddr) -> String {
    match address {
        IpAddr::V4(v4) => format!("a:{v4}"),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                format!("a:{v4}")
            } else {
                let [a, b, c, d, ..] = v6.segments();
                format!("a:{a:x}:{b:x}:{c:x}:{d:x}::/64")
            }
        }
    }
}

impl ThrottleSettings {
    /// The counters a login for `username` from `client` is checked against.
    pub(crate) fn keys(&self, username: &str, client: Option<IpAddr>) -> Vec<ThrottleKey> {
        let mut keys = Vec::with_capacity(2);
        if self.failure_limit > 0 {
            keys.push(ThrottleKey {
                key: throttle_key_for_username(username),
                limit: self.failure_limit,
                backoff_after: self.backoff_after,
            });
        }
        if let Some(address) = client.filter(|_| self.address_failure_limit > 0) {
            keys.push(ThrottleKey {
                key: throttle_key_for_address(address),
                limit: self.address_failure_limit,
                // An address is shared (offices, carrier NAT): no delays, only
                // the lock at its higher limit.
                backoff_after: u32::MAX,
            });
        }
        keys
    }
}

/// How long, in milliseconds, the `failures`-th failure in the window
/// blocks the key: nothing before `backoff_after`, then 2 s doubling with
/// each failure (never above the lockout), and the lockout at the limit.
#[must_use]
pub(crate) fn block_for(failures: i64, key: &ThrottleKey, lockout_ms: i64) -> Option<i64> {
    let limit = i64::from(key.limit);
    let free = i64::from(key.backoff_after);
    if failures >= limit {
        return Some(lockout_ms);
    }
    if failures <= free {
        return None;
    }
    let exponent = u32::try_from((failures - free).min(40)).unwrap_or(40);
    Some(1000_i64.saturating_mul(1_i64 << exponent).min(lockout_ms))
}

/// Whole seconds until `until`, rounded up as DRF rounds `wait`.
#[must_use]
pub(crate) fn wait_seconds(until: i64, now: i64) -> u64 {
    u64::try_from((until - now + 999) / 1000)
        .unwrap_or(1)
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(limit: u32, backoff_after: u32) -> ThrottleKey {
        ThrottleKey {
            key: String::new(),
            limit,
            backoff_after,
        }
    }

    #[test]
    fn delays_grow_then_lock() {
        let k = key(10, 5);
        let blocks: Vec<Option<i64>> = (1..=11).map(|n| block_for(n, &k, 900_000)).collect();
        assert_eq!(
            blocks,
            vec![
                None,
                None,
                None,
                None,
                None,
                Some(2_000),
                Some(4_000),
                Some(8_000),
                Some(16_000),
                Some(900_000),
                Some(900_000),
            ]
        );
    }

    #[test]
    fn delays_never_exceed_the_lockout_and_never_overflow() {
        let k = key(u32::MAX, 0);
        assert_eq!(block_for(3, &k, 5_000), Some(5_000));
        assert_eq!(block_for(i64::MAX - 1, &k, 5_000), Some(5_000));
    }

    #[test]
    fn no_delay_when_backoff_starts_at_the_limit() {
        let k = key(3, 3);
        assert_eq!(block_for(2, &k, 60_000), None);
        assert_eq!(block_for(3, &k, 60_000), Some(60_000));
    }

    #[test]
    fn wait_rounds_up_like_drf() {
        assert_eq!(wait_seconds(10_001, 9_000), 2);
        assert_eq!(wait_seconds(10_000, 9_000), 1);
        assert_eq!(wait_seconds(9_500, 9_000), 1);
    }

    #[test]
    fn username_keys_are_hashes_and_case_sensitive() {
        let a = throttle_key_for_username("alice");
        assert_eq!(a.len(), 2 + 64);
        assert!(a.starts_with("u:"));
        assert!(!a.contains("alice"));
        assert_ne!(a, throttle_key_for_username("Alice"));
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64() {
        let one: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let two: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(throttle_key_for_address(one), throttle_key_for_address(two));
        assert_ne!(
            throttle_key_for_address(one),
            throttle_key_for_address(other)
        );
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(throttle_key_for_address(mapped), "a:192.0.2.1");
    }
}
