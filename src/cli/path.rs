//! Command-line locations: `mega:/path` (Cloud Drive), `mega://Rubbish/path` (Rubbish Bin),
//! `mega://Inbox/path` (the Vault), `mega://Backups/path` (its "My backups"), `mega://Shared/<owner e-mail>/<folder>/path` (folders other users
//! shared with us), public links, and local paths. A trailing `/` means "into this folder".
//! The last component of a remote path may be a glob (`*`, `?`, `[a-z]`, `[!x]`).

use std::path::PathBuf;

/// Which root a remote path starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootKind {
    Drive,
    Rubbish,
    Inbox,
    /// "My backups" in the Vault (read-only: backups change it).
    Backups,
    /// Folders shared with us: the first part is the owner's e-mail, the second the folder.
    Shared,
}

/// A parsed remote location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemotePath {
    pub root: RootKind,
    /// Components below the root (no empty ones).
    pub parts: Vec<String>,
    /// Written with a trailing `/`: "into this folder".
    pub dir: bool,
}

/// Any location a command accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Remote(RemotePath),
    /// A public MEGA link.
    Link(String),
    Local(PathBuf),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PathError {
    #[error("{0}: unknown MEGA root (use mega:/ for the Cloud Drive, mega://Rubbish/ for the Rubbish Bin)")]
    UnknownRoot(String),
}

impl RemotePath {
    /// How the path is shown to users (`mega:/a/b`, `mega://Rubbish/a`).
    pub fn display(&self) -> String {
        let prefix = match self.root {
            RootKind::Drive => "mega:/",
            RootKind::Rubbish => "mega://Rubbish/",
            RootKind::Inbox => "mega://Inbox/",
            RootKind::Backups => "mega://Backups/",
            RootKind::Shared => "mega://Shared/",
        };
        format!("{prefix}{}", self.parts.join("/"))
    }

    pub fn join(&self, name: &str) -> RemotePath {
        let mut parts = self.parts.clone();
        parts.push(name.to_string());
        RemotePath {
            root: self.root,
            parts,
            dir: false,
        }
    }

    /// The path without its last component, and that component.
    pub fn split_last(&self) -> Option<(RemotePath, &str)> {
        let (last, rest) = self.parts.split_last()?;
        Some((
            RemotePath {
                root: self.root,
                parts: rest.to_vec(),
                dir: true,
            },
            last.as_str(),
        ))
    }

    /// The slash-joined components, for resolving in the tree.
    pub fn rel(&self) -> String {
        self.parts.join("/")
    }

    /// True if the last component is a glob pattern.
    pub fn has_glob(&self) -> bool {
        self.parts.last().is_some_and(|p| is_glob(p))
    }
}

fn split_parts(s: &str) -> Vec<String> {
    s.split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .map(str::to_string)
        .collect()
}

/// Parses a command-line argument.
pub fn parse(arg: &str) -> Result<Location, PathError> {
    if arg.starts_with("https://") || arg.starts_with("http://") {
        return Ok(Location::Link(arg.to_string()));
    }
    let Some(rest) = arg.strip_prefix("mega:") else {
        return Ok(Location::Local(PathBuf::from(arg)));
    };
    let dir = rest.ends_with('/') || rest.is_empty();
    if let Some(after) = rest.strip_prefix("//") {
        let (root_name, tail) = after.split_once('/').unwrap_or((after, ""));
        let root = match root_name.to_ascii_lowercase().as_str() {
            "rubbish" | "rubbish bin" | "trash" => RootKind::Rubbish,
            "inbox" | "vault" => RootKind::Inbox,
            "backups" | "my backups" => RootKind::Backups,
            "shared" | "shared with me" | "incoming" => RootKind::Shared,
            "drive" | "cloud drive" | "root" => RootKind::Drive,
            _ => return Err(PathError::UnknownRoot(arg.to_string())),
        };
        return Ok(Location::Remote(RemotePath {
            root,
            parts: split_parts(tail),
            dir: dir || tail.is_empty(),
        }));
    }
    let parts = split_parts(rest);
    Ok(Location::Remote(RemotePath {
        root: RootKind::Drive,
        dir: dir || parts.is_empty(),
        parts,
    }))
}

pub use crate::local::glob::{glob_match, is_glob};
pub use crate::local::names::{escape_name, unescape_name};

#[cfg(test)]
mod tests {
    use super::*;

    fn remote(s: &str) -> RemotePath {
        match parse(s).unwrap() {
            Location::Remote(r) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn parses_roots_and_trailing_slashes() {
        assert_eq!(
            remote("mega:/"),
            RemotePath {
                root: RootKind::Drive,
                parts: vec![],
                dir: true
            }
        );
        assert_eq!(
            remote("mega:"),
            RemotePath {
                root: RootKind::Drive,
                parts: vec![],
                dir: true
            }
        );
        let r = remote("mega:/foo/bar/");
        assert_eq!(
            (r.parts.clone(), r.dir),
            (vec!["foo".to_string(), "bar".into()], true)
        );
        assert!(!remote("mega:/foo/bar").dir);
        let r = remote("mega://Rubbish/x/y");
        assert_eq!(r.root, RootKind::Rubbish);
        assert_eq!(r.display(), "mega://Rubbish/x/y");
        assert_eq!(remote("mega://rubbish bin/").root, RootKind::Rubbish);
        assert_eq!(remote("mega://Inbox").root, RootKind::Inbox);
        assert_eq!(remote("mega://Backups/dev/x").root, RootKind::Backups);
        assert!(matches!(
            parse("mega://Nope/x"),
            Err(PathError::UnknownRoot(_))
        ));
        assert_eq!(parse("/tmp/x").unwrap(), Location::Local("/tmp/x".into()));
        assert!(matches!(
            parse("https://mega.nz/file/x#y").unwrap(),
            Location::Link(_)
        ));
    }

    #[test]
    fn globs_in_the_last_component() {
        assert!(remote("mega:/d/*.txt").has_glob());
        assert!(!remote("mega:/d/x.txt").has_glob());
    }
}
