//! Password hashes: argon2id with the argon2 crate's defaults (19 MiB, 2 passes, 1 lane; the
//! OWASP minimum), stored as PHC strings, so parameters can be raised later without
//! invalidating stored hashes. Hashing takes tens of milliseconds by design: callers run it on
//! a blocking thread, and the servers cache verified credentials.

use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

use crate::error::Invalid;
use crate::StoreError;

/// The PHC string of `password` under a fresh random salt.
pub fn hash(password: &str) -> Result<String, StoreError> {
    let got = password.chars().count();
    if got < super::MIN_PASSWORD_CHARS {
        return Err(Invalid::Password { got }.into());
    }
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        // Only an output or salt length outside argon2's bounds fails, and ours are fixed.
        .map_err(|_| Invalid::Password { got }.into())
}

/// Whether `password` matches the stored PHC string (argon2 compares in constant time). A
/// stored string that does not parse matches nothing.
pub fn verify(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// `n` bytes from the operating system's generator.
pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    OsRng.fill_bytes(&mut bytes);
    bytes
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_hash_verifies_its_password_only() {
        let stored = super::hash("correct horse battery").unwrap();
        assert!(stored.starts_with("$argon2id$"));
        assert!(super::verify("correct horse battery", &stored));
        assert!(!super::verify("correct horse batter", &stored));
        assert!(!super::verify("correct horse battery", "not a phc string"));
        // Salted: the same password hashes differently.
        assert_ne!(stored, super::hash("correct horse battery").unwrap());
        assert!(super::hash("short").is_err());
    }
}
