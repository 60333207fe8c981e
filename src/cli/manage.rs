//! `delete` (alias `rm`), `mkdir` and `move` (alias `mv`).

use super::exit::{self, CliError};
use super::path::RootKind;
use super::resolve::{
    child, ensure_path, exists, expand, not_found, remote_arg, resolve, root_handle,
};
use super::Ctx;
use crate::tree::{Node, NodeKind};

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

pub(super) async fn mv(ctx: &Ctx, source: &str, target: &str) -> Result<(), CliError> {
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
