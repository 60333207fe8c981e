//! Inode numbers for the mount: allocated per mount, never reused while the mount lives, and
//! stable for a node while anything refers to it (an overwrite re-points the inode at the new
//! version's handle). A file created but not yet uploaded has an inode too
//! ([`Target::Pending`]), and so has a folder made with write-back before MEGA has it
//! ([`Target::NewDir`], see [`super::newdirs`]).
//!
//! An inode lives while the kernel holds it (its lookup count: every entry handed to the
//! kernel counts one, `forget` gives them back) or an open directory's listing names it (a
//! pin); when both are gone the daemon drops it ([`MegaFs::forget`](super::MegaFs::forget)), so
//! memory follows what the kernel holds. A node looked up again later gets a new number.

use std::collections::{BTreeMap, HashMap, VecDeque};

use crate::tree::{shrink_sparse, NodeHandle};

/// The root directory's inode (the Cloud Drive).
pub const ROOT_INO: u64 = 1;

/// What an inode stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Node(NodeHandle),
    /// Created locally, not uploaded yet: `name` in `parent`.
    Pending {
        parent: NodeHandle,
        name: String,
    },
    /// A folder made on the mount (write-back) and not on MEGA yet: `name` in `parent`,
    /// standing for the node it will be; `local` is the handle its pending children name as
    /// their parent until then (see [`is_local`]).
    NewDir {
        parent: NodeHandle,
        name: String,
        local: NodeHandle,
    },
    /// A folder that exists only on the mount (the shares of other users).
    Virtual(Virtual),
}

/// Whether a handle is a new folder's local stand-in (a [`Target::NewDir`]'s), never a
/// node's: MEGA's handles are base64url, which has no `~`.
pub fn is_local(h: &NodeHandle) -> bool {
    h.0.starts_with('~')
}

/// Local stand-ins of folders MEGA created meanwhile, remembered with their handles (at most
/// this many, the latest): a caller that read a stand-in just before its folder was created
/// still files its entry under the right folder.
const RESOLVED_KEPT: usize = 4096;

/// The virtual folders of [`super::shared`] and [`super::special`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Virtual {
    /// `Shared with me`.
    Shares,
    /// One owner's shares (by user handle).
    Owner(String),
    /// The previous versions of the files in a folder (by the folder's handle; the Cloud
    /// Drive's is the `.versions` folder itself).
    Versions(NodeHandle),
    /// The previous versions of one file: the file shown as `name` in the folder.
    FileVersions(NodeHandle, String),
}

impl Virtual {
    /// Folders that stand for part of the tree: they go when nothing refers to them, like a
    /// node's inode.
    fn transient(&self) -> bool {
        matches!(self, Virtual::Versions(_) | Virtual::FileVersions(..))
    }
}

#[derive(Debug, Default)]
pub struct Inodes {
    by_ino: HashMap<u64, Target>,
    by_handle: HashMap<NodeHandle, u64>,
    by_virtual: HashMap<Virtual, u64>,
    next: u64,
    /// The kernel's lookup count of each inode it holds.
    refs: HashMap<u64, u64>,
    /// How many open directory listings name each inode.
    pins: HashMap<u64, u32>,
    /// Pending inodes (files and new folders) by folder and name, ordered so that a
    /// folder's are together (several under one name when one whose upload failed is still
    /// open under the name of a newer one).
    by_pending: BTreeMap<(NodeHandle, String), Vec<u64>>,
    /// New folders' stand-ins that MEGA has created since, with the real handles.
    resolved: HashMap<NodeHandle, NodeHandle>,
    resolved_order: VecDeque<NodeHandle>,
}

impl Inodes {
    pub fn new(root: NodeHandle) -> Self {
        let mut t = Inodes {
            next: ROOT_INO + 1,
            ..Default::default()
        };
        t.by_ino.insert(ROOT_INO, Target::Node(root.clone()));
        t.by_handle.insert(root, ROOT_INO);
        t
    }

    pub fn get(&self, ino: u64) -> Option<&Target> {
        self.by_ino.get(&ino)
    }

    /// The inode of a node, allocating one the first time.
    pub fn ino_of(&mut self, h: &NodeHandle) -> u64 {
        if let Some(i) = self.by_handle.get(h) {
            return *i;
        }
        let ino = self.next;
        self.next += 1;
        self.by_ino.insert(ino, Target::Node(h.clone()));
        self.by_handle.insert(h.clone(), ino);
        ino
    }

    /// The inode of a virtual folder, allocating one the first time.
    pub fn virtual_ino(&mut self, v: Virtual) -> u64 {
        if let Some(i) = self.by_virtual.get(&v) {
            return *i;
        }
        let ino = self.next;
        self.next += 1;
        self.by_ino.insert(ino, Target::Virtual(v.clone()));
        self.by_virtual.insert(v, ino);
        ino
    }

    /// Every inode handed out and still standing for something.
    pub fn all(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self.by_ino.keys().copied().collect();
        v.sort_unstable();
        v
    }

    /// Every virtual folder's inode handed out so far.
    pub fn virtual_inos(&self) -> Vec<u64> {
        self.by_virtual.values().copied().collect()
    }

    /// The inode of a node if one was handed out (never allocates).
    pub fn find(&self, h: &NodeHandle) -> Option<u64> {
        self.by_handle.get(h).copied()
    }

    /// Sets what `ino` stands for, keeping the index of pending names. A parent given as
    /// the stand-in of a folder MEGA has created since is filed under the folder.
    fn put(&mut self, ino: u64, mut target: Target) {
        self.take(ino);
        if let Target::Pending { parent, name } | Target::NewDir { parent, name, .. } = &mut target
        {
            if let Some(real) = self.resolved.get(parent) {
                *parent = real.clone();
            }
            self.by_pending
                .entry((parent.clone(), name.clone()))
                .or_default()
                .push(ino);
        }
        self.by_ino.insert(ino, target);
    }

    /// Removes `ino`'s target, keeping the index of pending names.
    fn take(&mut self, ino: u64) -> Option<Target> {
        let t = self.by_ino.remove(&ino)?;
        if let Target::Pending { parent, name } | Target::NewDir { parent, name, .. } = &t {
            let key = (parent.clone(), name.clone());
            if let Some(v) = self.by_pending.get_mut(&key) {
                v.retain(|&i| i != ino);
                if v.is_empty() {
                    self.by_pending.remove(&key);
                }
            }
        }
        Some(t)
    }

    /// The pending inodes (files and new folders) in `parent`, by name.
    pub fn pending_in(&self, parent: &NodeHandle) -> Vec<(String, u64)> {
        let from = (parent.clone(), String::new());
        self.by_pending
            .range(from..)
            .take_while(|((p, _), _)| p == parent)
            .flat_map(|((_, name), inos)| inos.iter().map(|i| (name.clone(), *i)))
            .collect()
    }

    /// A new folder (made with write-back, not on MEGA yet) called `name` in `parent`,
    /// standing in as `local` for the node it will be.
    pub fn new_dir(&mut self, parent: NodeHandle, name: String, local: NodeHandle) -> u64 {
        let ino = self.next;
        self.next += 1;
        self.by_handle.insert(local.clone(), ino);
        self.put(
            ino,
            Target::NewDir {
                parent,
                name,
                local,
            },
        );
        ino
    }

    /// The handle a folder's children name as their parent: its node's, or for a new
    /// folder its stand-in's.
    pub fn dir_handle(&self, ino: u64) -> Option<NodeHandle> {
        match self.by_ino.get(&ino)? {
            Target::Node(h) => Some(h.clone()),
            Target::NewDir { local, .. } => Some(local.clone()),
            _ => None,
        }
    }

    /// The new folders from `h` up (their names as shown, nearest first) while `h` is a
    /// new folder's stand-in, and the handle where that ends: the existing folder they were
    /// made in.
    pub fn new_dirs_up(&self, h: &NodeHandle) -> (Vec<String>, NodeHandle) {
        let mut names = Vec::new();
        let mut h = h.clone();
        while is_local(&h) {
            match self.find(&h).and_then(|i| self.get(i)) {
                Some(Target::NewDir { parent, name, .. }) => {
                    names.push(name.clone());
                    h = parent.clone();
                }
                _ => break,
            }
        }
        (names, h)
    }

    /// MEGA created the new folder standing in as `local` as node `real`: its inode means
    /// the node from now on, and what is pending in it is filed under `real`.
    pub fn resolve(&mut self, local: &NodeHandle, real: NodeHandle) {
        if self.resolved_order.len() >= RESOLVED_KEPT {
            if let Some(old) = self.resolved_order.pop_front() {
                self.resolved.remove(&old);
            }
        }
        self.resolved.insert(local.clone(), real.clone());
        self.resolved_order.push_back(local.clone());
        let inside: Vec<u64> = self
            .pending_in(local)
            .into_iter()
            .map(|(_, ino)| ino)
            .collect();
        for ino in inside {
            if let Some(t) = self.by_ino.get(&ino).cloned() {
                // `put` files it under the real folder.
                self.put(ino, t);
            }
        }
        if let Some(ino) = self.by_handle.remove(local) {
            self.bind(ino, real);
        }
    }

    /// The pending inodes called `name` in `parent`.
    pub fn pending_named(&self, parent: &NodeHandle, name: &str) -> &[u64] {
        self.by_pending
            .get(&(parent.clone(), name.to_string()))
            .map_or(&[], Vec::as_slice)
    }

    /// A new inode for a file that exists only locally so far.
    pub fn pending(&mut self, parent: NodeHandle, name: String) -> u64 {
        let ino = self.next;
        self.next += 1;
        self.put(ino, Target::Pending { parent, name });
        ino
    }

    /// Points `ino` at `h` (after an upload committed), dropping its old handle.
    pub fn bind(&mut self, ino: u64, h: NodeHandle) {
        if let Some(Target::Node(old)) = self.by_ino.get(&ino) {
            self.by_handle.remove(old);
        }
        if let Some(other) = self.by_handle.insert(h.clone(), ino) {
            if other != ino {
                self.take(other);
            }
        }
        self.put(ino, Target::Node(h));
    }

    /// Re-points an inode (a file not uploaded yet that was renamed).
    pub fn set_target(&mut self, ino: u64, target: Target) {
        if let Some(Target::Node(old)) = self.by_ino.get(&ino) {
            self.by_handle.remove(old);
        }
        if let Target::Node(h) = &target {
            self.by_handle.insert(h.clone(), ino);
        }
        self.put(ino, target);
    }

    /// Forgets an inode (a file unlinked before it was ever uploaded); it is not reused.
    pub fn forget(&mut self, ino: u64) {
        match self.take(ino) {
            Some(Target::Node(h)) | Some(Target::NewDir { local: h, .. }) => {
                self.by_handle.remove(&h);
            }
            _ => {}
        }
    }

    /// The kernel was handed an entry for `ino` (one more lookup); false if the inode was
    /// dropped meanwhile (the caller looks it up again).
    pub fn reference(&mut self, ino: u64) -> bool {
        if !self.by_ino.contains_key(&ino) {
            return false;
        }
        *self.refs.entry(ino).or_insert(0) += 1;
        true
    }

    /// The kernel gave back `n` lookups of `ino`; true if nothing refers to it any more.
    pub fn kernel_forget(&mut self, ino: u64, n: u64) -> bool {
        if let Some(r) = self.refs.get_mut(&ino) {
            *r = r.saturating_sub(n);
            if *r == 0 {
                self.refs.remove(&ino);
            }
        }
        self.unreferenced(ino)
    }

    /// An open directory's listing names `ino`.
    pub fn pin(&mut self, ino: u64) {
        *self.pins.entry(ino).or_insert(0) += 1;
    }

    /// A listing that named `ino` is closed; true if nothing refers to it any more.
    pub fn unpin(&mut self, ino: u64) -> bool {
        if let Some(p) = self.pins.get_mut(&ino) {
            *p = p.saturating_sub(1);
            if *p == 0 {
                self.pins.remove(&ino);
            }
        }
        self.unreferenced(ino)
    }

    /// Whether a node's inode may go: neither the kernel nor a listing refers to it (the
    /// root and the shares' virtual folders stay).
    pub fn unreferenced(&self, ino: u64) -> bool {
        ino != ROOT_INO
            && !self.refs.contains_key(&ino)
            && !self.pins.contains_key(&ino)
            && match self.by_ino.get(&ino) {
                Some(Target::Node(_)) => true,
                Some(Target::Virtual(v)) => v.transient(),
                _ => false,
            }
    }

    /// Drops an unreferenced node's inode (its number is not reused); its target.
    pub fn drop_unreferenced(&mut self, ino: u64) -> Option<Target> {
        if !self.unreferenced(ino) {
            return None;
        }
        let t = self.take(ino)?;
        match &t {
            Target::Node(h) if self.by_handle.get(h) == Some(&ino) => {
                self.by_handle.remove(h);
            }
            Target::Virtual(v) if self.by_virtual.get(v) == Some(&ino) => {
                self.by_virtual.remove(v);
            }
            _ => {}
        }
        Some(t)
    }

    /// Inodes allocated now (for tests and diagnostics).
    pub fn len(&self) -> usize {
        self.by_ino.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_ino.is_empty()
    }

    /// Gives back the memory of emptied tables (after many inodes were dropped).
    pub fn shrink(&mut self) {
        shrink_sparse(&mut self.by_ino);
        shrink_sparse(&mut self.by_handle);
        shrink_sparse(&mut self.by_virtual);
        shrink_sparse(&mut self.refs);
        shrink_sparse(&mut self.pins);
    }

    /// Forgets a node (deleted); its inode stays unused.
    pub fn remove_handle(&mut self, h: &NodeHandle) {
        if let Some(ino) = self.by_handle.remove(h) {
            self.take(ino);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_inode_lives_while_the_kernel_or_a_listing_refers_to_it() {
        let mut t = Inodes::new("ROOT".into());
        let a = t.ino_of(&"AAAA".into());
        assert!(t.reference(a) && t.reference(a));
        t.pin(a);
        assert!(!t.kernel_forget(a, 2), "still pinned");
        assert!(t.unpin(a), "nothing refers to it");
        assert!(matches!(t.drop_unreferenced(a), Some(Target::Node(_))));
        assert!(t.get(a).is_none() && t.find(&"AAAA".into()).is_none());
        assert!(!t.reference(a), "dropped: looked up again, not revived");
        let again = t.ino_of(&"AAAA".into());
        assert!(again > a, "numbers are not reused");
        // The root and virtual folders stay.
        assert!(!t.kernel_forget(ROOT_INO, 5));
        let v = t.virtual_ino(Virtual::Shares);
        assert!(!t.kernel_forget(v, 1));
        assert!(t.drop_unreferenced(v).is_none());
    }

    #[test]
    fn a_new_folder_and_what_is_in_it_move_to_its_node_once_created() {
        let mut t = Inodes::new("ROOT".into());
        let local = NodeHandle("~1".into());
        assert!(is_local(&local) && !is_local(&"AAAAAAAA".into()));
        let d = t.new_dir("ROOT".into(), "d".into(), local.clone());
        assert_eq!(t.dir_handle(d), Some(local.clone()));
        assert_eq!(t.pending_named(&"ROOT".into(), "d"), [d]);
        let f = t.pending(local.clone(), "f".into());
        let sub = t.new_dir(local.clone(), "sub".into(), "~2".into());
        assert_eq!(
            t.pending_in(&local),
            [("f".to_string(), f), ("sub".to_string(), sub)]
        );
        assert!(!t.unreferenced(d), "kept until MEGA has it");
        t.resolve(&local, "DDDDDDDD".into());
        assert_eq!(t.get(d), Some(&Target::Node("DDDDDDDD".into())));
        assert_eq!(t.find(&"DDDDDDDD".into()), Some(d));
        assert!(t.find(&local).is_none() && t.pending_in(&local).is_empty());
        assert_eq!(t.pending_named(&"DDDDDDDD".into(), "f"), [f]);
        assert!(matches!(
            t.get(sub),
            Some(Target::NewDir { parent, .. }) if parent.0 == "DDDDDDDD"
        ));
        // A caller that read the stand-in just before still files under the node.
        let late = t.pending(local.clone(), "late".into());
        assert_eq!(t.pending_named(&"DDDDDDDD".into(), "late"), [late]);
        assert!(t.pending_named(&"ROOT".into(), "d").is_empty());
    }

    #[test]
    fn stable_never_reused_and_rebindable() {
        let mut t = Inodes::new("ROOT".into());
        let a = t.ino_of(&"AAAA".into());
        assert_eq!(t.ino_of(&"AAAA".into()), a);
        let b = t.ino_of(&"BBBB".into());
        assert_ne!(a, b);
        t.remove_handle(&"AAAA".into());
        let c = t.ino_of(&"CCCC".into());
        assert!(c > b, "inodes are not reused");
        let p = t.pending("ROOT".into(), "new".into());
        t.bind(p, "DDDD".into());
        assert_eq!(t.ino_of(&"DDDD".into()), p);
        // Overwrite: the same inode now means the new version.
        t.bind(b, "EEEE".into());
        assert_eq!(t.get(b), Some(&Target::Node("EEEE".into())));
        assert_eq!(t.ino_of(&"EEEE".into()), b);
        // A pending file renamed, then forgotten (unlinked before any upload).
        let q = t.pending("ROOT".into(), "tmp".into());
        t.set_target(
            q,
            Target::Pending {
                parent: "ROOT".into(),
                name: "final".into(),
            },
        );
        assert!(matches!(t.get(q), Some(Target::Pending { name, .. }) if name == "final"));
        assert!(t.pending_named(&"ROOT".into(), "tmp").is_empty());
        assert_eq!(t.pending_named(&"ROOT".into(), "final"), [q]);
        t.forget(q);
        assert!(t.get(q).is_none());
        assert!(t.pending_named(&"ROOT".into(), "final").is_empty());
        assert!(
            t.pending_named(&"ROOT".into(), "new").is_empty(),
            "bound: not pending"
        );
        assert!(t.pending("ROOT".into(), "again".into()) > q, "not reused");
    }
}
