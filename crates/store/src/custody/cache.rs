use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A bounded in-memory map whose entries expire after a TTL. When full, expired entries are
/// dropped first, then the oldest. A poisoned lock reads as a miss and drops writes: a cache
/// must never take the request down with it.
#[derive(Debug)]
pub(crate) struct TtlCache<K, V> {
    map: Mutex<HashMap<K, (V, Instant)>>,
    ttl: Duration,
    max_entries: usize,
}

impl<K: Copy + Eq + std::hash::Hash, V: Clone> TtlCache<K, V> {
    pub(crate) fn new(ttl: Duration, max_entries: usize) -> Self {
        TtlCache {
            map: Mutex::new(HashMap::new()),
            ttl,
            max_entries,
        }
    }

    pub(crate) fn get(&self, key: &K) -> Option<V> {
        let mut map = self.map.lock().ok()?;
        match map.get(key) {
            Some((value, at)) if at.elapsed() < self.ttl => Some(value.clone()),
            Some(_) => {
                map.remove(key);
                None
            }
            None => None,
        }
    }

    pub(crate) fn insert(&self, key: K, value: V) {
        let Ok(mut map) = self.map.lock() else {
            return;
        };
        if map.len() >= self.max_entries {
            let ttl = self.ttl;
            map.retain(|_, (_, at)| at.elapsed() < ttl);
            if map.len() >= self.max_entries {
                // Still full of live entries: evict the oldest.
                if let Some(oldest) = map.iter().min_by_key(|(_, (_, at))| *at).map(|(k, _)| *k) {
                    map.remove(&oldest);
                }
            }
        }
        map.insert(key, (value, Instant::now()));
    }

    pub(crate) fn remove(&self, key: &K) {
        if let Ok(mut map) = self.map.lock() {
            map.remove(key);
        }
    }

    pub(crate) fn retain(&self, mut keep: impl FnMut(&K) -> bool) {
        if let Ok(mut map) = self.map.lock() {
            map.retain(|k, _| keep(k));
        }
    }
}
