//! Running a two-way sync pair: scanning both sides, planning against the shadow, executing
//! the plan with every action journaled, and (`--watch`) doing it again whenever the local
//! folder (inotify) or the remote tree (the `sc` event channel) changes.

use std::collections::BTreeMap;

use futures::StreamExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::client::{self, Client, TreeEvent};
use crate::names::{escape_name, unescape_name};
use crate::tree::NodeHandle;

use super::ignore::{is_partial, Ignore, DEBRIS};
use super::plan::{self, Action, Local, Remote, Shadow};
use super::shadow::{ShadowDb, ShadowError, Update};

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
    pub deferred: usize,
    /// Actions that failed (the rest went on); the run exits non-zero.
    pub errors: Vec<String>,
    /// Actions a previous run journaled and never finished (it was killed).
    pub interrupted: Vec<String>,
}

impl Report {
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
    Client(#[from] client::Error),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("watching {path}: {msg}")]
    Watch { path: String, msg: String },
}

fn io_err(path: &Path, source: std::io::Error) -> SyncError {
    SyncError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// One local folder kept in sync with one MEGA folder.
pub struct Syncer {
    client: Arc<Client>,
    local: PathBuf,
    remote: NodeHandle,
    db: ShadowDb,
    opts: SyncOptions,
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

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

fn join_rel(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}/{name}")
    }
}

fn split_rel(rel: &str) -> (&str, &str) {
    match rel.rfind('/') {
        Some(i) => (&rel[..i], &rel[i + 1..]),
        None => ("", rel),
    }
}

/// `name (conflict YYYY-MM-DD HHMMSS).ext`, in UTC.
pub fn conflict_name(name: &str, now: i64) -> String {
    let (stem, ext) = match name.rfind('.') {
        Some(i) if i > 0 => (&name[..i], &name[i..]),
        _ => (name, ""),
    };
    let t = crate::cli::files::fmt_time_secs(now);
    format!("{stem} (conflict {t}){ext}")
}

/// A file that changed after the plan was made: the action waits for the next pass.
fn changed_meanwhile(path: &Path) -> SyncError {
    io_err(
        path,
        std::io::Error::other("changed while syncing; it will be synced in the next pass"),
    )
}

/// The agreed state of a file after a transfer: the node, and the local (size, mtime, inode).
fn file_shadow(
    rel: &str,
    node: &crate::tree::Node,
    (size, mtime, inode): (u64, i64, u64),
) -> Shadow {
    Shadow {
        path: rel.to_string(),
        dir: false,
        size,
        mtime,
        rmtime: node.mtime,
        handle: node.handle.0.clone(),
        inode,
        crc: node.fingerprint.map(|f| hex(&f.crc)),
    }
}

fn mtime_of(meta: &std::fs::Metadata) -> i64 {
    crate::cli::files::mtime_of(meta)
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
        Ok(Syncer {
            client,
            local,
            remote,
            db,
            opts,
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
        self.remove_partials();
        for pass in 0..3 {
            let ignore = Ignore::load(&self.local).map_err(|e| io_err(&self.local, e))?;
            let remote = self.scan_remote(&ignore);
            let mut local = self.scan_local(&ignore)?;
            let shadow = self.db.entries()?;
            let need = plan::needs_fingerprint(&local, &remote, &shadow);
            for l in local.iter_mut().filter(|l| need.contains(&l.path)) {
                l.crc = self.local_crc(&l.path, l.size).ok();
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
                let mut pending = futures::stream::FuturesUnordered::new();
                let mut queue = batch.iter();
                loop {
                    while pending.len() < self.opts.parallel.max(1) {
                        match queue.next() {
                            Some(a) => pending.push(self.execute_tagged(a, &l, &r)),
                            None => break,
                        }
                    }
                    match pending.next().await {
                        Some(done) => results.push(done),
                        None => break,
                    }
                }
                for (a, res) in results {
                    match res {
                        Ok(()) => report.count(a),
                        Err(e) => report.errors.push(format!("{}: {e}", a.path())),
                    }
                }
            }
            if !changed || pass == 2 || !report.errors.is_empty() {
                break;
            }
        }
        Ok(report)
    }

    /// Runs until the process is stopped: a reconciliation now, then again after local or
    /// remote changes (or, with files waiting to settle, after the settle time).
    pub async fn watch(
        &mut self,
        show: &mut (dyn FnMut(&Action) + Send),
        done: &mut (dyn FnMut(&Report) + Send),
    ) -> Result<(), SyncError> {
        use notify::Watcher;
        let werr = |e: notify::Error| SyncError::Watch {
            path: self.local.display().to_string(),
            msg: e.to_string(),
        };
        let (tx, mut local_events) = tokio::sync::mpsc::channel::<()>(1);
        let debris = self.local.join(DEBRIS);
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
            .watch(&self.local, notify::RecursiveMode::Recursive)
            .map_err(werr)?;
        let mut remote_events = self.client.watch()?;
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
                Err(e @ (SyncError::TooManyDeletes { .. } | SyncError::Shadow(_))) => {
                    return Err(e)
                }
                Err(e) => {
                    failures += 1;
                    let pause = Duration::from_secs(2u64.saturating_pow(failures.min(6)));
                    tracing::warn!(
                        "sync pass failed ({e}); trying again in {} s",
                        pause.as_secs()
                    );
                    pause
                }
            };
            tokio::select! {
                _ = local_events.recv() => {}
                ev = remote_events.events.recv() => match ev {
                    Some(TreeEvent::Changed(_)) | Some(TreeEvent::Reloaded) => {}
                    Some(TreeEvent::Stopped(why)) => {
                        return Err(SyncError::Client(client::Error::Io(std::io::Error::other(
                            format!("remote changes are no longer followed: {why}"),
                        ))))
                    }
                    None => return Ok(()),
                },
                _ = tokio::time::sleep(wait) => {}
            }
            // Let a burst of changes (a copy, an editor's save) arrive, then run once.
            tokio::time::sleep(Duration::from_millis(300)).await;
            while local_events.try_recv().is_ok() {}
            while let Ok(Some(_)) =
                tokio::time::timeout(Duration::ZERO, remote_events.events.recv()).await
            {
            }
        }
    }

    // ---- scanning ----

    fn scan_remote(&self, ignore: &Ignore) -> Vec<Remote> {
        let tree = self.client.read_tree();
        let mut out = Vec::new();
        let mut stack = vec![(self.remote.clone(), String::new())];
        while let Some((h, rel)) = stack.pop() {
            let mut kids = tree.children(&h);
            // Oldest first: of duplicate names, the oldest node is the one synced.
            kids.sort_by(|a, b| (a.ctime, &a.handle.0).cmp(&(b.ctime, &b.handle.0)));
            for n in kids {
                if n.undecryptable.is_some() {
                    continue;
                }
                let path = join_rel(&rel, &escape_name(&n.name));
                let dir = n.kind.is_container();
                if ignore.is_ignored(&path, dir) {
                    continue;
                }
                if dir {
                    stack.push((n.handle.clone(), path.clone()));
                }
                out.push(Remote {
                    path,
                    dir,
                    size: n.size,
                    mtime: n.mtime,
                    handle: n.handle.0.clone(),
                    crc: n.fingerprint.map(|f| hex(&f.crc)),
                });
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        // MEGA allows duplicate names; the oldest is synced, the others are left alone.
        out.dedup_by(|b, a| a.path == b.path);
        out
    }

    fn scan_local(&self, ignore: &Ignore) -> Result<Vec<Local>, SyncError> {
        use std::os::unix::fs::MetadataExt;
        let settle_before = SystemTime::now()
            .checked_sub(self.opts.settle)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let mut out = Vec::new();
        let mut stack = vec![(self.local.clone(), String::new())];
        while let Some((dir, rel)) = stack.pop() {
            let entries = std::fs::read_dir(&dir).map_err(|e| io_err(&dir, e))?;
            for ent in entries {
                let ent = ent.map_err(|e| io_err(&dir, e))?;
                let name = ent.file_name().to_string_lossy().into_owned();
                let path = join_rel(&rel, &name);
                let Ok(meta) = std::fs::symlink_metadata(ent.path()) else {
                    continue; // gone meanwhile
                };
                if !meta.is_dir() && !meta.is_file() {
                    continue; // symbolic links, sockets, devices are not synced
                }
                if ignore.is_ignored(&path, meta.is_dir()) {
                    continue;
                }
                if meta.is_dir() {
                    stack.push((ent.path(), path.clone()));
                }
                out.push(Local {
                    path,
                    dir: meta.is_dir(),
                    size: if meta.is_dir() { 0 } else { meta.len() },
                    mtime: mtime_of(&meta),
                    inode: meta.ino(),
                    settled: meta.is_dir() || meta.modified().is_ok_and(|t| t <= settle_before),
                    crc: None,
                });
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    fn local_crc(&self, rel: &str, size: u64) -> std::io::Result<String> {
        let mut f = std::fs::File::open(self.local.join(rel))?;
        Ok(hex(&crate::crypto::fingerprint::crc(&mut f, size)?))
    }

    /// Removes partial downloads a killed run left behind (ours only).
    fn remove_partials(&self) {
        let mut stack = vec![self.local.clone()];
        while let Some(dir) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(&dir) else {
                continue;
            };
            for ent in rd.flatten() {
                let name = ent.file_name().to_string_lossy().into_owned();
                match ent.file_type() {
                    Ok(t) if t.is_dir() && !(dir == self.local && name == DEBRIS) => {
                        stack.push(ent.path())
                    }
                    Ok(t) if t.is_file() && is_partial(&name) && name.contains(".megasync-") => {
                        let _ = std::fs::remove_file(ent.path());
                    }
                    _ => {}
                }
            }
        }
    }

    // ---- executing ----

    /// The remote folder at `rel` (it must exist: folders are created before their contents).
    fn remote_dir(&self, rel: &str) -> Result<NodeHandle, SyncError> {
        let mut h = self.remote.clone();
        if rel.is_empty() {
            return Ok(h);
        }
        let tree = self.client.read_tree();
        for part in rel.split('/') {
            // The same choice among duplicate names as everywhere: the oldest.
            h = tree
                .child_by_name(&h, &unescape_name(part))
                .filter(|n| n.kind.is_container())
                .map(|n| n.handle.clone())
                .ok_or_else(|| {
                    SyncError::Client(client::Error::Tree(crate::tree::TreeError::NotFound(
                        rel.to_string(),
                    )))
                })?;
        }
        Ok(h)
    }

    fn local_state(&self, rel: &str) -> Result<(u64, i64, u64), SyncError> {
        use std::os::unix::fs::MetadataExt;
        let p = self.local.join(rel);
        let m = std::fs::symlink_metadata(&p).map_err(|e| io_err(&p, e))?;
        Ok((if m.is_dir() { 0 } else { m.len() }, mtime_of(&m), m.ino()))
    }

    /// Moves a local file or folder into `.debris/YYYY-MM-DD/` (same relative path; a
    /// numbered name if that is taken).
    fn to_debris(&self, rel: &str) -> Result<(), SyncError> {
        let day = crate::cli::files::fmt_time_secs(super::now());
        let day = day.split(' ').next().unwrap_or("debris").to_string();
        let mut target = self.local.join(DEBRIS).join(day).join(rel);
        if let Some(dir) = target.parent() {
            std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        }
        let base = target.clone();
        let mut n = 1;
        while target.symlink_metadata().is_ok() {
            target = PathBuf::from(format!("{} ({n})", base.display()));
            n += 1;
        }
        let src = self.local.join(rel);
        std::fs::rename(&src, &target).map_err(|e| io_err(&src, e))
    }

    fn shadow_of(&self, rel: &str, remote: &Remote, size: u64, mtime: i64, inode: u64) -> Shadow {
        Shadow {
            path: rel.to_string(),
            dir: remote.dir,
            size,
            mtime,
            rmtime: remote.mtime,
            handle: remote.handle.clone(),
            inode,
            crc: remote.crc.clone(),
        }
    }

    async fn upload(&self, rel: &str, scanned: Option<&Local>) -> Result<Shadow, SyncError> {
        let (parent, name) = split_rel(rel);
        let parent = self.remote_dir(parent)?;
        let p = self.local.join(rel);
        let (size, mtime, inode) = self.local_state(rel)?;
        if scanned.is_some_and(|l| (l.size, l.mtime) != (size, mtime)) {
            return Err(changed_meanwhile(&p));
        }
        let mut f = tokio::fs::File::open(&p).await.map_err(|e| io_err(&p, e))?;
        let node = self
            .client
            .upload(&parent, &unescape_name(name), &mut f, size, mtime, None)
            .await?;
        Ok(file_shadow(rel, &node, (size, mtime, inode)))
    }

    /// Downloads a node to `rel` through a partial file renamed into place after the MAC
    /// verified; a local file already there (as scanned) goes to debris first.
    async fn download(
        &self,
        rel: &str,
        handle: &str,
        scanned: Option<&Local>,
    ) -> Result<Shadow, SyncError> {
        let node = self.client.node(&NodeHandle(handle.to_string()))?;
        let target = self.local.join(rel);
        let dir = target.parent().unwrap_or(&self.local).to_path_buf();
        std::fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
        let (partial, file) = crate::cli::files::TempFile::create_tagged(&target, "megasync")
            .map_err(|e| io_err(&target, e))?;
        let mut out = tokio::fs::File::from_std(file);
        self.client.download(&node.handle, &mut out, None).await?;
        let p = partial.path().to_path_buf();
        tokio::io::AsyncWriteExt::flush(&mut out)
            .await
            .map_err(|e| io_err(&p, e))?;
        out.sync_all().await.map_err(|e| io_err(&p, e))?;
        drop(out);
        if let Ok(m) = std::fs::symlink_metadata(&target) {
            // The file we are replacing must still be what the plan saw.
            if scanned.is_none_or(|l| (l.size, l.mtime) != (m.len(), mtime_of(&m))) {
                return Err(changed_meanwhile(&target));
            }
            self.to_debris(rel)?;
        }
        // Renamed into place only now: the MAC verified (else `download` failed and the
        // partial file removed itself).
        partial
            .persist(&target, node.mtime)
            .map_err(|e| io_err(&target, e))?;
        Ok(file_shadow(rel, &node, self.local_state(rel)?))
    }

    async fn execute_tagged<'a>(
        &self,
        a: &'a Action,
        l: &BTreeMap<String, Local>,
        r: &BTreeMap<String, Remote>,
    ) -> (&'a Action, Result<(), SyncError>) {
        (a, self.execute(a, l, r).await)
    }

    /// Runs one action between its two journal entries.
    async fn execute(
        &self,
        a: &Action,
        l: &BTreeMap<String, Local>,
        r: &BTreeMap<String, Remote>,
    ) -> Result<(), SyncError> {
        if let Action::Defer { .. } = a {
            return Ok(());
        }
        let id = self.db.begin(&format!("{a:?}"))?;
        match self.apply(a, l, r).await {
            Ok(updates) => self.db.finish(id, &updates)?,
            Err(e) => {
                // Failed, not interrupted: nothing to record, nothing to report next time.
                self.db.finish(id, &[])?;
                return Err(e);
            }
        }
        Ok(())
    }

    /// Runs one action; returns the shadow updates it implies.
    async fn apply(
        &self,
        a: &Action,
        l: &BTreeMap<String, Local>,
        r: &BTreeMap<String, Remote>,
    ) -> Result<Vec<Update>, SyncError> {
        Ok(match a {
            Action::MoveLocal { from, to } => {
                let (src, dst) = (self.local.join(from), self.local.join(to));
                if let Some(dir) = dst.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
                }
                if dst.symlink_metadata().is_ok() {
                    return Err(io_err(&dst, std::io::ErrorKind::AlreadyExists.into()));
                }
                std::fs::rename(&src, &dst).map_err(|e| io_err(&src, e))?;
                vec![Update::Move {
                    from: from.clone(),
                    to: to.clone(),
                }]
            }
            Action::MoveRemote { from, to, handle } => {
                let h = NodeHandle(handle.clone());
                let (from_parent, from_name) = split_rel(from);
                let (to_parent, to_name) = split_rel(to);
                if from_parent != to_parent {
                    let dest = self.remote_dir(to_parent)?;
                    self.client.move_to(&h, &dest).await?;
                }
                if from_name != to_name {
                    self.client.rename(&h, &unescape_name(to_name)).await?;
                }
                vec![Update::Move {
                    from: from.clone(),
                    to: to.clone(),
                }]
            }
            Action::MkdirLocal { path } => {
                let p = self.local.join(path);
                std::fs::create_dir_all(&p).map_err(|e| io_err(&p, e))?;
                let (_, _, inode) = self.local_state(path)?;
                match r.get(path) {
                    Some(re) => vec![Update::Put(self.shadow_of(path, re, 0, 0, inode))],
                    None => vec![],
                }
            }
            Action::MkdirRemote { path } => {
                let (parent, name) = split_rel(path);
                let parent = self.remote_dir(parent)?;
                let node = self
                    .client
                    .ensure_folder(&parent, &unescape_name(name))
                    .await?;
                let (_, _, inode) = self.local_state(path)?;
                vec![Update::Put(Shadow {
                    path: path.clone(),
                    dir: true,
                    size: 0,
                    mtime: 0,
                    rmtime: 0,
                    handle: node.handle.0,
                    inode,
                    crc: None,
                })]
            }
            Action::Upload { path, replace } => {
                let s = self.upload(path, l.get(path)).await?;
                if let Some(old) = replace {
                    self.client.trash(&NodeHandle(old.clone())).await?;
                }
                vec![Update::Put(s)]
            }
            Action::Download { path, handle } => {
                let s = self.download(path, handle, l.get(path)).await?;
                vec![Update::Put(s)]
            }
            Action::Conflict { path, handle } => {
                // Keep both: the local version under a conflict name (uploaded as such), the
                // remote version under the name.
                let (dir, name) = split_rel(path);
                let mut renamed = join_rel(dir, &conflict_name(name, super::now()));
                for n in 2.. {
                    if self.local.join(&renamed).symlink_metadata().is_err() {
                        break;
                    }
                    let base = conflict_name(name, super::now());
                    renamed = join_rel(dir, &format!("{base} {n}"));
                }
                let (src, dst) = (self.local.join(path), self.local.join(&renamed));
                std::fs::rename(&src, &dst).map_err(|e| io_err(&src, e))?;
                let mut updates = Vec::new();
                if !dst.is_dir() {
                    updates.push(Update::Put(self.upload(&renamed, None).await?));
                }
                let down = match r.get(path) {
                    Some(re) if re.dir => {
                        std::fs::create_dir_all(&src).map_err(|e| io_err(&src, e))?;
                        let (_, _, inode) = self.local_state(path)?;
                        self.shadow_of(path, re, 0, 0, inode)
                    }
                    _ => self.download(path, handle, None).await?,
                };
                updates.push(Update::Put(down));
                updates
            }
            Action::DeleteRemote { path, handle, .. } => {
                self.client.trash(&NodeHandle(handle.clone())).await?;
                vec![Update::Remove(path.clone())]
            }
            Action::DeleteLocal { path, .. } => {
                self.to_debris(path)?;
                vec![Update::Remove(path.clone())]
            }
            Action::Record { path } => match (l.get(path), r.get(path)) {
                (Some(le), Some(re)) => {
                    vec![Update::Put(
                        self.shadow_of(path, re, le.size, le.mtime, le.inode),
                    )]
                }
                _ => vec![],
            },
            Action::Forget { path } => vec![Update::Remove(path.clone())],
            Action::Defer { .. } => vec![],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflict_names_keep_the_extension_and_say_when() {
        let t = 1_700_000_000; // 2023-11-14 22:13:20 UTC
        assert_eq!(
            conflict_name("report.pdf", t),
            "report (conflict 2023-11-14 221320).pdf"
        );
        assert_eq!(
            conflict_name("archive.tar.gz", t),
            "archive.tar (conflict 2023-11-14 221320).gz"
        );
        assert_eq!(
            conflict_name("Makefile", t),
            "Makefile (conflict 2023-11-14 221320)"
        );
        assert_eq!(
            conflict_name(".bashrc", t),
            ".bashrc (conflict 2023-11-14 221320)"
        );
    }

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
