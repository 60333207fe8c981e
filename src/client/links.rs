//! Public links both ways: exporting a file link, or a folder link (the folder is shared with
//! MEGA's `EXP` pseudo-user under a new share key, and every node below it gets its key
//! wrapped with that key), and reading links without logging in ([`public_file`],
//! [`PublicFolder`]). Every download is MAC-verified.

use tokio::io::AsyncWrite;

use super::shares::new_share_key;
use super::{task_failed, Client, Error, Result};
use crate::api::commands::{
    DeleteLink, FetchNodes, GetDownloadUrl, GetLink, GetWritableLink, Share, ShareTo,
};
use crate::api::ApiClient;
use crate::crypto::{attr, b64, Key128};
use crate::link::{self, LinkError, PublicLink};
use crate::transfer::download;
use crate::transfer::{checked_url, Progress, Source, TransferConfig};
use crate::tree::{Node, NodeHandle, NodeKind, NodeTree, MAX_NODE_SIZE};

/// A size from a `g` reply, checked like every size the server states.
fn checked_size(s: Option<u64>, fallback: u64) -> Result<u64> {
    match s {
        Some(s) if s > MAX_NODE_SIZE => Err(Error::Protocol(format!(
            "the server claims a size of {s} bytes"
        ))),
        Some(s) => Ok(s),
        None => Ok(fallback),
    }
}

impl Client {
    /// Exports a public link: a file link, or for a folder a folder link.
    pub async fn export(&self, h: &NodeHandle) -> Result<String> {
        self.export_until(h, None).await
    }

    /// [`export`](Self::export), the link expiring at `expires` (Unix time) if given.
    pub async fn export_until(&self, h: &NodeHandle, expires: Option<i64>) -> Result<String> {
        let n = self.node(h)?;
        match (&n.kind, n.file_key()) {
            (NodeKind::File, Some(k)) => {
                let key = k.clone();
                let ph = self.link_handle(h, expires).await?;
                Ok(link::file_link(&ph, &key))
            }
            (NodeKind::File, None) => Err(Error::Undecryptable { what: n.name }),
            (NodeKind::Folder, _) => {
                let share_key = self.export_folder(h).await?;
                let ph = self.link_handle(h, expires).await?;
                Ok(link::folder_link(&ph, &share_key))
            }
            _ => Err(Error::PermissionDenied {
                what: n.name,
                code: None,
            }),
        }
    }

    /// A writable folder link (`l` with `w: "1"`, the folder shared with `EXP` at full
    /// access): anyone with the link and its write key may add files and folders to it. In
    /// MEGAcmd's form, `LINK:WRITE-KEY`.
    pub async fn export_writable(&self, h: &NodeHandle, expires: Option<i64>) -> Result<String> {
        let n = self.node(h)?;
        if n.kind != NodeKind::Folder {
            // Only folders have writable links.
            return Err(Error::NotAFolder {
                what: self.path_of(h),
            });
        }
        let share_key = self.export_folder_at(h, 2).await?;
        let r = self
            .api
            .run(&GetWritableLink {
                n: &h.0,
                w: "1",
                i: self.api.echo_id(),
                ets: expires,
            })
            .await?;
        Ok(format!("{}:{}", link::folder_link(&r.ph, &share_key), r.w))
    }

    /// Removes a node's public link; a folder also stops being exported (its `EXP` share
    /// ends), as MEGA's apps do. Nothing to remove is not an error.
    pub async fn unexport(&self, h: &NodeHandle) -> Result<()> {
        let n = self.node(h)?;
        let _m = self.mutation()?;
        self.api
            .run(&DeleteLink {
                n: &h.0,
                d: 1,
                i: self.api.echo_id(),
            })
            .await?;
        if n.kind == NodeKind::Folder {
            self.end_share(h, "EXP").await?;
        }
        Ok(())
    }

    async fn link_handle(&self, h: &NodeHandle, ets: Option<i64>) -> Result<String> {
        Ok(self
            .api
            .run(&GetLink {
                n: &h.0,
                i: self.api.echo_id(),
                ets,
            })
            .await?)
    }

    /// Shares a folder with `EXP` (idempotent: an existing share key is reused, and the
    /// `EXP` share made again in case its link was removed).
    async fn export_folder(&self, h: &NodeHandle) -> Result<Key128> {
        self.export_folder_at(h, 0).await
    }

    /// [`export_folder`](Self::export_folder) at an access level for link users (0 read-only,
    /// 2 full: a writable link).
    async fn export_folder_at(&self, h: &NodeHandle, access: u8) -> Result<Key128> {
        let known = self.read_tree().keys().share_keys.get(&h.0).cloned();
        let share_key = known.clone().unwrap_or_else(new_share_key);
        let cr = self.keys_under(h, &share_key);
        // A key-manager account keeps the key in `^!keys`, stored before it is used.
        if known.is_none() && self.has_key_manager() {
            self.store_own_share_key(&h.0, &share_key).await?;
        }
        let (ok, ha) = self.owner_key(h, &share_key);
        let _m = self.mutation()?;
        self.api
            .run(&Share {
                n: &h.0,
                s: vec![ShareTo {
                    u: "EXP",
                    r: Some(access),
                    k: None,
                }],
                ok: Some(&ok),
                ha: Some(&ha),
                cr: Some(cr),
                i: self.api.echo_id(),
            })
            .await?;
        self.write_tree()
            .keys_mut()
            .share_keys
            .insert(h.0.clone(), share_key.clone());
        Ok(share_key)
    }
}

/// A link past its expiry (`EEXPIRED`) is gone for whoever opens it.
fn expired_link(e: crate::api::ApiError) -> Error {
    match e {
        crate::api::ApiError::Mega(crate::api::ErrorCode::Expired) => Error::NotFound {
            what: "the link has expired".into(),
        },
        e => e.into(),
    }
}

/// A public file's metadata.
#[derive(Debug, Clone)]
pub struct PublicFile {
    pub name: String,
    pub size: u64,
    pub source: Source,
    /// All its attributes, decrypted (what an import encrypts again).
    pub attrs: serde_json::Map<String, serde_json::Value>,
}

/// Looks up a public file link (no login needed); `https` asks for (and insists on) an
/// `https://` download URL.
pub async fn public_file(api: &ApiClient, url: &str, https: bool) -> Result<PublicFile> {
    let (handle, key) = match link::parse(url)? {
        PublicLink::File {
            handle,
            key: Some(key),
        } => (handle, key),
        PublicLink::File { key: None, .. } => return Err(LinkError::NoKey.into()),
        PublicLink::Folder { .. } => {
            return Err(Error::NotAFile {
                what: "a folder link (use --recursive)".into(),
            })
        }
    };
    let r = api
        .run(&GetDownloadUrl::public(&handle, https))
        .await
        .map_err(expired_link)?;
    let size = checked_size(r.s, 0)?;
    let at =
        r.at.as_deref()
            .ok_or_else(|| Error::Protocol("`g` reply lacks `at`".into()))?;
    let at = b64::decode(at, "attributes").map_err(crate::api::ApiError::from)?;
    let attrs = attr::decrypt(&key.aes, &at).map_err(|_| Error::Undecryptable {
        what: "the linked file (wrong key?)".into(),
    })?;
    let name = attrs
        .get("n")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("")
        .to_string();
    Ok(PublicFile {
        name,
        attrs,
        size,
        source: Source {
            url: Some(checked_url(r.url()?, https)?),
            size,
            key,
            refresh: None,
        },
    })
}

/// Downloads a public file link into `out` (MAC-verified); returns its metadata.
pub async fn download_public<W: AsyncWrite + Unpin>(
    api: &ApiClient,
    url: &str,
    out: &mut W,
    cfg: &TransferConfig,
    progress: Option<Progress>,
) -> Result<PublicFile> {
    let f = public_file(api, url, cfg.https).await?;
    download::download(api.http(), &f.source, out, cfg, progress)
        .await
        .map_err(|e| Error::from(e).about(f.name.clone()))?;
    Ok(f)
}

/// A public folder link opened without logging in.
pub struct PublicFolder {
    handle: String,
    tree: NodeTree,
    root: NodeHandle,
}

impl std::fmt::Debug for PublicFolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublicFolder")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

impl PublicFolder {
    /// Fetches the folder behind a folder link (`f` with `&n=<handle>`).
    pub async fn open(api: &ApiClient, url: &str) -> Result<Self> {
        let (handle, key) = match link::parse(url)? {
            PublicLink::Folder {
                handle,
                key: Some(key),
                ..
            } => (handle, key),
            PublicLink::Folder { key: None, .. } => return Err(LinkError::NoKey.into()),
            PublicLink::File { .. } => {
                return Err(Error::NotAFolder {
                    what: "a file link".into(),
                })
            }
        };
        let cmd = FetchNodes {
            c: 1,
            ca: Some(1),
            r: Some(1),
        };
        let r = api
            .run_with(&cmd, &[("n", &handle)])
            .await
            .map_err(expired_link)?;
        let (tree, root) = tokio::task::spawn_blocking(move || NodeTree::from_folder_link(&r, key))
            .await
            .map_err(task_failed)??;
        if tree.get(&root).is_some_and(|n| n.undecryptable.is_some()) {
            return Err(Error::Undecryptable {
                what: "the linked folder (wrong key?)".into(),
            });
        }
        Ok(PublicFolder { handle, tree, root })
    }

    /// The exported folder itself.
    pub fn root(&self) -> &Node {
        self.tree
            .get(&self.root)
            .expect("invariant: the root was found when opening")
    }

    pub fn tree(&self) -> &NodeTree {
        &self.tree
    }

    /// Resolves a path below the exported folder.
    pub fn resolve(&self, path: &str) -> Result<&Node> {
        Ok(self.tree.resolve_from(&self.root, path)?)
    }

    pub fn children(&self, h: &NodeHandle) -> Vec<&Node> {
        self.tree.children(h)
    }

    /// Downloads a file of the folder into `out` (MAC-verified).
    pub async fn download<W: AsyncWrite + Unpin>(
        &self,
        api: &ApiClient,
        h: &NodeHandle,
        out: &mut W,
        cfg: &TransferConfig,
        progress: Option<Progress>,
    ) -> Result<()> {
        let node = self.tree.get(h).ok_or_else(|| Error::NotFound {
            what: format!("node {h}"),
        })?;
        let key = match (&node.kind, node.file_key()) {
            (NodeKind::File, Some(k)) => k.clone(),
            (NodeKind::File, None) => {
                return Err(Error::Undecryptable {
                    what: node.name.clone(),
                })
            }
            _ => {
                return Err(Error::NotAFile {
                    what: node.name.clone(),
                })
            }
        };
        let r = api
            .run_with(
                &GetDownloadUrl::node(&h.0, cfg.https),
                &[("n", &self.handle)],
            )
            .await?;
        let src = Source {
            size: checked_size(r.s, node.size)?,
            url: Some(checked_url(r.url()?, cfg.https)?),
            key,
            refresh: None,
        };
        download::download(api.http(), &src, out, cfg, progress)
            .await
            .map_err(|e| Error::from(e).about(node.name.clone()))
    }
}
