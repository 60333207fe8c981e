//! Folders shared between users (`MEGA-KEYS-SHARES-VERSIONS.md` §3–§5): `s2` to a user (by
//! handle or e-mail) with an access level, the recipient's view of the share (its `f` and
//! action packets), access enforced on every command, node keys composed per viewer, pending
//! keys (`pk`) and public keys (`uk`).
//!
//! Chosen where the sources are silent, and recorded in the client's `doc/SEMANTICS.md`:
//! * Sharing with a contact shares at once. Sharing with anyone else (an account that is not a
//!   contact, or an address without one) invites them (a contact request) and makes a pending
//!   share on it (`pending`), which their accepting turns into a share.
//! * Access levels (§4.1): 0 read-only (download only), 1 read-write (create, rename, new
//!   versions), 2 full (also move and delete); the owner has 3. A recipient may always leave a
//!   share (`d` of its root).
//! * A node keeps the account whose tree holds it (quota, isolation) and its creator (`u`,
//!   and whose master key wraps its key). Its `k` as served to a viewer: the viewer's own pair
//!   if the viewer created it, then one `<share>:<key>` pair for each share above it that the
//!   viewer owns or received and that has a key for it (§4.7).
//! * Changes inside a share reach the owner and every recipient of a share above the node,
//!   each with nodes composed for them; the recipient's share root carries `su`, `r`, `sts`.
//! * `pk` entries are kept per recipient in order; a fetch answers all of them with `d` = the
//!   id of the last, and acknowledging `d` drops every entry up to it.

use rusqlite::{params, OptionalExtension};
use serde_json::{json, Map, Value};

use crate::commands::{db, err, s, CmdResult, Ctx, Session};
use crate::contacts::ContactQueries;
use crate::crypto;
use crate::store::{Node, Queries, Result, User, FOLDER};

/// Access levels.
pub(crate) const READ: i64 = 0;
pub(crate) const WRITE: i64 = 1;
pub(crate) const FULL: i64 = 2;
pub(crate) const OWNER: i64 = 3;

/// One user share: a folder, its owner, the recipient, the access level, since when.
#[derive(Debug, Clone)]
pub(crate) struct UserShare {
    pub node: String,
    pub owner: String,
    pub target: String,
    pub access: i64,
    pub ts: i64,
    /// A legacy sharer's share key for the recipient, RSA-encrypted to its public key (the
    /// recipient's `sk`); empty from key-manager clients, which send keys with `pk`.
    pub key: String,
}

fn share_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<UserShare> {
    Ok(UserShare {
        node: r.get(0)?,
        owner: r.get(1)?,
        target: r.get(2)?,
        access: r.get(3)?,
        ts: r.get(4)?,
        key: r.get(5)?,
    })
}

/// Share and pending-key storage, for a connection or a transaction.
pub(crate) trait ShareQueries: Queries {
    fn put_user_share(&self, s: &UserShare) -> Result<()> {
        self.conn().execute(
            "INSERT INTO user_shares (node, owner, target, access, ts, key)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (node, target) DO UPDATE SET access = ?4,
               key = CASE WHEN ?6 = '' THEN key ELSE ?6 END",
            params![s.node, s.owner, s.target, s.access, s.ts, s.key],
        )?;
        Ok(())
    }

    fn delete_user_share(&self, node: &str, target: &str) -> Result<bool> {
        Ok(self.conn().execute(
            "DELETE FROM user_shares WHERE node = ?1 AND target = ?2",
            params![node, target],
        )? > 0)
    }

    fn shares_where(&self, clause: &str, arg: &str) -> Result<Vec<UserShare>> {
        let mut st = self.conn().prepare(&format!(
            "SELECT node, owner, target, access, ts, key FROM user_shares WHERE {clause} ORDER BY rowid"
        ))?;
        let v = st
            .query_map([arg], share_from_row)?
            .collect::<rusqlite::Result<_>>()?;
        Ok(v)
    }

    /// The recipients of a folder's shares.
    fn shares_on(&self, node: &str) -> Result<Vec<UserShare>> {
        self.shares_where("node = ?1", node)
    }

    /// The shares a user received.
    fn inshares_of(&self, target: &str) -> Result<Vec<UserShare>> {
        self.shares_where("target = ?1", target)
    }

    /// The shares a user made.
    fn outshares_of(&self, owner: &str) -> Result<Vec<UserShare>> {
        self.shares_where("owner = ?1", owner)
    }

    fn push_pending_key(&self, target: &str, sender: &str, node: &str, key: &str) -> Result<()> {
        self.conn().execute(
            "INSERT INTO pending_keys (target, sender, node, key) VALUES (?1, ?2, ?3, ?4)",
            params![target, sender, node, key],
        )?;
        Ok(())
    }

    /// `(id, sender, node, key)` of every key waiting for a user, oldest first.
    fn pending_keys(&self, target: &str) -> Result<Vec<(i64, String, String, String)>> {
        let mut st = self.conn().prepare(
            "SELECT id, sender, node, key FROM pending_keys WHERE target = ?1 ORDER BY id",
        )?;
        let v = st
            .query_map([target], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(v)
    }

    fn drop_pending_keys(&self, target: &str, up_to: i64) -> Result<()> {
        self.conn().execute(
            "DELETE FROM pending_keys WHERE target = ?1 AND id <= ?2",
            params![target, up_to],
        )?;
        Ok(())
    }

    /// Whether two users share anything (either way): they are contacts.
    fn share_peers(&self, a: &str, b: &str) -> Result<bool> {
        Ok(self
            .conn()
            .query_row(
                "SELECT 1 FROM user_shares WHERE (owner = ?1 AND target = ?2)
                 OR (owner = ?2 AND target = ?1) LIMIT 1",
                params![a, b],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// Everybody a user shares with, either way.
    fn peers_of(&self, user: &str) -> Result<Vec<String>> {
        let mut st = self.conn().prepare(
            "SELECT target FROM user_shares WHERE owner = ?1
             UNION SELECT owner FROM user_shares WHERE target = ?1",
        )?;
        let v = st
            .query_map([user], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(v)
    }
}

impl<T: Queries + ?Sized> ShareQueries for T {}

/// A user as it appears in `u` lists and `c` packets.
pub(crate) fn user_object(u: &User) -> Value {
    json!({"u": u.handle, "c": 1, "m": u.email, "ts": u.since})
}

impl Ctx<'_> {
    /// The node and its ancestors, nearest first (bounded: a cycle would be a bug).
    pub(crate) fn lineage(&self, n: &Node) -> std::result::Result<Vec<Node>, i64> {
        let mut out = vec![n.clone()];
        while out.len() < 10_000 {
            let Some(last) = out.last() else { break };
            if last.parent.is_empty() {
                break;
            }
            match db(self.db.node(&last.parent))? {
                Some(p) => out.push(p),
                None => break,
            }
        }
        Ok(out)
    }

    /// The user shares on the node or above it, nearest first.
    fn shares_above(&self, n: &Node) -> std::result::Result<Vec<UserShare>, i64> {
        let mut out = Vec::new();
        for a in self.lineage(n)? {
            out.extend(db(self.db.shares_on(&a.handle))?);
        }
        Ok(out)
    }

    /// A user's access to a node: [`OWNER`] in their own tree, the level of the nearest share
    /// they received above it, or `None`.
    pub(crate) fn access(&self, user: &str, n: &Node) -> std::result::Result<Option<i64>, i64> {
        if n.owner == user {
            return Ok(Some(OWNER));
        }
        Ok(self
            .shares_above(n)?
            .into_iter()
            .find(|s| s.target == user)
            .map(|s| s.access))
    }

    /// A node the session may act on with at least `need`: ENOENT if it cannot see it at all
    /// (no probing of other accounts), EACCESS if its access is too low.
    pub(crate) fn node_for(
        &self,
        sess: &Session,
        h: Option<&str>,
        need: i64,
    ) -> std::result::Result<Node, i64> {
        let h = h.ok_or(err::EARGS)?;
        let n = db(self.db.node(h))?.ok_or(err::ENOENT)?;
        match self.access(&sess.user.handle, &n)? {
            None => Err(err::ENOENT),
            Some(a) if a < need => Err(err::EACCESS),
            Some(_) => Ok(n),
        }
    }

    /// Everybody who sees a node: its account and the recipients of the shares above it.
    pub(crate) fn viewers(&self, n: &Node) -> std::result::Result<Vec<String>, i64> {
        let mut v = vec![n.owner.clone()];
        for s in self.shares_above(n)? {
            if !v.contains(&s.target) {
                v.push(s.target);
            }
        }
        Ok(v)
    }

    /// A node object as `viewer` gets it: `k` with the pairs it can use, and on a share root
    /// it received, the sharer (`su`), the access (`r`) and since when (`sts`).
    ///
    /// The owner sees, after its own pair, one `share:key` pair per share or export above the
    /// node whose key a `cr` supplied, as the real service lists them (`MEGA-FILES-TRANSFERS.md`
    /// §6.5: clients derived from mega.py read an exported folder's key from that pair).
    pub(crate) fn render(&self, n: &Node, viewer: &str) -> std::result::Result<Value, i64> {
        self.render_known(n, viewer, None)
    }

    /// [`render`](Self::render), told whether the node has share keys at all (`f` looks that
    /// up once for the whole tree).
    pub(crate) fn render_known(
        &self,
        n: &Node,
        viewer: &str,
        has_share_keys: Option<bool>,
    ) -> std::result::Result<Value, i64> {
        let mut pairs = Vec::new();
        if n.user() == viewer {
            pairs.push(format!("{viewer}:{}", n.key));
        }
        let own = n.owner == viewer && n.user() == viewer;
        let keyed = match has_share_keys {
            Some(k) => k,
            None if own => db(self.db.has_share_keys(&n.handle))?,
            None => true,
        };
        let shares = if keyed { self.lineage(n)? } else { Vec::new() };
        for a in &shares {
            let visible = a.owner == viewer
                || db(self.db.shares_on(&a.handle))?
                    .iter()
                    .any(|s| s.target == viewer);
            if !visible {
                continue;
            }
            if let Some(k) = db(self.db.share_key(&n.handle, &a.handle))? {
                pairs.push(format!("{}:{k}", a.handle));
            }
        }
        let mut v = n.to_json_keyed(&pairs.join("/"));
        if n.owner != viewer {
            if let Some(s) = db(self.db.shares_on(&n.handle))?
                .into_iter()
                .find(|s| s.target == viewer)
            {
                if let Some(m) = v.as_object_mut() {
                    m.insert("su".into(), json!(s.owner));
                    m.insert("r".into(), json!(s.access));
                    m.insert("sts".into(), json!(s.ts));
                    if !s.key.is_empty() {
                        m.insert("sk".into(), json!(s.key));
                    }
                }
            }
        }
        Ok(v)
    }

    /// Emits packets to every viewer, built for each (nodes composed for them).
    pub(crate) fn emit_to(
        &self,
        viewers: &[String],
        build: impl Fn(&str) -> std::result::Result<Vec<Value>, i64>,
    ) -> std::result::Result<(), i64> {
        for v in viewers {
            let packets = build(v)?;
            if !packets.is_empty() {
                self.emit_all(v, &packets)?;
            }
        }
        Ok(())
    }

    /// The incoming shares of `f`: every received share's subtree (versions in `f2`), the
    /// users involved, and the session's outgoing user shares for `s`.
    #[allow(clippy::type_complexity)]
    pub(crate) fn f_shares(
        &self,
        sess: &Session,
    ) -> std::result::Result<(Vec<Value>, Vec<Value>, Vec<Value>, Vec<Value>), i64> {
        let me = &sess.user.handle;
        let (mut f, mut f2) = (Vec::new(), Vec::new());
        let inshares = db(self.db.inshares_of(me))?;
        for share in &inshares {
            // A share inside another share of ours is delivered with the outer one.
            let root = db(self.db.node(&share.node))?.ok_or(err::EINTERNAL)?;
            let above = self.lineage(&root)?;
            let nested = above
                .iter()
                .skip(1)
                .any(|a| inshares.iter().any(|s| s.node == a.handle));
            if nested {
                continue;
            }
            let nodes = db(self.db.subtree(&root.handle))?;
            let (a, b) = self.split_versions_for(&nodes, me)?;
            f.extend(a);
            f2.extend(b);
        }
        let s: Vec<Value> = db(self.db.outshares_of(me))?
            .iter()
            .map(|s| json!({"h": s.node, "u": s.target, "r": s.access, "ts": s.ts}))
            .collect();
        let mut users = Vec::new();
        for peer in db(self.db.peers_of(me))? {
            if let Some(u) = db(self.db.user(&peer))? {
                users.push(user_object(&u));
            }
        }
        Ok((f, f2, s, users))
    }

    /// `s2` to a user: shares `node` with the user `to` (handle or e-mail) at access `r`, or
    /// with no `r` ends the share. The owner gets an `s2` packet, the recipient an `s` (and,
    /// for a new share, a `t` with the whole subtree and a `c` making them contacts).
    pub(crate) fn s2_user(
        &self,
        cmd: &Value,
        sess: &Session,
        node: &Node,
        target: &Value,
    ) -> std::result::Result<(), i64> {
        let me = &sess.user.handle;
        let to = s(target, "u").ok_or(err::EARGS)?;
        let access = match target.get("r") {
            None | Some(Value::Null) => None,
            Some(Value::String(r)) if r.is_empty() => None,
            Some(r) => Some(
                r.as_i64()
                    .or_else(|| r.as_str().and_then(|s| s.parse().ok()))
                    .filter(|r| (READ..=FULL).contains(r))
                    .ok_or(err::EARGS)?,
            ),
        };
        let user = match self.user_by_handle_or_email(to)? {
            Some(u) => u,
            // An address without an account: a pending share on a contact request.
            None if to.contains('@') => return self.s2_pending(cmd, sess, node, to, access),
            None => return Err(err::ENOENT),
        };
        if user.handle == *me {
            return Err(err::EARGS);
        }
        let existing = db(self.db.shares_on(&node.handle))?
            .into_iter()
            .find(|s| s.target == user.handle);
        // Someone who is not a contact is invited; the share waits for the answer.
        if existing.is_none() && !db(self.db.is_contact(me, &user.handle))? {
            return self.s2_pending(cmd, sess, node, &user.email, access);
        }
        let ts = crate::store::now();
        let Some(r) = access else {
            if existing.is_none() {
                return Err(err::ENOENT);
            }
            db(self.db.delete_user_share(&node.handle, &user.handle))?;
            let gone = json!({"n": node.handle, "o": me, "u": user.handle, "ou": me});
            self.emit(me, Self::packet("s2", cmd, gone.clone()))?;
            self.emit(&user.handle, Self::packet("s", cmd, gone))?;
            return Ok(());
        };
        // The owner key as sent: dummy zeros from key-manager clients, stored as received.
        let (ok, ha) = (s(cmd, "ok"), s(cmd, "ha"));
        if let (Some(ok), Some(ha)) = (ok, ha) {
            if !crate::commands::valid_b64(ok, 24) || !crate::commands::valid_b64(ha, 24) {
                return Err(err::EARGS);
            }
        }
        let key = match s(target, "k") {
            Some(k) if crate::commands::valid_b64(k, 1024) => k.to_string(),
            Some(_) => return Err(err::EARGS),
            None => String::new(),
        };
        db(self.db.put_user_share(&UserShare {
            node: node.handle.clone(),
            owner: me.clone(),
            target: user.handle.clone(),
            access: r,
            ts: existing.as_ref().map_or(ts, |e| e.ts),
            key: key.clone(),
        }))?;
        let mut to_owner = json!({"n": node.handle, "o": me, "u": user.handle, "r": r, "ts": ts});
        if let (Some(ok), Some(ha)) = (ok, ha) {
            to_owner["ok"] = json!(ok);
            to_owner["ha"] = json!(ha);
        }
        self.emit(me, Self::packet("s2", cmd, to_owner))?;
        if existing.is_some() {
            let mut p =
                json!({"n": node.handle, "o": me, "u": user.handle, "r": r, "ts": ts, "ou": me});
            if !key.is_empty() {
                p["k"] = json!(key);
            }
            return self.emit(&user.handle, Self::packet("s", cmd, p));
        }
        self.deliver_share(cmd, &sess.user, &user, &node.handle, r, ts, &key)
    }

    /// A new share reaches its recipient: an `s` packet, then the subtree in a `t` (with
    /// the owner in its `u`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn deliver_share(
        &self,
        cmd: &Value,
        owner: &User,
        target: &User,
        node: &str,
        r: i64,
        ts: i64,
        key: &str,
    ) -> std::result::Result<(), i64> {
        let me = &owner.handle;
        let mut to_target =
            json!({"n": node, "o": me, "u": target.handle, "r": r, "ts": ts, "ou": me});
        if !key.is_empty() {
            to_target["k"] = json!(key);
        }
        let share_packet = Self::packet("s", cmd, to_target);
        let nodes = db(self.db.subtree(node))?;
        let (f, f2) = self.split_versions_for(&nodes, &target.handle)?;
        let mut t = json!({"f": f, "u": [user_object(owner)]});
        if !f2.is_empty() {
            t["f2"] = json!(f2);
        }
        self.emit_all(
            &target.handle,
            &[
                share_packet,
                Self::packet("t", cmd, json!({"t": t, "ou": me})),
            ],
        )
    }

    /// A recipient leaves a share (`d` of the share root it received).
    pub(crate) fn leave_share(&self, cmd: &Value, sess: &Session, node: &Node) -> CmdResult {
        let me = &sess.user.handle;
        db(self.db.delete_user_share(&node.handle, me))?;
        let p = json!({"n": node.handle, "o": node.owner, "u": me, "ou": me});
        self.emit(&node.owner, Self::packet("s", cmd, p.clone()))?;
        self.emit(me, Self::packet("s", cmd, p))?;
        Ok(json!(0))
    }

    /// `uk`: a user's RSA public key, by handle or e-mail.
    pub(crate) fn uk(&self, cmd: &Value) -> CmdResult {
        let u = s(cmd, "u").ok_or(err::EARGS)?;
        let user = self.user_by_handle_or_email(u)?.ok_or(err::ENOENT)?;
        Ok(json!({"u": user.handle, "pubk": user.pubk}))
    }

    /// `pk`: deliver a share key to a user (`u`, `h`, `k`), fetch the keys waiting for us, or
    /// acknowledge them (`d`).
    pub(crate) fn pk(&self, cmd: &Value, sess: &Session) -> CmdResult {
        let me = &sess.user.handle;
        if let Some(d) = s(cmd, "d") {
            let up_to = crate::commands::decode_sn(d).ok_or(err::EARGS)?;
            db(self.db.drop_pending_keys(me, up_to))?;
            return Ok(json!(0));
        }
        if let Some(to) = s(cmd, "u") {
            let node = self.own_node(sess, s(cmd, "h"))?;
            if node.kind != FOLDER {
                return Err(err::EACCESS);
            }
            let key = s(cmd, "k").ok_or(err::EARGS)?;
            if crypto::b64d(key).is_none_or(|k| k.len() != 16) {
                return Err(err::EARGS);
            }
            let user = db(self.db.user(to))?.ok_or(err::ENOENT)?;
            db(self
                .db
                .push_pending_key(&user.handle, me, &node.handle, key))?;
            self.emit(&user.handle, Self::packet("pk", cmd, json!({})))?;
            return Ok(json!(0));
        }
        let waiting = db(self.db.pending_keys(me))?;
        let Some(last) = waiting.last().map(|w| w.0) else {
            return Err(err::ENOENT);
        };
        let mut by_sender: Map<String, Value> = Map::new();
        for (_, sender, node, key) in waiting {
            let entry = by_sender.entry(sender).or_insert_with(|| json!({}));
            entry[node] = json!(key);
        }
        by_sender.insert("d".into(), json!(crate::commands::encode_sn(last)));
        Ok(Value::Object(by_sender))
    }
}
