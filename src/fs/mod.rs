//! `MegaFs`: the filesystem logic of the mount, in async Rust and without any FUSE types, so
//! it is tested without a kernel. The `fuse` module is a thin adapter over it.
//!
//! * [`error`]: [`FsError`] by meaning and the errno table.
//! * [`attr`]: what `getattr` reports (including unsaved local changes).
//! * [`dirs`]: folders as shown (escaped names, duplicates disambiguated: the oldest keeps
//!   the name, the others are shown as `stem (HANDLE).ext`), lookups, and what the kernel
//!   must forget after remote changes.
//! * [`namespace`]: mkdir, unlink, rmdir, rename, and the per-file commit locks.
//! * [`posix`]: modes (`chmod`, the mode of new files and folders) and symbolic links.
//! * [`read`]: reads through the [`cache::BlockCache`] with a read-ahead window fetched in
//!   the background; content comes verified from the client ([`crate::transfer::Content`]),
//!   and a file whose MAC failed reads as EIO.
//! * [`write`]: writes land in a staging file under the cache directory;
//!   `flush`/`fsync`/`release` upload it as the new version and only then return.
//! * [`writeback`]: with `-o writeback`, `release` queues the upload instead and returns
//!   once the staging file is synced; the queue uploads in the background.
//! * [`newdirs`]: with `-o writeback`, `mkdir` returns at once and the new folders are
//!   created on MEGA in the background, many in one request.
//! * [`inodes`]: inode numbers (stable, never reused while mounted).
//! * [`shared`]: the virtual `Shared with me` folder and access levels inside shares.
//! * [`special`]: the Rubbish Bin and files' previous versions, read-only.
//! * [`xattr`]: extended attributes (`user.mega.handle`, `.link`, `.versions`).
//!
//! Lock order: `inodes` → `open`; `inodes` → `names` → the client's tree lock (read, in
//! [`MegaFs::stale`]); `Reader::inflight` → the block cache; `readers`, `dirs` and `commits`
//! are taken alone. The client never calls back into `MegaFs`, so holding its tree lock under
//! ours cannot deadlock. The only locks held across `.await` are the async ones: a writer's
//! `commit` lock, then its file's commit lock. Errors are returned, not logged: the FUSE
//! adapter logs each once.
//!
//! Must not import FUSE, crypto or the HTTP client: content comes through the client.

pub mod attr;
pub mod cache;
pub mod dirs;
pub mod error;
pub mod inodes;
pub mod namespace;
pub mod newdirs;
pub mod posix;
pub mod read;
pub mod shared;
pub mod special;
pub mod write;
pub mod writeback;
pub mod xattr;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use crate::client::Client;
use crate::transfer::StagingDir;
use crate::tree::{Node, NodeHandle};
use cache::BlockCache;
use inodes::{Inodes, Target};
use read::Reader;
use write::Writer;

pub use attr::{Attr, DirEntry, FsStats, Kind};
pub use dirs::Stale;
pub use error::{FsError, Level, Result};
pub use inodes::ROOT_INO;
pub use write::{Recovered, Unsaved, RECOVERY_FOLDER};

/// Mount behaviour.
#[derive(Debug, Clone)]
pub struct FsConfig {
    pub uid: u32,
    pub gid: u32,
    /// Permission bits masked out of 0777 (folders) / 0666 (files).
    pub umask: u32,
    pub read_only: bool,
    /// `rm` deletes for good instead of moving to the Rubbish Bin.
    pub hard_delete: bool,
    /// Staging files for writes live here.
    pub cache_dir: PathBuf,
    /// Bytes of decrypted blocks kept in memory.
    pub cache_size: u64,
    /// `verify=full`: a read returns data only once the whole file's MAC verified (by
    /// fetching all of it first), instead of streaming and failing later reads.
    pub verify_full: bool,
    /// The name of the virtual folder showing other users' shares; `None` hides it.
    pub shares_dir: Option<String>,
    /// The Rubbish Bin's name in the root; `None` hides it.
    pub rubbish_dir: Option<String>,
    /// The previous versions' folder's name in the root; `None` hides it.
    pub versions_dir: Option<String>,
    /// The name of the Vault's "My backups" in the root (read-only); `None` hides it.
    pub backups_dir: Option<String>,
    /// The root's listing names the Rubbish Bin and the versions folder (else they are
    /// reached by name only).
    pub list_special: bool,
    /// Extended attributes (`-o xattr`, see [`xattr`]); off, the kernel is told they are
    /// not implemented and stops asking.
    pub xattr: bool,
    /// Write-back: `close()` returns once the writes are staged and synced locally; this
    /// many uploads run at once in the background (`None`: off, every close uploads).
    pub writeback: Option<usize>,
    /// With write-back, how long a closed file waits before its upload starts (`fsync`
    /// and the drain at unmount do not wait); see [`writeback`].
    pub writeback_delay: std::time::Duration,
    /// Over MEGA's transfer quota, a read that needs the network waits for it to come back
    /// if that is at most this long, and otherwise fails at once with EDQUOT
    /// (`-o quota_wait=SECS`; default [`DEFAULT_QUOTA_WAIT`]).
    pub quota_wait: std::time::Duration,
}

/// How long a read waits for MEGA's transfer quota to come back before it fails.
pub const DEFAULT_QUOTA_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// An open file handle.
struct OpenFile {
    ino: u64,
    /// Open for writing: the staging file and its state.
    writer: Option<Arc<Writer>>,
    /// Open for reading an existing file: its content as it was opened, so that reads go on
    /// after the file is unlinked.
    reader: Option<Arc<Reader>>,
    /// Open for reading a file not on MEGA yet (with write-back: made here, or its upload
    /// queued): the staging file that holds it, so that reads go on after the file is
    /// unlinked.
    kept: Option<Arc<crate::transfer::StagedFile>>,
}

/// The open handles, by handle and by inode: with write-back, thousands of closed files wait
/// in it for their upload, and every lookup and `getattr` asks for an inode's handles.
#[derive(Default)]
struct OpenTable {
    by_fh: HashMap<u64, OpenFile>,
    by_ino: HashMap<u64, Vec<u64>>,
}

impl OpenTable {
    fn get(&self, fh: &u64) -> Option<&OpenFile> {
        self.by_fh.get(fh)
    }

    fn insert(&mut self, fh: u64, f: OpenFile) {
        self.remove(&fh);
        self.by_ino.entry(f.ino).or_default().push(fh);
        self.by_fh.insert(fh, f);
    }

    fn remove(&mut self, fh: &u64) -> Option<OpenFile> {
        let f = self.by_fh.remove(fh)?;
        self.unindex(*fh, f.ino);
        Some(f)
    }

    fn unindex(&mut self, fh: u64, ino: u64) {
        if let Some(v) = self.by_ino.get_mut(&ino) {
            v.retain(|&x| x != fh);
            if v.is_empty() {
                self.by_ino.remove(&ino);
            }
        }
    }

    fn values(&self) -> impl Iterator<Item = &OpenFile> {
        self.by_fh.values()
    }

    /// The handles open on `ino`, oldest first.
    fn of_ino(&self, ino: u64) -> impl Iterator<Item = (u64, &OpenFile)> {
        self.by_ino
            .get(&ino)
            .into_iter()
            .flatten()
            .filter_map(|fh| Some((*fh, self.by_fh.get(fh)?)))
    }

    fn has_ino(&self, ino: u64) -> bool {
        self.by_ino.contains_key(&ino)
    }
}

/// The filesystem.
pub struct MegaFs {
    client: Arc<Client>,
    cfg: FsConfig,
    inodes: Mutex<Inodes>,
    open: Mutex<OpenTable>,
    readers: Mutex<HashMap<NodeHandle, Arc<Reader>>>,
    /// Chunk MACs of verified versions whose readers went (see [`read::VerifiedMacs`]).
    verified: Mutex<read::VerifiedMacs>,
    cache: BlockCache,
    next_fh: AtomicU64,
    /// Directory views by folder, with the listing's stamp they were built from.
    dirs: Mutex<HashMap<NodeHandle, (u64, Arc<dirs::DirView>)>>,
    /// The (parent inode, name) entries under which the kernel may hold each inode in its
    /// dentry cache, so that remote renames and deletions can invalidate exactly those entries.
    /// A set, not the last name: a lookup of the new name can land between a remote rename's
    /// arrival and its invalidation, and the old entry must still be invalidated then.
    names: Mutex<HashMap<u64, Vec<(u64, String)>>>,
    /// One commit at a time per file (while any is running or waiting).
    commits: Mutex<HashMap<u64, Arc<tokio::sync::Mutex<()>>>>,
    /// Commits running now, and a wake-up when one ends (for [`MegaFs::drain`]).
    running: AtomicU64,
    idle: tokio::sync::Notify,
    /// Open directories: the listing each took when it was opened (see [`dirs::DirHandle`]).
    dir_handles: Mutex<HashMap<u64, dirs::DirHandle>>,
    /// The write-back queue, if write-back is on.
    wb: Option<writeback::WriteBack>,
    /// When MEGA's transfer quota comes back, once a read met it (see [`read`]).
    quota: crate::client::quota::QuotaPause,
    /// Modes of files created here and not uploaded yet, by inode (see [`posix`]).
    modes: Mutex<HashMap<u64, u32>>,
    /// Symbolic link targets read or made (see [`posix`]).
    links: Mutex<HashMap<NodeHandle, Vec<u8>>>,
    /// The staging directory, with its spare files (see [`StagingDir`]).
    staging: StagingDir,
}

impl MegaFs {
    /// A filesystem over a logged-in client; transfers use the client's settings.
    pub fn new(client: Arc<Client>, cfg: FsConfig) -> Result<Self> {
        let root = client.root()?.handle;
        std::fs::create_dir_all(cfg.cache_dir.join(write::STAGING_DIR))?;
        Ok(MegaFs {
            cache: BlockCache::new(cfg.cache_size),
            client,
            inodes: Mutex::new(Inodes::new(root)),
            open: Mutex::new(OpenTable::default()),
            readers: Mutex::new(HashMap::new()),
            verified: Mutex::new(read::VerifiedMacs::default()),
            next_fh: AtomicU64::new(1),
            dirs: Mutex::new(HashMap::new()),
            names: Mutex::new(HashMap::new()),
            commits: Mutex::new(HashMap::new()),
            running: AtomicU64::new(0),
            idle: tokio::sync::Notify::new(),
            dir_handles: Mutex::new(HashMap::new()),
            quota: crate::client::quota::QuotaPause::new(true),
            modes: Mutex::new(HashMap::new()),
            links: Mutex::new(HashMap::new()),
            staging: StagingDir::new(cfg.cache_dir.join(write::STAGING_DIR)),
            wb: cfg
                .writeback
                .map(|n| writeback::WriteBack::new(n, cfg.writeback_delay, &cfg.cache_dir)),
            cfg,
        })
    }

    pub fn client(&self) -> &Arc<Client> {
        &self.client
    }

    /// The settings it runs with.
    pub fn config(&self) -> &FsConfig {
        &self.cfg
    }

    /// The block cache (for diagnostics and tests).
    pub fn cache(&self) -> &BlockCache {
        &self.cache
    }

    fn inodes(&self) -> std::sync::MutexGuard<'_, Inodes> {
        self.inodes.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn open_files(&self) -> std::sync::MutexGuard<'_, OpenTable> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A name component must fit a file name: the kernel checks only the whole path's
    /// length, a component is the filesystem's to refuse (names shown here never exceed it:
    /// longer remote names are shortened for display).
    fn name_fits(name: &str) -> Result<()> {
        if name.len() > crate::local::names::NAME_MAX {
            return Err(FsError::NameTooLong);
        }
        Ok(())
    }

    fn target(&self, ino: u64) -> Result<Target> {
        self.inodes().get(ino).cloned().ok_or(FsError::NotFound)
    }

    fn node_of(&self, ino: u64) -> Result<Node> {
        match self.target(ino)? {
            Target::Node(h) => self.client.node(&h).map_err(|_| FsError::NotFound),
            Target::Pending { .. } => Err(FsError::NotFound),
            // Made here (write-back), not on MEGA yet: as the node it will be.
            Target::NewDir {
                parent,
                name,
                local,
            } => Ok(self.new_dir_node(parent, &name, local)),
            // Nothing can be created in, or changed about, a virtual folder.
            Target::Virtual(_) => Err(FsError::AccessDenied(
                "a read-only folder of the mount (shares or previous versions)".into(),
            )),
        }
    }

    fn dir_of(&self, ino: u64) -> Result<Node> {
        let n = self.node_of(ino)?;
        if !n.kind.is_container() {
            return Err(FsError::NotDir);
        }
        Ok(n)
    }

    fn writable(&self) -> Result<()> {
        if self.cfg.read_only {
            return Err(FsError::ReadOnly);
        }
        Ok(())
    }

    /// Permanently or into the Rubbish Bin, as the mount was configured.
    async fn dispose(&self, h: &NodeHandle) -> Result<()> {
        if self.cfg.hard_delete {
            self.client.delete(h).await?;
        } else {
            self.client.trash(h).await?;
        }
        Ok(())
    }
}
