//! Transfers: `get` (files, globs, folders with `-r`, public file and folder links), `put`
//! (files and folders, `--force` to replace) and `cat`. Downloads land under a temporary
//! name and are renamed into place only after their MAC verified.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::json;

use super::exit::{self, CliError};
use super::path::{self, escape_name, Location};
use super::progress::{run_jobs, Transfers};
use super::resolve::{
    child, ensure_folder, ensure_path, exists, expand, io_err, local_target, remote_arg, resolve,
};
use super::Ctx;
use crate::api::ApiClient;
use crate::client::{public_file, Client, OldVersions, PublicFolder, Target};
use crate::error::Error;
use crate::link::PublicLink;
use crate::local::files::{walk, TempFile};
use crate::local::time::now;
use crate::sync::oneway::{remote_listing, RemoteListing};
use crate::transfer::spool::Spool;
use crate::transfer::{download, TransferConfig};
use crate::tree::{Node, NodeHandle, NodeKind};

pub(super) async fn get(ctx: &Ctx, source: &str, target: Option<&str>) -> Result<(), CliError> {
    match path::parse(source)? {
        Location::Link(url) => {
            let url = super::account::open_link(&url)?;
            return get_link(ctx, &url, target).await;
        }
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
    // Folders' stored modes, set once their contents are in (a read-only folder would
    // refuse them).
    let mut folder_modes: Vec<(PathBuf, u32)> = Vec::new();
    for (_, node) in matches {
        if node.kind.is_container() {
            if !ctx.cli.recursive {
                return Err(CliError::new(
                    exit::USAGE,
                    format!(
                        "{}: is a folder (use --recursive)",
                        client.path_of(&node.handle)
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
            if let Some(m) = node.mode {
                folder_modes.push((local_root.clone(), m));
            }
            let RemoteListing { entries, handles } = remote_listing(&client, &node.handle)?;
            for e in entries {
                let p = local_root.join(&e.path);
                // Never through a link (one this download made, or one already there).
                let dir = if e.dir {
                    e.path.as_str()
                } else {
                    e.path.rsplit_once('/').map_or("", |(d, _)| d)
                };
                crate::local::files::no_link_on_the_way(&local_root, dir)
                    .map_err(|err| io_err(&p, err))?;
                if e.dir {
                    std::fs::create_dir_all(&p).map_err(|err| io_err(&p, err))?;
                    let mode = handles
                        .get(&e.path)
                        .and_then(|h| client.view(|t| t.get(h).and_then(|n| n.mode)));
                    if let Some(m) = mode {
                        folder_modes.push((p, m));
                    }
                } else if let Some(n) = handles
                    .get(&e.path)
                    .and_then(|h| client.view(|t| t.get(h).cloned()))
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
    // Deepest first: a folder's mode never stands in the way of setting its children's.
    folder_modes.sort_by(|a, b| b.0.cmp(&a.0));
    for (p, m) in folder_modes {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(m & 0o777))
            .map_err(|e| io_err(&p, e))?;
    }
    if r.is_ok() {
        t.summary(ctx, "downloaded", json!({}));
    }
    r
}

/// `get --version N`: the content a file had N replacements ago (1 = the previous
/// version), under the file's name.
pub(super) async fn get_version(
    ctx: &Ctx,
    source: &str,
    target: Option<&str>,
    n: u32,
) -> Result<(), CliError> {
    let rp = remote_arg(source)?;
    let client = ctx.client().await?;
    let node = resolve(&client, &rp)?;
    if node.kind != NodeKind::File {
        return Err(CliError::new(
            exit::USAGE,
            format!("{}: only files have versions", rp.display()),
        ));
    }
    let versions: Vec<Node> =
        client.view(|t| t.versions(&node.handle).into_iter().cloned().collect());
    let Some(version) = versions.get(n as usize - 1) else {
        return Err(CliError::new(
            exit::NOT_FOUND,
            format!(
                "{}: has {} previous version{}, not {n} (see list --versions)",
                rp.display(),
                versions.len(),
                if versions.len() == 1 { "" } else { "s" }
            ),
        ));
    };
    let dst = local_target(target, &node.name);
    if let Ok(meta) = std::fs::symlink_metadata(&dst) {
        if meta.is_dir() || !ctx.cli.force {
            return Err(exists(&dst.display().to_string()));
        }
    }
    let t = Transfers::new(ctx, version.size);
    t.patient(|p| client.download_to_path(&version.handle, &dst, "megacmd", Some(p)))
        .await?;
    t.done(|| {
        format!(
            "downloaded {} (version {n}) -> {}",
            rp.display(),
            dst.display()
        )
    });
    t.summary(ctx, "downloaded", json!({"version": n}));
    Ok(())
}

/// `get` of a public file link, or (with --recursive) of a public folder link.
async fn get_link(ctx: &Ctx, url: &str, target: Option<&str>) -> Result<(), CliError> {
    let api = ApiClient::new(ctx.api_config()).map_err(Error::from)?;
    let t = Transfers::new(ctx, 0);
    let cfg = TransferConfig {
        retry: ctx.api_config().retry,
        https: ctx.cfg.https_transfers,
        ..Default::default()
    };
    let force = ctx.cli.force;
    if let Ok(PublicLink::Folder { .. }) = crate::link::parse(url) {
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
                // Over the transfer quota it waits and starts again (a link's download
                // is not recorded for resuming: there is no account to keep it under).
                let tmp = t
                    .patient(|p| async {
                        let (tmp, file) =
                            TempFile::create_for(&dst).map_err(|e| Error::local(&dst, e))?;
                        let mut f = tokio::fs::File::from_std(file);
                        folder
                            .download(&api, &node.handle, &mut f, &cfg, Some(p))
                            .await?;
                        Ok(tmp)
                    })
                    .await?;
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
    let info = public_file(&api, url, cfg.https).await?;
    let dst = local_target(target, &info.name);
    if std::fs::symlink_metadata(&dst).is_ok() && !force {
        return Err(exists(&dst.display().to_string()));
    }
    t.bar.set_length(info.size);
    let tmp = t
        .patient(|p| async {
            let (tmp, file) = TempFile::create_for(&dst).map_err(|e| Error::local(&dst, e))?;
            let mut f = tokio::fs::File::from_std(file);
            download::download(api.http(), &info.source, &mut f, &cfg, Some(p))
                .await
                .map_err(|e| Error::from(e).about(info.name.clone()))?;
            Ok(tmp)
        })
        .await?;
    tmp.persist(&dst, now()).map_err(|e| io_err(&dst, e))?;
    t.done(|| format!("downloaded {} -> {}", info.name, dst.display()));
    t.summary(ctx, "downloaded", json!({}));
    Ok(())
}

/// Downloads a file node to `target` through a temporary file (MAC-verified before rename).
pub(super) async fn download_node(
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
    t.patient(|p| client.download_to_path(&node.handle, target, "megacmd", Some(p)))
        .await?;
    t.done(|| {
        format!(
            "downloaded {} -> {}",
            client.path_of(&node.handle),
            target.display()
        )
    });
    Ok(())
}

/// One upload: a local file to `name` in `parent`; with --force it replaces an existing file
/// (the new version is in place before the old one goes to the Rubbish Bin).
pub(super) async fn upload_one(
    client: &Client,
    local: &Path,
    parent: &NodeHandle,
    name: &str,
    force: bool,
    t: &Arc<Transfers>,
) -> Result<(), CliError> {
    let old = child(client, parent, name)?;
    if let Some(o) = &old {
        if o.kind.is_container() || !force {
            return Err(exists(&client.path_of(&o.handle)));
        }
    }
    let target = Target {
        parent,
        name,
        replaces: old.as_ref().map(|o| (&o.handle, OldVersions::Keep)),
        mode: None,
    };
    let node = client
        .upload_path_to(target, local, Some(t.progress()))
        .await?;
    t.done(|| {
        format!(
            "uploaded {} -> {}",
            local.display(),
            client.path_of(&node.handle)
        )
    });
    Ok(())
}

pub(super) async fn put(ctx: &Ctx, paths: &[String]) -> Result<(), CliError> {
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
        // The local file name as it is (escaped, maybe a shortened long name); it becomes a
        // MEGA name through `remote_name` in the folder it goes to.
        let base = local
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| src.clone());
        if meta.is_dir() {
            if !ctx.cli.recursive {
                return Err(CliError::new(
                    exit::USAGE,
                    format!("{src}: is a folder (use --recursive)"),
                ));
            }
            let top = match &into_folder {
                Some(f) => {
                    let name = client.view(|t| t.remote_name(f, &base));
                    ensure_folder(&client, f, &name).await?
                }
                None => {
                    let (parent, name) = dst
                        .split_last()
                        .ok_or_else(|| CliError::new(exit::USAGE, "cannot upload over a root"))?;
                    let p = resolve(&client, &parent)?;
                    ensure_folder(&client, &p.handle, name).await?
                }
            };
            keep_mode(&client, &top, &local).await?;
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
                let name = client.view(|t| t.remote_name(&parent, name));
                if e.dir {
                    let h = ensure_folder(&client, &parent, &name).await?;
                    keep_mode(&client, &h, &local.join(&e.path)).await?;
                    folders.insert(e.path.clone(), h);
                } else {
                    total += e.size;
                    jobs.push((local.join(&e.path), parent, name));
                }
            }
        } else {
            total += meta.len();
            // A link named on the command line is followed, as `cp` does (inside a folder
            // put with --recursive, links are stored as links).
            let local = match std::fs::symlink_metadata(&local) {
                Ok(m) if m.is_symlink() => local.canonicalize().map_err(|e| io_err(&local, e))?,
                _ => local,
            };
            match &into_folder {
                Some(f) => {
                    let name = client.view(|t| t.remote_name(f, &base));
                    jobs.push((local, f.clone(), name))
                }
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

/// Stores a local folder's permission bits on the remote folder `put` made (or found) for it.
/// Where that is not allowed (a folder shared with read-write access only), the folder keeps
/// what it has and the upload goes on.
async fn keep_mode(client: &Client, h: &NodeHandle, local: &Path) -> Result<(), CliError> {
    use std::os::unix::fs::PermissionsExt;
    let m = std::fs::metadata(local).map_err(|e| io_err(local, e))?;
    if let Err(e) = client.set_mode(h, m.permissions().mode()).await {
        tracing::debug!("{}: mode not stored: {e}", local.display());
    }
    Ok(())
}

/// The file at `rp`; a folder there is a usage error.
fn resolve_file(client: &Client, rp: &super::path::RemotePath) -> Result<Node, CliError> {
    let node = resolve(client, rp)?;
    if node.kind != NodeKind::File {
        return Err(CliError::new(
            exit::USAGE,
            format!("{}: is a folder", rp.display()),
        ));
    }
    Ok(node)
}

/// `thumbnail`/`preview`: a file's picture, decrypted, checked to be an image, written to
/// `out` (`-`: stdout) or beside us as `NAME.thumbnail.jpg`/`NAME.preview.jpg`.
pub(super) async fn picture(
    ctx: &Ctx,
    arg: &str,
    out: Option<&Path>,
    kind: u32,
) -> Result<(), CliError> {
    let what = if kind == crate::transfer::fileattr::THUMBNAIL {
        "thumbnail"
    } else {
        "preview"
    };
    let rp = remote_arg(arg)?;
    let client = ctx.client().await?;
    let node = resolve_file(&client, &rp)?;
    let Some(image) = client.file_attribute(&node.handle, kind).await? else {
        return Err(CliError::new(
            exit::NOT_FOUND,
            format!("{}: has no {what}", rp.display()),
        ));
    };
    let ext = if image.starts_with(b"\x89PNG") {
        "png"
    } else {
        "jpg"
    };
    let dst = match out {
        Some(p) if p == Path::new("-") => {
            let mut o = std::io::stdout().lock();
            return match o.write_all(&image).and_then(|()| o.flush()) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
                Err(e) => Err(CliError::new(exit::OTHER, format!("stdout: {e}"))),
            };
        }
        Some(p) if p.is_dir() => p.join(format!("{}.{what}.{ext}", escape_name(&node.name))),
        Some(p) => p.to_path_buf(),
        None => PathBuf::from(format!("{}.{what}.{ext}", escape_name(&node.name))),
    };
    let (tmp, mut file) = TempFile::create_for(&dst).map_err(|e| Error::local(&dst, e))?;
    file.write_all(&image)
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::local(&dst, e))?;
    tmp.persist(&dst, now())
        .map_err(|e| Error::local(&dst, e))?;
    Ok(())
}

pub(super) async fn cat(ctx: &Ctx, arg: &str) -> Result<(), CliError> {
    let rp = remote_arg(arg)?;
    let client = ctx.client().await?;
    let node = resolve_file(&client, &rp)?;
    // Verified first, then written: nothing that failed its MAC reaches stdout. Meanwhile it
    // waits in memory, or (past 16 MiB) encrypted under a key only this process holds.
    let mut spool = Spool::new(&std::env::temp_dir(), 16 << 20);
    client.download(&node.handle, &mut spool, None).await?;
    let mut out = std::io::stdout().lock();
    match spool.copy_to(&mut out).and_then(|()| out.flush()) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        Err(e) => return Err(CliError::new(exit::OTHER, format!("stdout: {e}"))),
    }
    Ok(())
}
