//! Process and mount-table plumbing of a mount: starting the daemon in the background (a
//! foreground copy of ourselves, detached, whose log goes to a file), telling whether a path
//! is mounted (from `/proc/self/mountinfo`), unmounting, and detaching a busy mount.

use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

/// How long the background start waits for the mount to appear.
const MOUNT_WAIT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(100);

/// Undoes the octal escapes of `/proc/self/mountinfo` (a space is `\040`, a tab `\011`, a
/// newline `\012`, a backslash `\134`).
fn unescape_mountinfo(field: &str) -> Vec<u8> {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            let oct = b
                .get(i + 1..i + 4)
                .filter(|o| o.iter().all(|c| (b'0'..=b'7').contains(c)));
            let value = oct
                .and_then(|o| std::str::from_utf8(o).ok())
                .and_then(|o| u8::from_str_radix(o, 8).ok());
            if let Some(v) = value {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// Whether `mountinfo` (the text of `/proc/self/mountinfo`) lists `mountpoint`.
pub fn mountinfo_lists(mountinfo: &str, mountpoint: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let want = mountpoint.as_os_str().as_bytes();
    mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|field| unescape_mountinfo(field) == want)
}

/// Whether something is mounted at `mountpoint` now.
pub fn is_mounted(mountpoint: &Path) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .is_ok_and(|info| mountinfo_lists(&info, mountpoint))
}

/// Starts `exe args… --foreground`, detached (its log goes to `log`, not to our caller's
/// stderr, which it must not hold open), and waits until it has mounted `mountpoint`.
pub fn daemonize(
    exe: &Path,
    args: &[OsString],
    mountpoint: &Path,
    log: &Path,
) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::process::CommandExt;
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
        .arg("--foreground")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log_file)
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot start the background process: {e}"))?;
    let deadline = std::time::Instant::now() + MOUNT_WAIT;
    while std::time::Instant::now() < deadline {
        if is_mounted(mountpoint) {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "the background process exited ({status}) before mounting; see {}",
                log.display()
            ));
        }
        std::thread::sleep(POLL);
    }
    Err("timed out waiting for the mount".into())
}

/// Unmounts if nothing on the mount is in use; false if it is busy.
pub fn try_unmount(mountpoint: &Path) -> bool {
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
pub fn detach(mountpoint: &Path) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_fields_are_unescaped() {
        let info = "36 35 98:0 / /mnt/plain rw,noatime master:1 - ext3 /dev/root rw\n\
                    37 35 0:42 / /tmp/with\\040space\\134x rw - fuse.mega mega rw\n";
        assert!(mountinfo_lists(info, Path::new("/mnt/plain")));
        assert!(mountinfo_lists(info, Path::new("/tmp/with space\\x")));
        assert!(!mountinfo_lists(info, Path::new("/tmp/with")));
        assert!(!mountinfo_lists(info, Path::new("/mnt")));
        assert_eq!(unescape_mountinfo("a\\04"), b"a\\04", "a cut escape stays");
    }
}
