//! The tree's in-memory maps: handle → boxed value, where a reader holding `&self` may add
//! an entry (a node or a folder's child list loaded from the tree cache on demand) and get a
//! reference that lives as long as its borrow of the map. Entries are changed or removed only
//! through `&mut self` ([`Resident::map`]), so no reference handed out by [`Resident::get`]
//! can outlive its value (`elsa`'s append-only map, whose values are boxed).

use std::collections::HashMap;

use elsa::sync::FrozenMap;

use super::node::NodeHandle;

pub(crate) struct Resident<V> {
    map: FrozenMap<NodeHandle, Box<V>>,
}

impl<V> Default for Resident<V> {
    fn default() -> Self {
        Resident {
            map: FrozenMap::new(),
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
    pub fn get(&self, k: &NodeHandle) -> Option<&V> {
        self.map.get(k)
    }

    /// Adds `v` unless the key is present already; returns the entry (the old one if any).
    pub fn insert_shared(&self, k: NodeHandle, v: V) -> &V {
        self.map.insert(k, Box::new(v))
    }

    pub fn contains(&self, k: &NodeHandle) -> bool {
        self.map.get(k).is_some()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// All entries present now, in no particular order.
    pub fn values(&self) -> Vec<&V> {
        self.map
            .keys_cloned()
            .iter()
            .filter_map(|k| self.map.get(k))
            .collect()
    }

    /// All entries, without copying the keys (for an owner).
    pub fn values_mut(&mut self) -> Vec<&V> {
        self.map().values().map(|b| &**b).collect()
    }

    /// The map itself, to change or remove entries (no reference from `get` is alive).
    pub fn map(&mut self) -> &mut HashMap<NodeHandle, Box<V>> {
        self.map.as_mut()
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
        r.map().remove(&NodeHandle::from("a"));
        assert!(!r.contains(&NodeHandle::from("a")));
    }
}
