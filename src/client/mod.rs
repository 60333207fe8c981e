//! [`Client`]: a logged-in account with its decrypted node tree — the engine the front-ends
//! share. It runs commands through the [`ApiClient`], keeps the tree current from its own
//! replies (and, through [`Client::watch`], from the event channel, skipping its own echoes),
//! and moves content with the [`transfer`](crate::transfer) module.
//!
//! * this file: logging in, fetching the tree, reading it, the quota;
//! * [`nodes`]: creating, uploading (and replacing), renaming, moving and deleting nodes;
//! * [`content`]: reading a file's content (verified) whole, to a temporary file, or by piece;
//! * [`keys`]: the key manager (`^!keys`): read, followed, changed safely;
//! * [`links`]: public file and folder links, both ways;
//! * [`shares`]: folders shared between users, both ways, and pending keys;
//! * `cached`: the network side of the tree cache (a warm start catching up from the
//!   event channel); the file's life is [`TreeStore`]'s;
//! * [`watch`]: following remote changes;
//! * [`resume`]: journals of interrupted transfers, for the next run to resume;
//! * [`quota`]: one transfer-quota clock per run of transfers;
//! * [`pictures`]: thumbnails and previews of uploaded images, and reading them back;
//! * [`connect`]: a client from the configuration (saved session or credentials).
//!
//! Every operation returns the engine's [`Error`], by meaning.
//!
//! Lock discipline: the tree lock is a `std::sync::RwLock` held only for short, synchronous
//! reads or updates — never across `.await` or network I/O (clone out, then act). Reads go
//! through [`Client::view`] / [`Client::checked`] so that the cache file is read with the lock
//! let go.

pub mod backups;
mod batch;
mod cached;
pub mod connect;
pub mod contacts;
pub mod content;
pub mod keys;
pub mod links;
pub mod marks;
pub mod nodes;
pub mod pictures;
pub mod posix;
pub mod quota;
pub mod resume;
pub mod shares;
pub mod watch;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLockReadGuard, RwLockWriteGuard};

use crate::api::attrs::{GetUserAttribute, UserAttribute};
use crate::api::commands::{FetchNodes, GetQuota, GetUser};
use crate::api::session::{self, SavedSession, Session};
use crate::api::{ApiClient, ApiConfig};
use crate::api::{ApiError, ErrorCode};
use crate::crypto::b64;
use crate::transfer::TransferConfig;
use crate::tree::cache;
use crate::tree::store::{Mutation, TreeStore};
use crate::tree::{KeyRing, Node, NodeHandle, NodeTree};

pub use crate::error::{AuthError, Error, Result};
pub use connect::connect;
pub use links::{download_public, public_file, PublicFile, PublicFolder};
pub use nodes::{Linked, OldVersions, Target, COPY_BATCH};
pub use watch::{TreeEvent, Watcher};

/// Storage quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub total: u64,
    pub used: u64,
    /// Transfer used: the account's and what it served (paid accounts) plus this address's
    /// recent downloads (free accounts), capped at the allowance, as MEGA's apps count it.
    pub transfer_used: u64,
    /// The transfer allowance of a paid account; `None` for a free one (per address).
    pub transfer_max: Option<u64>,
    /// Hours the free quota's history covers (the window the downloads count in).
    pub transfer_hours: usize,
}

/// How a client starts.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The directory of the tree cache ([`cache`]): the tree is loaded from it and brought
    /// up to date from the event channel instead of fetched whole. `None`: no cache.
    pub tree_cache: Option<PathBuf>,
    /// How many unchanged nodes a tree served from the cache keeps in memory (default
    /// [`cached::RESIDENT_NODES`]).
    pub tree_nodes: Option<usize>,
}

/// A logged-in account.
pub struct Client {
    api: Arc<ApiClient>,
    session: Session,
    /// The tree and its cache file, with their one owner.
    store: Arc<TreeStore>,
    transfer: TransferConfig,
    /// Whether the account keeps previous versions of replaced files (`^!dv` not "1").
    versions: AtomicBool,
    /// Whether the account has a key manager (`^!keys`).
    key_manager: AtomicBool,
    /// The key manager's version and generation; its lock serialises commits.
    keys_state: tokio::sync::Mutex<keys::KeyManager>,
    /// Held across each read of `^!keys` and each whole commit, so this client's reads and
    /// writes of it never interleave.
    keys_io: tokio::sync::Mutex<()>,
    /// Writes carry `vw:1` (the Vault's backups may be changed): set only by the backup
    /// engine, on its own client; a user's own commands never carry it.
    vault_writes: AtomicBool,
    /// "My backups" in the Vault (`^!bak`), as read at login or created since.
    my_backups: std::sync::Mutex<Option<NodeHandle>>,
    /// Where interrupted uploads of local files and downloads to local files are recorded
    /// for the next run to resume (see [`resume`]); unset: transfers do not resume.
    transfers: std::sync::OnceLock<resume::TransferState>,
    /// Limits for making thumbnails and previews on upload; `None`: not made.
    graphics: std::sync::Mutex<Option<crate::transfer::graphics::Limits>>,
    /// MEGA's media codec list (`mc`), asked the first time a video is uploaded.
    media_codecs: tokio::sync::OnceCell<Option<crate::transfer::media::Codecs>>,
    /// New files on their way, by folder: sent in batches (see [`batch`]).
    lanes: batch::Lanes,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("user", &self.session.user)
            .finish_non_exhaustive()
    }
}

/// A blocking task (tree decryption) that panicked, as an engine error.
fn task_failed(e: tokio::task::JoinError) -> Error {
    Error::Protocol(format!("tree decryption task failed: {e}"))
}

impl Client {
    /// Records interrupted transfers in `dir` (created 0700) so that the next run of the
    /// same upload or download resumes it (see [`resume`]). Set once; later calls do nothing.
    pub fn keep_transfer_state(&self, dir: &Path) -> std::io::Result<()> {
        if self.transfers.get().is_none() {
            let _ = self.transfers.set(resume::TransferState::open(dir)?);
        }
        Ok(())
    }

    /// The journals of interrupted transfers, if they are kept.
    pub fn transfer_state(&self) -> Option<&resume::TransferState> {
        self.transfers.get()
    }

    /// Logs in and fetches the tree.
    pub async fn login(
        cfg: ApiConfig,
        email: &str,
        password: &str,
        mfa: Option<&str>,
    ) -> Result<Self> {
        Self::login_with(cfg, email, password, mfa, Options::default()).await
    }

    /// Logs in and loads the tree as `opts` say.
    pub async fn login_with(
        cfg: ApiConfig,
        email: &str,
        password: &str,
        mfa: Option<&str>,
        opts: Options,
    ) -> Result<Self> {
        let api = Arc::new(ApiClient::new(cfg)?);
        let session = session::login(&api, email, password, mfa).await?;
        Self::from_session_with(api, session, opts).await
    }

    /// Resumes a saved session (no password) and fetches the tree.
    pub async fn resume(cfg: ApiConfig, saved: &SavedSession) -> Result<Self> {
        Self::resume_with(cfg, saved, Options::default()).await
    }

    /// Resumes a saved session and loads the tree as `opts` say.
    pub async fn resume_with(cfg: ApiConfig, saved: &SavedSession, opts: Options) -> Result<Self> {
        let api = Arc::new(ApiClient::new(cfg)?);
        let session = session::resume(&api, saved).await?;
        Self::from_session_with(api, session, opts).await
    }

    /// Wraps an already logged-in API client and fetches the tree. Transfers use the API's
    /// retry settings until [`set_transfer_config`](Self::set_transfer_config) says otherwise.
    pub async fn from_session(api: Arc<ApiClient>, session: Session) -> Result<Self> {
        Self::from_session_with(api, session, Options::default()).await
    }

    /// Wraps a logged-in API client and loads the tree: from the tree cache brought up to
    /// date if `opts` name one and it is usable, else fetched whole (and cached).
    pub async fn from_session_with(
        api: Arc<ApiClient>,
        session: Session,
        opts: Options,
    ) -> Result<Self> {
        let keys = KeyRing::new(
            session.master_key.clone(),
            session.user.clone(),
            session.rsa.clone(),
        );
        let transfer = TransferConfig {
            retry: api.config().retry.clone(),
            ..Default::default()
        };
        let tree_nodes = opts.tree_nodes.unwrap_or(cached::RESIDENT_NODES);
        let cache_file = opts
            .tree_cache
            .map(|dir| cache::file_for(&dir, &api.config().base_url, &session.user));
        let base_url = api.config().base_url.clone();
        let client = Client {
            api,
            session,
            store: Arc::new(TreeStore::new(keys, cache_file, base_url, tree_nodes)),
            transfer,
            versions: AtomicBool::new(true),
            key_manager: AtomicBool::new(false),
            keys_state: tokio::sync::Mutex::new(keys::KeyManager::default()),
            keys_io: tokio::sync::Mutex::new(()),
            vault_writes: AtomicBool::new(false),
            my_backups: std::sync::Mutex::new(None),
            transfers: std::sync::OnceLock::new(),
            graphics: std::sync::Mutex::new(Some(Default::default())),
            media_codecs: tokio::sync::OnceCell::new(),
            lanes: batch::Lanes::default(),
        };
        // The account's attributes come with `ug` (v:1), as the SDK reads them: `uga` is
        // only asked to refresh one that an action packet says changed.
        let user = client.api.run(&GetUser { v: 1 }).await?;
        client.load_keys(user.attr(keys::KEYS_ATTR)).await?;
        // Keys other users sent while we were away, before the tree is decrypted with them.
        if let Err(e) = client.accept_pending_keys().await {
            tracing::warn!("keys of folders shared with you could not be accepted: {e}");
        }
        if !client.warm_start().await? {
            client.fetch().await?;
        }
        if let Err(e) = client.adopt_legacy_share_keys().await {
            tracing::warn!("could not record shared folders' keys in ^!keys: {e}");
        }
        if client.has_pending_outshares().await {
            if let Err(e) = client.complete_pending_outshares().await {
                tracing::warn!(
                    "keys of folders shared before their recipients had accounts not sent: {e}"
                );
            }
        }
        client.set_versions_setting(user.attr("^!dv").as_ref());
        client.remember_my_backups(user.attr("^!bak").as_ref());
        Ok(client)
    }

    pub fn set_transfer_config(&mut self, cfg: TransferConfig) {
        self.transfer = cfg;
    }

    pub fn transfer_config(&self) -> &TransferConfig {
        &self.transfer
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
        let asked = std::time::Instant::now();
        let reply = self
            .api
            .run(&FetchNodes {
                c: 1,
                ca: None,
                r: None,
            })
            .await?;
        tracing::debug!(
            nodes = reply.f.len() + reply.f2.len(),
            ms = asked.elapsed().as_millis() as u64,
            "tree fetched and parsed"
        );
        let keys = self.read_tree().keys().clone();
        let cached = self.store.file().is_some();
        // Decrypting a large tree is CPU work: keep it off the async threads (and make the
        // cache's copy there, before the tree is shared).
        let got = std::time::Instant::now();
        let (tree, snapshot) = tokio::task::spawn_blocking(move || {
            let (mut tree, _) = NodeTree::from_fetch_owned(reply, keys)?;
            tracing::debug!(
                nodes = tree.len(),
                decrypt_ms = got.elapsed().as_millis() as u64,
                "tree decrypted"
            );
            let snapshot = if cached {
                cache::snapshot(&mut tree)
            } else {
                None
            };
            Ok::<_, crate::tree::TreeError>((tree, snapshot))
        })
        .await
        .map_err(task_failed)??;
        let bad = tree.undecryptable().count();
        if bad > 0 {
            tracing::warn!(
                count = bad,
                "some nodes cannot be decrypted; they are shown as [undecryptable]"
            );
        }
        self.store.install(tree, snapshot).await;
        Ok(())
    }

    /// Whether replaced files are kept as previous versions: the account's `^!dv`
    /// setting, read at login and again when a `ua` packet names it.
    pub fn versions_enabled(&self) -> bool {
        self.versions.load(Ordering::Relaxed)
    }

    /// Reads `^!dv` ("1": versions off; absent: on). A server that cannot answer leaves the
    /// setting as it was, and says so.
    pub async fn read_versions_setting(&self) {
        let q = GetUserAttribute {
            u: &self.session.user,
            ua: "^!dv",
            v: 1,
        };
        match self.api.run(&q).await {
            Ok(a) => self.set_versions_setting(Some(&a)),
            Err(ApiError::Mega(ErrorCode::NotFound)) => self.set_versions_setting(None),
            Err(e) => tracing::warn!("could not read the account's file-version setting: {e}"),
        }
    }

    /// Takes `^!dv` as served (`None`: not set, versions on).
    fn set_versions_setting(&self, served: Option<&UserAttribute>) {
        let on = served
            .is_none_or(|a| b64::decode(&a.av, "^!dv").map_or(true, |v| v.as_slice() != b"1"));
        self.versions.store(on, Ordering::Relaxed);
    }

    /// Lets go of the tree without freeing it node by node: for a process about to exit
    /// (see [`TreeStore::release_for_exit`]). The client has an empty tree afterwards.
    pub fn release_tree_for_exit(&self) {
        self.store.release_for_exit();
    }

    /// The tree and its cache file.
    pub fn store(&self) -> &Arc<TreeStore> {
        &self.store
    }

    /// Read access to the tree. Do not hold the guard across `.await`. A node not in memory
    /// is read from the cache file under the lock: prefer [`view`](Self::view).
    pub fn read_tree(&self) -> RwLockReadGuard<'_, NodeTree> {
        self.store.read()
    }

    fn write_tree(&self) -> RwLockWriteGuard<'_, NodeTree> {
        self.store.write()
    }

    /// Runs `f` over the tree, reading what it needs from the cache file outside the tree's
    /// lock (`f` may run more than once; see [`TreeStore::view`]).
    pub fn view<T>(&self, f: impl Fn(&NodeTree) -> T) -> T {
        self.store.view(f)
    }

    fn damaged_error(&self) -> Error {
        let path = self.store.file().map(Path::to_path_buf).unwrap_or_default();
        Error::CacheDamaged { path }
    }

    /// Registers a tree-changing command about to be sent; hold the guard until its reply
    /// is applied to the tree.
    /// Refused while the tree is served from a cache file found damaged: a change is never
    /// decided on what such a file gave.
    pub(crate) fn mutation(&self) -> Result<Mutation<'_>> {
        if self.read_tree().damaged() {
            return Err(self.damaged_error());
        }
        Ok(self.store.mutation())
    }

    /// Runs `f` over the tree, and fails instead if the tree cache it is served from turned
    /// out damaged (before or while `f` read it): what a damaged file gave (a folder with
    /// children missing, a node not found) is never used. Every lookup and listing that
    /// decides what is shown or done goes through here. `f` may run more than once.
    pub fn checked<T>(&self, f: impl Fn(&NodeTree) -> T) -> Result<T> {
        self.store.checked(f).map_err(|_| self.damaged_error())
    }

    /// A copy of a node.
    pub fn node(&self, h: &NodeHandle) -> Result<Node> {
        self.checked(|t| t.get(h).cloned())?
            .ok_or_else(|| Error::NotFound {
                what: format!("node {h}"),
            })
    }

    /// Resolves a path below the Cloud Drive.
    pub fn resolve(&self, path: &str) -> Result<Node> {
        Ok(self.checked(|t| t.resolve(path).cloned())??)
    }

    pub fn root(&self) -> Result<Node> {
        self.view(|t| t.root().cloned())
            .ok_or_else(|| Error::Protocol("the account has no Cloud Drive root".into()))
    }

    pub fn rubbish(&self) -> Result<Node> {
        self.view(|t| t.rubbish().cloned())
            .ok_or_else(|| Error::Protocol("the account has no Rubbish Bin".into()))
    }

    /// The children of a folder (an error, never a short list, if the tree cache turned out
    /// damaged while they were read).
    pub fn children(&self, h: &NodeHandle) -> Result<Vec<Node>> {
        self.checked(|t| t.children(h).into_iter().cloned().collect())
    }

    /// The MEGA path of a node (`/a/b`, `//Rubbish Bin/a`).
    pub fn path_of(&self, h: &NodeHandle) -> String {
        self.view(|t| t.path_of(h))
    }

    /// Storage quota.
    pub async fn quota(&self) -> Result<Quota> {
        let r = self.api.run(&GetQuota { strg: 1, xfer: 1 }).await?;
        // The hourly history stops at its first -1 (as the SDK reads it).
        let hours: Vec<u64> = r
            .tah
            .unwrap_or_default()
            .into_iter()
            .take_while(|b| *b >= 0)
            .map(|b| b as u64)
            .collect();
        let mut transfer_used =
            r.caxfer.unwrap_or(0) + r.csxfer.unwrap_or(0) + hours.iter().sum::<u64>();
        if let Some(max) = r.mxfer {
            transfer_used = transfer_used.min(max);
        }
        Ok(Quota {
            total: r.mstrg.unwrap_or(0),
            used: r.cstrg.unwrap_or(0),
            transfer_used,
            transfer_max: r.mxfer,
            transfer_hours: hours.len(),
        })
    }

    /// Ends the session on the server and removes the account's tree cache.
    pub async fn logout(&self) -> Result<()> {
        session::logout(&self.api).await?;
        self.store.turn_off(true).await;
        Ok(())
    }
}
