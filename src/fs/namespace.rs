//! Changing names: mkdir, unlink, rmdir, rename, and the per-file commit locks that keep them
//! from racing a commit of the same file.
//!
//! A file's commits, renames, unlinks and mtime changes take its commit lock one at a time
//! ([`MegaFs::lock_files`], always in inode order, so two callers cannot deadlock). A file
//! unlinked while open stays readable through its open handles; writes to it are discarded
//! when it is closed, as on a local filesystem. A file created and not uploaded yet can be
//! renamed and unlinked like any other.

use std::sync::Arc;

use super::attr::Attr;
use super::inodes::Target;
use super::{FsError, MegaFs, Result};
use crate::local::names::{escape_name, unescape_name};
use crate::tree::{Access, Node};

/// A file's commit lock; the map entry goes when nobody holds or waits for it.
pub(super) struct FileLock<'a> {
    fs: &'a MegaFs,
    ino: u64,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for FileLock<'_> {
    fn drop(&mut self) {
        self.guard.take();
        let mut commits = self.fs.commits.lock().unwrap_or_else(|e| e.into_inner());
        if commits
            .get(&self.ino)
            .is_some_and(|l| Arc::strong_count(l) == 1)
        {
            commits.remove(&self.ino);
        }
    }
}

impl MegaFs {
    /// Locks files against each other's commits (in inode order, so two callers cannot
    /// deadlock). Commits, renames, deletions and mtime changes of a file take it.
    pub(super) async fn lock_files(&self, inos: &[u64]) -> Vec<FileLock<'_>> {
        let mut inos = inos.to_vec();
        inos.sort_unstable();
        inos.dedup();
        let mut out = Vec::with_capacity(inos.len());
        for ino in inos {
            let lock = self
                .commits
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(ino)
                .or_default()
                .clone();
            out.push(FileLock {
                fs: self,
                ino,
                guard: Some(lock.lock_owned().await),
            });
        }
        out
    }

    /// `name` in `dir`, with its file locked; looked up again under the lock (a commit that
    /// was running may have replaced the node).
    async fn child_locked(&self, dir: &Node, name: &str) -> Result<(Node, Vec<FileLock<'_>>)> {
        let n = self.child(dir, name)?.ok_or(FsError::NotFound)?;
        let ino = self.inodes().ino_of(&n.handle);
        let lock = self.lock_files(&[ino]).await;
        let n = self.child(dir, name)?.ok_or(FsError::NotFound)?;
        Ok((n, lock))
    }

    /// Open writers of `ino` keep their handles but will not save: the file is gone.
    fn unlinked(&self, ino: u64) {
        for (_, f) in self.open_files().of_ino(ino) {
            if let Some(w) = &f.writer {
                w.unlink();
            }
        }
    }

    /// Creates a folder, stored with `mode`'s permission bits if given (with write-back,
    /// on MEGA later: see [`super::newdirs`]).
    pub async fn mkdir(
        self: &Arc<Self>,
        parent: u64,
        name: &str,
        mode: Option<u32>,
    ) -> Result<Attr> {
        Self::name_fits(name)?;
        self.writable()?;
        let dir = self.dir_of(parent)?;
        self.may_change(&dir.handle, Access::ReadWrite)?;
        if self.child(&dir, name)?.is_some() || self.pending_entry(&dir.handle, name).is_some() {
            return Err(FsError::Exists);
        }
        if self.writes_back_dir(&dir.handle) {
            return self.mkdir_later(parent, name, mode);
        }
        let n = self
            .client
            .mkdir_mode(&dir.handle, &unescape_name(name), mode)
            .await?;
        let ino = self.inodes().ino_of(&n.handle);
        self.entered(ino, parent, name);
        Ok(self.attr_of(ino, &n))
    }

    /// Removes a node (Rubbish Bin, or deleted with `hard_delete`) and forgets its inode.
    async fn remove(&self, n: &Node) -> Result<()> {
        self.may_change(&n.handle, Access::Full)?;
        self.dispose(&n.handle).await?;
        let ino = self.inodes().find(&n.handle);
        if let Some(ino) = ino {
            self.unlinked(ino);
        }
        self.inodes().remove_handle(&n.handle);
        self.cache.purge(&n.handle);
        Ok(())
    }

    pub async fn unlink(&self, parent: u64, name: &str) -> Result<()> {
        Self::name_fits(name)?;
        self.writable()?;
        let dir = self.dir_of(parent)?;
        if let Some(ino) = self.pending_child(&dir.handle, name) {
            // Its first commit may be running (a flush from another descriptor): wait for it.
            // Still not uploaded: nothing to remove on MEGA. Uploaded meanwhile: removed
            // below like any file, or the name would come back once the commit ends.
            let _file = self.lock_files(&[ino]).await;
            if self.pending_child(&dir.handle, name) == Some(ino) {
                self.unlinked(ino);
                self.inodes().forget(ino);
                self.forget_pending_mode(ino);
                return Ok(());
            }
        }
        if self.pending_entry(&dir.handle, name).is_some() {
            return Err(FsError::IsDir); // a new folder
        }
        let (n, _file) = self.child_locked(&dir, name).await?;
        if n.kind.is_container() {
            return Err(FsError::IsDir);
        }
        self.remove(&n).await
    }

    pub async fn rmdir(&self, parent: u64, name: &str) -> Result<()> {
        Self::name_fits(name)?;
        self.writable()?;
        let mut dir = self.dir_of(parent)?;
        if let Some((ino, is_dir)) = self.pending_entry(&dir.handle, name) {
            if !is_dir {
                return Err(FsError::NotDir);
            }
            // A new folder: removed on MEGA once it is there (MEGA may have it already).
            let local = self.inodes().dir_handle(ino);
            if let Some(local) = local {
                if self.has_pending_children(&local) {
                    return Err(FsError::NotEmpty);
                }
                if self.drop_given_up_dir(ino, &local) {
                    return Ok(()); // never on MEGA, and never will be
                }
            }
            self.settle_dir(ino).await?;
            dir = self.dir_of(parent)?;
        }
        let n = self.child(&dir, name)?.ok_or(FsError::NotFound)?;
        if !n.kind.is_container() {
            return Err(FsError::NotDir);
        }
        if !self.client.children(&n.handle)?.is_empty() || self.has_pending_children(&n.handle) {
            return Err(FsError::NotEmpty);
        }
        self.remove(&n).await
    }

    pub async fn rename(
        &self,
        parent: u64,
        name: &str,
        new_parent: u64,
        new_name: &str,
    ) -> Result<()> {
        Self::name_fits(name)?;
        Self::name_fits(new_name)?;
        self.writable()?;
        let (mut from, mut to) = (self.dir_of(parent)?, self.dir_of(new_parent)?);
        if parent == new_parent && name == new_name {
            // rename(2) of a name onto itself does nothing (if the name exists).
            let exists = self.child(&from, name)?.is_some()
                || self.pending_entry(&from.handle, name).is_some();
            return if exists {
                Ok(())
            } else {
                Err(FsError::NotFound)
            };
        }
        // Folders made with write-back that the rename names to MEGA are created first:
        // a new folder renamed or replaced, and the folders of anything but a file not
        // uploaded yet (which is renamed on the mount only).
        let mut settle = Vec::new();
        let pending_file = self.pending_child(&from.handle, name).is_some();
        if !pending_file {
            settle.extend([parent, new_parent]);
        }
        for (dir, name) in [(&from, name), (&to, new_name)] {
            if let Some((ino, true)) = self.pending_entry(&dir.handle, name) {
                settle.push(ino);
            }
        }
        if !settle.is_empty() {
            for ino in settle {
                self.settle_dir(ino).await?;
            }
            (from, to) = (self.dir_of(parent)?, self.dir_of(new_parent)?);
        }
        // A commit of either file that is running finishes first (it names the new version
        // after the node it replaces, as it was when it started).
        let mut inos = Vec::new();
        for (dir, name) in [(&from, name), (&to, new_name)] {
            if let Some(c) = self.child(dir, name)? {
                inos.push(self.inodes().ino_of(&c.handle));
            }
            inos.extend(self.pending_child(&dir.handle, name));
        }
        let _files = self.lock_files(&inos).await;
        if let Some(ino) = self.pending_child(&from.handle, name) {
            return self.rename_pending(ino, &to, new_parent, new_name).await;
        }
        if pending_file {
            // Uploaded while we looked (it was not on MEGA when the folders were settled):
            // moving the node needs its folders on MEGA too.
            for ino in [parent, new_parent] {
                self.settle_dir(ino).await?;
            }
            (from, to) = (self.dir_of(parent)?, self.dir_of(new_parent)?);
        }
        let n = self.child(&from, name)?.ok_or(FsError::NotFound)?;
        // Only within one account's tree: the owner of a share and the Cloud Drive are two.
        let tree_of = |h: &crate::tree::NodeHandle| {
            self.client
                .view(|tree| tree.inshare_of(h).map(|r| r.handle.clone()))
        };
        if tree_of(&n.handle) != tree_of(&to.handle) {
            return Err(FsError::CrossDevice);
        }
        // Renaming and moving both need full access (MEGA's rule for `a` and `m`). Out of
        // the Rubbish Bin (read-only otherwise) is a restore.
        if !self.restoring(&n.handle, &to.handle) {
            self.may_change(&n.handle, Access::Full)?;
        }
        self.may_change(&to.handle, Access::ReadWrite)?;
        self.make_room(&to, new_name, Some(&n)).await?;
        // The name as shown (escaped, or shortened if too long) keeps the node's real name.
        let real = if new_name == escape_name(&n.name) {
            n.name.clone()
        } else {
            unescape_name(new_name)
        };
        if n.name != real {
            self.client.rename(&n.handle, &real).await?;
        }
        if from.handle != to.handle {
            self.client.move_to(&n.handle, &to.handle).await?;
        }
        // The kernel moves its dentry to the new name.
        let ino = self.inodes().ino_of(&n.handle);
        self.remember(ino, new_parent, new_name);
        Ok(())
    }

    /// Removes what `new_name` in `dir` holds before something is renamed over it, with
    /// rename(2)'s rules for files and folders.
    async fn make_room(&self, dir: &Node, new_name: &str, moving: Option<&Node>) -> Result<()> {
        let moving_dir = moving.is_some_and(|m| m.kind.is_container());
        if let Some(ino) = self.pending_child(&dir.handle, new_name) {
            if moving_dir {
                return Err(FsError::NotDir);
            }
            self.unlinked(ino);
            self.inodes().forget(ino);
        }
        let existing = self
            .child(dir, new_name)?
            .filter(|e| moving.is_none_or(|m| e.handle != m.handle));
        if let Some(existing) = existing {
            match (existing.kind.is_container(), moving_dir) {
                (true, false) => return Err(FsError::IsDir),
                (false, true) => return Err(FsError::NotDir),
                (true, true)
                    if !self.client.children(&existing.handle)?.is_empty()
                        || self.has_pending_children(&existing.handle) =>
                {
                    return Err(FsError::NotEmpty)
                }
                _ => {}
            }
            self.remove(&existing).await?;
        }
        Ok(())
    }

    /// Renames a file that exists only locally so far: it will be uploaded under the new name.
    async fn rename_pending(
        &self,
        ino: u64,
        to: &Node,
        new_parent: u64,
        new_name: &str,
    ) -> Result<()> {
        self.make_room(to, new_name, None).await?;
        self.inodes().set_target(
            ino,
            Target::Pending {
                parent: to.handle.clone(),
                name: new_name.to_string(),
            },
        );
        self.remember(ino, new_parent, new_name);
        Ok(())
    }
}
