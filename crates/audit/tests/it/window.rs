//! Control L6: a monthly report is anchored by the signed checkpoints at the window's start
//! and end; months later anyone holding them and the public key can check that the window
//! is an append to what came before and that each of its entries is in it.

use crate::support::*;
use portcullis_audit::entry::merkle_leaf;
use portcullis_audit::merkle::{
    consistency_proof, inclusion_proof, verify_consistency, verify_inclusion,
};
use portcullis_audit::SignedCheckpoint;

#[test]
fn l6_window_checkpoints_prove_the_window_after_the_fact() {
    let signer = key(1);
    let trusted = [signer.public_key()];
    let rows = chain((1..=40).map(|i| body(i, "alice")).collect());
    // Stored as text (write-once storage, L4) and read back much later.
    let start: SignedCheckpoint = checkpoint(&rows, 15, &signer).to_string().parse().unwrap();
    let end: SignedCheckpoint = checkpoint(&rows, 40, &signer).to_string().parse().unwrap();
    start.verify(&trusted).unwrap();
    end.verify(&trusted).unwrap();
    let (start, end) = (start.checkpoint, end.checkpoint);

    let leaves = leaves(&rows);
    let proof = consistency_proof(&leaves, 15, 40).unwrap();
    assert!(verify_consistency(
        15,
        40,
        &start.root_hash,
        &end.root_hash,
        &proof
    ));
    for seq in 16..=40u64 {
        let i = seq as usize - 1;
        let path = inclusion_proof(&leaves, seq - 1).unwrap();
        assert!(verify_inclusion(
            &leaves[i],
            seq - 1,
            40,
            &path,
            &end.root_hash
        ));
    }
    assert_eq!(end.last_entry_hash, rows[39].entry_hash);
}

#[test]
fn l6_a_later_rewrite_of_the_window_contradicts_its_signed_end() {
    let signer = key(1);
    let mut rows = chain((1..=40).map(|i| body(i, "alice")).collect());
    let end = checkpoint(&rows, 40, &signer).checkpoint;

    // Months later the operator rewrites entry 20 consistently and keeps appending.
    rows[19].body = body(20, "mallory");
    rehash_from(&mut rows, 19);
    rows.extend(
        chain((1..=50).map(|i| body(i, "bob")).collect())
            .into_iter()
            .skip(40),
    );
    rehash_from(&mut rows, 40);
    let leaves = leaves(&rows);
    let now = checkpoint(&rows, 50, &signer).checkpoint;

    let proof = consistency_proof(&leaves, 40, 50).unwrap();
    assert!(!verify_consistency(
        40,
        50,
        &end.root_hash,
        &now.root_hash,
        &proof
    ));
    let path = inclusion_proof(&leaves[..40], 19).unwrap();
    assert!(!verify_inclusion(
        &merkle_leaf(&rows[19].entry_hash),
        19,
        40,
        &path,
        &end.root_hash
    ));
}
