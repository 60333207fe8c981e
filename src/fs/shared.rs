//! Folders other users shared with us, on the mount: a virtual folder at the top (by default
//! `Shared with me`, `shares=NAME` to rename it, `shares=` to hide it) holding one virtual
//! folder per owner (their e-mail address), holding the shared folders themselves, which are
//! real nodes from there on. It is there while at least one folder is shared with us. A real folder of the same name in the Cloud Drive wins; the
//! virtual one is then shown as `NAME (incoming)`.
//!
//! The virtual folders are read-only (EACCES for anything that would change them). Inside a
//! share the access level decides, before anything is sent: a read-only share refuses every
//! change with EACCES (and shows no write permission bits), a read-write share refuses
//! deleting and moving, which need full access.

use std::time::SystemTime;

use super::attr::{Attr, DirEntry, Kind};
use super::dirs::display_names;
use super::inodes::{Target, Virtual};
use super::{FsError, MegaFs, Result, ROOT_INO};
use crate::tree::{Access, Node, NodeHandle};

/// The default name of the virtual folder.
pub const DEFAULT_SHARES_DIR: &str = "Shared with me";

impl MegaFs {
    /// The virtual folder's name in the root as shown: `None` if hidden, or while nobody
    /// shares anything with us (so that an empty Cloud Drive mounts as an empty folder, and
    /// `rsync --delete` onto the mount finds nothing it cannot remove).
    pub(super) fn shares_name(&self) -> Option<String> {
        let name = self.cfg.shares_dir.as_deref().filter(|n| !n.is_empty())?;
        if self.client.view(|t| t.inshares().is_empty()) {
            return None;
        }
        // The root's view is built once per tree generation: no listing per lookup.
        let root = self.client.root().ok()?;
        let taken = self.dir_view(&root.handle).is_ok_and(|v| v.has(name));
        Some(if taken {
            format!("{name} (incoming)")
        } else {
            name.to_string()
        })
    }

    /// The virtual folder a Virtual inode stands for.
    pub(super) fn virtual_of(&self, ino: u64) -> Option<Virtual> {
        match self.inodes().get(ino) {
            Some(Target::Virtual(v)) => Some(v.clone()),
            _ => None,
        }
    }

    pub(super) fn virtual_attr(&self, ino: u64) -> Attr {
        let t = SystemTime::now();
        Attr {
            ino,
            size: 0,
            mtime: t,
            ctime: t,
            kind: Kind::Dir,
            perm: (0o555 & !self.cfg.umask) as u16,
            uid: self.cfg.uid,
            gid: self.cfg.gid,
            nlink: 2,
        }
    }

    /// Owners who share with us (as shown: e-mail, else handle) and their share roots.
    fn owners(&self) -> Vec<(String, String, Vec<Node>)> {
        self.client.view(|tree| {
            let mut out: Vec<(String, String, Vec<Node>)> = Vec::new();
            for n in tree.inshares() {
                let owner = n
                    .inshare
                    .as_ref()
                    .map(|s| s.owner.clone())
                    .unwrap_or_default();
                let shown = crate::local::names::escape_name(&tree.sharer_name(n));
                match out.iter_mut().find(|o| o.0 == owner) {
                    Some(o) => o.2.push(n.clone()),
                    None => out.push((owner, shown, vec![n.clone()])),
                }
            }
            out
        })
    }

    /// `readdir` of a virtual folder.
    pub(super) fn readdir_virtual(&self, v: &Virtual) -> Result<Vec<DirEntry>> {
        if matches!(v, Virtual::Versions(_) | Virtual::FileVersions(..)) {
            return self.readdir_versions(v);
        }
        let owners = self.owners();
        let mut inodes = self.inodes();
        Ok(match v {
            Virtual::Shares => owners
                .iter()
                .map(|(owner, shown, _)| DirEntry {
                    ino: inodes.virtual_ino(Virtual::Owner(owner.clone())),
                    name: shown.clone(),
                    kind: Kind::Dir,
                })
                .collect(),
            Virtual::Owner(o) => owners
                .iter()
                .filter(|(owner, _, _)| owner == o)
                .flat_map(|(_, _, roots)| {
                    display_names(roots)
                        .into_iter()
                        .map(|(name, n)| (name, n.handle.clone()))
                        .collect::<Vec<_>>()
                })
                .map(|(name, h)| DirEntry {
                    ino: inodes.ino_of(&h),
                    name,
                    kind: Kind::Dir,
                })
                .collect(),
            Virtual::Versions(_) | Virtual::FileVersions(..) => Vec::new(),
        })
    }

    /// `lookup` in a virtual folder, or of the virtual folder in the root.
    pub(super) fn lookup_virtual(&self, parent: u64, name: &str) -> Option<Result<Attr>> {
        let found = if parent == ROOT_INO {
            if self.shares_name().as_deref() == Some(name) {
                let ino = self.inodes().virtual_ino(Virtual::Shares);
                self.entered(ino, parent, name);
                return Some(Ok(self.virtual_attr(ino)));
            }
            Some(self.lookup_special(name)?)
        } else {
            let v = self.virtual_of(parent)?;
            match self.readdir_virtual(&v) {
                Ok(entries) => entries.into_iter().find(|e| e.name == name),
                Err(e) => return Some(Err(e)),
            }
        };
        Some(match found {
            None => Err(FsError::NotFound),
            Some(e) => {
                let a = self.getattr(e.ino);
                if a.is_ok() {
                    self.entered(e.ino, parent, name);
                }
                a
            }
        })
    }

    /// Refuses a change inside a share we received unless our access is at least `need`.
    /// Nothing in the Rubbish Bin and no previous version changes ([`MegaFs::not_frozen`]).
    pub(super) fn may_change(&self, h: &NodeHandle, need: Access) -> Result<()> {
        self.not_frozen(h)?;
        let access = self.client.view(|tree| {
            tree.inshare_of(h)
                .map(|root| root.inshare.as_ref().map_or(Access::Read, |s| s.access))
        });
        let Some(access) = access else {
            return Ok(());
        };
        if access < need {
            return Err(FsError::AccessDenied(format!(
                "{}: shared with you {}",
                self.client.path_of(h),
                match access {
                    Access::Read => "read-only",
                    _ => "without the right to delete or move",
                }
            )));
        }
        Ok(())
    }

    /// Whether a node lies in a read-only share (its write bits are not shown).
    pub(super) fn read_only_share(&self, h: &NodeHandle) -> bool {
        self.client.view(|tree| {
            tree.inshare_of(h)
                .and_then(|r| r.inshare.as_ref())
                .is_some_and(|s| s.access == Access::Read)
        })
    }

    /// After the whole tree was fetched again: every inode the kernel may know is stale.
    pub fn stale_all(&self) -> super::Stale {
        super::Stale {
            entries: Vec::new(),
            inodes: self.inodes().all(),
        }
    }
}
