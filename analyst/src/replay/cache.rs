//! The replay's bounded memory of rows: two generations of a map. Lookups look in the
//! current generation, then in the previous one (moving what they find to the current);
//! when the current one outgrows its share of the budget it becomes the previous, and
//! the previous is dropped. Rows still used stay in memory, rows a replay has passed
//! (lines whose events are behind it) leave it: an approximate LRU at the cost of two
//! hash lookups, with no list to keep. Dropped rows are in PostgreSQL (the store
//! rotates only after its flushes committed), so a miss reads them back from there.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;

pub struct Generations<K, V> {
    current: HashMap<K, V>,
    previous: HashMap<K, V>,
}

impl<K, V> Default for Generations<K, V> {
    fn default() -> Self {
        Self {
            current: HashMap::new(),
            previous: HashMap::new(),
        }
    }
}

impl<K: Eq + Hash, V> Generations<K, V> {
    /// The entry of `key`, from either generation (now in the current one).
    pub fn get<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        if !self.current.contains_key(key) {
            let (k, v) = self.previous.remove_entry(key)?;
            self.current.insert(k, v);
        }
        self.current.get_mut(key)
    }

    pub fn contains<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        self.current.contains_key(key) || self.previous.contains_key(key)
    }

    pub fn insert(&mut self, key: K, value: V) {
        self.previous.remove(&key);
        self.current.insert(key, value);
    }

    /// Entries held in both generations.
    pub fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }

    pub fn is_empty(&self) -> bool {
        self.current.is_empty() && self.previous.is_empty()
    }

    /// Entries of the current generation.
    pub fn recent(&self) -> usize {
        self.current.len()
    }

    /// The current generation becomes the previous one; returns how many entries were
    /// dropped (the previous generation's).
    pub fn rotate(&mut self) -> usize {
        let dropped = self.previous.len();
        self.previous = std::mem::take(&mut self.current);
        dropped
    }

    /// Every entry, the maps emptied.
    pub fn take_all(&mut self) -> HashMap<K, V> {
        let mut all = std::mem::take(&mut self.previous);
        all.extend(std::mem::take(&mut self.current));
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_found_in_the_previous_generation_survives_the_next_rotation() {
        let mut cache = Generations::default();
        cache.insert("a", 1);
        cache.insert("b", 2);
        assert_eq!(cache.rotate(), 0);
        // Given "a" used after the rotation and "b" not,
        assert_eq!(cache.get("a"), Some(&mut 1));
        // when the generations turn again,
        assert_eq!(cache.rotate(), 1);
        // then "a" is still held and "b" is gone.
        assert_eq!(cache.get("a"), Some(&mut 1));
        assert_eq!(cache.get("b"), None);
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn an_insert_replaces_the_copy_in_the_previous_generation() {
        let mut cache = Generations::default();
        cache.insert("a", 1);
        cache.rotate();
        cache.insert("a", 2);
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.take_all().get("a"), Some(&2));
        assert!(cache.is_empty());
    }
}
