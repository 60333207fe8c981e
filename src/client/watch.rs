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
}

impl Client {
    /// Applies action packets to the tree (own echoes skipped); returns what changed.
    pub fn apply_packets(&self, packets: &[ActionPacket]) -> Vec<Change> {
        self.write_tree().apply(packets, Some(self.api.echo_id()))
    }

    /// Re-reads account settings that `ua` packets say changed (from any client, this one
    /// included: the packet is the only notice).
    async fn follow_settings(&self, packets: &[ActionPacket]) {
        let named = |attr: &str| {
            packets.iter().any(|p| {
                matches!(p, ActionPacket::UserAttributes { user, names, .. }
                    if *user == self.session.user && names.iter().any(|n| n == attr))
            })
        };
        if named("^!dv") {
            self.read_versions_setting().await;
        }
    }

    /// An event poller starting at the cursor of the last tree fetch.
    pub fn event_poller(&self) -> Result<EventPoller> {
        let sn = self
            .sn
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| Error::Protocol("the tree fetch had no `sn`".into()))?;
        Ok(EventPoller::new(self.api.clone(), sn))
    }

    /// Follows the event channel in a background task, applying remote changes to the tree
    /// and reporting them. Dropping the [`Watcher`] stops it.
    pub fn watch(self: &Arc<Self>) -> Result<Watcher> {
        let mut poller = self.event_poller()?;
        let (tx, rx) = mpsc::channel(64);
        let client = self.clone();
        let task = tokio::spawn(async move {
            loop {
                match poller.next_batch().await {
                    Ok(packets) => {
                        client.follow_settings(&packets).await;
                        let changes = client.apply_packets(&packets);
                        *client.sn.lock().unwrap_or_else(|e| e.into_inner()) =
                            Some(poller.sn().to_string());
                        if !changes.is_empty()
                            && tx.send(TreeEvent::Changed(changes)).await.is_err()
                        {
                            return;
                        }
                    }
                    Err(ApiError::Mega(ErrorCode::TooMany)) => {
                        if let Err(e) = client.fetch().await {
                            let _ = tx.send(TreeEvent::Stopped(e.to_string())).await;
                            return;
                        }
                        match client.event_poller() {
                            Ok(p) => poller = p,
                            Err(e) => {
                                let _ = tx.send(TreeEvent::Stopped(e.to_string())).await;
                                return;
                            }
                        }
                        if tx.send(TreeEvent::Reloaded).await.is_err() {
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
        Ok(Watcher {
            events: rx,
            _task: AbortOnDrop(task),
        })
    }
}
