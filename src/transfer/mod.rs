//! Content transfers: ranged parallel downloads with CTR decryption from any chunk and MAC
//! verification, and uploads with parallel chunk POSTs, MAC computation and the completion
//! token (`MEGA-PROTOCOL.md` §6, §7). Progress is reported through a callback.
//!
//! Must not know about FUSE or paths; it works on URLs, keys and byte streams.

pub mod download;
pub mod upload;

use std::sync::Arc;

use crate::api::{ApiError, ErrorCode, RetryConfig};

/// Transfer tuning.
#[derive(Debug, Clone)]
pub struct TransferConfig {
    /// Ranged requests (downloads) or chunk POSTs (uploads) in flight per file.
    pub parallel: usize,
    /// Target bytes per request; requests always cover whole MAC chunks.
    pub piece_size: u64,
    pub retry: RetryConfig,
    /// Timeout of one ranged GET or chunk POST.
    pub request_timeout: std::time::Duration,
}

impl Default for TransferConfig {
    fn default() -> Self {
        TransferConfig {
            parallel: 4,
            piece_size: 4 * 1024 * 1024,
            retry: RetryConfig::default(),
            request_timeout: std::time::Duration::from_secs(120),
        }
    }
}

/// Called with the number of bytes that just completed.
pub type Progress = Arc<dyn Fn(u64) + Send + Sync>;

/// Transfer errors.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error(transparent)]
    Api(#[from] ApiError),
    /// The content does not match its MAC: corrupt or tampered data. Nothing was verified.
    #[error("content failed MAC verification (corrupt or tampered data)")]
    MacMismatch,
    #[error("local i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The transfer server refused the data with a MEGA error code.
    #[error("transfer server error: {0}")]
    Server(ErrorCode),
    #[error("the upload finished without a completion token")]
    NoToken,
    #[error("the reader ended after {got} of {expected} bytes")]
    ShortRead { got: u64, expected: u64 },
}

impl TransferError {
    pub fn is_retryable(&self) -> bool {
        match self {
            TransferError::Api(e) => e.is_retryable(),
            TransferError::Server(c) => c.is_retryable(),
            _ => false,
        }
    }
}

/// Groups a file's MAC chunks into request pieces of about `target` bytes:
/// `(start, len, first chunk index, chunk count)`.
pub(crate) fn pieces(size: u64, target: u64) -> Vec<(u64, u64, usize, usize)> {
    let mut out = Vec::new();
    let mut cur: Option<(u64, u64, usize, usize)> = None;
    for (i, (start, len)) in crate::crypto::mac::chunks(size).enumerate() {
        match &mut cur {
            Some(p) if p.1 + len <= target.max(len) => {
                p.1 += len;
                p.3 += 1;
            }
            _ => {
                if let Some(p) = cur.take() {
                    out.push(p);
                }
                cur = Some((start, len, i, 1));
            }
        }
    }
    out.extend(cur);
    out
}

/// A spawned task that is aborted when dropped (so an error stops the other requests).
pub(crate) struct AbortOnDrop<T>(pub tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<T> std::future::Future for AbortOnDrop<T> {
    type Output = Result<T, tokio::task::JoinError>;
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::pieces;

    #[test]
    fn pieces_cover_whole_chunks() {
        let p = pieces(10 * 1024 * 1024, 4 * 1024 * 1024);
        let mut next = 0;
        let mut chunk = 0;
        for (start, len, first, count) in &p {
            assert_eq!(*start, next);
            assert_eq!(*first, chunk);
            assert!(*len <= 4 * 1024 * 1024);
            next += len;
            chunk += count;
        }
        assert_eq!(next, 10 * 1024 * 1024);
        assert_eq!(chunk, 14);
        assert!(pieces(0, 1).is_empty());
        // A target smaller than a chunk still makes progress: one chunk per piece.
        assert_eq!(pieces(1_000_000, 1).len(), 4);
    }
}
