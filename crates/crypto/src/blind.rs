//! Blind indexes: a keyed hash of a value that is stored encrypted, so that the value can be
//! looked up by equality (an account by email at login) without the database holding the
//! value or an unkeyed hash of it. HMAC-SHA-256 under a platform key that lives only wrapped in
//! the database; without that key the index reveals nothing beyond equality of values, and an
//! offline dictionary attack on it needs the key.

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::envelope::DataKey;

/// The blind index of `value` in `domain` (e.g. `"email"`). Domains keep indexes of different
/// kinds of values apart even under one key.
pub fn index(key: &DataKey, domain: &str, value: &str) -> [u8; 32] {
    // HMAC pads a key shorter than the hash block with zeros, so this is HMAC under `key`.
    let mut block = zeroize::Zeroizing::new([0u8; 64]);
    block[..32].copy_from_slice(key.expose());
    let mut mac = <Hmac<Sha256> as KeyInit>::new((&*block).into());
    mac.update(b"portcullis/blind-index/v1");
    mac.update(&(domain.len() as u32).to_be_bytes());
    mac.update(domain.as_bytes());
    mac.update(&(value.len() as u32).to_be_bytes());
    mac.update(value.as_bytes());
    mac.finalize().into_bytes().into()
}

/// The canonical form of an email address for indexing: trimmed and lower-cased, which is
/// how accounts are stored and compared.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Control E2: the index is deterministic under one key, differs across keys and domains,
    /// and is the HMAC it claims to be.
    #[test]
    fn e2_blind_index_is_keyed_and_domain_separated() {
        let k1 = DataKey::from_bytes(&[7u8; 32]).unwrap();
        let k2 = DataKey::from_bytes(&[8u8; 32]).unwrap();
        let a = index(&k1, "email", "ada@example.com");
        assert_eq!(a, index(&k1, "email", "ada@example.com"));
        assert_ne!(a, index(&k2, "email", "ada@example.com"));
        assert_ne!(a, index(&k1, "name", "ada@example.com"));
        assert_ne!(a, index(&k1, "email", "bob@example.com"));
        // Length prefixes: moving bytes between domain and value changes the index.
        assert_ne!(index(&k1, "ab", "c"), index(&k1, "a", "bc"));

        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&[7u8; 32]).unwrap();
        mac.update(
            b"portcullis/blind-index/v1\x00\x00\x00\x05email\x00\x00\x00\x0fada@example.com",
        );
        let expected: [u8; 32] = mac.finalize().into_bytes().into();
        assert_eq!(a, expected);
    }

    #[test]
    fn e2_emails_normalise_before_indexing() {
        assert_eq!(normalize_email("  Ada@Example.COM "), "ada@example.com");
    }
}
