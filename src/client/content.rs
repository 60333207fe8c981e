//! Reading file content, always through the verifying [`Content`] reader: whole into a writer,
//! into memory, into a temporary file beside a local target (renamed by the caller only after
//! the MAC verified), or piece by piece for the mount's block cache.

use std::path::Path;
use std::sync::Arc;

use tokio::io::AsyncWrite;

use super::{Client, Error, Result};
use crate::api::commands::GetDownloadUrl;
use crate::crypto::fingerprint::Sampler;
use crate::local::files::TempFile;
use crate::transfer::download::download_content;
use crate::transfer::{checked_url, Content, Progress, Source, UrlRefresher};
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
        let (tmp, file) =
            TempFile::create_tagged(target, tag).map_err(|e| Error::local(target, e))?;
        let mut f = tokio::fs::File::from_std(file);
        self.download(h, &mut f, progress).await?;
        f.sync_all()
            .await
            .map_err(|e| Error::local(tmp.path(), e))?;
        Ok(tmp)
    }

    /// Downloads a file to `target` through a temporary file beside it (see
    /// [`download_beside`](Self::download_beside)), renamed into place with the node's mtime
    /// and the usual permissions only after the MAC verified.
    pub async fn download_to_path(
        &self,
        h: &NodeHandle,
        target: &Path,
        tag: &str,
        progress: Option<Progress>,
    ) -> Result<()> {
        let mtime = self.node(h)?.mtime;
        let tmp = self.download_beside(h, target, tag, progress).await?;
        tmp.persist(target, mtime)
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
