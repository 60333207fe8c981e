//! Folders as the mount shows them, lookups, and what the kernel must forget after remote
//! changes.
//!
//! * Names: children are shown with [`escape_name`]; when several share a name, the oldest
//!   keeps it and the others are shown as `stem (HANDLE).ext`, deterministically. New
//!   duplicates are never created.
//! * A folder's view is built once per change of its listing (`NodeTree::listing_generation`:
//!   a change in another folder leaves it alone), so a lookup is O(1), not O(entries).
//! * Every directory entry the kernel may cache is remembered per inode ([`MegaFs::remember`])
//!   so that [`MegaFs::stale`] can name exactly the entries a remote change invalidates.
//! * An open directory ([`MegaFs::opendir`]) takes a snapshot of the listing; reads page
//!   through it by position, so offsets stay valid while the folder changes: an entry present
//!   for the whole listing is returned exactly once. Reading from the start again
//!   (`rewinddir`) takes a new snapshot.

use std::collections::HashMap;
use std::sync::Arc;

use super::attr::{Attr, DirEntry, Kind};
use super::inodes::{is_local, Target};
use super::{FsError, MegaFs, Result, ROOT_INO};
use crate::local::names::escape_name;
use crate::tree::{shrink_sparse, Change, Node, NodeHandle};

/// Directory entries remembered per inode for invalidation (hard links do not exist here, so
/// more than one or two only happens around renames).
const MAX_NAMES: usize = 8;
/// Folder views kept before they are all dropped (and built again as they are used).
const MAX_VIEWS: usize = 4096;

/// Display names of a folder's children: escaped, with duplicates disambiguated.
pub(super) fn display_names(children: &[Node]) -> Vec<(String, &Node)> {
    let mut counts: HashMap<String, Vec<&Node>> = HashMap::new();
    for c in children {
        counts.entry(escape_name(&c.name)).or_default().push(c);
    }
    let mut out = Vec::with_capacity(children.len());
    for (name, mut group) in counts {
        group.sort_by(|a, b| (a.ctime, &a.handle).cmp(&(b.ctime, &b.handle)));
        for (i, n) in group.into_iter().enumerate() {
            let shown = if i == 0 {
                name.clone()
            } else {
                match name.rsplit_once('.').filter(|(stem, _)| !stem.is_empty()) {
                    Some((stem, ext)) => format!("{stem} ({}).{ext}", n.handle),
                    None => format!("{name} ({})", n.handle),
                }
            };
            out.push((shown, n));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Whether a pending inode is shown in its folder: a new folder (`Some(true)`), or a file
/// some handle still holds, open or queued for upload (`Some(false)`); a file whose handles
/// all went (unlinked, or uploaded and re-bound) is not.
fn live_pending(inodes: &super::inodes::Inodes, open: &super::OpenTable, ino: u64) -> Option<bool> {
    match inodes.get(ino) {
        Some(Target::NewDir { .. }) => Some(true),
        Some(Target::Pending { .. }) if open.has_ino(ino) => Some(false),
        _ => None,
    }
}

/// An open directory: the listing taken when it was opened (or rewound), and whether it was
/// read from yet.
pub(super) struct DirHandle {
    ino: u64,
    entries: Arc<Vec<DirEntry>>,
    read: bool,
}

/// A folder as shown on the mount, built once per change of its listing.
pub(super) struct DirView {
    entries: Vec<(String, NodeHandle, Kind)>,
    by_name: HashMap<String, usize>,
}

impl DirView {
    /// Whether a child is shown under this name.
    pub(super) fn has(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }
}

/// What the kernel must forget after remote changes.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Stale {
    /// Directory entries: (parent inode, name).
    pub entries: Vec<(u64, String)>,
    /// Inodes whose attributes, data or listing changed.
    pub inodes: Vec<u64>,
}

impl Stale {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.inodes.is_empty()
    }
}

impl MegaFs {
    /// A folder's view (names as shown, in order, with an index by name), rebuilt only when
    /// the tree changed since it was built.
    /// A view is never built from a damaged tree cache: the listing fails (EIO) instead of
    /// showing a folder with children missing.
    pub(super) fn dir_view(&self, dir: &NodeHandle) -> Result<Arc<DirView>> {
        if is_local(dir) {
            // A new folder: MEGA has nothing in it yet.
            return Ok(Arc::new(DirView {
                entries: Vec::new(),
                by_name: HashMap::new(),
            }));
        }
        // Read before the children: a change landing in between makes the view look older
        // than it is (rebuilt once more), never newer.
        let generation = self.client.read_tree().listing_generation(dir);
        if let Some((g, v)) = self.dirs.lock().unwrap_or_else(|e| e.into_inner()).get(dir) {
            if *g == generation {
                return Ok(v.clone());
            }
        }
        let children = self.client.children(dir)?;
        let entries: Vec<(String, NodeHandle, Kind)> = display_names(&children)
            .into_iter()
            .map(|(name, n)| (name, n.handle.clone(), Kind::of(n)))
            .collect();
        let by_name = entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.0.clone(), i))
            .collect();
        let view = Arc::new(DirView { entries, by_name });
        let mut dirs = self.dirs.lock().unwrap_or_else(|e| e.into_inner());
        if dirs.len() > MAX_VIEWS {
            dirs.clear();
        }
        dirs.insert(dir.clone(), (generation, view.clone()));
        Ok(view)
    }

    /// The children of a folder as shown on the mount.
    pub fn readdir(&self, ino: u64) -> Result<Vec<DirEntry>> {
        if let Some(v) = self.virtual_of(ino) {
            return self.readdir_virtual(&v);
        }
        let dir = self.dir_of(ino)?;
        let view = self.dir_view(&dir.handle)?;
        let shares = (ino == ROOT_INO).then(|| self.shares_name()).flatten();
        let mut inodes = self.inodes();
        // Plain READDIR replies create no dentries in the kernel: nothing to remember.
        let mut out: Vec<DirEntry> = view
            .entries
            .iter()
            .map(|(name, h, kind)| DirEntry {
                ino: inodes.ino_of(h),
                name: name.clone(),
                kind: *kind,
            })
            .collect();
        // Files and folders made here and not on MEGA yet.
        let pending = inodes.pending_in(&dir.handle);
        {
            let open = self.open_files();
            let mut shown = std::collections::HashSet::new();
            for (name, ino) in pending {
                let kind = match live_pending(&inodes, &open, ino) {
                    Some(true) => Kind::Dir,
                    Some(false) => Kind::File,
                    None => continue,
                };
                if view.has(&name) || !shown.insert(name.clone()) {
                    continue;
                }
                out.push(DirEntry { ino, name, kind });
            }
        }
        if let Some(name) = shares {
            out.push(DirEntry {
                ino: inodes.virtual_ino(super::inodes::Virtual::Shares),
                name,
                kind: Kind::Dir,
            });
        }
        drop(inodes);
        if ino == ROOT_INO {
            out.extend(self.backups_entry());
        }
        if ino == ROOT_INO && self.cfg.list_special {
            out.extend(self.special_entries());
        }
        Ok(out)
    }

    /// Opens a directory: its listing now, which the handle's reads page through. The
    /// entries' inodes stay (pinned) while it is open: the numbers the listing gave out are
    /// the ones a lookup finds.
    pub fn opendir(&self, ino: u64) -> Result<u64> {
        let entries = Arc::new(self.listing(ino)?);
        let fh = self
            .next_fh
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.dir_handles().insert(
            fh,
            DirHandle {
                ino,
                entries,
                read: false,
            },
        );
        Ok(fh)
    }

    /// The listing of an open directory, to be read from position `offset` (0: the start;
    /// reading the start again after the handle was read takes a new snapshot, as
    /// `rewinddir` expects). A handle the kernel did not open through us (or already
    /// released) lists the folder as it is now.
    pub fn dir_entries(&self, ino: u64, fh: u64, offset: u64) -> Result<Arc<Vec<DirEntry>>> {
        let again = {
            let mut handles = self.dir_handles();
            match handles.get_mut(&fh).filter(|h| h.ino == ino) {
                Some(h) if offset > 0 || !h.read => {
                    h.read = true;
                    return Ok(h.entries.clone());
                }
                Some(_) => true,
                None => false,
            }
        };
        if !again {
            return Ok(Arc::new(self.readdir(ino)?));
        }
        let entries = Arc::new(self.listing(ino)?);
        let old = self
            .dir_handles()
            .get_mut(&fh)
            .map(|h| std::mem::replace(&mut h.entries, entries.clone()));
        if let Some(old) = old {
            self.unpin_all(&old);
        }
        Ok(entries)
    }

    /// A folder's listing with its entries' inodes pinned.
    fn listing(&self, ino: u64) -> Result<Vec<DirEntry>> {
        let entries = self.readdir(ino)?;
        let mut inodes = self.inodes();
        for e in &entries {
            inodes.pin(e.ino);
        }
        Ok(entries)
    }

    fn unpin_all(&self, entries: &[DirEntry]) {
        let free: Vec<u64> = {
            let mut inodes = self.inodes();
            entries
                .iter()
                .filter(|e| inodes.unpin(e.ino))
                .map(|e| e.ino)
                .collect()
        };
        for ino in free {
            self.drop_ino(ino);
        }
        self.shrink_tables();
    }

    /// Closes an open directory; the inodes only its listing held go.
    pub fn releasedir(&self, fh: u64) {
        let h = self.dir_handles().remove(&fh);
        if let Some(h) = h {
            self.unpin_all(&h.entries);
        }
    }

    fn dir_handles(&self) -> std::sync::MutexGuard<'_, HashMap<u64, DirHandle>> {
        self.dir_handles.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An entry of a listing was handed to the kernel with its attributes (`readdirplus`):
    /// the kernel keeps a directory entry for it, counted and remembered like a lookup's.
    pub fn listed_with_attrs(&self, parent: u64, e: &DirEntry) {
        self.entered(e.ino, parent, &e.name);
    }

    /// The node shown as `name` in `dir`; an error (not "none") if the tree cache turned out
    /// damaged while it was looked up.
    pub(super) fn child(&self, dir: &Node, name: &str) -> Result<Option<Node>> {
        let view = self.dir_view(&dir.handle)?;
        let Some(&i) = view.by_name.get(name) else {
            return Ok(None);
        };
        match self.client.node(&view.entries[i].1) {
            Ok(n) => Ok(Some(n)),
            Err(crate::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The inode of a file created as `name` in `dir` and not uploaded yet, if any.
    pub(super) fn pending_child(&self, dir: &NodeHandle, name: &str) -> Option<u64> {
        self.pending_entry(dir, name)
            .and_then(|(ino, is_dir)| (!is_dir).then_some(ino))
    }

    /// The inode of a file created as `name` in `dir` and not uploaded yet, or of a folder
    /// made there with write-back and not on MEGA yet (then `true`), if any.
    pub(super) fn pending_entry(&self, dir: &NodeHandle, name: &str) -> Option<(u64, bool)> {
        let inodes = self.inodes();
        let open = self.open_files();
        inodes
            .pending_named(dir, name)
            .iter()
            .find_map(|&ino| Some((ino, live_pending(&inodes, &open, ino)?)))
    }

    /// Whether files created in `dir` and not on MEGA yet (open, or queued for upload), or
    /// folders made there with write-back, are there.
    pub(super) fn has_pending_children(&self, dir: &NodeHandle) -> bool {
        let inodes = self.inodes();
        let open = self.open_files();
        let any = inodes
            .pending_in(dir)
            .iter()
            .any(|(_, ino)| live_pending(&inodes, &open, *ino).is_some());
        any
    }

    pub fn lookup(&self, parent: u64, name: &str) -> Result<Attr> {
        Self::name_fits(name)?;
        if let Some(r) = self.lookup_virtual(parent, name) {
            return r;
        }
        let dir = self.dir_of(parent)?;
        if let Some((ino, _)) = self.pending_entry(&dir.handle, name) {
            let a = self.getattr(ino)?;
            self.entered(ino, parent, name);
            return Ok(a);
        }
        let n = self.child(&dir, name)?.ok_or(FsError::NotFound)?;
        loop {
            let ino = self.inodes().ino_of(&n.handle);
            let a = self.getattr(ino)?;
            // Dropped between the two (a `forget` of it ran): look it up again.
            if self.entered(ino, parent, name) {
                return Ok(a);
            }
        }
    }

    /// The kernel now holds an entry for `ino` as `name` in `parent` (a reply to lookup,
    /// create, mkdir, or a readdirplus entry): one more lookup counted for `forget`, and the
    /// name remembered for invalidation. False if the inode was dropped meanwhile.
    pub(super) fn entered(&self, ino: u64, parent: u64, name: &str) -> bool {
        if !self.inodes().reference(ino) {
            return false;
        }
        self.remember(ino, parent, name);
        true
    }

    /// The kernel gave back `n` lookups of `ino` (FUSE `forget`): once neither the kernel nor
    /// an open listing refers to it and no handle has it open, the inode and what the daemon
    /// keeps for it (its remembered names, the reader of its content) go.
    pub fn forget(&self, ino: u64, n: u64) {
        if self.inodes().kernel_forget(ino, n) {
            self.drop_ino(ino);
            self.shrink_tables();
        }
    }

    /// Gives back the memory of the per-inode tables once they are mostly empty (the kernel
    /// forgot most of what a `find` over a large tree made it look up).
    fn shrink_tables(&self) {
        self.inodes().shrink();
        shrink_sparse(&mut self.names.lock().unwrap_or_else(|e| e.into_inner()));
        shrink_sparse(&mut self.dirs.lock().unwrap_or_else(|e| e.into_inner()));
        shrink_sparse(&mut self.readers.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// Drops an inode nothing refers to (see [`MegaFs::forget`]).
    pub(super) fn drop_ino(&self, ino: u64) {
        if self.open_files().has_ino(ino) {
            return;
        }
        let Some(target) = self.inodes().drop_unreferenced(ino) else {
            return;
        };
        self.names
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&ino);
        if let Target::Node(h) = target {
            self.forget_reader(&h);
            // A folder's view goes with its inode (it is rebuilt if the folder is listed
            // again).
            self.dirs
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&h);
        }
    }

    /// How many inodes the daemon keeps now (diagnostics and tests).
    pub fn inode_count(&self) -> usize {
        self.inodes().len()
    }

    /// Notes that the kernel may now cache `name` in `parent` as `ino` (a reply that creates a
    /// dentry: lookup, mkdir, create, rename). At most [`MAX_NAMES`] per inode, oldest dropped.
    pub(super) fn remember(&self, ino: u64, parent: u64, name: &str) {
        let mut names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        let known = names.entry(ino).or_default();
        if !known.iter().any(|(p, n)| *p == parent && n == name) {
            if known.len() >= MAX_NAMES {
                known.remove(0);
            }
            known.push((parent, name.to_string()));
        }
    }

    /// What remote changes make stale in the kernel: the changed nodes' old directory entries
    /// (renamed, moved, deleted), the nodes themselves, and the folders they left or entered.
    /// Only inodes the kernel has seen are named.
    pub fn stale(&self, changes: &[Change]) -> Stale {
        let inodes = self.inodes();
        let mut names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Stale::default();
        let inode = |h: Option<&NodeHandle>, out: &mut Stale| -> Option<u64> {
            let ino = h.and_then(|h| inodes.find(h))?;
            if !out.inodes.contains(&ino) {
                out.inodes.push(ino);
            }
            Some(ino)
        };
        for c in changes {
            let (node, parents): (&NodeHandle, Vec<Option<NodeHandle>>) = match c {
                Change::Added(h) | Change::Updated(h) => (
                    h,
                    vec![self
                        .client
                        .view(|t| t.get(h).and_then(|n| n.parent.clone()))],
                ),
                Change::Removed { handle, parent } => (handle, vec![parent.clone()]),
                Change::Moved { handle, from, to } => (handle, vec![from.clone(), to.clone()]),
            };
            if let Some(ino) = inode(Some(node), &mut out) {
                if !matches!(c, Change::Added(_)) {
                    // Entries stay remembered: a lookup racing with this invalidation may
                    // re-create one in the kernel, and the next change must invalidate it too.
                    let known = match c {
                        Change::Removed { .. } => names.remove(&ino).unwrap_or_default(),
                        _ => names.get(&ino).cloned().unwrap_or_default(),
                    };
                    for entry in known {
                        if !out.entries.contains(&entry) {
                            out.entries.push(entry);
                        }
                    }
                }
            }
            // A change whose folder we do not have is an incoming share's root coming or
            // going: the virtual folders list differently now.
            let gone = self.client.view(|tree| {
                parents
                    .iter()
                    .any(|p| p.as_ref().is_some_and(|p| tree.get(p).is_none()))
            });
            if gone {
                // The root too: the virtual folder comes with the first share, goes with
                // the last.
                for ino in inodes.virtual_inos().into_iter().chain([ROOT_INO]) {
                    if !out.inodes.contains(&ino) {
                        out.inodes.push(ino);
                    }
                }
            }
            for p in parents {
                inode(p.as_ref(), &mut out);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::NodeKind;

    fn node(h: &str, name: &str, ctime: i64) -> Node {
        Node::bare(
            h.into(),
            Some("ROOT".into()),
            NodeKind::File,
            name.into(),
            ctime,
        )
    }

    #[test]
    fn duplicates_and_hostile_names_are_shown_deterministically() {
        let kids = vec![
            node("BBBBBBBB", "a.txt", 20),
            node("AAAAAAAA", "a.txt", 10),
            node("CCCCCCCC", "a.txt", 30),
            node("DDDDDDDD", "x/y", 1),
            node("EEEEEEEE", "..", 1),
            node("FFFFFFFF", "noext", 1),
            node("GGGGGGGG", "noext", 2),
        ];
        let names: Vec<String> = display_names(&kids).into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            vec![
                "%2E%2E",
                "a (BBBBBBBB).txt",
                "a (CCCCCCCC).txt",
                "a.txt",
                "noext",
                "noext (GGGGGGGG)",
                "x%2Fy"
            ]
        );
        let shown = display_names(&kids);
        assert_eq!(
            shown.iter().find(|(n, _)| n == "a.txt").unwrap().1.handle.0,
            "AAAAAAAA",
            "the oldest keeps the name"
        );
    }
}
