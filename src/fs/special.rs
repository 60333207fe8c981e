//! What MEGA keeps besides the Cloud Drive, on the mount: the Rubbish Bin and the previous
//! versions of files, both read-only.
//!
//! * The Rubbish Bin is the real node, shown in the root as `.Rubbish Bin` (`rubbish=NAME`
//!   renames it, `rubbish=` hides it). Nothing in it can be changed, except that moving
//!   something out of it (`mv`) restores it, as MEGA's apps do.
//! * Previous versions are under `.versions` in the root (`versions=NAME`, `versions=`
//!   hides it): a folder mirroring the Cloud Drive's folders, in which every file that has
//!   previous versions is a folder holding them, each named after the file with the time it
//!   was saved (UTC), newest first in time: `.versions/docs/report.txt/report (2026-12-05
//!   101500).txt`. They read like any file (verified against their own MACs).
//!
//! * The Vault's "My backups" (backups made by MEGA's apps and `megacmd backup`), the real
//!   node, shown and listed in the root as `My backups` once the account has one
//!   (`backups=NAME` renames it, `backups=` hides it; a real folder of that name wins and it
//!   is then `NAME (vault)`). It is read-only: only backups change it.
//!
//! The bin and the versions are reached by name (`cd ~/Mega/.versions`) but not listed in the root unless
//! `list_special` is given, as ZFS does with `.zfs`: `rsync -a ~/Mega/ backup/` then copies
//! neither the bin nor every old version, `du` counts neither, and `rsync --delete` onto the
//! mount does not try to empty them. A real folder of the same name in the root wins.

use super::attr::{DirEntry, Kind};
use super::dirs::display_names;
use super::inodes::Virtual;
use super::{FsError, MegaFs, Result};
use crate::local::names::tagged_name;
use crate::local::time::fmt_time_secs;
use crate::tree::{Node, NodeHandle, NodeKind};

/// The default name of the Rubbish Bin in the root.
pub const DEFAULT_RUBBISH_DIR: &str = ".Rubbish Bin";
/// The default name of the previous versions' folder in the root.
pub const DEFAULT_VERSIONS_DIR: &str = ".versions";
/// The default name of the Vault's "My backups" in the root.
pub const DEFAULT_BACKUPS_DIR: &str = "My backups";

/// Where a node lies, for what may be done to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Frozen {
    /// In the Rubbish Bin (or the bin itself).
    Rubbish,
    /// A previous version of a file.
    Version,
    /// In the Vault (backups).
    Vault,
}

impl MegaFs {
    /// A special folder's name in the root, unless hidden or taken by a real child.
    fn special_name(&self, name: Option<&str>) -> Option<String> {
        let name = name.filter(|n| !n.is_empty())?;
        let root = self.client.root().ok()?;
        let taken = self.dir_view(&root.handle).is_ok_and(|v| v.has(name));
        (!taken).then(|| name.to_string())
    }

    /// The Rubbish Bin's name in the root and its node, if shown.
    fn rubbish_entry(&self) -> Option<(String, Node)> {
        let name = self.special_name(self.cfg.rubbish_dir.as_deref())?;
        Some((name, self.client.rubbish().ok()?))
    }

    /// "My backups" as shown in the root, if the account has it and it is not hidden.
    pub(super) fn backups_entry(&self) -> Option<DirEntry> {
        let name = self.cfg.backups_dir.as_deref().filter(|n| !n.is_empty())?;
        let h = self.client.my_backups_cached()?;
        let root = self.client.root().ok()?;
        let taken = self.dir_view(&root.handle).is_ok_and(|v| v.has(name));
        Some(DirEntry {
            ino: self.inodes().ino_of(&h),
            name: if taken {
                format!("{name} (vault)")
            } else {
                name.to_string()
            },
            kind: Kind::Dir,
        })
    }

    fn versions_name(&self) -> Option<String> {
        self.special_name(self.cfg.versions_dir.as_deref())
    }

    /// The special folders' entries in the root's listing.
    pub(super) fn special_entries(&self) -> Vec<DirEntry> {
        self.specials(None)
    }

    /// A lookup of a special folder in the root: `None` if `name` is not one.
    pub(super) fn lookup_special(&self, name: &str) -> Option<DirEntry> {
        self.specials(Some(name)).pop()
    }

    /// The special folders shown (only the one named `only`, if given); an inode is
    /// allocated only for what is returned.
    fn specials(&self, only: Option<&str>) -> Vec<DirEntry> {
        let wanted = |n: &str| only.is_none_or(|o| o == n);
        let mut out = Vec::new();
        // Listed with the Cloud Drive's own entries (see `readdir`); here for lookups.
        if only.is_some() {
            out.extend(self.backups_entry().filter(|e| wanted(&e.name)));
        }
        if let Some((name, bin)) = self.rubbish_entry().filter(|(n, _)| wanted(n)) {
            out.push(DirEntry {
                ino: self.inodes().ino_of(&bin.handle),
                name,
                kind: Kind::Dir,
            });
        }
        if let Some(name) = self.versions_name().filter(|n| wanted(n)) {
            if let Ok(root) = self.client.root() {
                out.push(DirEntry {
                    ino: self.inodes().virtual_ino(Virtual::Versions(root.handle)),
                    name,
                    kind: Kind::Dir,
                });
            }
        }
        out
    }

    /// Whether a node is in the Rubbish Bin or a previous version, where nothing changes.
    pub(super) fn frozen(&self, h: &NodeHandle) -> Option<Frozen> {
        self.client.view(|tree| {
            if tree.is_version(h) {
                return Some(Frozen::Version);
            }
            match tree.top_of(h).map(|t| t.kind) {
                Some(NodeKind::Rubbish) => Some(Frozen::Rubbish),
                Some(NodeKind::Inbox) => Some(Frozen::Vault),
                _ => None,
            }
        })
    }

    /// Refuses a change to a node in the Rubbish Bin or to a previous version.
    pub(super) fn not_frozen(&self, h: &NodeHandle) -> Result<()> {
        match self.frozen(h) {
            None => Ok(()),
            Some(Frozen::Rubbish) => Err(FsError::AccessDenied(
                "in the Rubbish Bin, which is read-only on the mount (move it out to restore it)"
                    .into(),
            )),
            Some(Frozen::Version) => Err(FsError::AccessDenied(
                "a previous version, which is read-only".into(),
            )),
            Some(Frozen::Vault) => Err(FsError::AccessDenied(
                "in the Vault, where backups are read-only (megacmd backup changes them)".into(),
            )),
        }
    }

    /// `readdir` of a versions folder.
    pub(super) fn readdir_versions(&self, v: &Virtual) -> Result<Vec<DirEntry>> {
        match v {
            Virtual::Versions(dir) => {
                let children = self.client.children(dir)?;
                let has_versions: Vec<bool> = self.client.view(|tree| {
                    children
                        .iter()
                        .map(|n| !tree.versions(&n.handle).is_empty())
                        .collect()
                });
                let with_versions: std::collections::HashSet<&NodeHandle> = children
                    .iter()
                    .zip(&has_versions)
                    .filter(|(_, v)| **v)
                    .map(|(n, _)| &n.handle)
                    .collect();
                let shown: Vec<(String, NodeHandle, bool)> = display_names(&children)
                    .into_iter()
                    .filter(|(_, n)| n.kind.is_container() || with_versions.contains(&n.handle))
                    .map(|(name, n)| (name, n.handle.clone(), n.kind.is_container()))
                    .collect();
                let mut inodes = self.inodes();
                Ok(shown
                    .into_iter()
                    .map(|(name, h, folder)| {
                        let v = if folder {
                            Virtual::Versions(h)
                        } else {
                            Virtual::FileVersions(dir.clone(), name.clone())
                        };
                        DirEntry {
                            ino: inodes.virtual_ino(v),
                            name,
                            kind: Kind::Dir,
                        }
                    })
                    .collect())
            }
            Virtual::FileVersions(dir, name) => {
                let dir = self.client.node(dir).map_err(|_| FsError::NotFound)?;
                let file = self.child(&dir, name)?.ok_or(FsError::NotFound)?;
                let versions: Vec<Node> = self
                    .client
                    .view(|t| t.versions(&file.handle).into_iter().cloned().collect());
                let mut inodes = self.inodes();
                Ok(version_names(name, &versions)
                    .into_iter()
                    .map(|(shown, h)| DirEntry {
                        ino: inodes.ino_of(&h),
                        name: shown,
                        kind: Kind::File,
                    })
                    .collect())
            }
            Virtual::Shares | Virtual::Owner(_) => Err(FsError::NotDir),
        }
    }

    /// Whether a rename moves a node out of the Rubbish Bin into the Cloud Drive (a restore).
    pub(super) fn restoring(&self, n: &NodeHandle, to: &NodeHandle) -> bool {
        self.frozen(n) == Some(Frozen::Rubbish) && self.frozen(to).is_none()
    }
}

/// The names of a file's previous versions (newest first): the file's name tagged with the
/// time each was saved, and the handle for the rare two saved in the same second.
fn version_names(name: &str, versions: &[Node]) -> Vec<(String, NodeHandle)> {
    let mut out: Vec<(String, NodeHandle)> = Vec::with_capacity(versions.len());
    for v in versions {
        let mut shown = tagged_name(name, &fmt_time_secs(v.ctime));
        if out.iter().any(|(s, _)| *s == shown) {
            shown = tagged_name(name, &format!("{} {}", fmt_time_secs(v.ctime), v.handle));
        }
        out.push((shown, v.handle.clone()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(h: &str, ctime: i64) -> Node {
        Node::bare(
            NodeHandle(h.into()),
            None,
            NodeKind::File,
            "x".into(),
            ctime,
        )
    }

    #[test]
    fn versions_are_named_after_the_file_and_when_they_were_saved() {
        let v = [
            version("AAAAAAAA", 1_700_000_000),
            version("BBBBBBBB", 1_700_000_000),
            version("CCCCCCCC", 1_600_000_000),
        ];
        let names: Vec<String> = version_names("report.txt", &v)
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(
            names,
            [
                "report (2023-11-14 221320).txt",
                "report (2023-11-14 221320 BBBBBBBB).txt",
                "report (2020-09-13 122640).txt",
            ]
        );
    }
}
