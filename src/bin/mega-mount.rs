//! `mega-mount`: mounts the MEGA Cloud Drive with FUSE. A thin main over
//! [`mega_mount::mount`]: parse the command line, read the environment once, run.
//!
//! ```text
//! mega-mount [OPTIONS] MOUNTPOINT
//! mega-mount SOURCE MOUNTPOINT -o OPTS        (how mount.fuse3 calls it from an fstab line)
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use mega_mount::config::Env;
use mega_mount::mount::{self, MountArgs};

/// mimalloc gives memory back to the system soon after it is freed: when the kernel forgets
/// the inodes of a large listing, the daemon's RSS follows (glibc's malloc kept the freed
/// arenas: +270 MiB after `ls -lR` of 200,000 entries and `drop_caches`, see
/// doc/BENCHMARKS.md).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = MountArgs::parse();
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
    let req = args.into_request(respawn);
    match mount::run(req, &Env::from_process()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mega-mount: {e}");
            ExitCode::from(1)
        }
    }
}
