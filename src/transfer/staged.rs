//! A file's new content while it is being written (the mount's staging files), kept on local
//! disk only as ciphertext: it is encrypted, as it is written, with the key of the version it
//! will become (AES-CTR is seekable, so writes at any offset cost one keystream pass), and that
//! key is stored beside it wrapped with the account's master key, together with the MEGA path
//! it is for (encrypted with the same key). Nothing in the staging directory is readable
//! without the account.
//!
//! The chunk MACs of the content are kept per chunk: computed while the file is filled
//! sequentially (the previous version's content when a file is opened for writing), marked
//! stale by writes and truncations, and recomputed only for the stale chunks when the file is
//! sealed for upload. The upload then sends the staged bytes as they are: no second encryption
//! pass.
//!
//! A staging file's key serves one upload. Sending it marks the file spent
//! ([`StagedFile::spend`]); a spent file is never sent again, and before it is changed or sent
//! again it is re-keyed ([`StagedFile::rekey`]): its content copied under a fresh key into a
//! new staging file, which replaces it. A staging file an earlier run left counts as spent (it
//! may have been sent before the crash). So no two uploads share a (key, nonce), and no local
//! ciphertext shares a key with content the server holds but the one upload it was made for.
//!
//! Invariants: the staging file and its key file are created 0600 and never over an existing
//! file; a chunk MAC is either fresh (the chunk has not changed since) or absent; a spent file
//! is not sent again.

use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use aes::Aes128;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::crypto::aes::{cipher, ctr_apply};
use crate::crypto::fingerprint::Fingerprint;
use crate::crypto::{attr, b64, mac, FileKey, MasterKey};
use crate::local::names::create_private;

/// Bytes encrypted or read per step when filling or extending.
const STEP: usize = 1 << 20;

/// What is stored beside a staging file (`<staging>.key`).
#[derive(Serialize, Deserialize)]
struct KeyFile {
    v: u32,
    /// The version's file key, packed, wrapped with the master key.
    key: String,
    /// `{"path": MEGA path}` encrypted like node attributes with the file key.
    note: String,
}

fn key_file(staging: &Path) -> PathBuf {
    staging.with_extension("key")
}

/// Present beside a staging file while it holds writes MEGA does not have yet: empty while
/// the file is open, a [`Closed`] record once its handle was closed with the upload still to
/// come (write-back).
fn unsaved_marker(staging: &Path) -> PathBuf {
    staging.with_extension("unsaved")
}

/// Beside a spent staging file while its upload runs (`<staging>.upload`): the URL, then a
/// line per acknowledged piece — what the next run needs to finish that upload.
fn upload_record(staging: &Path) -> PathBuf {
    staging.with_extension("upload")
}

/// The upload of a spent staging file as an earlier run left it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadRecord {
    pub url: String,
    /// Unix seconds when it began.
    pub at: i64,
    /// The size it was for.
    pub size: u64,
    /// Chunks the server acknowledged.
    pub acked: std::collections::BTreeSet<u64>,
    /// The server answered the completion token: the file may already be a node, so it is
    /// not carried on (only re-keyed and sent afresh).
    pub complete: bool,
}

/// Appends to a staging file's upload record as the upload goes.
pub struct UploadLogFile(Mutex<std::fs::File>);

impl super::upload::UploadLog for UploadLogFile {
    fn started(&self, _url: &str, _key: &FileKey) {}

    fn acknowledged(&self, piece: super::Piece, _macs: &[[u8; 16]]) {
        self.line(&json!({"c": piece.first, "n": piece.chunks}));
    }

    fn completed(&self, _token: &[u8]) {
        self.line(&json!({"t": true}));
    }
}

impl UploadLogFile {
    fn line(&self, v: &Value) {
        let mut f = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = crate::local::jsonl::append(&mut f, v) {
            tracing::warn!("cannot record an upload's progress: {e}");
        }
    }
}

fn io_other(msg: impl Into<String>) -> std::io::Error {
    std::io::Error::other(msg.into())
}

/// Chunks read and MACed together when sealing (at most 8 MiB: chunks are at most 1 MiB).
const SEAL_BATCH: usize = 8;

/// MAC bookkeeping of a staged file.
#[derive(Default)]
struct Macs {
    /// Fresh MACs by chunk index.
    fresh: BTreeMap<u64, [u8; 16]>,
}

impl Macs {
    /// Forgets the MACs of the chunks that `[start, end)` touches.
    fn stale(&mut self, start: u64, end: u64) {
        if end <= start {
            return;
        }
        let (a, b) = (mac::chunk_index(start), mac::chunk_index(end - 1));
        let touched: Vec<u64> = self.fresh.range(a..=b).map(|(k, _)| *k).collect();
        for k in touched {
            self.fresh.remove(&k);
        }
    }
}

/// What the unsaved marker of a staging file whose handle was closed (its upload queued)
/// says: the content is final, so a crash recovers it in place when it safely can.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Closed {
    /// The node the staged content replaces (its handle), if it replaces one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    /// The mtime set on the file (Unix seconds), if one was set explicitly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtime: Option<i64>,
}

/// A staged file: ciphertext on disk, the key in memory (and wrapped beside it).
pub struct StagedFile {
    path: PathBuf,
    file: std::fs::File,
    key: FileKey,
    cipher: Aes128,
    macs: Mutex<Macs>,
    /// Held while the length may change (writes, truncations), so that filling the gap a
    /// write past the end leaves never races another write.
    extent: Mutex<()>,
    /// The MEGA path it is for (also in the key file, encrypted).
    origin: String,
    /// An upload of it started: its key is not used for another.
    spent: AtomicBool,
}

impl std::fmt::Debug for StagedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StagedFile")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// A staged file ready to upload: its size, the key with the condensed MAC, the fingerprint.
#[derive(Debug, Clone)]
pub struct Sealed {
    pub size: u64,
    pub key: FileKey,
    pub fingerprint: Fingerprint,
}

impl StagedFile {
    /// A new, empty staging file at `path` (0600, failing if it exists) for the MEGA path
    /// `origin`, with a fresh key wrapped by `master` beside it.
    pub fn create(path: &Path, master: &MasterKey, origin: &str) -> std::io::Result<StagedFile> {
        let mut key = FileKey::random();
        while key.is_zero_key() {
            key = FileKey::random();
        }
        let file = create_private(path)?;
        let mut attrs = Map::new();
        attrs.insert("path".into(), json!(origin));
        let kf = KeyFile {
            v: 1,
            key: b64::encode(&master.0.wrap(&key.pack())),
            note: b64::encode(&attr::encrypt(&key.aes, &attrs)),
        };
        let written = create_private(&key_file(path)).and_then(|mut f| {
            let text = serde_json::to_vec(&kf).map_err(io_other_err)?;
            std::io::Write::write_all(&mut f, &text)?;
            f.sync_all()
        });
        if let Err(e) = written {
            let _ = std::fs::remove_file(path);
            let _ = std::fs::remove_file(key_file(path));
            return Err(e);
        }
        Ok(StagedFile::with(path, file, key, origin, false))
    }

    fn with(
        path: &Path,
        file: std::fs::File,
        key: FileKey,
        origin: &str,
        spent: bool,
    ) -> StagedFile {
        StagedFile {
            path: path.to_path_buf(),
            cipher: cipher(&key.aes),
            file,
            key,
            macs: Mutex::new(Macs::default()),
            extent: Mutex::new(()),
            origin: origin.to_string(),
            spent: AtomicBool::new(spent),
        }
    }

    /// Whether an upload of this file started: its key must not be used again.
    pub fn is_spent(&self) -> bool {
        self.spent.load(Ordering::Acquire)
    }

    /// Claims the key for one upload, before any of the ciphertext is sent. Fails if an
    /// upload already claimed it: the file must be [re-keyed](Self::rekey) first.
    pub fn spend(&self) -> std::io::Result<()> {
        if self.spent.swap(true, Ordering::AcqRel) {
            return Err(io_other(
                "refusing to send a staging file whose key was already used for an upload",
            ));
        }
        Ok(())
    }

    /// A copy of this staging file under a fresh key (a new staging file beside it, every
    /// chunk MAC computed on the way, synced to disk, with the unsaved marker if this one had
    /// it), which replaces it: this one's files are removed once the copy is complete. On an
    /// error nothing changed. The caller keeps anybody from changing this file meanwhile.
    pub fn rekey(&self, master: &MasterKey) -> std::io::Result<StagedFile> {
        let dir = self.path.parent().unwrap_or_else(|| Path::new("."));
        let path = dir.join(format!("{:016x}", rand::random::<u64>()));
        let fresh = StagedFile::create(&path, master, &self.origin)?;
        let copied = (|| {
            let size = self.len()?;
            // Up to SEAL_BATCH chunks at a time: decrypted with the old key, then encrypted
            // with the new one while their MACs are computed side by side.
            let (mut first, mut at) = (0u64, 0u64);
            while at < size {
                let last = (first + SEAL_BATCH as u64 - 1).min(mac::chunk_count(size) - 1);
                let end = mac::chunk_start(last + 1).min(size);
                let mut buf = self.read_at(at, (end - at) as usize)?;
                if buf.len() as u64 != end - at {
                    return Err(io_other("the staging file changed while it was re-keyed"));
                }
                let macs = mac::encrypt_piece(&fresh.cipher, &fresh.key.nonce, at, &mut buf);
                fresh.file.write_all_at(&buf, at)?;
                let mut m = fresh.macs();
                for (i, v) in macs.into_iter().enumerate() {
                    m.fresh.insert(first + i as u64, v);
                }
                (first, at) = (last + 1, end);
            }
            if fresh.len()? != size {
                return Err(io_other("the staging file changed while it was re-keyed"));
            }
            fresh.file.sync_data()?;
            let marker = unsaved_marker(&self.path);
            if marker.exists() {
                match Self::closed(&self.path) {
                    Some(c) => fresh.set_closed(&c)?,
                    None => fresh.set_unsaved(true)?,
                }
            }
            Ok(())
        })();
        if let Err(e) = copied {
            StagedFile::remove(&path);
            return Err(e);
        }
        // The marker goes last: a crash before it leaves both files marked (recovered
        // twice), never neither.
        let _ = std::fs::remove_file(unsaved_marker(&self.path));
        StagedFile::remove(&self.path);
        Ok(fresh)
    }

    /// The MEGA path it is for.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Opens a staging file an earlier run left, with its key (all MACs to be recomputed);
    /// returns it with the MEGA path it was for. It counts as spent: the run that left it may
    /// have sent it.
    pub fn open(path: &Path, master: &MasterKey) -> std::io::Result<(StagedFile, String)> {
        let text = std::fs::read(key_file(path))?;
        let kf: KeyFile = serde_json::from_slice(&text)
            .map_err(|_| io_other("the staging key file is not valid"))?;
        if kf.v != 1 {
            return Err(io_other(format!("staging key file version {}", kf.v)));
        }
        let wrapped = b64::decode(&kf.key, "staging key").map_err(io_other_err)?;
        let raw = master
            .0
            .unwrap_key(&wrapped, "staging key")
            .map_err(io_other_err)?;
        let raw: [u8; 32] = raw
            .as_slice()
            .try_into()
            .map_err(|_| io_other("the staging key has the wrong length"))?;
        let key = FileKey::unpack(&raw);
        let note = b64::decode(&kf.note, "staging note").map_err(io_other_err)?;
        let origin = attr::decrypt(&key.aes, &note)
            .ok()
            .and_then(|m| m.get("path").and_then(Value::as_str).map(str::to_string))
            .ok_or_else(|| io_other("the staging key does not match this account"))?;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)?;
        let staged = StagedFile::with(path, file, key, &origin, true);
        Ok((staged, origin))
    }

    /// The MEGA path a staging file an earlier run left was for (without opening it).
    pub fn origin_of(path: &Path, master: &MasterKey) -> Option<String> {
        Self::open(path, master).ok().map(|(_, o)| o)
    }

    /// Whether a staging file has its key beside it (older versions staged plaintext).
    pub fn has_key(path: &Path) -> bool {
        key_file(path).exists()
    }

    /// Records on disk whether the staging file holds writes MEGA does not have yet, so that
    /// after a crash only those are recovered (not a file that was merely open for writing,
    /// or whose last change was already committed).
    pub fn set_unsaved(&self, unsaved: bool) -> std::io::Result<()> {
        let marker = unsaved_marker(&self.path);
        if unsaved {
            match create_private(&marker) {
                Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(e),
                _ => Ok(()),
            }
        } else {
            match std::fs::remove_file(&marker) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            }
        }
    }

    /// Marks the staging file as holding unsaved writes of a closed handle (see [`Closed`]),
    /// synced to disk with its content: what a crash leaves is then recovered as final.
    ///
    /// The marker is rewritten in place (no new file per close: creating and deleting files
    /// is most of what a small file costs here): a crash half-way leaves it empty or
    /// unreadable, which only means "unsaved", recovered beside the original.
    pub fn set_closed(&self, closed: &Closed) -> std::io::Result<()> {
        self.file.sync_data()?;
        let text = serde_json::to_vec(closed).map_err(io_other_err)?;
        let f = crate::local::names::open_private(&unsaved_marker(&self.path))?;
        f.set_len(0)?;
        f.write_all_at(&text, 0)?;
        f.sync_all()
    }

    /// The [`Closed`] record of a staging file an earlier run left, if its handle was closed.
    pub fn closed(path: &Path) -> Option<Closed> {
        let text = std::fs::read(unsaved_marker(path)).ok()?;
        if text.is_empty() {
            return None;
        }
        serde_json::from_slice(&text).ok()
    }

    /// Starts the record of this (spent) file's upload to `url` (see [`UploadRecord`]).
    pub fn record_upload(&self, url: &str) -> std::io::Result<UploadLogFile> {
        let path = upload_record(&self.path);
        let _ = std::fs::remove_file(&path);
        let mut f = create_private(&path)?;
        let head = json!({"url": url, "at": crate::local::time::now(), "size": self.len()?});
        crate::local::jsonl::append(&mut f, &head)?;
        Ok(UploadLogFile(Mutex::new(f)))
    }

    /// Appends to the record an earlier run began (a resumed upload).
    pub fn continue_record(&self) -> std::io::Result<UploadLogFile> {
        let f = std::fs::OpenOptions::new()
            .append(true)
            .open(upload_record(&self.path))?;
        Ok(UploadLogFile(Mutex::new(f)))
    }

    /// The record of the upload an earlier run began with the staging file at `path`, if
    /// it left one that reads.
    pub fn upload_record(path: &Path) -> Option<UploadRecord> {
        let text = std::fs::read_to_string(upload_record(path)).ok()?;
        let mut it = crate::local::jsonl::read(&text)?.into_iter();
        let head = it.next()?;
        let mut r = UploadRecord {
            url: head["url"].as_str()?.to_string(),
            at: head["at"].as_i64()?,
            size: head["size"].as_u64()?,
            acked: Default::default(),
            complete: false,
        };
        let chunks = mac::chunk_count(r.size);
        for v in it {
            if v["t"].as_bool() == Some(true) {
                r.complete = true;
                continue;
            }
            let (c, n) = (v["c"].as_u64()?, v["n"].as_u64()?);
            if c.checked_add(n)? > chunks {
                return None;
            }
            r.acked.extend(c..c + n);
        }
        Some(r)
    }

    /// Whether a staging file an earlier run left holds writes that were never committed
    /// (plaintext staging files of older versions always count as such).
    pub fn is_unsaved(path: &Path) -> bool {
        !Self::has_key(path) || unsaved_marker(path).exists()
    }

    /// Whether `path` is a staging file (not one of the files beside one).
    pub fn is_staging(path: &Path) -> bool {
        path.extension().is_none()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the staging file and the key beside it.
    pub fn remove(path: &Path) {
        let _ = std::fs::remove_file(path);
        let _ = std::fs::remove_file(key_file(path));
        let _ = std::fs::remove_file(unsaved_marker(path));
        let _ = std::fs::remove_file(upload_record(path));
        // Notes of older versions (plaintext paths).
        let _ = std::fs::remove_file(path.with_extension("path"));
    }

    pub fn len(&self) -> std::io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    pub fn is_empty(&self) -> std::io::Result<bool> {
        Ok(self.len()? == 0)
    }

    fn macs(&self) -> std::sync::MutexGuard<'_, Macs> {
        self.macs.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn extent(&self) -> std::sync::MutexGuard<'_, ()> {
        self.extent.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes plaintext at `offset` (encrypted on the way). A write past the end first fills
    /// the gap with (encrypted) zeros, as a write past the end of a local file reads back.
    pub fn write_at(&self, offset: u64, plain: &[u8]) -> std::io::Result<()> {
        let mut buf = plain.to_vec();
        ctr_apply(&self.cipher, &self.key.nonce, offset, &mut buf);
        let _extent = self.extent();
        let len = self.len()?;
        if offset > len {
            self.zero_fill(len, offset)?;
        }
        self.macs().stale(offset, offset + buf.len() as u64);
        self.file.write_all_at(&buf, offset)
    }

    /// Writes encrypted zeros over `[from, to)`.
    fn zero_fill(&self, from: u64, to: u64) -> std::io::Result<()> {
        let zeros = vec![0u8; STEP];
        let mut at = from;
        while at < to {
            let n = ((to - at) as usize).min(STEP);
            let mut buf = zeros[..n].to_vec();
            ctr_apply(&self.cipher, &self.key.nonce, at, &mut buf);
            self.file.write_all_at(&buf, at)?;
            at += n as u64;
        }
        // The chunk that was the last one may have grown.
        self.macs().stale(from.saturating_sub(1), to);
        Ok(())
    }

    /// Reads up to `len` bytes of plaintext at `offset` (fewer at the end).
    pub fn read_at(&self, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        let mut got = 0;
        while got < len {
            let n = self.file.read_at(&mut buf[got..], offset + got as u64)?;
            if n == 0 {
                break;
            }
            got += n;
        }
        buf.truncate(got);
        ctr_apply(&self.cipher, &self.key.nonce, offset, &mut buf);
        Ok(buf)
    }

    /// Truncates or extends (with zeros, encrypted like everything else).
    pub fn set_len(&self, size: u64) -> std::io::Result<()> {
        let _extent = self.extent();
        let old = self.len()?;
        if size <= old {
            self.file.set_len(size)?;
            // The chunk now cut short changed; the ones past the end are gone.
            self.macs().stale(size.saturating_sub(1), old);
            return Ok(());
        }
        self.zero_fill(old, size)
    }

    /// Appends plaintext at `offset` (the current end) during a sequential fill, computing
    /// the MACs of the chunks it completes. `pending` holds the start of an unfinished chunk
    /// between calls; [`StagedFile::fill_done`] ends the fill.
    pub fn fill(
        &self,
        offset: &mut u64,
        pending: &mut Vec<u8>,
        data: &[u8],
    ) -> std::io::Result<()> {
        pending.extend_from_slice(data);
        loop {
            let start = *offset;
            let idx = mac::chunk_index(start);
            let len = (mac::chunk_start(idx + 1) - start) as usize;
            if pending.len() < len {
                return Ok(());
            }
            let chunk: Vec<u8> = pending.drain(..len).collect();
            self.fill_chunk(start, chunk)?;
            *offset += len as u64;
        }
    }

    /// Ends a sequential fill: the last, possibly short, chunk.
    pub fn fill_done(&self, offset: u64, pending: Vec<u8>) -> std::io::Result<()> {
        if pending.is_empty() {
            return Ok(());
        }
        self.fill_chunk(offset, pending)
    }

    fn fill_chunk(&self, start: u64, mut chunk: Vec<u8>) -> std::io::Result<()> {
        let m = mac::chunk_mac(&self.cipher, &self.key.nonce, &chunk);
        ctr_apply(&self.cipher, &self.key.nonce, start, &mut chunk);
        self.file.write_all_at(&chunk, start)?;
        self.macs().fresh.insert(mac::chunk_index(start), m);
        Ok(())
    }

    /// The ciphertext of `[start, start + len)` as it will be uploaded.
    pub fn ciphertext(&self, start: u64, len: u64) -> std::io::Result<Vec<u8>> {
        let mut buf = vec![0u8; len as usize];
        self.file.read_exact_at(&mut buf, start)?;
        Ok(buf)
    }

    /// Computes what the upload needs: the MACs of the chunks that changed (the others are
    /// known), the condensed MAC and the fingerprint. CPU and disk work: call it from a
    /// blocking thread.
    pub fn seal(&self, mtime: i64) -> std::io::Result<Sealed> {
        let size = self.len()?;
        let mut all = Vec::new();
        // In order, so that consecutive chunks form runs.
        let missing: Vec<u64> = {
            let m = self.macs();
            (0..mac::chunk_count(size))
                .filter(|i| !m.fresh.contains_key(i))
                .collect()
        };
        // Runs of up to SEAL_BATCH chunks are read at once and their MACs computed side by
        // side (`chunk_macs` interleaves the serial CBC-MAC chains: about twice the speed of
        // one chain at a time).
        let mut computed = BTreeMap::new();
        for run in missing.chunk_by(|a, b| a + 1 == *b) {
            for batch in run.chunks(SEAL_BATCH) {
                let (first, last) = (batch[0], batch[batch.len() - 1]);
                let start = mac::chunk_start(first);
                let end = mac::chunk_start(last + 1).min(size);
                let plain = self.read_at(start, (end - start) as usize)?;
                let pieces: Vec<&[u8]> = batch
                    .iter()
                    .map(|&i| {
                        let a = (mac::chunk_start(i) - start) as usize;
                        let b = ((mac::chunk_start(i + 1).min(size)) - start) as usize;
                        &plain[a.min(plain.len())..b.min(plain.len())]
                    })
                    .collect();
                let macs = mac::chunk_macs(&self.cipher, &self.key.nonce, &pieces);
                computed.extend(batch.iter().copied().zip(macs));
            }
        }
        {
            let mut m = self.macs();
            m.fresh.extend(computed);
            for (i, _) in mac::chunks(size).enumerate() {
                let v = m
                    .fresh
                    .get(&(i as u64))
                    .copied()
                    .ok_or_else(|| io_other("the staging file changed while it was sealed"))?;
                all.push(v);
            }
        }
        let mut key = self.key.clone();
        key.meta_mac = mac::condense(&self.cipher, all.iter());
        Ok(Sealed {
            size,
            fingerprint: self.fingerprint(size, mtime)?,
            key,
        })
    }

    /// The fingerprint of the plaintext, reading only the sampled windows.
    fn fingerprint(&self, size: u64, mtime: i64) -> std::io::Result<Fingerprint> {
        struct Plain<'a>(&'a StagedFile);
        impl crate::crypto::fingerprint::ReadAt for Plain<'_> {
            fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
                let got = self.0.read_at(offset, buf.len())?;
                if got.len() != buf.len() {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                buf.copy_from_slice(&got);
                Ok(())
            }
        }
        let crc = crate::crypto::fingerprint::crc(&mut Plain(self), size)?;
        Ok(Fingerprint { crc, mtime })
    }
}

/// Fills a staged file sequentially from a download (an `AsyncWrite`), computing chunk MACs
/// on the way; [`Filler::finish`] writes the last, short chunk.
pub struct Filler {
    staged: std::sync::Arc<StagedFile>,
    offset: u64,
    pending: Vec<u8>,
}

impl StagedFile {
    /// A writer that fills this (empty) staged file from the start.
    pub fn filler(self: &std::sync::Arc<Self>) -> Filler {
        Filler {
            staged: self.clone(),
            offset: 0,
            pending: Vec::new(),
        }
    }
}

impl Filler {
    pub fn finish(self) -> std::io::Result<()> {
        self.staged.fill_done(self.offset, self.pending)
    }
}

impl tokio::io::AsyncWrite for Filler {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let me = self.get_mut();
        // Local positional writes: short, done in place.
        let r = me.staged.fill(&mut me.offset, &mut me.pending, buf);
        std::task::Poll::Ready(r.map(|()| buf.len()))
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

fn io_other_err(e: impl std::fmt::Display) -> std::io::Error {
    io_other(e.to_string())
}

/// A staged file's plaintext by offset (thumbnails are made from it while it uploads).
impl crate::crypto::fingerprint::ReadAt for std::sync::Arc<StagedFile> {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let plain = StagedFile::read_at(self, offset, buf.len())?;
        if plain.len() != buf.len() {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.copy_from_slice(&plain);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Key128;

    fn master() -> MasterKey {
        MasterKey(Key128([3; 16]))
    }

    fn data(n: usize, seed: u8) -> Vec<u8> {
        (0..n)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    #[test]
    fn writes_anywhere_read_back_and_nothing_plain_is_on_disk() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s");
        let s = StagedFile::create(&p, &master(), "/docs/secret.txt").unwrap();
        let marker = b"PLAINTEXT MARKER 0123456789";
        s.write_at(0, &data(500_000, 1)).unwrap();
        s.write_at(123_457, marker).unwrap();
        // Past the end: the gap reads back as zeros, as on a local file.
        s.write_at(600_000, b"tail").unwrap();
        let mut want = data(500_000, 1);
        want[123_457..123_457 + marker.len()].copy_from_slice(marker);
        want.resize(600_000, 0);
        want.extend_from_slice(b"tail");
        assert_eq!(s.read_at(123_457, marker.len()).unwrap(), marker);
        assert_eq!(s.read_at(0, 700_000).unwrap(), want);
        for f in std::fs::read_dir(d.path()).unwrap() {
            let bytes = std::fs::read(f.unwrap().path()).unwrap();
            assert!(!bytes.windows(marker.len()).any(|w| w == marker));
            assert!(!bytes.windows(10).any(|w| w == b"secret.txt"));
        }
        // Reopened with the account's key: the same content and path.
        drop(s);
        let (s, origin) = StagedFile::open(&p, &master()).unwrap();
        assert_eq!(origin, "/docs/secret.txt");
        assert_eq!(s.read_at(123_457, marker.len()).unwrap(), marker);
        assert!(StagedFile::open(&p, &MasterKey(Key128([4; 16]))).is_err());
    }

    #[test]
    fn sealing_gives_the_mac_and_fingerprint_of_the_plaintext() {
        let d = tempfile::tempdir().unwrap();
        let s = StagedFile::create(&d.path().join("s"), &master(), "/f").unwrap();
        // A sequential fill (MACs computed on the way), then edits in two chunks, a
        // truncation and an extension.
        let body = data(3_000_000, 2);
        let (mut at, mut pending) = (0u64, Vec::new());
        for piece in body.chunks(100_001) {
            s.fill(&mut at, &mut pending, piece).unwrap();
        }
        s.fill_done(at, pending).unwrap();
        let mut want = body.clone();
        s.write_at(10, b"edit one").unwrap();
        want[10..18].copy_from_slice(b"edit one");
        s.write_at(2_000_000, b"edit two").unwrap();
        want[2_000_000..2_000_008].copy_from_slice(b"edit two");
        s.set_len(2_500_000).unwrap();
        want.truncate(2_500_000);
        s.set_len(2_600_000).unwrap();
        want.resize(2_600_000, 0);
        let sealed = s.seal(42).unwrap();
        assert_eq!(sealed.size, 2_600_000);
        assert_eq!(
            sealed.key.meta_mac,
            mac::meta_mac(&s.key.aes, &s.key.nonce, &want)
        );
        assert_eq!(sealed.fingerprint, Fingerprint::of_bytes(&want, 42));
        // The ciphertext is what a download decrypts back to the plaintext.
        let mut c = s.ciphertext(0, 2_600_000).unwrap();
        ctr_apply(&s.cipher, &s.key.nonce, 0, &mut c);
        assert_eq!(c, want);
        // Sealing again without changes reuses every MAC.
        assert_eq!(s.seal(42).unwrap().key.meta_mac, sealed.key.meta_mac);
    }

    /// A file written only through `write_at` (as the mount writes): every chunk's MAC is
    /// computed when sealing, in batches, and the result is the plaintext's MAC.
    #[test]
    fn sealing_a_written_file_macs_every_chunk_in_batches() {
        let d = tempfile::tempdir().unwrap();
        let s = StagedFile::create(&d.path().join("s"), &master(), "/f").unwrap();
        let body = data(13_000_123, 4); // 17 chunks: more than two batches, a short last one
        for (i, piece) in body.chunks(128 * 1024).enumerate() {
            s.write_at((i * 128 * 1024) as u64, piece).unwrap();
        }
        let sealed = s.seal(7).unwrap();
        assert_eq!(
            sealed.key.meta_mac,
            mac::meta_mac(&s.key.aes, &s.key.nonce, &body)
        );
    }

    #[test]
    fn the_unsaved_marker_follows_set_unsaved_and_goes_with_remove() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s");
        let s = StagedFile::create(&p, &master(), "/u").unwrap();
        assert!(!StagedFile::is_unsaved(&p));
        s.set_unsaved(true).unwrap();
        s.set_unsaved(true).unwrap(); // idempotent
        assert!(StagedFile::is_unsaved(&p));
        s.set_unsaved(false).unwrap();
        s.set_unsaved(false).unwrap();
        assert!(!StagedFile::is_unsaved(&p));
        s.set_unsaved(true).unwrap();
        StagedFile::remove(&p);
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0);
        // A plaintext staging file of an older version (no key beside it) counts as unsaved.
        std::fs::write(&p, b"old").unwrap();
        assert!(StagedFile::is_unsaved(&p));
    }

    /// A closed handle's record (write-back) is read back, follows a re-key, and a damaged
    /// one means only "unsaved" (recovered beside the original, never in place).
    #[test]
    fn the_closed_record_is_kept_with_the_file_and_damage_only_means_unsaved() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s");
        let s = StagedFile::create(&p, &master(), "/c.txt").unwrap();
        s.write_at(0, b"final").unwrap();
        s.set_unsaved(true).unwrap();
        assert_eq!(StagedFile::closed(&p), None, "open, not closed");
        let c = Closed {
            base: Some("AbCdEfGh".into()),
            mtime: Some(1_500_000_000),
        };
        s.set_closed(&c).unwrap();
        s.set_closed(&c).unwrap(); // rewritten in place
        assert_eq!(StagedFile::closed(&p), Some(c.clone()));
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 3);
        let fresh = s.rekey(&master()).unwrap();
        assert_eq!(StagedFile::closed(fresh.path()), Some(c));
        assert!(StagedFile::is_unsaved(fresh.path()));
        std::fs::write(unsaved_marker(fresh.path()), b"{\"base\": ").unwrap();
        assert_eq!(StagedFile::closed(fresh.path()), None);
        assert!(StagedFile::is_unsaved(fresh.path()));
        fresh.set_unsaved(false).unwrap();
        assert!(!StagedFile::is_unsaved(fresh.path()));
    }

    /// A re-keyed copy has the same plaintext under a new key and nonce, its MACs computed
    /// for the new key, the unsaved marker carried over, and the old files gone.
    #[test]
    fn rekeying_copies_the_content_under_a_fresh_key_and_replaces_the_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s");
        let s = StagedFile::create(&p, &master(), "/docs/a.bin").unwrap();
        let body = data(2_345_678, 5);
        s.write_at(0, &body).unwrap();
        s.set_unsaved(true).unwrap();
        assert!(!s.is_spent());
        s.spend().unwrap();
        assert!(s.spend().is_err(), "a key is claimed once");
        let fresh = s.rekey(&master()).unwrap();
        assert!(!fresh.is_spent());
        assert_ne!(fresh.key.aes, s.key.aes);
        assert_ne!(fresh.key.nonce, s.key.nonce);
        assert_eq!(fresh.origin(), "/docs/a.bin");
        assert_eq!(fresh.read_at(0, 3_000_000).unwrap(), body);
        assert!(StagedFile::is_unsaved(fresh.path()));
        assert!(!p.exists() && !StagedFile::has_key(&p) && !unsaved_marker(&p).exists());
        // Every chunk MAC was computed on the way: sealing needs no pass of its own, and
        // gives the new key's MAC of the same plaintext.
        assert!(fresh.macs().fresh.len() as u64 == mac::chunk_count(body.len() as u64));
        let sealed = fresh.seal(3).unwrap();
        assert_eq!(
            sealed.key.meta_mac,
            mac::meta_mac(&fresh.key.aes, &fresh.key.nonce, &body)
        );
        // Reopened from disk (as the next start would): the same content, and spent.
        let path = fresh.path().to_path_buf();
        drop(fresh);
        let (again, origin) = StagedFile::open(&path, &master()).unwrap();
        assert_eq!(origin, "/docs/a.bin");
        assert!(
            again.is_spent(),
            "a file an earlier run left may have been sent"
        );
        assert_eq!(
            again.read_at(1_000_000, 10).unwrap(),
            &body[1_000_000..1_000_010]
        );
    }

    #[test]
    fn an_empty_file_seals() {
        let d = tempfile::tempdir().unwrap();
        let s = StagedFile::create(&d.path().join("s"), &master(), "/e").unwrap();
        let sealed = s.seal(1).unwrap();
        assert_eq!(sealed.size, 0);
        assert_eq!(
            sealed.key.meta_mac,
            mac::meta_mac(&s.key.aes, &s.key.nonce, &[])
        );
    }
}
