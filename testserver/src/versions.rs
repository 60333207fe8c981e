//! File versions (`MEGA-KEYS-SHARES-VERSIONS.md` §6). A previous version is a file whose
//! parent is the next newer version: `p` with `ov` makes the superseded file a child of the
//! new one (versioning on) or deletes it and gives its own older versions to the new node
//! (versioning off: `vb: 0`, or no `vb` and `^!dv` = "1"). Versions appear only in `f2`, in
//! `f` replies and in `t` packets alike, never in `f`: clients that do not know versions
//! (megajs, go-mega, mega.py, mega-rs) would otherwise file them under the folder or crash.
//!
//! Access (inferred: the SDK lets a read-write member upload with `ov`, and says the API
//! applies the versioning setting; MEGA's help says read-write members add and change files,
//! only full access deletes): `ov` must name a current file in the target folder; the setting
//! that decides is the owner's (a member's `vb` is ignored); a member without full access
//! always keeps the old content as a previous version, whatever any setting says.
//!
//! Chosen where the sources are silent (recorded in `doc/` of the client too): a chain keeps
//! at most [`MAX_VERSIONS`] previous versions, the oldest go first; a superseded file leaves
//! its folder with a `d` packet and comes back in the `t` packet's `f2` under the new node;
//! `d` with `v: 1` removes one version and re-links the rest (`d` then `t` with the
//! survivors); `dv` drops every previous version of the account.

use std::collections::HashSet;

use serde_json::{json, Value};

use crate::attrs::AttrQueries;
use crate::commands::{db, err, i, CmdResult, Ctx, Session};
use crate::store::{Node, Queries, FILE};

/// The most previous versions one file keeps (the SDK's test of the real service expects a
/// chain of about a hundred; the exact limit is not published).
pub(crate) const MAX_VERSIONS: usize = 100;

/// Up to this many nodes rendered, each one's share keys are looked up on its own.
const FEW_NODES: usize = 256;

impl Ctx<'_> {
    /// For each node, whether it is a previous version (its parent is a file).
    pub(crate) fn version_flags(&self, nodes: &[Node]) -> Result<Vec<bool>, i64> {
        let files: HashSet<&str> = nodes
            .iter()
            .filter(|n| n.kind == FILE)
            .map(|n| n.handle.as_str())
            .collect();
        let listed: HashSet<&str> = nodes.iter().map(|n| n.handle.as_str()).collect();
        nodes
            .iter()
            .map(|n| {
                if listed.contains(n.parent.as_str()) {
                    Ok(files.contains(n.parent.as_str()))
                } else {
                    self.is_version(n)
                }
            })
            .collect()
    }

    /// Node objects as `viewer` gets them, split into current nodes (`f`) and previous
    /// versions (`f2`).
    pub(crate) fn split_versions_for(
        &self,
        nodes: &[Node],
        viewer: &str,
    ) -> Result<(Vec<Value>, Vec<Value>), i64> {
        let (mut f, mut f2) = (Vec::new(), Vec::new());
        self.for_each_rendered(nodes, viewer, |v, version| {
            if version { &mut f2 } else { &mut f }.push(v)
        })?;
        Ok((f, f2))
    }

    /// Each node object as `viewer` gets it, in order, with whether it is a previous
    /// version; one at a time, so a caller can write them out without keeping them.
    pub(crate) fn for_each_rendered(
        &self,
        nodes: &[Node],
        viewer: &str,
        mut each: impl FnMut(Value, bool),
    ) -> Result<(), i64> {
        // Which of the viewer's nodes have share keys: for a few nodes (a `p`, a move) one
        // index seek each; for many (`f`) the account's whole set at once, which reads every
        // node of the account (a `p` did that too: each grew with the account).
        let keyed: std::collections::HashSet<String> = if nodes.len() <= FEW_NODES {
            let mut keyed = std::collections::HashSet::new();
            for n in nodes.iter().filter(|n| n.owner == viewer) {
                if db(self.db.has_share_keys(&n.handle))? {
                    keyed.insert(n.handle.clone());
                }
            }
            keyed
        } else {
            db(self.db.nodes_with_share_keys(viewer))?
        };
        for (n, version) in nodes.iter().zip(self.version_flags(nodes)?) {
            let known = (n.owner == viewer).then(|| keyed.contains(&n.handle));
            each(self.render_known(n, viewer, known)?, version);
        }
        Ok(())
    }

    /// Whether a node is a previous version (its parent is a file).
    pub(crate) fn is_version(&self, n: &Node) -> Result<bool, i64> {
        if n.kind != FILE || n.parent.is_empty() {
            return Ok(false);
        }
        Ok(db(self.db.node(&n.parent))?.is_some_and(|p| p.kind == FILE))
    }

    /// A `t` packet for nodes as `viewer` gets them, versions in `f2`; `ou` is the user who
    /// made the change.
    pub(crate) fn tree_packet(
        &self,
        cmd: &Value,
        ou: &str,
        viewer: &str,
        nodes: &[Node],
    ) -> CmdResult {
        let (f, f2) = self.split_versions_for(nodes, viewer)?;
        let mut t = json!({"f": f});
        if !f2.is_empty() {
            t["f2"] = json!(f2);
        }
        Ok(Self::packet("t", cmd, json!({"t": t, "ou": ou})))
    }

    /// Whether a `p` into `parent` keeps superseded files as versions. The setting that counts
    /// is that of the account whose tree holds the files: its owner's `vb` if given, else
    /// the owner's `^!dv`. A member of a share follows the owner's `^!dv` (its own `vb` and
    /// setting do not decide for someone else's files), and one without full access can add
    /// a version but never make the old content disappear: the superseded file always stays
    /// as a previous version.
    pub(crate) fn versioning_on(
        &self,
        cmd: &Value,
        sess: &Session,
        parent: &Node,
    ) -> Result<bool, i64> {
        if parent.owner == sess.user.handle {
            return match i(cmd, "vb") {
                Some(v) => Ok(v != 0),
                None => Ok(!db(self.db.versions_disabled(&sess.user.handle))?),
            };
        }
        if self
            .access(&sess.user.handle, parent)?
            .unwrap_or(crate::shares::READ)
            < crate::shares::FULL
        {
            return Ok(true);
        }
        Ok(!db(self.db.versions_disabled(&parent.owner))?)
    }

    /// The file `ov` names, checked: a current file in `parent` (the folder the new version
    /// goes to; a file elsewhere is never moved or versioned from there) that the session
    /// may change.
    pub(crate) fn superseded(&self, sess: &Session, ov: &str, parent: &Node) -> Result<Node, i64> {
        let old = self.node_for(sess, Some(ov), crate::shares::WRITE)?;
        if old.kind != FILE || self.is_version(&old)? || old.parent != parent.handle {
            return Err(err::EARGS);
        }
        Ok(old)
    }

    /// Makes `old` a previous version of `new` (or, with versioning off, deletes it and
    /// hands its versions to `new`); returns the `d` packets to emit before the `t`.
    pub(crate) fn supersede(
        &self,
        cmd: &Value,
        sess: &Session,
        new: &Node,
        old: &Node,
        keep: bool,
    ) -> Result<Vec<Value>, i64> {
        let user = &sess.user.handle;
        let mut packets = vec![Self::packet("d", cmd, json!({"n": old.handle, "ou": user}))];
        if keep {
            db(self.db.set_parent(&old.handle, &new.handle))?;
        } else {
            for child in db(self.db.children(&old.handle))? {
                db(self.db.set_parent(&child.handle, &new.handle))?;
            }
            self.delete_quietly(std::slice::from_ref(old))?;
        }
        // The chain is linear: the subtree of the new node is its versions, newest first.
        let chain = db(self.db.subtree(&new.handle))?;
        if let Some(oldest_kept) = chain.get(MAX_VERSIONS + 1) {
            let dropped = db(self.db.subtree(&oldest_kept.handle))?;
            self.delete_quietly(&dropped)?;
            packets.push(Self::packet(
                "d",
                cmd,
                json!({"n": oldest_kept.handle, "ou": user}),
            ));
        }
        Ok(packets)
    }

    /// Deletes nodes; their blobs go once the command committed.
    fn delete_quietly(&self, nodes: &[Node]) -> Result<(), i64> {
        let orphaned = db(self.state.store.delete_nodes(self.db, nodes))?;
        self.effects_blobs(orphaned);
        Ok(())
    }

    /// `d` with `v: 1`: removes one file of a version chain and keeps the others: the next
    /// older version takes its place (current, if the current one went).
    pub(crate) fn delete_one_version(&self, cmd: &Value, sess: &Session, node: &Node) -> CmdResult {
        let user = &sess.user.handle;
        let viewers = self.viewers(node)?;
        let older = db(self.db.children(&node.handle))?;
        for c in &older {
            db(self.db.set_parent(&c.handle, &node.parent))?;
        }
        self.delete_quietly(std::slice::from_ref(node))?;
        let mut survivors = Vec::new();
        for c in &older {
            survivors.extend(db(self.db.subtree(&c.handle))?);
        }
        self.emit_to(&viewers, |v| {
            let mut packets = vec![Self::packet(
                "d",
                cmd,
                json!({"n": node.handle, "ou": user}),
            )];
            if !survivors.is_empty() {
                packets.push(self.tree_packet(cmd, user, v, &survivors)?);
            }
            Ok(packets)
        })?;
        Ok(json!(0))
    }

    /// `dv`: deletes every previous version in the account.
    pub(crate) fn dv(&self, cmd: &Value, sess: &Session) -> CmdResult {
        let user = &sess.user.handle;
        let nodes = db(self.db.nodes_of(user))?;
        let files: HashSet<&str> = nodes
            .iter()
            .filter(|n| n.kind == FILE)
            .map(|n| n.handle.as_str())
            .collect();
        // The newest previous version of each current file; its subtree is the rest.
        let tops: Vec<&Node> = nodes
            .iter()
            .filter(|n| n.kind == FILE && files.contains(n.parent.as_str()))
            .filter(|n| {
                nodes
                    .iter()
                    .find(|p| p.handle == n.parent)
                    .is_some_and(|p| !files.contains(p.parent.as_str()))
            })
            .collect();
        for top in tops {
            // Told to everybody who sees the file (recipients of a share above it too).
            let viewers = self.viewers(top)?;
            let sub = db(self.db.subtree(&top.handle))?;
            self.delete_quietly(&sub)?;
            let d = Self::packet("d", cmd, json!({"n": top.handle, "ou": user}));
            self.emit_to(&viewers, |_| Ok(vec![d.clone()]))?;
        }
        Ok(json!(0))
    }
}
