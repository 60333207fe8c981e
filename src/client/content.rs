//! Reading file content, always through the verifying [`Content`] reader: whole into a writer,
//! into memory, into a temporary file beside a local target (renamed by the caller only after
//! the MAC verified), or piece by piece for the mount's block cache.

use std::path::Path;
use std::sync::Arc;

use tokio::io::{AsyncSeekExt, AsyncWrite};

use super::resume::{intact_prefix, DownloadJournal};
use super::{Client, Error, Result};
use crate::api::commands::GetDownloadUrl;
use crate::crypto::fingerprint::Sampler;
use crate::local::files::TempFile;
use crate::transfer::download::{download_content, download_content_from};
use crate::transfer::{checked_url, Content, Progress, Source, TransferError, UrlRefresher};
use crate::tree::{Node, NodeHandle, NodeKind};

impl Client {
    /// A file node and its key, or why it cannot be read.
    fn readable(&self, h: &NodeHandle) -> Result<(Node, crate::crypto::FileKey)> {
        let node = self.node(h)?;
        if node.kind != NodeKind::File {
            return Err(Error::NotAFile {
                what: self.path_of(h),
            });
        }
        let key = node
            .file_key()
            .cloned()
            .ok_or_else(|| Error::Undecryptable {
                what: self.path_of(h),
            })?;
        Ok((node, key))
    }

    /// Where a file's ciphertext comes from. No request is made here: the download URL is
    /// asked for (`g`) at the first read, and again whenever it expires.
    pub fn download_source(&self, h: &NodeHandle) -> Result<Source> {
        let (node, key) = self.readable(h)?;
        let api = self.api.clone();
        let handle = h.0.clone();
        let https = self.transfer.https;
        let refresh: UrlRefresher = Arc::new(move || {
            let api = api.clone();
            let handle = handle.clone();
            Box::pin(async move {
                let r = api.run(&GetDownloadUrl::node(&handle, https)).await?;
                checked_url(r.url()?, https)
            })
        });
        Ok(Source {
            url: None,
            size: node.size,
            key,
            refresh: Some(refresh),
        })
    }

    /// A file's content, read and verified piece by piece (the mount's reads).
    pub fn content(&self, h: &NodeHandle) -> Result<Arc<Content>> {
        let src = self.download_source(h)?;
        Ok(Arc::new(Content::new(
            self.api.http(),
            &src,
            &self.transfer,
        )))
    }

    /// Downloads a file into `out`, verifying its MAC (see
    /// [`download`](crate::transfer::download)).
    pub async fn download<W: AsyncWrite + Unpin>(
        &self,
        h: &NodeHandle,
        out: &mut W,
        progress: Option<Progress>,
    ) -> Result<()> {
        let content = self.content(h)?;
        download_content(&content, out, &self.transfer, progress)
            .await
            .map_err(|e| Error::from(e).about(self.path_of(h)))
    }

    /// Downloads a whole file into memory; returns it only if its MAC verified.
    pub async fn download_to_vec(&self, h: &NodeHandle) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.download(h, &mut out, None).await?;
        Ok(out)
    }

    /// Downloads a file into a private temporary file beside `target` (named with `tag`,
    /// see [`TempFile`]), synced to disk. The caller renames it into place; on any error it
    /// is gone.
    pub async fn download_beside(
        &self,
        h: &NodeHandle,
        target: &Path,
        tag: &str,
        progress: Option<Progress>,
    ) -> Result<TempFile> {
        if let Some(state) = self.transfers.get() {
            let (node, key) = self.readable(h)?;
            if node.size < super::resume::RESUME_MIN {
                return self.download_fresh(h, target, tag, progress).await;
            }
            let (state, user, handle) = (state.clone(), self.session.user.clone(), h.0.clone());
            let (target_buf, tag_buf) = (target.to_path_buf(), tag.to_string());
            let size = node.size;
            let k = key.clone();
            let opened = tokio::task::spawn_blocking(move || {
                state.download(&user, &handle, size, &k, &target_buf, &tag_buf)
            })
            .await
            .ok()
            .flatten();
            if let Some((journal, part, file, macs)) = opened {
                return self
                    .resume_download(h, &key, size, journal, part, file, macs, progress)
                    .await;
            }
        }
        self.download_fresh(h, target, tag, progress).await
    }

    /// A download into a new temporary file beside `target`, not recorded for resuming.
    async fn download_fresh(
        &self,
        h: &NodeHandle,
        target: &Path,
        tag: &str,
        progress: Option<Progress>,
    ) -> Result<TempFile> {
        let (tmp, file) =
            TempFile::create_tagged(target, tag).map_err(|e| Error::local(target, e))?;
        let mut f = tokio::fs::File::from_std(file);
        self.download(h, &mut f, progress).await?;
        f.sync_all()
            .await
            .map_err(|e| Error::local(tmp.path(), e))?;
        Ok(tmp)
    }

    /// A download into a part file an earlier run may have begun: the chunks of the part that
    /// still match the MACs the journal recorded are kept, the rest is fetched. On an error,
    /// or when the command is interrupted, the part and journal stay for the next run, unless
    /// the content is bad.
    #[allow(clippy::too_many_arguments)]
    async fn resume_download(
        &self,
        h: &NodeHandle,
        key: &crate::crypto::FileKey,
        size: u64,
        journal: DownloadJournal,
        part: TempFile,
        file: std::fs::File,
        macs: Vec<[u8; 16]>,
        progress: Option<Progress>,
    ) -> Result<TempFile> {
        let local = |e| Error::local(part.path(), e);
        let (file, intact) = {
            let k = key.clone();
            tokio::task::spawn_blocking(move || {
                let n = intact_prefix(&file, &k, size, &macs)?;
                let keep = crate::crypto::mac::chunk_start(n as u64).min(size);
                file.set_len(keep)?;
                Ok::<_, std::io::Error>((file, macs[..n].to_vec()))
            })
            .await
            .map_err(|e| local(std::io::Error::other(e)))?
            .map_err(local)?
        };
        // What follows is recorded after the intact chunks, never after stale ones.
        journal.keep(&intact);
        let content = self.content(h)?;
        if let Err(e) = content.preload(0, &intact) {
            // The whole file was in the part and it does not verify: nothing of it is kept.
            journal.finish();
            part.discard();
            return Err(Error::from(e).about(self.path_of(h)));
        }
        let first = intact.len() as u64;
        if first > 0 {
            tracing::info!(
                "{}: resuming the download at chunk {first} of {}",
                self.path_of(h),
                content.chunk_count()
            );
        }
        let done = crate::crypto::mac::chunk_start(first).min(size);
        if let (Some(p), true) = (&progress, done > 0) {
            p(done);
        }
        let mut f = tokio::fs::File::from_std(file);
        f.seek(std::io::SeekFrom::Start(done))
            .await
            .map_err(local)?;
        let r = download_content_from(&content, &mut f, &self.transfer, progress, first, |p| {
            journal.written(p.first, &content.recorded(p.first, p.last()));
        })
        .await;
        match r {
            Ok(()) => {
                f.sync_all().await.map_err(local)?;
                journal.finish();
                Ok(part)
            }
            Err(e) => {
                if matches!(e, TransferError::MacMismatch) {
                    // Nothing of it can be trusted: the next run starts over.
                    journal.finish();
                    part.discard();
                }
                Err(Error::from(e).about(self.path_of(h)))
            }
        }
    }

    /// Downloads a file to `target` through a temporary file beside it (see
    /// [`download_beside`](Self::download_beside)), renamed into place with the node's mtime
    /// and its stored permission bits (else the usual ones) only after the MAC verified. A
    /// symbolic link becomes one ([`download_link`](Self::download_link)).
    pub async fn download_to_path(
        &self,
        h: &NodeHandle,
        target: &Path,
        tag: &str,
        progress: Option<Progress>,
    ) -> Result<()> {
        let n = self.node(h)?;
        if n.is_symlink() {
            return self.download_link(h, target).await;
        }
        let tmp = self.download_beside(h, target, tag, progress).await?;
        tmp.persist_mode(target, n.mtime, n.mode)
            .map_err(|e| Error::local(target, e))
    }

    /// The fingerprint checksum of a file's content: the whole file streamed through the
    /// verifying reader into the fingerprint's sampler (nothing of it is written anywhere), and
    /// the checksum returned only once the MAC verified.
    pub(super) async fn content_crc(&self, h: &NodeHandle, size: u64) -> Result<[u8; 16]> {
        let mut sink = SamplerSink {
            sampler: Sampler::new(size),
            at: 0,
        };
        self.download(h, &mut sink, None).await?;
        Ok(sink.sampler.crc())
    }
}

/// Feeds content streaming past, in order, to the fingerprint's sampler.
struct SamplerSink {
    sampler: Sampler,
    at: u64,
}

impl AsyncWrite for SamplerSink {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let me = self.get_mut();
        me.sampler.feed(me.at, buf);
        me.at += buf.len() as u64;
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}
