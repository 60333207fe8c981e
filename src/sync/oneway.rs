//! One-way sync (`megacmd sync SRC DST`): make the target look like the source.
//!
//! * [`plan`]: a pure function from the source listing and the target listing to the actions.
//!   Files count as the same when their sizes match and their mtimes match to the second (or,
//!   with `ignore_same_size`, when their sizes match). Extra target entries are deleted only
//!   when asked.
//! * [`remote_listing`]: a remote subtree as a listing (escaped relative paths).
//! * [`download_tree`] / [`upload_tree`]: carry a plan out, transfers `parallel` at a time;
//!   downloads are renamed into place only after their MAC verified, remote deletions go to
//!   the Rubbish Bin (or with `permanent`, nowhere), replaced remote files likewise.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::client::{Client, OldVersions, Target};
use crate::error::Error;
use crate::local::names::escape_name;
use crate::transfer::Progress;
use crate::tree::NodeHandle;

pub use crate::local::files::Entry;

#[derive(Debug, Clone, Copy, Default)]
pub struct PlanOptions {
    pub ignore_same_size: bool,
    pub delete: bool,
}

/// What to do, in an order that works: folders before their contents, deletions of contents
/// before their folders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Create a folder on the target.
    Mkdir(String),
    /// Transfer a file; `replace` when the target has a different version.
    Copy {
        path: String,
        size: u64,
        replace: bool,
    },
    /// Remove an entry that exists only on the target (`--delete`).
    Delete { path: String, dir: bool },
    /// The source has a file where the target has a folder, or the reverse; left alone
    /// unless `--delete` allows replacing it.
    Conflict { path: String },
}

/// Files that were equal and left alone are counted, not listed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub actions: Vec<Action>,
    pub unchanged: usize,
}

fn same(a: &Entry, b: &Entry, opts: PlanOptions) -> bool {
    a.size == b.size && (opts.ignore_same_size || a.mtime == b.mtime)
}

fn is_below(path: &str, dir: &str) -> bool {
    path.len() > dir.len() && path.starts_with(dir) && path.as_bytes()[dir.len()] == b'/'
}

/// Plans a one-way sync from `source` to `target`.
pub fn plan(source: &[Entry], target: &[Entry], opts: PlanOptions) -> Plan {
    let tgt: BTreeMap<&str, &Entry> = target.iter().map(|e| (e.path.as_str(), e)).collect();
    let src: BTreeMap<&str, &Entry> = source.iter().map(|e| (e.path.as_str(), e)).collect();
    let mut out = Plan::default();
    let mut deletes: Vec<(String, bool)> = Vec::new();
    // Target folders that a source file replaces (with --delete): their contents go too.
    let mut replaced_dirs: BTreeSet<String> = BTreeSet::new();

    // BTreeMap order puts "a" before "a/b": folders come before their contents.
    for (path, s) in &src {
        match tgt.get(path) {
            None => out.actions.push(if s.dir {
                Action::Mkdir(path.to_string())
            } else {
                Action::Copy {
                    path: path.to_string(),
                    size: s.size,
                    replace: false,
                }
            }),
            Some(t) if s.dir && t.dir => {}
            Some(t) if !s.dir && !t.dir => {
                if same(s, t, opts) {
                    out.unchanged += 1;
                } else {
                    out.actions.push(Action::Copy {
                        path: path.to_string(),
                        size: s.size,
                        replace: true,
                    });
                }
            }
            Some(t) => {
                if opts.delete {
                    deletes.push((path.to_string(), t.dir));
                    if t.dir {
                        replaced_dirs.insert(path.to_string());
                    }
                    out.actions.push(if s.dir {
                        Action::Mkdir(path.to_string())
                    } else {
                        Action::Copy {
                            path: path.to_string(),
                            size: s.size,
                            replace: false,
                        }
                    });
                } else {
                    out.actions.push(Action::Conflict {
                        path: path.to_string(),
                    });
                }
            }
        }
    }
    if opts.delete {
        for (path, t) in &tgt {
            if !src.contains_key(path) && !replaced_dirs.iter().any(|d| is_below(path, d)) {
                deletes.push((path.to_string(), t.dir));
            }
        }
    }
    // Deletions first (a replaced folder must go before its file arrives), deepest first, and
    // nothing below a folder that is deleted anyway.
    deletes.sort_by(|a, b| b.0.cmp(&a.0));
    let dirs: Vec<String> = deletes
        .iter()
        .filter(|d| d.1)
        .map(|d| d.0.clone())
        .collect();
    let deletes: Vec<Action> = deletes
        .into_iter()
        .filter(|(p, _)| !dirs.iter().any(|d| is_below(p, d)))
        .map(|(path, dir)| Action::Delete { path, dir })
        .collect();
    let mut actions = deletes;
    actions.append(&mut out.actions);
    out.actions = actions;
    out
}

/// A remote subtree (below, not including, `top`) as sync entries with escaped relative paths,
/// sorted, and the node behind each path.
pub struct RemoteListing {
    pub entries: Vec<Entry>,
    pub handles: HashMap<String, NodeHandle>,
}

/// Like [`remote_listing`], for the folder's own entries only (no descent: a listing of the
/// root of a large account reads only the root's children).
pub fn remote_children(client: &Client, top: &NodeHandle) -> Result<RemoteListing, Error> {
    client.checked(|tree| children_of(tree, top))
}

fn children_of(tree: &crate::tree::NodeTree, top: &NodeHandle) -> RemoteListing {
    let mut handles = HashMap::new();
    let mut entries: Vec<Entry> = tree
        .children(top)
        .into_iter()
        .map(|n| {
            let path = escape_name(&n.name);
            handles.insert(path.clone(), n.handle.clone());
            Entry {
                path,
                size: n.size,
                mtime: n.mtime,
                dir: n.kind.is_container(),
                link: n.is_symlink(),
            }
        })
        .collect();
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    RemoteListing { entries, handles }
}

/// An error, never a short listing, if the tree cache turned out damaged while it was read:
/// a sync never plans deletions from what a damaged file left out.
pub fn remote_listing(client: &Client, top: &NodeHandle) -> Result<RemoteListing, Error> {
    client.checked(|tree| listing_of(tree, top))
}

fn listing_of(tree: &crate::tree::NodeTree, top: &NodeHandle) -> RemoteListing {
    let mut rel: HashMap<NodeHandle, String> = HashMap::new();
    let mut entries = Vec::new();
    let mut handles = HashMap::new();
    for n in tree.subtree(top).into_iter().skip(1) {
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
            link: n.is_symlink(),
        });
    }
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    RemoteListing { entries, handles }
}

/// Told `(from, to)` after each file transferred.
pub type Copied = Arc<dyn Fn(&str, &str) + Send + Sync>;

/// How a plan is carried out.
#[derive(Clone)]
pub struct Execution {
    /// Transfers at once.
    pub parallel: usize,
    /// Remote deletions and replaced remote files: deleted for good instead of to the
    /// Rubbish Bin.
    pub permanent: bool,
    /// Remote deletions go to the Rubbish Bin's `SyncDebris/YYYY-MM-DD` folder, as MEGA's
    /// apps move what a sync or backup removes (not with `permanent`).
    pub sync_debris: bool,
    /// Bytes transferred, as they complete.
    pub progress: Option<Progress>,
    /// Called with `(from, to)` after each file transferred.
    pub copied: Copied,
    /// Downloads that meet MEGA's transfer quota wait for it here (or fail, if it says not
    /// to wait); uploads go on.
    pub quota: Arc<crate::client::quota::QuotaPause>,
}

/// What carrying out a plan did.
#[derive(Debug, Default)]
pub struct Outcome {
    pub copied: usize,
    pub deleted: usize,
    /// Paths left alone: a file on one side, a folder on the other (without `delete`).
    pub conflicts: Vec<String>,
    /// Transfers that failed (the others went on).
    pub failed: Vec<Error>,
}

/// Makes the local folder `local` look like the remote listing (a plan from
/// [`plan`]`(remote, local)`). Deletions and folders first, in order; then the downloads.
pub async fn download_tree(
    client: &Arc<Client>,
    p: &Plan,
    remote: &RemoteListing,
    local: &Path,
    how: &Execution,
) -> Result<Outcome, Error> {
    std::fs::create_dir_all(local).map_err(|e| Error::local(local, e))?;
    let mut out = Outcome::default();
    let mut jobs = Vec::new();
    for a in &p.actions {
        match a {
            Action::Delete { path, dir } => {
                let lp = local.join(path);
                let res = if *dir {
                    std::fs::remove_dir_all(&lp)
                } else {
                    std::fs::remove_file(&lp)
                };
                res.map_err(|e| Error::local(&lp, e))?;
                out.deleted += 1;
            }
            Action::Mkdir(path) => {
                let lp = local.join(path);
                crate::local::files::no_link_on_the_way(local, path)
                    .map_err(|e| Error::local(&lp, e))?;
                std::fs::create_dir_all(&lp).map_err(|e| Error::local(&lp, e))?;
            }
            Action::Copy { path, .. } => {
                if let Some(h) = remote.handles.get(path) {
                    let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
                    let lp = local.join(path);
                    crate::local::files::no_link_on_the_way(local, dir)
                        .map_err(|e| Error::local(&lp, e))?;
                    jobs.push((h.clone(), lp));
                }
            }
            Action::Conflict { path } => out.conflicts.push(path.clone()),
        }
    }
    let started = jobs.len();
    out.failed = crate::jobs::run(how.parallel, jobs, |(h, dst): (NodeHandle, PathBuf)| {
        let (client, how) = (client.clone(), how.clone());
        async move {
            how.quota
                .run(|| client.download_to_path(&h, &dst, "megacmd", how.progress.clone()))
                .await?;
            (how.copied)(&client.path_of(&h), &dst.display().to_string());
            Ok(())
        }
    })
    .await;
    out.copied = started - out.failed.len();
    Ok(out)
}

/// Makes the remote folder `top` look like the local listing (a plan from
/// [`plan`]`(local, remote)`): deletions and folders first, in order; then the uploads.
pub async fn upload_tree(
    client: &Arc<Client>,
    p: &Plan,
    remote: &RemoteListing,
    top: &NodeHandle,
    local: &Path,
    how: &Execution,
) -> Result<Outcome, Error> {
    let mut folders: HashMap<String, NodeHandle> = remote.handles.clone();
    folders.insert(String::new(), top.clone());
    let parent_of = |folders: &HashMap<String, NodeHandle>, path: &str| {
        let (pr, name) = path.rsplit_once('/').unwrap_or(("", path));
        let h = folders.get(pr).cloned().ok_or_else(|| Error::NotFound {
            what: format!("{pr} (a folder that should have been created)"),
        })?;
        // The real name of what a local name stands for (a shortened long name goes back).
        let name = client.view(|t| t.remote_name(&h, name));
        Ok::<_, Error>((h, name))
    };
    let mut out = Outcome::default();
    let mut jobs = Vec::new();
    for a in &p.actions {
        match a {
            Action::Delete { path, .. } => {
                if let Some(h) = remote.handles.get(path) {
                    if how.permanent {
                        client.delete(h).await?;
                    } else if how.sync_debris {
                        client.to_sync_debris(h).await?;
                    } else {
                        client.trash(h).await?;
                    }
                    out.deleted += 1;
                }
            }
            Action::Mkdir(path) => {
                let (parent, name) = parent_of(&folders, path)?;
                let h = client.mkdir(&parent, &name).await?.handle;
                folders.insert(path.clone(), h);
            }
            Action::Copy { path, replace, .. } => {
                let (parent, name) = parent_of(&folders, path)?;
                let old = remote.handles.get(path).filter(|_| *replace).cloned();
                jobs.push((local.join(path), parent, name, old));
            }
            Action::Conflict { path } => out.conflicts.push(path.clone()),
        }
    }
    let started = jobs.len();
    out.failed = crate::jobs::run(
        how.parallel,
        jobs,
        |(src, parent, name, old): (PathBuf, NodeHandle, String, Option<NodeHandle>)| {
            let (client, how) = (client.clone(), how.clone());
            async move {
                // A replaced file becomes the new one's previous version, even with
                // `permanent` (which is about files the source no longer has).
                let target = Target {
                    parent: &parent,
                    name: &name,
                    replaces: old.as_ref().map(|h| (h, OldVersions::Keep)),
                    mode: None,
                };
                let node = client
                    .upload_path_to(target, &src, how.progress.clone())
                    .await?;
                (how.copied)(&src.display().to_string(), &client.path_of(&node.handle));
                Ok(())
            }
        },
    )
    .await;
    out.copied = started - out.failed.len();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(path: &str, size: u64, mtime: i64) -> Entry {
        Entry {
            path: path.into(),
            size,
            mtime,
            dir: false,
            link: false,
        }
    }
    fn d(path: &str) -> Entry {
        Entry {
            path: path.into(),
            size: 0,
            mtime: 0,
            dir: true,
            link: false,
        }
    }
    fn copy(path: &str, size: u64, replace: bool) -> Action {
        Action::Copy {
            path: path.into(),
            size,
            replace,
        }
    }

    #[test]
    fn new_changed_and_unchanged_files() {
        let src = [d("a"), f("a/x", 1, 10), f("y", 2, 20), f("z", 3, 30)];
        let tgt = [f("y", 2, 20), f("z", 3, 31)];
        let p = plan(&src, &tgt, PlanOptions::default());
        assert_eq!(
            p.actions,
            vec![
                Action::Mkdir("a".into()),
                copy("a/x", 1, false),
                copy("z", 3, true)
            ]
        );
        assert_eq!(p.unchanged, 1);
        // Same size is enough with --ignore-same-size.
        let p = plan(
            &src,
            &tgt,
            PlanOptions {
                ignore_same_size: true,
                ..Default::default()
            },
        );
        assert_eq!(p.unchanged, 2);
    }

    #[test]
    fn second_run_is_empty() {
        let src = [d("a"), f("a/x", 1, 10), f("y", 2, 20)];
        let p = plan(
            &src,
            &src,
            PlanOptions {
                delete: true,
                ..Default::default()
            },
        );
        assert!(p.actions.is_empty());
        assert_eq!(p.unchanged, 2);
    }

    #[test]
    fn extras_are_deleted_only_with_delete_and_deepest_first() {
        let src = [f("keep", 1, 1)];
        let tgt = [
            f("keep", 1, 1),
            d("old"),
            d("old/deeper"),
            f("old/deeper/f", 1, 1),
            f("stray", 1, 1),
        ];
        assert!(plan(&src, &tgt, PlanOptions::default()).actions.is_empty());
        let p = plan(
            &src,
            &tgt,
            PlanOptions {
                delete: true,
                ..Default::default()
            },
        );
        assert_eq!(
            p.actions,
            vec![
                Action::Delete {
                    path: "stray".into(),
                    dir: false
                },
                Action::Delete {
                    path: "old".into(),
                    dir: true
                },
            ]
        );
    }

    #[test]
    fn type_conflicts() {
        let src = [f("x", 1, 1), d("y"), f("y/in", 1, 1)];
        let tgt = [d("x"), f("x/old", 1, 1), f("y", 5, 5)];
        let p = plan(&src, &tgt, PlanOptions::default());
        assert_eq!(
            p.actions,
            vec![
                Action::Conflict { path: "x".into() },
                Action::Conflict { path: "y".into() },
                copy("y/in", 1, false)
            ]
        );
        let p = plan(
            &src,
            &tgt,
            PlanOptions {
                delete: true,
                ..Default::default()
            },
        );
        assert_eq!(
            p.actions,
            vec![
                Action::Delete {
                    path: "y".into(),
                    dir: false
                },
                Action::Delete {
                    path: "x".into(),
                    dir: true
                },
                copy("x", 1, false),
                Action::Mkdir("y".into()),
                copy("y/in", 1, false),
            ]
        );
    }

    #[test]
    fn prefix_names_are_not_children() {
        // "ab" is not below "a".
        let src = [f("ab", 1, 1)];
        let tgt = [d("a"), f("ab", 1, 1)];
        let p = plan(
            &src,
            &tgt,
            PlanOptions {
                delete: true,
                ..Default::default()
            },
        );
        assert_eq!(
            p.actions,
            vec![Action::Delete {
                path: "a".into(),
                dir: true
            }]
        );
    }
}
