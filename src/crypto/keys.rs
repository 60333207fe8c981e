//! Key newtypes. Secret types redact their `Debug` output and zeroize on drop, so a key can
//! never end up in a log line or an error message by accident.

use zeroize::{Zeroize, ZeroizeOnDrop};

use super::aes::{ecb_decrypt, ecb_encrypt};
use super::{b64, CryptoError};

/// A raw AES-128 key.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct Key128(pub [u8; 16]);

impl std::fmt::Debug for Key128 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key128(<redacted>)")
    }
}

impl Key128 {
    pub fn random() -> Self {
        Key128(rand::random())
    }

    /// Wraps (AES-ECB encrypts) `data`, whose length must be a multiple of 16.
    pub fn wrap(&self, data: &[u8]) -> Vec<u8> {
        let mut out = data.to_vec();
        ecb_encrypt(&self.0, &mut out);
        out
    }

    /// Unwraps (AES-ECB decrypts) `data`; fails unless its length is a non-zero multiple of 16.
    pub fn unwrap_key(&self, data: &[u8], what: &'static str) -> Result<Vec<u8>, CryptoError> {
        if data.is_empty() || data.len() % 16 != 0 {
            return Err(CryptoError::Length {
                what,
                got: data.len(),
                expected: "a multiple of 16",
            });
        }
        let mut out = data.to_vec();
        ecb_decrypt(&self.0, &mut out);
        Ok(out)
    }
}

/// The account's master key: wraps node keys, share keys and the RSA private key.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct MasterKey(pub Key128);

/// A folder's 16-byte key (also used directly as the attribute key).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct FolderKey(pub Key128);

/// A file's key material: AES key, CTR nonce and the expected condensed MAC.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct FileKey {
    pub aes: [u8; 16],
    pub nonce: [u8; 8],
    pub meta_mac: [u8; 8],
}

impl std::fmt::Debug for FileKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FileKey(<redacted>)")
    }
}

impl FileKey {
    /// Fresh random key material for an upload; the meta-MAC is filled in when it is known.
    pub fn random() -> Self {
        FileKey {
            aes: rand::random(),
            nonce: rand::random(),
            meta_mac: [0; 8],
        }
    }

    /// Unpacks MEGA's 32-byte node key: `aes = raw[0..16] ^ raw[16..32]`, nonce, meta-MAC.
    pub fn unpack(raw: &[u8; 32]) -> Self {
        let mut aes = [0u8; 16];
        for (i, b) in aes.iter_mut().enumerate() {
            *b = raw[i] ^ raw[16 + i];
        }
        let mut nonce = [0u8; 8];
        nonce.copy_from_slice(&raw[16..24]);
        let mut meta_mac = [0u8; 8];
        meta_mac.copy_from_slice(&raw[24..32]);
        FileKey {
            aes,
            nonce,
            meta_mac,
        }
    }

    /// Packs into the 32-byte form: `(aes ^ (nonce ‖ meta_mac)) ‖ nonce ‖ meta_mac`.
    pub fn pack(&self) -> [u8; 32] {
        let mut raw = [0u8; 32];
        raw[16..24].copy_from_slice(&self.nonce);
        raw[24..32].copy_from_slice(&self.meta_mac);
        for i in 0..16 {
            raw[i] = self.aes[i] ^ raw[16 + i];
        }
        raw
    }

    /// Parses the key part of a public file link (43 base64 characters = 32 bytes).
    pub fn from_b64(s: &str) -> Result<Self, CryptoError> {
        Ok(Self::unpack(&b64::decode_array::<32>(s, "file key")?))
    }

    /// True if the two halves of the packed key are equal, i.e. the AES key is all zeros.
    /// The official SDK never sends such a key and the API rejects it with EKEY.
    pub fn is_zero_key(&self) -> bool {
        self.aes == [0; 16]
    }
}

/// A decrypted node key, by node type.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum NodeKey {
    File(FileKey),
    Folder(FolderKey),
}

impl NodeKey {
    /// The AES key that encrypts this node's attributes.
    pub fn attr_key(&self) -> [u8; 16] {
        match self {
            NodeKey::File(k) => k.aes,
            NodeKey::Folder(k) => k.0 .0,
        }
    }

    /// The raw key bytes as they are wrapped on the wire (32 for files, 16 for folders).
    pub fn raw(&self) -> Vec<u8> {
        match self {
            NodeKey::File(k) => k.pack().to_vec(),
            NodeKey::Folder(k) => k.0 .0.to_vec(),
        }
    }
}
