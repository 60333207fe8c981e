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

use std::sync::atomic::Ordering;

use super::{task_failed, Client, Result};
use crate::api::{ApiError, ErrorCode};
use crate::tree::cache::{self, Meta, Row, TreeCache, WriterLock};
use crate::tree::NodeTree;

/// How many nodes a tree served from the cache keeps in memory before it drops them (they
/// are read from the file again when next asked for): about 1 KB each.
pub const RESIDENT_NODES: usize = 50_000;

/// A cache file being written in the background, for the tree of epoch `epoch`.
pub(super) struct Build {
    epoch: u64,
    task: tokio::task::JoinHandle<std::result::Result<TreeCache, cache::CacheError>>,
}

impl Build {
    /// Waits for the write to end, and drops what it made (closing the file).
    pub(super) async fn wait(self) {
        let _ = self.task.await;
    }
}

impl Client {
    pub(super) fn cache_slot(&self) -> std::sync::MutexGuard<'_, Option<TreeCache>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether this client is the writer of its cache file (see [`WriterLock`]): taken at
    /// the first ask and kept for the client's life. Another process holding it makes this
    /// one read the file at start (whole) and never write it.
    fn cache_writer(&self) -> bool {
        let Some(path) = &self.cache_file else {
            return false;
        };
        let mut lock = self.cache_lock.lock().unwrap_or_else(|e| e.into_inner());
        if lock.is_none() {
            *lock = WriterLock::try_take(path);
            if lock.is_none() {
                tracing::debug!(
                    "another process keeps the tree cache {}; reading it only",
                    path.display()
                );
            }
        }
        lock.is_some()
    }

    /// Loads the tree from the cache and brings it up to date. `Ok(false)`: no usable
    /// cache (none, invalid — then removed —, or too old for the event channel); the caller
    /// fetches the tree. The writer serves its tree from the file on demand; a reader loads
    /// all of it.
    pub(super) async fn warm_start(&self) -> Result<bool> {
        let Some(path) = self.cache_file.clone() else {
            return Ok(false);
        };
        let writer = self.cache_writer();
        let keys = self.read_tree().keys().clone();
        let base = self.api.config().base_url.clone();
        let file = path.clone();
        let damaged = self.cache_damaged.clone();
        let loaded = tokio::task::spawn_blocking(move || {
            let t0 = std::time::Instant::now();
            if writer {
                let Some((cache, opened)) =
                    TreeCache::open(&file, &base, &keys).map_err(|e| e.to_string())?
                else {
                    return Ok(None);
                };
                let tree = NodeTree::backed(keys, cache.backing(damaged), opened);
                // The root's children now, so that a damaged file shows before it is used.
                if let Some(root) = tree.root() {
                    tree.children(&root.handle);
                }
                tracing::debug!(
                    nodes = tree.len(),
                    ms = t0.elapsed().as_millis() as u64,
                    "tree cache opened"
                );
                return Ok(Some((cache, tree)));
            }
            let Some((cache, reply)) =
                TreeCache::load(&file, &base, &keys).map_err(|e| e.to_string())?
            else {
                return Ok(None);
            };
            let t1 = std::time::Instant::now();
            let (tree, _) = NodeTree::from_fetch_owned(reply, keys)
                .map_err(|e| format!("tree cache {}: {e}", file.display()))?;
            tracing::debug!(
                nodes = tree.len(),
                read_ms = (t1 - t0).as_millis() as u64,
                decrypt_ms = t1.elapsed().as_millis() as u64,
                "tree cache loaded"
            );
            Ok::<_, String>(Some((cache, tree)))
        })
        .await
        .map_err(task_failed)?;
        let (cache, tree) = match loaded {
            Ok(Some(found)) => found,
            Ok(None) => return Ok(false),
            Err(e) => {
                tracing::warn!("{e}; removed, fetching the tree instead");
                if writer {
                    cache::remove(&path);
                }
                return Ok(false);
            }
        };
        if tree.damaged() {
            cache::remove(&path);
            return Ok(false);
        }
        let sn = cache.sn().to_string();
        self.install_tree(tree);
        *self.sn.lock().unwrap_or_else(|e| e.into_inner()) = Some(sn);
        if writer {
            *self.cache_slot() = Some(cache);
        }
        match self.catch_up().await {
            Ok(()) if self.read_tree().damaged() => {
                self.forget_cache();
                Ok(false)
            }
            Ok(()) => Ok(true),
            Err(ApiError::Mega(ErrorCode::TooMany)) => {
                tracing::info!(
                    "the cached tree is older than the server's event log; fetching the tree"
                );
                *self.cache_slot() = None;
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Drops the least recently used nodes of a tree served from the cache while more than
    /// its budget (by default [`RESIDENT_NODES`]) are in memory (those changed since the last
    /// commit stay); else only starts a new period of use. Called once a second.
    pub fn trim_tree(&self) {
        {
            let tree = self.read_tree();
            if tree.resident() <= self.tree_nodes {
                tree.tick();
                return;
            }
        }
        self.write_tree().trim(self.tree_nodes);
    }

    /// The tree cache was found damaged while the tree was served from it: the file goes,
    /// and the tree is fetched again (which writes a new one).
    pub(super) async fn replace_damaged_tree(&self) -> Result<()> {
        if let Some(path) = &self.cache_file {
            *self.cache_slot() = None;
            cache::remove(path);
        }
        self.fetch().await
    }

    /// Applies every packet the server has after the current cursor (none of them are this
    /// client's: it has not changed anything yet), then commits the cache.
    async fn catch_up(&self) -> std::result::Result<(), ApiError> {
        let mut poller = self.event_poller().map_err(|_| ApiError::SessionLost)?;
        while let Some(packets) = poller.pending().await? {
            let refetch = self.follow_settings(&packets).await;
            self.write_tree().apply(&packets, None);
            *self.sn.lock().unwrap_or_else(|e| e.into_inner()) = Some(poller.sn().to_string());
            if refetch {
                // New keys for nodes we could not decrypt: the whole tree, decrypted again.
                return self
                    .fetch()
                    .await
                    .map_err(|e| ApiError::Network(e.to_string()));
            }
        }
        self.commit_cache().await;
        Ok(())
    }

    /// Commits the nodes changed since the last commit with the current cursor. Without a
    /// cache the list of changes is just dropped.
    pub(super) async fn commit_cache(&self) {
        if self.adopt_cache_build(false).await {
            // The file is still being written: what changed stays to be committed to it.
            return;
        }
        let open = self.cache_slot().is_some();
        let changes = {
            let mut tree = self.write_tree();
            if !open {
                // Nothing to write to: only forget what changed.
                tree.forget_changes();
                return;
            }
            cache::changes(&tree)
        };
        let marks = changes.marks().to_vec();
        // Not past the echo of a change whose reply is not in the tree yet.
        let Some(sn) = self.committable_sn() else {
            return;
        };
        let wanted = {
            let slot = self.cache_slot();
            slot.as_ref()
                .is_some_and(|c| !changes.is_empty() || c.sn() != sn)
        };
        if !wanted {
            return;
        }
        let slot = self.cache.clone();
        let done = tokio::task::spawn_blocking(move || {
            let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(c) = slot.as_mut() {
                match c.commit(&changes, &sn) {
                    Ok(()) => return true,
                    // Another process keeps the file current; this one leaves it to it.
                    Err(e) if e.is_conflict() => {
                        tracing::debug!("{e}; leaving the tree cache to it");
                        *slot = None;
                    }
                    // A file that cannot take a commit is not trusted again: the next start
                    // fetches the tree and writes a new one.
                    Err(e) => {
                        tracing::warn!("{e}; the tree cache is removed and off for this run");
                        cache::remove(c.path());
                        *slot = None;
                    }
                }
            }
            false
        })
        .await;
        match done {
            Ok(true) => {
                let mut tree = self.write_tree();
                tree.committed(&marks);
                tree.trim(self.tree_nodes);
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!("tree cache commit failed: {e}");
                *self.cache_slot() = None;
            }
        }
    }

    /// Replaces the cache file with a freshly fetched tree (of epoch `epoch`), in the
    /// background: the tree is in memory and in use meanwhile, its changes kept to be
    /// committed once the file is there ([`adopt_cache_build`](Self::adopt_cache_build)).
    pub(super) async fn write_cache(&self, rows: Vec<Row>, meta: Meta, sn: String, epoch: u64) {
        let Some(path) = self.cache_file.clone() else {
            return;
        };
        if !self.cache_writer() {
            return;
        }
        let keys = self.read_tree().keys().clone();
        let base = self.api.config().base_url.clone();
        let task = tokio::task::spawn_blocking(move || {
            let t0 = std::time::Instant::now();
            let c = TreeCache::create(&path, &base, &keys, &rows, &meta, &sn);
            tracing::debug!(
                nodes = rows.len(),
                ms = t0.elapsed().as_millis() as u64,
                "tree cache written"
            );
            c
        });
        *self.cache_build.lock().await = Some(Build { epoch, task });
    }

    /// The cache file being written, if any, no longer to be adopted (waits for an adoption
    /// under way to end).
    pub(super) async fn take_cache_build(&self) -> Option<Build> {
        self.cache_build.lock().await.take()
    }

    /// Once the file being written is there (or at once, waiting for it, with `wait`), the
    /// tree is served from it if it is still the tree the file was written from. The build
    /// stays in its slot (locked) until this is done, so a commit meanwhile waits and then
    /// sees the file in use, never a moment with neither. Returns whether the file is still
    /// being written.
    async fn adopt_cache_build(&self, wait: bool) -> bool {
        let mut slot = self.cache_build.lock().await;
        let Some(build) = slot.as_mut() else {
            return false;
        };
        if !wait && !build.task.is_finished() {
            return true;
        }
        let made = (&mut build.task).await;
        let epoch = build.epoch;
        match made {
            Ok(Ok(c)) => {
                let mut tree = self.write_tree();
                if self.tree_epoch.load(Ordering::SeqCst) == epoch {
                    // The tree is now served from the file: what it holds need not stay in
                    // memory (what changed since it was written stays until committed).
                    tree.attach(c.backing(self.cache_damaged.clone()));
                    *self.cache_slot() = Some(c);
                    tree.trim(self.tree_nodes);
                }
                // Else another tree was put in place meanwhile (it writes its own file).
            }
            Ok(Err(e)) => tracing::warn!("{e}; continuing without the tree cache"),
            Err(e) => tracing::warn!("writing the tree cache failed: {e}"),
        }
        *slot = None;
        false
    }

    /// Waits for a cache file being written after a fetch, then commits what changed since:
    /// before a process exits (a `megacmd` command, an unmount), so that the next start is
    /// warm.
    pub async fn finish_cache_write(&self) {
        self.adopt_cache_build(true).await;
        self.commit_cache().await;
    }

    /// Whether a cache file is being written (after a fetch) and not yet in use.
    pub fn cache_writing(&self) -> bool {
        // Locked: being adopted right now, so not in use yet.
        self.cache_build.try_lock().map_or(true, |b| b.is_some())
    }

    /// The background part of following the tree: serves it from a cache file written
    /// since, then trims it (every second while a watcher runs).
    pub(super) async fn tend_tree(&self) {
        self.adopt_cache_build(false).await;
        self.trim_tree();
    }

    /// Closes and removes the account's cache file (at logout).
    pub(super) fn forget_cache(&self) {
        *self.cache_slot() = None;
        if let Some(path) = &self.cache_file {
            cache::remove(path);
        }
    }
}
