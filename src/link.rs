//! Public links (`MEGA-PROTOCOL.md` §10): parsing both URL forms, building file links, and
//! reading a public file's size and name.

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
}
