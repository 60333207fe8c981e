//! AES-128 in the three modes MEGA uses: ECB (key wrapping), CBC with a zero IV (attributes,
//! file attributes) and CTR with the counter block `nonce ‖ BE64(offset / 16)` (content, by the
//! `ctr` crate: measured faster than the hand-written loop it replaced, `doc/BENCHMARKS.md`).

use aes::cipher::generic_array::GenericArray;
use aes::cipher::{
    BlockDecrypt, BlockEncrypt, InnerIvInit, KeyInit, StreamCipher, StreamCipherCoreWrapper,
    StreamCipherSeek,
};
use aes::Aes128;

/// Builds an AES-128 cipher from a raw key.
/// AES-128-GCM (12-byte IV, 16-byte tag) of a buffer: ciphertext ‖ tag. MEGA's encrypted
/// containers (`^!keys`, `*`-TLV attributes) use it.
pub fn gcm_seal(key: &[u8; 16], iv: &[u8; 12], plain: &[u8]) -> Vec<u8> {
    use aes_gcm::aead::{Aead, KeyInit};
    // Encryption of an in-memory buffer cannot fail.
    aes_gcm::Aes128Gcm::new(key.into())
        .encrypt(aes_gcm::Nonce::from_slice(iv), plain)
        .unwrap_or_default()
}

/// Opens what [`gcm_seal`] made; `None` if it does not authenticate.
pub fn gcm_open(key: &[u8; 16], iv: &[u8; 12], sealed: &[u8]) -> Option<Vec<u8>> {
    use aes_gcm::aead::{Aead, KeyInit};
    aes_gcm::Aes128Gcm::new(key.into())
        .decrypt(aes_gcm::Nonce::from_slice(iv), sealed)
        .ok()
}

pub fn cipher(key: &[u8; 16]) -> Aes128 {
    Aes128::new(GenericArray::from_slice(key))
}

/// Encrypts one block in place.
#[inline]
pub fn encrypt_block(c: &Aes128, block: &mut [u8; 16]) {
    c.encrypt_block(GenericArray::from_mut_slice(block));
}

/// ECB-encrypts `data` in place. Panics if the length is not a multiple of 16 (callers pass
/// internally sized buffers; outside input is length-checked first).
pub fn ecb_encrypt(key: &[u8; 16], data: &mut [u8]) {
    assert!(data.len() % 16 == 0, "invariant: ECB data is block aligned");
    let c = cipher(key);
    for chunk in data.chunks_exact_mut(16) {
        c.encrypt_block(GenericArray::from_mut_slice(chunk));
    }
}

/// ECB-decrypts `data` in place (length must be a multiple of 16).
pub fn ecb_decrypt(key: &[u8; 16], data: &mut [u8]) {
    assert!(data.len() % 16 == 0, "invariant: ECB data is block aligned");
    let c = cipher(key);
    for chunk in data.chunks_exact_mut(16) {
        c.decrypt_block(GenericArray::from_mut_slice(chunk));
    }
}

/// CBC-encrypts `data` in place with a zero IV (length must be a multiple of 16).
pub fn cbc_encrypt_zero_iv(key: &[u8; 16], data: &mut [u8]) {
    assert!(data.len() % 16 == 0, "invariant: CBC data is block aligned");
    let c = cipher(key);
    let mut prev = [0u8; 16];
    for chunk in data.chunks_exact_mut(16) {
        for (b, p) in chunk.iter_mut().zip(prev.iter()) {
            *b ^= p;
        }
        c.encrypt_block(GenericArray::from_mut_slice(chunk));
        prev.copy_from_slice(chunk);
    }
}

/// CBC-decrypts `data` in place with a zero IV (length must be a multiple of 16).
pub fn cbc_decrypt_zero_iv(key: &[u8; 16], data: &mut [u8]) {
    assert!(data.len() % 16 == 0, "invariant: CBC data is block aligned");
    let c = cipher(key);
    let mut prev = [0u8; 16];
    for chunk in data.chunks_exact_mut(16) {
        let mut cur = [0u8; 16];
        cur.copy_from_slice(chunk);
        c.decrypt_block(GenericArray::from_mut_slice(chunk));
        for (b, p) in chunk.iter_mut().zip(prev.iter()) {
            *b ^= p;
        }
        prev = cur;
    }
}

/// The CTR counter block for a byte offset (which must be 16-aligned).
pub fn ctr_block(nonce: &[u8; 8], offset: u64) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(nonce);
    b[8..].copy_from_slice(&(offset / 16).to_be_bytes());
    b
}

/// Applies the AES-CTR keystream to `data`, which starts at byte `offset` of the file.
/// `offset` may be unaligned: the keystream of the enclosing block is generated and the
/// leading bytes are skipped. Encryption and decryption are the same operation.
pub fn ctr_apply(c: &Aes128, nonce: &[u8; 8], offset: u64, data: &mut [u8]) {
    // The counter block is a 128-bit big-endian integer incremented per block (as the SDK's
    // CTR mode does), starting from `nonce ‖ 0`; seeking positions it at `offset`.
    let core = ctr::CtrCore::<Aes128, ctr::flavors::Ctr128BE>::inner_iv_init(
        c.clone(),
        GenericArray::from_slice(&ctr_block(nonce, 0)),
    );
    let mut stream = StreamCipherCoreWrapper::from_core(core);
    stream.seek(offset);
    stream.apply_keystream(data);
}
