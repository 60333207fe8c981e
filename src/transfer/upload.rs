//! Uploads: `u` gets an upload URL for the known size; the reader is consumed in pieces of
//! whole MAC chunks, each encrypted with AES-CTR at its offset while its chunk MACs are
//! computed, and POSTed to `<url>/<offset>` (several in flight; a failed POST is simply sent
//! again, it is idempotent). The POST that completes the file answers the 36-byte completion
//! token. The fingerprint (`c` attribute) is sampled from the bytes as they pass.
//!
//! The caller then creates the node with `p` (see [`crate::client`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::staged::StagedFile;
use super::{join_error, pieces, AbortOnDrop, Progress, TransferConfig, TransferError};
use crate::api::commands::GetUploadUrl;
use crate::api::{network_error, read_body, ApiClient, ApiError, ErrorCode, Repeat};
use crate::crypto::aes::cipher;
use crate::crypto::fingerprint::{Fingerprint, Sampler};
use crate::crypto::{b64, mac, upload_checksum, FileKey};

/// The longest reply a chunk POST may give: the completion token (36 bytes) or an error
/// number.
const MAX_POST_REPLY: u64 = 64;

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

/// What one chunk POST answered.
enum PostReply {
    Ack,
    Token(Vec<u8>),
}

async fn post_once(
    http: &reqwest::Client,
    url: &str,
    offset: u64,
    body: &Bytes,
    cfg: &TransferConfig,
) -> Result<PostReply, TransferError> {
    let checksum = b64::encode(&upload_checksum(body));
    let resp = http
        .post(format!("{url}/{offset}?c={checksum}"))
        .timeout(cfg.request_timeout)
        .header("content-type", "application/octet-stream")
        // A `Bytes` clone shares the buffer: a retry sends the same bytes without a copy.
        .body(body.clone())
        .send()
        .await
        .map_err(network_error)?;
    let status = resp.status().as_u16();
    if status != 200 {
        return Err(ApiError::Http(status).into());
    }
    let bytes = read_body(resp, MAX_POST_REPLY).await?;
    if bytes.len() == 36 {
        return Ok(PostReply::Token(bytes.to_vec()));
    }
    if bytes.is_empty() || &bytes[..] == b"0" {
        return Ok(PostReply::Ack);
    }
    // Errors come as ASCII negative numbers.
    let text = std::str::from_utf8(&bytes).unwrap_or("");
    if let Some(n) = text.trim().parse::<i64>().ok().filter(|n| *n < 0) {
        return Err(TransferError::Server(ErrorCode::from_code(n)));
    }
    Err(ApiError::BadResponse(format!("unexpected upload reply of {} bytes", bytes.len())).into())
}

/// POSTs one piece, retrying transient failures: the same bytes to the same offset is
/// idempotent, and a chunk damaged on the way (checksum mismatch) was not stored.
async fn post_piece(
    http: reqwest::Client,
    url: Arc<String>,
    offset: u64,
    body: Bytes,
    cfg: TransferConfig,
) -> Result<PostReply, TransferError> {
    let mut retry = cfg.retry.start("upload piece", Repeat::Safe);
    loop {
        match post_once(&http, &url, offset, &body, &cfg).await {
            Ok(r) => return Ok(r),
            Err(e) => {
                let failure = e.failure();
                retry.after(e, failure).await?;
            }
        }
    }
}

/// Requests an upload URL for `size` bytes (`u`).
pub async fn upload_url(api: &ApiClient, size: u64, https: bool) -> Result<String, ApiError> {
    let r = api
        .run(&GetUploadUrl {
            s: size,
            ssl: crate::api::commands::ssl(https),
            v: 2,
        })
        .await?;
    super::checked_url(r.p, https)
}

/// Chunk POSTs of one upload in flight, `parallel` at a time, and the completion token
/// once the server answers it.
struct Sender<'a> {
    api: &'a ApiClient,
    url: Arc<String>,
    cfg: &'a TransferConfig,
    progress: Option<Progress>,
    in_flight: FuturesUnordered<AbortOnDrop<(Result<PostReply, TransferError>, u64)>>,
    token: Option<Vec<u8>>,
}

impl<'a> Sender<'a> {
    async fn new(
        api: &'a ApiClient,
        size: u64,
        cfg: &'a TransferConfig,
        progress: Option<Progress>,
    ) -> Result<Sender<'a>, TransferError> {
        let url = Arc::new(upload_url(api, size, cfg.https).await?);
        let mut s = Sender {
            api,
            url,
            cfg,
            progress,
            in_flight: FuturesUnordered::new(),
            token: None,
        };
        if size == 0 {
            // An empty file is one empty POST, which answers the token.
            s.send(0, Vec::new()).await?;
        }
        Ok(s)
    }

    /// Waits for one POST in flight to end.
    async fn one_done(&mut self) -> Result<(), TransferError> {
        if let Some(r) = self.in_flight.next().await {
            let (r, n) = r.map_err(join_error)?;
            if let PostReply::Token(t) = r? {
                self.token = Some(t);
            }
            if let Some(p) = &self.progress {
                p(n);
            }
        }
        Ok(())
    }

    /// Sends the ciphertext of the piece at `start` (waiting while `parallel` are in flight).
    async fn send(&mut self, start: u64, data: Vec<u8>) -> Result<(), TransferError> {
        while self.in_flight.len() >= self.cfg.parallel.max(1) {
            self.one_done().await?;
        }
        let (http, url, cfg) = (self.api.http().clone(), self.url.clone(), self.cfg.clone());
        let len = data.len() as u64;
        self.in_flight.push(AbortOnDrop(tokio::spawn(async move {
            (
                post_piece(http, url, start, Bytes::from(data), cfg).await,
                len,
            )
        })));
        Ok(())
    }

    /// Waits for every POST; the completion token.
    async fn finish(mut self) -> Result<String, TransferError> {
        while !self.in_flight.is_empty() {
            self.one_done().await?;
        }
        let token = self.token.ok_or(TransferError::NoToken)?;
        Ok(b64::encode(&token))
    }
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
    let mut sender = Sender::new(api, size, cfg, progress).await?;
    let mut key = FileKey::random();
    while key.is_zero_key() {
        key = FileKey::random();
    }
    let c = cipher(&key.aes);
    let mut sampler = Sampler::new(size);
    let mut macs: BTreeMap<usize, [u8; 16]> = BTreeMap::new();
    for piece in pieces(size, cfg.piece_size) {
        let (start, len, first) = (piece.start, piece.len, piece.first as usize);
        // `len` is at most `piece_size`: the buffer is bounded by our config, not by `size`.
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
        sender.send(start, data).await?;
    }
    // The reader must not hold more than it promised.
    let mut probe = [0u8; 1];
    if size > 0 && reader.read(&mut probe).await? != 0 {
        return Err(TransferError::Io(std::io::Error::other(
            "the file grew while it was being uploaded",
        )));
    }
    let token = sender.finish().await?;
    key.meta_mac = mac::condense(&c, macs.values());
    Ok(Uploaded {
        token,
        key,
        fingerprint: sampler.finish(mtime),
        size,
    })
}

/// Sends the `size` bytes of a staged file as they are on disk (already encrypted with the
/// staged file's key): no second encryption pass. Returns the completion token; the key's
/// condensed MAC and the fingerprint come from [`StagedFile::seal`], which needs none of this
/// and can run at the same time. The staged file's key is claimed first: a file whose key an
/// earlier upload used is refused (it must be re-keyed), so no two uploads share a keystream.
pub async fn send_staged(
    api: &ApiClient,
    staged: &Arc<StagedFile>,
    size: u64,
    cfg: &TransferConfig,
    progress: Option<Progress>,
) -> Result<String, TransferError> {
    let mut sender = Sender::new(api, size, cfg, progress).await?;
    // Claimed once the upload URL is there (an account over quota is refused before that,
    // and nothing was sent), before the first byte of ciphertext goes out. An empty file
    // sends none.
    staged.spend()?;
    for piece in pieces(size, cfg.piece_size) {
        let s = staged.clone();
        let data = tokio::task::spawn_blocking(move || s.ciphertext(piece.start, piece.len))
            .await
            .map_err(join_error)??;
        sender.send(piece.start, data).await?;
    }
    sender.finish().await
}
