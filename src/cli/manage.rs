//! `delete` (alias `rm`), `mkdir`, `move` (alias `mv`) and `copy` (alias `cp`).

use serde_json::json;

use super::exit::{self, CliError};
use super::path::{RemotePath, RootKind};
use super::resolve::{
    child, ensure_path, exists, expand, not_found, remote_arg, resolve, root_handle,
};
use super::Ctx;
use crate::client::{Client, Linked, OldVersions, Target};
use crate::tree::{Node, NodeHandle, NodeKind};

pub(super) async fn delete(ctx: &Ctx, paths: &[String]) -> Result<(), CliError> {
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
            let in_rubbish = client.path_of(&node.handle).starts_with("//Rubbish Bin/")
                || node.parent.as_ref() == Some(&rubbish);
            let permanent = ctx.cli.force || in_rubbish;
            // Moving a folder to the Rubbish Bin can be undone, so it needs no -r (as in
            // MEGA's own megacmd); deleting a non-empty folder for good does.
            if permanent
                && node.kind == NodeKind::Folder
                && !ctx.cli.recursive
                && !client.children(&node.handle)?.is_empty()
            {
                return Err(CliError::new(
                    exit::USAGE,
                    format!(
                        "{}: is a folder that is not empty (use --recursive to delete it permanently)",
                        shown.display()
                    ),
                ));
            }
            if permanent {
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

/// `delete --versions`: drops the previous versions of files (of every file below a folder
/// with --recursive), permanently; the current versions stay.
pub(super) async fn delete_versions(ctx: &Ctx, paths: &[String]) -> Result<(), CliError> {
    let client = ctx.client().await?;
    for p in paths {
        let rp = remote_arg(p)?;
        for (shown, node) in expand(&client, &rp)? {
            let files: Vec<Node> = if node.is_file() {
                vec![node]
            } else if ctx.cli.recursive {
                client.view(|tree| {
                    tree.subtree(&node.handle)
                        .into_iter()
                        .filter(|n| n.is_file())
                        .cloned()
                        .collect()
                })
            } else {
                return Err(CliError::new(
                    exit::USAGE,
                    format!(
                        "{}: is a folder (use --recursive for the versions of every file in it)",
                        shown.display()
                    ),
                ));
            };
            for f in files {
                let n = client.delete_versions(&f.handle).await?;
                if n > 0 && ctx.cli.verbose >= 1 {
                    eprintln!(
                        "deleted {n} previous version{} of {}",
                        if n == 1 { "" } else { "s" },
                        client.path_of(&f.handle)
                    );
                }
            }
        }
    }
    Ok(())
}

pub(super) async fn mkdir(ctx: &Ctx, paths: &[String]) -> Result<(), CliError> {
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

/// Where `move` and `copy` put what they are given: into an existing folder (each keeps its
/// name), or at the target path (one source; its parent must exist).
struct Destination {
    path: RemotePath,
    folder: Option<Node>,
}

impl Destination {
    fn of(client: &Client, dst: RemotePath, many: bool) -> Result<Destination, CliError> {
        let node = resolve(client, &dst).ok();
        let folder = match node {
            Some(n) if n.kind.is_container() => Some(n),
            _ if dst.dir || many => {
                return Err(match node {
                    Some(_) => {
                        CliError::new(exit::USAGE, format!("{}: not a folder", dst.display()))
                    }
                    None => not_found(&dst.display()),
                })
            }
            _ => None,
        };
        Ok(Destination { path: dst, folder })
    }

    /// How the command line names what arrives here called `name`.
    fn shown(&self, name: &str) -> RemotePath {
        let mut p = self.path.clone();
        if self.folder.is_some() {
            p.parts.push(name.to_string());
        }
        p.dir = false;
        p
    }

    /// The parent and name something called `name` gets.
    fn place(&self, client: &Client, name: &str) -> Result<(NodeHandle, String), CliError> {
        if let Some(f) = &self.folder {
            return Ok((f.handle.clone(), name.to_string()));
        }
        let (p, name) = self
            .path
            .split_last()
            .ok_or_else(|| CliError::new(exit::USAGE, "the target cannot be a root"))?;
        Ok((resolve(client, &p)?.handle, name.to_string()))
    }
}

/// The file a new copy called `name` in `parent` replaces: none if the name is free; with
/// `--force` a file (not when a folder is copied); anything else is "already exists".
fn replaced(
    ctx: &Ctx,
    client: &Client,
    parent: &NodeHandle,
    name: &str,
    folder: bool,
) -> Result<Option<NodeHandle>, CliError> {
    match child(client, parent, name)? {
        Some(e) if !ctx.cli.force || e.kind.is_container() || folder => {
            Err(exists(&client.path_of(&e.handle)))
        }
        Some(e) => Ok(Some(e.handle)),
        None => Ok(None),
    }
}

/// A root cannot be moved or copied.
fn movable(shown: &RemotePath, node: &Node, what: &str) -> Result<(), CliError> {
    if matches!(node.kind, NodeKind::File | NodeKind::Folder) {
        Ok(())
    } else {
        Err(CliError::new(
            exit::USAGE,
            format!("{}: a root cannot be {what}", shown.display()),
        ))
    }
}

pub(super) async fn mv(ctx: &Ctx, source: &str, target: &str) -> Result<(), CliError> {
    let (src, dst) = (remote_arg(source)?, remote_arg(target)?);
    let client = ctx.client().await?;
    let sources = expand(&client, &src)?;
    let dest = Destination::of(&client, dst, sources.len() > 1)?;
    for (shown, node) in sources {
        movable(&shown, &node, "moved")?;
        let (parent, name) = dest.place(&client, &node.name)?;
        if let Some(existing) = child(&client, &parent, &name)?.filter(|e| e.handle != node.handle)
        {
            if !ctx.cli.force || existing.kind.is_container() {
                return Err(exists(&client.path_of(&existing.handle)));
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
                client.path_of(&node.handle)
            );
        }
    }
    Ok(())
}

/// `copy` (alias `cp`): server-side copies, no content transferred; folders with
/// `--recursive`. An existing file at the target is replaced with `--force` (it becomes the
/// copy's previous version); an existing folder is never merged into.
pub(super) async fn cp(ctx: &Ctx, paths: &[String]) -> Result<(), CliError> {
    let Some((target, sources)) = paths.split_last() else {
        return Err(CliError::new(
            exit::USAGE,
            "copy: name sources and a target",
        ));
    };
    let dst = remote_arg(target)?;
    let client = ctx.client().await?;
    let mut all = Vec::new();
    for s in sources {
        all.extend(expand(&client, &remote_arg(s)?)?);
    }
    let dest = Destination::of(&client, dst, all.len() > 1)?;
    let mut made = Vec::new();
    for (shown, node) in all {
        movable(&shown, &node, "copied")?;
        if node.kind.is_container() && !ctx.cli.recursive {
            return Err(CliError::new(
                exit::USAGE,
                format!("{}: a folder (use -r to copy it)", shown.display()),
            ));
        }
        let (parent, name) = dest.place(&client, &node.name)?;
        if client.view(|t| t.is_within(&parent, &node.handle)) {
            return Err(CliError::new(
                exit::USAGE,
                format!("{}: cannot copy a folder into itself", shown.display()),
            ));
        }
        let replaces = replaced(ctx, &client, &parent, &name, node.kind.is_container())?;
        let target = Target {
            parent: &parent,
            name: &name,
            replaces: replaces.as_ref().map(|h| (h, OldVersions::Keep)),
            mode: None,
        };
        let copy = client.copy(&node.handle, target).await?;
        let to = dest.shown(&name).display();
        if ctx.cli.json {
            made.push(json!({"source": shown.display(), "copy": to, "handle": copy.handle.0}));
        } else if ctx.cli.verbose >= 1 {
            eprintln!("copied {} -> {to}", shown.display());
        }
    }
    if ctx.cli.json {
        println!("{}", serde_json::Value::Array(made));
    }
    Ok(())
}

/// `import LINK [TARGET]`: a public file or folder link into the account (a copy on the
/// server, as MEGA's "Import"), into the target folder (default mega:/) under the link's
/// name, or at the target path. An existing file is replaced only with `--force` (kept as a
/// previous version); an existing folder never.
pub(super) async fn import(ctx: &Ctx, url: &str, target: Option<&str>) -> Result<(), CliError> {
    let dst = remote_arg(target.unwrap_or("mega:/"))?;
    let url = &super::account::open_link(url)?;
    crate::link::parse(url).map_err(|e| CliError::new(exit::USAGE, format!("{url}: {e}")))?;
    let client = ctx.client().await?;
    let linked = Linked::open(client.api(), url).await?;
    let name = linked.name().to_string();
    let folder_link = linked.is_folder();
    let dest = Destination::of(&client, dst, false)?;
    let (parent, name) = dest.place(&client, &name)?;
    let replaces = replaced(ctx, &client, &parent, &name, folder_link)?;
    let t = Target {
        parent: &parent,
        name: &name,
        replaces: replaces.as_ref().map(|h| (h, OldVersions::Keep)),
        mode: None,
    };
    let made = client.import(&linked, t).await?;
    let path = dest.shown(&name).display();
    if ctx.cli.json {
        println!("{}", json!({"imported": path, "handle": made.handle.0}));
    } else if ctx.cli.verbose >= 1 {
        eprintln!("imported {path}");
    }
    Ok(())
}

/// `attr`: changes (or with no change, shows) what MEGA's apps show on a node: label,
/// favourite, sensitive, description, tags. Globs apply to every match.
pub(super) async fn attr(
    ctx: &Ctx,
    path: &str,
    c: &crate::client::marks::MarkChanges,
) -> Result<(), CliError> {
    use crate::client::marks::Marks;
    let rp = remote_arg(path)?;
    let client = ctx.client().await?;
    let nothing = c.label.is_none()
        && c.favourite.is_none()
        && c.sensitive.is_none()
        && c.description.is_none()
        && c.add_tags.is_empty()
        && c.remove_tags.is_empty();
    let mut shown = Vec::new();
    for (name, node) in expand(&client, &rp)? {
        let marks = if nothing {
            node.attrs().map(|a| Marks::of(&a)).unwrap_or_default()
        } else {
            client
                .set_marks(&node.handle, c)
                .await
                .map_err(|e| match e {
                    crate::error::Error::Invalid { what, .. } => CliError::new(exit::USAGE, what),
                    e => e.into(),
                })?
        };
        shown.push((name.display(), marks));
    }
    if ctx.cli.json {
        let v: Vec<_> = shown
            .iter()
            .map(|(p, m)| {
                let mut o = json!(m);
                o["path"] = json!(p);
                o
            })
            .collect();
        println!("{}", json!(v));
    } else if nothing || ctx.cli.verbose >= 1 {
        for (p, m) in shown {
            println!(
                "{p}: label {}, favourite {}, sensitive {}, tags [{}], description {}",
                m.label.unwrap_or("none"),
                m.favourite,
                m.sensitive,
                m.tags.join(", "),
                m.description
                    .as_deref()
                    .map_or("none".to_string(), |d| format!("{d:?}"))
            );
        }
    }
    Ok(())
}
