//! Caches shared by the readers and the server: a least-recently-used map
//! bounded by the total memory its values hold (the synthesised AnnData
//! files in `cellucid-core`, the encoded bodies in `cellucid-http`).

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;

use bytes::Bytes;

/// Values by key, each inserted with the bytes it holds (its weight); when
/// the total passes the budget the least recently used go first. A value
/// heavier than the whole budget is not kept.
#[derive(Debug)]
pub struct ByteLru<K, V = Bytes> {
    budget: usize,
    inner: Mutex<Inner<K, V>>,
}

#[derive(Debug)]
struct Inner<K, V> {
    entries: HashMap<K, Entry<V>>,
    total: usize,
    tick: u64,
}

#[derive(Debug)]
struct Entry<V> {
    value: V,
    weight: usize,
    used: u64,
}

impl<K: Hash + Eq + Clone, V: Clone> ByteLru<K, V> {
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

    /// The value for `key`, marking it used.
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut inner = self.inner.lock().ok()?;
        inner.tick += 1;
        let tick = inner.tick;
        let entry = inner.entries.get_mut(key)?;
        entry.used = tick;
        Some(entry.value.clone())
    }

    /// Keeps `value`, which holds `weight` bytes, under `key`, evicting the
    /// least recently used.
    pub fn insert(&self, key: K, value: V, weight: usize) {
        if weight > self.budget {
            return;
        }
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        inner.tick += 1;
        let used = inner.tick;
        if let Some(old) = inner.entries.insert(
            key,
            Entry {
                value,
                weight,
                used,
            },
        ) {
            inner.total -= old.weight;
        }
        inner.total += weight;
        while inner.total > self.budget {
            let Some(oldest) = inner
                .entries
                .iter()
                .min_by_key(|(_, e)| e.used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(gone) = inner.entries.remove(&oldest) {
                inner.total -= gone.weight;
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
        let lru: ByteLru<i32> = ByteLru::new(10);
        let b = |n: usize| Bytes::from(vec![0; n]);
        lru.insert(1, b(4), 4);
        lru.insert(2, b(4), 4);
        assert!(lru.get(&1).is_some());
        lru.insert(3, b(4), 4);
        assert!(lru.get(&2).is_none(), "2 was least recently used");
        assert!(lru.get(&1).is_some() && lru.get(&3).is_some());
        assert_eq!(lru.total(), 8);
        lru.insert(4, b(11), 11);
        assert!(lru.get(&4).is_none(), "larger than the budget");
    }
}
