//! Reads: through the block cache by MEGA chunk, with a read-ahead window fetched in the
//! background.
//!
//! A read "starts" its own chunks plus the read-ahead window: runs of chunks neither cached
//! nor in flight become background tasks fetching pieces of at most [`FETCH_PIECE`] bytes in
//! parallel, and reads await the piece in flight that holds their chunk instead of fetching
//! it again. The window doubles while reads stay sequential (up to [`MAX_READAHEAD`]) and
//! resets on a seek.
//!
//! Content comes from the client's verifying reader ([`Content`]): a piece reaches the cache
//! only after its chunk MACs were recorded, and once the file's MAC fails its blocks are
//! purged and every read of it fails with EIO. Reads of a file open for writing see its
//! staging file.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use futures::future::Shared;

use super::{FsError, MegaFs, OpenFile, Result};
use crate::transfer::content::Verdict;
use crate::transfer::schedule::{chunk_index, chunk_start, SEGMENT};
use crate::transfer::{Content, TransferError};
use crate::tree::{Node, NodeHandle};

/// The largest read-ahead window, for long sequential reads.
pub const MAX_READAHEAD: u64 = 32 * 1024 * 1024;
/// The largest single ranged request; a window is fetched as several in parallel.
const FETCH_PIECE: u64 = 8 * 1024 * 1024;
/// Pieces fetched at once by a `verify=full` pass.
const VERIFY_PARALLEL: usize = 4;
/// How far from the end of the previous read a read still counts as sequential.
const SEQ_SLACK: u64 = 1024 * 1024;

/// A background fetch of one piece, awaited by any number of reads.
type PieceFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Bytes>> + Send>>;
/// Pieces being fetched, by first chunk: (last chunk, the fetch).
type Inflight = std::collections::BTreeMap<u64, (u64, Shared<PieceFuture>)>;

/// Chunk MACs of file versions that verified, kept after their readers went: at most
/// [`VERIFIED_CHUNKS`] chunks (16 bytes each), the oldest dropped first.
#[derive(Default)]
pub(super) struct VerifiedMacs {
    by_handle: std::collections::HashMap<NodeHandle, (u64, Vec<[u8; 16]>)>,
    order: std::collections::BTreeMap<u64, NodeHandle>,
    tick: u64,
    chunks: usize,
}

/// Chunk MACs kept for verified files whose readers went: 16 MiB of MACs, which covers about
/// 1 TiB of content.
pub(super) const VERIFIED_CHUNKS: usize = 1 << 20;

impl VerifiedMacs {
    fn keep(&mut self, h: NodeHandle, macs: Vec<[u8; 16]>) {
        self.take(&h);
        self.tick += 1;
        self.chunks += macs.len();
        self.order.insert(self.tick, h.clone());
        self.by_handle.insert(h, (self.tick, macs));
        while self.chunks > VERIFIED_CHUNKS {
            let Some((_, old)) = self.order.pop_first() else {
                break;
            };
            if let Some((_, m)) = self.by_handle.remove(&old) {
                self.chunks -= m.len();
            }
        }
    }

    fn take(&mut self, h: &NodeHandle) -> Option<Vec<[u8; 16]>> {
        let (tick, macs) = self.by_handle.remove(h)?;
        self.order.remove(&tick);
        self.chunks -= macs.len();
        Some(macs)
    }
}

/// Shared read state of one file version.
pub(super) struct Reader {
    handle: NodeHandle,
    content: Arc<Content>,
    /// (end of the last read, current read-ahead window)
    seq: Mutex<(u64, u64)>,
    inflight: Mutex<Inflight>,
    /// Held by the one `verify=full` pass over the file; other reads wait for its verdict.
    verifying: tokio::sync::Mutex<()>,
}

impl Reader {
    /// The size of the file version it reads.
    pub(super) fn size(&self) -> u64 {
        self.content.size()
    }

    /// The integrity error a read answers once the file is bad: logged at error level by the
    /// first read to see it, quietly after.
    fn integrity(&self) -> FsError {
        integrity(&self.handle, self.content.first_report())
    }

    /// `e` as this read reports it: an integrity failure through [`Reader::integrity`].
    fn reported(&self, e: FsError) -> FsError {
        match e {
            FsError::Integrity { .. } => self.integrity(),
            e => e,
        }
    }
}

/// Whether chunk `idx` is in a piece in flight.
fn covering(inflight: &Inflight, idx: u64) -> bool {
    inflight
        .range(..=idx)
        .next_back()
        .is_some_and(|(_, (last, _))| idx <= *last)
}

/// A fetch in flight that a read waits for: chunks `first..=last`.
struct Pending {
    first: u64,
    last: u64,
    fetch: Shared<PieceFuture>,
}

impl Pending {
    /// The piece with its first chunk, once it has arrived (or the fetch's error).
    async fn piece(&self) -> Result<(u64, Bytes)> {
        Ok((self.first, self.fetch.clone().await?))
    }
}

impl MegaFs {
    /// The read state of a file version (one per version, shared by its handles).
    pub(super) fn reader(&self, n: &Node) -> Result<Arc<Reader>> {
        let mut readers = self.readers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = readers.get(&n.handle) {
            return Ok(r.clone());
        }
        let content = self.client.content(&n.handle)?;
        // Verified before (by a reader that went with its inode): it stays verified, every
        // chunk fetched again checked against those MACs.
        if let Some(macs) = self.verified().take(&n.handle) {
            content.resume_verified(&macs);
        }
        let r = Arc::new(Reader {
            handle: n.handle.clone(),
            content,
            seq: Mutex::new((u64::MAX, 0)),
            inflight: Mutex::new(Default::default()),
            verifying: tokio::sync::Mutex::new(()),
        });
        readers.insert(n.handle.clone(), r.clone());
        Ok(r)
    }

    /// Lets a file version's reader go (its inode was forgotten and no handle has it open);
    /// the chunk MACs of a verified file are kept (bounded) for the next reader.
    pub(super) fn forget_reader(&self, h: &NodeHandle) {
        let r = self
            .readers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(h);
        if let Some(macs) = r.and_then(|r| r.content.verified_macs()) {
            self.verified().keep(h.clone(), macs);
        }
    }

    fn verified(&self) -> std::sync::MutexGuard<'_, VerifiedMacs> {
        self.verified.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the current version of `ino` is known to have failed its MAC.
    pub(super) fn content_failed(&self, ino: u64) -> bool {
        let Ok(n) = self.node_of(ino) else {
            return false;
        };
        let readers = self.readers.lock().unwrap_or_else(|e| e.into_inner());
        readers.get(&n.handle).is_some_and(|r| r.content.is_bad())
    }

    pub async fn read(
        self: &Arc<Self>,
        ino: u64,
        fh: u64,
        offset: u64,
        size: u32,
    ) -> Result<Bytes> {
        // Reads see unsaved writes: this handle's staging file, else that of another handle
        // with changes not on MEGA yet.
        let (staged, opened, kept) = {
            let open = self.open_files();
            let f: Option<&OpenFile> = open.get(&fh);
            let own = f.and_then(|f| f.writer.as_ref()).map(|w| w.staged());
            let reader = f.and_then(|f| f.reader.clone());
            let kept = f.and_then(|f| f.kept.clone());
            drop(open);
            let staged = own.or_else(|| self.open_writer(ino, false).map(|w| w.staged()));
            (staged, reader, kept)
        };
        if let Some(s) = staged {
            return Ok(s.read_at(offset, size as usize)?.into());
        }
        // The file's current version; after an unlink, the version the handle opened (or,
        // for a file that never reached MEGA, the staging file that held it).
        let r = match (self.node_of(ino), opened) {
            (Ok(n), _) if n.kind.is_container() => return Err(FsError::IsDir),
            (Ok(n), _) => self.reader(&n)?,
            (Err(FsError::NotFound), Some(r)) => r,
            (Err(FsError::NotFound), None) if kept.is_some() => {
                let s = kept.ok_or(FsError::NotFound)?;
                return Ok(s.read_at(offset, size as usize)?.into());
            }
            (Err(e), _) => return Err(e),
        };
        self.read_node(&r, offset, size as u64).await
    }

    async fn read_node(self: &Arc<Self>, r: &Arc<Reader>, offset: u64, size: u64) -> Result<Bytes> {
        if r.content.is_bad() {
            return Err(r.integrity());
        }
        let file_size = r.content.size();
        let end = offset.saturating_add(size).min(file_size);
        if offset >= end {
            return Ok(Bytes::new());
        }
        if self.cfg.verify_full && r.content.verdict() != Verdict::Verified {
            self.verify_whole(r).await?;
        }
        // Read-ahead: the window doubles while reads stay sequential (near where the last one
        // ended: the kernel's own read-ahead and several FUSE threads reorder requests a
        // little), and resets on a seek.
        let window = {
            let mut seq = r.seq.lock().unwrap_or_else(|e| e.into_inner());
            let sequential = seq.0 != u64::MAX && offset.abs_diff(seq.0) <= SEQ_SLACK;
            let w = if sequential {
                (seq.1 * 2).clamp(SEGMENT, MAX_READAHEAD)
            } else {
                0
            };
            *seq = (if sequential { seq.0.max(end) } else { end }, w);
            w
        };
        let first = chunk_index(offset);
        let last = chunk_index(end - 1);
        let ahead = chunk_index((end + window).min(file_size) - 1);
        // What this read needs and the read-ahead window are fetched in the background as
        // parallel pieces; this read waits only for its own chunks, and the next sequential
        // read finds its chunks cached or already on the way.
        let mine = self.start_fetches(r, (first, ahead, last), (window / 2).min(FETCH_PIECE));
        // The reply is a slice of the piece that holds it (no copy), or, across pieces, the
        // slices joined.
        let mut parts: Vec<Bytes> = Vec::new();
        let mut idx = first;
        while idx <= last {
            let (pfirst, piece) = match mine.iter().find(|p| p.first <= idx && idx <= p.last) {
                Some(p) => p.piece().await,
                None => self.piece(r, idx).await,
            }
            .map_err(|e| r.reported(e))?;
            let ps = chunk_start(pfirst);
            let pe = ps + piece.len() as u64;
            let (s, e) = (offset.max(ps), end.min(pe));
            if s >= e || chunk_start(idx) >= pe {
                return Err(FsError::Local(format!(
                    "chunk {idx} is not in the piece fetched"
                )));
            }
            parts.push(piece.slice((s - ps) as usize..(e - ps) as usize));
            idx = chunk_index(pe - 1) + 1;
        }
        Ok(match parts.len() {
            1 => parts.swap_remove(0),
            _ => parts.concat().into(),
        })
    }

    /// The piece holding chunk `idx` of a file, with its first chunk: from the cache, else
    /// from the fetch in flight that holds it (one started now if there is none). A failed
    /// fetch is this read's error: it is not fetched again behind the caller's back (the
    /// retry budget is the transfer settings').
    async fn piece(self: &Arc<Self>, r: &Arc<Reader>, idx: u64) -> Result<(u64, Bytes)> {
        if let Some(found) = self.cache.get_piece(&r.handle, idx) {
            return Ok(found);
        }
        match self.start_fetches(r, (idx, idx, idx), 0).first() {
            Some(p) => p.piece().await,
            None => self
                .cache
                .get_piece(&r.handle, idx)
                .ok_or_else(|| FsError::Local("a read kept missing its data".into())),
        }
    }

    /// Makes sure chunks `a..=need` are cached or being fetched, and starts read-ahead up to
    /// `b`: runs of missing chunks start as background fetches of at most [`FETCH_PIECE`]
    /// bytes each, in parallel. A run wholly past `need` that ends at `b` starts only once it
    /// is `min_ahead` bytes long (or reaches the end of the file): each sequential read moves
    /// the window by about its own size, and fetching that sliver alone would make every
    /// piece one chunk — one request each, and one chunk's MAC is a serial chain of AES blocks
    /// where a piece of eight chunks computes them side by side. Returns the fetches in flight
    /// that hold chunks `a..=need`, taken under the same lock, so that the caller sees their
    /// outcome even if they end before it awaits them.
    fn start_fetches(
        self: &Arc<Self>,
        r: &Arc<Reader>,
        (a, b, need): (u64, u64, u64),
        min_ahead: u64,
    ) -> Vec<Pending> {
        let mut inflight = r.inflight.lock().unwrap_or_else(|e| e.into_inner());
        let missing = |i: u64, inflight: &Inflight| {
            !covering(inflight, i) && !self.cache.contains(&r.handle, i)
        };
        let mut idx = a;
        while idx <= b {
            if !missing(idx, &inflight) {
                idx += 1;
                continue;
            }
            let mut stop = idx;
            while stop < b
                && chunk_start(stop + 2) - chunk_start(idx) <= FETCH_PIECE
                && missing(stop + 1, &inflight)
            {
                stop += 1;
            }
            let short = chunk_start(stop + 1) - chunk_start(idx) < min_ahead;
            if idx > need && stop == b && short && chunk_start(b + 1) < r.content.size() {
                break;
            }
            let (fs, rd) = (self.clone(), r.clone());
            let task = tokio::spawn(async move {
                let piece = fs.fetch_piece(&rd, idx, stop).await;
                rd.inflight
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&idx);
                piece
            });
            let fetch = async move {
                task.await
                    .unwrap_or_else(|e| Err(FsError::Local(format!("read task failed: {e}"))))
            };
            inflight.insert(
                idx,
                (
                    stop,
                    futures::FutureExt::shared(Box::pin(fetch) as PieceFuture),
                ),
            );
            idx = stop + 1;
        }
        let mut mine: Vec<Pending> = Vec::new();
        for idx in a..=need.min(b) {
            if mine.last().is_some_and(|p| idx <= p.last) {
                continue;
            }
            if let Some((first, (last, f))) = inflight.range(..=idx).next_back() {
                if idx <= *last {
                    mine.push(Pending {
                        first: *first,
                        last: *last,
                        fetch: f.clone(),
                    });
                }
            }
        }
        mine
    }

    /// `verify=full`: fetches every chunk whose MAC is not known yet ([`VERIFY_PARALLEL`]
    /// pieces at a time, through the cache so that the reads that follow find them) and
    /// returns once the whole file verified; the integrity error if it did not. One pass per
    /// file at a time; MACs learnt by a pass that failed on the network are kept.
    async fn verify_whole(self: &Arc<Self>, r: &Arc<Reader>) -> Result<()> {
        use futures::{StreamExt, TryStreamExt};
        let _one = r.verifying.lock().await;
        let mut runs: Vec<(u64, u64)> = Vec::new();
        for idx in r.content.unseen_chunks() {
            match runs.last_mut() {
                Some((a, b))
                    if *b + 1 == idx && chunk_start(idx + 1) - chunk_start(*a) <= FETCH_PIECE =>
                {
                    *b = idx
                }
                _ => runs.push((idx, idx)),
            }
        }
        futures::stream::iter(runs)
            .map(Ok)
            .try_for_each_concurrent(VERIFY_PARALLEL, |(a, b)| async move {
                self.fetch_piece(r, a, b).await.map(drop)
            })
            .await
            .map_err(|e| r.reported(e))?;
        match r.content.finish() {
            Ok(()) => Ok(()),
            Err(_) => {
                self.cache.purge(&r.handle);
                Err(r.integrity())
            }
        }
    }

    /// Fetches chunks `a..=b` as one verified piece and caches it. When the file's MAC fails,
    /// its blocks are purged. The integrity error it gives is not the one logged: a piece can
    /// be awaited by many reads, or by none (read-ahead), so the read that sees the failure
    /// first reports it ([`Reader::reported`]).
    async fn fetch_piece(&self, r: &Arc<Reader>, a: u64, b: u64) -> Result<Bytes> {
        loop {
            self.quota_gate().await?;
            match r.content.piece(a, b).await {
                Ok(piece) => {
                    self.cache.insert(&r.handle, a, piece.clone());
                    return Ok(piece);
                }
                Err(TransferError::MacMismatch) => {
                    self.cache.purge(&r.handle);
                    return Err(integrity(&r.handle, false));
                }
                Err(e) => match crate::Error::from(e) {
                    crate::Error::TransferQuota { wait } => self.quota_met(wait),
                    e => return Err(e.into()),
                },
            }
        }
    }

    /// MEGA's transfer quota ran out: it comes back in `wait` seconds. Logged once per
    /// window, with the time.
    fn quota_met(&self, wait: u64) {
        if self.quota.met(wait, true) {
            tracing::warn!(
                "MEGA's transfer quota is used up until {} (in {wait} s): reads of content not cached here wait up to {} s for it, else fail with EDQUOT",
                crate::local::time::fmt_time_secs(crate::local::time::now() + wait as i64),
                self.cfg.quota_wait.as_secs()
            );
        }
    }

    /// Before a fetch: over the transfer quota, wait for it to come back if that is within
    /// `quota_wait`, else fail at once (without asking MEGA again: it would only say no).
    async fn quota_gate(&self) -> Result<()> {
        let Some(until) = self.quota.until() else {
            return Ok(());
        };
        let left = until.saturating_duration_since(Instant::now());
        if left > self.cfg.quota_wait {
            return Err(FsError::TransferQuota {
                wait: left.as_secs().max(1),
            });
        }
        tokio::time::sleep(left).await;
        Ok(())
    }
}

fn integrity(h: &NodeHandle, first: bool) -> FsError {
    FsError::Integrity {
        detail: format!("node {h}; its reads now fail"),
        first,
    }
}
