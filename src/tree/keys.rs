//! The keys that unwrap node keys: the master key (for our own nodes), share keys (outgoing
//! shares from `ok`/`ok0`, checked with `ha`; incoming shares from a node's `sk`; on key-manager
//! accounts every share's key from `^!keys`, which wins) and the RSA
//! key for RSA-wrapped keys. Pure: no I/O.

use std::collections::HashMap;
use std::sync::Arc;

use super::node::NodeKind;
use crate::api::commands::ShareKey;
use crate::crypto::rsa::RsaPrivateKey;
use crate::crypto::{b64, FileKey, FolderKey, Key128, MasterKey, NodeKey};

/// Keys used to unwrap node keys.
#[derive(Debug, Clone)]
pub struct KeyRing {
    pub master: MasterKey,
    /// Own user handle.
    pub user: String,
    pub rsa: Option<Arc<RsaPrivateKey>>,
    /// Share keys by share-root node handle.
    pub share_keys: HashMap<String, Key128>,
}

/// RSA-wrapped keys are longer than this many base64 characters (a 32-byte key is 43).
const MAX_SYMMETRIC_KEY_B64: usize = 43;

impl KeyRing {
    pub fn new(master: MasterKey, user: String, rsa: Option<Arc<RsaPrivateKey>>) -> Self {
        KeyRing {
            master,
            user,
            rsa,
            share_keys: HashMap::new(),
        }
    }

    /// Unwraps `kb64` with `k` (AES) or our RSA key (long keys) to `len` bytes.
    fn unwrap(&self, k: &Key128, kb64: &str, len: usize) -> Option<Vec<u8>> {
        let raw = b64::decode(kb64, "node key").ok()?;
        if kb64.len() > MAX_SYMMETRIC_KEY_B64 {
            return self.rsa.as_ref()?.decrypt_key(&raw, len).ok();
        }
        let v = k.unwrap_key(&raw, "node key").ok()?;
        (v.len() >= len).then(|| v[..len].to_vec())
    }

    /// Learns share keys from an `f` reply's `ok`/`ok0` (only those whose `ha` checks out).
    pub fn learn_outgoing(&mut self, list: &[ShareKey]) {
        for ok in list {
            let (Some(h), Some(ha), Some(k)) = (ok.h.as_deref(), ok.ha.as_deref(), ok.k.as_deref())
            else {
                continue;
            };
            let auth = format!("{h}{h}");
            if auth.len() != 16
                || b64::decode(ha, "ha").ok() != Some(self.master.0.wrap(auth.as_bytes()))
            {
                continue;
            }
            if let Some(raw) = self.unwrap(&self.master.0.clone(), k, 16) {
                if let Ok(arr) = <[u8; 16]>::try_from(raw.as_slice()) {
                    self.share_keys.insert(h.to_string(), Key128(arr));
                }
            }
        }
    }

    /// Learns an incoming share's key from a node's `sk` (legacy shares), unless the share
    /// has a key already (the key manager's wins).
    pub(crate) fn learn_incoming(&mut self, h: &str, sk: &str) {
        if self.share_keys.contains_key(h) {
            return;
        }
        if let Some(raw) = self.unwrap(&self.master.0.clone(), sk, 16) {
            if let Ok(arr) = <[u8; 16]>::try_from(raw.as_slice()) {
                self.share_keys.insert(h.to_string(), Key128(arr));
            }
        }
    }

    /// Decrypts a node's `k` list for a node of the given kind.
    pub(crate) fn node_key(&self, k: &str, kind: NodeKind) -> Option<NodeKey> {
        let len = if kind == NodeKind::File { 32 } else { 16 };
        for pair in k.split('/') {
            let (id, kb64) = match pair.split_once(':') {
                Some(p) => p,
                None => (self.user.as_str(), pair),
            };
            let key = if id == self.user {
                self.master.0.clone()
            } else if let Some(sk) = self.share_keys.get(id) {
                sk.clone()
            } else {
                continue;
            };
            if let Some(raw) = self.unwrap(&key, kb64, len) {
                return Some(match kind {
                    NodeKind::File => {
                        NodeKey::File(FileKey::unpack(&raw.as_slice().try_into().ok()?))
                    }
                    _ => NodeKey::Folder(FolderKey(Key128(raw.as_slice().try_into().ok()?))),
                });
            }
        }
        None
    }
}
