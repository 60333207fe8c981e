//! mega-testserver: a MEGA-protocol server that stores ciphertext on disk.
//!
//! It speaks the client API as real MEGA clients use it (`MEGA-PROTOCOL.md` §13 is the
//! checklist): `/cs` command batches, `/sc` event long-polls with a blocking wait URL, ranged
//! download URLs and chunked upload URLs. Like the real service it is content-blind: it stores
//! only ciphertext, encrypted attributes and wrapped keys.
//!
//! Modules: [`crypto`] (its own, never the product crate's), [`store`] (SQLite + blob files),
//! [`faults`] (fault injection), [`audit`] (offline checks of what clients stored, given an
//! account's password), `commands` (the `/cs` commands), `attrs` (user attributes),
//! `shares` (folders shared between users, pending keys), `pending` (pending shares), `contacts` (contact requests), `versions` (file versions), `transfer` (upload/download URLs), `events` (`/sc` and the
//! wait URL).
//!
//! Use it in-process with [`TestServer::start`] or as the `mega-testserver` binary.
//!
//! Safe to run on a shared machine: the admin endpoints need the admin token, the data
//! directory is private to its user and holds no usable session id, every command applies
//! completely or not at all, and the [`Limits`] bound what one client can make it do.

pub mod audit;
pub mod crypto;
pub mod faults;
pub mod stats;
pub mod store;

mod attrs;
mod backups;
mod commands;
mod contacts;
mod events;
mod fileattrs;
mod http;
mod pending;
mod quota;
mod shares;
mod transfer;
mod versions;

mod guard;
pub mod keymgr;
pub mod seed;

use std::collections::HashSet;

use attrs::AttrQueries;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use faults::{FaultConfig, Faults};
pub use guard::Limits;
pub use store::{Queries, Store};

/// Start-up configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the database and blobs live.
    pub data_dir: PathBuf,
    /// Address to listen on; port 0 picks a free one.
    pub listen: SocketAddr,
    /// Initial fault settings.
    pub faults: FaultConfig,
    /// How long the `w` wait URL blocks before answering with nothing new.
    pub wait_timeout: Duration,
    /// The token the admin endpoints (`/__admin/...`) require as `Authorization: Bearer`.
    /// `None`: a random one is made at start and written to `DATA/admin-token` (0600).
    pub admin_token: Option<String>,
    pub limits: Limits,
}

impl Config {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Config {
            data_dir: data_dir.into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            faults: FaultConfig::default(),
            wait_timeout: Duration::from_secs(20),
            admin_token: None,
            limits: Limits::default(),
        }
    }
}

/// The file in the data directory that holds the admin token (0600).
pub const ADMIN_TOKEN_FILE: &str = "admin-token";

/// Options for a new account.
#[derive(Debug, Clone)]
pub struct UserOptions {
    /// Create a legacy v1 account (prepare_key + stringhash) instead of v2 (PBKDF2).
    pub v1: bool,
    /// Base32 TOTP secret: the account then requires 2FA.
    pub totp_secret: Option<String>,
    /// Storage quota in bytes.
    pub quota: i64,
    /// Display name.
    pub name: String,
    /// Created blocked by the service for this reason (a `whyamiblocked` code such as 200
    /// copyright, 300 terms of service, 700 e-mail verification); 0: not blocked.
    pub blocked: i64,
    /// An account as MEGA made them before late 2022: no Ed25519/Cu25519 keys and no key
    /// manager (`^!keys`), only the RSA key pair.
    pub legacy: bool,
    /// Its own transfer allowance (bytes per six hours), as a paid plan has; 0: none.
    pub transfer_quota: i64,
}

impl Default for UserOptions {
    fn default() -> Self {
        UserOptions {
            v1: false,
            totp_secret: None,
            quota: DEFAULT_QUOTA,
            name: "Test User".into(),
            blocked: 0,
            legacy: false,
            transfer_quota: 0,
        }
    }
}

/// Storage quota of a new account unless told otherwise: 20 GiB, like a free account.
pub const DEFAULT_QUOTA: i64 = 20 * 1024 * 1024 * 1024;

/// Errors starting the server or creating accounts.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("account {0} already exists")]
    UserExists(String),
    #[error("{0}")]
    Other(String),
}

/// Creates an account in the store, deriving keys the way a registering client would.
pub fn add_user(
    store: &Store,
    email: &str,
    password: &str,
    opts: &UserOptions,
) -> Result<store::User, ServerError> {
    let email = email.trim().to_lowercase();
    if store.lock().user_by_email(&email)?.is_some() {
        return Err(ServerError::UserExists(email));
    }
    if let Some(s) = &opts.totp_secret {
        if crypto::base32_decode(s).is_none_or(|k| k.is_empty()) {
            return Err(ServerError::Other("TOTP secret is not valid base32".into()));
        }
    }
    let (version, pwkey, verifier, salt) = if opts.v1 {
        let pk = crypto::prepare_key(password.as_bytes());
        (1, pk, crypto::stringhash(&email, &pk).to_vec(), None)
    } else {
        let salt = crypto::v2_salt();
        let (pk, auth) = crypto::derive_v2(password.as_bytes(), &salt);
        (
            2,
            pk,
            crypto::v2_verifier(&auth).to_vec(),
            Some(salt.to_vec()),
        )
    };
    let keys = crypto::make_account_keys(&pwkey).map_err(ServerError::Other)?;
    let user = store::User {
        handle: crypto::b64e(&crypto::random_bytes::<8>()),
        email,
        version,
        verifier,
        salt,
        k: crypto::b64e(&keys.k),
        privk: crypto::b64e(&keys.privk),
        pubk: crypto::b64e(&keys.pubk),
        ts: crypto::b64e(&keys.ts),
        name: opts.name.clone(),
        totp_secret: opts.totp_secret.clone(),
        quota: opts.quota,
        root: new_node_handle(),
        inbox: new_node_handle(),
        rubbish: new_node_handle(),
        since: store::now(),
        blocked: opts.blocked,
        xfer_quota: opts.transfer_quota,
    };
    let attrs = if opts.legacy {
        Vec::new()
    } else {
        let handle: [u8; 8] = crypto::b64d(&user.handle)
            .and_then(|h| h.try_into().ok())
            .ok_or_else(|| ServerError::Other("bad user handle".into()))?;
        keymgr::account_attributes(&keymgr::NewKeys {
            mk: &keys.mk,
            user: handle,
            pubk: &keys.pubk,
            rsa_pqd: &keys.rsa_pqd,
            now: store::now() as u64,
            ed_seed: crypto::random_bytes(),
            cu_private: crypto::random_bytes(),
        })
    };
    store.atomic(|db| {
        db.insert_user(&user)?;
        for (name, value) in &attrs {
            db.put_attr(&user.handle, name, value)?;
        }
        // Folders shared with this address wait for it to accept the contact request
        // (it finds the request in its `ipc`).
        Ok::<_, store::StoreError>(())
    })?;
    Ok(user)
}

/// An account's master key, from its password (checked against the stored verifier): what
/// the offline tools that act for a user (`seed`, `audit`) need; the running server never
/// does this.
pub(crate) fn master_key(user: &store::User, password: &str) -> Result<[u8; 16], ServerError> {
    use aes::cipher::{generic_array::GenericArray, BlockDecrypt, KeyInit};
    let pwkey = if user.version == 1 {
        let pk = crypto::prepare_key(password.as_bytes());
        if crypto::stringhash(&user.email, &pk).as_slice() != user.verifier.as_slice() {
            return Err(ServerError::Other("wrong password".into()));
        }
        pk
    } else {
        let salt = user.salt.clone().unwrap_or_default();
        let (pk, auth) = crypto::derive_v2(password.as_bytes(), &salt);
        if crypto::v2_verifier(&auth).as_slice() != user.verifier.as_slice() {
            return Err(ServerError::Other("wrong password".into()));
        }
        pk
    };
    let mut mk: [u8; 16] = crypto::b64d(&user.k)
        .and_then(|k| k.try_into().ok())
        .ok_or_else(|| ServerError::Other("the account's key is malformed".into()))?;
    aes::Aes128::new(GenericArray::from_slice(&pwkey))
        .decrypt_block(GenericArray::from_mut_slice(&mut mk));
    Ok(mk)
}

/// A fresh 6-byte node handle (8 base64 characters).
pub(crate) fn new_node_handle() -> String {
    crypto::b64e(&crypto::random_bytes::<6>())
}

/// Shared server state.
pub(crate) struct State {
    pub store: Store,
    pub faults: Arc<Faults>,
    pub base_url: String,
    pub config: Config,
    pub admin_token: String,
    /// The store's secret (see [`Store::secret`]), read once at start.
    pub secret: Vec<u8>,
    pub replies: Mutex<guard::ReplyCache>,
    pub throttle: guard::Throttle,
    pub waits: guard::WaitTokens,
    pub hashcash_tokens: Mutex<HashSet<String>>,
    /// Woken whenever any account's event log grows.
    pub events: tokio::sync::Notify,
    /// Serializes upload range bookkeeping (data writes happen outside it).
    pub upload_lock: tokio::sync::Mutex<()>,
    pub stats: stats::Stats,
    /// Downloads per client address, against the transfer quota.
    pub meter: quota::TransferMeter,
}

/// A running server. Dropping it shuts it down.
pub struct TestServer {
    state: Arc<State>,
    addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    sweeper: Option<tokio::task::JoinHandle<()>>,
}

/// How often expired sessions, URLs and upload slots are removed.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

impl TestServer {
    /// Binds and starts serving on the current tokio runtime.
    pub async fn start(config: Config) -> Result<TestServer, ServerError> {
        let transfer_quota = config.limits.transfer_quota;
        let transfer_bucket = config.limits.transfer_bucket.as_secs();
        let store = Store::open(&config.data_dir)?;
        let secret = store.secret()?;
        {
            use store::Queries;
            store
                .lock()
                .set_setting(store::EVENT_LOG_SETTING, config.limits.event_log)?;
        }
        let admin_token = match &config.admin_token {
            Some(t) => t.clone(),
            None => crypto::b64e(&crypto::random_bytes::<24>()),
        };
        {
            use std::io::Write;
            let mut f = store::private_file(&config.data_dir.join(ADMIN_TOKEN_FILE))?;
            f.write_all(admin_token.as_bytes())?;
        }
        let listener = tokio::net::TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            store,
            faults: Arc::new(Faults::new(config.faults.clone())),
            base_url: format!("http://{addr}/"),
            replies: Mutex::new(guard::ReplyCache::new(config.limits.reply_cache_bytes)),
            throttle: guard::Throttle::default(),
            waits: guard::WaitTokens::default(),
            admin_token,
            secret,
            config,
            hashcash_tokens: Mutex::new(HashSet::new()),
            events: tokio::sync::Notify::new(),
            upload_lock: tokio::sync::Mutex::new(()),
            stats: stats::Stats::default(),
            meter: quota::TransferMeter::new(transfer_quota, transfer_bucket),
        });
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let app = http::router(state.clone());
        let task = tokio::spawn(async move {
            let serve = axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            // Replies are written as headers then body: without this, Nagle's algorithm and
            // the peer's delayed ACK stall every small download by ~40 ms.
            .tcp_nodelay(true)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            });
            if let Err(e) = serve.await {
                tracing::error!("server stopped: {e}");
            }
        });
        let st = state.clone();
        let sweeper = tokio::spawn(async move {
            let mut every = tokio::time::interval(SWEEP_EVERY);
            loop {
                every.tick().await;
                let st = st.clone();
                let _ = tokio::task::spawn_blocking(move || guard::sweep(&st)).await;
            }
        });
        Ok(TestServer {
            state,
            addr,
            shutdown: Some(tx),
            task: Some(task),
            sweeper: Some(sweeper),
        })
    }

    /// The token the admin endpoints require (`Authorization: Bearer <token>`).
    pub fn admin_token(&self) -> &str {
        &self.state.admin_token
    }

    /// Bytes of replies kept for idempotent retries.
    pub fn reply_cache_bytes(&self) -> usize {
        self.state
            .replies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .bytes()
    }

    /// Removes expired sessions, download URLs and stale upload slots now (the server also
    /// does it every minute); returns how many upload slots went.
    pub fn sweep(&self) -> usize {
        guard::sweep(&self.state)
    }

    /// A session for an account, as a successful login would make (for tests of what a
    /// logged-in client may do without running the login crypto).
    pub fn open_session(&self, email: &str) -> Result<String, ServerError> {
        let user = self
            .state
            .store
            .lock()
            .user_by_email(&email.trim().to_lowercase())?
            .ok_or_else(|| ServerError::Other(format!("no account {email}")))?;
        let sid = crypto::b64e(&crypto::make_sid(&user.handle));
        self.state.store.lock().insert_session(
            &sid,
            &user.handle,
            &crypto::b64e(&crypto::random_bytes::<16>()),
        )?;
        Ok(sid)
    }

    /// Makes the server present other public keys for an account from now on — new Ed25519
    /// and Cu25519 keys, validly signed by each other (`+puEd255`, `+puCu255`, `+sigCu255`) —
    /// as a server substituting keys would, or as after the account was reset. The account's
    /// own private keys are left alone. For testing that clients pin their contacts' keys.
    pub fn substitute_public_keys(&self, email: &str) -> Result<(), ServerError> {
        let user = self
            .state
            .store
            .lock()
            .user_by_email(&email.trim().to_lowercase())?
            .ok_or_else(|| ServerError::Other(format!("no account {email}")))?;
        let handle: [u8; 8] = crypto::b64d(&user.handle)
            .and_then(|h| h.try_into().ok())
            .ok_or_else(|| ServerError::Other("bad user handle".into()))?;
        let pubk = crypto::b64d(&user.pubk).unwrap_or_default();
        let attrs = keymgr::account_attributes(&keymgr::NewKeys {
            mk: &crypto::random_bytes(),
            user: handle,
            pubk: &pubk,
            rsa_pqd: &[],
            now: store::now() as u64,
            ed_seed: crypto::random_bytes(),
            cu_private: crypto::random_bytes(),
        });
        self.state.store.atomic(|db| {
            for (name, value) in attrs
                .iter()
                .filter(|(n, _)| matches!(*n, "+puEd255" | "+puCu255" | "+sigCu255"))
            {
                db.put_attr(&user.handle, name, value)?;
            }
            Ok::<_, store::StoreError>(())
        })?;
        Ok(())
    }

    /// The API base URL, e.g. `http://127.0.0.1:41234/`.
    pub fn base_url(&self) -> &str {
        &self.state.base_url
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many transfers were served at once.
    pub fn stats(&self) -> &stats::Stats {
        &self.state.stats
    }

    /// Run-time fault control.
    pub fn faults(&self) -> &Faults {
        &self.state.faults
    }

    /// Every upload URL issued (and not swept yet), with the bytes it received.
    pub fn uploads(&self) -> Result<Vec<store::UploadReport>, ServerError> {
        Ok(self.state.store.lock().upload_report()?)
    }

    pub fn store(&self) -> &Store {
        &self.state.store
    }

    pub fn data_dir(&self) -> &Path {
        &self.state.config.data_dir
    }

    /// Creates an account (blocking work runs off the async threads).
    pub async fn add_user(
        &self,
        email: &str,
        password: &str,
        opts: UserOptions,
    ) -> Result<store::User, ServerError> {
        let state = self.state.clone();
        let (email, password) = (email.to_string(), password.to_string());
        let s2 = state.clone();
        let user =
            tokio::task::spawn_blocking(move || add_user(&s2.store, &email, &password, &opts))
                .await
                .map_err(|e| ServerError::Other(e.to_string()))??;
        // Pending shares it accepted told their owners.
        state.events.notify_waiters();
        Ok(user)
    }

    /// Stops serving and starts again on the same address with the same data and settings,
    /// as a restarted server would (connections in progress break; sessions, nodes and events
    /// are in the store and survive). Faults set at run time are reset to the configured ones.
    pub async fn restart(&mut self) -> Result<(), ServerError> {
        let mut config = self.state.config.clone();
        config.listen = self.addr;
        config.admin_token = Some(self.state.admin_token.clone());
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(s) = self.sweeper.take() {
            s.abort();
        }
        if let Some(t) = self.task.take() {
            // Connections close gracefully (idle ones at once); a long-poll does not hold the
            // restart up for long.
            let abort = t.abort_handle();
            if tokio::time::timeout(Duration::from_secs(3), t)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
        // The port is free once the listener is dropped; a moment may pass before it is.
        let mut tries = 0;
        let fresh = loop {
            match TestServer::start(config.clone()).await {
                Ok(s) => break s,
                Err(ServerError::Io(e)) if tries < 50 => {
                    tries += 1;
                    tracing::debug!("restart: {e}; trying again");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e),
            }
        };
        *self = fresh;
        Ok(())
    }

    /// Stops serving and waits for the server task to end.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(s) = self.sweeper.take() {
            s.abort();
        }
        if let Some(t) = self.task.take() {
            // Long-polls may hold connections open; do not wait for them forever.
            let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(s) = self.sweeper.take() {
            s.abort();
        }
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}
