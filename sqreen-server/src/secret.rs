//! Secrets: agent tokens, session ids and the admin key.
//!
//! Each is 32 bytes from the operating system's CSPRNG, written as hex with
//! a short prefix that says what it is. Only the SHA-256 of a secret is ever
//! stored, so a copy of the database does not let anyone log in.

use std::io::Write;
use std::path::Path;

use sha2::{Digest, Sha256};

/// Fewest characters of an admin key given by the operator.
pub const MIN_ADMIN_KEY_LEN: usize = 32;
/// Fewest bytes of a session secret.
pub const MIN_SECRET_LEN: usize = 32;

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

/// Why a key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// Reading or creating the file failed.
    #[error("key file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The file holds fewer than [`MIN_SECRET_LEN`] bytes.
    #[error("key file {0}: holds fewer than 32 bytes")]
    TooShort(String),
    /// Random bytes could not be drawn.
    #[error(transparent)]
    Random(#[from] RandomError),
}

/// The secret in the key file at `path`, created (mode 0600, 64 random hex
/// digits) when missing. The file's trimmed content is the secret; it must
/// hold at least [`MIN_SECRET_LEN`] bytes. A file that others may read is
/// used, with a warning.
///
/// # Errors
/// The file cannot be read or created, or is too short.
pub fn load_or_create_key_file(path: &Path) -> Result<Vec<u8>, KeyFileError> {
    let io = |source| KeyFileError::Io {
        path: path.display().to_string(),
        source,
    };
    match std::fs::read(path) {
        Ok(bytes) => {
            warn_if_readable_by_others(path);
            let text = bytes.trim_ascii();
            if text.len() < MIN_SECRET_LEN {
                return Err(KeyFileError::TooShort(path.display().to_string()));
            }
            Ok(text.to_vec())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut bytes = [0u8; 32];
            getrandom::fill(&mut bytes).map_err(|e| RandomError(e.to_string()))?;
            let secret = hex(&bytes);
            // Written whole under a private name, then linked into place:
            // a process starting beside this one reads either no file or
            // a complete one, and the first link wins.
            let mut tmp = path.as_os_str().to_owned();
            tmp.push(format!(".{}.tmp", std::process::id()));
            let tmp = std::path::PathBuf::from(tmp);
            let _ = std::fs::remove_file(&tmp);
            let written = private_file(&tmp, true).and_then(|mut file| {
                file.write_all(format!("{secret}\n").as_bytes())?;
                file.sync_all()
            });
            let linked = written.and_then(|()| std::fs::hard_link(&tmp, path));
            let _ = std::fs::remove_file(&tmp);
            match linked {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    // Another server process created it first: use its secret.
                    return load_or_create_key_file(path);
                }
                Err(e) => return Err(io(e)),
            }
            tracing::info!(event = "secret.key_file_created", path = %path.display(),
                "created a key file (mode 0600): every server process sharing this database must use it");
            Ok(secret.into_bytes())
        }
        Err(e) => Err(io(e)),
    }
}

/// Opens `path` for writing, creating it readable by its owner only (0600
/// on Unix). With `create_new`, an existing file is an error.
///
/// # Errors
/// I/O errors.
pub fn private_file(path: &Path, create_new: bool) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if create_new {
        options.create_new(true);
    } else {
        options.create(true);
    }
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

/// Logs a warning when the file at `path` may be read by its group or others.
pub fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(event = "secret.file_mode", path = %path.display(),
                mode = format!("{:o}", meta.permissions().mode() & 0o777),
                "this file may be read by other users: chmod 600 it");
        }
    }
    #[cfg(not(unix))]
    let _ = path;
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
