//! One filesystem behaviour suite, written once and run twice: against `MegaFs` in-process
//! (no kernel) and through a real FUSE mount of `mega-mount`. Both backends answer the same
//! operations by path and report failures as errnos, so the two tiers check the same
//! behaviour, the errno table included: create, write, read back, writes at offsets, rename
//! over an existing file, truncate, unlink while open (reading and writing; `fstat` after it),
//! readdir, rmdir, mtimes, names over 255 bytes, reopening a file not uploaded yet, and the
//! errors of each.

#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::mount::{fs_core, op, Mount};
use common::{data, Env};
use mega_mount::fs::{Kind, MegaFs, ROOT_INO};

/// What `stat` says, in the terms both backends share.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stat {
    size: u64,
    mtime: i64,
    dir: bool,
}

type Errno = i32;

/// The operations of the suite, by `/`-separated path from the filesystem root.
trait Backend {
    type Handle;
    async fn write_file(&self, path: &str, data: &[u8]) -> Result<(), Errno>;
    async fn read_file(&self, path: &str) -> Result<Vec<u8>, Errno>;
    /// Opens for writing: `create` makes a missing file, `truncate` empties it.
    async fn open_write(
        &self,
        path: &str,
        create: bool,
        truncate: bool,
    ) -> Result<Self::Handle, Errno>;
    async fn open_read(&self, path: &str) -> Result<Self::Handle, Errno>;
    async fn write_at(&self, h: &Self::Handle, offset: u64, data: &[u8]) -> Result<(), Errno>;
    async fn read_at(&self, h: &Self::Handle, offset: u64, len: usize) -> Result<Vec<u8>, Errno>;
    async fn close(&self, h: Self::Handle) -> Result<(), Errno>;
    async fn rename(&self, from: &str, to: &str) -> Result<(), Errno>;
    async fn truncate(&self, path: &str, size: u64) -> Result<(), Errno>;
    async fn unlink(&self, path: &str) -> Result<(), Errno>;
    async fn mkdir(&self, path: &str) -> Result<(), Errno>;
    async fn rmdir(&self, path: &str) -> Result<(), Errno>;
    async fn readdir(&self, path: &str) -> Result<Vec<String>, Errno>;
    async fn stat(&self, path: &str) -> Result<Stat, Errno>;
    /// `fstat` of an open handle: its size and link count.
    async fn fstat(&self, h: &Self::Handle) -> Result<(u64, u64), Errno>;
    async fn set_mtime(&self, path: &str, secs: i64) -> Result<(), Errno>;
}

// ---- the filesystem core, without a kernel ----

struct Core {
    fs: Arc<MegaFs>,
}

struct CoreHandle {
    ino: u64,
    fh: u64,
}

fn split(path: &str) -> (&str, &str) {
    path.rsplit_once('/').unwrap_or(("", path))
}

impl Core {
    /// The inode of a folder path ("" is the root).
    fn dir(&self, path: &str) -> Result<u64, Errno> {
        let mut ino = ROOT_INO;
        for part in path.split('/').filter(|p| !p.is_empty()) {
            ino = self.fs.lookup(ino, part).map_err(|e| e.errno())?.ino;
        }
        Ok(ino)
    }

    fn ino(&self, path: &str) -> Result<u64, Errno> {
        let (parent, name) = split(path);
        let p = self.dir(parent)?;
        Ok(self.fs.lookup(p, name).map_err(|e| e.errno())?.ino)
    }
}

impl Backend for Core {
    type Handle = CoreHandle;

    async fn write_file(&self, path: &str, data: &[u8]) -> Result<(), Errno> {
        let h = self.open_write(path, true, true).await?;
        self.write_at(&h, 0, data).await?;
        self.close(h).await
    }

    async fn read_file(&self, path: &str) -> Result<Vec<u8>, Errno> {
        let h = self.open_read(path).await?;
        let mut out = Vec::new();
        loop {
            let part = self.read_at(&h, out.len() as u64, 128 * 1024).await?;
            if part.is_empty() {
                break;
            }
            out.extend(part);
        }
        self.close(h).await?;
        Ok(out)
    }

    async fn open_write(
        &self,
        path: &str,
        create: bool,
        truncate: bool,
    ) -> Result<CoreHandle, Errno> {
        let (parent, name) = split(path);
        let p = self.dir(parent)?;
        match self.fs.lookup(p, name) {
            Ok(a) => {
                let fh = self
                    .fs
                    .open(a.ino, true, truncate)
                    .await
                    .map_err(|e| e.errno())?;
                Ok(CoreHandle { ino: a.ino, fh })
            }
            Err(e) if create && e.errno() == libc::ENOENT => {
                let (a, fh) = self.fs.create(p, name, None).await.map_err(|e| e.errno())?;
                Ok(CoreHandle { ino: a.ino, fh })
            }
            Err(e) => Err(e.errno()),
        }
    }

    async fn open_read(&self, path: &str) -> Result<CoreHandle, Errno> {
        let ino = self.ino(path)?;
        let fh = self
            .fs
            .open(ino, false, false)
            .await
            .map_err(|e| e.errno())?;
        Ok(CoreHandle { ino, fh })
    }

    async fn write_at(&self, h: &CoreHandle, offset: u64, data: &[u8]) -> Result<(), Errno> {
        self.fs
            .write(h.fh, offset, data)
            .await
            .map_err(|e| e.errno())?;
        Ok(())
    }

    async fn read_at(&self, h: &CoreHandle, offset: u64, len: usize) -> Result<Vec<u8>, Errno> {
        self.fs
            .read(h.ino, h.fh, offset, len as u32)
            .await
            .map(Vec::from)
            .map_err(|e| e.errno())
    }

    async fn close(&self, h: CoreHandle) -> Result<(), Errno> {
        self.fs.release(h.fh).await.map_err(|e| e.errno())
    }

    async fn rename(&self, from: &str, to: &str) -> Result<(), Errno> {
        let ((fp, fname), (tp, tname)) = (split(from), split(to));
        let (fp, tp) = (self.dir(fp)?, self.dir(tp)?);
        self.fs
            .rename(fp, fname, tp, tname)
            .await
            .map_err(|e| e.errno())
    }

    async fn truncate(&self, path: &str, size: u64) -> Result<(), Errno> {
        let ino = self.ino(path)?;
        self.fs
            .setattr(ino, None, Some(size), None)
            .await
            .map_err(|e| e.errno())?;
        Ok(())
    }

    async fn unlink(&self, path: &str) -> Result<(), Errno> {
        let (parent, name) = split(path);
        let p = self.dir(parent)?;
        self.fs.unlink(p, name).await.map_err(|e| e.errno())
    }

    async fn mkdir(&self, path: &str) -> Result<(), Errno> {
        let (parent, name) = split(path);
        let p = self.dir(parent)?;
        self.fs.mkdir(p, name, None).await.map_err(|e| e.errno())?;
        Ok(())
    }

    async fn rmdir(&self, path: &str) -> Result<(), Errno> {
        let (parent, name) = split(path);
        let p = self.dir(parent)?;
        self.fs.rmdir(p, name).await.map_err(|e| e.errno())
    }

    async fn readdir(&self, path: &str) -> Result<Vec<String>, Errno> {
        let ino = self.dir(path)?;
        let mut names: Vec<String> = self
            .fs
            .readdir(ino)
            .map_err(|e| e.errno())?
            .into_iter()
            .map(|e| e.name)
            .collect();
        names.sort();
        Ok(names)
    }

    async fn stat(&self, path: &str) -> Result<Stat, Errno> {
        let (parent, name) = split(path);
        let p = self.dir(parent)?;
        let a = self.fs.lookup(p, name).map_err(|e| e.errno())?;
        Ok(Stat {
            size: a.size,
            mtime: a
                .mtime
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64),
            dir: a.kind == Kind::Dir,
        })
    }

    async fn fstat(&self, h: &CoreHandle) -> Result<(u64, u64), Errno> {
        let a = self.fs.getattr(h.ino).map_err(|e| e.errno())?;
        Ok((a.size, a.nlink as u64))
    }

    async fn set_mtime(&self, path: &str, secs: i64) -> Result<(), Errno> {
        let ino = self.ino(path)?;
        self.fs
            .setattr(ino, None, None, Some(secs))
            .await
            .map_err(|e| e.errno())?;
        Ok(())
    }
}

// ---- a real mount ----

struct Mounted {
    m: Mount,
}

fn errno(e: std::io::Error) -> Errno {
    e.raw_os_error().unwrap_or(libc::EIO)
}

impl Mounted {
    fn p(&self, path: &str) -> PathBuf {
        self.m.path(path)
    }
}

impl Backend for Mounted {
    type Handle = Arc<std::fs::File>;

    async fn write_file(&self, path: &str, data: &[u8]) -> Result<(), Errno> {
        let (p, d) = (self.p(path), data.to_vec());
        op("write_file", move || std::fs::write(p, d).map_err(errno)).await
    }

    async fn read_file(&self, path: &str) -> Result<Vec<u8>, Errno> {
        let p = self.p(path);
        op("read_file", move || std::fs::read(p).map_err(errno)).await
    }

    async fn open_write(
        &self,
        path: &str,
        create: bool,
        truncate: bool,
    ) -> Result<Self::Handle, Errno> {
        let p = self.p(path);
        op("open_write", move || {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(create)
                .truncate(truncate)
                .open(p)
                .map(Arc::new)
                .map_err(errno)
        })
        .await
    }

    async fn open_read(&self, path: &str) -> Result<Self::Handle, Errno> {
        let p = self.p(path);
        op("open_read", move || {
            std::fs::File::open(p).map(Arc::new).map_err(errno)
        })
        .await
    }

    async fn write_at(&self, h: &Self::Handle, offset: u64, data: &[u8]) -> Result<(), Errno> {
        let (f, d) = (h.clone(), data.to_vec());
        op("write_at", move || {
            f.write_all_at(&d, offset).map_err(errno)
        })
        .await
    }

    async fn read_at(&self, h: &Self::Handle, offset: u64, len: usize) -> Result<Vec<u8>, Errno> {
        let f = h.clone();
        op("read_at", move || {
            let mut buf = vec![0u8; len];
            let n = f.read_at(&mut buf, offset).map_err(errno)?;
            buf.truncate(n);
            Ok(buf)
        })
        .await
    }

    async fn close(&self, h: Self::Handle) -> Result<(), Errno> {
        // close(2) reports what FLUSH answered; std ignores it, so sync first to see errors.
        op("close", move || {
            let r = h.sync_all().map_err(errno);
            drop(h);
            r
        })
        .await
    }

    async fn rename(&self, from: &str, to: &str) -> Result<(), Errno> {
        let (a, b) = (self.p(from), self.p(to));
        op("rename", move || std::fs::rename(a, b).map_err(errno)).await
    }

    async fn truncate(&self, path: &str, size: u64) -> Result<(), Errno> {
        let p = self.p(path);
        op("truncate", move || {
            std::fs::OpenOptions::new()
                .write(true)
                .open(p)
                .and_then(|f| f.set_len(size))
                .map_err(errno)
        })
        .await
    }

    async fn unlink(&self, path: &str) -> Result<(), Errno> {
        let p = self.p(path);
        op("unlink", move || std::fs::remove_file(p).map_err(errno)).await
    }

    async fn mkdir(&self, path: &str) -> Result<(), Errno> {
        let p = self.p(path);
        op("mkdir", move || std::fs::create_dir(p).map_err(errno)).await
    }

    async fn rmdir(&self, path: &str) -> Result<(), Errno> {
        let p = self.p(path);
        op("rmdir", move || std::fs::remove_dir(p).map_err(errno)).await
    }

    async fn readdir(&self, path: &str) -> Result<Vec<String>, Errno> {
        let p = self.p(path);
        op("readdir", move || {
            let mut names = std::fs::read_dir(p)
                .map_err(errno)?
                .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(errno)?;
            names.sort();
            Ok(names)
        })
        .await
    }

    async fn stat(&self, path: &str) -> Result<Stat, Errno> {
        let p = self.p(path);
        op("stat", move || {
            let m = std::fs::metadata(p).map_err(errno)?;
            Ok(Stat {
                size: if m.is_dir() { 0 } else { m.len() },
                mtime: m.mtime(),
                dir: m.is_dir(),
            })
        })
        .await
    }

    async fn fstat(&self, h: &Self::Handle) -> Result<(u64, u64), Errno> {
        let f = h.clone();
        op("fstat", move || {
            let m = f.metadata().map_err(errno)?;
            Ok((m.len(), m.nlink()))
        })
        .await
    }

    async fn set_mtime(&self, path: &str, secs: i64) -> Result<(), Errno> {
        let p = self.p(path);
        op("set_mtime", move || {
            let t = UNIX_EPOCH + Duration::from_secs(secs as u64);
            std::fs::File::open(p)
                .and_then(|f| f.set_modified(t))
                .map_err(errno)
        })
        .await
    }
}

// ---- the cases ----

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A new file reads back as written, in one piece and at offsets, and is listed.
async fn create_write_read_back(b: &impl Backend) {
    let body = data(700_000, 1); // several MAC chunks
    b.write_file("a.bin", &body).await.unwrap();
    assert_eq!(b.read_file("a.bin").await.unwrap(), body);
    assert_eq!(b.stat("a.bin").await.unwrap().size, 700_000);
    let h = b.open_read("a.bin").await.unwrap();
    assert_eq!(
        b.read_at(&h, 300_001, 1000).await.unwrap(),
        body[300_001..301_001]
    );
    assert_eq!(b.read_at(&h, 699_990, 100).await.unwrap(), body[699_990..]);
    assert!(b.read_at(&h, 800_000, 10).await.unwrap().is_empty());
    b.close(h).await.unwrap();
    assert_eq!(b.readdir("").await.unwrap(), vec!["a.bin"]);
    assert_eq!(b.read_file("missing").await.unwrap_err(), libc::ENOENT);
}

/// Writes at an offset into an existing file (no truncation) keep the rest.
async fn writes_at_offsets_keep_the_rest(b: &impl Backend) {
    b.write_file("f.txt", b"hello world").await.unwrap();
    let h = b.open_write("f.txt", false, false).await.unwrap();
    b.write_at(&h, 6, b"there").await.unwrap();
    b.write_at(&h, 11, b", friend").await.unwrap();
    b.close(h).await.unwrap();
    assert_eq!(b.read_file("f.txt").await.unwrap(), b"hello there, friend");
}

/// rename(2) over an existing file replaces it; the source name is gone.
async fn rename_replaces_target(b: &impl Backend) {
    b.write_file("src.txt", b"new content").await.unwrap();
    b.write_file("dst.txt", b"old content, longer")
        .await
        .unwrap();
    b.rename("src.txt", "dst.txt").await.unwrap();
    assert_eq!(b.read_file("dst.txt").await.unwrap(), b"new content");
    assert_eq!(b.stat("src.txt").await.unwrap_err(), libc::ENOENT);
    assert_eq!(b.readdir("").await.unwrap(), vec!["dst.txt"]);
    // Into a folder, and a folder over a file is refused.
    b.mkdir("d").await.unwrap();
    b.rename("dst.txt", "d/moved.txt").await.unwrap();
    assert_eq!(b.read_file("d/moved.txt").await.unwrap(), b"new content");
    b.write_file("plain", b"x").await.unwrap();
    assert_eq!(b.rename("d", "plain").await.unwrap_err(), libc::ENOTDIR);
    assert_eq!(b.rename("missing", "x").await.unwrap_err(), libc::ENOENT);
}

/// A file renamed while it is still being written is saved under its new name.
async fn rename_while_writing(b: &impl Backend) {
    let h = b.open_write("draft.tmp", true, true).await.unwrap();
    b.write_at(&h, 0, b"first part ").await.unwrap();
    b.rename("draft.tmp", "final.txt").await.unwrap();
    b.write_at(&h, 11, b"second part").await.unwrap();
    b.close(h).await.unwrap();
    assert_eq!(
        b.read_file("final.txt").await.unwrap(),
        b"first part second part"
    );
    assert_eq!(b.readdir("").await.unwrap(), vec!["final.txt"]);
}

/// truncate shortens and extends (with zeros).
async fn truncate_shortens_and_extends(b: &impl Backend) {
    let body = data(400_000, 2);
    b.write_file("t.bin", &body).await.unwrap();
    b.truncate("t.bin", 1000).await.unwrap();
    assert_eq!(b.stat("t.bin").await.unwrap().size, 1000);
    assert_eq!(b.read_file("t.bin").await.unwrap(), body[..1000]);
    b.truncate("t.bin", 3000).await.unwrap();
    let back = b.read_file("t.bin").await.unwrap();
    assert_eq!(back.len(), 3000);
    assert_eq!(back[..1000], body[..1000]);
    assert!(back[1000..].iter().all(|&x| x == 0));
    b.truncate("t.bin", 0).await.unwrap();
    assert!(b.read_file("t.bin").await.unwrap().is_empty());
}

/// A file unlinked while open stays readable through the open handle; writes to a file
/// unlinked while open for writing are discarded at close, without an error.
async fn unlink_while_open(b: &impl Backend) {
    let body = data(300_000, 3);
    b.write_file("r.bin", &body).await.unwrap();
    let h = b.open_read("r.bin").await.unwrap();
    assert_eq!(b.read_at(&h, 0, 10).await.unwrap(), body[..10]);
    b.unlink("r.bin").await.unwrap();
    assert_eq!(b.stat("r.bin").await.unwrap_err(), libc::ENOENT);
    assert_eq!(
        b.read_at(&h, 200_000, 1000).await.unwrap(),
        body[200_000..201_000]
    );
    b.close(h).await.unwrap();

    let w = b.open_write("w.txt", true, true).await.unwrap();
    b.write_at(&w, 0, b"never saved").await.unwrap();
    b.unlink("w.txt").await.unwrap();
    assert_eq!(b.stat("w.txt").await.unwrap_err(), libc::ENOENT);
    b.close(w).await.unwrap();

    b.write_file("e.txt", b"existing").await.unwrap();
    let w = b.open_write("e.txt", false, false).await.unwrap();
    b.write_at(&w, 0, b"EXISTING, changed").await.unwrap();
    b.unlink("e.txt").await.unwrap();
    b.close(w).await.unwrap();
    assert!(b.readdir("").await.unwrap().is_empty(), "nothing came back");
}

/// Folders list their children in order; rmdir refuses non-empty folders and files.
async fn readdir_and_rmdir(b: &impl Backend) {
    b.mkdir("dir").await.unwrap();
    assert_eq!(b.mkdir("dir").await.unwrap_err(), libc::EEXIST);
    for name in ["c.txt", "a.txt", "b.txt"] {
        b.write_file(&format!("dir/{name}"), name.as_bytes())
            .await
            .unwrap();
    }
    b.mkdir("dir/sub").await.unwrap();
    assert_eq!(
        b.readdir("dir").await.unwrap(),
        vec!["a.txt", "b.txt", "c.txt", "sub"]
    );
    assert!(b.stat("dir/sub").await.unwrap().dir);
    assert_eq!(b.rmdir("dir").await.unwrap_err(), libc::ENOTEMPTY);
    assert_eq!(b.rmdir("dir/a.txt").await.unwrap_err(), libc::ENOTDIR);
    assert_eq!(b.unlink("dir/sub").await.unwrap_err(), libc::EISDIR);
    b.rmdir("dir/sub").await.unwrap();
    for name in ["a.txt", "b.txt", "c.txt"] {
        b.unlink(&format!("dir/{name}")).await.unwrap();
    }
    b.rmdir("dir").await.unwrap();
    assert!(b.readdir("").await.unwrap().is_empty());
    assert_eq!(b.readdir("dir").await.unwrap_err(), libc::ENOENT);
}

/// An explicit mtime sticks (no content change); a later write makes it "now" again.
async fn mtimes(b: &impl Backend) {
    let before = now();
    b.write_file("m.txt", b"content").await.unwrap();
    let written = b.stat("m.txt").await.unwrap().mtime;
    assert!(written >= before - 1, "{written} < {before}");
    b.set_mtime("m.txt", 1_500_000_000).await.unwrap();
    assert_eq!(b.stat("m.txt").await.unwrap().mtime, 1_500_000_000);
    assert_eq!(b.read_file("m.txt").await.unwrap(), b"content");
    let h = b.open_write("m.txt", false, false).await.unwrap();
    b.write_at(&h, 7, b"!").await.unwrap();
    b.close(h).await.unwrap();
    assert!(b.stat("m.txt").await.unwrap().mtime >= before - 1);
}

// ---- running them on both backends ----

/// A name component over 255 bytes is refused (the kernel checks only the whole path), for
/// every operation that takes one; 255 bytes is fine.
async fn names_over_255_bytes_are_refused(b: &impl Backend) {
    let long = "n".repeat(256);
    assert_eq!(b.write_file(&long, b"x").await, Err(libc::ENAMETOOLONG));
    assert_eq!(b.mkdir(&long).await, Err(libc::ENAMETOOLONG));
    assert_eq!(b.stat(&long).await, Err(libc::ENAMETOOLONG));
    assert_eq!(b.unlink(&long).await, Err(libc::ENAMETOOLONG));
    assert_eq!(b.rmdir(&long).await, Err(libc::ENAMETOOLONG));
    let fits = "f".repeat(255);
    b.write_file(&fits, b"fits").await.unwrap();
    assert_eq!(b.rename(&fits, &long).await, Err(libc::ENAMETOOLONG));
    assert_eq!(b.read_file(&fits).await.unwrap(), b"fits");
    assert_eq!(b.readdir("").await.unwrap(), vec![fits]);
}

/// `fstat` of a file unlinked while open answers, with no links; the handle goes on working.
async fn fstat_after_unlink(b: &impl Backend) {
    let h = b.open_write("gone.txt", true, true).await.unwrap();
    b.write_at(&h, 0, b"abc").await.unwrap();
    b.unlink("gone.txt").await.unwrap();
    assert_eq!(b.fstat(&h).await.unwrap(), (3, 0));
    b.write_at(&h, 3, b"def").await.unwrap();
    assert_eq!(b.read_at(&h, 0, 6).await.unwrap(), b"abcdef");
    b.close(h).await.unwrap();
    assert_eq!(b.stat("gone.txt").await, Err(libc::ENOENT));
}

/// A file created here and not uploaded yet can be opened again by its path, and the new
/// handle starts from what the first one wrote. (Each handle writes its own staging copy and
/// the last one closed wins, as documented; here the second is closed last.)
async fn reopen_before_the_first_upload(b: &impl Backend) {
    let first = b.open_write("new.txt", true, true).await.unwrap();
    b.write_at(&first, 0, b"first").await.unwrap();
    let second = b.open_write("new.txt", false, false).await.unwrap();
    assert_eq!(b.read_at(&second, 0, 100).await.unwrap(), b"first");
    assert_eq!(b.fstat(&second).await.unwrap(), (5, 1));
    b.close(first).await.unwrap();
    b.write_at(&second, 5, b" and second").await.unwrap();
    b.close(second).await.unwrap();
    assert_eq!(b.read_file("new.txt").await.unwrap(), b"first and second");
}

async fn core(env: &Env, email: &str) -> Core {
    env.account(email).await;
    let (fs, _client) = fs_core(env, email).await;
    Core { fs }
}

async fn mounted(env: &Env, email: &str) -> Mounted {
    env.account(email).await;
    Mounted {
        m: Mount::start(env, email, &[], true),
    }
}

macro_rules! on_both_backends {
    ($($case:ident),* $(,)?) => {
        mod in_process {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let env = Env::start().await;
                    let b = core(&env, concat!(stringify!($case), "@core.example")).await;
                    super::$case(&b).await;
                }
            )*
        }
        mod through_a_mount {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let env = Env::start().await;
                    let b = mounted(&env, concat!(stringify!($case), "@mount.example")).await;
                    super::$case(&b).await;
                }
            )*
        }
    };
}

on_both_backends!(
    create_write_read_back,
    writes_at_offsets_keep_the_rest,
    rename_replaces_target,
    rename_while_writing,
    truncate_shortens_and_extends,
    unlink_while_open,
    readdir_and_rmdir,
    mtimes,
    names_over_255_bytes_are_refused,
    fstat_after_unlink,
    reopen_before_the_first_upload,
);
