//! The client's side of the tree cache ([`crate::tree::cache`]): a warm start loads the
//! cached tree and catches up with the event channel from its cursor (no `f`); a cursor the
//! server no longer knows (ETOOMANY), an unusable file or any doubt falls back to fetching
//! the tree, which rewrites the file. After each batch of events the changed nodes are
//! committed with the new cursor; a write that fails turns the cache off for this client and
//! removes the file (the next start fetches the tree), saying so once; a commit refused
//! because another process moved the file on only stops this one writing.

use super::{task_failed, Client, Result};
use crate::api::{ApiError, ErrorCode};
use crate::tree::cache::{self, Meta, Row, TreeCache};
use crate::tree::NodeTree;

impl Client {
    fn cache_slot(&self) -> std::sync::MutexGuard<'_, Option<TreeCache>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Loads the tree from the cache and brings it up to date. `Ok(false)`: no usable
    /// cache (none, invalid — then removed —, or too old for the event channel); the caller
    /// fetches the tree.
    pub(super) async fn warm_start(&self) -> Result<bool> {
        let Some(path) = self.cache_file.clone() else {
            return Ok(false);
        };
        let keys = self.read_tree().keys().clone();
        let base = self.api.config().base_url.clone();
        let file = path.clone();
        let loaded = tokio::task::spawn_blocking(move || {
            let t0 = std::time::Instant::now();
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
        let (cache, mut tree) = match loaded {
            Ok(Some(found)) => found,
            Ok(None) => return Ok(false),
            Err(e) => {
                tracing::warn!("{e}; removed, fetching the tree instead");
                cache::remove(&path);
                return Ok(false);
            }
        };
        let sn = cache.sn().to_string();
        {
            let mut current = self.write_tree();
            tree.succeed(current.generation());
            *current = tree;
        }
        *self.sn.lock().unwrap_or_else(|e| e.into_inner()) = Some(sn);
        *self.cache_slot() = Some(cache);
        match self.catch_up().await {
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
        let open = self.cache_slot().is_some();
        let changes = {
            let mut tree = self.write_tree();
            if !open {
                // Nothing to write to: only forget what changed.
                tree.take_dirty();
                return;
            }
            cache::changes(&mut tree)
        };
        let sn = {
            let sn = self.sn.lock().unwrap_or_else(|e| e.into_inner());
            sn.clone()
        };
        let Some(sn) = sn else {
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
                    Ok(()) => {}
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
        })
        .await;
        if let Err(e) = done {
            tracing::warn!("tree cache commit failed: {e}");
            *self.cache_slot() = None;
        }
    }

    /// Replaces the cache file with a freshly fetched tree.
    pub(super) async fn write_cache(&self, rows: Vec<Row>, meta: Meta, sn: String) {
        let Some(path) = self.cache_file.clone() else {
            return;
        };
        *self.cache_slot() = None;
        let keys = self.read_tree().keys().clone();
        let base = self.api.config().base_url.clone();
        let made = tokio::task::spawn_blocking(move || {
            let t0 = std::time::Instant::now();
            let c = TreeCache::create(&path, &base, &keys, &rows, &meta, &sn);
            tracing::debug!(
                nodes = rows.len(),
                ms = t0.elapsed().as_millis() as u64,
                "tree cache written"
            );
            c
        })
        .await;
        match made {
            Ok(Ok(c)) => *self.cache_slot() = Some(c),
            Ok(Err(e)) => tracing::warn!("{e}; continuing without the tree cache"),
            Err(e) => tracing::warn!("writing the tree cache failed: {e}"),
        }
    }

    /// Closes and removes the account's cache file (at logout).
    pub(super) fn forget_cache(&self) {
        *self.cache_slot() = None;
        if let Some(path) = &self.cache_file {
            cache::remove(path);
        }
    }
}
