//! [`Content`]: one file's content as pieces of whole MAC chunks, fetched, decrypted with
//! AES-CTR and checked. Each piece's chunk MACs are recorded as it is decrypted (in any order,
//! by any number of concurrent readers); once every chunk's MAC is known the condensed MAC is
//! compared with the one in the file key (the SDK's algorithm, or megajs' variant for the
//! sizes where it differs). From then on the file is either verified or bad, and a bad file's
//! pieces are never handed out again.
//!
//! A chunk fetched again (the block cache dropped it, a second reader asked for it) is checked
//! against the MAC recorded the first time: after the verdict that is the verified state, and
//! before it a chunk whose two fetches differ is itself proof of tampering. Either mismatch
//! makes the file bad, so verification holds for every fetch, not only the first.
//!
//! This is the one place where content is decrypted and verified: whole-file downloads and the
//! mount's block reader both go through it.
//!
//! Invariants: MACs are kept sparsely (a map of the chunks seen), so a size stated by the
//! server never sizes an allocation; a recorded MAC is never replaced; a piece is returned
//! only after its MACs were recorded or matched the recorded ones, and never once the file's
//! MAC failed.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use aes::Aes128;
use bytes::Bytes;

use super::fetch::{Fetcher, Source};
use super::{join_error, TransferConfig, TransferError};
use crate::crypto::aes::cipher;
use crate::crypto::{mac, FileKey};

/// What is known about a file's integrity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Not every chunk has been seen yet.
    Pending,
    /// Every chunk's MAC is known and the condensed MAC matched.
    Verified,
    /// The condensed MAC did not match: the content is corrupt or tampered with.
    Bad,
}

struct Macs {
    /// Chunk index → MAC of its plaintext.
    seen: BTreeMap<u64, [u8; 16]>,
    verdict: Verdict,
}

/// One file version's content, read piece by piece and verified.
pub struct Content {
    size: u64,
    chunks: u64,
    key: FileKey,
    cipher: Aes128,
    fetcher: Fetcher,
    macs: Mutex<Macs>,
    bad: AtomicBool,
    reported: AtomicBool,
}

impl std::fmt::Debug for Content {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Content")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl Content {
    /// Content read from `src` (no request is made until the first piece).
    pub fn new(http: &reqwest::Client, src: &Source, cfg: &TransferConfig) -> Self {
        Content {
            size: src.size,
            chunks: mac::chunk_count(src.size),
            cipher: cipher(&src.key.aes),
            key: src.key.clone(),
            fetcher: Fetcher::new(http, src, cfg),
            macs: Mutex::new(Macs {
                seen: BTreeMap::new(),
                verdict: Verdict::Pending,
            }),
            bad: AtomicBool::new(false),
            reported: AtomicBool::new(false),
        }
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Number of MAC chunks.
    pub fn chunk_count(&self) -> u64 {
        self.chunks
    }

    /// True once the file's MAC failed: nothing of it may be shown.
    pub fn is_bad(&self) -> bool {
        self.bad.load(Ordering::Acquire)
    }

    /// True the first time it is asked after the file's MAC failed: so that a failure many
    /// concurrent readers see is reported once.
    pub fn first_report(&self) -> bool {
        self.is_bad() && !self.reported.swap(true, Ordering::AcqRel)
    }

    pub fn verdict(&self) -> Verdict {
        self.lock().verdict
    }

    /// The chunks whose MACs are not known yet, in order.
    pub fn unseen_chunks(&self) -> Vec<u64> {
        let m = self.lock();
        (0..self.chunks)
            .filter(|i| !m.seen.contains_key(i))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Macs> {
        self.macs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The plaintext of chunks `first..=last`, fetched as one ranged request. Fails with
    /// [`TransferError::MacMismatch`] if the file is known to be bad, including when this
    /// piece completes a file whose MAC does not match.
    pub async fn piece(&self, first: u64, last: u64) -> Result<Bytes, TransferError> {
        if self.is_bad() {
            return Err(TransferError::MacMismatch);
        }
        if first > last || last >= self.chunks {
            return Err(TransferError::Io(std::io::Error::other(format!(
                "chunks {first}..={last} are outside a file of {} chunks",
                self.chunks
            ))));
        }
        let start = mac::chunk_start(first);
        let end = mac::chunk_start(last + 1).min(self.size);
        let mut data = self.fetcher.fetch(start, end - start).await?;
        let (c, nonce) = (self.cipher.clone(), self.key.nonce);
        // Decrypt + MAC on a blocking thread: it is CPU work (about 1 ms per MiB).
        let (data, macs) = tokio::task::spawn_blocking(move || {
            let macs = mac::decrypt_piece(&c, &nonce, start, &mut data);
            (data, macs)
        })
        .await
        .map_err(join_error)?;
        // MACs first: nothing that failed verification reaches a caller.
        self.record(first, &macs)?;
        Ok(Bytes::from(data))
    }

    /// Takes the MACs of chunks `first..` from a local copy already checked against the MACs
    /// an earlier run recorded (a resumed download): they count as fetched.
    pub fn preload(&self, first: u64, macs: &[[u8; 16]]) -> Result<(), TransferError> {
        if first + macs.len() as u64 > self.chunks {
            return Err(TransferError::ResumeRefused(
                "the partial download has more chunks than the file".into(),
            ));
        }
        self.record(first, macs)
    }

    /// The recorded MACs of chunks `first..=last` (those known), in order.
    pub fn recorded(&self, first: u64, last: u64) -> Vec<[u8; 16]> {
        self.lock()
            .seen
            .range(first..=last)
            .map(|(_, m)| *m)
            .collect()
    }

    /// Records chunk MACs, or compares them with the ones recorded by an earlier fetch of the
    /// same chunks; checks the file once every chunk's MAC is known. A chunk whose MAC differs
    /// from its recorded one makes the file bad: its content changed between two fetches.
    fn record(&self, first: u64, macs: &[[u8; 16]]) -> Result<(), TransferError> {
        use std::collections::btree_map::Entry;
        let mut m = self.lock();
        if m.verdict == Verdict::Bad {
            return Err(TransferError::MacMismatch);
        }
        let mut changed = false;
        for (i, mac) in macs.iter().enumerate() {
            match m.seen.entry(first + i as u64) {
                Entry::Vacant(v) => {
                    v.insert(*mac);
                }
                Entry::Occupied(o) => changed |= o.get() != mac,
            }
        }
        if changed {
            m.verdict = Verdict::Bad;
            self.bad.store(true, Ordering::Release);
            return Err(TransferError::MacMismatch);
        }
        self.check(&mut m)
    }

    fn check(&self, m: &mut Macs) -> Result<(), TransferError> {
        match m.verdict {
            Verdict::Verified => return Ok(()),
            Verdict::Bad => return Err(TransferError::MacMismatch),
            Verdict::Pending if (m.seen.len() as u64) < self.chunks => return Ok(()),
            Verdict::Pending => {}
        }
        let all: Vec<[u8; 16]> = m.seen.values().copied().collect();
        if mac::verify(
            &self.cipher,
            &self.key.nonce,
            self.size,
            &all,
            &self.key.meta_mac,
        ) {
            m.verdict = Verdict::Verified;
            return Ok(());
        }
        m.verdict = Verdict::Bad;
        self.bad.store(true, Ordering::Release);
        Err(TransferError::MacMismatch)
    }

    /// Every chunk MAC, once the file verified (to be kept when this reader goes, and given
    /// to the next one by [`Content::resume_verified`]).
    pub fn verified_macs(&self) -> Option<Vec<[u8; 16]>> {
        let m = self.lock();
        (m.verdict == Verdict::Verified).then(|| m.seen.values().copied().collect())
    }

    /// Starts from the chunk MACs an earlier reader of the same file version verified: they
    /// are checked against the file's MAC again, and on a match the file is verified and
    /// every chunk fetched from now on must match them. False (nothing taken) otherwise.
    pub fn resume_verified(&self, macs: &[[u8; 16]]) -> bool {
        if macs.len() as u64 != self.chunks
            || !mac::verify(
                &self.cipher,
                &self.key.nonce,
                self.size,
                macs,
                &self.key.meta_mac,
            )
        {
            return false;
        }
        let mut m = self.lock();
        if m.verdict != Verdict::Pending || !m.seen.is_empty() {
            return false;
        }
        m.seen = macs
            .iter()
            .copied()
            .enumerate()
            .map(|(i, v)| (i as u64, v))
            .collect();
        m.verdict = Verdict::Verified;
        true
    }

    /// For a reader that went through the whole file: `Ok` only if it verified (an empty
    /// file has no chunks and is checked here).
    pub fn finish(&self) -> Result<(), TransferError> {
        let mut m = self.lock();
        self.check(&mut m)?;
        match m.verdict {
            Verdict::Verified => Ok(()),
            Verdict::Pending | Verdict::Bad => Err(TransferError::MacMismatch),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content(size: u64, meta_mac: [u8; 8]) -> Content {
        let src = Source {
            url: Some("http://127.0.0.1:9/unused".into()),
            size,
            key: FileKey {
                aes: [1; 16],
                nonce: [2; 8],
                meta_mac,
            },
            refresh: None,
        };
        Content::new(&reqwest::Client::new(), &src, &TransferConfig::default())
    }

    #[test]
    fn a_huge_stated_size_allocates_nothing() {
        let c = content(crate::tree::MAX_NODE_SIZE, [0; 8]);
        assert!(c.chunk_count() > 1 << 30);
        assert_eq!(c.verdict(), Verdict::Pending);
    }

    #[test]
    fn verdicts_from_recorded_macs() {
        let plain: Vec<u8> = (0..300_000u32).map(|i| i as u8).collect();
        let key = [1u8; 16];
        let nonce = [2u8; 8];
        let good = mac::meta_mac(&key, &nonce, &plain);
        let cph = cipher(&key);
        let macs: Vec<[u8; 16]> = mac::chunks(plain.len() as u64)
            .map(|(s, l)| mac::chunk_mac(&cph, &nonce, &plain[s as usize..(s + l) as usize]))
            .collect();
        assert_eq!(macs.len(), 2);
        let c = content(plain.len() as u64, good);
        // Out of order, and a repeat: fine.
        c.record(1, &macs[1..]).unwrap();
        c.record(1, &macs[1..]).unwrap();
        assert_eq!(c.verdict(), Verdict::Pending);
        assert!(c.finish().is_err(), "not every chunk seen");
        c.record(0, &macs[..1]).unwrap();
        assert_eq!(c.verdict(), Verdict::Verified);
        c.finish().unwrap();

        let bad = content(plain.len() as u64, [9; 8]);
        bad.record(0, &macs[..1]).unwrap();
        assert!(matches!(
            bad.record(1, &macs[1..]),
            Err(TransferError::MacMismatch)
        ));
        assert!(bad.is_bad());
        assert!(bad.first_report() && !bad.first_report(), "reported once");
        assert!(matches!(bad.finish(), Err(TransferError::MacMismatch)));
    }

    /// A chunk fetched again is checked against the MAC recorded the first time: after the
    /// verdict (the block cache dropped it and a read fetched it again), and before it.
    #[test]
    fn a_chunk_fetched_again_must_match_what_was_recorded() {
        let plain: Vec<u8> = (0..300_000u32).map(|i| (i * 7) as u8).collect();
        let (key, nonce) = ([1u8; 16], [2u8; 8]);
        let good = mac::meta_mac(&key, &nonce, &plain);
        let cph = cipher(&key);
        let macs: Vec<[u8; 16]> = mac::chunks(plain.len() as u64)
            .map(|(s, l)| mac::chunk_mac(&cph, &nonce, &plain[s as usize..(s + l) as usize]))
            .collect();
        let mut tampered = plain.clone();
        tampered[200_000] ^= 1;
        let other = mac::chunk_mac(&cph, &nonce, &tampered[131_072..]);
        assert_ne!(other, macs[1]);

        // Verified, then chunk 1 comes back different: bad, and it stays bad.
        let c = content(plain.len() as u64, good);
        c.record(0, &macs).unwrap();
        assert_eq!(c.verdict(), Verdict::Verified);
        c.record(1, &macs[1..]).unwrap(); // the same again: fine
        assert!(matches!(
            c.record(1, &[other]),
            Err(TransferError::MacMismatch)
        ));
        assert!(c.is_bad() && c.verdict() == Verdict::Bad);
        assert!(c.record(0, &macs[..1]).is_err(), "nothing more once bad");
        assert!(c.finish().is_err());

        // Before any verdict: two fetches of chunk 1 that differ are an integrity error
        // even though the file is not complete.
        let c = content(plain.len() as u64, good);
        c.record(1, &[other]).unwrap();
        assert!(c.record(1, &macs[1..]).is_err());
        assert!(c.is_bad());
    }

    #[test]
    fn an_empty_file_is_checked_at_the_end() {
        let nonce = [2u8; 8];
        let good = mac::meta_mac(&[1u8; 16], &nonce, &[]);
        content(0, good).finish().unwrap();
        assert!(content(0, [7; 8]).finish().is_err());
    }

    #[tokio::test]
    async fn pieces_outside_the_file_are_refused() {
        let c = content(1000, [0; 8]);
        assert!(c.piece(0, 1).await.is_err());
        assert!(c.piece(1, 0).await.is_err());
    }
}
