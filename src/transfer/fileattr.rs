//! File attributes: the thumbnail (type 0) and preview (type 1) of a file, stored beside its
//! content (`MEGA-FILES-TRANSFERS.md` §1.4–1.8).
//!
//! * Encryption: the image zero-padded to a multiple of 16 bytes, AES-128-CBC with a zero IV
//!   under the file's AES key (the same key its content is encrypted with; the server sees
//!   only ciphertext).
//! * Storing: `ufa` with the padded size gives a URL; one POST of the blob answers the
//!   attribute's 8-byte handle, which `p` (`fa: "0*<h>/1*<h>"`) or `pfa` attaches to the
//!   node. The server lists it as `<cluster>:<type>*<handle>`.
//! * Fetching: `ufa` with `fah` (one handle of the batch) gives a URL; a POST of the raw
//!   handles answers records `handle[8] ‖ len[4, LE] ‖ blob[len]`, in any order.

use futures::future::join;

use super::{checked_url, TransferConfig, TransferError};
use crate::api::commands::{GetFileAttrUrl, PutFileAttrUrl};
use crate::api::{read_body, ApiClient, ApiError, Repeat};
use crate::crypto::{aes, b64, FileKey};

/// File attribute type of a thumbnail.
pub const THUMBNAIL: u32 = 0;
/// File attribute type of a preview.
pub const PREVIEW: u32 = 1;

/// The largest attribute blob MEGA stores (`MAX_FILE_ATTRIBUTE_SIZE`).
pub const MAX_BLOB: usize = 16 * 1024 * 1024;

/// One entry of a node's `fa` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The attribute server group that holds it.
    pub cluster: String,
    pub kind: u32,
    /// The attribute's handle: 8 bytes for types 0 and 1 (for the media types 8 and 9, the
    /// value itself).
    pub handle: [u8; 8],
}

/// The entries of an `fa` string that parse (`cluster:type*handle`, joined by `/`); others
/// are skipped.
pub fn parse(fa: &str) -> Vec<Entry> {
    fa.split('/')
        .filter_map(|e| {
            let (cluster, rest) = e.split_once(':')?;
            let (kind, h) = rest.split_once('*')?;
            if cluster.is_empty() || !cluster.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            Some(Entry {
                cluster: cluster.to_string(),
                kind: kind.parse().ok()?,
                handle: b64::decode_array::<8>(h, "file attribute").ok()?,
            })
        })
        .collect()
}

/// The entry of type `kind`, if the list has one.
pub fn find(fa: &str, kind: u32) -> Option<Entry> {
    parse(fa).into_iter().find(|e| e.kind == kind)
}

/// What a file's `fa` holds, for listings: "thumbnail", "preview", "media".
pub fn kinds(fa: &str) -> Vec<&'static str> {
    let entries = parse(fa);
    let has = |k: u32| entries.iter().any(|e| e.kind == k);
    let mut out = Vec::new();
    if has(THUMBNAIL) {
        out.push("thumbnail");
    }
    if has(PREVIEW) {
        out.push("preview");
    }
    if has(8) {
        out.push("media");
    }
    out
}

/// Encrypts an image for storing.
pub fn seal(key: &FileKey, image: &[u8]) -> Vec<u8> {
    let mut blob = image.to_vec();
    blob.resize(image.len().div_ceil(16) * 16, 0);
    aes::cbc_encrypt_zero_iv(&key.aes, &mut blob);
    blob
}

/// Decrypts a stored blob; the zero padding after the image's end (a JPEG's EOI marker, a
/// PNG's IEND chunk) is removed, other trailing bytes are left as they are.
pub fn open(key: &FileKey, blob: &[u8]) -> Result<Vec<u8>, ApiError> {
    if blob.len() % 16 != 0 {
        return Err(ApiError::BadResponse(format!(
            "a file attribute of {} bytes (not a multiple of 16)",
            blob.len()
        )));
    }
    let mut plain = blob.to_vec();
    aes::cbc_decrypt_zero_iv(&key.aes, &mut plain);
    let mut end = plain.len();
    while end > 0 && plain[end - 1] == 0 {
        end -= 1;
    }
    let image_end = if plain.starts_with(&[0xFF, 0xD8]) {
        plain[..end].ends_with(&[0xFF, 0xD9]).then_some(end)
    } else if plain.starts_with(b"\x89PNG") {
        // The IEND chunk's CRC may itself end in zero bytes.
        find_last(&plain, b"IEND")
            .map(|i| i + 8)
            .filter(|e| *e <= plain.len())
    } else {
        None
    };
    if let Some(e) = image_end {
        plain.truncate(e);
    }
    Ok(plain)
}

fn find_last(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).rposition(|w| w == needle)
}

/// POSTs `body` to a file attribute URL and reads at most `max` bytes of the answer,
/// retrying transient failures as content transfers do.
async fn post(
    api: &ApiClient,
    cfg: &TransferConfig,
    url: &str,
    body: Vec<u8>,
    max: u64,
) -> Result<Vec<u8>, TransferError> {
    let body = bytes::Bytes::from(body);
    let mut retry = cfg.retry.start("file attribute", Repeat::Safe);
    loop {
        let attempt = async {
            let resp = api
                .http()
                .post(url)
                .timeout(cfg.request_timeout)
                .header("content-type", "application/octet-stream")
                .body(body.clone())
                .send()
                .await
                .map_err(crate::api::network_error)?;
            let status = resp.status().as_u16();
            if status != 200 {
                return Err(ApiError::Http(status));
            }
            read_body(resp, max).await
        };
        match attempt.await {
            Ok(b) => return Ok(b),
            Err(e) => {
                let failure = e.failure();
                retry.after(TransferError::from(e), failure).await?;
            }
        }
    }
}

/// Stores one attribute; returns its handle.
pub async fn store(
    api: &ApiClient,
    cfg: &TransferConfig,
    key: &FileKey,
    image: &[u8],
) -> Result<[u8; 8], TransferError> {
    let blob = seal(key, image);
    if blob.len() > MAX_BLOB {
        return Err(ApiError::BadResponse("file attribute over 16 MiB".into()).into());
    }
    let r = api
        .run(&PutFileAttrUrl {
            s: blob.len() as u64,
            ssl: crate::api::commands::ssl(cfg.https),
        })
        .await?;
    let url = checked_url(r.p, cfg.https)?;
    let body = post(api, cfg, &url, blob, 64).await?;
    // Exactly 8 raw bytes; anything else (an error number) is a failure, as for the SDK.
    <[u8; 8]>::try_from(&body[..]).map_err(|_| {
        let text = String::from_utf8_lossy(&body).into_owned();
        ApiError::BadResponse(format!("file attribute upload answered {text:?}")).into()
    })
}

/// Stores a thumbnail and a preview (at once) and returns the `fa` for `p`
/// (`0*<h>/1*<h>`), with whichever of them could be stored; `None` if neither. A failure is
/// logged and never fails the upload it belongs to.
pub async fn store_pair(
    api: &ApiClient,
    cfg: &TransferConfig,
    key: &FileKey,
    made: &super::graphics::Made,
) -> Option<String> {
    let (t, p) = join(
        store(api, cfg, key, &made.thumbnail),
        store(api, cfg, key, &made.preview),
    )
    .await;
    let mut parts = Vec::new();
    for (kind, r) in [(THUMBNAIL, t), (PREVIEW, p)] {
        match r {
            Ok(h) => parts.push(format!("{kind}*{}", b64::encode(&h))),
            Err(e) => tracing::debug!("storing a file attribute (type {kind}) failed: {e}"),
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// Fetches and decrypts the attribute of type `kind` named in `fa`; `None` if the file has
/// none.
pub async fn fetch(
    api: &ApiClient,
    cfg: &TransferConfig,
    key: &FileKey,
    fa: &str,
    kind: u32,
) -> Result<Option<Vec<u8>>, TransferError> {
    let Some(entry) = find(fa, kind) else {
        return Ok(None);
    };
    let h = b64::encode(&entry.handle);
    let r = api
        .run(&GetFileAttrUrl {
            fah: &h,
            ssl: crate::api::commands::ssl(cfg.https),
            r: 1,
        })
        .await?;
    let url = checked_url(r.p, cfg.https)?;
    let body = post(
        api,
        cfg,
        &url,
        entry.handle.to_vec(),
        (MAX_BLOB + 12) as u64,
    )
    .await?;
    match records(&body).into_iter().find(|(h, _)| *h == entry.handle) {
        Some((_, blob)) => Ok(Some(open(key, blob)?)),
        None => Err(ApiError::BadResponse(format!(
            "the file attribute server did not return {kind}*{h}"
        ))
        .into()),
    }
}

/// The records of a streamed reply (`handle[8] ‖ len[4, LE] ‖ blob[len]`), up to the first
/// that does not fit.
pub fn records(body: &[u8]) -> Vec<([u8; 8], &[u8])> {
    let mut out = Vec::new();
    let mut rest = body;
    while rest.len() >= 12 {
        let mut h = [0u8; 8];
        h.copy_from_slice(&rest[..8]);
        let len = u32::from_le_bytes([rest[8], rest[9], rest[10], rest[11]]) as usize;
        let Some(blob) = rest.get(12..12 + len) else {
            break;
        };
        out.push((h, blob));
        rest = &rest[12 + len..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fa_strings_parse_as_the_apps_write_them() {
        let fa = "887:0*aCfLzotELvw/1019:1*lCOtqQ58uO8/831:8*MrTAjf1mgKo";
        let e = parse(fa);
        assert_eq!(e.len(), 3);
        assert_eq!(e[1].cluster, "1019");
        assert_eq!(e[1].kind, PREVIEW);
        assert_eq!(b64::encode(&e[0].handle), "aCfLzotELvw");
        assert_eq!(kinds(fa), ["thumbnail", "preview", "media"]);
        // Entries without a cluster (as a client sends them) or broken ones are skipped.
        assert!(parse("0*aCfLzotELvw").is_empty());
        assert!(parse("x:0*aCfLzotELvw/5:0*short").is_empty());
        assert!(find("", THUMBNAIL).is_none());
    }

    #[test]
    fn sealed_images_open_to_the_same_bytes() {
        let key = FileKey::random();
        // A JPEG and a PNG whose last bytes are zero, and a blob of no known kind.
        let jpeg = [&[0xFF, 0xD8, 1, 2, 0][..], &[0xFF, 0xD9]].concat();
        let mut png = b"\x89PNG\r\n\x1a\n....IEND".to_vec();
        png.extend_from_slice(&[0xAE, 0x42, 0x60, 0x00]);
        for image in [jpeg, png] {
            let blob = seal(&key, &image);
            assert_eq!(blob.len() % 16, 0);
            assert_ne!(&blob[..image.len().min(blob.len())], &image[..]);
            assert_eq!(open(&key, &blob).expect("opens"), image);
        }
        let other = seal(&key, b"abc");
        assert_eq!(open(&key, &other).expect("opens")[..3], *b"abc");
        assert!(open(&key, &other[..15]).is_err());
    }

    #[test]
    fn records_come_in_any_order_and_a_short_tail_is_dropped() {
        let mut body = Vec::new();
        for (h, len) in [([2u8; 8], 32u32), ([1u8; 8], 16)] {
            body.extend_from_slice(&h);
            body.extend_from_slice(&len.to_le_bytes());
            body.extend(std::iter::repeat_n(h[0], len as usize));
        }
        body.extend_from_slice(&[3u8; 8]);
        body.extend_from_slice(&100u32.to_le_bytes());
        body.extend_from_slice(&[0; 10]);
        let r = records(&body);
        assert_eq!(r.len(), 2);
        assert_eq!((r[0].0, r[0].1.len()), ([2u8; 8], 32));
        assert_eq!((r[1].0, r[1].1.len()), ([1u8; 8], 16));
    }
}
