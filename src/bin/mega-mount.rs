//! `mega-mount`: mounts the MEGA Cloud Drive with FUSE.
//!
//! ```text
//! mega-mount [OPTIONS] MOUNTPOINT
//! mega-mount SOURCE MOUNTPOINT -o OPTS        (how mount.fuse3 calls it from an fstab line)
//! ```
//! Credentials come from the saved `megacmd login` session, the config file, or
//! `MEGA_EMAIL`/`MEGA_PASSWORD` (`MEGA_API_URL` selects the server). Without `--foreground`
//! it starts itself in the background and returns once the mount is ready.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use mega_mount::config::{self, Env};
use mega_mount::fs::{FsConfig, MegaFs};
use mega_mount::fuse::{spawn_invalidator, FuseAdapter};
use mega_mount::mount::{parse_options, parse_size};
use mega_mount::TreeEvent;

/// Mount your MEGA Cloud Drive as a local folder.
#[derive(Debug, Parser)]
#[command(name = "mega-mount", version)]
struct Args {
    /// MOUNTPOINT, or SOURCE MOUNTPOINT (the mount.fuse3 convention; SOURCE is ignored)
    #[arg(required = true, num_args = 1..=2)]
    paths: Vec<PathBuf>,
    /// Mount options: ro, allow_other, uid=, gid=, umask=, config=, cache_dir=, cache_size=,
    /// hard_delete (and fstab ones such as _netdev, which are accepted)
    #[arg(short = 'o', value_name = "OPTS")]
    options: Vec<String>,
    /// Stay in the foreground (otherwise: detach once mounted)
    #[arg(short = 'f', long)]
    foreground: bool,
    /// Config file (as for megacmd)
    #[arg(long, value_name = "FILE")]
    conf: Option<PathBuf>,
    /// Delete files for good instead of moving them to the Rubbish Bin
    #[arg(long)]
    hard_delete: bool,
    /// Memory for decrypted blocks, e.g. 256M
    #[arg(long, value_name = "SIZE")]
    cache_size: Option<String>,
    /// Where write staging files live (default $XDG_CACHE_HOME/mega-mount)
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// FUSE worker threads: how many requests (reads, writes, commits) run at once
    #[arg(long, default_value_t = 8)]
    n_threads: usize,
    /// On SIGINT/SIGTERM with files still open, how long to let uploads in progress finish
    /// before detaching
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    grace: u64,
}

/// Default memory for decrypted blocks.
const DEFAULT_CACHE: u64 = 256 << 20;

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MEGA_MOUNT_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mega-mount: {e}");
            ExitCode::from(1)
        }
    }
}

fn is_mounted(mountpoint: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = mountpoint.to_string_lossy();
    info.lines().any(|l| l.split(' ').nth(4) == Some(&*want))
}

/// Starts a foreground copy of ourselves, detached (its log goes to `log`, not to our
/// caller's stderr, which it must not hold open), and waits until it has mounted.
fn daemonize(mountpoint: &Path, log: &Path) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    args.push("--foreground".into());
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(log)
        .map_err(|e| format!("{}: {e}", log.display()))?;
    let mut child = std::process::Command::new(exe)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log_file)
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot start the background process: {e}"))?;
    for _ in 0..600 {
        if is_mounted(mountpoint) {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "the background process exited ({status}) before mounting; see {}",
                log.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err("timed out waiting for the mount".into())
}

/// Unmounts if nothing on the mount is in use; false if it is busy.
fn try_unmount(mountpoint: &Path) -> bool {
    std::process::Command::new("fusermount3")
        .arg("-u")
        .arg("-q")
        .arg(mountpoint)
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
        || !is_mounted(mountpoint)
}

/// Detaches a busy mount (processes holding files on it get errors once we exit).
fn detach(mountpoint: &Path) {
    let ok = std::process::Command::new("fusermount3")
        .args(["-u", "-z", "-q"])
        .arg(mountpoint)
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(mountpoint)
            .status();
    }
}

/// Shuts down on SIGINT/SIGTERM. An idle mount is unmounted. A busy one (a file open, maybe a
/// close() waiting for its upload) first gets up to `grace` for the uploads in progress to
/// finish, so every close() that returns success has its data on MEGA; then it is detached.
/// Writes of files still open at that point stay in their staging files (logged on exit).
/// A second signal cuts the wait short.
async fn shut_down(
    fs: &MegaFs,
    mountpoint: &Path,
    grace: Duration,
    term: &mut tokio::signal::unix::Signal,
) {
    if try_unmount(mountpoint) {
        tracing::info!("unmounted {}", mountpoint.display());
    } else {
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
        detach(mountpoint);
    }
}

fn report_unsaved(unsaved: &[mega_mount::fs::Unsaved]) {
    for u in unsaved {
        tracing::error!(
            staging = %u.staging.display(),
            file = u.origin.as_deref().unwrap_or("?"),
            "a file open for writing was not saved to MEGA; its content is kept in its staging file"
        );
    }
}

fn run(args: Args) -> Result<(), String> {
    let mountpoint = args.paths.last().cloned().ok_or("no mountpoint given")?;
    let mountpoint = mountpoint
        .canonicalize()
        .map_err(|e| format!("{}: {e}", mountpoint.display()))?;
    let opts = parse_options(&args.options)?;
    let cache_dir = opts
        .cache_dir
        .clone()
        .or(args.cache_dir.clone())
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|x| PathBuf::from(x).join("mega-mount")))
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/mega-mount")))
        .ok_or("no cache directory: set --cache-dir")?;
    if !args.foreground {
        return daemonize(&mountpoint, &cache_dir.join("mega-mount.log"));
    }
    let env = Env::from_process();
    let cfg = config::load(opts.config.as_deref().or(args.conf.as_deref()), &env)
        .map_err(|e| e.to_string())?;
    let cache_size = match (&opts.cache_size, &args.cache_size) {
        (Some(s), _) => *s,
        (None, Some(s)) => parse_size(s).ok_or_else(|| format!("--cache-size {s}: not a size"))?,
        (None, None) => DEFAULT_CACHE,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let mut api = mega_mount::api::ApiConfig::with_base_url(&cfg.api_url);
    api.retry.max_retries = cfg.max_retries;
    let client = rt
        .block_on(mega_mount::cli::connect(&cfg, api))
        .map_err(|e| e.to_string())?;
    let fs_cfg = FsConfig {
        uid: opts
            .uid
            .unwrap_or_else(|| rustix::process::getuid().as_raw()),
        gid: opts
            .gid
            .unwrap_or_else(|| rustix::process::getgid().as_raw()),
        umask: opts.umask.unwrap_or(0o022),
        read_only: opts.read_only,
        hard_delete: opts.hard_delete || args.hard_delete,
        cache_dir,
        cache_size,
    };
    let fs = Arc::new(MegaFs::new(Arc::new(client), fs_cfg).map_err(|e| e.to_string())?);
    for u in fs.leftover_staging() {
        tracing::warn!(
            staging = %u.staging.display(),
            file = u.origin.as_deref().unwrap_or("?"),
            "writes an earlier run could not save to MEGA are kept in this staging file"
        );
    }
    let mut fcfg = fuser::Config::default();
    fcfg.mount_options = vec![
        fuser::MountOption::FSName("mega".into()),
        fuser::MountOption::Subtype("mega".into()),
        fuser::MountOption::DefaultPermissions,
        fuser::MountOption::NoDev,
        fuser::MountOption::NoSuid,
    ];
    if opts.read_only {
        fcfg.mount_options.push(fuser::MountOption::RO);
    }
    if opts.allow_other {
        fcfg.acl = fuser::SessionACL::All;
    } else if opts.allow_root {
        fcfg.acl = fuser::SessionACL::RootAndOwner;
    }
    fcfg.n_threads = Some(args.n_threads.max(1));
    let adapter = FuseAdapter::new(fs.clone(), rt.handle().clone());
    let session = fuser::Session::new(adapter, &mountpoint, &fcfg)
        .map_err(|e| format!("mount failed: {e}"))?;
    // Remote changes: the watcher applies them to the tree; the invalidator thread tells the
    // kernel which inodes are stale.
    let invalidate = spawn_invalidator(session.notifier());
    let _in_runtime = rt.enter();
    let mut watcher = fs.client().watch().map_err(|e| e.to_string())?;
    let fs2 = fs.clone();
    rt.spawn(async move {
        while let Some(ev) = watcher.events.recv().await {
            let stale = match ev {
                TreeEvent::Changed(changes) => fs2.stale(&changes),
                TreeEvent::Reloaded => mega_mount::fs::Stale {
                    entries: Vec::new(),
                    inodes: vec![mega_mount::fs::ROOT_INO],
                },
                TreeEvent::Stopped(why) => {
                    tracing::warn!("remote changes are no longer followed: {why}");
                    break;
                }
            };
            if (!stale.inodes.is_empty() || !stale.entries.is_empty())
                && invalidate.send(stale).is_err()
            {
                break;
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
    let result = rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| e.to_string())?;
        let grace = Duration::from_secs(args.grace);
        tokio::select! {
            r = done_rx => r.unwrap_or(Ok(())),
            _ = tokio::signal::ctrl_c() => { shut_down(&fs, &mountpoint, grace, &mut term).await; Ok(()) }
            _ = term.recv() => { shut_down(&fs, &mountpoint, grace, &mut term).await; Ok(()) }
        }
    });
    // The session ends once the kernel lets go of the mount; a RELEASE handled after
    // `fusermount3 -u` may still be committing, so let commits finish before the runtime stops.
    if !session.is_finished() {
        std::thread::sleep(Duration::from_millis(200));
    }
    if !session.is_finished() {
        // Detached after the grace (or a second signal) with requests still being served:
        // exit without stopping the runtime under them (closing /dev/fuse on exit fails
        // what is left with an error, where a stopped runtime would panic their threads).
        report_unsaved(&rt.block_on(fs.drain(Duration::ZERO)));
        if let Err(e) = &result {
            eprintln!("mega-mount: {e}");
        }
        std::process::exit(i32::from(result.is_err()));
    }
    let _ = session.join();
    report_unsaved(&rt.block_on(fs.drain(Duration::from_secs(args.grace))));
    rt.shutdown_timeout(Duration::from_secs(5));
    result
}
