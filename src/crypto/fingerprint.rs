//! The SDK file fingerprint, carried in the `c` node attribute: a sparse CRC32 of the content
//! plus the modification time (`MEGA-PROTOCOL.md` §5.6). It is how MEGA clients keep mtimes.
//! One implementation serves both ways of computing it: from a file read at random offsets
//! ([`crc`]) and from content streaming past during an upload ([`Sampler`]).

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

impl ReadAt for &std::fs::File {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(*self, buf, offset)
    }
}

impl ReadAt for std::sync::Arc<std::fs::File> {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(&**self, buf, offset)
    }
}

impl ReadAt for std::fs::File {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(self, buf, offset)
    }
}

/// The CRC of content small enough to be read whole (at most [`SMALL`] bytes).
fn small_crc(data: &[u8]) -> [u8; 16] {
    let mut out = [0u8; 16];
    if data.len() as u64 <= TINY {
        out[..data.len()].copy_from_slice(data);
        return out;
    }
    let n = data.len();
    for i in 0..4 {
        let lane = crc32fast::hash(&data[i * n / 4..(i + 1) * n / 4]);
        out[4 * i..4 * i + 4].copy_from_slice(&lane.to_be_bytes());
    }
    out
}

/// Where the sparse fingerprint of a large file samples its windows: `4 × SPARSE_BLOCKS`
/// offsets spread evenly from the start to the last full window, in lane order.
fn window_offsets(size: u64) -> impl Iterator<Item = u64> {
    let total = 4 * SPARSE_BLOCKS - 1;
    // 64-bit arithmetic: the SDK's old 32-bit version overflowed for large files.
    (0..4 * SPARSE_BLOCKS).map(move |k| (size - SPARSE_WINDOW) * k / total)
}

/// Collects what the fingerprint needs from content streaming past in order (an upload),
/// so that it is computed without reading the content twice.
pub struct Sampler {
    size: u64,
    /// Small files: the whole content (at most [`SMALL`] bytes).
    whole: Vec<u8>,
    /// Large files: the sampled windows, in lane order.
    windows: Vec<(u64, [u8; SPARSE_WINDOW as usize])>,
}

impl Sampler {
    pub fn new(size: u64) -> Self {
        let windows = if size > SMALL {
            window_offsets(size)
                .map(|o| (o, [0u8; SPARSE_WINDOW as usize]))
                .collect()
        } else {
            Vec::new()
        };
        Sampler {
            size,
            whole: Vec::new(),
            windows,
        }
    }

    /// Feeds `data`, which starts at byte `offset` of the content.
    pub fn feed(&mut self, offset: u64, data: &[u8]) {
        if self.size <= SMALL {
            let room = (SMALL as usize).saturating_sub(self.whole.len());
            self.whole.extend_from_slice(&data[..data.len().min(room)]);
            return;
        }
        let end = offset + data.len() as u64;
        for (w, buf) in self.windows.iter_mut() {
            let (ws, we) = (*w, *w + SPARSE_WINDOW);
            let (s, e) = (ws.max(offset), we.min(end));
            if s < e {
                buf[(s - ws) as usize..(e - ws) as usize]
                    .copy_from_slice(&data[(s - offset) as usize..(e - offset) as usize]);
            }
        }
    }

    /// The CRC part, once all content was fed.
    pub fn crc(&self) -> [u8; 16] {
        if self.size <= SMALL {
            return small_crc(&self.whole);
        }
        let mut out = [0u8; 16];
        for (lane, group) in self.windows.chunks(SPARSE_BLOCKS as usize).enumerate() {
            let mut h = crc32fast::Hasher::new();
            for (_, w) in group {
                h.update(w);
            }
            out[lane * 4..lane * 4 + 4].copy_from_slice(&h.finalize().to_be_bytes());
        }
        out
    }

    pub fn finish(self, mtime: i64) -> Fingerprint {
        Fingerprint {
            crc: self.crc(),
            mtime,
        }
    }
}

/// Computes the CRC part for `size` bytes readable through `r`, reading only the sampled
/// windows of a large file.
pub fn crc<R: ReadAt>(r: &mut R, size: u64) -> std::io::Result<[u8; 16]> {
    if size <= SMALL {
        let mut data = vec![0u8; size as usize];
        r.read_at(0, &mut data)?;
        return Ok(small_crc(&data));
    }
    let mut s = Sampler::new(size);
    let mut window = [0u8; SPARSE_WINDOW as usize];
    for off in window_offsets(size) {
        r.read_at(off, &mut window)?;
        s.feed(off, &window);
    }
    Ok(s.crc())
}

/// Files above this size may carry a CRC written by SDK builds with the 32-bit sparse-offset
/// bug (`MEGA-FILES-TRANSFERS.md` §2.2): `0xFFFFFFFF / 127 + 64`.
pub const LEGACY_OVERFLOW_MIN_SIZE: u64 = 0xFFFF_FFFF / (4 * SPARSE_BLOCKS - 1) + SPARSE_WINDOW;

/// Where a buggy 32-bit SDK build started sparse window `k`: the product wrapped modulo 2^32.
fn legacy_offset(size: u64, k: u64) -> u64 {
    let total = 4 * SPARSE_BLOCKS - 1;
    let wrapped = (size as u32)
        .wrapping_sub(SPARSE_WINDOW as u32)
        .wrapping_mul(k as u32);
    (u64::from(wrapped) / total).min(size - SPARSE_WINDOW)
}

/// The CRCs SDK builds with the 32-bit sparse-offset bug wrote for `size` bytes of `r`: the
/// random-access variant and, if it stays inside the file, the forward-only one (the SDK's
/// `computeLegacyBuggySparseCrcFA`/`IA`). Empty for files the bug cannot touch.
pub fn legacy_crcs<R: ReadAt>(r: &mut R, size: u64) -> std::io::Result<Vec<[u8; 16]>> {
    if size <= LEGACY_OVERFLOW_MIN_SIZE {
        return Ok(Vec::new());
    }
    let offsets: Vec<u64> = (0..4 * SPARSE_BLOCKS)
        .map(|k| legacy_offset(size, k))
        .collect();
    let mut window = [0u8; SPARSE_WINDOW as usize];
    let mut lanes = |positions: &[u64], r: &mut R| -> std::io::Result<[u8; 16]> {
        let mut out = [0u8; 16];
        for (lane, group) in positions.chunks(SPARSE_BLOCKS as usize).enumerate() {
            let mut h = crc32fast::Hasher::new();
            for &p in group {
                r.read_at(p, &mut window)?;
                h.update(&window);
            }
            out[lane * 4..lane * 4 + 4].copy_from_slice(&h.finalize().to_be_bytes());
        }
        Ok(out)
    };
    let mut out = vec![lanes(&offsets, r)?];
    // Forward-only: the stream never seeks back; a window "behind" is read where it stands.
    let (mut pos, mut cur) = (0u64, 0u64);
    let mut forward = Vec::with_capacity(offsets.len());
    for &off in &offsets {
        pos += off.saturating_sub(cur);
        cur = off;
        forward.push(pos);
        pos += SPARSE_WINDOW;
        cur += SPARSE_WINDOW;
    }
    if forward.iter().all(|&p| p + SPARSE_WINDOW <= size) {
        out.push(lanes(&forward, r)?);
    }
    Ok(out)
}

/// Whether `crc` is the fingerprint CRC of `size` bytes of `r`: the correct form, or one of
/// the forms buggy 32-bit SDK builds wrote for large files (which the SDK now accepts).
pub fn crc_matches<R: ReadAt>(r: &mut R, size: u64, crc: &[u8; 16]) -> std::io::Result<bool> {
    if &self::crc(r, size)? == crc {
        return Ok(true);
    }
    Ok(legacy_crcs(r, size)?.iter().any(|c| c == crc))
}

impl Fingerprint {
    /// Fingerprint of in-memory content.
    pub fn of_bytes(data: &[u8], mtime: i64) -> Self {
        let mut s = Sampler::new(data.len() as u64);
        s.feed(0, data);
        s.finish(mtime)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streamed_sampling_equals_random_access_reading() {
        for size in [0usize, 1, 16, 17, 8192, 8193, 20000, 1_000_003] {
            let data: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
            let direct = crc(&mut &data[..], size as u64).unwrap();
            for piece in [1usize, 63, 64, 4096, 1 << 20] {
                let mut s = Sampler::new(size as u64);
                for (i, c) in data.chunks(piece).enumerate() {
                    s.feed((i * piece) as u64, c);
                }
                assert_eq!(s.crc(), direct, "size {size} piece {piece}");
            }
        }
    }

    #[test]
    fn the_32_bit_sparse_offset_bug() {
        // The documented offsets for a 100,000,000-byte file.
        assert_eq!(legacy_offset(100_000_000, 42), 33_070_844);
        assert_eq!(legacy_offset(100_000_000, 43), 39_605);
        assert_eq!(legacy_offset(100_000_000, 127), 32_362_655);
        assert_eq!(LEGACY_OVERFLOW_MIN_SIZE, 33_818_704);
        // Below the threshold every offset is the correct one.
        let small = LEGACY_OVERFLOW_MIN_SIZE;
        assert!((0..128).all(|k| legacy_offset(small, k) == (small - 64) * k / 127));
        let data: Vec<u8> = (0..small as usize).map(|i| (i % 253) as u8).collect();
        assert!(legacy_crcs(&mut data.as_slice(), small).unwrap().is_empty());

        // Above it: the legacy forms differ from the correct one, and all three match.
        let size = 40_000_000usize;
        let mut x = 0x1234_5678u32;
        let data: Vec<u8> = (0..size)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        let mut r = data.as_slice();
        let correct = crc(&mut r, size as u64).unwrap();
        let legacy = legacy_crcs(&mut r, size as u64).unwrap();
        assert_eq!(legacy.len(), 2, "both variants stay inside the file");
        for l in &legacy {
            assert_ne!(*l, correct);
            assert!(crc_matches(&mut r, size as u64, l).unwrap());
        }
        assert_ne!(
            legacy[0], legacy[1],
            "random access and forward-only differ"
        );
        assert!(crc_matches(&mut r, size as u64, &correct).unwrap());
        assert!(!crc_matches(&mut r, size as u64, &[7; 16]).unwrap());
        // The forward-only variant reads windows in order: the one of a wrapped offset
        // lies right after the previous window.
        let fa0 = legacy_offset(size as u64, 108);
        assert!(fa0 < legacy_offset(size as u64, 107));
    }
}
