//! A least-recently-used cache of byte buffers, bounded by their total size.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;

use bytes::Bytes;

/// Buffers by key; when the total passes the budget the least recently
/// used go first. A buffer larger than the whole budget is not kept.
#[derive(Debug)]
pub struct ByteLru<K> {
    budget: usize,
    inner: Mutex<Inner<K>>,
}

#[derive(Debug)]
struct Inner<K> {
    entries: HashMap<K, (Bytes, u64)>,
    total: usize,
    tick: u64,
}

impl<K: Hash + Eq + Clone> ByteLru<K> {
    /// An empty cache holding at most `budget` bytes.
    pub fn new(budget: usize) -> Self {
        Self {
            budget,
            inner: Mutex::new(Inner {
                entries: HashMap::new(),
                total: 0,
                tick: 0,
            }),
        }
    }

    /// The buffer for `key`, marking it used.
    pub fn get(&self, key: &K) -> Option<Bytes> {
        let mut inner = self.inner.lock().ok()?;
        inner.tick += 1;
        let tick = inner.tick;
        let entry = inner.entries.get_mut(key)?;
        entry.1 = tick;
        Some(entry.0.clone())
    }

    /// Keeps `bytes` under `key`, evicting the least recently used.
    pub fn insert(&self, key: K, bytes: Bytes) {
        if bytes.len() > self.budget {
            return;
        }
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        inner.tick += 1;
        let tick = inner.tick;
        let len = bytes.len();
        if let Some((old, _)) = inner.entries.insert(key, (bytes, tick)) {
            inner.total -= old.len();
        }
        inner.total += len;
        while inner.total > self.budget {
            let Some(oldest) = inner
                .entries
                .iter()
                .min_by_key(|(_, (_, t))| *t)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some((gone, _)) = inner.entries.remove(&oldest) {
                inner.total -= gone.len();
            }
        }
    }

    /// Bytes held.
    pub fn total(&self) -> usize {
        self.inner.lock().map(|i| i.total).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_least_recently_used_within_budget() {
        let lru = ByteLru::new(10);
        lru.insert(1, Bytes::from(vec![0; 4]));
        lru.insert(2, Bytes::from(vec![0; 4]));
        assert!(lru.get(&1).is_some());
        lru.insert(3, Bytes::from(vec![0; 4]));
        assert!(lru.get(&2).is_none(), "2 was least recently used");
        assert!(lru.get(&1).is_some() && lru.get(&3).is_some());
        assert_eq!(lru.total(), 8);
        lru.insert(4, Bytes::from(vec![0; 11]));
        assert!(lru.get(&4).is_none(), "larger than the budget");
    }
}
