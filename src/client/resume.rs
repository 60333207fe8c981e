//! Transfers that survive a restart (`MEGA-FILES-TRANSFERS.md` §4): a journal per transfer
//! in a private directory (0700, files 0600), written as the transfer goes, read by the next
//! run of the same transfer.
//!
//! * An upload of a local file records its URL, its key and nonce (wrapped with the master
//!   key, as node keys are), the local file's identity (size, mtime, ctime, inode,
//!   fingerprint) and, as the server acknowledges them, the chunks' plaintext MACs; then the
//!   completion token. The next upload of the same file resumes only if the file is the one
//!   recorded, the URL is within its lifetime (47 h 55 min, the SDK's), and every
//!   acknowledged chunk still has its MAC (checked in [`upload`](crate::transfer::upload)).
//!   Otherwise it starts over under a fresh key.
//! * A download records, beside its `.part` file, the plaintext MACs of the chunks written to
//!   it, in order. The next download of the same node to the same place checks the part's
//!   chunks against them, keeps the longest prefix that matches, and fetches the rest; the
//!   file is renamed into place only after the whole file's MAC matched.
//!
//! A journal is a text file of JSON lines: a header, then records appended as they happen (a
//! torn last line, from a kill in mid-write, is ignored). It is locked (`flock`) while its
//! transfer runs, so two runs of one transfer never share it: the second one goes without
//! resuming. Nothing here ever fails a transfer: a journal that cannot be written is logged
//! and the transfer goes on without it.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::crypto::fingerprint::{self, Fingerprint};
use crate::crypto::keys::MasterKey;
use crate::crypto::{b64, mac, FileKey};
use crate::transfer::upload::{Resume, UploadLog};

/// How long an upload URL takes data: the SDK's `TEMPURL_TIMEOUT_TS` (172,500 s).
pub const URL_LIFETIME_SECS: i64 = 172_500;

/// Transfers smaller than this are not recorded: resuming them would save less than the
/// record costs.
pub const RESUME_MIN: u64 = 1 << 20;

/// Journal format version.
const VERSION: i64 = 1;

/// The directory of transfer journals.
#[derive(Debug, Clone)]
pub struct TransferState {
    dir: PathBuf,
}

/// What a journal describes, for `megacmd transfers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interrupted {
    /// The journal's name (what `--cancel` takes).
    pub id: String,
    pub upload: bool,
    /// The local file (upload source or download target).
    pub local: PathBuf,
    /// The node being downloaded (base64 handle); none for an upload.
    pub node: Option<String>,
    pub size: u64,
    /// Bytes the server acknowledged (upload) or verified on disk (download).
    pub done: u64,
    /// Unix seconds when the transfer started.
    pub started: i64,
    /// The partial download file, if any.
    pub part: Option<PathBuf>,
    /// An upload's destination: the folder (base64 handle) and name, and whether it
    /// replaces a file there.
    pub parent: Option<String>,
    pub name: Option<String>,
    pub replace: bool,
    /// Another run is carrying it on now.
    pub running: bool,
}

fn now() -> i64 {
    crate::local::time::now()
}

fn hex(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02x}")).collect()
}

/// Sets a journal file's lock, or `None` if another run holds it.
fn lock(file: &std::fs::File) -> Option<()> {
    rustix::fs::flock(file, rustix::fs::FlockOperation::NonBlockingLockExclusive).ok()
}

/// A journal's lines: the header and the records after it. A torn last line is dropped; a
/// malformed line before it makes the whole journal unusable (`None`).
fn parse(text: &str) -> Option<(Value, Vec<Value>)> {
    let mut it = crate::local::jsonl::read(text)?.into_iter();
    let header = it.next().filter(|h| h["v"].as_i64() == Some(VERSION))?;
    Some((header, it.collect()))
}

/// A record of acknowledged (or written) chunks: its first chunk and their MACs.
fn chunk_record(r: &Value) -> Option<(u64, Vec<[u8; 16]>)> {
    let first = r["c"].as_u64()?;
    let raw = b64::decode(r["m"].as_str()?, "chunk MACs").ok()?;
    if raw.is_empty() || raw.len() % 16 != 0 {
        return None;
    }
    let macs = raw
        .chunks(16)
        .map(|c| {
            let mut m = [0u8; 16];
            m.copy_from_slice(c);
            m
        })
        .collect();
    Some((first, macs))
}

/// One open, locked journal file.
struct Journal {
    path: PathBuf,
    file: Mutex<std::fs::File>,
    /// Set once a write failed: the journal is then abandoned (removed at the end).
    broken: std::sync::atomic::AtomicBool,
}

impl Journal {
    /// Opens (creating) and locks the journal at `path`; its current text.
    fn open(path: PathBuf) -> std::io::Result<Option<(Journal, String)>> {
        use std::io::Read;
        let mut file = crate::local::names::open_private(&path)?;
        if lock(&file).is_none() {
            return Ok(None);
        }
        let mut text = String::new();
        if file.read_to_string(&mut text).is_err() {
            text.clear();
        }
        let j = Journal {
            path,
            file: Mutex::new(file),
            broken: Default::default(),
        };
        Ok(Some((j, text)))
    }

    /// Starts the journal over with `header`.
    fn reset(&self, header: &Value) {
        let mut f = self.file.lock().unwrap_or_else(|e| e.into_inner());
        let r = f.set_len(0).and_then(|()| {
            use std::io::Seek;
            f.seek(std::io::SeekFrom::Start(0))?;
            crate::local::jsonl::append(&mut f, header)
        });
        if let Err(e) = r {
            self.failed(e);
        }
    }

    fn append(&self, record: &Value) {
        if self.broken.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        let mut f = self.file.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = crate::local::jsonl::append(&mut f, record) {
            self.failed(e);
        }
    }

    fn failed(&self, e: std::io::Error) {
        if !self.broken.swap(true, std::sync::atomic::Ordering::Relaxed) {
            tracing::warn!(
                "cannot write the transfer journal {}: {e}; this transfer will not resume",
                self.path.display()
            );
        }
    }

    /// The transfer is over: the journal goes.
    fn remove(self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The identity of a local file, as an upload journal records it: any write changes the
/// ctime, so a file with the same identity has not been written since.
fn identity(meta: &std::fs::Metadata) -> Value {
    json!({
        "size": meta.len(),
        "dev": meta.dev(),
        "ino": meta.ino(),
        "mtime": [meta.mtime(), meta.mtime_nsec()],
        "ctime": [meta.ctime(), meta.ctime_nsec()],
    })
}

/// An upload's journal, as the upload's [`UploadLog`].
pub struct UploadJournal {
    journal: Journal,
    /// The header's fields other than the URL and key.
    base: Value,
    master: MasterKey,
    /// Whether this run resumed an earlier one.
    pub resumed: bool,
}

impl UploadLog for UploadJournal {
    fn started(&self, url: &str, key: &FileKey) {
        let mut header = self.base.clone();
        header["url"] = json!(url);
        header["key"] = json!(b64::encode(&self.master.0.wrap(&key.pack())));
        header["at"] = json!(now());
        self.journal.reset(&header);
    }

    fn acknowledged(&self, piece: crate::transfer::Piece, macs: &[[u8; 16]]) {
        if !macs.is_empty() {
            self.journal
                .append(&json!({"c": piece.first, "m": b64::encode(&macs.concat())}));
        }
    }

    fn completed(&self, token: &[u8]) {
        self.journal.append(&json!({"t": b64::encode(token)}));
    }
}

impl UploadJournal {
    /// The upload is done (the node exists): the journal goes.
    pub fn finish(self) {
        self.journal.remove();
    }
}

/// A download's journal: the MACs of the chunks in its part file, in order.
pub struct DownloadJournal {
    journal: Journal,
    header: Value,
}

impl DownloadJournal {
    /// Starts the journal over with the chunks of the part found intact (from chunk 0).
    pub fn keep(&self, intact: &[[u8; 16]]) {
        self.journal.reset(&self.header);
        for (i, m) in intact.chunks(64).enumerate() {
            self.written(i as u64 * 64, m);
        }
    }

    /// Chunks `first..` with these MACs are in the part file.
    pub fn written(&self, first: u64, macs: &[[u8; 16]]) {
        if !macs.is_empty() {
            self.journal
                .append(&json!({"c": first, "m": b64::encode(&macs.concat())}));
        }
    }

    /// The download is over (done, or its content is bad): the journal goes.
    pub fn finish(self) {
        self.journal.remove();
    }
}

impl TransferState {
    /// The journals in `dir` (created 0700 if missing).
    pub fn open(dir: &Path) -> std::io::Result<TransferState> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        Ok(TransferState {
            dir: dir.to_path_buf(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Opens and locks the journal `name`; `None` if another run holds it or it cannot be
    /// opened (logged).
    fn open_journal(&self, name: &str) -> Option<(Journal, String)> {
        match Journal::open(self.dir.join(name)) {
            Ok(j) => j,
            Err(e) => {
                tracing::warn!(
                    "cannot open a transfer journal in {}: {e}",
                    self.dir.display()
                );
                None
            }
        }
    }

    fn name(kind: &str, parts: &[&[u8]]) -> String {
        let mut h = Sha256::new();
        for p in parts {
            h.update((p.len() as u64).to_le_bytes());
            h.update(p);
        }
        format!("{kind}-{}", hex(&h.finalize()[..12]))
    }

    /// The journal of an upload of `path` (whose metadata is `meta`, opened as `file`) by
    /// `user`, and what an earlier run left if it can be resumed. `None`: no journal (another
    /// run holds it, or it cannot be written — logged).
    /// `dest` is where it goes (`parent`, `name`, `replace`), for `megacmd transfers`.
    pub fn upload(
        &self,
        user: &str,
        master: &MasterKey,
        path: &Path,
        meta: &std::fs::Metadata,
        file: &std::fs::File,
        dest: (&str, &str, bool),
    ) -> Option<(UploadJournal, Option<Resume>)> {
        let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let local = abs.to_string_lossy().into_owned();
        let name = Self::name("up", &[user.as_bytes(), local.as_bytes()]);
        let (journal, text) = self.open_journal(&name)?;
        let mut f = file;
        let crc = match fingerprint::crc(&mut f, meta.len()) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("{}: {e}", path.display());
                return None;
            }
        };
        let base = json!({
            "v": VERSION,
            "kind": "upload",
            "user": user,
            "local": local,
            "id": identity(meta),
            "crc": b64::encode(&crc),
            "parent": dest.0,
            "name": dest.1,
            "replace": dest.2,
        });
        let resume = parse(&text).and_then(|(header, records)| {
            let r = resumable_upload(&base, &header, &records, master, meta, crc);
            if r.is_none() {
                tracing::info!(
                    "{}: the interrupted upload cannot be resumed; starting over",
                    path.display()
                );
            }
            r
        });
        let j = UploadJournal {
            journal,
            base,
            master: master.clone(),
            resumed: resume.is_some(),
        };
        Some((j, resume))
    }

    /// The journal and part file of a download of node `node` (of `size` bytes, key `key`)
    /// to `target` by `user`: the open part file, the journal, and the chunks the part
    /// holds already (their MACs, from chunk 0; checked against the part by the caller).
    /// `None`: no journal (another run holds it, or it cannot be written — logged).
    pub fn download(
        &self,
        user: &str,
        node: &str,
        size: u64,
        key: &FileKey,
        target: &Path,
        tag: &str,
    ) -> Option<(
        DownloadJournal,
        crate::local::files::TempFile,
        std::fs::File,
        Vec<[u8; 16]>,
    )> {
        let abs = std::path::absolute(target).unwrap_or_else(|_| target.to_path_buf());
        let local = abs.to_string_lossy().into_owned();
        let name = Self::name("dl", &[user.as_bytes(), node.as_bytes(), local.as_bytes()]);
        let (journal, text) = self.open_journal(&name)?;
        let id = &name[3..11];
        let (part, file) = match crate::local::files::TempFile::resumable(target, tag, id) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!("{}: {e}", target.display());
                return None;
            }
        };
        let keyhash = b64::encode(&Sha256::digest(key.pack())[..16]);
        let header = json!({
            "v": VERSION,
            "kind": "download",
            "user": user,
            "node": node,
            "size": size,
            "key": keyhash,
            "local": local,
            "part": part.path().to_string_lossy(),
            "at": now(),
        });
        let mut header = header;
        let mut macs = Vec::new();
        if let Some((h, records)) = parse(&text) {
            let same = ["kind", "user", "node", "size", "key", "local"]
                .iter()
                .all(|k| h[*k] == header[*k]);
            if same {
                // The same download: it keeps its start time.
                header["at"] = h["at"].clone();
                for r in &records {
                    match chunk_record(r) {
                        Some((first, m)) if first == macs.len() as u64 => macs.extend(m),
                        _ => break,
                    }
                }
                macs.truncate(mac::chunk_count(size) as usize);
            }
        }
        let journal = DownloadJournal { journal, header };
        if macs.is_empty() {
            journal.keep(&[]);
            if let Err(e) = file.set_len(0) {
                tracing::warn!("{}: {e}", part.path().display());
                return None;
            }
        }
        Some((journal, part, file, macs))
    }

    /// The interrupted transfers of `user`, oldest first.
    pub fn list(&self, user: &str) -> std::io::Result<Vec<Interrupted>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(&self.dir)? {
            let e = e?;
            let id = e.file_name().to_string_lossy().into_owned();
            let Ok(file) = std::fs::File::open(e.path()) else {
                continue;
            };
            let running = lock(&file).is_none();
            let Ok(text) = std::io::read_to_string(&file) else {
                continue;
            };
            let Some((h, records)) = parse(&text) else {
                continue;
            };
            if h["user"].as_str() != Some(user) {
                continue;
            }
            let upload = h["kind"] == "upload";
            let size = if upload {
                h["id"]["size"].as_u64()
            } else {
                h["size"].as_u64()
            }
            .unwrap_or(0);
            let chunks: u64 = records
                .iter()
                .filter_map(chunk_record)
                .flat_map(|(first, m)| first..first + m.len() as u64)
                .map(|i| mac::chunk_len(i, size))
                .sum();
            out.push(Interrupted {
                id,
                upload,
                local: PathBuf::from(h["local"].as_str().unwrap_or("")),
                node: h["node"].as_str().map(String::from),
                size,
                done: chunks.min(size),
                started: h["at"].as_i64().unwrap_or(0),
                part: h["part"].as_str().map(PathBuf::from),
                parent: h["parent"].as_str().map(String::from),
                name: h["name"].as_str().map(String::from),
                replace: h["replace"].as_bool().unwrap_or(false),
                running,
            });
        }
        out.sort_by_key(|i| (i.started, i.id.clone()));
        Ok(out)
    }

    /// Forgets an interrupted transfer (and removes its partial download). Fails if it runs.
    pub fn cancel(&self, t: &Interrupted) -> std::io::Result<()> {
        let path = self.dir.join(&t.id);
        let file = std::fs::File::open(&path)?;
        if lock(&file).is_none() {
            return Err(std::io::Error::other("the transfer is running"));
        }
        if let Some(p) = &t.part {
            match std::fs::remove_file(p) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        std::fs::remove_file(&path)
    }
}

/// How many of the chunks recorded for a partial download (`macs`, from chunk 0) the part
/// file still holds intact: the longest prefix whose plaintext MACs, recomputed from the
/// file, equal the recorded ones.
pub fn intact_prefix(
    file: &std::fs::File,
    key: &FileKey,
    size: u64,
    macs: &[[u8; 16]],
) -> std::io::Result<usize> {
    let have = file.metadata()?.len();
    // Only chunks the part holds whole are compared.
    let whole = (0..macs.len() as u64)
        .take_while(|&i| mac::chunk_start(i + 1).min(size) <= have)
        .count();
    let now = mac::file_chunk_macs(file, key, size, 0, whole as u64)?;
    Ok(now.iter().zip(macs).take_while(|(a, b)| a == b).count())
}

/// What an earlier run of this upload left, if it may be resumed: the same account, file
/// (identity and fingerprint) and a URL within its lifetime.
fn resumable_upload(
    base: &Value,
    header: &Value,
    records: &[Value],
    master: &MasterKey,
    meta: &std::fs::Metadata,
    crc: [u8; 16],
) -> Option<Resume> {
    for k in ["kind", "user", "local", "id", "crc"] {
        if header[k] != base[k] {
            return None;
        }
    }
    let at = header["at"].as_i64()?;
    if now() - at >= URL_LIFETIME_SECS {
        return None;
    }
    let url = header["url"].as_str()?.to_string();
    let wrapped = b64::decode(header["key"].as_str()?, "upload key").ok()?;
    let raw = master.0.unwrap_key(&wrapped, "upload key").ok()?;
    let key = FileKey::unpack(&<[u8; 32]>::try_from(raw.as_slice()).ok()?);
    let chunks = mac::chunk_count(meta.len());
    let mut acked = BTreeMap::new();
    let mut token = None;
    for r in records {
        if let Some(t) = r["t"].as_str() {
            token = Some(b64::decode(t, "upload token").ok()?);
            continue;
        }
        let (first, macs) = chunk_record(r)?;
        if first + macs.len() as u64 > chunks {
            return None;
        }
        for (i, m) in macs.into_iter().enumerate() {
            acked.insert(first + i as u64, m);
        }
    }
    if token.is_some() && acked.len() as u64 != chunks {
        return None;
    }
    Some(Resume {
        url,
        key,
        acked,
        token,
        fingerprint: Fingerprint {
            crc,
            mtime: crate::local::files::mtime_of(meta),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_torn_last_line_is_dropped_and_a_bad_middle_line_spoils_the_journal() {
        let h = r#"{"v":1,"kind":"upload"}"#;
        let (_, r) = parse(&format!("{h}\n{{\"c\":0,\"m\":\"AA\"}}\n{{\"c\":1,")).unwrap();
        assert_eq!(r.len(), 1);
        assert!(parse(&format!("{h}\nnot json\n{{\"c\":1}}\n")).is_none());
        assert!(parse("{\"v\":2}\n").is_none());
        assert!(parse("").is_none());
    }

    #[test]
    fn chunk_records_need_whole_macs() {
        let m = b64::encode(&[7u8; 32]);
        let (first, macs) = chunk_record(&json!({"c": 3, "m": m})).unwrap();
        assert_eq!((first, macs.len()), (3, 2));
        assert!(chunk_record(&json!({"c": 3, "m": b64::encode(&[7u8; 20])})).is_none());
        assert!(chunk_record(&json!({"c": -1, "m": m})).is_none());
    }
}
