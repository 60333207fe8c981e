//! Exclusions: MEGA's `.megaignore`, applied as MEGA's apps apply it, to both sides of a pair.
//!
//! * Any folder may hold a `.megaignore` ([`rules`] has the line syntax); its rules apply to
//!   that folder and below, except `N` rules, which act only in that folder.
//! * An item inside an excluded folder is excluded; no rule rescues it.
//! * For an item in folder D: D's rules are read from the last to the first and the first
//!   that fits the item's kind and matches decides; if none does, the parent's inheritable
//!   rules are asked, with path rules matched against the path from that folder; and so on to
//!   the root. Nothing matched: included.
//! * Files are first checked against the nearest size filter (the nearest folder whose
//!   `.megaignore` has one decides alone).
//! * Name and path rules never exclude a `.megaignore`: it is synced if its own folder's file
//!   says `+sync:.megaignore` (default: not synced), or if there is no local one (so that one
//!   in the cloud is downloaded).
//! * A file that cannot be parsed is an error naming the file and the line; the pass stops.
//! * A sync root without a `.megaignore` gets [`DEFAULT_FILE`], as MEGA's apps write it.
//!
//! Always excluded: the debris folder, our own partial files, and the names MEGA never syncs
//! (`desktop.ini`, `.DS_Store`, `.Spotlight-V100`, `Icon\r`).
//!
//! Paths given to [`Exclusions::excluded`] are local (escaped) names joined with `/`; rules
//! match the cloud names they stand for.

mod rules;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub use rules::{Kind, LineError, Rules, DEFAULT_FILE};

use crate::local::names::unescape_name;

/// The debris folder at the sync root.
pub const DEBRIS: &str = ".debris";
/// The exclusion file.
pub const IGNORE_FILE: &str = ".megaignore";
/// A `.megaignore` larger than this is refused (it would be a mistake, or hostile).
const MAX_FILE: u64 = 4 << 20;

/// Our partial downloads (`.NAME.megasync-XXXXXXXX.part`, and megacmd's).
pub use crate::local::files::is_partial;

/// Excluded whatever the rules say: the debris folder, our partial downloads, and the names
/// MEGA's apps never sync.
fn builtin(parent: &str, name: &str, kind: Kind) -> bool {
    (parent.is_empty() && name == DEBRIS)
        || (kind == Kind::File && is_partial(name))
        || matches!(
            name,
            "desktop.ini" | ".DS_Store" | ".Spotlight-V100" | "Icon\r"
        )
}

#[derive(Debug, thiserror::Error)]
pub enum IgnoreError {
    #[error("{}, line {}: {}", file.display(), err.line, err.reason)]
    Syntax { file: PathBuf, err: LineError },
    #[error("{}: {source}", file.display())]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What is known of one folder: whether it is excluded and the rules that apply in it, the
/// nearest folder's first (with that folder's depth, 0 = the root).
#[derive(Clone)]
struct Folder {
    excluded: bool,
    chain: Arc<Vec<(usize, Arc<Rules>)>>,
}

/// The exclusions of one pair, loaded folder by folder as the scans ask.
pub struct Exclusions {
    root: PathBuf,
    folders: Mutex<HashMap<String, Folder>>,
}

impl Exclusions {
    /// Reads the root's `.megaignore`. Without one: `write_default` writes MEGA's default
    /// file (as MEGA's apps do when a sync starts); otherwise its rules are used unwritten.
    pub fn open(root: &Path, write_default: bool) -> Result<Exclusions, IgnoreError> {
        let file = root.join(IGNORE_FILE);
        let rules = match load(&file)? {
            Some(r) => r,
            None => {
                if write_default {
                    write_new(&file, DEFAULT_FILE.as_bytes())
                        .map_err(|source| IgnoreError::Read { file, source })?;
                }
                Rules::parse(DEFAULT_FILE.as_bytes()).map_err(|err| IgnoreError::Syntax {
                    file: root.join(IGNORE_FILE),
                    err,
                })?
            }
        };
        Ok(Exclusions::with_root_rules(root, rules))
    }

    fn with_root_rules(root: &Path, rules: Rules) -> Exclusions {
        let root_folder = Folder {
            excluded: false,
            chain: Arc::new(vec![(0, Arc::new(rules))]),
        };
        Exclusions {
            root: root.to_path_buf(),
            folders: Mutex::new(HashMap::from([(String::new(), root_folder)])),
        }
    }

    /// Is `rel` (local names joined with `/`, from the root) excluded? `size` is a file's
    /// size where known.
    pub fn excluded(&self, rel: &str, kind: Kind, size: Option<u64>) -> Result<bool, IgnoreError> {
        let (parent, name) = match rel.rsplit_once('/') {
            Some((p, n)) => (p, n),
            None => ("", rel),
        };
        if builtin(parent, name, kind) {
            return Ok(true);
        }
        let folder = self.folder(parent)?;
        if folder.excluded {
            return Ok(true);
        }
        Ok(!included_in(&folder, parent, name, kind, size))
    }

    /// The state of folder `rel`, computed from its parent's (memoised).
    fn folder(&self, rel: &str) -> Result<Folder, IgnoreError> {
        if let Some(f) = self.lock().get(rel) {
            return Ok(f.clone());
        }
        let (parent, name) = rel.rsplit_once('/').unwrap_or(("", rel));
        let up = self.folder(parent)?;
        let excluded = up.excluded
            || builtin(parent, name, Kind::Folder)
            || !included_in(&up, parent, name, Kind::Folder, None);
        let chain = if excluded {
            up.chain.clone()
        } else {
            match load(&self.root.join(rel).join(IGNORE_FILE))? {
                Some(rules) => {
                    let depth = rel.split('/').count();
                    let mut chain = Vec::with_capacity(up.chain.len() + 1);
                    chain.push((depth, Arc::new(rules)));
                    chain.extend(up.chain.iter().cloned());
                    Arc::new(chain)
                }
                None => up.chain.clone(),
            }
        };
        let f = Folder { excluded, chain };
        self.lock().insert(rel.to_string(), f.clone());
        Ok(f)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Folder>> {
        self.folders.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Is `name` (of `kind`) in the included folder `parent` included by the rules in force there?
fn included_in(folder: &Folder, parent: &str, name: &str, kind: Kind, size: Option<u64>) -> bool {
    let depth = if parent.is_empty() {
        0
    } else {
        parent.split('/').count()
    };
    if name == IGNORE_FILE && kind == Kind::File {
        // Decided by the folder's own file, if it has one; without one it may be downloaded.
        return match folder.chain.first() {
            Some((d, rules)) if *d == depth => rules.sync_self,
            _ => true,
        };
    }
    if let (Kind::File, Some(size)) = (kind, size) {
        if let Some(false) = folder.chain.iter().find_map(|(_, r)| r.size_decides(size)) {
            return false;
        }
    }
    let cloud: Vec<String> = parent
        .split('/')
        .filter(|c| !c.is_empty())
        .chain(std::iter::once(name))
        .map(unescape_name)
        .collect();
    let cloud_name = &cloud[depth];
    for (d, rules) in folder.chain.iter() {
        let path = cloud[*d..].join("/");
        let here = *d == depth;
        let decided = rules
            .rules
            .iter()
            .rev()
            .filter(|r| here || r.inheritable())
            .find_map(|r| r.decide(kind, cloud_name, &path));
        if let Some(include) = decided {
            return include;
        }
    }
    true
}

/// Reads and parses one `.megaignore`; `None` if there is none.
fn load(file: &Path) -> Result<Option<Rules>, IgnoreError> {
    let read_err = |source| IgnoreError::Read {
        file: file.to_path_buf(),
        source,
    };
    let meta = match std::fs::symlink_metadata(file) {
        Ok(m) => m,
        // No such folder here (remote only), or a file where the remote side has a folder.
        Err(e)
            if e.kind() == std::io::ErrorKind::NotFound
                || e.raw_os_error() == Some(libc::ENOTDIR) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(read_err(e)),
    };
    if !meta.is_file() {
        return Err(read_err(std::io::Error::other(
            "not a regular file; move it away so that the exclusions can be read",
        )));
    }
    if meta.len() > MAX_FILE {
        return Err(read_err(std::io::Error::other(format!(
            "{} bytes, more than the {} a .megaignore may have",
            meta.len(),
            MAX_FILE
        ))));
    }
    let bytes = std::fs::read(file).map_err(read_err)?;
    Rules::parse(&bytes)
        .map(Some)
        .map_err(|err| IgnoreError::Syntax {
            file: file.to_path_buf(),
            err,
        })
}

/// Writes a new file (never over an existing one), readable as other files of the folder.
fn write_new(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(test)]
mod tests;
