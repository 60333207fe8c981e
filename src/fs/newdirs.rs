//! Folders written back (with `-o writeback`): `mkdir` returns at once, with a folder that
//! exists on the mount only ([`Target::NewDir`]), and one task creates the queued folders
//! on MEGA in the order they were made, many in one `p` (a tree of new folders, each child
//! naming its parent by the label it has in the same request).
//!
//! Until MEGA has it, a new folder stands in for itself with a local handle ([`is_local`]):
//! files and folders made in it are pending under that handle like under any folder, shown
//! in its listing, looked up, renamed and removed. A file's upload waits for its folder (its
//! commit needs the folder's handle), and so does anything that must name the folder to
//! MEGA: moving or renaming it, removing it, a symbolic link or a `setxattr` in it. Once
//! created, the folder's inode means the node, and what is pending in it is filed under the
//! node's handle.
//!
//! Only folders in the user's own Cloud Drive are written back; in a share the access
//! rules are MEGA's to apply, so `mkdir` there waits for MEGA as before. Folders are
//! created in order, so a folder's parent is on MEGA before it, and a failed request is
//! tried again with the upload's backoff; after the last attempt the folder and its new
//! subfolders stay on the mount only, and anything that waits for them fails (EIO). Files
//! in them are then left to the next start's recovery, which makes the folders again
//! ([`crate::transfer::Closed::folders`]). `fsync` of a folder waits until it and what is
//! pending in it are on MEGA; unmount drains this queue with the uploads.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use super::inodes::{is_local, Target};
use super::writeback::{retry_wait, ATTEMPTS};
use super::{FsError, MegaFs, Result};
use crate::client::posix::{NewFolder, MAX_MKDIRS};
use crate::local::names::unescape_name;
use crate::tree::{posix, Node, NodeHandle, NodeKind};

/// The folders made on the mount and not created on MEGA yet.
#[derive(Default)]
pub(super) struct DirQueue {
    /// Stand-ins handed out so far (the next one's number).
    next: u64,
    /// Folders to send, by stand-in, in the order they were made (a folder after its parent).
    waiting: VecDeque<NodeHandle>,
    /// Every new folder not on MEGA yet (waiting, being sent, or given up on), by stand-in.
    dirs: HashMap<NodeHandle, NewDir>,
    /// A task sends the queue.
    worker: bool,
}

struct NewDir {
    ino: u64,
    /// When it was made (Unix seconds): its ctime and mtime until MEGA has it.
    made: i64,
    /// Why MEGA did not create it after the last attempt.
    failed: Option<String>,
}

impl DirQueue {
    /// Their inodes, for the status file.
    pub(super) fn inodes(&self) -> Vec<(u64, Option<String>)> {
        self.dirs
            .values()
            .map(|d| (d.ino, d.failed.clone()))
            .collect()
    }
}

impl MegaFs {
    /// Whether `mkdir` in `dir` is written back: write-back is on and the folder is new
    /// itself, or lies in the user's own Cloud Drive (not in a share, the Vault or the
    /// Rubbish Bin).
    pub(super) fn writes_back_dir(&self, dir: &NodeHandle) -> bool {
        // Under the Cloud Drive's root: not in the Rubbish Bin or the Vault either.
        self.writeback()
            && (is_local(dir)
                || self.client.view(|t| {
                    t.inshare_of(dir).is_none()
                        && t.top_of(dir).map(|n| n.kind) == Some(NodeKind::Root)
                }))
    }

    /// `mkdir` written back: the folder exists on the mount now, on MEGA once the queue
    /// sends it.
    pub(super) fn mkdir_later(
        self: &Arc<Self>,
        parent: u64,
        name: &str,
        mode: Option<u32>,
    ) -> Result<super::Attr> {
        let Some(wb) = &self.wb else {
            return Err(FsError::NotPermitted);
        };
        let local = {
            let mut st = wb.state();
            st.dirs.next += 1;
            NodeHandle(format!("~{}", st.dirs.next))
        };
        let (ino, parent_handle) = {
            let mut inodes = self.inodes();
            let Some(dir) = inodes.dir_handle(parent) else {
                return Err(FsError::NotFound);
            };
            (
                inodes.new_dir(dir.clone(), name.to_string(), local.clone()),
                dir,
            )
        };
        if let Some(m) = mode {
            self.set_pending_mode(ino, m);
        }
        // The kernel's entry, and the attributes it gets, before the folder is queued: once
        // MEGA made it, an inode nothing refers to may go.
        self.entered(ino, parent, name);
        let made = crate::local::time::now();
        let attr = self.attr_of(ino, &self.new_dir_node(parent_handle, name, local.clone()));
        let start = {
            let mut st = wb.state();
            st.waiting += 1;
            st.dirs.waiting.push_back(local.clone());
            st.dirs.dirs.insert(
                local,
                NewDir {
                    ino,
                    made,
                    failed: None,
                },
            );
            !std::mem::replace(&mut st.dirs.worker, true)
        };
        if start {
            let fs = self.clone();
            tokio::spawn(async move { fs.send_dirs().await });
        }
        self.status_changed();
        Ok(attr)
    }

    /// A new folder as a node (for attributes and the checks made of any folder): its
    /// stand-in handle, no key, the mode asked for.
    pub(super) fn new_dir_node(&self, parent: NodeHandle, name: &str, local: NodeHandle) -> Node {
        let made = self
            .wb
            .as_ref()
            .and_then(|wb| wb.state().dirs.dirs.get(&local).map(|d| d.made))
            .unwrap_or_else(crate::local::time::now);
        let ino = self.inodes().find(&local).unwrap_or(0);
        Node {
            mode: self
                .pending_mode(ino)
                .map(|m| posix::with_type(posix::S_IFDIR, m)),
            ..Node::bare(
                local,
                Some(parent),
                NodeKind::Folder,
                unescape_name(name),
                made,
            )
        }
    }

    /// Sends the queued folders, as many at once as go together, until none is left.
    async fn send_dirs(self: Arc<Self>) {
        let Some(wb) = &self.wb else {
            return;
        };
        loop {
            let batch: Vec<NodeHandle> = {
                let mut st = wb.state();
                if st.dirs.waiting.is_empty() {
                    st.dirs.worker = false;
                    break;
                }
                let n = st.dirs.waiting.len().min(MAX_MKDIRS);
                st.dirs.waiting.drain(..n).collect()
            };
            for (parent, group) in self.dir_groups(&batch) {
                self.send_group(&parent, &group).await;
            }
        }
        self.status_changed();
    }

    /// Splits stand-ins (in the order they were made) into requests: one per existing
    /// folder they go into, each folder after its parent. A folder whose parent MEGA did
    /// not create is given up on with it.
    fn dir_groups(&self, batch: &[NodeHandle]) -> Vec<(NodeHandle, Vec<(NodeHandle, NewFolder)>)> {
        let mut groups: Vec<(NodeHandle, Vec<(NodeHandle, NewFolder)>)> = Vec::new();
        // Where each stand-in of the batch went: (group, index in it).
        let mut placed: HashMap<NodeHandle, (usize, usize)> = HashMap::new();
        let inodes = self.inodes();
        for local in batch {
            let Some(ino) = inodes.find(local) else {
                continue; // removed before it was sent
            };
            let Some(Target::NewDir { parent, name, .. }) = inodes.get(ino).cloned() else {
                continue;
            };
            let mode = self.pending_mode(ino).map(|m| m & crate::tree::posix::PERM);
            let folder = |under| NewFolder {
                name: unescape_name(&name),
                under,
                mode,
            };
            if is_local(&parent) {
                match placed.get(&parent) {
                    Some(&(g, i)) => {
                        groups[g].1.push((local.clone(), folder(Some(i))));
                        placed.insert(local.clone(), (g, groups[g].1.len() - 1));
                    }
                    // Its parent was given up on (or never came): so is it.
                    None => self.give_up_dir(local, "the folder it is in was not created"),
                }
                continue;
            }
            let g = match groups.iter().position(|(p, _)| *p == parent) {
                Some(g) => g,
                None => {
                    groups.push((parent.clone(), Vec::new()));
                    groups.len() - 1
                }
            };
            groups[g].1.push((local.clone(), folder(None)));
            placed.insert(local.clone(), (g, groups[g].1.len() - 1));
        }
        groups
    }

    /// Creates one request's folders, trying again with backoff; given up on after the
    /// last attempt.
    async fn send_group(self: &Arc<Self>, parent: &NodeHandle, group: &[(NodeHandle, NewFolder)]) {
        let folders: Vec<NewFolder> = group.iter().map(|(_, f)| f.clone()).collect();
        let mut attempt = 1;
        let made = loop {
            match self.client.mkdirs(parent, &folders).await {
                Ok(made) => break made,
                Err(e) if attempt < ATTEMPTS && !matches!(e, crate::Error::NotFound { .. }) => {
                    let wait = retry_wait(attempt);
                    tracing::warn!(
                        "creating {} folder(s) in {} failed ({e}); trying again in {} s",
                        folders.len(),
                        self.client.path_of(parent),
                        wait.as_secs()
                    );
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                Err(e) => {
                    let why = e.to_string();
                    tracing::error!(
                        "{} folder(s) in {} could not be created ({why}); files in them are left to the next start",
                        folders.len(),
                        self.client.path_of(parent)
                    );
                    for (local, _) in group {
                        self.give_up_dir(local, &why);
                    }
                    return;
                }
            }
        };
        for ((local, f), node) in group.iter().zip(made) {
            self.dir_made(local, f.mode, node.handle);
        }
    }

    /// MEGA created the folder standing in as `local` (with `sent` as its mode).
    fn dir_made(self: &Arc<Self>, local: &NodeHandle, sent: Option<u32>, real: NodeHandle) {
        let Some(wb) = &self.wb else {
            return;
        };
        let ino = self.inodes().find(local);
        self.inodes().resolve(local, real);
        {
            let mut st = wb.state();
            st.dirs.dirs.remove(local);
            st.waiting = st.waiting.saturating_sub(1);
        }
        if let Some(ino) = ino {
            // A chmod while the request was on its way goes after it.
            let asked = self.pending_mode(ino).map(|m| m & crate::tree::posix::PERM);
            self.forget_pending_mode(ino);
            match asked.filter(|p| Some(*p) != sent) {
                Some(perm) => self.queue_mode(ino, perm),
                // A node's inode now: it goes once nothing refers to it (the kernel may
                // have forgotten it already).
                None => self.drop_ino(ino),
            }
        }
        self.status_changed();
    }

    /// MEGA will not create the folder standing in as `local`: it stays on the mount only.
    fn give_up_dir(&self, local: &NodeHandle, why: &str) {
        let Some(wb) = &self.wb else {
            return;
        };
        let mut st = wb.state();
        if let Some(d) = st.dirs.dirs.get_mut(local) {
            if d.failed.is_none() {
                d.failed = Some(why.to_string());
                st.waiting = st.waiting.saturating_sub(1);
            }
        }
        wb.changed.notify_waiters();
    }

    /// Forgets a new folder MEGA was not going to create (`rmdir` of it); false if it is
    /// still to be sent or already created.
    pub(super) fn drop_given_up_dir(&self, ino: u64, local: &NodeHandle) -> bool {
        let Some(wb) = &self.wb else {
            return false;
        };
        {
            let mut st = wb.state();
            if st.dirs.dirs.get(local).is_none_or(|d| d.failed.is_none()) {
                return false;
            }
            st.dirs.dirs.remove(local);
        }
        self.inodes().forget(ino);
        self.forget_pending_mode(ino);
        true
    }

    /// Waits until the folder standing in as `local` is on MEGA; an error if MEGA would not
    /// create it.
    pub(super) async fn dir_created(&self, local: &NodeHandle) -> Result<()> {
        let Some(wb) = &self.wb else {
            return Ok(());
        };
        loop {
            let changed = wb.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            match wb.state().dirs.dirs.get(local) {
                None => return Ok(()),
                Some(d) => {
                    if let Some(why) = &d.failed {
                        return Err(FsError::Remote(format!(
                            "the folder was not created on MEGA ({why})"
                        )));
                    }
                }
            }
            changed.await;
        }
    }

    /// Waits until `ino`, if it is a new folder, is on MEGA (before something names it to
    /// MEGA).
    pub(super) async fn settle_dir(&self, ino: u64) -> Result<()> {
        if let Target::NewDir { local, .. } = self.target(ino)? {
            self.dir_created(&local).await?;
        }
        Ok(())
    }

    /// Waits until the folder a file pending in a new folder goes into is on MEGA (before
    /// its upload is committed there).
    pub(super) async fn settle_parent(&self, ino: u64) -> Result<()> {
        let parent_of = |ino| -> Result<Option<NodeHandle>> {
            Ok(match self.target(ino)? {
                Target::Pending { parent, .. } | Target::NewDir { parent, .. } => {
                    Some(parent).filter(is_local)
                }
                _ => None,
            })
        };
        // A folder MEGA created re-files what is in it (before it leaves the queue): look
        // again after each wait.
        while let Some(parent) = parent_of(ino)? {
            let queued = self
                .wb
                .as_ref()
                .is_some_and(|wb| wb.state().dirs.dirs.contains_key(&parent));
            if queued {
                self.dir_created(&parent).await?;
            } else if parent_of(ino)? == Some(parent) {
                // Neither waiting nor created: it went.
                return Err(FsError::NotFound);
            }
        }
        Ok(())
    }

    /// How many of the folders above a pending file are new (not on MEGA yet): the last
    /// that many folders of its path are made again by a recovery that finds them missing.
    pub(super) fn new_dirs_above(&self, ino: u64) -> u32 {
        let inodes = self.inodes();
        match inodes.get(ino) {
            Some(Target::Pending { parent, .. } | Target::NewDir { parent, .. }) => {
                inodes.new_dirs_up(parent).0.len() as u32
            }
            _ => 0,
        }
    }

    /// The MEGA path of a folder, new or not (`/`-separated, from the Cloud Drive).
    pub(super) fn dir_path(&self, h: &NodeHandle) -> String {
        let (names, existing) = self.inodes().new_dirs_up(h);
        let mut path = self
            .client
            .path_of(&existing)
            .trim_end_matches('/')
            .to_string();
        for name in names.iter().rev() {
            path.push('/');
            path.push_str(&unescape_name(name));
        }
        path
    }

    /// `fsync` of a folder: waits until it is on MEGA, and the files and folders pending in
    /// it too.
    pub async fn fsyncdir(&self, ino: u64) -> Result<()> {
        self.settle_dir(ino).await?;
        let Some(dir) = self.inodes().dir_handle(ino) else {
            return Ok(());
        };
        let inside = self.inodes().pending_in(&dir);
        for (_, child) in inside {
            match self.target(child) {
                Ok(Target::NewDir { .. }) => self.settle_dir(child).await?,
                Ok(_) => self.wait_queued(child).await,
                Err(_) => {}
            }
        }
        Ok(())
    }
}
