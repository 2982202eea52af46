//! Secrets (passwords, passphrases, private keys) that cannot be printed
//! by accident.

use std::fmt;
use std::sync::Arc;

/// A secret value. `Debug` and `Display` print `***`; only [`Secret::expose`]
/// gives the value, so every use is visible in review.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Self(value)
    }

    /// The secret itself: hand it to the protocol, never to a log.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// An SSH private key, decoded (and decrypted) once at load. `Debug` prints
/// `***`; [`SecretKey::key`] hands it to the SSH client.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey(Arc<russh::keys::PrivateKey>);

impl SecretKey {
    pub fn new(key: russh::keys::PrivateKey) -> Self {
        Self(Arc::new(key))
    }

    pub fn key(&self) -> Arc<russh::keys::PrivateKey> {
        self.0.clone()
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_its_value() {
        let s = Secret::new("hunter2".into());
        assert_eq!(format!("{s} {s:?}"), "*** ***");
        assert_eq!(s.expose(), "hunter2");
    }
}
