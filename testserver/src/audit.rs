//! Offline audits of what clients stored, for tests and for people testing their own client
//! (`mega-testserver audit`). The running server never holds a key; an audit is given the
//! accounts' passwords, as `seed` is, and reads the store directly.
//!
//! [`keystreams`]: every file node — current files, previous versions, the Rubbish Bin, files
//! a member put into someone's share — has its key unwrapped with its creator's master key,
//! and any AES key and CTR nonce that two different uploads (different stored ciphertext)
//! share is reported. Two uploads under one (key, nonce) give the server the XOR of their
//! plaintexts: a MEGA client must never do it.

use std::collections::HashMap;

use aes::cipher::{generic_array::GenericArray, BlockDecrypt, KeyInit};
use aes::Aes128;

use crate::store::{self, Queries, Store, FILE};

use crate::{crypto, ServerError};

/// What [`keystreams`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeystreamReport {
    /// File nodes whose key was unwrapped and compared.
    pub checked: usize,
    /// File nodes left out: no password for their creator, or a key that does not unwrap.
    pub skipped: usize,
    /// Each group: file nodes with different content under one (key, nonce), as
    /// `handle (creator's e-mail, size)`.
    pub repeats: Vec<Vec<String>>,
}

impl KeystreamReport {
    pub fn is_clean(&self) -> bool {
        self.repeats.is_empty()
    }
}

/// Checks every file node of the store; `password` gives an account's password by e-mail
/// (`None`: its files are skipped).
pub fn keystreams(
    store: &Store,
    password: impl Fn(&str) -> Option<String>,
) -> Result<KeystreamReport, ServerError> {
    let (users, files) = read_files(store)?;
    let mut masters: HashMap<String, (String, Aes128)> = HashMap::new();
    for u in &users {
        if let Some(mk) = password(&u.email).and_then(|p| crate::master_key(u, &p).ok()) {
            masters.insert(
                u.handle.clone(),
                (u.email.clone(), Aes128::new(GenericArray::from_slice(&mk))),
            );
        }
    }
    let mut report = KeystreamReport::default();
    // (AES key, nonce) -> the nodes under it, with their blobs.
    let mut seen: HashMap<Keystream, Vec<(String, Option<String>)>> = HashMap::new();
    for (handle, creator, key, size, blob) in files {
        let Some((email, mk)) = masters.get(&creator) else {
            report.skipped += 1;
            continue;
        };
        let Some(mut k) = crypto::b64d(&key).filter(|k| k.len() == 32) else {
            report.skipped += 1;
            continue;
        };
        for block in k.chunks_exact_mut(16) {
            mk.decrypt_block(GenericArray::from_mut_slice(block));
        }
        let mut aes = [0u8; 16];
        for (i, a) in aes.iter_mut().enumerate() {
            *a = k[i] ^ k[16 + i];
        }
        let mut nonce = [0u8; 8];
        nonce.copy_from_slice(&k[16..24]);
        report.checked += 1;
        seen.entry((aes, nonce))
            .or_default()
            .push((format!("{handle} ({email}, {size} bytes)"), blob));
    }
    for (_, nodes) in seen {
        // The same stored ciphertext under several nodes (a copy made on the server) is one
        // upload.
        let mut blobs: Vec<&Option<String>> = nodes.iter().map(|(_, b)| b).collect();
        blobs.sort();
        blobs.dedup();
        if blobs.len() > 1 {
            let mut names: Vec<String> = nodes.into_iter().map(|(n, _)| n).collect();
            names.sort();
            report.repeats.push(names);
        }
    }
    report.repeats.sort();
    Ok(report)
}

/// An AES key and a CTR nonce: what must not serve two uploads.
type Keystream = ([u8; 16], [u8; 8]);

/// A file node as the audit reads it: handle, creator (or owner), wrapped key, size, blob.
type FileRow = (String, String, String, i64, Option<String>);

/// Every account, and every file node with the account whose master key wraps its key.
fn read_files(store: &Store) -> store::Result<(Vec<store::User>, Vec<FileRow>)> {
    let db = store.lock();
    let emails: Vec<String> = db
        .prepare("SELECT email FROM users")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut users = Vec::new();
    for e in emails {
        users.extend(db.user_by_email(&e)?);
    }
    let files = db
        .prepare(
            "SELECT handle, CASE WHEN creator = '' THEN owner ELSE creator END, key, size, blob
             FROM nodes WHERE kind = ?1",
        )?
        .query_map([FILE], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok((users, files))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Node;

    fn file(handle: &str, owner: &str, mk: &[u8; 16], key: &[u8; 32], blob: &str) -> Node {
        let mut wrapped = *key;
        crypto::ecb_encrypt(mk, &mut wrapped);
        Node {
            handle: handle.into(),
            owner: owner.into(),
            creator: String::new(),
            parent: "root".into(),
            kind: FILE,
            attrs: String::new(),
            key: crypto::b64e(&wrapped),
            size: 10,
            ts: 0,
            blob: Some(blob.into()),
            fa: String::new(),
        }
    }

    /// The audit can fail: two uploads (different blobs) under one packed key are reported;
    /// a copy on the server (same blob) and a different key are not; an account without a
    /// password is skipped.
    #[test]
    fn two_uploads_under_one_key_and_nonce_are_reported() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path()).unwrap();
        let opts = crate::UserOptions {
            legacy: true,
            ..Default::default()
        };
        let a = crate::add_user(&store, "a@example.com", "pw", &opts).unwrap();
        crate::add_user(&store, "b@example.com", "other", &opts).unwrap();
        let mk = crate::master_key(&a, "pw").unwrap();
        let (k1, k2): ([u8; 32], [u8; 32]) = (crypto::random_bytes(), crypto::random_bytes());
        store
            .atomic(|db| {
                db.insert_node(&file("AAAAAAAA", &a.handle, &mk, &k1, "b1"))?;
                db.insert_node(&file("BBBBBBBB", &a.handle, &mk, &k1, "b2"))?;
                db.insert_node(&file("CCCCCCCC", &a.handle, &mk, &k2, "b3"))?;
                db.insert_node(&file("DDDDDDDD", &a.handle, &mk, &k2, "b3"))?;
                Ok::<_, store::StoreError>(())
            })
            .unwrap();
        let pw = |e: &str| (e == "a@example.com").then(|| "pw".to_string());
        let r = keystreams(&store, pw).unwrap();
        assert_eq!(r.checked, 4);
        assert_eq!(r.repeats.len(), 1, "{r:?}");
        assert!(r.repeats[0][0].starts_with("AAAAAAAA (a@example.com"));
        assert!(r.repeats[0][1].starts_with("BBBBBBBB"));
        // A wrong password unwraps nothing: everything is skipped, nothing is claimed.
        let r = keystreams(&store, |_| Some("wrong".into())).unwrap();
        assert_eq!((r.checked, r.skipped), (0, 4));
    }
}
