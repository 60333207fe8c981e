//! Thumbnails and previews of uploaded images and videos (file attributes 0 and 1) and the
//! media attributes of videos (8, 9), as MEGA's SDK attaches them, and reading them back. Making them never fails an upload: a file that
//! does not decode, is over the limits, or whose pictures cannot be stored uploads without
//! them (logged at debug).

use super::{Client, Error, Result};
use crate::api::commands::MediaCodecs;
use crate::crypto::{FileKey, NodeKey};
use crate::transfer::graphics::{self, Limits, Made};
use crate::transfer::{fileattr, media};
use crate::tree::NodeHandle;

/// What an upload gets besides its content.
#[derive(Debug, Clone)]
pub struct Pictures {
    /// Thumbnail and preview.
    pub made: Option<Made>,
    /// A video's properties, for the media attributes.
    pub media: Option<media::Probe>,
}

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

    /// What an upload of a file called `name` of `size` bytes gets: for an image, its
    /// thumbnail and preview; for a video (with FFmpeg installed), those of a frame a fifth
    /// of the way in and its media properties. Made on a blocking thread from the plaintext
    /// `open` gives a reader of (a video is read by `path` when there is one); `None` if it
    /// is neither, graphics are off, or nothing could be made.
    pub(super) async fn make_graphics<S: graphics::Source + 'static>(
        &self,
        name: &str,
        size: u64,
        path: Option<std::path::PathBuf>,
        open: impl Fn() -> std::io::Result<S> + Send + Sync + 'static,
    ) -> Option<Pictures> {
        let limits = self.graphics()?;
        if size == 0 {
            return None;
        }
        let image = graphics::is_image(name);
        // A video through a pipe is read up to its frame: bounded like an image.
        let video = media::is_video(name)
            && (path.is_some() || size <= limits.max_bytes)
            && media::available();
        if !(video || image && size <= limits.max_bytes) {
            return None;
        }
        let label = name.to_string();
        let made = tokio::task::spawn_blocking(move || {
            if image {
                let made = graphics::make_from(open()?, size, &limits)?;
                return Ok::<_, graphics::GraphicsError>(Pictures {
                    made: Some(made),
                    media: None,
                });
            }
            let pipe =
                || -> std::io::Result<Box<dyn std::io::Read + Send>> { Ok(Box::new(open()?)) };
            let input = match &path {
                Some(p) => media::Input::Path(p),
                None => media::Input::Pipe(&pipe),
            };
            // FFmpeg's memory for a frame is its own business: one video at a time, and no
            // image decoded beside it.
            let alone = graphics::alone();
            let probe = media::probe(&input, &label)?;
            let frame = media::frame(&input, probe.playtime);
            drop(alone);
            let made = match frame {
                Ok(png) => graphics::make(&png, &limits)
                    .map_err(|e| tracing::debug!("{label}: no thumbnail of its frame: {e}"))
                    .ok(),
                Err(e) => {
                    tracing::debug!("{label}: no frame: {e}");
                    None
                }
            };
            Ok(Pictures {
                made,
                media: Some(probe),
            })
        })
        .await;
        let made = made
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()));
        made.map_err(|e| tracing::debug!("{name}: no thumbnail: {e}"))
            .ok()
    }

    /// Stores the pictures under the file's key (whose condensed MAC is known: the upload
    /// finished) and packs the media properties; the `fa` for `p`.
    pub(super) async fn store_graphics(&self, key: &FileKey, p: &Pictures) -> Option<String> {
        let mut parts = Vec::new();
        if let Some(made) = &p.made {
            parts.extend(fileattr::store_pair(&self.api, &self.transfer, key, made).await);
        }
        if let Some(probe) = &p.media {
            if let Some(codecs) = self.media_codecs().await {
                match media::identify(probe, &codecs) {
                    Some(m) => parts.push(media::encode(&m, key)),
                    None => tracing::debug!("media not identified: {probe:?}"),
                }
            }
        }
        (!parts.is_empty()).then(|| parts.join("/"))
    }

    /// MEGA's codec list (`mc`), asked once per client; `None` if the server has none.
    async fn media_codecs(&self) -> Option<media::Codecs> {
        self.media_codecs
            .get_or_init(|| async {
                match self.api.run(&MediaCodecs {}).await {
                    Ok(v) => media::Codecs::parse(&v),
                    Err(e) => {
                        tracing::debug!("no media codec list: {e}");
                        None
                    }
                }
            })
            .await
            .clone()
    }

    /// The media properties of a file (width, height, duration…), if it has them.
    pub fn media_properties(&self, h: &NodeHandle) -> Option<media::MediaProps> {
        self.view(|t| {
            let n = t.get(h)?;
            match (&n.key, &n.fa) {
                (Some(NodeKey::File(k)), Some(fa)) => media::decode(fa, k),
                _ => None,
            }
        })
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
