//! POSIX metadata on nodes (see [`crate::tree::posix`]): folders made with a mode, a node's
//! mode changed in place, symbolic links made and read. A symbolic link is a small file node
//! whose content is its target, so the target is encrypted and MAC-checked like any content,
//! and other clients see a file holding the target path (as `git` and rclone's `--links`
//! store links where there are none).

use std::path::Path;

use serde_json::{json, Map};

use super::{Client, Error, Result, Target};
use crate::api::commands::NewNode;
use crate::crypto::attr::{self, POSIX};
use crate::crypto::{b64, FolderKey, Key128, NodeKey};
use crate::tree::posix::{self, S_IFDIR, S_IFLNK, S_IFREG};
use crate::tree::{Node, NodeHandle};

/// Folders [`Client::mkdirs`] creates in one request at most.
pub const MAX_MKDIRS: usize = 1000;

/// A folder for [`Client::mkdirs`].
#[derive(Debug, Clone)]
pub struct NewFolder {
    pub name: String,
    /// The index of an earlier folder of the same list it goes into (none: the parent).
    pub under: Option<usize>,
    /// Permission bits to store.
    pub mode: Option<u32>,
}

/// A new folder's attributes besides its name: its mode, if given.
fn dir_attrs(mode: Option<u32>) -> Map<String, serde_json::Value> {
    let mut attrs = Map::new();
    if let Some(m) = mode {
        attrs.insert(
            POSIX.into(),
            json!(posix::encode(posix::with_type(S_IFDIR, m))),
        );
    }
    attrs
}

impl Client {
    /// Creates a folder, storing `mode` (its permission bits) if given.
    pub async fn mkdir_mode(
        &self,
        parent: &NodeHandle,
        name: &str,
        mode: Option<u32>,
    ) -> Result<Node> {
        self.mkdir_with(parent, name, dir_attrs(mode)).await
    }

    /// Creates folders with one `p` in `parent`: a tree of them, each folder in `parent` or
    /// in an earlier one of the list ([`NewFolder::under`]). Returns them in the list's
    /// order, each recognised in the reply by its key (fresh for each folder).
    pub async fn mkdirs(&self, parent: &NodeHandle, folders: &[NewFolder]) -> Result<Vec<Node>> {
        self.container(parent)?;
        // The label by which the request's later folders name an earlier one (`p`): eight
        // characters, as the handle a folder's `h` stands in for.
        let label = |i: usize| format!("{i:08}");
        let mut list = Vec::with_capacity(folders.len());
        let mut keys = Vec::with_capacity(folders.len());
        for (i, f) in folders.iter().enumerate() {
            if f.under.is_some_and(|j| j >= i) || i >= MAX_MKDIRS {
                return Err(Error::Invalid {
                    what: format!("{}: a folder goes into an earlier one of the list", f.name),
                    code: None,
                });
            }
            let key = NodeKey::Folder(FolderKey(Key128::random()));
            let mut attrs = dir_attrs(f.mode);
            attrs.insert("n".into(), json!(f.name));
            list.push(NewNode {
                h: label(i),
                t: 1,
                a: b64::encode(&attr::encrypt(&key.attr_key(), &attrs)),
                k: self.wrap_key(&key),
                ov: None,
                p: f.under.map(label),
                ph: None,
                fa: None,
            });
            keys.push(key);
        }
        let created = self.put_many(parent, list, keys.clone()).await?;
        keys.iter()
            .zip(folders)
            .map(|(k, f)| {
                created
                    .iter()
                    .find(|n| n.key.as_ref() == Some(k))
                    .cloned()
                    .ok_or_else(|| {
                        Error::Protocol(format!("the `p` reply lacks the new folder {}", f.name))
                    })
            })
            .collect()
    }

    /// Sets a node's permission bits (its type stays what it is: a folder, a file or a
    /// symbolic link). Nothing is sent when they are already those.
    pub async fn set_mode(&self, h: &NodeHandle, mode: u32) -> Result<()> {
        let n = self.mutable(h)?;
        let kind = if n.kind.is_container() {
            S_IFDIR
        } else if n.is_symlink() {
            S_IFLNK
        } else {
            S_IFREG
        };
        let mode = posix::with_type(kind, mode);
        if n.mode == Some(mode) {
            return Ok(());
        }
        let mut attrs = n.attrs().ok_or_else(|| Error::Undecryptable {
            what: n.name.clone(),
        })?;
        attrs.insert(POSIX.into(), json!(posix::encode(mode)));
        self.put_attrs(&n, attrs).await
    }

    /// Makes a symbolic link at `target` pointing to `to`: a file node holding `to`, marked
    /// as a link, with `mtime`.
    pub async fn symlink(&self, target: Target<'_>, to: &[u8], mtime: i64) -> Result<Node> {
        if to.is_empty() || to.len() as u64 > posix::MAX_TARGET {
            return Err(Error::Invalid {
                what: format!(
                    "{}: a link target has 1 to {} bytes",
                    target.name,
                    posix::MAX_TARGET
                ),
                code: None,
            });
        }
        let target = Target {
            mode: Some(S_IFLNK | 0o777),
            ..target
        };
        let mut data = to;
        self.upload_to(target, &mut data, to.len() as u64, mtime, None)
            .await
    }

    /// A symbolic link's target, downloaded and MAC-checked.
    pub async fn read_link(&self, h: &NodeHandle) -> Result<Vec<u8>> {
        let n = self.node(h)?;
        if !n.is_symlink() {
            return Err(Error::Invalid {
                what: format!("{}: not a symbolic link", self.path_of(h)),
                code: None,
            });
        }
        if n.size == 0 || n.size > posix::MAX_TARGET {
            return Err(Error::Protocol(format!(
                "{}: a link target of {} bytes",
                self.path_of(h),
                n.size
            )));
        }
        let to = self.download_to_vec(h).await?;
        if to.contains(&0) {
            return Err(Error::Protocol(format!(
                "{}: a link target with a NUL byte",
                self.path_of(h)
            )));
        }
        Ok(to)
    }

    /// Makes the symbolic link `h` at the local path `dest` (through a temporary name beside
    /// it, renamed into place, so an existing file there is replaced only by a whole link).
    pub async fn download_link(&self, h: &NodeHandle, dest: &Path) -> Result<()> {
        use std::os::unix::ffi::OsStrExt;
        let mtime = self.node(h)?.mtime;
        let to = self.read_link(h).await?;
        let to = std::ffi::OsStr::from_bytes(&to).to_os_string();
        let (d, at) = (dest.to_path_buf(), dest.to_path_buf());
        tokio::task::spawn_blocking(move || crate::local::files::place_symlink(&to, &at, mtime))
            .await
            .map_err(|e| Error::local(&d, std::io::Error::other(e)))?
            .map_err(|e| Error::local(&d, e))
    }
}
