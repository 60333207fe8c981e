//! Uploads: `u` gets an upload URL for the known size; the reader is consumed in pieces of
//! whole MAC chunks, each encrypted with AES-CTR at its offset while its chunk MACs are
//! computed, and POSTed to `<url>/<offset>` (several in flight; a failed POST is simply sent
//! again, it is idempotent). The POST that completes the file answers the 36-byte completion
//! token. The fingerprint (`c` attribute) is sampled from the bytes as they pass.
//!
//! The caller then creates the node with `p` (see [`crate::client`]).
//!
//! An upload from a file can be resumed by a later run ([`upload_file`] with a [`Resume`]):
//! the same URL, key and nonce, only the pieces the server did not acknowledge, as MEGA's SDK
//! does (`MEGA-FILES-TRANSFERS.md` §4.2). What a later run needs is told to an [`UploadLog`]
//! as it happens. Before anything is sent on a resumed upload, every acknowledged chunk of the
//! local file is read again and its MAC compared with the recorded one: a file that changed
//! is refused ([`TransferError::ResumeRefused`]) and must start over under a fresh key, so a
//! keystream never covers two different plaintexts.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::staged::StagedFile;
use super::{join_error, pieces, AbortOnDrop, Piece, Progress, TransferConfig, TransferError};
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
    if let Some(l) = &cfg.limit {
        l.send(body.len() as u64).await;
    }
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

/// Told what an upload does, as it happens, so that a later run can resume it. Calls come
/// from the upload's task, in order; a log that cannot keep up must not block it.
pub trait UploadLog: Send + Sync {
    /// The upload URL and key, before the first byte of ciphertext is sent under them.
    fn started(&self, url: &str, key: &FileKey);
    /// The server acknowledged `piece`, whose chunks' plaintext MACs are `macs` (empty when
    /// the sender does not know them: a staged file's are computed apart).
    fn acknowledged(&self, piece: Piece, macs: &[[u8; 16]]);
    /// The completion token (the file is whole on the server; `p` may still be missing).
    fn completed(&self, token: &[u8]);
}

/// What an earlier run of an upload left: its URL and key, and the chunks the server
/// acknowledged with their plaintext MACs.
pub struct Resume {
    pub url: String,
    /// The key and nonce of the earlier run (the meta-MAC is not used).
    pub key: FileKey,
    /// Chunk index → plaintext MAC, for every acknowledged chunk.
    pub acked: BTreeMap<u64, [u8; 16]>,
    /// The completion token, if the earlier run received it.
    pub token: Option<Vec<u8>>,
    /// The fingerprint of the local file (checked by the caller before resuming).
    pub fingerprint: Fingerprint,
}

impl std::fmt::Debug for Resume {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resume")
            .field("acked", &self.acked.len())
            .field("token", &self.token.is_some())
            .finish_non_exhaustive()
    }
}

/// One POST's outcome: its reply, and which piece it carried with that piece's MACs.
type Posted = (Result<PostReply, TransferError>, Piece, Vec<[u8; 16]>);

/// Chunk POSTs of one upload in flight, `parallel` at a time, and the completion token
/// once the server answers it.
struct Sender<'a> {
    api: &'a ApiClient,
    url: Arc<String>,
    cfg: &'a TransferConfig,
    progress: Option<Progress>,
    in_flight: FuturesUnordered<AbortOnDrop<Posted>>,
    token: Option<Vec<u8>>,
    log: Option<&'a dyn UploadLog>,
}

impl<'a> Sender<'a> {
    async fn new(
        api: &'a ApiClient,
        size: u64,
        cfg: &'a TransferConfig,
        progress: Option<Progress>,
    ) -> Result<Sender<'a>, TransferError> {
        let url = upload_url(api, size, cfg.https).await?;
        let mut s = Sender::at(api, url, cfg, progress, None);
        if size == 0 {
            // An empty file is one empty POST, which answers the token.
            let empty = Piece {
                start: 0,
                len: 0,
                first: 0,
                chunks: 0,
            };
            s.send(empty, Vec::new(), Vec::new()).await?;
        }
        Ok(s)
    }

    /// A sender to a URL already at hand (a fresh one, or a resumed upload's).
    fn at(
        api: &'a ApiClient,
        url: String,
        cfg: &'a TransferConfig,
        progress: Option<Progress>,
        log: Option<&'a dyn UploadLog>,
    ) -> Sender<'a> {
        Sender {
            api,
            url: Arc::new(url),
            cfg,
            progress,
            in_flight: FuturesUnordered::new(),
            token: None,
            log,
        }
    }

    /// Waits for one POST in flight to end.
    async fn one_done(&mut self) -> Result<(), TransferError> {
        if let Some(r) = self.in_flight.next().await {
            let (r, piece, macs) = r.map_err(join_error)?;
            let reply = r?;
            if let Some(log) = self.log.filter(|_| piece.chunks > 0) {
                log.acknowledged(piece, &macs);
            }
            if let PostReply::Token(t) = reply {
                if let Some(log) = self.log {
                    log.completed(&t);
                }
                self.token = Some(t);
            }
            if let Some(p) = &self.progress {
                p(piece.len);
            }
        }
        Ok(())
    }

    /// Sends the ciphertext of `piece` (waiting while `parallel` are in flight); `macs` are
    /// its chunks' plaintext MACs, for the log (empty when the caller has none).
    async fn send(
        &mut self,
        piece: Piece,
        data: Vec<u8>,
        macs: Vec<[u8; 16]>,
    ) -> Result<(), TransferError> {
        while self.in_flight.len() >= self.cfg.parallel.max(1) {
            self.one_done().await?;
        }
        let (http, url, cfg) = (self.api.http().clone(), self.url.clone(), self.cfg.clone());
        self.in_flight.push(AbortOnDrop(tokio::spawn(async move {
            let r = post_piece(http, url, piece.start, Bytes::from(data), cfg).await;
            (r, piece, macs)
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
    let mut enc = Encryptor::new(fresh_key(), size, BTreeMap::new(), None);
    for piece in pieces(size, cfg.up_piece()) {
        // `len` is at most the piece size: the buffer is bounded by our config, not by `size`.
        let mut data = vec![0u8; piece.len as usize];
        let mut got = 0usize;
        while got < data.len() {
            let n = reader.read(&mut data[got..]).await?;
            if n == 0 {
                return Err(TransferError::ShortRead {
                    got: piece.start + got as u64,
                    expected: size,
                });
            }
            got += n;
        }
        enc.send(&mut sender, piece, data).await?;
    }
    // The reader must not hold more than it promised.
    let mut probe = [0u8; 1];
    if size > 0 && reader.read(&mut probe).await? != 0 {
        return Err(TransferError::Io(std::io::Error::other(
            "the file grew while it was being uploaded",
        )));
    }
    enc.finish(sender, mtime).await
}

/// Sends the `size` bytes of a staged file as they are on disk (already encrypted with the
/// staged file's key): no second encryption pass. Returns the completion token; the key's
/// condensed MAC and the fingerprint come from [`StagedFile::seal`], which needs none of this
/// and can run at the same time. The staged file's key is claimed first: a file whose key an
/// earlier upload used is refused (it must be re-keyed), so no two uploads share a keystream.
///
/// An upload of more than one piece is recorded beside the staging file as it goes (see
/// [`StagedFile::record_upload`]): a run that dies in the middle leaves what the next one
/// needs to finish it ([`resume_staged`]).
pub async fn send_staged(
    api: &ApiClient,
    staged: &Arc<StagedFile>,
    size: u64,
    cfg: &TransferConfig,
    progress: Option<Progress>,
) -> Result<String, TransferError> {
    if size == 0 {
        let sender = Sender::new(api, size, cfg, progress).await?;
        staged.spend()?;
        return sender.finish().await;
    }
    let url = upload_url(api, size, cfg.https).await?;
    // Claimed once the upload URL is there (an account over quota is refused before that,
    // and nothing was sent), before the first byte of ciphertext goes out.
    staged.spend()?;
    // An upload of one piece has nothing to carry on: its one acknowledgement is the
    // completion (and a record would be one more file made and deleted per small file).
    let one_piece = pieces(size, cfg.up_piece()).nth(1).is_none();
    let record = (!one_piece)
        .then(|| {
            staged
                .record_upload(&url)
                .map_err(|e| {
                    tracing::warn!(
                        "{}: {e}; this upload cannot resume",
                        staged.path().display()
                    )
                })
                .ok()
        })
        .flatten();
    let log = record.as_ref().map(|r| r as &dyn UploadLog);
    let sender = Sender::at(api, url, cfg, progress, log);
    send_ciphertext(sender, staged, size, &BTreeSet::new()).await
}

/// Finishes the upload of a staging file an earlier run began and recorded (`record`): the
/// same ciphertext to the same URL, the pieces the server acknowledged skipped. The file is
/// spent (its key served that upload) and unchanged since: a spent staging file is never
/// written.
pub async fn resume_staged(
    api: &ApiClient,
    staged: &Arc<StagedFile>,
    size: u64,
    cfg: &TransferConfig,
    progress: Option<Progress>,
    record: &super::staged::UploadRecord,
) -> Result<String, TransferError> {
    if !staged.is_spent() || size == 0 {
        return Err(TransferError::ResumeRefused(
            "only a spent staging file's upload can be carried on".into(),
        ));
    }
    let log = staged
        .continue_record()
        .map_err(|e| tracing::warn!("{}: {e}", staged.path().display()))
        .ok();
    if let Some(p) = &progress {
        p(record.acked.iter().map(|&i| mac::chunk_len(i, size)).sum());
    }
    let sender = Sender::at(
        api,
        record.url.clone(),
        cfg,
        progress,
        log.as_ref().map(|r| r as &dyn UploadLog),
    );
    send_ciphertext(sender, staged, size, &record.acked).await
}

/// Sends the staged ciphertext of every piece not all of whose chunks are in `acked`.
async fn send_ciphertext(
    mut sender: Sender<'_>,
    staged: &Arc<StagedFile>,
    size: u64,
    acked: &BTreeSet<u64>,
) -> Result<String, TransferError> {
    for piece in pieces(size, sender.cfg.up_piece()) {
        if (piece.first..=piece.last()).all(|i| acked.contains(&i)) {
            continue;
        }
        let s = staged.clone();
        let data = tokio::task::spawn_blocking(move || s.ciphertext(piece.start, piece.len))
            .await
            .map_err(join_error)??;
        sender.send(piece, data, Vec::new()).await?;
    }
    sender.finish().await
}

/// A fresh key for an upload (never the all-zero AES key, which MEGA refuses).
fn fresh_key() -> FileKey {
    let mut key = FileKey::random();
    while key.is_zero_key() {
        key = FileKey::random();
    }
    key
}

/// Reads `len` bytes at `start` of `file` on a blocking thread.
async fn read_piece(
    file: &Arc<std::fs::File>,
    start: u64,
    len: u64,
    size: u64,
) -> Result<Vec<u8>, TransferError> {
    let f = file.clone();
    tokio::task::spawn_blocking(move || {
        let mut data = vec![0u8; len as usize];
        std::os::unix::fs::FileExt::read_exact_at(&*f, &mut data, start).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                TransferError::ShortRead {
                    got: start,
                    expected: size,
                }
            } else {
                TransferError::Io(e)
            }
        })?;
        Ok(data)
    })
    .await
    .map_err(join_error)?
}

/// Checks, before anything is sent, that the local file still holds what the earlier run
/// sent: each acknowledged chunk's MAC, recomputed from the file, equals the recorded one.
async fn check_acknowledged(
    file: &Arc<std::fs::File>,
    size: u64,
    resume: &Resume,
) -> Result<(), TransferError> {
    let (f, key, acked) = (file.clone(), resume.key.clone(), resume.acked.clone());
    tokio::task::spawn_blocking(move || {
        // Runs of consecutive acknowledged chunks, each read and MACed in one go.
        let mut chunks = acked.iter().peekable();
        while let Some((&first, _)) = chunks.peek() {
            let mut run = Vec::new();
            while let Some((&i, m)) = chunks.peek() {
                if i != first + run.len() as u64 {
                    break;
                }
                run.push(**m);
                chunks.next();
            }
            let now = mac::file_chunk_macs(&f, &key, size, first, run.len() as u64)?;
            if let Some(k) = (0..run.len()).find(|&k| now[k] != run[k]) {
                return Err(TransferError::ResumeRefused(format!(
                    "the file changed at byte {} since the interrupted upload",
                    mac::chunk_start(first + k as u64)
                )));
            }
        }
        Ok(())
    })
    .await
    .map_err(join_error)?
}

/// Uploads `size` bytes of a local file, fresh or resumed (see the module docs): `log` hears
/// what a later run needs. A resumed upload sends only the pieces not acknowledged; a
/// piece is skipped only if all its chunks were.
#[allow(clippy::too_many_arguments)]
pub async fn upload_file(
    api: &ApiClient,
    file: Arc<std::fs::File>,
    size: u64,
    mtime: i64,
    cfg: &TransferConfig,
    progress: Option<Progress>,
    resume: Option<Resume>,
    log: Option<&dyn UploadLog>,
) -> Result<Uploaded, TransferError> {
    let Some(resume) = resume.filter(|_| size > 0) else {
        if size == 0 {
            return upload(api, &mut tokio::io::empty(), 0, mtime, cfg, progress).await;
        }
        let key = fresh_key();
        let url = upload_url(api, size, cfg.https).await?;
        if let Some(log) = log {
            log.started(&url, &key);
        }
        let sender = Sender::at(api, url, cfg, progress, log);
        let enc = Encryptor::new(key, size, BTreeMap::new(), None);
        return send_file(sender, &file, mtime, enc).await;
    };
    check_acknowledged(&file, size, &resume).await?;
    let Resume {
        url,
        key,
        acked,
        token,
        fingerprint,
    } = resume;
    if let Some(p) = &progress {
        p(acked.keys().map(|&i| mac::chunk_len(i, size)).sum());
    }
    let mut sender = Sender::at(api, url, cfg, progress, log);
    if let Some(t) = token {
        // The file is whole on the server already; only `p` is missing.
        sender.token = Some(t);
    }
    let enc = Encryptor::new(key, size, acked, Some(fingerprint));
    send_file(sender, &file, mtime, enc).await
}

/// The encrypting side of one upload: its key, the chunk MACs and the fingerprint as the
/// pieces pass (or the fingerprint given), then what `p` needs.
struct Encryptor {
    key: FileKey,
    cipher: aes::Aes128,
    macs: BTreeMap<u64, [u8; 16]>,
    /// The fingerprint as given, or sampled from the pieces as they pass.
    fingerprint: Result<Fingerprint, Sampler>,
    size: u64,
}

impl Encryptor {
    /// `macs`: the chunks already sent (a resumed upload), whose pieces are not sent again.
    fn new(
        key: FileKey,
        size: u64,
        macs: BTreeMap<u64, [u8; 16]>,
        fingerprint: Option<Fingerprint>,
    ) -> Self {
        Encryptor {
            cipher: cipher(&key.aes),
            key,
            macs,
            fingerprint: fingerprint.ok_or_else(|| Sampler::new(size)),
            size,
        }
    }

    /// Whether every chunk of `piece` was sent already.
    fn has(&self, piece: &Piece) -> bool {
        (piece.first..=piece.last()).all(|i| self.macs.contains_key(&i))
    }

    /// Encrypts the plaintext of `piece` (on a blocking thread: it is CPU work), records its
    /// chunk MACs and hands it to `sender`.
    async fn send(
        &mut self,
        sender: &mut Sender<'_>,
        piece: Piece,
        mut data: Vec<u8>,
    ) -> Result<(), TransferError> {
        if let Err(sampler) = &mut self.fingerprint {
            sampler.feed(piece.start, &data);
        }
        let (c, nonce) = (self.cipher.clone(), self.key.nonce);
        let (data, piece_macs) = tokio::task::spawn_blocking(move || {
            let m = mac::encrypt_piece(&c, &nonce, piece.start, &mut data);
            (data, m)
        })
        .await
        .map_err(join_error)?;
        for (i, m) in piece_macs.iter().enumerate() {
            self.macs.insert(piece.first + i as u64, *m);
        }
        sender.send(piece, data, piece_macs).await
    }

    /// What `p` needs, once every chunk was sent and `sender` has the token.
    async fn finish(self, sender: Sender<'_>, mtime: i64) -> Result<Uploaded, TransferError> {
        let token = sender.finish().await?;
        if self.macs.len() as u64 != mac::chunk_count(self.size) {
            return Err(TransferError::ResumeRefused(
                "the interrupted upload's record does not cover the file".into(),
            ));
        }
        let mut key = self.key;
        key.meta_mac = mac::condense(&self.cipher, self.macs.values());
        Ok(Uploaded {
            token,
            key,
            fingerprint: self.fingerprint.unwrap_or_else(|s| s.finish(mtime)),
            size: self.size,
        })
    }
}

/// Reads, encrypts and sends the pieces of `file` not all of whose chunks were sent.
async fn send_file(
    mut sender: Sender<'_>,
    file: &Arc<std::fs::File>,
    mtime: i64,
    mut enc: Encryptor,
) -> Result<Uploaded, TransferError> {
    let size = enc.size;
    if sender.token.is_none() {
        for piece in pieces(size, sender.cfg.up_piece()) {
            if enc.has(&piece) {
                continue;
            }
            let data = read_piece(file, piece.start, piece.len, size).await?;
            enc.send(&mut sender, piece, data).await?;
        }
    }
    enc.finish(sender, mtime).await
}
