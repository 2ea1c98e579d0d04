//! Secrets: agent tokens, session ids and the admin key.
//!
//! Each is 32 bytes from the operating system's CSPRNG, written as hex with
//! a short prefix that says what it is. Only the SHA-256 of a secret is ever
//! stored, so a copy of the database does not let anyone log in.

use sha2::{Digest, Sha256};

/// Prefix of agent tokens (`X-Api-Key`).
pub const TOKEN_PREFIX: &str = "sqa_";
/// Prefix of admin keys (`Authorization: Bearer`).
pub const ADMIN_KEY_PREFIX: &str = "sqk_";
/// Prefix of session ids (`X-Session-Key`).
pub const SESSION_PREFIX: &str = "sqs_";

/// Errors drawing random bytes.
#[derive(Debug, thiserror::Error)]
#[error("the operating system's random generator failed: {0}")]
pub struct RandomError(String);

/// A new secret: `prefix` then 64 hex digits of CSPRNG output.
///
/// # Errors
/// When the operating system cannot provide random bytes.
pub fn generate(prefix: &str) -> Result<String, RandomError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| RandomError(e.to_string()))?;
    Ok(format!("{prefix}{}", hex(&bytes)))
}

/// A random 128-bit id in hex, for action ids.
///
/// # Errors
/// When the operating system cannot provide random bytes.
pub fn random_id() -> Result<String, RandomError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| RandomError(e.to_string()))?;
    Ok(hex(&bytes))
}

/// The SHA-256 of `secret`, in hex: what the database stores.
pub fn hash(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

/// Compares two hashes without an early exit on the first difference.
pub fn same_hash(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The first 7 characters of a secret, the most a log line may show.
pub fn redacted(secret: &str) -> &str {
    secret.get(..7).unwrap_or(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Secrets are prefixed, long, and different every time.
    #[test]
    fn secrets_are_random() {
        let a = generate(TOKEN_PREFIX).expect("random");
        let b = generate(TOKEN_PREFIX).expect("random");
        assert!(a.starts_with(TOKEN_PREFIX));
        assert_eq!(a.len(), TOKEN_PREFIX.len() + 64);
        assert_ne!(a, b);
    }

    /// The hash is the standard SHA-256 in hex.
    #[test]
    fn hash_is_sha256_hex() {
        assert_eq!(
            hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(same_hash(&hash("x"), &hash("x")));
        assert!(!same_hash(&hash("x"), &hash("y")));
    }
}
