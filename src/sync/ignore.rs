//! Exclusions: a `.megaignore` file at the root of the local folder, one glob per line.
//!
//! * `#` starts a comment line; blank lines are skipped; MEGA's `-:` prefix is accepted.
//! * A pattern without `/` matches a file or folder name at any depth (`*.tmp`, `node_modules`).
//! * A pattern with `/` matches the path from the sync root, component by component
//!   (`build/*.o`); a leading `/` is dropped.
//! * A trailing `/` matches folders only.
//! * Anything below an excluded folder is excluded.
//!
//! Always excluded: the debris folder and our own partial files.

use std::path::Path;

use crate::local::glob::glob_match;

/// The debris folder at the sync root.
pub const DEBRIS: &str = ".debris";
/// The exclusion file at the sync root.
pub const IGNORE_FILE: &str = ".megaignore";

#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    parts: Vec<String>,
    anchored: bool,
    dir_only: bool,
}

/// The exclusion rules of a sync pair.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ignore {
    patterns: Vec<Pattern>,
}

impl Ignore {
    /// Reads `.megaignore` under `root` (no file: nothing excluded but the built-ins).
    pub fn load(root: &Path) -> std::io::Result<Ignore> {
        match std::fs::read_to_string(root.join(IGNORE_FILE)) {
            Ok(text) => Ok(Ignore::parse(&text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Ignore::default()),
            Err(e) => Err(e),
        }
    }

    pub fn parse(text: &str) -> Ignore {
        let patterns = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| l.strip_prefix("-:").unwrap_or(l))
            .filter_map(|l| {
                let dir_only = l.ends_with('/');
                let l = l.trim_end_matches('/');
                let anchored = l.contains('/');
                let l = l.trim_start_matches('/');
                (!l.is_empty()).then(|| Pattern {
                    parts: l.split('/').map(str::to_string).collect(),
                    anchored,
                    dir_only,
                })
            })
            .collect();
        Ignore { patterns }
    }

    /// Is `rel` (a `/` path from the sync root) excluded?
    pub fn is_ignored(&self, rel: &str, dir: bool) -> bool {
        let comps: Vec<&str> = rel.split('/').collect();
        if comps.first() == Some(&DEBRIS) || comps.last().is_some_and(|n| is_partial(n)) {
            return true;
        }
        // Each prefix of the path is a folder, except the whole path when it is a file.
        (1..=comps.len()).any(|n| {
            let is_dir = n < comps.len() || dir;
            self.patterns
                .iter()
                .any(|p| (is_dir || !p.dir_only) && p.matches(&comps[..n]))
        })
    }
}

impl Pattern {
    fn matches(&self, comps: &[&str]) -> bool {
        if self.anchored {
            comps.len() == self.parts.len()
                && self.parts.iter().zip(comps).all(|(p, c)| glob_match(p, c))
        } else {
            comps
                .last()
                .is_some_and(|name| glob_match(&self.parts[0], name))
        }
    }
}

/// Our partial downloads (`.NAME.megasync-XXXXXXXX.part`, and megacmd's).
pub use crate::local::files::is_partial;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_paths_folders_and_builtins() {
        let ig = Ignore::parse("# comment\n\n*.tmp\n-:node_modules\nbuild/*.o\n/top.txt\ncache/\n");
        assert!(ig.is_ignored("a.tmp", false));
        assert!(ig.is_ignored("x/y/a.tmp", false));
        assert!(!ig.is_ignored("a.tmpx", false));
        assert!(ig.is_ignored("node_modules", true));
        assert!(ig.is_ignored("src/node_modules/lib/x.js", false));
        assert!(ig.is_ignored("build/main.o", false));
        assert!(!ig.is_ignored("src/build/main.o", false));
        assert!(ig.is_ignored("top.txt", false));
        assert!(!ig.is_ignored("sub/top.txt", false));
        assert!(ig.is_ignored("cache", true));
        assert!(ig.is_ignored("cache/x", false));
        assert!(
            !ig.is_ignored("cache", false),
            "a file named cache is not a folder"
        );
        assert!(ig.is_ignored(".debris/2026-01-01/a", false));
        assert!(ig.is_ignored("d/.a.megasync-0011aabb.part", false));
        assert!(!Ignore::default().is_ignored(".megaignore", false));
    }
}
