//! Envelope encryption of individual values (E2). A value is sealed with AES-256-GCM under one
//! version of an environment's data key, and bound to its place (environment, table, column,
//! row) as associated data: a ciphertext copied to another row, column or tenant, or altered by
//! one bit, fails to open with an error instead of yielding wrong data.
//!
//! Format, version 1 (all integers big-endian):
//!
//! ```text
//! byte 0        format version (0x01)
//! bytes 1..17   key id (UUID of the environment's keyring)
//! bytes 17..21  key version (u32)
//! bytes 21..33  nonce (96 bits, random per value)
//! bytes 33..    AES-256-GCM ciphertext followed by its 16-byte tag
//! ```
//!
//! The associated data is `"portcullis/v1" || len-prefixed(key id, key version, environment,
//! table, column, row)`: the header is authenticated too, so a value cannot be relabelled with
//! another key version.

use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand::rngs::OsRng;
use rand::RngCore;
use uuid::Uuid;
use zeroize::{Zeroize, Zeroizing};

pub const FORMAT_V1: u8 = 1;
const HEADER_LEN: usize = 1 + 16 + 4 + 12;
const TAG_LEN: usize = 16;

/// A 256-bit data key. Never printable; zeroed on drop.
#[derive(Clone)]
pub struct DataKey(Zeroizing<[u8; 32]>);

impl DataKey {
    pub fn generate() -> DataKey {
        let mut k = Zeroizing::new([0u8; 32]);
        OsRng.fill_bytes(k.as_mut());
        DataKey(k)
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<DataKey> {
        let mut k = Zeroizing::new([0u8; 32]);
        if bytes.len() != 32 {
            return None;
        }
        k.copy_from_slice(bytes);
        Some(DataKey(k))
    }

    /// The key material, for wrapping by a key provider.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey([redacted])")
    }
}

/// Where a value lives. Every part is authenticated.
#[derive(Clone, Copy, Debug)]
pub struct Place<'a> {
    pub environment: Uuid,
    pub table: &'a str,
    pub column: &'a str,
    pub row: &'a str,
}

/// Which key sealed a value, read from its header without decrypting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyLabel {
    pub key_id: Uuid,
    pub version: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("not a Portcullis ciphertext (bad length or format version)")]
    Malformed,
    #[error("the ciphertext does not belong here or was altered (authentication failed)")]
    Tampered,
}

fn aad(label: KeyLabel, place: &Place<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + place.table.len() + place.column.len() + place.row.len());
    out.extend_from_slice(b"portcullis/v1");
    let mut field = |bytes: &[u8]| {
        out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        out.extend_from_slice(bytes);
    };
    field(label.key_id.as_bytes());
    field(&label.version.to_be_bytes());
    field(place.environment.as_bytes());
    field(place.table.as_bytes());
    field(place.column.as_bytes());
    field(place.row.as_bytes());
    out
}

/// Seals `plaintext` for `place` under `key` (`label` names it).
pub fn seal(key: &DataKey, label: KeyLabel, place: &Place<'_>, plaintext: &[u8]) -> Vec<u8> {
    let mut nonce = [0u8; 12];
    OsRng.fill_bytes(&mut nonce);
    let cipher = Aes256Gcm::new(key.0.as_ref().into());
    let aad = aad(label, place);
    let mut out = Vec::with_capacity(HEADER_LEN + plaintext.len() + TAG_LEN);
    out.push(FORMAT_V1);
    out.extend_from_slice(label.key_id.as_bytes());
    out.extend_from_slice(&label.version.to_be_bytes());
    out.extend_from_slice(&nonce);
    // Encrypting into a fresh buffer cannot fail for inputs below GCM's 64 GiB limit, which
    // the callers' column limits keep far away; an error would still surface as an empty seal
    // that fails to open rather than a panic.
    match cipher.encrypt(
        Nonce::from_slice(&nonce),
        Payload {
            msg: plaintext,
            aad: &aad,
        },
    ) {
        Ok(ct) => out.extend_from_slice(&ct),
        Err(_) => out.truncate(0),
    }
    out
}

/// The key that sealed `ciphertext`.
pub fn label(ciphertext: &[u8]) -> Result<KeyLabel, EnvelopeError> {
    if ciphertext.len() < HEADER_LEN + TAG_LEN || ciphertext[0] != FORMAT_V1 {
        return Err(EnvelopeError::Malformed);
    }
    let key_id = Uuid::from_slice(&ciphertext[1..17]).map_err(|_| EnvelopeError::Malformed)?;
    let version = u32::from_be_bytes([
        ciphertext[17],
        ciphertext[18],
        ciphertext[19],
        ciphertext[20],
    ]);
    Ok(KeyLabel { key_id, version })
}

/// An opened value. Derefs to its bytes; wiped on drop like `Zeroizing`, but eight bytes at a
/// time: `zeroize`'s byte-by-byte volatile wipe costs about 18 µs per 64 KiB on this class of
/// machine, most of what the envelope adds to a large value.
pub struct Plaintext(Vec<u8>);

impl Plaintext {
    /// Takes ownership of bytes that must be wiped when dropped.
    pub fn new(bytes: Vec<u8>) -> Plaintext {
        Plaintext(bytes)
    }

    /// The value as UTF-8 text (still wiped on drop), or `Malformed` if it is not.
    pub fn into_text(mut self) -> Result<Zeroizing<String>, EnvelopeError> {
        match String::from_utf8(std::mem::take(&mut self.0)) {
            Ok(s) => Ok(Zeroizing::new(s)),
            Err(e) => {
                self.0 = e.into_bytes();
                Err(EnvelopeError::Malformed)
            }
        }
    }
}

impl std::ops::Deref for Plaintext {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Plaintext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Plaintext([redacted; {} bytes])", self.0.len())
    }
}

impl Drop for Plaintext {
    fn drop(&mut self) {
        wipe(&mut self.0);
    }
}

/// Overwrites the whole allocation of `buf` (spare capacity included) with zeros using
/// volatile writes, which the compiler may not elide, eight bytes at a time.
pub fn wipe(buf: &mut Vec<u8>) {
    // Within capacity: no reallocation, so the bytes wiped are the bytes that held the value.
    buf.resize(buf.capacity(), 0);
    wipe_bytes(buf.as_mut_slice());
    buf.clear();
}

/// Overwrites `bytes` with zeros using volatile writes, eight bytes at a time where aligned.
pub fn wipe_bytes(bytes: &mut [u8]) {
    #[allow(unsafe_code)]
    // SAFETY: every bit pattern is a valid u64 and a valid u8, so viewing the aligned middle of
    // an initialised byte slice as u64s is sound; `align_to_mut` handles the alignment.
    let (head, words, tail) = unsafe { bytes.align_to_mut::<u64>() };
    head.zeroize();
    words.zeroize();
    tail.zeroize();
}

/// Opens `ciphertext` sealed for `place` with `key` (the key named by [`label`]).
pub fn open(
    key: &DataKey,
    place: &Place<'_>,
    ciphertext: &[u8],
) -> Result<Plaintext, EnvelopeError> {
    let label = label(ciphertext)?;
    let cipher = Aes256Gcm::new(key.0.as_ref().into());
    let nonce = Nonce::from_slice(&ciphertext[21..33]);
    let aad = aad(label, place);
    cipher
        .decrypt(
            nonce,
            Payload {
                msg: &ciphertext[HEADER_LEN..],
                aad: &aad,
            },
        )
        .map(Plaintext)
        .map_err(|_| EnvelopeError::Tampered)
}

/// Opens and returns UTF-8 text, wiping the bytes if they are not valid UTF-8.
pub fn open_text(
    key: &DataKey,
    place: &Place<'_>,
    ciphertext: &[u8],
) -> Result<Zeroizing<String>, EnvelopeError> {
    open(key, place, ciphertext)?.into_text()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place(row: &str) -> Place<'_> {
        Place {
            environment: Uuid::from_u128(1),
            table: "documents",
            column: "body",
            row,
        }
    }

    const LABEL: KeyLabel = KeyLabel {
        key_id: Uuid::from_u128(9),
        version: 3,
    };

    /// Control E2: a value opens only in its own place, under its own key, unaltered.
    #[test]
    fn e2_ciphertext_is_bound_to_its_place() {
        let key = DataKey::generate();
        let ct = seal(&key, LABEL, &place("r1"), b"secret plan");
        assert_eq!(label(&ct), Ok(LABEL));
        assert_eq!(&*open(&key, &place("r1"), &ct).unwrap(), b"secret plan");
        // Another row, column, table, tenant: refused.
        assert_eq!(
            open(&key, &place("r2"), &ct).unwrap_err(),
            EnvelopeError::Tampered
        );
        assert_eq!(
            open(
                &key,
                &Place {
                    column: "title",
                    ..place("r1")
                },
                &ct
            )
            .unwrap_err(),
            EnvelopeError::Tampered
        );
        assert_eq!(
            open(
                &key,
                &Place {
                    table: "integrations",
                    ..place("r1")
                },
                &ct
            )
            .unwrap_err(),
            EnvelopeError::Tampered
        );
        assert_eq!(
            open(
                &key,
                &Place {
                    environment: Uuid::from_u128(2),
                    ..place("r1")
                },
                &ct
            )
            .unwrap_err(),
            EnvelopeError::Tampered
        );
        // Another key: refused.
        assert_eq!(
            open(&DataKey::generate(), &place("r1"), &ct).unwrap_err(),
            EnvelopeError::Tampered
        );
        // Every single flipped bit, header included: refused.
        for i in 0..ct.len() * 8 {
            let mut bad = ct.clone();
            bad[i / 8] ^= 1 << (i % 8);
            assert!(
                open(&key, &place("r1"), &bad).is_err(),
                "bit {i} flip accepted"
            );
        }
        // Relabelled to another key version: refused (the header is authenticated).
        let mut relabelled = ct.clone();
        relabelled[20] ^= 1;
        assert_eq!(label(&relabelled).unwrap().version, 2);
        assert!(open(&key, &place("r1"), &relabelled).is_err());
        // Truncated or foreign input: malformed.
        assert_eq!(
            open(&key, &place("r1"), &ct[..20]).unwrap_err(),
            EnvelopeError::Malformed
        );
        assert_eq!(
            label(b"plain text that is long enough to pass the length check"),
            Err(EnvelopeError::Malformed)
        );
    }

    #[test]
    fn nonces_differ_and_empty_values_work() {
        let key = DataKey::generate();
        let a = seal(&key, LABEL, &place("r"), b"");
        let b = seal(&key, LABEL, &place("r"), b"");
        assert_ne!(a, b);
        assert_eq!(open(&key, &place("r"), &a).unwrap().len(), 0);
        assert_eq!(format!("{key:?}"), "DataKey([redacted])");
    }

    /// NIST SP 800-38D test case 16 (AES-256, 96-bit IV, with AAD): our use of the primitive is
    /// the standard one.
    #[test]
    fn aes_256_gcm_known_answer() {
        let hex = |s: &str| {
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
                .collect::<Vec<u8>>()
        };
        let key = hex("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308");
        let iv = hex("cafebabefacedbaddecaf888");
        let pt = hex("d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39");
        let aad = hex("feedfacedeadbeeffeedfacedeadbeefabaddad2");
        let cipher = Aes256Gcm::new(key.as_slice().into());
        let ct = cipher
            .encrypt(
                Nonce::from_slice(&iv),
                Payload {
                    msg: &pt,
                    aad: &aad,
                },
            )
            .unwrap();
        assert_eq!(
            ct,
            hex("522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662\
                 76fc6ece0f4e1768cddf8853bb2d551b")
        );
    }
}

#[cfg(test)]
mod wipe_tests {
    use super::*;

    /// Control E6: the word-wise wipe clears every byte, whatever the length and alignment.
    #[test]
    fn e6_wipe_clears_every_byte() {
        let mut backing = vec![0u8; 65_536 + 64];
        for offset in 0..9 {
            for len in [0usize, 1, 7, 8, 9, 31, 256, 65_536 + 3] {
                let slice = &mut backing[offset..offset + len];
                slice.fill(0xa5);
                wipe_bytes(slice);
                assert!(slice.iter().all(|&b| b == 0), "offset {offset} len {len}");
            }
        }
    }

    /// The wipe covers the whole allocation (spare capacity included) without reallocating.
    #[test]
    fn e6_wipe_covers_spare_capacity_in_place() {
        let mut v = vec![0xa5u8; 1000];
        let (ptr, cap) = (v.as_ptr(), v.capacity());
        v.truncate(3);
        wipe(&mut v);
        assert!(v.is_empty());
        assert_eq!((v.as_ptr(), v.capacity()), (ptr, cap));
        let p = Plaintext::new(b"secret".to_vec());
        assert_eq!(&*p, b"secret");
        assert_eq!(format!("{p:?}"), "Plaintext([redacted; 6 bytes])");
        assert!(Plaintext::new(vec![0xff, 0xfe]).into_text().is_err());
    }
}
