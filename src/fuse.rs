//! The thin `fuser::Filesystem` adapter over [`MegaFs`]. Every method has the same shape:
//! decode arguments, run the async operation on the runtime, reply; every error goes through
//! `fail`, which logs it once at its level ([`FsError::level`]) and replies with its errno
//! ([`FsError::errno`], the one errno table). No logic lives here.

use std::ffi::OsStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    OpenAccMode, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr,
    Request, TimeOrNow, WriteFlags,
};

use crate::fs::{Attr, FsError, Kind, Level, MegaFs, Stale};

/// How long the kernel may cache entries and attributes. Long: remote changes invalidate the
/// affected entries and inodes explicitly (see [`spawn_invalidator`]), and changes made
/// through the mount update the kernel's caches as they happen.
const TTL: Duration = Duration::from_secs(60);
/// Longest file name the kernel should send.
const NAME_MAX: u32 = 255;

/// Starts the one thread that talks to the kernel about stale caches. FUSE handlers must
/// never call the notifier themselves (it can deadlock); the event watcher sends what is
/// stale here instead.
pub fn spawn_invalidator(notifier: fuser::Notifier) -> std::sync::mpsc::Sender<Stale> {
    let (tx, rx) = std::sync::mpsc::channel::<Stale>();
    std::thread::Builder::new()
        .name("mega-invalidate".into())
        .spawn(move || {
            for stale in rx {
                // ENOENT just means the kernel had forgotten that entry or inode already.
                for (parent, name) in stale.entries {
                    if let Err(e) = notifier.inval_entry(INodeNo(parent), OsStr::new(&name)) {
                        tracing::debug!(parent, "invalidate entry: {e}");
                    }
                }
                // Attributes only (offset -1): a node's content never changes under its inode
                // from outside (a new remote version is a new node, so a new inode), and
                // dropping pages makes the kernel wait for page locks that reads in flight
                // hold — reads only this daemon can answer. Killed (SIGKILL) at that moment,
                // the daemon could then never finish dying, and its mount hung for good.
                for ino in stale.inodes {
                    if let Err(e) = notifier.inval_inode(INodeNo(ino), -1, 0) {
                        tracing::debug!(ino, "invalidate inode: {e}");
                    }
                }
            }
        })
        .map(|_| ())
        .unwrap_or_else(|e| tracing::warn!("cannot start the invalidation thread: {e}"));
    tx
}

pub struct FuseAdapter {
    fs: Arc<MegaFs>,
    rt: tokio::runtime::Handle,
}

impl FuseAdapter {
    pub fn new(fs: Arc<MegaFs>, rt: tokio::runtime::Handle) -> Self {
        FuseAdapter { fs, rt }
    }
}

fn file_attr(a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.size.div_ceil(512),
        atime: a.mtime,
        mtime: a.mtime,
        ctime: a.ctime,
        crtime: a.ctime,
        kind: file_type(a.kind),
        perm: a.perm,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: 0,
        // The preferred I/O size: `cp` and others size their buffers by it, and fewer, larger
        // writes reach the daemon (up to `max_write`).
        blksize: 1024 * 1024,
        flags: 0,
    }
}

fn file_type(k: Kind) -> FileType {
    match k {
        Kind::Dir => FileType::Directory,
        Kind::File => FileType::RegularFile,
        Kind::Symlink => FileType::Symlink,
    }
}

/// The permission bits of a mode the kernel sent, less the umask it sent beside it.
fn masked(mode: u32, umask: u32) -> u32 {
    mode & !umask & 0o7777
}

/// Replies to an operation that returns nothing but success or an error.
fn reply_empty(op: &str, r: Result<(), FsError>, reply: ReplyEmpty) {
    match r {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(fail(op, &e)),
    }
}

/// Logs an error once, at the level it deserves, and turns it into an errno.
fn fail(op: &str, e: &FsError) -> Errno {
    match e.level() {
        Level::Debug => tracing::debug!("{op}: {e}"),
        Level::Info => tracing::info!("{op}: {e}"),
        Level::Warn => tracing::warn!("{op}: {e}"),
        Level::Error => tracing::error!("{op}: {e}"),
    }
    Errno::from_i32(e.errno())
}

fn name_str(name: &OsStr) -> Result<&str, Errno> {
    name.to_str().ok_or(Errno::EINVAL) // MEGA names are UTF-8
}

fn secs(t: TimeOrNow) -> i64 {
    let st = match t {
        TimeOrNow::SpecificTime(t) => t,
        TimeOrNow::Now => SystemTime::now(),
    };
    st.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The kernel settings of the connection (the FUSE "knobs"), shared with the benchmark's
/// null filesystem so that the ceiling it measures is the one this mount could reach:
/// requests of up to 1 MiB (a MEGA chunk at most; the kernel caps a request at its
/// `max_pages`, 256 pages by default), the largest read-ahead the kernel allows, more
/// background requests in flight (read-ahead of several files at once), and parallel
/// lookups and readdirs in one directory.
pub fn tune_kernel(config: &mut fuser::KernelConfig) {
    const MIB: u32 = 1 << 20;
    let _ = config.set_max_write(MIB);
    if let Err(max) = config.set_max_readahead(MIB) {
        let _ = config.set_max_readahead(max);
    }
    let _ = config.set_max_background(64);
    let _ = config.set_congestion_threshold(48);
    let _ = config.add_capabilities(fuser::InitFlags::FUSE_PARALLEL_DIROPS);
    // Names with their attributes in one reply (`ls -l`, `find`: one round trip per page of
    // a listing, not one lookup per entry); the kernel uses it where lookups would follow.
    let _ = config.add_capabilities(
        fuser::InitFlags::FUSE_DO_READDIRPLUS | fuser::InitFlags::FUSE_READDIRPLUS_AUTO,
    );
}

/// A listing as the kernel reads it: `.` and `..`, then the entries, each with the position
/// that follows it (1-based: the offset the next read starts from).
fn listing(
    ino: u64,
    entries: &[crate::fs::DirEntry],
) -> impl Iterator<Item = (u64, (u64, FileType, &str))> {
    let dots = [
        (ino, FileType::Directory, "."),
        (ino, FileType::Directory, ".."),
    ];
    dots.into_iter()
        .chain(
            entries
                .iter()
                .map(|e| (e.ino, file_type(e.kind), e.name.as_str())),
        )
        .enumerate()
        .map(|(i, e)| (i as u64 + 1, e))
}

impl FuseAdapter {
    /// Setting or removing an attribute: EOPNOTSUPP (`cp -a` then quietly skips them), or
    /// ENOSYS without `-o xattr`.
    fn xattr_unsupported(&self) -> Errno {
        if self.fs.config().xattr {
            Errno::from_i32(libc::EOPNOTSUPP)
        } else {
            Errno::ENOSYS
        }
    }
}

/// An extended attribute's value (or list of names): its size when asked with `size` 0,
/// ERANGE when it does not fit.
fn xattr_reply(reply: ReplyXattr, size: u32, v: &[u8]) {
    if size == 0 {
        reply.size(v.len() as u32);
    } else if v.len() > size as usize {
        reply.error(Errno::from_i32(libc::ERANGE));
    } else {
        reply.data(v);
    }
}

impl Filesystem for FuseAdapter {
    fn init(&mut self, _req: &Request, config: &mut fuser::KernelConfig) -> std::io::Result<()> {
        tune_kernel(config);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let name = match name_str(name) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        match self.fs.lookup(parent.0, name) {
            Ok(a) => reply.entry(&TTL, &file_attr(&a), Generation(0)),
            Err(e) => reply.error(fail("lookup", &e)),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.fs.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.fs.getattr(ino.0) {
            Ok(a) => reply.attr(&TTL, &file_attr(&a)),
            Err(e) => reply.error(fail("getattr", &e)),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        // Modes are stored (see doc/SEMANTICS.md); owners come from mount options and chown
        // is accepted and ignored, so tools like `cp -p` and `rsync -a` keep working.
        let r = self.rt.block_on(async {
            if let Some(m) = mode {
                self.fs.chmod(ino.0, m & 0o7777).await?;
            }
            self.fs
                .setattr(ino.0, fh.map(|f| f.0), size, mtime.map(secs))
                .await
        });
        match r {
            Ok(a) => reply.attr(&TTL, &file_attr(&a)),
            Err(e) => reply.error(fail("setattr", &e)),
        }
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let name = match name_str(name) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        let mode = Some(masked(mode, umask));
        match self.rt.block_on(self.fs.mkdir(parent.0, name, mode)) {
            Ok(a) => reply.entry(&TTL, &file_attr(&a), Generation(0)),
            Err(e) => reply.error(fail("mkdir", &e)),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let name = match name_str(name) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        reply_empty(
            "unlink",
            self.rt.block_on(self.fs.unlink(parent.0, name)),
            reply,
        );
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let name = match name_str(name) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        reply_empty(
            "rmdir",
            self.rt.block_on(self.fs.rmdir(parent.0, name)),
            reply,
        );
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        if !flags.is_empty() {
            // RENAME_NOREPLACE / RENAME_EXCHANGE are not supported.
            return reply.error(Errno::EINVAL);
        }
        let (name, newname) = match (name_str(name), name_str(newname)) {
            (Ok(a), Ok(b)) => (a, b),
            _ => return reply.error(Errno::EINVAL),
        };
        let r = self
            .rt
            .block_on(self.fs.rename(parent.0, name, newparent.0, newname));
        reply_empty("rename", r, reply);
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let write = flags.acc_mode() != OpenAccMode::O_RDONLY;
        let truncate = flags.0 & libc::O_TRUNC != 0;
        match self.rt.block_on(self.fs.open(ino.0, write, truncate)) {
            Ok(fh) => {
                let flags = if !write && self.fs.keep_cache(ino.0) {
                    FopenFlags::FOPEN_KEEP_CACHE
                } else {
                    FopenFlags::empty()
                };
                reply.opened(FileHandle(fh), flags)
            }
            Err(e) => reply.error(fail("open", &e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.rt.block_on(self.fs.read(ino.0, fh.0, offset, size)) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(fail("read", &e)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.rt.block_on(self.fs.write(fh.0, offset, data)) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(fail("write", &e)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply_empty("flush", self.rt.block_on(self.fs.flush(fh.0)), reply);
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply_empty("fsync", self.rt.block_on(self.fs.fsync(fh.0)), reply);
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // With write-back, until the folder and what is new in it are on MEGA.
        reply_empty("fsyncdir", self.rt.block_on(self.fs.fsyncdir(ino.0)), reply);
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        reply_empty("release", self.rt.block_on(self.fs.release(fh.0)), reply);
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.fs.opendir(ino.0) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(fail("opendir", &e)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        // Offsets are positions in the listing the handle took when it was opened.
        let entries = match self.fs.dir_entries(ino.0, fh.0, offset) {
            Ok(e) => e,
            Err(e) => return reply.error(fail("readdir", &e)),
        };
        for (i, (ino, kind, name)) in listing(ino.0, &entries).skip(offset as usize) {
            if reply.add(INodeNo(ino), i, kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let entries = match self.fs.dir_entries(ino.0, fh.0, offset) {
            Ok(e) => e,
            Err(e) => return reply.error(fail("readdirplus", &e)),
        };
        let parent = ino.0;
        for (i, (ino, _, name)) in listing(parent, &entries).skip(offset as usize) {
            // An entry gone since the listing was taken is left out.
            let Ok(attr) = self.fs.getattr(ino) else {
                continue;
            };
            if reply.add(
                INodeNo(ino),
                i,
                name,
                &TTL,
                &file_attr(&attr),
                Generation(0),
            ) {
                break;
            }
            // `.` and `..` make no entry in the kernel; the others count as lookups.
            if i > 2 {
                self.fs.listed_with_attrs(parent, &entries[i as usize - 3]);
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.fs.releasedir(fh.0);
        reply.ok();
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        // Without `-o xattr`, ENOSYS: the kernel stops asking for good. With it, it asks on
        // every `ls -l` entry (ACLs) and before writes (`security.capability`): names that
        // are not ours are answered here, without the runtime.
        if !self.fs.config().xattr {
            return reply.error(Errno::ENOSYS);
        }
        let Some(name) = name.to_str().filter(|n| n.starts_with("user.mega.")) else {
            return reply.error(Errno::ENODATA);
        };
        match self.rt.block_on(self.fs.getxattr(ino.0, name)) {
            Ok(v) => xattr_reply(reply, size, &v),
            Err(e) => reply.error(fail("getxattr", &e)),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        if !self.fs.config().xattr {
            return reply.error(Errno::ENOSYS);
        }
        match self.fs.listxattr(ino.0) {
            Ok(names) => {
                let mut v = Vec::new();
                for n in names {
                    v.extend_from_slice(n.as_bytes());
                    v.push(0);
                }
                xattr_reply(reply, size, &v)
            }
            Err(e) => reply.error(fail("listxattr", &e)),
        }
    }

    fn setxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        reply.error(self.xattr_unsupported());
    }

    fn removexattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(self.xattr_unsupported());
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match self.rt.block_on(self.fs.statfs()) {
            Ok(s) => reply.statfs(
                s.blocks,
                s.free,
                s.free,
                s.files,
                u64::MAX / 2,
                s.block_size,
                NAME_MAX,
                s.block_size,
            ),
            Err(e) => reply.error(fail("statfs", &e)),
        }
    }

    // Hard links are not supported by MEGA; EPERM is what tools like git expect from a
    // filesystem without them (git then falls back to rename).
    fn link(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _newparent: INodeNo,
        _newname: &OsStr,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EPERM);
    }

    fn symlink(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        target: &std::path::Path,
        reply: ReplyEntry,
    ) {
        use std::os::unix::ffi::OsStrExt;
        let name = match name_str(name) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        let to = target.as_os_str().as_bytes();
        match self.rt.block_on(self.fs.symlink(parent.0, name, to)) {
            Ok(a) => reply.entry(&TTL, &file_attr(&a), Generation(0)),
            Err(e) => reply.error(fail("symlink", &e)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.rt.block_on(self.fs.readlink(ino.0)) {
            Ok(to) => reply.data(&to),
            Err(e) => reply.error(fail("readlink", &e)),
        }
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let name = match name_str(name) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        let mode = Some(masked(mode, umask));
        match self.rt.block_on(self.fs.create(parent.0, name, mode)) {
            Ok((a, fh)) => reply.created(
                &TTL,
                &file_attr(&a),
                Generation(0),
                FileHandle(fh),
                FopenFlags::empty(),
            ),
            Err(e) => reply.error(fail("create", &e)),
        }
    }
}
