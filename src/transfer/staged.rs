//! A file's new content while it is being written (the mount's staging files), kept on local
//! disk only as ciphertext: it is encrypted, as it is written, with the key of the version it
//! will become (AES-CTR is seekable, so writes at any offset cost one keystream pass), and that
//! key is stored in the file's header wrapped with the account's master key, together with the
//! MEGA path it is for (encrypted with the same key). Nothing in the staging directory is
//! readable without the account.
//!
//! One staging file is one file on disk (creating and deleting files is most of what a small
//! file costs the mount, see `doc/BENCHMARKS.md`): a header — [`MAGIC`], the content's offset,
//! the wrapped key and the note, and a state slot saying whether the file holds writes MEGA
//! does not have ([`State`]), rewritten in place — then the content from a 4 KiB boundary.
//! Staging files of earlier versions (content alone, the key in `<staging>.key` and the state
//! in `<staging>.unsaved` beside it) are still read, for the crash recovery of the first start
//! after an upgrade; they are never written.
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
//! Invariants: a staging file is created 0600 and never over an existing file; its header is
//! written before any content; a chunk MAC is either fresh (the chunk has not changed since)
//! or absent; a spent file is not sent again; a state slot that does not read means unsaved.

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

/// The first bytes of a staging file in the one-file layout.
pub const MAGIC: &[u8; 8] = b"mmstage2";
/// The content starts at a multiple of this, after the header.
const ALIGN: u64 = 4096;
/// The state slot: the header's last 512 bytes (one sector, rewritten in place).
const SLOT: usize = 512;
/// A header longer than this is damage, not a staging file.
const MAX_HEADER: u64 = 1 << 20;

/// The key record: in the header (`v` 2), or in `<staging>.key` of earlier versions (`v` 1).
#[derive(Serialize, Deserialize)]
struct KeyFile {
    v: u32,
    /// The version's file key, packed, wrapped with the master key.
    key: String,
    /// `{"path": MEGA path}` encrypted like node attributes with the file key.
    note: String,
}

/// An earlier version's key file beside its staging file.
fn key_file(staging: &Path) -> PathBuf {
    staging.with_extension("key")
}

/// An earlier version's marker beside a staging file holding writes MEGA does not have yet:
/// empty while the file was open, a [`Closed`] record once its handle was closed.
fn unsaved_marker(staging: &Path) -> PathBuf {
    staging.with_extension("unsaved")
}

/// What a staging file holds that MEGA does not have (its header's state slot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Nothing: never changed, or its last change was committed.
    Saved,
    /// Writes of a handle still open (also what a slot that does not read means).
    Unsaved,
    /// Writes of a closed handle whose upload was queued (write-back): final content.
    Closed(Closed),
}

impl State {
    /// The slot: a tag (0 saved, 1 unsaved, 2 closed), the record's length (u16 LE), the
    /// record (JSON, closed only), a CRC-32 of all that.
    fn encode(&self) -> std::io::Result<[u8; SLOT]> {
        let (tag, record) = match self {
            State::Saved => (0u8, Vec::new()),
            State::Unsaved => (1, Vec::new()),
            State::Closed(c) => (2, serde_json::to_vec(c).map_err(io_other_err)?),
        };
        if record.len() > SLOT - 7 {
            return Err(io_other("a staging file's state does not fit its slot"));
        }
        let mut slot = [0u8; SLOT];
        slot[0] = tag;
        slot[1..3].copy_from_slice(&(record.len() as u16).to_le_bytes());
        slot[3..3 + record.len()].copy_from_slice(&record);
        let end = 3 + record.len();
        let crc = crc32fast::hash(&slot[..end]);
        slot[end..end + 4].copy_from_slice(&crc.to_le_bytes());
        Ok(slot)
    }

    /// The state a slot says; one that does not read (a torn or damaged write) is unsaved:
    /// recovered beside the original, never in place, never dropped.
    fn decode(slot: &[u8]) -> State {
        let read = || -> Option<State> {
            let len = u16::from_le_bytes(slot.get(1..3)?.try_into().ok()?) as usize;
            let end = 3 + len;
            let crc = u32::from_le_bytes(slot.get(end..end + 4)?.try_into().ok()?);
            if crc32fast::hash(slot.get(..end)?) != crc {
                return None;
            }
            match (slot[0], len) {
                (0, 0) => Some(State::Saved),
                (1, 0) => Some(State::Unsaved),
                (2, _) => serde_json::from_slice(&slot[3..end])
                    .ok()
                    .map(State::Closed),
                _ => None,
            }
        };
        read().unwrap_or(State::Unsaved)
    }
}

/// What a file in the staging directory is, from its first bytes.
enum Probe {
    /// The one-file layout: the content's offset, the key record, the state.
    Header {
        data: u64,
        kf: KeyFile,
        state: State,
    },
    /// An earlier version's: content alone, key and state beside it.
    Sidecars,
    /// An older version's plaintext staging file (no key anywhere).
    Plain,
    /// Empty with no key: a staging file whose header was never written.
    Empty,
    /// Has the magic but not a readable header.
    Damaged(String),
}

/// Reads until `buf` is full or the file ends; the count read.
fn read_full_at(file: &std::fs::File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        let n = file.read_at(&mut buf[got..], offset + got as u64)?;
        if n == 0 {
            break;
        }
        got += n;
    }
    Ok(got)
}

fn probe(path: &Path) -> std::io::Result<Probe> {
    let file = std::fs::File::open(path)?;
    let size = file.metadata()?.len();
    let mut head = [0u8; 16];
    let got = read_full_at(&file, &mut head, 0)?;
    if got >= MAGIC.len() && &head[..MAGIC.len()] == MAGIC {
        return Ok(read_header(&file, &head[..got], size).unwrap_or_else(Probe::Damaged));
    }
    Ok(if key_file(path).exists() {
        Probe::Sidecars
    } else if size == 0 {
        Probe::Empty
    } else {
        Probe::Plain
    })
}

/// The header of a file that starts with the magic (`head`: its first 16 bytes).
fn read_header(file: &std::fs::File, head: &[u8], size: u64) -> Result<Probe, String> {
    let word = |at: usize| -> Result<u64, String> {
        head.get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .map(|b| u32::from_le_bytes(b) as u64)
            .ok_or_else(|| "the staging file's header is cut short".to_string())
    };
    let (data, len) = (word(8)?, word(12)?);
    if !(ALIGN..=MAX_HEADER).contains(&data) || data % ALIGN != 0 || data > size {
        return Err(format!(
            "the staging file's header says its content starts at {data}"
        ));
    }
    if 16 + len + SLOT as u64 > data {
        return Err("the staging file's key record does not fit its header".into());
    }
    let mut rec = vec![0u8; len as usize];
    let mut slot = [0u8; SLOT];
    let short = |e: std::io::Error| e.to_string();
    if read_full_at(file, &mut rec, 16).map_err(short)? != rec.len()
        || read_full_at(file, &mut slot, data - SLOT as u64).map_err(short)? != SLOT
    {
        return Err("the staging file's header is cut short".into());
    }
    let kf: KeyFile =
        serde_json::from_slice(&rec).map_err(|_| "the staging file's key record is not valid")?;
    Ok(Probe::Header {
        data,
        kf,
        state: State::decode(&slot),
    })
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
    /// How many of the last folders of its path were made on the mount and not on MEGA yet
    /// when it was closed (write-back of `mkdir`): a recovery that finds them missing makes
    /// them again, instead of putting the file aside.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub folders: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
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
    /// The MEGA path it is for (also in the header, encrypted).
    origin: String,
    /// An upload of it started: its key is not used for another.
    spent: AtomicBool,
    /// Where the content starts in the file (after the header; 0 for an earlier version's
    /// staging file, whose key and state are beside it).
    data: u64,
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
    /// `origin`, with a fresh key wrapped by `master` in its header. Not synced: what makes
    /// its content durable ([`set_closed`](Self::set_closed)) syncs the header with it.
    pub fn create(path: &Path, master: &MasterKey, origin: &str) -> std::io::Result<StagedFile> {
        let (key, kf) = Self::new_key(master, origin);
        let file = create_private(path)?;
        Self::write_header(path, file, key, kf, origin).inspect_err(|_| {
            let _ = std::fs::remove_file(path);
        })
    }

    /// [`create`](Self::create) over an empty file of ours that is already open (a spare).
    fn create_in(
        path: &Path,
        file: std::fs::File,
        master: &MasterKey,
        origin: &str,
    ) -> std::io::Result<StagedFile> {
        if file.metadata()?.len() != 0 {
            return Err(io_other("a spare staging file is not empty"));
        }
        let (key, kf) = Self::new_key(master, origin);
        Self::write_header(path, file, key, kf, origin)
    }

    /// A fresh key (never the all-zero one) and its record: wrapped, with the note.
    fn new_key(master: &MasterKey, origin: &str) -> (FileKey, KeyFile) {
        let mut key = FileKey::random();
        while key.is_zero_key() {
            key = FileKey::random();
        }
        let mut attrs = Map::new();
        attrs.insert("path".into(), json!(origin));
        let kf = KeyFile {
            v: 2,
            key: b64::encode(&master.0.wrap(&key.pack())),
            note: b64::encode(&attr::encrypt(&key.aes, &attrs)),
        };
        (key, kf)
    }

    /// Writes the header into an empty file: it becomes a staging file with no content.
    fn write_header(
        path: &Path,
        file: std::fs::File,
        key: FileKey,
        kf: KeyFile,
        origin: &str,
    ) -> std::io::Result<StagedFile> {
        let rec = serde_json::to_vec(&kf).map_err(io_other_err)?;
        let data = (16 + rec.len() as u64 + SLOT as u64).div_ceil(ALIGN) * ALIGN;
        if data > MAX_HEADER {
            return Err(io_other("the file's path is too long for a staging file"));
        }
        let mut head = vec![0u8; data as usize];
        head[..8].copy_from_slice(MAGIC);
        head[8..12].copy_from_slice(&(data as u32).to_le_bytes());
        head[12..16].copy_from_slice(&(rec.len() as u32).to_le_bytes());
        head[16..16 + rec.len()].copy_from_slice(&rec);
        head[data as usize - SLOT..].copy_from_slice(&State::Saved.encode()?);
        file.write_all_at(&head, 0)?;
        Ok(StagedFile::with(path, file, key, origin, false, data))
    }

    fn with(
        path: &Path,
        file: std::fs::File,
        key: FileKey,
        origin: &str,
        spent: bool,
        data: u64,
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
            data,
        }
    }

    /// Writes content bytes (ciphertext) at the content offset `at`.
    fn put(&self, buf: &[u8], at: u64) -> std::io::Result<()> {
        self.file.write_all_at(buf, self.data + at)
    }

    /// Reads content bytes (ciphertext) at the content offset `at`, fewer at the end.
    fn get(&self, buf: &mut [u8], at: u64) -> std::io::Result<usize> {
        read_full_at(&self.file, buf, self.data + at)
    }

    /// What the file holds that MEGA does not have, as its state slot (or, for an earlier
    /// version's file, the marker beside it) says.
    fn state(&self) -> State {
        if self.data == 0 {
            return Self::closed(&self.path).map_or_else(
                || match unsaved_marker(&self.path).exists() {
                    true => State::Unsaved,
                    false => State::Saved,
                },
                State::Closed,
            );
        }
        let mut slot = [0u8; SLOT];
        match read_full_at(&self.file, &mut slot, self.data - SLOT as u64) {
            Ok(SLOT) => State::decode(&slot),
            _ => State::Unsaved,
        }
    }

    /// Rewrites the state slot in place (not synced).
    fn set_state(&self, state: &State) -> std::io::Result<()> {
        if self.data == 0 {
            return Err(io_other(
                "an earlier version's staging file is only read, never changed",
            ));
        }
        self.file
            .write_all_at(&state.encode()?, self.data - SLOT as u64)
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
                fresh.put(&buf, at)?;
                let mut m = fresh.macs();
                for (i, v) in macs.into_iter().enumerate() {
                    m.fresh.insert(first + i as u64, v);
                }
                (first, at) = (last + 1, end);
            }
            if fresh.len()? != size {
                return Err(io_other("the staging file changed while it was re-keyed"));
            }
            match self.state() {
                State::Saved => fresh.file.sync_data()?,
                State::Unsaved => {
                    fresh.set_unsaved(true)?;
                    fresh.file.sync_data()?;
                }
                State::Closed(c) => fresh.set_closed(&c)?,
            }
            Ok(())
        })();
        if let Err(e) = copied {
            StagedFile::remove(&path);
            return Err(e);
        }
        // The old file goes last: a crash before it leaves both files marked (recovered
        // twice), never neither.
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
        let (kf, data) = match probe(path)? {
            Probe::Header { data, kf, .. } => (kf, data),
            Probe::Sidecars => {
                let text = std::fs::read(key_file(path))?;
                let kf: KeyFile = serde_json::from_slice(&text)
                    .map_err(|_| io_other("the staging key file is not valid"))?;
                (kf, 0)
            }
            Probe::Damaged(why) => return Err(io_other(why)),
            Probe::Plain | Probe::Empty => {
                return Err(io_other("the staging file has no key"));
            }
        };
        if kf.v != if data == 0 { 1 } else { 2 } {
            return Err(io_other(format!("staging key record version {}", kf.v)));
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
        let staged = StagedFile::with(path, file, key, &origin, true, data);
        Ok((staged, origin))
    }

    /// The MEGA path a staging file an earlier run left was for (without opening it).
    pub fn origin_of(path: &Path, master: &MasterKey) -> Option<String> {
        Self::open(path, master).ok().map(|(_, o)| o)
    }

    /// Whether a staging file has a key (in its header, or beside it for an earlier version;
    /// older versions staged plaintext). A damaged header counts as having one: such a file
    /// is never taken for plaintext.
    pub fn has_key(path: &Path) -> bool {
        matches!(
            probe(path),
            Ok(Probe::Header { .. } | Probe::Sidecars | Probe::Damaged(_))
        )
    }

    /// Records in the header whether the staging file holds writes MEGA does not have yet,
    /// so that after a crash only those are recovered (not a file that was merely open for
    /// writing, or whose last change was already committed).
    pub fn set_unsaved(&self, unsaved: bool) -> std::io::Result<()> {
        self.set_state(if unsaved {
            &State::Unsaved
        } else {
            &State::Saved
        })
    }

    /// Marks the staging file as holding unsaved writes of a closed handle (see [`Closed`]),
    /// synced to disk with its content: what a crash leaves is then recovered as final. The
    /// content is synced before the state says so, so the state never runs ahead of it.
    ///
    /// The slot is rewritten in place (no new file per close: creating and deleting files is
    /// most of what a small file costs here): a crash half-way leaves it unreadable, which
    /// only means "unsaved", recovered beside the original.
    pub fn set_closed(&self, closed: &Closed) -> std::io::Result<()> {
        self.file.sync_data()?;
        self.set_state(&State::Closed(closed.clone()))?;
        self.file.sync_data()
    }

    /// The [`Closed`] record of a staging file an earlier run left, if its handle was closed.
    pub fn closed(path: &Path) -> Option<Closed> {
        match probe(path).ok()? {
            Probe::Header {
                state: State::Closed(c),
                ..
            } => Some(c),
            Probe::Sidecars => {
                let text = std::fs::read(unsaved_marker(path)).ok()?;
                if text.is_empty() {
                    return None;
                }
                serde_json::from_slice(&text).ok()
            }
            _ => None,
        }
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
    /// (plaintext staging files of older versions always count as such, and so does a file
    /// whose header or state does not read; an empty one whose header was never written does
    /// not).
    pub fn is_unsaved(path: &Path) -> bool {
        match probe(path) {
            Ok(Probe::Header { state, .. }) => state != State::Saved,
            Ok(Probe::Sidecars) => unsaved_marker(path).exists(),
            Ok(Probe::Empty) => false,
            Ok(Probe::Plain | Probe::Damaged(_)) | Err(_) => true,
        }
    }

    /// Whether a file in the staging directory is empty with no key: a spare a crash left,
    /// or a staging file whose header was never written. It holds nothing.
    pub fn is_blank(path: &Path) -> bool {
        matches!(probe(path), Ok(Probe::Empty))
    }

    /// Whether `path` is a staging file (not one of the files beside one).
    pub fn is_staging(path: &Path) -> bool {
        path.extension().is_none()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the staging file and what may be beside it.
    pub fn remove(path: &Path) {
        let _ = std::fs::remove_file(path);
        let _ = std::fs::remove_file(key_file(path));
        let _ = std::fs::remove_file(unsaved_marker(path));
        let _ = std::fs::remove_file(upload_record(path));
        // Notes of older versions (plaintext paths).
        let _ = std::fs::remove_file(path.with_extension("path"));
    }

    /// The content's length.
    pub fn len(&self) -> std::io::Result<u64> {
        Ok(self.file.metadata()?.len().saturating_sub(self.data))
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
        self.put(&buf, offset)
    }

    /// Writes encrypted zeros over `[from, to)`.
    fn zero_fill(&self, from: u64, to: u64) -> std::io::Result<()> {
        let zeros = vec![0u8; STEP];
        let mut at = from;
        while at < to {
            let n = ((to - at) as usize).min(STEP);
            let mut buf = zeros[..n].to_vec();
            ctr_apply(&self.cipher, &self.key.nonce, at, &mut buf);
            self.put(&buf, at)?;
            at += n as u64;
        }
        // The chunk that was the last one may have grown.
        self.macs().stale(from.saturating_sub(1), to);
        Ok(())
    }

    /// Reads up to `len` bytes of plaintext at `offset` (fewer at the end).
    pub fn read_at(&self, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        let got = self.get(&mut buf, offset)?;
        buf.truncate(got);
        ctr_apply(&self.cipher, &self.key.nonce, offset, &mut buf);
        Ok(buf)
    }

    /// Truncates or extends (with zeros, encrypted like everything else).
    pub fn set_len(&self, size: u64) -> std::io::Result<()> {
        let _extent = self.extent();
        let old = self.len()?;
        if size <= old {
            self.file.set_len(self.data + size)?;
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
        self.put(&chunk, start)?;
        self.macs().fresh.insert(mac::chunk_index(start), m);
        Ok(())
    }

    /// The ciphertext of `[start, start + len)` as it will be uploaded.
    pub fn ciphertext(&self, start: u64, len: u64) -> std::io::Result<Vec<u8>> {
        let mut buf = vec![0u8; len as usize];
        self.file.read_exact_at(&mut buf, self.data + start)?;
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

/// Spare staging files kept open per staging directory.
const SPARES: usize = 64;

/// Spare staging files kept by name beyond those (opened again when taken).
const SPARE_NAMES: usize = 4096;

/// When fewer spares than this are left, a thread makes more (see [`StagingDir`]).
const LOW_SPARES: usize = 16;

/// How many blank files one refill makes.
const REFILL: usize = 64;

/// A staging directory, and the emptied staging files it keeps for the next ones.
///
/// Creating and deleting a file per small file written is most of what it costs here (the
/// filesystem allocates and frees an inode each time; on ext4 without a journal, each new
/// inode is checked against every one deleted in the last minutes, so a burst of deletions
/// makes every creation after it slow), so a staging file whose upload is done and that
/// nobody else holds is emptied (`ftruncate` to 0: its ciphertext is gone) and kept — open, up
/// to [`SPARES`] of them, then by name, up to [`SPARE_NAMES`] — for the next new staging file,
/// which writes a fresh header with a fresh key over it. Nothing is deleted while files come
/// and go. When the spares run low, a thread makes more blank files ahead of need, so a
/// burst of new files (`tar x` with write-back, where every queued file holds its staging
/// file until uploaded) does not wait for the filesystem to allocate an inode each. An empty
/// file with no header is what a spare looks like after a crash: [`StagedFile::is_blank`],
/// removed at the next start; [`clear`](Self::clear) removes them at unmount.
pub struct StagingDir {
    inner: std::sync::Arc<SpareFiles>,
    /// The refill running or last run (joined before [`clear`](Self::clear) removes
    /// everything, so that none is made after).
    refill: Mutex<Option<std::thread::JoinHandle<()>>>,
}

struct SpareFiles {
    dir: PathBuf,
    spares: Mutex<Spares>,
}

#[derive(Default)]
struct Spares {
    open: Vec<(PathBuf, std::fs::File)>,
    named: Vec<PathBuf>,
    /// `clear` ran: no more spares are kept.
    closed: bool,
}

impl Spares {
    fn len(&self) -> usize {
        self.open.len() + self.named.len()
    }

    /// Keeps an emptied staging file, if there is room: false if not (the caller removes it).
    fn keep(&mut self, path: PathBuf, file: Option<std::fs::File>) -> bool {
        if self.closed {
            return false;
        }
        match file {
            Some(file) if self.open.len() < SPARES => self.open.push((path, file)),
            _ if self.named.len() < SPARE_NAMES => self.named.push(path),
            _ => return false,
        }
        true
    }
}

impl SpareFiles {
    fn spares(&self) -> std::sync::MutexGuard<'_, Spares> {
        self.spares.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn new_path(&self) -> PathBuf {
        self.dir.join(format!("{:016x}", rand::random::<u64>()))
    }

    /// Makes up to [`REFILL`] blank files (empty, 0600) and keeps them as spares.
    fn refill(&self) {
        for _ in 0..REFILL {
            let path = self.new_path();
            if create_private(&path).is_err() {
                return; // a full disk or a removed directory: the creations say so
            }
            let mut spares = self.spares();
            if spares.len() >= REFILL || !spares.keep(path.clone(), None) {
                drop(spares);
                let _ = std::fs::remove_file(&path);
                return;
            }
        }
    }
}

impl StagingDir {
    pub fn new(dir: PathBuf) -> StagingDir {
        StagingDir {
            inner: std::sync::Arc::new(SpareFiles {
                dir,
                spares: Mutex::new(Spares::default()),
            }),
            refill: Mutex::new(None),
        }
    }

    fn spares(&self) -> std::sync::MutexGuard<'_, Spares> {
        self.inner.spares()
    }

    /// A new, empty staging file for the MEGA path `origin` (see [`StagedFile::create`]): a
    /// spare one if there is one, else a new file with a random name.
    pub fn create(&self, master: &MasterKey, origin: &str) -> std::io::Result<StagedFile> {
        loop {
            let (spare, low) = {
                let mut spares = self.spares();
                let spare = match spares.open.pop() {
                    Some((path, file)) => Some((path, Some(file))),
                    None => spares.named.pop().map(|path| (path, None)),
                };
                (spare, spares.len() < LOW_SPARES && !spares.closed)
            };
            if low {
                self.start_refill();
            }
            let Some((path, file)) = spare else {
                break;
            };
            let reused = match file {
                Some(file) => Ok(file),
                None => std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&path),
            }
            .and_then(|file| StagedFile::create_in(&path, file, master, origin));
            match reused {
                Ok(s) => return Ok(s),
                Err(e) => {
                    tracing::debug!("a spare staging file could not be reused: {e}");
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        StagedFile::create(&self.inner.new_path(), master, origin)
    }

    /// Starts a thread making blank spares, unless one is running.
    fn start_refill(&self) {
        let mut running = self.refill.lock().unwrap_or_else(|e| e.into_inner());
        if running.as_ref().is_some_and(|t| !t.is_finished()) {
            return;
        }
        let inner = self.inner.clone();
        *running = std::thread::Builder::new()
            .name("staging-spares".into())
            .spawn(move || inner.refill())
            .ok();
    }

    /// Waits for a refill that is running.
    fn settle(&self) {
        let running = self.refill.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = running {
            let _ = t.join();
        }
    }

    /// Takes back a staging file whose writes are on MEGA (or discarded): kept as a spare if
    /// nobody else holds it and there is room, else removed.
    pub fn retire(&self, staged: std::sync::Arc<StagedFile>) {
        let staged = match std::sync::Arc::try_unwrap(staged) {
            Ok(s) if s.data != 0 => s,
            Ok(s) => return StagedFile::remove(&s.path),
            // Someone still reads it: removed, their descriptor keeps the content.
            Err(shared) => return StagedFile::remove(&shared.path),
        };
        let _ = std::fs::remove_file(upload_record(&staged.path));
        if staged.file.set_len(0).is_err() {
            return StagedFile::remove(&staged.path);
        }
        let path = staged.path.clone();
        if !self.spares().keep(staged.path, Some(staged.file)) {
            let _ = std::fs::remove_file(path);
        }
    }

    /// Removes the spare files (at unmount); none is kept after.
    pub fn clear(&self) {
        self.spares().closed = true;
        self.settle();
        let (open, named) = {
            let mut spares = self.spares();
            (
                std::mem::take(&mut spares.open),
                std::mem::take(&mut spares.named),
            )
        };
        for path in open.into_iter().map(|(p, _)| p).chain(named) {
            let _ = std::fs::remove_file(path);
        }
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
            folders: 2,
        };
        s.set_closed(&c).unwrap();
        s.set_closed(&c).unwrap(); // rewritten in place
        assert_eq!(StagedFile::closed(&p), Some(c.clone()));
        assert_eq!(
            std::fs::read_dir(d.path()).unwrap().count(),
            1,
            "one file on disk: key and state are in its header"
        );
        let fresh = s.rekey(&master()).unwrap();
        assert_eq!(StagedFile::closed(fresh.path()), Some(c));
        assert!(StagedFile::is_unsaved(fresh.path()));
        assert_eq!(fresh.read_at(0, 100).unwrap(), b"final");
        // A torn slot (the record cut short): not closed, still unsaved.
        let slot_at = fresh.data - SLOT as u64 + 10;
        fresh.file.write_all_at(b"\"base\": ", slot_at).unwrap();
        assert_eq!(StagedFile::closed(fresh.path()), None);
        assert!(StagedFile::is_unsaved(fresh.path()));
        fresh.set_unsaved(false).unwrap();
        assert!(!StagedFile::is_unsaved(fresh.path()));
    }

    /// A staging file of an earlier version (content alone; key and state beside it), as
    /// the first start after an upgrade finds it: opened, its state read, re-keyed into the
    /// one-file layout with the state carried over, and its files removed.
    #[test]
    fn an_earlier_versions_staging_file_is_read_and_rekeyed_into_one_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("0123456789abcdef");
        let key = FileKey::random();
        let body = data(1_500_000, 9);
        let mut c = body.clone();
        ctr_apply(&cipher(&key.aes), &key.nonce, 0, &mut c);
        std::fs::write(&p, &c).unwrap();
        let mut attrs = Map::new();
        attrs.insert("path".into(), json!("/old/file.txt"));
        let kf = KeyFile {
            v: 1,
            key: b64::encode(&master().0.wrap(&key.pack())),
            note: b64::encode(&attr::encrypt(&key.aes, &attrs)),
        };
        std::fs::write(key_file(&p), serde_json::to_vec(&kf).unwrap()).unwrap();
        assert!(StagedFile::has_key(&p));
        assert!(!StagedFile::is_unsaved(&p), "no marker: saved");
        let closed = Closed {
            base: None,
            mtime: Some(7),
            folders: 0,
        };
        std::fs::write(unsaved_marker(&p), serde_json::to_vec(&closed).unwrap()).unwrap();
        assert!(StagedFile::is_unsaved(&p));
        assert_eq!(StagedFile::closed(&p), Some(closed.clone()));
        let (old, origin) = StagedFile::open(&p, &master()).unwrap();
        assert_eq!(origin, "/old/file.txt");
        assert!(old.is_spent());
        assert_eq!(old.len().unwrap(), body.len() as u64);
        assert!(old.set_unsaved(true).is_err(), "never written");
        let fresh = old.rekey(&master()).unwrap();
        assert_eq!(fresh.read_at(0, 2_000_000).unwrap(), body);
        assert_eq!(StagedFile::closed(fresh.path()), Some(closed));
        let left: Vec<_> = std::fs::read_dir(d.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "{left:?}");
    }

    /// What is not a readable staging file is never taken for plaintext or dropped: a header
    /// with the magic but damage has "a key" (opening it fails) and counts as unsaved; an
    /// empty file whose header was never written holds nothing.
    #[test]
    fn damaged_headers_are_errors_and_an_empty_file_holds_nothing() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s");
        let s = StagedFile::create(&p, &master(), "/x").unwrap();
        s.write_at(0, b"content").unwrap();
        drop(s);
        let good = std::fs::read(&p).unwrap();
        for (at, bytes) in [
            (8usize, &[1u8, 0, 0, 0][..]), // content offset not aligned
            (8, &[0, 0, 0, 64][..]),       // beyond any header
            (12, &[0xff, 0xff, 0, 0][..]), // key record longer than the header
            (16, &b"xx"[..]),              // key record not JSON
        ] {
            let mut bad = good.clone();
            bad[at..at + bytes.len()].copy_from_slice(bytes);
            std::fs::write(&p, &bad).unwrap();
            assert!(StagedFile::has_key(&p), "at {at}");
            assert!(StagedFile::is_unsaved(&p), "at {at}");
            assert!(StagedFile::open(&p, &master()).is_err(), "at {at}");
        }
        std::fs::write(&p, &good[..100]).unwrap(); // cut short
        assert!(StagedFile::open(&p, &master()).is_err());
        assert!(StagedFile::is_unsaved(&p));
        std::fs::write(&p, b"").unwrap();
        assert!(!StagedFile::has_key(&p) && !StagedFile::is_unsaved(&p));
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

    /// A staging file whose upload is done is emptied and reused: the next one has the same
    /// name, a fresh key and none of the old content; one somebody still holds is removed
    /// instead (their descriptor keeps the content); spares look blank after a crash; when
    /// they run low, blank ones are made ahead of need; nothing is deleted while files come
    /// and go; `clear` removes them all.
    #[test]
    fn spares_are_emptied_reused_under_a_fresh_key_and_made_ahead() {
        let d = tempfile::tempdir().unwrap();
        let dir = StagingDir::new(d.path().to_path_buf());
        let files = || std::fs::read_dir(d.path()).unwrap().count();
        let a = dir.create(&master(), "/a").unwrap();
        dir.settle();
        let made = files() - 1;
        assert!(made >= LOW_SPARES, "{made} blank spares made ahead");
        for e in std::fs::read_dir(d.path()).unwrap() {
            let path = e.unwrap().path();
            assert!(path == a.path() || StagedFile::is_blank(&path), "{path:?}");
        }
        a.write_at(0, b"old content").unwrap();
        let (path, key) = (a.path().to_path_buf(), a.key.clone());
        dir.retire(std::sync::Arc::new(a));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0, "emptied");
        assert!(StagedFile::is_blank(&path) && !StagedFile::is_unsaved(&path));
        let b = dir.create(&master(), "/b").unwrap();
        assert_eq!(b.path(), path, "the spare was reused");
        assert_ne!(b.key.aes, key.aes);
        assert_eq!(b.len().unwrap(), 0);
        assert_eq!(b.read_at(0, 100).unwrap(), b"");
        let (reopened, origin) = StagedFile::open(&path, &master()).unwrap();
        assert_eq!(origin, "/b");
        drop(reopened);
        // Held elsewhere: removed, the holder still reads it.
        b.write_at(0, b"kept").unwrap();
        let b = std::sync::Arc::new(b);
        let holder = b.clone();
        dir.retire(b);
        assert!(!path.exists());
        assert_eq!(holder.read_at(0, 10).unwrap(), b"kept");
        // More at once than are kept open: all kept, the rest by name, and reused.
        dir.settle();
        let before = files();
        let many: Vec<_> = (0..SPARES + 5)
            .map(|i| dir.create(&master(), &format!("/{i}")).unwrap())
            .collect();
        for s in many {
            s.write_at(0, b"x").unwrap();
            dir.retire(std::sync::Arc::new(s));
        }
        dir.settle();
        let after = files();
        assert!(after >= SPARES + 5 && after >= before, "{before} → {after}");
        let again: Vec<_> = (0..SPARES + 5)
            .map(|i| dir.create(&master(), &format!("/{i}")).unwrap())
            .collect();
        dir.settle();
        assert!(files() <= after + REFILL, "reused, not made anew");
        for s in again {
            dir.retire(std::sync::Arc::new(s));
        }
        dir.clear();
        assert_eq!(files(), 0);
        // After `clear`, nothing is kept or made.
        let late = dir.create(&master(), "/late").unwrap();
        dir.settle();
        dir.retire(std::sync::Arc::new(late));
        assert_eq!(files(), 0);
    }

    /// At most SPARES open and SPARE_NAMES by name are kept.
    #[test]
    fn spares_are_bounded() {
        let mut s = Spares::default();
        let f = || Some(tempfile::tempfile().unwrap());
        for i in 0..SPARES + SPARE_NAMES {
            assert!(s.keep(PathBuf::from(format!("{i}")), f()));
        }
        assert_eq!((s.open.len(), s.named.len()), (SPARES, SPARE_NAMES));
        assert!(!s.keep(PathBuf::from("x"), f()) && !s.keep(PathBuf::from("y"), None));
        s.closed = true;
        s.open.clear();
        assert!(!s.keep(PathBuf::from("z"), f()));
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
