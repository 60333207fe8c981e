//! The key material of an account as MEGA creates it today (`MEGA-KEYS-SHARES-VERSIONS.md`
//! §1.6, §1.7, §2): an Ed25519 and a Cu25519 (X25519) key pair, their signed public
//! attributes, the `*keyring` container and the key manager (`^!keys`).
//!
//! Only `useradd` uses this: it knows the password, hence the master key, so it can build
//! what a registering client would upload. The running server never opens these values
//! (content-blind); clients change them with `upv`.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes128Gcm, Nonce};
use ed25519_dalek::{Signer, SigningKey};
use sha2::Sha256;

/// The tags of `^!keys`, in the order MEGA's clients write them (§2.4).
const TAGS: [u8; 15] = [1, 2, 3, 4, 5, 16, 17, 18, 32, 33, 48, 64, 65, 80, 96];

/// The `^!keys` encryption key: HKDF-SHA256 of the master key, empty salt, info `0x01`.
pub fn keys_key(mk: &[u8; 16]) -> [u8; 16] {
    let hk = hkdf::Hkdf::<Sha256>::new(None, mk);
    let mut k = [0u8; 16];
    // 16 bytes are always a valid HKDF-SHA256 output length.
    let _ = hk.expand(&[1], &mut k);
    k
}

/// `tag(1) ‖ len(3, BE) ‖ value` records.
pub fn tlv(records: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (tag, v) in records {
        out.push(*tag);
        out.extend(&(v.len() as u32).to_be_bytes()[1..]);
        out.extend(v);
    }
    out
}

/// The `^!keys` container: `0x14 0x00 ‖ IV(12) ‖ AES-128-GCM(plaintext) ‖ tag(16)`.
pub fn keys_container(mk: &[u8; 16], plaintext: &[u8], iv: [u8; 12]) -> Vec<u8> {
    let cipher = Aes128Gcm::new(&keys_key(mk).into());
    let mut out = vec![0x14, 0x00];
    out.extend(iv);
    // Encryption into a Vec cannot fail for inputs of this size.
    out.extend(
        cipher
            .encrypt(Nonce::from_slice(&iv), plaintext)
            .unwrap_or_default(),
    );
    out
}

/// A `*` attribute container: records `name ‖ 0 ‖ len(2, BE) ‖ value` sorted by name, in
/// mode `0x10` (AES-GCM, 12-byte IV, 16-byte tag) under the master key itself.
pub fn star_container(mk: &[u8; 16], records: &[(&str, &[u8])], iv: [u8; 12]) -> Vec<u8> {
    let mut sorted = records.to_vec();
    sorted.sort_by_key(|(n, _)| *n);
    let mut plain = Vec::new();
    for (name, v) in sorted {
        plain.extend(name.as_bytes());
        plain.push(0);
        plain.extend(&(v.len() as u16).to_be_bytes());
        plain.extend(v);
    }
    let cipher = Aes128Gcm::new(mk.into());
    let mut out = vec![0x10];
    out.extend(iv);
    out.extend(
        cipher
            .encrypt(Nonce::from_slice(&iv), plain.as_slice())
            .unwrap_or_default(),
    );
    out
}

/// `ts(8, BE) ‖ Ed25519 signature of "keyauth" ‖ ts ‖ key` (`+sigCu255`, `+sigPubk`).
pub fn sign_key(ed_seed: &[u8; 32], key: &[u8], ts: u64) -> Vec<u8> {
    let sk = SigningKey::from_bytes(ed_seed);
    let mut msg = b"keyauth".to_vec();
    msg.extend(ts.to_be_bytes());
    msg.extend(key);
    let mut out = ts.to_be_bytes().to_vec();
    out.extend(sk.sign(&msg).to_bytes());
    out
}

/// The RSA public key as `+sigPubk` signs it: `n`'s bytes, zero padding that keeps the
/// exponent's width in `pubk`, `e`'s bytes (`sdk:AsymmCipher::serializekeyforjs`).
pub fn rsa_key_for_signing(pubk: &[u8]) -> Option<Vec<u8>> {
    let mpi = |d: &[u8]| -> Option<(Vec<u8>, usize)> {
        let bits = u16::from_be_bytes([*d.first()?, *d.get(1)?]) as usize;
        let len = bits.div_ceil(8);
        Some((d.get(2..2 + len)?.to_vec(), 2 + len))
    };
    let (n, used) = mpi(pubk)?;
    let (e, _) = mpi(pubk.get(used..)?)?;
    let pad = pubk.len().checked_sub(n.len() + e.len() + 4)?;
    let mut out = n;
    out.extend(std::iter::repeat_n(0, pad));
    out.extend(e);
    Some(out)
}

/// The private RSA key as tag 18 holds it: `MPI(p) ‖ MPI(q) ‖ MPI(d)` — the first three MPIs
/// of the (decrypted) private key blob.
pub fn rsa_pqd(privk_plain: &[u8]) -> Option<Vec<u8>> {
    let mut off = 0;
    for _ in 0..3 {
        let bits = u16::from_be_bytes([*privk_plain.get(off)?, *privk_plain.get(off + 1)?]);
        off += 2 + (bits as usize).div_ceil(8);
    }
    privk_plain.get(..off).map(<[u8]>::to_vec)
}

/// Inputs of a new account's key material.
pub struct NewKeys<'a> {
    pub mk: &'a [u8; 16],
    /// The 8 bytes of the user handle.
    pub user: [u8; 8],
    pub pubk: &'a [u8],
    /// `MPI(p) ‖ MPI(q) ‖ MPI(d)`.
    pub rsa_pqd: &'a [u8],
    pub now: u64,
    pub ed_seed: [u8; 32],
    pub cu_private: [u8; 32],
}

/// The user attributes of a key-manager account, `(name, value)`: `^!keys` (generation 1,
/// every tag present), `*keyring`, `+puEd255`, `+puCu255`, `+sigCu255`, `+sigPubk`.
pub fn account_attributes(k: &NewKeys<'_>) -> Vec<(&'static str, Vec<u8>)> {
    let ed_pub = SigningKey::from_bytes(&k.ed_seed)
        .verifying_key()
        .to_bytes()
        .to_vec();
    let cu_pub = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(k.cu_private))
        .as_bytes()
        .to_vec();
    let records: Vec<(u8, Vec<u8>)> = TAGS
        .iter()
        .map(|&t| {
            let v = match t {
                1 => vec![1],
                2 => (k.now as u32).to_be_bytes().to_vec(),
                3 => k.user.to_vec(),
                4 => 1u32.to_be_bytes().to_vec(),
                16 => k.ed_seed.to_vec(),
                17 => k.cu_private.to_vec(),
                18 => k.rsa_pqd.to_vec(),
                _ => Vec::new(),
            };
            (t, v)
        })
        .collect();
    let rand_iv = crate::crypto::random_bytes::<12>;
    let mut out = vec![
        ("^!keys", keys_container(k.mk, &tlv(&records), rand_iv())),
        (
            "*keyring",
            star_container(
                k.mk,
                &[("prEd255", &k.ed_seed), ("prCu255", &k.cu_private)],
                rand_iv(),
            ),
        ),
        ("+sigCu255", sign_key(&k.ed_seed, &cu_pub, k.now)),
        ("+puEd255", ed_pub),
        ("+puCu255", cu_pub),
    ];
    if let Some(rsa) = rsa_key_for_signing(k.pubk) {
        out.push(("+sigPubk", sign_key(&k.ed_seed, &rsa, k.now)));
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::crypto::{b64d, b64e};

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn iv() -> [u8; 12] {
        core::array::from_fn(|i| i as u8)
    }

    fn mk() -> [u8; 16] {
        core::array::from_fn(|i| i as u8)
    }

    fn untlv(mut d: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut out = Vec::new();
        while d.len() >= 4 {
            let len = u32::from_be_bytes([0, d[1], d[2], d[3]]) as usize;
            out.push((d[0], d[4..4 + len].to_vec()));
            d = &d[4 + len..];
        }
        assert!(d.is_empty());
        out
    }

    /// What `useradd` makes is what the SDK checks at login (§1.7): every tag, our identity,
    /// public keys that match the private ones, signatures that verify.
    #[test]
    fn new_accounts_have_a_consistent_key_manager() {
        use crate::attrs::AttrQueries;
        use aes::cipher::{BlockDecrypt, KeyInit as _};
        let dir = tempfile::tempdir().unwrap();
        let store = crate::Store::open(dir.path()).unwrap();
        let opts = crate::UserOptions {
            v1: true,
            ..Default::default()
        };
        let user = crate::add_user(&store, "km@x.example", "pw", &opts).unwrap();
        let mut mk = b64d(&user.k).unwrap();
        let pk = crate::crypto::prepare_key(b"pw");
        aes::Aes128::new(&pk.into()).decrypt_block(mk.as_mut_slice().into());
        let mk: [u8; 16] = mk.try_into().unwrap();
        let attr = |n: &str| store.lock().attr(&user.handle, n).unwrap().unwrap().0;

        let blob = attr("^!keys");
        assert_eq!(&blob[..2], &[0x14, 0]);
        let plain = Aes128Gcm::new(&keys_key(&mk).into())
            .decrypt(Nonce::from_slice(&blob[2..14]), &blob[14..])
            .unwrap();
        let rec = untlv(&plain);
        assert_eq!(rec.iter().map(|r| r.0).collect::<Vec<_>>(), TAGS.to_vec());
        let get = |t: u8| rec.iter().find(|r| r.0 == t).unwrap().1.clone();
        assert_eq!(get(3), b64d(&user.handle).unwrap());
        assert_eq!(get(4), 1u32.to_be_bytes());
        assert!(get(18).len() >= 512, "the web client needs a full RSA key");
        let seed: [u8; 32] = get(16).try_into().unwrap();
        let ed = SigningKey::from_bytes(&seed).verifying_key();
        assert_eq!(attr("+puEd255"), ed.to_bytes());
        let cu: [u8; 32] = get(17).try_into().unwrap();
        let cu_pub = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(cu));
        assert_eq!(attr("+puCu255"), cu_pub.as_bytes());
        let verify = |sig: &[u8], key: &[u8]| {
            let mut msg = b"keyauth".to_vec();
            msg.extend(&sig[..8]);
            msg.extend(key);
            let s = ed25519_dalek::Signature::from_slice(&sig[8..72]).unwrap();
            ed.verify_strict(&msg, &s).is_ok()
        };
        assert!(verify(&attr("+sigCu255"), cu_pub.as_bytes()));
        let pubk = b64d(&user.pubk).unwrap();
        assert!(verify(
            &attr("+sigPubk"),
            &rsa_key_for_signing(&pubk).unwrap()
        ));
        let ring = attr("*keyring");
        assert_eq!(ring[0], 0x10);
        let ring_plain = Aes128Gcm::new(&mk.into())
            .decrypt(Nonce::from_slice(&ring[1..13]), &ring[13..])
            .unwrap();
        assert!(ring_plain.starts_with(b"prCu255\0\0\x20"));

        let legacy = crate::UserOptions {
            v1: true,
            legacy: true,
            ..Default::default()
        };
        let old = crate::add_user(&store, "old@x.example", "pw", &legacy).unwrap();
        assert!(store.lock().attrs_of(&old.handle).unwrap().is_empty());
    }

    /// §7.1: the derivation and a complete container.
    #[test]
    fn keys_container_matches_the_vector() {
        assert_eq!(
            keys_key(&mk()).to_vec(),
            hex("7163bb80c802762b578c09cfdf15e5ab")
        );
        let records: Vec<(u8, Vec<u8>)> = TAGS
            .iter()
            .map(|&t| {
                let v = match t {
                    1 => vec![1],
                    2 => 1_700_000_000u32.to_be_bytes().to_vec(),
                    3 => (1..=8).collect(),
                    4 => 2u32.to_be_bytes().to_vec(),
                    16 => vec![0x44; 32],
                    17 => vec![0x11; 32],
                    48 => [
                        vec![0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6],
                        vec![0x33; 16],
                        vec![3],
                    ]
                    .concat(),
                    _ => Vec::new(),
                };
                (t, v)
            })
            .collect();
        let plain = tlv(&records);
        assert_eq!(plain.len(), 164);
        assert_eq!(b64e(&keys_container(&mk(), &plain, iv())), "FAAAAQIDBAUGBwgJCgvEZZGdvICaSg39AG7qEThTjnwChwB5luiHD-DUmUBIcK42JN1uPRtiIWnJvlVew1XlBmnAyrxe4MnVOkRkuXa0IMBuSUeTv8989l5xgCj9rHkj3xFMNz8QcISPXSTrcVSzkD8pXr_EL4Ri8LkF2HGaUZkXkXSNh2x-KSCUJUIgezAY52ObHh18OujkxFlYIDxlGML1yxlVrmpGHBQAhKPZcD8fOAe6uyg5Om8-BIr198THbdU");
    }

    /// §7.4: the `*keyring` container.
    #[test]
    fn keyring_matches_the_vector() {
        let c = star_container(
            &mk(),
            &[("prEd255", &[0x44; 32]), ("prCu255", &[0x11; 32])],
            iv(),
        );
        assert_eq!(b64e(&c), "EAABAgMEBQYHCAkKC-Me5LtULsJUS_JwmyeyYRmiNwv3Qvzs5_cw4DwFVbN9lLXK5uWRpvJR5XmVhe3lp_mfFNBAw3I_ago2lu4IUqDeSrEKGwiOWmd0NRs4fkwfLOjBL-uQ3lKMxliIpIycZppgEiE");
    }

    /// §7.3: the computed `+sigCu255` and the SDK's `+sigPubk` vector.
    #[test]
    fn key_signatures_match_the_vectors() {
        let cu_pub = b64d("e06Qm75__kTEZaIgA31gjuNYl9Me-XLwf3SJLLD3PxM").unwrap();
        assert_eq!(
            b64e(&sign_key(&[0x44; 32], &cu_pub, 1_700_000_000)),
            "AAAAAGVT8QDfdgfpEhOm6umIWWiPlGrVn0HP2E8pSyMH3IZhet5oYtyrwa5fTYK8Zd70COBJ_E_tX4PLawAUZzuzDI3eEa8G"
        );
        let seed: [u8; 32] = b64d("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=")
            .unwrap()
            .try_into()
            .unwrap();
        let n = b64d("1XJHwX9WYEVk7KOack5nhOgzgnYWrVdt0UY2yn5Lw38mPzkVnkHCmguqWIfL5bzVpbHHhlG9yHumvyyu9r1gKUMz4Y/1cf691WIQmRGfg8dB2TeRUSvwb2A7EFGeFqQZHclgvpM2aq4PXrPPmQAciTxjguxcL1lem/fXGd1X6KKxPJ+UfQ5TZbV4O2aOwYuxys1YHh3mNHEp/xE1/fx292hdejPTJIX8IC5zjsss76e9PSVOgSrz+jQQYKbKpT5Yamml98bEZuLY9ncMGUmw5q4WHi/OdcvskHUydAL0qNOqbCwvt1Y7xIQfclR0SQE/AbwuJui0mt3PuGjM42T/DQ==").unwrap();
        let mut pubk = 2048u16.to_be_bytes().to_vec();
        pubk.extend(&n);
        pubk.extend([0, 9, 1, 1]);
        let signed = rsa_key_for_signing(&pubk).unwrap();
        assert_eq!(signed, [n.clone(), vec![1, 1]].concat());
        let sig = sign_key(&seed, &signed, 1_407_891_128);
        assert_eq!(
            sig,
            b64d("AAAAAFPqtrj3Qr4d83Oz/Ya6svzJfeoSBtWPC7KBU4KqWMI8OX3eXT45+IyWCTTA5yeip/GThvkS8O2HBFaNLvSAFq5/5lQG").unwrap()
        );
    }
}
