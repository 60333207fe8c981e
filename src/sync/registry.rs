//! What backups and two-way syncs share with the Backup Centre: the registration's id and
//! remote root, heartbeats at the SDK's pace, and the desired state another device may ask
//! for (`sds` on the root node, or `*!sds` for a sync of the whole Cloud Drive), followed and
//! then acknowledged by clearing it.

use std::time::{Duration, Instant};

use crate::client::backups::{self, beat, state};
use crate::client::Client;
use crate::error::Result;
use crate::tree::{NodeHandle, NodeKind};

/// A heartbeat is sent at least this often while a backup or sync runs (MEGA's apps show it
/// offline after 30 minutes without one).
pub const BEAT_EVERY: Duration = Duration::from_secs(25 * 60);
/// A change of status, progress or pending count is reported at most this often (the SDK's
/// 30 s), except that a pass's end ("up to date", "inactive") is reported at once.
pub const BEAT_CHANGE: Duration = Duration::from_secs(30);

/// Whether a heartbeat `(status, progress, pending)` is due, given how long ago the last went
/// and what it said.
fn beat_due(last: Option<(Duration, (u8, u8, u32))>, now: (u8, u8, u32)) -> bool {
    let Some((ago, then)) = last else {
        return true;
    };
    let settled = matches!(now.0, beat::UP_TO_DATE | beat::INACTIVE) && then.0 != now.0;
    ago >= BEAT_EVERY || (then != now && (settled || ago >= BEAT_CHANGE))
}

/// What the account wants of a registration at this check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Desired {
    Run,
    Paused,
    /// Removed from another device, or its remote folder is gone: it has ended.
    Removed,
}

/// One registration as its own device runs it.
#[derive(Debug)]
pub struct Registered {
    pub id: String,
    pub root: NodeHandle,
    paused: bool,
    /// When the last heartbeat went, and its status, progress and pending count.
    last_beat: Option<(Instant, u8, u8, u32)>,
}

impl Registered {
    pub fn new(id: String, root: NodeHandle, paused: bool) -> Registered {
        Registered {
            id,
            root,
            paused,
            last_beat: None,
        }
    }

    /// Whether a first heartbeat (the initial scan) is still to be sent.
    pub fn first_beat(&self) -> bool {
        self.last_beat.is_none()
    }

    /// Sends a heartbeat when it is due: the first, one whose status, progress or pending
    /// count changed (at most every 30 s, but a pass's end at once), or one 25 minutes after
    /// the last. A failed heartbeat is logged, never fatal.
    pub async fn beat(&mut self, client: &Client, status: u8, progress: u8, pending: u32) {
        let last = self
            .last_beat
            .map(|(at, s, p, q)| (at.elapsed(), (s, p, q)));
        if !beat_due(last, (status, progress, pending)) {
            return;
        }
        let lts = Some(crate::local::time::now());
        match client
            .backup_heartbeat(&self.id, status, progress, (pending, 0), lts)
            .await
        {
            Ok(()) => self.last_beat = Some((Instant::now(), status, progress, pending)),
            Err(e) => tracing::warn!("heartbeat of {} not sent: {e}", self.id),
        }
    }

    /// The desired state, followed: a pause or resume is recorded with `sp`, a removal
    /// unregisters; each request is then cleared (acknowledged).
    pub async fn check(&mut self, client: &Client) -> Result<Desired> {
        let root = client.view(|t| {
            let n = t.get(&self.root).cloned()?;
            let in_bin = t
                .top_of(&self.root)
                .is_some_and(|t| t.kind == NodeKind::Rubbish);
            Some((n, in_bin))
        });
        let node = match root {
            Some((n, false)) => n,
            _ => {
                tracing::warn!("the remote folder of {} is gone: unregistering", self.id);
                self.unregister(client).await;
                return Ok(Desired::Removed);
            }
        };
        let whole_drive = node.kind == NodeKind::Root;
        let want = if whole_drive {
            client.desired_states_of_account().await?.and_then(|all| {
                all.into_iter()
                    .find(|(id, _)| *id == self.id)
                    .and_then(|(_, s)| s.parse().ok())
            })
        } else {
            let sds = node
                .attrs()
                .and_then(|a| a.get("sds").and_then(|v| v.as_str()).map(str::to_string))
                .unwrap_or_default();
            backups::desired_state(&sds, &self.id)
        };
        let Some(want) = want else {
            return Ok(if self.paused {
                Desired::Paused
            } else {
                Desired::Run
            });
        };
        match want {
            state::DELETED => {
                tracing::info!("{} removed from another device", self.id);
                self.unregister(client).await;
                if let Err(e) = self.clear_request(client, whole_drive).await {
                    tracing::warn!("the removal request of {} stays: {e}", self.id);
                }
                return Ok(Desired::Removed);
            }
            state::PAUSED => {
                self.paused = true;
                client.set_backup_state(&self.id, state::PAUSED, 0).await?;
            }
            state::ACTIVE => {
                self.paused = false;
                client.set_backup_state(&self.id, state::ACTIVE, 0).await?;
            }
            other => tracing::warn!("unknown desired state {other} for {}", self.id),
        }
        self.clear_request(client, whole_drive).await?;
        Ok(if self.paused {
            Desired::Paused
        } else {
            Desired::Run
        })
    }

    /// Takes this registration's request off its root (or out of `*!sds`).
    async fn clear_request(&self, client: &Client, whole_drive: bool) -> Result<()> {
        if whole_drive {
            client.set_account_desired_state(&self.id, None).await
        } else {
            client.set_desired_state(&self.root, &self.id, None).await
        }
    }

    async fn unregister(&self, client: &Client) {
        if let Err(e) = client.remove_backup(&self.id).await {
            tracing::warn!("{}: unregistering failed: {e}", self.id);
        }
    }

    /// A paused registration's heartbeat ("inactive").
    pub async fn beat_paused(&mut self, client: &Client) {
        self.beat(client, beat::INACTIVE, 0, 0).await;
    }
}

/// Asks, from any device, for a registration to be paused, resumed or removed: the state
/// recorded with `sp` (or `sr` for a removal) and the desired state set on its root (or in
/// `*!sds` for a sync of the whole Cloud Drive), which the owning device follows at its next
/// check and then clears.
pub async fn request_state(client: &Client, id: &str, want: u8) -> Result<()> {
    let records = client.backup_records().await?;
    let r = records
        .iter()
        .find(|r| r.id == id)
        .ok_or_else(|| crate::error::Error::NotFound {
            what: format!("backup or sync {id}"),
        })?;
    match want {
        state::DELETED => client.remove_backup(id).await?,
        s => client.set_backup_state(id, s, 0).await?,
    }
    if let Some(root) = r.root.clone().map(NodeHandle) {
        match client.view(|t| t.get(&root).map(|n| n.kind)) {
            Some(NodeKind::Root) => client.set_account_desired_state(id, Some(want)).await?,
            Some(_) => client.set_desired_state(&root, id, Some(want)).await?,
            None => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeats_at_the_sdks_pace() {
        let s = Duration::from_secs;
        let syncing = (beat::SYNCING, 10, 5);
        assert!(beat_due(None, syncing), "the first");
        assert!(!beat_due(Some((s(10), syncing)), syncing), "nothing new");
        assert!(
            !beat_due(Some((s(10), syncing)), (beat::SYNCING, 20, 4)),
            "progress, but within 30 s"
        );
        assert!(beat_due(Some((s(31), syncing)), (beat::SYNCING, 20, 4)));
        assert!(
            beat_due(Some((s(1), syncing)), (beat::UP_TO_DATE, 100, 0)),
            "the end of a pass at once"
        );
        let done = (beat::UP_TO_DATE, 100, 0);
        assert!(!beat_due(Some((s(600), done)), done));
        assert!(beat_due(Some((s(25 * 60), done)), done), "still alive");
    }
}
