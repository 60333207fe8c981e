//! The decrypted node tree: nodes by handle, a children index, the three roots, path
//! resolution, and applying action packets (`t`, `u`, `d`, moves as `d`+`t`) with a list of
//! what changed. `MEGA-PROTOCOL.md` §5.
//!
//! Node keys are unwrapped with the master key (id = own user handle), with a share key from
//! `ok`/`ok0` (checked with `ha`) or from an incoming share's `sk`, or with the RSA key for
//! long (RSA-wrapped) keys. A node whose key or attributes cannot be decrypted is kept, named
//! `[undecryptable <handle>]` and reported by [`NodeTree::undecryptable`]; it never crashes the
//! client. No network I/O happens here.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::crypto::fingerprint::Fingerprint;
use crate::crypto::rsa::RsaPrivateKey;
use crate::crypto::{attr, b64, FileKey, FolderKey, Key128, MasterKey, NodeKey};

/// A node handle (8 base64url characters).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeHandle(pub String);

impl std::fmt::Display for NodeHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for NodeHandle {
    fn from(s: &str) -> Self {
        NodeHandle(s.to_string())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    File,
    Folder,
    /// The Cloud Drive root.
    Root,
    /// The Inbox / Vault root.
    Inbox,
    /// The Rubbish Bin root.
    Rubbish,
}

impl NodeKind {
    fn from_type(t: i64) -> Option<Self> {
        Some(match t {
            0 => NodeKind::File,
            1 => NodeKind::Folder,
            2 => NodeKind::Root,
            3 => NodeKind::Inbox,
            4 => NodeKind::Rubbish,
            _ => return None,
        })
    }

    /// Folders and the three roots can hold children.
    pub fn is_container(self) -> bool {
        !matches!(self, NodeKind::File)
    }
}

/// A decrypted node.
#[derive(Debug, Clone)]
pub struct Node {
    pub handle: NodeHandle,
    /// `None` for the roots.
    pub parent: Option<NodeHandle>,
    pub kind: NodeKind,
    pub owner: String,
    /// Decrypted name (`n`); for roots "Cloud Drive", "Inbox", "Rubbish Bin".
    pub name: String,
    pub size: u64,
    /// Creation time on the server (`ts`, Unix seconds).
    pub ctime: i64,
    /// Modification time: from the fingerprint `c` attribute, else `ctime`.
    pub mtime: i64,
    pub key: Option<NodeKey>,
    /// The encrypted attribute blob (`a`, base64url) as the server has it. Kept encrypted:
    /// a decrypted map costs ~700 bytes per node, and only rewriting attributes needs it
    /// ([`Node::attrs`]).
    pub attrs: String,
    pub fingerprint: Option<Fingerprint>,
    /// Why this node could not be decrypted, if it could not.
    pub undecryptable: Option<String>,
}

impl Node {
    pub fn is_file(&self) -> bool {
        self.kind == NodeKind::File
    }

    /// All of the node's attributes, decrypted (`None` without a key or if they do not
    /// decrypt).
    pub fn attrs(&self) -> Option<Map<String, Value>> {
        let key = self.key.as_ref()?;
        let raw = b64::decode(&self.attrs, "attributes").ok()?;
        attr::decrypt(&key.attr_key(), &raw).ok()
    }

    pub fn file_key(&self) -> Option<&FileKey> {
        match &self.key {
            Some(NodeKey::File(k)) => Some(k),
            _ => None,
        }
    }
}

/// Errors of tree operations.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TreeError {
    #[error("malformed node in server reply: {0}")]
    Malformed(String),
    #[error("{0}: no such file or folder")]
    NotFound(String),
    #[error("{0}: not a folder")]
    NotAFolder(String),
}

/// What applying action packets changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Added(NodeHandle),
    /// Attributes (name, mtime…) changed.
    Updated(NodeHandle),
    Removed {
        handle: NodeHandle,
        parent: Option<NodeHandle>,
    },
    Moved {
        handle: NodeHandle,
        from: Option<NodeHandle>,
        to: Option<NodeHandle>,
    },
}

/// Keys used to unwrap node keys.
#[derive(Debug, Clone)]
pub struct KeyRing {
    pub master: MasterKey,
    /// Own user handle.
    pub user: String,
    pub rsa: Option<Arc<RsaPrivateKey>>,
    /// Share keys by share-root node handle.
    pub share_keys: HashMap<String, Key128>,
}

/// RSA-wrapped keys are longer than this many base64 characters (a 32-byte key is 43).
const MAX_SYMMETRIC_KEY_B64: usize = 43;

impl KeyRing {
    pub fn new(master: MasterKey, user: String, rsa: Option<Arc<RsaPrivateKey>>) -> Self {
        KeyRing {
            master,
            user,
            rsa,
            share_keys: HashMap::new(),
        }
    }

    /// Unwraps `kb64` with `k` (AES) or our RSA key (long keys) to `len` bytes.
    fn unwrap(&self, k: &Key128, kb64: &str, len: usize) -> Option<Vec<u8>> {
        let raw = b64::decode(kb64, "node key").ok()?;
        if kb64.len() > MAX_SYMMETRIC_KEY_B64 {
            return self.rsa.as_ref()?.decrypt_key(&raw, len).ok();
        }
        let v = k.unwrap_key(&raw, "node key").ok()?;
        (v.len() >= len).then(|| v[..len].to_vec())
    }

    /// Learns share keys from an `f` reply's `ok`/`ok0` (only those whose `ha` checks out).
    pub fn learn_outgoing(&mut self, list: &Value) {
        for ok in list.as_array().into_iter().flatten() {
            let (Some(h), Some(ha), Some(k)) = (
                ok.get("h").and_then(Value::as_str),
                ok.get("ha").and_then(Value::as_str),
                ok.get("k").and_then(Value::as_str),
            ) else {
                continue;
            };
            let auth = format!("{h}{h}");
            if auth.len() != 16
                || b64::decode(ha, "ha").ok() != Some(self.master.0.wrap(auth.as_bytes()))
            {
                continue;
            }
            if let Some(raw) = self.unwrap(&self.master.0.clone(), k, 16) {
                if let Ok(arr) = <[u8; 16]>::try_from(raw.as_slice()) {
                    self.share_keys.insert(h.to_string(), Key128(arr));
                }
            }
        }
    }

    /// Learns an incoming share's key from a node's `sk`.
    fn learn_incoming(&mut self, h: &str, sk: &str) {
        if let Some(raw) = self.unwrap(&self.master.0.clone(), sk, 16) {
            if let Ok(arr) = <[u8; 16]>::try_from(raw.as_slice()) {
                self.share_keys.insert(h.to_string(), Key128(arr));
            }
        }
    }

    /// Decrypts a node's `k` list for a node of the given kind.
    fn node_key(&self, k: &str, kind: NodeKind) -> Option<NodeKey> {
        let len = if kind == NodeKind::File { 32 } else { 16 };
        for pair in k.split('/') {
            let (id, kb64) = match pair.split_once(':') {
                Some(p) => p,
                None => (self.user.as_str(), pair),
            };
            let key = if id == self.user {
                self.master.0.clone()
            } else if let Some(sk) = self.share_keys.get(id) {
                sk.clone()
            } else {
                continue;
            };
            if let Some(raw) = self.unwrap(&key, kb64, len) {
                return Some(match kind {
                    NodeKind::File => {
                        NodeKey::File(FileKey::unpack(&raw.as_slice().try_into().ok()?))
                    }
                    _ => NodeKey::Folder(FolderKey(Key128(raw.as_slice().try_into().ok()?))),
                });
            }
        }
        None
    }
}

/// Decrypts an attribute blob into (name, fingerprint).
fn decode_attrs(key: &NodeKey, a: &str) -> Option<(String, Option<Fingerprint>)> {
    let raw = b64::decode(a, "attributes").ok()?;
    let attrs = attr::decrypt(&key.attr_key(), &raw).ok()?;
    let name = attrs
        .get("n")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let fp = attrs
        .get("c")
        .and_then(Value::as_str)
        .and_then(|c| Fingerprint::decode(c).ok());
    Some((name, fp))
}

/// Parses one node object from `f`, `t` or `p` replies.
pub fn parse_node(v: &Value, keys: &mut KeyRing) -> Result<Node, TreeError> {
    let h = v
        .get("h")
        .and_then(Value::as_str)
        .ok_or_else(|| TreeError::Malformed("node without `h`".into()))?;
    let t = v
        .get("t")
        .and_then(Value::as_i64)
        .ok_or_else(|| TreeError::Malformed(format!("node {h} without `t`")))?;
    let kind = NodeKind::from_type(t)
        .ok_or_else(|| TreeError::Malformed(format!("node {h} has unknown type {t}")))?;
    let parent = v
        .get("p")
        .and_then(Value::as_str)
        .filter(|p| !p.is_empty())
        .map(NodeHandle::from);
    let ctime = v.get("ts").and_then(Value::as_i64).unwrap_or(0);
    let mut node = Node {
        handle: NodeHandle::from(h),
        parent,
        kind,
        owner: v.get("u").and_then(Value::as_str).unwrap_or("").to_string(),
        name: String::new(),
        size: v.get("s").and_then(Value::as_u64).unwrap_or(0),
        ctime,
        mtime: ctime,
        key: None,
        attrs: String::new(),
        fingerprint: None,
        undecryptable: None,
    };
    match kind {
        NodeKind::Root => node.name = "Cloud Drive".into(),
        NodeKind::Inbox => node.name = "Inbox".into(),
        NodeKind::Rubbish => node.name = "Rubbish Bin".into(),
        NodeKind::File | NodeKind::Folder => {
            if let (Some(su), Some(sk)) = (
                v.get("su").and_then(Value::as_str),
                v.get("sk").and_then(Value::as_str),
            ) {
                if !su.is_empty() {
                    keys.learn_incoming(h, sk);
                }
            }
            let k = v.get("k").and_then(Value::as_str).unwrap_or("");
            match keys.node_key(k, kind) {
                None => node.undecryptable = Some("no usable key".into()),
                Some(key) => {
                    let a = v.get("a").and_then(Value::as_str).unwrap_or("");
                    match decode_attrs(&key, a) {
                        Some((name, fp)) => {
                            node.name = name;
                            node.attrs = a.to_string();
                            if let Some(fp) = fp {
                                node.mtime = fp.mtime;
                                node.fingerprint = Some(fp);
                            }
                        }
                        None => node.undecryptable = Some("attributes do not decrypt".into()),
                    }
                    node.key = Some(key);
                }
            }
            if node.undecryptable.is_some() {
                node.name = format!("[undecryptable {h}]");
            }
        }
    }
    Ok(node)
}

/// A typed action packet (`MEGA-PROTOCOL.md` §9.4).
#[derive(Debug, Clone, PartialEq)]
pub enum ActionPacket {
    /// `t`: new nodes (uploads, new folders, the second half of a move).
    NewNodes {
        nodes: Vec<Value>,
        echo: Option<String>,
    },
    /// `u`: attributes changed.
    Update {
        handle: NodeHandle,
        attrs: String,
        echo: Option<String>,
    },
    /// `d`: a subtree was removed; `is_move` when a `t` with the same nodes follows.
    Delete {
        handle: NodeHandle,
        is_move: bool,
        echo: Option<String>,
    },
    /// Any other packet type (shares, contacts, links…), not applied to the tree.
    Other { kind: String, echo: Option<String> },
}

impl ActionPacket {
    pub fn parse(v: &Value) -> Option<ActionPacket> {
        let a = v.get("a")?.as_str()?;
        let echo = v.get("i").and_then(Value::as_str).map(str::to_string);
        let s = |k: &str| v.get(k).and_then(Value::as_str);
        Some(match a {
            "t" => ActionPacket::NewNodes {
                nodes: v
                    .get("t")
                    .and_then(|t| t.get("f"))
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
                echo,
            },
            "u" => ActionPacket::Update {
                handle: NodeHandle::from(s("n")?),
                attrs: s("at")?.to_string(),
                echo,
            },
            "d" => ActionPacket::Delete {
                handle: NodeHandle::from(s("n")?),
                is_move: v.get("m").and_then(Value::as_i64) == Some(1),
                echo,
            },
            other => ActionPacket::Other {
                kind: other.to_string(),
                echo,
            },
        })
    }

    pub fn echo(&self) -> Option<&str> {
        match self {
            ActionPacket::NewNodes { echo, .. }
            | ActionPacket::Update { echo, .. }
            | ActionPacket::Delete { echo, .. }
            | ActionPacket::Other { echo, .. } => echo.as_deref(),
        }
    }
}

/// The account's decrypted node tree.
#[derive(Debug)]
pub struct NodeTree {
    nodes: HashMap<NodeHandle, Node>,
    children: HashMap<NodeHandle, Vec<NodeHandle>>,
    root: Option<NodeHandle>,
    inbox: Option<NodeHandle>,
    rubbish: Option<NodeHandle>,
    keys: KeyRing,
    /// Bumped on every change, so views derived from the tree know when to rebuild.
    generation: u64,
}

impl NodeTree {
    pub fn new(keys: KeyRing) -> Self {
        NodeTree {
            nodes: HashMap::new(),
            children: HashMap::new(),
            root: None,
            inbox: None,
            rubbish: None,
            keys,
            generation: 0,
        }
    }

    /// Changes whenever the tree does (insert, remove, rename, move…).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Makes this tree's generation newer than `older`'s (when it replaces that tree).
    pub fn succeed(&mut self, older: u64) {
        self.generation = self.generation.max(older) + 1;
    }

    /// Builds the tree from an `f` reply; returns it with the reply's `sn`.
    pub fn from_fetch(reply: &Value, keys: KeyRing) -> Result<(Self, Option<String>), TreeError> {
        let mut tree = NodeTree::new(keys);
        if let Some(ok) = reply.get("ok") {
            tree.keys.learn_outgoing(ok);
        }
        if let Some(ok) = reply.get("ok0") {
            tree.keys.learn_outgoing(ok);
        }
        let list = reply
            .get("f")
            .and_then(Value::as_array)
            .ok_or_else(|| TreeError::Malformed("fetch reply without `f`".into()))?;
        for v in list {
            let node = parse_node(v, &mut tree.keys)?;
            tree.insert(node);
        }
        let sn = reply.get("sn").and_then(Value::as_str).map(str::to_string);
        Ok((tree, sn))
    }

    /// Builds the tree of a public folder link from its `f` reply. Every node's key is
    /// wrapped with the link's key under the id of the exported folder, which is recognised
    /// as the node whose own handle is the id in its `k` (else the first node).
    pub fn from_folder_link(
        reply: &Value,
        link_key: Key128,
    ) -> Result<(Self, NodeHandle), TreeError> {
        let list = reply
            .get("f")
            .and_then(Value::as_array)
            .filter(|l| !l.is_empty())
            .ok_or_else(|| TreeError::Malformed("folder link reply without nodes".into()))?;
        let own_id = |n: &Value| {
            let h = n.get("h").and_then(Value::as_str)?;
            let k = n.get("k").and_then(Value::as_str)?;
            k.split('/')
                .any(|part| part.split(':').next() == Some(h))
                .then(|| h.to_string())
        };
        let root = list
            .iter()
            .find_map(own_id)
            .or_else(|| list[0].get("h").and_then(Value::as_str).map(str::to_string))
            .ok_or_else(|| TreeError::Malformed("folder link without a root".into()))?;
        let mut keys = KeyRing::new(MasterKey(link_key.clone()), String::new(), None);
        keys.share_keys.insert(root.clone(), link_key);
        let (tree, _) = NodeTree::from_fetch(reply, keys)?;
        Ok((tree, NodeHandle(root)))
    }

    /// The outgoing shares (exported folders) at or above `h`, nearest first, with their keys.
    pub fn shares_above(&self, h: &NodeHandle) -> Vec<(NodeHandle, Key128)> {
        let mut out = Vec::new();
        let mut cur = self.nodes.get(h);
        while let Some(n) = cur {
            if let Some(k) = self.keys.share_keys.get(&n.handle.0) {
                out.push((n.handle.clone(), k.clone()));
            }
            cur = n.parent.as_ref().and_then(|p| self.nodes.get(p));
        }
        out
    }

    /// The node and all its descendants, parents first.
    pub fn subtree(&self, h: &NodeHandle) -> Vec<&Node> {
        let mut out: Vec<&Node> = self.nodes.get(h).into_iter().collect();
        let mut i = 0;
        while i < out.len() {
            if let Some(kids) = self.children.get(&out[i].handle) {
                out.extend(kids.iter().filter_map(|k| self.nodes.get(k)));
            }
            i += 1;
        }
        out
    }

    pub fn keys(&self) -> &KeyRing {
        &self.keys
    }

    pub fn keys_mut(&mut self) -> &mut KeyRing {
        &mut self.keys
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn get(&self, h: &NodeHandle) -> Option<&Node> {
        self.nodes.get(h)
    }

    pub fn root(&self) -> Option<&Node> {
        self.root.as_ref().and_then(|h| self.nodes.get(h))
    }

    pub fn inbox(&self) -> Option<&Node> {
        self.inbox.as_ref().and_then(|h| self.nodes.get(h))
    }

    pub fn rubbish(&self) -> Option<&Node> {
        self.rubbish.as_ref().and_then(|h| self.nodes.get(h))
    }

    /// Children of a node, ordered by name, then creation time, then handle.
    pub fn children(&self, h: &NodeHandle) -> Vec<&Node> {
        let mut v: Vec<&Node> = self
            .children
            .get(h)
            .into_iter()
            .flatten()
            .filter_map(|c| self.nodes.get(c))
            .collect();
        v.sort_by(|a, b| {
            (a.name.as_str(), a.ctime, &a.handle).cmp(&(b.name.as_str(), b.ctime, &b.handle))
        });
        v
    }

    /// The child of `parent` called `name`. With duplicate names, the oldest one (then the
    /// lowest handle) wins, deterministically.
    pub fn child_by_name(&self, parent: &NodeHandle, name: &str) -> Option<&Node> {
        self.children
            .get(parent)?
            .iter()
            .filter_map(|c| self.nodes.get(c))
            .filter(|n| n.name == name)
            .min_by(|a, b| (a.ctime, &a.handle).cmp(&(b.ctime, &b.handle)))
    }

    /// Resolves a `/`-separated path below `start` (`.` and empty components are skipped,
    /// `..` goes up).
    pub fn resolve_from(&self, start: &NodeHandle, path: &str) -> Result<&Node, TreeError> {
        let mut cur = self
            .nodes
            .get(start)
            .ok_or_else(|| TreeError::NotFound(path.to_string()))?;
        for comp in path.split('/') {
            match comp {
                "" | "." => {}
                ".." => {
                    if let Some(p) = cur.parent.as_ref().and_then(|p| self.nodes.get(p)) {
                        cur = p;
                    }
                }
                name => {
                    if !cur.kind.is_container() {
                        return Err(TreeError::NotAFolder(self.path_of(&cur.handle)));
                    }
                    cur = self
                        .child_by_name(&cur.handle, name)
                        .ok_or_else(|| TreeError::NotFound(path.to_string()))?;
                }
            }
        }
        Ok(cur)
    }

    /// Resolves a path below the Cloud Drive root.
    pub fn resolve(&self, path: &str) -> Result<&Node, TreeError> {
        let root = self
            .root
            .clone()
            .ok_or_else(|| TreeError::NotFound(path.to_string()))?;
        self.resolve_from(&root, path)
    }

    /// `/a/b` for nodes under the Cloud Drive; `//Rubbish Bin/a` style for other roots.
    pub fn path_of(&self, h: &NodeHandle) -> String {
        let mut parts = Vec::new();
        let mut cur = self.nodes.get(h);
        let mut top = None;
        while let Some(n) = cur {
            if n.parent.is_none() {
                top = Some(n);
                break;
            }
            parts.push(n.name.as_str());
            cur = n.parent.as_ref().and_then(|p| self.nodes.get(p));
        }
        parts.reverse();
        let rest = parts.join("/");
        match top {
            Some(t) if t.kind == NodeKind::Root => format!("/{rest}"),
            Some(t) => format!("//{}/{rest}", t.name),
            None => format!("?/{rest}"),
        }
    }

    /// Nodes that could not be decrypted.
    pub fn undecryptable(&self) -> impl Iterator<Item = &Node> {
        self.nodes.values().filter(|n| n.undecryptable.is_some())
    }

    /// All nodes, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Node> {
        self.nodes.values()
    }

    /// Inserts or replaces a node, keeping the children index right.
    pub fn insert(&mut self, node: Node) {
        self.generation += 1;
        let h = node.handle.clone();
        if let Some(old) = self.nodes.get(&h) {
            if old.parent != node.parent {
                let old_parent = old.parent.clone();
                self.unlink_child(old_parent.as_ref(), &h);
            } else if old.parent.is_some() {
                // Same parent: the index already has it.
                self.nodes.insert(h, node);
                return;
            }
        }
        match node.kind {
            NodeKind::Root => self.root = Some(h.clone()),
            NodeKind::Inbox => self.inbox = Some(h.clone()),
            NodeKind::Rubbish => self.rubbish = Some(h.clone()),
            _ => {}
        }
        if let Some(p) = &node.parent {
            let list = self.children.entry(p.clone()).or_default();
            if !list.contains(&h) {
                list.push(h.clone());
            }
        }
        self.nodes.insert(h, node);
    }

    fn unlink_child(&mut self, parent: Option<&NodeHandle>, h: &NodeHandle) {
        if let Some(list) = parent.and_then(|p| self.children.get_mut(p)) {
            list.retain(|c| c != h);
        }
    }

    /// Removes a node and its whole subtree; returns the removed nodes (top first).
    pub fn remove_subtree(&mut self, h: &NodeHandle) -> Vec<Node> {
        let Some(top) = self.nodes.get(h) else {
            return Vec::new();
        };
        self.generation += 1;
        let parent = top.parent.clone();
        self.unlink_child(parent.as_ref(), h);
        let mut out = Vec::new();
        let mut stack = vec![h.clone()];
        while let Some(x) = stack.pop() {
            if let Some(kids) = self.children.remove(&x) {
                stack.extend(kids);
            }
            if let Some(n) = self.nodes.remove(&x) {
                out.push(n);
            }
        }
        out
    }

    /// Sets a node's new parent locally (after a successful move).
    pub fn reparent(&mut self, h: &NodeHandle, to: &NodeHandle) {
        if let Some(mut n) = self.nodes.get(h).cloned() {
            n.parent = Some(to.clone());
            self.insert(n);
        }
    }

    /// Re-decrypts a node's attributes from an encrypted blob (after `a` or a `u` packet).
    pub fn set_encrypted_attrs(&mut self, h: &NodeHandle, at: &str) -> bool {
        let Some(n) = self.nodes.get_mut(h) else {
            return false;
        };
        self.generation += 1;
        let Some(key) = n.key.clone() else {
            return false;
        };
        match decode_attrs(&key, at) {
            Some((name, fp)) => {
                n.name = name;
                n.attrs = at.to_string();
                n.mtime = fp.map_or(n.ctime, |f| f.mtime);
                n.fingerprint = fp;
                n.undecryptable = None;
                true
            }
            None => {
                n.undecryptable = Some("attributes do not decrypt".into());
                n.name = format!("[undecryptable {h}]");
                true
            }
        }
    }

    /// Applies a batch of action packets in order. Packets whose echo id is `skip_echo` (this
    /// client's own changes, already applied locally) are ignored. A `d` marked as a move is
    /// held until the end of the batch so that the following `t` turns it into a move.
    pub fn apply(&mut self, packets: &[ActionPacket], skip_echo: Option<&str>) -> Vec<Change> {
        let mut changes = Vec::new();
        // Subtrees removed by a move-`d`, waiting for their `t`.
        let mut limbo: HashMap<NodeHandle, Option<NodeHandle>> = HashMap::new();
        for p in packets {
            if skip_echo.is_some() && p.echo() == skip_echo {
                continue;
            }
            match p {
                ActionPacket::NewNodes { nodes, .. } => {
                    for v in nodes {
                        let node = match parse_node(v, &mut self.keys) {
                            Ok(n) => n,
                            Err(e) => {
                                tracing::warn!("ignoring malformed node in event: {e}");
                                continue;
                            }
                        };
                        let h = node.handle.clone();
                        let to = node.parent.clone();
                        if let Some(from) = limbo.remove(&h) {
                            changes.push(Change::Moved {
                                handle: h.clone(),
                                from,
                                to,
                            });
                        } else if self.nodes.contains_key(&h) {
                            let from = self.nodes.get(&h).and_then(|n| n.parent.clone());
                            if from != to {
                                changes.push(Change::Moved {
                                    handle: h.clone(),
                                    from,
                                    to,
                                });
                            } else {
                                changes.push(Change::Updated(h.clone()));
                            }
                        } else {
                            changes.push(Change::Added(h.clone()));
                        }
                        self.insert(node);
                    }
                }
                ActionPacket::Update { handle, attrs, .. } => {
                    if self.set_encrypted_attrs(handle, attrs) {
                        changes.push(Change::Updated(handle.clone()));
                    }
                }
                ActionPacket::Delete {
                    handle, is_move, ..
                } => {
                    let parent = self.nodes.get(handle).and_then(|n| n.parent.clone());
                    let removed = self.remove_subtree(handle);
                    if removed.is_empty() {
                        continue;
                    }
                    if *is_move {
                        limbo.insert(handle.clone(), parent);
                        // Descendants come back in the `t`; remember them silently.
                        for n in removed.iter().skip(1) {
                            limbo.insert(n.handle.clone(), n.parent.clone());
                        }
                    } else {
                        changes.push(Change::Removed {
                            handle: handle.clone(),
                            parent,
                        });
                    }
                }
                ActionPacket::Other { .. } => {}
            }
        }
        // Descendants re-added under a moved folder are not separate moves.
        changes.retain(|c| match c {
            Change::Moved { from, to, .. } => from != to,
            _ => true,
        });
        for (h, parent) in limbo {
            if !self.nodes.contains_key(&h) {
                changes.push(Change::Removed { handle: h, parent });
            }
        }
        changes
    }
}

#[cfg(test)]
mod tests;
