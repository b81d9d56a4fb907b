//! L1: the in-process view cache, one per thread (each HTTP worker has its own).
//!
//! Why per thread: every HTTP worker serves its connections on its own core
//! ([`service_kit::server`]). A cache shared by the workers writes shared memory on every
//! hit (the entry's access record, the reference counts of the bytes handed out), so on
//! a hot key those cache lines moved between the two cores on every request. Here a hit
//! touches only its own thread's memory, and reads two generation counters that change
//! only when the projection does.
//!
//! Staying correct when the projection changes: invalidating a key bumps the generation
//! of the key's slot, which makes that key's entry stale in every thread at once (and,
//! harmlessly, the entries of the other keys hashed to the same slot). An entry is
//! served only while its slot's generation and the whole cache's generation are what
//! they were *before* its value was read from Redis ([`L1::stamp`]), so a reader that
//! raced an invalidation stores an entry that is already stale: a late reader never
//! reinstates an old value.

use std::cell::RefCell;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use quick_cache::unsync::Cache;
use thread_local::ThreadLocal;

use crate::views::Doc;

/// Generation slots keys hash to: more slots, fewer innocent keys dropped by another
/// key's invalidation (each slot is 8 bytes).
const SLOTS: usize = 4096;

#[derive(Clone)]
pub struct L1 {
    inner: Arc<Inner>,
}

struct Inner {
    local: ThreadLocal<RefCell<Cache<String, Entry>>>,
    slots: Box<[AtomicU64]>,
    whole: AtomicU64,
    live: AtomicBool,
    hasher: foldhash::fast::RandomState,
    capacity: usize,
    ttl: Duration,
}

/// The generations an entry was read under; it is served only while they hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    slot: u64,
    whole: u64,
}

struct Entry {
    doc: Doc,
    stamp: Stamp,
    expires: Instant,
}

impl L1 {
    /// Each thread keeps up to `capacity` entries (S3-FIFO), each for at most `ttl`.
    /// Starts off: nothing is served until [`L1::set_live`].
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                local: ThreadLocal::new(),
                slots: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
                whole: AtomicU64::new(0),
                live: AtomicBool::new(false),
                hasher: foldhash::fast::RandomState::default(),
                capacity: capacity.max(1),
                ttl,
            }),
        }
    }

    pub fn is_live(&self) -> bool {
        self.inner.live.load(Ordering::SeqCst)
    }

    /// On (invalidations are followed) or off; either way every entry is dropped, since
    /// invalidations may have been missed in between.
    pub fn set_live(&self, live: bool) {
        self.clear();
        self.inner.live.store(live, Ordering::SeqCst);
    }

    /// What an entry for `key` must carry to be served; take it before reading the value.
    pub fn stamp(&self, key: &str) -> Stamp {
        Stamp {
            slot: self.slot(key).load(Ordering::SeqCst),
            whole: self.inner.whole.load(Ordering::SeqCst),
        }
    }

    /// This thread's entry for `key`, if L1 is live and the entry is current.
    pub fn get(&self, key: &str) -> Option<Doc> {
        if !self.is_live() {
            return None;
        }
        let stamp = self.stamp(key);
        let mut cache = self.inner.local.get()?.borrow_mut();
        match cache.get(key) {
            Some(entry) if entry.stamp == stamp && Instant::now() < entry.expires => {
                Some(entry.doc.clone())
            }
            Some(_) => {
                cache.remove(key);
                None
            }
            None => None,
        }
    }

    /// Keeps `doc` for `key` in this thread, unless `stamp` (taken before `doc` was read)
    /// is already out of date or L1 is off.
    pub fn insert(&self, key: String, doc: Doc, stamp: Stamp) {
        if !self.is_live() || self.stamp(&key) != stamp {
            return;
        }
        let entry = Entry {
            doc,
            stamp,
            expires: Instant::now() + self.inner.ttl,
        };
        self.inner
            .local
            .get_or(|| RefCell::new(Cache::new(self.inner.capacity)))
            .borrow_mut()
            .insert(key, entry);
    }

    /// Makes `key`'s entries stale in every thread.
    pub fn invalidate(&self, key: &str) {
        self.slot(key).fetch_add(1, Ordering::SeqCst);
    }

    /// Makes every entry stale in every thread.
    pub fn clear(&self) {
        self.inner.whole.fetch_add(1, Ordering::SeqCst);
    }

    fn slot(&self, key: &str) -> &AtomicU64 {
        let hash = self.inner.hasher.hash_one(key);
        &self.inner.slots[(hash as usize) % SLOTS]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn doc(text: &'static str) -> Doc {
        Doc::new(Bytes::from_static(text.as_bytes()))
    }

    fn live(capacity: usize) -> L1 {
        let l1 = L1::new(capacity, Duration::from_secs(60));
        l1.set_live(true);
        l1
    }

    #[test]
    fn an_entry_read_under_a_current_stamp_is_served() {
        let l1 = live(10);
        let stamp = l1.stamp("bill:a");
        l1.insert("bill:a".into(), doc("a1"), stamp);
        assert_eq!(l1.get("bill:a").unwrap().bytes, "a1");
        assert!(l1.get("bill:b").is_none());
    }

    #[test]
    fn an_invalidated_key_is_not_served_and_a_key_of_another_slot_still_is() {
        let l1 = live(10);
        // A second key that hashes to another slot than the first
        let other = (0..)
            .map(|i| format!("bill:{i}"))
            .find(|k| !std::ptr::eq(l1.slot(k), l1.slot("bill:a")))
            .unwrap();
        for key in ["bill:a", other.as_str()] {
            let stamp = l1.stamp(key);
            l1.insert(key.into(), doc("x"), stamp);
        }
        l1.invalidate("bill:a");
        assert!(l1.get("bill:a").is_none());
        assert!(l1.get(&other).is_some());
    }

    #[test]
    fn a_value_read_while_its_key_was_invalidated_is_never_kept() {
        // Given a reader that took its stamp, then an invalidation before it stored
        let l1 = live(10);
        let stamp = l1.stamp("bill:a");
        l1.invalidate("bill:a");
        // When it stores what it read (possibly the old value)
        l1.insert("bill:a".into(), doc("old"), stamp);
        // Then nothing is served, and the next reader's value is
        assert!(l1.get("bill:a").is_none());
        let stamp = l1.stamp("bill:a");
        l1.insert("bill:a".into(), doc("new"), stamp);
        assert_eq!(l1.get("bill:a").unwrap().bytes, "new");
    }

    #[test]
    fn clearing_or_turning_off_drops_every_entry() {
        let l1 = live(10);
        let stamp = l1.stamp("bill:a");
        l1.insert("bill:a".into(), doc("a"), stamp);
        l1.clear();
        assert!(l1.get("bill:a").is_none());

        let stamp = l1.stamp("bill:a");
        l1.insert("bill:a".into(), doc("a"), stamp);
        l1.set_live(false);
        assert!(l1.get("bill:a").is_none());
        let stamp = l1.stamp("bill:a");
        l1.insert("bill:a".into(), doc("a"), stamp);
        l1.set_live(true);
        assert!(l1.get("bill:a").is_none(), "kept while off");
    }

    #[test]
    fn an_entry_past_its_ttl_is_not_served() {
        let l1 = L1::new(10, Duration::ZERO);
        l1.set_live(true);
        let stamp = l1.stamp("bill:a");
        l1.insert("bill:a".into(), doc("a"), stamp);
        assert!(l1.get("bill:a").is_none());
    }

    #[test]
    fn each_thread_keeps_its_own_entries_and_an_invalidation_reaches_all() {
        let l1 = live(10);
        let stamp = l1.stamp("bill:a");
        l1.insert("bill:a".into(), doc("main"), stamp);
        let other = l1.clone();
        std::thread::spawn(move || {
            // Another thread has not read it yet: its own cache is empty
            assert!(other.get("bill:a").is_none());
            let stamp = other.stamp("bill:a");
            other.insert("bill:a".into(), doc("other"), stamp);
            assert_eq!(other.get("bill:a").unwrap().bytes, "other");
            other.invalidate("bill:a");
            assert!(other.get("bill:a").is_none());
        })
        .join()
        .unwrap();
        assert!(l1.get("bill:a").is_none(), "invalidated in another thread");
    }

    #[test]
    fn a_thread_keeps_about_its_capacity() {
        let l1 = live(50);
        for i in 0..1_000 {
            let key = format!("bill:{i}");
            let stamp = l1.stamp(&key);
            l1.insert(key, doc("x"), stamp);
        }
        let kept = (0..1_000)
            .filter(|i| l1.get(&format!("bill:{i}")).is_some())
            .count();
        assert!((1..=60).contains(&kept), "kept {kept}");
    }
}
