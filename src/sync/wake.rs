//! What wakes a watching sync or backup: a change in the local folder (inotify, our own files
//! left out), a change in the remote tree (the event channel), or a timeout; a burst of
//! changes (a copy, an editor's save) is let arrive and counts once.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::engine::SyncError;
use super::ignore::{is_partial, DEBRIS};
use crate::client::{Client, TreeEvent, Watcher};
use crate::error::Error;

/// The local watcher and the remote event stream of one folder pair.
pub struct Wakeups {
    _watcher: notify::RecommendedWatcher,
    local: tokio::sync::mpsc::Receiver<()>,
    remote: Watcher,
}

/// How long a burst of changes may take before the pass runs.
const SETTLE_BURST: Duration = Duration::from_millis(300);

impl Wakeups {
    /// Watches `local` (recursively; changes inside its debris folder or to our partial
    /// downloads are ours and ignored) and the client's remote tree.
    pub fn new(client: &Arc<Client>, local: &Path) -> Result<Wakeups, SyncError> {
        use notify::Watcher;
        let werr = |e: notify::Error| SyncError::Watch {
            path: local.display().to_string(),
            msg: e.to_string(),
        };
        let (tx, rx) = tokio::sync::mpsc::channel::<()>(1);
        let debris = local.join(DEBRIS);
        let mut watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
            let ours = ev.as_ref().is_ok_and(|ev| {
                ev.paths.iter().all(|p| {
                    p.starts_with(&debris)
                        || p.file_name()
                            .is_some_and(|n| is_partial(&n.to_string_lossy()))
                })
            });
            if !ours {
                let _ = tx.try_send(());
            }
        })
        .map_err(werr)?;
        watcher
            .watch(local, notify::RecursiveMode::Recursive)
            .map_err(werr)?;
        Ok(Wakeups {
            _watcher: watcher,
            local: rx,
            remote: client.watch()?,
        })
    }

    /// Waits for a change or `wait`, then lets a burst settle and drains it. `Ok(false)`
    /// when the remote stream ended (the client is going away); an error when remote
    /// changes are no longer followed.
    pub async fn next(&mut self, wait: Duration) -> Result<bool, SyncError> {
        tokio::select! {
            _ = self.local.recv() => {}
            ev = self.remote.events.recv() => match ev {
                Some(TreeEvent::Changed(_)) | Some(TreeEvent::Reloaded) => {}
                Some(TreeEvent::Stopped(why)) => {
                    return Err(SyncError::Client(Error::Network {
                        detail: format!("remote changes are no longer followed: {why}"),
                        code: None,
                        attempts: 1,
                    }))
                }
                None => return Ok(false),
            },
            _ = tokio::time::sleep(wait) => {}
        }
        tokio::time::sleep(SETTLE_BURST).await;
        while self.local.try_recv().is_ok() {}
        while let Ok(Some(_)) =
            tokio::time::timeout(Duration::ZERO, self.remote.events.recv()).await
        {}
        Ok(true)
    }
}

/// The pause before retrying after `failures` failed passes in a row: 2, 4 … 64 s.
pub fn backoff(failures: u32) -> Duration {
    Duration::from_secs(2u64.saturating_pow(failures.min(6)))
}
