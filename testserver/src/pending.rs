//! Pending shares (`MEGA-KEYS-SHARES-VERSIONS.md` §3.4, §4.4, §4.6): a folder shared with
//! someone who is not a contact (an account, or an address without one), which waits on the
//! contact request the share sent (its `p` is that request's handle). The owner's `f` lists it
//! in `ps` (with the request in `opc`), its packets carry `p` instead of `u`. When the invitee
//! accepts the request (`upca`, after making an account if needed), every pending share on it
//! becomes a share: the owner gets an `s` packet with `u` and `op` (the pending share it
//! replaces), the invitee the share and its subtree (the key still has to come from the
//! owner, by pending keys). Denied or cancelled, the pending shares end (`s2` to the owner
//! without `r`). A pending share is ended like any other (`s2` without `r`, naming the
//! address).

use rusqlite::params;
use serde_json::{json, Value};

use crate::commands::{db, err, Ctx, Session};
use crate::shares::{ShareQueries, UserShare, FULL, READ};
use crate::store::{Node, Queries, Result, User};

/// One pending share.
#[derive(Debug, Clone)]
pub(crate) struct PendingShare {
    /// The pending contact's handle (`p`).
    pub id: String,
    pub node: String,
    pub owner: String,
    pub email: String,
    pub access: i64,
    pub ts: i64,
}

pub(crate) trait PendingQueries: Queries {
    fn pending_shares_where(&self, clause: &str, arg: &str) -> Result<Vec<PendingShare>> {
        let mut st = self.conn().prepare(&format!(
            "SELECT id, node, owner, email, access, ts FROM pending_shares WHERE {clause}
             ORDER BY rowid"
        ))?;
        let v = st
            .query_map([arg], |r| {
                Ok(PendingShare {
                    id: r.get(0)?,
                    node: r.get(1)?,
                    owner: r.get(2)?,
                    email: r.get(3)?,
                    access: r.get(4)?,
                    ts: r.get(5)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(v)
    }

    fn put_pending_share(&self, p: &PendingShare) -> Result<()> {
        self.conn().execute(
            "INSERT INTO pending_shares (id, node, owner, email, access, ts)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (node, email) DO UPDATE SET access = ?5",
            params![p.id, p.node, p.owner, p.email, p.access, p.ts],
        )?;
        Ok(())
    }

    fn delete_pending_share(&self, node: &str, email: &str) -> Result<bool> {
        Ok(self.conn().execute(
            "DELETE FROM pending_shares WHERE node = ?1 AND email = ?2",
            params![node, email],
        )? > 0)
    }
}

impl<T: Queries + ?Sized> PendingQueries for T {}

impl Ctx<'_> {
    /// `s2` to an e-mail address without an account: a pending share (or, without `r`, its
    /// end).
    pub(crate) fn s2_pending(
        &self,
        cmd: &Value,
        sess: &Session,
        node: &Node,
        email: &str,
        access: Option<i64>,
    ) -> std::result::Result<(), i64> {
        let me = &sess.user.handle;
        let email = email.trim().to_lowercase();
        let existing = db(self.db.pending_shares_where("node = ?1", &node.handle))?
            .into_iter()
            .find(|p| p.email == email);
        let Some(r) = access else {
            let p = existing.ok_or(err::ENOENT)?;
            db(self.db.delete_pending_share(&node.handle, &email))?;
            return self.emit(
                me,
                Self::packet(
                    "s2",
                    cmd,
                    json!({"n": node.handle, "o": me, "p": p.id, "ou": me}),
                ),
            );
        };
        if !(READ..=FULL).contains(&r) {
            return Err(err::EARGS);
        }
        let id = match &existing {
            Some(e) => e.id.clone(),
            None => self.invitation_for_share(cmd, &sess.user, &email)?.id,
        };
        let p = PendingShare {
            id,
            node: node.handle.clone(),
            owner: me.clone(),
            email,
            access: r,
            ts: existing.as_ref().map_or_else(crate::store::now, |e| e.ts),
        };
        db(self.db.put_pending_share(&p))?;
        self.emit(
            me,
            Self::packet(
                "s2",
                cmd,
                json!({"n": node.handle, "o": me, "p": p.id, "r": r, "ts": p.ts, "ou": me}),
            ),
        )
    }

    /// `ps` and `opc` of the owner's `f`: its pending shares and the pending contacts.
    pub(crate) fn f_pending(
        &self,
        sess: &Session,
    ) -> std::result::Result<(Vec<Value>, Vec<Value>), i64> {
        let pending = db(self
            .db
            .pending_shares_where("owner = ?1", &sess.user.handle))?;
        let ps = pending
            .iter()
            .map(|p| json!({"h": p.node, "p": p.id, "r": p.access, "ts": p.ts}))
            .collect();
        let mut opc: Vec<Value> = Vec::new();
        for p in &pending {
            if !opc.iter().any(|o| o["p"] == json!(p.id)) {
                opc.push(
                    json!({"p": p.id, "e": sess.user.email, "m": p.email, "ts": p.ts, "uts": p.ts}),
                );
            }
        }
        Ok((ps, opc))
    }

    /// The invitee accepted request `id` of `owner`: its pending shares become shares.
    pub(crate) fn activate_pending_shares(
        &self,
        cmd: &Value,
        owner: &User,
        target: &User,
        id: &str,
    ) -> std::result::Result<(), i64> {
        let pending = db(self.db.pending_shares_where("owner = ?1", &owner.handle))?;
        for p in pending
            .iter()
            .filter(|p| p.id == id && p.email == target.email)
        {
            db(self.db.put_user_share(&UserShare {
                node: p.node.clone(),
                owner: owner.handle.clone(),
                target: target.handle.clone(),
                access: p.access,
                ts: p.ts,
                key: String::new(),
            }))?;
            db(self.db.delete_pending_share(&p.node, &p.email))?;
            self.emit(
                &owner.handle,
                Self::packet(
                    "s",
                    cmd,
                    json!({"n": p.node, "o": owner.handle, "u": target.handle, "r": p.access,
                           "op": p.id, "ts": p.ts, "ou": target.handle}),
                ),
            )?;
            self.deliver_share(cmd, owner, target, &p.node, p.access, p.ts, "")?;
        }
        Ok(())
    }

    /// A request denied, ignored or cancelled: the shares pending on it end.
    pub(crate) fn drop_pending_shares_of(
        &self,
        cmd: &Value,
        i: &crate::contacts::Invitation,
    ) -> std::result::Result<(), i64> {
        let pending = db(self.db.pending_shares_where("owner = ?1", &i.from))?;
        for p in pending.iter().filter(|p| p.id == i.id) {
            db(self.db.delete_pending_share(&p.node, &p.email))?;
            self.emit(
                &i.from,
                Self::packet(
                    "s2",
                    cmd,
                    json!({"n": p.node, "o": i.from, "p": p.id, "ou": i.from}),
                ),
            )?;
        }
        Ok(())
    }
}
