//! Public links (`MEGA-PROTOCOL.md` §10): parsing both URL forms, building file links, and
//! reading a public file's size and name; password-protected links (`#P!`), made and opened
//! entirely on the client.

use crate::crypto::{b64, FileKey, Key128};

/// A parsed public link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicLink {
    File {
        /// Public handle (8 characters).
        handle: String,
        /// `None` when the link carries no key.
        key: Option<FileKey>,
    },
    Folder {
        handle: String,
        key: Option<Key128>,
        /// A file or folder inside the shared folder (`/file/<h>`, `!<h>`).
        inner: Option<String>,
    },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LinkError {
    #[error("not a MEGA link")]
    NotALink,
    #[error("the link's key is malformed")]
    BadKey,
    #[error("the link has no decryption key")]
    NoKey,
    #[error("wrong password for this link (or the link is damaged)")]
    WrongPassword,
}

fn valid_handle(h: &str) -> bool {
    h.len() == 8
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Parses `https://mega.nz/file/<h>#<key>`, `https://mega.nz/folder/<h>#<key>[/file/<h>]`,
/// and the legacy `https://mega.nz/#!<h>!<key>` / `#F!<h>!<key>[!<h>]` (also `mega.co.nz`).
pub fn parse(url: &str) -> Result<PublicLink, LinkError> {
    let url = url.trim();
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .unwrap_or(url);
    let rest = rest
        .strip_prefix("mega.nz/")
        .or_else(|| rest.strip_prefix("mega.co.nz/"))
        .or_else(|| rest.strip_prefix("www.mega.nz/"))
        .ok_or(LinkError::NotALink)?;
    let file_key = |k: Option<&str>| -> Result<Option<FileKey>, LinkError> {
        match k.filter(|k| !k.is_empty()) {
            None => Ok(None),
            Some(k) => FileKey::from_b64(k)
                .map(Some)
                .map_err(|_| LinkError::BadKey),
        }
    };
    let folder_key = |k: Option<&str>| -> Result<Option<Key128>, LinkError> {
        match k.filter(|k| !k.is_empty()) {
            None => Ok(None),
            Some(k) => b64::decode_array::<16>(k, "folder key")
                .map(|a| Some(Key128(a)))
                .map_err(|_| LinkError::BadKey),
        }
    };
    if let Some(r) = rest.strip_prefix("file/") {
        let (h, k) = r.split_once('#').map_or((r, None), |(h, k)| (h, Some(k)));
        let h: String = h.chars().take(8).collect();
        if !valid_handle(&h) {
            return Err(LinkError::NotALink);
        }
        return Ok(PublicLink::File {
            handle: h,
            key: file_key(k)?,
        });
    }
    if let Some(r) = rest.strip_prefix("folder/") {
        let (h, frag) = r.split_once('#').map_or((r, None), |(h, k)| (h, Some(k)));
        let h: String = h.chars().take(8).collect();
        if !valid_handle(&h) {
            return Err(LinkError::NotALink);
        }
        let (k, inner) = match frag {
            Some(f) => match f.split_once('/') {
                Some((k, sub)) => (Some(k), sub.rsplit('/').next().map(str::to_string)),
                None => (Some(f), None),
            },
            None => (None, None),
        };
        // A writable link's write key follows the key after `:` (`…#KEY:WRITE-KEY`); reading
        // needs only the key.
        let k = k.map(|k| k.split_once(':').map_or(k, |(k, _)| k));
        return Ok(PublicLink::Folder {
            handle: h,
            key: folder_key(k)?,
            inner,
        });
    }
    if let Some(r) = rest.strip_prefix("#!") {
        let mut it = r.splitn(2, '!');
        let h = it.next().unwrap_or("");
        if !valid_handle(h) {
            return Err(LinkError::NotALink);
        }
        return Ok(PublicLink::File {
            handle: h.into(),
            key: file_key(it.next())?,
        });
    }
    if let Some(r) = rest.strip_prefix("#F!") {
        let mut it = r.splitn(3, '!');
        let h = it.next().unwrap_or("");
        if !valid_handle(h) {
            return Err(LinkError::NotALink);
        }
        let k = it.next();
        let inner = it.next().map(str::to_string);
        return Ok(PublicLink::Folder {
            handle: h.into(),
            key: folder_key(k)?,
            inner,
        });
    }
    Err(LinkError::NotALink)
}

/// Builds the current-form link of a file.
pub fn file_link(public_handle: &str, key: &FileKey) -> String {
    format!(
        "https://mega.nz/file/{}#{}",
        public_handle,
        b64::encode(&key.pack())
    )
}

/// Builds the current-form link of a folder.
pub fn folder_link(public_handle: &str, key: &Key128) -> String {
    format!(
        "https://mega.nz/folder/{}#{}",
        public_handle,
        b64::encode(&key.0)
    )
}

/// The algorithm byte of the password-protected links this client writes (1 is read too).
const PROTECTED_ALGORITHM: u8 = 2;
/// PBKDF2-HMAC-SHA512 iterations of a password-protected link's key.
const PROTECTED_ITERATIONS: u32 = 100_000;

/// Whether `url` is a password-protected link (`https://mega.nz/#P!…`).
pub fn is_protected(url: &str) -> bool {
    url.contains("#P!")
}

/// The 64 bytes a link password derives: the first half masks the link key, the second
/// keys its HMAC.
fn protected_key(password: &str, salt: &[u8]) -> zeroize::Zeroizing<[u8; 64]> {
    let mut dk = zeroize::Zeroizing::new([0u8; 64]);
    pbkdf2::pbkdf2_hmac::<sha2::Sha512>(
        password.as_bytes(),
        salt,
        PROTECTED_ITERATIONS,
        dk.as_mut(),
    );
    dk
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    use hmac::Mac;
    let mut mac = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(key)
        .expect("invariant: HMAC takes keys of any length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// Protects a file or folder link with a password as MEGA's apps do (`#P!`, algorithm 2):
/// the key is masked with PBKDF2-HMAC-SHA512(password, `salt`, 100,000) and the whole is
/// authenticated with HMAC-SHA256. The server never sees the password or the key.
pub fn protect(url: &str, password: &str, salt: [u8; 32]) -> Result<String, LinkError> {
    let (kind, handle, key) = match parse(url)? {
        PublicLink::File {
            handle,
            key: Some(k),
        } => (1u8, handle, k.pack().to_vec()),
        PublicLink::Folder {
            handle,
            key: Some(k),
            inner: None,
        } => (0u8, handle, k.0.to_vec()),
        PublicLink::Folder { inner: Some(_), .. } => return Err(LinkError::NotALink),
        _ => return Err(LinkError::NoKey),
    };
    let raw_handle = b64::decode(&handle, "link handle").map_err(|_| LinkError::NotALink)?;
    let dk = protected_key(password, &salt);
    let mut out = vec![PROTECTED_ALGORITHM, kind];
    out.extend_from_slice(&raw_handle);
    out.extend_from_slice(&salt);
    out.extend(key.iter().zip(dk.iter()).map(|(k, d)| k ^ d));
    let mac = hmac_sha256(&dk[32..], &out);
    out.extend_from_slice(&mac);
    Ok(format!("https://mega.nz/#P!{}", b64::encode(&out)))
}

/// Opens a password-protected link: the ordinary link it stands for, or `WrongPassword`
/// (the HMAC does not match: a wrong password or a damaged link).
pub fn unprotect(url: &str, password: &str) -> Result<String, LinkError> {
    let payload = url
        .split_once("#P!")
        .map(|(_, p)| p.trim())
        .ok_or(LinkError::NotALink)?;
    let raw = b64::decode(payload, "protected link").map_err(|_| LinkError::NotALink)?;
    let (algorithm, kind) = match raw.as_slice() {
        [a @ (1 | 2), k @ (0 | 1), ..] => (*a, *k),
        _ => return Err(LinkError::NotALink),
    };
    let key_len = if kind == 1 { 32 } else { 16 };
    if raw.len() != 40 + key_len + 32 {
        return Err(LinkError::NotALink);
    }
    let (body, mac) = raw.split_at(40 + key_len);
    let dk = protected_key(password, &body[8..40]);
    let expected = match algorithm {
        2 => hmac_sha256(&dk[32..], body),
        // The webclient's first version swapped key and message.
        _ => hmac_sha256(body, &dk[32..]),
    };
    // Compared in constant time: the MAC is what stands between a guess and the key.
    let same = expected
        .iter()
        .zip(mac)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0;
    if !same {
        return Err(LinkError::WrongPassword);
    }
    let handle = b64::encode(&body[2..8]);
    let key: Vec<u8> = body[40..]
        .iter()
        .zip(dk.iter())
        .map(|(k, d)| k ^ d)
        .collect();
    let kind = if kind == 1 { "file" } else { "folder" };
    Ok(format!(
        "https://mega.nz/{kind}/{handle}#{}",
        b64::encode(&key)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_file_link_forms_parse_to_the_same_thing() {
        let new = "https://mega.nz/file/AAAAAAAE#AAAAAAAAAACldyOdMzqeRgAAAAAAAAAApXcjnTM6nkY";
        let old = "https://mega.nz/#!AAAAAAAE!AAAAAAAAAACldyOdMzqeRgAAAAAAAAAApXcjnTM6nkY";
        let a = parse(new).unwrap();
        assert_eq!(a, parse(old).unwrap());
        assert_eq!(a, parse(&old.replace("mega.nz", "mega.co.nz")).unwrap());
        match &a {
            PublicLink::File {
                handle,
                key: Some(k),
            } => {
                assert_eq!(handle, "AAAAAAAE");
                assert_eq!(file_link(handle, k), new);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn folder_links_and_errors() {
        assert_eq!(
            parse("https://mega.nz/folder/AAAAAAAG#AAAAAAAAAAAAAAAAAAAAAA").unwrap(),
            PublicLink::Folder {
                handle: "AAAAAAAG".into(),
                key: Some(Key128([0; 16])),
                inner: None
            }
        );
        assert_eq!(
            parse("https://mega.nz/#F!AAAAAAAG!AAAAAAAAAAAAAAAAAAAAAA!BBBBBBBB").unwrap(),
            PublicLink::Folder {
                handle: "AAAAAAAG".into(),
                key: Some(Key128([0; 16])),
                inner: Some("BBBBBBBB".into())
            }
        );
        assert_eq!(
            parse("https://mega.nz/folder/AAAAAAAG").unwrap(),
            PublicLink::Folder {
                handle: "AAAAAAAG".into(),
                key: None,
                inner: None
            }
        );
        assert_eq!(
            parse("https://example.com/file/AAAAAAAE#x"),
            Err(LinkError::NotALink)
        );
        assert_eq!(
            parse("https://mega.nz/file/AAAAAAAE#notakey"),
            Err(LinkError::BadKey)
        );
        assert_eq!(parse("https://mega.nz/file/AA#x"), Err(LinkError::NotALink));
        assert_eq!(parse(""), Err(LinkError::NotALink));
    }

    #[test]
    fn password_protected_links_match_the_worked_example_and_round_trip() {
        let plain = "https://mega.nz/file/kAIGgRQQ#xQGamdCUgxeDwwY-Wk2yPf-x3cEN6qBO1JzTkHA3L90";
        let salt: [u8; 32] = std::array::from_fn(|i| i as u8);
        let p = protect(plain, "mega", salt).unwrap();
        assert_eq!(
            p,
            "https://mega.nz/#P!AgGQAgaBFBAAAQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eH_2wCqKY1miWzrC-xYI8stEwfCdqpQv5tBNbux6_AWMHjlisLWvbBupsGiA7YlLfWBefGbOHipMsF0wgqG1Cm2Q"
        );
        assert!(is_protected(&p) && !is_protected(plain));
        assert_eq!(unprotect(&p, "mega").unwrap(), plain);
        assert_eq!(unprotect(&p, "Mega"), Err(LinkError::WrongPassword));
        // A flipped byte anywhere is refused.
        let mut raw = b64::decode(p.split_once("#P!").unwrap().1, "x").unwrap();
        raw[45] ^= 1;
        let bad = format!("https://mega.nz/#P!{}", b64::encode(&raw));
        assert_eq!(unprotect(&bad, "mega"), Err(LinkError::WrongPassword));
        assert_eq!(
            unprotect("https://mega.nz/#P!AgE", "mega"),
            Err(LinkError::NotALink)
        );
        // A writable link reads as the plain one.
        assert_eq!(
            parse("https://mega.nz/folder/kAIGgRQQ#AAECAwQFBgcICQoLDA0ODw:d3JpdGUta2V5LTE2Ynl0ZQ"),
            parse("https://mega.nz/folder/kAIGgRQQ#AAECAwQFBgcICQoLDA0ODw")
        );
        // Folders: 16-byte keys.
        let folder = "https://mega.nz/folder/kAIGgRQQ#AAECAwQFBgcICQoLDA0ODw";
        let p = protect(folder, "pw", [7; 32]).unwrap();
        assert_eq!(unprotect(&p, "pw").unwrap(), folder);
    }
}
