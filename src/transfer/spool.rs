//! [`Spool`]: where content waits that must verify whole before any of it is shown (`megacmd
//! cat` writes to a pipe, which cannot take back what it was given). Up to a bound it stays
//! in memory; beyond it, it goes to a private temporary file (0600, removed on drop and so on
//! every path, Ctrl-C included) encrypted with AES-CTR under a key that exists only in this
//! process's memory. No plaintext reaches the disk, and what a crash leaves there is unreadable.
//!
//! Invariants: the key and nonce are fresh per spool and never written anywhere; the spool
//! file is written only sequentially, so one keystream position is never used twice.

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;

use aes::Aes128;

use crate::crypto::aes::{cipher, ctr_apply};
use crate::local::files::TempFile;

/// Bytes read back and decrypted per step.
const STEP: usize = 1 << 20;

/// Content written in order, kept in memory up to a bound and encrypted on disk beyond it.
pub struct Spool {
    mem: Vec<u8>,
    limit: usize,
    /// Where the temporary file goes once the content outgrows memory.
    dir: std::path::PathBuf,
    disk: Option<(TempFile, std::fs::File)>,
    cipher: Aes128,
    nonce: [u8; 8],
    len: u64,
}

impl Spool {
    /// A spool keeping up to `limit` bytes in memory, beyond that a temporary file in `dir`.
    pub fn new(dir: &Path, limit: usize) -> Spool {
        Spool {
            mem: Vec::new(),
            limit,
            dir: dir.to_path_buf(),
            disk: None,
            cipher: cipher(&rand::random::<[u8; 16]>()),
            nonce: rand::random(),
            len: 0,
        }
    }

    /// Bytes written.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The temporary file, if the content went to disk.
    pub fn file(&self) -> Option<&Path> {
        self.disk.as_ref().map(|(t, _)| t.path())
    }

    /// Appends `data` (encrypted if it goes to disk).
    pub fn append(&mut self, data: &[u8]) -> std::io::Result<()> {
        if self.disk.is_none() && self.mem.len() + data.len() > self.limit {
            let (tmp, file) = TempFile::create_tagged(&self.dir.join("spool"), "megacmd")?;
            self.disk = Some((tmp, file));
            let held = std::mem::take(&mut self.mem);
            self.len = 0;
            self.write_disk(&held)?;
        }
        if self.disk.is_some() {
            return self.write_disk(data);
        }
        self.mem.extend_from_slice(data);
        self.len += data.len() as u64;
        Ok(())
    }

    fn write_disk(&mut self, data: &[u8]) -> std::io::Result<()> {
        let Some((_, file)) = &self.disk else {
            return Err(std::io::Error::other("the spool has no file"));
        };
        let mut buf = data.to_vec();
        ctr_apply(&self.cipher, &self.nonce, self.len, &mut buf);
        file.write_all_at(&buf, self.len)?;
        self.len += buf.len() as u64;
        Ok(())
    }

    /// Writes the whole content, decrypted, to `out`.
    pub fn copy_to(&self, out: &mut impl Write) -> std::io::Result<()> {
        let Some((_, file)) = &self.disk else {
            return out.write_all(&self.mem);
        };
        let mut at = 0u64;
        while at < self.len {
            let n = ((self.len - at) as usize).min(STEP);
            let mut buf = vec![0u8; n];
            file.read_exact_at(&mut buf, at)?;
            ctr_apply(&self.cipher, &self.nonce, at, &mut buf);
            out.write_all(&buf)?;
            at += n as u64;
        }
        Ok(())
    }
}

impl tokio::io::AsyncWrite for Spool {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        // Local sequential writes of one piece at a time: short, done in place.
        let r = self.get_mut().append(buf);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_content_stays_in_memory_and_large_goes_to_disk_encrypted() {
        let d = tempfile::tempdir().unwrap();
        let marker = b"PLAIN MARKER 42 ";
        let body: Vec<u8> = marker.iter().copied().cycle().take(300_000).collect();

        let mut s = Spool::new(d.path(), 1_000_000);
        s.append(&body).unwrap();
        assert!(s.file().is_none());
        let mut out = Vec::new();
        s.copy_to(&mut out).unwrap();
        assert_eq!(out, body);

        let mut s = Spool::new(d.path(), 100_000);
        for piece in body.chunks(70_001) {
            s.append(piece).unwrap();
        }
        assert_eq!(s.len(), body.len() as u64);
        let path = s.file().unwrap().to_path_buf();
        let on_disk = std::fs::read(&path).unwrap();
        assert_eq!(on_disk.len(), body.len());
        assert!(!on_disk.windows(marker.len()).any(|w| w == marker));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let mut out = Vec::new();
        s.copy_to(&mut out).unwrap();
        assert_eq!(out, body);
        drop(s);
        assert!(!path.exists(), "removed when dropped");
    }
}
