//! Content transfers (`MEGA-PROTOCOL.md` §6, §7). This module owns content integrity: every
//! byte of a file that reaches a caller went through [`content::Content`], the one piece
//! decryptor and MAC verifier, whether it is a whole-file download ([`download`]) or a block
//! the mount's reader asked for. Uploads ([`upload`]) encrypt, compute the chunk MACs and the
//! fingerprint, and POST chunks in parallel.
//!
//! * [`fetch`]: ranged ciphertext GETs with retries and URL refresh.
//! * [`content`]: pieces of whole MAC chunks, decrypted and verified; the file's verdict.
//! * [`download`], [`upload`]: whole-file transfers with progress reporting.
//! * [`staged`]: a file's new content while it is being written, encrypted on local disk,
//!   uploaded as it is.
//! * [`spool`]: content held until it verified whole, encrypted under a key only memory holds
//!   when it goes to disk.
//! * [`schedule`]: MEGA's chunk schedule, for callers that cache by chunk.
//! * [`limit`]: bandwidth limits, per direction, shared by a client's transfers.
//! * [`graphics`]: thumbnails and previews of images, made as MEGA's SDK makes them;
//!   [`fileattr`]: storing and fetching them (file attributes) encrypted under the file's key;
//!   [`media`]: a video's frame and media attributes, through FFmpeg when it is installed.
//!
//! Must not know about FUSE or paths; it works on URLs, keys and byte streams.

pub mod content;
pub mod download;
pub mod fetch;
pub mod fileattr;
pub mod graphics;
pub mod limit;
pub mod media;
pub mod spool;
pub mod staged;
pub mod upload;

use std::sync::Arc;

use crate::api::{ApiError, ErrorCode, Failure, GiveUp, RetryConfig};

pub use content::Content;
pub use fetch::{Source, UrlRefresher};
pub use staged::{Closed, Sealed, StagedFile, StagingDir};

/// MEGA's chunk schedule (chunks of 128 KiB growing to 1 MiB): where chunks start, which
/// chunk holds an offset, how many a file has.
pub mod schedule {
    pub use crate::crypto::mac::{chunk_count, chunk_index, chunk_start, MAX_CHUNK, SEGMENT};
}

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
    /// Ask for `https://` transfer URLs and refuse any other (content is encrypted either
    /// way; this hides which blobs are fetched from the network path).
    pub https: bool,
    /// Bandwidth limits shared by every transfer using this configuration.
    pub limit: Option<std::sync::Arc<limit::Bandwidth>>,
}

impl TransferConfig {
    /// The bytes per request in `direction`'s limit: about a second's worth when limited
    /// (at least one chunk), so that the pace is smooth; else `piece_size`.
    pub fn piece_for(&self, rate: Option<u64>) -> u64 {
        match rate {
            Some(r) => r.clamp(128 << 10, self.piece_size),
            None => self.piece_size,
        }
    }

    /// Piece size of uploads.
    pub fn up_piece(&self) -> u64 {
        self.piece_for(self.limit.as_ref().and_then(|l| l.up_rate()))
    }

    /// Piece size of downloads.
    pub fn down_piece(&self) -> u64 {
        self.piece_for(self.limit.as_ref().and_then(|l| l.down_rate()))
    }
}

impl Default for TransferConfig {
    fn default() -> Self {
        TransferConfig {
            parallel: crate::config::DEFAULT_CONNECTIONS,
            piece_size: 4 * 1024 * 1024,
            retry: RetryConfig::default(),
            request_timeout: std::time::Duration::from_secs(120),
            https: false,
            limit: None,
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
    /// An interrupted transfer cannot be resumed (the local file changed, the record does
    /// not fit): it must start over.
    #[error("cannot resume: {0}")]
    ResumeRefused(String),
}

impl TransferError {
    /// How the attempt failed, for the retry policy.
    pub fn failure(&self) -> Failure {
        match self {
            TransferError::Api(e) => e.failure(),
            // A chunk whose checksum did not match was damaged on the way: it was not stored.
            TransferError::Server(ErrorCode::Key) => Failure::NotApplied,
            TransferError::Server(c) if c.is_retryable() => Failure::NotApplied,
            TransferError::Server(_)
            | TransferError::MacMismatch
            | TransferError::Io(_)
            | TransferError::NoToken
            | TransferError::ShortRead { .. }
            | TransferError::ResumeRefused(_) => Failure::Permanent,
        }
    }

    pub fn is_retryable(&self) -> bool {
        self.failure() != Failure::Permanent
    }
}

impl From<GiveUp<TransferError>> for TransferError {
    fn from(g: GiveUp<TransferError>) -> Self {
        match g {
            GiveUp::Final(e) => e,
            GiveUp::Exhausted { attempts, last } => ApiError::RetriesExhausted {
                attempts,
                last: Box::new(match last {
                    TransferError::Api(e) => e,
                    other => ApiError::Network(other.to_string()),
                }),
            }
            .into(),
        }
    }
}

/// A transfer URL as the configuration allows it: with `https`, only an `https://` one.
pub fn checked_url(url: String, https: bool) -> Result<String, ApiError> {
    if https && !url.starts_with("https://") {
        return Err(ApiError::BadResponse(
            "the server gave a plain HTTP transfer URL although HTTPS is required".into(),
        ));
    }
    Ok(url)
}

/// One request's share of a file: whole MAC chunks starting at a chunk boundary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    pub start: u64,
    pub len: u64,
    /// Index of its first chunk, and how many chunks it holds.
    pub first: u64,
    pub chunks: u64,
}

impl Piece {
    pub fn last(&self) -> u64 {
        self.first + self.chunks - 1
    }
}

/// Groups a file's MAC chunks into request pieces of about `target` bytes, lazily: the size
/// comes from the server, and the pieces of even the largest file cost nothing up front.
pub fn pieces(size: u64, target: u64) -> impl Iterator<Item = Piece> {
    pieces_from(size, target, 0)
}

/// The pieces from chunk `first` on (a transfer resumed after its first chunks).
pub fn pieces_from(size: u64, target: u64, first: u64) -> impl Iterator<Item = Piece> {
    let start = crate::crypto::mac::chunk_start(first);
    let mut chunks = crate::crypto::mac::chunks(size)
        .skip_while(move |&(s, _)| s < start)
        .peekable();
    let mut index = first;
    std::iter::from_fn(move || {
        let (start, first_len) = chunks.next()?;
        let mut p = Piece {
            start,
            len: first_len,
            first: index,
            chunks: 1,
        };
        index += 1;
        while let Some(&(_, len)) = chunks.peek() {
            if p.len + len > target.max(first_len) {
                break;
            }
            chunks.next();
            p.len += len;
            p.chunks += 1;
            index += 1;
        }
        Some(p)
    })
}

/// A spawned task that is aborted when dropped (so an error stops the other requests).
pub struct AbortOnDrop<T>(pub tokio::task::JoinHandle<T>);

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

/// A task that panicked or was cancelled, as a transfer error.
pub(crate) fn join_error(e: tokio::task::JoinError) -> TransferError {
    TransferError::Io(std::io::Error::other(e))
}

#[cfg(test)]
mod tests {
    use super::pieces;

    #[test]
    fn pieces_cover_whole_chunks() {
        let p: Vec<_> = pieces(10 * 1024 * 1024, 4 * 1024 * 1024).collect();
        let mut next = 0;
        let mut chunk = 0;
        for piece in &p {
            assert_eq!(piece.start, next);
            assert_eq!(piece.first, chunk);
            assert!(piece.len <= 4 * 1024 * 1024);
            next += piece.len;
            chunk += piece.chunks;
        }
        assert_eq!(next, 10 * 1024 * 1024);
        assert_eq!(chunk, 14);
        assert_eq!(pieces(0, 1).count(), 0);
        // A target smaller than a chunk still makes progress: one chunk per piece.
        assert_eq!(pieces(1_000_000, 1).count(), 4);
    }

    #[test]
    fn pieces_of_a_huge_size_are_lazy() {
        // A size from a hostile server: nothing is allocated for the pieces not asked for.
        let first: Vec<_> = pieces(u64::MAX / 2, 4 << 20).take(2).collect();
        assert_eq!(first.len(), 2);
        assert_eq!(first[1].start, first[0].len);
    }
}
