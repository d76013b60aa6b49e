//! A small least-recently-used map for the monitors' caches (loaded references, scored
//! references). Each entry can be hundreds of MiB (a 1M-row reference is about 200 MiB), so the
//! cache holds a handful, set by `[monitor] reference_cache`; with that few entries, finding the
//! oldest by a scan is cheaper than keeping an order list, and no dependency is needed.

use std::collections::HashMap;
use std::hash::Hash;

pub(crate) struct Lru<K, V> {
    capacity: usize,
    tick: u64,
    entries: HashMap<K, (V, u64)>,
}

impl<K: Eq + Hash + Clone, V: Clone> Lru<K, V> {
    /// At least one entry is kept, whatever `capacity` says.
    pub fn new(capacity: usize) -> Self {
        Lru {
            capacity: capacity.max(1),
            tick: 0,
            entries: HashMap::new(),
        }
    }

    /// The value for `key`, marked as just used.
    pub fn get(&mut self, key: &K) -> Option<V> {
        self.tick += 1;
        let tick = self.tick;
        self.entries.get_mut(key).map(|(value, used)| {
            *used = tick;
            value.clone()
        })
    }

    /// Keeps `value`, dropping the least recently used entries beyond the capacity. The dropped
    /// values are returned, so that callers free them outside their lock.
    pub fn insert(&mut self, key: K, value: V) -> Vec<V> {
        self.tick += 1;
        self.entries.insert(key, (value, self.tick));
        let mut dropped = Vec::new();
        while self.entries.len() > self.capacity {
            let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some((value, _)) = self.entries.remove(&oldest) {
                dropped.push(value);
            }
        }
        dropped
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_most_recently_used() {
        let mut lru = Lru::new(2);
        assert!(lru.insert("a", 1).is_empty());
        assert!(lru.insert("b", 2).is_empty());
        assert_eq!(lru.get(&"a"), Some(1));
        assert_eq!(lru.insert("c", 3), [2], "b was the least recently used");
        assert_eq!(lru.get(&"b"), None);
        assert_eq!((lru.get(&"a"), lru.get(&"c")), (Some(1), Some(3)));
        assert_eq!(lru.len(), 2);
        assert_eq!(
            lru.insert("a", 10),
            Vec::<i32>::new(),
            "replacing a key drops nothing"
        );
        assert_eq!(lru.get(&"a"), Some(10));
    }

    #[test]
    fn holds_at_least_one() {
        let mut lru = Lru::new(0);
        lru.insert(1, "x");
        assert_eq!(lru.get(&1), Some("x"));
        lru.insert(2, "y");
        assert_eq!((lru.get(&1), lru.len()), (None, 1));
    }
}
