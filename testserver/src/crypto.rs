//! The test server's own small crypto: just what a registering client would compute to create
//! an account (v1/v2 key derivation, master key, RSA key pair) and what the server itself does
//! (login hash check, csid, hashcash, TOTP, upload checksums).
//!
//! Deliberately independent of the product crate: if both shared this code, a wrong wire format
//! would pass every test because both sides agree.

use aes::cipher::generic_array::GenericArray;
use aes::cipher::{BlockEncrypt, KeyInit};
use aes::Aes128;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::{alphabet, Engine};
use hmac::Mac;
use num_bigint::BigUint;
use rand::RngCore;
use sha2::Digest;

const B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Largest encrypted attribute blob, base64-encoded (64 KiB raw, `MAX_NODE_ATTRIBUTE_SIZE`).
pub const MAX_ATTR_B64: usize = 64 * 1024 * 4 / 3 + 4;

/// MEGA base64url encoding (no padding).
pub fn b64e(d: &[u8]) -> String {
    B64.encode(d)
}

/// MEGA base64url decoding; accepts the standard alphabet too.
pub fn b64d(s: &str) -> Option<Vec<u8>> {
    let s: String = s
        .trim_end_matches('=')
        .chars()
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            c => c,
        })
        .collect();
    B64.decode(s.as_bytes()).ok()
}

pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rand::thread_rng().fill_bytes(&mut b);
    b
}

pub(crate) fn ecb_encrypt(key: &[u8; 16], data: &mut [u8]) {
    let c = Aes128::new(GenericArray::from_slice(key));
    for chunk in data.chunks_exact_mut(16) {
        c.encrypt_block(GenericArray::from_mut_slice(chunk));
    }
}

/// v1 password key (`prepare_key`) over the password's UTF-8 bytes.
pub fn prepare_key(password: &[u8]) -> [u8; 16] {
    let ciphers: Vec<Aes128> = password
        .chunks(16)
        .map(|c| {
            let mut k = [0u8; 16];
            k[..c.len()].copy_from_slice(c);
            Aes128::new(GenericArray::from_slice(&k))
        })
        .collect();
    let mut pkey = GenericArray::from([
        0x93u8, 0xC4, 0x67, 0xE3, 0x7D, 0xB0, 0xC7, 0xA4, 0xD1, 0xBE, 0x3F, 0x81, 0x01, 0x52, 0xCB,
        0x56,
    ]);
    for _ in 0..0x10000 {
        for c in &ciphers {
            c.encrypt_block(&mut pkey);
        }
    }
    pkey.into()
}

/// v1 login hash of the lower-cased e-mail.
pub fn stringhash(email: &str, pwkey: &[u8; 16]) -> [u8; 8] {
    let mut h = [0u8; 16];
    for (i, b) in email.as_bytes().iter().enumerate() {
        h[i % 16] ^= b;
    }
    let c = Aes128::new(GenericArray::from_slice(pwkey));
    let mut block = GenericArray::from(h);
    for _ in 0..0x4000 {
        c.encrypt_block(&mut block);
    }
    let mut out = [0u8; 8];
    out[..4].copy_from_slice(&block[..4]);
    out[4..].copy_from_slice(&block[8..12]);
    out
}

/// v2: PBKDF2-HMAC-SHA512(password, salt, 100000, 32) split into (password key, auth key).
pub fn derive_v2(password: &[u8], salt: &[u8]) -> ([u8; 16], [u8; 16]) {
    let mut dk = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<sha2::Sha512>(password, salt, 100_000, &mut dk);
    let mut a = [0u8; 16];
    let mut b = [0u8; 16];
    a.copy_from_slice(&dk[..16]);
    b.copy_from_slice(&dk[16..]);
    (a, b)
}

/// The v2 verifier the server stores: the first 16 bytes of SHA-256(auth key).
pub fn v2_verifier(auth_key: &[u8]) -> [u8; 16] {
    let d = sha2::Sha256::digest(auth_key);
    let mut out = [0u8; 16];
    out.copy_from_slice(&d[..16]);
    out
}

/// A v2 account salt as the SDK builds it at registration:
/// SHA-256("mega.nz" padded with 'P' to 200 bytes ‖ client random value).
pub fn v2_salt() -> [u8; 32] {
    let mut pre = b"mega.nz".to_vec();
    pre.resize(200, b'P');
    pre.extend_from_slice(&random_bytes::<16>());
    sha2::Sha256::digest(&pre).into()
}

fn mpi(n: &BigUint) -> Vec<u8> {
    let mut out = (n.bits() as u16).to_be_bytes().to_vec();
    out.extend(n.to_bytes_be());
    out
}

fn read_mpi(data: &[u8]) -> Option<(BigUint, &[u8])> {
    let bits = u16::from_be_bytes([*data.first()?, *data.get(1)?]) as usize;
    let len = bits.div_ceil(8);
    let body = data.get(2..2 + len)?;
    Some((BigUint::from_bytes_be(body), &data[2 + len..]))
}

/// What a registering client uploads: wrapped master key, wrapped RSA private key, public key,
/// and the `ts` self-challenge.
pub struct AccountKeys {
    /// The master key itself (for building the key manager at creation only).
    pub mk: [u8; 16],
    /// `MPI(p) ‖ MPI(q) ‖ MPI(d)` of the RSA key (the key manager's tag 18).
    pub rsa_pqd: Vec<u8>,
    pub k: [u8; 16],
    pub privk: Vec<u8>,
    pub pubk: Vec<u8>,
    pub ts: Vec<u8>,
}

/// RSA modulus size MEGA uses.
const RSA_BITS: usize = 2048;
/// The public exponent web-generated MEGA keys use.
const RSA_E: u32 = 257;

/// Generates a master key and an RSA key pair, wrapped as a registering client would.
pub fn make_account_keys(pwkey: &[u8; 16]) -> Result<AccountKeys, String> {
    let mk: [u8; 16] = random_bytes();
    let mut rng = rand::thread_rng();
    let key = rsa::RsaPrivateKey::new_with_exp(&mut rng, RSA_BITS, &rsa::BigUint::from(RSA_E))
        .map_err(|e| format!("RSA key generation failed: {e}"))?;
    let conv = |n: &rsa::BigUint| BigUint::from_bytes_be(&n.to_bytes_be());
    use rsa::traits::PrivateKeyParts;
    let primes = key.primes();
    let (p, q) = (conv(&primes[0]), conv(&primes[1]));
    let d = conv(key.d());
    let n = &p * &q;
    // u = p^-1 mod q (q is prime, so Fermat: p^(q-2) mod q).
    let u = p.modpow(&(&q - BigUint::from(2u8)), &q);
    let rsa_pqd = [mpi(&p), mpi(&q), mpi(&d)].concat();
    let mut privk = [mpi(&p), mpi(&q), mpi(&d), mpi(&u)].concat();
    privk.resize(privk.len().div_ceil(16) * 16, 0);
    ecb_encrypt(&mk, &mut privk);
    let pubk = [mpi(&n), mpi(&BigUint::from(RSA_E))].concat();
    let r: [u8; 16] = random_bytes();
    let mut r_enc = r;
    ecb_encrypt(&mk, &mut r_enc);
    let ts = [r.to_vec(), r_enc.to_vec()].concat();
    let mut k = mk;
    ecb_encrypt(pwkey, &mut k);
    Ok(AccountKeys {
        mk,
        rsa_pqd,
        k,
        privk,
        pubk,
        ts,
    })
}

/// RSA-encrypts a 43-byte session id for `csid`, as the real server does: the plaintext is
/// `sid ‖ random` padded to `modulus bytes - 2` (so that every client's decoder agrees).
pub fn make_csid(sid: &[u8; 43], pubk: &[u8]) -> Option<Vec<u8>> {
    let (n, rest) = read_mpi(pubk)?;
    let (e, _) = read_mpi(rest)?;
    let len = (n.bits() as usize).div_ceil(8) - 2;
    let mut m = sid.to_vec();
    let mut pad = vec![0u8; len - 43];
    rand::thread_rng().fill_bytes(&mut pad);
    m.extend(pad);
    let c = BigUint::from_bytes_be(&m).modpow(&e, &n);
    Some(mpi(&c))
}

/// Builds a session id: 16 random bytes (first non-zero) ‖ base64url(user handle) ‖ 16 random.
pub fn make_sid(user_handle_b64: &str) -> [u8; 43] {
    let mut sid = [0u8; 43];
    let a: [u8; 16] = random_bytes();
    sid[..16].copy_from_slice(&a);
    if sid[0] == 0 {
        sid[0] = 1;
    }
    sid[16..27].copy_from_slice(&user_handle_b64.as_bytes()[..11]);
    sid[27..].copy_from_slice(&random_bytes::<16>());
    sid
}

/// Hashcash: the threshold for an easiness value (`MEGA-PROTOCOL.md` §1.7).
pub fn hashcash_threshold(easiness: u8) -> u32 {
    let e = easiness as u32;
    (((e & 63) << 1) + 1) << ((e >> 6) * 7 + 3)
}

/// The token is repeated this many times after the 4-byte prefix.
const HASHCASH_REPEAT: usize = 262_144;

/// Checks a hashcash solution for a token.
pub fn hashcash_valid(token: &[u8], prefix: &[u8], easiness: u8) -> bool {
    if prefix.len() != 4 {
        return false;
    }
    let mut h = sha2::Sha256::new();
    h.update(prefix);
    for _ in 0..HASHCASH_REPEAT {
        h.update(token);
    }
    let d = h.finalize();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]]) <= hashcash_threshold(easiness)
}

/// RFC 4648 base32 decoding (TOTP secrets), ignoring padding, spaces and case.
pub fn base32_decode(s: &str) -> Option<Vec<u8>> {
    let mut bits = 0u64;
    let mut nbits = 0;
    let mut out = Vec::new();
    for ch in s.chars().filter(|c| *c != '=' && !c.is_whitespace()) {
        let v = match ch.to_ascii_uppercase() {
            c @ 'A'..='Z' => c as u64 - 'A' as u64,
            c @ '2'..='7' => c as u64 - '2' as u64 + 26,
            _ => return None,
        };
        bits = (bits << 5) | v;
        nbits += 5;
        if nbits >= 8 {
            nbits -= 8;
            out.push((bits >> nbits) as u8);
        }
    }
    Some(out)
}

/// TOTP (RFC 6238: HMAC-SHA1, 30 s steps, 6 digits) for a base32 secret at Unix time `t`.
pub fn totp(secret_b32: &str, t: u64) -> Option<String> {
    let key = base32_decode(secret_b32)?;
    let counter = t / 30;
    let mut mac = <hmac::Hmac<sha1::Sha1> as Mac>::new_from_slice(&key).ok()?;
    mac.update(&counter.to_be_bytes());
    let h = mac.finalize().into_bytes();
    let off = (h[19] & 0x0f) as usize;
    let code = u32::from_be_bytes([h[off] & 0x7f, h[off + 1], h[off + 2], h[off + 3]]) % 1_000_000;
    Some(format!("{code:06}"))
}

/// Upload checksum: the POST body XOR-folded into 12 bytes.
pub fn upload_checksum(body: &[u8]) -> [u8; 12] {
    let mut c = [0u8; 12];
    for (i, b) in body.iter().enumerate() {
        c[i % 12] ^= b;
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_hash_matches_published_mock_account() {
        let pk = prepare_key(b"mock");
        assert_eq!(b64e(&stringhash("mock@test", &pk)), "jCf2Pc0pLCU");
    }

    #[test]
    fn totp_rfc6238_vector() {
        // RFC 6238 appendix B, SHA-1 secret "12345678901234567890", T = 59 -> 94287082 (8 digits).
        let secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
        assert_eq!(totp(secret, 59).unwrap(), "287082");
        assert_eq!(totp(secret, 1111111109).unwrap(), "081804");
    }

    #[test]
    fn hashcash_threshold_examples() {
        assert_eq!(hashcash_threshold(255), 127 << 24);
        assert_eq!(hashcash_threshold(0), 1 << 3);
    }

    #[test]
    fn checksum_vector() {
        let body: Vec<u8> = (0..32).collect();
        assert_eq!(b64e(&upload_checksum(&body)), "FBUWFwgJCgscHBwc");
    }
}
