//! MEGA base64url: alphabet `A-Z a-z 0-9 - _`, no `=` padding. Decoding also accepts the
//! standard alphabet's `+` and `/`, trailing `=` and stray trailing bits, as every client does.

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;

use super::CryptoError;

const ENGINE: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Encodes bytes as MEGA base64url.
pub fn encode(data: &[u8]) -> String {
    ENGINE.encode(data)
}

/// Decodes MEGA base64url (or standard base64). `what` names the field for the error message.
pub fn decode(s: &str, what: &'static str) -> Result<Vec<u8>, CryptoError> {
    // The usual case, base64url without padding, is decoded as it is.
    if !s.bytes().any(|b| matches!(b, b'+' | b'/' | b'=')) {
        return ENGINE
            .decode(s.as_bytes())
            .map_err(|_| CryptoError::Base64 { what });
    }
    let normalized: String = s
        .trim_end_matches('=')
        .chars()
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            c => c,
        })
        .collect();
    ENGINE
        .decode(normalized.as_bytes())
        .map_err(|_| CryptoError::Base64 { what })
}

/// Decodes to exactly `N` bytes.
pub fn decode_array<const N: usize>(s: &str, what: &'static str) -> Result<[u8; N], CryptoError> {
    let v = decode(s, what)?;
    <[u8; N]>::try_from(v.as_slice()).map_err(|_| CryptoError::Length {
        what,
        got: v.len(),
        expected: match N {
            6 => "6",
            8 => "8",
            16 => "16",
            32 => "32",
            _ => "a fixed size",
        },
    })
}
