//! Password hashing with argon2id. Parameters follow OWASP's recommendation (19 MiB, t=2, p=1)
//! unless configured otherwise; the PHC string records them, so hashes made under older
//! parameters keep verifying.

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::rngs::OsRng;

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("invalid argon2 parameters: {0}")]
    Params(String),
    #[error("password hashing failed: {0}")]
    Hash(String),
}

#[derive(Clone)]
pub struct PasswordHasher {
    argon: Argon2<'static>,
    /// A hash of a random password, verified against when an account does not exist, so a
    /// login for an unknown email costs the same time as one for a known email.
    dummy: String,
}

impl std::fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordHasher")
            .field("params", self.argon.params())
            .finish()
    }
}

impl PasswordHasher {
    pub const DEFAULT_MEMORY_KIB: u32 = 19 * 1024;
    pub const DEFAULT_ITERATIONS: u32 = 2;

    pub fn new(memory_kib: u32, iterations: u32) -> Result<Self, PasswordError> {
        let params = Params::new(memory_kib, iterations, 1, None)
            .map_err(|e| PasswordError::Params(e.to_string()))?;
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let mut hasher = PasswordHasher {
            argon,
            dummy: String::new(),
        };
        let (random, _) = crate::token::generate(crate::token::TokenKind::Setup);
        hasher.dummy = hasher.hash(random.expose())?;
        Ok(hasher)
    }

    pub fn hash(&self, password: &str) -> Result<String, PasswordError> {
        let salt = SaltString::generate(&mut OsRng);
        self.argon
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| PasswordError::Hash(e.to_string()))
    }

    /// True only for the right password. A malformed stored hash verifies as false.
    pub fn verify(&self, password: &str, stored: &str) -> bool {
        match PasswordHash::new(stored) {
            Ok(parsed) => self
                .argon
                .verify_password(password.as_bytes(), &parsed)
                .is_ok(),
            Err(_) => false,
        }
    }

    /// Burns the same work as a real verification; always false.
    pub fn verify_dummy(&self, password: &str) -> bool {
        let _ = self.verify(password, &self.dummy);
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_and_verify() {
        let h = PasswordHasher::new(1024, 1).unwrap();
        let stored = h.hash("correct horse battery staple").unwrap();
        assert!(stored.starts_with("$argon2id$"));
        assert!(h.verify("correct horse battery staple", &stored));
        assert!(!h.verify("correct horse battery stapl", &stored));
        assert!(!h.verify("x", "not a phc string"));
        assert!(!h.verify_dummy("anything"));
    }
}
