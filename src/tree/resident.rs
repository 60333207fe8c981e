//! The tree's in-memory maps: handle → boxed value, where a reader holding `&self` may add
//! an entry (a node or a folder's child list loaded from the tree cache on demand) and get a
//! reference that lives as long as its borrow of the map. Entries are changed or removed only
//! through `&mut self`, so no reference handed out by [`Resident::get`] can outlive its value
//! (`elsa`'s append-only map, whose values are boxed).
//!
//! Each entry carries the tick of its last read (a coarse clock, advanced by its owner, the
//! tree, at every trim and once a second while it is followed): [`Resident::shrink_to`]
//! removes the least recently read entries first, so what is in use stays in memory.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use elsa::sync::FrozenMap;

use super::node::NodeHandle;

struct Entry<V> {
    /// The tick of the last read (or of the entry's creation).
    last: AtomicU64,
    value: V,
}

impl<V> Entry<V> {
    fn new(value: V, tick: u64) -> Box<Self> {
        Box::new(Entry {
            last: AtomicU64::new(tick),
            value,
        })
    }

    fn mark(&self, tick: u64) -> &V {
        // A load first: most reads find it marked already, and then write nothing.
        if self.last.load(Ordering::Relaxed) != tick {
            self.last.store(tick, Ordering::Relaxed);
        }
        &self.value
    }
}

/// Gives a map's memory back once it is mostly empty (fewer than a quarter of its slots
/// used): a `HashMap` keeps its capacity after removals, so a table that once held a million
/// entries would hold their memory for good. Cheap to call after every removal: it only
/// rebuilds when the map has shrunk fourfold since it last did, so the cost is amortised.
pub(crate) fn shrink_sparse<K: std::hash::Hash + Eq, V>(m: &mut HashMap<K, V>) {
    if m.capacity() > 1024 && m.len() < m.capacity() / 4 {
        m.shrink_to(m.len() * 2);
    }
}

pub(crate) struct Resident<V> {
    map: FrozenMap<NodeHandle, Box<Entry<V>>>,
    tick: AtomicU64,
}

impl<V> Default for Resident<V> {
    fn default() -> Self {
        Resident {
            map: FrozenMap::new(),
            tick: AtomicU64::new(0),
        }
    }
}

impl<V> std::fmt::Debug for Resident<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resident")
            .field("len", &self.len())
            .finish()
    }
}

impl<V> Resident<V> {
    fn now(&self) -> u64 {
        self.tick.load(Ordering::Relaxed)
    }

    /// Starts a new tick: what is read from now on counts as more recent than all before.
    pub fn advance(&self) {
        self.tick.fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self, k: &NodeHandle) -> Option<&V> {
        let now = self.now();
        self.map.get(k).map(|e| e.mark(now))
    }

    /// Adds `v` unless the key is present already; returns the entry (the old one if any).
    pub fn insert_shared(&self, k: NodeHandle, v: V) -> &V {
        let now = self.now();
        self.map.insert(k, Entry::new(v, now)).mark(now)
    }

    pub fn contains(&self, k: &NodeHandle) -> bool {
        self.map.get(k).is_some()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// All entries present now, in no particular order (not marked as used).
    pub fn values(&self) -> Vec<&V> {
        self.map
            .keys_cloned()
            .iter()
            .filter_map(|k| self.map.get(k))
            .map(|e| &e.value)
            .collect()
    }

    /// All entries, without copying the keys (for an owner; not marked as used).
    pub fn values_mut(&mut self) -> Vec<&V> {
        self.map.as_mut().values().map(|e| &e.value).collect()
    }

    fn entries(&mut self) -> &mut HashMap<NodeHandle, Box<Entry<V>>> {
        self.map.as_mut()
    }

    pub fn insert(&mut self, k: NodeHandle, v: V) {
        let now = self.now();
        self.entries().insert(k, Entry::new(v, now));
    }

    pub fn remove(&mut self, k: &NodeHandle) -> Option<V> {
        self.entries().remove(k).map(|e| e.value)
    }

    pub fn get_mut(&mut self, k: &NodeHandle) -> Option<&mut V> {
        let now = self.now();
        self.entries().get_mut(k).map(|e| {
            *e.last.get_mut() = now;
            &mut e.value
        })
    }

    pub fn reserve(&mut self, n: usize) {
        self.entries().reserve(n);
    }

    /// Removes the least recently read entries, those `pinned` says must stay excepted,
    /// until at most `target` are left (or only pinned ones).
    pub fn shrink_to(&mut self, target: usize, mut pinned: impl FnMut(&NodeHandle) -> bool) {
        let excess = self.len().saturating_sub(target);
        if excess == 0 {
            return;
        }
        let mut candidates: Vec<(u64, NodeHandle)> = self
            .entries()
            .iter_mut()
            .filter(|(k, _)| !pinned(k))
            .map(|(k, e)| (*e.last.get_mut(), k.clone()))
            .collect();
        if excess < candidates.len() {
            candidates.select_nth_unstable_by_key(excess - 1, |(last, _)| *last);
            candidates.truncate(excess);
        }
        let map = self.entries();
        for (_, k) in candidates {
            map.remove(&k);
        }
        shrink_sparse(map);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_added_through_a_shared_borrow_stay_valid_while_the_map_grows() {
        let r: Resident<String> = Resident::default();
        let first = r.insert_shared(NodeHandle::from("a"), "first".to_string());
        for i in 0..10_000 {
            r.insert_shared(NodeHandle(format!("n{i}")), i.to_string());
        }
        assert_eq!(first, "first");
        assert_eq!(
            r.insert_shared(NodeHandle::from("a"), "second".into()),
            "first"
        );
        assert_eq!(r.get(&NodeHandle::from("n42")).unwrap(), "42");
        assert_eq!(r.len(), 10_001);
        let mut r = r;
        assert_eq!(r.remove(&NodeHandle::from("a")).as_deref(), Some("first"));
        assert!(!r.contains(&NodeHandle::from("a")));
    }

    /// A map that held many entries gives their memory back once most are gone (a `HashMap`
    /// keeps its capacity otherwise: a million-node tree trimmed to its budget kept the
    /// table of a million).
    #[test]
    fn shrinking_gives_the_table_memory_back() {
        let mut r: Resident<u32> = Resident::default();
        for i in 0..100_000 {
            r.insert(NodeHandle(format!("n{i}")), i);
        }
        let before = r.entries().capacity();
        r.shrink_to(1000, |_| false);
        assert_eq!(r.len(), 1000);
        assert!(
            r.entries().capacity() <= 4096,
            "{before} -> {}",
            r.entries().capacity()
        );
        let mut m: HashMap<u32, u32> = (0..10_000).map(|i| (i, i)).collect();
        m.retain(|k, _| *k < 2000);
        shrink_sparse(&mut m);
        assert!(
            m.capacity() >= 2000 && m.capacity() < 8192,
            "{}",
            m.capacity()
        );
        // Not for a small or a busy table.
        let mut small: HashMap<u32, u32> = (0..100)
            .collect::<Vec<_>>()
            .into_iter()
            .map(|i| (i, i))
            .collect();
        let cap = small.capacity();
        small.clear();
        shrink_sparse(&mut small);
        assert_eq!(small.capacity(), cap);
    }

    /// What was read most recently stays; the rest goes oldest first, but for what is pinned.
    #[test]
    fn shrinking_drops_the_least_recently_read_first() {
        let mut r: Resident<u32> = Resident::default();
        for i in 0..10 {
            r.insert(NodeHandle(format!("n{i}")), i);
            r.advance();
        }
        // n0 is the oldest entry, but read now; n4 changed now.
        assert_eq!(r.get(&NodeHandle::from("n0")), Some(&0));
        *r.get_mut(&NodeHandle::from("n4")).unwrap() = 40;
        r.shrink_to(4, |k| k.0 == "n1");
        let mut left: Vec<_> = r.values().into_iter().copied().collect();
        left.sort();
        assert_eq!(left, [0, 1, 9, 40]);
        // Nothing to do when small enough; everything unpinned goes at zero.
        r.shrink_to(4, |_| false);
        assert_eq!(r.len(), 4);
        r.shrink_to(0, |k| k.0 == "n1");
        assert_eq!(r.values(), [&1]);
    }
}
