//! The mount test harness: a real `mega-mount` daemon per test with its own temporary
//! mountpoint and HOME, unmounted in `Drop` (`fusermount3 -u`, then a lazy `umount -l`);
//! every file operation on a mount through [`op`], with a timeout, so a bug fails one test
//! instead of hanging the run; and [`fs_core`], the same filesystem without a kernel.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use super::{Env, PASSWORD};

pub const BIN: &str = env!("CARGO_BIN_EXE_mega-mount");

/// A mounted filesystem; unmounted (and its daemon stopped) on drop.
pub struct Mount {
    pub dir: PathBuf,
    /// The daemon's HOME (its cache, with the staging files, is under `cache/mega-mount`).
    pub home: PathBuf,
    pub child: Option<Child>,
}

pub fn is_mounted(p: &Path) -> bool {
    let want = p.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(want.as_str()))
}

impl Mount {
    pub fn start(env: &Env, email: &str, args: &[&str], foreground: bool) -> Mount {
        let home = env.dir.path().join(format!("mhome-{}", rand_suffix()));
        Self::start_in(env, email, &home, args, foreground)
    }

    /// [`start`](Self::start) with the daemon's HOME given (a later mount in the same HOME
    /// finds the earlier one's cache).
    pub fn start_in(env: &Env, email: &str, home: &Path, args: &[&str], foreground: bool) -> Mount {
        let dir = env.dir.path().join(format!("mnt-{}", rand_suffix()));
        std::fs::create_dir_all(&dir).unwrap();
        let dir = dir.canonicalize().unwrap();
        let home = home.to_path_buf();
        let mut cmd = daemon(env.server.base_url(), email, &home);
        cmd.args(args).arg(&dir);
        if foreground {
            cmd.arg("--foreground");
            let child = cmd.spawn().unwrap();
            let mut m = Mount {
                dir: dir.clone(),
                home: home.clone(),
                child: Some(child),
            };
            for _ in 0..1200 {
                if is_mounted(&dir) {
                    return m;
                }
                if let Some(s) = m.child.as_mut().unwrap().try_wait().unwrap() {
                    panic!("mega-mount exited before mounting: {s}");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            panic!("not mounted after 60 s");
        }
        // Background mode: the command returns once the mount is ready.
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "mega-mount failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            is_mounted(&dir),
            "mega-mount returned but nothing is mounted"
        );
        Mount {
            dir,
            home,
            child: None,
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }
}

/// Aborts the FUSE connection of the mount at `dir` (`/sys/fs/fuse/connections/N/abort`,
/// mounting `fusectl` there first if needed): every request waiting on it fails at once. A
/// daemon that died while the kernel waited for one of its answers cannot always finish
/// dying until then. Needs root; does nothing if `dir` is not a FUSE mount.
pub fn abort_connection(dir: &Path) {
    let want = dir.to_string_lossy().into_owned();
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let Some(minor) = info.lines().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        (f.get(4) == Some(&want.as_str()) && l.contains(" - fuse"))
            .then(|| f.get(2)?.split(':').nth(1).map(str::to_string))
            .flatten()
    }) else {
        return;
    };
    let conns = Path::new("/sys/fs/fuse/connections");
    if !conns.join(&minor).exists() {
        let _ = Command::new("mount")
            .args(["-t", "fusectl", "none"])
            .arg(conns)
            .stderr(Stdio::null())
            .status();
    }
    let _ = std::fs::write(conns.join(&minor).join("abort"), "1");
}

impl Drop for Mount {
    fn drop(&mut self) {
        let ok = Command::new("fusermount3")
            .arg("-u")
            .arg(&self.dir)
            .status()
            .is_ok_and(|s| s.success());
        if let Some(c) = self.child.as_mut() {
            if !ok {
                let _ = c.kill();
                // A killed daemon may wait in the kernel for a request only it could answer.
                abort_connection(&self.dir);
            }
            let _ = c.wait();
        }
        if is_mounted(&self.dir) {
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}

/// `mega-mount` with only the environment it needs: its own HOME (config, cache, `TMPDIR`)
/// and the test server's credentials.
pub fn daemon(api_url: &str, email: &str, home: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    // Its own temporary folder, inside its HOME: tests can look at what it leaves there.
    std::fs::create_dir_all(home.join("tmp")).unwrap();
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("TMPDIR", home.join("tmp"))
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("XDG_CACHE_HOME", home.join("cache"))
        .env("MEGA_API_URL", api_url)
        .env("MEGA_EMAIL", email)
        .env("MEGA_PASSWORD", PASSWORD)
        .stdin(Stdio::null());
    cmd
}

pub fn rand_suffix() -> String {
    format!("{:08x}", rand_u32())
}

fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    );
    h.finish() as u32
}

/// Runs a file operation on the mount with a timeout.
pub async fn op<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::time::timeout(Duration::from_secs(60), tokio::task::spawn_blocking(f)).await {
        Ok(r) => r.unwrap(),
        Err(_) => panic!("file operation timed out: {what}"),
    }
}

pub fn mtime(p: &Path) -> i64 {
    std::fs::metadata(p).unwrap().mtime()
}

/// Polls a condition on the mount (each check with the file-operation timeout).
pub async fn eventually_on_mount(
    secs: u64,
    what: &str,
    f: impl Fn() -> bool + Send + Sync + Clone + 'static,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let g = f.clone();
        if op(what, g).await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not visible within {secs} s: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The filesystem core over its own session, without a kernel mount.
pub async fn fs_core(
    env: &Env,
    email: &str,
) -> (Arc<mega_mount::fs::MegaFs>, Arc<mega_mount::client::Client>) {
    fs_core_with(env, email, |_| {}).await
}

/// [`fs_core`] with its settings changed by `edit` (a 1 MiB block cache unless changed).
pub async fn fs_core_with(
    env: &Env,
    email: &str,
    edit: impl FnOnce(&mut mega_mount::fs::FsConfig),
) -> (Arc<mega_mount::fs::MegaFs>, Arc<mega_mount::client::Client>) {
    let client = Arc::new(env.login(email).await);
    let mut cfg = mega_mount::fs::FsConfig {
        uid: 0,
        gid: 0,
        umask: 0o022,
        read_only: false,
        hard_delete: false,
        cache_dir: env.dir.path().join(format!("core-{}", rand_suffix())),
        cache_size: 1 << 20,
        verify_full: false,
        shares_dir: Some("Shared with me".into()),
        rubbish_dir: Some(".Rubbish Bin".into()),
        versions_dir: Some(".versions".into()),
        backups_dir: Some("My backups".into()),
        list_special: false,
        xattr: false,
        writeback: None,
        writeback_delay: std::time::Duration::ZERO,
        quota_wait: mega_mount::fs::DEFAULT_QUOTA_WAIT,
    };
    edit(&mut cfg);
    let fs = mega_mount::fs::MegaFs::new(client.clone(), cfg).unwrap();
    (Arc::new(fs), client)
}

/// Files held open by a process of their own (`python3`), never by the test process. A test
/// process runs many tests at once and they fork children: each fork copies every open
/// descriptor and closes the copy at `exec`, and on FUSE that close is a `flush`, which
/// commits. A test that needs writes to stay unsaved while a file is open keeps it here.
pub struct Holder {
    child: Child,
}

impl Holder {
    /// Runs `script` (Python; `sys.argv[1:]` are `paths`, `write_all(fd, bytes)` is defined)
    /// and returns once it printed `ready`; the files it opened stay open until
    /// [`close`](Self::close) or drop. Blocks: call it inside [`op`].
    pub fn start(script: &str, paths: &[&Path]) -> Holder {
        let prelude = "import os, sys\n\
            def write_all(fd, b):\n    \
                while b:\n        b = b[os.write(fd, b):]\n";
        let wait = "\nprint('ready', flush=True)\nsys.stdin.read()\n";
        let mut child = Command::new("python3")
            .arg("-c")
            .arg(format!("{prelude}{script}{wait}"))
            .args(paths)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3");
        let mut line = String::new();
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let _ = std::io::BufRead::read_line(&mut out, &mut line);
        if line.trim() != "ready" {
            let _ = child.kill();
            let status = child.wait();
            panic!("the file holder failed: {status:?}");
        }
        Holder { child }
    }

    /// Lets the holder close its files and exit (they are closed even if the daemon is gone).
    pub fn close(mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
