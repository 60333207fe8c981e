//! Write-back (`-o writeback`, `writeback = true` in the config): `close()` returns once a
//! file's writes are staged — ciphertext under a fresh key, synced to local disk, marked as
//! closed ([`crate::transfer::Closed`]) so that a crash recovers it in place — and the upload
//! runs in the background, several files at once: each close waits `writeback_delay` first
//! (a burst of new files is written before uploads compete with it for the CPU; `fsync`,
//! `fsyncdir` and the drain make it due at once; one unlinked meanwhile is dropped unsent),
//! then holds an upload slot while its content is sent and lets go of it before its node is
//! made with the other new files of its folder (see [`crate::client`]'s `batch`).
//!
//! A closed handle stays in the open-file table until its upload is done, so everything that
//! already treats unsaved writes of an open handle (reads, `getattr`, listings of files not on
//! MEGA yet, renames, unlinks, opening the file again) treats a queued file the same way: as
//! if it were uploaded. Per file, queued closes are uploaded in the order they came, each one
//! (as without write-back) the new version of the file, so the last close wins and the
//! earlier ones are its previous versions. (Dropping a close that a newer one replaces before
//! it was sent would save uploads, but it races a `setattr` landing on the dropped one.) A
//! failed upload is
//! retried with backoff; after the last attempt the staging file stays for the next start's
//! recovery. `fsync()` waits for the file's queued uploads and then uploads its own handle:
//! it still returns only when the file is on MEGA. Unmount and SIGTERM drain the queue (up
//! to `--grace`); `df` counts queued bytes as used, and a status file (`writeback.json` in
//! the cache directory, rewritten at most four times a second) lists what is waiting, by
//! inode number.
//!
//! A `chmod` of a node (tar sets every folder's mode after filling it) is written back too:
//! it returns at once, the mount shows the new mode from then on, and a task per file sends
//! the latest mode asked for (one after the other per file, to the node the file is then:
//! after a new version, the new one). `fsync` of the file and the drain wait for it. A mode
//! MEGA refuses after the last attempt is logged and no longer shown.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use super::inodes::Target;
use super::{MegaFs, Result};

/// The status file's name in the cache directory.
pub const STATUS_FILE: &str = "writeback.json";

/// Attempts at uploading a queued file (or creating a new folder) before it is left to the
/// next start's recovery.
pub(super) const ATTEMPTS: u32 = 8;

/// How long to wait before attempt `attempt + 1` of an upload or a mode change: doubling,
/// at most a minute.
pub(super) fn retry_wait(attempt: u32) -> Duration {
    Duration::from_secs((1u64 << attempt.min(6)).min(60))
}

/// The queue of closed files whose upload is still to come.
pub(super) struct WriteBack {
    state: Mutex<State>,
    /// Woken at every change of the queue (for `fsync`, drain and the status file).
    pub(super) changed: tokio::sync::Notify,
    /// How long a close waits in the queue before its upload starts (see the module doc).
    delay: Duration,
    /// Every queued close is due now (the drain at unmount).
    hurry_all: std::sync::atomic::AtomicBool,
    /// Woken when closes become due before their time (`fsync`, the drain).
    hurry: tokio::sync::Notify,
    /// Contents being sent at once (a file lets go of its slot once its content is on
    /// MEGA, before its node is made).
    slots: Arc<tokio::sync::Semaphore>,
    status: PathBuf,
}

#[derive(Default)]
pub(super) struct State {
    /// By inode: the handle being uploaded and those whose turn comes next, in order.
    files: HashMap<u64, Queued>,
    /// Handles queued or uploading, mode changes and new folders to send.
    pub(super) waiting: usize,
    /// A status file update is scheduled.
    status_due: bool,
    /// The last error of a handle whose upload failed and will be tried again.
    errors: HashMap<u64, (u32, String)>,
    /// When each queued handle was closed.
    queued_at: HashMap<u64, tokio::time::Instant>,
    /// Files whose queued closes are due now (`fsync` waits for them).
    hurried: std::collections::HashSet<u64>,
    /// Modes (permission bits) asked for by `chmod` and not on MEGA yet, by inode.
    modes: HashMap<u64, u32>,
    /// Folders made on the mount and not on MEGA yet (see [`super::newdirs`]).
    pub(super) dirs: super::newdirs::DirQueue,
}

#[derive(Default)]
struct Queued {
    /// A task uploads this file's queue (it exists while the file has an entry).
    worker: bool,
    /// The handle being uploaded (taken from `next` once an upload slot is free).
    running: Option<u64>,
    next: std::collections::VecDeque<u64>,
}

/// One line of the status file.
#[derive(Serialize)]
///
/// Files are named by inode number (`find MOUNT -inum N`), not by path: the cache directory
/// holds nothing that names the user's files in plaintext.
struct StatusEntry {
    ino: u64,
    bytes: u64,
    state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    attempts: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Serialize)]
struct Status {
    waiting: usize,
    bytes: u64,
    files: Vec<StatusEntry>,
}

impl WriteBack {
    pub(super) fn new(parallel: usize, delay: Duration, cache_dir: &std::path::Path) -> WriteBack {
        WriteBack {
            state: Mutex::new(State::default()),
            changed: tokio::sync::Notify::new(),
            delay,
            hurry_all: std::sync::atomic::AtomicBool::new(false),
            hurry: tokio::sync::Notify::new(),
            slots: Arc::new(tokio::sync::Semaphore::new(parallel.max(1))),
            status: cache_dir.join(STATUS_FILE),
        }
    }

    pub(super) fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The handles in the queue: (inode, handle, uploading now).
    fn handles(&self) -> Vec<(u64, u64, bool)> {
        let st = self.state();
        let mut out = Vec::new();
        for (ino, q) in &st.files {
            out.extend(q.running.map(|fh| (*ino, fh, true)));
            out.extend(q.next.iter().map(|fh| (*ino, *fh, false)));
        }
        out
    }
}

impl MegaFs {
    /// Whether closes are written back (see the module doc).
    pub fn writeback(&self) -> bool {
        self.wb.is_some()
    }

    /// Queues the closed handle `fh` of `ino` for upload, after its writes are synced to disk
    /// and marked closed. False (nothing done) if it holds nothing to upload or write-back is
    /// off: the caller releases it now.
    pub(super) fn enqueue(self: &Arc<Self>, ino: u64, fh: u64) -> Result<bool> {
        let Some(wb) = &self.wb else {
            return Ok(false);
        };
        let Some(w) = self.writer(fh) else {
            return Ok(false);
        };
        if !w.dirty() {
            return Ok(false);
        }
        let base = match self.target(ino)? {
            Target::Node(h) => Some(h.0),
            _ => None,
        };
        w.queue(base, self.new_dirs_above(ino))?;
        let start = {
            let mut st = wb.state();
            st.waiting += 1;
            st.queued_at.insert(fh, tokio::time::Instant::now());
            let q = st.files.entry(ino).or_default();
            q.next.push_back(fh);
            let start = !q.worker;
            q.worker = true;
            start
        };
        if start {
            let fs = self.clone();
            tokio::spawn(async move { fs.upload_queue(ino).await });
        }
        self.status_changed();
        Ok(true)
    }

    /// Uploads the queued closes of `ino` one after the other until none is left.
    async fn upload_queue(self: Arc<Self>, ino: u64) {
        let Some(wb) = &self.wb else {
            return;
        };
        loop {
            self.wait_due(wb, ino).await;
            let Ok(slot) = wb.slots.clone().acquire_owned().await else {
                break;
            };
            let fh = {
                let mut st = wb.state();
                let Some(q) = st.files.get_mut(&ino) else {
                    break;
                };
                match q.next.pop_front() {
                    Some(fh) => {
                        q.running = Some(fh);
                        st.queued_at.remove(&fh);
                        fh
                    }
                    None => {
                        st.files.remove(&ino);
                        st.hurried.remove(&ino);
                        break;
                    }
                }
            };
            self.status_changed();
            let mut attempt = 1;
            let mut slot = Some(slot);
            loop {
                // A slot for each attempt (none is held while waiting to try again).
                let held = match slot.take() {
                    Some(held) => held,
                    None => match wb.slots.clone().acquire_owned().await {
                        Ok(held) => held,
                        Err(_) => break,
                    },
                };
                if let Some(w) = self.writer(fh) {
                    w.hold_slot(held);
                }
                let sent = self.flush_handle(fh, false).await;
                if let Some(w) = self.writer(fh) {
                    w.free_slot();
                }
                match sent {
                    Ok(()) => break,
                    Err(e) if attempt < ATTEMPTS => {
                        let wait = retry_wait(attempt);
                        tracing::warn!(
                            "{}: upload failed ({e}); trying again in {} s",
                            self.shown_path(ino),
                            wait.as_secs()
                        );
                        wb.state().errors.insert(fh, (attempt, e.to_string()));
                        self.status_changed();
                        tokio::time::sleep(wait).await;
                        attempt += 1;
                    }
                    Err(_) => break, // the release below fails and keeps the staging file
                }
            }
            if let Err(e) = self.release_now(fh).await {
                tracing::error!(
                    "{}: the file could not be uploaded after {attempt} attempts ({e}); the next start uploads it",
                    self.shown_path(ino)
                );
            }
            {
                let mut st = wb.state();
                st.waiting = st.waiting.saturating_sub(1);
                st.errors.remove(&fh);
                if let Some(q) = st.files.get_mut(&ino) {
                    q.running = None;
                }
            }
            self.drop_ino(ino);
            self.status_changed();
        }
        self.status_changed();
    }

    /// Waits until the next queued close of `ino` is due: [`WriteBack::delay`] after it was
    /// queued, or at once once hurried.
    async fn wait_due(&self, wb: &WriteBack, ino: u64) {
        loop {
            let hurry = wb.hurry.notified();
            tokio::pin!(hurry);
            hurry.as_mut().enable();
            let due = {
                let st = wb.state();
                if wb.hurry_all.load(std::sync::atomic::Ordering::Acquire)
                    || st.hurried.contains(&ino)
                {
                    return;
                }
                let next = st.files.get(&ino).and_then(|q| q.next.front().copied());
                match next.and_then(|fh| Some((fh, *st.queued_at.get(&fh)?))) {
                    Some((fh, at)) => (fh, at + wb.delay),
                    None => return,
                }
            };
            let (fh, due) = due;
            // Removed meanwhile: nothing to wait for, it is only dropped.
            if self
                .writer(fh)
                .is_none_or(|w| w.unlinked.load(std::sync::atomic::Ordering::Acquire))
            {
                return;
            }
            if tokio::time::Instant::now() >= due {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(due) => {}
                _ = hurry => {}
            }
        }
    }

    /// Makes the queued closes of `ino` (of every file, with `None`) due now.
    pub(super) fn hurry(&self, ino: Option<u64>) {
        let Some(wb) = &self.wb else {
            return;
        };
        match ino {
            Some(ino) => {
                let mut st = wb.state();
                if st.files.contains_key(&ino) {
                    st.hurried.insert(ino);
                }
            }
            None => wb
                .hurry_all
                .store(true, std::sync::atomic::Ordering::Release),
        }
        wb.hurry.notify_waiters();
    }

    /// Waits until no close or mode change of `ino` is queued or being sent (its queued
    /// closes are due at once).
    pub(super) async fn wait_queued(&self, ino: u64) {
        self.hurry(Some(ino));
        self.wait_queue(None, |st| {
            !st.files.contains_key(&ino) && !st.modes.contains_key(&ino)
        })
        .await;
    }

    /// With write-back, queues `chmod` of the node `ino` (its permission bits); nothing if
    /// write-back is off.
    pub(super) fn queue_mode(self: &Arc<Self>, ino: u64, perm: u32) {
        let Some(wb) = &self.wb else {
            return;
        };
        let start = {
            let mut st = wb.state();
            let start = st.modes.insert(ino, perm).is_none();
            if start {
                st.waiting += 1;
            }
            start
        };
        if start {
            let fs = self.clone();
            tokio::spawn(async move { fs.send_modes(ino).await });
        }
        self.status_changed();
    }

    /// The permission bits a queued `chmod` of `ino` set, until MEGA has them.
    pub(super) fn queued_mode(&self, ino: u64) -> Option<u32> {
        self.wb.as_ref()?.state().modes.get(&ino).copied()
    }

    /// Sends the queued mode of `ino` until the one on MEGA is the last one asked for.
    async fn send_modes(self: Arc<Self>, ino: u64) {
        let Some(wb) = &self.wb else {
            return;
        };
        let mut attempt = 1;
        loop {
            let Some(perm) = wb.state().modes.get(&ino).copied() else {
                return;
            };
            let sent = {
                // After any commit of the file (it names the node the mode goes to).
                let _file = self.lock_files(&[ino]).await;
                match self.target(ino) {
                    Ok(Target::Node(h)) => self
                        .client
                        .set_mode(&h, perm)
                        .await
                        .map_err(|e| e.to_string()),
                    // Unlinked meanwhile, or not a node (it was one when queued).
                    _ => Ok(()),
                }
            };
            let done = match sent {
                Ok(()) => true,
                Err(e) if attempt < ATTEMPTS => {
                    let wait = retry_wait(attempt);
                    tracing::warn!(
                        "{}: changing the mode failed ({e}); trying again in {} s",
                        self.shown_path(ino),
                        wait.as_secs()
                    );
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                    false
                }
                Err(e) => {
                    tracing::error!(
                        "{}: the mode could not be changed after {attempt} attempts ({e})",
                        self.shown_path(ino)
                    );
                    // Dropped below unless a newer chmod came meanwhile (that one is tried).
                    true
                }
            };
            if done {
                let mut st = wb.state();
                // A chmod that came meanwhile is sent next.
                if st.modes.get(&ino) == Some(&perm) {
                    st.modes.remove(&ino);
                }
                if !st.modes.contains_key(&ino) {
                    st.waiting = st.waiting.saturating_sub(1);
                    drop(st);
                    self.status_changed();
                    return;
                }
                attempt = 1;
            }
        }
    }

    /// Waits until the queue is empty, at most until `deadline`.
    pub(super) async fn wait_queue_empty(&self, deadline: tokio::time::Instant) {
        self.hurry(None);
        self.wait_queue(Some(deadline), |st| st.waiting == 0).await;
    }

    /// Waits until `done` holds of the queue (or `deadline` passes).
    async fn wait_queue(
        &self,
        deadline: Option<tokio::time::Instant>,
        done: impl Fn(&State) -> bool,
    ) {
        let Some(wb) = &self.wb else {
            return;
        };
        loop {
            let changed = wb.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if done(&wb.state()) {
                return;
            }
            match deadline {
                Some(d) => {
                    if tokio::time::timeout_at(d, changed).await.is_err() {
                        return;
                    }
                }
                None => changed.await,
            }
        }
    }

    /// Bytes in the queue (what `df` counts as used beyond what MEGA reports).
    pub(super) fn queued_bytes(&self) -> u64 {
        let Some(wb) = &self.wb else {
            return 0;
        };
        wb.handles()
            .into_iter()
            .filter_map(|(_, fh, _)| self.writer(fh))
            .filter(|w| w.dirty())
            .filter_map(|w| w.staged().len().ok())
            .sum()
    }

    /// Wakes the queue's waiters and schedules a rewrite of the status file.
    pub(super) fn status_changed(self: &Arc<Self>) {
        let Some(wb) = &self.wb else {
            return;
        };
        wb.changed.notify_waiters();
        {
            let mut st = wb.state();
            if st.status_due {
                return;
            }
            st.status_due = true;
        }
        let fs = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(250)).await;
            if let Some(wb) = &fs.wb {
                wb.state().status_due = false;
            }
            if let Err(e) = fs.write_status() {
                tracing::debug!("cannot write the write-back status file: {e}");
            }
        });
    }

    /// Writes the status file now (also at start, so a stale one never stays).
    pub fn write_status(&self) -> std::io::Result<()> {
        let Some(wb) = &self.wb else {
            return Ok(());
        };
        let errors = wb.state().errors.clone();
        let mut files: Vec<StatusEntry> = wb
            .handles()
            .into_iter()
            // An unlinked file waits only to be dropped.
            .filter_map(|(ino, fh, running)| Some((ino, fh, running, self.writer(fh)?)))
            .filter(|(.., w)| w.dirty())
            .map(|(ino, fh, running, w)| {
                let err = errors.get(&fh);
                StatusEntry {
                    ino,
                    bytes: w.staged().len().unwrap_or(0),
                    state: match (running, err) {
                        (true, Some(_)) => "retrying",
                        (true, None) => "uploading",
                        (false, _) => "queued",
                    },
                    attempts: err.map(|e| e.0),
                    error: err.map(|e| e.1.clone()),
                }
            })
            .collect();
        let modes: Vec<u64> = wb.state().modes.keys().copied().collect();
        files.extend(modes.into_iter().map(|ino| StatusEntry {
            ino,
            bytes: 0,
            state: "mode",
            attempts: None,
            error: None,
        }));
        let dirs = wb.state().dirs.inodes();
        files.extend(dirs.into_iter().map(|(ino, failed)| StatusEntry {
            ino,
            bytes: 0,
            state: if failed.is_some() {
                "folder failed"
            } else {
                "folder"
            },
            attempts: failed.as_ref().map(|_| ATTEMPTS),
            error: failed,
        }));
        files.sort_by_key(|f| f.ino);
        let status = Status {
            waiting: files.len(),
            bytes: files.iter().map(|f| f.bytes).sum(),
            files,
        };
        let text = serde_json::to_vec_pretty(&status).map_err(std::io::Error::other)?;
        let tmp = wb.status.with_extension("json.new");
        let _ = std::fs::remove_file(&tmp);
        {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&text)?;
        }
        std::fs::rename(&tmp, &wb.status)
    }

    /// The MEGA path of a file as the mount shows it now (for logs and the status file).
    fn shown_path(&self, ino: u64) -> String {
        match self.target(ino) {
            Ok(Target::Node(h)) => self.client.path_of(&h),
            Ok(Target::Pending { parent, name } | Target::NewDir { parent, name, .. }) => {
                self.pending_origin(&parent, &name)
            }
            _ => "(deleted)".into(),
        }
    }
}
