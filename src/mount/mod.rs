//! Running a mount: from a [`MountRequest`] (what the binary parsed) to a mounted filesystem
//! that follows remote changes, and back on SIGINT/SIGTERM.
//!
//! * [`args`]: the command line; [`options`]: `-o` options and sizes.
//! * [`daemon`]: the background start, the mount table, unmounting.
//! * this file: settings ([`Settings::resolve`]), connecting, the FUSE session, the watcher →
//!   invalidator loop ([`invalidation`]), and shutting down.
//!
//! Shutdown: an idle mount is unmounted. A busy one (a file open, maybe a close() waiting for
//! its upload) first gets up to `grace` for the uploads in progress to finish, so every
//! close() that returns success has its data on MEGA; then it is detached. Writes of files
//! still open at that point stay in their staging files (logged on exit). A second signal
//! cuts the wait short.
//!
//! Must not parse argv or read the environment itself: the binary passes both in.

pub mod args;
pub mod daemon;
pub mod options;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::client::{connect, TreeEvent};
use crate::config::{self, Env};
use crate::fs::{FsConfig, MegaFs, Recovered, Stale, Unsaved};
use crate::fuse::{spawn_invalidator, FuseAdapter};
use crate::tree::Change;
pub use args::MountArgs;
pub use options::{parse_options, parse_size, MountOptions};

/// Default memory for decrypted blocks.
pub const DEFAULT_CACHE: u64 = 256 << 20;
/// The log file of a background mount, in the cache directory.
pub const LOG_FILE: &str = "mega-mount.log";

/// What the user asked for, as the binary parsed it.
#[derive(Debug, Clone)]
pub struct MountRequest {
    pub mountpoint: PathBuf,
    /// The `-o` option strings.
    pub options: Vec<String>,
    pub foreground: bool,
    /// `--conf`.
    pub conf: Option<PathBuf>,
    pub hard_delete: bool,
    /// `--no-cache`: fetch the whole tree instead of using the tree cache.
    pub no_cache: bool,
    /// `--shares-dir`: the name of the virtual folder of other users' shares ("" hides it).
    pub shares_dir: Option<String>,
    /// `--cache-size` as written.
    pub cache_size: Option<String>,
    pub cache_dir: Option<PathBuf>,
    /// FUSE worker threads.
    pub n_threads: usize,
    /// How long a busy mount lets uploads in progress finish on SIGINT/SIGTERM.
    pub grace: Duration,
    /// The program and arguments that start this mount again (the background start runs
    /// them with `--foreground --notify-ready`).
    pub respawn: (PathBuf, Vec<OsString>),
    /// Say on stdout when mounted (the background start waits for it).
    pub notify_ready: bool,
}

/// Why a mount did not run.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Engine(#[from] crate::Error),
    #[error("{0}")]
    Setup(String),
}

/// The settings a request resolves to, with defaults filled in.
#[derive(Debug, Clone)]
pub struct Settings {
    pub mountpoint: PathBuf,
    pub options: MountOptions,
    pub config_file: Option<PathBuf>,
    pub fs: FsConfig,
    pub n_threads: usize,
    /// Whether the tree cache (in `<cache_dir>/trees`) is used.
    pub tree_cache: bool,
}

impl Settings {
    /// Options given with `-o` win over the command-line flags; the cache directory defaults
    /// to `$XDG_CACHE_HOME/mega-mount` (else `~/.cache/mega-mount`).
    pub fn resolve(req: &MountRequest, env: &Env) -> Result<Settings, MountError> {
        let mountpoint = req
            .mountpoint
            .canonicalize()
            .map_err(|e| MountError::Usage(format!("{}: {e}", req.mountpoint.display())))?;
        let options = parse_options(&req.options).map_err(MountError::Usage)?;
        let cache_dir = options
            .cache_dir
            .clone()
            .or(req.cache_dir.clone())
            .or_else(|| env.cache_dir("mega-mount"))
            .ok_or_else(|| MountError::Usage("no cache directory: set --cache-dir".into()))?;
        let cache_size = match (&options.cache_size, &req.cache_size) {
            (Some(s), _) => *s,
            (None, Some(s)) => parse_size(s)
                .ok_or_else(|| MountError::Usage(format!("--cache-size {s}: not a size")))?,
            (None, None) => DEFAULT_CACHE,
        };
        let fs = FsConfig {
            uid: options
                .uid
                .unwrap_or_else(|| rustix::process::getuid().as_raw()),
            gid: options
                .gid
                .unwrap_or_else(|| rustix::process::getgid().as_raw()),
            umask: options.umask.unwrap_or(0o022),
            read_only: options.read_only,
            hard_delete: options.hard_delete || req.hard_delete,
            cache_dir,
            cache_size,
            verify_full: options.verify_full.unwrap_or(false),
            shares_dir: Some(
                options
                    .shares_dir
                    .clone()
                    .or(req.shares_dir.clone())
                    .unwrap_or_else(|| crate::fs::shared::DEFAULT_SHARES_DIR.to_string()),
            )
            .filter(|n| !n.is_empty()),
            rubbish_dir: Some(
                options
                    .rubbish_dir
                    .clone()
                    .unwrap_or_else(|| crate::fs::special::DEFAULT_RUBBISH_DIR.to_string()),
            )
            .filter(|n| !n.is_empty()),
            versions_dir: Some(
                options
                    .versions_dir
                    .clone()
                    .unwrap_or_else(|| crate::fs::special::DEFAULT_VERSIONS_DIR.to_string()),
            )
            .filter(|n| !n.is_empty()),
            backups_dir: Some(
                options
                    .backups_dir
                    .clone()
                    .unwrap_or_else(|| crate::fs::special::DEFAULT_BACKUPS_DIR.to_string()),
            )
            .filter(|n| !n.is_empty()),
            list_special: options.list_special,
            xattr: options.xattr,
            writeback: options
                .writeback
                .then_some(crate::config::DEFAULT_PARALLEL_FILES),
            writeback_delay: crate::config::DEFAULT_WRITEBACK_DELAY,
            quota_wait: options.quota_wait.map_or(
                crate::fs::DEFAULT_QUOTA_WAIT,
                std::time::Duration::from_secs,
            ),
        };
        Ok(Settings {
            tree_cache: !(options.no_cache || req.no_cache),
            mountpoint,
            config_file: options.config.clone().or(req.conf.clone()),
            options,
            fs,
            n_threads: req.n_threads.max(1),
        })
    }

    fn fuser_config(&self) -> fuser::Config {
        let mut c = fuser::Config::default();
        c.mount_options = vec![
            fuser::MountOption::FSName("mega".into()),
            fuser::MountOption::Subtype("mega".into()),
            fuser::MountOption::DefaultPermissions,
            fuser::MountOption::NoDev,
            fuser::MountOption::NoSuid,
        ];
        if self.options.read_only {
            c.mount_options.push(fuser::MountOption::RO);
        }
        if self.options.allow_other {
            c.acl = fuser::SessionACL::All;
        } else if self.options.allow_root {
            c.acl = fuser::SessionACL::RootAndOwner;
        }
        c.n_threads = Some(self.n_threads);
        c
    }
}

/// What the kernel is told after an event from the watcher.
#[derive(Debug, PartialEq, Eq)]
pub enum Invalidate {
    /// These entries and inodes are stale.
    Some(Stale),
    /// Nothing the kernel has seen changed.
    Nothing,
    /// Remote changes are no longer followed.
    Stop(String),
}

/// Maps a watcher event to what the kernel must forget; `stale` names what changes make
/// stale (the filesystem's [`MegaFs::stale`]); after a full reload (new keys can rename every
/// node of a share) `everything` does ([`MegaFs::stale_all`]).
pub fn invalidation(
    ev: TreeEvent,
    stale: impl FnOnce(&[Change]) -> Stale,
    everything: impl FnOnce() -> Stale,
) -> Invalidate {
    let s = match ev {
        TreeEvent::Changed(changes) => stale(&changes),
        TreeEvent::Reloaded => everything(),
        TreeEvent::Stopped(why) => return Invalidate::Stop(why),
    };
    if s.is_empty() {
        Invalidate::Nothing
    } else {
        Invalidate::Some(s)
    }
}

fn report_unsaved(unsaved: &[Unsaved], what: &str) {
    for u in unsaved {
        tracing::error!(
            staging = %u.staging.display(),
            file = u.origin.as_deref().unwrap_or("?"),
            "{what}"
        );
    }
}

/// Waits for a busy mount's uploads (see the module doc), then unmounts or detaches it.
async fn shut_down(
    fs: &MegaFs,
    mountpoint: &Path,
    grace: Duration,
    term: &mut tokio::signal::unix::Signal,
    manager: Option<&str>,
) {
    daemon::service_notify(manager, "STOPPING=1");
    if daemon::try_unmount(mountpoint) {
        tracing::info!("unmounted {}", mountpoint.display());
        return;
    }
    tracing::warn!(
        "{} is busy; letting uploads in progress finish (up to {} s) before detaching",
        mountpoint.display(),
        grace.as_secs()
    );
    tokio::select! {
        _ = fs.drain(grace) => {}
        _ = tokio::signal::ctrl_c() => tracing::warn!("not waiting any longer"),
        _ = term.recv() => tracing::warn!("not waiting any longer"),
    }
    daemon::detach(mountpoint);
}

/// Runs a mount until it is unmounted or the process is told to stop. Without `foreground`
/// it starts a foreground copy in the background and returns once that has mounted.
pub fn run(req: MountRequest, env: &Env) -> Result<(), MountError> {
    if daemon::recover_dead_mount(&req.mountpoint) {
        tracing::warn!(
            "{} was left dead by a mega-mount that is gone (transport endpoint not connected); detached it",
            req.mountpoint.display()
        );
    }
    let mut settings = Settings::resolve(&req, env)?;
    if !req.foreground {
        let (exe, args) = &req.respawn;
        return daemon::daemonize(exe, args, &settings.fs.cache_dir.join(LOG_FILE))
            .map_err(MountError::Setup);
    }
    let mut cfg = config::load(settings.config_file.as_deref(), env).map_err(crate::Error::from)?;
    // The tree cache lives under the mount's cache directory; `tree_cache = false` in the
    // config file, `--no-cache` or `-o no_cache` turn it off.
    if cfg.tree_cache.is_some() {
        cfg.tree_cache = settings
            .tree_cache
            .then(|| settings.fs.cache_dir.join(config::TREE_CACHE_DIR));
    }
    if let Some(n) = settings.options.tree_nodes {
        cfg.tree_nodes = Some(n);
    }
    if let Some(b) = &settings.options.bwlimit {
        cfg.bwlimit =
            crate::config::bwlimit(Some(b), None).map_err(|e| MountError::Usage(e.to_string()))?;
    }
    if let Some(n) = settings.options.connections {
        cfg.connections = n;
    }
    if settings.options.no_graphics {
        cfg.graphics = None;
    }
    if settings.options.writeback || cfg.writeback {
        settings.fs.writeback = Some(cfg.parallel);
    }
    settings.fs.writeback_delay = settings
        .options
        .writeback_delay
        .unwrap_or(cfg.writeback_delay);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| MountError::Setup(format!("cannot start the runtime: {e}")))?;
    let mut client = rt.block_on(connect(&cfg, crate::client::connect::api_config(&cfg)))?;
    if settings.options.https {
        let mut t = client.transfer_config().clone();
        t.https = true;
        client.set_transfer_config(t);
    }
    let fs = Arc::new(
        MegaFs::new(Arc::new(client), settings.fs.clone())
            .map_err(|e| MountError::Setup(format!("cannot prepare the cache directory: {e}")))?,
    );
    for r in rt.block_on(fs.recover_unsaved()) {
        match r {
            Recovered::Saved {
                origin, saved_as, ..
            } => tracing::warn!(
                "writes to {origin} that an earlier run could not save are now on MEGA as {saved_as}"
            ),
            Recovered::Kept { staging, why } => tracing::error!(
                staging = %staging.display(),
                "writes an earlier run could not save are still only in this staging file: {why}"
            ),
            Recovered::Unchanged { staging, origin } => tracing::info!(
                staging = %staging.display(),
                "removed a staging file an earlier run left with nothing unsaved in it (for {})",
                origin.as_deref().unwrap_or("an unknown file")
            ),
        }
    }
    if let Err(e) = fs.write_status() {
        tracing::warn!("cannot write the write-back status file: {e}");
    }
    let adapter = FuseAdapter::new(fs.clone(), rt.handle().clone());
    let session = fuser::Session::new(adapter, &settings.mountpoint, &settings.fuser_config())
        .map_err(|e| MountError::Setup(format!("mount failed: {e}")))?;
    if req.notify_ready {
        daemon::notify_ready();
    }
    let manager = env.notify_socket.clone();
    daemon::service_notify(
        manager.as_deref(),
        &format!(
            "READY=1\nSTATUS=mounted at {}",
            settings.mountpoint.display()
        ),
    );
    // Remote changes: the watcher applies them to the tree; the invalidator thread tells the
    // kernel which entries and inodes are stale.
    let invalidate = spawn_invalidator(session.notifier());
    let _in_runtime = rt.enter();
    let mut watcher = fs.client().watch()?;
    let fs2 = fs.clone();
    rt.spawn(async move {
        while let Some(ev) = watcher.events.recv().await {
            match invalidation(ev, |c| fs2.stale(c), || fs2.stale_all()) {
                Invalidate::Some(stale) => {
                    if invalidate.send(stale).is_err() {
                        break;
                    }
                }
                Invalidate::Nothing => {}
                Invalidate::Stop(why) => {
                    tracing::warn!("remote changes are no longer followed: {why}");
                    break;
                }
            }
        }
    });
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<Result<(), String>>();
    let session = std::thread::spawn(move || {
        let r = session
            .run()
            .map_err(|e| format!("FUSE session failed: {e}"));
        let _ = done_tx.send(r);
    });
    let grace = req.grace;
    let mountpoint = settings.mountpoint.clone();
    let result = rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| e.to_string())?;
        tokio::select! {
            r = done_rx => r.unwrap_or(Ok(())),
            _ = tokio::signal::ctrl_c() => { shut_down(&fs, &mountpoint, grace, &mut term, manager.as_deref()).await; Ok(()) }
            _ = term.recv() => { shut_down(&fs, &mountpoint, grace, &mut term, manager.as_deref()).await; Ok(()) }
        }
    });
    const UNSAVED: &str =
        "a file open for writing was not saved to MEGA; its content is kept, encrypted, in its staging file, and the next start uploads it beside the file as \"NAME (unsaved DATE TIME)\"";
    // The session ends once the kernel lets go of the mount; a RELEASE handled after
    // `fusermount3 -u` may still be committing, so let commits finish before the runtime stops.
    if !session.is_finished() {
        std::thread::sleep(Duration::from_millis(200));
    }
    if !session.is_finished() {
        // Detached after the grace (or a second signal) with requests still being served:
        // exit without stopping the runtime under them (closing /dev/fuse on exit fails
        // what is left with an error, where a stopped runtime would panic their threads).
        report_unsaved(&rt.block_on(fs.drain(Duration::ZERO)), UNSAVED);
        if let Err(e) = &result {
            eprintln!("mega-mount: {e}");
        }
        std::process::exit(i32::from(result.is_err()));
    }
    let _ = session.join();
    report_unsaved(&rt.block_on(fs.drain(grace)), UNSAVED);
    fs.clear_spares();
    // A tree cache still being written (a short first run) is finished, for a warm next start.
    rt.block_on(fs.client().finish_cache_write());
    rt.shutdown_timeout(Duration::from_secs(5));
    result.map_err(MountError::Setup)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::ROOT_INO;

    fn request(dir: &Path, options: &[&str]) -> MountRequest {
        MountRequest {
            mountpoint: dir.to_path_buf(),
            options: options.iter().map(|s| s.to_string()).collect(),
            foreground: true,
            conf: Some("/flag.toml".into()),
            hard_delete: false,
            no_cache: false,
            shares_dir: None,
            cache_size: Some("64M".into()),
            cache_dir: None,
            n_threads: 0,
            grace: Duration::from_secs(1),
            respawn: ("mega-mount".into(), Vec::new()),
            notify_ready: false,
        }
    }

    #[test]
    fn settings_take_options_over_flags_and_defaults_last() {
        let d = tempfile::tempdir().unwrap();
        let env = Env {
            home: Some("/home/u".into()),
            ..Default::default()
        };
        let s = Settings::resolve(&request(d.path(), &[]), &env).unwrap();
        assert_eq!(s.fs.cache_dir, PathBuf::from("/home/u/.cache/mega-mount"));
        assert_eq!(s.fs.cache_size, 64 << 20);
        assert_eq!(s.config_file, Some("/flag.toml".into()));
        assert_eq!(s.n_threads, 1, "at least one thread");
        assert!(!s.fs.hard_delete && !s.fs.read_only && !s.fs.verify_full);
        let s = Settings::resolve(
            &request(
                d.path(),
                &["ro,hard_delete,cache_size=1G,cache_dir=/c,config=/o.toml,umask=077,verify=full"],
            ),
            &env,
        )
        .unwrap();
        assert_eq!(s.fs.cache_dir, PathBuf::from("/c"));
        assert_eq!(s.fs.cache_size, 1 << 30);
        assert_eq!(s.config_file, Some("/o.toml".into()));
        assert!(s.fs.hard_delete && s.fs.read_only && s.fs.verify_full);
        assert_eq!(s.fs.umask, 0o077);
        let env = Env {
            xdg_cache_home: Some("/xdg".into()),
            home: Some("/home/u".into()),
            ..Default::default()
        };
        let s = Settings::resolve(&request(d.path(), &[]), &env).unwrap();
        assert_eq!(s.fs.cache_dir, PathBuf::from("/xdg/mega-mount"));
    }

    #[test]
    fn bad_requests_are_usage_errors() {
        let d = tempfile::tempdir().unwrap();
        let env = Env::default();
        for bad in ["bogus", "verify=some", "verify"] {
            assert!(matches!(
                Settings::resolve(&request(d.path(), &[bad]), &Env::default()),
                Err(MountError::Usage(_))
            ));
        }
        assert!(
            matches!(
                Settings::resolve(&request(d.path(), &[]), &env),
                Err(MountError::Usage(m)) if m.contains("cache")
            ),
            "no HOME, no cache directory"
        );
        let mut r = request(&d.path().join("missing"), &[]);
        r.cache_dir = Some("/c".into());
        assert!(matches!(
            Settings::resolve(&r, &env),
            Err(MountError::Usage(_))
        ));
        let mut r = request(d.path(), &[]);
        r.cache_dir = Some("/c".into());
        r.cache_size = Some("lots".into());
        assert!(matches!(
            Settings::resolve(&r, &env),
            Err(MountError::Usage(m)) if m.contains("lots")
        ));
    }

    #[test]
    fn watcher_events_become_invalidations() {
        let stale = Stale {
            entries: vec![(1, "a".into())],
            inodes: vec![5],
        };
        let changed = TreeEvent::Changed(vec![Change::Added("H".into())]);
        assert_eq!(
            invalidation(
                changed,
                |c| {
                    assert_eq!(c.len(), 1);
                    Stale {
                        entries: stale.entries.clone(),
                        inodes: stale.inodes.clone(),
                    }
                },
                || unreachable!()
            ),
            Invalidate::Some(stale)
        );
        let unseen = TreeEvent::Changed(vec![Change::Added("H".into())]);
        assert_eq!(
            invalidation(unseen, |_| Stale::default(), || unreachable!()),
            Invalidate::Nothing
        );
        assert_eq!(
            invalidation(
                TreeEvent::Reloaded,
                |_| unreachable!(),
                || Stale {
                    entries: vec![],
                    inodes: vec![ROOT_INO]
                }
            ),
            Invalidate::Some(Stale {
                entries: vec![],
                inodes: vec![ROOT_INO]
            })
        );
        assert_eq!(
            invalidation(
                TreeEvent::Stopped("gone".into()),
                |_| unreachable!(),
                || unreachable!()
            ),
            Invalidate::Stop("gone".into())
        );
    }
}
