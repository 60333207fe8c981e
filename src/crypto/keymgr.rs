//! The key manager container, the `^!keys` user attribute (`MEGA-KEYS-SHARES-VERSIONS.md` §2):
//! `0x14 0x00 ‖ IV(12) ‖ AES-128-GCM(TLV records)` under `HKDF-SHA256(master key, info 0x01)`.
//!
//! [`KeysContainer`] keeps every record as it was read, in order, so that a rewrite changes
//! only what this client owns (share keys, pending inshares, the generation) and keeps every
//! other tag — private keys, authrings, warnings, backups, tags it does not know — byte for
//! byte (§2.9). Also the pairwise key of two Cu25519 key pairs that wraps share keys sent by
//! pending keys (§5.2).

use sha2::Sha256;
use zeroize::Zeroizing;

use super::keys::{Key128, MasterKey};
use super::CryptoError;

/// Record tags this client reads or writes (§2.4).
pub mod tag {
    pub const VERSION: u8 = 1;
    pub const IDENTITY: u8 = 3;
    pub const GENERATION: u8 = 4;
    pub const PRIV_CU25519: u8 = 17;
    /// The authring of contacts' Ed25519 keys.
    pub const AUTHRING_ED25519: u8 = 32;
    /// The authring of contacts' Cu25519 keys.
    pub const AUTHRING_CU25519: u8 = 33;
    pub const SHARE_KEYS: u8 = 48;
    pub const PENDING_OUTSHARES: u8 = 64;
    pub const PENDING_INSHARES: u8 = 65;
}

/// The 15 tags MEGA's clients write, in their order (§2.4).
const KNOWN_TAGS: [u8; 15] = [1, 2, 3, 4, 5, 16, 17, 18, 32, 33, 48, 64, 65, 80, 96];

/// Share-key flag: created locally or received from a verified peer.
pub const TRUSTED: u8 = 0x01;
/// Share-key flag: an outgoing share or folder link of ours uses it.
pub const IN_USE: u8 = 0x02;

/// The `^!keys` key: HKDF-SHA256 of the master key, empty salt, info `0x01`, 16 bytes.
pub fn container_key(mk: &MasterKey) -> Key128 {
    let hk = hkdf::Hkdf::<Sha256>::new(None, &mk.0 .0);
    let mut k = [0u8; 16];
    // 16 bytes is always a valid output length for HKDF-SHA256.
    let _ = hk.expand(&[1], &mut k);
    Key128(k)
}

/// One entry of tag 48: a share's node handle (6 bytes), its key and flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareKeyRecord {
    pub node: [u8; 6],
    pub key: Key128,
    pub flags: u8,
}

/// One entry of tag 65: a share key a peer sent us that is not accepted yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingInshare {
    /// The share's 8-character node handle.
    pub node: String,
    /// The sender's 8-byte user handle.
    pub sender: [u8; 8],
    /// The share key, encrypted with the pairwise key (16 bytes).
    pub key: Vec<u8>,
}

/// One entry of tag 64: a share whose key still has to reach its recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingOutshare {
    pub node: [u8; 6],
    pub to: Recipient,
}

/// Who a pending outshare is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipient {
    /// A user (8-byte handle).
    User([u8; 8]),
    /// An e-mail address (not a MEGA account yet when the share was made).
    Email(String),
}

/// The decrypted records of a `^!keys` value.
#[derive(Clone, PartialEq, Eq)]
pub struct KeysContainer {
    records: Vec<(u8, Zeroizing<Vec<u8>>)>,
}

impl std::fmt::Debug for KeysContainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Private keys live in here: show only the tags.
        let tags: Vec<u8> = self.records.iter().map(|r| r.0).collect();
        f.debug_struct("KeysContainer")
            .field("tags", &tags)
            .finish_non_exhaustive()
    }
}

fn bad(what: &'static str) -> CryptoError {
    CryptoError::Length {
        what,
        got: 0,
        expected: "a valid key manager container",
    }
}

impl KeysContainer {
    /// Decrypts and parses a `^!keys` value; any deviation (header, authentication tag, a
    /// record running past the end, a tag of the wrong length) is an error, never a guess.
    pub fn open(mk: &MasterKey, blob: &[u8]) -> Result<Self, CryptoError> {
        if blob.len() <= 14 + 16 || blob[0] != 0x14 {
            return Err(bad("^!keys header"));
        }
        let iv: &[u8; 12] = blob[2..14].try_into().map_err(|_| bad("^!keys IV"))?;
        let plain = Zeroizing::new(
            super::aes::gcm_open(&container_key(mk).0, iv, &blob[14..])
                .ok_or(CryptoError::BadAttributes)?,
        );
        let mut records = Vec::new();
        let mut rest: &[u8] = &plain;
        while !rest.is_empty() {
            if rest.len() < 4 {
                return Err(bad("^!keys record header"));
            }
            let len = u32::from_be_bytes([0, rest[1], rest[2], rest[3]]) as usize;
            let value = rest.get(4..4 + len).ok_or_else(|| bad("^!keys record"))?;
            records.push((rest[0], Zeroizing::new(value.to_vec())));
            rest = &rest[4 + len..];
        }
        let c = KeysContainer { records };
        let lengths = [
            (tag::VERSION, 1),
            (tag::IDENTITY, 8),
            (tag::GENERATION, 4),
            (tag::PRIV_CU25519, 32),
        ];
        for (t, len) in lengths {
            if c.get(t).is_some_and(|v| v.len() != len) {
                return Err(bad("^!keys record length"));
            }
        }
        if c.get(tag::SHARE_KEYS).is_some_and(|v| v.len() % 23 != 0) {
            return Err(bad("^!keys share keys"));
        }
        Ok(c)
    }

    /// A container from raw records (in order).
    pub fn from_records(records: Vec<(u8, Vec<u8>)>) -> Self {
        KeysContainer {
            records: records
                .into_iter()
                .map(|(t, v)| (t, Zeroizing::new(v)))
                .collect(),
        }
    }

    /// Every record, in order.
    pub fn records(&self) -> impl Iterator<Item = (u8, &[u8])> {
        self.records.iter().map(|(t, v)| (*t, v.as_slice()))
    }

    /// Serialises and encrypts the records (with a fresh IV unless one is given).
    pub fn seal(&self, mk: &MasterKey, iv: Option<[u8; 12]>) -> Vec<u8> {
        let iv = iv.unwrap_or_else(rand::random);
        let mut plain = Zeroizing::new(Vec::new());
        for (t, v) in &self.records {
            plain.push(*t);
            plain.extend(&(v.len() as u32).to_be_bytes()[1..]);
            plain.extend(v.iter());
        }
        let mut out = vec![0x14, 0x00];
        out.extend(iv);
        out.extend(super::aes::gcm_seal(&container_key(mk).0, &iv, &plain));
        out
    }

    /// The last record with this tag (readers let the last one win).
    pub fn get(&self, t: u8) -> Option<&[u8]> {
        self.records
            .iter()
            .rev()
            .find(|r| r.0 == t)
            .map(|r| r.1.as_slice())
    }

    /// Replaces the value of a tag in place (keeping the record order), or adds it before
    /// the first known tag above it or the first tag this client does not know: MEGA's
    /// writers put known tags in ascending order and unknown records last, and mega-rs stops
    /// advancing at an unknown tag that comes before tag 48.
    fn set(&mut self, t: u8, value: Vec<u8>) {
        if let Some(r) = self.records.iter_mut().rev().find(|r| r.0 == t) {
            r.1 = Zeroizing::new(value);
            return;
        }
        let at = self
            .records
            .iter()
            .position(|r| !KNOWN_TAGS.contains(&r.0) || r.0 > t)
            .unwrap_or(self.records.len());
        self.records.insert(at, (t, Zeroizing::new(value)));
    }

    /// An authring ([`tag::AUTHRING_ED25519`] or [`tag::AUTHRING_CU25519`]); empty if absent.
    pub fn authring(&self, t: u8) -> Result<super::authring::AuthRing, CryptoError> {
        super::authring::AuthRing::parse(self.get(t).unwrap_or_default())
    }

    /// Replaces an authring; false (nothing to write) if it is unchanged.
    pub fn set_authring(&mut self, t: u8, ring: &super::authring::AuthRing) -> bool {
        let bytes = ring.to_bytes();
        if self.get(t).unwrap_or_default() == bytes.as_slice() {
            return false;
        }
        self.set(t, bytes);
        true
    }

    pub fn generation(&self) -> u32 {
        self.get(tag::GENERATION)
            .and_then(|v| <[u8; 4]>::try_from(v).ok())
            .map_or(0, u32::from_be_bytes)
    }

    pub fn set_generation(&mut self, g: u32) {
        self.set(tag::GENERATION, g.to_be_bytes().to_vec());
    }

    /// The user handle (8 bytes) the container belongs to.
    pub fn identity(&self) -> Option<&[u8]> {
        self.get(tag::IDENTITY)
    }

    pub fn cu25519_private(&self) -> Option<Zeroizing<[u8; 32]>> {
        let v = self.get(tag::PRIV_CU25519)?;
        Some(Zeroizing::new(v.try_into().ok()?))
    }

    pub fn share_keys(&self) -> Vec<ShareKeyRecord> {
        self.get(tag::SHARE_KEYS)
            .unwrap_or_default()
            .chunks_exact(23)
            .filter_map(|r| {
                Some(ShareKeyRecord {
                    node: r[..6].try_into().ok()?,
                    key: Key128(r[6..22].try_into().ok()?),
                    flags: r[22],
                })
            })
            .collect()
    }

    /// Adds a share key, or sets flags on the existing record of that node. An existing key
    /// is never replaced (a changed trusted key is what an attack would look like); returns
    /// false if the node already had a different key.
    pub fn add_share_key(&mut self, node: [u8; 6], key: &Key128, flags: u8) -> bool {
        let mut all = self.share_keys();
        match all.iter_mut().find(|r| r.node == node) {
            Some(r) if r.key != *key => return false,
            Some(r) => r.flags |= flags,
            None => all.push(ShareKeyRecord {
                node,
                key: key.clone(),
                flags,
            }),
        }
        let mut v = Vec::with_capacity(all.len() * 23);
        for r in &all {
            v.extend(r.node);
            v.extend(r.key.0);
            v.push(r.flags);
        }
        self.set(tag::SHARE_KEYS, v);
        true
    }

    /// Tag 64: `len(1) ‖ node(6) ‖ target`, the target a user handle (len 0) or an e-mail
    /// address of `len` bytes. Parsing stops at a malformed entry.
    pub fn pending_outshares(&self) -> Vec<PendingOutshare> {
        let mut out = Vec::new();
        let mut d = self.get(tag::PENDING_OUTSHARES).unwrap_or_default();
        while let Some((&len, rest)) = d.split_first() {
            let tlen = if len == 0 { 8 } else { len as usize };
            let (Some(node), Some(target)) = (rest.get(..6), rest.get(6..6 + tlen)) else {
                break;
            };
            let Ok(node) = <[u8; 6]>::try_from(node) else {
                break;
            };
            let to = if len == 0 {
                match <[u8; 8]>::try_from(target) {
                    Ok(u) => Recipient::User(u),
                    Err(_) => break,
                }
            } else {
                match std::str::from_utf8(target) {
                    Ok(e) => Recipient::Email(e.to_string()),
                    Err(_) => break,
                }
            };
            out.push(PendingOutshare { node, to });
            d = &rest[6 + tlen..];
        }
        out
    }

    fn set_pending_outshares(&mut self, list: &[PendingOutshare]) {
        let mut v = Vec::new();
        for p in list {
            match &p.to {
                Recipient::User(u) => {
                    v.push(0);
                    v.extend(p.node);
                    v.extend(u);
                }
                Recipient::Email(e) => {
                    v.push(e.len().min(255) as u8);
                    v.extend(p.node);
                    v.extend(&e.as_bytes()[..e.len().min(255)]);
                }
            }
        }
        self.set(tag::PENDING_OUTSHARES, v);
    }

    /// Records that a share's key must still reach `to`; false if it was recorded already.
    pub fn add_pending_outshare(&mut self, p: PendingOutshare) -> bool {
        let mut all = self.pending_outshares();
        if all.contains(&p) {
            return false;
        }
        all.push(p);
        self.set_pending_outshares(&all);
        true
    }

    /// Drops a pending outshare (its key was delivered); false if it was not there.
    pub fn remove_pending_outshare(&mut self, p: &PendingOutshare) -> bool {
        let mut all = self.pending_outshares();
        let before = all.len();
        all.retain(|x| x != p);
        if all.len() == before {
            return false;
        }
        self.set_pending_outshares(&all);
        true
    }

    /// Tag 65, an LTLV map (`keylen(1) ‖ key ‖ vlen(2) [‖ vlen32(4)] ‖ value`).
    pub fn pending_inshares(&self) -> Vec<PendingInshare> {
        ltlv(self.get(tag::PENDING_INSHARES).unwrap_or_default())
            .into_iter()
            .filter_map(|(node, v)| {
                let sender: [u8; 8] = v.get(..8)?.try_into().ok()?;
                let mut key = v[8..].to_vec();
                // An old SDK wrote the key as 22 base64 characters.
                if key.len() > 16 {
                    key = super::b64::decode(std::str::from_utf8(&key).ok()?, "key").ok()?;
                }
                Some(PendingInshare {
                    node: String::from_utf8(node).ok()?,
                    sender,
                    key,
                })
            })
            .collect()
    }

    /// Removes the tag-65 entry of a share (once its key is in tag 48).
    pub fn remove_pending_inshare(&mut self, node: &str) {
        let Some(v) = self.get(tag::PENDING_INSHARES) else {
            return;
        };
        let kept: Vec<(Vec<u8>, Vec<u8>)> = ltlv(v)
            .into_iter()
            .filter(|(k, _)| k.as_slice() != node.as_bytes())
            .collect();
        let mut out = Vec::new();
        for (k, v) in kept {
            out.push(k.len() as u8);
            out.extend(&k);
            if v.len() < 0xFFFF {
                out.extend(&(v.len() as u16).to_be_bytes());
            } else {
                out.extend([0xFF, 0xFF]);
                out.extend(&(v.len() as u32).to_be_bytes());
            }
            out.extend(v);
        }
        self.set(tag::PENDING_INSHARES, out);
    }
}

/// Parses an LTLV map; stops at the first malformed entry.
fn ltlv(mut d: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    while let Some((&klen, rest)) = d.split_first() {
        let Some(key) = rest.get(..klen as usize) else {
            break;
        };
        let rest = &rest[klen as usize..];
        let Some(l2) = rest.get(..2) else { break };
        let (len, rest) = match u16::from_be_bytes([l2[0], l2[1]]) {
            0xFFFF => match rest.get(2..6) {
                Some(l4) => (
                    u32::from_be_bytes([l4[0], l4[1], l4[2], l4[3]]) as usize,
                    &rest[6..],
                ),
                None => break,
            },
            n => (n as usize, &rest[2..]),
        };
        let Some(value) = rest.get(..len) else { break };
        out.push((key.to_vec(), value.to_vec()));
        d = &rest[len..];
    }
    out
}

/// The key two users share for wrapping share keys: X25519 of our Cu25519 private key and
/// the peer's `+puCu255`, then HKDF-SHA256 (no salt, info "strongvelope pairwise key"), 16
/// bytes (§5.2).
pub fn pairwise_key(own_private: &[u8; 32], peer_public: &[u8; 32]) -> Key128 {
    let secret = x25519_dalek::StaticSecret::from(*own_private);
    let shared = secret.diffie_hellman(&x25519_dalek::PublicKey::from(*peer_public));
    let hk = hkdf::Hkdf::<Sha256>::new(None, shared.as_bytes());
    let mut k = [0u8; 16];
    let _ = hk.expand(b"strongvelope pairwise key", &mut k);
    Key128(k)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::crypto::b64;

    fn vectors() -> serde_json::Value {
        let p = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/keymgr-vectors.json"
        );
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn mk(v: &serde_json::Value) -> MasterKey {
        MasterKey(Key128(
            hex(v["master_key"].as_str().unwrap()).try_into().unwrap(),
        ))
    }

    #[test]
    fn the_container_vector_opens_and_seals_byte_for_byte() {
        let v = &vectors()["keys_container"];
        let mk = mk(v);
        assert_eq!(
            container_key(&mk).0.to_vec(),
            hex(v["hkdf_key"].as_str().unwrap())
        );
        let blob = b64::decode(v["av"].as_str().unwrap(), "av").unwrap();
        let c = KeysContainer::open(&mk, &blob).unwrap();
        assert_eq!(c.generation(), 2);
        assert_eq!(c.identity(), Some(&[1u8, 2, 3, 4, 5, 6, 7, 8][..]));
        assert_eq!(c.cu25519_private().unwrap().as_slice(), &[0x11; 32]);
        let keys = c.share_keys();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].node, [0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6]);
        assert_eq!(keys[0].key, Key128([0x33; 16]));
        assert_eq!(keys[0].flags, TRUSTED | IN_USE);
        let iv: [u8; 12] = core::array::from_fn(|i| i as u8);
        assert_eq!(c.seal(&mk, Some(iv)), blob, "nothing changes on a rewrite");
        // A wrong key, a flipped bit, a truncated value: refused.
        let other = MasterKey(Key128([9; 16]));
        assert!(KeysContainer::open(&other, &blob).is_err());
        let mut flipped = blob.clone();
        flipped[40] ^= 1;
        assert!(KeysContainer::open(&mk, &flipped).is_err());
        assert!(KeysContainer::open(&mk, &blob[..20]).is_err());
    }

    #[test]
    fn rewrites_keep_unknown_tags_and_existing_keys() {
        let v = &vectors()["keys_container"];
        let mk = mk(v);
        let blob = b64::decode(v["av"].as_str().unwrap(), "av").unwrap();
        let mut c = KeysContainer::open(&mk, &blob).unwrap();
        c.records
            .push((200, Zeroizing::new(b"future tag".to_vec())));
        let before: Vec<(u8, Vec<u8>)> = c.records.iter().map(|r| (r.0, r.1.to_vec())).collect();
        // The existing key cannot be replaced; a new one is added; flags only grow.
        assert!(!c.add_share_key([0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6], &Key128([1; 16]), 0));
        assert!(c.add_share_key([1, 2, 3, 4, 5, 6], &Key128([7; 16]), TRUSTED));
        c.set_generation(3);
        let reopened = KeysContainer::open(&mk, &c.seal(&mk, None)).unwrap();
        assert_eq!(reopened.generation(), 3);
        assert_eq!(reopened.share_keys().len(), 2);
        assert_eq!(reopened.share_keys()[0].flags, TRUSTED | IN_USE);
        for (i, (t, val)) in before.iter().enumerate() {
            let got = &reopened.records[i];
            assert_eq!(got.0, *t, "record order kept");
            if *t != tag::GENERATION && *t != tag::SHARE_KEYS {
                assert_eq!(
                    got.1.as_slice(),
                    val.as_slice(),
                    "tag {t} kept byte for byte"
                );
            }
        }
        assert_eq!(reopened.records.last().unwrap().0, 200);
    }

    #[test]
    fn pairwise_key_and_pending_inshares_match_the_vectors() {
        let v = &vectors()["pairwise"];
        let a: [u8; 32] = hex(v["a_private"].as_str().unwrap()).try_into().unwrap();
        let b_pub: [u8; 32] = hex(v["b_public"].as_str().unwrap()).try_into().unwrap();
        let k = pairwise_key(&a, &b_pub);
        assert_eq!(k.0.to_vec(), hex(v["pairwise_key"].as_str().unwrap()));
        let wrapped = k.wrap(&[0x33; 16]);
        assert_eq!(b64::encode(&wrapped), v["pk_k"].as_str().unwrap());

        let entry = hex(v["pending_inshare_entry"].as_str().unwrap());
        let mut c = KeysContainer {
            records: vec![(tag::PENDING_INSHARES, Zeroizing::new(entry))],
        };
        let p = c.pending_inshares();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].node, "oaKjpKWm");
        assert_eq!(p[0].sender, [9; 8]);
        assert_eq!(p[0].key, wrapped);
        c.remove_pending_inshare("oaKjpKWm");
        assert!(c.pending_inshares().is_empty());
    }

    /// §7.1's sub-record examples for tag 64.
    #[test]
    fn pending_outshares_have_the_documented_layout() {
        let node = [0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6];
        let mut c = KeysContainer::from_records(vec![(tag::PENDING_OUTSHARES, Vec::new())]);
        let user = PendingOutshare {
            node,
            to: Recipient::User([9; 8]),
        };
        let mail = PendingOutshare {
            node,
            to: Recipient::Email("bob@example.com".into()),
        };
        assert!(c.add_pending_outshare(user.clone()));
        assert!(c.add_pending_outshare(mail.clone()));
        assert!(!c.add_pending_outshare(mail.clone()));
        let raw = c.get(tag::PENDING_OUTSHARES).unwrap().to_vec();
        assert_eq!(
            raw,
            [
                hex("00a1a2a3a4a5a60909090909090909"),
                hex("0fa1a2a3a4a5a6626f62406578616d706c652e636f6d")
            ]
            .concat()
        );
        assert_eq!(c.pending_outshares(), vec![user.clone(), mail.clone()]);
        assert!(c.remove_pending_outshare(&user));
        assert_eq!(c.pending_outshares(), vec![mail]);
    }
}
