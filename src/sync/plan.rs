//! The two-way planner: a pure function `(local, remote, shadow) -> actions`.
//!
//! The shadow is the state both sides last agreed on, per path. Against it, each side's entry
//! is unchanged, changed, new or missing, and the pair decides the action:
//!
//! | local | remote | shadow | action |
//! |---|---|---|---|
//! | unchanged | unchanged | known | nothing |
//! | new/changed | unchanged or missing | any | upload |
//! | unchanged or missing | new/changed | any | download |
//! | missing | unchanged | known | delete remote (to the Rubbish Bin) |
//! | unchanged | missing | known | delete local (into the debris folder) |
//! | missing | missing | known | forget |
//! | changed | changed | known | same content → record; else conflict |
//! | present | present | unknown | same content (size + fingerprint) → record; else conflict |
//!
//! "Same content" needs the local file's fingerprint checksum; [`needs_fingerprint`] names the
//! files for which the caller must compute it before planning. A conflict keeps both: the local
//! file is renamed `name (conflict YYYY-MM-DD HHMMSS).ext` and the remote one downloaded.
//!
//! Moves are found before the table runs: a remote node handle seen at a new path is a remote
//! move, a local inode (with the same size and mtime, for files) at a new path is a local move.
//! Both become one move on the other side, and a folder move carries its whole subtree.
//! Local files that are still being written (not settled) are left for a later pass.

use std::collections::{BTreeMap, BTreeSet};

/// A local file or folder, by its `/`-separated path relative to the sync root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Local {
    pub path: String,
    pub dir: bool,
    pub size: u64,
    /// Unix seconds.
    pub mtime: i64,
    pub inode: u64,
    /// Not modified for a while: safe to upload.
    pub settled: bool,
    /// The fingerprint checksum (hex), when the caller computed it.
    pub crc: Option<String>,
}

/// A remote node under the synced folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    pub path: String,
    pub dir: bool,
    pub size: u64,
    pub mtime: i64,
    pub handle: String,
    /// The fingerprint checksum (hex) from the node's `c` attribute.
    pub crc: Option<String>,
}

/// What both sides last agreed on for a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shadow {
    pub path: String,
    pub dir: bool,
    pub size: u64,
    /// The local file's mtime.
    pub mtime: i64,
    /// The remote node's mtime (the same content may carry different mtimes on each side).
    pub rmtime: i64,
    pub handle: String,
    pub inode: u64,
    pub crc: Option<String>,
}

/// One step. Executed in the order given: moves, folder creations (parents first), transfers
/// and conflicts, deletions (a folder once, for everything under it), bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// A remote move or rename, repeated locally.
    MoveLocal {
        from: String,
        to: String,
    },
    /// A local move or rename, repeated on MEGA (node `handle`).
    MoveRemote {
        from: String,
        to: String,
        handle: String,
    },
    MkdirLocal {
        path: String,
    },
    MkdirRemote {
        path: String,
    },
    /// The local file is new or changed: upload it (`replace`: the remote version it
    /// supersedes, which goes to the Rubbish Bin).
    Upload {
        path: String,
        replace: Option<String>,
    },
    /// The remote file is new or changed: download it (an existing local file goes to debris).
    Download {
        path: String,
        handle: String,
    },
    /// Both changed differently: rename the local file to a conflict name, upload it under
    /// that name, download the remote one.
    Conflict {
        path: String,
        handle: String,
    },
    /// Gone locally: remote entry to the Rubbish Bin.
    DeleteRemote {
        path: String,
        handle: String,
        dir: bool,
    },
    /// Gone remotely: local entry into the debris folder.
    DeleteLocal {
        path: String,
        dir: bool,
    },
    /// Both sides have the same thing: remember it.
    Record {
        path: String,
    },
    /// Gone on both sides: forget it.
    Forget {
        path: String,
    },
    /// A local file still being written: left for a later pass.
    Defer {
        path: String,
    },
}

impl Action {
    pub fn path(&self) -> &str {
        match self {
            Action::MoveLocal { to, .. } | Action::MoveRemote { to, .. } => to,
            Action::MkdirLocal { path }
            | Action::MkdirRemote { path }
            | Action::Upload { path, .. }
            | Action::Download { path, .. }
            | Action::Conflict { path, .. }
            | Action::DeleteRemote { path, .. }
            | Action::DeleteLocal { path, .. }
            | Action::Record { path }
            | Action::Forget { path }
            | Action::Defer { path } => path,
        }
    }

    /// Does this action delete something (for the `--max-delete` guard)?
    pub fn is_delete(&self) -> bool {
        matches!(
            self,
            Action::DeleteRemote { .. } | Action::DeleteLocal { .. }
        )
    }

    /// Does it change either side (as opposed to bookkeeping or waiting)?
    pub fn changes_something(&self) -> bool {
        !matches!(
            self,
            Action::Record { .. } | Action::Forget { .. } | Action::Defer { .. }
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Unchanged,
    Changed,
    New,
    Missing,
}

fn local_state(l: Option<&Local>, s: Option<&Shadow>) -> State {
    match (l, s) {
        (None, _) => State::Missing,
        (Some(_), None) => State::New,
        (Some(l), Some(s)) if l.dir != s.dir => State::Changed,
        (Some(l), Some(_)) if l.dir => State::Unchanged,
        (Some(l), Some(s)) if l.size == s.size && l.mtime == s.mtime => State::Unchanged,
        _ => State::Changed,
    }
}

fn remote_state(r: Option<&Remote>, s: Option<&Shadow>) -> State {
    match (r, s) {
        (None, _) => State::Missing,
        (Some(_), None) => State::New,
        (Some(r), Some(s)) if r.dir != s.dir => State::Changed,
        (Some(r), Some(_)) if r.dir => State::Unchanged,
        (Some(r), Some(s)) if r.handle == s.handle && r.size == s.size && r.mtime == s.rmtime => {
            State::Unchanged
        }
        _ => State::Changed,
    }
}

/// Same content: same kind, and for files the same size and fingerprint checksum.
fn same_content(l: &Local, r: &Remote) -> bool {
    l.dir == r.dir && (l.dir || (l.size == r.size && l.crc.is_some() && l.crc == r.crc))
}

/// Local files whose fingerprint the planner needs (present on both sides, same size, and
/// either unknown to the shadow or changed on both sides).
pub fn needs_fingerprint(local: &[Local], remote: &[Remote], shadow: &[Shadow]) -> Vec<String> {
    let r: BTreeMap<&str, &Remote> = remote.iter().map(|e| (e.path.as_str(), e)).collect();
    let s: BTreeMap<&str, &Shadow> = shadow.iter().map(|e| (e.path.as_str(), e)).collect();
    local
        .iter()
        .filter(|l| !l.dir && l.crc.is_none())
        .filter(|l| {
            let (re, se) = (
                r.get(l.path.as_str()).copied(),
                s.get(l.path.as_str()).copied(),
            );
            let Some(re) = re.filter(|re| !re.dir && re.size == l.size) else {
                return false;
            };
            match se {
                None => true,
                Some(_) => {
                    local_state(Some(l), se) != State::Unchanged
                        && remote_state(Some(re), se) != State::Unchanged
                }
            }
        })
        .map(|l| l.path.clone())
        .collect()
}

fn is_below(path: &str, dir: &str) -> bool {
    path.len() > dir.len() && path.starts_with(dir) && path.as_bytes()[dir.len()] == b'/'
}

fn parent_of(path: &str) -> Option<&str> {
    path.rfind('/').map(|i| &path[..i])
}

/// Moves `from` (and, for a folder, everything below it) to `to` in a path-keyed map.
fn rekey<T: Clone>(map: &mut BTreeMap<String, T>, from: &str, to: &str, set: fn(&mut T, String)) {
    let keys: Vec<String> = map
        .keys()
        .filter(|k| k.as_str() == from || is_below(k, from))
        .cloned()
        .collect();
    let moved: Vec<(String, T)> = keys
        .into_iter()
        .filter_map(|k| map.remove(&k).map(|v| (k, v)))
        .collect();
    for (k, mut v) in moved {
        let nk = format!("{to}{}", &k[from.len()..]);
        set(&mut v, nk.clone());
        map.insert(nk, v);
    }
}

/// The plan: actions in execution order.
pub fn plan(local: &[Local], remote: &[Remote], shadow: &[Shadow]) -> Vec<Action> {
    let mut l: BTreeMap<String, Local> =
        local.iter().map(|e| (e.path.clone(), e.clone())).collect();
    let mut r: BTreeMap<String, Remote> =
        remote.iter().map(|e| (e.path.clone(), e.clone())).collect();
    let mut s: BTreeMap<String, Shadow> =
        shadow.iter().map(|e| (e.path.clone(), e.clone())).collect();
    let mut moves = Vec::new();

    // Remote moves: a known handle at another path, the old path still there locally and the
    // new one free. Shallowest first, so a folder move carries its subtree.
    let by_handle: BTreeMap<String, String> = r
        .values()
        .map(|e| (e.handle.clone(), e.path.clone()))
        .collect();
    let known: Vec<Shadow> = s.values().cloned().collect();
    for sh in &known {
        let Some(cur) = s.get(&sh.path) else { continue }; // moved with a parent already
        if cur.handle != sh.handle {
            continue;
        }
        let Some(to) = by_handle.get(&sh.handle) else {
            continue;
        };
        if *to == sh.path || s.contains_key(to) || l.contains_key(to) {
            continue;
        }
        if l.get(&sh.path).is_none_or(|e| e.dir != sh.dir) {
            continue;
        }
        if parent_of(to).is_some_and(|p| !l.contains_key(p) && !r.contains_key(p)) {
            continue;
        }
        moves.push(Action::MoveLocal {
            from: sh.path.clone(),
            to: to.clone(),
        });
        rekey(&mut s, &sh.path, to, |e, p| e.path = p);
        rekey(&mut l, &sh.path, to, |e, p| e.path = p);
    }

    // Local moves: a known inode at a new path (files: same size and mtime), gone from the
    // old path, which the remote still has unchanged.
    let by_inode: BTreeMap<u64, String> = l
        .values()
        .filter(|e| !s.contains_key(&e.path))
        .map(|e| (e.inode, e.path.clone()))
        .collect();
    let known: Vec<Shadow> = s.values().cloned().collect();
    for sh in &known {
        if sh.inode == 0 || l.contains_key(&sh.path) {
            continue;
        }
        let Some(cur) = s.get(&sh.path) else { continue };
        if cur.inode != sh.inode {
            continue;
        }
        let Some(to) = by_inode.get(&sh.inode) else {
            continue;
        };
        let Some(le) = l.get(to) else { continue };
        if le.dir != sh.dir || (!sh.dir && (le.size != sh.size || le.mtime != sh.mtime)) {
            continue;
        }
        if s.contains_key(to) || r.contains_key(to) {
            continue;
        }
        if remote_state(r.get(&sh.path), Some(sh)) != State::Unchanged {
            continue;
        }
        moves.push(Action::MoveRemote {
            from: sh.path.clone(),
            to: to.clone(),
            handle: sh.handle.clone(),
        });
        rekey(&mut s, &sh.path, to, |e, p| e.path = p);
        rekey(&mut r, &sh.path, to, |e, p| e.path = p);
    }

    // The table, path by path (BTreeMap order: a folder before its contents).
    let paths: BTreeSet<String> = l.keys().chain(r.keys()).chain(s.keys()).cloned().collect();
    let mut per_path: BTreeMap<String, Action> = BTreeMap::new();
    for p in &paths {
        let (le, re, se) = (l.get(p), r.get(p), s.get(p));
        let (ls, rs) = (local_state(le, se), remote_state(re, se));
        let unsettled = le.is_some_and(|e| !e.dir && !e.settled);
        use State::*;
        let action = match (ls, rs) {
            (Unchanged, Unchanged) => continue,
            (Missing, Missing) => Action::Forget { path: p.clone() },
            (Changed | New, Unchanged | Missing) => match le {
                Some(e) if e.dir => Action::MkdirRemote { path: p.clone() },
                _ if unsettled => Action::Defer { path: p.clone() },
                _ => Action::Upload {
                    path: p.clone(),
                    replace: re.filter(|r| !r.dir).map(|r| r.handle.clone()),
                },
            },
            (Unchanged | Missing, Changed | New) => match re {
                Some(e) if e.dir => Action::MkdirLocal { path: p.clone() },
                Some(e) => Action::Download {
                    path: p.clone(),
                    handle: e.handle.clone(),
                },
                None => continue,
            },
            (Missing, Unchanged) => match (re, se) {
                (Some(e), Some(sh)) => Action::DeleteRemote {
                    path: p.clone(),
                    handle: e.handle.clone(),
                    dir: sh.dir,
                },
                _ => continue,
            },
            (Unchanged, Missing) => Action::DeleteLocal {
                path: p.clone(),
                dir: le.is_some_and(|e| e.dir),
            },
            (Changed | New, Changed | New) => {
                let (Some(le), Some(re)) = (le, re) else {
                    continue;
                };
                if same_content(le, re) {
                    Action::Record { path: p.clone() }
                } else if unsettled {
                    Action::Defer { path: p.clone() }
                } else {
                    Action::Conflict {
                        path: p.clone(),
                        handle: re.handle.clone(),
                    }
                }
            }
        };
        per_path.insert(p.clone(), action);
    }

    // A folder deleted on one side is deleted on the other only if nothing below it needs
    // it; otherwise it is re-created where it went missing.
    let needs_local = |p: &str, acts: &BTreeMap<String, Action>| {
        acts.iter().any(|(k, a)| {
            is_below(k, p)
                && matches!(
                    a,
                    Action::Download { .. } | Action::MkdirLocal { .. } | Action::Conflict { .. }
                )
        })
    };
    let needs_remote = |p: &str, acts: &BTreeMap<String, Action>| {
        acts.iter().any(|(k, a)| {
            is_below(k, p)
                && matches!(
                    a,
                    Action::Upload { .. }
                        | Action::MkdirRemote { .. }
                        | Action::Conflict { .. }
                        | Action::Defer { .. }
                )
        })
    };
    let dirs: Vec<(String, Action)> = per_path
        .iter()
        .filter(|(_, a)| {
            matches!(
                a,
                Action::DeleteRemote { dir: true, .. } | Action::DeleteLocal { dir: true, .. }
            )
        })
        .map(|(k, a)| (k.clone(), a.clone()))
        .collect();
    for (p, a) in dirs {
        let fix = match a {
            Action::DeleteRemote { .. } if needs_local(&p, &per_path) => {
                Some(Action::MkdirLocal { path: p.clone() })
            }
            Action::DeleteLocal { .. } if needs_remote(&p, &per_path) => {
                Some(Action::MkdirRemote { path: p.clone() })
            }
            _ => None,
        };
        if let Some(f) = fix {
            per_path.insert(p, f);
        }
    }
    // Deleting a folder takes its contents along: one action for the folder.
    let deleted_dirs: Vec<String> = per_path
        .iter()
        .filter(|(_, a)| {
            matches!(
                a,
                Action::DeleteRemote { dir: true, .. } | Action::DeleteLocal { dir: true, .. }
            )
        })
        .map(|(k, _)| k.clone())
        .collect();
    per_path.retain(|k, a| !(a.is_delete() && deleted_dirs.iter().any(|d| is_below(k, d))));
    // Entries under a deleted folder that are already gone elsewhere are forgotten with it.

    let mut out = moves;
    let rank = |a: &Action| match a {
        Action::MkdirLocal { .. } | Action::MkdirRemote { .. } => 0,
        Action::Upload { .. } | Action::Download { .. } | Action::Conflict { .. } => 1,
        Action::DeleteLocal { .. } | Action::DeleteRemote { .. } => 2,
        _ => 3,
    };
    let mut rest: Vec<Action> = per_path.into_values().collect();
    // Stable: within a rank, path order (parents before children).
    rest.sort_by_key(rank);
    out.extend(rest);
    out
}

#[cfg(test)]
mod tests;
