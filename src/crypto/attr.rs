//! Node attributes: `"MEGA" + JSON`, zero-padded to 16 bytes, AES-CBC with a zero IV under the
//! node's AES key (`MEGA-PROTOCOL.md` §5.4).

use serde_json::{Map, Value};

use super::aes::{cbc_decrypt_zero_iv, cbc_encrypt_zero_iv};
use super::json::Maybe;
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
    let buf = decrypt_json(key, data)?;
    match serde_json::from_slice::<Value>(json_of(&buf)) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(CryptoError::BadAttributes),
    }
}

/// The attributes a listing needs: name (`n`), fingerprint (`c`) and our POSIX metadata
/// ([`POSIX`]), decrypted without building the whole object; a later duplicate wins, and one
/// that is not a string counts as absent, as with [`decrypt`]. Fails exactly when [`decrypt`]
/// does.
pub fn decrypt_name(key: &[u8; 16], data: &[u8]) -> Result<Known, CryptoError> {
    let buf = decrypt_json(key, data)?;
    serde_json::from_slice(json_of(&buf)).map_err(|_| CryptoError::BadAttributes)
}

/// The attribute mega-mount keeps a node's POSIX metadata under: its `st_mode` in octal
/// (`"100755"`, `"120777"` for a symbolic link). The leading `_` is the SDK's namespace for an
/// application's own attributes (`setCustomNodeAttribute`), which MEGA's apps carry along
/// and do not show.
pub const POSIX: &str = "_posix";

/// The decrypted blob, checked to start like an attribute object.
fn decrypt_json(key: &[u8; 16], data: &[u8]) -> Result<Vec<u8>, CryptoError> {
    if data.is_empty() || data.len() % 16 != 0 || data.len() > MAX_ATTR_SIZE {
        return Err(CryptoError::BadAttributes);
    }
    let mut buf = data.to_vec();
    cbc_decrypt_zero_iv(key, &mut buf);
    if !buf.starts_with(b"MEGA{\"") {
        return Err(CryptoError::BadAttributes);
    }
    Ok(buf)
}

/// The JSON text inside a decrypted blob (after "MEGA", before the zero padding).
fn json_of(buf: &[u8]) -> &[u8] {
    let end = buf.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    &buf[4..end.max(4)]
}

/// `n`, `c` and [`POSIX`] of an attribute object; every other member is skipped unread.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Known {
    pub name: Option<String>,
    pub fingerprint: Option<String>,
    pub posix: Option<String>,
}

impl<'de> serde::Deserialize<'de> for Known {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Known;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an attribute object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<Known, A::Error> {
                let mut known = Known::default();
                while let Some(k) = a.next_key::<std::borrow::Cow<'de, str>>()? {
                    match &*k {
                        "n" => known.name = a.next_value::<Maybe<String>>()?.0,
                        "c" => known.fingerprint = a.next_value::<Maybe<String>>()?.0,
                        POSIX => known.posix = a.next_value::<Maybe<String>>()?.0,
                        _ => {
                            a.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(known)
            }
        }
        d.deserialize_map(V)
    }
}
