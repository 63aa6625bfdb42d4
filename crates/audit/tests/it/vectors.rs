//! The known-answer vectors published in FORMAT.md (control L3), so an independent verifier
//! can test itself against them. They were computed separately from this crate, with Python's
//! hashlib, json and the `cryptography` package following FORMAT.md alone, and match.

use portcullis_audit::entry::merkle_leaf;
use portcullis_audit::merkle;
use portcullis_audit::{
    entry_hash, Checkpoint, EntryHashInput, SignedCheckpoint, SigningKey, GENESIS_PREV_HASH,
};
use serde_json::json;
use uuid::Uuid;

const ENV: &str = "0190f3c4-5b6a-7d8e-9f01-23456789abcd";
const E1: &str = "07f042a038dcddaed70c4e559cdaa03802c09e6dcf931a6fbdf2e952ab175515";
const E2: &str = "de577db0ae9b05303e4ff7cf1a631417df85b486a770cf764c84c20b110a729a";
const ROOT: &str = "4e40e3c19b707e4fbceaa32a12e8183e09bec7873518eb8de4f4acd009649b89";
const PUBLIC_KEY: &str = "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8";
const KEY_ID: &str = "56475aa75463474c";
const CHECKPOINT: &str = "portcullis-audit-checkpoint/v1
environment 0190f3c4-5b6a-7d8e-9f01-23456789abcd
size 2
root 4e40e3c19b707e4fbceaa32a12e8183e09bec7873518eb8de4f4acd009649b89
head de577db0ae9b05303e4ff7cf1a631417df85b486a770cf764c84c20b110a729a
time 1717200000

\u{2014} 56475aa75463474c 2750f8598cd17d7b36b438940b51e6245fba7709b20a6ef5f47ab930bda75151c269aed64a21dd0553046fa51811642a0620f278e287a15f14b74dd5fdf74c08
";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn l3_format_known_answers() {
    let env = Uuid::parse_str(ENV).unwrap();
    let e1 = entry_hash(&EntryHashInput {
        environment_id: env,
        seq: 1,
        prev_hash: GENESIS_PREV_HASH,
        body: &json!({"action": "secret.read", "actor": "user:42", "n": 1}),
    });
    let e2 = entry_hash(&EntryHashInput {
        environment_id: env,
        seq: 2,
        prev_hash: e1,
        body: &json!({}),
    });
    assert_eq!(hex(&e1), E1);
    assert_eq!(hex(&e2), E2);
    let root = merkle::root(&[merkle_leaf(&e1), merkle_leaf(&e2)]);
    assert_eq!(hex(&root), ROOT);

    let seed: [u8; 32] = std::array::from_fn(|i| i as u8);
    let key = SigningKey::from_seed(&seed).unwrap();
    assert_eq!(key.public_key().to_hex(), PUBLIC_KEY);
    assert_eq!(key.key_id().to_string(), KEY_ID);
    let signed = key.sign(&Checkpoint {
        environment_id: env,
        tree_size: 2,
        root_hash: root,
        last_entry_hash: e2,
        issued_at: 1_717_200_000,
    });
    assert_eq!(signed.to_string(), CHECKPOINT);
    let parsed: SignedCheckpoint = CHECKPOINT.parse().unwrap();
    parsed.verify(&[key.public_key()]).unwrap();
}
