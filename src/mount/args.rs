//! `mega-mount`'s command line (clap), in the library so that the man page and the shell
//! completions are generated from the same definitions the binary parses with.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use super::MountRequest;

/// Mount your MEGA Cloud Drive as a local folder.
#[derive(Debug, Parser)]
#[command(name = "mega-mount", version = crate::VERSION)]
pub struct MountArgs {
    /// MOUNTPOINT, or SOURCE MOUNTPOINT (the mount.fuse3 convention; SOURCE is ignored)
    #[arg(required = true, num_args = 1..=2)]
    pub paths: Vec<PathBuf>,
    /// Mount options, comma-separated: ro, rw, allow_other, allow_root, uid=, gid=, umask=,
    /// config=FILE, cache_dir=DIR, cache_size=SIZE, hard_delete, https, verify=stream|full,
    /// shares=NAME, rubbish=NAME, versions=NAME, backups=NAME, list_special, xattr, writeback,
    /// writeback_delay=SECS, no_cache,
    /// tree_nodes=N, no_graphics (fstab ones such as _netdev, noauto, user are accepted)
    #[arg(short = 'o', value_name = "OPTS")]
    pub options: Vec<String>,
    /// Stay in the foreground (otherwise: detach once mounted)
    #[arg(short = 'f', long)]
    pub foreground: bool,
    /// Config file (as for megacmd)
    #[arg(long, value_name = "FILE")]
    pub conf: Option<PathBuf>,
    /// Delete files for good instead of moving them to the Rubbish Bin
    #[arg(long)]
    pub hard_delete: bool,
    /// Name of the top-level folder showing folders other users shared with you (default
    /// "Shared with me"; "" hides it)
    #[arg(long, value_name = "NAME")]
    pub shares_dir: Option<String>,
    /// Fetch the whole tree at start instead of loading the tree cache (kept in
    /// CACHE_DIR/trees)
    #[arg(long)]
    pub no_cache: bool,
    /// Memory for decrypted blocks, e.g. 256M
    #[arg(long, value_name = "SIZE")]
    pub cache_size: Option<String>,
    /// Where write staging files and the tree cache live (default $XDG_CACHE_HOME/mega-mount)
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// FUSE worker threads: how many requests (reads, writes, commits) run at once
    #[arg(long, default_value_t = 8)]
    pub n_threads: usize,
    /// On SIGINT/SIGTERM with files still open, how long to let uploads in progress finish
    /// before detaching
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub grace: u64,
    /// What mount(8) passes a mount helper (`mount.mega`, `mount.fuse.mega-mount`): no mtab
    /// (-n), sloppy options (-s), verbose (-v), the type (-t); accepted and ignored.
    #[arg(short = 'n', hide = true)]
    pub no_mtab: bool,
    #[arg(short = 's', hide = true)]
    pub sloppy: bool,
    #[arg(short = 'v', hide = true)]
    pub verbose: bool,
    #[arg(short = 't', hide = true, value_name = "TYPE")]
    pub fs_type: Option<String>,
    /// Print a line on stdout once mounted (used by the background start)
    #[arg(long, hide = true)]
    pub notify_ready: bool,
}

impl MountArgs {
    /// The request this command line makes; `respawn` starts the same mount again (the
    /// program and its arguments, for the background start).
    pub fn into_request(self, respawn: (PathBuf, Vec<OsString>)) -> MountRequest {
        MountRequest {
            mountpoint: self.paths.last().cloned().unwrap_or_default(),
            options: self.options,
            foreground: self.foreground,
            conf: self.conf,
            hard_delete: self.hard_delete,
            no_cache: self.no_cache,
            shares_dir: self.shares_dir,
            cache_size: self.cache_size,
            cache_dir: self.cache_dir,
            n_threads: self.n_threads,
            grace: Duration::from_secs(self.grace),
            respawn,
            notify_ready: self.notify_ready,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_8_helper_arguments_are_accepted() {
        // As mount(8) runs /sbin/mount.mega for an fstab line of type `mega`.
        let a = MountArgs::try_parse_from([
            "mount.mega",
            "mega",
            "/mnt/m",
            "-n",
            "-s",
            "-o",
            "rw,noauto,config=/c.toml",
            "-t",
            "fuse.mega-mount",
        ])
        .unwrap();
        let r = a.into_request(("x".into(), Vec::new()));
        assert_eq!(r.mountpoint, PathBuf::from("/mnt/m"));
        assert_eq!(r.options, ["rw,noauto,config=/c.toml"]);
        assert!(!r.foreground);
    }
}
