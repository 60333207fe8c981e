//! `mega-mount`: mounts the MEGA Cloud Drive with FUSE. A thin main over
//! [`mega_mount::mount`]: parse the command line, read the environment once, run.
//!
//! ```text
//! mega-mount [OPTIONS] MOUNTPOINT
//! mega-mount SOURCE MOUNTPOINT -o OPTS        (how mount.fuse3 calls it from an fstab line)
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use mega_mount::config::Env;
use mega_mount::mount::{self, MountRequest};

/// mimalloc gives memory back to the system soon after it is freed: when the kernel forgets
/// the inodes of a large listing, the daemon's RSS follows (glibc's malloc kept the freed
/// arenas: +270 MiB after `ls -lR` of 200,000 entries and `drop_caches`, see
/// doc/BENCHMARKS.md).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Mount your MEGA Cloud Drive as a local folder.
#[derive(Debug, Parser)]
#[command(name = "mega-mount", version)]
struct Args {
    /// MOUNTPOINT, or SOURCE MOUNTPOINT (the mount.fuse3 convention; SOURCE is ignored)
    #[arg(required = true, num_args = 1..=2)]
    paths: Vec<PathBuf>,
    /// Mount options: ro, allow_other, uid=, gid=, umask=, config=, cache_dir=, cache_size=,
    /// hard_delete, no_cache, verify=full, shares=NAME (and fstab ones such as _netdev,
    /// which are accepted)
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
    /// Name of the top-level folder showing folders other users shared with you (default
    /// "Shared with me"; "" hides it)
    #[arg(long, value_name = "NAME")]
    shares_dir: Option<String>,
    /// Fetch the whole tree at start instead of loading the tree cache (kept in
    /// CACHE_DIR/trees)
    #[arg(long)]
    no_cache: bool,
    /// Memory for decrypted blocks, e.g. 256M
    #[arg(long, value_name = "SIZE")]
    cache_size: Option<String>,
    /// Where write staging files and the tree cache live (default $XDG_CACHE_HOME/mega-mount)
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// FUSE worker threads: how many requests (reads, writes, commits) run at once
    #[arg(long, default_value_t = 8)]
    n_threads: usize,
    /// On SIGINT/SIGTERM with files still open, how long to let uploads in progress finish
    /// before detaching
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    grace: u64,
    /// Print a line on stdout once mounted (used by the background start)
    #[arg(long, hide = true)]
    notify_ready: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MEGA_MOUNT_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let respawn = (
        std::env::current_exe().unwrap_or_else(|_| PathBuf::from("mega-mount")),
        std::env::args_os().skip(1).collect(),
    );
    let req = MountRequest {
        mountpoint: args.paths.last().cloned().unwrap_or_default(),
        options: args.options,
        foreground: args.foreground,
        conf: args.conf,
        hard_delete: args.hard_delete,
        no_cache: args.no_cache,
        shares_dir: args.shares_dir,
        cache_size: args.cache_size,
        cache_dir: args.cache_dir,
        n_threads: args.n_threads,
        grace: Duration::from_secs(args.grace),
        respawn,
        notify_ready: args.notify_ready,
    };
    match mount::run(req, &Env::from_process()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mega-mount: {e}");
            ExitCode::from(1)
        }
    }
}
