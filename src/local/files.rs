//! Local files: downloads go to a hidden temporary name next to the target and are renamed
//! only after the MAC verified ([`TempFile`] removes itself otherwise, also when the command
//! is interrupted); listing a local tree ([`walk`]); modification times and the umask.
//! Used by megacmd, the mount's callers and sync alike; knows nothing about MEGA.

use std::path::{Path, PathBuf};

/// One file or folder of a listing, by its `/`-separated path relative to the listed root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub path: String,
    pub size: u64,
    /// Unix seconds.
    pub mtime: i64,
    pub dir: bool,
    /// A symbolic link (not followed: `size` and `mtime` are the link's own).
    pub link: bool,
}

/// A partial download. Removed on drop unless [`TempFile::persist`] renamed it into place.
pub struct TempFile {
    path: PathBuf,
    done: bool,
}

impl TempFile {
    /// Creates `.<name>.megacmd-<random>.part` beside `target` (mode 0600).
    pub fn create_for(target: &Path) -> std::io::Result<(TempFile, std::fs::File)> {
        Self::create_tagged(target, "megacmd")
    }

    /// Creates `.<name>.<tag>-<random>.part` beside `target` (mode 0600).
    pub fn create_tagged(target: &Path, tag: &str) -> std::io::Result<(TempFile, std::fs::File)> {
        // The random part keeps temp names apart.
        let (dir, name) = part_base(target, tag.len() + 8);
        for _ in 0..16 {
            let path = dir.join(format!(".{name}.{tag}-{:08x}.part", rand::random::<u32>()));
            match super::names::create_private(&path) {
                Ok(f) => return Ok((TempFile { path, done: false }, f)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(std::io::Error::other("cannot create a temporary file"))
    }

    /// The partial download `.<name>.<tag>-<id>.part` beside `target`, where `id` names the
    /// transfer (the same one on every run, so that a later run finds it): opened as it is
    /// if an interrupted run left it, else created (0600). Unlike the other temporary
    /// files it stays on drop (an interrupted command leaves it for the next run); only
    /// [`TempFile::discard`] removes it.
    pub fn resumable(
        target: &Path,
        tag: &str,
        id: &str,
    ) -> std::io::Result<(TempFile, std::fs::File)> {
        let (dir, name) = part_base(target, tag.len() + id.len());
        let path = dir.join(format!(".{name}.{tag}-{id}.part"));
        use std::os::unix::fs::OpenOptionsExt;
        // Not through a symbolic link someone left under that name.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)?;
        if !file.metadata()?.is_file() {
            return Err(std::io::Error::other(format!(
                "{}: not a regular file",
                path.display()
            )));
        }
        Ok((TempFile { path, done: true }, file))
    }

    /// Removes the file now (a partial download that cannot be resumed).
    pub fn discard(self) {
        let _ = std::fs::remove_file(&self.path);
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Sets the mtime, gives the file the permissions a new file gets (0666 minus the
    /// umask; it was private while incomplete) and renames it to `target`.
    pub fn persist(self, target: &Path, mtime: i64) -> std::io::Result<()> {
        self.persist_mode(target, mtime, None)
    }

    /// [`persist`](Self::persist) with the permission bits `mode` states, if it states
    /// any (rwx only: set-user-ID, set-group-ID and sticky bits from the cloud are dropped).
    pub fn persist_mode(
        mut self,
        target: &Path,
        mtime: i64,
        mode: Option<u32>,
    ) -> std::io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        set_mtime(&self.path, mtime)?;
        let perm = mode.map_or(0o666 & !process_umask(), |m| m & 0o777);
        std::fs::set_permissions(&self.path, std::fs::Permissions::from_mode(perm))?;
        std::fs::rename(&self.path, target)?;
        self.done = true;
        Ok(())
    }
}

/// Where a partial download of `target` goes, and the name it starts with: `.` + name + `.`
/// + `suffix` bytes of tag and id + `.part` must fit one file name, so a long name is cut.
fn part_base(target: &Path, suffix: usize) -> (&Path, String) {
    let dir = target
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "download".into());
    let room = super::names::NAME_MAX.saturating_sub(suffix + 8);
    (dir, super::names::truncate_at_char(&name, room).to_string())
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The process umask (from /proc/self/status; 022 if it cannot be read).
pub fn process_umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| parse_umask(&s))
        .unwrap_or(0o022)
}

fn parse_umask(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Umask:"))
        .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
}

/// Sets a file's modification time (Unix seconds).
pub fn set_mtime(path: &Path, mtime: i64) -> std::io::Result<()> {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime.max(0) as u64);
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)?
        .set_modified(t)
}

/// Sets a symbolic link's own mtime (not its target's).
pub fn set_link_mtime(path: &Path, mtime: i64) -> std::io::Result<()> {
    use rustix::fs::{AtFlags, Timespec, Timestamps, CWD};
    let t = Timespec {
        tv_sec: mtime.max(0),
        tv_nsec: 0,
    };
    let times = Timestamps {
        last_access: t,
        last_modification: t,
    };
    rustix::fs::utimensat(CWD, path, &times, AtFlags::SYMLINK_NOFOLLOW)?;
    Ok(())
}

/// A file's mtime in Unix seconds.
pub fn mtime_of(meta: &std::fs::Metadata) -> i64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs() as i64)
}

/// Is this one of our partial downloads (megacmd's, or two-way sync's)?
pub fn is_partial(name: &str) -> bool {
    name.starts_with('.')
        && name.ends_with(".part")
        && (name.contains(".megacmd-") || name.contains(".megasync-"))
}

/// Makes a symbolic link to `to` at `dest`: made under a temporary name beside it, then
/// renamed over whatever `dest` is (a file or a link; a folder there is an error).
/// The link gets `mtime` as its own modification time.
pub fn place_symlink(to: &std::ffi::OsStr, dest: &Path, mtime: i64) -> std::io::Result<()> {
    let (dir, name) = part_base(dest, 16);
    for _ in 0..16 {
        let tmp = dir.join(format!(".{name}.link-{:08x}.part", rand::random::<u32>()));
        match std::os::unix::fs::symlink(to, &tmp) {
            Ok(()) => {
                let placed = set_link_mtime(&tmp, mtime).and_then(|()| std::fs::rename(&tmp, dest));
                return placed.inspect_err(|_| {
                    let _ = std::fs::remove_file(&tmp);
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other("cannot create a temporary link"))
}

/// A symbolic link's target, as bytes (what a link node holds, see `client::posix`).
pub fn link_target(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::os::unix::ffi::OsStringExt;
    Ok(std::fs::read_link(path)?.into_os_string().into_vec())
}

/// Refuses to go through a symbolic link: fails if any existing component of `rel` (a
/// `/`-separated path below `root`) is one. Where downloads make links (see
/// `client::posix`), a later download below a link's path must not write wherever the link
/// points.
pub fn no_link_on_the_way(root: &Path, rel: &str) -> std::io::Result<()> {
    let mut p = root.to_path_buf();
    for part in rel.split('/').filter(|s| !s.is_empty()) {
        p.push(part);
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(std::io::Error::other(format!(
                    "{}: a symbolic link where a folder should be (not followed)",
                    p.display()
                )))
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Lists a local tree (relative `/` paths, folders included), skipping our partial downloads.
/// Symbolic links are listed as links, never followed (no loops; a link to a folder is not
/// its contents).
pub fn walk(root: &Path) -> std::io::Result<Vec<Entry>> {
    let mut out = Vec::new();
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, rel)) = stack.pop() {
        for ent in std::fs::read_dir(&dir)? {
            let ent = ent?;
            let name = ent.file_name().to_string_lossy().into_owned();
            if is_partial(&name) {
                continue;
            }
            let path = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            let ft = ent.file_type()?;
            if ft.is_dir() {
                out.push(Entry {
                    path: path.clone(),
                    size: 0,
                    mtime: 0,
                    dir: true,
                    link: false,
                });
                stack.push((ent.path(), path));
            } else {
                let meta = match std::fs::symlink_metadata(ent.path()) {
                    Ok(m) if m.is_file() || m.is_symlink() => m,
                    _ => continue, // sockets, devices, FIFOs; gone meanwhile
                };
                out.push(Entry {
                    path,
                    size: meta.len(),
                    mtime: mtime_of(&meta),
                    dir: false,
                    link: meta.is_symlink(),
                });
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_on_the_way_is_refused() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("a/b")).unwrap();
        std::os::unix::fs::symlink("/tmp", d.path().join("a/l")).unwrap();
        assert!(no_link_on_the_way(d.path(), "a/b").is_ok());
        assert!(no_link_on_the_way(d.path(), "a/b/new/deeper").is_ok());
        assert!(no_link_on_the_way(d.path(), "a/l").is_err());
        assert!(no_link_on_the_way(d.path(), "a/l/x").is_err());
    }

    #[test]
    fn temp_files_vanish_unless_persisted() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("out.bin");
        let (t, _f) = TempFile::create_for(&target).unwrap();
        let p = t.path().to_path_buf();
        assert!(p.exists() && is_partial(&p.file_name().unwrap().to_string_lossy()));
        drop(t);
        assert!(!p.exists());
        let (t, _f) = TempFile::create_for(&target).unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(t.path()).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "private while incomplete");
        }
        t.persist(&target, 1_600_000_000).unwrap();
        let meta = std::fs::metadata(&target).unwrap();
        assert_eq!(mtime_of(&meta), 1_600_000_000);
        {
            use std::os::unix::fs::PermissionsExt;
            // An ordinary new file once complete: 0666 minus the umask (0644 with 022).
            assert_eq!(meta.permissions().mode() & 0o777, 0o666 & !process_umask());
            assert_eq!(
                parse_umask("Name:\tx\nUmask:\t0027\nState:\tR\n"),
                Some(0o027)
            );
            assert_eq!(parse_umask("Name:\tx\n"), None);
        }
        assert_eq!(walk(d.path()).unwrap().len(), 1);
    }

    #[test]
    fn temp_names_fit_even_for_long_names() {
        let d = tempfile::tempdir().unwrap();
        let name = "é".repeat(125); // 250 bytes
        let target = d.path().join(&name);
        let (t, _f) = TempFile::create_for(&target).unwrap();
        let tmp = t.path().file_name().unwrap().to_string_lossy().into_owned();
        assert!(tmp.len() <= 255 && is_partial(&tmp), "{tmp}");
        t.persist(&target, 0).unwrap();
        assert!(target.exists());
    }
}
