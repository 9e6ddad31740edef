//! Secrets: device tokens and the API token. Only SHA-256 hashes of tokens are stored.

use std::io::Write;
use std::path::Path;

use rand::RngCore;
use sha2::{Digest, Sha256};

/// A fresh random token: 32 bytes as 64 hex characters.
pub fn generate() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

pub fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Compares a presented token with a stored hash, in time independent of where they differ.
pub fn matches(presented: &str, stored_hash: &str) -> bool {
    hash_eq(&hash(presented), stored_hash)
}

/// Compares two hashes in time independent of where they differ.
pub fn hash_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Name of the API token file inside the data directory.
pub const API_TOKEN_FILE: &str = "api-token";

/// Reads the API token from `dir`, creating it (mode 0600) if it does not exist.
pub fn load_or_create_api_token(dir: &Path) -> std::io::Result<String> {
    let path = dir.join(API_TOKEN_FILE);
    match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => return Ok(s.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::create_dir_all(dir)?;
    let token = generate();
    write_private(&path, format!("{token}\n").as_bytes())?;
    Ok(token)
}

/// Writes a file only its owner may read (mode 0600 on Unix), replacing what was there.
pub fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)?.write_all(contents)
}

/// Reads an existing API token from `dir`.
pub fn read_api_token(dir: &Path) -> std::io::Result<String> {
    Ok(std::fs::read_to_string(dir.join(API_TOKEN_FILE))?
        .trim()
        .to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_only_their_hash() {
        let t = generate();
        assert_eq!(t.len(), 64);
        assert!(matches(&t, &hash(&t)));
        assert!(!matches(&generate(), &hash(&t)));
        assert!(!matches(&t, "short"));
    }

    #[test]
    fn api_token_file_is_created_once_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create_api_token(dir.path()).unwrap();
        let b = load_or_create_api_token(dir.path()).unwrap();
        assert_eq!(a, b);
        assert_eq!(read_api_token(dir.path()).unwrap(), a);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(API_TOKEN_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
