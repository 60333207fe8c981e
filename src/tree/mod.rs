//! The decrypted node tree: nodes by handle, a children index, the three roots, path
//! resolution, and applying action packets ([`packets`]) with a list of what changed.
//! `MEGA-PROTOCOL.md` §5.
//!
//! * [`node`]: handles, kinds, decrypted nodes, parsing the server's node objects.
//! * [`keys`]: the key ring that unwraps node keys (master, share and RSA keys).
//! * [`packets`]: typed action packets and [`NodeTree::apply`].
//! * [`cache`]: the tree cache file (SQLite) a tree can be served from.
//! * [`store`]: [`store::TreeStore`], the one owner of the tree and its cache file; reads of
//!   the file outside the tree's lock ([`deferring`]).
//!
//! Invariants: every node's parent, if present in the tree, lists it in `children`; the
//! generation changes on every change. No network I/O happens here.

pub mod cache;
pub mod keys;
pub mod node;
pub mod packets;
pub mod posix;
mod resident;
pub(crate) use resident::shrink_sparse;
pub mod store;
#[cfg(test)]
mod tests;

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use cache::{Backing, Opened};
use resident::Resident;

use crate::api::commands::{FetchReply, RawNode, RawPendingContact, RawUser};
use crate::crypto::{Key128, MasterKey};
use node::decode_attrs;

pub use keys::KeyRing;
pub use node::{parse_node, Access, InShare, Node, NodeHandle, NodeKind, TreeError, MAX_NODE_SIZE};
pub use packets::{ActionPacket, Change};

/// Folders whose listing changes are remembered one by one (see
/// [`NodeTree::listing_generation`]); beyond, all count as changed.
const MAX_LISTED: usize = 65_536;

/// The account's decrypted node tree.
///
/// Either the whole tree is in memory (built from an `f` reply), or it is served from the
/// tree cache ([`backed`](Self::backed)): nodes and folders' child lists are read from the
/// file when first asked for (through `&self`: readers never wait for a writer) and dropped
/// again by [`trim`](Self::trim). Both look the same through this API. In the second form,
/// a node changed since the last commit ([`committed`](Self::committed)) always stays in
/// memory (removed ones as a mark), as does every child list that changes touched, so what
/// the file says is only ever read for what did not change since it was written.
#[derive(Debug)]
pub struct NodeTree {
    nodes: Resident<Node>,
    /// Child lists by parent. In memory: every node with children has one. Served from the
    /// cache: a list present is complete (children changed since the last commit included).
    children: Resident<Vec<NodeHandle>>,
    /// The tree cache this tree is served from, if it is: the one way the tree reaches
    /// storage (see [`deferring`] for how readers keep its reads outside the tree's lock).
    backing: Option<Arc<Backing>>,
    /// Handles the cache file was read for and does not hold (so that a lookup of a
    /// handle that is gone is not read again and again); cleared by every trim.
    absent: Resident<()>,
    /// How many nodes the tree has (in memory or not).
    count: usize,
    root: Option<NodeHandle>,
    inbox: Option<NodeHandle>,
    rubbish: Option<NodeHandle>,
    keys: KeyRing,
    /// Users we share with, either way: handle → e-mail.
    users: HashMap<String, String>,
    /// Our folders shared with other users (not `EXP` links).
    outshares: Vec<OutShare>,
    /// Users who are no longer (or never were) contacts (`c: 0`), though still known.
    hidden: HashSet<String>,
    /// Contact requests not answered yet, sent and received, by request handle.
    requests: std::collections::BTreeMap<String, ContactRequest>,
    /// The nodes marked as the root of a share we received (so that listing the incoming
    /// shares does not scan the whole tree).
    inshare_roots: std::collections::HashSet<NodeHandle>,
    /// Bumped on every change, so views derived from the tree know when to rebuild.
    generation: u64,
    /// The generation of the last change of each folder's listing (a child added, removed,
    /// renamed or moved in or out), for folders changed since `listed_floor`; see
    /// [`listing_generation`](Self::listing_generation). At most [`MAX_LISTED`] entries.
    listed: HashMap<NodeHandle, u64>,
    /// Listings are not known to be unchanged since before this generation.
    listed_floor: u64,
    /// Nodes inserted, changed or removed and not yet committed to the tree cache, each with
    /// the generation of its last change.
    dirty: HashMap<NodeHandle, u64>,
    /// Off only while a tree is being built from a snapshot (nothing to write back).
    tracking: bool,
    /// Which tree this is: one more than the tree it replaced ([`succeed`](Self::succeed)).
    epoch: u64,
    /// The event cursor this tree is current to (`None` before the first fetch).
    sn: Option<String>,
}

/// What a reader of a tree served from the cache did not find in memory and, inside
/// [`deferring`], noted instead of reading it from the file.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Miss {
    Node(NodeHandle),
    /// A folder's (or file's) child list.
    Kids(NodeHandle),
}

thread_local! {
    /// The misses noted by the [`deferring`] scope running on this thread, if one is.
    static MISSES: RefCell<Option<Vec<Miss>>> = const { RefCell::new(None) };
}

/// Runs `f` (a read of the tree) with reads of the cache file deferred: a node or child
/// list not in memory is noted and taken as absent. Returns `f`'s output and the misses;
/// with any, the output is incomplete and must be dropped: the caller reads the misses
/// from the file once it has let go of the tree's lock ([`store::TreeStore`]) and runs `f`
/// again. Without a `deferring` scope (a writer holding the tree mutably) they are read in
/// place.
pub fn deferring<T>(f: impl FnOnce() -> T) -> (T, Vec<Miss>) {
    /// Puts back the scope active before (if any, it gets this one's misses too), even if
    /// `f` panics.
    struct Scope(Option<Vec<Miss>>);
    impl Drop for Scope {
        fn drop(&mut self) {
            let outer = self.0.take();
            MISSES.with(|m| {
                let mut m = m.borrow_mut();
                let mine = std::mem::replace(&mut *m, outer);
                if let (Some(outer), Some(mine)) = (m.as_mut(), mine) {
                    outer.extend(mine);
                }
            });
        }
    }
    let scope = Scope(MISSES.with(|m| m.borrow_mut().replace(Vec::new())));
    let out = f();
    let mine = MISSES.with(|m| m.borrow().clone()).unwrap_or_default();
    drop(scope);
    (out, mine)
}

/// Notes `miss` if a [`deferring`] scope is running on this thread (then the caller must
/// not read the file).
fn defer(miss: impl FnOnce() -> Miss) -> bool {
    MISSES.with(|m| match m.borrow_mut().as_mut() {
        Some(v) => {
            v.push(miss());
            true
        }
        None => false,
    })
}

/// One of our folders shared with a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutShare {
    pub node: NodeHandle,
    /// The recipient's user handle.
    pub user: String,
    pub access: Access,
}

/// A contact request not answered yet.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ContactRequest {
    /// The request's handle (`p`).
    pub id: String,
    /// The other side: the invited address (sent) or the sender's (received).
    pub email: String,
    /// Sent by this account (else received).
    pub outgoing: bool,
    pub msg: String,
    pub ts: i64,
}

impl NodeTree {
    pub fn new(keys: KeyRing) -> Self {
        NodeTree {
            nodes: Resident::default(),
            children: Resident::default(),
            backing: None,
            absent: Resident::default(),
            count: 0,
            root: None,
            inbox: None,
            rubbish: None,
            keys,
            users: HashMap::new(),
            outshares: Vec::new(),
            requests: Default::default(),
            hidden: HashSet::new(),
            inshare_roots: Default::default(),
            generation: 0,
            listed: HashMap::new(),
            listed_floor: 0,
            dirty: HashMap::new(),
            tracking: true,
            epoch: 0,
            sn: None,
        }
    }

    /// A tree served from the tree cache: nothing but its roots and whole-tree facts are
    /// read now; nodes come from `backing` as they are asked for.
    pub fn backed(keys: KeyRing, backing: Backing, opened: Opened) -> Self {
        let mut tree = NodeTree::new(keys);
        tree.adopt(&opened.reply);
        for (h, t) in &opened.roots {
            if let Some(kind) = NodeKind::from_type(*t) {
                tree.set_root(kind, &NodeHandle(h.clone()));
            }
        }
        tree.inshare_roots = opened
            .inshares
            .iter()
            .map(|h| NodeHandle(h.clone()))
            .collect();
        tree.count = opened.count;
        tree.backing = Some(Arc::new(backing));
        tree
    }

    /// Serves this (whole, in-memory) tree from the cache file just written from it: what
    /// is in memory may now be dropped by [`trim`](Self::trim).
    pub fn attach(&mut self, backing: Backing) {
        self.backing = Some(Arc::new(backing));
    }

    /// Stops serving the tree from the cache (for a tree about to be dropped whole).
    pub fn detach(&mut self) -> Option<Arc<Backing>> {
        self.backing.take()
    }

    /// Whether nodes this tree should have could not be read (its cache file is damaged):
    /// it must be fetched again.
    pub fn damaged(&self) -> bool {
        self.backing.as_ref().is_some_and(|b| b.failed())
    }

    /// How many nodes are in memory.
    pub fn resident(&self) -> usize {
        self.nodes.len()
    }

    /// Starts a new period of use: what is read from now on counts as more recent than
    /// what was read before (for [`trim`](Self::trim)). Cheap, through `&self`.
    pub fn tick(&self) {
        self.nodes.advance();
        self.children.advance();
    }

    /// When the tree is served from the cache and holds more than `keep` nodes, brings them
    /// down to three quarters of `keep` (so that a tree working at its budget is not trimmed
    /// at every commit), least recently read first. Nodes changed since the last commit
    /// always stay. Child lists go by the same rule, but only when nothing is waiting to be
    /// committed (a change may have touched any of them). What goes is read again from the
    /// file when next asked for. A tree not served from the cache keeps everything.
    pub fn trim(&mut self, keep: usize) {
        self.tick();
        if self.backing.is_none() || self.nodes.len() <= keep {
            return;
        }
        self.absent.shrink_to(0, |_| false);
        let target = keep - keep / 4;
        let dirty = &self.dirty;
        self.nodes.shrink_to(target, |h| dirty.contains_key(h));
        if dirty.is_empty() {
            self.children.shrink_to(target, |_| false);
        }
    }

    /// Node `h`: in memory, else read from the cache (unless it was removed since the last
    /// commit).
    fn node(&self, h: &NodeHandle) -> Option<&Node> {
        if let Some(n) = self.nodes.get(h) {
            return Some(n);
        }
        self.backing.as_ref()?;
        if self.dirty.contains_key(h) || self.absent.contains(h) {
            return None;
        }
        if defer(|| Miss::Node(h.clone())) {
            return None;
        }
        // Read in place (a writer holding the tree, or a read past its rounds): the same
        // read and the same rule for putting it in as a deferred one.
        self.read_in_place(Miss::Node(h.clone()));
        self.nodes.get(h)
    }

    /// The handles of `h`'s children (for a file: its previous versions), read from the
    /// cache when not in memory. `None`: none known.
    fn kids(&self, h: &NodeHandle) -> Option<&Vec<NodeHandle>> {
        if let Some(list) = self.children.get(h) {
            return Some(list);
        }
        self.backing.as_ref()?;
        // A node removed since the last commit has no children; the file still lists them.
        if self.dirty.contains_key(h) && !self.nodes.contains(h) {
            return None;
        }
        if defer(|| Miss::Kids(h.clone())) {
            return None;
        }
        self.read_in_place(Miss::Kids(h.clone()));
        self.children.get(h)
    }

    /// Records a change of `h` for the next commit.
    fn touch(&mut self, h: &NodeHandle) {
        if self.tracking {
            self.dirty.insert(h.clone(), self.generation);
        }
    }

    /// Forgets the changes a commit wrote (those not changed again since: `marks` holds the
    /// generation of each change it wrote).
    pub fn committed(&mut self, marks: &[(NodeHandle, u64)]) {
        for (h, g) in marks {
            if self.dirty.get(h) == Some(g) {
                self.dirty.remove(h);
            }
        }
    }

    /// Remembers the e-mail addresses of users (from `f`, `t` and `c`).
    pub fn learn_users(&mut self, users: &[RawUser]) {
        for u in users {
            if let (Some(h), Some(m)) = (&u.u, &u.m) {
                self.users.insert(h.clone(), m.clone());
            }
            match (&u.u, u.c) {
                (Some(h), Some(0)) => {
                    self.hidden.insert(h.clone());
                }
                (Some(h), Some(_)) => {
                    self.hidden.remove(h);
                }
                _ => {}
            }
        }
    }

    /// Whether a known user is not a contact (removed, or only a share peer: `c: 0`).
    pub fn is_hidden(&self, user: &str) -> bool {
        self.hidden.contains(user)
    }

    /// Remembers contact requests of an `f` reply (`opc` sent, `ipc` received).
    pub fn learn_requests(&mut self, sent: &[RawPendingContact], received: &[RawPendingContact]) {
        for (list, outgoing) in [(sent, true), (received, false)] {
            for r in list {
                if let (Some(id), Some(email)) = (&r.p, &r.m) {
                    self.requests.insert(
                        id.clone(),
                        ContactRequest {
                            id: id.clone(),
                            email: email.clone(),
                            outgoing,
                            msg: r.msg.clone().unwrap_or_default(),
                            ts: r.ts.unwrap_or(0),
                        },
                    );
                }
            }
        }
    }

    /// Follows a contact request packet: a new one is recorded, a cancelled or answered
    /// one forgotten.
    pub fn learn_request(
        &mut self,
        id: &str,
        email: Option<&str>,
        outgoing: bool,
        msg: &str,
        ts: i64,
        gone: bool,
    ) {
        if gone {
            self.requests.remove(id);
        } else if let Some(email) = email {
            self.requests.insert(
                id.to_string(),
                ContactRequest {
                    id: id.to_string(),
                    email: email.to_string(),
                    outgoing,
                    msg: msg.to_string(),
                    ts,
                },
            );
        }
    }

    /// Contact requests not answered yet, sent and received.
    pub fn requests(&self) -> impl Iterator<Item = &ContactRequest> {
        self.requests.values()
    }

    /// The users the server told us about (contacts and share peers): handle and e-mail.
    pub fn users(&self) -> impl Iterator<Item = (&String, &String)> {
        self.users.iter()
    }

    /// A user's e-mail address, if the server told us.
    pub fn email_of(&self, user: &str) -> Option<&str> {
        self.users.get(user).map(String::as_str)
    }

    /// A user's handle by e-mail address (case-insensitive), if known.
    pub fn user_by_email(&self, email: &str) -> Option<&str> {
        self.users
            .iter()
            .find(|(_, m)| m.eq_ignore_ascii_case(email))
            .map(|(h, _)| h.as_str())
    }

    /// Records, changes or (with `None`) ends an outgoing share.
    pub fn set_outshare(&mut self, node: NodeHandle, user: &str, access: Option<Access>) {
        self.generation += 1;
        self.outshares
            .retain(|s| !(s.node == node && s.user == user));
        if let Some(access) = access {
            self.outshares.push(OutShare {
                node,
                user: user.to_string(),
                access,
            });
        }
    }

    /// Our folders shared with users.
    pub fn outshares(&self) -> &[OutShare] {
        &self.outshares
    }

    /// The roots of the folders other users shared with us (the top-level ones: their
    /// parent is not in our tree), by owner, then name.
    pub fn inshares(&self) -> Vec<&Node> {
        let mut v: Vec<&Node> = self
            .inshare_roots
            .iter()
            .filter_map(|h| self.node(h))
            .filter(|n| n.parent.as_ref().is_none_or(|p| self.node(p).is_none()))
            .collect();
        v.sort_by(|a, b| {
            let owner = |n: &Node| n.inshare.as_ref().map(|s| s.owner.clone());
            (owner(a), &a.name, &a.handle).cmp(&(owner(b), &b.name, &b.handle))
        });
        v
    }

    /// Whether `h` is `ancestor` or lies below it.
    pub fn is_within(&self, h: &NodeHandle, ancestor: &NodeHandle) -> bool {
        let mut cur = Some(h.clone());
        // A parent chain is acyclic; never loop on a broken one.
        for _ in 0..100_000 {
            match cur {
                Some(c) if c == *ancestor => return true,
                Some(c) => cur = self.node(&c).and_then(|n| n.parent.clone()),
                None => return false,
            }
        }
        false
    }

    /// The top of the tree `h` lies in: the Cloud Drive, the Rubbish Bin or the Vault root
    /// (or the top of a share we received), `h` itself for a top.
    pub fn top_of(&self, h: &NodeHandle) -> Option<&Node> {
        let mut cur = self.node(h)?;
        // A parent chain is acyclic; never loop on a broken one.
        for _ in 0..100_000 {
            match cur.parent.as_ref().and_then(|p| self.node(p)) {
                Some(p) => cur = p,
                None => return Some(cur),
            }
        }
        None
    }

    /// The incoming share a node lies in (its nearest shared ancestor), if any.
    pub fn inshare_of(&self, h: &NodeHandle) -> Option<&Node> {
        let mut cur = self.node(h);
        while let Some(n) = cur {
            if n.inshare.is_some() {
                return Some(n);
            }
            cur = n.parent.as_ref().and_then(|p| self.node(p));
        }
        None
    }

    /// Changes whenever the tree does (insert, remove, rename, move…).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// A stamp of `dir`'s listing (the names, handles and kinds of its children): it
    /// changes whenever they do, and a view of the listing built when it had a stamp is
    /// current while the stamp is the same. Unlike [`generation`](Self::generation), a
    /// change elsewhere in the tree leaves it alone (a folder's view is not rebuilt for every
    /// upload that lands in another one).
    pub fn listing_generation(&self, dir: &NodeHandle) -> u64 {
        self.listed
            .get(dir)
            .copied()
            .unwrap_or(0)
            .max(self.listed_floor)
    }

    /// Notes a change of `dir`'s listing at the current generation.
    fn listing_changed(&mut self, dir: Option<&NodeHandle>) {
        let Some(dir) = dir else {
            return;
        };
        if self.listed.len() >= MAX_LISTED && !self.listed.contains_key(dir) {
            // Forgotten, every listing counts as changed now.
            self.listed.clear();
            self.listed_floor = self.generation;
        }
        self.listed.insert(dir.clone(), self.generation);
    }

    /// Makes this tree's generation newer than `older`'s (when it replaces that tree).
    pub fn succeed(&mut self, older: &NodeTree) {
        self.generation = self.generation.max(older.generation) + 1;
        // Every listing may differ from the older tree's.
        self.listed.clear();
        self.listed_floor = self.generation;
        self.epoch = older.epoch + 1;
    }

    /// Which tree this is (each tree put in place of another is one more).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The event cursor this tree is current to.
    pub fn sn(&self) -> Option<&str> {
        self.sn.as_deref()
    }

    pub fn set_sn(&mut self, sn: Option<String>) {
        self.sn = sn;
    }

    /// Builds the tree from an `f` reply; returns it with the reply's `sn`.
    pub fn from_fetch(
        reply: &FetchReply,
        keys: KeyRing,
    ) -> Result<(Self, Option<String>), TreeError> {
        Self::from_fetch_owned(reply.clone(), keys)
    }

    /// [`from_fetch`](Self::from_fetch), consuming the reply (its strings become the nodes').
    pub fn from_fetch_owned(
        mut reply: FetchReply,
        keys: KeyRing,
    ) -> Result<(Self, Option<String>), TreeError> {
        let mut tree = NodeTree::new(keys);
        // Share keys (and users, outgoing shares) first: the nodes need the keys.
        tree.adopt(&reply);
        for v in reply.f.iter().chain(&reply.f2) {
            node::learn_share_key(v, &mut tree.keys);
        }
        let mut raw = std::mem::take(&mut reply.f);
        raw.append(&mut reply.f2);
        let t0 = std::time::Instant::now();
        let nodes = decrypt_all(raw, &tree.keys)?;
        let t1 = std::time::Instant::now();
        tree.tracking = false;
        tree.build(nodes);
        tree.tracking = true;
        tracing::debug!(
            decrypt_ms = (t1 - t0).as_millis() as u64,
            index_ms = t1.elapsed().as_millis() as u64,
            "tree built"
        );
        // The tree is what the reply says: nothing to write back.
        tree.dirty.clear();
        tree.sn = reply.sn.clone();
        Ok((tree, reply.sn.clone()))
    }

    /// Takes the share keys, users and outgoing shares (pending ones too) of an `f` reply.
    fn adopt(&mut self, reply: &FetchReply) {
        self.keys.learn_outgoing(&reply.ok);
        self.keys.learn_outgoing(&reply.ok0);
        self.learn_users(&reply.u);
        self.learn_requests(&reply.opc, &reply.ipc);
        for s in &reply.s {
            let (Some(h), Some(u)) = (&s.h, &s.u) else {
                continue;
            };
            if let (false, Some(access)) = (u == "EXP", s.r.and_then(Access::from_level)) {
                self.set_outshare(NodeHandle::from(h.as_str()), u, Some(access));
            }
        }
        // Pending shares: the recipient is the invited address.
        for s in &reply.ps {
            let email = reply
                .opc
                .iter()
                .find(|c| c.p.is_some() && c.p == s.p)
                .and_then(|c| c.m.clone());
            if let (Some(h), Some(m), Some(a)) = (&s.h, email, s.r.and_then(Access::from_level)) {
                self.set_outshare(NodeHandle::from(h.as_str()), &m, Some(a));
            }
        }
    }

    /// Builds the tree of a public folder link from its `f` reply. Every node's key is
    /// wrapped with the link's key under the id of the exported folder, which is recognised
    /// as the node whose own handle is the id in its `k` (else the first node).
    pub fn from_folder_link(
        reply: &FetchReply,
        link_key: Key128,
    ) -> Result<(Self, NodeHandle), TreeError> {
        let first = reply
            .f
            .first()
            .ok_or_else(|| TreeError::Malformed("folder link reply without nodes".into()))?;
        let own_id = |n: &RawNode| {
            let k = n.k.as_deref()?;
            k.split('/')
                .any(|part| part.split(':').next() == Some(n.h.as_str()))
                .then(|| n.h.clone())
        };
        let root = reply
            .f
            .iter()
            .find_map(own_id)
            .unwrap_or_else(|| first.h.clone());
        let mut keys = KeyRing::new(MasterKey(link_key.clone()), String::new(), None);
        keys.share_keys.insert(root.clone(), link_key);
        let (tree, _) = NodeTree::from_fetch(reply, keys)?;
        Ok((tree, NodeHandle(root)))
    }

    /// The outgoing shares (exported folders) at or above `h`, nearest first, with their keys.
    pub fn shares_above(&self, h: &NodeHandle) -> Vec<(NodeHandle, Key128)> {
        let mut out = Vec::new();
        let mut cur = self.node(h);
        while let Some(n) = cur {
            if let Some(k) = self.keys.share_keys.get(&n.handle.0) {
                out.push((n.handle.clone(), k.clone()));
            }
            cur = n.parent.as_ref().and_then(|p| self.node(p));
        }
        out
    }

    /// The node and all its current descendants, parents first (no previous versions).
    pub fn subtree(&self, h: &NodeHandle) -> Vec<&Node> {
        self.walk(h, false)
    }

    /// The node and all its descendants including previous versions of files, parents
    /// first: every node whose key a share must carry.
    pub fn subtree_with_versions(&self, h: &NodeHandle) -> Vec<&Node> {
        self.walk(h, true)
    }

    fn walk(&self, h: &NodeHandle, versions: bool) -> Vec<&Node> {
        let mut out: Vec<&Node> = self.node(h).into_iter().collect();
        let mut i = 0;
        while i < out.len() {
            if versions || out[i].kind.is_container() {
                if let Some(kids) = self.kids(&out[i].handle) {
                    out.extend(kids.iter().filter_map(|k| self.node(k)));
                }
            }
            i += 1;
        }
        out
    }

    /// Whether a node is a previous version of a file (its parent is a file).
    pub fn is_version(&self, h: &NodeHandle) -> bool {
        self.node(h)
            .and_then(|n| n.parent.as_ref())
            .and_then(|p| self.node(p))
            .is_some_and(Node::is_file)
    }

    /// The previous versions of a file, newest first (each the child of the next newer).
    pub fn versions(&self, h: &NodeHandle) -> Vec<&Node> {
        let mut out: Vec<&Node> = Vec::new();
        let mut cur = h.clone();
        while let Some(next) = self
            .kids(&cur)
            .into_iter()
            .flatten()
            .filter_map(|c| self.node(c))
            .filter(|n| n.is_file())
            .max_by_key(|n| (n.ctime, n.handle.clone()))
        {
            // A chain is linear and acyclic; never loop on a broken one.
            if out.iter().any(|n| n.handle == next.handle) || next.handle == *h {
                break;
            }
            cur = next.handle.clone();
            out.push(next);
        }
        out
    }

    pub fn keys(&self) -> &KeyRing {
        &self.keys
    }

    pub fn keys_mut(&mut self) -> &mut KeyRing {
        &mut self.keys
    }

    /// How many nodes the tree has (not only those in memory).
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn get(&self, h: &NodeHandle) -> Option<&Node> {
        self.node(h)
    }

    pub fn root(&self) -> Option<&Node> {
        self.root.as_ref().and_then(|h| self.node(h))
    }

    pub fn inbox(&self) -> Option<&Node> {
        self.inbox.as_ref().and_then(|h| self.node(h))
    }

    pub fn rubbish(&self) -> Option<&Node> {
        self.rubbish.as_ref().and_then(|h| self.node(h))
    }

    /// Children of a folder (or root), ordered by name, then creation time, then handle. A
    /// file has none: what hangs below it are its previous versions ([`Self::versions`]).
    pub fn children(&self, h: &NodeHandle) -> Vec<&Node> {
        if self.node(h).is_some_and(Node::is_file) {
            return Vec::new();
        }
        let mut v: Vec<&Node> = self
            .kids(h)
            .into_iter()
            .flatten()
            .filter_map(|c| self.node(c))
            .collect();
        v.sort_by(|a, b| {
            (a.name.as_str(), a.ctime, &a.handle).cmp(&(b.name.as_str(), b.ctime, &b.handle))
        });
        v
    }

    /// The child of `parent` called `name`. With duplicate names, the oldest one (then the
    /// lowest handle) wins, deterministically.
    pub fn child_by_name(&self, parent: &NodeHandle, name: &str) -> Option<&Node> {
        self.kids(parent)?
            .iter()
            .filter_map(|c| self.node(c))
            .filter(|n| n.name == name)
            .min_by(|a, b| (a.ctime, &a.handle).cmp(&(b.ctime, &b.handle)))
    }

    /// The child of `parent` that the local file name `local` stands for: the one called
    /// [`unescape_name`]`(local)`, else (for a name too long to be a local file name, shown
    /// shortened) the one whose [`escape_name`] is `local`. The same choice among duplicates
    /// as [`Tree::child_by_name`].
    ///
    /// [`unescape_name`]: crate::local::names::unescape_name
    /// [`escape_name`]: crate::local::names::escape_name
    pub fn child_by_local_name(&self, parent: &NodeHandle, local: &str) -> Option<&Node> {
        use crate::local::names::{escape_name, is_shortened, unescape_name};
        if let Some(n) = self.child_by_name(parent, &unescape_name(local)) {
            return Some(n);
        }
        if !is_shortened(local) {
            return None;
        }
        self.kids(parent)?
            .iter()
            .filter_map(|c| self.node(c))
            .filter(|n| escape_name(&n.name) == local)
            .min_by(|a, b| (a.ctime, &a.handle).cmp(&(b.ctime, &b.handle)))
    }

    /// The MEGA name for the local file name `local` in `parent`: the real name of the child
    /// it stands for (so a shortened long name goes back to the long one), else
    /// `unescape_name(local)`.
    pub fn remote_name(&self, parent: &NodeHandle, local: &str) -> String {
        match self.child_by_local_name(parent, local) {
            Some(n) => n.name.clone(),
            None => crate::local::names::unescape_name(local),
        }
    }

    /// Resolves a `/`-separated path below `start` (`.` and empty components are skipped,
    /// `..` goes up).
    pub fn resolve_from(&self, start: &NodeHandle, path: &str) -> Result<&Node, TreeError> {
        let mut cur = self
            .node(start)
            .ok_or_else(|| TreeError::NotFound(path.to_string()))?;
        for comp in path.split('/') {
            match comp {
                "" | "." => {}
                ".." => {
                    if let Some(p) = cur.parent.as_ref().and_then(|p| self.node(p)) {
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
        let mut cur = self.node(h);
        let mut top = None;
        while let Some(n) = cur {
            if n.parent.is_none() {
                top = Some(n);
                break;
            }
            parts.push(n.name.as_str());
            cur = n.parent.as_ref().and_then(|p| self.node(p));
        }
        parts.reverse();
        let rest = parts.join("/");
        match top {
            Some(t) if t.kind == NodeKind::Root => format!("/{rest}"),
            Some(t) if t.inshare.is_some() => format!("//Shared/{}/{rest}", self.sharer_name(t)),
            Some(t) => format!("//{}/{rest}", t.name),
            None => match cur_top_inshare(self, h) {
                Some(share) => {
                    let inner = self.path_of_below(&share.handle, h);
                    format!("//Shared/{}/{}", self.sharer_name(share), inner)
                }
                None => format!("?/{rest}"),
            },
        }
    }

    /// How a share's owner is shown in paths: the e-mail address, else the handle.
    pub fn sharer_name(&self, share: &Node) -> String {
        let owner = share.inshare.as_ref().map_or("", |s| s.owner.as_str());
        self.email_of(owner).unwrap_or(owner).to_string()
    }

    /// `root name/…/node` from an ancestor `top` down to `h`.
    fn path_of_below(&self, top: &NodeHandle, h: &NodeHandle) -> String {
        let mut parts = Vec::new();
        let mut cur = self.node(h);
        while let Some(n) = cur {
            parts.push(n.name.as_str());
            if n.handle == *top {
                break;
            }
            cur = n.parent.as_ref().and_then(|p| self.node(p));
        }
        parts.reverse();
        parts.join("/")
    }

    /// Nodes that could not be decrypted (of those in memory: a tree served from the cache
    /// decrypts the others when it reads them, with the keys known then).
    pub fn undecryptable(&self) -> impl Iterator<Item = &Node> {
        self.nodes
            .values()
            .into_iter()
            .filter(|n| n.undecryptable.is_some())
    }

    /// All nodes, in no particular order. A tree served from the cache reads every one.
    pub fn iter(&self) -> impl Iterator<Item = &Node> {
        let Some(b) = &self.backing else {
            return self.nodes.values().into_iter();
        };
        let mut seen: HashSet<NodeHandle> = HashSet::new();
        let mut out = Vec::with_capacity(self.count);
        let handles = b.all().into_iter().chain(
            self.nodes
                .values()
                .into_iter()
                .map(|n| n.handle.clone())
                .collect::<Vec<_>>(),
        );
        for h in handles {
            if let Some(n) = self.node(&h) {
                if seen.insert(h) {
                    out.push(n);
                }
            }
        }
        out.into_iter()
    }

    /// Forgets the changes of a tree that is not written to a cache. A tree served from the
    /// cache forgets them only once committed ([`committed`](Self::committed)).
    pub fn forget_changes(&mut self) {
        if self.backing.is_none() {
            self.dirty.clear();
        }
    }

    /// Adds the nodes of a snapshot to an empty tree in memory: [`insert`](Self::insert)
    /// without what only a change needs (a handle seen twice goes through it).
    fn build(&mut self, nodes: Vec<Node>) {
        self.nodes.reserve(nodes.len());
        for node in nodes {
            let h = node.handle.clone();
            if self.nodes.contains(&h) {
                self.insert(node);
                continue;
            }
            self.generation += 1;
            self.count += 1;
            if node.inshare.is_some() {
                self.inshare_roots.insert(h.clone());
            }
            self.listing_changed(node.parent.as_ref());
            self.link(&node);
            self.nodes.insert(h, node);
        }
    }

    /// Remembers `h` as the root of its kind (nothing for files and folders).
    fn set_root(&mut self, kind: NodeKind, h: &NodeHandle) {
        let slot = match kind {
            NodeKind::Root => &mut self.root,
            NodeKind::Inbox => &mut self.inbox,
            NodeKind::Rubbish => &mut self.rubbish,
            NodeKind::File | NodeKind::Folder => return,
        };
        *slot = Some(h.clone());
    }

    /// Records a node that is in no child list yet: as a root, or in its parent's list.
    fn link(&mut self, node: &Node) {
        let h = &node.handle;
        self.set_root(node.kind, h);
        if let Some(p) = &node.parent {
            match self.children.get_mut(p) {
                Some(list) => list.push(h.clone()),
                None => self.children.insert(p.clone(), vec![h.clone()]),
            }
        }
    }

    /// Inserts or replaces a node, keeping the children index right.
    pub fn insert(&mut self, node: Node) {
        self.generation += 1;
        let h = node.handle.clone();
        self.touch(&h);
        self.absent.remove(&h);
        if node.inshare.is_some() {
            self.inshare_roots.insert(h.clone());
        } else if !self.inshare_roots.is_empty() {
            self.inshare_roots.remove(&h);
        }
        // Served from the cache, the lists this changes must be in memory (and complete)
        // before they are changed.
        let old_parent = self.node(&h).map(|old| old.parent.clone());
        // Its name may have changed too: both listings count as changed.
        self.listing_changed(node.parent.as_ref());
        if let Some(Some(old)) = &old_parent {
            if Some(old) != node.parent.as_ref() {
                self.listing_changed(Some(&old.clone()));
            }
        }
        if self.backing.is_some() {
            for p in [old_parent.clone().flatten(), node.parent.clone()]
                .iter()
                .flatten()
            {
                self.kids(p);
            }
        }
        // A node not in the tree (or leaving its parent) is in no children list: no need to
        // look for it in its new parent's (which made building a wide folder quadratic).
        match &old_parent {
            None => self.count += 1,
            Some(old) if *old != node.parent => self.unlink_child(old.as_ref(), &h),
            Some(Some(_)) => {
                // Same parent: the index already has it.
                self.nodes.insert(h, node);
                return;
            }
            Some(None) => {}
        }
        debug_assert!(
            node.parent
                .as_ref()
                .is_none_or(|p| self.children.get(p).is_none_or(|list| !list.contains(&h))),
            "{h} listed twice"
        );
        self.link(&node);
        self.nodes.insert(h, node);
    }

    fn unlink_child(&mut self, parent: Option<&NodeHandle>, h: &NodeHandle) {
        if let Some(list) = parent.and_then(|p| self.children.get_mut(p)) {
            list.retain(|c| c != h);
        }
    }

    /// Removes a node and its whole subtree; returns the removed nodes (top first).
    pub fn remove_subtree(&mut self, h: &NodeHandle) -> Vec<Node> {
        let Some(top) = self.node(h) else {
            return Vec::new();
        };
        let parent = top.parent.clone();
        // Everything below, read from the cache if need be, before anything is changed.
        let mut order = vec![h.clone()];
        let mut i = 0;
        while i < order.len() {
            if let Some(kids) = self.kids(&order[i]) {
                order.extend(kids.iter().cloned());
            }
            i += 1;
        }
        for x in &order {
            self.node(x);
        }
        if let Some(p) = &parent {
            self.kids(p);
        }
        self.generation += 1;
        self.unlink_child(parent.as_ref(), h);
        self.listing_changed(parent.as_ref());
        let mut out = Vec::new();
        for x in order {
            self.listing_changed(Some(&x));
            if self.backing.is_some() {
                // Served from the file: an empty list, not none, so that a node put back
                // (the `t` of a move brings the subtree again) gets exactly what comes back
                // and the file's older list of it is never read. Trimmed like any list.
                self.children.insert(x.clone(), Vec::new());
            } else {
                self.children.remove(&x);
            }
            self.inshare_roots.remove(&x);
            self.touch(&x);
            if let Some(n) = self.nodes.remove(&x) {
                self.count = self.count.saturating_sub(1);
                out.push(n);
            }
        }
        out
    }

    /// Sets a node's new parent locally (after a successful move).
    pub fn reparent(&mut self, h: &NodeHandle, to: &NodeHandle) {
        if let Some(mut n) = self.node(h).cloned() {
            n.parent = Some(to.clone());
            self.insert(n);
        }
    }

    /// A node about to change in place: counted as a change of the tree and marked for the
    /// cache; `None` if the node is unknown.
    fn changing(&mut self, h: &NodeHandle) -> Option<&mut Node> {
        let parent = self.node(h)?.parent.clone();
        self.generation += 1;
        self.listing_changed(parent.as_ref());
        self.touch(h);
        self.nodes.get_mut(h)
    }

    /// Replaces a file's attribute list (`fa` packet); false if the node is unknown.
    pub fn set_file_attrs(&mut self, h: &NodeHandle, fa: &str) -> bool {
        let Some(n) = self.changing(h) else {
            return false;
        };
        n.fa = Some(fa.to_string()).filter(|fa| !fa.is_empty());
        true
    }

    /// Re-decrypts a node's attributes from an encrypted blob (after `a` or a `u` packet);
    /// false if the node is unknown.
    pub fn set_encrypted_attrs(&mut self, h: &NodeHandle, at: &str) -> bool {
        let Some(n) = self.changing(h) else {
            return false;
        };
        let Some(key) = n.key.clone() else {
            return false;
        };
        match decode_attrs(&key, at) {
            Some(d) => {
                n.name = d.name;
                n.attrs = at.to_string();
                n.mtime = d.fingerprint.map_or(n.ctime, |f| f.mtime);
                n.fingerprint = d.fingerprint;
                n.mode = d.mode;
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
}

/// Decrypts nodes on every core (unwrapping a key and decrypting attributes is independent
/// per node), in their order.
fn decrypt_all(raw: Vec<RawNode>, keys: &KeyRing) -> Result<Vec<Node>, TreeError> {
    const PER_THREAD_MIN: usize = 4096;
    // Asked only for work worth splitting: `available_parallelism` reads the cgroup's files
    // (a few system calls), and a lookup of one node read from the cache comes through here.
    let threads = if raw.len() < 2 * PER_THREAD_MIN {
        1
    } else {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(raw.len() / PER_THREAD_MIN)
            .max(1)
    };
    if threads == 1 {
        return raw
            .into_iter()
            .map(|v| node::decrypt_owned(v, keys))
            .collect();
    }
    let per = raw.len().div_ceil(threads);
    let mut parts = Vec::with_capacity(threads);
    let mut rest = raw;
    while rest.len() > per {
        let tail = rest.split_off(per);
        parts.push(rest);
        rest = tail;
    }
    parts.push(rest);
    std::thread::scope(|s| {
        let running: Vec<_> = parts
            .into_iter()
            .map(|part| {
                s.spawn(move || {
                    part.into_iter()
                        .map(|v| node::decrypt_owned(v, keys))
                        .collect::<Result<Vec<_>, _>>()
                })
            })
            .collect();
        let mut out = Vec::new();
        for p in running {
            let nodes = p
                .join()
                .map_err(|_| TreeError::Malformed("node decryption panicked".into()))??;
            out.extend(nodes);
        }
        Ok(out)
    })
}

/// The top-level incoming share above `h` (a share root whose parent we do not have).
fn cur_top_inshare<'a>(tree: &'a NodeTree, h: &NodeHandle) -> Option<&'a Node> {
    let mut cur = tree.node(h);
    let mut found = None;
    while let Some(n) = cur {
        if n.inshare.is_some() {
            found = Some(n);
        }
        cur = n.parent.as_ref().and_then(|p| tree.node(p));
    }
    found
}
