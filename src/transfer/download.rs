//! Whole-file downloads: the file's pieces are read through [`Content`] several at a time and
//! written in order. `Ok` only once the file's MAC verified; otherwise
//! [`TransferError::MacMismatch`].
//!
//! Bytes reach the writer before the final verdict: a caller that shows data to a user must
//! write to a temporary place and publish only on `Ok` (megacmd renames a temp file).

use std::sync::Arc;

use futures::StreamExt;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::content::Content;
use super::fetch::Source;
use super::{join_error, pieces_from, AbortOnDrop, Piece, Progress, TransferConfig, TransferError};

/// Downloads and decrypts a whole file from `src` into `out`, verifying its MAC.
pub async fn download<W: AsyncWrite + Unpin>(
    http: &reqwest::Client,
    src: &Source,
    out: &mut W,
    cfg: &TransferConfig,
    progress: Option<Progress>,
) -> Result<(), TransferError> {
    let content = Arc::new(Content::new(http, src, cfg));
    download_content(&content, out, cfg, progress).await
}

/// Reads all of `content` into `out`, in order, `cfg.parallel` pieces at a time.
pub async fn download_content<W: AsyncWrite + Unpin>(
    content: &Arc<Content>,
    out: &mut W,
    cfg: &TransferConfig,
    progress: Option<Progress>,
) -> Result<(), TransferError> {
    download_content_from(content, out, cfg, progress, 0, |_| {}).await
}

/// Reads `content` from chunk `first` on into `out` (which holds the chunks before it,
/// whose MACs `content` already has: a resumed download), in order. `written` hears of each
/// piece once it is in `out`.
pub async fn download_content_from<W: AsyncWrite + Unpin>(
    content: &Arc<Content>,
    out: &mut W,
    cfg: &TransferConfig,
    progress: Option<Progress>,
    first: u64,
    mut written: impl FnMut(Piece),
) -> Result<(), TransferError> {
    let tasks = pieces_from(content.size(), cfg.down_piece(), first).map(|p| {
        let content = content.clone();
        AbortOnDrop(tokio::spawn(async move {
            content.piece(p.first, p.last()).await.map(|d| (p, d))
        }))
    });
    let mut stream = futures::stream::iter(tasks).buffered(cfg.parallel.max(1));
    while let Some(joined) = stream.next().await {
        let (piece, data) = joined.map_err(join_error)??;
        out.write_all(&data).await?;
        written(piece);
        if let Some(p) = &progress {
            p(data.len() as u64);
        }
    }
    out.flush().await?;
    content.finish()
}
