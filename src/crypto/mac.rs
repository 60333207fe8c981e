//! MEGA's content MAC: the chunk schedule, the per-chunk CBC-MAC over plaintext, and the
//! condensed 8-byte meta-MAC stored in the file key (`MEGA-PROTOCOL.md` §6.4).
//!
//! Chunks are 128 KiB, 256 KiB, … 1 MiB (eight growing steps), then 1 MiB forever. A chunk MAC
//! is CBC-MAC with IV `nonce ‖ nonce` (the last block zero-padded); the meta-MAC is CBC with a
//! zero IV over the chunk MACs, folded to 8 bytes. The fused [`decrypt_chunk`] /
//! [`encrypt_chunk`] do CTR and MAC in one pass over the data.

use aes::cipher::generic_array::GenericArray;
use aes::cipher::BlockEncrypt;
use aes::Aes128;

use super::aes::{cipher, ctr_block};

/// MEGA MAC chunks grow in steps of 128 KiB.
pub const SEGMENT: u64 = 128 * 1024;
/// MEGA MAC chunks stop growing at 1 MiB (the ninth chunk and later).
pub const MAX_CHUNK: u64 = 8 * SEGMENT;
/// Where the growing region ends: 128 KiB × (1 + 2 + … + 8).
const GROWING_END: u64 = 36 * SEGMENT;

/// Start offset of chunk `index`.
pub fn chunk_start(index: u64) -> u64 {
    if index <= 8 {
        SEGMENT * index * (index + 1) / 2
    } else {
        GROWING_END + (index - 8) * MAX_CHUNK
    }
}

/// Index of the chunk containing byte `offset`.
pub fn chunk_index(offset: u64) -> u64 {
    if offset >= GROWING_END {
        return 8 + (offset - GROWING_END) / MAX_CHUNK;
    }
    let mut i = 0;
    while chunk_start(i + 1) <= offset {
        i += 1;
    }
    i
}

/// True if `offset` is the first byte of a chunk.
pub fn is_chunk_boundary(offset: u64) -> bool {
    chunk_start(chunk_index(offset)) == offset
}

/// The chunks of a file of `size` bytes as `(start, len)`; none for an empty file.
pub fn chunks(size: u64) -> impl Iterator<Item = (u64, u64)> {
    let mut index = 0u64;
    std::iter::from_fn(move || {
        let start = chunk_start(index);
        if start >= size {
            return None;
        }
        let len = (chunk_start(index + 1) - start).min(size - start);
        index += 1;
        Some((start, len))
    })
}

/// Number of chunks of a file of `size` bytes.
pub fn chunk_count(size: u64) -> u64 {
    if size == 0 {
        0
    } else {
        chunk_index(size - 1) + 1
    }
}

fn xor16(a: &mut [u8; 16], b: &[u8]) {
    for (x, y) in a.iter_mut().zip(b) {
        *x ^= y;
    }
}

/// An in-progress chunk MAC.
struct MacState<'a> {
    c: &'a Aes128,
    mac: GenericArray<u8, aes::cipher::consts::U16>,
}

impl<'a> MacState<'a> {
    fn new(c: &'a Aes128, nonce: &[u8; 8]) -> Self {
        let mut mac = GenericArray::default();
        mac[..8].copy_from_slice(nonce);
        mac[8..].copy_from_slice(nonce);
        MacState { c, mac }
    }

    /// Absorbs up to 16 plaintext bytes (a short final block is zero-padded).
    #[inline]
    fn update(&mut self, block: &[u8]) {
        for (m, b) in self.mac.iter_mut().zip(block) {
            *m ^= b;
        }
        self.c.encrypt_block(&mut self.mac);
    }

    fn finish(self) -> [u8; 16] {
        self.mac.into()
    }
}

/// CBC-MAC of one chunk's plaintext.
pub fn chunk_mac(c: &Aes128, nonce: &[u8; 8], plain: &[u8]) -> [u8; 16] {
    let mut st = MacState::new(c, nonce);
    for block in plain.chunks(16) {
        st.update(block);
    }
    st.finish()
}

/// Blocks per batch in the fused CTR+MAC loops.
const BATCH: usize = 8;

/// Decrypts (AES-CTR) one whole chunk in place and returns the MAC of its plaintext.
/// `offset` is the chunk's start in the file and must be 16-aligned (chunk starts are).
pub fn decrypt_chunk(c: &Aes128, nonce: &[u8; 8], offset: u64, data: &mut [u8]) -> [u8; 16] {
    debug_assert!(offset % 16 == 0, "invariant: chunks start 16-aligned");
    let mut st = MacState::new(c, nonce);
    let mut counter = u128::from_be_bytes(ctr_block(nonce, offset));
    let mut ks = [GenericArray::default(); BATCH];
    for batch in data.chunks_mut(16 * BATCH) {
        for blk in ks.iter_mut() {
            blk.copy_from_slice(&counter.to_be_bytes());
            counter = counter.wrapping_add(1);
        }
        c.encrypt_blocks(&mut ks);
        for (block, k) in batch.chunks_mut(16).zip(ks.iter()) {
            for (d, s) in block.iter_mut().zip(k.iter()) {
                *d ^= s;
            }
            st.update(block);
        }
    }
    st.finish()
}

/// Computes the MAC of one whole chunk's plaintext and encrypts it (AES-CTR) in place.
pub fn encrypt_chunk(c: &Aes128, nonce: &[u8; 8], offset: u64, data: &mut [u8]) -> [u8; 16] {
    debug_assert!(offset % 16 == 0, "invariant: chunks start 16-aligned");
    let mut st = MacState::new(c, nonce);
    let mut counter = u128::from_be_bytes(ctr_block(nonce, offset));
    let mut ks = [GenericArray::default(); BATCH];
    for batch in data.chunks_mut(16 * BATCH) {
        for blk in ks.iter_mut() {
            blk.copy_from_slice(&counter.to_be_bytes());
            counter = counter.wrapping_add(1);
        }
        c.encrypt_blocks(&mut ks);
        for (block, k) in batch.chunks_mut(16).zip(ks.iter()) {
            st.update(block);
            for (d, s) in block.iter_mut().zip(k.iter()) {
                *d ^= s;
            }
        }
    }
    st.finish()
}

/// Condenses chunk MACs (in file order) into the 8-byte meta-MAC, as the official SDK does.
pub fn condense<'a>(c: &Aes128, macs: impl IntoIterator<Item = &'a [u8; 16]>) -> [u8; 8] {
    let mut m = [0u8; 16];
    for cm in macs {
        xor16(&mut m, cm);
        c.encrypt_block(GenericArray::from_mut_slice(&mut m));
    }
    fold(&m)
}

fn fold(m: &[u8; 16]) -> [u8; 8] {
    let mut out = [0u8; 8];
    for i in 0..4 {
        out[i] = m[i] ^ m[4 + i];
        out[4 + i] = m[8 + i] ^ m[12 + i];
    }
    out
}

/// The meta-MAC megajs computes for the same chunk MACs. It differs from the SDK's only for
/// an empty file and for sizes that end exactly on a chunk boundary, where megajs folds in
/// one extra `nonce ‖ nonce` block (§12.6). Returns `None` where both algorithms agree.
pub fn megajs_variant(
    c: &Aes128,
    nonce: &[u8; 8],
    size: u64,
    macs: &[[u8; 16]],
) -> Option<[u8; 8]> {
    if size != 0 && !is_chunk_boundary(size) {
        return None;
    }
    let mut extra = [0u8; 16];
    extra[..8].copy_from_slice(nonce);
    extra[8..].copy_from_slice(nonce);
    Some(condense(c, macs.iter().chain(std::iter::once(&extra))))
}

/// True if `expected` is the meta-MAC of these chunk MACs under either the SDK's algorithm
/// or megajs' variant (which real files uploaded by megajs carry).
pub fn verify(
    c: &Aes128,
    nonce: &[u8; 8],
    size: u64,
    macs: &[[u8; 16]],
    expected: &[u8; 8],
) -> bool {
    if &condense(c, macs) == expected {
        return true;
    }
    megajs_variant(c, nonce, size, macs).as_ref() == Some(expected)
}

/// Reference meta-MAC of a whole plaintext buffer (the SDK algorithm).
pub fn meta_mac(key: &[u8; 16], nonce: &[u8; 8], plain: &[u8]) -> [u8; 8] {
    let c = cipher(key);
    let macs: Vec<[u8; 16]> = chunks(plain.len() as u64)
        .map(|(s, l)| chunk_mac(&c, nonce, &plain[s as usize..(s + l) as usize]))
        .collect();
    condense(&c, &macs)
}
