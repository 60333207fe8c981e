//! MEGA's content MAC: the chunk schedule, the per-chunk CBC-MAC over plaintext, and the
//! condensed 8-byte meta-MAC stored in the file key (`MEGA-PROTOCOL.md` §6.4).
//!
//! Chunks are 128 KiB, 256 KiB, … 1 MiB (eight growing steps), then 1 MiB forever. A chunk MAC
//! is CBC-MAC with IV `nonce ‖ nonce` (the last block zero-padded); the meta-MAC is CBC with a
//! zero IV over the chunk MACs, folded to 8 bytes. [`decrypt_piece`] / [`encrypt_piece`] do CTR
//! and the MACs of a run of whole chunks, computing several chunks' MACs in parallel lanes.

use aes::cipher::generic_array::GenericArray;
use aes::cipher::BlockEncrypt;
use aes::Aes128;

use super::aes::{cipher, ctr_apply};

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

/// The length of chunk `index` of a file of `size` bytes (0 past its end).
pub fn chunk_len(index: u64, size: u64) -> u64 {
    chunk_start(index + 1).min(size) - chunk_start(index).min(size)
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

/// CBC-MAC of one chunk's plaintext.
pub fn chunk_mac(c: &Aes128, nonce: &[u8; 8], plain: &[u8]) -> [u8; 16] {
    chunk_macs(c, nonce, &[plain])[0]
}

/// Independent MAC chains computed side by side. AES-NI takes several cycles per round but can
/// start a new block every cycle, so interleaving the CBC-MAC chains of several chunks (each one
/// is serial on its own) runs them at up to this many times the speed of a single chain.
const LANES: usize = 8;

/// MACs of several chunks' plaintexts, computed in interleaved lanes.
pub fn chunk_macs(c: &Aes128, nonce: &[u8; 8], chunks: &[&[u8]]) -> Vec<[u8; 16]> {
    let mut out = Vec::with_capacity(chunks.len());
    let mut init = GenericArray::default();
    init[..8].copy_from_slice(nonce);
    init[8..].copy_from_slice(nonce);
    for group in chunks.chunks(LANES) {
        if let [single] = group {
            // One chain: no lane bookkeeping.
            let mut st = init;
            for block in single.chunks(16) {
                for (m, b) in st.iter_mut().zip(block) {
                    *m ^= b;
                }
                c.encrypt_block(&mut st);
            }
            out.push(st.into());
            continue;
        }
        let mut states = [init; LANES];
        let blocks: Vec<usize> = group.iter().map(|c| c.len().div_ceil(16)).collect();
        let common = blocks.iter().copied().min().unwrap_or(0);
        let rounds = blocks.iter().copied().max().unwrap_or(0);
        let n = group.len();
        // While every lane still has data, work on the states in place.
        for step in 0..common {
            for (st, chunk) in states.iter_mut().zip(group.iter()) {
                let block = &chunk[step * 16..((step + 1) * 16).min(chunk.len())];
                for (m, b) in st.iter_mut().zip(block) {
                    *m ^= b;
                }
            }
            c.encrypt_blocks(&mut states[..n]);
        }
        // Then the longer chunks' tails, compacting the lanes still running.
        let mut active = [GenericArray::default(); LANES];
        let mut which = [0usize; LANES];
        for step in common..rounds {
            let mut k = 0;
            for (lane, chunk) in group.iter().enumerate() {
                if step >= blocks[lane] {
                    continue;
                }
                let block = &chunk[step * 16..((step + 1) * 16).min(chunk.len())];
                let mut st = states[lane];
                // A short final block is zero-padded: XOR only its bytes.
                for (m, b) in st.iter_mut().zip(block) {
                    *m ^= b;
                }
                active[k] = st;
                which[k] = lane;
                k += 1;
            }
            c.encrypt_blocks(&mut active[..k]);
            for j in 0..k {
                states[which[j]] = active[j];
            }
        }
        out.extend(states[..n].iter().map(|s| <[u8; 16]>::from(*s)));
    }
    out
}

/// Decrypts (AES-CTR) a piece of whole chunks starting at chunk boundary `start` in place and
/// returns the MAC of each chunk's plaintext, in order.
pub fn decrypt_piece(c: &Aes128, nonce: &[u8; 8], start: u64, data: &mut [u8]) -> Vec<[u8; 16]> {
    ctr_apply(c, nonce, start, data);
    piece_macs(c, nonce, start, data)
}

/// Computes the MAC of each chunk of a piece (starting at chunk boundary `start`), then
/// encrypts the piece (AES-CTR) in place.
pub fn encrypt_piece(c: &Aes128, nonce: &[u8; 8], start: u64, data: &mut [u8]) -> Vec<[u8; 16]> {
    let macs = piece_macs(c, nonce, start, data);
    ctr_apply(c, nonce, start, data);
    macs
}

/// The MAC of each chunk of a plaintext piece starting at chunk boundary `start` (a local
/// copy checked against MACs recorded earlier, when a transfer resumes).
pub fn piece_macs(c: &Aes128, nonce: &[u8; 8], start: u64, data: &[u8]) -> Vec<[u8; 16]> {
    debug_assert!(
        is_chunk_boundary(start),
        "invariant: pieces start on chunk boundaries"
    );
    let mut views = Vec::new();
    let mut rest = data;
    let mut idx = chunk_index(start);
    while !rest.is_empty() {
        let len = ((chunk_start(idx + 1) - chunk_start(idx)) as usize).min(rest.len());
        let (head, tail) = rest.split_at(len);
        views.push(head);
        rest = tail;
        idx += 1;
    }
    chunk_macs(c, nonce, &views)
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

/// Whether `size` bytes read from `r` are the content a file key vouches for: their chunk MACs
/// condensed equal the key's meta-MAC (the SDK's or megajs' form). Nothing is encrypted or
/// sent: this proves a local file equals a node without downloading it. Content shorter or
/// longer than `size` does not match.
pub fn content_matches<R: std::io::Read>(
    r: &mut R,
    size: u64,
    key: &super::keys::FileKey,
) -> std::io::Result<bool> {
    let c = cipher(&key.aes);
    let mut macs = Vec::with_capacity(chunk_count(size) as usize);
    // Eight chunks at a time (at most 8 MiB), so that the lanes run side by side.
    let spans: Vec<(u64, u64)> = chunks(size).collect();
    let mut buf = Vec::new();
    for group in spans.chunks(LANES) {
        let len: u64 = group.iter().map(|(_, l)| l).sum();
        buf.resize(len as usize, 0);
        match r.read_exact(&mut buf) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(false),
            Err(e) => return Err(e),
        }
        let mut views = Vec::with_capacity(group.len());
        let mut rest = buf.as_slice();
        for (_, l) in group {
            let (head, tail) = rest.split_at(*l as usize);
            views.push(head);
            rest = tail;
        }
        macs.extend(chunk_macs(&c, &key.nonce, &views));
    }
    let mut probe = [0u8; 1];
    if r.read(&mut probe)? != 0 {
        return Ok(false);
    }
    Ok(verify(&c, &key.nonce, size, &macs, &key.meta_mac))
}

/// The MACs under `key` of chunks `first..first + count` of a local plaintext copy of a file
/// of `size` bytes, read at their offsets: a copy checked against MACs recorded earlier (a
/// resumed transfer). A file shorter than those chunks is an `UnexpectedEof` error.
pub fn file_chunk_macs(
    file: &std::fs::File,
    key: &super::keys::FileKey,
    size: u64,
    first: u64,
    count: u64,
) -> std::io::Result<Vec<[u8; 16]>> {
    use std::os::unix::fs::FileExt;
    let c = cipher(&key.aes);
    let mut out = Vec::with_capacity(count.min(1 << 16) as usize);
    let mut buf = Vec::new();
    let mut i = first;
    // Eight chunks at a time (at most 8 MiB), so that the lanes run side by side.
    while i < first + count {
        let next = (i + LANES as u64).min(first + count);
        let (start, end) = (chunk_start(i).min(size), chunk_start(next).min(size));
        buf.resize((end - start) as usize, 0);
        file.read_exact_at(&mut buf, start)?;
        out.extend(piece_macs(&c, &key.nonce, start, &buf));
        i = next;
    }
    Ok(out)
}

/// Reference meta-MAC of a whole plaintext buffer (the SDK algorithm).
pub fn meta_mac(key: &[u8; 16], nonce: &[u8; 8], plain: &[u8]) -> [u8; 8] {
    let c = cipher(key);
    let macs: Vec<[u8; 16]> = chunks(plain.len() as u64)
        .map(|(s, l)| chunk_mac(&c, nonce, &plain[s as usize..(s + l) as usize]))
        .collect();
    condense(&c, &macs)
}
