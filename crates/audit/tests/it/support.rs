//! A small in-memory audit log for the integration tests: entries, checkpoints and bundles
//! built with the crate's public API only, the way the server and the verifier will use it.
#![allow(dead_code)]

use portcullis_audit::entry::merkle_leaf;
use portcullis_audit::merkle::{self, MerkleTree};
use portcullis_audit::{
    entry_hash, verify_bundle, BundleWriter, Checkpoint, CheckpointSource, EntryHashInput, Hash,
    PublicKey, Report, SignedCheckpoint, SigningKey, VerifyOptions, GENESIS_PREV_HASH,
};
use serde_json::{json, Value};
use uuid::Uuid;

pub const ENV: Uuid = Uuid::from_u128(0x0190_f3c4_5b6a_7d8e_9f01_2345_6789_abcd);

#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub seq: u64,
    pub prev_hash: Hash,
    pub entry_hash: Hash,
    pub body: Value,
}

pub fn body(i: u64, actor: &str) -> Value {
    json!({"action": "secret.read", "actor": actor, "n": i, "meta": {"ip": "10.0.0.1", "ok": true}})
}

/// A valid chain over `bodies`, numbered from 1.
pub fn chain(bodies: Vec<Value>) -> Vec<Row> {
    let mut rows: Vec<Row> = Vec::with_capacity(bodies.len());
    for (i, body) in bodies.into_iter().enumerate() {
        let prev_hash = rows.last().map_or(GENESIS_PREV_HASH, |r| r.entry_hash);
        rows.push(row(i as u64 + 1, prev_hash, body));
    }
    rows
}

/// An entry with a correct hash for the given seq, link and body.
pub fn row(seq: u64, prev_hash: Hash, body: Value) -> Row {
    let entry_hash = entry_hash(&EntryHashInput {
        environment_id: ENV,
        seq,
        prev_hash,
        body: &body,
    });
    Row {
        seq,
        prev_hash,
        entry_hash,
        body,
    }
}

/// Recomputes every link and hash from `from` on, as someone with write access to the
/// table and knowledge of the format (but not of the signing key) could.
pub fn rehash_from(rows: &mut [Row], from: usize) {
    for i in from..rows.len() {
        let prev = if i == 0 {
            GENESIS_PREV_HASH
        } else {
            rows[i - 1].entry_hash
        };
        rows[i] = row(rows[i].seq, prev, rows[i].body.clone());
    }
}

pub fn checkpoint(rows: &[Row], size: usize, key: &SigningKey) -> SignedCheckpoint {
    let mut tree = MerkleTree::new();
    for r in &rows[..size] {
        tree.push(merkle_leaf(&r.entry_hash));
    }
    key.sign(&Checkpoint {
        environment_id: ENV,
        tree_size: size as u64,
        root_hash: tree.root(),
        last_entry_hash: rows[..size]
            .last()
            .map_or(GENESIS_PREV_HASH, |r| r.entry_hash),
        issued_at: 1_717_200_000 + size as i64,
    })
}

pub fn leaves(rows: &[Row]) -> Vec<Hash> {
    rows.iter().map(|r| merkle_leaf(&r.entry_hash)).collect()
}

pub fn root(rows: &[Row]) -> Hash {
    merkle::root(&leaves(rows))
}

pub fn bundle(keys: &[PublicKey], checkpoints: &[SignedCheckpoint], rows: &[Row]) -> Vec<u8> {
    let mut w = BundleWriter::new(Vec::new(), ENV, keys).unwrap();
    for c in checkpoints {
        w.write_checkpoint(&c.to_string(), &[CheckpointSource::Database])
            .unwrap();
    }
    for r in rows {
        w.write_entry(r.seq, &r.prev_hash, &r.entry_hash, &r.body)
            .unwrap();
    }
    w.finish().unwrap()
}

pub fn verify_bytes(bytes: &[u8], trusted: &[PublicKey]) -> Report {
    verify_bundle(bytes, VerifyOptions::pinned(trusted)).unwrap()
}

pub fn key(seed: u8) -> SigningKey {
    SigningKey::from_seed(&[seed; 32]).unwrap()
}
