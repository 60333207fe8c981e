//! The decrypted block cache: plaintext by node handle, bounded in bytes, least recently used
//! out first. The unit is the piece one ranged request fetched (whole MEGA chunks, up to
//! 4 MiB): lookups are by chunk index and return a zero-copy slice of the piece holding it, and
//! eviction frees whole pieces, so the bound counts exactly the memory the cache keeps alive.
//! A new upload always gets a new node handle, so a key names immutable content: a stale or
//! wrongly keyed block cannot be served.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use bytes::Bytes;

use crate::transfer::schedule as mac;
use crate::tree::NodeHandle;

/// (node, index of the piece's first chunk)
type Key = (NodeHandle, u64);

#[derive(Default)]
struct Inner {
    pieces: BTreeMap<Key, (Bytes, u64)>,
    lru: BTreeMap<u64, Key>,
    tick: u64,
    bytes: u64,
}

impl Inner {
    fn remove(&mut self, key: &Key) {
        if let Some((d, tick)) = self.pieces.remove(key) {
            self.lru.remove(&tick);
            self.bytes -= d.len() as u64;
        }
    }
}

/// Chunk `idx` of a piece starting with chunk `first` (a zero-copy slice), if it holds it.
pub fn slice_chunk(piece: &Bytes, first: u64, idx: u64) -> Option<Bytes> {
    let piece_start = mac::chunk_start(first);
    let piece_end = piece_start + piece.len() as u64;
    let start = mac::chunk_start(idx);
    if idx < first || start >= piece_end {
        return None;
    }
    let end = mac::chunk_start(idx + 1).min(piece_end);
    Some(piece.slice((start - piece_start) as usize..(end - piece_start) as usize))
}

/// A byte-bounded LRU of decrypted pieces, looked up by chunk.
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

    /// Chunk `idx` of a file (a slice of its cached piece), marking the piece recently used.
    pub fn get(&self, h: &NodeHandle, idx: u64) -> Option<Bytes> {
        let (first, piece) = self.get_piece(h, idx)?;
        slice_chunk(&piece, first, idx)
    }

    /// The cached piece holding chunk `idx` of a file, with its first chunk (so that a read
    /// inside one piece is a slice of it, not a copy).
    pub fn get_piece(&self, h: &NodeHandle, idx: u64) -> Option<(u64, Bytes)> {
        let mut g = self.lock();
        let inner = &mut *g;
        let (key, (data, tick)) = inner
            .pieces
            .range_mut((h.clone(), 0)..=(h.clone(), idx))
            .next_back()?;
        slice_chunk(data, key.1, idx)?;
        let found = (key.1, data.clone());
        let key = key.clone();
        inner.lru.remove(tick);
        inner.tick += 1;
        *tick = inner.tick;
        inner.lru.insert(inner.tick, key);
        Some(found)
    }

    /// Whether chunk `idx` of a file is cached (without touching its recency).
    pub fn contains(&self, h: &NodeHandle, idx: u64) -> bool {
        let g = self.lock();
        g.pieces
            .range((h.clone(), 0)..=(h.clone(), idx))
            .next_back()
            .is_some_and(|((_, first), (data, _))| {
                mac::chunk_start(idx) < mac::chunk_start(*first) + data.len() as u64
            })
    }

    /// Caches a piece: the plaintext of whole chunks starting with chunk `first` (the last
    /// may be the file's short final chunk). Least recently used pieces go first.
    pub fn insert(&self, h: &NodeHandle, first: u64, data: Bytes) {
        if data.len() as u64 > self.capacity {
            return;
        }
        let mut g = self.lock();
        let inner = &mut *g;
        let key = (h.clone(), first);
        inner.remove(&key);
        inner.tick += 1;
        inner.bytes += data.len() as u64;
        inner.lru.insert(inner.tick, key.clone());
        inner.pieces.insert(key, (data, inner.tick));
        while inner.bytes > self.capacity {
            let Some((_, k)) = inner.lru.pop_first() else {
                break;
            };
            if let Some((d, _)) = inner.pieces.remove(&k) {
                inner.bytes -= d.len() as u64;
            }
        }
    }

    /// Drops every block of a file (after a MAC failure, or when it was replaced).
    pub fn purge(&self, h: &NodeHandle) {
        let mut g = self.lock();
        let keys: Vec<Key> = g
            .pieces
            .range((h.clone(), 0)..=(h.clone(), u64::MAX))
            .map(|(k, _)| k.clone())
            .collect();
        for k in keys {
            g.remove(&k);
        }
    }

    /// Bytes held (exactly the plaintext kept alive by the cache).
    pub fn bytes(&self) -> u64 {
        self.lock().bytes
    }

    /// Pieces held per file, for diagnostics and tests.
    pub fn pieces(&self) -> HashMap<NodeHandle, usize> {
        let mut out = HashMap::new();
        for (h, _) in self.lock().pieces.keys() {
            *out.entry(h.clone()).or_insert(0) += 1;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const C: usize = mac::SEGMENT as usize; // the first chunk is 128 KiB

    #[test]
    fn chunks_are_slices_of_their_piece() {
        let c = BlockCache::new(10 << 20);
        let h: NodeHandle = "AAAA".into();
        // Chunks 0..=2 are 128, 256 and 384 KiB; a piece of chunks 1 and 2.
        let piece: Vec<u8> = (0..(2 + 3) * C).map(|i| (i / C) as u8).collect();
        c.insert(&h, 1, Bytes::from(piece));
        assert!(c.get(&h, 0).is_none());
        let one = c.get(&h, 1).unwrap();
        assert_eq!(one.len(), 2 * C);
        assert!(one.iter().take(C).all(|b| *b == 0) && one[C] == 1);
        let two = c.get(&h, 2).unwrap();
        assert_eq!(two.len(), 3 * C);
        assert_eq!(two[0], 2);
        assert!(c.get(&h, 3).is_none(), "past the piece");
        assert!(c.get(&"BBBB".into(), 1).is_none(), "other file");
    }

    #[test]
    fn short_final_chunk_and_other_files_do_not_leak_into_a_lookup() {
        let c = BlockCache::new(10 << 20);
        let (a, b): (NodeHandle, NodeHandle) = ("AAAA".into(), "BBBB".into());
        c.insert(&a, 0, Bytes::from(vec![7u8; 1000])); // a 1000-byte file
        c.insert(&b, 0, Bytes::from(vec![9u8; C]));
        assert_eq!(c.get(&a, 0).unwrap().len(), 1000);
        assert!(c.get(&a, 1).is_none());
        assert_eq!(c.get(&b, 0).unwrap()[0], 9);
    }

    #[test]
    fn bounded_by_whole_pieces_lru_and_purge() {
        let c = BlockCache::new(3 * C as u64);
        let h: NodeHandle = "AAAA".into();
        // Three one-chunk-sized pieces at chunks 0, 8, 9 (1 MiB chunks later, but any length
        // up to the chunk works for the cache).
        for i in [0u64, 8, 9] {
            c.insert(&h, i, Bytes::from(vec![i as u8; C]));
        }
        assert!(c.get(&h, 0).is_some()); // 0 is now most recent
        c.insert(&h, 10, Bytes::from(vec![10u8; C]));
        assert!(c.get(&h, 8).is_none(), "least recently used went first");
        assert!(c.get(&h, 0).is_some() && c.get(&h, 10).is_some());
        assert_eq!(c.bytes(), 3 * C as u64);
        c.insert(&h, 20, Bytes::from(vec![0u8; 4 * C]));
        assert!(
            c.bytes() <= 3 * C as u64,
            "a piece larger than the cache is not kept"
        );
        c.purge(&h);
        assert_eq!(c.bytes(), 0);
        assert!(c.get(&h, 0).is_none());
        assert!(c.pieces().is_empty());
    }
}
