//! `MegaFs`: the filesystem logic of the mount, in async Rust and without any FUSE types, so
//! it is tested without a kernel. The `fuse` module is a thin adapter over it.
//!
//! * Names: a folder's children are shown with [`crate::names::escape_name`]; when several
//!   children share a name, the oldest keeps it and the others are shown as
//!   `stem (HANDLE).ext`, deterministically. New duplicates are never created.
//! * Reads go through [`cache::BlockCache`] by MEGA chunk. A file's chunk MACs are recorded as
//!   chunks arrive; once all are known the condensed MAC is checked, and on a mismatch the
//!   file's blocks are dropped and its reads fail with EIO (logged at error level).
//!   Sequential reads widen a read-ahead window (up to [`MAX_READAHEAD`]), fetched by
//!   background tasks in pieces of up to 4 MiB in parallel; reads await the piece in flight
//!   that holds their chunk instead of fetching it again.
//! * Writes land in a staging file under the cache directory; `flush`/`fsync`/`release` upload
//!   it (size known) and create the node, replacing the previous version, and only then
//!   return. The staging file is deleted after the commit. A FLUSH can come at any time (every
//!   close of any copy of a descriptor), so a handle's writes wait while it commits, and a
//!   file's commits, renames, unlinks and mtime changes take its commit lock one at a time.
//!
//! Lock order: `inodes` → `open`; `inodes` → `names` → the client's tree lock (read, in
//! [`MegaFs::stale`]); `Reader::inflight` → the block cache; `readers`, `dirs` and `commits`
//! are taken alone. The client never calls back into `MegaFs`, so holding its tree lock under
//! ours cannot deadlock. The only locks held across `.await` are the async ones: a writer's
//! `commit` lock, then its file's commit lock.

pub mod cache;
pub mod inodes;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::api::ErrorCode;
use crate::client::{self, Client};
use crate::crypto::aes::cipher;
use crate::crypto::{mac, FileKey};
use crate::names::escape_name;
use crate::transfer::download::Fetcher;
use crate::transfer::{TransferConfig, TransferError};
use crate::tree::{Node, NodeHandle};
use cache::BlockCache;
use inodes::{Inodes, Target};

pub use inodes::ROOT_INO;

/// The largest read-ahead window, for long sequential reads.
pub const MAX_READAHEAD: u64 = 16 * 1024 * 1024;
/// The largest single ranged request; a window is fetched as several in parallel.
const FETCH_PIECE: u64 = 4 * 1024 * 1024;
/// How far from the end of the previous read a read still counts as sequential.
const SEQ_SLACK: u64 = 1024 * 1024;
/// Directory entries remembered per inode for invalidation (hard links do not exist here, so
/// more than one or two only happens around renames).
const MAX_NAMES: usize = 8;

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
}

/// Filesystem errors, by meaning.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FsError {
    #[error("no such file or folder")]
    NotFound,
    #[error("not a folder")]
    NotDir,
    #[error("is a folder")]
    IsDir,
    #[error("already exists")]
    Exists,
    #[error("folder not empty")]
    NotEmpty,
    #[error("read-only mount")]
    ReadOnly,
    #[error("not permitted")]
    NotPermitted,
    #[error("invalid argument")]
    Invalid,
    #[error("over quota")]
    Quota,
    #[error("content failed MAC verification")]
    Integrity,
    #[error("not supported")]
    Unsupported,
    #[error("{0}")]
    Io(String),
}

impl FsError {
    /// The errno for the kernel. Exhaustive on purpose: a new variant needs a decision.
    pub fn errno(&self) -> i32 {
        match self {
            FsError::NotFound => 2,     // ENOENT
            FsError::NotDir => 20,      // ENOTDIR
            FsError::IsDir => 21,       // EISDIR
            FsError::Exists => 17,      // EEXIST
            FsError::NotEmpty => 39,    // ENOTEMPTY
            FsError::ReadOnly => 30,    // EROFS
            FsError::NotPermitted => 1, // EPERM
            FsError::Invalid => 22,     // EINVAL
            FsError::Quota => 122,      // EDQUOT
            FsError::Integrity => 5,    // EIO
            FsError::Unsupported => 95, // EOPNOTSUPP
            FsError::Io(_) => 5,        // EIO
        }
    }
}

impl From<client::Error> for FsError {
    fn from(e: client::Error) -> Self {
        match e.code() {
            Some(ErrorCode::NotFound) => return FsError::NotFound,
            Some(ErrorCode::OverQuota | ErrorCode::GoingOverQuota) => return FsError::Quota,
            Some(ErrorCode::Exists) => return FsError::Exists,
            Some(ErrorCode::Access) => return FsError::NotPermitted,
            _ => {}
        }
        match e {
            client::Error::Transfer(TransferError::MacMismatch) => FsError::Integrity,
            other => FsError::Io(other.to_string()),
        }
    }
}

impl From<std::io::Error> for FsError {
    fn from(e: std::io::Error) -> Self {
        if e.raw_os_error() == Some(28) {
            return FsError::Io("no space left for the staging file".into());
        }
        FsError::Io(e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, FsError>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
}

/// What `getattr` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    pub ino: u64,
    pub size: u64,
    pub mtime: SystemTime,
    pub ctime: SystemTime,
    pub kind: Kind,
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
}

/// A directory entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub ino: u64,
    pub name: String,
    pub kind: Kind,
}

/// `statfs` numbers.
#[derive(Debug, Clone, Copy)]
pub struct FsStats {
    pub block_size: u32,
    pub blocks: u64,
    pub free: u64,
    pub files: u64,
}

/// MAC bookkeeping of one file.
struct MacTracker {
    macs: Vec<Option<[u8; 16]>>,
    have: usize,
    verified: bool,
}

/// Shared read state of one file version.
struct Reader {
    handle: NodeHandle,
    size: u64,
    key: FileKey,
    fetcher: tokio::sync::OnceCell<Fetcher>,
    macs: Mutex<MacTracker>,
    bad: AtomicBool,
    /// (end of the last read, current read-ahead window)
    seq: Mutex<(u64, u64)>,
    /// Pieces being fetched, by first chunk: (last chunk, the fetch).
    inflight: Mutex<Inflight>,
}

/// A background fetch of one piece, awaited by any number of reads.
type PieceFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<bytes::Bytes>> + Send>>;
type Inflight = std::collections::BTreeMap<u64, (u64, futures::future::Shared<PieceFuture>)>;

/// The in-flight piece holding chunk `idx`, if any: (its first chunk, the fetch).
fn covering(inflight: &Inflight, idx: u64) -> Option<(u64, &futures::future::Shared<PieceFuture>)> {
    let (first, (last, f)) = inflight.range(..=idx).next_back()?;
    (idx <= *last).then_some((*first, f))
}

/// Write state of an open file.
///
/// Writes and truncations hold `commit` shared; a commit holds it exclusively. So an upload
/// reads a staging file nobody changes meanwhile, and two commits of one handle never run at
/// once: a FLUSH can arrive at any moment (every close of a descriptor, including a copy a
/// forked child inherited and closed on exec).
struct Writer {
    staging: PathBuf,
    /// Used with positional I/O only; a commit reads through its own descriptor.
    file: std::fs::File,
    /// Bumped by every change; `saved` is the change the last commit uploaded.
    changes: AtomicU64,
    saved: AtomicU64,
    /// Explicit mtime from `setattr`, else the time of the commit.
    mtime: Mutex<Option<i64>>,
    commit: tokio::sync::RwLock<()>,
}

impl Writer {
    fn new(staging: PathBuf, file: std::fs::File, dirty: bool) -> Arc<Writer> {
        Arc::new(Writer {
            staging,
            file,
            changes: AtomicU64::new(u64::from(dirty)),
            saved: AtomicU64::new(0),
            mtime: Mutex::new(None),
            commit: tokio::sync::RwLock::new(()),
        })
    }

    fn dirty(&self) -> bool {
        self.changes.load(Ordering::Acquire) != self.saved.load(Ordering::Acquire)
    }

    fn changed(&self) {
        self.changes.fetch_add(1, Ordering::AcqRel);
    }

    fn mtime(&self) -> Option<i64> {
        *self.mtime.lock().unwrap_or_else(|e| e.into_inner())
    }
}

struct OpenFile {
    ino: u64,
    writer: Option<Arc<Writer>>,
}

fn to_time(secs: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64)
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Display names of a folder's children: escaped, with duplicates disambiguated.
fn display_names(children: &[Node]) -> Vec<(String, &Node)> {
    let mut counts: HashMap<String, Vec<&Node>> = HashMap::new();
    for c in children {
        counts.entry(escape_name(&c.name)).or_default().push(c);
    }
    let mut out = Vec::with_capacity(children.len());
    for (name, mut group) in counts {
        group.sort_by(|a, b| (a.ctime, &a.handle).cmp(&(b.ctime, &b.handle)));
        for (i, n) in group.into_iter().enumerate() {
            let shown = if i == 0 {
                name.clone()
            } else {
                match name.rsplit_once('.').filter(|(stem, _)| !stem.is_empty()) {
                    Some((stem, ext)) => format!("{stem} ({}).{ext}", n.handle),
                    None => format!("{name} ({})", n.handle),
                }
            };
            out.push((shown, n));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// A folder as shown on the mount, built once per tree generation.
struct DirView {
    entries: Vec<(String, NodeHandle, Kind)>,
    by_name: HashMap<String, usize>,
}

/// The filesystem.
pub struct MegaFs {
    client: Arc<Client>,
    cfg: FsConfig,
    transfer: TransferConfig,
    inodes: Mutex<Inodes>,
    open: Mutex<HashMap<u64, OpenFile>>,
    readers: Mutex<HashMap<NodeHandle, Arc<Reader>>>,
    cache: BlockCache,
    next_fh: AtomicU64,
    /// Directory views by folder, with the tree generation they were built from.
    dirs: Mutex<HashMap<NodeHandle, (u64, Arc<DirView>)>>,
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
}

/// A file's commit lock; the map entry goes when nobody holds or waits for it.
struct FileLock<'a> {
    fs: &'a MegaFs,
    ino: u64,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for FileLock<'_> {
    fn drop(&mut self) {
        self.guard.take();
        let mut commits = self.fs.commits.lock().unwrap_or_else(|e| e.into_inner());
        if commits
            .get(&self.ino)
            .is_some_and(|l| Arc::strong_count(l) == 1)
        {
            commits.remove(&self.ino);
        }
    }
}

/// A staging file holding writes that are not on MEGA, and the MEGA path it was for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsaved {
    pub staging: PathBuf,
    /// From the note beside the staging file (absent for files of older versions).
    pub origin: Option<String>,
}

impl Unsaved {
    fn of(staging: PathBuf) -> Unsaved {
        let origin = std::fs::read_to_string(sidecar(&staging)).ok();
        Unsaved { staging, origin }
    }
}

/// The note beside a staging file naming the file it holds writes for.
fn sidecar(staging: &std::path::Path) -> PathBuf {
    staging.with_extension("path")
}

fn remove_staging(staging: &std::path::Path) {
    let _ = std::fs::remove_file(staging);
    let _ = std::fs::remove_file(sidecar(staging));
}

/// What the kernel must forget after remote changes.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Stale {
    /// Directory entries: (parent inode, name).
    pub entries: Vec<(u64, String)>,
    /// Inodes whose attributes, data or listing changed.
    pub inodes: Vec<u64>,
}

impl MegaFs {
    pub fn new(client: Arc<Client>, cfg: FsConfig) -> Result<Self> {
        let root = client.root().map_err(FsError::from)?.handle;
        std::fs::create_dir_all(cfg.cache_dir.join("staging"))?;
        Ok(MegaFs {
            cache: BlockCache::new(cfg.cache_size),
            client,
            transfer: TransferConfig::default(),
            inodes: Mutex::new(Inodes::new(root)),
            open: Mutex::new(HashMap::new()),
            readers: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            dirs: Mutex::new(HashMap::new()),
            names: Mutex::new(HashMap::new()),
            commits: Mutex::new(HashMap::new()),
            running: AtomicU64::new(0),
            idle: tokio::sync::Notify::new(),
            cfg,
        })
    }

    pub fn client(&self) -> &Arc<Client> {
        &self.client
    }

    /// What remote changes make stale in the kernel: the changed nodes' old directory entries
    /// (renamed, moved, deleted), the nodes themselves, and the folders they left or entered.
    /// Only inodes the kernel has seen are named.
    pub fn stale(&self, changes: &[crate::tree::Change]) -> Stale {
        use crate::tree::Change;
        let inodes = self.inodes();
        let mut names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Stale::default();
        let inode = |h: Option<&NodeHandle>, out: &mut Stale| -> Option<u64> {
            let ino = h.and_then(|h| inodes.find(h))?;
            if !out.inodes.contains(&ino) {
                out.inodes.push(ino);
            }
            Some(ino)
        };
        for c in changes {
            let (node, parents): (&NodeHandle, Vec<Option<NodeHandle>>) = match c {
                Change::Added(h) | Change::Updated(h) => (
                    h,
                    vec![self
                        .client
                        .read_tree()
                        .get(h)
                        .and_then(|n| n.parent.clone())],
                ),
                Change::Removed { handle, parent } => (handle, vec![parent.clone()]),
                Change::Moved { handle, from, to } => (handle, vec![from.clone(), to.clone()]),
            };
            if let Some(ino) = inode(Some(node), &mut out) {
                if !matches!(c, Change::Added(_)) {
                    // Entries stay remembered: a lookup racing with this invalidation may
                    // re-create one in the kernel, and the next change must invalidate it too.
                    let known = match c {
                        Change::Removed { .. } => names.remove(&ino).unwrap_or_default(),
                        _ => names.get(&ino).cloned().unwrap_or_default(),
                    };
                    for entry in known {
                        if !out.entries.contains(&entry) {
                            out.entries.push(entry);
                        }
                    }
                }
            }
            for p in parents {
                inode(p.as_ref(), &mut out);
            }
        }
        out
    }

    /// Notes that the kernel may now cache `name` in `parent` as `ino` (a reply that creates a
    /// dentry: lookup, mkdir, create, rename). At most [`MAX_NAMES`] per inode, oldest dropped.
    fn remember(&self, ino: u64, parent: u64, name: &str) {
        let mut names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        let known = names.entry(ino).or_default();
        if !known.iter().any(|(p, n)| *p == parent && n == name) {
            if known.len() >= MAX_NAMES {
                known.remove(0);
            }
            known.push((parent, name.to_string()));
        }
    }

    /// Locks files against each other's commits (in inode order, so two callers cannot
    /// deadlock). Commits, renames, deletions and mtime changes of a file take it.
    async fn lock_files(&self, inos: &[u64]) -> Vec<FileLock<'_>> {
        let mut inos = inos.to_vec();
        inos.sort_unstable();
        inos.dedup();
        let mut out = Vec::with_capacity(inos.len());
        for ino in inos {
            let lock = self
                .commits
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(ino)
                .or_default()
                .clone();
            out.push(FileLock {
                fs: self,
                ino,
                guard: Some(lock.lock_owned().await),
            });
        }
        out
    }

    /// `name` in `dir`, with its file locked; looked up again under the lock (a commit that
    /// was running may have replaced the node).
    async fn child_locked(&self, dir: &Node, name: &str) -> Result<(Node, Vec<FileLock<'_>>)> {
        let n = self.child(dir, name).ok_or(FsError::NotFound)?;
        let ino = self.inodes().ino_of(&n.handle);
        let lock = self.lock_files(&[ino]).await;
        let n = self.child(dir, name).ok_or(FsError::NotFound)?;
        Ok((n, lock))
    }

    fn inodes(&self) -> std::sync::MutexGuard<'_, Inodes> {
        self.inodes.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn open_files(&self) -> std::sync::MutexGuard<'_, HashMap<u64, OpenFile>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn target(&self, ino: u64) -> Result<Target> {
        self.inodes().get(ino).cloned().ok_or(FsError::NotFound)
    }

    fn node_of(&self, ino: u64) -> Result<Node> {
        match self.target(ino)? {
            Target::Node(h) => self.client.node(&h).map_err(|_| FsError::NotFound),
            Target::Pending { .. } => Err(FsError::NotFound),
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

    fn attr_of(&self, ino: u64, n: &Node) -> Attr {
        let (kind, base) = if n.kind.is_container() {
            (Kind::Dir, 0o777)
        } else {
            (Kind::File, 0o666)
        };
        Attr {
            ino,
            size: if kind == Kind::File { n.size } else { 0 },
            mtime: to_time(n.mtime),
            ctime: to_time(n.ctime),
            kind,
            perm: (base & !self.cfg.umask) as u16,
            uid: self.cfg.uid,
            gid: self.cfg.gid,
        }
    }

    /// Size and mtime of a file with unsaved local changes (a dirty staging file).
    fn staged(&self, ino: u64) -> Option<(u64, Option<i64>)> {
        let open = self.open_files();
        open.values()
            .filter(|f| f.ino == ino)
            .filter_map(|f| f.writer.as_ref())
            .find(|w| w.dirty())
            .and_then(|w| w.file.metadata().ok().map(|m| (m.len(), w.mtime())))
    }

    /// A handle of `ino` that is open for writing: `fh` if it is one, else any other.
    fn writer_fh(&self, ino: u64, fh: Option<u64>) -> Option<u64> {
        let open = self.open_files();
        if let Some(f) = fh.filter(|f| open.get(f).is_some_and(|o| o.writer.is_some())) {
            return Some(f);
        }
        open.iter()
            .find(|(_, o)| o.ino == ino && o.writer.is_some())
            .map(|(fh, _)| *fh)
    }

    pub fn getattr(&self, ino: u64) -> Result<Attr> {
        let staged = self.staged(ino);
        match self.target(ino)? {
            Target::Node(h) => {
                let n = self.client.node(&h).map_err(|_| FsError::NotFound)?;
                let mut a = self.attr_of(ino, &n);
                if let Some((size, mtime)) = staged {
                    a.size = size;
                    a.mtime = mtime.map_or(SystemTime::now(), to_time);
                }
                Ok(a)
            }
            Target::Pending { .. } => {
                let (size, mtime) = staged.ok_or(FsError::NotFound)?;
                let t = mtime.map_or(SystemTime::now(), to_time);
                Ok(Attr {
                    ino,
                    size,
                    mtime: t,
                    ctime: t,
                    kind: Kind::File,
                    perm: (0o666 & !self.cfg.umask) as u16,
                    uid: self.cfg.uid,
                    gid: self.cfg.gid,
                })
            }
        }
    }

    /// A folder's view (names as shown, in order, with an index by name), rebuilt only when
    /// the tree changed since it was built — so a lookup is O(1), not O(entries).
    fn dir_view(&self, dir: &NodeHandle) -> Arc<DirView> {
        let generation = self.client.read_tree().generation();
        if let Some((g, v)) = self.dirs.lock().unwrap_or_else(|e| e.into_inner()).get(dir) {
            if *g == generation {
                return v.clone();
            }
        }
        let children = self.client.children(dir);
        let entries: Vec<(String, NodeHandle, Kind)> = display_names(&children)
            .into_iter()
            .map(|(name, n)| {
                let kind = if n.kind.is_container() {
                    Kind::Dir
                } else {
                    Kind::File
                };
                (name, n.handle.clone(), kind)
            })
            .collect();
        let by_name = entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.0.clone(), i))
            .collect();
        let view = Arc::new(DirView { entries, by_name });
        let mut dirs = self.dirs.lock().unwrap_or_else(|e| e.into_inner());
        if dirs.len() > 4096 {
            dirs.retain(|_, (g, _)| *g == generation);
        }
        dirs.insert(dir.clone(), (generation, view.clone()));
        view
    }

    /// The children of a folder as shown on the mount.
    pub fn readdir(&self, ino: u64) -> Result<Vec<DirEntry>> {
        let dir = self.dir_of(ino)?;
        let view = self.dir_view(&dir.handle);
        let entries: Vec<DirEntry> = {
            let mut inodes = self.inodes();
            view.entries
                .iter()
                .map(|(name, h, kind)| DirEntry {
                    ino: inodes.ino_of(h),
                    name: name.clone(),
                    kind: *kind,
                })
                .collect()
        };
        // Plain READDIR replies create no dentries in the kernel: nothing to remember.
        Ok(entries)
    }

    fn child(&self, dir: &Node, name: &str) -> Option<Node> {
        let view = self.dir_view(&dir.handle);
        let i = *view.by_name.get(name)?;
        self.client.node(&view.entries[i].1).ok()
    }

    pub fn lookup(&self, parent: u64, name: &str) -> Result<Attr> {
        let dir = self.dir_of(parent)?;
        // A file created here and not uploaded yet.
        let pending = {
            let inodes = self.inodes();
            let open = self.open_files();
            open.values().map(|f| f.ino).find(|ino| {
                matches!(inodes.get(*ino), Some(Target::Pending { parent: p, name: n }) if *p == dir.handle && n == name)
            })
        };
        if let Some(ino) = pending {
            return self.getattr(ino);
        }
        let n = self.child(&dir, name).ok_or(FsError::NotFound)?;
        let ino = self.inodes().ino_of(&n.handle);
        self.remember(ino, parent, name);
        self.getattr(ino)
    }

    pub async fn statfs(&self) -> Result<FsStats> {
        let q = self.client.quota().await?;
        const BLOCK: u64 = 4096;
        Ok(FsStats {
            block_size: BLOCK as u32,
            blocks: q.total / BLOCK,
            free: q.total.saturating_sub(q.used) / BLOCK,
            files: self.client.read_tree().len() as u64,
        })
    }

    pub async fn mkdir(&self, parent: u64, name: &str) -> Result<Attr> {
        self.writable()?;
        let dir = self.dir_of(parent)?;
        if self.child(&dir, name).is_some() {
            return Err(FsError::Exists);
        }
        let n = self
            .client
            .mkdir(&dir.handle, &crate::names::unescape_name(name))
            .await?;
        let ino = self.inodes().ino_of(&n.handle);
        self.remember(ino, parent, name);
        Ok(self.attr_of(ino, &n))
    }

    async fn remove(&self, n: &Node) -> Result<()> {
        if self.cfg.hard_delete {
            self.client.delete(&n.handle).await?;
        } else {
            self.client.trash(&n.handle).await?;
        }
        self.inodes().remove_handle(&n.handle);
        self.cache.purge(&n.handle);
        Ok(())
    }

    pub async fn unlink(&self, parent: u64, name: &str) -> Result<()> {
        self.writable()?;
        let dir = self.dir_of(parent)?;
        let (n, _file) = self.child_locked(&dir, name).await?;
        if n.kind.is_container() {
            return Err(FsError::IsDir);
        }
        self.remove(&n).await
    }

    pub async fn rmdir(&self, parent: u64, name: &str) -> Result<()> {
        self.writable()?;
        let dir = self.dir_of(parent)?;
        let n = self.child(&dir, name).ok_or(FsError::NotFound)?;
        if !n.kind.is_container() {
            return Err(FsError::NotDir);
        }
        if !self.client.children(&n.handle).is_empty() {
            return Err(FsError::NotEmpty);
        }
        self.remove(&n).await
    }

    pub async fn rename(
        &self,
        parent: u64,
        name: &str,
        new_parent: u64,
        new_name: &str,
    ) -> Result<()> {
        self.writable()?;
        let (from, to) = (self.dir_of(parent)?, self.dir_of(new_parent)?);
        // A commit of either file that is running finishes first (it names the new version
        // after the node it replaces, as it was when it started).
        let mut inos = Vec::new();
        for (dir, name) in [(&from, name), (&to, new_name)] {
            if let Some(c) = self.child(dir, name) {
                inos.push(self.inodes().ino_of(&c.handle));
            }
        }
        let _files = self.lock_files(&inos).await;
        let n = self.child(&from, name).ok_or(FsError::NotFound)?;
        if let Some(existing) = self.child(&to, new_name).filter(|e| e.handle != n.handle) {
            match (existing.kind.is_container(), n.kind.is_container()) {
                (true, false) => return Err(FsError::IsDir),
                (false, true) => return Err(FsError::NotDir),
                (true, true) if !self.client.children(&existing.handle).is_empty() => {
                    return Err(FsError::NotEmpty)
                }
                _ => {}
            }
            self.remove(&existing).await?;
        }
        let real = crate::names::unescape_name(new_name);
        if n.name != real {
            self.client.rename(&n.handle, &real).await?;
        }
        if from.handle != to.handle {
            self.client.move_to(&n.handle, &to.handle).await?;
        }
        // The kernel moves its dentry to the new name.
        let ino = self.inodes().ino_of(&n.handle);
        self.remember(ino, new_parent, new_name);
        Ok(())
    }

    // ---- reading ----

    fn reader(&self, n: &Node) -> Result<Arc<Reader>> {
        let key = n.file_key().cloned().ok_or(FsError::Integrity)?;
        let mut readers = self.readers.lock().unwrap_or_else(|e| e.into_inner());
        Ok(readers
            .entry(n.handle.clone())
            .or_insert_with(|| {
                Arc::new(Reader {
                    handle: n.handle.clone(),
                    size: n.size,
                    key,
                    fetcher: tokio::sync::OnceCell::new(),
                    macs: Mutex::new(MacTracker {
                        macs: vec![None; mac::chunk_count(n.size) as usize],
                        have: 0,
                        verified: false,
                    }),
                    bad: AtomicBool::new(false),
                    seq: Mutex::new((u64::MAX, 0)),
                    inflight: Mutex::new(Default::default()),
                })
            })
            .clone())
    }

    /// Opens a file; with `write`, a staging file is prepared (filled from the remote content
    /// unless `truncate`).
    pub async fn open(&self, ino: u64, write: bool, truncate: bool) -> Result<u64> {
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        let writer = if write {
            self.writable()?;
            let n = self.node_of(ino)?;
            if n.kind.is_container() {
                return Err(FsError::IsDir);
            }
            let origin = self.client.read_tree().path_of(&n.handle);
            let (path, file) = self.new_staging(&origin)?;
            if !truncate && n.size > 0 {
                let mut f = tokio::fs::File::from_std(file.try_clone()?);
                if let Err(e) = self.client.download(&n.handle, &mut f, None).await {
                    remove_staging(&path);
                    return Err(e.into());
                }
            }
            Some(Writer::new(path, file, truncate))
        } else {
            None
        };
        self.open_files().insert(fh, OpenFile { ino, writer });
        Ok(fh)
    }

    /// A new staging file (0600) for writes to the file at `origin` (its MEGA path), which is
    /// noted beside it in `<staging>.path`, so that a staging file left by a crash or an
    /// abandoned handle says what it was.
    fn new_staging(&self, origin: &str) -> Result<(PathBuf, std::fs::File)> {
        let path = self
            .cfg
            .cache_dir
            .join("staging")
            .join(format!("{:016x}", rand::random::<u64>()));
        let file = crate::names::create_private(&path)?;
        let note = crate::names::create_private(&sidecar(&path))
            .and_then(|mut f| std::io::Write::write_all(&mut f, origin.as_bytes()));
        if let Err(e) = note {
            remove_staging(&path);
            return Err(e.into());
        }
        Ok((path, file))
    }

    /// Creates a file (not on MEGA until its first flush/release) and opens it for writing.
    pub async fn create(&self, parent: u64, name: &str) -> Result<(Attr, u64)> {
        self.writable()?;
        let dir = self.dir_of(parent)?;
        if let Some(existing) = self.child(&dir, name) {
            if existing.kind.is_container() {
                return Err(FsError::IsDir);
            }
            let ino = self.inodes().ino_of(&existing.handle);
            let fh = self.open(ino, true, true).await?;
            self.remember(ino, parent, name);
            return Ok((self.getattr(ino)?, fh));
        }
        let ino = self.inodes().pending(dir.handle.clone(), name.to_string());
        self.remember(ino, parent, name);
        let origin = format!(
            "{}/{}",
            self.client
                .read_tree()
                .path_of(&dir.handle)
                .trim_end_matches('/'),
            crate::names::unescape_name(name)
        );
        let (path, file) = self.new_staging(&origin)?;
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.open_files().insert(
            fh,
            OpenFile {
                ino,
                writer: Some(Writer::new(path, file, true)),
            },
        );
        Ok((self.getattr(ino)?, fh))
    }

    pub async fn read(
        self: &Arc<Self>,
        ino: u64,
        fh: u64,
        offset: u64,
        size: u32,
    ) -> Result<Vec<u8>> {
        // Reads of a file open for writing see the staging file.
        let staged = {
            let open = self.open_files();
            open.get(&fh)
                .and_then(|f| f.writer.as_ref())
                .map(|w| w.file.try_clone())
                .transpose()?
        };
        if let Some(f) = staged {
            let mut buf = vec![0u8; size as usize];
            let n = std::os::unix::fs::FileExt::read_at(&f, &mut buf, offset)?;
            buf.truncate(n);
            return Ok(buf);
        }
        let n = self.node_of(ino)?;
        if n.kind.is_container() {
            return Err(FsError::IsDir);
        }
        let r = self.reader(&n)?;
        self.read_node(&r, offset, size as u64).await
    }

    async fn read_node(
        self: &Arc<Self>,
        r: &Arc<Reader>,
        offset: u64,
        size: u64,
    ) -> Result<Vec<u8>> {
        if r.bad.load(Ordering::Relaxed) {
            return Err(FsError::Integrity);
        }
        let end = (offset + size).min(r.size);
        if offset >= end {
            return Ok(Vec::new());
        }
        // Read-ahead: the window doubles while reads stay sequential (near where the last one
        // ended: the kernel's own read-ahead and several FUSE threads reorder requests a
        // little), and resets on a seek.
        let window = {
            let mut seq = r.seq.lock().unwrap_or_else(|e| e.into_inner());
            let sequential = seq.0 != u64::MAX && offset.abs_diff(seq.0) <= SEQ_SLACK;
            let w = if sequential {
                (seq.1 * 2).clamp(mac::SEGMENT, MAX_READAHEAD)
            } else {
                0
            };
            *seq = (if sequential { seq.0.max(end) } else { end }, w);
            w
        };
        let first = mac::chunk_index(offset);
        let last = mac::chunk_index(end - 1);
        let ahead = mac::chunk_index((end + window).min(r.size) - 1);
        // What this read needs and the read-ahead window are fetched in the background as
        // parallel pieces; this read waits only for its own chunks, and the next sequential
        // read finds its chunks cached or already on the way.
        self.start_fetches(r, first, ahead);
        let mut out = Vec::with_capacity((end - offset) as usize);
        for idx in first..=last {
            let c = self.chunk(r, idx).await?;
            let cs = mac::chunk_start(idx);
            let (s, e) = (offset.max(cs), end.min(cs + c.len() as u64));
            if s < e {
                out.extend_from_slice(&c[(s - cs) as usize..(e - cs) as usize]);
            }
        }
        Ok(out)
    }

    /// One chunk of a file: from the cache, from a fetch in flight, or fetched now.
    async fn chunk(self: &Arc<Self>, r: &Arc<Reader>, idx: u64) -> Result<bytes::Bytes> {
        for _ in 0..3 {
            if let Some(c) = self.cache.get(&r.handle, idx) {
                return Ok(c);
            }
            let pending = {
                let inflight = r.inflight.lock().unwrap_or_else(|e| e.into_inner());
                covering(&inflight, idx).map(|(first, f)| (first, f.clone()))
            };
            match pending {
                Some((first, f)) => {
                    let piece = f.await?;
                    if let Some(c) = cache::slice_chunk(&piece, first, idx) {
                        return Ok(c);
                    }
                }
                None => self.start_fetches(r, idx, idx),
            }
        }
        Err(FsError::Io("a read kept missing its data".into()))
    }

    /// Makes sure chunks `a..=b` are cached or being fetched: runs of missing chunks start as
    /// background fetches of at most [`FETCH_PIECE`] bytes each, in parallel.
    fn start_fetches(self: &Arc<Self>, r: &Arc<Reader>, a: u64, b: u64) {
        let mut inflight = r.inflight.lock().unwrap_or_else(|e| e.into_inner());
        let missing = |i: u64, inflight: &Inflight| {
            covering(inflight, i).is_none() && !self.cache.contains(&r.handle, i)
        };
        let mut idx = a;
        while idx <= b {
            if !missing(idx, &inflight) {
                idx += 1;
                continue;
            }
            let mut stop = idx;
            while stop < b
                && mac::chunk_start(stop + 2) - mac::chunk_start(idx) <= FETCH_PIECE
                && missing(stop + 1, &inflight)
            {
                stop += 1;
            }
            let (fs, rd) = (self.clone(), r.clone());
            let task = tokio::spawn(async move {
                let piece = fs.fetch_piece(&rd, idx, stop).await;
                rd.inflight
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&idx);
                piece
            });
            let fetch = async move {
                task.await
                    .unwrap_or_else(|e| Err(FsError::Io(format!("read task failed: {e}"))))
            };
            inflight.insert(
                idx,
                (
                    stop,
                    futures::FutureExt::shared(Box::pin(fetch) as PieceFuture),
                ),
            );
            idx = stop + 1;
        }
    }

    /// Fetches, decrypts and caches chunks `a..=b` as one piece; records their MACs; verifies
    /// the file once every chunk MAC is known.
    async fn fetch_piece(&self, r: &Arc<Reader>, a: u64, b: u64) -> Result<bytes::Bytes> {
        let fetcher = r
            .fetcher
            .get_or_try_init(|| async {
                let src = self.client.download_source(&r.handle).await?;
                Ok::<_, client::Error>(Fetcher::new(self.client.api().http(), &src, &self.transfer))
            })
            .await?;
        let start = mac::chunk_start(a);
        let stop = mac::chunk_start(b + 1).min(r.size);
        let data = fetcher
            .fetch(start, stop - start)
            .await
            .map_err(|e| FsError::from(client::Error::from(e)))?;
        let key = r.key.clone();
        let (data, macs) = tokio::task::spawn_blocking(move || {
            let mut data = data;
            let macs = mac::decrypt_piece(&cipher(&key.aes), &key.nonce, start, &mut data);
            (data, macs)
        })
        .await
        .map_err(|e| FsError::Io(e.to_string()))?;
        // MACs first: nothing that failed verification reaches the cache or a reader.
        self.record_macs(r, a, &macs)?;
        let piece = bytes::Bytes::from(data);
        self.cache.insert(&r.handle, a, piece.clone());
        Ok(piece)
    }

    fn record_macs(&self, r: &Arc<Reader>, a: u64, macs: &[[u8; 16]]) -> Result<()> {
        let mut t = r.macs.lock().unwrap_or_else(|e| e.into_inner());
        for (i, m) in macs.iter().enumerate() {
            let idx = a as usize + i;
            if t.macs[idx].is_none() {
                t.have += 1;
            }
            t.macs[idx] = Some(*m);
        }
        if t.verified || t.have < t.macs.len() {
            return Ok(());
        }
        let all: Vec<[u8; 16]> = t.macs.iter().map(|m| m.unwrap_or_default()).collect();
        if mac::verify(
            &cipher(&r.key.aes),
            &r.key.nonce,
            r.size,
            &all,
            &r.key.meta_mac,
        ) {
            t.verified = true;
            return Ok(());
        }
        r.bad.store(true, Ordering::Relaxed);
        drop(t);
        self.cache.purge(&r.handle);
        tracing::error!(node = %r.handle, "file content failed MAC verification; its reads now fail with EIO");
        Err(FsError::Integrity)
    }

    // ---- writing ----

    /// The write state of a handle open for writing.
    fn writer(&self, fh: u64) -> Option<Arc<Writer>> {
        self.open_files().get(&fh).and_then(|f| f.writer.clone())
    }

    /// Writes into the handle's staging file (no global lock: writers of different files, or
    /// of one file at different offsets, proceed at once).
    pub async fn write(&self, fh: u64, offset: u64, data: &[u8]) -> Result<u32> {
        let w = self.writer(fh).ok_or(FsError::Invalid)?;
        let _shared = w.commit.read().await;
        std::os::unix::fs::FileExt::write_all_at(&w.file, data, offset)?;
        // A write after `touch -d` makes the file modified now again.
        *w.mtime.lock().unwrap_or_else(|e| e.into_inner()) = None;
        w.changed();
        Ok(data.len() as u32)
    }

    /// Truncates or extends a file (`truncate`, `O_TRUNC` via setattr) and/or sets its mtime.
    pub async fn setattr(
        &self,
        ino: u64,
        fh: Option<u64>,
        size: Option<u64>,
        mtime: Option<i64>,
    ) -> Result<Attr> {
        if size.is_none() && mtime.is_none() {
            return self.getattr(ino);
        }
        self.writable()?;
        // Apply it to an open writer of this file if there is one (the kernel does not always
        // pass the handle), else to a temporary one. Only an mtime, with no unsaved writes:
        // rewrite the fingerprint attribute, no upload.
        let writer = self.writer_fh(ino, fh);
        let unsaved = writer
            .and_then(|f| self.writer(f))
            .is_some_and(|w| w.dirty());
        if size.is_none() && !unsaved {
            if self.node_of(ino)?.kind.is_container() {
                return self.getattr(ino); // folder mtimes are not stored by MEGA
            }
            let _file = self.lock_files(&[ino]).await;
            let n = self.node_of(ino)?;
            self.client
                .set_mtime(&n.handle, mtime.unwrap_or_else(now_secs))
                .await?;
            return self.getattr(ino);
        }
        let own = match writer {
            Some(f) => (f, false),
            None => {
                if self.node_of(ino)?.kind.is_container() {
                    return Err(FsError::IsDir);
                }
                (self.open(ino, true, size == Some(0)).await?, true)
            }
        };
        {
            let w = self.writer(own.0).ok_or(FsError::Invalid)?;
            let _shared = w.commit.read().await;
            if let Some(s) = size {
                w.file.set_len(s)?;
            }
            if let Some(m) = mtime {
                *w.mtime.lock().unwrap_or_else(|e| e.into_inner()) = Some(m);
            }
            w.changed();
        }
        if own.1 {
            self.release(own.0).await?;
        }
        self.getattr(ino)
    }

    /// Uploads a dirty staging file and commits the node (replacing the previous version).
    /// Returns only after MEGA has the new node.
    pub async fn flush(&self, fh: u64) -> Result<()> {
        let Some((ino, w)) = self
            .open_files()
            .get(&fh)
            .and_then(|f| Some((f.ino, f.writer.clone()?)))
        else {
            return Ok(());
        };
        let _exclusive = w.commit.write().await;
        let change = w.changes.load(Ordering::Acquire);
        if change == w.saved.load(Ordering::Acquire) {
            return Ok(());
        }
        // Writers of the same file on other handles commit one after the other, each
        // replacing the version the previous one committed; renames and deletions wait too.
        self.running.fetch_add(1, Ordering::AcqRel);
        let result = {
            let _file = self.lock_files(&[ino]).await;
            self.commit(ino, &w).await
        };
        self.running.fetch_sub(1, Ordering::AcqRel);
        self.idle.notify_waiters();
        result?;
        w.saved.store(change, Ordering::Release);
        Ok(())
    }

    /// Uploads a staging file as the new version of `ino`.
    async fn commit(&self, ino: u64, w: &Writer) -> Result<()> {
        let (parent, name, old) = match self.target(ino)? {
            Target::Pending { parent, name } => (parent, crate::names::unescape_name(&name), None),
            Target::Node(h) => {
                let n = self.client.node(&h).map_err(|_| FsError::NotFound)?;
                (
                    n.parent.clone().ok_or(FsError::NotPermitted)?,
                    n.name.clone(),
                    Some(n),
                )
            }
        };
        let staging = std::fs::File::open(&w.staging)?;
        let size = staging.metadata()?.len();
        let mtime = w.mtime().unwrap_or_else(now_secs);
        let mut reader = tokio::fs::File::from_std(staging);
        let node = self
            .client
            .upload(&parent, &name, &mut reader, size, mtime, None)
            .await?;
        // The inode now means the new version; the old one goes away.
        self.inodes().bind(ino, node.handle.clone());
        if let Some(old) = old {
            self.cache.purge(&old.handle);
            if self.cfg.hard_delete {
                self.client.delete(&old.handle).await?;
            } else {
                self.client.trash(&old.handle).await?;
            }
        }
        Ok(())
    }

    /// For shutting down: waits until no commit is running (at most `grace`), then returns the
    /// staging files of handles still holding writes that are not on MEGA. Those files stay
    /// on disk (they are the only copy of the writes); the caller logs where they are.
    pub async fn drain(&self, grace: Duration) -> Vec<Unsaved> {
        let deadline = tokio::time::Instant::now() + grace;
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
        self.open_files()
            .values()
            .filter_map(|f| f.writer.as_ref())
            .filter(|w| w.dirty())
            .map(|w| Unsaved::of(w.staging.clone()))
            .collect()
    }

    /// Staging files left by an earlier run that ended before committing them.
    pub fn leftover_staging(&self) -> Vec<Unsaved> {
        let open: Vec<PathBuf> = self
            .open_files()
            .values()
            .filter_map(|f| f.writer.as_ref().map(|w| w.staging.clone()))
            .collect();
        std::fs::read_dir(self.cfg.cache_dir.join("staging"))
            .map(|rd| {
                rd.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| !open.contains(p) && p.extension().is_none())
                    .map(Unsaved::of)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Closes a handle: commits pending writes, then deletes the staging file. If the commit
    /// failed, the staging file is kept (it holds the only copy of the writes) and its path is
    /// logged.
    pub async fn release(&self, fh: u64) -> Result<()> {
        let r = self.flush(fh).await;
        let f = self.open_files().remove(&fh);
        if let Some(w) = f.and_then(|f| f.writer) {
            if r.is_ok() {
                remove_staging(&w.staging);
            } else {
                tracing::error!(
                    staging = %w.staging.display(),
                    "could not save a file to MEGA; its content is kept in the staging file"
                );
            }
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::NodeKind;

    fn node(h: &str, name: &str, ctime: i64) -> Node {
        Node {
            handle: h.into(),
            parent: Some("ROOT".into()),
            kind: NodeKind::File,
            owner: String::new(),
            name: name.into(),
            size: 0,
            ctime,
            mtime: ctime,
            key: None,
            attrs: Default::default(),
            fingerprint: None,
            undecryptable: None,
        }
    }

    #[test]
    fn duplicates_and_hostile_names_are_shown_deterministically() {
        let kids = vec![
            node("BBBBBBBB", "a.txt", 20),
            node("AAAAAAAA", "a.txt", 10),
            node("CCCCCCCC", "a.txt", 30),
            node("DDDDDDDD", "x/y", 1),
            node("EEEEEEEE", "..", 1),
            node("FFFFFFFF", "noext", 1),
            node("GGGGGGGG", "noext", 2),
        ];
        let names: Vec<String> = display_names(&kids).into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            vec![
                "%2E%2E",
                "a (BBBBBBBB).txt",
                "a (CCCCCCCC).txt",
                "a.txt",
                "noext",
                "noext (GGGGGGGG)",
                "x%2Fy"
            ]
        );
        let shown = display_names(&kids);
        assert_eq!(
            shown.iter().find(|(n, _)| n == "a.txt").unwrap().1.handle.0,
            "AAAAAAAA",
            "the oldest keeps the name"
        );
    }

    #[test]
    fn errno_mapping() {
        assert_eq!(FsError::NotFound.errno(), 2);
        assert_eq!(FsError::Quota.errno(), 122);
        assert_eq!(FsError::Integrity.errno(), 5);
        assert_eq!(FsError::NotEmpty.errno(), 39);
    }
}
