//! Process and mount-table plumbing of a mount: starting the daemon in the background (a
//! foreground copy of ourselves, detached, whose log goes to a file, that says on its stdout
//! when it has mounted), telling whether a path is mounted (from `/proc/self/mountinfo`),
//! recovering a dead mount left by a daemon that is gone, unmounting, and detaching a busy
//! mount.

use std::ffi::OsString;
use std::io::BufRead;
use std::path::Path;
use std::time::Duration;

/// How long the background start waits for the daemon to mount.
const MOUNT_WAIT: Duration = Duration::from_secs(60);
/// What the daemon prints on its stdout once mounted (with `--notify-ready`).
pub const READY: &str = "mega-mount: ready";
/// The source ("device") our mounts show in the mount table; the type is `fuse`, or
/// `fuse.mega` where the subtype is recorded.
pub const SOURCE: &str = "mega";

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

/// The filesystem type and source `mountinfo` (the text of `/proc/self/mountinfo`) lists
/// for `mountpoint`, if it lists it (the last mount there).
pub fn mountinfo_entry(mountinfo: &str, mountpoint: &Path) -> Option<(String, String)> {
    use std::os::unix::ffi::OsStrExt;
    let want = mountpoint.as_os_str().as_bytes();
    mountinfo
        .lines()
        .filter(|l| {
            l.split(' ')
                .nth(4)
                .is_some_and(|f| unescape_mountinfo(f) == want)
        })
        .filter_map(|l| {
            let (_, rest) = l.split_once(" - ")?;
            let mut f = rest.split(' ');
            let fstype = f.next()?.to_string();
            let source = String::from_utf8_lossy(&unescape_mountinfo(f.next()?)).into_owned();
            Some((fstype, source))
        })
        .next_back()
}

/// Whether a mount-table entry is one of ours.
fn is_ours((fstype, source): &(String, String)) -> bool {
    (fstype == "fuse" || fstype == "fuse.mega") && source == SOURCE
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

/// If `mountpoint` is a dead mount of ours (its daemon is gone: "Transport endpoint is not
/// connected"), detaches it and returns true. A dead mount of another filesystem is left
/// alone.
pub fn recover_dead_mount(mountpoint: &Path) -> bool {
    let Ok(abs) = std::path::absolute(mountpoint) else {
        return false;
    };
    let ours = std::fs::read_to_string("/proc/self/mountinfo")
        .ok()
        .and_then(|info| mountinfo_entry(&info, &abs))
        .is_some_and(|e| is_ours(&e));
    if !ours || !connection_lost(&abs) {
        return false;
    }
    detach(&abs);
    std::fs::metadata(&abs).is_ok()
}

/// Whether the FUSE mount at `mountpoint` lost its daemon. `stat` alone does not tell
/// within the attribute timeout of the daemon's death (the kernel answers from its cache),
/// so `statfs`, which always asks the daemon, decides; a live daemon that does not answer
/// within a few seconds counts as alive.
fn connection_lost(mountpoint: &Path) -> bool {
    let enotconn = |e: std::io::Error| e.raw_os_error() == Some(libc::ENOTCONN);
    if std::fs::metadata(mountpoint).err().is_some_and(enotconn) {
        return true;
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let p = mountpoint.to_path_buf();
    std::thread::spawn(move || {
        let _ = tx.send(rustix::fs::statvfs(&p).err());
    });
    matches!(
        rx.recv_timeout(std::time::Duration::from_secs(5)),
        Ok(Some(e)) if e == rustix::io::Errno::NOTCONN
    )
}

/// Whether something is mounted at `mountpoint` now.
pub fn is_mounted(mountpoint: &Path) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .is_ok_and(|info| mountinfo_lists(&info, mountpoint))
}

/// Starts `exe args… --foreground --notify-ready`, detached (its log goes to `log`, not to
/// our caller's stderr, which it must not hold open), and waits until it says it has mounted.
/// If it exits first, its last error (from the log) is the error.
pub fn daemonize(exe: &Path, args: &[OsString], log: &Path) -> Result<(), String> {
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
    let start = log_file.metadata().map_or(0, |m| m.len());
    let mut child = std::process::Command::new(exe)
        .args(args)
        .arg("--foreground")
        .arg("--notify-ready")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(log_file)
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot start the background process: {e}"))?;
    let Some(stdout) = child.stdout.take() else {
        return Err("cannot read from the background process".into());
    };
    // The line is read on a thread so that a daemon that hangs is given up on.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    match rx.recv_timeout(MOUNT_WAIT) {
        Ok(line) if line.trim() == READY => Ok(()),
        Ok(_) => {
            let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
            Err(match last_error(log, start) {
                Some(why) => why,
                None => format!(
                    "the background process exited ({status}) before mounting; see {}",
                    log.display()
                ),
            })
        }
        Err(_) => {
            let _ = child.kill();
            Err(format!(
                "the background process did not mount within {} s; see {}",
                MOUNT_WAIT.as_secs(),
                log.display()
            ))
        }
    }
}

/// The last `mega-mount: …` error line the daemon wrote to its log after `start` (a byte
/// offset), without the prefix.
fn last_error(log: &Path, start: u64) -> Option<String> {
    let text = std::fs::read(log).ok()?;
    let text = String::from_utf8_lossy(text.get(start as usize..)?);
    text.lines()
        .rev()
        .find_map(|l| l.strip_prefix("mega-mount: "))
        .map(str::to_string)
}

/// Where the daemon tells its parent it has mounted.
pub fn notify_ready() {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    // The parent may be gone already; nothing else is ever written here.
    let _ = writeln!(out, "{READY}");
    let _ = out.flush();
}

/// Tells a service manager how the mount is doing (the `sd_notify` protocol: one datagram
/// of `KEY=VALUE` lines to the `NOTIFY_SOCKET` address, a path or, with a leading `@`, an
/// abstract socket). Without a socket (not started by one) it does nothing; a manager that
/// does not answer is not an error of the mount, so failures are only logged.
pub fn service_notify(socket: Option<&str>, state: &str) {
    let Some(socket) = socket else {
        return;
    };
    if let Err(e) = send_notify(socket, state) {
        tracing::warn!("cannot tell the service manager ({socket}) \"{state}\": {e}");
    }
}

fn send_notify(socket: &str, state: &str) -> std::io::Result<()> {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let addr = match socket.strip_prefix('@') {
        Some(name) => SocketAddr::from_abstract_name(name.as_bytes())?,
        None => SocketAddr::from_pathname(socket)?,
    };
    UnixDatagram::unbound()?.send_to_addr(state.as_bytes(), &addr)?;
    Ok(())
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
    fn service_notify_sends_one_datagram_to_a_path_or_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        use std::os::unix::net::{SocketAddr, UnixDatagram};
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("notify");
        let rx = UnixDatagram::bind(&path).unwrap();
        service_notify(path.to_str(), "READY=1\nSTATUS=mounted");
        let mut buf = [0u8; 64];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=mounted");
        let name = format!("mega-mount-test-{}", std::process::id());
        let rx = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(&name).unwrap()).unwrap();
        service_notify(Some(&format!("@{name}")), "STOPPING=1");
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1");
        // No manager: nothing happens; one that is gone: logged, not an error.
        service_notify(None, "READY=1");
        service_notify(d.path().join("gone").to_str(), "READY=1");
    }

    #[test]
    fn mountinfo_fields_are_unescaped() {
        let info = "36 35 98:0 / /mnt/plain rw,noatime master:1 - ext3 /dev/root rw\n\
                    37 35 0:42 / /tmp/with\\040space\\134x rw - fuse.mega mega rw\n";
        assert!(mountinfo_lists(info, Path::new("/mnt/plain")));
        assert!(mountinfo_lists(info, Path::new("/tmp/with space\\x")));
        assert!(!mountinfo_lists(info, Path::new("/tmp/with")));
        assert!(!mountinfo_lists(info, Path::new("/mnt")));
        assert_eq!(unescape_mountinfo("a\\04"), b"a\\04", "a cut escape stays");
        let entry = |p: &str| mountinfo_entry(info, Path::new(p));
        assert!(entry("/tmp/with space\\x").is_some_and(|e| is_ours(&e)));
        assert_eq!(
            entry("/mnt/plain"),
            Some(("ext3".into(), "/dev/root".into()))
        );
        assert!(!entry("/mnt/plain").is_some_and(|e| is_ours(&e)));
        assert_eq!(entry("/nope"), None);
        let direct = "42 27 0:39 / /m rw - fuse mega rw,user_id=0\n";
        assert!(mountinfo_entry(direct, Path::new("/m")).is_some_and(|e| is_ours(&e)));
    }
}
