//! Running a two-way sync pair: scanning both sides ([`scan`](super::scan)), planning against
//! the shadow ([`plan`](super::plan)), executing the plan with every action journaled
//! ([`execute`](super::execute)), and (`--watch`) doing it again whenever the local folder
//! (inotify) or the remote tree (the `sc` event channel) changes.

use std::collections::BTreeMap;

use futures::StreamExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::client::Client;
use crate::error::Error;
use crate::tree::NodeHandle;

use super::ignore::{Exclusions, IgnoreError};
use super::plan::{self, Action, Local, Remote};
use super::registry::{Desired, Registered, BEAT_CHANGE, BEAT_EVERY};
use super::shadow::{ShadowDb, ShadowError};
use super::wake::{backoff, Wakeups};
use crate::client::backups::{self, beat, BackupKind, Registration};

/// The shadow database's key for the pair's Backup Centre id.
const REGISTRATION: &str = "backup_id";

/// How a pair runs.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// Print the plan, change nothing.
    pub dry_run: bool,
    /// Stop before doing anything if the plan deletes more than this many entries.
    pub max_delete: Option<usize>,
    /// Local files modified less than this long ago are left for a later pass.
    pub settle: Duration,
    /// Where the shadow databases live.
    pub state_dir: PathBuf,
    /// Transfers run at once.
    pub parallel: usize,
    /// Over MEGA's transfer quota, downloads wait for it to come back while the rest goes on
    /// (else they fail with the quota error once the rest is done).
    pub wait_for_quota: bool,
}

/// What a run did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Report {
    pub uploaded: usize,
    pub downloaded: usize,
    pub moved_local: usize,
    pub moved_remote: usize,
    pub mkdir_local: usize,
    pub mkdir_remote: usize,
    pub deleted_remote: usize,
    pub deleted_local: usize,
    pub conflicts: usize,
    pub recorded: usize,
    /// Paths whose permission bits were carried to the other side (a `chmod` alone).
    pub modes: usize,
    pub deferred: usize,
    /// The files waiting to settle (changed too recently), after the last pass.
    pub waiting: Vec<String>,
    /// Actions that failed (the rest went on); the run exits non-zero.
    pub errors: Vec<String>,
    /// Actions a previous run journaled and never finished (it was killed).
    pub interrupted: Vec<String>,
    /// Paused from another device (MEGA's Backup Centre): nothing was done.
    pub paused: bool,
}

impl Report {
    /// Adds a later pass's report to this one (the files still waiting are the later's).
    fn absorb(&mut self, later: Report) {
        self.uploaded += later.uploaded;
        self.downloaded += later.downloaded;
        self.moved_local += later.moved_local;
        self.moved_remote += later.moved_remote;
        self.mkdir_local += later.mkdir_local;
        self.mkdir_remote += later.mkdir_remote;
        self.deleted_remote += later.deleted_remote;
        self.deleted_local += later.deleted_local;
        self.conflicts += later.conflicts;
        self.recorded += later.recorded;
        self.modes += later.modes;
        self.deferred = later.deferred;
        self.waiting = later.waiting;
        self.errors.extend(later.errors);
        self.interrupted.extend(later.interrupted);
        self.paused = later.paused;
    }

    /// Counts an action that succeeded.
    fn count(&mut self, a: &Action) {
        let n = match a {
            Action::MoveLocal { .. } => &mut self.moved_local,
            Action::MoveRemote { .. } => &mut self.moved_remote,
            Action::MkdirLocal { .. } => &mut self.mkdir_local,
            Action::MkdirRemote { .. } => &mut self.mkdir_remote,
            Action::Upload { .. } => &mut self.uploaded,
            Action::Download { .. } => &mut self.downloaded,
            Action::Conflict { .. } => &mut self.conflicts,
            Action::DeleteRemote { .. } => &mut self.deleted_remote,
            Action::DeleteLocal { .. } => &mut self.deleted_local,
            Action::Record { .. } => &mut self.recorded,
            Action::Defer { .. } => &mut self.deferred,
            Action::Forget { .. } => return,
        };
        *n += 1;
    }
}

/// Transfers run in parallel with each other.
/// Whether an action downloads (and so waits for MEGA's transfer quota).
fn downloads(a: &Action) -> bool {
    matches!(a, Action::Download { .. } | Action::Conflict { .. })
}

fn is_transfer(a: &Action) -> bool {
    matches!(
        a,
        Action::Upload { .. } | Action::Download { .. } | Action::Conflict { .. }
    )
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("the plan deletes {deletes} entries, more than --max-delete {max}; nothing was done (see the plan with --dry-run)")]
    TooManyDeletes { deletes: usize, max: usize },
    #[error(transparent)]
    Shadow(#[from] ShadowError),
    #[error(transparent)]
    Client(#[from] Error),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("watching {path}: {msg}")]
    Watch { path: String, msg: String },
    #[error("exclusions: {0}")]
    Ignore(#[from] IgnoreError),
    #[error("this sync was removed from another device (MEGA's Backup Centre), or its remote folder is gone; run it again to register it anew")]
    Removed,
}

pub(super) fn io_err(path: &Path, source: std::io::Error) -> SyncError {
    SyncError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// One local folder kept in sync with one MEGA folder.
pub struct Syncer {
    pub(super) client: Arc<Client>,
    pub(super) local: PathBuf,
    pub(super) remote: NodeHandle,
    pub(super) db: ShadowDb,
    pub(super) opts: SyncOptions,
    /// The pair's registration with the Backup Centre (none until the first run, or where
    /// the server or the machine cannot register it).
    reg: Option<Registered>,
}

/// Where a pair's shadow database lives: one file per (account, local folder, remote folder).
pub fn shadow_path(state_dir: &Path, account: &str, local: &Path, remote: &NodeHandle) -> PathBuf {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for part in [account, &local.display().to_string(), &remote.0] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    let digest = h.finalize();
    let name: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    state_dir.join(format!("{name}.sqlite"))
}

impl Syncer {
    pub fn open(
        client: Arc<Client>,
        local: &Path,
        remote: NodeHandle,
        opts: SyncOptions,
    ) -> Result<Syncer, SyncError> {
        let local = local.canonicalize().map_err(|e| io_err(local, e))?;
        let account = client.root().map(|r| r.owner).unwrap_or_default();
        let db = ShadowDb::open(&shadow_path(&opts.state_dir, &account, &local, &remote))?;
        db.set_meta("local", &local.display().to_string())?;
        db.set_meta("remote", &remote.0)?;
        let reg = db
            .meta(REGISTRATION)?
            .map(|id| Registered::new(id, remote.clone(), false));
        Ok(Syncer {
            client,
            local,
            remote,
            db,
            opts,
            reg,
        })
    }

    /// One reconciliation: plan, check the guards, execute (or print, with `dry_run`). Runs
    /// a second pass when the first changed something (a conflict's renamed copy, a folder
    /// re-created) so that one run converges.
    pub async fn run_once(
        &mut self,
        show: &mut (dyn FnMut(&Action) + Send),
    ) -> Result<Report, SyncError> {
        let mut report = Report {
            interrupted: self.db.take_unfinished()?,
            ..Report::default()
        };
        if !report.interrupted.is_empty() {
            tracing::warn!(
                "resuming after an interrupted run ({} action(s) were in progress)",
                report.interrupted.len()
            );
        }
        if !self.opts.dry_run {
            match self.check_registration().await? {
                Desired::Run => {}
                Desired::Paused => {
                    report.paused = true;
                    return Ok(report);
                }
                Desired::Removed => {
                    self.db.delete_meta(REGISTRATION)?;
                    self.reg = None;
                    return Err(SyncError::Removed);
                }
            }
        }
        self.remove_partials();
        for pass in 0..3 {
            let ignore = Exclusions::open(&self.local, !self.opts.dry_run)?;
            let remote = self.scan_remote(&ignore)?;
            let mut local = self.scan_local(&ignore)?;
            let shadow = self.db.entries()?;
            let need = plan::needs_fingerprint(&local, &remote, &shadow);
            let remote_crc: std::collections::HashMap<&str, &str> = remote
                .iter()
                .filter_map(|r| Some((r.path.as_str(), r.crc.as_deref()?)))
                .collect();
            for l in local.iter_mut().filter(|l| need.contains(&l.path)) {
                let theirs = remote_crc.get(l.path.as_str()).copied();
                l.crc = self.local_crc(&l.path, l.size, theirs).ok();
            }
            let actions = plan::plan(&local, &remote, &shadow);
            let deletes = actions.iter().filter(|a| a.is_delete()).count();
            if let Some(max) = self.opts.max_delete {
                if deletes > max {
                    return Err(SyncError::TooManyDeletes { deletes, max });
                }
            }
            if self.opts.dry_run {
                actions.iter().for_each(&mut *show);
                return Ok(report);
            }
            let l: BTreeMap<String, Local> =
                local.into_iter().map(|e| (e.path.clone(), e)).collect();
            let r: BTreeMap<String, Remote> =
                remote.into_iter().map(|e| (e.path.clone(), e)).collect();
            let changed = actions.iter().any(Action::changes_something);
            report.deferred = 0;
            report.waiting.clear();
            // Transfers (uploads, downloads, conflicts) run `parallel` at a time; everything
            // else runs in order (moves and folders before the transfers that need them,
            // deletions after).
            let mut rest = &actions[..];
            while let Some(first) = rest.first() {
                let n = if is_transfer(first) {
                    rest.iter().take_while(|a| is_transfer(a)).count()
                } else {
                    1
                };
                let (batch, tail) = rest.split_at(n);
                rest = tail;
                batch
                    .iter()
                    .filter(|a| a.changes_something())
                    .for_each(&mut *show);
                // A hand-rolled pool (no closures: keeps the future `Send` for callers that
                // spawn it).
                let mut results = Vec::with_capacity(batch.len());
                // Out of `self` while the pool borrows it: a long batch keeps beating.
                let mut reg = self.reg.take();
                let mut tick = tokio::time::interval(BEAT_CHANGE);
                tick.tick().await;
                let mut pending = futures::stream::FuturesUnordered::new();
                let mut queue: std::collections::VecDeque<&Action> = batch.iter().collect();
                // Downloads held back by MEGA's transfer quota, while uploads go on.
                let mut held: Vec<&Action> = Vec::new();
                let quota = crate::client::quota::QuotaPause::new(self.opts.wait_for_quota);
                loop {
                    while pending.len() < self.opts.parallel.max(1) {
                        let Some(a) = queue.pop_front() else { break };
                        if downloads(a) && quota.until().is_some() {
                            held.push(a);
                        } else {
                            pending.push(self.execute_tagged(a, &l, &r));
                        }
                    }
                    if pending.is_empty() {
                        if held.is_empty() {
                            break;
                        }
                        // Only downloads waiting for the quota are left.
                        if quota.wait || quota.until().is_none() {
                            // Beating while it waits: the Backup Centre sees a live sync.
                            while let Some(until) = quota.until() {
                                if let Some(reg) = reg.as_mut() {
                                    let left = held.len() as u32;
                                    reg.beat(&self.client, beat::SYNCING, 0, left).await;
                                }
                                let step = until.min(std::time::Instant::now() + BEAT_EVERY);
                                tokio::time::sleep_until(step.into()).await;
                            }
                            queue.extend(held.drain(..));
                            continue;
                        }
                        let wait = quota.left();
                        for a in held.drain(..) {
                            let e = SyncError::Client(Error::TransferQuota { wait });
                            results.push((a, Err(e)));
                        }
                        break;
                    }
                    tokio::select! {
                        done = pending.next() => match done {
                            Some((a, Err(SyncError::Client(Error::TransferQuota { wait }))))
                                if downloads(a) =>
                            {
                                quota.met(wait, false);
                                held.push(a);
                            }
                            Some(done) => results.push(done),
                            None => {}
                        },
                        _ = tick.tick(), if reg.is_some() => {
                            if let Some(reg) = reg.as_mut() {
                                let pct = results.len() * 100 / batch.len().max(1);
                                let left = batch.len() - results.len();
                                reg.beat(&self.client, beat::SYNCING, pct as u8, left as u32)
                                    .await;
                            }
                        }
                    }
                }
                drop(pending);
                self.reg = reg;
                for (a, res) in results {
                    match res {
                        Ok(()) => {
                            report.count(a);
                            if let Action::Defer { path } = a {
                                report.waiting.push(path.clone());
                            }
                        }
                        Err(e) => report.errors.push(format!("{}: {e}", a.path())),
                    }
                }
            }
            if !changed || pass == 2 || !report.errors.is_empty() {
                break;
            }
        }
        // A chmod alone is no change to the planner (see `modes`).
        report.modes = self.sync_modes().await?;
        if let Some(reg) = self.reg.as_mut() {
            let (status, pending) = if report.errors.is_empty() && report.deferred == 0 {
                (beat::UP_TO_DATE, 0)
            } else {
                (
                    beat::SYNCING,
                    (report.errors.len() + report.deferred) as u32,
                )
            };
            reg.beat(&self.client, status, 100, pending).await;
        }
        Ok(report)
    }

    /// Registers the pair with the Backup Centre on its first run (type two-way, named by
    /// its local path, as MEGA's apps name syncs), then follows what other devices ask.
    /// A server or machine that cannot register it leaves the sync running unregistered.
    async fn check_registration(&mut self) -> Result<Desired, SyncError> {
        if self.reg.is_none() {
            let path = self.local.display().to_string();
            let registered = match backups::device_id() {
                Ok(device) => {
                    self.client
                        .register_backup(&Registration {
                            kind: BackupKind::TwoWay,
                            root: &self.remote,
                            local: &path,
                            name: &path,
                            device: &device,
                        })
                        .await
                }
                Err(e) => Err(e),
            };
            match registered {
                Ok(id) => {
                    self.db.set_meta(REGISTRATION, &id)?;
                    self.reg = Some(Registered::new(id, self.remote.clone(), false));
                }
                Err(e) => {
                    tracing::warn!("the sync is not registered with the Backup Centre: {e}");
                    return Ok(Desired::Run);
                }
            }
        }
        let Some(reg) = self.reg.as_mut() else {
            return Ok(Desired::Run);
        };
        let desired = reg.check(&self.client).await?;
        match desired {
            Desired::Paused => reg.beat_paused(&self.client).await,
            Desired::Run if reg.first_beat() => reg.beat(&self.client, beat::PENDING, 0, 0).await,
            _ => {}
        }
        Ok(desired)
    }

    /// The pair's Backup Centre id, if it is registered.
    pub fn registration(&self) -> Option<&str> {
        self.reg.as_ref().map(|r| r.id.as_str())
    }

    /// Unregisters the pair from the Backup Centre (a later run registers it anew; the
    /// shadow state stays, so nothing is transferred again).
    pub async fn remove(self) -> Result<(), SyncError> {
        if let Some(reg) = &self.reg {
            self.client.remove_backup(&reg.id).await?;
        }
        self.db.delete_meta(REGISTRATION)?;
        Ok(())
    }

    /// A one-shot reconciliation that also syncs files still being written: while some wait
    /// to settle, it pauses for the settle time and runs again, for at most `max_wait`. The
    /// report says which files were still waiting when it gave up (none, normally).
    pub async fn run_settled(
        &mut self,
        show: &mut (dyn FnMut(&Action) + Send),
        max_wait: Duration,
    ) -> Result<Report, SyncError> {
        let deadline = tokio::time::Instant::now() + max_wait;
        let mut total = self.run_once(show).await?;
        while total.deferred > 0 && total.errors.is_empty() {
            let now = tokio::time::Instant::now();
            if now >= deadline {
                break;
            }
            let pause = self
                .opts
                .settle
                .max(Duration::from_millis(200))
                .min(deadline - now);
            tokio::time::sleep(pause).await;
            let next = self.run_once(show).await?;
            total.absorb(next);
        }
        Ok(total)
    }

    /// Runs until the process is stopped: a reconciliation now, then again after local or
    /// remote changes (or, with files waiting to settle, after the settle time).
    pub async fn watch(
        &mut self,
        show: &mut (dyn FnMut(&Action) + Send),
        done: &mut (dyn FnMut(&Report) + Send),
    ) -> Result<(), SyncError> {
        let mut wake = Wakeups::new(&self.client, &self.local)?;
        let mut failures = 0u32;
        loop {
            let wait = match self.run_once(show).await {
                Ok(report) => {
                    failures = 0;
                    done(&report);
                    if report.deferred > 0 || !report.errors.is_empty() {
                        self.opts.settle.max(Duration::from_secs(1))
                    } else {
                        Duration::from_secs(3600)
                    }
                }
                // The guard and a broken state database stop the watch; anything else (a
                // network outage, a folder busy) is retried with a growing pause.
                Err(
                    e @ (SyncError::TooManyDeletes { .. }
                    | SyncError::Shadow(_)
                    | SyncError::Removed),
                ) => return Err(e),
                Err(e) => {
                    failures += 1;
                    let pause = backoff(failures);
                    tracing::warn!(
                        "sync pass failed ({e}); trying again in {} s",
                        pause.as_secs()
                    );
                    pause
                }
            };
            if !wake.next(wait).await? {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shadow_files_are_per_account_local_and_remote_folder() {
        let d = Path::new("/state");
        let a = shadow_path(d, "U1", Path::new("/home/a"), &NodeHandle("H".into()));
        assert_eq!(
            a,
            shadow_path(d, "U1", Path::new("/home/a"), &NodeHandle("H".into()))
        );
        assert_ne!(
            a,
            shadow_path(d, "U2", Path::new("/home/a"), &NodeHandle("H".into()))
        );
        assert_ne!(
            a,
            shadow_path(d, "U1", Path::new("/home/b"), &NodeHandle("H".into()))
        );
        assert_ne!(
            a,
            shadow_path(d, "U1", Path::new("/home/a"), &NodeHandle("G".into()))
        );
        assert!(a.starts_with(d));
    }
}
