//! Finding command-line locations in the tree: a `mega:` path to its node (with the same
//! choice among duplicate names as everywhere: the oldest), a glob in the last component to
//! its matches, folders created as needed, and where a download lands locally.

use std::path::{Path, PathBuf};

use super::exit::{self, CliError};
use super::path::{self, escape_name, Location, RemotePath, RootKind};
use crate::client::Client;
use crate::error::Error;
use crate::tree::{Node, NodeHandle};

pub(super) fn io_err(what: &Path, e: std::io::Error) -> CliError {
    CliError::new(exit::io_code(&e), format!("{}: {e}", what.display()))
}

pub(super) fn remote_arg(s: &str) -> Result<RemotePath, CliError> {
    match path::parse(s)? {
        Location::Remote(r) => Ok(r),
        _ => Err(CliError::new(
            exit::USAGE,
            format!("{s}: expected a mega:/ path"),
        )),
    }
}

pub(super) fn not_found(what: &str) -> CliError {
    CliError::new(exit::NOT_FOUND, format!("{what}: no such file or folder"))
}

pub(super) fn exists(what: &str) -> CliError {
    CliError::new(
        exit::EXISTS,
        format!("{what}: already exists (use --force to overwrite)"),
    )
}

pub(super) fn root_handle(client: &Client, kind: RootKind) -> Result<NodeHandle, CliError> {
    let n = match kind {
        RootKind::Drive => client.view(|t| t.root().map(|n| n.handle.clone())),
        RootKind::Rubbish => client.view(|t| t.rubbish().map(|n| n.handle.clone())),
        RootKind::Inbox => client.view(|t| t.inbox().map(|n| n.handle.clone())),
        RootKind::Backups => {
            return client.my_backups_cached().ok_or_else(|| {
                CliError::new(
                    exit::NOT_FOUND,
                    "mega://Backups/: this account has no backups yet (megacmd backup FOLDER makes one)",
                )
            })
        }
        RootKind::Shared => {
            return Err(CliError::new(
                exit::USAGE,
                "mega://Shared/ holds no files itself: name a folder, \
                 mega://Shared/<owner e-mail>/<folder>/ (megacmd shares lists them)",
            ))
        }
    };
    n.ok_or_else(|| CliError::new(exit::OTHER, "the account has no such root"))
}

/// Where a remote path starts: its root, or for `mega://Shared/<owner>/<folder>/…` the
/// shared folder; and the parts below that.
fn start_of<'a>(
    client: &Client,
    rp: &'a RemotePath,
) -> Result<(NodeHandle, &'a [String]), CliError> {
    if rp.root != RootKind::Shared {
        return Ok((root_handle(client, rp.root)?, &rp.parts));
    }
    let [owner, folder, rest @ ..] = rp.parts.as_slice() else {
        return root_handle(client, rp.root).map(|h| (h, &rp.parts[..]));
    };
    let share = client
        .view(|tree| {
            tree.inshares()
                .into_iter()
                .find(|n| tree.sharer_name(n).eq_ignore_ascii_case(owner) && n.name == *folder)
                .map(|n| n.handle.clone())
        })
        .ok_or_else(|| not_found(&rp.display()))?;
    Ok((share, rest))
}

/// The node a remote path names (an error if the tree cache turned out damaged on the way:
/// "not found" is never made of a damaged file).
pub(super) fn resolve(client: &Client, rp: &RemotePath) -> Result<Node, CliError> {
    let (start, parts) = start_of(client, rp)?;
    client.checked(|tree| {
        let mut cur = tree.get(&start).ok_or_else(|| not_found(&rp.display()))?;
        for part in parts {
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
    })?
}

/// Resolves a path whose last component may be a glob; at least one match, or NOT_FOUND.
pub(super) fn expand(
    client: &Client,
    rp: &RemotePath,
) -> Result<Vec<(RemotePath, Node)>, CliError> {
    if !rp.has_glob() {
        return Ok(vec![(rp.clone(), resolve(client, rp)?)]);
    }
    let (parent, pattern) = rp
        .split_last()
        .expect("invariant: a glob path has a last part");
    let folder = resolve(client, &parent)?;
    let out: Vec<_> = client
        .children(&folder.handle)?
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
pub(super) fn child(
    client: &Client,
    parent: &NodeHandle,
    name: &str,
) -> Result<Option<Node>, CliError> {
    Ok(client.checked(|t| t.child_by_name(parent, name).cloned())?)
}

/// An existing folder `name` in `parent`, or a new one; a file of that name is in the way.
pub(super) async fn ensure_folder(
    client: &Client,
    parent: &NodeHandle,
    name: &str,
) -> Result<NodeHandle, CliError> {
    match client.ensure_folder(parent, name).await {
        Ok(n) => Ok(n.handle),
        Err(Error::NotAFolder { what }) => Err(exists(&what)),
        Err(e) => Err(e.into()),
    }
}

/// The folder at a remote path, created with missing parents (like `mkdir -p`).
pub(super) async fn ensure_path(client: &Client, rp: &RemotePath) -> Result<NodeHandle, CliError> {
    let (start, parts) = start_of(client, rp)?;
    match client.ensure_path(&start, parts).await {
        Ok(h) => Ok(h),
        Err(Error::NotAFolder { what }) => Err(exists(&what)),
        Err(e) => Err(e.into()),
    }
}

/// Where a single downloaded item goes: into `target` if it is a folder (or ends in `/`).
pub(super) fn local_target(target: Option<&str>, name: &str) -> PathBuf {
    let t = target.unwrap_or(".");
    let p = PathBuf::from(t);
    if t.ends_with('/') || p.is_dir() {
        p.join(escape_name(name))
    } else {
        p
    }
}
