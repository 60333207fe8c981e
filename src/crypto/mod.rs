//! MEGA's client-side cryptography: pure functions and small value types, no I/O and no async.
//!
//! Everything here follows `MEGA-PROTOCOL.md` §2–§6 and is checked against the known-answer
//! vectors in `tests/data/mega-vectors.json` (see `tests.rs`).
//!
//! * [`b64`]: MEGA's base64url (no padding; `+`/`/` accepted when decoding).
//! * [`aes`]: AES-128 ECB key wrapping, CBC with a zero IV (attributes), CTR from any offset.
//! * [`mac`]: the MAC chunk schedule, per-chunk CBC-MAC and the condensed meta-MAC.
//! * [`kdf`]: v1 `prepare_key` + `stringhash`, v2 PBKDF2-SHA512.
//! * [`rsa`]: MPI parsing, the encrypted private key blob, CRT decryption of `csid`.
//! * [`attr`]: node attribute encryption (`MEGA{json}`).
//! * [`fingerprint`]: the SDK file fingerprint carried in the `c` attribute.
//! * [`keymgr`]: the key manager container (`^!keys`) and the pairwise key of pending keys.
//! * [`keys`]: key newtypes ([`MasterKey`], [`FileKey`], [`FolderKey`]) with redacted `Debug`.
//!
//! Must not depend on any other module of this crate.

pub mod aes;
pub mod attr;
pub mod authring;
pub mod b64;
pub mod fingerprint;
pub mod json;
pub mod kdf;
pub mod keymgr;
pub mod keys;
pub mod mac;
pub mod rsa;
pub mod tlv;

#[cfg(test)]
mod tests;

pub use keys::{FileKey, FolderKey, Key128, MasterKey, NodeKey};

/// Errors from decoding or decrypting data that came from outside (server, link, session file).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("invalid base64 in {what}")]
    Base64 { what: &'static str },
    #[error("{what} has length {got}, expected {expected}")]
    Length {
        what: &'static str,
        got: usize,
        expected: &'static str,
    },
    #[error("attributes could not be decrypted (wrong key or corrupt data)")]
    BadAttributes,
    #[error("malformed RSA data: {0}")]
    Rsa(&'static str),
    #[error("malformed fingerprint")]
    BadFingerprint,
    #[error("malformed {0}")]
    Malformed(String),
}

/// The optional upload checksum (`?c=` / `?d=`): the encrypted POST body XOR-folded into
/// 12 bytes (`MEGA-PROTOCOL.md` §7.2).
pub fn upload_checksum(body: &[u8]) -> [u8; 12] {
    // Folded 48 bytes (four 12-byte periods) at a time as six words, then the words folded
    // into 12 bytes and the tail byte by byte: the same XOR, several times faster than a
    // byte loop (it runs over every uploaded byte).
    const SPAN: usize = 48;
    let mut lanes = [0u64; SPAN / 8];
    let blocks = body.chunks_exact(SPAN);
    let tail = blocks.remainder();
    for block in blocks {
        for (lane, word) in lanes.iter_mut().zip(block.chunks_exact(8)) {
            let mut w = [0u8; 8];
            w.copy_from_slice(word);
            *lane ^= u64::from_le_bytes(w);
        }
    }
    let mut crc = [0u8; 12];
    for (i, lane) in lanes.iter().enumerate() {
        for (j, b) in lane.to_le_bytes().iter().enumerate() {
            crc[(i * 8 + j) % 12] ^= b;
        }
    }
    for (i, b) in tail.iter().enumerate() {
        crc[i % 12] ^= b;
    }
    crc
}
