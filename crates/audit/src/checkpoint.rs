//! Signed checkpoints: an Ed25519 signature over (environment, tree size, Merkle root, chain
//! head, time). Once an auditor or write-once storage holds one, the operator can no longer
//! rewrite any entry below that size — not even by recomputing every hash — without the
//! rewrite showing as a root that differs from the signed one.
//!
//! The signed text form, every line ending in `\n` (U+000A):
//!
//! ```text
//! portcullis-audit-checkpoint/v1
//! environment <uuid, lowercase hyphenated>
//! size <tree size, decimal>
//! root <Merkle root, 64 lowercase hex digits>
//! head <entry hash at seq = size, 64 lowercase hex; 64 zeros when size is 0>
//! time <issued at, unix seconds, decimal, `-` only if negative>
//!
//! — <key id, 16 lowercase hex> <Ed25519 signature, 128 lowercase hex>
//! ```
//!
//! The signature is pure Ed25519 (RFC 8032) over the first six lines exactly, including
//! their newlines; the line after the blank one starts with U+2014 EM DASH and a space. A key
//! id is the first 8 bytes of SHA-256 over the 32-byte public key. Parsing is strict: one
//! spelling per value (no leading zeros or `+`, lowercase hex, canonical UUID), nothing
//! before, between or after these lines, exactly one signature.

use std::fmt;
use std::str::FromStr;

use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use sha2::{Digest, Sha256};
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::{hex, Hash};

/// First line of the signed text; names the format and its version.
pub const CHECKPOINT_HEADER: &str = "portcullis-audit-checkpoint/v1";

const SIGNATURE_PREFIX: &str = "\u{2014} ";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("malformed checkpoint: {0}")]
    Malformed(&'static str),
    #[error("checkpoint is signed by key {0}, which is not trusted")]
    UnknownKey(KeyId),
    #[error("checkpoint signature does not verify under key {0}")]
    BadSignature(KeyId),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("not a usable Ed25519 key: {0}")]
    Invalid(String),
    #[error("the system random number generator failed")]
    Randomness,
}

/// Names a public key: the first 8 bytes of SHA-256 over its 32 bytes, shown as hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId([u8; 8]);

impl KeyId {
    pub fn of(public_key: &[u8; 32]) -> Self {
        let digest = Sha256::digest(public_key);
        let mut id = [0u8; 8];
        id.copy_from_slice(&digest[..8]);
        Self(id)
    }

    pub fn as_bytes(&self) -> &[u8; 8] {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(&self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

impl FromStr for KeyId {
    type Err = CheckpointError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        hex::decode(s).map(Self).ok_or(CheckpointError::Malformed(
            "key id is not 16 lowercase hex digits",
        ))
    }
}

/// A trusted Ed25519 public key. Verifiers pin these out of band; a key that arrives with
/// the data it vouches for proves nothing.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey {
    bytes: [u8; 32],
    id: KeyId,
}

impl PublicKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self {
            bytes,
            id: KeyId::of(&bytes),
        }
    }

    /// Parses 64 lowercase hex digits.
    pub fn from_hex(text: &str) -> Option<Self> {
        hex::decode(text).map(Self::from_bytes)
    }

    pub fn to_hex(&self) -> String {
        hex::encode(&self.bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.bytes
    }

    pub fn key_id(&self) -> KeyId {
        self.id
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({} {})", self.id, self.to_hex())
    }
}

/// An Ed25519 checkpoint signing key. Its seed is wiped from memory on drop and never
/// printed.
pub struct SigningKey {
    seed: Zeroizing<[u8; 32]>,
    pair: Ed25519KeyPair,
    public: PublicKey,
}

impl SigningKey {
    pub fn generate() -> Result<Self, KeyError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        SystemRandom::new()
            .fill(seed.as_mut())
            .map_err(|_| KeyError::Randomness)?;
        Self::from_seed(&seed)
    }

    /// The key for a 32-byte RFC 8032 seed (private key).
    pub fn from_seed(seed: &[u8; 32]) -> Result<Self, KeyError> {
        let pair = Ed25519KeyPair::from_seed_unchecked(seed)
            .map_err(|e| KeyError::Invalid(e.to_string()))?;
        let mut public = [0u8; 32];
        public.copy_from_slice(pair.public_key().as_ref());
        Ok(Self {
            seed: Zeroizing::new(*seed),
            pair,
            public: PublicKey::from_bytes(public),
        })
    }

    /// The key in a PKCS#8 (RFC 8410, v1 or v2) document.
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, KeyError> {
        let parsed = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
            .map_err(|e| KeyError::Invalid(e.to_string()))?;
        // ring validated the document but does not hand the seed back, and `seed()` must
        // work for every key. In RFC 8410 the seed is the 32 bytes after the nested
        // OCTET STRING headers 04 22 04 20; deriving the public key from what we extract and
        // comparing proves we took the right bytes.
        const MARKER: [u8; 4] = [0x04, 0x22, 0x04, 0x20];
        let seed = der
            .windows(MARKER.len())
            .position(|w| w == MARKER)
            .and_then(|at| der.get(at + MARKER.len()..at + MARKER.len() + 32))
            .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
            .map(Zeroizing::new)
            .ok_or_else(|| KeyError::Invalid("no Ed25519 seed in the PKCS#8 document".into()))?;
        let key = Self::from_seed(&seed)?;
        if key.public.as_bytes().as_slice() != parsed.public_key().as_ref() {
            return Err(KeyError::Invalid(
                "PKCS#8 seed does not match its public key".into(),
            ));
        }
        Ok(key)
    }

    /// The secret seed, for sealed storage only.
    pub fn seed(&self) -> &[u8; 32] {
        &self.seed
    }

    pub fn public_key(&self) -> PublicKey {
        self.public
    }

    pub fn public_key_bytes(&self) -> [u8; 32] {
        self.public.bytes
    }

    pub fn key_id(&self) -> KeyId {
        self.public.id
    }

    /// A raw Ed25519 signature, for the other signed formats of this crate (the monthly
    /// report). Not public: callers sign only statements whose format this crate defines.
    pub(crate) fn sign_bytes(&self, message: &[u8]) -> [u8; 64] {
        let mut signature = [0u8; 64];
        signature.copy_from_slice(self.pair.sign(message).as_ref());
        signature
    }

    pub fn sign(&self, checkpoint: &Checkpoint) -> SignedCheckpoint {
        let sig = self.pair.sign(checkpoint.signed_message().as_bytes());
        let mut signature = [0u8; 64];
        signature.copy_from_slice(sig.as_ref());
        SignedCheckpoint {
            checkpoint: checkpoint.clone(),
            key_id: self.public.id,
            signature,
        }
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("key_id", &self.public.id)
            .field("seed", &"<redacted>")
            .finish()
    }
}

/// What a checkpoint asserts: the log of `environment_id` had `tree_size` entries, with this
/// Merkle root and this last entry hash, at `issued_at`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub environment_id: Uuid,
    pub tree_size: u64,
    pub root_hash: Hash,
    /// The chain head: the entry hash of entry `tree_size` (zeros for an empty log).
    pub last_entry_hash: Hash,
    /// Unix seconds.
    pub issued_at: i64,
}

impl Checkpoint {
    /// The exact bytes the signature covers.
    pub fn signed_message(&self) -> String {
        format!(
            "{CHECKPOINT_HEADER}\nenvironment {}\nsize {}\nroot {}\nhead {}\ntime {}\n",
            self.environment_id.hyphenated(),
            self.tree_size,
            hex::encode(&self.root_hash),
            hex::encode(&self.last_entry_hash),
            self.issued_at,
        )
    }
}

/// A checkpoint with one signature. Its text form ([`fmt::Display`], [`FromStr`]) is the
/// interchange format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedCheckpoint {
    pub checkpoint: Checkpoint,
    pub key_id: KeyId,
    pub signature: [u8; 64],
}

impl SignedCheckpoint {
    /// Checks the signature against the trusted keys with a matching key id. Several keys
    /// may be trusted at once, so checkpoints signed before and after a rotation both verify.
    pub fn verify(&self, trusted: &[PublicKey]) -> Result<(), CheckpointError> {
        let message = self.checkpoint.signed_message();
        let mut known = false;
        // Key ids are 64 bits: tolerate a collision by trying every key that matches.
        for key in trusted.iter().filter(|k| k.id == self.key_id) {
            known = true;
            let verifier = UnparsedPublicKey::new(&ED25519, key.bytes);
            if verifier.verify(message.as_bytes(), &self.signature).is_ok() {
                return Ok(());
            }
        }
        Err(if known {
            CheckpointError::BadSignature(self.key_id)
        } else {
            CheckpointError::UnknownKey(self.key_id)
        })
    }
}

impl fmt::Display for SignedCheckpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}\n{SIGNATURE_PREFIX}{} {}\n",
            self.checkpoint.signed_message(),
            self.key_id,
            hex::encode(&self.signature)
        )
    }
}

impl FromStr for SignedCheckpoint {
    type Err = CheckpointError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        use CheckpointError::Malformed;

        let (body, signature_line) = text
            .split_once("\n\n")
            .ok_or(Malformed("no blank line before the signature"))?;
        let mut lines = body.split('\n');
        if lines.next() != Some(CHECKPOINT_HEADER) {
            return Err(Malformed(
                "first line is not portcullis-audit-checkpoint/v1",
            ));
        }
        let mut field = |name: &'static str| {
            lines
                .next()
                .and_then(|line| line.strip_prefix(name))
                .and_then(|rest| rest.strip_prefix(' '))
                .ok_or(Malformed(
                    "lines are not environment, size, root, head, time",
                ))
        };
        let environment = field("environment")?;
        let size = field("size")?;
        let root = field("root")?;
        let head = field("head")?;
        let time = field("time")?;
        if lines.next().is_some() {
            return Err(Malformed("unexpected line before the signature"));
        }

        let environment_id = Uuid::try_parse(environment)
            .ok()
            .filter(|id| id.hyphenated().to_string() == environment)
            .ok_or(Malformed("environment is not a lowercase hyphenated UUID"))?;
        let tree_size = canonical_int::<u64>(size).ok_or(Malformed("size is not a decimal"))?;
        let root_hash = hex::decode(root).ok_or(Malformed("root is not 64 lowercase hex"))?;
        let last_entry_hash = hex::decode(head).ok_or(Malformed("head is not 64 lowercase hex"))?;
        let issued_at = canonical_int::<i64>(time).ok_or(Malformed("time is not a decimal"))?;

        let (key_id, signature) = signature_line
            .strip_suffix('\n')
            .filter(|line| !line.contains('\n'))
            .and_then(|line| line.strip_prefix(SIGNATURE_PREFIX))
            .and_then(|rest| rest.split_once(' '))
            .ok_or(Malformed(
                "expected exactly one line `— <key id> <signature>`",
            ))?;
        let signed = Self {
            checkpoint: Checkpoint {
                environment_id,
                tree_size,
                root_hash,
                last_entry_hash,
                issued_at,
            },
            key_id: key_id.parse()?,
            signature: hex::decode(signature)
                .ok_or(Malformed("signature is not 128 lowercase hex digits"))?,
        };
        // Every field above has one spelling, so this only fires if that reasoning has a gap;
        // a second spelling of a signed statement is exactly what strict parsing must refuse.
        if signed.to_string() != text {
            return Err(Malformed("not in canonical form"));
        }
        Ok(signed)
    }
}

/// Splits a file of checkpoint texts written one after the other (as a customer keeps them,
/// FORMAT.md §4) into the texts, each to be parsed strictly: a new text starts at every line
/// that is exactly the version line. Text before the first such line is returned too, so that
/// whatever a file holds besides checkpoints is reported rather than skipped.
pub fn split_checkpoints(text: &str) -> Vec<&str> {
    let start = format!("{CHECKPOINT_HEADER}\n");
    let mut cuts: Vec<usize> = text
        .match_indices(&start)
        .map(|(at, _)| at)
        .filter(|&at| at == 0 || text.as_bytes()[at - 1] == b'\n')
        .collect();
    if cuts.first() != Some(&0) {
        cuts.insert(0, 0);
    }
    cuts.push(text.len());
    cuts.windows(2)
        .map(|w| &text[w[0]..w[1]])
        .filter(|t| !t.is_empty())
        .collect()
}

/// Parses an integer written the way `Display` writes it, and no other way.
fn canonical_int<T: FromStr + ToString>(text: &str) -> Option<T> {
    text.parse::<T>().ok().filter(|n| n.to_string() == text)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    const SEED_A: [u8; 32] = [0x11; 32];

    /// Control L4: concatenated kept checkpoints split into texts that each parse; anything
    /// else in the file is a piece of its own, which then fails to parse.
    #[test]
    fn l4_kept_checkpoint_files_split_into_checkpoints() {
        let key = SigningKey::from_seed(&SEED_A).unwrap();
        let cp = |size: u64| {
            key.sign(&Checkpoint {
                environment_id: Uuid::nil(),
                tree_size: size,
                root_hash: [1; 32],
                last_entry_hash: [2; 32],
                issued_at: 7,
            })
            .to_string()
        };
        let both = format!("{}{}", cp(1), cp(2));
        let parts = split_checkpoints(&both);
        assert_eq!(parts, vec![cp(1), cp(2)]);
        assert!(parts.iter().all(|p| p.parse::<SignedCheckpoint>().is_ok()));
        let junk = format!("junk\n{}", cp(3));
        let parts = split_checkpoints(&junk);
        assert_eq!(parts.len(), 2);
        assert!(parts[0].parse::<SignedCheckpoint>().is_err());
        assert_eq!(parts[1], cp(3));
        assert!(split_checkpoints("").is_empty());
    }
    const SEED_B: [u8; 32] = [0x22; 32];

    fn checkpoint() -> Checkpoint {
        Checkpoint {
            environment_id: Uuid::parse_str("0190f3c4-5b6a-7d8e-9f01-23456789abcd").unwrap(),
            tree_size: 2,
            root_hash: [0xab; 32],
            last_entry_hash: [0xcd; 32],
            issued_at: 1_717_200_000,
        }
    }

    #[test]
    fn l3_text_form_round_trips_and_verifies() {
        let key = SigningKey::from_seed(&SEED_A).unwrap();
        let signed = key.sign(&checkpoint());
        let text = signed.to_string();
        assert!(text.starts_with(
            "portcullis-audit-checkpoint/v1\nenvironment 0190f3c4-5b6a-7d8e-9f01-23456789abcd\nsize 2\n"
        ));
        let parsed: SignedCheckpoint = text.parse().unwrap();
        assert_eq!(parsed, signed);
        parsed.verify(&[key.public_key()]).unwrap();
    }

    /// Control L3: a signature only vouches for the exact statement and the key it names.
    #[test]
    fn l3_wrong_key_unknown_key_and_tampered_text_are_refused() {
        let a = SigningKey::from_seed(&SEED_A).unwrap();
        let b = SigningKey::from_seed(&SEED_B).unwrap();
        let signed = a.sign(&checkpoint());

        assert_eq!(
            signed.verify(&[b.public_key()]),
            Err(CheckpointError::UnknownKey(a.key_id()))
        );
        let mut forged = b.sign(&checkpoint());
        forged.key_id = a.key_id();
        assert_eq!(
            forged.verify(&[a.public_key()]),
            Err(CheckpointError::BadSignature(a.key_id()))
        );

        let text = signed.to_string();
        for (from, to) in [
            ("size 2\n", "size 3\n"),
            ("time 1717200000", "time 1717200001"),
            ("root abab", "root acab"),
        ] {
            let tampered: SignedCheckpoint = text.replacen(from, to, 1).parse().unwrap();
            assert_eq!(
                tampered.verify(&[a.public_key()]),
                Err(CheckpointError::BadSignature(a.key_id())),
                "{from} -> {to}"
            );
        }
        let mut bad_sig = signed.clone();
        bad_sig.signature[10] ^= 1;
        assert!(bad_sig.verify(&[a.public_key()]).is_err());
    }

    /// Control L3 (key rotation): while two keys are trusted, checkpoints from either verify;
    /// once the old key is retired, its checkpoints no longer do.
    #[test]
    fn l3_rotation_overlap_trusts_both_keys() {
        let old = SigningKey::from_seed(&SEED_A).unwrap();
        let new = SigningKey::from_seed(&SEED_B).unwrap();
        let by_old = old.sign(&checkpoint());
        let by_new = new.sign(&Checkpoint {
            tree_size: 3,
            ..checkpoint()
        });
        let overlap = [old.public_key(), new.public_key()];
        by_old.verify(&overlap).unwrap();
        by_new.verify(&overlap).unwrap();
        let after = [new.public_key()];
        by_new.verify(&after).unwrap();
        assert_eq!(
            by_old.verify(&after),
            Err(CheckpointError::UnknownKey(old.key_id()))
        );
    }

    #[test]
    fn l3_strict_parsing_rejects_other_spellings() {
        let key = SigningKey::from_seed(&SEED_A).unwrap();
        let text = key
            .sign(&Checkpoint {
                issued_at: -5,
                ..checkpoint()
            })
            .to_string();
        text.parse::<SignedCheckpoint>().unwrap();
        let upper_root = format!("root {}", "AB".repeat(32));
        let cases: Vec<(String, &str)> = vec![
            (text.replacen("size 2", "size 02", 1), "leading zero"),
            (text.replacen("size 2", "size +2", 1), "plus sign"),
            (text.replacen("size 2", "size  2", 1), "double space"),
            (
                text.replacen("time -5", "time -05", 1),
                "leading zero, negative",
            ),
            (
                text.replacen(&format!("root {}", "ab".repeat(32)), &upper_root, 1),
                "uppercase hex",
            ),
            (
                text.replacen("0190f3c4-5b6a", "0190F3C4-5b6a", 1),
                "uppercase uuid",
            ),
            (
                text.replacen(
                    "0190f3c4-5b6a-7d8e-9f01-23456789abcd",
                    "0190f3c45b6a7d8e9f0123456789abcd",
                    1,
                ),
                "simple uuid",
            ),
            (text.replacen("/v1", "/v2", 1), "other version"),
            (text.replace('\n', "\r\n"), "CRLF"),
            (text.trim_end().to_string(), "no final newline"),
            (format!("{text}\n"), "trailing blank line"),
            (format!(" {text}"), "leading space"),
            (text.replacen("time", "note hi\ntime", 1), "extra line"),
            (text.replacen("\n\n", "\n", 1), "no blank line"),
            (text.replacen("\n\n", "\n\n\n", 1), "two blank lines"),
            (text.replacen("\u{2014} ", "- ", 1), "ASCII dash"),
            (
                text.replacen("\u{2014} ", "\u{2014}  ", 1),
                "two spaces after dash",
            ),
            (
                {
                    let sig_line = text.split("\n\n").nth(1).unwrap();
                    format!("{text}{sig_line}")
                },
                "two signatures",
            ),
        ];
        for (bad, why) in cases {
            assert!(
                matches!(
                    bad.parse::<SignedCheckpoint>(),
                    Err(CheckpointError::Malformed(_))
                ),
                "accepted: {why}"
            );
        }
    }

    #[test]
    fn signing_key_debug_is_redacted_and_ids_are_stable() {
        let key = SigningKey::from_seed(&SEED_A).unwrap();
        let debug = format!("{key:?}");
        assert!(debug.contains("redacted"));
        assert!(!debug.contains(&hex::encode(&SEED_A)));
        assert!(!debug.contains("17, 17"));
        let id = key.key_id();
        assert_eq!(id.to_string().len(), 16);
        assert_eq!(id, KeyId::of(&key.public_key_bytes()));
        assert_eq!(id.to_string().parse::<KeyId>().unwrap(), id);
        assert_eq!(
            SigningKey::from_seed(key.seed()).unwrap().public_key(),
            key.public_key()
        );
    }

    #[test]
    fn pkcs8_documents_load_with_their_seed() {
        let rng = SystemRandom::new();
        let doc = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let key = SigningKey::from_pkcs8(doc.as_ref()).unwrap();
        let reference = Ed25519KeyPair::from_pkcs8(doc.as_ref()).unwrap();
        assert_eq!(
            key.public_key_bytes().as_slice(),
            reference.public_key().as_ref()
        );
        let signed = key.sign(&checkpoint());
        signed.verify(&[key.public_key()]).unwrap();
        assert!(SigningKey::from_pkcs8(&doc.as_ref()[..20]).is_err());
        let generated = SigningKey::generate().unwrap();
        assert_ne!(generated.public_key(), key.public_key());
    }
}
