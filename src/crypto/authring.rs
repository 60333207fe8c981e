//! Authrings: what this account recorded about its contacts' public keys
//! (`MEGA-BACKUPS-TRUST.md` §3), kept in the key manager (`^!keys` tag 32 for Ed25519 signing
//! keys, tag 33 for the Cu25519 keys share keys are encrypted to).
//!
//! A ring is a run of 29-byte records: the contact's user handle (8 bytes), the first 20 bytes
//! of SHA-256 of the key, and a trust byte whose method is 0 SEEN (first sight), 1 FINGERPRINT
//! (the user compared fingerprints) or 2 SIGNATURE (the Cu25519 key's signature verified).
//! Records are kept byte for byte, whatever their trust byte says, so that another client's
//! rings survive our writes; a ring whose length is not a multiple of 29 is refused.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use super::CryptoError;

/// Bytes per record.
const RECORD: usize = 29;

/// How a key came to be recorded (the low bits of the trust byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Recorded the first time it was seen (trust on first use).
    Seen,
    /// The user compared its fingerprint with the contact's (Ed25519 ring).
    Fingerprint,
    /// Its signature by the contact's recorded Ed25519 key verified (Cu25519 ring).
    Signature,
    /// A value this client does not know (kept as it is).
    Other(u8),
}

impl Method {
    fn of(byte: u8) -> Method {
        match byte {
            0 => Method::Seen,
            1 => Method::Fingerprint,
            2 => Method::Signature,
            b => Method::Other(b),
        }
    }

    fn byte(self) -> u8 {
        match self {
            Method::Seen => 0,
            Method::Fingerprint => 1,
            Method::Signature => 2,
            Method::Other(b) => b,
        }
    }
}

/// One contact's record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    pub fingerprint: [u8; 20],
    pub method: Method,
}

/// A key's fingerprint: the first 20 bytes of its SHA-256.
pub fn fingerprint(key: &[u8]) -> [u8; 20] {
    let d = Sha256::digest(key);
    let mut out = [0u8; 20];
    out.copy_from_slice(&d[..20]);
    out
}

/// A fingerprint as MEGA's apps show credentials: 40 uppercase hex digits in groups of four.
pub fn show(fp: &[u8; 20]) -> String {
    let hex: String = fp.iter().map(|b| format!("{b:02X}")).collect();
    hex.as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// One authring: records by user handle.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthRing {
    records: BTreeMap<[u8; 8], Record>,
}

impl AuthRing {
    /// Parses a ring (`^!keys` tag 32 or 33: the bare concatenation of records).
    pub fn parse(bytes: &[u8]) -> Result<AuthRing, CryptoError> {
        if bytes.len() % RECORD != 0 {
            return Err(CryptoError::Malformed(format!(
                "an authring of {} bytes (records are {RECORD})",
                bytes.len()
            )));
        }
        let mut records = BTreeMap::new();
        for r in bytes.chunks_exact(RECORD) {
            let mut user = [0u8; 8];
            user.copy_from_slice(&r[..8]);
            let mut fingerprint = [0u8; 20];
            fingerprint.copy_from_slice(&r[8..28]);
            records.insert(
                user,
                Record {
                    fingerprint,
                    method: Method::of(r[28]),
                },
            );
        }
        Ok(AuthRing { records })
    }

    /// The ring as stored, records in user-handle order.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.records.len() * RECORD);
        for (user, r) in &self.records {
            out.extend_from_slice(user);
            out.extend_from_slice(&r.fingerprint);
            out.push(r.method.byte());
        }
        out
    }

    pub fn get(&self, user: &[u8; 8]) -> Option<Record> {
        self.records.get(user).copied()
    }

    /// Records (or replaces) a user's key.
    pub fn set(&mut self, user: [u8; 8], key: &[u8], method: Method) {
        self.records.insert(
            user,
            Record {
                fingerprint: fingerprint(key),
                method,
            },
        );
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

/// What a ring says about a key a contact presents now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Never recorded: first sight.
    New,
    /// The recorded key, with how it was recorded.
    Same(Method),
    /// A different key than the one recorded.
    Changed,
}

impl AuthRing {
    /// Compares a key a contact presents with what is recorded for them.
    pub fn check(&self, user: &[u8; 8], key: &[u8]) -> Check {
        match self.get(user) {
            None => Check::New,
            Some(r) if r.fingerprint == fingerprint(key) => Check::Same(r.method),
            Some(_) => Check::Changed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The document's example (§3.2): the SDK's published Ed25519 vector key (KEYS §7.3),
    /// user handle `Zc1GXv5mgKg`, its fingerprint and record.
    #[test]
    fn the_documented_record_and_fingerprint() {
        let key =
            crate::crypto::b64::decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "k").unwrap();
        let fp = fingerprint(&key);
        assert_eq!(
            show(&fp),
            "21FE 31DF A154 A261 626B F854 046F D227 1B7B ED4B"
        );
        let user: [u8; 8] = crate::crypto::b64::decode("Zc1GXv5mgKg", "h")
            .unwrap()
            .try_into()
            .unwrap();
        let mut ring = AuthRing::default();
        ring.set(user, &key, Method::Seen);
        let hex: String = ring.to_bytes().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "65cd465efe6680a821fe31dfa154a261626bf854046fd2271b7bed4b00"
        );
        assert_eq!(ring.check(&user, &key), Check::Same(Method::Seen));
        assert_eq!(ring.check(&user, &[0u8; 32]), Check::Changed);
        assert_eq!(ring.check(&[1; 8], &key), Check::New);
    }

    #[test]
    fn other_clients_records_survive_a_round_trip() {
        // Two records in reverse handle order, one with a trust byte we do not know.
        let mut raw = Vec::new();
        raw.extend([9u8; 8]);
        raw.extend([7u8; 20]);
        raw.push(0x12);
        raw.extend([3u8; 8]);
        raw.extend([4u8; 20]);
        raw.push(2);
        let mut ring = AuthRing::parse(&raw).unwrap();
        assert_eq!(ring.get(&[9; 8]).unwrap().method, Method::Other(0x12));
        ring.set([5; 8], b"another key", Method::Seen);
        let again = AuthRing::parse(&ring.to_bytes()).unwrap();
        assert_eq!(again, ring);
        assert_eq!(again.get(&[9; 8]).unwrap().fingerprint, [7; 20]);
        assert_eq!(again.get(&[3; 8]).unwrap().method, Method::Signature);
        assert!(AuthRing::parse(&raw[..30]).is_err());
        assert!(AuthRing::parse(&[]).unwrap().is_empty());
    }
}
