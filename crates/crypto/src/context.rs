//! The key that signs the database context (controls T2, R8). The application signs one
//! context value per transaction with it; the database checks the signature with SQL's
//! `sha256()` and the two HMAC pads, which is why this module hands them out too.

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use rand::rngs::OsRng;
use rand::RngCore;
use sha2::Sha256;
use zeroize::Zeroizing;

/// A 256-bit HMAC-SHA-256 key. Never printable; zeroed on drop.
#[derive(Clone)]
pub struct ContextKey(Zeroizing<[u8; 32]>);

impl ContextKey {
    pub fn generate() -> ContextKey {
        let mut k = Zeroizing::new([0u8; 32]);
        OsRng.fill_bytes(k.as_mut());
        ContextKey(k)
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<ContextKey> {
        let k: [u8; 32] = bytes.try_into().ok()?;
        Some(ContextKey(Zeroizing::new(k)))
    }

    /// The key itself, for storing it where only the owner role reads it.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }

    /// `(key XOR ipad, key XOR opad)`, each one 64-byte block (RFC 2104): HMAC(m) is
    /// `SHA-256(outer || SHA-256(inner || m))`.
    pub fn pads(&self) -> (Zeroizing<[u8; 64]>, Zeroizing<[u8; 64]>) {
        let mut inner = Zeroizing::new([0x36u8; 64]);
        let mut outer = Zeroizing::new([0x5cu8; 64]);
        for (i, b) in self.0.iter().enumerate() {
            inner[i] ^= b;
            outer[i] ^= b;
        }
        (inner, outer)
    }

    /// HMAC-SHA-256 of `message`.
    pub fn mac(&self, message: &[u8]) -> [u8; 32] {
        let mut block = Zeroizing::new([0u8; 64]);
        block[..32].copy_from_slice(self.0.as_ref());
        let mut mac = <Hmac<Sha256> as KeyInit>::new((&*block).into());
        mac.update(message);
        mac.finalize().into_bytes().into()
    }
}

impl std::fmt::Debug for ContextKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ContextKey(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest;

    /// T2: the pads the database computes with reproduce the HMAC the application signs with.
    #[test]
    fn t2_pads_reproduce_the_hmac() {
        let key = ContextKey::generate();
        let (inner, outer) = key.pads();
        let message = b"ctx|v1|request|...";
        let mut h = Sha256::new();
        h.update(inner.as_ref());
        h.update(message);
        let inner_hash = h.finalize();
        let mut h = Sha256::new();
        h.update(outer.as_ref());
        h.update(inner_hash);
        let by_pads: [u8; 32] = h.finalize().into();
        assert_eq!(by_pads, key.mac(message));
    }

    #[test]
    fn only_32_byte_keys_load() {
        assert!(ContextKey::from_bytes(&[1; 31]).is_none());
        assert!(ContextKey::from_bytes(&[1; 32]).is_some());
        assert_eq!(format!("{:?}", ContextKey::generate()), "ContextKey(..)");
    }
}
