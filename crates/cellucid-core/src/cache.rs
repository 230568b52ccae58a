//! Caches shared by the readers and the server: a least-recently-used map
//! bounded by the total memory its values hold (the synthesised AnnData
//! files in `cellucid-core`, the encoded bodies in `cellucid-http`), and the
//! user cache directory on-disk caches default to.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::path::PathBuf;
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

/// The user's cache directory: `$XDG_CACHE_HOME` when it is an absolute
/// path, else `$HOME/.cache`; empty variables count as unset (the choice
/// `cellucid-proxy`'s `CacheDir` makes for the viewer UI cache too, which
/// adds the flag, its own variable and refusals because it may delete what
/// it owns). `None` when neither is set.
pub fn user_cache_dir() -> Option<PathBuf> {
    let var = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    user_cache_dir_in(var("XDG_CACHE_HOME"), var("HOME"))
}

fn user_cache_dir_in(xdg_cache_home: Option<PathBuf>, home: Option<PathBuf>) -> Option<PathBuf> {
    xdg_cache_home
        .filter(|p| p.is_absolute())
        .or_else(|| home.map(|home| home.join(".cache")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_user_cache_dir_is_an_absolute_xdg_cache_home_else_home_dot_cache() {
        let some = |p: &str| Some(PathBuf::from(p));
        assert_eq!(user_cache_dir_in(some("/x"), some("/h")), some("/x"));
        assert_eq!(
            user_cache_dir_in(some("rel"), some("/h")),
            some("/h/.cache")
        );
        assert_eq!(user_cache_dir_in(None, some("/h")), some("/h/.cache"));
        assert_eq!(user_cache_dir_in(some("rel"), None), None);
        assert_eq!(user_cache_dir_in(None, None), None);
    }

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
