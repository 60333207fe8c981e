//! POSIX metadata through the mount (stored as [`crate::client::posix`] describes): the mode
//! `create` and `mkdir` are given, `chmod`, and symbolic links (`symlink`, `readlink`).
//! A file created here and not uploaded yet keeps its mode beside its inode until its first
//! commit stores it; a node's mode changes in place (no upload). Nodes without a stored mode
//! show the mount's defaults (0666/0777 less `umask`).

use super::attr::Attr;
use super::inodes::Target;
use super::{FsError, MegaFs, Result};
use crate::client::Target as NodeTarget;
use crate::local::names::unescape_name;
use crate::local::time::now;
use crate::tree::posix::{self, S_IFREG};
use crate::tree::{Access, NodeHandle};

/// Symbolic link targets kept in memory (a node's content never changes, so an entry never
/// goes stale; the map is emptied when it is full).
const LINKS_KEPT: usize = 4096;

impl MegaFs {
    /// The mode a file created here will be stored with at its first commit.
    pub(super) fn pending_mode(&self, ino: u64) -> Option<u32> {
        self.modes().get(&ino).copied()
    }

    /// Notes the mode (type and permission bits) a file created here is stored with.
    pub(super) fn set_pending_mode(&self, ino: u64, mode: u32) {
        self.modes().insert(ino, posix::with_type(S_IFREG, mode));
    }

    /// After a first commit (or an unlink before one): the mode is on MEGA, or moot.
    pub(super) fn forget_pending_mode(&self, ino: u64) {
        self.modes().remove(&ino);
    }

    fn modes(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<u64, u32>> {
        self.modes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `chmod`: the permission bits of a file, link or folder. Changing attributes takes full
    /// access in a share (MEGA's rule). With write-back, a node's new mode is sent in the
    /// background (see [`super::writeback`]).
    pub async fn chmod(self: &std::sync::Arc<Self>, ino: u64, mode: u32) -> Result<Attr> {
        self.writable()?;
        // Written back: queued without the file's lock (the task sending an earlier mode of
        // this file holds it for a round trip); a node stays a node, and the task sends to
        // whichever version is current when it runs.
        if self.writeback() {
            match self.target(ino)? {
                Target::Node(h) => {
                    self.may_chmod(&h)?;
                    self.queue_mode(ino, mode & posix::PERM);
                    return self.getattr(ino);
                }
                // A new folder's mode goes with it; if MEGA created it meanwhile, after it.
                Target::NewDir { .. } => {
                    self.set_pending_mode(ino, mode);
                    if let Target::Node(_) = self.target(ino)? {
                        self.forget_pending_mode(ino);
                        self.queue_mode(ino, mode & posix::PERM);
                    }
                    return self.getattr(ino);
                }
                _ => {}
            }
        }
        let _file = self.lock_files(&[ino]).await;
        match self.target(ino)? {
            // A new folder's is sent with it (or after it, if it is on its way).
            Target::Pending { .. } | Target::NewDir { .. } => self.set_pending_mode(ino, mode),
            Target::Virtual(_) => return Err(FsError::NotPermitted),
            Target::Node(h) => {
                self.may_chmod(&h)?;
                self.client.set_mode(&h, mode & posix::PERM).await?;
            }
        }
        self.getattr(ino)
    }

    /// Whether the mode of node `h` may change: not a root, and full access in a share.
    fn may_chmod(&self, h: &NodeHandle) -> Result<()> {
        let n = self.client.node(h).map_err(|_| FsError::NotFound)?;
        if n.parent.is_none() {
            return Err(FsError::NotPermitted); // a root
        }
        self.may_change(h, Access::Full)
    }

    /// `symlink`: a link called `name` in `parent` pointing to `to`.
    pub async fn symlink(&self, parent: u64, name: &str, to: &[u8]) -> Result<Attr> {
        Self::name_fits(name)?;
        self.writable()?;
        if to.is_empty() {
            return Err(FsError::NotFound); // what Linux answers for an empty target
        }
        if to.len() as u64 > posix::MAX_TARGET {
            return Err(FsError::NameTooLong);
        }
        // The link is uploaded now: into a folder MEGA has.
        self.settle_dir(parent).await?;
        let dir = self.dir_of(parent)?;
        self.may_change(&dir.handle, Access::ReadWrite)?;
        if self.child(&dir, name)?.is_some() || self.pending_entry(&dir.handle, name).is_some() {
            return Err(FsError::Exists);
        }
        let name_on_mega = unescape_name(name);
        let target = NodeTarget {
            parent: &dir.handle,
            name: &name_on_mega,
            replaces: None,
            mode: None,
        };
        let n = self.client.symlink(target, to, now()).await?;
        self.remember_link(&n.handle, to);
        let ino = self.inodes().ino_of(&n.handle);
        self.entered(ino, parent, name);
        Ok(self.attr_of(ino, &n))
    }

    /// `readlink`: a link's target (its content, MAC-checked when first fetched).
    pub async fn readlink(&self, ino: u64) -> Result<Vec<u8>> {
        let n = self.node_of(ino)?;
        if !n.is_symlink() {
            return Err(FsError::Invalid);
        }
        if let Some(to) = self.links().get(&n.handle) {
            return Ok(to.clone());
        }
        let to = self.client.read_link(&n.handle).await?;
        self.remember_link(&n.handle, &to);
        Ok(to)
    }

    fn remember_link(&self, h: &NodeHandle, to: &[u8]) {
        let mut links = self.links();
        if links.len() >= LINKS_KEPT {
            links.clear();
        }
        links.insert(h.clone(), to.to_vec());
    }

    fn links(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<NodeHandle, Vec<u8>>> {
        self.links.lock().unwrap_or_else(|e| e.into_inner())
    }
}
