//! The decrypted block cache: MEGA chunks of plaintext by `(node handle, chunk index)`, bounded
//! in bytes, least recently used out first. Blocks are zero-copy slices of the fetched pieces
//! (up to 4 MiB), so a piece's buffer stays allocated while any of its chunks is cached; with
//! sequential reads a piece's chunks age together, but scattered eviction can keep more than
//! the bound alive. A new upload always gets a new node handle, so a
//! key names immutable content: a stale or wrongly keyed block cannot be served.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use bytes::Bytes;

use crate::tree::NodeHandle;

type Key = (NodeHandle, u64);

#[derive(Default)]
struct Inner {
    map: HashMap<Key, (Bytes, u64)>,
    lru: BTreeMap<u64, Key>,
    tick: u64,
    bytes: u64,
}

/// A byte-bounded LRU of decrypted chunks.
pub struct BlockCache {
    inner: Mutex<Inner>,
    capacity: u64,
}

impl BlockCache {
    pub fn new(capacity: u64) -> Self {
        BlockCache {
            inner: Mutex::new(Inner::default()),
            capacity,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, h: &NodeHandle, idx: u64) -> Option<Bytes> {
        let mut g = self.lock();
        let inner = &mut *g;
        let key = (h.clone(), idx);
        let (data, tick) = inner.map.get_mut(&key)?;
        inner.lru.remove(tick);
        inner.tick += 1;
        *tick = inner.tick;
        inner.lru.insert(inner.tick, key);
        Some(data.clone())
    }

    pub fn insert(&self, h: &NodeHandle, idx: u64, data: Bytes) {
        let mut g = self.lock();
        let inner = &mut *g;
        let key = (h.clone(), idx);
        if let Some((old, tick)) = inner.map.remove(&key) {
            inner.lru.remove(&tick);
            inner.bytes -= old.len() as u64;
        }
        inner.tick += 1;
        inner.bytes += data.len() as u64;
        inner.lru.insert(inner.tick, key.clone());
        inner.map.insert(key, (data, inner.tick));
        while inner.bytes > self.capacity {
            let Some((_, k)) = inner.lru.pop_first() else {
                break;
            };
            if let Some((d, _)) = inner.map.remove(&k) {
                inner.bytes -= d.len() as u64;
            }
        }
    }

    /// Drops every block of a file (after a MAC failure, or when it was replaced).
    pub fn purge(&self, h: &NodeHandle) {
        let mut g = self.lock();
        let inner = &mut *g;
        let keys: Vec<Key> = inner
            .map
            .keys()
            .filter(|(kh, _)| kh == h)
            .cloned()
            .collect();
        for k in keys {
            if let Some((d, tick)) = inner.map.remove(&k) {
                inner.lru.remove(&tick);
                inner.bytes -= d.len() as u64;
            }
        }
    }

    pub fn bytes(&self) -> u64 {
        self.lock().bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_lru_and_purge() {
        let c = BlockCache::new(300);
        let h: NodeHandle = "AAAA".into();
        for i in 0..3 {
            c.insert(&h, i, Bytes::from(vec![i as u8; 100]));
        }
        assert!(c.get(&h, 0).is_some()); // 0 is now most recent
        c.insert(&h, 3, Bytes::from(vec![3u8; 100]));
        assert!(c.get(&h, 1).is_none(), "least recently used went first");
        assert!(c.get(&h, 0).is_some() && c.get(&h, 3).is_some());
        assert!(c.bytes() <= 300);
        c.purge(&h);
        assert_eq!(c.bytes(), 0);
        assert!(c.get(&h, 0).is_none());
    }
}
