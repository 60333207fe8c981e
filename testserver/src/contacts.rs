//! Contacts and contact requests (`MEGA-KEYS-SHARES-VERSIONS.md` §3.3, §3.4): `upc` invites
//! an address (and reminds or cancels), `upca` accepts, denies or ignores an invitation,
//! `ur2` removes a contact. Invitations show in `f` (`opc` to the sender, `ipc` to the
//! invitee, also one whose account is created later) and in packets (`opc`, `ipc`, `upco`,
//! `upci`, `c`); accepted ones make both users contacts (`c: 1` in each other's `u` list).
//!
//! Sharing a folder with someone who is not a contact (an account or just an address) invites
//! them and makes the share pending on that request (`pending`): accepting it turns the
//! share into a real one, denying or cancelling it ends the share.

use rusqlite::{params, OptionalExtension};
use serde_json::{json, Value};

use crate::commands::{db, err, s, CmdResult, Ctx, Session};
use crate::crypto;
use crate::store::{Queries, Result};

/// One contact request.
#[derive(Debug, Clone)]
pub(crate) struct Invitation {
    pub id: String,
    pub from: String,
    pub from_email: String,
    pub to_email: String,
    pub msg: String,
    pub ts: i64,
}

pub(crate) trait ContactQueries: Queries {
    fn set_contact(&self, user: &str, other: &str, visibility: i64) -> Result<()> {
        self.conn().execute(
            "INSERT INTO contacts (user, other, visibility, ts) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (user, other) DO UPDATE SET visibility = ?3",
            params![user, other, visibility, crate::store::now()],
        )?;
        Ok(())
    }

    /// `(other user, visibility)` of every contact of a user.
    fn contacts_of(&self, user: &str) -> Result<Vec<(String, i64)>> {
        let mut st = self
            .conn()
            .prepare("SELECT other, visibility FROM contacts WHERE user = ?1 ORDER BY rowid")?;
        let v = st
            .query_map([user], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(v)
    }

    fn invitations_where(&self, clause: &str, arg: &str) -> Result<Vec<Invitation>> {
        let mut st = self.conn().prepare(&format!(
            "SELECT id, sender, sender_email, email, msg, ts FROM invitations WHERE {clause}
             ORDER BY rowid"
        ))?;
        let v = st
            .query_map([arg], |r| {
                Ok(Invitation {
                    id: r.get(0)?,
                    from: r.get(1)?,
                    from_email: r.get(2)?,
                    to_email: r.get(3)?,
                    msg: r.get(4)?,
                    ts: r.get(5)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(v)
    }

    fn invitation(&self, id: &str) -> Result<Option<Invitation>> {
        Ok(self.invitations_where("id = ?1", id)?.into_iter().next())
    }

    fn put_invitation(&self, i: &Invitation) -> Result<()> {
        self.conn().execute(
            "INSERT INTO invitations (id, sender, sender_email, email, msg, ts)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![i.id, i.from, i.from_email, i.to_email, i.msg, i.ts],
        )?;
        Ok(())
    }

    fn delete_invitation(&self, id: &str) -> Result<()> {
        self.conn()
            .execute("DELETE FROM invitations WHERE id = ?1", [id])?;
        Ok(())
    }

    fn is_contact(&self, user: &str, other: &str) -> Result<bool> {
        Ok(self
            .conn()
            .query_row(
                "SELECT 1 FROM contacts WHERE user = ?1 AND other = ?2 AND visibility = 1",
                params![user, other],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }
}

impl<T: Queries + ?Sized> ContactQueries for T {}

fn opc(i: &Invitation) -> Value {
    json!({"p": i.id, "e": i.from_email, "m": i.to_email, "msg": i.msg, "ts": i.ts, "uts": i.ts, "rts": i.ts})
}

fn ipc(i: &Invitation) -> Value {
    json!({"p": i.id, "m": i.from_email, "msg": i.msg, "ts": i.ts, "uts": i.ts, "ps": 0})
}

impl Ctx<'_> {
    /// `upc`: invite an address (`aa: "a"`), remind (`"r"`) or cancel (`"d"`).
    pub(crate) fn upc(&self, cmd: &Value, sess: &Session) -> CmdResult {
        let me = &sess.user;
        let email = s(cmd, "u").ok_or(err::EARGS)?.trim().to_lowercase();
        if !email.contains('@') || email.len() > 254 || email == me.email {
            return Err(err::EARGS);
        }
        let mine = db(self.db.invitations_where("sender = ?1", &me.handle))?;
        let existing = mine.into_iter().find(|i| i.to_email == email);
        match s(cmd, "aa").unwrap_or("a") {
            "a" => {
                if let Some(u) = db(self.db.user_by_email(&email))? {
                    if db(self.db.is_contact(&me.handle, &u.handle))? {
                        return Err(err::EEXIST);
                    }
                }
                if existing.is_some() {
                    return Err(err::EEXIST);
                }
                let msg = s(cmd, "msg").unwrap_or_default();
                if msg.len() > 4096 {
                    return Err(err::EARGS);
                }
                let i = self.new_invitation(cmd, me, &email, msg)?;
                let mut reply = opc(&i);
                reply.as_object_mut().map(|m| m.remove("rts"));
                Ok(reply)
            }
            "r" => existing.map(|_| json!(0)).ok_or(err::ENOENT),
            "d" => {
                let i = existing.ok_or(err::ENOENT)?;
                db(self.db.delete_invitation(&i.id))?;
                self.drop_pending_shares_of(cmd, &i)?;
                let now = crate::store::now();
                let mut p = opc(&i);
                p["dts"] = json!(now);
                self.emit(&me.handle, Self::packet("opc", cmd, p))?;
                // The invitee's copy goes too (`ipc` with `dts`, as the SDK's `sc_ipc` reads).
                if let Some(u) = db(self.db.user_by_email(&email))? {
                    let mut p = ipc(&i);
                    p["dts"] = json!(now);
                    self.emit(&u.handle, Self::packet("ipc", cmd, p))?;
                }
                Ok(json!(0))
            }
            _ => Err(err::EARGS),
        }
    }

    /// A new contact request from `me` to `email` (`opc` to the sender, `ipc` to the
    /// invitee if it has an account).
    fn new_invitation(
        &self,
        cmd: &Value,
        me: &crate::store::User,
        email: &str,
        msg: &str,
    ) -> std::result::Result<Invitation, i64> {
        let i = Invitation {
            id: crypto::b64e(&crypto::random_bytes::<8>()),
            from: me.handle.clone(),
            from_email: me.email.clone(),
            to_email: email.to_string(),
            msg: msg.to_string(),
            ts: crate::store::now(),
        };
        db(self.db.put_invitation(&i))?;
        self.emit(&me.handle, Self::packet("opc", cmd, opc(&i)))?;
        if let Some(u) = db(self.db.user_by_email(email))? {
            self.emit(&u.handle, Self::packet("ipc", cmd, ipc(&i)))?;
        }
        Ok(i)
    }

    /// The contact request a pending share to `email` waits on: the one `me` already sent,
    /// else a new one (sharing with someone who is not a contact invites them).
    pub(crate) fn invitation_for_share(
        &self,
        cmd: &Value,
        me: &crate::store::User,
        email: &str,
    ) -> std::result::Result<Invitation, i64> {
        let mine = db(self.db.invitations_where("sender = ?1", &me.handle))?;
        match mine.into_iter().find(|i| i.to_email == email) {
            Some(i) => Ok(i),
            None => self.new_invitation(cmd, me, email, ""),
        }
    }

    /// `upca`: the invitee accepts (`aa: "a"`), denies (`"d"`) or ignores (`"i"`) an
    /// invitation; accepted, the two are contacts.
    pub(crate) fn upca(&self, cmd: &Value, sess: &Session) -> CmdResult {
        let me = &sess.user;
        let i = db(self.db.invitation(s(cmd, "p").ok_or(err::EARGS)?))?
            .filter(|i| i.to_email == me.email)
            .ok_or(err::ENOENT)?;
        let state = match s(cmd, "aa") {
            Some("a") => 2,
            Some("d") => 3,
            Some("i") => 1,
            _ => return Err(err::EARGS),
        };
        db(self.db.delete_invitation(&i.id))?;
        let now = crate::store::now();
        self.emit(
            &me.handle,
            Self::packet(
                "upci",
                cmd,
                json!({"p": i.id, "uts": now, "s": state, "m": i.from_email}),
            ),
        )?;
        self.emit(
            &i.from,
            Self::packet(
                "upco",
                cmd,
                json!({"p": i.id, "uts": now, "s": state, "m": me.email}),
            ),
        )?;
        if state == 2 {
            let from = db(self.db.user(&i.from))?.ok_or(err::ENOENT)?;
            db(self.db.set_contact(&me.handle, &from.handle, 1))?;
            db(self.db.set_contact(&from.handle, &me.handle, 1))?;
            let obj =
                |u: &crate::store::User| json!({"u": u.handle, "c": 1, "m": u.email, "ts": now});
            self.emit(
                &me.handle,
                Self::packet("c", cmd, json!({"u": [obj(&from)], "ou": me.handle})),
            )?;
            self.emit(
                &from.handle,
                Self::packet("c", cmd, json!({"u": [obj(me)], "ou": me.handle})),
            )?;
            // The folders shared while the request was pending become shares.
            self.activate_pending_shares(cmd, &from, me, &i.id)?;
        } else {
            self.drop_pending_shares_of(cmd, &i)?;
        }
        Ok(json!(0))
    }

    /// `ur2`: removes a contact (both become hidden, `c: 0`).
    pub(crate) fn ur2(&self, cmd: &Value, sess: &Session) -> CmdResult {
        let me = &sess.user;
        let other = self
            .user_by_handle_or_email(s(cmd, "u").ok_or(err::EARGS)?)?
            .ok_or(err::ENOENT)?;
        if !db(self.db.is_contact(&me.handle, &other.handle))? {
            return Err(err::ENOENT);
        }
        db(self.db.set_contact(&me.handle, &other.handle, 0))?;
        db(self.db.set_contact(&other.handle, &me.handle, 0))?;
        let obj = |u: &crate::store::User| json!({"u": u.handle, "c": 0, "m": u.email});
        self.emit(
            &me.handle,
            Self::packet("c", cmd, json!({"u": [obj(&other)], "ou": me.handle})),
        )?;
        self.emit(
            &other.handle,
            Self::packet("c", cmd, json!({"u": [obj(me)], "ou": me.handle})),
        )?;
        Ok(json!({"u": other.handle, "m": other.email}))
    }

    /// The invitations of `f`: `opc` (sent) and `ipc` (received, by address).
    pub(crate) fn f_invitations(
        &self,
        sess: &Session,
    ) -> std::result::Result<(Vec<Value>, Vec<Value>), i64> {
        let sent = db(self.db.invitations_where("sender = ?1", &sess.user.handle))?;
        let received = db(self.db.invitations_where("email = ?1", &sess.user.email))?;
        Ok((
            sent.iter().map(opc).collect(),
            received.iter().map(ipc).collect(),
        ))
    }

    /// Contacts made by invitations, for `f`'s `u` list: `(user, visibility)`.
    pub(crate) fn f_contacts(
        &self,
        sess: &Session,
    ) -> std::result::Result<Vec<(String, i64)>, i64> {
        db(self.db.contacts_of(&sess.user.handle))
    }
}
