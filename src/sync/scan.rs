//! Scanning both sides of a pair for the planner: the remote subtree from the tree (the
//! oldest of duplicate names; undecryptable nodes skipped), the local folder from disk
//! (regular files, symbolic links and folders, with inodes for move detection and whether each file has
//! settled), fingerprints where content decides, and removing partial downloads a killed run
//! left behind.

use std::time::SystemTime;

use super::engine::{io_err, SyncError, Syncer};
use super::ignore::{is_partial, Exclusions, Kind, DEBRIS};
use super::plan::{Local, Remote};
use crate::local::files::mtime_of;
use crate::local::names::escape_name;

pub(super) fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

pub(super) fn join_rel(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}/{name}")
    }
}

/// Walks a local folder, calling `visit` with the relative path and metadata of every file
/// and folder the exclusions keep (excluded folders are not entered; sockets and devices are
/// skipped, and so are symbolic links unless `links`: then they count as files, with their
/// own metadata, never followed).
pub(super) fn walk_included(
    root: &std::path::Path,
    ignore: &Exclusions,
    links: bool,
    mut visit: impl FnMut(String, &std::fs::Metadata),
) -> Result<(), SyncError> {
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, rel)) = stack.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| io_err(&dir, e))?;
        for ent in entries {
            let ent = ent.map_err(|e| io_err(&dir, e))?;
            let name = ent.file_name().to_string_lossy().into_owned();
            let path = join_rel(&rel, &name);
            let Ok(meta) = std::fs::symlink_metadata(ent.path()) else {
                continue; // gone meanwhile
            };
            let kind = if meta.is_dir() {
                Kind::Folder
            } else if meta.is_file() {
                Kind::File
            } else if links && meta.is_symlink() {
                Kind::Symlink
            } else {
                continue; // sockets, devices (and links where not wanted) are not synced
            };
            if ignore.excluded(&path, kind, meta.is_file().then_some(meta.len()))? {
                continue;
            }
            if meta.is_dir() {
                stack.push((ent.path(), path.clone()));
            }
            visit(path, &meta);
        }
    }
    Ok(())
}

impl Syncer {
    /// The remote side; an error, never a short list, if the tree cache turned out damaged
    /// while it was read (a plan made from it could delete local files).
    pub(super) fn scan_remote(&self, ignore: &Exclusions) -> Result<Vec<Remote>, SyncError> {
        self.client.checked(|tree| self.remote_of(tree, ignore))?
    }

    fn remote_of(
        &self,
        tree: &crate::tree::NodeTree,
        ignore: &Exclusions,
    ) -> Result<Vec<Remote>, SyncError> {
        let mut out = Vec::new();
        let mut stack = vec![(self.remote.clone(), String::new())];
        while let Some((h, rel)) = stack.pop() {
            let mut kids = tree.children(&h);
            // Oldest first: of duplicate names, the oldest node is the one synced.
            kids.sort_by(|a, b| (a.ctime, &a.handle.0).cmp(&(b.ctime, &b.handle.0)));
            for n in kids {
                if n.undecryptable.is_some() {
                    continue;
                }
                let path = join_rel(&rel, &escape_name(&n.name));
                let dir = n.kind.is_container();
                let kind = if dir {
                    Kind::Folder
                } else if n.is_symlink() {
                    Kind::Symlink
                } else {
                    Kind::File
                };
                if ignore.excluded(&path, kind, (!dir).then_some(n.size))? {
                    continue;
                }
                if dir {
                    stack.push((n.handle.clone(), path.clone()));
                }
                out.push(Remote {
                    path,
                    dir,
                    size: n.size,
                    mtime: n.mtime,
                    handle: n.handle.0.clone(),
                    crc: n.fingerprint.map(|f| hex(&f.crc)),
                });
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        // MEGA allows duplicate names; the oldest is synced, the others are left alone.
        out.dedup_by(|b, a| a.path == b.path);
        Ok(out)
    }

    pub(super) fn scan_local(&self, ignore: &Exclusions) -> Result<Vec<Local>, SyncError> {
        use std::os::unix::fs::MetadataExt;
        let settle_before = SystemTime::now()
            .checked_sub(self.opts.settle)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let mut out = Vec::new();
        walk_included(&self.local, ignore, true, |path, meta| {
            out.push(Local {
                path,
                dir: meta.is_dir(),
                size: if meta.is_dir() { 0 } else { meta.len() },
                mtime: mtime_of(meta),
                inode: meta.ino(),
                settled: meta.is_dir() || meta.modified().is_ok_and(|t| t <= settle_before),
                crc: None,
            })
        })?;
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    /// A local file's fingerprint CRC (hex). Where the remote file's CRC differs, one written
    /// by an SDK build with the 32-bit sparse-CRC bug for this same content counts as equal
    /// (its form is returned), as MEGA's SDK now accepts it.
    pub(super) fn local_crc(
        &self,
        rel: &str,
        size: u64,
        remote: Option<&str>,
    ) -> std::io::Result<String> {
        use crate::crypto::fingerprint::{crc, legacy_crcs};
        let p = self.local.join(rel);
        if std::fs::symlink_metadata(&p)?.is_symlink() {
            // A link's content is its target (see `client::posix`).
            let to = crate::local::files::link_target(&p)?;
            return Ok(hex(&crc(&mut to.as_slice(), to.len() as u64)?));
        }
        let mut f = std::fs::File::open(&p)?;
        let ours = hex(&crc(&mut f, size)?);
        if let Some(theirs) = remote.filter(|t| *t != ours) {
            if legacy_crcs(&mut f, size)?.iter().any(|l| hex(l) == theirs) {
                tracing::debug!("{rel}: the remote fingerprint has the legacy 32-bit CRC");
                return Ok(theirs.to_string());
            }
        }
        Ok(ours)
    }

    /// Removes partial downloads a killed run left behind (ours only).
    pub(super) fn remove_partials(&self) {
        let mut stack = vec![self.local.clone()];
        while let Some(dir) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(&dir) else {
                continue;
            };
            for ent in rd.flatten() {
                let name = ent.file_name().to_string_lossy().into_owned();
                match ent.file_type() {
                    Ok(t) if t.is_dir() && !(dir == self.local && name == DEBRIS) => {
                        stack.push(ent.path())
                    }
                    Ok(t) if t.is_file() && is_partial(&name) && name.contains(".megasync-") => {
                        let _ = std::fs::remove_file(ent.path());
                    }
                    _ => {}
                }
            }
        }
    }
}
