//! Tamper evidence for the audit trail (controls L3 and L6): the canonical encoding of an
//! entry, the per-environment hash chain, the RFC 6962 Merkle tree with its inclusion and
//! consistency proofs, signed checkpoints, the export bundle, and the streaming verifier
//! that finds and localizes the first sign of tampering.
//!
//! This crate owns the math and the byte formats, nothing else: no database, no HTTP, no
//! clock, no configuration. Callers hand it sequence numbers, bodies, keys and timestamps.
//! It must stay usable by an independent, offline verifier — an auditor's laptop with a
//! bundle file and a pinned public key — so it never grows a dependency on the rest of the
//! workspace, and every format it defines is specified in `FORMAT.md` precisely enough to
//! be reimplemented in another language.

pub mod bundle;
pub mod canonical;
pub mod checkpoint;
pub mod entry;
pub mod hex;
pub mod merkle;
pub mod report;
pub mod verify;

/// A SHA-256 digest. Every hash in this crate is one.
pub type Hash = [u8; 32];

pub use bundle::{
    verify_bundle, BundleError, BundleWriter, CheckpointSource, HeldCheckpoint, KeyTrust,
    VerifyOptions,
};
pub use canonical::canonical_json;
pub use checkpoint::{
    Checkpoint, CheckpointError, KeyError, KeyId, PublicKey, SignedCheckpoint, SigningKey,
};
pub use entry::{entry_hash, EntryHashInput, GENESIS_PREV_HASH};
pub use merkle::MerkleTree;
pub use verify::{verify_entries, Body, Problem, ProblemKind, Report, StoredEntry, Verifier};
