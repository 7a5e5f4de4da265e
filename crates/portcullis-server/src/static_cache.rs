//! The small-file cache behind a `[[static]]` mount: what nginx gets from
//! its `open_file_cache` and the page cache, without a system call on a hit.
//!
//! A hit costs one hash lookup under a read lock, a clock read and a
//! reference-count increment: no `lstat`, `open`, `read` or header
//! formatting. An entry holds the answer to one negotiation: the URL path
//! under the prefix, exactly as sent, and which of `br` and `gzip` the
//! client takes, mapped to the representation that was found (the file or
//! one of its precompressed variants), its body and its precomputed
//! validators.
//!
//! Invariants:
//! - **Only what the full lookup found is cached.** An entry is made by the
//!   mount's ordinary resolution (no `..`, no encoded slash, no symlink out
//!   of the root), so a URL path reaches the cache only after passing it.
//!   Nothing negative (404, directory, redirect, error) is cached.
//! - **Revalidated at most [`REVALIDATE`] after its last check.** A stale
//!   entry sends the request through the full lookup again: a file changed,
//!   replaced, deleted, a new `.br` variant, a symlink pointed elsewhere —
//!   all are seen within that time, as nginx's `open_file_cache_valid`
//!   does. When the lookup finds the same file (device, inode, size,
//!   modification and change times), its bytes are kept and not read again.
//! - **Bounded.** Files above [`MAX_FILE`] are never cached; the entries'
//!   bytes (body, key and a fixed overhead each) stay under [`MAX_TOTAL`].
//!   A full cache is emptied and starts over: no LRU bookkeeping on the hit
//!   path, and each eviction is paid for by the insertions that filled it.

use std::collections::HashMap;
use std::fs::Metadata;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;

use crate::representation::Representation;

/// How long an entry is trusted without looking at the file system again.
pub(crate) const REVALIDATE: Duration = Duration::from_secs(1);

/// Larger files are read (or streamed) on every request, as before: the
/// page cache holds them, and a copy here would cost memory for little.
pub(crate) const MAX_FILE: u64 = 64 * 1024;

/// The most one mount's cache holds, overheads included: the small assets
/// of a typical front end, well within the idle-memory budget.
const MAX_TOTAL: usize = 8 * 1024 * 1024;

/// What an entry costs beyond its body and key (the entry, its header
/// values, the map's slot), rounded up.
const ENTRY_OVERHEAD: usize = 512;

/// Which precompressed variants a request takes, as an index: bit 0 `br`,
/// bit 1 `gzip`.
pub(crate) fn negotiation(br: bool, gzip: bool) -> usize {
    usize::from(br) | (usize::from(gzip) << 1)
}

/// One cached answer.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) representation: Representation,
    pub(crate) body: Bytes,
    identity: Identity,
    checked: Instant,
}

impl Entry {
    /// Whether the entry may be served without looking at the file system.
    pub(crate) fn is_fresh(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.checked) < REVALIDATE
    }

    /// Whether `meta` describes the file this entry was read from.
    pub(crate) fn is_same_file(&self, meta: &Metadata) -> bool {
        self.identity == Identity::of(meta)
    }

    fn charge(&self, key: &str) -> usize {
        self.body.len() + key.len() + ENTRY_OVERHEAD
    }
}

/// What tells a file rewritten or replaced from the one that was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Identity {
    len: u64,
    modified: Option<SystemTime>,
    #[cfg(unix)]
    unix: (u64, u64, i64, i64),
}

impl Identity {
    fn of(meta: &Metadata) -> Self {
        #[cfg(unix)]
        use std::os::unix::fs::MetadataExt as _;
        Self {
            len: meta.len(),
            modified: meta.modified().ok(),
            // The change time moves on any write, even one that restores
            // the modification time (`touch -d`, `rsync -t`).
            #[cfg(unix)]
            unix: (meta.dev(), meta.ino(), meta.ctime(), meta.ctime_nsec()),
        }
    }
}

/// One mount's cache. Shared by the mount's clones.
#[derive(Default)]
pub(crate) struct Cache {
    inner: RwLock<Map>,
}

#[derive(Default)]
struct Map {
    /// URL path under the prefix → one slot per [`negotiation`].
    entries: HashMap<Box<str>, [Option<Arc<Entry>>; 4]>,
    /// The sum of every entry's [`Entry::charge`].
    bytes: usize,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let map = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("Cache")
            .field("paths", &map.entries.len())
            .field("bytes", &map.bytes)
            .finish()
    }
}

impl Cache {
    /// The entry for this path and negotiation, fresh or not.
    pub(crate) fn get(&self, path: &str, negotiation: usize) -> Option<Arc<Entry>> {
        let map = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        map.entries.get(path)?.get(negotiation)?.clone()
    }

    /// Cache what the full lookup found, or mark `previous` (the entry it
    /// started from, for the same file) checked again without copying its
    /// bytes. Returns the entry to serve.
    pub(crate) fn store(
        &self,
        path: &str,
        negotiation: usize,
        representation: Representation,
        body: Bytes,
        meta: &Metadata,
    ) -> Arc<Entry> {
        let entry = Arc::new(Entry {
            representation,
            body,
            identity: Identity::of(meta),
            checked: Instant::now(),
        });
        let charge = entry.charge(path);
        if charge > MAX_TOTAL {
            return entry;
        }
        let mut map = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        let released = map
            .entries
            .get(path)
            .and_then(|slots| slots.get(negotiation)?.as_ref())
            .map_or(0, |old| old.charge(path));
        map.bytes -= released;
        if map.bytes + charge > MAX_TOTAL {
            map.entries.clear();
            map.bytes = 0;
        }
        let slots = map.entries.entry(Box::from(path)).or_default();
        if let Some(slot) = slots.get_mut(negotiation) {
            *slot = Some(Arc::clone(&entry));
            map.bytes += charge;
        }
        entry
    }

    /// `previous` checked again now: the same file, the same bytes.
    pub(crate) fn renew(&self, path: &str, negotiation: usize, previous: &Entry) -> Arc<Entry> {
        let entry = Arc::new(Entry {
            representation: previous.representation.clone(),
            body: previous.body.clone(),
            identity: previous.identity,
            checked: Instant::now(),
        });
        let mut map = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        // Replaced only if still there: a clear in between has dropped it,
        // and its charge with it.
        if let Some(slot) = map
            .entries
            .get_mut(path)
            .and_then(|slots| slots.get_mut(negotiation))
            && slot.is_some()
        {
            *slot = Some(Arc::clone(&entry));
        }
        entry
    }

    /// Forget the entry (the lookup no longer finds a cacheable file).
    pub(crate) fn forget(&self, path: &str, negotiation: usize) {
        let mut map = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        let Some(slots) = map.entries.get_mut(path) else {
            return;
        };
        let released = slots
            .get_mut(negotiation)
            .and_then(Option::take)
            .map_or(0, |old| old.charge(path));
        if slots.iter().all(Option::is_none) {
            map.entries.remove(path);
        }
        map.bytes -= released;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn representation() -> Representation {
        Representation {
            etag: HeaderValue::from_static("\"1\""),
            modified: None,
            last_modified: None,
            content_type: HeaderValue::from_static("text/plain"),
            encoding: "identity",
            len: 0,
            content_length: HeaderValue::from(0),
        }
    }

    #[test]
    fn the_total_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "x").unwrap();
        let meta = std::fs::metadata(&file).unwrap();
        let cache = Cache::default();
        let body = Bytes::from(vec![0; 60 * 1024]);
        for i in 0..1000 {
            cache.store(&format!("f{i}"), 0, representation(), body.clone(), &meta);
            let map = cache.inner.read().unwrap();
            assert!(map.bytes <= MAX_TOTAL, "{} after {i}", map.bytes);
            let counted: usize = map
                .entries
                .iter()
                .flat_map(|(key, slots)| slots.iter().flatten().map(|e| e.charge(key)))
                .sum();
            assert_eq!(counted, map.bytes);
        }
        cache.store("f999", 0, representation(), Bytes::new(), &meta);
        cache.forget("f999", 0);
        cache.forget("f999", 0);
        let map = cache.inner.read().unwrap();
        assert!(!map.entries.contains_key("f999"));
        let counted: usize = map
            .entries
            .iter()
            .flat_map(|(key, slots)| slots.iter().flatten().map(|e| e.charge(key)))
            .sum();
        assert_eq!(counted, map.bytes);
    }
}
