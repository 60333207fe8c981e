//! Downloads: the file is cut into pieces of whole MAC chunks, fetched with ranged requests
//! (`<url>/<start>-<end>`, inclusive) several at a time, decrypted with AES-CTR while each
//! chunk's MAC is computed, and written in order. When all chunks are in, the condensed MAC
//! must equal the one in the file key (the SDK's algorithm, or megajs' variant for the sizes
//! where it differs); otherwise the download fails with [`TransferError::MacMismatch`].
//!
//! Bytes reach the writer before the final verdict: a caller that shows data to a user must
//! write to a temporary place and publish only on `Ok` (megacmd renames a temp file; the
//! mount keeps unverified blocks out of its cache's "verified" state).

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::StreamExt;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::Mutex;

use super::{pieces, AbortOnDrop, Progress, TransferConfig, TransferError};
use crate::api::{network_error, ApiError};
use crate::crypto::aes::cipher;
use crate::crypto::{mac, FileKey};

/// Gets a fresh download URL when the current one expired (HTTP 403/404/410).
pub type UrlRefresher = Arc<dyn Fn() -> BoxFuture<'static, Result<String, ApiError>> + Send + Sync>;

/// What to download.
#[derive(Clone)]
pub struct Source {
    pub url: String,
    pub size: u64,
    pub key: FileKey,
    /// Used when the URL expires; without it, an expired URL is an error.
    pub refresh: Option<UrlRefresher>,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

/// Fetches ciphertext ranges of one file, retrying transient failures and refreshing the URL
/// when it expires. Shared by whole-file downloads and the mount's block cache.
pub struct Fetcher {
    http: reqwest::Client,
    url: Mutex<String>,
    refresh: Option<UrlRefresher>,
    cfg: TransferConfig,
}

impl Fetcher {
    pub fn new(http: &reqwest::Client, src: &Source, cfg: &TransferConfig) -> Self {
        Fetcher {
            http: http.clone(),
            url: Mutex::new(src.url.clone()),
            refresh: src.refresh.clone(),
            cfg: cfg.clone(),
        }
    }

    /// Fetches `[start, start+len)` of ciphertext, retrying transient failures.
    pub async fn fetch(&self, start: u64, len: u64) -> Result<Vec<u8>, TransferError> {
        let mut attempt = 0;
        loop {
            let url = self.url.lock().await.clone();
            let err = match self.fetch_once(&url, start, len).await {
                Ok(data) => return Ok(data),
                Err(FetchError::Expired) => match &self.refresh {
                    Some(refresh) => {
                        let fresh = refresh().await?;
                        *self.url.lock().await = fresh;
                        TransferError::Api(ApiError::Network("download URL expired".into()))
                    }
                    None => return Err(ApiError::Http(403).into()),
                },
                Err(FetchError::Other(e)) => e,
            };
            if !err.is_retryable() {
                return Err(err);
            }
            if attempt >= self.cfg.retry.max_retries {
                return Err(ApiError::RetriesExhausted {
                    attempts: attempt + 1,
                    last: Box::new(match err {
                        TransferError::Api(e) => e,
                        other => ApiError::Network(other.to_string()),
                    }),
                }
                .into());
            }
            let delay = self.cfg.retry.delay(attempt);
            tracing::debug!(start, attempt, error = %err, "retrying download piece");
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    async fn fetch_once(&self, url: &str, start: u64, len: u64) -> Result<Vec<u8>, FetchError> {
        let range_url = format!("{}/{}-{}", url, start, start + len - 1);
        let resp = self
            .http
            .get(range_url)
            .timeout(self.cfg.request_timeout)
            .send()
            .await
            .map_err(|e| FetchError::Other(network_error(e).into()))?;
        let status = resp.status().as_u16();
        match status {
            200 | 206 => {}
            403 | 404 | 410 => return Err(FetchError::Expired),
            s => return Err(FetchError::Other(ApiError::Http(s).into())),
        }
        let body = resp
            .bytes()
            .await
            .map_err(|e| FetchError::Other(network_error(e).into()))?;
        if body.len() as u64 != len {
            return Err(FetchError::Other(
                ApiError::Network(format!("short body: {} of {} bytes", body.len(), len)).into(),
            ));
        }
        // A whole response is one unique buffer: this takes it over without copying.
        Ok(Vec::from(body))
    }
}

enum FetchError {
    Expired,
    Other(TransferError),
}

/// Downloads and decrypts a whole file into `out`, verifying its MAC.
pub async fn download<W: AsyncWrite + Unpin>(
    http: &reqwest::Client,
    src: &Source,
    out: &mut W,
    cfg: &TransferConfig,
    progress: Option<Progress>,
) -> Result<(), TransferError> {
    let fetcher = Arc::new(Fetcher::new(http, src, cfg));
    let key = Arc::new(src.key.clone());
    let mut macs: Vec<[u8; 16]> = Vec::with_capacity(mac::chunk_count(src.size) as usize);
    let tasks = pieces(src.size, cfg.piece_size)
        .into_iter()
        .map(|(start, len, _, _)| {
            let fetcher = fetcher.clone();
            let key = key.clone();
            AbortOnDrop(tokio::spawn(async move {
                let mut data = fetcher.fetch(start, len).await?;
                // Decrypt + MAC on a blocking thread: it is CPU work (about 1 ms per MiB).
                tokio::task::spawn_blocking(move || {
                    let macs = mac::decrypt_piece(&cipher(&key.aes), &key.nonce, start, &mut data);
                    (data, macs)
                })
                .await
                .map_err(|e| TransferError::Io(std::io::Error::other(e)))
            }))
        });
    let mut stream = futures::stream::iter(tasks).buffered(cfg.parallel.max(1));
    while let Some(joined) = stream.next().await {
        let (data, chunk_macs) =
            joined.map_err(|e| TransferError::Io(std::io::Error::other(e)))??;
        out.write_all(&data).await?;
        macs.extend(chunk_macs);
        if let Some(p) = &progress {
            p(data.len() as u64);
        }
    }
    out.flush().await?;
    let c = cipher(&src.key.aes);
    if !mac::verify(&c, &src.key.nonce, src.size, &macs, &src.key.meta_mac) {
        return Err(TransferError::MacMismatch);
    }
    Ok(())
}
