//! `mega-testserver seed`: fills an existing account with a large tree of encrypted nodes,
//! straight into the store, for tests and benchmarks of large accounts. It knows the password,
//! so it encrypts as a client would: every node gets its own random key wrapped with the
//! master key, and attributes `MEGA{"n": name}` (files also a fingerprint `c`) encrypted with
//! AES-CBC under the node's key. Folders nest `depth` levels deep, files are spread over all
//! folders. Files are empty (one shared empty blob), so they list, stat and download like any
//! other: seeding measures tree sizes, not storage.

use aes::cipher::generic_array::GenericArray;
use aes::cipher::{BlockEncrypt, KeyInit};
use aes::Aes128;
use rusqlite::params;

use crate::crypto::{self, b64e};
use crate::store::{self, Queries, Store, FILE, FOLDER};
use crate::ServerError;

/// What to create.
#[derive(Debug, Clone, Copy)]
pub struct SeedPlan {
    pub folders: usize,
    pub files: usize,
    /// Folder levels below the root (at least 1).
    pub depth: usize,
}

/// The blob every seeded (empty) file points at.
const EMPTY_BLOB: &str = "seed-empty";

fn ecb(key: &[u8; 16], data: &mut [u8]) {
    let c = Aes128::new(GenericArray::from_slice(key));
    for b in data.chunks_exact_mut(16) {
        c.encrypt_block(GenericArray::from_mut_slice(b));
    }
}

/// `MEGA` ‖ JSON, zero-padded to 16 bytes, AES-CBC with a zero IV.
fn encrypt_attrs(key: &[u8; 16], json: &str) -> String {
    let mut data = format!("MEGA{json}").into_bytes();
    data.resize(data.len().div_ceil(16) * 16, 0);
    let c = Aes128::new(GenericArray::from_slice(key));
    let mut prev = [0u8; 16];
    for b in data.chunks_exact_mut(16) {
        for (x, p) in b.iter_mut().zip(prev) {
            *x ^= p;
        }
        c.encrypt_block(GenericArray::from_mut_slice(b));
        prev.copy_from_slice(b);
    }
    b64e(&data)
}

/// Seeds `email`'s Cloud Drive; returns how many nodes were created.
pub fn seed(
    store: &Store,
    email: &str,
    password: &str,
    plan: SeedPlan,
) -> Result<usize, ServerError> {
    let email = email.trim().to_lowercase();
    let user = store
        .lock()
        .user_by_email(&email)?
        .ok_or_else(|| ServerError::Other(format!("{email}: no such account")))?;
    let mk = crate::master_key(&user, password)?;
    let depth = plan.depth.max(1);
    // Folders per level: a tree with `depth` levels and about `folders` folders in all.
    let fanout = ((plan.folders.max(1) as f64).powf(1.0 / depth as f64).ceil() as usize).max(1);
    store::private_file(&store.blob_path(EMPTY_BLOB))?;
    let now = store::now();
    let owner = user.handle.clone();
    let created = store.atomic(|db| {
        let mut st = db.prepare(
            "INSERT INTO nodes (handle, owner, parent, kind, attrs, key, size, ts, blob, creator)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, ?7, ?8, '')",
        )?;
        let mut insert = |parent: &str, kind: i64, name: &str| -> rusqlite::Result<String> {
            let handle = crate::new_node_handle();
            let (attrs, mut wrapped) = if kind == FOLDER {
                let k: [u8; 16] = crypto::random_bytes();
                (
                    encrypt_attrs(&k, &serde_json::json!({"n": name}).to_string()),
                    k.to_vec(),
                )
            } else {
                // An empty file: the MAC of no content is zero. The packed key XORs the AES key
                // with the nonce and MAC, and the attribute key is the AES key.
                let aes: [u8; 16] = crypto::random_bytes();
                let nonce: [u8; 8] = crypto::random_bytes();
                let mut packed = [0u8; 32];
                for i in 0..16 {
                    let second = if i < 8 { nonce[i] } else { 0 };
                    packed[i] = aes[i] ^ second;
                    packed[16 + i] = second;
                }
                let json = serde_json::json!({"n": name}).to_string();
                (encrypt_attrs(&aes, &json), packed.to_vec())
            };
            ecb(&mk, &mut wrapped);
            let blob = (kind == FILE).then_some(EMPTY_BLOB);
            st.execute(params![
                handle,
                owner,
                parent,
                kind,
                attrs,
                b64e(&wrapped),
                now,
                blob
            ])?;
            Ok(handle)
        };
        // Breadth first: level by level, each folder getting `fanout` subfolders.
        let mut all_folders = vec![user.root.clone()];
        let mut level = vec![user.root.clone()];
        let mut made = 0usize;
        'levels: for _ in 0..depth {
            let mut next = Vec::new();
            for p in &level {
                for _ in 0..fanout {
                    if made == plan.folders {
                        break 'levels;
                    }
                    let h = insert(p, FOLDER, &format!("folder {made:07}"))?;
                    all_folders.push(h.clone());
                    next.push(h);
                    made += 1;
                }
            }
            level = next;
        }
        for i in 0..plan.files {
            let parent = &all_folders[i % all_folders.len()];
            insert(parent, FILE, &format!("file {i:08}.txt"))?;
        }
        Ok::<_, store::StoreError>(made + plan.files)
    })?;
    Ok(created)
}
