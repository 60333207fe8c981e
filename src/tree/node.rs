//! Nodes as the client sees them: handles, kinds, and a decrypted [`Node`], parsed from the
//! server's [`RawNode`] with [`parse_node`]. A node whose key or attributes cannot be
//! decrypted is kept (named `[undecryptable <handle>]`); a node whose structure is broken (no
//! handle, unknown type, an impossible size) is a [`TreeError::Malformed`], never a panic.

use serde_json::{Map, Value};

use super::keys::KeyRing;
use crate::api::commands::RawNode;
use crate::crypto::fingerprint::Fingerprint;
use crate::crypto::{attr, b64, FileKey, NodeKey};

/// The largest file size accepted from the server: 2^53 − 1, the largest integer a JSON
/// number carries exactly (MEGA's own web client is JavaScript). A larger `s` is a protocol
/// error; no size the server states sizes an allocation before this check.
pub const MAX_NODE_SIZE: u64 = (1 << 53) - 1;

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
    pub(crate) fn from_type(t: i64) -> Option<Self> {
        Some(match t {
            0 => NodeKind::File,
            1 => NodeKind::Folder,
            2 => NodeKind::Root,
            3 => NodeKind::Inbox,
            4 => NodeKind::Rubbish,
            _ => return None,
        })
    }

    /// The wire type (`t`).
    pub fn wire_type(self) -> i64 {
        match self {
            NodeKind::File => 0,
            NodeKind::Folder => 1,
            NodeKind::Root => 2,
            NodeKind::Inbox => 3,
            NodeKind::Rubbish => 4,
        }
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
    /// The key list (`k`) as the server sent it, kept only while the node cannot be
    /// decrypted, so that a key learnt later (or the tree cache) can still use it.
    pub wrapped_key: Option<String>,
    /// On the root of a folder another user shared with us: who, and our access.
    pub inshare: Option<InShare>,
    /// File attributes (`fa`: thumbnail, preview, media), as the server lists them.
    pub fa: Option<String>,
    /// The POSIX mode mega-mount stored on the node (type and permission bits, see
    /// [`super::posix`]); `None` where no valid one is stored.
    pub mode: Option<u32>,
}

/// What a folder shared with us says about the share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InShare {
    /// The sharing user's handle.
    pub owner: String,
    pub access: Access,
}

/// Access to a folder shared with us (`r`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    /// Read-only: nothing in it can be created, changed or deleted.
    Read,
    /// Files and folders can be added and renamed.
    ReadWrite,
    /// Everything, moving and deleting included.
    Full,
}

impl Access {
    pub fn from_level(r: i64) -> Option<Self> {
        Some(match r {
            0 => Access::Read,
            1 => Access::ReadWrite,
            2 => Access::Full,
            _ => return None,
        })
    }

    /// The wire level (`r`).
    pub fn level(self) -> u8 {
        match self {
            Access::Read => 0,
            Access::ReadWrite => 1,
            Access::Full => 2,
        }
    }

    /// How `megacmd shares` shows it (and `--access` takes it).
    pub fn name(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::ReadWrite => "readwrite",
            Access::Full => "full",
        }
    }
}

impl Node {
    /// A node with only its place, kind, name and time (ctime and mtime): no key, content,
    /// attributes or share.
    pub fn bare(
        handle: NodeHandle,
        parent: Option<NodeHandle>,
        kind: NodeKind,
        name: String,
        time: i64,
    ) -> Node {
        Node {
            handle,
            parent,
            kind,
            owner: String::new(),
            name,
            size: 0,
            ctime: time,
            mtime: time,
            key: None,
            attrs: String::new(),
            fingerprint: None,
            undecryptable: None,
            wrapped_key: None,
            inshare: None,
            fa: None,
            mode: None,
        }
    }

    pub fn is_file(&self) -> bool {
        self.kind == NodeKind::File
    }

    /// A file node mega-mount marked as a symbolic link (its content is the target).
    pub fn is_symlink(&self) -> bool {
        self.is_file()
            && self
                .mode
                .is_some_and(|m| m & super::posix::S_IFMT == super::posix::S_IFLNK)
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

/// What a listing needs of a node's attributes.
pub(crate) struct Decoded {
    pub name: String,
    pub fingerprint: Option<Fingerprint>,
    pub mode: Option<u32>,
}

/// Decrypts an attribute blob into what a listing needs.
pub(crate) fn decode_attrs(key: &NodeKey, a: &str) -> Option<Decoded> {
    let raw = b64::decode(a, "attributes").ok()?;
    let known = attr::decrypt_name(&key.attr_key(), &raw).ok()?;
    let folder = matches!(key, NodeKey::Folder(_));
    Some(Decoded {
        name: known.name.unwrap_or_default(),
        fingerprint: known.fingerprint.and_then(|c| Fingerprint::decode(&c).ok()),
        mode: known.posix.and_then(|m| super::posix::parse(&m, folder)),
    })
}

/// Decodes an untyped node object (from an action packet) into a [`RawNode`].
pub fn raw_from_value(v: Value) -> Result<RawNode, TreeError> {
    serde_json::from_value(v).map_err(|e| TreeError::Malformed(e.to_string()))
}

/// Parses and decrypts one node from an `f`, `t` or `p` reply, learning an incoming share's
/// key from it first.
pub fn parse_node(v: &RawNode, keys: &mut KeyRing) -> Result<Node, TreeError> {
    learn_share_key(v, keys);
    decrypt_node(v, keys)
}

/// Learns the share key an incoming share's root carries (`su` + `sk`), if any.
pub(crate) fn learn_share_key(v: &RawNode, keys: &mut KeyRing) {
    let is_item = matches!(v.t, 0 | 1);
    if let (true, Some(_), Some(sk)) = (
        is_item,
        v.su.as_deref().filter(|su| !su.is_empty()),
        v.sk.as_deref(),
    ) {
        keys.learn_incoming(&v.h, sk);
    }
}

/// Parses and decrypts one node with the keys known (see [`learn_share_key`]).
pub(crate) fn decrypt_node(v: &RawNode, keys: &KeyRing) -> Result<Node, TreeError> {
    decrypt_owned(v.clone(), keys)
}

/// [`decrypt_node`], taking the node's strings instead of copying them (a whole tree's
/// worth of allocations on a large account).
pub(crate) fn decrypt_owned(v: RawNode, keys: &KeyRing) -> Result<Node, TreeError> {
    let h = v.h.as_str();
    let kind = NodeKind::from_type(v.t)
        .ok_or_else(|| TreeError::Malformed(format!("node {h} has unknown type {}", v.t)))?;
    let size = v.s.unwrap_or(0);
    if size > MAX_NODE_SIZE {
        return Err(TreeError::Malformed(format!(
            "node {h} claims a size of {size} bytes"
        )));
    }
    let ctime = v.ts.unwrap_or(0);
    let RawNode {
        h,
        p,
        u,
        a,
        k,
        su,
        r,
        fa,
        ..
    } = v;
    let parent = p.filter(|p| !p.is_empty()).map(NodeHandle);
    let mut node = Node {
        owner: u.unwrap_or_default(),
        size,
        fa: fa.filter(|fa| !fa.is_empty()),
        ..Node::bare(NodeHandle(h), parent, kind, String::new(), ctime)
    };
    match kind {
        NodeKind::Root => node.name = "Cloud Drive".into(),
        NodeKind::Inbox => node.name = "Inbox".into(),
        NodeKind::Rubbish => node.name = "Rubbish Bin".into(),
        NodeKind::File | NodeKind::Folder => {
            if let Some(su) = su.filter(|su| !su.is_empty()) {
                node.inshare = Some(InShare {
                    owner: su,
                    access: r.and_then(Access::from_level).unwrap_or(Access::Read),
                });
            }
            let a = a.unwrap_or_default();
            match keys.node_key(k.as_deref().unwrap_or(""), kind) {
                None => node.undecryptable = Some("no usable key".into()),
                Some(key) => {
                    match decode_attrs(&key, &a) {
                        Some(d) => {
                            node.name = d.name;
                            node.mode = d.mode;
                            if let Some(fp) = d.fingerprint {
                                node.mtime = fp.mtime;
                                node.fingerprint = Some(fp);
                            }
                        }
                        None => node.undecryptable = Some("attributes do not decrypt".into()),
                    }
                    node.key = Some(key);
                }
            }
            node.attrs = a;
            if node.undecryptable.is_some() {
                node.name = format!("[undecryptable {}]", node.handle);
                if node.key.is_none() {
                    node.wrapped_key = k;
                }
            }
        }
    }
    Ok(node)
}
