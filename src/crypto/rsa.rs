//! MEGA's RSA: MPI encoding, the AES-wrapped private key blob (`p ‖ q ‖ d ‖ u`), and CRT
//! decryption of the session challenge `csid` (`MEGA-PROTOCOL.md` §2.3, §4.3, §4.5).

use num_bigint::BigUint;
use num_traits::Zero;
use zeroize::Zeroize;

use super::CryptoError;

/// Reads one MPI (2-byte big-endian bit count, then the magnitude) from the front of `data`;
/// returns the number and the rest.
pub fn read_mpi(data: &[u8]) -> Result<(BigUint, &[u8]), CryptoError> {
    if data.len() < 2 {
        return Err(CryptoError::Rsa("truncated MPI header"));
    }
    let bits = u16::from_be_bytes([data[0], data[1]]) as usize;
    let len = bits.div_ceil(8);
    let rest = &data[2..];
    if rest.len() < len {
        return Err(CryptoError::Rsa("truncated MPI"));
    }
    Ok((BigUint::from_bytes_be(&rest[..len]), &rest[len..]))
}

/// Encodes a number as an MPI.
pub fn write_mpi(n: &BigUint) -> Vec<u8> {
    let bits = n.bits() as u16;
    let mut out = bits.to_be_bytes().to_vec();
    if !n.is_zero() {
        out.extend(n.to_bytes_be());
    }
    out
}

/// An RSA private key as MEGA stores it. `Debug` is redacted.
pub struct RsaPrivateKey {
    p: BigUint,
    q: BigUint,
    d: BigUint,
    u: BigUint,
}

impl std::fmt::Debug for RsaPrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RsaPrivateKey(<redacted>)")
    }
}

impl Drop for RsaPrivateKey {
    fn drop(&mut self) {
        // BigUint has no zeroize support; overwrite what we can reach.
        for n in [&mut self.p, &mut self.q, &mut self.d, &mut self.u] {
            let mut digits = n.to_u64_digits();
            digits.zeroize();
            *n = BigUint::zero();
        }
    }
}

impl RsaPrivateKey {
    /// Parses the decrypted `privk` blob: MPIs p, q, d, u, then padding.
    pub fn from_blob(blob: &[u8]) -> Result<Self, CryptoError> {
        let (p, rest) = read_mpi(blob)?;
        let (q, rest) = read_mpi(rest)?;
        let (d, rest) = read_mpi(rest)?;
        let (u, _) = read_mpi(rest)?;
        if p.is_zero() || q.is_zero() || d.is_zero() {
            return Err(CryptoError::Rsa("zero component in private key"));
        }
        Ok(RsaPrivateKey { p, q, d, u })
    }

    /// The modulus `n = p·q`.
    pub fn modulus(&self) -> BigUint {
        &self.p * &self.q
    }

    /// Raw RSA decryption with the CRT (`u = p⁻¹ mod q`).
    pub fn decrypt(&self, c: &BigUint) -> BigUint {
        let one = BigUint::from(1u8);
        let dp = &self.d % (&self.p - &one);
        let dq = &self.d % (&self.q - &one);
        let xp = c.modpow(&dp, &self.p);
        let xq = c.modpow(&dq, &self.q);
        // t = (xq - xp) · u mod q, kept non-negative.
        let xp_mod_q = &xp % &self.q;
        let diff = if xq >= xp_mod_q {
            xq - xp_mod_q
        } else {
            &self.q - (xp_mod_q - xq)
        };
        let t = (diff * &self.u) % &self.q;
        t * &self.p + xp
    }

    /// Decrypts the `csid` login challenge (an MPI) to the 43-byte session id: the most
    /// significant 43 bytes of the minimal big-endian plaintext.
    pub fn decrypt_sid(&self, csid: &[u8]) -> Result<[u8; 43], CryptoError> {
        let (c, _) = read_mpi(csid)?;
        let m = self.decrypt(&c).to_bytes_be();
        if m.len() < 43 {
            return Err(CryptoError::Rsa("session id plaintext too short"));
        }
        let mut sid = [0u8; 43];
        sid.copy_from_slice(&m[..43]);
        Ok(sid)
    }

    /// Decrypts an RSA-wrapped node or share key and keeps its first `len` bytes.
    pub fn decrypt_key(&self, data: &[u8], len: usize) -> Result<Vec<u8>, CryptoError> {
        let (c, _) = read_mpi(data)?;
        let m = self.decrypt(&c).to_bytes_be();
        if m.len() < len {
            return Err(CryptoError::Rsa("wrapped key plaintext too short"));
        }
        Ok(m[..len].to_vec())
    }
}

/// Encrypts a key to a user's RSA public key (`pubk` = `MPI(n) ‖ MPI(e)`), as legacy sharing
/// sends it: `key ‖ random padding` to the modulus length less two bytes, raised to `e`, as an
/// MPI. The key must not start with a zero byte (the receiver takes the leading bytes of the
/// minimal plaintext).
pub fn encrypt_key(pubk: &[u8], key: &[u8]) -> Result<Vec<u8>, CryptoError> {
    use rand::RngCore;
    let (n, rest) = read_mpi(pubk)?;
    let (e, _) = read_mpi(rest)?;
    let len = (n.bits() as usize).div_ceil(8);
    if key.first().is_none_or(|b| *b == 0) || len < key.len() + 8 {
        return Err(CryptoError::Rsa(
            "key cannot be encrypted to this public key",
        ));
    }
    let mut m = key.to_vec();
    let mut pad = vec![0u8; len - 2 - key.len()];
    rand::thread_rng().fill_bytes(&mut pad);
    m.extend(pad);
    Ok(write_mpi(&BigUint::from_bytes_be(&m).modpow(&e, &n)))
}
