//! The FUSE ceiling for `scripts/bench.sh`: a filesystem that does no work. It holds one
//! read-only file `zero` of the size given, whose reads return zeros from memory, and takes
//! any other file name as a sink whose writes are counted and thrown away (in any folder: a
//! file's name alone names its sink). `mkdir` makes an empty folder that is only remembered
//! by the kernel's dentry cache (a `tar x` of a tree runs on it: the floor of many small files
//! through FUSE). It uses the same
//! kernel settings (`mega_mount::fuse::tune_kernel`) and the same number of threads as
//! mega-mount, so what it reaches is what the mount could reach on this machine.
//!
//! `cargo run --release --example nullfs -- MOUNTPOINT SIZE_BYTES [THREADS]`; unmount with
//! `fusermount3 -u MOUNTPOINT`.

use std::ffi::OsStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    OpenFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEntry, ReplyOpen,
    ReplyWrite, Request, WriteFlags,
};

const ROOT: u64 = 1;
const ZERO: u64 = 2;
/// Folders made by `mkdir` have inode numbers from here on.
const DIRS: u64 = 1 << 40;
const TTL: Duration = Duration::from_secs(60);
/// Zeros that reads are served from (a FUSE read is at most 1 MiB with the settings used).
static ZEROS: [u8; 1 << 20] = [0; 1 << 20];

struct NullFs {
    size: u64,
    /// Sink files by name: inode and bytes written.
    sinks: Mutex<Vec<(String, u64, AtomicU64)>>,
    /// The next folder's inode number.
    next_dir: AtomicU64,
}

fn attr(ino: u64, size: u64) -> FileAttr {
    // Fixed times: a changing mtime would make the kernel drop the file's cached pages.
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    FileAttr {
        ino: INodeNo(ino),
        size,
        blocks: size.div_ceil(512),
        atime: now,
        mtime: now,
        ctime: now,
        crtime: now,
        kind: if ino == ROOT || ino >= DIRS {
            FileType::Directory
        } else {
            FileType::RegularFile
        },
        perm: if ino == ROOT || ino >= DIRS {
            0o755
        } else {
            0o644
        },
        nlink: 1,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 128 * 1024,
        flags: 0,
    }
}

impl NullFs {
    fn sink(&self, name: &str, create: bool) -> Option<u64> {
        let mut sinks = self.sinks.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, ino, _)) = sinks.iter().find(|(n, _, _)| n == name) {
            return Some(*ino);
        }
        if !create {
            return None;
        }
        let ino = ZERO + 1 + sinks.len() as u64;
        sinks.push((name.to_string(), ino, AtomicU64::new(0)));
        Some(ino)
    }

    fn size_of(&self, ino: u64) -> Option<u64> {
        match ino {
            ROOT => Some(0),
            ZERO => Some(self.size),
            d if d >= DIRS && d < self.next_dir.load(Ordering::Relaxed) => Some(0),
            _ => self
                .sinks
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .find(|(_, i, _)| *i == ino)
                .map(|(_, _, n)| n.load(Ordering::Relaxed)),
        }
    }
}

impl Filesystem for NullFs {
    fn init(&mut self, _req: &Request, config: &mut fuser::KernelConfig) -> std::io::Result<()> {
        mega_mount::fuse::tune_kernel(config);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let name = name.to_string_lossy();
        let ino = match (parent.0, name.as_ref()) {
            (ROOT, "zero") => Some(ZERO),
            (ROOT, n) => self.sink(n, false),
            _ => None,
        };
        match ino.and_then(|i| Some((i, self.size_of(i)?))) {
            Some((i, size)) => reply.entry(&TTL, &attr(i, size), Generation(0)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.size_of(ino.0) {
            Some(size) => reply.attr(&TTL, &attr(ino.0, size)),
            None => reply.error(Errno::ENOENT),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        _size: Option<u64>,
        _atime: Option<fuser::TimeOrNow>,
        _mtime: Option<fuser::TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        match self.size_of(ino.0) {
            Some(size) => reply.attr(&TTL, &attr(ino.0, size)),
            None => reply.error(Errno::ENOENT),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn mkdir(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let ino = self.next_dir.fetch_add(1, Ordering::Relaxed);
        reply.entry(&TTL, &attr(ino, 0), Generation(0));
    }

    fn open(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE);
    }

    #[allow(clippy::too_many_arguments)]
    fn create(
        &self,
        _req: &Request,
        _parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        match self.sink(&name.to_string_lossy(), true) {
            Some(ino) => reply.created(
                &TTL,
                &attr(ino, 0),
                Generation(0),
                FileHandle(0),
                FopenFlags::empty(),
            ),
            None => reply.error(Errno::EIO),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let len = self.size_of(ino.0).unwrap_or(0);
        let n = (size as u64)
            .min(len.saturating_sub(offset))
            .min(ZEROS.len() as u64);
        reply.data(&ZEROS[..n as usize]);
    }

    #[allow(clippy::too_many_arguments)]
    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let sinks = self.sinks.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, _, n)) = sinks.iter().find(|(_, i, _)| *i == ino.0) {
            n.fetch_max(offset + data.len() as u64, Ordering::Relaxed);
        }
        reply.written(data.len() as u32);
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        if offset == 0 {
            let _ = reply.add(INodeNo(ZERO), 1, FileType::RegularFile, "zero");
        }
        reply.ok();
    }

    fn readdirplus(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: fuser::ReplyDirectoryPlus,
    ) {
        if offset == 0 {
            let _ = reply.add(
                INodeNo(ZERO),
                1,
                "zero",
                &TTL,
                &attr(ZERO, self.size),
                Generation(0),
            );
        }
        reply.ok();
    }
}

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(mountpoint), Some(size)) = (args.get(1), args.get(2)) else {
        return Err("usage: nullfs MOUNTPOINT SIZE_BYTES [THREADS]".into());
    };
    let size: u64 = size.parse().map_err(|_| "SIZE_BYTES: a number")?;
    let threads: usize = match args.get(3) {
        Some(t) => t.parse().map_err(|_| "THREADS: a number")?,
        None => 4,
    };
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        fuser::MountOption::FSName("nullfs".into()),
        fuser::MountOption::DefaultPermissions,
    ];
    config.n_threads = Some(threads);
    let fs = NullFs {
        size,
        sinks: Mutex::new(Vec::new()),
        next_dir: AtomicU64::new(DIRS),
    };
    let session =
        fuser::Session::new(fs, mountpoint, &config).map_err(|e| format!("mount: {e}"))?;
    println!("nullfs: ready");
    session.run().map_err(|e| format!("session: {e}"))
}
