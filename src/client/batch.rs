//! New files made in batches: one `p` carries the nodes of every upload into the same folder
//! that is ready while the previous `p` into that folder is on its way (a group commit).
//!
//! Each folder has a lane: a queue of new file nodes and a turn. A caller queues its node,
//! then waits for the turn; whoever holds it sends everything queued (at most
//! [`MAX_FILES`] nodes, never two that supersede the same file) and hands each caller its
//! own result. A caller whose node was sent by an earlier holder finds its result when its
//! turn comes and leaves at once. Nothing waits on a timer: a lone upload sends its `p` at
//! once, as before, and the batches grow only as fast as uploads finish while a `p` is out.
//!
//! MEGA answers for each element (`e` of the reply, see [`super::nodes`]): one refused
//! element does not fail the others. If the whole request fails with an error that may be
//! one element's fault, each node is sent again on its own, so that one bad node costs only
//! its own file. An error no element causes (the network, the storage quota, the session)
//! is every caller's answer. A caller's result is never a node another caller made: nodes
//! are found in the reply by their fresh keys.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use super::{Client, Error, Result};
use crate::api::commands::NewNode;
use crate::crypto::NodeKey;
use crate::tree::{Node, NodeHandle};

/// At most this many new files in one `p` (the request stays well under MEGA's size limits:
/// a file's element is about 250 bytes, with a thumbnail's `fa` a little more).
pub(super) const MAX_FILES: usize = 200;

/// The lanes of folders that have new files on their way, by folder handle.
#[derive(Default)]
pub(super) struct Lanes {
    lanes: Mutex<HashMap<NodeHandle, Lane>>,
}

#[derive(Default)]
struct Lane {
    queue: VecDeque<Waiting>,
    /// Held by the caller sending this folder's `p`.
    turn: Arc<tokio::sync::Mutex<()>>,
    /// Callers in the lane (queued, or waiting for the turn to read their result).
    users: usize,
}

/// A new file node and where its result goes.
struct Waiting {
    node: NewNode,
    key: NodeKey,
    done: oneshot::Sender<Result<Node>>,
}

impl Lanes {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<NodeHandle, Lane>> {
        self.lanes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `w` in `parent`'s lane; returns the lane's turn.
    fn join(&self, parent: &NodeHandle, w: Waiting) -> Arc<tokio::sync::Mutex<()>> {
        let mut lanes = self.lock();
        let lane = lanes.entry(parent.clone()).or_default();
        lane.queue.push_back(w);
        lane.users += 1;
        lane.turn.clone()
    }

    /// The next batch of `parent`'s lane, in the order queued: at most [`MAX_FILES`], and a
    /// node superseding a file another one of the batch supersedes waits for the next.
    /// Nodes whose caller is gone are dropped.
    fn take(&self, parent: &NodeHandle) -> Vec<Waiting> {
        let mut lanes = self.lock();
        let Some(lane) = lanes.get_mut(parent) else {
            return Vec::new();
        };
        let mut batch = Vec::new();
        let mut superseded = HashSet::new();
        let mut later = VecDeque::new();
        while let Some(w) = lane.queue.pop_front() {
            if w.done.is_closed() {
                continue;
            }
            if batch.len() >= MAX_FILES {
                later.push_back(w);
                continue;
            }
            match &w.node.ov {
                Some(ov) if !superseded.insert(ov.clone()) => later.push_back(w),
                _ => batch.push(w),
            }
        }
        lane.queue = later;
        batch
    }

    /// Nodes queued in every lane, not yet sent.
    fn queued(&self) -> usize {
        self.lock().values().map(|l| l.queue.len()).sum()
    }

    /// A caller leaves `parent`'s lane; the last one removes it.
    fn leave(&self, parent: &NodeHandle) {
        let mut lanes = self.lock();
        if let Some(lane) = lanes.get_mut(parent) {
            lane.users = lane.users.saturating_sub(1);
            if lane.users == 0 {
                lanes.remove(parent);
            }
        }
    }
}

/// Leaves the lane when the caller is done (or its future is dropped).
struct Leave<'a> {
    lanes: &'a Lanes,
    parent: &'a NodeHandle,
}

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        self.lanes.leave(self.parent);
    }
}

/// Whether every element of a batch shares the failure `e` (none of them caused it), and
/// the copy to give each.
fn shared_failure(e: &Error) -> Option<Error> {
    match e {
        Error::Network {
            detail,
            code,
            attempts,
        } => Some(Error::Network {
            detail: detail.clone(),
            code: *code,
            attempts: *attempts,
        }),
        Error::Quota { code } => Some(Error::Quota { code: *code }),
        Error::Auth(a) => Some(Error::Auth(*a)),
        _ => None,
    }
}

impl Client {
    /// New files whose content is on MEGA and whose node waits for a `p` (the one into its
    /// folder that is on its way): for diagnostics and tests.
    pub fn files_waiting_for_nodes(&self) -> usize {
        self.lanes.queued()
    }

    /// Creates the file node `node` (its key `key`) in `parent`, in one `p` with the other
    /// new files of that folder ready at the same time (see the module doc).
    pub(super) async fn put_file_node(
        &self,
        parent: &NodeHandle,
        node: NewNode,
        key: NodeKey,
    ) -> Result<Node> {
        let (done, mut result) = oneshot::channel();
        let turn = self.lanes.join(parent, Waiting { node, key, done });
        let _leave = Leave {
            lanes: &self.lanes,
            parent,
        };
        loop {
            let _turn = turn.lock().await;
            match result.try_recv() {
                Ok(r) => return r,
                Err(oneshot::error::TryRecvError::Closed) => {
                    // The caller that took it stopped before it had MEGA's answer.
                    return Err(Error::Network {
                        detail: "the request creating the file was abandoned".into(),
                        code: None,
                        attempts: 1,
                    });
                }
                Err(oneshot::error::TryRecvError::Empty) => {}
            }
            let batch = self.lanes.take(parent);
            self.send_files(parent, batch).await;
        }
    }

    /// Sends one batch of new files and hands each caller its result.
    async fn send_files(&self, parent: &NodeHandle, batch: Vec<Waiting>) {
        if batch.is_empty() {
            return;
        }
        let list: Vec<NewNode> = batch.iter().map(|w| w.node.clone()).collect();
        let keys: Vec<NodeKey> = batch.iter().map(|w| w.key.clone()).collect();
        let single = batch.len() == 1;
        match self.put_each(parent, list, keys).await {
            Ok(results) => {
                for (w, r) in batch.into_iter().zip(results) {
                    let _ = w.done.send(r);
                }
            }
            Err(e) if single || shared_failure(&e).is_some() => {
                // The first waiter gets the error itself, the others a copy each.
                let mut each = batch.into_iter();
                let first = each.next();
                for (w, copy) in each.zip(std::iter::from_fn(|| shared_failure(&e))) {
                    let _ = w.done.send(Err(copy));
                }
                if let Some(w) = first {
                    let _ = w.done.send(Err(e));
                }
            }
            Err(e) => {
                tracing::debug!(
                    "a `p` of {} new files failed ({e}); sending them one by one",
                    batch.len()
                );
                for w in batch {
                    let r = self
                        .put_each(parent, vec![w.node], vec![w.key])
                        .await
                        .and_then(|mut v| {
                            v.pop().unwrap_or_else(|| {
                                Err(Error::Protocol("`p` reply without nodes".into()))
                            })
                        });
                    let _ = w.done.send(r);
                }
            }
        }
    }
}
