//! Durable state: accounts, sessions, nodes, the per-account event log, public links, upload
//! and download slots in SQLite (`DATA/mega.sqlite`); file contents as ciphertext blobs under
//! `DATA/blobs/`, in-progress uploads under `DATA/uploads/`. A restart loses nothing.
//!
//! The store is content-blind like the real server: it holds only ciphertext, encrypted
//! attributes and wrapped keys. One connection behind a mutex; every method is a short
//! transaction and no lock is held across I/O on the network.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use rusqlite::{params, Connection, OptionalExtension};
use serde_json::{json, Map, Value};

/// Node types (`t`).
pub const FILE: i64 = 0;
pub const FOLDER: i64 = 1;
pub const ROOT: i64 = 2;
pub const INBOX: i64 = 3;
pub const RUBBISH: i64 = 4;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

pub type Result<T> = std::result::Result<T, StoreError>;

#[derive(Debug, Clone)]
pub struct User {
    pub handle: String,
    pub email: String,
    pub version: i64,
    /// v1: the 8-byte e-mail hash; v2: SHA-256(auth key)[..16].
    pub verifier: Vec<u8>,
    pub salt: Option<Vec<u8>>,
    pub k: String,
    pub privk: String,
    pub pubk: String,
    pub ts: String,
    pub name: String,
    pub totp_secret: Option<String>,
    pub quota: i64,
    pub root: String,
    pub inbox: String,
    pub rubbish: String,
    pub since: i64,
}

#[derive(Debug, Clone)]
pub struct Node {
    pub handle: String,
    pub owner: String,
    pub parent: String,
    pub kind: i64,
    pub attrs: String,
    pub key: String,
    pub size: i64,
    pub ts: i64,
    pub blob: Option<String>,
}

impl Node {
    /// The node object as it appears in `f` replies and `t` packets.
    pub fn to_json(&self) -> Value {
        self.to_json_keyed(&format!("{}:{}", self.owner, self.key))
    }

    /// The node object with a given `k` list (folder links show keys under the share key).
    pub fn to_json_keyed(&self, k: &str) -> Value {
        let mut m = Map::new();
        m.insert("h".into(), json!(self.handle));
        m.insert("p".into(), json!(self.parent));
        m.insert("u".into(), json!(self.owner));
        m.insert("t".into(), json!(self.kind));
        m.insert("a".into(), json!(self.attrs));
        if self.kind == FILE || self.kind == FOLDER {
            m.insert("k".into(), json!(k));
        }
        if self.kind == FILE {
            m.insert("s".into(), json!(self.size));
        }
        m.insert("ts".into(), json!(self.ts));
        Value::Object(m)
    }
}

#[derive(Debug, Clone)]
pub struct Upload {
    pub id: String,
    pub user: String,
    pub size: i64,
    pub version: i64,
    /// Received byte ranges `[start, end)`, merged and sorted.
    pub ranges: Vec<(i64, i64)>,
}

pub struct Store {
    conn: Mutex<Connection>,
    dir: PathBuf,
}

const SCHEMA: &str = r#"
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
CREATE TABLE IF NOT EXISTS users (
  handle TEXT PRIMARY KEY, email TEXT UNIQUE NOT NULL, version INTEGER NOT NULL,
  verifier BLOB NOT NULL, salt BLOB, k TEXT NOT NULL, privk TEXT NOT NULL, pubk TEXT NOT NULL,
  ts TEXT NOT NULL, name TEXT NOT NULL, totp_secret TEXT, quota INTEGER NOT NULL,
  root TEXT NOT NULL, inbox TEXT NOT NULL, rubbish TEXT NOT NULL, since INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (
  sid TEXT PRIMARY KEY, user TEXT NOT NULL, sek TEXT NOT NULL, created INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS nodes (
  handle TEXT PRIMARY KEY, owner TEXT NOT NULL, parent TEXT NOT NULL, kind INTEGER NOT NULL,
  attrs TEXT NOT NULL, key TEXT NOT NULL, size INTEGER NOT NULL, ts INTEGER NOT NULL, blob TEXT);
CREATE INDEX IF NOT EXISTS nodes_owner ON nodes(owner);
CREATE INDEX IF NOT EXISTS nodes_parent ON nodes(parent);
CREATE TABLE IF NOT EXISTS events (
  user TEXT NOT NULL, seq INTEGER NOT NULL, packet TEXT NOT NULL, PRIMARY KEY (user, seq));
CREATE TABLE IF NOT EXISTS links (ph TEXT PRIMARY KEY, node TEXT UNIQUE NOT NULL, ts INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS uploads (
  id TEXT PRIMARY KEY, user TEXT NOT NULL, size INTEGER NOT NULL, version INTEGER NOT NULL,
  ranges TEXT NOT NULL, token TEXT UNIQUE, used INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS downloads (id TEXT PRIMARY KEY, blob TEXT NOT NULL, size INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS shares (
  node TEXT PRIMARY KEY, owner TEXT NOT NULL, ok TEXT NOT NULL, ha TEXT NOT NULL, ts INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS share_keys (
  node TEXT NOT NULL, share TEXT NOT NULL, key TEXT NOT NULL, PRIMARY KEY (node, share));
-- Bytes in each account's files, kept by triggers (the quota check at every `u` would
-- otherwise sum over all of an account's nodes); rebuilt from the nodes at every start.
CREATE TABLE IF NOT EXISTS usage (owner TEXT PRIMARY KEY, bytes INTEGER NOT NULL);
CREATE TRIGGER IF NOT EXISTS usage_insert AFTER INSERT ON nodes WHEN NEW.kind = 0 BEGIN
  INSERT INTO usage (owner, bytes) VALUES (NEW.owner, NEW.size)
    ON CONFLICT (owner) DO UPDATE SET bytes = bytes + NEW.size;
END;
CREATE TRIGGER IF NOT EXISTS usage_delete AFTER DELETE ON nodes WHEN OLD.kind = 0 BEGIN
  UPDATE usage SET bytes = bytes - OLD.size WHERE owner = OLD.owner;
END;
CREATE TRIGGER IF NOT EXISTS usage_update AFTER UPDATE OF owner, kind, size ON nodes BEGIN
  UPDATE usage SET bytes = bytes - OLD.size WHERE owner = OLD.owner AND OLD.kind = 0;
  INSERT INTO usage (owner, bytes) SELECT NEW.owner, NEW.size WHERE NEW.kind = 0
    ON CONFLICT (owner) DO UPDATE SET bytes = bytes + NEW.size;
END;
DELETE FROM usage;
INSERT INTO usage (owner, bytes) SELECT owner, SUM(size) FROM nodes WHERE kind = 0 GROUP BY owner;
"#;

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn user_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        handle: r.get(0)?,
        email: r.get(1)?,
        version: r.get(2)?,
        verifier: r.get(3)?,
        salt: r.get(4)?,
        k: r.get(5)?,
        privk: r.get(6)?,
        pubk: r.get(7)?,
        ts: r.get(8)?,
        name: r.get(9)?,
        totp_secret: r.get(10)?,
        quota: r.get(11)?,
        root: r.get(12)?,
        inbox: r.get(13)?,
        rubbish: r.get(14)?,
        since: r.get(15)?,
    })
}

const USER_COLS: &str = "handle, email, version, verifier, salt, k, privk, pubk, ts, name, \
                         totp_secret, quota, root, inbox, rubbish, since";
const NODE_COLS: &str = "handle, owner, parent, kind, attrs, key, size, ts, blob";

fn node_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Node> {
    Ok(Node {
        handle: r.get(0)?,
        owner: r.get(1)?,
        parent: r.get(2)?,
        kind: r.get(3)?,
        attrs: r.get(4)?,
        key: r.get(5)?,
        size: r.get(6)?,
        ts: r.get(7)?,
        blob: r.get(8)?,
    })
}

impl Store {
    /// Opens (creating if needed) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Store> {
        std::fs::create_dir_all(dir.join("blobs"))?;
        std::fs::create_dir_all(dir.join("uploads"))?;
        let conn = Connection::open(dir.join("mega.sqlite"))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.execute_batch(SCHEMA)?;
        Ok(Store {
            conn: Mutex::new(conn),
            dir: dir.to_path_buf(),
        })
    }

    fn db(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock poisons it; the data in SQLite is still consistent.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn blob_path(&self, blob: &str) -> PathBuf {
        self.dir.join("blobs").join(blob)
    }

    pub fn upload_path(&self, id: &str) -> PathBuf {
        self.dir.join("uploads").join(id)
    }

    // ---- users and sessions ----

    pub fn insert_user(&self, u: &User) -> Result<()> {
        let mut db = self.db();
        let tx = db.transaction()?;
        tx.execute(
            &format!("INSERT INTO users ({USER_COLS}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16)"),
            params![u.handle, u.email, u.version, u.verifier, u.salt, u.k, u.privk, u.pubk, u.ts,
                    u.name, u.totp_secret, u.quota, u.root, u.inbox, u.rubbish, u.since],
        )?;
        for (h, kind) in [(&u.root, ROOT), (&u.inbox, INBOX), (&u.rubbish, RUBBISH)] {
            tx.execute(
                &format!("INSERT INTO nodes ({NODE_COLS}) VALUES (?1,?2,'',?3,'','',0,?4,NULL)"),
                params![h, u.handle, kind, u.since],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    pub fn user_by_email(&self, email: &str) -> Result<Option<User>> {
        Ok(self
            .db()
            .query_row(
                &format!("SELECT {USER_COLS} FROM users WHERE email = ?1"),
                [email],
                user_from_row,
            )
            .optional()?)
    }

    pub fn user(&self, handle: &str) -> Result<Option<User>> {
        Ok(self
            .db()
            .query_row(
                &format!("SELECT {USER_COLS} FROM users WHERE handle = ?1"),
                [handle],
                user_from_row,
            )
            .optional()?)
    }

    pub fn set_quota(&self, email: &str, quota: i64) -> Result<bool> {
        Ok(self.db().execute(
            "UPDATE users SET quota = ?1 WHERE email = ?2",
            params![quota, email],
        )? > 0)
    }

    pub fn insert_session(&self, sid: &str, user: &str, sek: &str) -> Result<()> {
        self.db().execute(
            "INSERT INTO sessions (sid, user, sek, created) VALUES (?1, ?2, ?3, ?4)",
            params![sid, user, sek, now()],
        )?;
        Ok(())
    }

    /// The user handle and `sek` of a live session.
    pub fn session(&self, sid: &str) -> Result<Option<(String, String)>> {
        Ok(self
            .db()
            .query_row(
                "SELECT user, sek FROM sessions WHERE sid = ?1",
                [sid],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }

    pub fn delete_session(&self, sid: &str) -> Result<()> {
        self.db()
            .execute("DELETE FROM sessions WHERE sid = ?1", [sid])?;
        Ok(())
    }

    // ---- nodes ----

    pub fn node(&self, handle: &str) -> Result<Option<Node>> {
        Ok(self
            .db()
            .query_row(
                &format!("SELECT {NODE_COLS} FROM nodes WHERE handle = ?1"),
                [handle],
                node_from_row,
            )
            .optional()?)
    }

    /// All nodes of an account, parents before children (roots first).
    pub fn nodes_of(&self, owner: &str) -> Result<Vec<Node>> {
        let db = self.db();
        let mut st = db.prepare(&format!(
            "SELECT {NODE_COLS} FROM nodes WHERE owner = ?1 ORDER BY kind DESC, rowid"
        ))?;
        let all: Vec<Node> = st
            .query_map([owner], node_from_row)?
            .collect::<rusqlite::Result<_>>()?;
        // Order so that every parent precedes its children (moves can break rowid order).
        let mut out = Vec::with_capacity(all.len());
        let mut placed = std::collections::HashSet::new();
        let mut pending: Vec<Node> = all;
        while !pending.is_empty() {
            let before = pending.len();
            let mut rest = Vec::new();
            for n in pending {
                if n.parent.is_empty() || placed.contains(&n.parent) {
                    placed.insert(n.handle.clone());
                    out.push(n);
                } else {
                    rest.push(n);
                }
            }
            if rest.len() == before {
                out.extend(rest); // orphans (should not exist): keep, never loop forever
                break;
            }
            pending = rest;
        }
        Ok(out)
    }

    pub fn children(&self, parent: &str) -> Result<Vec<Node>> {
        let db = self.db();
        let mut st = db.prepare(&format!(
            "SELECT {NODE_COLS} FROM nodes WHERE parent = ?1 ORDER BY rowid"
        ))?;
        let v = st
            .query_map([parent], node_from_row)?
            .collect::<rusqlite::Result<_>>()?;
        Ok(v)
    }

    /// The node and all its descendants, parents first.
    pub fn subtree(&self, handle: &str) -> Result<Vec<Node>> {
        // One recursive query (not one per node); by depth, so parents precede children.
        let db = self.db();
        let cols = NODE_COLS
            .split(", ")
            .map(|c| format!("n.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut st = db.prepare(&format!(
            "WITH RECURSIVE sub(h, depth) AS (
                 SELECT handle, 0 FROM nodes WHERE handle = ?1
                 UNION ALL
                 SELECT nodes.handle, sub.depth + 1 FROM nodes JOIN sub ON nodes.parent = sub.h)
             SELECT {cols} FROM sub JOIN nodes n ON n.handle = sub.h ORDER BY sub.depth, n.rowid"
        ))?;
        let v = st
            .query_map([handle], node_from_row)?
            .collect::<rusqlite::Result<_>>()?;
        Ok(v)
    }

    pub fn insert_node(&self, n: &Node) -> Result<()> {
        self.db().execute(
            &format!("INSERT INTO nodes ({NODE_COLS}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9)"),
            params![n.handle, n.owner, n.parent, n.kind, n.attrs, n.key, n.size, n.ts, n.blob],
        )?;
        Ok(())
    }

    pub fn set_parent(&self, handle: &str, parent: &str) -> Result<()> {
        self.db().execute(
            "UPDATE nodes SET parent = ?1 WHERE handle = ?2",
            params![parent, handle],
        )?;
        Ok(())
    }

    pub fn set_attrs(&self, handle: &str, attrs: &str) -> Result<()> {
        self.db().execute(
            "UPDATE nodes SET attrs = ?1 WHERE handle = ?2",
            params![attrs, handle],
        )?;
        Ok(())
    }

    /// Deletes nodes (and their blobs unless another node still refers to them).
    pub fn delete_nodes(&self, nodes: &[Node]) -> Result<()> {
        let mut orphaned = Vec::new();
        {
            let mut db = self.db();
            let tx = db.transaction()?;
            for n in nodes {
                tx.execute("DELETE FROM nodes WHERE handle = ?1", [&n.handle])?;
                tx.execute("DELETE FROM links WHERE node = ?1", [&n.handle])?;
                tx.execute("DELETE FROM shares WHERE node = ?1", [&n.handle])?;
                tx.execute(
                    "DELETE FROM share_keys WHERE node = ?1 OR share = ?1",
                    [&n.handle],
                )?;
            }
            for n in nodes {
                if let Some(b) = &n.blob {
                    let refs: i64 =
                        tx.query_row("SELECT COUNT(*) FROM nodes WHERE blob = ?1", [b], |r| {
                            r.get(0)
                        })?;
                    if refs == 0 {
                        orphaned.push(b.clone());
                    }
                }
            }
            tx.commit()?;
        }
        for b in orphaned {
            let _ = std::fs::remove_file(self.blob_path(&b));
        }
        Ok(())
    }

    /// Bytes, files and folders stored under each root of an account.
    pub fn usage(&self, user: &User) -> Result<(i64, Map<String, Value>)> {
        // One recursive query over all three roots (not one query per node).
        let db = self.db();
        let mut st = db.prepare(
            "WITH RECURSIVE sub(h, root) AS (
                 SELECT handle, handle FROM nodes WHERE handle IN (?1, ?2, ?3)
                 UNION ALL
                 SELECT nodes.handle, sub.root FROM nodes JOIN sub ON nodes.parent = sub.h)
             SELECT sub.root,
                    COALESCE(SUM(CASE WHEN n.kind = 0 THEN n.size ELSE 0 END), 0),
                    COALESCE(SUM(CASE WHEN n.kind = 0 THEN 1 ELSE 0 END), 0),
                    COALESCE(SUM(CASE WHEN n.kind = 0 THEN 0 ELSE 1 END), 0)
             FROM sub JOIN nodes n ON n.handle = sub.h
             WHERE sub.h <> sub.root
             GROUP BY sub.root",
        )?;
        let rows: Vec<(String, i64, i64, i64)> = st
            .query_map(params![user.root, user.inbox, user.rubbish], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })?
            .collect::<rusqlite::Result<_>>()?;
        let mut total = 0;
        let mut per_root = Map::new();
        for root in [&user.root, &user.inbox, &user.rubbish] {
            let (bytes, files, folders) = rows
                .iter()
                .find(|r| &r.0 == root)
                .map_or((0, 0, 0), |r| (r.1, r.2, r.3));
            total += bytes;
            per_root.insert(root.clone(), json!([bytes, files, folders, 0, 0]));
        }
        Ok((total, per_root))
    }

    /// Bytes stored in an account's files (the quota check at `u` and `p`).
    pub fn used_bytes(&self, user: &str) -> Result<i64> {
        Ok(self.db().query_row(
            "SELECT COALESCE((SELECT bytes FROM usage WHERE owner = ?1), 0)",
            [user],
            |r| r.get(0),
        )?)
    }

    // ---- events ----

    /// Appends action packets to an account's log in one transaction, so that a poll never
    /// sees part of a group (a move's `d` without its `t`); returns the last sequence number.
    pub fn append_events(&self, user: &str, packets: &[Value]) -> Result<i64> {
        let mut db = self.db();
        let tx = db.transaction()?;
        let mut seq: i64 = tx.query_row(
            "SELECT COALESCE(MAX(seq), 0) FROM events WHERE user = ?1",
            [user],
            |r| r.get(0),
        )?;
        for p in packets {
            seq += 1;
            tx.execute(
                "INSERT INTO events (user, seq, packet) VALUES (?1, ?2, ?3)",
                params![user, seq, p.to_string()],
            )?;
        }
        tx.commit()?;
        Ok(seq)
    }

    pub fn last_seq(&self, user: &str) -> Result<i64> {
        Ok(self.db().query_row(
            "SELECT COALESCE(MAX(seq), 0) FROM events WHERE user = ?1",
            [user],
            |r| r.get(0),
        )?)
    }

    pub fn events_after(&self, user: &str, seq: i64, limit: i64) -> Result<Vec<(i64, Value)>> {
        let db = self.db();
        let mut st = db.prepare(
            "SELECT seq, packet FROM events WHERE user = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
        )?;
        let rows = st.query_map(params![user, seq, limit], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (s, p) = row?;
            out.push((s, serde_json::from_str(&p).unwrap_or(Value::Null)));
        }
        Ok(out)
    }

    // ---- links ----

    pub fn link_for_node(&self, node: &str) -> Result<Option<String>> {
        Ok(self
            .db()
            .query_row("SELECT ph FROM links WHERE node = ?1", [node], |r| r.get(0))
            .optional()?)
    }

    pub fn node_for_link(&self, ph: &str) -> Result<Option<String>> {
        Ok(self
            .db()
            .query_row("SELECT node FROM links WHERE ph = ?1", [ph], |r| r.get(0))
            .optional()?)
    }

    pub fn insert_link(&self, ph: &str, node: &str) -> Result<()> {
        self.db().execute(
            "INSERT INTO links (ph, node, ts) VALUES (?1, ?2, ?3)",
            params![ph, node, now()],
        )?;
        Ok(())
    }

    pub fn delete_link(&self, node: &str) -> Result<()> {
        self.db()
            .execute("DELETE FROM links WHERE node = ?1", [node])?;
        Ok(())
    }

    // ---- shares (folder exports) ----

    /// Records (or replaces) an outgoing share: the share key and its handle auth, both
    /// encrypted by the owner's master key (opaque to the server).
    pub fn put_share(&self, node: &str, owner: &str, ok: &str, ha: &str) -> Result<()> {
        self.db().execute(
            "INSERT OR REPLACE INTO shares (node, owner, ok, ha, ts) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![node, owner, ok, ha, now()],
        )?;
        Ok(())
    }

    pub fn delete_share(&self, node: &str) -> Result<()> {
        let db = self.db();
        db.execute("DELETE FROM shares WHERE node = ?1", [node])?;
        db.execute("DELETE FROM share_keys WHERE share = ?1", [node])?;
        Ok(())
    }

    pub fn is_shared(&self, node: &str) -> Result<bool> {
        Ok(self
            .db()
            .query_row("SELECT 1 FROM shares WHERE node = ?1", [node], |_| Ok(()))
            .optional()?
            .is_some())
    }

    /// `(node, ok, ha)` of every outgoing share of an account.
    pub fn shares_of(&self, owner: &str) -> Result<Vec<(String, String, String)>> {
        let db = self.db();
        let mut st = db.prepare("SELECT node, ok, ha FROM shares WHERE owner = ?1 ORDER BY ts")?;
        let v = st
            .query_map([owner], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(v)
    }

    /// Stores a node's key wrapped with a share's key (from a `cr` element).
    pub fn put_share_key(&self, node: &str, share: &str, key: &str) -> Result<()> {
        self.db().execute(
            "INSERT OR REPLACE INTO share_keys (node, share, key) VALUES (?1, ?2, ?3)",
            params![node, share, key],
        )?;
        Ok(())
    }

    pub fn share_key(&self, node: &str, share: &str) -> Result<Option<String>> {
        Ok(self
            .db()
            .query_row(
                "SELECT key FROM share_keys WHERE node = ?1 AND share = ?2",
                [node, share],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// True if `node` is `ancestor` or lies below it.
    pub fn is_within(&self, node: &str, ancestor: &str) -> Result<bool> {
        let mut cur = Some(node.to_string());
        let mut hops = 0;
        while let Some(h) = cur {
            if h == ancestor {
                return Ok(true);
            }
            hops += 1;
            if hops > 10_000 {
                return Ok(false); // a cycle would be a bug; never loop forever
            }
            cur = self.node(&h)?.map(|n| n.parent).filter(|p| !p.is_empty());
        }
        Ok(false)
    }

    // ---- uploads and downloads ----

    pub fn insert_upload(&self, id: &str, user: &str, size: i64, version: i64) -> Result<()> {
        std::fs::File::create(self.upload_path(id))?;
        self.db().execute(
            "INSERT INTO uploads (id, user, size, version, ranges) VALUES (?1, ?2, ?3, ?4, '[]')",
            params![id, user, size, version],
        )?;
        Ok(())
    }

    pub fn upload(&self, id: &str) -> Result<Option<Upload>> {
        Ok(self
            .db()
            .query_row(
                "SELECT id, user, size, version, ranges FROM uploads WHERE id = ?1 AND token IS NULL",
                [id],
                |r| {
                    let ranges: String = r.get(4)?;
                    Ok(Upload {
                        id: r.get(0)?,
                        user: r.get(1)?,
                        size: r.get(2)?,
                        version: r.get(3)?,
                        ranges: serde_json::from_str(&ranges).unwrap_or_default(),
                    })
                },
            )
            .optional()?)
    }

    pub fn set_upload_ranges(&self, id: &str, ranges: &[(i64, i64)]) -> Result<()> {
        self.db().execute(
            "UPDATE uploads SET ranges = ?1 WHERE id = ?2",
            params![serde_json::to_string(ranges).unwrap_or_default(), id],
        )?;
        Ok(())
    }

    /// Marks an upload complete: its data moves to the blob store under the upload id.
    pub fn complete_upload(&self, id: &str, token: &str) -> Result<()> {
        std::fs::rename(self.upload_path(id), self.blob_path(id))?;
        self.db().execute(
            "UPDATE uploads SET token = ?1 WHERE id = ?2",
            params![token, id],
        )?;
        Ok(())
    }

    /// Consumes a completion token: `(upload id = blob name, size, user)`.
    pub fn take_token(&self, token: &str) -> Result<Option<(String, i64, String)>> {
        let db = self.db();
        let row: Option<(String, i64, String)> = db
            .query_row(
                "SELECT id, size, user FROM uploads WHERE token = ?1 AND used = 0",
                [token],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        if row.is_some() {
            db.execute("UPDATE uploads SET used = 1 WHERE token = ?1", [token])?;
        }
        Ok(row)
    }

    pub fn insert_download(&self, id: &str, blob: &str, size: i64) -> Result<()> {
        self.db().execute(
            "INSERT INTO downloads (id, blob, size) VALUES (?1, ?2, ?3)",
            params![id, blob, size],
        )?;
        Ok(())
    }

    pub fn download(&self, id: &str) -> Result<Option<(String, i64)>> {
        Ok(self
            .db()
            .query_row(
                "SELECT blob, size FROM downloads WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(handle: &str, owner: &str, parent: &str, kind: i64, size: i64) -> Node {
        Node {
            handle: handle.into(),
            owner: owner.into(),
            parent: parent.into(),
            kind,
            attrs: String::new(),
            key: String::new(),
            size,
            ts: 0,
            blob: None,
        }
    }

    #[test]
    fn subtree_is_parents_first_and_usage_counts_per_root() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let user = User {
            handle: "U".into(),
            email: "u@e".into(),
            version: 2,
            verifier: vec![],
            salt: None,
            k: String::new(),
            privk: String::new(),
            pubk: String::new(),
            ts: String::new(),
            name: String::new(),
            totp_secret: None,
            quota: 1000,
            root: "R".into(),
            inbox: "I".into(),
            rubbish: "B".into(),
            since: 0,
        };
        store.insert_user(&user).unwrap();
        let node = |h: &str, p: &str, kind: i64, size: i64| node(h, "U", p, kind, size);
        // Inserted children-first on purpose: the result must still be parents-first.
        store.insert_node(&node("A", "R", FOLDER, 0)).unwrap();
        store.insert_node(&node("C", "B2", FILE, 7)).unwrap();
        store.insert_node(&node("B2", "A", FOLDER, 0)).unwrap();
        store.insert_node(&node("F", "A", FILE, 5)).unwrap();
        store.insert_node(&node("T", "B", FILE, 3)).unwrap();
        let sub: Vec<String> = store
            .subtree("A")
            .unwrap()
            .into_iter()
            .map(|n| n.handle)
            .collect();
        assert_eq!(sub[0], "A");
        let pos = |h: &str| sub.iter().position(|x| x == h).unwrap();
        assert!(pos("B2") < pos("C"));
        assert_eq!(sub.len(), 4);
        assert!(store.subtree("nope").unwrap().is_empty());
        let (total, per_root) = store.usage(&user).unwrap();
        assert_eq!(total, 15);
        assert_eq!(per_root["R"], json!([12, 2, 2, 0, 0]));
        assert_eq!(per_root["B"], json!([3, 1, 0, 0, 0]));
        assert_eq!(per_root["I"], json!([0, 0, 0, 0, 0]));
    }

    #[test]
    fn used_bytes_follow_inserts_deletes_and_updates_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let node = |h: &str, owner: &str, kind: i64, size: i64| node(h, owner, "R", kind, size);
        store.insert_node(&node("A", "U", FILE, 10)).unwrap();
        store.insert_node(&node("B", "U", FILE, 5)).unwrap();
        store.insert_node(&node("D", "U", FOLDER, 99)).unwrap();
        store.insert_node(&node("C", "V", FILE, 7)).unwrap();
        assert_eq!(store.used_bytes("U").unwrap(), 15);
        assert_eq!(store.used_bytes("V").unwrap(), 7);
        assert_eq!(store.used_bytes("nobody").unwrap(), 0);
        store
            .db()
            .execute("UPDATE nodes SET owner = 'V' WHERE handle = 'B'", [])
            .unwrap();
        assert_eq!(store.used_bytes("U").unwrap(), 10);
        assert_eq!(store.used_bytes("V").unwrap(), 12);
        store
            .db()
            .execute("DELETE FROM nodes WHERE handle IN ('A', 'D')", [])
            .unwrap();
        assert_eq!(store.used_bytes("U").unwrap(), 0);
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.used_bytes("V").unwrap(), 12);
    }

    #[test]
    fn event_groups_are_appended_together_and_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.last_seq("u").unwrap(), 0);
        let last = store
            .append_events("u", &[json!({"a": "d", "m": 1}), json!({"a": "t"})])
            .unwrap();
        assert_eq!(last, 2);
        let got = store.events_after("u", 0, 10).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].1["a"], json!("d"));
        assert_eq!(got[1].1["a"], json!("t"));
        assert_eq!(store.events_after("other", 0, 10).unwrap().len(), 0);
    }
}
