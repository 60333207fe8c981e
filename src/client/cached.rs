//! The client's side of the tree cache ([`crate::tree::cache`]): a warm start opens the
//! cached tree and catches up with the event channel from its cursor (no `f`); a cursor the
//! server no longer knows (ETOOMANY), an unusable file or any doubt falls back to fetching
//! the tree, which rewrites the file in the background: the fetched tree is in use at once
//! (the first start of a large account does not wait for the file), its changes are kept
//! until the file is there and then committed to it, and a process about to exit waits for
//! it ([`Client::finish_cache_write`]). One process per account is the file's writer
//! ([`WriterLock`]): its tree is served from the file on demand and keeps at most
//! [`RESIDENT_NODES`] unchanged nodes in memory (or `tree_nodes`); another process reads the whole file at
//! start and never writes it. After each batch of events the changed nodes are committed with
//! the new cursor; a write that fails turns the cache off for this client and removes the
//! file (the next start fetches the tree), saying so once. A file found damaged while the
//! tree is served from it is removed and the tree fetched again.
//!
//! The file's life is the [`TreeStore`](crate::tree::store::TreeStore)'s (one state, one
//! lock, transitions as methods); this module is the part that needs the network: catching
//! up from the event channel after a warm start.

use super::{Client, Result};
use crate::api::{ApiError, ErrorCode};

/// How many nodes a tree served from the cache keeps in memory before it drops them (they
/// are read from the file again when next asked for): about 1 KB each.
pub const RESIDENT_NODES: usize = 50_000;

impl Client {
    /// Loads the tree from the cache and brings it up to date. `Ok(false)`: no usable
    /// cache (none, invalid — then removed —, or too old for the event channel); the caller
    /// fetches the tree. The writer serves its tree from the file on demand; a reader loads
    /// all of it.
    pub(super) async fn warm_start(&self) -> Result<bool> {
        if !self.store.open().await {
            return Ok(false);
        }
        match self.catch_up().await {
            Ok(()) if self.read_tree().damaged() => {
                self.store.turn_off(true).await;
                Ok(false)
            }
            Ok(()) => Ok(true),
            Err(ApiError::Mega(ErrorCode::TooMany)) => {
                tracing::info!(
                    "the cached tree is older than the server's event log; fetching the tree"
                );
                self.store.turn_off(false).await;
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Drops the least recently used nodes of a tree served from the cache while more than
    /// its budget (by default [`RESIDENT_NODES`]) are in memory (those changed since the last
    /// commit stay); else only starts a new period of use. Called once a second.
    pub fn trim_tree(&self) {
        self.store.trim();
    }

    /// The tree cache was found damaged while the tree was served from it: the file goes,
    /// and the tree is fetched again (which writes a new one).
    pub(super) async fn replace_damaged_tree(&self) -> Result<()> {
        self.store.turn_off(true).await;
        self.fetch().await
    }

    /// Applies every packet the server has after the current cursor (none of them are this
    /// client's: it has not changed anything yet), then commits the cache.
    async fn catch_up(&self) -> std::result::Result<(), ApiError> {
        let mut poller = self.event_poller().map_err(|_| ApiError::SessionLost)?;
        while let Some(packets) = poller.pending().await? {
            let refetch = self.follow_settings(&packets).await;
            self.store.apply(&packets, None, poller.sn());
            self.after_packets(&packets).await;
            if refetch {
                // New keys for nodes we could not decrypt: the whole tree, decrypted again.
                return self
                    .fetch()
                    .await
                    .map_err(|e| ApiError::Network(e.to_string()));
            }
        }
        self.store.commit().await;
        Ok(())
    }

    /// Commits the nodes changed since the last commit with the current cursor (see
    /// [`TreeStore::commit`](crate::tree::store::TreeStore::commit)).
    pub(super) async fn commit_cache(&self) {
        self.store.commit().await;
    }

    /// Waits for a cache file being written after a fetch, then commits what changed since:
    /// before a process exits (a `megacmd` command, an unmount), so that the next start is
    /// warm.
    pub async fn finish_cache_write(&self) {
        self.store.finish().await;
    }

    /// Whether a cache file is being written (after a fetch) and not yet in use.
    pub fn cache_writing(&self) -> bool {
        self.store.writing()
    }

    /// The background part of following the tree: serves it from a cache file written
    /// since, then trims it (every second while a watcher runs).
    pub(super) async fn tend_tree(&self) {
        self.store.tend().await;
    }
}
