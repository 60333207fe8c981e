//! The one-way sync planner: a pure function from the source listing and the target listing
//! to the actions that make the target look like the source. Files count as the same when
//! their sizes match and their mtimes match to the second (or with `--ignore-same-size`, when
//! their sizes match). Extra target entries are deleted only when asked.

use std::collections::{BTreeMap, BTreeSet};

/// One file or folder of a listing, by its `/`-separated path relative to the sync root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub path: String,
    pub size: u64,
    /// Unix seconds.
    pub mtime: i64,
    pub dir: bool,
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn f(path: &str, size: u64, mtime: i64) -> Entry {
        Entry {
            path: path.into(),
            size,
            mtime,
            dir: false,
        }
    }
    fn d(path: &str) -> Entry {
        Entry {
            path: path.into(),
            size: 0,
            mtime: 0,
            dir: true,
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
