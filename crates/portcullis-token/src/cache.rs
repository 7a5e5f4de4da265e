//! The verified-token cache (`TOKEN_CACHE_SIZE`), as Envoy's `jwt_authn`
//! keeps one: a token whose signature was checked is recognised by its
//! bytes the next time, and its claims are reused instead of checking the
//! signature and parsing the claims again. It replaces a signature check
//! per request (an Ed25519 verification costs some 45 µs, an HMAC 1 µs;
//! BENCHMARKS.md) with a keyed hash and a comparison.
//!
//! Invariants (docs/architecture.md, "Fast paths"):
//!
//! * **Only what decoding proved is reused, and only while it still holds.**
//!   A hit is taken only when the token's `exp`, `iat` and `nbf` still pass
//!   at this moment with the same clock and leeway as
//!   [`crate::TokenEngine::decode`] (so never past `exp`), and when the key
//!   that would be chosen for the token now is the very key that verified
//!   it (a retired, removed or replaced key refuses the token on the next
//!   request: the key is compared by identity, see `engine.rs`). Anything
//!   else is a miss and goes through the full decode, which gives the exact
//!   answer. Everything decided from the account and the store (the user,
//!   `CHECK_USER_IS_ACTIVE`, `CHECK_REVOKE_TOKEN`, ended sessions, the
//!   blacklist) is checked after decoding on every request, hit or miss.
//! * **Nothing is learnt from timing without the token.** Entries are found
//!   by a keyed hash of the token's bytes (SipHash-1-3 under a random
//!   128-bit key drawn once per process: std's `RandomState`, the hash-flood
//!   defence of std's `HashMap`), so which entry a token would meet cannot
//!   be chosen or predicted; the entry's bytes are then compared with the
//!   token's in constant time (`subtle`), so a near miss (a cached token
//!   with a guessed signature) takes as long as any other. A forged token
//!   is always a miss and costs what it cost without the cache, plus the
//!   hash and the lookup.
//! * **Bounded memory**: at most `TOKEN_CACHE_SIZE` entries (each the
//!   token's bytes, at most `MAX_TOKEN_BYTES`, and its claims), evicted by
//!   `quick_cache`'s S3-FIFO policy; `0` turns the cache off.
//!
//! `quick_cache` rather than `moka`: a hit is one read lock on one of a few
//! shards and a reference-bit update, with no background thread or
//! read log to replay (moka records every read in a channel drained by
//! maintenance); on the two shared cores the per-request cost matters more
//! than moka's time-to-live support, which this cache does not need since
//! `exp` is checked on every hit anyway.

use std::sync::Arc;

use subtle::ConstantTimeEq as _;

use crate::Token;

/// A token verified earlier, with what its reuse depends on.
#[derive(Debug)]
pub(crate) struct Verified<K> {
    /// The token, byte for byte (set when cached: decoding alone never
    /// copies the token).
    raw: Box<[u8]>,
    /// Its claims, as decoding read them.
    pub(crate) token: Token,
    /// The `kid` its header named, if any (the key is chosen again from it).
    pub(crate) kid: Option<Box<str>>,
    /// The key that verified the signature.
    pub(crate) key: K,
    /// `exp`; a token without one is never reused (simplejwt refuses it).
    pub(crate) exp: Option<i64>,
    /// The later of `iat` and `nbf`, when either is present.
    pub(crate) not_before: Option<i64>,
}

impl<K> Verified<K> {
    /// What decoding a token established.
    pub(crate) fn new(
        token: Token,
        kid: Option<String>,
        key: K,
        exp: Option<i64>,
        not_before: Option<i64>,
    ) -> Self {
        Self {
            raw: Box::default(),
            token,
            kid: kid.map(String::into_boxed_str),
            key,
            exp,
            not_before,
        }
    }

    /// Whether the time claims pass at `now`, as `decode` checks them:
    /// `iat`/`nbf` at most `leeway` in the future, `exp` after
    /// `now - leeway`.
    pub(crate) fn in_time(&self, now: i64, leeway: i64) -> bool {
        self.not_before
            .is_none_or(|at| at <= now.saturating_add(leeway))
            && self.exp.is_some_and(|exp| exp > now.saturating_sub(leeway))
    }
}

/// The cache: at most `capacity` verified tokens, found by a keyed hash
/// of their bytes and confirmed by comparing them in constant time.
pub(crate) struct TokenCache<K, S = std::hash::RandomState> {
    entries: quick_cache::sync::Cache<u64, Arc<Verified<K>>>,
    /// The keyed hash of a token's bytes.
    keyed: S,
}

impl<K> std::fmt::Debug for TokenCache<K> {
    // Never print tokens.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("len", &self.entries.len())
            .finish_non_exhaustive()
    }
}

impl<K> TokenCache<K> {
    /// A cache of at most `capacity` entries (at least one) under a fresh
    /// random hash key; `None` if `quick_cache` refuses the size.
    pub(crate) fn new(capacity: usize) -> Option<Self> {
        Self::with_hasher(capacity, std::hash::RandomState::new())
    }
}

impl<K, S: std::hash::BuildHasher> TokenCache<K, S> {
    /// A cache hashing tokens with `keyed` (tests choose a colliding one).
    pub(crate) fn with_hasher(capacity: usize, keyed: S) -> Option<Self> {
        let capacity = capacity.max(1);
        // quick_cache gives each shard the total divided by the shard count,
        // rounded up, so the sum may pass the total; shards of whole and
        // equal size (32 entries at least, as quick_cache prefers) keep the
        // sum within `capacity`.
        let shards = (capacity / 32).clamp(1, 16);
        let shards = if shards.is_power_of_two() {
            shards
        } else {
            shards.next_power_of_two() / 2
        };
        let per_shard = capacity / shards;
        let entries = quick_cache::sync::Cache::with_options(
            quick_cache::OptionsBuilder::new()
                .shards(shards)
                .estimated_items_capacity(per_shard * shards)
                .weight_capacity(u64::try_from(per_shard * shards).ok()?)
                .build()
                .ok()?,
            quick_cache::UnitWeighter,
            quick_cache::DefaultHashBuilder::default(),
            quick_cache::sync::DefaultLifecycle::default(),
        );
        Some(Self { entries, keyed })
    }

    /// The entry for exactly these bytes, if one is cached.
    pub(crate) fn get(&self, raw: &[u8]) -> Option<Arc<Verified<K>>> {
        let entry = self.entries.get(&self.keyed.hash_one(raw))?;
        // Lengths are compared first (`subtle` does so too); the bytes of
        // equal-length tokens in constant time.
        bool::from(entry.raw.as_ref().ct_eq(raw)).then_some(entry)
    }

    /// Remember what decoding `raw` established (replacing any entry under
    /// its hash).
    pub(crate) fn insert(&self, raw: &[u8], mut entry: Verified<K>) {
        entry.raw = raw.into();
        self.entries
            .insert(self.keyed.hash_one(raw), Arc::new(entry));
    }

    /// Forget the entry for these bytes (it no longer holds).
    pub(crate) fn remove(&self, raw: &[u8]) {
        self.entries.remove(&self.keyed.hash_one(raw));
    }

    /// How many tokens are cached.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The most tokens it holds.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        usize::try_from(self.entries.capacity()).unwrap_or(usize::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Claims;

    fn entry(exp: i64) -> Verified<()> {
        Verified::new(Token::from_claims(Claims::new()), None, (), Some(exp), None)
    }

    /// A client sending a million distinct valid tokens: the cache never
    /// holds more than its bound, whatever the bound.
    #[test]
    fn a_million_tokens_stay_within_the_bound() {
        for (bound, tokens) in [
            (3, 1_000_000),
            (10_000, 1_000_000),
            (1, 10_000),
            (31, 10_000),
            (33, 10_000),
            (100, 10_000),
            (1000, 10_000),
        ] {
            let cache = TokenCache::<()>::new(bound).unwrap();
            assert!(cache.capacity() <= bound, "{bound}: {}", cache.capacity());
            for i in 0..tokens {
                let raw = format!("eyJhbGciOiJIUzI1NiJ9.{i}.signature");
                cache.insert(raw.as_bytes(), entry(1));
                if i % 1000 == 0 {
                    assert!(cache.len() <= bound, "{bound}: {} after {i}", cache.len());
                }
            }
            assert!(cache.len() <= bound, "{bound}: {}", cache.len());
            assert!(cache.len() > 0);
        }
    }

    /// Under a hash that sends every token to the same entry, a token is
    /// still only ever answered with its own entry: the bytes decide.
    #[test]
    fn colliding_tokens_are_told_apart_by_their_bytes() {
        #[derive(Clone)]
        struct Collide;
        impl std::hash::BuildHasher for Collide {
            type Hasher = Zero;
            fn build_hasher(&self) -> Zero {
                Zero
            }
        }
        struct Zero;
        impl std::hash::Hasher for Zero {
            fn finish(&self) -> u64 {
                0
            }
            fn write(&mut self, _: &[u8]) {}
        }
        let cache = TokenCache::<(), _>::with_hasher(10, Collide).unwrap();
        cache.insert(b"a.b.c", entry(1));
        assert_eq!(cache.get(b"a.b.c").map(|e| e.exp), Some(Some(1)));
        assert!(cache.get(b"a.b.d").is_none(), "same length, other bytes");
        assert!(cache.get(b"a.b.cc").is_none(), "a longer token");
        assert!(cache.get(b"a.b.").is_none(), "a prefix");
        cache.insert(b"a.b.d", entry(2));
        assert!(cache.get(b"a.b.c").is_none(), "replaced");
        assert_eq!(cache.get(b"a.b.d").map(|e| e.exp), Some(Some(2)));
        cache.remove(b"a.b.d");
        assert!(cache.get(b"a.b.d").is_none());
    }

    /// The time rules of `decode`, at their boundaries.
    #[test]
    fn time_claims_are_checked_as_decode_checks_them() {
        let mut e = entry(100);
        assert!(e.in_time(99, 0));
        assert!(!e.in_time(100, 0), "exp <= now is expired");
        assert!(e.in_time(109, 10));
        assert!(!e.in_time(110, 10));
        e.not_before = Some(50);
        assert!(e.in_time(50, 0));
        assert!(!e.in_time(49, 0), "the clock went back before iat");
        assert!(e.in_time(40, 10));
        assert!(!e.in_time(39, 10));
        e.exp = Some(i64::MIN);
        assert!(!e.in_time(i64::MIN, 5), "saturating as decode does");
        e.exp = None;
        assert!(!e.in_time(60, 0), "no exp, never reused");
    }
}
