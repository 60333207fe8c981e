//! The commands. Each resolves its arguments, does its work through the engine, prints
//! results on stdout (listings, links, JSON) and progress/summaries on stderr.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use serde_json::json;

use super::files::{fmt_time, human, walk, TempFile};
use super::path::{self, escape_name, unescape_name, Location, RemotePath, RootKind};
use super::plan::{self, Action, Entry, PlanOptions};
use super::{exit, CliError, Command, Ctx};
use crate::api::session::{self, LoginError, SavedSession};
use crate::api::ApiClient;
use crate::client::{self, Client, PublicFolder};
use crate::transfer::{download, Progress};
use crate::tree::{Node, NodeHandle, NodeKind};

pub(super) async fn dispatch(ctx: &Ctx) -> Result<(), CliError> {
    match &ctx.cli.command {
        Command::List { path } => list(ctx, path.as_deref().unwrap_or("mega:/")).await,
        Command::Get { source, target } => get(ctx, source, target.as_deref()).await,
        Command::Put { paths } => put(ctx, paths).await,
        Command::Delete { paths } => delete(ctx, paths).await,
        Command::Mkdir { paths } => mkdir(ctx, paths).await,
        Command::Move { source, target } => mv(ctx, source, target).await,
        Command::Sync {
            source,
            target,
            two_way: true,
            watch,
            max_delete,
            settle,
        } => {
            super::twoway::run(
                ctx,
                super::twoway::TwoWay {
                    local: source,
                    remote: target,
                    watch: *watch,
                    max_delete: *max_delete,
                    settle: *settle,
                },
            )
            .await
        }
        Command::Sync { source, target, .. } => sync(ctx, source, target).await,
        Command::Login { email, mfa } => login(ctx, email.as_deref(), mfa.as_deref()).await,
        Command::Logout => logout(ctx).await,
        Command::Whoami => whoami(ctx).await,
        Command::Df => df(ctx).await,
        Command::Link { path } => link(ctx, path).await,
        Command::Tree { path } => tree(ctx, path.as_deref().unwrap_or("mega:/")).await,
        Command::Cat { path } => cat(ctx, path).await,
    }
}

// ---- helpers ----

fn io_err(what: &Path, e: std::io::Error) -> CliError {
    let code = match e.kind() {
        std::io::ErrorKind::NotFound => exit::NOT_FOUND,
        std::io::ErrorKind::AlreadyExists => exit::EXISTS,
        _ => exit::OTHER,
    };
    CliError::new(code, format!("{}: {e}", what.display()))
}

fn remote_arg(s: &str) -> Result<RemotePath, CliError> {
    match path::parse(s)? {
        Location::Remote(r) => Ok(r),
        _ => Err(CliError::new(
            exit::USAGE,
            format!("{s}: expected a mega:/ path"),
        )),
    }
}

fn not_found(what: &str) -> CliError {
    CliError::new(exit::NOT_FOUND, format!("{what}: no such file or folder"))
}

fn exists(what: &str) -> CliError {
    CliError::new(
        exit::EXISTS,
        format!("{what}: already exists (use --force to overwrite)"),
    )
}

fn root_handle(client: &Client, kind: RootKind) -> Result<NodeHandle, CliError> {
    let tree = client.read_tree();
    let n = match kind {
        RootKind::Drive => tree.root(),
        RootKind::Rubbish => tree.rubbish(),
        RootKind::Inbox => tree.inbox(),
    };
    n.map(|n| n.handle.clone())
        .ok_or_else(|| CliError::new(exit::OTHER, "the account has no such root"))
}

fn resolve(client: &Client, rp: &RemotePath) -> Result<Node, CliError> {
    let root = root_handle(client, rp.root)?;
    let tree = client.read_tree();
    let mut cur = tree.get(&root).ok_or_else(|| not_found(&rp.display()))?;
    for part in &rp.parts {
        if !cur.kind.is_container() {
            return Err(CliError::new(
                exit::NOT_FOUND,
                format!("{}: not a folder", tree.path_of(&cur.handle)),
            ));
        }
        cur = tree
            .child_by_name(&cur.handle, part)
            .ok_or_else(|| not_found(&rp.display()))?;
    }
    Ok(cur.clone())
}

/// Resolves a path whose last component may be a glob; at least one match, or NOT_FOUND.
fn expand(client: &Client, rp: &RemotePath) -> Result<Vec<(RemotePath, Node)>, CliError> {
    if !rp.has_glob() {
        return Ok(vec![(rp.clone(), resolve(client, rp)?)]);
    }
    let (parent, pattern) = rp
        .split_last()
        .expect("invariant: a glob path has a last part");
    let folder = resolve(client, &parent)?;
    let out: Vec<_> = client
        .children(&folder.handle)
        .into_iter()
        .filter(|n| path::glob_match(pattern, &n.name))
        .map(|n| (parent.join(&n.name), n))
        .collect();
    if out.is_empty() {
        return Err(CliError::new(
            exit::NOT_FOUND,
            format!("{}: no match", rp.display()),
        ));
    }
    Ok(out)
}

/// The child of `parent` called `name`, if any.
fn child(client: &Client, parent: &NodeHandle, name: &str) -> Option<Node> {
    client.read_tree().child_by_name(parent, name).cloned()
}

/// An existing folder `name` in `parent`, or a new one.
async fn ensure_folder(
    client: &Client,
    parent: &NodeHandle,
    name: &str,
) -> Result<NodeHandle, CliError> {
    match client.ensure_folder(parent, name).await {
        Ok(n) => Ok(n.handle),
        Err(client::Error::NotAFolder(path)) => Err(exists(&path)),
        Err(e) => Err(e.into()),
    }
}

/// The folder at a remote path, created (with missing parents) if needed.
pub(super) async fn ensure_remote_folder(
    client: &Client,
    rp: &RemotePath,
) -> Result<NodeHandle, CliError> {
    ensure_path(client, rp).await
}

/// Creates the folders of a remote path that do not exist yet (like `mkdir -p`).
async fn ensure_path(client: &Client, rp: &RemotePath) -> Result<NodeHandle, CliError> {
    let mut h = root_handle(client, rp.root)?;
    for part in &rp.parts {
        h = ensure_folder(client, &h, part).await?;
    }
    Ok(h)
}

/// Plans a sync and reports it; `None` after a dry run (nothing more to do).
fn plan_sync(
    ctx: &Ctx,
    src: &[Entry],
    tgt: &[Entry],
    src_name: &dyn Fn(&str) -> String,
    dst_name: &dyn Fn(&str) -> String,
) -> Option<(plan::Plan, serde_json::Value)> {
    let opts = PlanOptions {
        ignore_same_size: ctx.cli.ignore_same_size,
        delete: ctx.cli.delete,
    };
    let p = plan::plan(src, tgt, opts);
    let planned = report_plan(ctx, &p, src_name, dst_name);
    let mut extra = counts(&p);
    if ctx.cli.dry_run {
        extra["dry_run"] = json!(true);
        if ctx.cli.json {
            println!(
                "{}",
                json!({"operation": "sync", "summary": extra, "actions": planned})
            );
        }
        return None;
    }
    Some((p, extra))
}

/// The end of a sync: the transfers' outcome, the summary, and conflicts as an error.
fn finish_sync(
    ctx: &Ctx,
    t: &Transfers,
    transfers: Result<(), CliError>,
    extra: serde_json::Value,
    conflicts: usize,
) -> Result<(), CliError> {
    transfers?;
    t.summary(ctx, "synced", extra);
    if conflicts > 0 {
        return Err(CliError::new(
            exit::EXISTS,
            format!("{conflicts} conflict(s) left alone"),
        ));
    }
    Ok(())
}

fn warn_conflict(what: &str) {
    eprintln!("megacmd: {what}: a file on one side and a folder on the other; left alone (--delete replaces it)");
}

/// Byte and file counters, and the progress bar (only on a terminal).
struct Transfers {
    bar: indicatif::ProgressBar,
    files: AtomicU64,
    bytes: AtomicU64,
    started: Instant,
    verbose: u8,
}

impl Transfers {
    fn new(ctx: &Ctx, total: u64) -> Arc<Self> {
        let show = std::io::stderr().is_terminal() && !ctx.cli.json && !ctx.cli.no_progress;
        let bar = if show {
            let b = indicatif::ProgressBar::new(total);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{bar:30} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} {msg}",
            ) {
                b.set_style(style);
            }
            b
        } else {
            indicatif::ProgressBar::hidden()
        };
        Arc::new(Transfers {
            bar,
            files: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            started: Instant::now(),
            verbose: ctx.cli.verbose,
        })
    }

    fn progress(self: &Arc<Self>) -> Progress {
        let me = self.clone();
        Arc::new(move |n| {
            me.bar.inc(n);
            me.bytes.fetch_add(n, Ordering::Relaxed);
        })
    }

    fn done(&self, line: impl FnOnce() -> String) {
        self.files.fetch_add(1, Ordering::Relaxed);
        if self.verbose >= 1 {
            self.bar.suspend(|| eprintln!("{}", line()));
        }
    }

    /// Prints the summary (stderr, or JSON on stdout).
    fn summary(&self, ctx: &Ctx, verb: &str, extra: serde_json::Value) {
        self.bar.finish_and_clear();
        let files = self.files.load(Ordering::Relaxed);
        let bytes = self.bytes.load(Ordering::Relaxed);
        let secs = self.started.elapsed().as_secs_f64();
        if ctx.cli.json {
            let mut v = json!({"operation": verb, "files": files, "bytes": bytes, "seconds": secs});
            if let (Some(m), serde_json::Value::Object(e)) = (v.as_object_mut(), extra) {
                m.extend(e);
            }
            println!("{v}");
        } else {
            let rate = if secs > 0.0 { bytes as f64 / secs } else { 0.0 };
            eprintln!(
                "{verb} {files} file(s), {} in {secs:.1} s ({}/s)",
                human(bytes),
                human(rate as u64)
            );
        }
    }
}

/// Runs jobs `parallel` at a time; prints every failure but the last, returns the outcome.
async fn run_jobs<T, F, Fut>(parallel: usize, jobs: Vec<T>, f: F) -> Result<(), CliError>
where
    F: Fn(T) -> Fut,
    Fut: std::future::Future<Output = Result<(), CliError>>,
{
    let total = jobs.len();
    let mut errors: Vec<CliError> = futures::stream::iter(jobs)
        .map(f)
        .buffer_unordered(parallel)
        .filter_map(|r| async move { r.err() })
        .collect()
        .await;
    match errors.len() {
        0 => Ok(()),
        1 => Err(errors.remove(0)),
        n => {
            for e in &errors {
                eprintln!("megacmd: {e}");
            }
            Err(CliError::new(
                errors[0].code,
                format!("{n} of {total} operations failed"),
            ))
        }
    }
}

/// Downloads a file node to `target` through a temporary file (MAC-verified before rename).
async fn download_node(
    client: &Client,
    node: &Node,
    target: &Path,
    force: bool,
    t: &Arc<Transfers>,
) -> Result<(), CliError> {
    if let Ok(meta) = std::fs::symlink_metadata(target) {
        if meta.is_dir() || !force {
            return Err(exists(&target.display().to_string()));
        }
    }
    let (tmp, file) = TempFile::create_for(target).map_err(|e| io_err(target, e))?;
    let mut f = tokio::fs::File::from_std(file);
    client
        .download(&node.handle, &mut f, Some(t.progress()))
        .await?;
    f.sync_all().await.map_err(|e| io_err(tmp.path(), e))?;
    drop(f);
    tmp.persist(target, node.mtime)
        .map_err(|e| io_err(target, e))?;
    t.done(|| {
        format!(
            "downloaded {} -> {}",
            client.read_tree().path_of(&node.handle),
            target.display()
        )
    });
    Ok(())
}

/// Where a single downloaded item goes: into `target` if it is a folder (or ends in `/`).
fn local_target(target: Option<&str>, name: &str) -> PathBuf {
    let t = target.unwrap_or(".");
    let p = PathBuf::from(t);
    if t.ends_with('/') || p.is_dir() {
        p.join(escape_name(name))
    } else {
        p
    }
}

/// Remote subtree below `h` as sync entries (escaped relative paths) with their handles.
fn remote_entries(client: &Client, h: &NodeHandle) -> (Vec<Entry>, HashMap<String, NodeHandle>) {
    let tree = client.read_tree();
    let mut rel: HashMap<NodeHandle, String> = HashMap::new();
    let mut entries = Vec::new();
    let mut handles = HashMap::new();
    for n in tree.subtree(h).into_iter().skip(1) {
        let parent_rel = n
            .parent
            .as_ref()
            .and_then(|p| rel.get(p))
            .cloned()
            .unwrap_or_default();
        let path = if parent_rel.is_empty() {
            escape_name(&n.name)
        } else {
            format!("{parent_rel}/{}", escape_name(&n.name))
        };
        rel.insert(n.handle.clone(), path.clone());
        handles.insert(path.clone(), n.handle.clone());
        entries.push(Entry {
            path,
            size: n.size,
            mtime: n.mtime,
            dir: n.kind.is_container(),
        });
    }
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    (entries, handles)
}

// ---- commands ----

async fn list(ctx: &Ctx, arg: &str) -> Result<(), CliError> {
    let rp = remote_arg(arg)?;
    let client = ctx.client().await?;
    let mut rows = Vec::new();
    for (p, node) in expand(&client, &rp)? {
        if node.kind.is_container() && (!rp.has_glob() || ctx.cli.recursive) {
            let (entries, handles) = remote_entries(&client, &node.handle);
            for e in entries {
                if !ctx.cli.recursive && e.path.contains('/') {
                    continue;
                }
                let shown = RemotePath {
                    parts: p
                        .parts
                        .iter()
                        .cloned()
                        .chain(e.path.split('/').map(unescape_name))
                        .collect(),
                    ..p.clone()
                };
                let h = handles.get(&e.path).cloned();
                rows.push((shown, e, h));
            }
        } else {
            let e = Entry {
                path: node.name.clone(),
                size: node.size,
                mtime: node.mtime,
                dir: node.kind.is_container(),
            };
            rows.push((p, e, Some(node.handle.clone())));
        }
    }
    if ctx.cli.json {
        let v: Vec<_> = rows
            .iter()
            .map(|(p, e, h)| {
                json!({
                    "path": p.display(), "name": p.parts.last().cloned().unwrap_or_default(),
                    "type": if e.dir { "folder" } else { "file" }, "size": e.size, "mtime": e.mtime,
                    "handle": h.as_ref().map(|h| h.0.clone()),
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(v));
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    for (p, e, _) in rows {
        let line = if e.dir {
            format!("{:>16}  {:>12}  {}/", "", "DIR", p.display())
        } else {
            format!("{}  {:>12}  {}", fmt_time(e.mtime), e.size, p.display())
        };
        if writeln!(out, "{line}").is_err() {
            break; // stdout closed (e.g. piped into head)
        }
    }
    Ok(())
}

async fn tree(ctx: &Ctx, arg: &str) -> Result<(), CliError> {
    let rp = remote_arg(arg)?;
    let client = ctx.client().await?;
    let top = resolve(&client, &rp)?;
    let mut lines = vec![rp.display()];
    fn walk_tree(client: &Client, h: &NodeHandle, prefix: &str, lines: &mut Vec<String>) {
        let kids = client.children(h);
        for (i, k) in kids.iter().enumerate() {
            let last = i + 1 == kids.len();
            let suffix = if k.kind.is_container() {
                "/".to_string()
            } else {
                format!("  ({})", human(k.size))
            };
            lines.push(format!(
                "{prefix}{}{}{suffix}",
                if last { "└── " } else { "├── " },
                k.name
            ));
            if k.kind.is_container() {
                walk_tree(
                    client,
                    &k.handle,
                    &format!("{prefix}{}", if last { "    " } else { "│   " }),
                    lines,
                );
            }
        }
    }
    walk_tree(&client, &top.handle, "", &mut lines);
    let mut out = std::io::stdout().lock();
    for l in lines {
        if writeln!(out, "{l}").is_err() {
            break;
        }
    }
    Ok(())
}

async fn get(ctx: &Ctx, source: &str, target: Option<&str>) -> Result<(), CliError> {
    match path::parse(source)? {
        Location::Link(url) => return get_link(ctx, &url, target).await,
        Location::Local(_) => {
            return Err(CliError::new(
                exit::USAGE,
                format!("{source}: expected a mega:/ path or a MEGA link"),
            ))
        }
        Location::Remote(_) => {}
    }
    let rp = remote_arg(source)?;
    let client = ctx.client().await?;
    let matches = expand(&client, &rp)?;
    let many = matches.len() > 1;
    let t = Transfers::new(ctx, 0);
    let mut jobs: Vec<(Node, PathBuf)> = Vec::new();
    for (_, node) in matches {
        if node.kind.is_container() {
            if !ctx.cli.recursive {
                return Err(CliError::new(
                    exit::USAGE,
                    format!(
                        "{}: is a folder (use --recursive)",
                        client.read_tree().path_of(&node.handle)
                    ),
                ));
            }
            let dst_arg = target.unwrap_or(".");
            let dst = PathBuf::from(dst_arg);
            // Like cp -r: into an existing folder under the folder's name, else as `target`.
            let local_root = if dst.is_dir() || dst_arg.ends_with('/') || many {
                dst.join(escape_name(&node.name))
            } else {
                dst
            };
            std::fs::create_dir_all(&local_root).map_err(|e| io_err(&local_root, e))?;
            let (entries, handles) = remote_entries(&client, &node.handle);
            for e in entries {
                let p = local_root.join(&e.path);
                if e.dir {
                    std::fs::create_dir_all(&p).map_err(|err| io_err(&p, err))?;
                } else if let Some(n) = handles
                    .get(&e.path)
                    .and_then(|h| client.read_tree().get(h).cloned())
                {
                    jobs.push((n, p));
                }
            }
        } else {
            let dst = if many {
                local_target(Some(&format!("{}/", target.unwrap_or("."))), &node.name)
            } else {
                local_target(target, &node.name)
            };
            jobs.push((node, dst));
        }
    }
    t.bar.set_length(jobs.iter().map(|(n, _)| n.size).sum());
    let force = ctx.cli.force;
    let r = run_jobs(ctx.parallel(), jobs, |(node, dst)| {
        let (client, t) = (client.clone(), t.clone());
        async move { download_node(&client, &node, &dst, force, &t).await }
    })
    .await;
    if r.is_ok() {
        t.summary(ctx, "downloaded", json!({}));
    }
    r
}

/// `get` of a public file link, or (with --recursive) of a public folder link.
async fn get_link(ctx: &Ctx, url: &str, target: Option<&str>) -> Result<(), CliError> {
    let api = ApiClient::new(ctx.api_config()).map_err(client::Error::from)?;
    let t = Transfers::new(ctx, 0);
    let cfg = crate::transfer::TransferConfig::default();
    let force = ctx.cli.force;
    if let Ok(crate::link::PublicLink::Folder { .. }) = crate::link::parse(url) {
        if !ctx.cli.recursive {
            return Err(CliError::new(
                exit::USAGE,
                "a folder link: use --recursive to download it",
            ));
        }
        let folder = PublicFolder::open(&api, url).await?;
        let dst = PathBuf::from(target.unwrap_or("."));
        let root_dir = if dst.is_dir() {
            dst.join(escape_name(&folder.root().name))
        } else {
            dst
        };
        std::fs::create_dir_all(&root_dir).map_err(|e| io_err(&root_dir, e))?;
        let tree = folder.tree();
        let mut rel: HashMap<NodeHandle, PathBuf> = HashMap::new();
        rel.insert(folder.root().handle.clone(), root_dir.clone());
        let mut jobs = Vec::new();
        for n in tree.subtree(&folder.root().handle).into_iter().skip(1) {
            let Some(parent) = n.parent.as_ref().and_then(|p| rel.get(p)).cloned() else {
                continue;
            };
            let p = parent.join(escape_name(&n.name));
            if n.kind.is_container() {
                std::fs::create_dir_all(&p).map_err(|e| io_err(&p, e))?;
            } else {
                jobs.push((n.clone(), p.clone()));
            }
            rel.insert(n.handle.clone(), p);
        }
        t.bar.set_length(jobs.iter().map(|(n, _)| n.size).sum());
        let (folder, api) = (Arc::new(folder), Arc::new(api));
        let r = run_jobs(ctx.parallel(), jobs, |(node, dst): (Node, PathBuf)| {
            let (folder, api, t, cfg) = (folder.clone(), api.clone(), t.clone(), cfg.clone());
            async move {
                if dst.exists() && !force {
                    return Err(exists(&dst.display().to_string()));
                }
                let (tmp, file) = TempFile::create_for(&dst).map_err(|e| io_err(&dst, e))?;
                let mut f = tokio::fs::File::from_std(file);
                folder
                    .download(&api, &node.handle, &mut f, &cfg, Some(t.progress()))
                    .await?;
                drop(f);
                tmp.persist(&dst, node.mtime).map_err(|e| io_err(&dst, e))?;
                t.done(|| format!("downloaded {} -> {}", node.name, dst.display()));
                Ok(())
            }
        })
        .await;
        if r.is_ok() {
            t.summary(ctx, "downloaded", json!({}));
        }
        return r;
    }
    let info = client::public_file(&api, url).await?;
    let dst = local_target(target, &info.name);
    if std::fs::symlink_metadata(&dst).is_ok() && !force {
        return Err(exists(&dst.display().to_string()));
    }
    t.bar.set_length(info.size);
    let (tmp, file) = TempFile::create_for(&dst).map_err(|e| io_err(&dst, e))?;
    let mut f = tokio::fs::File::from_std(file);
    download::download(api.http(), &info.source, &mut f, &cfg, Some(t.progress()))
        .await
        .map_err(client::Error::from)?;
    drop(f);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    tmp.persist(&dst, now).map_err(|e| io_err(&dst, e))?;
    t.done(|| format!("downloaded {} -> {}", info.name, dst.display()));
    t.summary(ctx, "downloaded", json!({}));
    Ok(())
}

/// One upload: a local file to `name` in `parent`, replacing an existing file with --force.
async fn upload_one(
    client: &Client,
    local: &Path,
    parent: &NodeHandle,
    name: &str,
    force: bool,
    t: &Arc<Transfers>,
) -> Result<(), CliError> {
    let old = child(client, parent, name);
    if let Some(o) = &old {
        if o.kind.is_container() || !force {
            return Err(exists(&client.read_tree().path_of(&o.handle)));
        }
    }
    upload_replacing(client, local, parent, name, old.map(|o| o.handle), t).await
}

/// Uploads `local` as `name` in `parent`; once the new version is in place, the replaced one
/// (if any) goes to the Rubbish Bin, not to oblivion.
async fn upload_replacing(
    client: &Client,
    local: &Path,
    parent: &NodeHandle,
    name: &str,
    old: Option<NodeHandle>,
    t: &Arc<Transfers>,
) -> Result<(), CliError> {
    let node = client
        .upload_path(parent, local, Some(name), Some(t.progress()))
        .await?;
    if let Some(o) = old {
        client.trash(&o).await?;
    }
    t.done(|| {
        format!(
            "uploaded {} -> {}",
            local.display(),
            client.read_tree().path_of(&node.handle)
        )
    });
    Ok(())
}

async fn put(ctx: &Ctx, paths: &[String]) -> Result<(), CliError> {
    let (dst_arg, srcs) = paths
        .split_last()
        .ok_or_else(|| CliError::new(exit::USAGE, "put needs a source and a target"))?;
    let dst = remote_arg(dst_arg)?;
    let client = ctx.client().await?;
    // The target folder (existing, or created when written with a trailing slash), or the
    // parent folder plus a new name for a single file.
    let existing = match resolve(&client, &dst) {
        Ok(n) => Some(n),
        Err(e) if e.code == exit::NOT_FOUND => None,
        Err(e) => return Err(e),
    };
    let into_folder = match &existing {
        Some(n) if n.kind.is_container() => Some(n.handle.clone()),
        Some(_) => None,
        None if dst.dir || srcs.len() > 1 => Some(ensure_path(&client, &dst).await?),
        None => None,
    };
    let mut jobs: Vec<(PathBuf, NodeHandle, String)> = Vec::new();
    let mut total = 0u64;
    for src in srcs {
        let local = PathBuf::from(src);
        let meta = std::fs::metadata(&local).map_err(|e| io_err(&local, e))?;
        let base = local
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| unescape_name(&n.to_string_lossy())))
            .unwrap_or_else(|| src.clone());
        if meta.is_dir() {
            if !ctx.cli.recursive {
                return Err(CliError::new(
                    exit::USAGE,
                    format!("{src}: is a folder (use --recursive)"),
                ));
            }
            let top = match &into_folder {
                Some(f) => ensure_folder(&client, f, &base).await?,
                None => {
                    let (parent, name) = dst
                        .split_last()
                        .ok_or_else(|| CliError::new(exit::USAGE, "cannot upload over a root"))?;
                    let p = resolve(&client, &parent)?;
                    ensure_folder(&client, &p.handle, name).await?
                }
            };
            let mut folders: HashMap<String, NodeHandle> = HashMap::new();
            for e in walk(&local).map_err(|err| io_err(&local, err))? {
                let (parent_rel, name) = e
                    .path
                    .rsplit_once('/')
                    .map_or(("", e.path.as_str()), |(a, b)| (a, b));
                let parent = if parent_rel.is_empty() {
                    top.clone()
                } else {
                    folders.get(parent_rel).cloned().ok_or_else(|| {
                        CliError::new(exit::OTHER, format!("{parent_rel}: folder was not created"))
                    })?
                };
                let name = unescape_name(name);
                if e.dir {
                    let h = ensure_folder(&client, &parent, &name).await?;
                    folders.insert(e.path.clone(), h);
                } else {
                    total += e.size;
                    jobs.push((local.join(&e.path), parent, name));
                }
            }
        } else {
            total += meta.len();
            match &into_folder {
                Some(f) => jobs.push((local, f.clone(), base)),
                None => {
                    let (parent, name) = dst
                        .split_last()
                        .ok_or_else(|| CliError::new(exit::USAGE, "cannot upload over a root"))?;
                    let p = resolve(&client, &parent)?;
                    jobs.push((local, p.handle, name.to_string()));
                }
            }
        }
    }
    let t = Transfers::new(ctx, total);
    let force = ctx.cli.force;
    let r = run_jobs(ctx.parallel(), jobs, |(local, parent, name)| {
        let (client, t) = (client.clone(), t.clone());
        async move { upload_one(&client, &local, &parent, &name, force, &t).await }
    })
    .await;
    if r.is_ok() {
        t.summary(ctx, "uploaded", json!({}));
    }
    r
}

async fn delete(ctx: &Ctx, paths: &[String]) -> Result<(), CliError> {
    let client = ctx.client().await?;
    let rubbish = root_handle(&client, RootKind::Rubbish)?;
    for p in paths {
        let rp = remote_arg(p)?;
        for (shown, node) in expand(&client, &rp)? {
            if !matches!(node.kind, NodeKind::File | NodeKind::Folder) {
                return Err(CliError::new(
                    exit::USAGE,
                    format!("{}: a root cannot be deleted", shown.display()),
                ));
            }
            if node.kind == NodeKind::Folder
                && !ctx.cli.recursive
                && !client.children(&node.handle).is_empty()
            {
                return Err(CliError::new(
                    exit::USAGE,
                    format!(
                        "{}: is a folder that is not empty (use --recursive)",
                        shown.display()
                    ),
                ));
            }
            let in_rubbish = client
                .read_tree()
                .path_of(&node.handle)
                .starts_with("//Rubbish Bin/")
                || node.parent.as_ref() == Some(&rubbish);
            if ctx.cli.force || in_rubbish {
                client.delete(&node.handle).await?;
                if ctx.cli.verbose >= 1 {
                    eprintln!("deleted {}", shown.display());
                }
            } else {
                client.trash(&node.handle).await?;
                if ctx.cli.verbose >= 1 {
                    eprintln!("moved {} to the Rubbish Bin", shown.display());
                }
            }
        }
    }
    Ok(())
}

async fn mkdir(ctx: &Ctx, paths: &[String]) -> Result<(), CliError> {
    let client = ctx.client().await?;
    for p in paths {
        let rp = remote_arg(p)?;
        if let Ok(n) = resolve(&client, &rp) {
            if n.kind.is_container() && ctx.cli.force {
                continue;
            }
            return Err(exists(&rp.display()));
        }
        ensure_path(&client, &rp).await?;
    }
    Ok(())
}

async fn mv(ctx: &Ctx, source: &str, target: &str) -> Result<(), CliError> {
    let (src, dst) = (remote_arg(source)?, remote_arg(target)?);
    let client = ctx.client().await?;
    let sources = expand(&client, &src)?;
    let dst_node = resolve(&client, &dst).ok();
    let into = match &dst_node {
        Some(n) if n.kind.is_container() => true,
        _ if dst.dir || sources.len() > 1 => {
            return Err(match dst_node {
                Some(_) => CliError::new(exit::USAGE, format!("{}: not a folder", dst.display())),
                None => not_found(&dst.display()),
            })
        }
        _ => false,
    };
    for (shown, node) in sources {
        if !matches!(node.kind, NodeKind::File | NodeKind::Folder) {
            return Err(CliError::new(
                exit::USAGE,
                format!("{}: a root cannot be moved", shown.display()),
            ));
        }
        let (parent, name) = if into {
            (
                dst_node
                    .as_ref()
                    .map(|n| n.handle.clone())
                    .expect("invariant: `into` means the target exists"),
                node.name.clone(),
            )
        } else {
            let (p, name) = dst
                .split_last()
                .ok_or_else(|| CliError::new(exit::USAGE, "cannot move over a root"))?;
            (resolve(&client, &p)?.handle, name.to_string())
        };
        if let Some(existing) = child(&client, &parent, &name).filter(|e| e.handle != node.handle) {
            if !ctx.cli.force || existing.kind.is_container() {
                return Err(exists(&client.read_tree().path_of(&existing.handle)));
            }
            client.trash(&existing.handle).await?;
        }
        if node.name != name {
            client.rename(&node.handle, &name).await?;
        }
        if node.parent.as_ref() != Some(&parent) {
            client.move_to(&node.handle, &parent).await?;
        }
        if ctx.cli.verbose >= 1 {
            eprintln!(
                "moved {} -> {}",
                shown.display(),
                client.read_tree().path_of(&node.handle)
            );
        }
    }
    Ok(())
}

async fn sync(ctx: &Ctx, source: &str, target: &str) -> Result<(), CliError> {
    match (path::parse(source)?, path::parse(target)?) {
        (Location::Remote(r), Location::Local(l)) => sync_down(ctx, &r, &l).await,
        (Location::Local(l), Location::Remote(r)) => sync_up(ctx, &l, &r).await,
        _ => Err(CliError::new(
            exit::USAGE,
            "sync needs one mega:/ path and one local path",
        )),
    }
}

/// Prints the plan (dry run or --verbose) and returns it as JSON values for --json.
fn report_plan(
    ctx: &Ctx,
    p: &plan::Plan,
    src: &dyn Fn(&str) -> String,
    dst: &dyn Fn(&str) -> String,
) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for a in &p.actions {
        let (kind, from, to) = match a {
            Action::Mkdir(path) => ("mkdir", None, dst(path)),
            Action::Copy {
                path,
                replace: true,
                ..
            } => ("update", Some(src(path)), dst(path)),
            Action::Copy { path, .. } => ("copy", Some(src(path)), dst(path)),
            Action::Delete { path, .. } => ("delete", None, dst(path)),
            Action::Conflict { path } => ("conflict", None, dst(path)),
        };
        out.push(json!({"action": kind, "source": from, "target": to}));
        if !ctx.cli.json && (ctx.cli.dry_run || ctx.cli.verbose >= 1) {
            match from {
                Some(f) => println!("{kind} {f} -> {to}"),
                None => println!("{kind} {to}"),
            }
        }
    }
    out
}

fn counts(p: &plan::Plan) -> serde_json::Value {
    let c = |f: fn(&Action) -> bool| p.actions.iter().filter(|a| f(a)).count();
    json!({
        "copied_planned": c(|a| matches!(a, Action::Copy { .. })),
        "deleted": c(|a| matches!(a, Action::Delete { .. })),
        "conflicts": c(|a| matches!(a, Action::Conflict { .. })),
        "unchanged": p.unchanged,
        "dry_run": false,
    })
}

async fn sync_down(ctx: &Ctx, r: &RemotePath, local: &Path) -> Result<(), CliError> {
    let client = ctx.client().await?;
    let top = resolve(&client, r)?;
    if !top.kind.is_container() {
        return Err(CliError::new(
            exit::USAGE,
            format!("{}: sync needs a folder", r.display()),
        ));
    }
    let (src, handles) = remote_entries(&client, &top.handle);
    let tgt = if local.exists() {
        walk(local).map_err(|e| io_err(local, e))?
    } else {
        Vec::new()
    };
    let rd = |x: &str| r.join(x).display();
    let ld = |x: &str| local.join(x).display().to_string();
    let Some((p, extra)) = plan_sync(ctx, &src, &tgt, &rd, &ld) else {
        return Ok(());
    };
    std::fs::create_dir_all(local).map_err(|e| io_err(local, e))?;
    let mut jobs = Vec::new();
    let mut conflicts = 0;
    for a in &p.actions {
        match a {
            Action::Delete { path, dir } => {
                let lp = local.join(path);
                let res = if *dir {
                    std::fs::remove_dir_all(&lp)
                } else {
                    std::fs::remove_file(&lp)
                };
                res.map_err(|e| io_err(&lp, e))?;
            }
            Action::Mkdir(path) => {
                let lp = local.join(path);
                std::fs::create_dir_all(&lp).map_err(|e| io_err(&lp, e))?;
            }
            Action::Copy { path, .. } => {
                if let Some(n) = handles
                    .get(path)
                    .and_then(|h| client.read_tree().get(h).cloned())
                {
                    jobs.push((n, local.join(path)));
                }
            }
            Action::Conflict { path } => {
                conflicts += 1;
                warn_conflict(&ld(path));
            }
        }
    }
    let t = Transfers::new(ctx, jobs.iter().map(|(n, _)| n.size).sum());
    let r = run_jobs(ctx.parallel(), jobs, |(node, dst)| {
        let (client, t) = (client.clone(), t.clone());
        async move { download_node(&client, &node, &dst, true, &t).await }
    })
    .await;
    finish_sync(ctx, &t, r, extra, conflicts)
}

async fn sync_up(ctx: &Ctx, local: &Path, r: &RemotePath) -> Result<(), CliError> {
    let client = ctx.client().await?;
    let meta = std::fs::metadata(local).map_err(|e| io_err(local, e))?;
    if !meta.is_dir() {
        return Err(CliError::new(
            exit::USAGE,
            format!("{}: sync needs a folder", local.display()),
        ));
    }
    let src = walk(local).map_err(|e| io_err(local, e))?;
    let top = match resolve(&client, r) {
        Ok(n) if n.kind.is_container() => Some(n.handle),
        Ok(_) => {
            return Err(CliError::new(
                exit::USAGE,
                format!("{}: not a folder", r.display()),
            ))
        }
        Err(e) if e.code == exit::NOT_FOUND => None,
        Err(e) => return Err(e),
    };
    let (tgt, handles) = match &top {
        Some(h) => remote_entries(&client, h),
        None => (Vec::new(), HashMap::new()),
    };
    let ld = |x: &str| local.join(x).display().to_string();
    let rd = |x: &str| r.join(x).display();
    let Some((p, extra)) = plan_sync(ctx, &src, &tgt, &ld, &rd) else {
        return Ok(());
    };
    let top = match top {
        Some(h) => h,
        None => ensure_path(&client, r).await?,
    };
    let mut folders: HashMap<String, NodeHandle> = handles.clone();
    folders.insert(String::new(), top.clone());
    let parent_of = |folders: &HashMap<String, NodeHandle>,
                     path: &str|
     -> Result<(NodeHandle, String), CliError> {
        let (pr, name) = path.rsplit_once('/').map_or(("", path), |(a, b)| (a, b));
        let h = folders
            .get(pr)
            .cloned()
            .ok_or_else(|| CliError::new(exit::OTHER, format!("{pr}: folder missing")))?;
        Ok((h, unescape_name(name)))
    };
    let mut jobs = Vec::new();
    let mut conflicts = 0;
    for a in &p.actions {
        match a {
            Action::Delete { path, .. } => {
                if let Some(h) = handles.get(path) {
                    if ctx.cli.force {
                        client.delete(h).await?;
                    } else {
                        client.trash(h).await?;
                    }
                }
            }
            Action::Mkdir(path) => {
                let (parent, name) = parent_of(&folders, path)?;
                let h = client.mkdir(&parent, &name).await?.handle;
                folders.insert(path.clone(), h);
            }
            Action::Copy { path, replace, .. } => {
                let (parent, name) = parent_of(&folders, path)?;
                let old = if *replace {
                    handles.get(path).cloned()
                } else {
                    None
                };
                jobs.push((local.join(path), parent, name, old));
            }
            Action::Conflict { path } => {
                conflicts += 1;
                warn_conflict(&rd(path));
            }
        }
    }
    let total = jobs
        .iter()
        .filter_map(|(l, ..)| std::fs::metadata(l).ok())
        .map(|m| m.len())
        .sum();
    let t = Transfers::new(ctx, total);
    let r2 = run_jobs(ctx.parallel(), jobs, |(local, parent, name, old)| {
        let (client, t) = (client.clone(), t.clone());
        async move { upload_replacing(&client, &local, &parent, &name, old, &t).await }
    })
    .await;
    finish_sync(ctx, &t, r2, extra, conflicts)
}

fn prompt_line(prompt: &str) -> Option<String> {
    if !std::io::stdin().is_terminal() {
        return None;
    }
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    let mut s = String::new();
    std::io::stdin().read_line(&mut s).ok()?;
    Some(s.trim().to_string()).filter(|s| !s.is_empty())
}

async fn login(ctx: &Ctx, email: Option<&str>, mfa: Option<&str>) -> Result<(), CliError> {
    let email = email
        .map(str::to_string)
        .or_else(|| ctx.cfg.email.clone())
        .or_else(|| prompt_line("E-mail: "))
        .ok_or_else(|| {
            CliError::new(
                exit::USAGE,
                "no e-mail: give it as an argument or set MEGA_EMAIL",
            )
        })?;
    let password = match ctx.cfg.password.clone() {
        Some(p) => p,
        None => super::tty::prompt_secret("Password: ").map_err(|_| {
            CliError::new(
                exit::AUTH,
                "no password: run in a terminal, or set MEGA_PASSWORD",
            )
        })?,
    };
    let api = ApiClient::new(ctx.api_config()).map_err(client::Error::from)?;
    let prepared = session::prepare_login(&api, &email, &password)
        .await
        .map_err(client::Error::from)?;
    let sess = match prepared.login(&api, mfa).await {
        Err(LoginError::MfaRequired) => match prompt_line("Two-factor code: ") {
            Some(code) => prepared.login(&api, Some(&code)).await,
            None => Err(LoginError::MfaRequired),
        },
        other => other,
    }
    .map_err(client::Error::from)?;
    SavedSession::from_session(&sess, &ctx.cfg.api_url)
        .save(&ctx.cfg.session_file)
        .map_err(client::Error::from)?;
    eprintln!(
        "logged in as {}; session saved to {}",
        sess.email,
        ctx.cfg.session_file.display()
    );
    Ok(())
}

async fn logout(ctx: &Ctx) -> Result<(), CliError> {
    let path = &ctx.cfg.session_file;
    if !path.exists() {
        eprintln!("not logged in");
        return Ok(());
    }
    let saved = SavedSession::load(path).map_err(|e| CliError::new(exit::CONFIG, e.to_string()))?;
    let mut api_cfg = ctx.api_config();
    api_cfg.base_url = saved.api_url.clone();
    let api = ApiClient::new(api_cfg).map_err(client::Error::from)?;
    api.set_sid(Some(session::SessionId::new(saved.sid.clone())));
    let r = session::logout(&api).await;
    SavedSession::remove(path).map_err(|e| io_err(path, e))?;
    r.map_err(client::Error::from)?;
    eprintln!("logged out");
    Ok(())
}

async fn whoami(ctx: &Ctx) -> Result<(), CliError> {
    let client = ctx.client().await?;
    let s = client.session();
    if ctx.cli.json {
        println!(
            "{}",
            json!({"email": s.email, "user": s.user, "api_url": ctx.cfg.api_url})
        );
    } else {
        println!("{} (user {})", s.email, s.user);
    }
    Ok(())
}

async fn df(ctx: &Ctx) -> Result<(), CliError> {
    let client = ctx.client().await?;
    let q = client.quota().await?;
    if ctx.cli.json {
        println!(
            "{}",
            json!({"used": q.used, "total": q.total, "free": q.total.saturating_sub(q.used)})
        );
    } else {
        let pct = if q.total > 0 {
            q.used as f64 * 100.0 / q.total as f64
        } else {
            0.0
        };
        println!(
            "used {} of {} ({pct:.1}%), {} free",
            human(q.used),
            human(q.total),
            human(q.total.saturating_sub(q.used))
        );
    }
    Ok(())
}

async fn link(ctx: &Ctx, arg: &str) -> Result<(), CliError> {
    let rp = remote_arg(arg)?;
    let client = ctx.client().await?;
    let node = resolve(&client, &rp)?;
    println!("{}", client.export(&node.handle).await?);
    Ok(())
}

async fn cat(ctx: &Ctx, arg: &str) -> Result<(), CliError> {
    let rp = remote_arg(arg)?;
    let client = ctx.client().await?;
    let node = resolve(&client, &rp)?;
    if node.kind != NodeKind::File {
        return Err(CliError::new(
            exit::USAGE,
            format!("{}: is a folder", rp.display()),
        ));
    }
    // Verified first, then written: nothing that failed its MAC reaches stdout.
    let spool = std::env::temp_dir().join(format!("megacmd-cat-{}", std::process::id()));
    let (tmp, file) = TempFile::create_for(&spool).map_err(|e| io_err(&spool, e))?;
    let mut f = tokio::fs::File::from_std(file);
    client.download(&node.handle, &mut f, None).await?;
    drop(f);
    let mut src = std::fs::File::open(tmp.path()).map_err(|e| io_err(tmp.path(), e))?;
    let mut out = std::io::stdout().lock();
    match std::io::copy(&mut src, &mut out) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        Err(e) => return Err(CliError::new(exit::OTHER, format!("stdout: {e}"))),
    }
    Ok(())
}
