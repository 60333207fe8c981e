//! Thumbnails and previews of uploaded images (file attributes 0 and 1), as MEGA's SDK
//! attaches them, and reading them back. Making them never fails an upload: a file that
//! does not decode, is over the limits, or whose pictures cannot be stored uploads without
//! them (logged at debug).

use super::{Client, Error, Result};
use crate::crypto::{FileKey, NodeKey};
use crate::transfer::fileattr;
use crate::transfer::graphics::{self, Limits, Made};
use crate::tree::NodeHandle;

impl Client {
    /// Makes thumbnails and previews of images on upload within `limits`, or not at all
    /// (`None`: MEGAcmd's `graphics off`). On by default, with [`Limits::default`].
    pub fn set_graphics(&self, limits: Option<Limits>) {
        *self.graphics.lock().unwrap_or_else(|p| p.into_inner()) = limits;
    }

    /// The limits pictures are made within, `None` if they are not made.
    pub fn graphics(&self) -> Option<Limits> {
        *self.graphics.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The thumbnail and preview of a file called `name` of `size` bytes, made on a blocking
    /// thread from the plaintext `open` gives a reader of; `None` if it is not an image,
    /// graphics are off, or it cannot be made.
    pub(super) async fn make_graphics<S: graphics::Source + 'static>(
        &self,
        name: &str,
        size: u64,
        open: impl FnOnce() -> std::io::Result<S> + Send + 'static,
    ) -> Option<Made> {
        let limits = self.graphics()?;
        if !graphics::is_image(name) || size == 0 || size > limits.max_bytes {
            return None;
        }
        let made =
            tokio::task::spawn_blocking(move || graphics::make_from(open()?, size, &limits)).await;
        match made {
            Ok(Ok(m)) => Some(m),
            Ok(Err(e)) => {
                tracing::debug!("{name}: no thumbnail: {e}");
                None
            }
            Err(e) => {
                tracing::debug!("{name}: no thumbnail: {e}");
                None
            }
        }
    }

    /// Stores the pictures under the file's key; the `fa` for `p`.
    pub(super) async fn store_graphics(&self, key: &FileKey, made: &Made) -> Option<String> {
        fileattr::store_pair(&self.api, &self.transfer, key, made).await
    }

    /// The thumbnail (`kind` 0) or preview (1) of a file, decrypted; `None` if it has none.
    pub async fn file_attribute(&self, h: &NodeHandle, kind: u32) -> Result<Option<Vec<u8>>> {
        let (key, fa) = self
            .view(|t| {
                let n = t.get(h)?;
                Some((n.key.clone(), n.fa.clone()))
            })
            .ok_or_else(|| Error::NotFound {
                what: h.to_string(),
            })?;
        let (Some(NodeKey::File(key)), Some(fa)) = (key, fa) else {
            return Ok(None);
        };
        let Some(image) = fileattr::fetch(&self.api, &self.transfer, &key, &fa, kind).await? else {
            return Ok(None);
        };
        // No MAC covers it: it must at least be a whole image (decoded on a blocking thread).
        let (image, checked) = tokio::task::spawn_blocking(move || {
            let r = graphics::check(&image);
            (image, r)
        })
        .await
        .map_err(|e| Error::Protocol(format!("checking a file attribute: {e}")))?;
        match checked {
            Ok(_) => Ok(Some(image)),
            Err(e) => Err(Error::Integrity {
                what: format!(
                    "{}: its {} does not decrypt to an image ({e})",
                    self.path_of(h),
                    if kind == fileattr::THUMBNAIL {
                        "thumbnail"
                    } else {
                        "preview"
                    }
                ),
            }),
        }
    }
}
