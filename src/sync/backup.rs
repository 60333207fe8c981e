//! Backups as MEGA's apps make them (`MEGA-BACKUPS-TRUST.md` §1.10–1.16): a local folder kept
//! copied, one way, into the Vault under "My backups/<device>/<name>", registered with the
//! account (type 5) so that the Backup Centre of MEGA's apps lists it, with heartbeats.
//!
//! * A pass makes the remote copy look like the local folder: new and changed files are
//!   uploaded (a replaced file becomes the new one's previous version); what the local folder
//!   no longer has is moved to the Rubbish Bin's `SyncDebris/YYYY-MM-DD`, never deleted; a
//!   remote change inside the backup is overwritten, never pulled down.
//! * `.megaignore` rules apply as in a sync (the default file is written if the folder has
//!   none); excluded remote items are left alone.
//! * Every pass first reads the desired state another device may have set on the backup's
//!   root (`sds`): pause (3) stops uploads and reports the state with `sp`, resume (1)
//!   restarts, remove (8) unregisters and stops; each request is acknowledged by removing
//!   its entry, as the SDK does. A root deleted by someone else also removes the backup.
//! * All writes carry `vw:1`: the engine's client is the only one allowed to change the Vault.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::engine::{io_err, SyncError};
use super::ignore::{Exclusions, Kind};
use super::oneway::{self, Entry, Execution, PlanOptions};
use super::registry::{Desired, Registered, BEAT_CHANGE, BEAT_EVERY};
use super::wake::{backoff, Wakeups};
use crate::client::backups::{self, beat, state, BackupKind, BackupRecord, Registration};
use crate::client::Client;
use crate::error::Error;
use crate::tree::NodeHandle;

/// One backup of this device.
pub struct Backup {
    client: Arc<Client>,
    local: PathBuf,
    reg: Registered,
    name: String,
    parallel: usize,
}

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PassReport {
    pub uploaded: usize,
    pub folders: usize,
    /// Moved to the Rubbish Bin's SyncDebris (gone locally, or not in the local folder).
    pub removed: usize,
    pub unchanged: usize,
    pub failed: Vec<String>,
    /// Paused from another device: nothing was uploaded.
    pub paused: bool,
    /// Removed from another device (or its remote folder was): the backup has ended.
    pub ended: bool,
}

/// A local folder as a listing, with exclusions applied (excluded folders are not entered;
/// symbolic links, sockets and devices are not backed up).
fn local_listing(root: &Path, ex: &Exclusions) -> Result<Vec<Entry>, SyncError> {
    let mut out = Vec::new();
    super::scan::walk_included(root, ex, false, |path, meta| {
        let dir = meta.is_dir();
        out.push(Entry {
            path,
            size: if dir { 0 } else { meta.len() },
            mtime: if dir {
                0
            } else {
                crate::local::files::mtime_of(meta)
            },
            dir,
            link: false,
        })
    })?;
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

fn exists(msg: String) -> SyncError {
    SyncError::Client(Error::AlreadyExists { what: msg })
}

impl Backup {
    /// Creates a backup of `local` named `name` (default: the folder's name): this device
    /// named in `*!dn` if it has no name, "My backups" and the device folder created in the
    /// Vault if missing, the backup's folder, its registration. A registration that fails
    /// removes the folder again.
    pub async fn create(
        client: Arc<Client>,
        local: &Path,
        name: Option<&str>,
    ) -> Result<Backup, SyncError> {
        client.allow_vault_writes();
        let local = local.canonicalize().map_err(|e| io_err(local, e))?;
        if !local.is_dir() {
            return Err(io_err(&local, std::io::Error::other("not a folder")));
        }
        let device = backups::device_id()?;
        let path = local.display().to_string();
        if let Some(r) = Self::record_for(&client, &device, &path).await? {
            return Err(exists(format!(
                "{path} (already backed up as {:?}, id {})",
                r.name.unwrap_or_default(),
                r.id
            )));
        }
        let name = match name {
            Some(n) => n.to_string(),
            None => local
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "Backup".into()),
        };
        client
            .ensure_device_name(&device, &backups::host_name())
            .await?;
        let my_backups = client.ensure_my_backups().await?;
        let dev = client
            .ensure_device_folder(&my_backups.handle, &device)
            .await?;
        if client.view(|t| t.child_by_name(&dev.handle, &name).is_some()) {
            return Err(exists(format!(
                "a backup named {name:?} on this device (choose another with --name)"
            )));
        }
        let root = client.mkdir(&dev.handle, &name).await?.handle;
        let reg = Registration {
            kind: BackupKind::Backup,
            root: &root,
            local: &path,
            name: &name,
            device: &device,
        };
        let id = match client.register_backup(&reg).await {
            Ok(id) => id,
            Err(e) => {
                if let Err(undo) = client.delete(&root).await {
                    tracing::warn!("the backup's folder stays after a failed registration: {undo}");
                }
                return Err(e.into());
            }
        };
        Ok(Backup {
            client,
            local,
            reg: Registered::new(id, root, false),
            name,
            parallel: 4,
        })
    }

    /// The backup of `local` this device registered.
    pub async fn open(client: Arc<Client>, local: &Path) -> Result<Backup, SyncError> {
        client.allow_vault_writes();
        let local = local.canonicalize().map_err(|e| io_err(local, e))?;
        let device = backups::device_id()?;
        let path = local.display().to_string();
        let r = Self::record_for(&client, &device, &path)
            .await?
            .ok_or_else(|| {
                SyncError::Client(Error::NotFound {
                    what: format!("{path}: a backup of this device (megacmd backup --list)"),
                })
            })?;
        let root = NodeHandle(r.root.clone().unwrap_or_default());
        Ok(Backup {
            client,
            local,
            reg: Registered::new(r.id, root, r.state == i64::from(state::PAUSED)),
            name: r.name.unwrap_or_default(),
            parallel: 4,
        })
    }

    async fn record_for(
        client: &Client,
        device: &str,
        path: &str,
    ) -> Result<Option<BackupRecord>, SyncError> {
        Ok(client.backup_records().await?.into_iter().find(|r| {
            r.kind == BackupKind::Backup
                && r.device.as_deref() == Some(device)
                && r.local.as_deref() == Some(path)
        }))
    }

    pub fn id(&self) -> &str {
        &self.reg.id
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn root(&self) -> &NodeHandle {
        &self.reg.root
    }

    pub fn set_parallel(&mut self, n: usize) {
        self.parallel = n.max(1);
    }

    /// One pass (see the module documentation).
    pub async fn run_once(&mut self) -> Result<PassReport, SyncError> {
        let mut report = PassReport::default();
        let client = Arc::clone(&self.client);
        match self.reg.check(&client).await? {
            Desired::Removed => {
                report.ended = true;
                return Ok(report);
            }
            Desired::Paused => {
                report.paused = true;
                self.reg.beat_paused(&client).await;
                return Ok(report);
            }
            Desired::Run => {}
        }
        if self.reg.first_beat() {
            self.reg.beat(&client, beat::PENDING, 0, 0).await;
        }
        let ex = Exclusions::open(&self.local, true)?;
        let local = local_listing(&self.local, &ex)?;
        let mut remote = oneway::remote_listing(&self.client, &self.reg.root)?;
        // Excluded remote items are left alone (not removed, not listed).
        let mut kept = Vec::with_capacity(remote.entries.len());
        for e in remote.entries.drain(..) {
            let kind = if e.dir { Kind::Folder } else { Kind::File };
            if !ex.excluded(&e.path, kind, (!e.dir).then_some(e.size))? {
                kept.push(e);
            }
        }
        remote.entries = kept;
        let plan = oneway::plan(
            &local,
            &remote.entries,
            PlanOptions {
                ignore_same_size: false,
                delete: true,
            },
        );
        report.unchanged = plan.unchanged;
        let uploads = plan
            .actions
            .iter()
            .filter(|a| matches!(a, oneway::Action::Copy { .. }))
            .count();
        report.folders = plan
            .actions
            .iter()
            .filter(|a| matches!(a, oneway::Action::Mkdir(_)))
            .count();
        if !plan.actions.is_empty() {
            self.reg
                .beat(&client, beat::SYNCING, 0, uploads as u32)
                .await;
        }
        // Progress for the heartbeats: bytes uploaded of the bytes to upload.
        let total: u64 = plan
            .actions
            .iter()
            .filter_map(|a| match a {
                oneway::Action::Copy { size, .. } => Some(*size),
                _ => None,
            })
            .sum();
        let sent = Arc::new(AtomicU64::new(0));
        let files_done = Arc::new(AtomicUsize::new(0));
        let how = Execution {
            parallel: self.parallel,
            permanent: false,
            sync_debris: true,
            // A backup never downloads.
            quota: Arc::new(crate::client::quota::QuotaPause::new(false)),
            progress: Some({
                let sent = sent.clone();
                Arc::new(move |n: u64| {
                    sent.fetch_add(n, Ordering::Relaxed);
                })
            }),
            copied: {
                let files_done = files_done.clone();
                Arc::new(move |_: &str, _: &str| {
                    files_done.fetch_add(1, Ordering::Relaxed);
                })
            },
        };
        let root = self.reg.root.clone();
        let upload = oneway::upload_tree(&client, &plan, &remote, &root, &self.local, &how);
        tokio::pin!(upload);
        // A long pass keeps beating (MEGA's apps show a backup silent for 30 minutes offline).
        let mut tick = tokio::time::interval(BEAT_CHANGE);
        tick.tick().await;
        let done = loop {
            tokio::select! {
                r = &mut upload => break r?,
                _ = tick.tick() => {
                    let pct = (sent.load(Ordering::Relaxed).saturating_mul(100) / total.max(1)).min(99);
                    let left = uploads.saturating_sub(files_done.load(Ordering::Relaxed));
                    self.reg.beat(&client, beat::SYNCING, pct as u8, left as u32).await;
                }
            }
        };
        report.uploaded = done.copied;
        report.removed = done.deleted;
        report.failed = done.failed.iter().map(ToString::to_string).collect();
        let status = if report.failed.is_empty() {
            beat::UP_TO_DATE
        } else {
            beat::SYNCING
        };
        self.reg
            .beat(&client, status, 100, report.failed.len() as u32)
            .await;
        Ok(report)
    }

    /// Runs until stopped or removed: a pass now, then after local changes, remote changes
    /// (a pause or removal from another device arrives as one), or a heartbeat's time.
    pub async fn watch(
        &mut self,
        done: &mut (dyn FnMut(&PassReport) + Send),
    ) -> Result<(), SyncError> {
        let mut wake = Wakeups::new(&self.client, &self.local)?;
        let mut failures = 0u32;
        loop {
            let wait = match self.run_once().await {
                Ok(r) => {
                    failures = 0;
                    done(&r);
                    if r.ended {
                        return Ok(());
                    }
                    if r.failed.is_empty() {
                        BEAT_EVERY
                    } else {
                        Duration::from_secs(30)
                    }
                }
                Err(e @ SyncError::Ignore(_)) => {
                    // Waits for the file to be fixed (a local change wakes it).
                    tracing::warn!("backup pass stopped: {e}");
                    BEAT_EVERY
                }
                Err(e) => {
                    failures += 1;
                    let pause = backoff(failures);
                    tracing::warn!(
                        "backup pass failed ({e}); trying again in {} s",
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

    /// Unregisters the backup and does what `copy` says with its folder.
    pub async fn remove(self, copy: RemoteCopy) -> Result<(), SyncError> {
        self.client.remove_backup(&self.reg.id).await?;
        dispose(&self.client, &self.reg.root, copy).await
    }
}

/// What becomes of a removed backup's folder, as MEGA's apps offer it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteCopy {
    /// It stays in the Vault (MEGA's apps list it as a stopped backup).
    Keep,
    /// To the Rubbish Bin's SyncDebris.
    Delete,
    /// Out of the Vault into this folder of the Cloud Drive, where it can be changed.
    MoveTo(NodeHandle),
}

/// Disposes of a backup's folder (`vw:1`: it leaves the Vault).
pub async fn dispose(
    client: &Client,
    root: &NodeHandle,
    copy: RemoteCopy,
) -> Result<(), SyncError> {
    if copy == RemoteCopy::Keep || client.view(|t| t.get(root).is_none()) {
        return Ok(());
    }
    client.allow_vault_writes();
    match copy {
        RemoteCopy::Keep => {}
        RemoteCopy::Delete => client.to_sync_debris(root).await?,
        RemoteCopy::MoveTo(to) => client.move_to(root, &to).await?,
    }
    Ok(())
}
