//! One owner for the tree and its cache file ([`TreeStore`]): the tree behind its lock, and
//! everything about the cache file — where it is, whether this process writes it, whether a
//! new one is being written, the open file, what it is told when damaged, the cursor, which
//! tree is which, how much stays in memory — as one state behind one lock, changed only by
//! the transitions below.
//!
//! ```text
//!            open (writer)                      commit fails / conflict / too old / damaged
//!   Off ───────────────────────▶ Serving ───────────────────────────────────────▶ Off
//!    │ ▲   open (another writes)   ▲  ▲ commit (stays)
//!    │ └────── ReadOnly            │  │
//!    │ install (fetched, writer)   │ adopt (written, same tree)
//!    └──────────────────────▶ Building ──────▶ Off (write failed, or another tree in place)
//! ```
//!
//! `install` goes from any state (the old file or build is dropped) to `Building`, or to
//! `Off` when this process does not write the file. Each transition holds the state lock
//! from start to end (a commit, an adoption and an install never interleave), and runs in
//! its own task, so a caller that is cancelled never leaves the state half changed.
//!
//! Reads of the cache file never run while the tree's lock is held: a reader
//! ([`TreeStore::view`]) runs its closure in a [`deferring`] scope, lets go of the lock,
//! reads what was missing from the file and decrypts it, puts it in the tree and runs the
//! closure again. What it read is valid when it is put in: it holds the file's [`Gate`](super::cache::Gate)
//! from before the read until then, and a commit takes it alone before it writes.
//! Changes to the tree read what they will touch the same way first ([`TreeStore::edit`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::cache::{self, Backing, CacheError, Damage, Meta, Row, TreeCache, WriterLock};
use super::{decrypt_all, deferring, ActionPacket, Change, KeyRing, Miss, NodeHandle};
use super::{Node, NodeTree};

/// How many times a read is run again after reading what it missed before it reads in
/// place (a path deeper than this, or a tree trimmed between every round).
const ROUNDS: usize = 64;

/// What the store does with its cache file.
enum Phase {
    /// No file in use: none configured, this process could not write it, or it was turned
    /// off for this run (a write failed, another process took over, the server's event log
    /// no longer reaches its cursor, or it was found damaged).
    Off,
    /// The tree was loaded whole from a file another process writes; never written here.
    ReadOnly,
    /// A new file being written in the background from the tree of `epoch` (fetched); that
    /// tree is in use meanwhile and its changes wait for the file.
    Building {
        epoch: u64,
        task: tokio::task::JoinHandle<Result<TreeCache, CacheError>>,
    },
    /// The tree is served from this file and its changes are committed to it.
    Serving(TreeCache),
}

impl Phase {
    fn name(&self) -> &'static str {
        match self {
            Phase::Off => "off",
            Phase::ReadOnly => "read-only",
            Phase::Building { .. } => "building",
            Phase::Serving(_) => "serving",
        }
    }
}

/// The state behind the store's one lock.
struct State {
    phase: Phase,
    /// Held while this process is the writer of the file (taken at the first ask).
    writer: Option<WriterLock>,
}

/// Tree-changing commands in flight, by the order they started, each with the event cursor
/// current when it started. While one is in flight its own echo may arrive (and be skipped)
/// before its reply is in the tree, so the tree cache is never committed with a cursor later
/// than the oldest one's: another process reading the file then replays the echo itself.
#[derive(Debug, Default)]
struct Mutations {
    next: u64,
    started: std::collections::BTreeMap<u64, Option<String>>,
}

/// One tree-changing command in flight; dropped once its reply is in the tree (or it failed).
pub struct Mutation<'a> {
    store: &'a TreeStore,
    id: u64,
}

impl Drop for Mutation<'_> {
    fn drop(&mut self) {
        lock(&self.store.mutations).started.remove(&self.id);
    }
}

/// The tree is served from a cache file found damaged (what it gave is not to be used).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Damaged;

/// The account's tree and its cache file (see the module's documentation).
pub struct TreeStore {
    tree: RwLock<NodeTree>,
    state: tokio::sync::Mutex<State>,
    /// The account's cache file, if the client keeps one.
    file: Option<PathBuf>,
    /// The server the file belongs to (checked when it is opened).
    base_url: String,
    /// How many unchanged nodes a tree served from the file keeps in memory.
    budget: usize,
    /// Told when the file the tree is served from is found damaged.
    damage: Arc<Damage>,
    mutations: Mutex<Mutations>,
    /// Whether the state is `Building` (or being adopted from it): readable without the
    /// state's lock, which any transition holds for a while.
    building: std::sync::atomic::AtomicBool,
    /// Run between a deferred read of the file and putting what it read in the tree (tests:
    /// to widen that window).
    #[cfg(test)]
    load_hook: Option<Arc<dyn Fn() + Send + Sync>>,
}

impl std::fmt::Debug for TreeStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TreeStore")
            .field("file", &self.file)
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a reader needs to read missed nodes from the file with the tree's lock let go.
struct Loader {
    backing: Arc<Backing>,
    keys: KeyRing,
    epoch: u64,
}

/// What a [`Loader`] read: nodes, handles the file does not hold, and child lists as the
/// file has them.
#[derive(Default)]
struct Loaded {
    nodes: Vec<Node>,
    absent: Vec<NodeHandle>,
    lists: Vec<(NodeHandle, Vec<NodeHandle>)>,
}

impl Loader {
    /// Reads and decrypts what `misses` name (no lock of the tree held).
    fn read(&self, misses: Vec<Miss>) -> Loaded {
        let mut seen = std::collections::HashSet::with_capacity(misses.len());
        let mut raws = Vec::new();
        let mut out = Loaded::default();
        for m in misses {
            if !seen.insert(m.clone()) {
                continue;
            }
            match m {
                Miss::Node(h) => match self.backing.node(&h.0) {
                    Some(raw) => raws.push(raw),
                    None => out.absent.push(h),
                },
                Miss::Kids(p) => {
                    let rows = self.backing.children(&p.0);
                    out.lists
                        .push((p, rows.iter().map(|r| NodeHandle(r.h.clone())).collect()));
                    raws.extend(rows);
                }
            }
        }
        if self.backing.failed() {
            return Loaded::default();
        }
        match decrypt_all(raws, &self.keys) {
            Ok(nodes) => out.nodes = nodes,
            Err(e) => {
                self.backing.fail(&e);
                return Loaded::default();
            }
        }
        out
    }
}

impl NodeTree {
    fn loader(&self) -> Option<Loader> {
        Some(Loader {
            backing: self.backing.clone()?,
            keys: self.keys.clone(),
            epoch: self.epoch,
        })
    }

    /// Reads `miss` from the file and puts it in, with the lock held by the caller (see
    /// [`NodeTree::node`] and [`NodeTree::kids`]: only where nothing can be deferred).
    pub(super) fn read_in_place(&self, miss: Miss) {
        if let Some(loader) = self.loader() {
            let loaded = loader.read(vec![miss]);
            self.admit(&loader, loaded);
        }
    }

    /// Puts what `loader` read into the tree (through `&self`, like a read in place): only
    /// into the tree it was read for, and never over what changed since the last commit
    /// (the caller holds the file's gate, so the file has not changed since the read).
    fn admit(&self, loader: &Loader, loaded: Loaded) {
        let same = self
            .backing
            .as_ref()
            .is_some_and(|b| Arc::ptr_eq(b, &loader.backing));
        if !same || self.epoch != loader.epoch {
            return;
        }
        for n in loaded.nodes {
            if !self.dirty.contains_key(&n.handle) && !self.nodes.contains(&n.handle) {
                self.nodes.insert_shared(n.handle.clone(), n);
            }
        }
        for h in loaded.absent {
            if !self.dirty.contains_key(&h) && !self.nodes.contains(&h) {
                self.absent.insert_shared(h, ());
            }
        }
        for (p, listed) in loaded.lists {
            if self.children.contains(&p)
                || (self.dirty.contains_key(&p) && !self.nodes.contains(&p))
            {
                continue;
            }
            // What the file lists, less what changed since it was written (as a read in
            // place does).
            let list: Vec<NodeHandle> = listed
                .into_iter()
                .filter(|c| match self.nodes.get(c) {
                    Some(n) => n.parent.as_ref() == Some(&p),
                    None => !self.dirty.contains_key(c),
                })
                .collect();
            self.children.insert_shared(p, list);
        }
    }
}

impl TreeStore {
    /// A store of the tree of the account `keys` open, with its cache file `file` (of the
    /// server `base_url`), keeping `budget` unchanged nodes in memory when served from it.
    pub fn new(keys: KeyRing, file: Option<PathBuf>, base_url: String, budget: usize) -> Self {
        TreeStore {
            tree: RwLock::new(NodeTree::new(keys)),
            state: tokio::sync::Mutex::new(State {
                phase: Phase::Off,
                writer: None,
            }),
            file,
            base_url,
            budget,
            damage: Arc::default(),
            mutations: Mutex::default(),
            building: std::sync::atomic::AtomicBool::new(false),
            #[cfg(test)]
            load_hook: None,
        }
    }

    /// This store, running `hook` between each deferred read and putting what it read in.
    #[cfg(test)]
    pub(crate) fn with_load_hook(mut self, hook: Arc<dyn Fn() + Send + Sync>) -> Self {
        self.load_hook = Some(hook);
        self
    }

    /// The account's cache file, if one is kept.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// Told when the file the tree is served from is found damaged.
    pub fn damage(&self) -> &Arc<Damage> {
        &self.damage
    }

    /// The tree, locked for reading. A node not in memory is read from the file in place,
    /// under the lock: prefer [`view`](Self::view). Never hold the guard across `.await`.
    pub fn read(&self) -> RwLockReadGuard<'_, NodeTree> {
        self.tree.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The tree, locked for a change: read what it will touch first ([`edit`](Self::edit)).
    pub fn write(&self) -> RwLockWriteGuard<'_, NodeTree> {
        self.tree.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` over the tree with what it needs from the cache file read outside the
    /// tree's lock (see the module's documentation); `f` may run several times.
    pub fn view<T>(&self, f: impl Fn(&NodeTree) -> T) -> T {
        let mut tree = self.read();
        for _ in 0..ROUNDS {
            let (out, misses) = deferring(|| f(&tree));
            if misses.is_empty() {
                return out;
            }
            let Some(loader) = tree.loader() else { break };
            drop(tree);
            // What was read goes in and `f` runs again under one hold of the lock, so that
            // no trim (which needs the write lock) drops it in between: a listing bigger
            // than the memory budget would otherwise lose part of what it just read.
            match self.load(&loader, misses) {
                Some(held) => tree = held,
                None => {
                    tree = self.read();
                    break;
                }
            }
        }
        // Still missing after many rounds (or the file failed: then nothing is read).
        tracing::debug!("a read of the tree reads the cache file in place");
        f(&tree)
    }

    /// Whether a writer could take the tree's lock right now (tests).
    #[cfg(test)]
    pub(crate) fn writable_now(&self) -> bool {
        self.tree.try_write().is_ok()
    }

    /// Reads `misses` (no lock of the tree held) and puts them in the tree; returns the
    /// tree still locked for reading, or `None` when the file failed.
    fn load(&self, loader: &Loader, misses: Vec<Miss>) -> Option<RwLockReadGuard<'_, NodeTree>> {
        let gate = loader.backing.gate();
        let _reading = gate.read().unwrap_or_else(|e| e.into_inner());
        let loaded = loader.read(misses);
        if loader.backing.failed() {
            return None;
        }
        #[cfg(test)]
        if let Some(hook) = &self.load_hook {
            hook();
        }
        let tree = self.read();
        tree.admit(loader, loaded);
        Some(tree)
    }

    /// [`view`](Self::view), failing instead if the file the tree is served from turned
    /// out damaged (before or while `f` read it): what a damaged file gave (a folder with
    /// children missing, a node not found) is never used.
    pub fn checked<T>(&self, f: impl Fn(&NodeTree) -> T) -> Result<T, Damaged> {
        let before = self.damage.count();
        let out = self.view(f);
        if self.read().damaged() || self.damage.count() != before {
            return Err(Damaged);
        }
        Ok(out)
    }

    /// Changes the tree: `touch` names (by reading them) the nodes and lists `change` will
    /// read, so that they are read from the file first, outside the lock; then `change`
    /// runs under the write lock. What `touch` did not foresee is read in place.
    pub fn edit<T>(&self, touch: impl Fn(&NodeTree), change: impl FnOnce(&mut NodeTree) -> T) -> T {
        self.view(touch);
        change(&mut self.write())
    }

    /// Applies a batch of action packets (own echoes skipped) and moves the cursor to `sn`,
    /// in one step.
    pub fn apply(&self, packets: &[ActionPacket], echo: Option<&str>, sn: &str) -> Vec<Change> {
        self.edit(
            |t| t.prefetch(packets),
            |t| {
                let changes = t.apply(packets, echo);
                t.set_sn(Some(sn.to_string()));
                changes
            },
        )
    }

    /// Drops the least recently used nodes while more than the budget are in memory (those
    /// changed since the last commit stay); else only starts a new period of use. Called
    /// once a second while the tree is followed.
    pub fn trim(&self) {
        {
            let tree = self.read();
            if tree.resident() <= self.budget {
                tree.tick();
                return;
            }
        }
        self.write().trim(self.budget);
    }

    /// Registers a tree-changing command about to be sent (hold it until its reply is in
    /// the tree).
    pub fn mutation(&self) -> Mutation<'_> {
        let sn = self.read().sn().map(str::to_string);
        let mut m = lock(&self.mutations);
        let id = m.next;
        m.next += 1;
        m.started.insert(id, sn);
        Mutation { store: self, id }
    }

    /// The cursor the file may be committed with: the current one, or, while tree-changing
    /// commands are in flight, the one current when the oldest started.
    pub fn committable_sn(&self) -> Option<String> {
        let current = self.read().sn().map(str::to_string);
        let m = lock(&self.mutations);
        match m.started.values().next() {
            Some(Some(oldest)) => Some(oldest.clone()),
            _ => current,
        }
    }

    /// Whether this process is the writer of the file (taken at the first ask and kept):
    /// another process holding it makes this one read the file whole and never write it.
    fn writer(&self, state: &mut State) -> bool {
        let Some(path) = &self.file else {
            return false;
        };
        if state.writer.is_none() {
            state.writer = WriterLock::try_take(path);
            if state.writer.is_none() {
                tracing::debug!(
                    "another process keeps the tree cache {}; reading it only",
                    path.display()
                );
            }
        }
        state.writer.is_some()
    }

    /// Puts `tree` in place of the current one (the old one is freed after the lock is let
    /// go); returns its epoch, and the file the old one was served from, if it was.
    pub(crate) fn put(&self, mut tree: NodeTree) -> (u64, Option<Arc<Backing>>) {
        let mut old = {
            let mut current = self.write();
            tree.succeed(&current);
            std::mem::replace(&mut *current, tree)
        };
        let epoch = old.epoch + 1;
        let backing = old.detach();
        drop(old);
        (epoch, backing)
    }

    /// Waits until no reader still reads the old file `backing` (one that took it before the
    /// tree was replaced, for at most one read), then closes it: its connection must be
    /// closed before a new file is made at its path (closing the last connection of a file
    /// removes the WAL at that path, which would then be the new file's).
    async fn close_old(backing: Option<Arc<Backing>>) {
        let Some(mut b) = backing else {
            return;
        };
        loop {
            match Arc::try_unwrap(b) {
                Ok(last) => return drop(last),
                Err(shared) => b = shared,
            }
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    }

    /// Runs a transition in its own task: a caller cancelled meanwhile never leaves the
    /// state half changed.
    async fn detached<T, F>(self: &Arc<Self>, f: impl FnOnce(Arc<Self>) -> F) -> Option<T>
    where
        T: Send + 'static,
        F: std::future::Future<Output = T> + Send + 'static,
    {
        match tokio::spawn(f(self.clone())).await {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::warn!("tree cache task failed: {e}");
                None
            }
        }
    }

    /// Off → Serving (this process writes the file) or ReadOnly (another one does): the
    /// tree opened from the file, at the file's cursor; the caller then brings it up to date
    /// from the event channel. False: no usable file (none, or invalid — then removed).
    pub async fn open(self: &Arc<Self>) -> bool {
        self.detached(|s| async move { s.open_now().await })
            .await
            .unwrap_or(false)
    }

    async fn open_now(&self) -> bool {
        let Some(path) = self.file.clone() else {
            return false;
        };
        let mut state = self.state.lock().await;
        let writer = self.writer(&mut state);
        let keys = self.read().keys().clone();
        let base = self.base_url.clone();
        let file = path.clone();
        let damaged = self.damage.clone();
        let loaded = tokio::task::spawn_blocking(move || {
            let t0 = std::time::Instant::now();
            if writer {
                let Some((cache, opened)) =
                    TreeCache::open(&file, &base, &keys).map_err(|e| e.to_string())?
                else {
                    return Ok(None);
                };
                let tree = NodeTree::backed(keys, cache.backing(damaged), opened);
                // The root's children now, so that a damaged file shows before it is used.
                if let Some(root) = tree.root() {
                    tree.children(&root.handle);
                }
                tracing::debug!(
                    nodes = tree.len(),
                    ms = t0.elapsed().as_millis() as u64,
                    "tree cache opened"
                );
                return Ok(Some((cache, tree)));
            }
            let Some((cache, reply)) =
                TreeCache::load(&file, &base, &keys).map_err(|e| e.to_string())?
            else {
                return Ok(None);
            };
            let t1 = std::time::Instant::now();
            let (tree, _) = NodeTree::from_fetch_owned(reply, keys)
                .map_err(|e| format!("tree cache {}: {e}", file.display()))?;
            tracing::debug!(
                nodes = tree.len(),
                read_ms = (t1 - t0).as_millis() as u64,
                decrypt_ms = t1.elapsed().as_millis() as u64,
                "tree cache loaded"
            );
            Ok::<_, String>(Some((cache, tree)))
        })
        .await;
        let (cache, mut tree) = match loaded {
            Ok(Ok(Some(found))) => found,
            Ok(Ok(None)) => return false,
            Ok(Err(e)) => {
                tracing::warn!("{e}; removed, fetching the tree instead");
                if writer {
                    cache::remove(&path);
                }
                return false;
            }
            Err(e) => {
                tracing::warn!("opening the tree cache failed: {e}");
                return false;
            }
        };
        if tree.damaged() {
            cache::remove(&path);
            return false;
        }
        tree.set_sn(Some(cache.sn().to_string()));
        let (_, old) = self.put(tree);
        Self::close_old(old).await;
        state.phase = if writer {
            Phase::Serving(cache)
        } else {
            Phase::ReadOnly
        };
        true
    }

    /// Any → Building (or Off when this process does not write the file): a freshly
    /// fetched tree put in place, and a new file written from `snapshot` in the background
    /// (the tree is in use meanwhile; see [`adopt`](Self::adopt)). The file in use or being
    /// written holds an older tree: it is dropped (if no new file is written, the old one
    /// stays as it was, whole at its own cursor, for the next start).
    pub async fn install(self: &Arc<Self>, tree: NodeTree, snapshot: Option<(Vec<Row>, Meta)>) {
        self.detached(|s| async move { s.install_now(tree, snapshot).await })
            .await;
    }

    async fn install_now(&self, tree: NodeTree, snapshot: Option<(Vec<Row>, Meta)>) {
        let mut state = self.state.lock().await;
        let sn = tree.sn().map(str::to_string);
        let old = std::mem::replace(&mut state.phase, Phase::Off);
        let (epoch, old_backing) = self.put(tree);
        match old {
            // Waited for, so that its file is closed before another is made at its path.
            Phase::Building { task, .. } => drop(task.await),
            other => drop(other),
        }
        self.set_building(false);
        Self::close_old(old_backing).await;
        let (Some((rows, meta)), Some(sn), Some(path)) = (snapshot, sn, self.file.clone()) else {
            return;
        };
        if !self.writer(&mut state) {
            return;
        }
        let keys = self.read().keys().clone();
        let base = self.base_url.clone();
        let task = tokio::task::spawn_blocking(move || {
            let t0 = std::time::Instant::now();
            let c = TreeCache::create(&path, &base, &keys, &rows, &meta, &sn);
            tracing::debug!(
                nodes = rows.len(),
                ms = t0.elapsed().as_millis() as u64,
                "tree cache written"
            );
            c
        });
        state.phase = Phase::Building { epoch, task };
        self.set_building(true);
    }

    /// Building → Serving once the file is written (or at once, waiting for it, with
    /// `wait`), if the tree in place is still the one it was written from (else → Off:
    /// another tree was put in place, which writes its own file). Returns whether the file
    /// is still being written.
    pub async fn adopt(self: &Arc<Self>, wait: bool) -> bool {
        self.detached(move |s| async move {
            let mut state = s.state.lock().await;
            s.adopt_now(&mut state, wait).await
        })
        .await
        .unwrap_or(false)
    }

    async fn adopt_now(&self, state: &mut State, wait: bool) -> bool {
        let Phase::Building { task, .. } = &state.phase else {
            return false;
        };
        if !wait && !task.is_finished() {
            return true;
        }
        let Phase::Building { epoch, task } = std::mem::replace(&mut state.phase, Phase::Off)
        else {
            return false;
        };
        match task.await {
            Ok(Ok(c)) => {
                let mut tree = self.write();
                if tree.epoch() == epoch {
                    // Served from the file now: what it holds need not stay in memory (what
                    // changed since it was written stays until committed).
                    tree.attach(c.backing(self.damage.clone()));
                    tree.trim(self.budget);
                    drop(tree);
                    state.phase = Phase::Serving(c);
                }
            }
            Ok(Err(e)) => tracing::warn!("{e}; continuing without the tree cache"),
            Err(e) => tracing::warn!("writing the tree cache failed: {e}"),
        }
        self.set_building(false);
        false
    }

    fn set_building(&self, on: bool) {
        self.building.store(on, std::sync::atomic::Ordering::SeqCst);
    }

    /// Serving → Serving: the nodes changed since the last commit written with the cursor
    /// it may be committed with ([`committable_sn`](Self::committable_sn)); → Off if the
    /// file cannot take it (then removed: the next start fetches the tree) or another
    /// process took it over. A file still being written is adopted first if it is ready;
    /// else the changes wait for it. Without a file the list of changes is only dropped.
    pub async fn commit(self: &Arc<Self>) {
        self.detached(|s| async move { s.commit_now().await }).await;
    }

    async fn commit_now(self: Arc<Self>) {
        let mut state = self.state.lock().await;
        if self.adopt_now(&mut state, false).await {
            return;
        }
        let Phase::Serving(c) = &state.phase else {
            self.write().forget_changes();
            return;
        };
        let (changes, epoch) = {
            let tree = self.read();
            (cache::changes(&tree), tree.epoch())
        };
        let Some(sn) = self.committable_sn() else {
            return;
        };
        if changes.is_empty() && c.sn() == sn {
            return;
        }
        let Phase::Serving(mut c) = std::mem::replace(&mut state.phase, Phase::Off) else {
            return;
        };
        let store = self.clone();
        let done = tokio::task::spawn_blocking(move || {
            let gate = c.gate();
            // No reader is between reading rows and putting them in the tree while this
            // writes and the tree forgets what was written.
            let _alone = gate.write().unwrap_or_else(|e| e.into_inner());
            let r = c.commit(&changes, &sn);
            if r.is_ok() {
                let mut tree = store.write();
                if tree.epoch() == epoch {
                    tree.committed(changes.marks());
                    tree.trim(store.budget);
                }
            }
            (c, r)
        })
        .await;
        match done {
            Ok((c, Ok(()))) => state.phase = Phase::Serving(c),
            // Another process keeps the file current; this one leaves it to it.
            Ok((_, Err(e))) if e.is_conflict() => {
                tracing::debug!("{e}; leaving the tree cache to it");
            }
            // A file that cannot take a commit is not trusted again: the next start fetches
            // the tree and writes a new one.
            Ok((c, Err(e))) => {
                tracing::warn!("{e}; the tree cache is removed and off for this run");
                cache::remove(c.path());
            }
            Err(e) => tracing::warn!("tree cache commit failed: {e}"),
        }
    }

    /// Waits for a file being written, adopts it, and commits what changed since: before
    /// a process exits, so that the next start is warm.
    pub async fn finish(self: &Arc<Self>) {
        self.adopt(true).await;
        self.commit().await;
    }

    /// Any → Off: the file no longer used for this run (removed too with `remove`: it is
    /// damaged, or the account logs out). A file being written is waited for first.
    pub async fn turn_off(self: &Arc<Self>, remove: bool) {
        self.detached(move |s| async move {
            let mut state = s.state.lock().await;
            match std::mem::replace(&mut state.phase, Phase::Off) {
                Phase::Building { task, .. } => drop(task.await),
                other => drop(other),
            }
            s.set_building(false);
            if remove {
                if let Some(path) = &s.file {
                    cache::remove(path);
                }
            }
        })
        .await;
    }

    /// Whether a file is being written (after a fetch) and not yet in use.
    pub fn writing(&self) -> bool {
        // Not the state's lock: a commit or a trim holding it says nothing about the file.
        self.building.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The state's name (`off`, `read-only`, `building`, `serving`), or `busy` while a
    /// transition runs: for logs and tests.
    pub fn phase(&self) -> &'static str {
        self.state.try_lock().map_or("busy", |s| s.phase.name())
    }

    /// The background part of following the tree: serves it from a file written since,
    /// then trims it.
    pub async fn tend(self: &Arc<Self>) {
        self.adopt(false).await;
        self.trim();
    }

    /// Lets go of the tree without freeing it node by node: for a process about to exit
    /// (freeing a million nodes takes about a second; the system takes the memory back at
    /// once). The file is closed properly (its log folded in); one found damaged during
    /// this run is removed (the next start fetches the tree and writes a new one).
    pub fn release_for_exit(&self) {
        if self.read().damaged() {
            if let Some(path) = &self.file {
                cache::remove(path);
            }
        }
        let keys = self.read().keys().clone();
        let mut old = std::mem::replace(&mut *self.write(), NodeTree::new(keys));
        drop(old.detach());
        if let Ok(mut state) = self.state.try_lock() {
            state.phase = Phase::Off;
            self.set_building(false);
        }
        std::mem::forget(old);
    }
}

impl NodeTree {
    /// Reads (inside [`deferring`]: names) what inserting `node` reads: the node it
    /// replaces and the child lists it leaves and joins.
    pub(crate) fn prefetch_insert(&self, h: &NodeHandle, parent: Option<&NodeHandle>) {
        if let Some(old) = self.node(h) {
            if let Some(p) = &old.parent {
                self.kids(p);
            }
        }
        if let Some(p) = parent {
            self.node(p);
            self.kids(p);
        }
    }

    /// Reads (inside [`deferring`]: names) what removing `h` and everything below reads.
    pub(crate) fn prefetch_remove(&self, h: &NodeHandle) {
        self.prefetch_remove_joined(h, &HashMap::new());
    }

    /// [`prefetch_remove`](Self::prefetch_remove), counting as below a folder the nodes
    /// `joined` says an earlier packet of the same batch puts there (a node created or moved
    /// into a folder, then the folder removed). A node not in the tree yet still gets its
    /// (empty) child list read, so that removing it reads nothing.
    fn prefetch_remove_joined(
        &self,
        h: &NodeHandle,
        joined: &HashMap<NodeHandle, Vec<NodeHandle>>,
    ) {
        if let Some(p) = self.node(h).and_then(|top| top.parent.clone()) {
            self.kids(&p);
        }
        let mut stack = vec![h.clone()];
        let mut seen = std::collections::HashSet::new();
        while let Some(x) = stack.pop() {
            if !seen.insert(x.clone()) {
                continue;
            }
            self.node(&x);
            if let Some(kids) = self.kids(&x) {
                stack.extend(kids.iter().cloned());
            }
            stack.extend(joined.get(&x).into_iter().flatten().cloned());
        }
    }

    /// Reads (inside [`deferring`]: names) what applying `packets` reads, as far as it
    /// can be told before any is applied.
    pub(crate) fn prefetch(&self, packets: &[ActionPacket]) {
        // Nodes the batch puts under each folder, for a later packet removing the folder.
        let mut joined: HashMap<NodeHandle, Vec<NodeHandle>> = HashMap::new();
        for p in packets {
            match p {
                ActionPacket::NewNodes { nodes, .. } => {
                    for v in nodes {
                        let field =
                            |k: &str| v.get(k).and_then(|x| x.as_str()).map(NodeHandle::from);
                        if let Some(h) = field("h") {
                            let parent = field("p");
                            self.prefetch_insert(&h, parent.as_ref());
                            if let Some(parent) = parent {
                                joined.entry(parent).or_default().push(h);
                            }
                        }
                    }
                }
                ActionPacket::Update { handle, .. }
                | ActionPacket::FileAttributes { handle, .. } => {
                    self.node(handle);
                }
                ActionPacket::Delete { handle, .. } => self.prefetch_remove_joined(handle, &joined),
                ActionPacket::Share { node, access, .. } => {
                    if let Some(p) = self.node(node).and_then(|n| n.parent.clone()) {
                        self.node(&p);
                        self.kids(&p);
                    }
                    // A share that ends takes its folder away (when it is the top of it).
                    if access.is_none() {
                        self.prefetch_remove_joined(node, &joined);
                    }
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{Key128, MasterKey};

    /// `writing` tells whether a new file is being written, not whether a transition (a
    /// commit, the once-a-second adoption check) holds the state's lock: a process waiting
    /// for the file once saw "still writing" after it had been adopted.
    #[tokio::test]
    async fn writing_says_whether_a_file_is_being_written_not_whether_the_state_is_busy() {
        let dir = tempfile::tempdir().unwrap();
        let keys = KeyRing::new(MasterKey(Key128([7; 16])), "AAAAAAAAAAA".into(), None);
        let store = Arc::new(TreeStore::new(
            keys.clone(),
            Some(dir.path().join("tree.db")),
            "u/".into(),
            100,
        ));
        let reply: crate::api::commands::FetchReply = serde_json::from_value(serde_json::json!({
            "f": [{"h": "ROOT0000", "p": "", "u": "AAAAAAAAAAA", "t": 2, "a": "", "ts": 1}],
            "ok": [], "sn": "sn1"
        }))
        .unwrap();
        let (mut tree, _) = NodeTree::from_fetch(&reply, keys).unwrap();
        let snapshot = cache::snapshot(&mut tree);
        store.install(tree, snapshot).await;
        assert!(store.writing());
        store.finish().await;
        assert!(!store.writing());
        assert_eq!(store.phase(), "serving");
        let _busy = store.state.lock().await;
        assert!(!store.writing(), "a busy state is not a file being written");
    }
}
