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

/// jemalloc, with its background thread: the daemon's RSS follows what it holds. When the
/// kernel forgets the inodes of a large `find`, the daemon frees them from whichever thread
/// handles the forget, and the tree's trim frees nodes the FUSE threads read; the background
/// thread returns the emptied pages to the system on its own clock, while the threads that
/// allocated them sit idle. glibc's malloc kept freed memory in its arenas (+270 MiB after
/// `ls -lR` of 200,000 entries); mimalloc kept pages in the heaps of idle threads (+213 to
/// +425 MB after `find` over 1,000,000 nodes). See doc/BENCHMARKS.md.
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let args = MountArgs::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MEGA_MOUNT_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    // Without it freed pages go back only when a thread that allocates again gets to them.
    if let Err(e) = tikv_jemalloc_ctl::background_thread::write(true) {
        tracing::debug!("jemalloc's background thread is off: {e}");
    }
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
