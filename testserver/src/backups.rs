//! Backups and sync registration (`MEGA-BACKUPS-TRUST.md` §1): the Backup Centre's records
//! (`sp` registers or updates one, `sphb` stores a heartbeat, `sr` removes one, `sf` lists an
//! account's records of all its devices) and the Vault's write protection (`vw:1`).
//!
//! Content-blind, as the real service: `l` (the local path) and `e` (the name) are encrypted
//! under the user's master key and kept as given; the `sds` node attribute travels inside
//! the node's encrypted attributes. Records belong to one account; another account's id is
//! "not found", as is an unknown one.

use rusqlite::{params, OptionalExtension};
use serde_json::{json, Map, Value};

use crate::commands::{db, err, i, s, valid_b64, CmdResult, Ctx, Session};
use crate::crypto;
use crate::store::{Node, Queries, Result};

/// Records one account may have (the real limit is not published; a guard against a client
/// that registers in a loop).
const MAX_RECORDS: i64 = 1000;
/// The longest `l`/`e` accepted (base64 of an encrypted path or name).
const MAX_TLV_B64: usize = 8192;

/// Record storage, for a connection or a transaction.
pub(crate) trait BackupQueries: Queries {
    fn backup(&self, user: &str, id: &str) -> Result<Option<Value>> {
        let text: Option<String> = self
            .conn()
            .query_row(
                "SELECT rec FROM backups WHERE user = ?1 AND id = ?2",
                params![user, id],
                |r| r.get(0),
            )
            .optional()?;
        Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
    }

    fn put_backup(&self, user: &str, id: &str, rec: &Value) -> Result<()> {
        self.conn().execute(
            "INSERT INTO backups (user, id, rec) VALUES (?1, ?2, ?3)
             ON CONFLICT (user, id) DO UPDATE SET rec = ?3",
            params![user, id, rec.to_string()],
        )?;
        Ok(())
    }

    fn delete_backup(&self, user: &str, id: &str) -> Result<bool> {
        Ok(self.conn().execute(
            "DELETE FROM backups WHERE user = ?1 AND id = ?2",
            params![user, id],
        )? > 0)
    }

    fn backups_of(&self, user: &str) -> Result<Vec<Value>> {
        let mut st = self
            .conn()
            .prepare("SELECT rec FROM backups WHERE user = ?1 ORDER BY rowid")?;
        let v = st
            .query_map([user], |r| r.get::<_, String>(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(v.iter()
            .filter_map(|t| serde_json::from_str(t).ok())
            .collect())
    }

    fn count_backups(&self, user: &str) -> Result<i64> {
        Ok(self.conn().query_row(
            "SELECT COUNT(*) FROM backups WHERE user = ?1",
            [user],
            |r| r.get(0),
        )?)
    }
}

impl<T: Queries + ?Sized> BackupQueries for T {}

/// An integer field within `lo..=hi`, if present; `Err` if present and not.
fn int_in(cmd: &Value, k: &str, lo: i64, hi: i64) -> std::result::Result<Option<i64>, i64> {
    match cmd.get(k) {
        None => Ok(None),
        Some(_) => match i(cmd, k) {
            Some(v) if (lo..=hi).contains(&v) => Ok(Some(v)),
            _ => Err(err::EARGS),
        },
    }
}

impl Ctx<'_> {
    /// `sp`: without `id` registers a new record (the server picks the id); with one,
    /// updates the fields present. Answers the id.
    pub(crate) fn sp(&self, cmd: &Value, sess: &Session) -> CmdResult {
        let user = &sess.user.handle;
        let mut rec = match s(cmd, "id") {
            Some(id) => db(self.db.backup(user, id))?.ok_or(err::ENOENT)?,
            None => {
                // A new record needs its type, its remote root and its device.
                if cmd.get("t").is_none() || cmd.get("h").is_none() || cmd.get("d").is_none() {
                    return Err(err::EARGS);
                }
                if db(self.db.count_backups(user))? >= MAX_RECORDS {
                    return Err(err::ETOOMANY);
                }
                let id = crypto::b64e(&crypto::random_bytes::<8>());
                // `dua`: the registering client's user agent, as the real service lists it.
                json!({"id": id, "s": 0, "ss": 0, "dua": sess.agent})
            }
        };
        if let Some(t) = int_in(cmd, "t", 0, 5)? {
            rec["t"] = json!(t);
        }
        if let Some(h) = cmd.get("h") {
            let h = h.as_str().ok_or(err::EARGS)?;
            let n = self.node_for(sess, Some(h), crate::shares::OWNER)?;
            if n.kind == crate::store::FILE {
                return Err(err::EARGS);
            }
            rec["h"] = json!(h);
        }
        for k in ["l", "e"] {
            if let Some(v) = cmd.get(k) {
                let v = v.as_str().filter(|v| valid_b64(v, MAX_TLV_B64));
                rec[k] = json!(v.ok_or(err::EARGS)?);
            }
        }
        if let Some(d) = cmd.get("d") {
            let d = d
                .as_str()
                .filter(|d| {
                    !d.is_empty() && d.len() <= 64 && d.bytes().all(|b| b.is_ascii_graphic())
                })
                .ok_or(err::EARGS)?;
            rec["d"] = json!(d);
        }
        if let Some(dr) = cmd.get("dr") {
            let dr = dr.as_str().filter(|d| d.len() == 11 && valid_b64(d, 11));
            rec["dr"] = json!(dr.ok_or(err::EARGS)?);
        }
        if let Some(st) = int_in(cmd, "s", 0, 8)? {
            rec["s"] = json!(st);
        }
        if let Some(ss) = int_in(cmd, "ss", 0, 1 << 20)? {
            rec["ss"] = json!(ss);
        }
        let id = rec["id"].as_str().unwrap_or_default().to_string();
        db(self.db.put_backup(user, &id, &rec))?;
        Ok(json!(id))
    }

    /// `sphb`: a heartbeat of a registered record; `hb.ts` is when it arrived.
    pub(crate) fn sphb(&self, cmd: &Value, sess: &Session) -> CmdResult {
        let user = &sess.user.handle;
        let id = s(cmd, "id").ok_or(err::EARGS)?;
        let mut rec = db(self.db.backup(user, id))?.ok_or(err::ENOENT)?;
        let mut hb = Map::new();
        hb.insert("ts".into(), json!(crate::store::now()));
        hb.insert(
            "s".into(),
            json!(int_in(cmd, "s", 0, 255)?.ok_or(err::EARGS)?),
        );
        if let Some(p) = int_in(cmd, "p", 0, 100)? {
            hb.insert("p".into(), json!(p));
        }
        for k in ["qu", "qd"] {
            hb.insert(
                k.into(),
                json!(int_in(cmd, k, 0, u32::MAX.into())?.unwrap_or(0)),
            );
        }
        if let Some(lts) = int_in(cmd, "lts", 0, i64::MAX)? {
            hb.insert("lts".into(), json!(lts));
        }
        if let Some(lh) = s(cmd, "lh") {
            if !valid_b64(lh, 8) {
                return Err(err::EARGS);
            }
            hb.insert("lh".into(), json!(lh));
        }
        rec["hb"] = Value::Object(hb);
        db(self.db.put_backup(user, id, &rec))?;
        Ok(json!(0))
    }

    /// `sr`: removes a record (the Vault folders stay).
    pub(crate) fn sr(&self, cmd: &Value, sess: &Session) -> CmdResult {
        let id = s(cmd, "id").ok_or(err::EARGS)?;
        if !db(self.db.delete_backup(&sess.user.handle, id))? {
            return Err(err::ENOENT);
        }
        Ok(json!(0))
    }

    /// `sf`: every record of the account, all devices.
    pub(crate) fn sf(&self, sess: &Session) -> CmdResult {
        Ok(Value::Array(db(self.db.backups_of(&sess.user.handle))?))
    }

    /// Whether `n` is in its account's Vault (or is it): its top ancestor is a Vault root.
    pub(crate) fn in_vault(&self, n: &Node) -> std::result::Result<bool, i64> {
        Ok(self
            .lineage(n)?
            .last()
            .is_some_and(|top| top.kind == crate::store::INBOX))
    }

    /// The Vault is read-only to ordinary writes: a `p`, `m`, `d` or `a` touching a node in
    /// it needs `vw:1` (the SDK sends it only for its own backup work).
    pub(crate) fn vault_guard(&self, cmd: &Value, nodes: &[&Node]) -> std::result::Result<(), i64> {
        if i(cmd, "vw") == Some(1) {
            return Ok(());
        }
        for n in nodes {
            if self.in_vault(n)? {
                return Err(err::EACCESS);
            }
        }
        Ok(())
    }
}
