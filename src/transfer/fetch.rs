//! Ranged ciphertext reads: `<url>/<start>-<end>` (inclusive), retried under the one retry
//! policy (ranged GETs are idempotent), with a fresh URL asked for when the current one has
//! expired (HTTP 403/404/410) or none was fetched yet. A reply must be exactly the length
//! asked for; a longer one is refused while it streams in, so the server never decides how
//! much the client allocates.

use std::sync::Arc;

use futures::future::BoxFuture;
use tokio::sync::Mutex;

use super::{TransferConfig, TransferError};
use crate::api::{network_error, read_body, ApiError, Failure, Repeat};
use crate::crypto::FileKey;

/// Gets a fresh download URL (the first one, or when the current one expired).
pub type UrlRefresher = Arc<dyn Fn() -> BoxFuture<'static, Result<String, ApiError>> + Send + Sync>;

/// What to download.
#[derive(Clone)]
pub struct Source {
    /// A download URL already at hand; `None` asks `refresh` for one at the first read.
    pub url: Option<String>,
    pub size: u64,
    pub key: FileKey,
    /// Used when there is no URL yet or it expired; without it, an expired URL is an error.
    pub refresh: Option<UrlRefresher>,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

/// Fetches ciphertext ranges of one file.
pub struct Fetcher {
    http: reqwest::Client,
    url: Mutex<Option<String>>,
    refresh: Option<UrlRefresher>,
    cfg: TransferConfig,
}

enum FetchError {
    Expired,
    Other(TransferError),
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

    /// The current URL, asking for one if there is none yet.
    async fn url(&self) -> Result<String, TransferError> {
        let mut url = self.url.lock().await;
        if let Some(u) = url.as_ref() {
            return Ok(u.clone());
        }
        let refresh = self
            .refresh
            .as_ref()
            .ok_or_else(|| ApiError::BadResponse("no download URL".into()))?;
        let fresh = refresh().await?;
        *url = Some(fresh.clone());
        Ok(fresh)
    }

    /// Fetches `[start, start+len)` of ciphertext, retrying transient failures.
    pub async fn fetch(&self, start: u64, len: u64) -> Result<Vec<u8>, TransferError> {
        let mut retry = self.cfg.retry.start("download piece", Repeat::Safe);
        loop {
            let url = self.url().await?;
            let (err, failure) = match self.fetch_once(&url, start, len).await {
                Ok(data) => return Ok(data),
                Err(FetchError::Expired) => match &self.refresh {
                    Some(refresh) => {
                        let fresh = refresh().await?;
                        *self.url.lock().await = Some(fresh);
                        let e = ApiError::Network("download URL expired".into());
                        (TransferError::Api(e), Failure::NotApplied)
                    }
                    None => return Err(ApiError::Http(403).into()),
                },
                Err(FetchError::Other(e)) => {
                    let f = e.failure();
                    (e, f)
                }
            };
            retry.after(err, failure).await?;
        }
    }

    async fn fetch_once(&self, url: &str, start: u64, len: u64) -> Result<Vec<u8>, FetchError> {
        if let Some(l) = &self.cfg.limit {
            l.fetch(len).await;
        }
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
            // Over the transfer quota: the storage server says how long until there is more.
            509 => {
                let wait = resp
                    .headers()
                    .get("x-mega-time-left")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<i64>().ok())
                    .filter(|t| *t > 0)
                    .map_or(3600, |t| t as u64);
                return Err(FetchError::Other(ApiError::TransferQuota { wait }.into()));
            }
            s => return Err(FetchError::Other(ApiError::Http(s).into())),
        }
        let body = read_body(resp, len)
            .await
            .map_err(|e| FetchError::Other(e.into()))?;
        if body.len() as u64 != len {
            return Err(FetchError::Other(
                ApiError::Network(format!("short body: {} of {} bytes", body.len(), len)).into(),
            ));
        }
        Ok(body)
    }
}
