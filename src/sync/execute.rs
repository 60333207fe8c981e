//! Executing a two-way plan: each action runs between its two journal entries and returns
//! the shadow updates it implies. Transfers check that the local file is still what the plan
//! saw; downloads arrive through a partial file renamed into place after the MAC verified, and
//! a local file they replace goes to the debris folder first; conflicts keep both versions.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::engine::{io_err, SyncError, Syncer};
use super::ignore::DEBRIS;
use super::plan::{Action, Local, Remote, Shadow};
use super::scan::{hex, join_rel};
use super::shadow::Update;
use crate::client::{OldVersions, Target};
use crate::error::Error;
use crate::local::files::mtime_of;
use crate::local::names::{tagged_name, unescape_name};
use crate::local::time::{fmt_time_secs, now};
use crate::tree::NodeHandle;

fn split_rel(rel: &str) -> (&str, &str) {
    match rel.rfind('/') {
        Some(i) => (&rel[..i], &rel[i + 1..]),
        None => ("", rel),
    }
}

/// `name (conflict YYYY-MM-DD HHMMSS).ext`, in UTC.
pub fn conflict_name(name: &str, now: i64) -> String {
    tagged_name(name, &format!("conflict {}", fmt_time_secs(now)))
}

/// A file that changed after the plan was made: the action waits for the next pass.
fn changed_meanwhile(path: &Path) -> SyncError {
    io_err(
        path,
        std::io::Error::other("changed while syncing; it will be synced in the next pass"),
    )
}

/// The agreed state of a file after a transfer: the node, and the local (size, mtime, inode).
fn file_shadow(
    rel: &str,
    node: &crate::tree::Node,
    (size, mtime, inode): (u64, i64, u64),
) -> Shadow {
    Shadow {
        path: rel.to_string(),
        dir: false,
        size,
        mtime,
        rmtime: node.mtime,
        handle: node.handle.0.clone(),
        inode,
        crc: node.fingerprint.map(|f| hex(&f.crc)),
    }
}

impl Syncer {
    /// The remote folder at `rel` (it must exist: folders are created before their contents).
    fn remote_dir(&self, rel: &str) -> Result<NodeHandle, SyncError> {
        let mut h = self.remote.clone();
        if rel.is_empty() {
            return Ok(h);
        }
        for part in rel.split('/') {
            // The same choice among duplicate names as everywhere: the oldest.
            h = self
                .client
                .view(|tree| {
                    tree.child_by_local_name(&h, part)
                        .filter(|n| n.kind.is_container())
                        .map(|n| n.handle.clone())
                })
                .ok_or_else(|| {
                    SyncError::Client(Error::NotFound {
                        what: rel.to_string(),
                    })
                })?;
        }
        Ok(h)
    }

    /// A folder on the way to `rel_dir` that is a symbolic link stops the action (see
    /// [`crate::local::files::no_link_on_the_way`]).
    fn no_link_on_the_way(&self, rel_dir: &str) -> Result<(), SyncError> {
        crate::local::files::no_link_on_the_way(&self.local, rel_dir)
            .map_err(|e| io_err(&self.local.join(rel_dir), e))
    }

    fn local_state(&self, rel: &str) -> Result<(u64, i64, u64), SyncError> {
        use std::os::unix::fs::MetadataExt;
        let p = self.local.join(rel);
        let m = std::fs::symlink_metadata(&p).map_err(|e| io_err(&p, e))?;
        Ok((if m.is_dir() { 0 } else { m.len() }, mtime_of(&m), m.ino()))
    }

    /// Moves a local file or folder into `.debris/YYYY-MM-DD/` (same relative path; a
    /// numbered name if that is taken).
    fn to_debris(&self, rel: &str) -> Result<(), SyncError> {
        let day = fmt_time_secs(now());
        let day = day.split(' ').next().unwrap_or("debris").to_string();
        let mut target = self.local.join(DEBRIS).join(day).join(rel);
        if let Some(dir) = target.parent() {
            std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        }
        let base = target.clone();
        let mut n = 1;
        while target.symlink_metadata().is_ok() {
            target = PathBuf::from(format!("{} ({n})", base.display()));
            n += 1;
        }
        let src = self.local.join(rel);
        std::fs::rename(&src, &target).map_err(|e| io_err(&src, e))
    }

    fn shadow_of(&self, rel: &str, remote: &Remote, size: u64, mtime: i64, inode: u64) -> Shadow {
        Shadow {
            path: rel.to_string(),
            dir: remote.dir,
            size,
            mtime,
            rmtime: remote.mtime,
            handle: remote.handle.clone(),
            inode,
            crc: remote.crc.clone(),
        }
    }

    /// Uploads `rel`, as the new version of the node `replaces` if given (which becomes its
    /// previous version; the Rubbish Bin on an account without versions).
    async fn upload(
        &self,
        rel: &str,
        scanned: Option<&Local>,
        replaces: Option<&str>,
    ) -> Result<Shadow, SyncError> {
        let (parent, name) = split_rel(rel);
        let parent = self.remote_dir(parent)?;
        let p = self.local.join(rel);
        let (size, mtime, inode) = self.local_state(rel)?;
        if scanned.is_some_and(|l| (l.size, l.mtime) != (size, mtime)) {
            return Err(changed_meanwhile(&p));
        }
        let old = replaces.map(|h| NodeHandle(h.to_string()));
        let name = self.client.view(|t| t.remote_name(&parent, name));
        let target = Target {
            parent: &parent,
            name: &name,
            replaces: old.as_ref().map(|h| (h, OldVersions::Keep)),
            mode: None,
        };
        // From the path: an upload an interrupted run began resumes (see `client::resume`).
        let node = self.client.upload_path_to(target, &p, None).await?;
        Ok(file_shadow(rel, &node, (size, mtime, inode)))
    }

    /// Downloads a node to `rel` through a partial file renamed into place after the MAC
    /// verified; a local file already there (as scanned) goes to debris first.
    async fn download(
        &self,
        rel: &str,
        handle: &str,
        scanned: Option<&Local>,
    ) -> Result<Shadow, SyncError> {
        let node = self.client.node(&NodeHandle(handle.to_string()))?;
        let target = self.local.join(rel);
        let dir = target.parent().unwrap_or(&self.local).to_path_buf();
        self.no_link_on_the_way(split_rel(rel).0)?;
        std::fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
        // A link's target (verified) is fetched before anything local moves.
        let (partial, link) = if node.is_symlink() {
            (None, Some(self.client.read_link(&node.handle).await?))
        } else {
            let p = self
                .client
                .download_beside(&node.handle, &target, "megasync", None)
                .await?;
            (Some(p), None)
        };
        if let Ok(m) = std::fs::symlink_metadata(&target) {
            // The file we are replacing must still be what the plan saw.
            if scanned.is_none_or(|l| (l.size, l.mtime) != (m.len(), mtime_of(&m))) {
                return Err(changed_meanwhile(&target));
            }
            self.to_debris(rel)?;
        }
        // Renamed into place only now: the MAC verified (else `download` failed and the
        // partial file removed itself).
        match (partial, link) {
            (Some(p), _) => p
                .persist_mode(&target, node.mtime, node.mode)
                .map_err(|e| io_err(&target, e))?,
            (None, to) => {
                use std::os::unix::ffi::OsStrExt;
                let to = to.unwrap_or_default();
                crate::local::files::place_symlink(
                    std::ffi::OsStr::from_bytes(&to),
                    &target,
                    node.mtime,
                )
                .map_err(|e| io_err(&target, e))?
            }
        }
        Ok(file_shadow(rel, &node, self.local_state(rel)?))
    }

    pub(super) async fn execute_tagged<'a>(
        &self,
        a: &'a Action,
        l: &BTreeMap<String, Local>,
        r: &BTreeMap<String, Remote>,
    ) -> (&'a Action, Result<(), SyncError>) {
        (a, self.execute(a, l, r).await)
    }

    /// Runs one action between its two journal entries.
    async fn execute(
        &self,
        a: &Action,
        l: &BTreeMap<String, Local>,
        r: &BTreeMap<String, Remote>,
    ) -> Result<(), SyncError> {
        if let Action::Defer { .. } = a {
            return Ok(());
        }
        let id = self.db.begin(&format!("{a:?}"))?;
        match self.apply(a, l, r).await {
            Ok(updates) => self.db.finish(id, &updates)?,
            Err(e) => {
                // Failed, not interrupted: nothing to record, nothing to report next time.
                self.db.finish(id, &[])?;
                return Err(e);
            }
        }
        Ok(())
    }

    /// Runs one action; returns the shadow updates it implies.
    async fn apply(
        &self,
        a: &Action,
        l: &BTreeMap<String, Local>,
        r: &BTreeMap<String, Remote>,
    ) -> Result<Vec<Update>, SyncError> {
        Ok(match a {
            Action::MoveLocal { from, to } => {
                let (src, dst) = (self.local.join(from), self.local.join(to));
                self.no_link_on_the_way(split_rel(to).0)?;
                if let Some(dir) = dst.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
                }
                if dst.symlink_metadata().is_ok() {
                    return Err(io_err(&dst, std::io::ErrorKind::AlreadyExists.into()));
                }
                std::fs::rename(&src, &dst).map_err(|e| io_err(&src, e))?;
                vec![Update::Move {
                    from: from.clone(),
                    to: to.clone(),
                }]
            }
            Action::MoveRemote { from, to, handle } => {
                let h = NodeHandle(handle.clone());
                let (from_parent, from_name) = split_rel(from);
                let (to_parent, to_name) = split_rel(to);
                if from_parent != to_parent {
                    let dest = self.remote_dir(to_parent)?;
                    self.client.move_to(&h, &dest).await?;
                }
                if from_name != to_name {
                    self.client.rename(&h, &unescape_name(to_name)).await?;
                }
                vec![Update::Move {
                    from: from.clone(),
                    to: to.clone(),
                }]
            }
            Action::MkdirLocal { path } => {
                let p = self.local.join(path);
                self.no_link_on_the_way(path)?;
                std::fs::create_dir_all(&p).map_err(|e| io_err(&p, e))?;
                let (_, _, inode) = self.local_state(path)?;
                match r.get(path) {
                    Some(re) => vec![Update::Put(self.shadow_of(path, re, 0, 0, inode))],
                    None => vec![],
                }
            }
            Action::MkdirRemote { path } => {
                let (parent, name) = split_rel(path);
                let parent = self.remote_dir(parent)?;
                let name = self.client.view(|t| t.remote_name(&parent, name));
                let node = self.client.ensure_folder(&parent, &name).await?;
                let (_, _, inode) = self.local_state(path)?;
                vec![Update::Put(Shadow {
                    path: path.clone(),
                    dir: true,
                    size: 0,
                    mtime: 0,
                    rmtime: 0,
                    handle: node.handle.0,
                    inode,
                    crc: None,
                })]
            }
            Action::Upload { path, replace } => {
                vec![Update::Put(
                    self.upload(path, l.get(path), replace.as_deref()).await?,
                )]
            }
            Action::Download { path, handle } => {
                let s = self.download(path, handle, l.get(path)).await?;
                vec![Update::Put(s)]
            }
            Action::Conflict { path, handle } => {
                // Keep both: the local version under a conflict name (uploaded as such), the
                // remote version under the name.
                let (dir, name) = split_rel(path);
                let mut renamed = join_rel(dir, &conflict_name(name, now()));
                for n in 2.. {
                    if self.local.join(&renamed).symlink_metadata().is_err() {
                        break;
                    }
                    let base = conflict_name(name, now());
                    renamed = join_rel(dir, &format!("{base} {n}"));
                }
                let (src, dst) = (self.local.join(path), self.local.join(&renamed));
                std::fs::rename(&src, &dst).map_err(|e| io_err(&src, e))?;
                let mut updates = Vec::new();
                if !dst.is_dir() {
                    updates.push(Update::Put(self.upload(&renamed, None, None).await?));
                }
                let down = match r.get(path) {
                    Some(re) if re.dir => {
                        std::fs::create_dir_all(&src).map_err(|e| io_err(&src, e))?;
                        let (_, _, inode) = self.local_state(path)?;
                        self.shadow_of(path, re, 0, 0, inode)
                    }
                    _ => self.download(path, handle, None).await?,
                };
                updates.push(Update::Put(down));
                updates
            }
            Action::DeleteRemote { path, handle, .. } => {
                self.client.trash(&NodeHandle(handle.clone())).await?;
                vec![Update::Remove(path.clone())]
            }
            Action::DeleteLocal { path, .. } => {
                self.to_debris(path)?;
                vec![Update::Remove(path.clone())]
            }
            Action::Record { path } => match (l.get(path), r.get(path)) {
                (Some(le), Some(re)) => {
                    vec![Update::Put(
                        self.shadow_of(path, re, le.size, le.mtime, le.inode),
                    )]
                }
                _ => vec![],
            },
            Action::Forget { path } => vec![Update::Remove(path.clone())],
            Action::Defer { .. } => vec![],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflict_names_keep_the_extension_and_say_when() {
        let t = 1_700_000_000; // 2023-11-14 22:13:20 UTC
        assert_eq!(
            conflict_name("report.pdf", t),
            "report (conflict 2023-11-14 221320).pdf"
        );
        assert_eq!(
            conflict_name("archive.tar.gz", t),
            "archive.tar (conflict 2023-11-14 221320).gz"
        );
        assert_eq!(
            conflict_name("Makefile", t),
            "Makefile (conflict 2023-11-14 221320)"
        );
        assert_eq!(
            conflict_name(".bashrc", t),
            ".bashrc (conflict 2023-11-14 221320)"
        );
    }
}
