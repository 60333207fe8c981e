//! Password key derivation: v1 `prepare_key` + `stringhash` (the `uh` login hash) and v2
//! PBKDF2-HMAC-SHA512 (`MEGA-PROTOCOL.md` §3.1, §3.2, §4.2).

use aes::cipher::generic_array::GenericArray;
use aes::cipher::BlockEncrypt;

use super::aes::cipher;
use super::keys::Key128;

/// The fixed starting value of v1 `prepare_key`.
const PREPARE_KEY_INIT: [u8; 16] = [
    0x93, 0xC4, 0x67, 0xE3, 0x7D, 0xB0, 0xC7, 0xA4, 0xD1, 0xBE, 0x3F, 0x81, 0x01, 0x52, 0xCB, 0x56,
];
/// v1 `prepare_key` rounds.
const PREPARE_KEY_ROUNDS: usize = 0x10000;
/// v1 `stringhash` rounds.
const STRINGHASH_ROUNDS: usize = 0x4000;
/// v2 PBKDF2 iteration count.
pub const V2_ITERATIONS: u32 = 100_000;

/// v1 password key from the password's UTF-8 bytes.
pub fn prepare_key(password: &[u8]) -> Key128 {
    let keys: Vec<_> = password
        .chunks(16)
        .map(|c| {
            let mut k = [0u8; 16];
            k[..c.len()].copy_from_slice(c);
            cipher(&k)
        })
        .collect();
    let mut pkey = GenericArray::from(PREPARE_KEY_INIT);
    for _ in 0..PREPARE_KEY_ROUNDS {
        for k in &keys {
            k.encrypt_block(&mut pkey);
        }
    }
    Key128(pkey.into())
}

/// v1 login hash of the (already lower-cased) e-mail under the password key: 8 bytes.
pub fn stringhash(email: &[u8], pwkey: &Key128) -> [u8; 8] {
    let mut h = [0u8; 16];
    for (i, b) in email.iter().enumerate() {
        h[i % 16] ^= b;
    }
    let c = cipher(&pwkey.0);
    let mut block = GenericArray::from(h);
    for _ in 0..STRINGHASH_ROUNDS {
        c.encrypt_block(&mut block);
    }
    let mut out = [0u8; 8];
    out[..4].copy_from_slice(&block[0..4]);
    out[4..].copy_from_slice(&block[8..12]);
    out
}

/// v2 derivation: `(password key, auth key)` = the two halves of
/// PBKDF2-HMAC-SHA512(password, salt, 100000, 32).
pub fn derive_v2(password: &[u8], salt: &[u8]) -> (Key128, [u8; 16]) {
    let mut dk = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<sha2::Sha512>(password, salt, V2_ITERATIONS, &mut dk);
    let mut pw = [0u8; 16];
    pw.copy_from_slice(&dk[..16]);
    let mut auth = [0u8; 16];
    auth.copy_from_slice(&dk[16..]);
    zeroize::Zeroize::zeroize(&mut dk);
    (Key128(pw), auth)
}
