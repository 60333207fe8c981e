//! [`Client`]: a logged-in account with its decrypted node tree — the engine the front-ends
//! share. It runs commands through the [`ApiClient`], keeps the tree current from its own
//! replies (and, through [`Client::watch`], from the event channel, skipping its own echoes),
//! and moves content with the [`transfer`](crate::transfer) module.
//!
//! Lock discipline: the tree lock is a `std::sync::RwLock` held only for short, synchronous
//! reads or updates — never across `.await` or network I/O (clone out, then act).

use std::path::Path;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};

use serde_json::{json, Map, Value};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

use crate::api::session::{self, LoginError, SavedSession, Session};
use crate::api::{ApiClient, ApiConfig, ApiError, ErrorCode};
use crate::crypto::{attr, b64, FolderKey, Key128, NodeKey};
use crate::events::EventPoller;
use crate::link::{self, LinkError, PublicLink};
use crate::transfer::download::{self, Source, UrlRefresher};
use crate::transfer::upload;
use crate::transfer::{AbortOnDrop, Progress, TransferConfig, TransferError};
use crate::tree::{parse_node, Change, KeyRing, Node, NodeHandle, NodeKind, NodeTree, TreeError};

/// Errors of client operations.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    Login(#[from] LoginError),
    #[error(transparent)]
    Transfer(#[from] TransferError),
    #[error(transparent)]
    Tree(#[from] TreeError),
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error("node {0} not found")]
    NoSuchNode(NodeHandle),
    #[error("{0} is not a file")]
    NotAFile(String),
    #[error("{0} is not a folder")]
    NotAFolder(String),
    #[error("{0} cannot be decrypted")]
    Undecryptable(String),
    #[error("{0} cannot be modified")]
    Protected(String),
    #[error("local file: {0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    /// The MEGA error code behind this error, if any.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Api(e) => e.code(),
            Error::Transfer(TransferError::Api(e)) => e.code(),
            Error::Transfer(TransferError::Server(c)) => Some(*c),
            _ => None,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// Storage quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub total: u64,
    pub used: u64,
}

/// Something the event watcher saw.
#[derive(Debug)]
pub enum TreeEvent {
    /// Remote changes were applied to the tree.
    Changed(Vec<Change>),
    /// The cursor was too old: the whole tree was fetched again.
    Reloaded,
    /// The channel stopped for good (e.g. the session ended).
    Stopped(String),
}

/// A running event watcher; dropping it stops the task.
pub struct Watcher {
    pub events: mpsc::Receiver<TreeEvent>,
    _task: AbortOnDrop<()>,
}

/// A logged-in account.
pub struct Client {
    api: Arc<ApiClient>,
    session: Session,
    tree: RwLock<NodeTree>,
    sn: Mutex<Option<String>>,
    transfer: TransferConfig,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("user", &self.session.user)
            .finish_non_exhaustive()
    }
}

fn str_field<'a>(v: &'a Value, k: &str) -> std::result::Result<&'a str, ApiError> {
    v.get(k)
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::BadResponse(format!("reply lacks `{k}`")))
}

impl Client {
    /// Logs in and fetches the tree.
    pub async fn login(
        cfg: ApiConfig,
        email: &str,
        password: &str,
        mfa: Option<&str>,
    ) -> Result<Self> {
        let api = Arc::new(ApiClient::new(cfg)?);
        let session = session::login(&api, email, password, mfa).await?;
        Self::from_session(api, session).await
    }

    /// Resumes a saved session (no password) and fetches the tree.
    pub async fn resume(cfg: ApiConfig, saved: &SavedSession) -> Result<Self> {
        let api = Arc::new(ApiClient::new(cfg)?);
        let session = session::resume(&api, saved).await?;
        Self::from_session(api, session).await
    }

    /// Wraps an already logged-in API client and fetches the tree.
    pub async fn from_session(api: Arc<ApiClient>, session: Session) -> Result<Self> {
        let keys = KeyRing::new(
            session.master_key.clone(),
            session.user.clone(),
            session.rsa.clone(),
        );
        let client = Client {
            api,
            session,
            tree: RwLock::new(NodeTree::new(keys)),
            sn: Mutex::new(None),
            transfer: TransferConfig::default(),
        };
        client.fetch().await?;
        Ok(client)
    }

    pub fn set_transfer_config(&mut self, cfg: TransferConfig) {
        self.transfer = cfg;
    }

    pub fn api(&self) -> &Arc<ApiClient> {
        &self.api
    }

    pub fn session(&self) -> &Session {
        &self.session
    }

    /// What to write to a session file to resume later without the password.
    pub fn saved_session(&self) -> SavedSession {
        SavedSession::from_session(&self.session, &self.api.config().base_url)
    }

    /// Saves the session to a 0600 file.
    pub fn save_session(&self, path: &Path) -> Result<()> {
        Ok(self.saved_session().save(path)?)
    }

    /// (Re)fetches the whole tree (`f`).
    pub async fn fetch(&self) -> Result<()> {
        let reply = self.api.call(json!({"a": "f", "c": 1})).await?;
        let keys = self.read_tree().keys().clone();
        // Decrypting a large tree is CPU work: keep it off the async threads.
        let (tree, sn) = tokio::task::spawn_blocking(move || NodeTree::from_fetch(&reply, keys))
            .await
            .map_err(|e| ApiError::BadResponse(format!("tree decryption task failed: {e}")))??;
        let bad = tree.undecryptable().count();
        if bad > 0 {
            tracing::warn!(
                count = bad,
                "some nodes cannot be decrypted; they are shown as [undecryptable]"
            );
        }
        let mut tree = tree;
        let mut current = self.tree.write().unwrap_or_else(|e| e.into_inner());
        tree.succeed(current.generation());
        *current = tree;
        drop(current);
        *self.sn.lock().unwrap_or_else(|e| e.into_inner()) = sn;
        Ok(())
    }

    /// Read access to the tree. Do not hold the guard across `.await`.
    pub fn read_tree(&self) -> RwLockReadGuard<'_, NodeTree> {
        self.tree.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_tree(&self) -> std::sync::RwLockWriteGuard<'_, NodeTree> {
        self.tree.write().unwrap_or_else(|e| e.into_inner())
    }

    /// A copy of a node.
    pub fn node(&self, h: &NodeHandle) -> Result<Node> {
        self.read_tree()
            .get(h)
            .cloned()
            .ok_or_else(|| Error::NoSuchNode(h.clone()))
    }

    /// Resolves a path below the Cloud Drive.
    pub fn resolve(&self, path: &str) -> Result<Node> {
        Ok(self.read_tree().resolve(path)?.clone())
    }

    pub fn root(&self) -> Result<Node> {
        self.read_tree()
            .root()
            .cloned()
            .ok_or_else(|| Error::NoSuchNode(NodeHandle("root".into())))
    }

    pub fn rubbish(&self) -> Result<Node> {
        self.read_tree()
            .rubbish()
            .cloned()
            .ok_or_else(|| Error::NoSuchNode(NodeHandle("rubbish".into())))
    }

    pub fn children(&self, h: &NodeHandle) -> Vec<Node> {
        self.read_tree().children(h).into_iter().cloned().collect()
    }

    fn container(&self, h: &NodeHandle) -> Result<Node> {
        let n = self.node(h)?;
        if !n.kind.is_container() {
            return Err(Error::NotAFolder(n.name));
        }
        Ok(n)
    }

    fn wrap_key(&self, key: &NodeKey) -> String {
        b64::encode(&self.session.master_key.0.wrap(&key.raw()))
    }

    /// Inserts nodes from a `p` reply into the tree.
    fn insert_created(&self, reply: &Value) -> Result<Node> {
        let list = reply
            .get("f")
            .and_then(Value::as_array)
            .filter(|l| !l.is_empty())
            .ok_or_else(|| ApiError::BadResponse("`p` reply without nodes".into()))?;
        let mut tree = self.write_tree();
        let mut first = None;
        for v in list {
            let node = parse_node(v, tree.keys_mut())?;
            first.get_or_insert_with(|| node.clone());
            tree.insert(node);
        }
        first.ok_or_else(|| ApiError::BadResponse("`p` reply without nodes".into()).into())
    }

    /// The `cr` element that gives every exported folder above `parent` the key of a new node
    /// (called `name` in the `p` request), so folder-link readers can decrypt it.
    fn share_cr(&self, parent: &NodeHandle, name: &str, key: &NodeKey) -> Option<Value> {
        let shares = self.read_tree().shares_above(parent);
        if shares.is_empty() {
            return None;
        }
        let mut triples = Vec::new();
        for (i, (_, sk)) in shares.iter().enumerate() {
            triples.extend([json!(i), json!(0), json!(b64::encode(&sk.wrap(&key.raw())))]);
        }
        let handles: Vec<&str> = shares.iter().map(|(h, _)| h.0.as_str()).collect();
        Some(json!([handles, [name], triples]))
    }

    /// The `cr` element for moving `h` (and its subtree) under `new_parent`: the keys of every
    /// moved node, wrapped for each exported folder above the destination.
    fn subtree_cr(&self, h: &NodeHandle, new_parent: &NodeHandle) -> Option<Value> {
        let tree = self.read_tree();
        let shares = tree.shares_above(new_parent);
        if shares.is_empty() {
            return None;
        }
        let nodes = tree.subtree(h);
        let mut triples = Vec::new();
        for (i, (_, sk)) in shares.iter().enumerate() {
            for (j, n) in nodes.iter().enumerate() {
                if let Some(k) = &n.key {
                    triples.extend([json!(i), json!(j), json!(b64::encode(&sk.wrap(&k.raw())))]);
                }
            }
        }
        let share_handles: Vec<&str> = shares.iter().map(|(s, _)| s.0.as_str()).collect();
        let node_handles: Vec<&str> = nodes.iter().map(|n| n.handle.0.as_str()).collect();
        Some(json!([share_handles, node_handles, triples]))
    }

    /// The folder `name` in `parent` (the oldest, if several have that name), created if
    /// there is none. `NotAFolder` (with its path) if the name is taken by a file.
    pub async fn ensure_folder(&self, parent: &NodeHandle, name: &str) -> Result<Node> {
        let existing = self.read_tree().child_by_name(parent, name).cloned();
        match existing {
            Some(n) if n.kind.is_container() => Ok(n),
            Some(n) => Err(Error::NotAFolder(self.read_tree().path_of(&n.handle))),
            None => self.mkdir(parent, name).await,
        }
    }

    /// Creates a folder.
    pub async fn mkdir(&self, parent: &NodeHandle, name: &str) -> Result<Node> {
        self.container(parent)?;
        let key = NodeKey::Folder(FolderKey(Key128::random()));
        let mut attrs = Map::new();
        attrs.insert("n".into(), json!(name));
        let a = b64::encode(&attr::encrypt(&key.attr_key(), &attrs));
        let mut cmd = json!({"a": "p", "t": parent.0, "n": [{"h": "xxxxxxxx", "t": 1, "a": a, "k": self.wrap_key(&key)}], "i": self.api.echo_id()});
        if let Some(cr) = self.share_cr(parent, "xxxxxxxx", &key) {
            cmd["cr"] = cr;
        }
        let reply = self.api.call(cmd).await?;
        self.insert_created(&reply)
    }

    /// Uploads `size` bytes from `reader` as `name` in `parent`, keeping `mtime`.
    pub async fn upload<R: AsyncRead + Unpin>(
        &self,
        parent: &NodeHandle,
        name: &str,
        reader: &mut R,
        size: u64,
        mtime: i64,
        progress: Option<Progress>,
    ) -> Result<Node> {
        self.container(parent)?;
        let up = upload::upload(&self.api, reader, size, mtime, &self.transfer, progress).await?;
        let key = NodeKey::File(up.key.clone());
        let mut attrs = Map::new();
        attrs.insert("n".into(), json!(name));
        attrs.insert("c".into(), json!(up.fingerprint.encode()));
        let a = b64::encode(&attr::encrypt(&key.attr_key(), &attrs));
        let mut cmd = json!({"a": "p", "t": parent.0, "n": [{"h": up.token, "t": 0, "a": a, "k": self.wrap_key(&key)}], "i": self.api.echo_id()});
        if let Some(cr) = self.share_cr(parent, &up.token, &key) {
            cmd["cr"] = cr;
        }
        let reply = self.api.call(cmd).await?;
        self.insert_created(&reply)
    }

    /// Uploads a local file, keeping its name (unless `name` is given) and mtime.
    pub async fn upload_path(
        &self,
        parent: &NodeHandle,
        path: &Path,
        name: Option<&str>,
        progress: Option<Progress>,
    ) -> Result<Node> {
        let meta = tokio::fs::metadata(path).await?;
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs() as i64);
        let name = match name {
            Some(n) => n.to_string(),
            None => path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .ok_or_else(|| Error::Io(std::io::Error::other("path has no file name")))?,
        };
        let mut f = tokio::fs::File::open(path).await?;
        self.upload(parent, &name, &mut f, meta.len(), mtime, progress)
            .await
    }

    /// A download source for a file node (with URL refresh).
    pub async fn download_source(&self, h: &NodeHandle) -> Result<Source> {
        let node = self.node(h)?;
        if node.kind != NodeKind::File {
            return Err(Error::NotAFile(node.name));
        }
        let key = node
            .file_key()
            .cloned()
            .ok_or_else(|| Error::Undecryptable(node.name.clone()))?;
        let reply = self
            .api
            .call(json!({"a": "g", "g": 1, "ssl": 0, "n": h.0}))
            .await?;
        let url = str_field(&reply, "g")?.to_string();
        let size = reply.get("s").and_then(Value::as_u64).unwrap_or(node.size);
        let api = self.api.clone();
        let handle = h.0.clone();
        let refresh: UrlRefresher = Arc::new(move || {
            let api = api.clone();
            let handle = handle.clone();
            Box::pin(async move {
                let r = api
                    .call(json!({"a": "g", "g": 1, "ssl": 0, "n": handle}))
                    .await?;
                Ok(str_field(&r, "g")?.to_string())
            })
        });
        Ok(Source {
            url,
            size,
            key,
            refresh: Some(refresh),
        })
    }

    /// Downloads a file into `out`, verifying its MAC (see [`download::download`]).
    pub async fn download<W: AsyncWrite + Unpin>(
        &self,
        h: &NodeHandle,
        out: &mut W,
        progress: Option<Progress>,
    ) -> Result<()> {
        let src = self.download_source(h).await?;
        download::download(self.api.http(), &src, out, &self.transfer, progress).await?;
        Ok(())
    }

    /// Downloads a whole file into memory; returns it only if its MAC verified.
    pub async fn download_to_vec(&self, h: &NodeHandle) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.download(h, &mut out, None).await?;
        Ok(out)
    }

    fn mutable(&self, h: &NodeHandle) -> Result<Node> {
        let n = self.node(h)?;
        if !matches!(n.kind, NodeKind::File | NodeKind::Folder) {
            return Err(Error::Protected(n.name));
        }
        Ok(n)
    }

    /// Renames a node, keeping its other attributes (mtime fingerprint, labels…).
    pub async fn rename(&self, h: &NodeHandle, name: &str) -> Result<()> {
        let n = self.mutable(h)?;
        let mut attrs = n
            .attrs()
            .ok_or_else(|| Error::Undecryptable(n.name.clone()))?;
        attrs.insert("n".into(), json!(name));
        self.put_attrs(&n, attrs).await
    }

    /// Encrypts a node's full attribute set, sends it (`a`), and updates the tree.
    async fn put_attrs(&self, n: &Node, attrs: Map<String, Value>) -> Result<()> {
        let key = n
            .key
            .clone()
            .ok_or_else(|| Error::Undecryptable(n.name.clone()))?;
        let at = b64::encode(&attr::encrypt(&key.attr_key(), &attrs));
        self.api
            .call(json!({"a": "a", "n": n.handle.0, "at": at, "i": self.api.echo_id()}))
            .await?;
        self.write_tree().set_encrypted_attrs(&n.handle, &at);
        Ok(())
    }

    /// Sets a file's modification time: rewrites the fingerprint (`c`) attribute with the new
    /// mtime, keeping its content checksum. No content is transferred.
    pub async fn set_mtime(&self, h: &NodeHandle, mtime: i64) -> Result<()> {
        let n = self.mutable(h)?;
        let crc = match n.fingerprint {
            Some(f) => f.crc,
            // No fingerprint yet (uploaded by a client that writes none): compute the real
            // checksum from the content rather than invent one.
            None => self.content_crc(h, n.size).await?,
        };
        let mut attrs = n
            .attrs()
            .ok_or_else(|| Error::Undecryptable(n.name.clone()))?;
        let fp = crate::crypto::fingerprint::Fingerprint { crc, mtime };
        attrs.insert("c".into(), json!(fp.encode()));
        self.put_attrs(&n, attrs).await
    }

    /// The fingerprint checksum of a file's content (downloaded, MAC-verified, to a private
    /// temporary file that is removed afterwards).
    async fn content_crc(&self, h: &NodeHandle, size: u64) -> Result<[u8; 16]> {
        let path =
            std::env::temp_dir().join(format!("mega-mount-crc-{:016x}", rand::random::<u64>()));
        let file = crate::names::create_private(&path)?;
        let result = async {
            let mut out = tokio::fs::File::from_std(file.try_clone()?);
            self.download(h, &mut out, None).await?;
            let mut f = file;
            Ok(crate::crypto::fingerprint::crc(&mut f, size)?)
        }
        .await;
        let _ = std::fs::remove_file(&path);
        result
    }

    /// Moves a node into another folder.
    pub async fn move_to(&self, h: &NodeHandle, new_parent: &NodeHandle) -> Result<()> {
        self.mutable(h)?;
        self.container(new_parent)?;
        let mut cmd = json!({"a": "m", "n": h.0, "t": new_parent.0, "i": self.api.echo_id()});
        if let Some(cr) = self.subtree_cr(h, new_parent) {
            cmd["cr"] = cr;
        }
        self.api.call(cmd).await?;
        self.write_tree().reparent(h, new_parent);
        Ok(())
    }

    /// Moves a node to the Rubbish Bin (what "delete" means in MEGA's apps).
    pub async fn trash(&self, h: &NodeHandle) -> Result<()> {
        let rubbish = self.rubbish()?.handle;
        self.move_to(h, &rubbish).await
    }

    /// Deletes a node and its subtree permanently.
    pub async fn delete(&self, h: &NodeHandle) -> Result<()> {
        self.mutable(h)?;
        self.api
            .call(json!({"a": "d", "n": h.0, "i": self.api.echo_id()}))
            .await?;
        self.write_tree().remove_subtree(h);
        Ok(())
    }

    /// Storage quota.
    pub async fn quota(&self) -> Result<Quota> {
        let r = self
            .api
            .call(json!({"a": "uq", "strg": 1, "xfer": 1}))
            .await?;
        let get = |k: &str| r.get(k).and_then(Value::as_u64).unwrap_or(0);
        Ok(Quota {
            total: get("mstrg"),
            used: get("cstrg"),
        })
    }

    /// Exports a public link: a file link, or for a folder a folder link (the folder is
    /// shared with the pseudo-user `EXP` under a new share key first, and every node below
    /// it gets its key wrapped with that share key).
    pub async fn export(&self, h: &NodeHandle) -> Result<String> {
        let n = self.node(h)?;
        match (&n.kind, n.file_key()) {
            (NodeKind::File, Some(k)) => {
                let key = k.clone();
                let ph = self.link_handle(h).await?;
                Ok(link::file_link(&ph, &key))
            }
            (NodeKind::File, None) => Err(Error::Undecryptable(n.name)),
            (NodeKind::Folder, _) => {
                let share_key = self.export_folder(h).await?;
                let ph = self.link_handle(h).await?;
                Ok(link::folder_link(&ph, &share_key))
            }
            _ => Err(Error::Protected(n.name)),
        }
    }

    async fn link_handle(&self, h: &NodeHandle) -> Result<String> {
        let r = self
            .api
            .call(json!({"a": "l", "n": h.0, "i": self.api.echo_id()}))
            .await?;
        r.as_str()
            .map(str::to_string)
            .ok_or_else(|| ApiError::BadResponse("`l` reply is not a handle".into()).into())
    }

    /// Shares a folder with `EXP` (idempotent: an existing share key is reused).
    async fn export_folder(&self, h: &NodeHandle) -> Result<Key128> {
        if let Some(k) = self.read_tree().keys().share_keys.get(&h.0) {
            return Ok(k.clone());
        }
        let share_key = Key128::random();
        let mk = &self.session.master_key.0;
        let (handles, triples) = {
            let tree = self.read_tree();
            let nodes = tree.subtree(h);
            let mut triples = Vec::new();
            for (j, node) in nodes.iter().enumerate() {
                if let Some(k) = &node.key {
                    triples.extend([
                        json!(0),
                        json!(j),
                        json!(b64::encode(&share_key.wrap(&k.raw()))),
                    ]);
                }
            }
            let handles: Vec<String> = nodes.iter().map(|n| n.handle.0.clone()).collect();
            (handles, triples)
        };
        let ha = mk.wrap(format!("{}{}", h.0, h.0).as_bytes());
        self.api
            .call(json!({
                "a": "s2", "n": h.0, "s": [{"u": "EXP", "r": 0}],
                "ok": b64::encode(&mk.wrap(&share_key.0)), "ha": b64::encode(&ha),
                "cr": [[h.0], handles, triples], "i": self.api.echo_id(),
            }))
            .await?;
        self.write_tree()
            .keys_mut()
            .share_keys
            .insert(h.0.clone(), share_key.clone());
        Ok(share_key)
    }

    /// Ends the session on the server.
    pub async fn logout(&self) -> Result<()> {
        Ok(session::logout(&self.api).await?)
    }

    /// Applies action packets to the tree (own echoes skipped); returns what changed.
    pub fn apply_packets(&self, packets: &[crate::tree::ActionPacket]) -> Vec<Change> {
        self.write_tree().apply(packets, Some(self.api.echo_id()))
    }

    /// An event poller starting at the cursor of the last tree fetch.
    pub fn event_poller(&self) -> Result<EventPoller> {
        let sn = self
            .sn
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| ApiError::BadResponse("tree fetch had no `sn`".into()))?;
        Ok(EventPoller::new(self.api.clone(), sn))
    }

    /// Follows the event channel in a background task, applying remote changes to the tree
    /// and reporting them. Dropping the [`Watcher`] stops it.
    pub fn watch(self: &Arc<Self>) -> Result<Watcher> {
        let mut poller = self.event_poller()?;
        let (tx, rx) = mpsc::channel(64);
        let client = self.clone();
        let task = tokio::spawn(async move {
            loop {
                match poller.next_batch().await {
                    Ok(packets) => {
                        let changes = client.apply_packets(&packets);
                        *client.sn.lock().unwrap_or_else(|e| e.into_inner()) =
                            Some(poller.sn().to_string());
                        if !changes.is_empty()
                            && tx.send(TreeEvent::Changed(changes)).await.is_err()
                        {
                            return;
                        }
                    }
                    Err(ApiError::Mega(ErrorCode::TooMany)) => {
                        if let Err(e) = client.fetch().await {
                            let _ = tx.send(TreeEvent::Stopped(e.to_string())).await;
                            return;
                        }
                        match client.event_poller() {
                            Ok(p) => poller = p,
                            Err(e) => {
                                let _ = tx.send(TreeEvent::Stopped(e.to_string())).await;
                                return;
                            }
                        }
                        if tx.send(TreeEvent::Reloaded).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        tracing::warn!("event channel stopped: {e}");
                        let _ = tx.send(TreeEvent::Stopped(e.to_string())).await;
                        return;
                    }
                }
            }
        });
        Ok(Watcher {
            events: rx,
            _task: AbortOnDrop(task),
        })
    }
}

/// A public file's metadata.
#[derive(Debug, Clone)]
pub struct PublicFile {
    pub name: String,
    pub size: u64,
    pub source: Source,
}

/// Looks up a public file link (no login needed).
pub async fn public_file(api: &ApiClient, url: &str) -> Result<PublicFile> {
    let (handle, key) = match link::parse(url)? {
        PublicLink::File {
            handle,
            key: Some(key),
        } => (handle, key),
        PublicLink::File { key: None, .. } => return Err(LinkError::NoKey.into()),
        PublicLink::Folder { .. } => {
            return Err(Error::NotAFile(
                "a folder link (folder links are not supported yet)".into(),
            ))
        }
    };
    let r = api
        .call(json!({"a": "g", "g": 1, "ssl": 0, "p": handle}))
        .await?;
    let size = r.get("s").and_then(Value::as_u64).unwrap_or(0);
    let at = b64::decode(str_field(&r, "at")?, "attributes").map_err(ApiError::from)?;
    let attrs = attr::decrypt(&key.aes, &at)
        .map_err(|_| Error::Undecryptable("the linked file (wrong key?)".into()))?;
    let name = attrs
        .get("n")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let url = str_field(&r, "g")?.to_string();
    Ok(PublicFile {
        name,
        size,
        source: Source {
            url,
            size,
            key,
            refresh: None,
        },
    })
}

/// Downloads a public file link into `out` (MAC-verified); returns its metadata.
pub async fn download_public<W: AsyncWrite + Unpin>(
    api: &ApiClient,
    url: &str,
    out: &mut W,
    cfg: &TransferConfig,
    progress: Option<Progress>,
) -> Result<PublicFile> {
    let f = public_file(api, url).await?;
    download::download(api.http(), &f.source, out, cfg, progress).await?;
    Ok(f)
}

/// A public folder link opened without logging in.
pub struct PublicFolder {
    handle: String,
    tree: NodeTree,
    root: NodeHandle,
}

impl std::fmt::Debug for PublicFolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublicFolder")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

impl PublicFolder {
    /// Fetches the folder behind a folder link (`f` with `&n=<handle>`).
    pub async fn open(api: &ApiClient, url: &str) -> Result<Self> {
        let (handle, key) = match link::parse(url)? {
            PublicLink::Folder {
                handle,
                key: Some(key),
                ..
            } => (handle, key),
            PublicLink::Folder { key: None, .. } => return Err(LinkError::NoKey.into()),
            PublicLink::File { .. } => return Err(Error::NotAFolder("a file link".into())),
        };
        let r = api
            .batch_with(
                vec![json!({"a": "f", "c": 1, "ca": 1, "r": 1})],
                &[("n", &handle)],
            )
            .await?
            .pop()
            .ok_or_else(|| ApiError::BadResponse("empty reply".into()))??;
        let (tree, root) = tokio::task::spawn_blocking(move || NodeTree::from_folder_link(&r, key))
            .await
            .map_err(|e| ApiError::BadResponse(format!("tree decryption task failed: {e}")))??;
        if tree.get(&root).is_some_and(|n| n.undecryptable.is_some()) {
            return Err(Error::Undecryptable(
                "the linked folder (wrong key?)".into(),
            ));
        }
        Ok(PublicFolder { handle, tree, root })
    }

    /// The exported folder itself.
    pub fn root(&self) -> &Node {
        self.tree
            .get(&self.root)
            .expect("invariant: the root was found when opening")
    }

    pub fn tree(&self) -> &NodeTree {
        &self.tree
    }

    /// Resolves a path below the exported folder.
    pub fn resolve(&self, path: &str) -> Result<&Node> {
        Ok(self.tree.resolve_from(&self.root, path)?)
    }

    pub fn children(&self, h: &NodeHandle) -> Vec<&Node> {
        self.tree.children(h)
    }

    /// Downloads a file of the folder into `out` (MAC-verified).
    pub async fn download<W: AsyncWrite + Unpin>(
        &self,
        api: &ApiClient,
        h: &NodeHandle,
        out: &mut W,
        cfg: &TransferConfig,
        progress: Option<Progress>,
    ) -> Result<()> {
        let node = self
            .tree
            .get(h)
            .ok_or_else(|| Error::NoSuchNode(h.clone()))?;
        let key = match (&node.kind, node.file_key()) {
            (NodeKind::File, Some(k)) => k.clone(),
            (NodeKind::File, None) => return Err(Error::Undecryptable(node.name.clone())),
            _ => return Err(Error::NotAFile(node.name.clone())),
        };
        let r = api
            .batch_with(
                vec![json!({"a": "g", "g": 1, "ssl": 0, "n": h.0})],
                &[("n", &self.handle)],
            )
            .await?
            .pop()
            .ok_or_else(|| ApiError::BadResponse("empty reply".into()))??;
        let url = str_field(&r, "g")?.to_string();
        let size = r.get("s").and_then(Value::as_u64).unwrap_or(node.size);
        let src = Source {
            url,
            size,
            key,
            refresh: None,
        };
        download::download(api.http(), &src, out, cfg, progress).await?;
        Ok(())
    }
}
