//! The entry hash: what chains each entry to the one before it and what the Merkle tree
//! commits to.
//!
//! ```text
//! entry_hash = SHA-256( "portcullis-audit-entry/v1" 0x00
//!                       || environment_id (16 bytes, RFC 9562 byte order)
//!                       || seq (u64, big-endian)
//!                       || prev_hash (32 bytes; 32 zero bytes for seq 1)
//!                       || canonical_json(body) )
//! ```
//!
//! Everything before the body has a fixed length, so the concatenation is unambiguous
//! without length prefixes. The environment and seq are inside the hash so an entry cannot
//! be replayed into another tenant's log or another position. The Merkle leaf for an entry is
//! `merkle::leaf_hash(entry_hash)`: the tree commits to the chain, and a checkpoint's root
//! therefore pins every body, link and sequence number below its size.

use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::canonical::write_canonical_json;
use crate::{merkle, Hash};

/// Domain separator: no other hash in the system starts with these bytes.
pub const ENTRY_DOMAIN: &[u8] = b"portcullis-audit-entry/v1\0";

/// `prev_hash` of the first entry (seq 1).
pub const GENESIS_PREV_HASH: Hash = [0; 32];

/// Everything an entry hash covers.
#[derive(Clone, Copy, Debug)]
pub struct EntryHashInput<'a> {
    pub environment_id: Uuid,
    pub seq: u64,
    pub prev_hash: Hash,
    pub body: &'a Value,
}

/// The entry hash of `input` (see the module documentation).
pub fn entry_hash(input: &EntryHashInput<'_>) -> Hash {
    let mut body = Vec::with_capacity(256);
    write_canonical_json(input.body, &mut body);
    entry_hash_of_canonical(&input.environment_id, input.seq, &input.prev_hash, &body)
}

/// The entry hash over a body that is already canonical JSON.
pub fn entry_hash_of_canonical(
    environment_id: &Uuid,
    seq: u64,
    prev_hash: &Hash,
    canonical_body: &[u8],
) -> Hash {
    // One update for the fixed-length part: this runs once per entry in the verifier.
    let mut head = [0u8; ENTRY_DOMAIN.len() + 16 + 8 + 32];
    let (domain, rest) = head.split_at_mut(ENTRY_DOMAIN.len());
    let (env, rest) = rest.split_at_mut(16);
    let (seq_be, prev) = rest.split_at_mut(8);
    domain.copy_from_slice(ENTRY_DOMAIN);
    env.copy_from_slice(environment_id.as_bytes());
    seq_be.copy_from_slice(&seq.to_be_bytes());
    prev.copy_from_slice(prev_hash);
    let mut h = Sha256::new();
    h.update(head);
    h.update(canonical_body);
    h.finalize().into()
}

/// The Merkle leaf hash for an entry: the leaf data is the entry hash itself.
pub fn merkle_leaf(entry_hash: &Hash) -> Hash {
    merkle::leaf_hash(entry_hash)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::hex;
    use serde_json::json;

    /// The known-answer vector published in FORMAT.md, cross-checked with a separate Python
    /// implementation of the spec (hashlib + json.dumps). Control L3: an independent verifier
    /// checks its implementation against this.
    #[test]
    fn l3_entry_hash_known_answer() {
        let env = Uuid::parse_str("0190f3c4-5b6a-7d8e-9f01-23456789abcd").unwrap();
        let body = json!({"action": "secret.read", "actor": "user:42", "n": 1});
        let first = entry_hash(&EntryHashInput {
            environment_id: env,
            seq: 1,
            prev_hash: GENESIS_PREV_HASH,
            body: &body,
        });
        let second = entry_hash(&EntryHashInput {
            environment_id: env,
            seq: 2,
            prev_hash: first,
            body: &json!({}),
        });
        assert_eq!(
            hex::encode(&first),
            "07f042a038dcddaed70c4e559cdaa03802c09e6dcf931a6fbdf2e952ab175515"
        );
        assert_eq!(
            hex::encode(&second),
            "de577db0ae9b05303e4ff7cf1a631417df85b486a770cf764c84c20b110a729a"
        );
    }

    #[test]
    fn l3_every_input_field_changes_the_hash() {
        let env = Uuid::from_u128(7);
        let body = json!({"k": "v"});
        let base = EntryHashInput {
            environment_id: env,
            seq: 5,
            prev_hash: [3; 32],
            body: &body,
        };
        let h = entry_hash(&base);
        let other_body = json!({"k": "w"});
        for changed in [
            EntryHashInput {
                environment_id: Uuid::from_u128(8),
                ..base
            },
            EntryHashInput { seq: 6, ..base },
            EntryHashInput {
                prev_hash: [4; 32],
                ..base
            },
            EntryHashInput {
                body: &other_body,
                ..base
            },
        ] {
            assert_ne!(entry_hash(&changed), h);
        }
        // Key order and whitespace are not part of the content.
        let reordered: Value = serde_json::from_str(r#"{ "k" : "v" }"#).unwrap();
        assert_eq!(
            entry_hash(&EntryHashInput {
                body: &reordered,
                ..base
            }),
            h
        );
    }
}
