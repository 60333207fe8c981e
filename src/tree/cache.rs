//! The tree cache: the account's node tree kept on disk between runs (SQLite, mode 0600,
//! one file per account and server under the cache directory), so that a start loads it and
//! resumes the event channel from its cursor instead of fetching the whole tree again (the
//! official SDK keeps such a cache too).
//!
//! What it holds is what the server holds: each node's handle, parent, type, owner, size,
//! time, encrypted attributes (`a`) and its key wrapped with the master key (`k`, the form the
//! server keeps for our own nodes; a node we cannot decrypt keeps the `k` the server sent);
//! share keys wrapped with the master key (`ok`, with their `ha`), users' e-mail addresses,
//! outgoing shares, and the event cursor `sn`. Never an unwrapped key or a plaintext name.
//!
//! A file is used only if its format, account, server and a check value only our master key
//! produces all match, and it holds as many nodes as it says, whose checksum (the sum of each
//! row's CRC-32, kept with every commit) matches; anything else (a truncated or
//! corrupted file, another account's) is an error, and the caller discards the file and
//! fetches the tree. Changes are committed in one transaction together with the new cursor,
//! so a crash leaves the state of some earlier cursor, from which the event channel replays
//! the rest. A commit whose file was moved on by another process (a different cursor than
//! the one this one last wrote) is refused: two processes never interleave their states.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Node, NodeHandle, NodeTree};
use crate::api::commands::{
    FetchReply, RawNode, RawOutShare, RawPendingContact, RawUser, ShareKey,
};
use crate::crypto::b64;
use crate::tree::keys::KeyRing;

/// Written into every cache file; another value means another layout (the file is rebuilt).
const FORMAT: &str = "mega-mount tree cache 4";

/// The block the check value encrypts with the master key (16 bytes).
const CHECK_BLOCK: &[u8; 16] = b"mega-mount cache";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS nodes (
  h TEXT PRIMARY KEY, p TEXT, t INTEGER NOT NULL, u TEXT NOT NULL, a TEXT NOT NULL,
  k TEXT NOT NULL, s INTEGER NOT NULL, ts INTEGER NOT NULL, su TEXT, r INTEGER,
  c INTEGER NOT NULL, fa TEXT);
CREATE TABLE IF NOT EXISTS counts (name TEXT PRIMARY KEY, n INTEGER NOT NULL);
";

/// Keeps the node count right through every later commit, and finds a folder's children
/// (made after the first bulk write, which sets the count itself).
const TRIGGERS: &str = "
CREATE INDEX IF NOT EXISTS nodes_by_parent ON nodes (p);
CREATE TRIGGER IF NOT EXISTS nodes_added AFTER INSERT ON nodes
  BEGIN UPDATE counts SET n = n + 1 WHERE name = 'nodes'; END;
CREATE TRIGGER IF NOT EXISTS nodes_removed AFTER DELETE ON nodes
  BEGIN UPDATE counts SET n = n - 1 WHERE name = 'nodes'; END;
";

/// Why the cache could not be used or written. The message names the file, never a key.
#[derive(Debug, thiserror::Error)]
#[error("tree cache {path}: {reason}")]
pub struct CacheError {
    path: String,
    reason: String,
    conflict: bool,
}

impl CacheError {
    fn new(path: &Path, reason: impl std::fmt::Display) -> Self {
        CacheError {
            path: path.display().to_string(),
            reason: reason.to_string(),
            conflict: false,
        }
    }

    /// The commit was refused because another process (a mount beside a megacmd run)
    /// updated the file since this one read it: expected, and nothing is wrong with it.
    pub fn is_conflict(&self) -> bool {
        self.conflict
    }
}

/// One node as stored: the server's form of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    h: String,
    p: Option<String>,
    t: i64,
    u: String,
    a: String,
    k: String,
    s: i64,
    ts: i64,
    su: Option<String>,
    r: Option<i64>,
    fa: Option<String>,
}

impl Row {
    /// The row's checksum: CRC-32 over its fields, each tagged (absent or present) and
    /// ended, so no two different rows run together the same way.
    fn crc(&self) -> u32 {
        // The bytes gathered first and hashed in one go: the same sum as hashing each piece
        // in turn, without a short update per field (which made CRC a tenth of writing a
        // cache file).
        let mut b = Vec::with_capacity(
            self.h.len()
                + self.p.as_ref().map_or(0, String::len)
                + self.u.len()
                + self.a.len()
                + self.k.len()
                + self.su.as_ref().map_or(0, String::len)
                + 48,
        );
        let mut text = |v: Option<&str>| match v {
            None => b.push(0),
            Some(v) => {
                b.push(1);
                b.extend_from_slice(v.as_bytes());
                b.push(0);
            }
        };
        text(Some(&self.h));
        text(self.p.as_deref());
        text(Some(&self.u));
        text(Some(&self.a));
        text(Some(&self.k));
        text(self.su.as_deref());
        for n in [self.t, self.s, self.ts, self.r.unwrap_or(i64::MIN)] {
            b.extend_from_slice(&n.to_le_bytes());
        }
        b.push(u8::from(self.r.is_some()));
        // File attributes, only where there are any (tagged 2 and ended with 0).
        if let Some(fa) = &self.fa {
            b.push(2);
            b.extend_from_slice(fa.as_bytes());
            b.push(0);
        }
        crc32fast::hash(&b)
    }

    /// A row read with `columns!()`, and whether its stored checksum (`c`) matches it.
    fn from_sql(r: &rusqlite::Row<'_>) -> rusqlite::Result<(Row, bool)> {
        let row = Row {
            h: r.get(0)?,
            p: r.get(1)?,
            t: r.get(2)?,
            u: r.get(3)?,
            a: r.get(4)?,
            k: r.get(5)?,
            s: r.get(6)?,
            ts: r.get(7)?,
            su: r.get(8)?,
            r: r.get(9)?,
            fa: r.get(11)?,
        };
        let stored: i64 = r.get(10)?;
        let ok = stored == i64::from(row.crc());
        Ok((row, ok))
    }

    /// The row as the server would have sent the node.
    fn into_raw(self) -> RawNode {
        RawNode {
            h: self.h,
            p: self.p,
            t: self.t,
            u: Some(self.u),
            a: Some(self.a),
            k: Some(self.k),
            s: Some(u64::try_from(self.s).unwrap_or(u64::MAX)),
            ts: Some(self.ts),
            su: self.su,
            sk: None,
            r: self.r,
            fa: self.fa,
        }
    }
}

/// The columns [`Row::from_sql`] reads, in its order (a macro, so that queries naming them
/// are made once, by `concat!`).
macro_rules! columns {
    () => {
        "h, p, t, u, a, k, s, ts, su, r, c, fa"
    };
}

/// The small, whole-tree part of the state, rewritten at every commit.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Meta {
    /// Share keys: (share handle, key wrapped with the master key, `ha`).
    ok: Vec<(String, String, String)>,
    /// Users: (handle, e-mail).
    users: Vec<(String, String)>,
    /// Outgoing shares: (folder, recipient handle or invited address, access level).
    shares: Vec<(String, String, i64)>,
    /// The three roots: (handle, type).
    roots: Vec<(String, i64)>,
    /// The roots of folders shared with us.
    inshares: Vec<String>,
    /// Contact requests not answered yet (absent from files of earlier versions).
    #[serde(default)]
    requests: Vec<super::ContactRequest>,
    /// Users who are not contacts (`c: 0`).
    #[serde(default)]
    hidden: Vec<String>,
}

/// What a commit writes: the rows of changed nodes, the handles of removed ones, the meta.
#[derive(Debug, Default)]
pub struct Changes {
    upserts: Vec<Row>,
    deletes: Vec<String>,
    meta: Meta,
    marks: Vec<(NodeHandle, u64)>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.upserts.is_empty() && self.deletes.is_empty()
    }

    /// Which of the tree's changes these are (for [`NodeTree::committed`]).
    pub fn marks(&self) -> &[(NodeHandle, u64)] {
        &self.marks
    }
}

/// A node's stored form. Its key is wrapped with the master key again (as the server keeps
/// our own nodes' keys); without a key, the `k` the server sent is kept.
fn row_of(n: &Node, keys: &KeyRing) -> Row {
    let k = match &n.key {
        Some(key) => format!(
            "{}:{}",
            keys.user,
            b64::encode(&keys.master.0.wrap(&key.raw()))
        ),
        None => n.wrapped_key.clone().unwrap_or_default(),
    };
    Row {
        h: n.handle.0.clone(),
        p: n.parent.as_ref().map(|p| p.0.clone()),
        t: n.kind.wire_type(),
        u: n.owner.clone(),
        a: n.attrs.clone(),
        k,
        s: n.size as i64,
        ts: n.ctime,
        su: n.inshare.as_ref().map(|s| s.owner.clone()),
        r: n.inshare.as_ref().map(|s| i64::from(s.access.level())),
        fa: n.fa.clone(),
    }
}

fn meta_of(tree: &NodeTree) -> Meta {
    let keys = &tree.keys;
    let mut ok: Vec<_> = keys
        .share_keys
        .iter()
        .filter(|(h, _)| h.len() == 8)
        .map(|(h, k)| {
            let ha = keys.master.0.wrap(format!("{h}{h}").as_bytes());
            (
                h.clone(),
                b64::encode(&keys.master.0.wrap(&k.0)),
                b64::encode(&ha),
            )
        })
        .collect();
    ok.sort();
    let mut users: Vec<_> = tree
        .users
        .iter()
        .map(|(h, m)| (h.clone(), m.clone()))
        .collect();
    users.sort();
    let shares = tree
        .outshares
        .iter()
        .map(|s| {
            (
                s.node.0.clone(),
                s.user.clone(),
                i64::from(s.access.level()),
            )
        })
        .collect();
    let roots = [&tree.root, &tree.inbox, &tree.rubbish]
        .into_iter()
        .flatten()
        .filter_map(|h| tree.get(h))
        .map(|n| (n.handle.0.clone(), n.kind.wire_type()))
        .collect();
    let mut inshares: Vec<String> = tree.inshare_roots.iter().map(|h| h.0.clone()).collect();
    inshares.sort();
    Meta {
        ok,
        users,
        shares,
        roots,
        inshares,
        requests: tree.requests().cloned().collect(),
        hidden: {
            let mut h: Vec<String> = tree.hidden.iter().cloned().collect();
            h.sort();
            h
        },
    }
}

/// The whole tree in its stored form (for a new cache file); `None` if it could not be made
/// whole.
pub fn snapshot(tree: &mut NodeTree) -> Option<(Vec<Row>, Meta)> {
    let meta = meta_of(tree);
    // Wrapping every key again is per-node work: on every core.
    let nodes: Vec<&Node> = tree.nodes.values_mut();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per = nodes.len().div_ceil(threads).max(4096);
    let keys = &tree.keys;
    let mut rows: Vec<Row> = std::thread::scope(|s| {
        let parts: Vec<_> = nodes
            .chunks(per)
            .map(|part| s.spawn(move || part.iter().map(|n| row_of(n, keys)).collect::<Vec<_>>()))
            .collect();
        let mut rows = Vec::with_capacity(nodes.len());
        for p in parts {
            // A part that failed would leave nodes out: no cache rather than a short one.
            rows.extend(p.join().ok()?);
        }
        Some(rows)
    })?;
    // In key order, SQLite appends to its index instead of inserting all over it.
    rows.sort_unstable_by(|a, b| a.h.cmp(&b.h));
    Some((rows, meta))
}

/// What changed since the last commit, in stored form, with the marks that tell the tree
/// afterwards which of its changes the commit wrote ([`NodeTree::committed`]).
pub fn changes(tree: &NodeTree) -> Changes {
    let mut c = Changes {
        meta: meta_of(tree),
        ..Default::default()
    };
    for (h, mark) in &tree.dirty {
        match tree.nodes.get(h) {
            Some(n) => c.upserts.push(row_of(n, &tree.keys)),
            None => c.deletes.push(h.0.clone()),
        }
        c.marks.push((h.clone(), *mark));
    }
    c
}

/// The cache file of an account on a server, in `dir`. The name is a hash, so listing the
/// directory tells nothing about the accounts.
pub fn file_for(dir: &Path, base_url: &str, user: &str) -> PathBuf {
    let mut h = Sha256::new();
    h.update(base_url.as_bytes());
    h.update([0]);
    h.update(user.as_bytes());
    let digest = h.finalize();
    let name: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    dir.join(format!("tree-{name}.db"))
}

/// Removes a cache file and its SQLite companions (a missing one is fine).
pub fn remove(path: &Path) {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
}

/// How old a half-built cache file (of a process killed while writing one) must be before
/// another start removes it: older than any build in progress.
const STALE_BUILD: std::time::Duration = std::time::Duration::from_secs(600);

/// Removes this cache file's half-built copies left by processes that died writing them.
fn remove_stale_builds(path: &Path) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return;
    };
    let prefix = format!("{}.tmp-", name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let stale = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > STALE_BUILD);
        if stale && e.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// The checksum of what a file says about the whole tree — share keys, users, shares, roots
/// and incoming shares (`meta`), the cursor, the node count and the nodes' checksum — kept
/// as `state` with every commit: none of it is trusted on open without it.
fn state_crc(meta: &str, sn: &str, count: i64, digest: i64) -> String {
    let mut b = Vec::with_capacity(meta.len() + sn.len() + 18);
    b.extend_from_slice(meta.as_bytes());
    b.push(0);
    b.extend_from_slice(sn.as_bytes());
    b.push(0);
    b.extend_from_slice(&count.to_le_bytes());
    b.extend_from_slice(&digest.to_le_bytes());
    format!("{:08x}", crc32fast::hash(&b))
}

/// The check value: the master key encrypting a fixed block (as `ha` proves a share key).
fn check_value(keys: &KeyRing) -> String {
    b64::encode(&keys.master.0.wrap(CHECK_BLOCK))
}

/// The stored contact requests of one direction, as `f` lists them.
fn pending(requests: &[super::ContactRequest], outgoing: bool) -> Vec<RawPendingContact> {
    requests
        .iter()
        .filter(|r| r.outgoing == outgoing)
        .map(|r| RawPendingContact {
            p: Some(r.id.clone()),
            m: Some(r.email.clone()),
            msg: Some(r.msg.clone()),
            ts: Some(r.ts),
        })
        .collect()
}

/// The whole-tree part of a cache as an `f` reply with `f` as its nodes. A share key the
/// key manager gave us this time wins over the cached copy.
fn meta_reply(small: Meta, keys: &KeyRing, f: Vec<RawNode>, sn: &str) -> FetchReply {
    let ok = small
        .ok
        .into_iter()
        .filter(|(h, _, _)| !keys.share_keys.contains_key(h))
        .map(|(h, k, ha)| ShareKey {
            h: Some(h),
            ha: Some(ha),
            k: Some(k),
        })
        .collect();
    FetchReply {
        f,
        f2: Vec::new(),
        ok,
        ok0: Vec::new(),
        u: small
            .users
            .into_iter()
            .map(|(u, m)| RawUser {
                c: Some(i64::from(!small.hidden.contains(&u))),
                u: Some(u),
                m: Some(m),
            })
            .collect(),
        s: small
            .shares
            .into_iter()
            .map(|(h, u, r)| RawOutShare {
                h: Some(h),
                p: None,
                u: Some(u),
                r: Some(r),
            })
            .collect(),
        ps: Vec::new(),
        opc: pending(&small.requests, true),
        ipc: pending(&small.requests, false),
        sn: Some(sn.to_string()),
    }
}

/// How damage found in a cache file is told: a wake-up for whoever replaces the tree, and a
/// count every read can compare before and after (a tree replaced in between is not
/// damaged, but what the read got from the old one was).
#[derive(Debug, Default)]
pub struct Damage {
    notify: tokio::sync::Notify,
    count: std::sync::atomic::AtomicU64,
}

impl Damage {
    /// How many times damage was found so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Acquire)
    }

    /// Waits for the next damage found.
    pub async fn found(&self) {
        self.notify.notified().await
    }

    fn tell(&self) {
        self.count.fetch_add(1, Ordering::AcqRel);
        self.notify.notify_one();
    }
}

/// Where a tree served from the cache ([`NodeTree::backed`]) reads the nodes it does not
/// hold: a node by handle, a folder's children by parent. Every row read is checked against
/// its checksum; a row that fails, or a file SQLite finds damaged, makes the whole file
/// untrusted from then on ([`failed`](Self::failed)): it answers nothing more, says so once,
/// and tells the [`Damage`] given to [`TreeCache::backing`] (to fetch the tree again, and
/// so that the read that met it fails instead of showing what it got).
pub struct Backing {
    conn: Arc<Mutex<Connection>>,
    gate: Gate,
    path: PathBuf,
    failed: AtomicBool,
    damaged: Arc<Damage>,
    /// Run at the start of every read of the file (tests: to stop a reader there).
    #[cfg(test)]
    read_hook: Option<Arc<dyn Fn() + Send + Sync>>,
}

impl std::fmt::Debug for Backing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backing")
            .field("path", &self.path)
            .field("failed", &self.failed())
            .finish_non_exhaustive()
    }
}

impl Backing {
    /// Whether the file was found damaged.
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// See [`Gate`].
    pub(crate) fn gate(&self) -> Gate {
        self.gate.clone()
    }

    /// This backing, running `hook` at the start of every read of the file.
    #[cfg(test)]
    pub(crate) fn with_read_hook(mut self, hook: Arc<dyn Fn() + Send + Sync>) -> Self {
        self.read_hook = Some(hook);
        self
    }

    pub(crate) fn fail(&self, why: &dyn std::fmt::Display) {
        if !self.failed.swap(true, Ordering::AcqRel) {
            tracing::warn!(
                "tree cache {}: {why}; not used any more (the tree is fetched again)",
                self.path.display()
            );
            self.damaged.tell();
        }
    }

    /// The stored node `h`, if there is one.
    pub(crate) fn node(&self, h: &str) -> Option<RawNode> {
        self.rows(
            concat!("SELECT ", columns!(), " FROM nodes WHERE h = ?1"),
            h,
        )
        .pop()
    }

    /// The stored children of `p` (folders' contents and files' previous versions).
    pub(crate) fn children(&self, p: &str) -> Vec<RawNode> {
        self.rows(
            concat!("SELECT ", columns!(), " FROM nodes WHERE p = ?1"),
            p,
        )
    }

    /// The rows `sql` selects for `arg`, each checked.
    fn rows(&self, sql: &str, arg: &str) -> Vec<RawNode> {
        if self.failed() {
            return Vec::new();
        }
        #[cfg(test)]
        if let Some(hook) = &self.read_hook {
            hook();
        }
        let found = {
            let conn = lock_conn(&self.conn);
            conn.prepare_cached(sql).and_then(|mut st| {
                st.query_map([arg], Row::from_sql)?
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
        };
        let rows = match found {
            Ok(rows) => rows,
            Err(e) => {
                self.fail(&e);
                return Vec::new();
            }
        };
        let mut out = Vec::with_capacity(rows.len());
        for (row, ok) in rows {
            if !ok {
                self.fail(&format!("node {} does not match its checksum", row.h));
                return Vec::new();
            }
            out.push(row.into_raw());
        }
        out
    }

    /// Every stored handle.
    pub(crate) fn all(&self) -> Vec<NodeHandle> {
        if self.failed() {
            return Vec::new();
        }
        let got = {
            let conn = lock_conn(&self.conn);
            conn.prepare_cached("SELECT h FROM nodes")
                .and_then(|mut st| {
                    st.query_map([], |r| r.get::<_, String>(0).map(NodeHandle))?
                        .collect::<rusqlite::Result<Vec<_>>>()
                })
        };
        got.unwrap_or_else(|e| {
            self.fail(&e);
            Vec::new()
        })
    }
}

/// The lock that makes one process the writer of an account's cache file: only its holder
/// creates, replaces or commits to the file, and only it serves its tree from the file on
/// demand (others read the whole file at start, as a snapshot, and never write). It is a
/// separate file beside the cache (`….db.lock`, empty, 0600) that is never removed, so that
/// no two processes can hold locks on two different files for one account.
#[derive(Debug)]
pub struct WriterLock(#[allow(dead_code)] std::fs::File);

impl WriterLock {
    /// Takes the lock for the cache file at `path` if no other process holds it.
    pub fn try_take(path: &Path) -> Option<WriterLock> {
        if let Some(dir) = path.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .ok()?;
        }
        let mut p = path.as_os_str().to_owned();
        p.push(".lock");
        let file = crate::local::names::open_private(Path::new(&p)).ok()?;
        rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).ok()?;
        Some(WriterLock(file))
    }
}

/// Held (shared) by a reader from before it reads rows of the file until what it read is
/// in the tree ([`super::store`]), and (alone) by a commit from before it writes until the
/// tree has forgotten the changes it wrote: so rows read outside the tree's lock are never
/// older than the changes the tree still holds for them.
pub type Gate = Arc<std::sync::RwLock<()>>;

/// An open cache file and the cursor it holds.
pub struct TreeCache {
    conn: Arc<Mutex<Connection>>,
    gate: Gate,
    path: PathBuf,
    sn: String,
}

impl std::fmt::Debug for TreeCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TreeCache")
            .field("path", &self.path)
            .field("sn", &self.sn)
            .finish_non_exhaustive()
    }
}

fn open_conn(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
}

fn lock_conn(conn: &Mutex<Connection>) -> std::sync::MutexGuard<'_, Connection> {
    conn.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a cache file says about the whole tree, checked to be this account's.
struct Header {
    conn: Connection,
    sn: String,
    meta: Meta,
    count: i64,
    digest: i64,
}

/// What [`TreeCache::open`] gives the tree served from the file: everything but the nodes.
#[derive(Debug)]
pub struct Opened {
    /// Share keys, users and outgoing shares as an `f` reply would carry them (no nodes).
    pub reply: FetchReply,
    /// The three roots: (handle, type).
    pub roots: Vec<(String, i64)>,
    /// The roots of folders shared with us.
    pub inshares: Vec<String>,
    /// How many nodes the file holds.
    pub count: usize,
}

impl TreeCache {
    /// The cursor of the state the file holds.
    pub fn sn(&self) -> &str {
        &self.sn
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The gate readers of this file hold while what they read is not in the tree yet.
    pub fn gate(&self) -> Gate {
        self.gate.clone()
    }

    /// A reader of this file's nodes for a tree served from it; `damaged` is told if the
    /// file turns out to be damaged.
    pub fn backing(&self, damaged: Arc<Damage>) -> Backing {
        Backing {
            conn: self.conn.clone(),
            gate: self.gate.clone(),
            path: self.path.clone(),
            failed: AtomicBool::new(false),
            damaged,
            #[cfg(test)]
            read_hook: None,
        }
    }

    /// Opens the file and checks it is a cache of this account on this server, made with
    /// this master key; `Ok(None)` when there is none.
    fn header(path: &Path, base_url: &str, keys: &KeyRing) -> Result<Option<Header>, CacheError> {
        if !path.exists() {
            return Ok(None);
        }
        let bad = |e: &dyn std::fmt::Display| CacheError::new(path, e);
        let conn = open_conn(path).map_err(|e| bad(&e))?;
        let meta = |name: &str| -> Result<Option<String>, CacheError> {
            conn.query_row("SELECT value FROM meta WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| bad(&e))
        };
        let expect = |name: &str, want: &str, what: &str| -> Result<(), CacheError> {
            match meta(name)? {
                Some(v) if v == want => Ok(()),
                _ => Err(bad(&what)),
            }
        };
        expect("format", FORMAT, "not a cache of this version")?;
        expect("user", &keys.user, "the cache of another account")?;
        expect("server", base_url, "the cache of another server")?;
        expect(
            "check",
            &check_value(keys),
            "not made with this account's key",
        )?;
        let sn = meta("sn")?.ok_or_else(|| bad(&"no event cursor"))?;
        let text = meta("meta")?.ok_or_else(|| bad(&"no share and user list"))?;
        let count = |name: &str| -> Result<i64, CacheError> {
            conn.query_row("SELECT n FROM counts WHERE name = ?1", [name], |r| r.get(0))
                .map_err(|e| bad(&e))
        };
        let (count, digest) = (count("nodes")?, count("digest")?);
        if meta("state")?.as_deref() != Some(state_crc(&text, &sn, count, digest).as_str()) {
            return Err(bad(
                &"its share keys, roots, cursor or counts do not match their checksum (corrupted)",
            ));
        }
        let small: Meta =
            serde_json::from_str(&text).map_err(|_| bad(&"no readable share and user list"))?;
        Ok(Some(Header {
            conn,
            sn,
            meta: small,
            count,
            digest,
        }))
    }

    /// Reads every row and checks the count, each row's checksum and their sum; the rows as
    /// an `f` reply's nodes.
    fn scan(h: &Header, path: &Path) -> Result<Vec<RawNode>, CacheError> {
        let bad = |e: &dyn std::fmt::Display| CacheError::new(path, e);
        let mut f = Vec::with_capacity(usize::try_from(h.count).unwrap_or(0).min(1 << 24));
        let mut sum = 0i64;
        let mut st = h
            .conn
            .prepare(concat!("SELECT ", columns!(), " FROM nodes"))
            .map_err(|e| bad(&e))?;
        let rows = st.query_map([], Row::from_sql).map_err(|e| bad(&e))?;
        for row in rows {
            let (row, ok) = row.map_err(|e| bad(&e))?;
            if !ok {
                return Err(bad(&format!("node {} does not match its checksum", row.h)));
            }
            sum = sum.wrapping_add(i64::from(row.crc()));
            f.push(row.into_raw());
        }
        if i64::try_from(f.len()).ok() != Some(h.count) {
            return Err(bad(&format!(
                "holds {} nodes but says {} (truncated?)",
                f.len(),
                h.count
            )));
        }
        if sum != h.digest {
            return Err(bad(&"its nodes do not match their checksum (corrupted)"));
        }
        Ok(f)
    }

    /// Opens and reads the whole cache at `path` as an `f` reply would say it: `Ok(None)`
    /// when there is none; an error when the file is not a valid cache of this account on
    /// this server (the caller removes it).
    pub fn load(
        path: &Path,
        base_url: &str,
        keys: &KeyRing,
    ) -> Result<Option<(TreeCache, FetchReply)>, CacheError> {
        let Some(h) = Self::header(path, base_url, keys)? else {
            return Ok(None);
        };
        let f = Self::scan(&h, path)?;
        let reply = meta_reply(h.meta, keys, f, &h.sn);
        let cache = TreeCache {
            conn: Arc::new(Mutex::new(h.conn)),
            gate: Gate::default(),
            path: path.to_path_buf(),
            sn: h.sn,
        };
        Ok(Some((cache, reply)))
    }

    /// Opens the cache at `path` for a tree served from it on demand (by its writer, see
    /// [`WriterLock`]): the header is checked and the file's length must hold all its pages
    /// (a truncated file is refused here); each row is checked against its checksum when it
    /// is read ([`Backing`]). After a crash (a write-ahead log that cannot be folded into the
    /// file) every row is checked now, as [`load`](Self::load) does.
    pub fn open(
        path: &Path,
        base_url: &str,
        keys: &KeyRing,
    ) -> Result<Option<(TreeCache, Opened)>, CacheError> {
        let Some(h) = Self::header(path, base_url, keys)? else {
            return Ok(None);
        };
        let bad = |e: &dyn std::fmt::Display| CacheError::new(path, e);
        let (busy, log, done): (i64, i64, i64) = h
            .conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .map_err(|e| bad(&e))?;
        if busy == 0 && (log == -1 || log == done) {
            let pragma = |name: &str| -> Result<i64, CacheError> {
                h.conn
                    .query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))
                    .map_err(|e| bad(&e))
            };
            let want = pragma("page_count")?.saturating_mul(pragma("page_size")?);
            let len = std::fs::metadata(path).map_err(|e| bad(&e))?.len();
            if i64::try_from(len).unwrap_or(i64::MAX) < want {
                return Err(bad(&format!(
                    "{len} bytes long but holds {want} (truncated)"
                )));
            }
        } else {
            Self::scan(&h, path)?;
        }
        let count = usize::try_from(h.count).map_err(|_| bad(&"a negative node count"))?;
        let roots = h.meta.roots.clone();
        let inshares = h.meta.inshares.clone();
        let reply = meta_reply(h.meta, keys, Vec::new(), &h.sn);
        let cache = TreeCache {
            conn: Arc::new(Mutex::new(h.conn)),
            gate: Gate::default(),
            path: path.to_path_buf(),
            sn: h.sn,
        };
        Ok(Some((
            cache,
            Opened {
                reply,
                roots,
                inshares,
                count,
            },
        )))
    }

    /// Writes a new cache file at `path` holding `rows` at cursor `sn`, replacing any old
    /// one in one step (built beside it, then renamed), and opens it.
    pub fn create(
        path: &Path,
        base_url: &str,
        keys: &KeyRing,
        rows: &[Row],
        meta: &Meta,
        sn: &str,
    ) -> Result<TreeCache, CacheError> {
        let bad = |e: &dyn std::fmt::Display| CacheError::new(path, e);
        if let Some(dir) = path.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| bad(&e))?;
        }
        remove_stale_builds(path);
        let tmp = path.with_extension(format!("db.tmp-{:016x}", rand::random::<u64>()));
        let built = (|| -> Result<(), CacheError> {
            crate::local::names::create_private(&tmp).map_err(|e| bad(&e))?;
            let mut conn = open_conn(&tmp).map_err(|e| bad(&e))?;
            // Nothing to protect until the file is renamed into place.
            conn.execute_batch("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;")
                .map_err(|e| bad(&e))?;
            conn.execute_batch(SCHEMA).map_err(|e| bad(&e))?;
            let tx = conn.transaction().map_err(|e| bad(&e))?;
            for (name, value) in [
                ("format", FORMAT),
                ("user", keys.user.as_str()),
                ("server", base_url),
            ] {
                put_meta(&tx, name, value).map_err(|e| bad(&e))?;
            }
            put_meta(&tx, "check", &check_value(keys)).map_err(|e| bad(&e))?;
            {
                let mut put = tx
                    .prepare(concat!(
                        "INSERT INTO nodes (",
                        columns!(),
                        ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
                    ))
                    .map_err(|e| bad(&e))?;
                // The file's checksum: the sum of its rows' (so a commit updates it row by row).
                let mut sum = 0i64;
                for r in rows {
                    let crc = r.crc();
                    sum = sum.wrapping_add(i64::from(crc));
                    put.execute(params![
                        r.h,
                        r.p,
                        r.t,
                        r.u,
                        r.a,
                        r.k,
                        r.s,
                        r.ts,
                        r.su,
                        r.r,
                        i64::from(crc),
                        r.fa
                    ])
                    .map_err(|e| bad(&e))?;
                }
                tx.execute(
                    "INSERT INTO counts (name, n) VALUES ('nodes', ?1), ('digest', ?2)",
                    [rows.len() as i64, sum],
                )
                .map_err(|e| bad(&e))?;
            }
            write_state(&tx, &[], &[], meta, sn).map_err(|e| bad(&e))?;
            tx.execute_batch(TRIGGERS).map_err(|e| bad(&e))?;
            tx.commit().map_err(|e| bad(&e))?;
            conn.execute_batch("PRAGMA journal_mode = WAL;")
                .map_err(|e| bad(&e))?;
            conn.close().map_err(|(_, e)| bad(&e))?;
            Ok(())
        })();
        if let Err(e) = built {
            remove(&tmp);
            return Err(e);
        }
        remove(path);
        std::fs::rename(&tmp, path).map_err(|e| {
            remove(&tmp);
            bad(&e)
        })?;
        let conn = open_conn(path).map_err(|e| bad(&e))?;
        Ok(TreeCache {
            conn: Arc::new(Mutex::new(conn)),
            gate: Gate::default(),
            path: path.to_path_buf(),
            sn: sn.to_string(),
        })
    }

    /// Writes changes and the new cursor in one transaction. Refused (nothing written) when
    /// the file no longer holds the cursor this cache last wrote: another process moved it on.
    pub fn commit(&mut self, changes: &Changes, sn: &str) -> Result<(), CacheError> {
        let path = self.path.clone();
        let bad = |e: &dyn std::fmt::Display| CacheError::new(&path, e);
        let mut conn = lock_conn(&self.conn);
        let tx = conn.transaction().map_err(|e| bad(&e))?;
        let stored: Option<String> = tx
            .query_row("SELECT value FROM meta WHERE name = 'sn'", [], |r| r.get(0))
            .optional()
            .map_err(|e| bad(&e))?;
        if stored.as_deref() != Some(self.sn.as_str()) {
            let mut e = bad(&"another process updated it");
            e.conflict = true;
            return Err(e);
        }
        write_state(&tx, &changes.upserts, &changes.deletes, &changes.meta, sn)
            .map_err(|e| bad(&e))?;
        tx.commit().map_err(|e| bad(&e))?;
        drop(conn);
        self.sn = sn.to_string();
        Ok(())
    }
}

fn put_meta(tx: &rusqlite::Transaction<'_>, name: &str, value: &str) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO meta (name, value) VALUES (?1, ?2) \
         ON CONFLICT(name) DO UPDATE SET value = excluded.value",
        params![name, value],
    )?;
    Ok(())
}

fn write_state(
    tx: &rusqlite::Transaction<'_>,
    upserts: &[Row],
    deletes: &[String],
    meta: &Meta,
    sn: &str,
) -> rusqlite::Result<()> {
    let mut sum: i64 = tx.query_row("SELECT n FROM counts WHERE name = 'digest'", [], |r| {
        r.get(0)
    })?;
    {
        // Each row's old checksum leaves the sum, its new one enters it.
        let mut old = tx.prepare_cached("SELECT c FROM nodes WHERE h = ?1")?;
        let mut gone = |h: &str, sum: &mut i64| -> rusqlite::Result<()> {
            if let Some(c) = old.query_row([h], |r| r.get::<_, i64>(0)).optional()? {
                *sum = sum.wrapping_sub(c);
            }
            Ok(())
        };
        for h in deletes {
            gone(h, &mut sum)?;
        }
        for r in upserts {
            gone(&r.h, &mut sum)?;
            sum = sum.wrapping_add(i64::from(r.crc()));
        }
        let mut del = tx.prepare_cached("DELETE FROM nodes WHERE h = ?1")?;
        for h in deletes {
            del.execute([h])?;
        }
        let mut put = tx.prepare_cached(
            "INSERT INTO nodes (h, p, t, u, a, k, s, ts, su, r, c, fa) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) \
             ON CONFLICT(h) DO UPDATE SET p = excluded.p, t = excluded.t, u = excluded.u, \
             a = excluded.a, k = excluded.k, s = excluded.s, ts = excluded.ts, \
             su = excluded.su, r = excluded.r, c = excluded.c, fa = excluded.fa",
        )?;
        for r in upserts {
            let c = i64::from(r.crc());
            put.execute(params![
                r.h, r.p, r.t, r.u, r.a, r.k, r.s, r.ts, r.su, r.r, c, r.fa
            ])?;
        }
    }
    let text = serde_json::to_string(meta).map_err(|e| {
        rusqlite::Error::ToSqlConversionFailure(
            Box::new(e) as Box<dyn std::error::Error + Send + Sync>
        )
    })?;
    put_meta(tx, "meta", &text)?;
    put_meta(tx, "sn", sn)?;
    tx.execute("UPDATE counts SET n = ?1 WHERE name = 'digest'", [sum])?;
    let count: i64 = tx.query_row("SELECT n FROM counts WHERE name = 'nodes'", [], |r| {
        r.get(0)
    })?;
    put_meta(tx, "state", &state_crc(&text, sn, count, sum))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{Key128, MasterKey};

    fn keys(user: &str, k: u8) -> KeyRing {
        KeyRing::new(MasterKey(Key128([k; 16])), user.into(), None)
    }

    /// The row checksum is part of the file format: it is CRC-32 over each field in turn
    /// (text tagged 1 and ended with 0, absent tagged 0; then the numbers, little-endian, the
    /// access level i64::MIN when absent, and whether it is present).
    #[test]
    fn the_row_checksum_is_the_stored_definition() {
        fn reference(r: &Row) -> u32 {
            let mut c = crc32fast::Hasher::new();
            for v in [
                Some(&r.h),
                r.p.as_ref(),
                Some(&r.u),
                Some(&r.a),
                Some(&r.k),
                r.su.as_ref(),
            ] {
                match v {
                    None => c.update(&[0]),
                    Some(v) => {
                        c.update(&[1]);
                        c.update(v.as_bytes());
                        c.update(&[0]);
                    }
                }
            }
            for n in [r.t, r.s, r.ts, r.r.unwrap_or(i64::MIN)] {
                c.update(&n.to_le_bytes());
            }
            c.update(&[u8::from(r.r.is_some())]);
            if let Some(fa) = &r.fa {
                c.update(&[2]);
                c.update(fa.as_bytes());
                c.update(&[0]);
            }
            c.finalize()
        }
        let plain = row("AAAAAAAA");
        let shared = Row {
            p: None,
            su: Some("owner123".into()),
            r: Some(2),
            s: 1 << 40,
            ..row("BBBBBBBB")
        };
        let pictured = Row {
            fa: Some("7:0*AAAAAAAAAAA/7:1*BBBBBBBBBBB".into()),
            ..row("AAAAAAAA")
        };
        assert_ne!(plain.crc(), pictured.crc());
        for r in [&plain, &shared, &pictured] {
            assert_eq!(r.crc(), reference(r));
        }
        assert_ne!(plain.crc(), shared.crc());
        // One known answer, so the definition itself cannot drift with its reference.
        assert_eq!(plain.crc(), 0x6bb4_f698);
    }

    fn row(h: &str) -> Row {
        Row {
            h: h.into(),
            p: Some("ROOT0000".into()),
            t: 1,
            u: "me".into(),
            a: "YQ".into(),
            k: "me:a2V5".into(),
            s: 0,
            ts: 5,
            su: None,
            r: None,
            fa: None,
        }
    }

    #[test]
    fn half_built_files_of_dead_processes_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tree-x.db");
        let old = dir.path().join("tree-x.db.tmp-0000000000000001");
        let fresh = dir.path().join("tree-x.db.tmp-0000000000000002");
        let other = dir.path().join("tree-y.db.tmp-0000000000000003");
        for p in [&old, &fresh, &other] {
            std::fs::write(p, b"half").unwrap();
        }
        let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        for p in [&old, &other] {
            std::fs::File::options()
                .write(true)
                .open(p)
                .unwrap()
                .set_modified(hour_ago)
                .unwrap();
        }
        TreeCache::create(&path, "u/", &keys("me", 1), &[], &Meta::default(), "sn").unwrap();
        assert!(!old.exists(), "a stale build of this file stays");
        assert!(
            fresh.exists(),
            "a build that may be in progress was removed"
        );
        assert!(other.exists(), "another account's file was touched");
    }

    /// A node we cannot decrypt yet keeps the server's `k` through the cache, and decrypts
    /// once its share key is known; names are never stored in the clear.
    #[test]
    fn undecryptable_nodes_keep_their_key_and_decrypt_later() {
        use crate::api::commands::FetchReply;
        use crate::crypto::attr;
        let share = Key128([5; 16]);
        let folder_key = [6u8; 16];
        let mut attrs = serde_json::Map::new();
        attrs.insert("n".into(), serde_json::Value::from("Secret plans"));
        let node = serde_json::json!({
            "h": "FOLDER01", "p": "SHARE123", "u": "owner", "t": 1, "ts": 9,
            "a": b64::encode(&attr::encrypt(&folder_key, &attrs)),
            "k": format!("SHARE123:{}", b64::encode(&share.wrap(&folder_key))),
        });
        let reply: FetchReply =
            serde_json::from_value(serde_json::json!({"f": [node], "sn": "c24"})).unwrap();
        let k = keys("me", 1);
        let (mut tree, _) = NodeTree::from_fetch(&reply, k.clone()).unwrap();
        let n = tree.get(&"FOLDER01".into()).unwrap();
        assert!(n.undecryptable.is_some());
        let (rows, meta) = snapshot(&mut tree).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        TreeCache::create(&path, "u/", &k, &rows, &meta, "c24").unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert!(!bytes.windows(6).any(|w| w == b"Secret"));
        let (_, again) = TreeCache::load(&path, "u/", &k).unwrap().unwrap();
        let (tree, _) = NodeTree::from_fetch(&again, k.clone()).unwrap();
        assert!(tree
            .get(&"FOLDER01".into())
            .unwrap()
            .undecryptable
            .is_some());
        let mut with_share = k.clone();
        with_share.share_keys.insert("SHARE123".into(), share);
        let (_, again) = TreeCache::load(&path, "u/", &with_share).unwrap().unwrap();
        let (tree, _) = NodeTree::from_fetch(&again, with_share).unwrap();
        let n = tree.get(&"FOLDER01".into()).unwrap();
        assert_eq!(
            (n.name.as_str(), n.undecryptable.as_ref()),
            ("Secret plans", None)
        );
    }

    #[test]
    fn commits_count_nodes_and_refuse_a_file_moved_on_by_another_process() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let k = keys("me", 1);
        let meta = Meta::default();
        let mut a = TreeCache::create(&path, "u/", &k, &[row("AAAAAAAA")], &meta, "sn1").unwrap();
        let (mut b, reply) = TreeCache::load(&path, "u/", &k).unwrap().unwrap();
        assert_eq!(reply.f.len(), 1);
        let add = Changes {
            upserts: vec![row("BBBBBBBB"), row("CCCCCCCC")],
            deletes: vec!["AAAAAAAA".into()],
            ..Default::default()
        };
        a.commit(&add, "sn2").unwrap();
        // b still believes the file is at sn1: its commit would mix two states.
        assert!(b
            .commit(&Changes::default(), "sn3")
            .is_err_and(|e| e.is_conflict()));
        let (_, reply) = TreeCache::load(&path, "u/", &k).unwrap().unwrap();
        let mut hs: Vec<_> = reply.f.iter().map(|n| n.h.clone()).collect();
        hs.sort();
        assert_eq!(hs, ["BBBBBBBB", "CCCCCCCC"]);
        assert_eq!(reply.sn.as_deref(), Some("sn2"));
        // Another account, another server, another key: refused.
        assert!(TreeCache::load(&path, "u/", &keys("other", 1)).is_err());
        assert!(TreeCache::load(&path, "v/", &k).is_err());
        assert!(TreeCache::load(&path, "u/", &keys("me", 2)).is_err());
        // A row removed behind the count's back (a truncation SQLite did not notice).
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("DROP TRIGGER nodes_removed; DELETE FROM nodes WHERE h = 'BBBBBBBB';")
            .unwrap();
        drop(conn);
        assert!(TreeCache::load(&path, "u/", &k).is_err());
        assert!(TreeCache::load(&dir.path().join("none.db"), "u/", &k)
            .unwrap()
            .is_none());
        // A row changed behind the checksum's back (a flipped bit SQLite cannot see).
        let path = dir.path().join("t2.db");
        let mut c = TreeCache::create(&path, "u/", &k, &[row("AAAAAAAA")], &meta, "sn1").unwrap();
        c.commit(&add, "sn2").unwrap();
        assert!(TreeCache::load(&path, "u/", &k).is_ok());
        let conn = Connection::open(&path).unwrap();
        conn.execute("UPDATE nodes SET p = 'ELSEWHER' WHERE h = 'BBBBBBBB'", [])
            .unwrap();
        drop(conn);
        assert!(TreeCache::load(&path, "u/", &k).is_err());
    }
}
