//! Following remote changes: a background task long-polls the event channel, applies action
//! packets to the tree (skipping this client's own echoes) and reports what changed. When the
//! server says the cursor is too old, the whole tree is fetched again.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::{Client, Error, Result};
use crate::api::{ApiError, ErrorCode};
use crate::events::EventPoller;
use crate::transfer::AbortOnDrop;
use crate::tree::{ActionPacket, Change};

/// Something the event watcher saw.
#[derive(Debug)]
pub enum TreeEvent {
    /// Remote changes were applied to the tree.
    Changed(Vec<Change>),
    /// The cursor was too old: the whole tree was fetched again.
    Reloaded,
    /// The channel stopped for good (e.g. the session ended).
    Stopped(String),
}

/// A running event watcher; dropping it stops the task.
pub struct Watcher {
    pub events: mpsc::Receiver<TreeEvent>,
    _task: AbortOnDrop<()>,
    _trim: AbortOnDrop<()>,
}

/// How often a watched tree served from the cache drops what it read beyond its budget.
const TRIM_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

impl Client {
    /// After packets were applied: a pending share's recipient may have accepted our contact
    /// request (a share or contact packet for us): the keys that waited for it go out.
    pub(super) async fn after_packets(&self, packets: &[ActionPacket]) {
        let recipients_changed = packets.iter().any(|p| {
            matches!(p, ActionPacket::Share { owner, .. } if *owner == self.session.user)
                || matches!(p, ActionPacket::Contacts { .. })
        });
        if recipients_changed && self.has_pending_outshares().await {
            if let Err(e) = self.complete_pending_outshares().await {
                tracing::warn!("keys of shared folders not sent: {e}");
            }
        }
    }

    /// Applies action packets to the tree (own echoes skipped); returns what changed.
    pub fn apply_packets(&self, packets: &[ActionPacket], sn: &str) -> Vec<Change> {
        self.store.apply(packets, Some(self.api.echo_id()), sn)
    }

    /// Re-reads account settings and keys that `ua` packets say changed (from any client,
    /// this one included: the packet is the only notice). True when new share keys arrived
    /// and some nodes could not be decrypted: the tree must be fetched again.
    pub(super) async fn follow_settings(&self, packets: &[ActionPacket]) -> bool {
        // The newest version named for an attribute of ours, if any packet names it.
        let named = |attr: &str| -> Option<Option<String>> {
            let mut found = None;
            for p in packets {
                if let ActionPacket::UserAttributes {
                    user,
                    names,
                    versions,
                    ..
                } = p
                {
                    if *user != self.session.user {
                        continue;
                    }
                    if let Some(i) = names.iter().position(|n| n == attr) {
                        found = Some(versions.get(i).cloned());
                    }
                }
            }
            found
        };
        if named("^!dv").is_some() {
            self.read_versions_setting().await;
        }
        if named("^!bak").is_some() {
            // "My backups" was created (on any device): the mount and megacmd show it.
            if let Err(e) = self.my_backups().await {
                tracing::warn!("\"My backups\" changed but could not be read: {e}");
            }
        }
        let mut new_keys = false;
        if let Some(version) = named(super::keys::KEYS_ATTR) {
            match self.refresh_keys(version.as_deref()).await {
                Ok(new) => new_keys |= new,
                Err(e) => tracing::warn!("the key manager changed but could not be read: {e}"),
            }
        }
        // Another user sent us a share key.
        if packets
            .iter()
            .any(|p| matches!(p, ActionPacket::Other { kind, .. } if kind == "pk"))
        {
            match self.accept_pending_keys().await {
                Ok(n) => new_keys |= n > 0,
                Err(e) => tracing::warn!("keys of folders shared with you not accepted: {e}"),
            }
        }
        new_keys && self.read_tree().undecryptable().next().is_some()
    }

    /// An event poller starting at the cursor of the last tree fetch.
    pub fn event_poller(&self) -> Result<EventPoller> {
        let sn = self
            .read_tree()
            .sn()
            .map(str::to_string)
            .ok_or_else(|| Error::Protocol("the tree fetch had no `sn`".into()))?;
        Ok(EventPoller::new(self.api.clone(), sn))
    }

    /// Follows the event channel in a background task, applying remote changes to the tree
    /// and reporting them. Dropping the [`Watcher`] stops it.
    pub fn watch(self: &Arc<Self>) -> Result<Watcher> {
        let mut poller = self.event_poller()?;
        let (tx, rx) = mpsc::channel(64);
        let client = self.clone();
        let damaged = self.store.damage().clone();
        let task = tokio::spawn(async move {
            loop {
                let batch = tokio::select! {
                    b = poller.next_batch() => b,
                    () = damaged.found() => {
                        // The cache the tree is served from is damaged: fetch it whole
                        // (the poll in flight is dropped; a new poller follows the fetch).
                        let fetched = client.replace_damaged_tree().await;
                        if !reloaded(&client, fetched, &mut poller, &tx).await {
                            return;
                        }
                        continue;
                    }
                };
                match batch {
                    Ok(packets) => {
                        let refetch = client.follow_settings(&packets).await;
                        let changes = client.apply_packets(&packets, poller.sn());
                        client.after_packets(&packets).await;
                        client.commit_cache().await;
                        if !changes.is_empty()
                            && tx.send(TreeEvent::Changed(changes)).await.is_err()
                        {
                            return;
                        }
                        // New keys make undecryptable nodes readable: fetch them again.
                        if refetch {
                            match client.fetch().await {
                                Ok(()) => {
                                    if tx.send(TreeEvent::Reloaded).await.is_err() {
                                        return;
                                    }
                                }
                                Err(e) => tracing::warn!("re-fetching the tree failed: {e}"),
                            }
                        }
                    }
                    Err(ApiError::Mega(ErrorCode::TooMany)) => {
                        let fetched = client.fetch().await;
                        if !reloaded(&client, fetched, &mut poller, &tx).await {
                            return;
                        }
                    }
                    Err(e) => {
                        // Reported once, by whoever receives `Stopped`.
                        let _ = tx
                            .send(TreeEvent::Stopped(Error::from(e).to_string()))
                            .await;
                        return;
                    }
                }
            }
        });
        let client = self.clone();
        let trim = tokio::spawn(async move {
            loop {
                tokio::time::sleep(TRIM_EVERY).await;
                client.tend_tree().await;
            }
        });
        Ok(Watcher {
            events: rx,
            _task: AbortOnDrop(task),
            _trim: AbortOnDrop(trim),
        })
    }
}

/// After the whole tree was fetched again: a poller from its cursor, and `Reloaded` sent.
/// False when the watcher must stop (the fetch failed, or nobody listens).
async fn reloaded(
    client: &Client,
    fetched: Result<()>,
    poller: &mut EventPoller,
    tx: &mpsc::Sender<TreeEvent>,
) -> bool {
    let next = fetched.and_then(|()| client.event_poller());
    match next {
        Ok(p) => *poller = p,
        Err(e) => {
            let _ = tx.send(TreeEvent::Stopped(e.to_string())).await;
            return false;
        }
    }
    tx.send(TreeEvent::Reloaded).await.is_ok()
}
