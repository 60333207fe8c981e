//! Uploads: `u` gets an upload URL for the known size; the reader is consumed in pieces of
//! whole MAC chunks, each encrypted with AES-CTR at its offset while its chunk MACs are
//! computed, and POSTed to `<url>/<offset>` (several in flight; a failed POST is simply sent
//! again, it is idempotent). The POST that completes the file answers the 36-byte completion
//! token. The fingerprint (`c` attribute) is sampled from the bytes as they pass.
//!
//! The caller then creates the node with `p` (see [`crate::client`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::stream::FuturesUnordered;
use futures::StreamExt;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::{pieces, AbortOnDrop, Progress, TransferConfig, TransferError};
use crate::api::{as_error, network_error, ApiClient, ApiError, ErrorCode};
use crate::crypto::aes::cipher;
use crate::crypto::fingerprint::Fingerprint;
use crate::crypto::{b64, mac, upload_checksum, FileKey};

/// The result of sending a file's content: what `p` needs.
#[derive(Debug)]
pub struct Uploaded {
    /// Completion token as `p` wants it (base64url).
    pub token: String,
    /// Key with the meta-MAC filled in.
    pub key: FileKey,
    pub fingerprint: Fingerprint,
    pub size: u64,
}

/// Collects what the sparse fingerprint needs from bytes streaming past.
struct FingerprintSampler {
    size: u64,
    /// Small files: the whole content.
    whole: Vec<u8>,
    /// Large files: the 128 sampled 64-byte windows.
    windows: Vec<(u64, [u8; 64])>,
}

/// Files up to this size are fingerprinted from their whole content.
const FP_SMALL: u64 = 8192;

impl FingerprintSampler {
    fn new(size: u64) -> Self {
        let windows = if size > FP_SMALL {
            (0..128u64)
                .map(|k| ((size - 64) * k / 127, [0u8; 64]))
                .collect()
        } else {
            Vec::new()
        };
        FingerprintSampler {
            size,
            whole: Vec::new(),
            windows,
        }
    }

    fn feed(&mut self, offset: u64, data: &[u8]) {
        if self.size <= FP_SMALL {
            self.whole.extend_from_slice(data);
            return;
        }
        let end = offset + data.len() as u64;
        for (w, buf) in self.windows.iter_mut() {
            let (ws, we) = (*w, *w + 64);
            let (s, e) = (ws.max(offset), we.min(end));
            if s < e {
                buf[(s - ws) as usize..(e - ws) as usize]
                    .copy_from_slice(&data[(s - offset) as usize..(e - offset) as usize]);
            }
        }
    }

    fn finish(self, mtime: i64) -> Fingerprint {
        if self.size <= FP_SMALL {
            return Fingerprint::of_bytes(&self.whole, mtime);
        }
        let mut crc = [0u8; 16];
        for (lane, group) in self.windows.chunks(32).enumerate() {
            let mut h = crc32fast::Hasher::new();
            for (_, w) in group {
                h.update(w);
            }
            crc[lane * 4..lane * 4 + 4].copy_from_slice(&h.finalize().to_be_bytes());
        }
        Fingerprint { crc, mtime }
    }
}

/// What one chunk POST answered.
enum PostReply {
    Ack,
    Token(Vec<u8>),
}

async fn post_once(
    http: &reqwest::Client,
    url: &str,
    offset: u64,
    body: &Arc<Vec<u8>>,
    cfg: &TransferConfig,
) -> Result<PostReply, TransferError> {
    let checksum = b64::encode(&upload_checksum(body));
    let resp = http
        .post(format!("{url}/{offset}?c={checksum}"))
        .timeout(cfg.request_timeout)
        .header("content-type", "application/octet-stream")
        .body(body.as_ref().clone())
        .send()
        .await
        .map_err(network_error)?;
    let status = resp.status().as_u16();
    if status != 200 {
        return Err(ApiError::Http(status).into());
    }
    let bytes = resp.bytes().await.map_err(network_error)?;
    if bytes.len() == 36 {
        return Ok(PostReply::Token(bytes.to_vec()));
    }
    if bytes.is_empty() || &bytes[..] == b"0" {
        return Ok(PostReply::Ack);
    }
    // Errors come as ASCII negative numbers.
    let text = std::str::from_utf8(&bytes).unwrap_or("");
    if let Some(code) = text
        .trim()
        .parse::<i64>()
        .ok()
        .and_then(|n| as_error(&json!(n)))
    {
        return Err(TransferError::Server(code));
    }
    Err(ApiError::BadResponse(format!("unexpected upload reply of {} bytes", bytes.len())).into())
}

/// POSTs one piece, retrying transient failures (the same bytes to the same offset).
async fn post_piece(
    http: reqwest::Client,
    url: Arc<String>,
    offset: u64,
    body: Arc<Vec<u8>>,
    cfg: TransferConfig,
) -> Result<PostReply, TransferError> {
    let mut attempt = 0;
    loop {
        let err = match post_once(&http, &url, offset, &body, &cfg).await {
            Ok(r) => return Ok(r),
            // A checksum mismatch means the bytes were damaged in transit: send them again.
            Err(TransferError::Server(ErrorCode::Key)) => {
                TransferError::Api(ApiError::Network("chunk checksum mismatch".into()))
            }
            Err(e) => e,
        };
        if !err.is_retryable() || attempt >= cfg.retry.max_retries {
            return Err(err);
        }
        tracing::debug!(offset, attempt, error = %err, "retrying upload piece");
        tokio::time::sleep(cfg.retry.delay(attempt)).await;
        attempt += 1;
    }
}

/// Requests an upload URL for `size` bytes (`u`).
pub async fn upload_url(api: &ApiClient, size: u64) -> Result<String, ApiError> {
    let r = api
        .call(json!({"a": "u", "s": size, "ssl": 0, "v": 2}))
        .await?;
    r.get("p")
        .and_then(|p| p.as_str())
        .map(str::to_string)
        .ok_or_else(|| ApiError::BadResponse("upload reply without `p`".into()))
}

/// Encrypts and sends `size` bytes from `reader`. `mtime` goes into the fingerprint.
pub async fn upload<R: AsyncRead + Unpin>(
    api: &ApiClient,
    reader: &mut R,
    size: u64,
    mtime: i64,
    cfg: &TransferConfig,
    progress: Option<Progress>,
) -> Result<Uploaded, TransferError> {
    let url = Arc::new(upload_url(api, size).await?);
    let mut key = FileKey::random();
    while key.is_zero_key() {
        key = FileKey::random();
    }
    let c = cipher(&key.aes);
    let mut sampler = FingerprintSampler::new(size);
    let mut macs: BTreeMap<usize, [u8; 16]> = BTreeMap::new();
    let mut token: Option<Vec<u8>> = None;
    let mut in_flight: FuturesUnordered<AbortOnDrop<(Result<PostReply, TransferError>, u64)>> =
        FuturesUnordered::new();
    let parallel = cfg.parallel.max(1);

    let handle_reply = |r: PostReply, token: &mut Option<Vec<u8>>| {
        if let PostReply::Token(t) = r {
            *token = Some(t);
        }
    };

    if size == 0 {
        let r = post_piece(
            api.http().clone(),
            url.clone(),
            0,
            Arc::new(Vec::new()),
            cfg.clone(),
        )
        .await?;
        handle_reply(r, &mut token);
    }
    for (start, len, first, _) in pieces(size, cfg.piece_size) {
        let mut data = vec![0u8; len as usize];
        let mut got = 0usize;
        while got < data.len() {
            let n = reader.read(&mut data[got..]).await?;
            if n == 0 {
                return Err(TransferError::ShortRead {
                    got: start + got as u64,
                    expected: size,
                });
            }
            got += n;
        }
        sampler.feed(start, &data);
        let macs_of_piece = mac::encrypt_piece(&c, &key.nonce, start, &mut data);
        for (i, m) in macs_of_piece.into_iter().enumerate() {
            macs.insert(first + i, m);
        }
        while in_flight.len() >= parallel {
            if let Some(r) = in_flight.next().await {
                let (r, n) = r.map_err(|e| TransferError::Io(std::io::Error::other(e)))?;
                handle_reply(r?, &mut token);
                if let Some(p) = &progress {
                    p(n);
                }
            }
        }
        let (http, url, cfg2) = (api.http().clone(), url.clone(), cfg.clone());
        in_flight.push(AbortOnDrop(tokio::spawn(async move {
            (
                post_piece(http, url, start, Arc::new(data), cfg2).await,
                len,
            )
        })));
    }
    // The reader must not hold more than it promised.
    let mut probe = [0u8; 1];
    if size > 0 && reader.read(&mut probe).await? != 0 {
        return Err(TransferError::Io(std::io::Error::other(
            "the file grew while it was being uploaded",
        )));
    }
    while let Some(r) = in_flight.next().await {
        let (r, n) = r.map_err(|e| TransferError::Io(std::io::Error::other(e)))?;
        handle_reply(r?, &mut token);
        if let Some(p) = &progress {
            p(n);
        }
    }
    let token = token.ok_or(TransferError::NoToken)?;
    key.meta_mac = mac::condense(&c, macs.values());
    Ok(Uploaded {
        token: b64::encode(&token),
        key,
        fingerprint: sampler.finish(mtime),
        size,
    })
}

#[cfg(test)]
mod tests {
    use super::FingerprintSampler;
    use crate::crypto::fingerprint::Fingerprint;

    #[test]
    fn streamed_fingerprint_equals_whole_buffer_fingerprint() {
        for size in [0usize, 1, 16, 17, 8192, 8193, 20000, 1_000_003] {
            let data: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
            for piece in [1usize, 63, 64, 4096, 1 << 20] {
                let mut s = FingerprintSampler::new(size as u64);
                for (i, c) in data.chunks(piece).enumerate() {
                    s.feed((i * piece) as u64, c);
                }
                assert_eq!(
                    s.finish(42),
                    Fingerprint::of_bytes(&data, 42),
                    "size {size} piece {piece}"
                );
            }
        }
    }
}
