//! Solving MEGA's hashcash proof-of-work challenge (`X-Hashcash`, `MEGA-PROTOCOL.md` §1.7).

use sha2::{Digest, Sha256};

use super::ApiError;
use crate::crypto::b64;

/// The token is repeated this many times after the 4-byte prefix.
const REPEAT: usize = 262_144;

/// A parsed challenge header `1:<easiness>:<timestamp>:<token>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub easiness: u8,
    pub token: String,
}

impl Challenge {
    pub fn parse(header: &str) -> Result<Self, ApiError> {
        let bad = || ApiError::BadResponse("malformed X-Hashcash challenge".into());
        let parts: Vec<&str> = header.trim().split(':').collect();
        if parts.len() != 4 || parts[0] != "1" {
            return Err(bad());
        }
        let easiness = parts[1].parse::<u8>().map_err(|_| bad())?;
        let token = b64::decode(parts[3], "hashcash token").map_err(|_| bad())?;
        if token.len() != 48 {
            return Err(bad());
        }
        Ok(Challenge {
            easiness,
            token: parts[3].to_string(),
        })
    }

    /// The largest acceptable hash prefix for this easiness.
    pub fn threshold(&self) -> u32 {
        let e = self.easiness as u32;
        (((e & 63) << 1) + 1) << ((e >> 6) * 7 + 3)
    }

    /// Finds a 4-byte prefix (little-endian counter from 0) and returns the answer header
    /// `1:<token>:<prefix>`. CPU-bound: call it from a blocking thread.
    pub fn solve(&self) -> Result<String, ApiError> {
        let token = b64::decode(&self.token, "hashcash token")?;
        let threshold = self.threshold();
        for n in 0u32..=u32::MAX {
            let prefix = n.to_le_bytes();
            let mut h = Sha256::new();
            h.update(prefix);
            for _ in 0..REPEAT {
                h.update(&token);
            }
            let d = h.finalize();
            if u32::from_be_bytes([d[0], d[1], d[2], d[3]]) <= threshold {
                return Ok(format!("1:{}:{}", self.token, b64::encode(&prefix)));
            }
        }
        Err(ApiError::BadResponse(
            "hashcash challenge has no solution".into(),
        ))
    }
}
