//! Writes: each handle open for writing owns a staging file under the cache directory (filled
//! from the remote content first unless truncated); `flush`/`fsync`/`release` upload it as the
//! new version of the file and return only after MEGA has it. A staging file holds only
//! ciphertext, under the key of the version it becomes, wrapped with the master key beside it
//! with the MEGA path it is for ([`StagedFile`]): nothing in the cache directory is readable
//! without the account, and a commit uploads the staged bytes as they are. The staging file
//! is deleted after the commit; when a commit fails it is kept (it holds the only copy of the
//! writes), and the next start uploads what a crash or a failed commit left
//! ([`MegaFs::recover_unsaved`]) under a name that never replaces the original.
//!
//! A FLUSH can come at any time (every close of any copy of a descriptor, including one a
//! forked child inherited and closed on exec), so a handle's writes wait while it commits, and
//! a file's commits, renames, unlinks and mtime changes take its commit lock one at a time.
//!
//! A staging file's key serves one upload: after a commit sent it, the first change or commit
//! that follows re-keys the staging file first (its content copied under a fresh key, see
//! [`StagedFile::rekey`]), so every version a handle commits has its own key and nonce, and
//! the local ciphertext never shares a key with content already on the server. Crash
//! recovery re-keys too: a staging file an earlier run left may have been sent.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::attr::Attr;
use super::inodes::Target;
use super::{FsError, MegaFs, OpenFile, Result};
use crate::client::Target as UploadTarget;
use crate::local::names::{tagged_name, unescape_name};
use crate::local::time::{fmt_time_secs, now};
use crate::transfer::{Closed, StagedFile};

/// The staging directory's name under the cache directory.
pub(super) const STAGING_DIR: &str = "staging";

/// Orders the changes of all writers (see [`Writer::last_change`]).
static CHANGE_ORDER: AtomicU64 = AtomicU64::new(0);

/// Write state of an open file.
///
/// Writes and truncations hold `commit` shared; a commit holds it exclusively. So an upload
/// reads a staging file nobody changes meanwhile, and two commits of one handle never run at
/// once.
pub(super) struct Writer {
    /// Positional I/O only, so concurrent writes and a commit never share a file offset.
    /// Replaced (under the exclusive `commit` lock) when it is re-keyed.
    staged: Mutex<Arc<StagedFile>>,
    /// Bumped by every change; `saved` is the change the last commit uploaded.
    changes: AtomicU64,
    /// When it last changed, in the order of every writer's changes (see [`CHANGE_ORDER`]):
    /// of several writers of a file with unsaved changes, the last changed is the file now.
    last_change: AtomicU64,
    saved: AtomicU64,
    /// Explicit mtime from `setattr`, else the time of the commit.
    mtime: Mutex<Option<i64>>,
    /// The file was unlinked while open: its writes are not saved.
    pub(super) unlinked: AtomicBool,
    /// The staging file's on-disk "unsaved" marker is set.
    marked: AtomicBool,
    /// When the first change since the last save was made (Unix seconds; 0: none).
    changed_at: AtomicI64,
    /// Its handle was released and the final commit ran (set under the exclusive `commit`
    /// lock): a change that finds it here (a `truncate` by path that picked this writer just
    /// before) must go to another writer, or it would never be saved.
    closed: AtomicBool,
    /// Its handle was closed with the upload queued (write-back): what the on-disk marker
    /// says, rewritten when a later `setattr` changes the file.
    queued: Mutex<Option<Closed>>,
    /// The write-back upload slot its queued upload holds (see [`super::writeback`]): let go
    /// once the content is sent, so the next file's content goes while this one's node waits
    /// to be made with the others of its folder.
    slot: Mutex<Option<tokio::sync::OwnedSemaphorePermit>>,
    commit: tokio::sync::RwLock<()>,
}

/// Sets a writer's `closed` flag when dropped (at every exit of its final flush, while the
/// exclusive lock, declared before it, is still held).
struct CloseOnDrop<'a>(Option<&'a AtomicBool>);

impl Drop for CloseOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(closed) = self.0 {
            closed.store(true, Ordering::Release);
        }
    }
}

impl Writer {
    fn new(staged: StagedFile, dirty: bool) -> Result<Arc<Writer>> {
        let w = Arc::new(Writer {
            staged: Mutex::new(Arc::new(staged)),
            changes: AtomicU64::new(0),
            last_change: AtomicU64::new(0),
            saved: AtomicU64::new(0),
            mtime: Mutex::new(None),
            unlinked: AtomicBool::new(false),
            marked: AtomicBool::new(false),
            changed_at: AtomicI64::new(0),
            closed: AtomicBool::new(false),
            queued: Mutex::new(None),
            slot: Mutex::new(None),
            commit: tokio::sync::RwLock::new(()),
        });
        if dirty {
            if let Err(e) = w.changing() {
                StagedFile::remove(w.staged().path());
                return Err(e);
            }
            w.changed();
        }
        Ok(w)
    }

    /// Holds a write-back upload slot for the commit to let go of (see `slot`).
    pub(super) fn hold_slot(&self, slot: tokio::sync::OwnedSemaphorePermit) {
        *self.slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(slot);
    }

    /// Lets go of the upload slot, if it holds one.
    pub(super) fn free_slot(&self) {
        self.slot.lock().unwrap_or_else(|e| e.into_inner()).take();
    }

    /// The staging file (the current one: re-keying replaces it).
    pub(super) fn staged(&self) -> Arc<StagedFile> {
        self.staged
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// With the exclusive `commit` lock held: if an upload used the staging file's key,
    /// replaces the file by a copy under a fresh key.
    fn fresh_key(&self, master: &crate::crypto::MasterKey) -> Result<()> {
        let old = self.staged();
        if !old.is_spent() {
            return Ok(());
        }
        let fresh = Arc::new(old.rekey(master)?);
        *self.staged.lock().unwrap_or_else(|e| e.into_inner()) = fresh;
        Ok(())
    }

    /// Takes `commit` shared for a change, re-keying the staging file first (under the
    /// exclusive lock) if a commit used its key. A closed writer is returned as it is: the
    /// caller checks `closed`.
    async fn for_change(
        &self,
        master: &crate::crypto::MasterKey,
    ) -> Result<tokio::sync::RwLockReadGuard<'_, ()>> {
        loop {
            let shared = self.commit.read().await;
            if !self.staged().is_spent() || self.closed.load(Ordering::Acquire) {
                return Ok(shared);
            }
            drop(shared);
            let _exclusive = self.commit.write().await;
            if !self.closed.load(Ordering::Acquire) {
                self.fresh_key(master)?;
            }
        }
    }

    /// Called before a change reaches the staging file: marks it as holding unsaved writes
    /// on disk first, so a crash right after the change still recovers it.
    fn changing(&self) -> Result<()> {
        if !self.unlinked.load(Ordering::Acquire) && !self.marked.swap(true, Ordering::AcqRel) {
            if let Err(e) = self.staged().set_unsaved(true) {
                self.marked.store(false, Ordering::Release);
                return Err(e.into());
            }
            self.changed_at.store(now(), Ordering::Release);
        }
        Ok(())
    }

    /// The mtime `getattr` shows while the file has unsaved writes: the one set explicitly,
    /// else the time of the first unsaved change. It stays the same while the file is being
    /// written: a changing mtime would make the kernel drop the file's cached pages at every
    /// write (which made writing a large file quadratic). The commit sets the real one.
    pub(super) fn shown_mtime(&self) -> i64 {
        self.mtime()
            .unwrap_or_else(|| match self.changed_at.load(Ordering::Acquire) {
                0 => now(),
                t => t,
            })
    }

    /// After a commit with no change since: nothing in the staging file is unsaved.
    fn saved_all(&self) {
        self.changed_at.store(0, Ordering::Release);
        if self.marked.swap(false, Ordering::AcqRel) && self.staged().set_unsaved(false).is_err() {
            // Left set, a crash would recover a copy of what MEGA already has: harmless.
            self.marked.store(true, Ordering::Release);
        }
    }

    pub(super) fn dirty(&self) -> bool {
        !self.unlinked.load(Ordering::Acquire)
            && self.changes.load(Ordering::Acquire) != self.saved.load(Ordering::Acquire)
    }

    fn changed(&self) {
        self.changes.fetch_add(1, Ordering::AcqRel);
        self.last_change.store(
            CHANGE_ORDER.fetch_add(1, Ordering::AcqRel) + 1,
            Ordering::Release,
        );
    }

    pub(super) fn mtime(&self) -> Option<i64> {
        *self.mtime.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_mtime(&self, m: Option<i64>) {
        *self.mtime.lock().unwrap_or_else(|e| e.into_inner()) = m;
    }

    /// Its handle is closed and its upload queued: the writes are synced to disk and marked
    /// closed (with the node they replace), so a crash recovers them as final.
    pub(super) fn queue(&self, base: Option<String>, folders: u32) -> Result<()> {
        let c = Closed {
            base,
            mtime: self.mtime(),
            folders,
        };
        self.staged().set_closed(&c)?;
        *self.queued.lock().unwrap_or_else(|e| e.into_inner()) = Some(c);
        Ok(())
    }

    /// After a change to a queued writer (a `setattr` after the close): its content and the
    /// closed marker are synced again.
    fn requeue(&self) -> Result<()> {
        let mut q = self.queued.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = q.as_mut() {
            c.mtime = self.mtime();
            self.staged().set_closed(c)?;
        }
        Ok(())
    }

    pub(super) fn unlink(&self) {
        self.unlinked.store(true, Ordering::Release);
        // Its writes are discarded: nothing to recover after a crash either.
        self.saved_all();
    }
}

/// A staging file holding writes that are not on MEGA, and the MEGA path it was for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsaved {
    pub staging: PathBuf,
    /// From the key file beside the staging file (absent if it cannot be read).
    pub origin: Option<String>,
}

/// What the start-up recovery did with a staging file an earlier run left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovered {
    /// Uploaded from `staging` (for the file at `origin`) as `saved_as`, then removed.
    Saved {
        staging: PathBuf,
        origin: String,
        saved_as: String,
    },
    /// Kept on disk: it could not be uploaded (or is not this account's).
    Kept { staging: PathBuf, why: String },
    /// Removed: it held nothing MEGA does not have (open for writing but not changed, or
    /// changed and committed before the run ended).
    Unchanged {
        staging: PathBuf,
        origin: Option<String>,
    },
}

/// The folder at the root that receives recovered writes whose folder is gone.
pub const RECOVERY_FOLDER: &str = "Recovered by mega-mount";

impl MegaFs {
    /// The write state of a handle open for writing.
    pub(super) fn writer(&self, fh: u64) -> Option<Arc<Writer>> {
        self.open_files().get(&fh).and_then(|f| f.writer.clone())
    }

    /// A handle of `ino` that is open for writing: `fh` if it is one, else any other.
    fn writer_fh(&self, ino: u64, fh: Option<u64>) -> Option<u64> {
        let open = self.open_files();
        let usable = |o: &OpenFile| {
            o.writer
                .as_ref()
                .is_some_and(|w| !w.closed.load(Ordering::Acquire))
        };
        if let Some(f) = fh.filter(|f| open.get(f).is_some_and(usable)) {
            return Some(f);
        }
        // The newest: with write-back, of two queued closes the later one is the file now.
        open.of_ino(ino)
            .filter(|(_, o)| usable(o))
            .map(|(fh, _)| fh)
            .max()
    }

    /// A writer of `ino` open on some handle: one with unsaved changes; with `any`, else any.
    ///
    /// Of several with changes, the one changed last: with write-back, a file closed twice
    /// has both closes queued, and the later one is its content now — unless a handle
    /// opened before them changed it since (`ftruncate` of an older descriptor).
    pub(super) fn open_writer(&self, ino: u64, any: bool) -> Option<Arc<Writer>> {
        let open = self.open_files();
        let mut writers: Vec<(u64, &Arc<Writer>)> = open
            .of_ino(ino)
            .filter_map(|(fh, f)| Some((fh, f.writer.as_ref()?)))
            .collect();
        writers.sort_by_key(|(fh, _)| std::cmp::Reverse(*fh));
        let dirty = writers
            .iter()
            .filter(|(_, w)| w.dirty())
            .max_by_key(|(_, w)| w.last_change.load(Ordering::Acquire));
        dirty
            .or_else(|| writers.first().filter(|_| any))
            .map(|(_, w)| Arc::clone(w))
    }

    /// Whether the kernel may keep its page cache of `ino` across opens: nobody has it open
    /// for writing here (remote changes invalidate the inode, and a new remote version is a
    /// new inode), and its content has not failed its MAC (an open without this drops the
    /// pages read before the mismatch was known).
    pub fn keep_cache(&self, ino: u64) -> bool {
        self.writer_fh(ino, None).is_none() && !self.content_failed(ino)
    }

    fn new_fh(&self) -> u64 {
        self.next_fh.fetch_add(1, Ordering::Relaxed)
    }

    /// A new staging file (0600) for writes to the file at `origin` (its MEGA path), which is
    /// noted in its header, so that a staging file left by a crash or an abandoned handle
    /// says what it was.
    fn new_staging(&self, origin: &str) -> Result<StagedFile> {
        Ok(self
            .staging
            .create(&self.client.session().master_key, origin)?)
    }

    /// Drops the spare staging files (at unmount: a clean exit leaves nothing behind).
    pub fn clear_spares(&self) {
        self.staging.clear();
    }

    fn unsaved(&self, staging: &Path) -> Unsaved {
        Unsaved {
            staging: staging.to_path_buf(),
            origin: StagedFile::origin_of(staging, &self.client.session().master_key),
        }
    }

    /// Opens a file; with `write`, a staging file is prepared (filled from the remote content
    /// unless `truncate`).
    pub async fn open(&self, ino: u64, write: bool, truncate: bool) -> Result<u64> {
        let (writer, reader) = if write {
            self.writable()?;
            let n = match self.target(ino)? {
                // Created here and not uploaded yet: another handle's staging file is all
                // there is of it.
                Target::Pending { parent, name } => {
                    let origin = self.pending_origin(&parent, &name);
                    let staged = self.new_staging(&origin)?;
                    if !truncate {
                        if let Err(e) = self.copy_staged(ino, &staged) {
                            StagedFile::remove(staged.path());
                            return Err(e);
                        }
                    }
                    let writer = Writer::new(staged, truncate)?;
                    return Ok(self.insert_open(ino, Some(writer), None));
                }
                Target::Node(_) | Target::NewDir { .. } | Target::Virtual(_) => {
                    self.node_of(ino)?
                }
            };
            self.may_change(&n.handle, crate::tree::Access::ReadWrite)?;
            if n.kind.is_container() {
                return Err(FsError::IsDir);
            }
            let origin = self.client.path_of(&n.handle);
            let staged = Arc::new(self.new_staging(&origin)?);
            if !truncate && self.open_writer(ino, false).is_some() {
                // Writes not on MEGA yet (another handle's, or a close whose upload is
                // queued) are the file's content now.
                if let Err(e) = self.copy_staged(ino, &staged) {
                    StagedFile::remove(staged.path());
                    return Err(e);
                }
            } else if !truncate && n.size > 0 {
                let mut filler = staged.filler();
                let filled = match self.client.download(&n.handle, &mut filler, None).await {
                    Ok(()) => filler.finish().map_err(FsError::from),
                    Err(e) => Err(e.into()),
                };
                if let Err(e) = filled {
                    StagedFile::remove(staged.path());
                    return Err(e);
                }
            }
            let staged = Arc::try_unwrap(staged)
                .map_err(|_| FsError::Local("the staging file is still in use".into()))?;
            (Some(Writer::new(staged, truncate)?), None)
        } else {
            match self.node_of(ino) {
                Ok(n) if n.kind.is_container() => return Err(FsError::IsDir),
                Ok(n) => (None, Some(self.reader(&n)?)),
                // Created here and not uploaded yet: nothing to read from MEGA; the staging
                // file is kept for reads after an unlink.
                Err(_) => {
                    let kept = self.staged_content(ino);
                    let fh = self.new_fh();
                    self.open_files().insert(
                        fh,
                        OpenFile {
                            ino,
                            writer: None,
                            reader: None,
                            kept,
                        },
                    );
                    return Ok(fh);
                }
            }
        };
        Ok(self.insert_open(ino, writer, reader))
    }

    /// The staging file holding the content of `ino`, a file not on MEGA: what a read
    /// gives now (the writer with unsaved changes changed last, else any).
    fn staged_content(&self, ino: u64) -> Option<Arc<StagedFile>> {
        self.open_writer(ino, false)
            .or_else(|| self.open_writer(ino, true))
            .map(|w| w.staged())
    }

    /// Registers a new open handle of `ino`.
    fn insert_open(
        &self,
        ino: u64,
        writer: Option<Arc<Writer>>,
        reader: Option<Arc<super::read::Reader>>,
    ) -> u64 {
        let fh = self.new_fh();
        self.open_files().insert(
            fh,
            OpenFile {
                ino,
                writer,
                reader,
                kept: None,
            },
        );
        fh
    }

    /// The MEGA path a file created here will have: `parent`'s path and `name`.
    pub(super) fn pending_origin(&self, parent: &crate::tree::NodeHandle, name: &str) -> String {
        format!("{}/{}", self.dir_path(parent), unescape_name(name))
    }

    /// Copies what another handle open for writing holds of `ino` (the one with unsaved
    /// changes, if any) into a new staging file.
    fn copy_staged(&self, ino: u64, to: &StagedFile) -> Result<()> {
        let Some(from) = self.open_writer(ino, true) else {
            return Ok(());
        };
        const STEP: usize = 1 << 20;
        let mut at = 0u64;
        let from = from.staged();
        loop {
            let data = from.read_at(at, STEP)?;
            if data.is_empty() {
                return Ok(());
            }
            to.write_at(at, &data)?;
            at += data.len() as u64;
        }
    }

    /// Creates a file (not on MEGA until its first flush/release) and opens it for writing;
    /// a new file is stored with `mode`'s permission bits (an existing one keeps its own).
    pub async fn create(&self, parent: u64, name: &str, mode: Option<u32>) -> Result<(Attr, u64)> {
        Self::name_fits(name)?;
        self.writable()?;
        let dir = self.dir_of(parent)?;
        self.may_change(&dir.handle, crate::tree::Access::ReadWrite)?;
        if let Some(existing) = self.child(&dir, name)? {
            if existing.kind.is_container() {
                return Err(FsError::IsDir);
            }
            let ino = self.inodes().ino_of(&existing.handle);
            let fh = self.open(ino, true, true).await?;
            let a = self.getattr(ino)?;
            self.entered(ino, parent, name);
            return Ok((a, fh));
        }
        let ino = match self.pending_entry(&dir.handle, name) {
            Some((_, true)) => return Err(FsError::IsDir),
            Some((ino, false)) => ino,
            None => {
                let ino = self.inodes().pending(dir.handle.clone(), name.to_string());
                if let Some(m) = mode {
                    self.set_pending_mode(ino, m);
                }
                ino
            }
        };
        let origin = self.pending_origin(&dir.handle, name);
        let writer = Writer::new(self.new_staging(&origin)?, true)?;
        let fh = self.insert_open(ino, Some(writer), None);
        let a = self.getattr(ino)?;
        self.entered(ino, parent, name);
        Ok((a, fh))
    }

    /// Writes into the handle's staging file (no global lock: writers of different files, or
    /// of one file at different offsets, proceed at once).
    pub async fn write(&self, fh: u64, offset: u64, data: &[u8]) -> Result<u32> {
        let w = self.writer(fh).ok_or(FsError::Invalid)?;
        let _shared = w.for_change(&self.client.session().master_key).await?;
        w.changing()?;
        w.staged().write_at(offset, data)?;
        // A write after `touch -d` makes the file modified now again.
        w.set_mtime(None);
        w.changed();
        Ok(data.len() as u32)
    }

    /// Truncates or extends a file (`truncate`, `O_TRUNC` via setattr) and/or sets its mtime.
    pub async fn setattr(
        self: &Arc<Self>,
        ino: u64,
        fh: Option<u64>,
        size: Option<u64>,
        mtime: Option<i64>,
    ) -> Result<Attr> {
        if size.is_none() && mtime.is_none() {
            return self.getattr(ino);
        }
        self.writable()?;
        if let Ok(n) = self.node_of(ino) {
            self.may_change(&n.handle, crate::tree::Access::ReadWrite)?;
        }
        'again: loop {
            // Apply it to an open writer of this file if there is one (the kernel does not
            // always pass the handle; with write-back, a closed file whose upload is queued
            // is one), else to a temporary one. Only an mtime, with no unsaved writes:
            // rewrite the fingerprint attribute, no upload.
            let mut writer = self.writer_fh(ino, fh);
            let unsaved = writer
                .and_then(|f| self.writer(f))
                .is_some_and(|w| w.dirty());
            if size.is_none() && !unsaved {
                if self.node_of(ino)?.kind.is_container() {
                    return self.getattr(ino); // folder mtimes are not stored by MEGA
                }
                let _file = self.lock_files(&[ino]).await;
                let n = self.node_of(ino)?;
                // Changing a node's attributes takes full access in a share (MEGA's rule): a
                // read-write member sets a file's mtime by writing it, not by `touch` alone.
                self.may_change(&n.handle, crate::tree::Access::Full)?;
                self.client
                    .set_mtime(&n.handle, mtime.unwrap_or_else(now))
                    .await?;
                return self.getattr(ino);
            }
            let (fh, own) = loop {
                let (fh, own) = match writer {
                    Some(f) => (f, false),
                    None => {
                        if self.node_of(ino)?.kind.is_container() {
                            return Err(FsError::IsDir);
                        }
                        (self.open(ino, true, size == Some(0)).await?, true)
                    }
                };
                let w = self.writer(fh).ok_or(FsError::Invalid)?;
                let _shared = w.for_change(&self.client.session().master_key).await?;
                if w.closed.load(Ordering::Acquire) {
                    // Released (and committed) while we waited: apply it elsewhere (an
                    // mtime alone goes to the node now on MEGA).
                    if size.is_none() {
                        continue 'again;
                    }
                    writer = self.writer_fh(ino, None);
                    continue;
                }
                w.changing()?;
                if let Some(s) = size {
                    w.staged().set_len(s)?;
                    // A truncation changes the file's times now (POSIX), even while its
                    // writes since the last save keep the first change's time.
                    if mtime.is_none() {
                        w.changed_at.store(now(), Ordering::Release);
                    }
                }
                if let Some(m) = mtime {
                    w.set_mtime(Some(m));
                }
                w.changed();
                w.requeue()?;
                break (fh, own);
            };
            if own {
                self.release(fh).await?;
            }
            return self.getattr(ino);
        }
    }

    /// With write-back, a flush (every close of a descriptor) uploads nothing: the release
    /// queues the upload.
    pub async fn flush(&self, fh: u64) -> Result<()> {
        if self.writeback() {
            return Ok(());
        }
        self.flush_handle(fh, false).await
    }

    /// Returns once the file's writes are on MEGA: with write-back, its queued closes first
    /// (they came before), then this handle's writes.
    pub async fn fsync(&self, fh: u64) -> Result<()> {
        let ino = self.open_files().get(&fh).map(|f| f.ino);
        if let Some(ino) = ino {
            self.wait_queued(ino).await;
        }
        self.flush_handle(fh, false).await
    }

    /// [`flush`](Self::flush); with `closing` (the handle's release), the writer is marked
    /// closed under the same exclusive lock, so that no change can land after its last commit.
    pub(super) async fn flush_handle(&self, fh: u64, closing: bool) -> Result<()> {
        let Some((ino, w)) = self
            .open_files()
            .get(&fh)
            .and_then(|f| Some((f.ino, f.writer.clone()?)))
        else {
            return Ok(());
        };
        // In a folder made with write-back: once MEGA has the folder, waited for before any
        // lock is taken (a rename or `setattr` of the file meanwhile does not wait for MEGA).
        if w.dirty() {
            self.settle_parent(ino).await?;
        }
        let _exclusive = w.commit.write().await;
        let _close = CloseOnDrop(closing.then_some(&w.closed));
        let change = w.changes.load(Ordering::Acquire);
        if !w.dirty() {
            return Ok(());
        }
        // Writers of the same file on other handles commit one after the other, each
        // replacing the version the previous one committed; renames and deletions wait too.
        self.running.fetch_add(1, Ordering::AcqRel);
        let result = {
            let _file = self.lock_files(&[ino]).await;
            if w.unlinked.load(Ordering::Acquire) {
                Ok(()) // unlinked while we waited for the lock: nothing to save
            } else {
                self.commit(ino, &w).await
            }
        };
        self.running.fetch_sub(1, Ordering::AcqRel);
        self.idle.notify_waiters();
        result?;
        w.saved.store(change, Ordering::Release);
        w.saved_all();
        Ok(())
    }

    /// What becomes of the content a commit replaces: the new node's previous version; on an
    /// account that turned versions off, with `hard_delete`, deleted (else the client sends
    /// it to the Rubbish Bin).
    fn old_versions(&self) -> crate::client::OldVersions {
        if self.cfg.hard_delete && !self.client.versions_enabled() {
            crate::client::OldVersions::Delete
        } else {
            crate::client::OldVersions::Keep
        }
    }

    /// Uploads a staging file as the new version of `ino`.
    async fn commit(&self, ino: u64, w: &Writer) -> Result<()> {
        // In a folder made with write-back: once MEGA has the folder.
        self.settle_parent(ino).await?;
        let (parent, name, old, mode) = match self.target(ino)? {
            Target::Pending { parent, name } => {
                (parent, unescape_name(&name), None, self.pending_mode(ino))
            }
            Target::NewDir { .. } => return Err(FsError::IsDir),
            Target::Virtual(_) => return Err(FsError::NotPermitted),
            Target::Node(h) => {
                let n = self.client.node(&h).map_err(|_| FsError::NotFound)?;
                (
                    n.parent.clone().ok_or(FsError::NotPermitted)?,
                    n.name.clone(),
                    Some(n.handle),
                    None, // the new version keeps the mode of the one it replaces
                )
            }
        };
        let mtime = w.mtime().unwrap_or_else(now);
        // The previous content becomes the new node's previous version; on an account that
        // turned versions off, it goes where `rm` would send it.
        let how = self.old_versions();
        let target = UploadTarget {
            parent: &parent,
            name: &name,
            replaces: old.as_ref().map(|h| (h, how)),
            mode,
        };
        // An earlier commit of this handle (or a failed attempt) sent this key already.
        w.fresh_key(&self.client.session().master_key)?;
        let sent = self.client.send_staged(target, &w.staged(), mtime).await?;
        // The content is on MEGA: a queued upload's slot goes to the next file while this
        // one's node is made, in one `p` with the others of its folder ready by then.
        w.free_slot();
        let node = self.client.create_sent(target, sent).await?;
        // The inode now means the new version.
        self.inodes().bind(ino, node.handle.clone());
        self.forget_pending_mode(ino);
        if let Some(old) = &old {
            self.cache.purge(old);
        }
        Ok(())
    }

    /// For shutting down: waits until no commit is running (at most `grace`), then returns the
    /// staging files of handles still holding writes that are not on MEGA. Those files stay
    /// on disk (they are the only copy of the writes); the caller logs where they are.
    pub async fn drain(&self, grace: Duration) -> Vec<Unsaved> {
        let deadline = tokio::time::Instant::now() + grace;
        self.wait_queue_empty(deadline).await;
        loop {
            let idle = self.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.running.load(Ordering::Acquire) == 0 {
                break;
            }
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                break;
            }
        }
        let dirty: Vec<PathBuf> = self
            .open_files()
            .values()
            .filter_map(|f| f.writer.as_ref())
            .filter(|w| w.dirty())
            .map(|w| w.staged().path().to_path_buf())
            .collect();
        dirty.iter().map(|p| self.unsaved(p)).collect()
    }

    /// Staging files left by an earlier run that ended before committing them.
    pub fn leftover_staging(&self) -> Vec<Unsaved> {
        let open: Vec<PathBuf> = self
            .open_files()
            .values()
            .filter_map(|f| f.writer.as_ref().map(|w| w.staged().path().to_path_buf()))
            .collect();
        let found: Vec<PathBuf> = std::fs::read_dir(self.cfg.cache_dir.join(STAGING_DIR))
            .map(|rd| {
                rd.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| !open.contains(p) && StagedFile::is_staging(p))
                    .collect()
            })
            .unwrap_or_default();
        found.iter().map(|p| self.unsaved(p)).collect()
    }

    /// Uploads what earlier runs left in staging files (a crash, a failed commit), each as
    /// `NAME (unsaved YYYY-MM-DD HHMMSS).EXT` beside the file it was for (in
    /// [`RECOVERY_FOLDER`] at the root if that folder is gone), never over anything, under a
    /// fresh key (the file is re-keyed first: the run that left it may have sent it), and
    /// removes it locally once MEGA has it.
    pub async fn recover_unsaved(&self) -> Vec<Recovered> {
        let mut out = Vec::new();
        for u in self.leftover_staging() {
            if StagedFile::is_blank(&u.staging) {
                // A spare (or a header never written): nothing in it, nothing to say.
                StagedFile::remove(&u.staging);
                continue;
            }
            if !StagedFile::is_unsaved(&u.staging) {
                StagedFile::remove(&u.staging);
                out.push(Recovered::Unchanged {
                    staging: u.staging,
                    origin: u.origin,
                });
                continue;
            }
            // Where the writes are now (re-keying moves them to a new staging file).
            let mut now_at = u.staging.clone();
            let r = self.recover_one(&u, &mut now_at).await;
            out.push(match r {
                Ok((origin, saved_as)) => {
                    StagedFile::remove(&now_at);
                    Recovered::Saved {
                        staging: u.staging,
                        origin,
                        saved_as,
                    }
                }
                Err(e) => Recovered::Kept {
                    staging: now_at,
                    why: e.to_string(),
                },
            });
        }
        out
    }

    /// Uploads one staging file an earlier run left; `now_at` follows it when it is re-keyed.
    async fn recover_one(&self, u: &Unsaved, now_at: &mut PathBuf) -> Result<(String, String)> {
        let legacy = !StagedFile::has_key(&u.staging);
        let master = &self.client.session().master_key;
        let (staged, origin) = if legacy {
            // Left by a version that staged plaintext, with the path in a note beside it.
            let origin = std::fs::read_to_string(u.staging.with_extension("path"))
                .unwrap_or_else(|_| "/unsaved".into());
            (None, origin)
        } else {
            let (s, o) = StagedFile::open(&u.staging, master)?;
            (Some(s), o)
        };
        let when = std::fs::metadata(&u.staging)
            .ok()
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or_else(now, |d| d.as_secs() as i64);
        let (dir, name) = origin.rsplit_once('/').unwrap_or(("", origin.as_str()));
        let root = self.client.root()?.handle;
        let closed = StagedFile::closed(&u.staging);
        let made_here = closed.as_ref().map_or(0, |c| c.folders);
        let (parent, parent_found) = match self.client.resolve(dir) {
            Ok(n) if n.kind.is_container() => (n.handle, true),
            _ => match self.make_again(dir, made_here).await? {
                Some(h) => (h, true),
                None => (
                    self.client
                        .ensure_folder(&root, RECOVERY_FOLDER)
                        .await?
                        .handle,
                    false,
                ),
            },
        };
        // A file whose handle was closed (write-back) holds final content: it goes in place
        // when that replaces nothing it did not know (its name is free, or the node there is
        // still the one it replaces), else beside it like any unsaved writes.
        let when = closed.as_ref().and_then(|c| c.mtime).unwrap_or(when);
        let in_place = match &closed {
            Some(c) if parent_found => match self
                .client
                .view(|t| t.child_by_name(&parent, name).cloned())
            {
                None => Some(None),
                Some(n) if n.is_file() && Some(&n.handle.0) == c.base.as_ref() => {
                    Some(Some(n.handle.clone()))
                }
                Some(_) => None,
            },
            _ => None,
        };
        if let Some(old) = in_place {
            let how = self.old_versions();
            let target = UploadTarget {
                parent: &parent,
                name,
                replaces: old.as_ref().map(|h| (h, how)),
                mode: None,
            };
            let node = self
                .upload_recovered(target, staged, &u.staging, now_at, when)
                .await?;
            return Ok((origin.clone(), self.client.path_of(&node.handle)));
        }
        let base = tagged_name(name, &format!("unsaved {}", fmt_time_secs(when)));
        let mut saved_as = base.clone();
        for n in 2.. {
            if self
                .client
                .view(|t| t.child_by_name(&parent, &saved_as).is_none())
            {
                break;
            }
            saved_as = tagged_name(&base, &n.to_string());
        }
        let target = UploadTarget {
            parent: &parent,
            name: &saved_as,
            replaces: None,
            mode: None,
        };
        let node = self
            .upload_recovered(target, staged, &u.staging, now_at, when)
            .await?;
        Ok((origin, self.client.path_of(&node.handle)))
    }

    /// The folder `dir` of a file closed with write-back whose last `made_here` folders were
    /// made on the mount and never reached MEGA (the run ended first): made again, if the
    /// folder they were made in is still there. None if there is nothing to make again.
    async fn make_again(
        &self,
        dir: &str,
        made_here: u32,
    ) -> Result<Option<crate::tree::NodeHandle>> {
        let parts: Vec<String> = dir
            .split('/')
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect();
        let made_here = made_here as usize;
        if made_here == 0 || made_here > parts.len() {
            return Ok(None);
        }
        let keep = parts.len() - made_here;
        let base = format!("/{}", parts[..keep].join("/"));
        let start = match self.client.resolve(&base) {
            Ok(n) if n.kind.is_container() => n.handle,
            _ => return Ok(None),
        };
        Ok(Some(self.client.ensure_path(&start, &parts[keep..]).await?))
    }

    /// Uploads a staging file an earlier run left (re-keyed first: that run may have sent
    /// it; `now_at` follows the new file), or a plaintext one of an older version.
    async fn upload_recovered(
        &self,
        target: UploadTarget<'_>,
        staged: Option<StagedFile>,
        path: &Path,
        now_at: &mut PathBuf,
        mtime: i64,
    ) -> Result<crate::tree::Node> {
        Ok(match staged {
            Some(s) => {
                // An upload of this very file the earlier run began (and did not finish) is
                // carried on: the same ciphertext to the same URL, only what the server did
                // not acknowledge. Anything else is sent afresh under a new key.
                let record = StagedFile::upload_record(s.path()).filter(|r| {
                    !r.complete
                        && crate::local::time::now() - r.at
                            < crate::client::resume::URL_LIFETIME_SECS
                        && s.len().ok() == Some(r.size)
                });
                let s = Arc::new(s);
                if let Some(r) = record {
                    match self.client.resume_staged(target, &s, mtime, &r).await {
                        Ok(node) => return Ok(node),
                        Err(e) => tracing::info!(
                            "{}: the interrupted upload cannot be carried on ({e}); sending it afresh",
                            s.path().display()
                        ),
                    }
                }
                let fresh = Arc::new(s.rekey(&self.client.session().master_key)?);
                *now_at = fresh.path().to_path_buf();
                self.client
                    .upload_staged(target, &fresh, mtime, None)
                    .await?
            }
            None => self.client.upload_path_to(target, path, None).await?,
        })
    }

    /// Closes a handle: commits pending writes, then deletes the staging file. If the commit
    /// failed, the staging file is kept (it holds the only copy of the writes) and the error
    /// names it.
    /// With write-back, a handle holding unsaved writes is queued instead (see
    /// [`super::writeback`]); if that fails (the staging file cannot be synced), it is
    /// committed now.
    pub async fn release(self: &Arc<Self>, fh: u64) -> Result<()> {
        if self.writeback() {
            let ino = self.open_files().get(&fh).map(|f| f.ino);
            if let Some(ino) = ino {
                match self.enqueue(ino, fh) {
                    Ok(true) => return Ok(()),
                    Ok(false) => {}
                    Err(e) => tracing::warn!("cannot queue the upload ({e}); uploading now"),
                }
            }
        }
        self.release_now(fh).await
    }

    /// [`release`](Self::release) without write-back.
    pub(super) async fn release_now(&self, fh: u64) -> Result<()> {
        let r = self.flush_handle(fh, true).await;
        let f = self.open_files().remove(&fh);
        let Some(w) = f.and_then(|f| f.writer) else {
            return r;
        };
        let staging = w.staged().path().to_path_buf();
        match r {
            Ok(()) => {
                // Kept for the next staging file if nothing else holds it (a read of
                // unsaved writes that began before the handle left the table).
                match Arc::try_unwrap(w) {
                    Ok(w) => self
                        .staging
                        .retire(w.staged.into_inner().unwrap_or_else(|e| e.into_inner())),
                    Err(_) => StagedFile::remove(&staging),
                }
                Ok(())
            }
            Err(e) => Err(FsError::Unsaved {
                staging,
                source: Box::new(e),
            }),
        }
    }
}
