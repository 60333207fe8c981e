//! What `getattr`, `readdir` and `statfs` report. Sizes and mtimes come from the node (the
//! mtime from its fingerprint), or from the staging file while a file has unsaved writes;
//! modes from the node where mega-mount stored one (see [`super::posix`]), else from the
//! mount options, as owners always do.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::inodes::Target;
use super::{FsError, MegaFs, Result};
use crate::tree::Node;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    /// A symbolic link (a file node marked as one).
    Symlink,
}

/// What `getattr` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    pub ino: u64,
    pub size: u64,
    pub mtime: SystemTime,
    pub ctime: SystemTime,
    pub kind: Kind,
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
    /// 0 for a file unlinked while still open, else 1 (files) or 2 (folders).
    pub nlink: u32,
}

/// A directory entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub ino: u64,
    pub name: String,
    pub kind: Kind,
}

/// `statfs` numbers.
#[derive(Debug, Clone, Copy)]
pub struct FsStats {
    pub block_size: u32,
    pub blocks: u64,
    pub free: u64,
    pub files: u64,
}

pub(super) fn to_time(secs: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64)
}

impl Kind {
    pub(super) fn of(n: &Node) -> Kind {
        if n.kind.is_container() {
            Kind::Dir
        } else if n.is_symlink() {
            Kind::Symlink
        } else {
            Kind::File
        }
    }
}

impl MegaFs {
    pub(super) fn attr_of(&self, ino: u64, n: &Node) -> Attr {
        let kind = Kind::of(n);
        // A stored mode is shown as it is; the mount's umask shapes only the defaults.
        let mut perm = match self.queued_mode(ino).or(n.mode) {
            Some(m) => m & crate::tree::posix::PERM,
            None if kind == Kind::Dir => 0o777 & !self.cfg.umask,
            None => 0o666 & !self.cfg.umask,
        };
        if kind != Kind::Symlink
            && (self.read_only_share(&n.handle) || self.frozen(&n.handle).is_some())
        {
            perm &= !0o222;
        }
        Attr {
            ino,
            size: if kind == Kind::Dir { 0 } else { n.size },
            mtime: to_time(n.mtime),
            ctime: to_time(n.ctime),
            kind,
            perm: perm as u16,
            uid: self.cfg.uid,
            gid: self.cfg.gid,
            nlink: if kind == Kind::Dir { 2 } else { 1 },
        }
    }

    /// Size and mtime of a file with unsaved local changes (a dirty staging file); with
    /// `any`, of any handle open for writing when none has changes.
    fn staged(&self, ino: u64, any: bool) -> Option<(u64, i64)> {
        let w = self.open_writer(ino, any)?;
        w.staged().len().ok().map(|len| (len, w.shown_mtime()))
    }

    /// A regular file's attributes from a staging file's size and mtime.
    fn staged_attr(&self, ino: u64, (size, mtime): (u64, i64), nlink: u32) -> Attr {
        let t = to_time(mtime);
        Attr {
            ino,
            size,
            mtime: t,
            ctime: t,
            kind: Kind::File,
            perm: self
                .pending_mode(ino)
                .map_or(0o666 & !self.cfg.umask, |m| m & crate::tree::posix::PERM)
                as u16,
            uid: self.cfg.uid,
            gid: self.cfg.gid,
            nlink,
        }
    }

    /// A file unlinked while open (`fstat` on its descriptor): what its handles hold, with no
    /// links.
    fn unlinked_attr(&self, ino: u64) -> Result<Attr> {
        if let Some(staged) = self.staged(ino, true) {
            return Ok(self.staged_attr(ino, staged, 0));
        }
        let size = {
            let open = self.open_files();
            let size = open
                .of_ino(ino)
                .find_map(|(_, f)| f.reader.as_ref().map(|r| r.size()));
            size
        };
        match size {
            Some(size) => Ok(self.staged_attr(ino, (size, crate::local::time::now()), 0)),
            None => Err(FsError::NotFound),
        }
    }

    pub fn getattr(&self, ino: u64) -> Result<Attr> {
        let staged = self.staged(ino, false);
        let target = match self.target(ino) {
            Err(FsError::NotFound) => return self.unlinked_attr(ino),
            t => t?,
        };
        match target {
            Target::Node(h) => {
                let n = self.client.node(&h).map_err(|_| FsError::NotFound)?;
                let mut a = self.attr_of(ino, &n);
                if let Some((size, mtime)) = staged {
                    a.size = size;
                    a.mtime = to_time(mtime);
                    // Unsaved writes changed it since the node was made (never back in
                    // time: an mtime set explicitly may be older).
                    a.ctime = a.ctime.max(a.mtime);
                }
                Ok(a)
            }
            // Created here, not uploaded yet: what its handles hold (unchanged: empty).
            Target::Pending { .. } => match staged.or_else(|| self.staged(ino, true)) {
                Some(staged) => Ok(self.staged_attr(ino, staged, 1)),
                None => Err(FsError::NotFound),
            },
            Target::NewDir { .. } => Ok(self.attr_of(ino, &self.node_of(ino)?)),
            Target::Virtual(_) => Ok(self.virtual_attr(ino)),
        }
    }

    pub async fn statfs(&self) -> Result<FsStats> {
        let q = self.client.quota().await?;
        const BLOCK: u64 = 4096;
        Ok(FsStats {
            block_size: BLOCK as u32,
            blocks: q.total / BLOCK,
            // Files whose upload is queued (write-back) will take their room.
            free: q
                .total
                .saturating_sub(q.used.saturating_add(self.queued_bytes()))
                / BLOCK,
            files: self.client.read_tree().len() as u64,
        })
    }
}
