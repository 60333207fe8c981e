//! MEGA's `*`-TLV container (`MEGA-KEYS-SHARES-VERSIONS.md` §1.6): private encrypted user
//! attributes (`*!dn` device names, `*!sds`) and the encrypted fields of backup records (`l`
//! the local path, `e` the name). Records `name ‖ 0x00 ‖ len (u16 BE) ‖ value`, sealed as
//! `0x10 ‖ IV(12) ‖ AES-128-GCM(master key, IV, records) ‖ tag(16)`.

use super::aes::{gcm_open, gcm_seal};

use super::keys::MasterKey;
use super::CryptoError;

/// The container's mode byte: AES-GCM, 12-byte IV, 16-byte tag.
const AES_GCM_12_16: u8 = 0x10;

fn bad(what: &'static str) -> CryptoError {
    CryptoError::Malformed(what.into())
}

/// Encrypts records (at most 65,535 bytes each; longer values are cut there).
pub fn seal(mk: &MasterKey, records: &[(String, Vec<u8>)], iv: Option<[u8; 12]>) -> Vec<u8> {
    let iv = iv.unwrap_or_else(rand::random);
    let mut plain = zeroize::Zeroizing::new(Vec::new());
    for (name, value) in records {
        let value = &value[..value.len().min(u16::MAX as usize)];
        plain.extend(name.as_bytes());
        plain.push(0);
        plain.extend((value.len() as u16).to_be_bytes());
        plain.extend(value);
    }
    let mut out = vec![AES_GCM_12_16];
    out.extend(iv);
    out.extend(gcm_seal(&mk.0 .0, &iv, &plain));
    out
}

/// Decrypts and splits a container; any damage is an error.
pub fn open(mk: &MasterKey, blob: &[u8]) -> Result<Vec<(String, Vec<u8>)>, CryptoError> {
    let (&mode, rest) = blob.split_first().ok_or(bad("empty TLV container"))?;
    if mode != AES_GCM_12_16 || rest.len() < 12 + 16 {
        return Err(bad("TLV container of an unknown kind"));
    }
    let (iv, sealed) = rest.split_at(12);
    let iv: &[u8; 12] = iv.try_into().map_err(|_| bad("TLV container IV"))?;
    let plain = zeroize::Zeroizing::new(
        gcm_open(&mk.0 .0, iv, sealed).ok_or(bad("TLV container does not authenticate"))?,
    );
    let mut d = plain.as_slice();
    let mut out = Vec::new();
    while !d.is_empty() {
        let nul = d
            .iter()
            .position(|&b| b == 0)
            .ok_or(bad("TLV record without a name end"))?;
        let name = std::str::from_utf8(&d[..nul]).map_err(|_| bad("TLV record name"))?;
        let rest = &d[nul + 1..];
        if rest.len() < 2 {
            return Err(bad("TLV record without a length"));
        }
        let len = u16::from_be_bytes([rest[0], rest[1]]) as usize;
        let value = rest
            .get(2..2 + len)
            .ok_or(bad("TLV record longer than its container"))?;
        out.push((name.to_string(), value.to_vec()));
        d = &rest[2 + len..];
    }
    Ok(out)
}

/// One text record, sealed and in base64url (`cypherTLVTextWithMasterKey`).
pub fn seal_text(mk: &MasterKey, name: &str, text: &str) -> String {
    super::b64::encode(&seal(
        mk,
        &[(name.to_string(), text.as_bytes().to_vec())],
        None,
    ))
}

/// The text of record `name` of a base64url container.
pub fn open_text(mk: &MasterKey, b64: &str, name: &str) -> Result<String, CryptoError> {
    let blob = super::b64::decode(b64, "TLV container")?;
    let records = open(mk, &blob)?;
    let (_, v) = records
        .into_iter()
        .find(|(n, _)| n == name)
        .ok_or(bad("TLV container without the expected record"))?;
    String::from_utf8(v).map_err(|_| bad("TLV text is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::keys::Key128;

    fn mk() -> MasterKey {
        MasterKey(Key128(std::array::from_fn(|i| i as u8)))
    }
    const IV: [u8; 12] = [
        0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xab,
    ];

    #[test]
    fn the_documented_backup_fields_byte_for_byte() {
        let l = seal(
            &mk(),
            &[("lf".into(), b"/home/alice/Documents".to_vec())],
            Some(IV),
        );
        assert_eq!(
            crate::crypto::b64::encode(&l),
            "EKChoqOkpaanqKmqq8bgOLtrpltl5x2aYSp70wV8qkxr9npYwVFjroceCRP93mY7daP8y8fNsg"
        );
        let e = seal(&mk(), &[("bn".into(), b"Documents".to_vec())], Some(IV));
        assert_eq!(
            crate::crypto::b64::encode(&e),
            "EKChoqOkpaanqKmqq8joOLt3zVxp_xXQbjJhpS_ffmCukbNfNRk5jBmWcQ"
        );
        let names = seal(
            &mk(),
            &[
                (
                    "PrG9Q5lH63YpmOVmzMLgmceREYsvQFecxPfaK1Bht_k".into(),
                    b"alice-laptop".to_vec(),
                ),
                ("ext:ESIzRFVmd4g".into(), b"USB-Backup".to_vec()),
            ],
            Some(IV),
        );
        assert_eq!(
            crate::crypto::b64::encode(&names),
            "EKChoqOkpaanqKmqq_r0f4IvvF9CvEvscCtd5g0po29v7nRY_WBJAu0Ty-rL4vMjUETbrgULgYnEr9dovNU3KWRf4OaZ7UbrspFfQS64S-GUPRv19rcTj7gMegetDtg5RQqReUtYDQhm0HdQJ3NiVF4U2Q"
        );
        assert_eq!(open(&mk(), &names).unwrap()[1].1, b"USB-Backup");
    }

    #[test]
    fn round_trip_and_damage() {
        let s = seal_text(&mk(), "lf", "/tmp/é");
        assert_eq!(open_text(&mk(), &s, "lf").unwrap(), "/tmp/é");
        assert!(open_text(&mk(), &s, "bn").is_err());
        let mut blob = crate::crypto::b64::decode(&s, "x").unwrap();
        let last = blob.len() - 1;
        blob[last] ^= 1;
        assert!(open(&mk(), &blob).is_err());
        assert!(open(&mk(), &[]).is_err());
        assert!(open(&mk(), &[0x10; 20]).is_err());
        let other = MasterKey(Key128([9; 16]));
        assert!(open_text(&other, &s, "lf").is_err());
    }
}
