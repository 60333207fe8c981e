//! Node attributes: `"MEGA" + JSON`, zero-padded to 16 bytes, AES-CBC with a zero IV under the
//! node's AES key (`MEGA-PROTOCOL.md` §5.4).

use serde_json::{Map, Value};

use super::aes::{cbc_decrypt_zero_iv, cbc_encrypt_zero_iv};
use super::CryptoError;

/// The largest encrypted attribute blob MEGA accepts (`MAX_NODE_ATTRIBUTE_SIZE`).
pub const MAX_ATTR_SIZE: usize = 64 * 1024;

/// Encrypts an attribute object.
pub fn encrypt(key: &[u8; 16], attrs: &Map<String, Value>) -> Vec<u8> {
    let mut plain = b"MEGA".to_vec();
    plain.extend(Value::Object(attrs.clone()).to_string().into_bytes());
    let padded = plain.len().div_ceil(16) * 16;
    plain.resize(padded, 0);
    cbc_encrypt_zero_iv(key, &mut plain);
    plain
}

/// Decrypts an attribute blob. Fails (never panics) on a wrong key or corrupt data.
pub fn decrypt(key: &[u8; 16], data: &[u8]) -> Result<Map<String, Value>, CryptoError> {
    if data.is_empty() || data.len() % 16 != 0 || data.len() > MAX_ATTR_SIZE {
        return Err(CryptoError::BadAttributes);
    }
    let mut buf = data.to_vec();
    cbc_decrypt_zero_iv(key, &mut buf);
    if !buf.starts_with(b"MEGA{\"") {
        return Err(CryptoError::BadAttributes);
    }
    let end = buf.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    match serde_json::from_slice::<Value>(&buf[4..end]) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(CryptoError::BadAttributes),
    }
}
