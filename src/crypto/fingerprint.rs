//! The SDK file fingerprint, carried in the `c` node attribute: a sparse CRC32 of the content
//! plus the modification time (`MEGA-PROTOCOL.md` §5.6). It is how MEGA clients keep mtimes.

use super::{b64, CryptoError};

/// Files up to this size store their bytes directly as the CRC field.
const TINY: u64 = 16;
/// Files up to this size get four full CRC32 lanes over quarters of the file.
const SMALL: u64 = 8192;
/// Sparse sampling: blocks per lane and bytes per block.
const SPARSE_BLOCKS: u64 = 32;
const SPARSE_WINDOW: u64 = 64;

/// A parsed fingerprint: the 16 CRC bytes and the mtime (Unix seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint {
    pub crc: [u8; 16],
    pub mtime: i64,
}

/// Random access to a file's bytes, so the sparse fingerprint reads only what it needs.
pub trait ReadAt {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> std::io::Result<()>;
}

impl ReadAt for &[u8] {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let start = usize::try_from(offset).map_err(std::io::Error::other)?;
        let src = self
            .get(start..start + buf.len())
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

impl ReadAt for std::fs::File {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(self, buf, offset)
    }
}

/// Computes the CRC part for `size` bytes readable through `r`.
pub fn crc<R: ReadAt>(r: &mut R, size: u64) -> std::io::Result<[u8; 16]> {
    let mut out = [0u8; 16];
    if size <= TINY {
        r.read_at(0, &mut out[..size as usize])?;
        return Ok(out);
    }
    if size <= SMALL {
        let mut data = vec![0u8; size as usize];
        r.read_at(0, &mut data)?;
        let n = data.len();
        for i in 0..4 {
            let lane = crc32fast::hash(&data[i * n / 4..(i + 1) * n / 4]);
            out[4 * i..4 * i + 4].copy_from_slice(&lane.to_be_bytes());
        }
        return Ok(out);
    }
    let mut window = [0u8; SPARSE_WINDOW as usize];
    let total = 4 * SPARSE_BLOCKS - 1;
    for i in 0..4u64 {
        let mut h = crc32fast::Hasher::new();
        for j in 0..SPARSE_BLOCKS {
            // 64-bit arithmetic: the SDK's old 32-bit version overflowed for large files.
            let off = (size - SPARSE_WINDOW) * (i * SPARSE_BLOCKS + j) / total;
            r.read_at(off, &mut window)?;
            h.update(&window);
        }
        out[4 * i as usize..4 * i as usize + 4].copy_from_slice(&h.finalize().to_be_bytes());
    }
    Ok(out)
}

impl Fingerprint {
    /// Fingerprint of in-memory content.
    pub fn of_bytes(data: &[u8], mtime: i64) -> Self {
        let crc = crc(&mut &data[..], data.len() as u64)
            .expect("invariant: reads within a slice of known length succeed");
        Fingerprint { crc, mtime }
    }

    /// Serializes to the `c` attribute string: base64url(crc ‖ n ‖ mtime as n LE bytes).
    pub fn encode(&self) -> String {
        let mut raw = self.crc.to_vec();
        let m = self.mtime.max(0) as u64;
        let bytes = m.to_le_bytes();
        let n = 8 - (m.leading_zeros() / 8) as usize;
        raw.push(n as u8);
        raw.extend_from_slice(&bytes[..n]);
        b64::encode(&raw)
    }

    /// Parses a `c` attribute string.
    pub fn decode(s: &str) -> Result<Self, CryptoError> {
        let raw = b64::decode(s, "fingerprint").map_err(|_| CryptoError::BadFingerprint)?;
        if raw.len() < 17 {
            return Err(CryptoError::BadFingerprint);
        }
        let n = raw[16] as usize;
        if n > 8 || raw.len() < 17 + n {
            return Err(CryptoError::BadFingerprint);
        }
        let mut m = [0u8; 8];
        m[..n].copy_from_slice(&raw[17..17 + n]);
        let mut crc = [0u8; 16];
        crc.copy_from_slice(&raw[..16]);
        Ok(Fingerprint {
            crc,
            mtime: i64::try_from(u64::from_le_bytes(m)).map_err(|_| CryptoError::BadFingerprint)?,
        })
    }
}
