//! Durable state: accounts, sessions, nodes, the per-account event log, public links, upload
//! and download slots in SQLite (`DATA/mega.sqlite`); file contents as ciphertext blobs under
//! `DATA/blobs/`, in-progress uploads under `DATA/uploads/`. A restart loses nothing.
//!
//! The store is content-blind like the real server: it holds only ciphertext, encrypted
//! attributes and wrapped keys. It is private to the user running the server: the data
//! directory is 0700, the database and every blob 0600, and session ids are stored only as
//! SHA-256 hashes, so reading the database does not hand out a usable session.
//!
//! One connection behind a mutex. Every query is written once, in [`Queries`], for the
//! connection and for transactions alike: [`Store::lock`] for single queries,
//! [`Store::atomic`] for a whole command, which then applies completely or not at all. No lock
//! is held across network I/O.

use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use rusqlite::{params, Connection, OptionalExtension};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

/// Node types (`t`).
/// The `server_settings` row holding [`Limits::event_log`](crate::guard::Limits::event_log).
pub(crate) const EVENT_LOG_SETTING: &str = "event_log";

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
    /// Why the service blocked the account (`whyamiblocked`'s answer), 0 if it is not.
    pub blocked: i64,
    /// Its own transfer allowance in bytes per six hours, as a paid plan has (its downloads
    /// do not count against its address); 0: none (a free account, limited by address).
    pub xfer_quota: i64,
}

#[derive(Debug, Clone)]
pub struct Node {
    pub handle: String,
    /// The account whose tree holds the node (isolation, quota).
    pub owner: String,
    /// The user who created it, if not the owner (a sharee writing into a share): the node's
    /// `u`, and whose master key wraps `key`.
    pub creator: String,
    pub parent: String,
    pub kind: i64,
    pub attrs: String,
    pub key: String,
    pub size: i64,
    pub ts: i64,
    pub blob: Option<String>,
    /// File attributes as listed (`<cluster>:<type>*<handle>` joined by `/`), or empty.
    pub fa: String,
}

impl Node {
    /// The node object as it appears in `f` replies and `t` packets.
    pub fn to_json(&self) -> Value {
        self.to_json_keyed(&format!("{}:{}", self.user(), self.key))
    }

    /// The node's `u`: its creator.
    pub fn user(&self) -> &str {
        if self.creator.is_empty() {
            &self.owner
        } else {
            &self.creator
        }
    }

    /// The node object with a given `k` list (folder links show keys under the share key).
    pub fn to_json_keyed(&self, k: &str) -> Value {
        let mut m = Map::new();
        m.insert("h".into(), json!(self.handle));
        m.insert("p".into(), json!(self.parent));
        m.insert("u".into(), json!(self.user()));
        m.insert("t".into(), json!(self.kind));
        m.insert("a".into(), json!(self.attrs));
        if self.kind == FILE || self.kind == FOLDER {
            m.insert("k".into(), json!(k));
        }
        if self.kind == FILE {
            m.insert("s".into(), json!(self.size));
        }
        m.insert("ts".into(), json!(self.ts));
        if !self.fa.is_empty() {
            m.insert("fa".into(), json!(self.fa));
        }
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
    pub created: i64,
    /// The session (hash) that asked for the slot.
    pub issuer: String,
}

/// One upload URL as the admin report shows it (tests count the bytes a resumed upload
/// sends).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UploadReport {
    pub id: String,
    pub user: String,
    pub size: i64,
    /// Body bytes POSTed to it, duplicates included.
    pub received: i64,
    /// Distinct bytes stored (before completion).
    pub stored: i64,
    pub complete: bool,
}

/// A download slot: the blob, its size, when it was issued and to whom (a session hash, or
/// `link:<ph>` for a public handle, `folder:<ph>` for a folder link).
#[derive(Debug, Clone)]
pub struct Download {
    pub blob: String,
    pub size: i64,
    pub created: i64,
    pub issuer: String,
}

pub struct Store {
    conn: Mutex<Connection>,
    dir: PathBuf,
}

/// The oldest and newest packet of an account's log. Two subqueries, not `SELECT MIN(seq),
/// MAX(seq)`: SQLite answers a lone MIN or MAX from the primary key, but scans every packet of
/// the account for both at once (asked at every poll: each grew with the account's history).
const EVENT_BOUNDS: &str = "SELECT (SELECT MIN(seq) FROM events WHERE user = ?1), \
     (SELECT MAX(seq) FROM events WHERE user = ?1)";

/// An account's open upload slots (asked at every `u`): the index `uploads_open`, not a scan
/// of every upload the server ever took.
const OPEN_UPLOADS: &str =
    "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM uploads WHERE user = ?1 AND used = 0";

/// Whether any node still refers to a blob (one index lookup: see `nodes_blob`).
const BLOB_USED: &str = "SELECT EXISTS (SELECT 1 FROM nodes WHERE blob = ?1)";

const SCHEMA: &str = r#"
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS users (
  handle TEXT PRIMARY KEY, email TEXT UNIQUE NOT NULL, version INTEGER NOT NULL,
  verifier BLOB NOT NULL, salt BLOB, k TEXT NOT NULL, privk TEXT NOT NULL, pubk TEXT NOT NULL,
  ts TEXT NOT NULL, name TEXT NOT NULL, totp_secret TEXT, quota INTEGER NOT NULL,
  root TEXT NOT NULL, inbox TEXT NOT NULL, rubbish TEXT NOT NULL, since INTEGER NOT NULL,
  totp_last INTEGER NOT NULL DEFAULT 0, blocked INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS login_sessions (
  sid_hash TEXT PRIMARY KEY, user TEXT NOT NULL, sek TEXT NOT NULL, created INTEGER NOT NULL,
  last_used INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS nodes (
  handle TEXT PRIMARY KEY, owner TEXT NOT NULL, parent TEXT NOT NULL, kind INTEGER NOT NULL,
  attrs TEXT NOT NULL, key TEXT NOT NULL, size INTEGER NOT NULL, ts INTEGER NOT NULL, blob TEXT,
  creator TEXT NOT NULL DEFAULT '', fa TEXT NOT NULL DEFAULT '');
CREATE INDEX IF NOT EXISTS nodes_owner ON nodes(owner);
-- File attributes (thumbnails, previews): encrypted blobs, content-blind; `fa_slots` are
-- the URLs `ufa` issued (to store one of `size` bytes, or, with size -1, to fetch).
CREATE TABLE IF NOT EXISTS file_attrs (
  handle TEXT PRIMARY KEY, owner TEXT NOT NULL, data BLOB NOT NULL, created INTEGER NOT NULL,
  attached INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS fa_slots (
  id TEXT PRIMARY KEY, user TEXT NOT NULL, size INTEGER NOT NULL, streamed INTEGER NOT NULL,
  created INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS nodes_parent ON nodes(parent);
-- Whether a blob is still used, when nodes are deleted (without it, deleting a folder of
-- 3,000 files in a 100,000-node store took 22 s).
CREATE INDEX IF NOT EXISTS nodes_blob ON nodes(blob);
CREATE TABLE IF NOT EXISTS server_settings (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS events (
  user TEXT NOT NULL, seq INTEGER NOT NULL, packet TEXT NOT NULL, PRIMARY KEY (user, seq));
CREATE TABLE IF NOT EXISTS links (ph TEXT PRIMARY KEY, node TEXT UNIQUE NOT NULL, ts INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS uploads (
  id TEXT PRIMARY KEY, user TEXT NOT NULL, size INTEGER NOT NULL, version INTEGER NOT NULL,
  ranges TEXT NOT NULL, token TEXT UNIQUE, used INTEGER NOT NULL DEFAULT 0,
  created INTEGER NOT NULL DEFAULT 0, issuer TEXT NOT NULL DEFAULT '',
  received INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS uploads_open ON uploads(user, used);
CREATE TABLE IF NOT EXISTS downloads (
  id TEXT PRIMARY KEY, blob TEXT NOT NULL, size INTEGER NOT NULL,
  created INTEGER NOT NULL DEFAULT 0, issuer TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS shares (
  node TEXT PRIMARY KEY, owner TEXT NOT NULL, ok TEXT NOT NULL, ha TEXT NOT NULL, ts INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS user_shares (
  node TEXT NOT NULL, owner TEXT NOT NULL, target TEXT NOT NULL, access INTEGER NOT NULL,
  ts INTEGER NOT NULL, key TEXT NOT NULL DEFAULT '', PRIMARY KEY (node, target));
CREATE INDEX IF NOT EXISTS user_shares_target ON user_shares(target);
CREATE TABLE IF NOT EXISTS contacts (
  user TEXT NOT NULL, other TEXT NOT NULL, visibility INTEGER NOT NULL, ts INTEGER NOT NULL,
  PRIMARY KEY (user, other));
CREATE TABLE IF NOT EXISTS invitations (
  id TEXT PRIMARY KEY, sender TEXT NOT NULL, sender_email TEXT NOT NULL, email TEXT NOT NULL,
  msg TEXT NOT NULL, ts INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS pending_shares (
  id TEXT NOT NULL, node TEXT NOT NULL, owner TEXT NOT NULL, email TEXT NOT NULL,
  access INTEGER NOT NULL, ts INTEGER NOT NULL, PRIMARY KEY (node, email));
CREATE TABLE IF NOT EXISTS pending_keys (
  id INTEGER PRIMARY KEY AUTOINCREMENT, target TEXT NOT NULL, sender TEXT NOT NULL,
  node TEXT NOT NULL, key TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS user_attrs (
  user TEXT NOT NULL, name TEXT NOT NULL, value BLOB NOT NULL, version TEXT NOT NULL,
  PRIMARY KEY (user, name));
CREATE TABLE IF NOT EXISTS backups (
  user TEXT NOT NULL, id TEXT NOT NULL, rec TEXT NOT NULL, PRIMARY KEY (user, id));
CREATE TABLE IF NOT EXISTS share_keys (
  node TEXT NOT NULL, share TEXT NOT NULL, key TEXT NOT NULL, PRIMARY KEY (node, share));
CREATE INDEX IF NOT EXISTS share_keys_share ON share_keys(share);
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

/// Columns added after the first release, for data directories made by it.
const MIGRATIONS: &[(&str, &str, &str)] = &[
    ("users", "totp_last", "INTEGER NOT NULL DEFAULT 0"),
    ("users", "blocked", "INTEGER NOT NULL DEFAULT 0"),
    ("users", "xfer_quota", "INTEGER NOT NULL DEFAULT 0"),
    ("uploads", "created", "INTEGER NOT NULL DEFAULT 0"),
    ("uploads", "issuer", "TEXT NOT NULL DEFAULT ''"),
    ("uploads", "received", "INTEGER NOT NULL DEFAULT 0"),
    ("downloads", "created", "INTEGER NOT NULL DEFAULT 0"),
    ("downloads", "issuer", "TEXT NOT NULL DEFAULT ''"),
    ("nodes", "creator", "TEXT NOT NULL DEFAULT ''"),
    ("user_shares", "key", "TEXT NOT NULL DEFAULT ''"),
    ("links", "ets", "INTEGER NOT NULL DEFAULT 0"),
    ("links", "w", "TEXT NOT NULL DEFAULT ''"),
    ("nodes", "fa", "TEXT NOT NULL DEFAULT ''"),
];

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// How a session id is stored: its SHA-256, hex. The id itself is never written down.
pub fn sid_hash(sid: &str) -> String {
    Sha256::digest(sid.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
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
        blocked: r.get(16)?,
        xfer_quota: r.get(17)?,
    })
}

const USER_COLS: &str = "handle, email, version, verifier, salt, k, privk, pubk, ts, name, \
                         totp_secret, quota, root, inbox, rubbish, since, blocked, xfer_quota";
const NODE_COLS: &str = "handle, owner, parent, kind, attrs, key, size, ts, blob, creator, fa";

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
        creator: r.get(9)?,
        fa: r.get(10)?,
    })
}

/// Creates a directory private to the server's user (0700), or makes an existing one so.
fn private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Creates (or truncates) a file private to the server's user (0600).
pub fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    // The mode given to open() is masked by the umask; make sure.
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    Ok(f)
}

impl Store {
    /// Opens (creating if needed) the store in `dir`, private to the current user.
    pub fn open(dir: &Path) -> Result<Store> {
        private_dir(dir)?;
        private_dir(&dir.join("blobs"))?;
        private_dir(&dir.join("uploads"))?;
        let db_path = dir.join("mega.sqlite");
        if !db_path.exists() {
            private_file(&db_path)?;
        }
        let conn = Connection::open(&db_path)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.execute_batch(SCHEMA)?;
        for (table, column, decl) in MIGRATIONS {
            let present: bool = conn
                .prepare(&format!(
                    "SELECT 1 FROM pragma_table_info('{table}') WHERE name = ?1"
                ))?
                .exists([column])?;
            if !present {
                conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {decl}"))?;
            }
        }
        // The first release kept session ids in plain text: those sessions end here.
        conn.execute_batch("DROP TABLE IF EXISTS sessions")?;
        // SQLite creates the -wal and -shm files with the database's mode; older data
        // directories may have been made with another one.
        for name in ["mega.sqlite", "mega.sqlite-wal", "mega.sqlite-shm"] {
            let p = dir.join(name);
            if p.exists() {
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))?;
            }
        }
        Ok(Store {
            conn: Mutex::new(conn),
            dir: dir.to_path_buf(),
        })
    }

    /// The connection, for single queries (each its own implicit transaction). Do not hold
    /// the guard across `.await`.
    pub fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock poisons it; the data in SQLite is still consistent.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` in one transaction: committed if it returns `Ok`, rolled back otherwise, so a
    /// command that fails changes nothing.
    pub fn atomic<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&Connection) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(StoreError::from)?;
        let out = f(&tx)?;
        tx.commit().map_err(StoreError::from)?;
        Ok(out)
    }

    pub fn blob_path(&self, blob: &str) -> PathBuf {
        self.dir.join("blobs").join(blob)
    }

    pub fn upload_path(&self, id: &str) -> PathBuf {
        self.dir.join("uploads").join(id)
    }

    /// A random secret kept in the database (created once), for values that must look the
    /// same on every request without revealing anything (e.g. salts of unknown accounts).
    pub fn secret(&self) -> Result<Vec<u8>> {
        let db = self.lock();
        if let Some(v) = db
            .query_row("SELECT value FROM meta WHERE key = 'secret'", [], |r| {
                r.get::<_, Vec<u8>>(0)
            })
            .optional()?
        {
            return Ok(v);
        }
        let v = crate::crypto::random_bytes::<32>().to_vec();
        db.execute(
            "INSERT INTO meta (key, value) VALUES ('secret', ?1)",
            params![v],
        )?;
        Ok(v)
    }

    /// Creates the upload file of a new slot (0600) and records the slot.
    pub fn insert_upload(
        &self,
        db: &Connection,
        id: &str,
        user: &str,
        size: i64,
        version: i64,
        issuer: &str,
    ) -> Result<()> {
        private_file(&self.upload_path(id))?;
        db.execute(
            "INSERT INTO uploads (id, user, size, version, ranges, created, issuer)
             VALUES (?1, ?2, ?3, ?4, '[]', ?5, ?6)",
            params![id, user, size, version, now(), issuer],
        )?;
        Ok(())
    }

    /// Marks an upload complete: its data moves to the blob store under the upload id.
    pub fn complete_upload(&self, id: &str, token: &str) -> Result<()> {
        std::fs::rename(self.upload_path(id), self.blob_path(id))?;
        self.lock().execute(
            "UPDATE uploads SET token = ?1 WHERE id = ?2",
            params![token, id],
        )?;
        Ok(())
    }

    /// Removes upload slots older than `max_age` seconds that never completed, with their
    /// files, and completion tokens that were never used; returns how many went.
    pub fn remove_stale_uploads(&self, max_age: i64) -> Result<usize> {
        let cutoff = now() - max_age;
        let ids: Vec<(String, bool)> = {
            let db = self.lock();
            let mut st = db.prepare(
                "SELECT id, token IS NOT NULL FROM uploads WHERE created < ?1 AND used = 0",
            )?;
            let v = st
                .query_map([cutoff], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?;
            v
        };
        for (id, completed) in &ids {
            self.lock()
                .execute("DELETE FROM uploads WHERE id = ?1", [id])?;
            let path = if *completed {
                self.blob_path(id)
            } else {
                self.upload_path(id)
            };
            let _ = std::fs::remove_file(path);
        }
        Ok(ids.len())
    }

    /// Deletes nodes in `db`'s transaction; returns the blobs no node refers to any more,
    /// which the caller removes with [`Store::remove_blobs`] once the transaction committed.
    pub fn delete_nodes(&self, db: &Connection, nodes: &[Node]) -> Result<Vec<String>> {
        let mut orphaned = Vec::new();
        for n in nodes {
            db.execute("DELETE FROM nodes WHERE handle = ?1", [&n.handle])?;
            db.execute("DELETE FROM links WHERE node = ?1", [&n.handle])?;
            db.execute("DELETE FROM shares WHERE node = ?1", [&n.handle])?;
            db.execute(
                "DELETE FROM share_keys WHERE node = ?1 OR share = ?1",
                [&n.handle],
            )?;
            db.execute("DELETE FROM user_shares WHERE node = ?1", [&n.handle])?;
            db.execute("DELETE FROM pending_shares WHERE node = ?1", [&n.handle])?;
        }
        let blobs: std::collections::BTreeSet<&String> =
            nodes.iter().filter_map(|n| n.blob.as_ref()).collect();
        for b in blobs {
            let used: bool = db.query_row(BLOB_USED, [b], |r| r.get(0))?;
            if !used {
                orphaned.push(b.clone());
            }
        }
        Ok(orphaned)
    }

    pub fn remove_blobs(&self, blobs: &[String]) {
        for b in blobs {
            let _ = std::fs::remove_file(self.blob_path(b));
        }
    }
}

/// Every query, written once, for a connection or a transaction.
pub trait Queries {
    fn conn(&self) -> &Connection;

    // ---- users and sessions ----

    fn insert_user(&self, u: &User) -> Result<()> {
        let c = self.conn();
        c.execute(
            &format!("INSERT INTO users ({USER_COLS}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18)"),
            params![u.handle, u.email, u.version, u.verifier, u.salt, u.k, u.privk, u.pubk, u.ts,
                    u.name, u.totp_secret, u.quota, u.root, u.inbox, u.rubbish, u.since,
                    u.blocked, u.xfer_quota],
        )?;
        for (h, kind) in [(&u.root, ROOT), (&u.inbox, INBOX), (&u.rubbish, RUBBISH)] {
            c.execute(
                &format!(
                    "INSERT INTO nodes ({NODE_COLS}) VALUES (?1,?2,'',?3,'','',0,?4,NULL,'','')"
                ),
                params![h, u.handle, kind, u.since],
            )?;
        }
        Ok(())
    }

    fn user_by_email(&self, email: &str) -> Result<Option<User>> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {USER_COLS} FROM users WHERE email = ?1"),
                [email],
                user_from_row,
            )
            .optional()?)
    }

    fn user(&self, handle: &str) -> Result<Option<User>> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {USER_COLS} FROM users WHERE handle = ?1"),
                [handle],
                user_from_row,
            )
            .optional()?)
    }

    /// Blocks an account for `reason` (a `whyamiblocked` code), or unblocks it with 0.
    fn set_blocked(&self, email: &str, reason: i64) -> Result<bool> {
        Ok(self.conn().execute(
            "UPDATE users SET blocked = ?1 WHERE email = ?2",
            params![reason, email],
        )? > 0)
    }

    fn set_quota(&self, email: &str, quota: i64) -> Result<bool> {
        Ok(self.conn().execute(
            "UPDATE users SET quota = ?1 WHERE email = ?2",
            params![quota, email],
        )? > 0)
    }

    /// Accepts TOTP time step `step` for an account once: false if it (or a later one) was
    /// used already.
    fn use_totp_step(&self, user: &str, step: i64) -> Result<bool> {
        Ok(self.conn().execute(
            "UPDATE users SET totp_last = ?1 WHERE handle = ?2 AND totp_last < ?1",
            params![step, user],
        )? > 0)
    }

    fn insert_session(&self, sid: &str, user: &str, sek: &str) -> Result<()> {
        let t = now();
        self.conn().execute(
            "INSERT INTO login_sessions (sid_hash, user, sek, created, last_used)
             VALUES (?1, ?2, ?3, ?4, ?4)",
            params![sid_hash(sid), user, sek, t],
        )?;
        Ok(())
    }

    /// The user handle and `sek` of a session used within the last `idle` seconds (its use is
    /// recorded); an idle session is ended.
    fn session(&self, sid: &str, idle: i64) -> Result<Option<(String, String)>> {
        let h = sid_hash(sid);
        let c = self.conn();
        let row: Option<(String, String, i64)> = c
            .query_row(
                "SELECT user, sek, last_used FROM login_sessions WHERE sid_hash = ?1",
                [&h],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let Some((user, sek, last)) = row else {
            return Ok(None);
        };
        let t = now();
        if t - last > idle {
            c.execute("DELETE FROM login_sessions WHERE sid_hash = ?1", [&h])?;
            return Ok(None);
        }
        if t != last {
            c.execute(
                "UPDATE login_sessions SET last_used = ?1 WHERE sid_hash = ?2",
                params![t, h],
            )?;
        }
        Ok(Some((user, sek)))
    }

    /// Whether the session with this hash is live (for URLs it issued).
    fn session_live(&self, hash: &str) -> Result<bool> {
        Ok(self
            .conn()
            .query_row(
                "SELECT 1 FROM login_sessions WHERE sid_hash = ?1",
                [hash],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    fn delete_session(&self, sid: &str) -> Result<()> {
        self.conn().execute(
            "DELETE FROM login_sessions WHERE sid_hash = ?1",
            [sid_hash(sid)],
        )?;
        Ok(())
    }

    // ---- nodes ----

    fn node(&self, handle: &str) -> Result<Option<Node>> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {NODE_COLS} FROM nodes WHERE handle = ?1"),
                [handle],
                node_from_row,
            )
            .optional()?)
    }

    /// All nodes of an account, parents before children (roots first).
    fn nodes_of(&self, owner: &str) -> Result<Vec<Node>> {
        let mut st = self.conn().prepare(&format!(
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

    /// The node and all its descendants, parents first.
    fn subtree(&self, handle: &str) -> Result<Vec<Node>> {
        // One recursive query (not one per node); by depth, so parents precede children.
        let cols = NODE_COLS
            .split(", ")
            .map(|c| format!("n.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut st = self.conn().prepare_cached(&format!(
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

    /// The direct children of a node.
    fn children(&self, handle: &str) -> Result<Vec<Node>> {
        let mut st = self.conn().prepare(&format!(
            "SELECT {NODE_COLS} FROM nodes WHERE parent = ?1 ORDER BY rowid"
        ))?;
        let v = st
            .query_map([handle], node_from_row)?
            .collect::<rusqlite::Result<_>>()?;
        Ok(v)
    }

    fn insert_node(&self, n: &Node) -> Result<()> {
        self.conn().execute(
            &format!("INSERT INTO nodes ({NODE_COLS}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11)"),
            params![
                n.handle, n.owner, n.parent, n.kind, n.attrs, n.key, n.size, n.ts, n.blob,
                n.creator, n.fa
            ],
        )?;
        Ok(())
    }

    fn set_parent(&self, handle: &str, parent: &str) -> Result<()> {
        self.conn().execute(
            "UPDATE nodes SET parent = ?1 WHERE handle = ?2",
            params![parent, handle],
        )?;
        Ok(())
    }

    fn set_attrs(&self, handle: &str, attrs: &str) -> Result<()> {
        self.conn().execute(
            "UPDATE nodes SET attrs = ?1 WHERE handle = ?2",
            params![attrs, handle],
        )?;
        Ok(())
    }

    /// Bytes, files and folders stored under each root of an account, and the bytes and
    /// number of previous versions (`[bytes, files, folders, version bytes, versions]`, as
    /// `uq`'s `cstrgn`). The total counts versions too: they use storage.
    fn usage(&self, user: &User) -> Result<(i64, Map<String, Value>)> {
        // One recursive query over all three roots (not one query per node); `ver` marks
        // nodes whose parent is a file (previous versions).
        let mut st = self.conn().prepare(
            "WITH RECURSIVE sub(h, root, ver) AS (
                 SELECT handle, handle, 0 FROM nodes WHERE handle IN (?1, ?2, ?3)
                 UNION ALL
                 SELECT nodes.handle, sub.root, p.kind = 0
                 FROM nodes JOIN sub ON nodes.parent = sub.h JOIN nodes p ON p.handle = sub.h)
             SELECT sub.root,
                    COALESCE(SUM(CASE WHEN n.kind = 0 AND NOT sub.ver THEN n.size ELSE 0 END), 0),
                    COALESCE(SUM(CASE WHEN n.kind = 0 AND NOT sub.ver THEN 1 ELSE 0 END), 0),
                    COALESCE(SUM(CASE WHEN n.kind = 0 THEN 0 ELSE 1 END), 0),
                    COALESCE(SUM(CASE WHEN sub.ver THEN n.size ELSE 0 END), 0),
                    COALESCE(SUM(CASE WHEN sub.ver THEN 1 ELSE 0 END), 0)
             FROM sub JOIN nodes n ON n.handle = sub.h
             WHERE sub.h <> sub.root
             GROUP BY sub.root",
        )?;
        let rows: Vec<(String, [i64; 5])> = st
            .query_map(params![user.root, user.inbox, user.rubbish], |r| {
                Ok((
                    r.get(0)?,
                    [r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?],
                ))
            })?
            .collect::<rusqlite::Result<_>>()?;
        let mut total = 0;
        let mut per_root = Map::new();
        for root in [&user.root, &user.inbox, &user.rubbish] {
            let c = rows.iter().find(|r| &r.0 == root).map_or([0; 5], |r| r.1);
            total += c[0] + c[3];
            per_root.insert(root.clone(), json!(c));
        }
        Ok((total, per_root))
    }

    /// Bytes stored in an account's files (the quota check at `u` and `p`).
    fn used_bytes(&self, user: &str) -> Result<i64> {
        Ok(self.conn().query_row(
            "SELECT COALESCE((SELECT bytes FROM usage WHERE owner = ?1), 0)",
            [user],
            |r| r.get(0),
        )?)
    }

    // ---- events ----

    /// Appends action packets to an account's log together, so that a poll never sees part
    /// of a group (a move's `d` without its `t`); returns the last sequence number.
    fn append_events(&self, user: &str, packets: &[Value]) -> Result<i64> {
        let c = self.conn();
        let mut seq: i64 = c.query_row(
            "SELECT COALESCE(MAX(seq), 0) FROM events WHERE user = ?1",
            [user],
            |r| r.get(0),
        )?;
        for p in packets {
            seq += 1;
            c.execute(
                "INSERT INTO events (user, seq, packet) VALUES (?1, ?2, ?3)",
                params![user, seq, p.to_string()],
            )?;
        }
        if let Some(keep) = self.setting(EVENT_LOG_SETTING)? {
            self.trim_events(user, keep)?;
        }
        Ok(seq)
    }

    /// Keeps the newest `keep` (at least one) action packets of an account and drops the
    /// older ones; a cursor before the oldest kept is then answered `-6`.
    fn trim_events(&self, user: &str, keep: i64) -> Result<()> {
        self.conn().execute(
            "DELETE FROM events WHERE user = ?1 AND seq <= \
             (SELECT COALESCE(MAX(seq), 0) FROM events WHERE user = ?1) - ?2",
            params![user, keep.max(1)],
        )?;
        Ok(())
    }

    /// Whether `sn` is a cursor this account's log can continue from: not after its newest
    /// packet, and not before its oldest kept one (older packets were dropped).
    fn cursor_valid(&self, user: &str, sn: i64) -> Result<bool> {
        let (min, max): (Option<i64>, Option<i64>) =
            self.conn()
                .query_row(EVENT_BOUNDS, [user], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(match (min, max) {
            (Some(min), Some(max)) => sn >= min - 1 && sn <= max,
            _ => sn == 0,
        })
    }

    /// A server-wide setting stored with the data (`None` when never set).
    fn setting(&self, name: &str) -> Result<Option<i64>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT value FROM server_settings WHERE name = ?1",
                [name],
                |r| r.get(0),
            )
            .optional()?)
    }

    fn set_setting(&self, name: &str, value: i64) -> Result<()> {
        self.conn().execute(
            "INSERT INTO server_settings (name, value) VALUES (?1, ?2) \
             ON CONFLICT(name) DO UPDATE SET value = excluded.value",
            params![name, value],
        )?;
        Ok(())
    }

    fn last_seq(&self, user: &str) -> Result<i64> {
        Ok(self.conn().query_row(
            "SELECT COALESCE(MAX(seq), 0) FROM events WHERE user = ?1",
            [user],
            |r| r.get(0),
        )?)
    }

    fn events_after(&self, user: &str, seq: i64, limit: i64) -> Result<Vec<(i64, Value)>> {
        let mut st = self.conn().prepare(
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

    fn link_for_node(&self, node: &str) -> Result<Option<String>> {
        Ok(self
            .conn()
            .query_row("SELECT ph FROM links WHERE node = ?1", [node], |r| r.get(0))
            .optional()?)
    }

    fn node_for_link(&self, ph: &str) -> Result<Option<String>> {
        Ok(self
            .conn()
            .query_row("SELECT node FROM links WHERE ph = ?1", [ph], |r| r.get(0))
            .optional()?)
    }

    /// When the link `ph` expires (Unix seconds; 0: never).
    fn link_expiry(&self, ph: &str) -> Result<i64> {
        Ok(self
            .conn()
            .query_row("SELECT ets FROM links WHERE ph = ?1", [ph], |r| r.get(0))
            .optional()?
            .unwrap_or(0))
    }

    /// The write key of a writable folder link ("" for a read-only link).
    fn link_auth(&self, ph: &str) -> Result<String> {
        Ok(self
            .conn()
            .query_row("SELECT w FROM links WHERE ph = ?1", [ph], |r| r.get(0))
            .optional()?
            .unwrap_or_default())
    }

    fn set_link_auth(&self, ph: &str, w: &str) -> Result<()> {
        self.conn()
            .execute("UPDATE links SET w = ?2 WHERE ph = ?1", params![ph, w])?;
        Ok(())
    }

    fn set_link_expiry(&self, ph: &str, ets: i64) -> Result<()> {
        self.conn()
            .execute("UPDATE links SET ets = ?2 WHERE ph = ?1", params![ph, ets])?;
        Ok(())
    }

    fn insert_link(&self, ph: &str, node: &str) -> Result<()> {
        self.conn().execute(
            "INSERT INTO links (ph, node, ts) VALUES (?1, ?2, ?3)",
            params![ph, node, now()],
        )?;
        Ok(())
    }

    fn delete_link(&self, node: &str) -> Result<()> {
        self.conn()
            .execute("DELETE FROM links WHERE node = ?1", [node])?;
        Ok(())
    }

    // ---- shares (folder exports) ----

    /// Records (or replaces) an outgoing share: the share key and its handle auth, both
    /// encrypted by the owner's master key (opaque to the server).
    fn put_share(&self, node: &str, owner: &str, ok: &str, ha: &str) -> Result<()> {
        self.conn().execute(
            "INSERT OR REPLACE INTO shares (node, owner, ok, ha, ts) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![node, owner, ok, ha, now()],
        )?;
        Ok(())
    }

    /// Ends a folder's export (`EXP`); the node keys under its share key go too unless users
    /// still share the folder.
    fn delete_share(&self, node: &str) -> Result<()> {
        let c = self.conn();
        c.execute("DELETE FROM shares WHERE node = ?1", [node])?;
        c.execute(
            "DELETE FROM share_keys WHERE share = ?1
             AND NOT EXISTS (SELECT 1 FROM user_shares WHERE user_shares.node = ?1)",
            [node],
        )?;
        Ok(())
    }

    fn is_shared(&self, node: &str) -> Result<bool> {
        Ok(self
            .conn()
            .query_row("SELECT 1 FROM shares WHERE node = ?1", [node], |_| Ok(()))
            .optional()?
            .is_some())
    }

    /// `(node, ok, ha)` of every outgoing share of an account.
    fn shares_of(&self, owner: &str) -> Result<Vec<(String, String, String)>> {
        let mut st = self
            .conn()
            .prepare("SELECT node, ok, ha FROM shares WHERE owner = ?1 ORDER BY ts")?;
        let v = st
            .query_map([owner], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(v)
    }

    /// Stores a node's key wrapped with a share's key (from a `cr` element).
    fn put_share_key(&self, node: &str, share: &str, key: &str) -> Result<()> {
        self.conn().execute(
            "INSERT OR REPLACE INTO share_keys (node, share, key) VALUES (?1, ?2, ?3)",
            params![node, share, key],
        )?;
        Ok(())
    }

    /// Whether any share key of `node` was supplied (`cr`).
    fn has_share_keys(&self, node: &str) -> Result<bool> {
        Ok(self
            .conn()
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM share_keys WHERE node = ?1)")?
            .query_row([node], |r| r.get(0))?)
    }

    /// The nodes of `owner` that have share keys (few: those inside shared folders).
    fn nodes_with_share_keys(&self, owner: &str) -> Result<std::collections::HashSet<String>> {
        let mut st = self.conn().prepare(
            "SELECT DISTINCT sk.node FROM share_keys sk JOIN nodes n ON n.handle = sk.node \
             WHERE n.owner = ?1",
        )?;
        let v = st
            .query_map([owner], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(v)
    }

    fn share_key(&self, node: &str, share: &str) -> Result<Option<String>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT key FROM share_keys WHERE node = ?1 AND share = ?2",
                [node, share],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// True if `node` is `ancestor` or lies below it.
    fn is_within(&self, node: &str, ancestor: &str) -> Result<bool> {
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

    /// An upload slot still receiving data.
    fn upload(&self, id: &str) -> Result<Option<Upload>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT id, user, size, version, ranges, created, issuer
                 FROM uploads WHERE id = ?1 AND token IS NULL",
                [id],
                |r| {
                    let ranges: String = r.get(4)?;
                    Ok(Upload {
                        id: r.get(0)?,
                        user: r.get(1)?,
                        size: r.get(2)?,
                        version: r.get(3)?,
                        ranges: serde_json::from_str(&ranges).unwrap_or_default(),
                        created: r.get(5)?,
                        issuer: r.get(6)?,
                    })
                },
            )
            .optional()?)
    }

    /// Open upload slots of an account (not yet turned into a node): how many, and the
    /// bytes they reserve.
    fn open_uploads(&self, user: &str) -> Result<(i64, i64)> {
        Ok(self
            .conn()
            .query_row(OPEN_UPLOADS, [user], |r| Ok((r.get(0)?, r.get(1)?)))?)
    }

    /// Counts `n` more bytes received for an upload URL (duplicates included); its last
    /// activity (`created`, from which its lifetime runs) is now.
    fn add_received(&self, id: &str, n: i64) -> Result<()> {
        self.conn().execute(
            "UPDATE uploads SET received = received + ?1, created = ?2 WHERE id = ?3",
            params![n, now(), id],
        )?;
        Ok(())
    }

    /// Every upload URL issued and not swept, in the order they were issued: what each was
    /// for and what it received.
    fn upload_report(&self) -> Result<Vec<UploadReport>> {
        let conn = self.conn();
        let mut st = conn.prepare(
            "SELECT id, user, size, received, ranges, token IS NOT NULL FROM uploads ORDER BY rowid",
        )?;
        let rows = st.query_map([], |r| {
            let ranges: String = r.get(4)?;
            let ranges: Vec<(i64, i64)> = serde_json::from_str(&ranges).unwrap_or_default();
            Ok(UploadReport {
                id: r.get(0)?,
                user: r.get(1)?,
                size: r.get(2)?,
                received: r.get(3)?,
                stored: ranges.iter().map(|(a, b)| b - a).sum(),
                complete: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    fn set_upload_ranges(&self, id: &str, ranges: &[(i64, i64)]) -> Result<()> {
        self.conn().execute(
            "UPDATE uploads SET ranges = ?1 WHERE id = ?2",
            params![serde_json::to_string(ranges).unwrap_or_default(), id],
        )?;
        Ok(())
    }

    /// A completion token's unused upload: `(upload id = blob name, size, user)`.
    fn token(&self, token: &str) -> Result<Option<(String, i64, String)>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT id, size, user FROM uploads WHERE token = ?1 AND used = 0",
                [token],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?)
    }

    /// Marks a completion token used (after its owner was checked).
    fn use_token(&self, token: &str) -> Result<()> {
        self.conn()
            .execute("UPDATE uploads SET used = 1 WHERE token = ?1", [token])?;
        Ok(())
    }

    fn insert_download(&self, id: &str, blob: &str, size: i64, issuer: &str) -> Result<()> {
        self.conn().execute(
            "INSERT INTO downloads (id, blob, size, created, issuer) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![id, blob, size, now(), issuer],
        )?;
        Ok(())
    }

    fn download(&self, id: &str) -> Result<Option<Download>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT blob, size, created, issuer FROM downloads WHERE id = ?1",
                [id],
                |r| {
                    Ok(Download {
                        blob: r.get(0)?,
                        size: r.get(1)?,
                        created: r.get(2)?,
                        issuer: r.get(3)?,
                    })
                },
            )
            .optional()?)
    }

    fn delete_download(&self, id: &str) -> Result<()> {
        self.conn()
            .execute("DELETE FROM downloads WHERE id = ?1", [id])?;
        Ok(())
    }
}

impl Queries for Connection {
    fn conn(&self) -> &Connection {
        self
    }
}

impl Queries for MutexGuard<'_, Connection> {
    fn conn(&self) -> &Connection {
        self
    }
}

#[cfg(test)]
mod tests {
    /// Deleting nodes asks, per blob, whether another node uses it: an index lookup, not a
    /// scan of every node (a folder of 3,000 files took 22 s to delete at 100,000 nodes).
    #[test]
    fn whether_a_blob_is_still_used_is_an_index_lookup() {
        let conn = empty_store();
        let plan: Vec<String> = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {}", super::BLOB_USED))
            .unwrap()
            .query_map(["b"], |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<std::result::Result<_, _>>()
            .unwrap();
        assert!(
            plan.iter().any(|d| d.contains("INDEX nodes_blob")),
            "{plan:?}"
        );
        assert!(
            !plan.iter().any(|d| d.starts_with("SCAN nodes")),
            "{plan:?}"
        );
    }

    /// A fresh in-memory database with the server's schema.
    fn empty_store() -> rusqlite::Connection {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch(super::SCHEMA).unwrap();
        conn
    }

    /// Runs `sql` (two integer columns) for the user `u`: its row and how many steps of
    /// SQLite's virtual machine it took.
    fn pair_and_steps(conn: &rusqlite::Connection, sql: &str) -> ((i64, i64), i32) {
        let mut st = conn.prepare(sql).unwrap();
        let pair = st.query_row(["u"], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
        (pair, st.get_status(rusqlite::StatementStatus::VmStep))
    }

    /// Every poll checks its cursor against the log's bounds: two index seeks, not a scan
    /// of the account's packets (counted in SQLite's virtual machine steps, which a scan of
    /// 10,000 packets takes tens of thousands of).
    #[test]
    fn the_event_logs_bounds_are_index_lookups() {
        let conn = empty_store();
        for seq in 1..=10_000 {
            conn.execute(
                "INSERT INTO events (user, seq, packet) VALUES ('u', ?1, '{}')",
                [seq],
            )
            .unwrap();
        }
        let (bounds, steps) = pair_and_steps(&conn, super::EVENT_BOUNDS);
        assert_eq!(bounds, (1, 10_000));
        assert!(steps < 200, "{steps} steps");
    }

    /// `u` counts an account's open upload slots through an index, whatever the number of
    /// uploads the server took before.
    #[test]
    fn open_upload_slots_are_counted_through_an_index() {
        let conn = empty_store();
        for i in 0..10_000 {
            conn.execute(
                "INSERT INTO uploads (id, user, size, version, ranges, used) \
                 VALUES (?1, 'u', 10, 1, '', ?2)",
                rusqlite::params![format!("up{i}"), i64::from(i >= 3)],
            )
            .unwrap();
        }
        let (open, steps) = pair_and_steps(&conn, super::OPEN_UPLOADS);
        assert_eq!(open, (3, 30));
        assert!(steps < 200, "{steps} steps");
    }

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
            creator: String::new(),
            fa: String::new(),
        }
    }

    #[test]
    fn subtree_is_parents_first_and_usage_counts_per_root() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let db = store.lock();
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
            blocked: 0,
            xfer_quota: 0,
        };
        db.insert_user(&user).unwrap();
        let node = |h: &str, p: &str, kind: i64, size: i64| node(h, "U", p, kind, size);
        // Inserted children-first on purpose: the result must still be parents-first.
        db.insert_node(&node("A", "R", FOLDER, 0)).unwrap();
        db.insert_node(&node("C", "B2", FILE, 7)).unwrap();
        db.insert_node(&node("B2", "A", FOLDER, 0)).unwrap();
        db.insert_node(&node("F", "A", FILE, 5)).unwrap();
        db.insert_node(&node("T", "B", FILE, 3)).unwrap();
        let sub: Vec<String> = db
            .subtree("A")
            .unwrap()
            .into_iter()
            .map(|n| n.handle)
            .collect();
        assert_eq!(sub[0], "A");
        let pos = |h: &str| sub.iter().position(|x| x == h).unwrap();
        assert!(pos("B2") < pos("C"));
        assert_eq!(sub.len(), 4);
        assert!(db.subtree("nope").unwrap().is_empty());
        let (total, per_root) = db.usage(&user).unwrap();
        assert_eq!(total, 15);
        assert_eq!(per_root["R"], json!([12, 2, 2, 0, 0]));
        assert_eq!(per_root["B"], json!([3, 1, 0, 0, 0]));
        assert_eq!(per_root["I"], json!([0, 0, 0, 0, 0]));
    }

    #[test]
    fn used_bytes_follow_inserts_deletes_and_updates_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let db = store.lock();
        let node = |h: &str, owner: &str, kind: i64, size: i64| node(h, owner, "R", kind, size);
        db.insert_node(&node("A", "U", FILE, 10)).unwrap();
        db.insert_node(&node("B", "U", FILE, 5)).unwrap();
        db.insert_node(&node("D", "U", FOLDER, 99)).unwrap();
        db.insert_node(&node("C", "V", FILE, 7)).unwrap();
        assert_eq!(db.used_bytes("U").unwrap(), 15);
        assert_eq!(db.used_bytes("V").unwrap(), 7);
        assert_eq!(db.used_bytes("nobody").unwrap(), 0);
        db.execute("UPDATE nodes SET owner = 'V' WHERE handle = 'B'", [])
            .unwrap();
        assert_eq!(db.used_bytes("U").unwrap(), 10);
        assert_eq!(db.used_bytes("V").unwrap(), 12);
        db.execute("DELETE FROM nodes WHERE handle IN ('A', 'D')", [])
            .unwrap();
        assert_eq!(db.used_bytes("U").unwrap(), 0);
        drop(db);
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        let db = store.lock();
        assert_eq!(db.used_bytes("V").unwrap(), 12);
    }

    #[test]
    fn event_groups_are_appended_together_and_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let db = store.lock();
        assert_eq!(db.last_seq("u").unwrap(), 0);
        let last = db
            .append_events("u", &[json!({"a": "d", "m": 1}), json!({"a": "t"})])
            .unwrap();
        assert_eq!(last, 2);
        let got = db.events_after("u", 0, 10).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].1["a"], json!("d"));
        assert_eq!(got[1].1["a"], json!("t"));
        assert_eq!(db.events_after("other", 0, 10).unwrap().len(), 0);
    }

    #[test]
    fn files_are_private_and_session_ids_are_stored_hashed() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let store = Store::open(&data).unwrap();
        store
            .lock()
            .insert_session("the-session-id", "U", "sek")
            .unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&data), 0o700);
        assert_eq!(mode(&data.join("blobs")), 0o700);
        assert_eq!(mode(&data.join("mega.sqlite")), 0o600);
        store
            .insert_upload(&store.lock(), "UP", "U", 10, 2, "x")
            .unwrap();
        assert_eq!(mode(&store.upload_path("UP")), 0o600);
        assert_eq!(
            store.lock().session("the-session-id", 60).unwrap(),
            Some(("U".into(), "sek".into()))
        );
        drop(store);
        let bytes = std::fs::read(data.join("mega.sqlite")).unwrap();
        let wal = std::fs::read(data.join("mega.sqlite-wal")).unwrap_or_default();
        for b in [&bytes, &wal] {
            assert!(
                !b.windows(14).any(|w| w == b"the-session-id"),
                "a session id is readable in the database files"
            );
        }
    }

    #[test]
    fn a_failed_transaction_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let r: std::result::Result<(), StoreError> = store.atomic(|db| {
            db.insert_node(&node("A", "U", "R", FILE, 1))?;
            Err(StoreError::Io(std::io::Error::other("later step failed")))
        });
        assert!(r.is_err());
        assert!(store.lock().node("A").unwrap().is_none());
        store
            .atomic(|db| db.insert_node(&node("A", "U", "R", FILE, 1)))
            .unwrap();
        assert!(store.lock().node("A").unwrap().is_some());
    }
}
