//! Changing the tree: folders, uploads (new files and new versions of existing ones), renames,
//! mtimes, moves, the Rubbish Bin and deletion. Every change is sent with the client's echo id
//! and applied to the local tree from the reply, so the event channel's copy is skipped.
//!
//! New nodes below an exported folder carry a `cr` element with their keys wrapped by the
//! share key, so link readers can decrypt them.

use std::path::Path;
use std::sync::Arc;

use serde_json::{json, Map, Value};
use tokio::io::AsyncRead;

use super::links::PublicFolder;
use super::{Client, Error, Result};
use crate::api::commands::{
    Delete, Move, NewNode, PutNodes, PutNodesReply, SetAttributes, ShareKeys,
};
use crate::crypto::fingerprint::Fingerprint;
use crate::crypto::{attr, b64, FolderKey, Key128, NodeKey};
use crate::link::{self, PublicLink};
use crate::transfer::{upload, Progress, StagedFile};
use crate::tree::{parse_node, Node, NodeHandle, NodeKind};

/// What happens to the version of a file that an upload replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OldVersions {
    /// Kept as the new node's previous version (`ov`), as MEGA's apps do; on an account
    /// that turned versions off (`^!dv`), moved to the Rubbish Bin instead.
    Keep,
    /// Moved to the Rubbish Bin (what MEGA's apps do with a deleted file).
    Trash,
    /// Deleted permanently.
    Delete,
}

/// Where an upload goes: `name` in `parent`, as the new version of the file `replaces`
/// names, if it names one (and what becomes of the old version).
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub parent: &'a NodeHandle,
    pub name: &'a str,
    pub replaces: Option<(&'a NodeHandle, OldVersions)>,
    /// The POSIX mode to store on the new node (see [`crate::tree::posix`]); without one, a
    /// new version keeps the one its previous version has. An upload from a local path
    /// stores the file's own.
    pub mode: Option<u32>,
}

/// A staged file's content on MEGA (and its thumbnail and preview), its node still to make:
/// see [`Client::send_staged`].
#[derive(Debug)]
pub struct SentContent {
    up: upload::Uploaded,
    /// The stored thumbnail and preview, for the node's `fa`.
    fa: Option<String>,
}

/// What a public link holds, opened (no login needed) to be imported.
#[derive(Debug)]
pub enum Linked {
    File {
        /// The link's public handle.
        handle: String,
        key: crate::crypto::FileKey,
        file: Box<super::links::PublicFile>,
    },
    Folder(Box<PublicFolder>),
}

impl Linked {
    /// Opens a file link (`g`) or a folder link (its whole tree).
    pub async fn open(api: &crate::api::ApiClient, url: &str) -> Result<Linked> {
        match link::parse(url)? {
            PublicLink::File { handle, key } => {
                let key = key.ok_or(link::LinkError::NoKey)?;
                let file = Box::new(super::links::public_file(api, url, false).await?);
                Ok(Linked::File { handle, key, file })
            }
            PublicLink::Folder { .. } => Ok(Linked::Folder(Box::new(
                PublicFolder::open(api, url).await?,
            ))),
        }
    }

    /// The name the link gives its file or folder.
    pub fn name(&self) -> &str {
        match self {
            Linked::File { file, .. } => &file.name,
            Linked::Folder(pf) => &pf.root().name,
        }
    }

    pub fn is_folder(&self) -> bool {
        matches!(self, Linked::Folder(_))
    }
}

/// Where a copy comes from: this account's tree (`p` names each source by `h`), or a folder
/// link opened with [`PublicFolder::open`] (by `ph`).
#[derive(Clone, Copy)]
enum CopyFrom<'a> {
    Account,
    FolderLink(&'a PublicFolder),
}

/// Nodes copied in one `p` at most; a larger tree is copied folder by folder.
pub const COPY_BATCH: usize = 5000;

/// The `ov` of a new node that keeps the file it replaces as its previous version.
fn kept_as_version(old: Option<(&NodeHandle, OldVersions)>) -> Option<String> {
    match old {
        Some((h, OldVersions::Keep)) => Some(h.0.clone()),
        _ => None,
    }
}

impl Client {
    pub(super) fn container(&self, h: &NodeHandle) -> Result<Node> {
        let n = self.node(h)?;
        if !n.kind.is_container() {
            return Err(Error::NotAFolder {
                what: self.path_of(h),
            });
        }
        Ok(n)
    }

    /// A node that may be changed (not one of the roots).
    pub(super) fn mutable(&self, h: &NodeHandle) -> Result<Node> {
        let n = self.node(h)?;
        if !matches!(n.kind, NodeKind::File | NodeKind::Folder) {
            return Err(Error::PermissionDenied {
                what: n.name,
                code: None,
            });
        }
        Ok(n)
    }

    pub(super) fn wrap_key(&self, key: &NodeKey) -> String {
        b64::encode(&self.session.master_key.0.wrap(&key.raw()))
    }

    /// Moves `h` under `to` in the tree (after the server did).
    fn reparent(&self, h: &NodeHandle, to: &NodeHandle) {
        self.store
            .edit(|t| t.prefetch_insert(h, Some(to)), |t| t.reparent(h, to));
    }

    /// Removes `h` and everything below from the tree (after the server did).
    pub(super) fn remove_local(&self, h: &NodeHandle) {
        self.store
            .edit(|t| t.prefetch_remove(h), |t| t.remove_subtree(h));
    }

    /// Inserts the nodes of a `p` reply into the tree; returns them in the reply's order.
    fn insert_created(&self, reply: PutNodesReply) -> Result<Vec<Node>> {
        self.store.edit(
            |t| {
                for v in &reply.f {
                    let parent = v.p.clone().map(NodeHandle);
                    t.prefetch_insert(&NodeHandle(v.h.clone()), parent.as_ref());
                }
            },
            |tree| {
                let mut created = Vec::with_capacity(reply.f.len());
                for v in &reply.f {
                    let node = parse_node(v, tree.keys_mut())?;
                    created.push(node.clone());
                    tree.insert(node);
                }
                Ok::<_, Error>(created)
            },
        )
    }

    /// The `cr` element that gives every exported folder above `parent` the keys of new
    /// nodes (each called by its `h` in the `p` request), so folder-link readers can decrypt
    /// them.
    fn shares_cr(&self, parent: &NodeHandle, nodes: &[(String, NodeKey)]) -> Option<ShareKeys> {
        let shares = self.view(|t| t.shares_above(parent));
        if shares.is_empty() {
            return None;
        }
        let mut keys = Vec::new();
        for (i, (_, sk)) in shares.iter().enumerate() {
            for (j, (_, key)) in nodes.iter().enumerate() {
                keys.push((i, j, b64::encode(&sk.wrap(&key.raw()))));
            }
        }
        Some(ShareKeys {
            keys,
            shares: shares.into_iter().map(|(h, _)| h.0).collect(),
            nodes: nodes.iter().map(|(h, _)| h.clone()).collect(),
        })
    }

    /// The `cr` element for moving `h` (and its subtree) under `new_parent`: the keys of every
    /// moved node, wrapped for each exported folder above the destination.
    fn subtree_cr(&self, h: &NodeHandle, new_parent: &NodeHandle) -> Option<ShareKeys> {
        let shares = self.view(|t| t.shares_above(new_parent));
        if shares.is_empty() {
            return None;
        }
        let nodes: Vec<Node> =
            self.view(|t| t.subtree_with_versions(h).into_iter().cloned().collect());
        let mut keys = Vec::new();
        for (i, (_, sk)) in shares.iter().enumerate() {
            for (j, n) in nodes.iter().enumerate() {
                if let Some(k) = &n.key {
                    keys.push((i, j, b64::encode(&sk.wrap(&k.raw()))));
                }
            }
        }
        Some(ShareKeys {
            shares: shares.into_iter().map(|(s, _)| s.0).collect(),
            nodes: nodes.iter().map(|n| n.handle.0.clone()).collect(),
            keys,
        })
    }

    /// Creates one node with `p` under `parent` and returns it (see
    /// [`put_nodes`](Self::put_nodes)).
    pub(super) async fn put_node(
        &self,
        parent: &NodeHandle,
        node: NewNode,
        key: &NodeKey,
    ) -> Result<Node> {
        self.put_nodes(parent, vec![node], vec![key.clone()]).await
    }

    /// Creates nodes with one `p` under `parent` (`keys[i]` is the key of `list[i]`, for the
    /// `cr` of exported folders above) and returns the first. A node that supersedes a file
    /// (`ov`) takes it over as its previous version.
    async fn put_nodes(
        &self,
        parent: &NodeHandle,
        list: Vec<NewNode>,
        keys: Vec<NodeKey>,
    ) -> Result<Node> {
        self.put_many(parent, list, keys)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| Error::Protocol("`p` reply without nodes".into()))
    }

    /// [`put_nodes`](Self::put_nodes), returning every node made, in the order of the
    /// request; the first element the server refused fails the whole call (the nodes it did
    /// make are in the tree).
    pub(super) async fn put_many(
        &self,
        parent: &NodeHandle,
        list: Vec<NewNode>,
        keys: Vec<NodeKey>,
    ) -> Result<Vec<Node>> {
        self.put_each(parent, list, keys)
            .await?
            .into_iter()
            .collect()
    }

    /// Sends one `p` of `list` under `parent` (`keys[i]` is the key of `list[i]`) and
    /// returns what became of each element: its node, or the error MEGA gave for it in the
    /// reply's `e` (one element can fail while the others are made). The whole call fails
    /// only if the request does. Each node is found in the reply by its key: a fresh one for
    /// every new folder and upload (a copy keeps its source's key; equal keys are taken in
    /// the reply's order).
    pub(super) async fn put_each(
        &self,
        parent: &NodeHandle,
        list: Vec<NewNode>,
        keys: Vec<NodeKey>,
    ) -> Result<Vec<Result<Node>>> {
        // `cr` names each new node as the request does: by `h`, or by `ph` for an import.
        let named: Vec<(String, NodeKey)> = list
            .iter()
            .map(|n| match (&n.ph, n.h.is_empty()) {
                (Some(ph), true) => ph.clone(),
                _ => n.h.clone(),
            })
            .zip(keys.iter().cloned())
            .collect();
        let cr = self.shares_cr(parent, &named);
        let superseded: Vec<Option<NodeHandle>> =
            list.iter().map(|n| n.ov.clone().map(NodeHandle)).collect();
        let vb = superseded.iter().any(Option::is_some).then_some(1);
        let _m = self.mutation()?;
        let mut reply = self
            .api
            .run(&PutNodes {
                t: &parent.0,
                n: list,
                i: self.api.echo_id(),
                vb,
                cr,
                vw: self.vw(),
            })
            .await?;
        let refused = reply.e.take();
        let created = self.insert_created(reply)?;
        let mut taken = vec![false; created.len()];
        let mut out = Vec::with_capacity(keys.len());
        for (i, key) in keys.iter().enumerate() {
            if let Some(code) = refused.as_ref().and_then(|e| e.of(i)) {
                out.push(Err(Error::from_code(code)));
                continue;
            }
            let found = created
                .iter()
                .zip(taken.iter_mut())
                .find(|(n, taken)| !**taken && n.key.as_ref() == Some(key));
            let Some((node, taken)) = found else {
                out.push(Err(Error::Protocol(
                    "the `p` reply lacks a node the request made".into(),
                )));
                continue;
            };
            *taken = true;
            if let Some(old) = &superseded[i] {
                // The server made it a child of the new node; our own echo is skipped.
                self.reparent(old, &node.handle);
            }
            out.push(Ok(node.clone()));
        }
        Ok(out)
    }

    /// The folder `name` in `parent` (the oldest, if several have that name), created if
    /// there is none. `NotAFolder` (with its path) if the name is taken by a file.
    pub async fn ensure_folder(&self, parent: &NodeHandle, name: &str) -> Result<Node> {
        let existing = self.view(|t| t.child_by_name(parent, name).cloned());
        match existing {
            Some(n) if n.kind.is_container() => Ok(n),
            Some(n) => Err(Error::NotAFolder {
                what: self.path_of(&n.handle),
            }),
            None => self.mkdir(parent, name).await,
        }
    }

    /// The folder at `parts` below `start`, creating what is missing (like `mkdir -p`).
    pub async fn ensure_path(&self, start: &NodeHandle, parts: &[String]) -> Result<NodeHandle> {
        let mut h = start.clone();
        for part in parts {
            h = self.ensure_folder(&h, part).await?.handle;
        }
        Ok(h)
    }

    /// Creates a folder.
    pub async fn mkdir(&self, parent: &NodeHandle, name: &str) -> Result<Node> {
        self.mkdir_with(parent, name, Map::new()).await
    }

    /// Uploads `size` bytes from `reader` as `name` in `parent`, keeping `mtime`.
    pub async fn upload<R: AsyncRead + Unpin>(
        &self,
        parent: &NodeHandle,
        name: &str,
        reader: &mut R,
        size: u64,
        mtime: i64,
        progress: Option<Progress>,
    ) -> Result<Node> {
        let target = Target {
            parent,
            name,
            replaces: None,
            mode: None,
        };
        self.upload_to(target, reader, size, mtime, progress).await
    }

    /// Uploads `size` bytes from `reader` to `target`. If it replaces a file, the new node
    /// exists before the old version is disposed of (Rubbish Bin or deleted, as the target
    /// says): this is the one place a replacement happens, for the mount, megacmd and sync
    /// alike. Once the new node exists the upload has succeeded: if the old version cannot be
    /// disposed of, both are kept and that is logged (here, the only place that knows).
    pub async fn upload_to<R: AsyncRead + Unpin>(
        &self,
        target: Target<'_>,
        reader: &mut R,
        size: u64,
        mtime: i64,
        progress: Option<Progress>,
    ) -> Result<Node> {
        self.check_target(&target)?;
        let up = upload::upload(&self.api, reader, size, mtime, &self.transfer, progress).await?;
        // A stream cannot be read again for a thumbnail.
        self.create_sent(target, SentContent { up, fa: None }).await
    }

    /// Uploads a staged file (already encrypted, see [`StagedFile`]) to `target`, as
    /// [`upload_to`](Self::upload_to) does with plaintext.
    pub async fn upload_staged(
        &self,
        target: Target<'_>,
        staged: &Arc<StagedFile>,
        mtime: i64,
        progress: Option<Progress>,
    ) -> Result<Node> {
        let sent = self
            .send_content(target, staged, mtime, progress, None)
            .await?;
        self.create_sent(target, sent).await
    }

    /// The first half of [`upload_staged`](Self::upload_staged): sends the content (with
    /// its thumbnail and preview), not yet the node. [`create_sent`](Self::create_sent)
    /// makes it, to the same target.
    pub async fn send_staged(
        &self,
        target: Target<'_>,
        staged: &Arc<StagedFile>,
        mtime: i64,
    ) -> Result<SentContent> {
        self.send_content(target, staged, mtime, None, None).await
    }

    /// Makes the node of content sent by [`send_staged`](Self::send_staged).
    pub async fn create_sent(&self, target: Target<'_>, sent: SentContent) -> Result<Node> {
        self.check_target(&target)?;
        let mut attrs = Map::new();
        attrs.insert("c".into(), json!(sent.up.fingerprint.encode()));
        let key = NodeKey::File(sent.up.key);
        self.put_file(target, key, attrs, sent.up.token, None, sent.fa)
            .await
    }

    /// Finishes the upload of a staging file an earlier run began (see
    /// [`upload::resume_staged`]) and creates its node at `target`.
    pub async fn resume_staged(
        &self,
        target: Target<'_>,
        staged: &Arc<StagedFile>,
        mtime: i64,
        record: &crate::transfer::staged::UploadRecord,
    ) -> Result<Node> {
        let sent = self
            .send_content(target, staged, mtime, None, Some(record))
            .await?;
        self.create_sent(target, sent).await
    }

    async fn send_content(
        &self,
        target: Target<'_>,
        staged: &Arc<StagedFile>,
        mtime: i64,
        progress: Option<Progress>,
        resume: Option<&crate::transfer::staged::UploadRecord>,
    ) -> Result<SentContent> {
        self.check_target(&target)?;
        let size = staged.len().map_err(|e| Error::local(staged.path(), e))?;
        // The ciphertext is sent while the MACs and the fingerprint are computed from the
        // plaintext on a blocking thread: only `p` needs those.
        let s = staged.clone();
        let seal = async {
            tokio::task::spawn_blocking(move || s.seal(mtime))
                .await
                .map_err(|e| Error::Local {
                    path: None,
                    source: std::io::Error::other(e),
                })?
                .map_err(|e| Error::local(staged.path(), e))
        };
        let send = async {
            match resume {
                None => {
                    upload::send_staged(&self.api, staged, size, &self.transfer, progress).await
                }
                Some(r) => {
                    upload::resume_staged(&self.api, staged, size, &self.transfer, progress, r)
                        .await
                }
            }
            .map_err(Error::from)
        };
        // Its thumbnail and preview are made meanwhile from the staged plaintext.
        let s = staged.clone();
        let pictures = self.make_graphics(target.name, size, None, move || {
            Ok(std::io::BufReader::with_capacity(
                256 * 1024,
                crate::transfer::graphics::ByOffset::new(s.clone(), size),
            ))
        });
        let (sent, pictures) = tokio::join!(async { tokio::try_join!(seal, send) }, pictures);
        let (sealed, token) = sent?;
        if sealed.size != size {
            let e = std::io::Error::other("the staging file changed while it was uploaded");
            return Err(Error::local(staged.path(), e));
        }
        let fa = self.stored_graphics(&sealed.key, pictures).await;
        Ok(SentContent {
            up: upload::Uploaded {
                token,
                key: sealed.key,
                fingerprint: sealed.fingerprint,
                size,
            },
            fa,
        })
    }

    /// Stores a new file's thumbnail and preview, if any were made; returns the `fa` its `p`
    /// attaches them with. A failure to store them leaves the file without them.
    async fn stored_graphics(
        &self,
        key: &crate::crypto::FileKey,
        pictures: Option<super::pictures::Pictures>,
    ) -> Option<String> {
        self.store_graphics(key, &pictures?).await
    }

    /// The parent must be a folder; a file being replaced must be one that can change.
    fn check_target(&self, target: &Target<'_>) -> Result<()> {
        self.container(target.parent)?;
        if let Some((old, _)) = target.replaces {
            if self.view(|t| t.get(old).is_some()) {
                self.mutable(old)?;
            }
        }
        Ok(())
    }

    /// Makes a file node called `target.name` with `p`: its content named by an upload
    /// token (`h`) or a public file link's handle (`ph`), `attrs` besides the name; as the
    /// new version of the file it replaces, then retiring the old one as the target says.
    async fn put_file(
        &self,
        target: Target<'_>,
        key: NodeKey,
        mut attrs: Map<String, Value>,
        h: String,
        ph: Option<String>,
        fa: Option<String>,
    ) -> Result<Node> {
        attrs.insert("n".into(), json!(target.name));
        if let Some(m) = target.mode {
            attrs.insert(attr::POSIX.into(), json!(crate::tree::posix::encode(m)));
        }
        let old = self.superseding(&target);
        if let Some((old, _)) = old {
            // What a person set on the file in MEGA's apps stays with its new version.
            for (k, v) in self.carried_to_new_version(old) {
                attrs.entry(k).or_insert(v);
            }
        }
        let node = NewNode {
            h,
            t: 0,
            a: b64::encode(&attr::encrypt(&key.attr_key(), &attrs)),
            k: self.wrap_key(&key),
            ov: kept_as_version(old),
            p: None,
            ph,
            fa,
        };
        let created = self.put_file_node(target.parent, node, key).await?;
        self.retire(&created, old).await;
        Ok(created)
    }

    /// The attributes MEGA's SDK copies from a file to its new version (label, favourite,
    /// sensitive, description, tags: `Node::attributesToCopyIntoPreviousVersions`), and our
    /// own POSIX mode; a numeric `t` is a legacy mtime, not tags, and stays behind.
    fn carried_to_new_version(&self, old: &NodeHandle) -> Map<String, Value> {
        let attrs = self
            .view(|t| t.get(old).and_then(Node::attrs))
            .unwrap_or_default();
        attrs
            .into_iter()
            .filter(|(k, v)| match k.as_str() {
                "fav" | "lbl" | "sen" | "des" | attr::POSIX => true,
                "t" => v.is_string(),
                _ => false,
            })
            .collect()
    }

    /// What becomes of the file a new node replaces: `None` if it replaces nothing, or a file
    /// that is gone already (deleted meanwhile); `Keep` is `Trash` on an account that
    /// turned versions off.
    fn superseding<'a>(&self, target: &Target<'a>) -> Option<(&'a NodeHandle, OldVersions)> {
        target
            .replaces
            .filter(|(h, _)| self.view(|t| t.get(h).is_some_and(Node::is_file)))
            .map(|(h, how)| match how {
                OldVersions::Keep if !self.versions_enabled() => (h, OldVersions::Trash),
                other => (h, other),
            })
    }

    /// Retires the file `created` replaced, as [`superseding`](Self::superseding) decided
    /// (a version kept needs nothing more: `p` made it one).
    async fn retire(&self, created: &Node, old: Option<(&NodeHandle, OldVersions)>) {
        let retired = match old {
            Some((old, OldVersions::Trash)) => self.trash(old).await,
            Some((old, OldVersions::Delete)) => self.delete(old).await,
            Some((_, OldVersions::Keep)) | None => Ok(()),
        };
        if let Err(e) = retired {
            tracing::warn!(
                "{}: the new version is saved, but the previous one could not be removed ({e}); both are kept",
                self.path_of(&created.handle)
            );
        }
    }

    /// Copies `src` (a file, or a folder with everything below it) to `target` on the
    /// server: no content is downloaded or uploaded; files keep their keys (the same
    /// ciphertext), folders get fresh ones (see [`copy_from`](Self::copy_from)). Previous
    /// versions stay with the original, as in MEGA's apps. Returns the top copy.
    pub async fn copy(&self, src: &NodeHandle, target: Target<'_>) -> Result<Node> {
        self.mutable(src)?;
        if self.view(|t| t.is_within(target.parent, src)) {
            return Err(Error::Invalid {
                what: format!("{}: cannot copy a folder into itself", self.path_of(src)),
                code: None,
            });
        }
        self.copy_from(CopyFrom::Account, src, target).await
    }

    /// Imports what a public link holds (opened with [`Linked::open`]) into the account
    /// at `target`, as MEGA's "Import" does: a file link's file (its key and content; `p`
    /// with its public handle) or a folder link's folder with everything below it (`p` with
    /// each node's handle in the link). Returns the top node made.
    pub async fn import(&self, linked: &Linked, target: Target<'_>) -> Result<Node> {
        match linked {
            Linked::File { handle, key, file } => {
                self.container(target.parent)?;
                let mut attrs = file.attrs.clone();
                attrs.remove("rr");
                let key = NodeKey::File(key.clone());
                // The server keeps the linked file's attributes.
                let ph = Some(handle.clone());
                self.put_file(target, key, attrs, String::new(), ph, None)
                    .await
            }
            Linked::Folder(pf) => {
                let root = pf.root().handle.clone();
                self.copy_from(CopyFrom::FolderLink(pf), &root, target)
                    .await
            }
        }
    }

    /// Copies `src` of `from` to `target` (see [`copy`](Self::copy)): the tree in one `p`
    /// if it has at most [`COPY_BATCH`] nodes, else the folder alone and then each child.
    /// As the SDK copies: files keep their keys (the same ciphertext), folders get fresh
    /// ones, every node's attributes are encrypted again without `rr` (where a restore from
    /// the Rubbish Bin would go concerns the original only), and the top takes `target.name`.
    async fn copy_from(
        &self,
        from: CopyFrom<'_>,
        src: &NodeHandle,
        target: Target<'_>,
    ) -> Result<Node> {
        self.container(target.parent)?;
        let (top, nodes) = match from {
            CopyFrom::Account => {
                let top = self.node(src)?;
                let sub = self.checked(|t| {
                    let sub = t.subtree(src);
                    (sub.len() <= COPY_BATCH).then(|| sub.into_iter().cloned().collect())
                })?;
                (top, sub)
            }
            CopyFrom::FolderLink(pf) => {
                let top = pf.tree().get(src).cloned().ok_or_else(|| Error::NotFound {
                    what: src.0.clone(),
                })?;
                let sub = pf.tree().subtree(src);
                let sub = (sub.len() <= COPY_BATCH).then(|| sub.into_iter().cloned().collect());
                (top, sub)
            }
        };
        let whole = nodes.is_some();
        let nodes = nodes.unwrap_or_else(|| vec![top.clone()]);
        let old = self.superseding(&target).filter(|_| top.is_file());
        let mut list = Vec::with_capacity(nodes.len());
        let mut keys = Vec::with_capacity(nodes.len());
        for (i, c) in nodes.iter().enumerate() {
            let undecryptable = || Error::Undecryptable {
                what: match from {
                    CopyFrom::Account => self.path_of(&c.handle),
                    CopyFrom::FolderLink(_) => c.name.clone(),
                },
            };
            let mut attrs = c.attrs().ok_or_else(undecryptable)?;
            let key = match (&c.key, c.kind.is_container()) {
                (Some(_), true) => NodeKey::Folder(FolderKey(Key128::random())),
                (Some(k), false) => k.clone(),
                (None, _) => return Err(undecryptable()),
            };
            if i == 0 {
                attrs.insert("n".into(), json!(target.name));
            }
            attrs.remove("rr");
            let (h, ph) = match from {
                CopyFrom::Account => (c.handle.0.clone(), None),
                CopyFrom::FolderLink(_) => (String::new(), Some(c.handle.0.clone())),
            };
            list.push(NewNode {
                h,
                t: if c.kind.is_container() { 1 } else { 0 },
                a: b64::encode(&attr::encrypt(&key.attr_key(), &attrs)),
                k: self.wrap_key(&key),
                ov: if i == 0 { kept_as_version(old) } else { None },
                p: (i > 0)
                    .then(|| c.parent.as_ref().map(|p| p.0.clone()))
                    .flatten(),
                ph,
                // The server keeps the source's file attributes.
                fa: None,
            });
            keys.push(key);
        }
        let created = self.put_nodes(target.parent, list, keys).await?;
        self.retire(&created, old).await;
        if !whole {
            // Too large for one request: the folder is made, then each child copied into it.
            let kids: Vec<Node> = match from {
                CopyFrom::Account => self.children(src)?,
                CopyFrom::FolderLink(pf) => pf.children(src).into_iter().cloned().collect(),
            };
            for kid in kids {
                let t = Target {
                    parent: &created.handle,
                    name: &kid.name,
                    replaces: None,
                    mode: None,
                };
                Box::pin(self.copy_from(from, &kid.handle, t)).await?;
            }
        }
        Ok(created)
    }

    /// Uploads a local file to `target`, keeping its mtime and its mode (unless the target
    /// states one). A symbolic link is stored as one (see [`Client::symlink`]), not followed.
    pub async fn upload_path_to(
        &self,
        target: Target<'_>,
        path: &Path,
        progress: Option<Progress>,
    ) -> Result<Node> {
        self.check_target(&target)?;
        let lstat = std::fs::symlink_metadata(path).map_err(|e| Error::local(path, e))?;
        if lstat.is_symlink() {
            let to = crate::local::files::link_target(path).map_err(|e| Error::local(path, e))?;
            let mtime = crate::local::files::mtime_of(&lstat);
            return self
                .symlink(target, &to, mtime)
                .await
                .map_err(|e| e.about(path.display().to_string()));
        }
        let (file, meta) = {
            let p = path.to_path_buf();
            tokio::task::spawn_blocking(move || {
                let f = std::fs::File::open(&p)?;
                let m = f.metadata()?;
                Ok::<_, std::io::Error>((f, m))
            })
            .await
            .map_err(|e| Error::local(path, std::io::Error::other(e)))?
            .map_err(|e| Error::local(path, e))?
        };
        let mtime = crate::local::files::mtime_of(&meta);
        let size = meta.len();
        let target = Target {
            mode: target.mode.or_else(|| {
                use std::os::unix::fs::PermissionsExt;
                let m = meta.permissions().mode();
                Some(crate::tree::posix::with_type(
                    crate::tree::posix::S_IFREG,
                    m,
                ))
            }),
            ..target
        };
        let meta_before = meta.clone();
        let file = Arc::new(file);
        // The journal (and what an interrupted run left) is read on a blocking thread: it
        // samples the file for its fingerprint.
        let journal = match self.transfers.get() {
            Some(state) if size >= super::resume::RESUME_MIN => {
                let (user, master) = (self.session.user.clone(), self.session.master_key.clone());
                let (path, f, state) = (path.to_path_buf(), file.clone(), state.clone());
                let (parent, name) = (target.parent.0.clone(), target.name.to_string());
                let replace = target.replaces.is_some();
                tokio::task::spawn_blocking(move || {
                    let dest = (parent.as_str(), name.as_str(), replace);
                    state.upload(&user, &master, &path, &meta, &f, dest)
                })
                .await
                .ok()
                .flatten()
            }
            _ => None,
        };
        let (journal, resume) = match journal {
            Some((j, r)) => (Some(j), r),
            None => (None, None),
        };
        let cfg = &self.transfer;
        fn log(j: &Option<super::resume::UploadJournal>) -> Option<&dyn upload::UploadLog> {
            j.as_ref().map(|j| j as &dyn upload::UploadLog)
        }
        // Its thumbnail and preview are made meanwhile, from the same open file.
        let f = file.clone();
        let pictures = self.make_graphics(target.name, size, Some(path.to_path_buf()), move || {
            Ok(std::io::BufReader::with_capacity(
                256 * 1024,
                crate::transfer::graphics::ByOffset::new(f.clone(), size),
            ))
        });
        let first = upload::upload_file(
            &self.api,
            file.clone(),
            size,
            mtime,
            cfg,
            progress.clone(),
            resume,
            log(&journal),
        );
        let (first, pictures) = tokio::join!(first, pictures);
        let up = match first {
            Err(e) if journal.as_ref().is_some_and(|j| j.resumed) && resume_failed(&e) => {
                // A fresh key and URL; `started` writes the journal's new header.
                tracing::info!("{}: {e}; starting the upload over", path.display());
                upload::upload_file(
                    &self.api,
                    file.clone(),
                    size,
                    mtime,
                    cfg,
                    progress,
                    None,
                    log(&journal),
                )
                .await
            }
            r => r,
        }
        .map_err(|e| Error::from(e).about(path.display().to_string()))?;
        // What was sent must be one state of the file: written meanwhile, it is not created
        // (the next run starts over under a fresh key: its identity changed).
        let now = file.metadata().map_err(|e| Error::local(path, e))?;
        if !same_file_state(&meta_before, &now) {
            return Err(Error::local(
                path,
                std::io::Error::other("the file changed while it was uploaded; try again"),
            ));
        }
        let fa = self.stored_graphics(&up.key, pictures).await;
        let node = self.create_sent(target, SentContent { up, fa }).await?;
        if let Some(j) = journal {
            j.finish();
        }
        Ok(node)
    }

    /// Uploads a local file, keeping its name (unless `name` is given) and mtime.
    pub async fn upload_path(
        &self,
        parent: &NodeHandle,
        path: &Path,
        name: Option<&str>,
        progress: Option<Progress>,
    ) -> Result<Node> {
        let name = match name {
            Some(n) => n.to_string(),
            None => path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .ok_or_else(|| Error::Invalid {
                    what: format!("{}: the path has no file name", path.display()),
                    code: None,
                })?,
        };
        let target = Target {
            parent,
            name: &name,
            replaces: None,
            mode: None,
        };
        self.upload_path_to(target, path, progress).await
    }

    /// Renames a node, keeping its other attributes (mtime fingerprint, labels…).
    pub async fn rename(&self, h: &NodeHandle, name: &str) -> Result<()> {
        let n = self.mutable(h)?;
        let mut attrs = n.attrs().ok_or_else(|| Error::Undecryptable {
            what: n.name.clone(),
        })?;
        attrs.insert("n".into(), json!(name));
        self.put_attrs(&n, attrs).await
    }

    /// Encrypts a node's full attribute set, sends it (`a`), and updates the tree.
    pub(super) async fn put_attrs(&self, n: &Node, attrs: Map<String, Value>) -> Result<()> {
        self.put_attrs_vw(n, attrs, self.vw()).await
    }

    /// [`put_attrs`](Self::put_attrs) with `vw` given (a backup's desired state is written
    /// with `vw:1` from any device, as MEGA's apps do).
    pub(super) async fn put_attrs_vw(
        &self,
        n: &Node,
        attrs: Map<String, Value>,
        vw: Option<u8>,
    ) -> Result<()> {
        let key = n.key.clone().ok_or_else(|| Error::Undecryptable {
            what: n.name.clone(),
        })?;
        let at = b64::encode(&attr::encrypt(&key.attr_key(), &attrs));
        let _m = self.mutation()?;
        self.api
            .run(&SetAttributes {
                n: &n.handle.0,
                at: &at,
                i: self.api.echo_id(),
                vw,
            })
            .await?;
        self.store.edit(
            |t| {
                t.get(&n.handle);
            },
            |t| t.set_encrypted_attrs(&n.handle, &at),
        );
        Ok(())
    }

    /// Writes a file's fingerprint (`c`: content checksum and mtime), for content the caller
    /// proved equal to the node's (`megacmd check --adopt`). No content is transferred.
    pub async fn set_fingerprint(&self, h: &NodeHandle, fp: Fingerprint) -> Result<()> {
        let n = self.mutable(h)?;
        let mut attrs = n.attrs().ok_or_else(|| Error::Undecryptable {
            what: n.name.clone(),
        })?;
        attrs.insert("c".into(), json!(fp.encode()));
        self.put_attrs(&n, attrs).await
    }

    /// Sets a file's modification time: rewrites the fingerprint (`c`) attribute with the new
    /// mtime, keeping its content checksum. No content is transferred.
    pub async fn set_mtime(&self, h: &NodeHandle, mtime: i64) -> Result<()> {
        let n = self.mutable(h)?;
        let crc = match n.fingerprint {
            Some(f) => f.crc,
            // No fingerprint yet (uploaded by a client that writes none): compute the real
            // checksum from the content rather than invent one.
            None => self.content_crc(h, n.size).await?,
        };
        let mut attrs = n.attrs().ok_or_else(|| Error::Undecryptable {
            what: n.name.clone(),
        })?;
        attrs.insert("c".into(), json!(Fingerprint { crc, mtime }.encode()));
        self.put_attrs(&n, attrs).await
    }

    /// Moves a node into another folder. Into the Rubbish Bin from elsewhere, the node gets
    /// the `rr` attribute (the folder it came from), out of it loses it, as MEGA's apps do:
    /// their "Restore" puts it back there.
    pub async fn move_to(&self, h: &NodeHandle, new_parent: &NodeHandle) -> Result<()> {
        let n = self.mutable(h)?;
        self.container(new_parent)?;
        let in_bin = |h: &NodeHandle| {
            self.view(|t| t.top_of(h).is_some_and(|t| t.kind == NodeKind::Rubbish))
        };
        let (was, will) = (in_bin(h), in_bin(new_parent));
        {
            let _m = self.mutation()?;
            self.api
                .run(&Move {
                    n: &h.0,
                    t: &new_parent.0,
                    i: self.api.echo_id(),
                    cr: self.subtree_cr(h, new_parent),
                    vw: self.vw(),
                })
                .await?;
            self.reparent(h, new_parent);
        }
        let rr = match (was, will, &n.parent) {
            (false, true, Some(from)) => Some(json!(from.0)),
            (true, false, _) => None,
            _ => return Ok(()),
        };
        // The move stands even if this fails: only the apps' "Restore" target is missing.
        if let Err(e) = self.set_restore_target(h, rr).await {
            tracing::warn!("moved, but the restore attribute (rr) was not updated: {e}");
        }
        Ok(())
    }

    /// Sets (or with `None` removes) a node's `rr` attribute, if that changes it.
    async fn set_restore_target(&self, h: &NodeHandle, rr: Option<Value>) -> Result<()> {
        let n = self.node(h)?;
        let Some(mut attrs) = n.attrs() else {
            return Ok(()); // undecryptable: nothing we could rewrite
        };
        let changed = match rr {
            Some(v) => attrs.insert("rr".into(), v.clone()) != Some(v),
            None => attrs.remove("rr").is_some(),
        };
        if changed {
            self.put_attrs(&n, attrs).await?;
        }
        Ok(())
    }

    /// Moves a node to the Rubbish Bin (what "delete" means in MEGA's apps).
    pub async fn trash(&self, h: &NodeHandle) -> Result<()> {
        let rubbish = self.rubbish()?.handle;
        self.move_to(h, &rubbish).await
    }

    /// Deletes a node and its subtree permanently.
    pub async fn delete(&self, h: &NodeHandle) -> Result<()> {
        self.mutable(h)?;
        let _m = self.mutation()?;
        self.api
            .run(&Delete {
                n: &h.0,
                i: self.api.echo_id(),
                v: None,
                vw: self.vw(),
            })
            .await?;
        self.remove_local(h);
        Ok(())
    }

    /// Deletes the previous versions of a file permanently (the newest previous version and,
    /// with it, every older one); the file itself stays. Returns how many went.
    pub async fn delete_versions(&self, h: &NodeHandle) -> Result<usize> {
        let n = self.mutable(h)?;
        if !n.is_file() {
            return Err(Error::NotAFile {
                what: self.path_of(h),
            });
        }
        let versions: Vec<NodeHandle> =
            self.view(|t| t.versions(h).iter().map(|v| v.handle.clone()).collect());
        let Some(newest) = versions.first() else {
            return Ok(0);
        };
        let _m = self.mutation()?;
        self.api
            .run(&Delete {
                n: &newest.0,
                i: self.api.echo_id(),
                v: None,
                vw: self.vw(),
            })
            .await?;
        self.remove_local(newest);
        Ok(versions.len())
    }
}

/// Whether a resumed upload failed because it cannot be resumed (the local file changed,
/// the upload URL is gone): it must start over under a fresh key and URL.
fn resume_failed(e: &crate::transfer::TransferError) -> bool {
    use crate::api::{ApiError, ErrorCode};
    use crate::transfer::TransferError as T;
    matches!(
        e,
        T::ResumeRefused(_)
            | T::Server(ErrorCode::Expired | ErrorCode::NotFound | ErrorCode::Failed)
            | T::Api(ApiError::Http(403 | 404 | 410))
    )
}

/// Whether two looks at a file saw the same content state (size, mtime and ctime to the
/// nanosecond: any write changes the ctime).
fn same_file_state(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    (
        a.len(),
        a.mtime(),
        a.mtime_nsec(),
        a.ctime(),
        a.ctime_nsec(),
    ) == (
        b.len(),
        b.mtime(),
        b.mtime_nsec(),
        b.ctime(),
        b.ctime_nsec(),
    )
}
