//! `find` (files and folders below a folder, filtered by name, size, age and type) and `du`
//! (sizes per folder, previous versions counted apart). Both read the tree only.

use std::collections::HashMap;
use std::io::Write;

use serde_json::json;

use super::exit::{CliError, USAGE};
use super::path::{unescape_name, RemotePath};
use super::progress::human;
use super::resolve::{remote_arg, resolve};
use super::Ctx;
use crate::local::glob::glob_match;
use crate::local::time::{fmt_time, parse_duration};
use crate::sync::oneway::{remote_listing, Entry, RemoteListing};
use crate::tree::{NodeHandle, NodeTree};

/// `--type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FindType {
    /// Files
    F,
    /// Folders
    D,
}

/// A comparison as find(1) writes it: `+N` more than, `-N` less than, `N` exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmp {
    More(u64),
    Less(u64),
    Exactly(u64),
}

impl Cmp {
    fn parse(arg: &str, what: &str, unit: impl Fn(&str) -> Option<u64>) -> Result<Cmp, CliError> {
        let bad = || {
            CliError::new(
                USAGE,
                format!("--{what} {arg}: expected [+|-]NUMBER[UNIT] (see megacmd find --help)"),
            )
        };
        let (make, rest): (fn(u64) -> Cmp, &str) = match arg.as_bytes().first() {
            Some(b'+') => (Cmp::More, &arg[1..]),
            Some(b'-') => (Cmp::Less, &arg[1..]),
            _ => (Cmp::Exactly, arg),
        };
        unit(rest).map(make).ok_or_else(bad)
    }

    fn holds(self, v: u64) -> bool {
        match self {
            Cmp::More(n) => v > n,
            Cmp::Less(n) => v < n,
            Cmp::Exactly(n) => v == n,
        }
    }
}

/// What `find` keeps.
pub(super) struct Filter {
    name: Option<String>,
    size: Option<Cmp>,
    /// Age in seconds at `now`.
    age: Option<Cmp>,
    kind: Option<FindType>,
    now: i64,
}

impl Filter {
    pub(super) fn new(
        name: Option<&str>,
        size: Option<&str>,
        mtime: Option<&str>,
        kind: Option<FindType>,
        now: i64,
    ) -> Result<Filter, CliError> {
        Ok(Filter {
            name: name.map(str::to_string),
            size: size
                .map(|s| Cmp::parse(s, "size", crate::mount::parse_size))
                .transpose()?,
            age: mtime
                // Days without a unit, as find's `-mtime`.
                .map(|s| Cmp::parse(s, "mtime", |d| parse_duration(d, Some(86_400))))
                .transpose()?,
            kind,
            now,
        })
    }

    fn keeps(&self, name: &str, e: &Entry) -> bool {
        let kind_ok = match self.kind {
            Some(FindType::F) => !e.dir,
            Some(FindType::D) => e.dir,
            None => true,
        };
        // A size only selects files (a folder has none of its own).
        let size_ok = self.size.is_none_or(|c| !e.dir && c.holds(e.size));
        let age = u64::try_from(self.now.saturating_sub(e.mtime)).unwrap_or(0);
        kind_ok
            && size_ok
            && self.age.is_none_or(|c| match c {
                // "-7d": changed within the last 7 days; "+7d": longer ago.
                Cmp::Less(n) => age < n,
                Cmp::More(n) => age > n,
                Cmp::Exactly(n) => age / 86_400 == n / 86_400,
            })
            && self.name.as_deref().is_none_or(|g| glob_match(g, name))
    }
}

/// The path shown for `rel` (an escaped path below `top`).
fn shown(top: &RemotePath, rel: &str) -> RemotePath {
    RemotePath {
        parts: top
            .parts
            .iter()
            .cloned()
            .chain(rel.split('/').map(unescape_name))
            .collect(),
        ..top.clone()
    }
}

pub(super) async fn find(ctx: &Ctx, arg: &str, filter: &Filter) -> Result<(), CliError> {
    let rp = remote_arg(arg)?;
    let client = ctx.client().await?;
    let top = resolve(&client, &rp)?;
    let found: Vec<(RemotePath, Entry, Option<NodeHandle>)> = if top.kind.is_container() {
        let RemoteListing { entries, handles } = remote_listing(&client, &top.handle)?;
        entries
            .into_iter()
            .filter(|e| {
                let name = unescape_name(e.path.rsplit('/').next().unwrap_or(&e.path));
                filter.keeps(&name, e)
            })
            .map(|e| {
                let h = handles.get(&e.path).cloned();
                (shown(&rp, &e.path), e, h)
            })
            .collect()
    } else {
        let e = Entry {
            path: top.name.clone(),
            size: top.size,
            mtime: top.mtime,
            dir: false,
            link: top.is_symlink(),
        };
        if filter.keeps(&top.name, &e) {
            vec![(rp.clone(), e, Some(top.handle.clone()))]
        } else {
            Vec::new()
        }
    };
    if ctx.cli.json {
        let v: Vec<_> = found
            .iter()
            .map(|(p, e, h)| {
                json!({
                    "path": p.display(), "name": p.parts.last().cloned().unwrap_or_default(),
                    "type": if e.dir { "folder" } else { "file" }, "size": e.size,
                    "mtime": e.mtime, "handle": h.as_ref().map(|h| h.0.clone()),
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(v));
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    for (p, e, _) in found {
        let line = if e.dir {
            format!("{}/", p.display())
        } else {
            p.display()
        };
        if ctx.cli.verbose > 0 {
            let _ = write!(out, "{}  {:>12}  ", fmt_time(e.mtime), e.size);
        }
        if writeln!(out, "{line}").is_err() {
            break; // stdout closed (piped into head)
        }
    }
    Ok(())
}

/// What a folder holds, everything below it counted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Usage {
    pub bytes: u64,
    pub files: u64,
    pub folders: u64,
    /// Previous versions of those files: their bytes and how many.
    pub version_bytes: u64,
    pub versions: u64,
}

/// Usage of `top` and of every folder below it, with each folder's path relative to `top`
/// (escaped; "" for `top`) and depth.
pub(super) fn usage_below(tree: &NodeTree, top: &NodeHandle) -> Vec<(String, usize, Usage)> {
    let nodes = tree.subtree_with_versions(top);
    // What each node's children added so far; a folder's final figures once it is reached.
    let mut below: HashMap<&NodeHandle, Usage> = HashMap::new();
    let mut folders: HashMap<&NodeHandle, Usage> = HashMap::new();
    // Parents come before their children: backwards, every node is complete when reached.
    for n in nodes.iter().rev() {
        let mut u = below.remove(&n.handle).unwrap_or_default();
        let is_version = tree.is_version(&n.handle);
        if n.kind.is_container() {
            folders.insert(&n.handle, u);
            u.folders += 1;
        } else if is_version {
            u.version_bytes += n.size;
            u.versions += 1;
        } else {
            u.bytes += n.size;
            u.files += 1;
        }
        if n.handle == *top {
            continue;
        }
        if let Some(p) = &n.parent {
            let t = below.entry(p).or_default();
            t.bytes += u.bytes;
            t.files += u.files;
            t.folders += u.folders;
            t.version_bytes += u.version_bytes;
            t.versions += u.versions;
        }
    }
    // Each folder's path and depth, parents first.
    let mut rel: HashMap<&NodeHandle, (String, usize)> = HashMap::new();
    let mut out = Vec::new();
    for n in nodes.iter().filter(|n| n.kind.is_container()) {
        let (path, depth) = if n.handle == *top {
            (String::new(), 0)
        } else {
            let Some((pp, pd)) = n.parent.as_ref().and_then(|p| rel.get(p)) else {
                continue;
            };
            let name = crate::local::names::escape_name(&n.name);
            (
                if pp.is_empty() {
                    name
                } else {
                    format!("{pp}/{name}")
                },
                pd + 1,
            )
        };
        rel.insert(&n.handle, (path.clone(), depth));
        out.push((
            path,
            depth,
            folders.get(&n.handle).copied().unwrap_or_default(),
        ));
    }
    out
}

pub(super) async fn du(ctx: &Ctx, arg: &str, max_depth: Option<usize>) -> Result<(), CliError> {
    let rp = remote_arg(arg)?;
    let client = ctx.client().await?;
    let top = resolve(&client, &rp)?;
    if !top.kind.is_container() {
        return Err(CliError::new(
            USAGE,
            format!(
                "{}: not a folder (megacmd list shows a file's size)",
                rp.display()
            ),
        ));
    }
    let mut rows = client.checked(|t| usage_below(t, &top.handle))?;
    rows.retain(|(_, depth, _)| max_depth.is_none_or(|m| *depth <= m));
    // As du(1): every folder after what it holds, the one asked for last.
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    let first = 1.min(rows.len());
    rows.rotate_left(first);
    let path_of = |rel: &str| {
        if rel.is_empty() {
            rp.clone()
        } else {
            shown(&rp, rel)
        }
    };
    if ctx.cli.json {
        let v: Vec<_> = rows
            .iter()
            .map(|(rel, _, u)| {
                json!({
                    "path": path_of(rel).display(), "bytes": u.bytes, "files": u.files,
                    "folders": u.folders, "version_bytes": u.version_bytes,
                    "versions": u.versions,
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(v));
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    for (rel, _, u) in rows {
        let versions = if u.versions > 0 {
            format!("+{} in {} versions", human(u.version_bytes), u.versions)
        } else {
            String::new()
        };
        let line = format!(
            "{:>10}  {:>8} files  {:<28}  {}/",
            human(u.bytes),
            u.files,
            versions,
            path_of(&rel).display().trim_end_matches('/')
        );
        if writeln!(out, "{line}").is_err() {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(size: u64, mtime: i64, dir: bool) -> Entry {
        Entry {
            path: String::new(),
            size,
            mtime,
            dir,
            link: false,
        }
    }

    #[test]
    fn filters_read_as_find_reads_them() {
        let now = 1_000_000_000;
        let f = Filter::new(Some("*.jpg"), Some("+1M"), Some("-7d"), None, now).unwrap();
        let day = 86_400;
        assert!(f.keeps("a.jpg", &entry(2 << 20, now - day, false)));
        assert!(!f.keeps("a.png", &entry(2 << 20, now - day, false)), "name");
        assert!(
            !f.keeps("a.jpg", &entry(1 << 20, now - day, false)),
            "not more than 1M"
        );
        assert!(
            !f.keeps("a.jpg", &entry(2 << 20, now - 8 * day, false)),
            "too old"
        );
        assert!(
            !f.keeps("d.jpg", &entry(0, now, true)),
            "a size selects files"
        );
        let f = Filter::new(None, Some("-10k"), Some("+2h"), Some(FindType::F), now).unwrap();
        assert!(f.keeps("x", &entry(100, now - 3 * 3600, false)));
        assert!(!f.keeps("x", &entry(100, now - 3600, false)));
        assert!(!f.keeps("x", &entry(100, now - 3 * 3600, true)), "type");
        assert!(
            !f.keeps("x", &entry(10 << 10, now - 3 * 3600, false)),
            "less than"
        );
        let f = Filter::new(None, Some("5"), None, None, now).unwrap();
        assert!(f.keeps("x", &entry(5, 0, false)) && !f.keeps("x", &entry(6, 0, false)));
        for bad in ["+", "1Q", "-x", ""] {
            assert!(
                Filter::new(None, Some(bad), None, None, now).is_err(),
                "{bad}"
            );
            assert!(
                Filter::new(None, None, Some(bad), None, now).is_err(),
                "{bad}"
            );
        }
    }
}
