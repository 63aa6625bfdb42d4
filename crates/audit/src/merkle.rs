//! The RFC 6962 (Certificate Transparency) Merkle tree over an environment's entries.
//!
//! `MTH({}) = SHA-256()`, `MTH({d}) = SHA-256(0x00 || d)`, and for `n > 1` with `k` the
//! largest power of two below `n`, `MTH(D[n]) = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n]))`.
//! The 0x00/0x01 prefixes keep a leaf from ever being read as an interior node.
//!
//! Functions here take *leaf hashes* (already `0x00`-prefixed and hashed), which is what
//! the log stores. Proofs are generated as RFC 6962 §2.1.1/§2.1.2 define them and checked
//! with the iterative algorithms of RFC 9162 §2.1.3.2 and §2.1.4.2, which need only the
//! proof, never the tree.

use std::convert::Infallible;

use sha2::{Digest, Sha256};

use crate::Hash;

/// The root of the empty tree: SHA-256 of the empty string.
pub const EMPTY_ROOT: Hash = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

/// `SHA-256(0x00 || data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(data);
    h.finalize().into()
}

/// `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The root of the tree over `leaf_hashes` (`MTH`).
pub fn root(leaf_hashes: &[Hash]) -> Hash {
    let mut tree = MerkleTree::new();
    for leaf in leaf_hashes {
        tree.push(*leaf);
    }
    tree.root()
}

/// A growing tree that keeps only its frontier: the roots of the perfect subtrees its leaves
/// split into, one per set bit of the size, largest (leftmost) first. That is O(log n) hashes,
/// which is what lets a verifier stream millions of entries in constant memory and a writer
/// append without reading old leaves.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MerkleTree {
    size: u64,
    frontier: Vec<Hash>,
}

impl MerkleTree {
    pub fn new() -> Self {
        Self::default()
    }

    /// Resumes from a stored `size` and `frontier()`; `None` if they cannot belong together.
    pub fn from_frontier(size: u64, frontier: Vec<Hash>) -> Option<Self> {
        (u64::from(size.count_ones()) == frontier.len() as u64).then_some(Self { size, frontier })
    }

    pub fn push(&mut self, leaf_hash: Hash) {
        self.push_reporting(leaf_hash, |_, _, _| {});
    }

    /// [`push`](Self::push), also reporting every perfect aligned subtree the new leaf
    /// completes as `(level, index, hash)`: the subtree of `2^level` leaves starting at leaf
    /// `index * 2^level`. Level 0 is the leaf itself; the last one reported is the new lowest
    /// frontier node. This is how a log stores subtree hashes without reading old leaves.
    pub fn push_reporting(&mut self, leaf_hash: Hash, mut completed: impl FnMut(u32, u64, &Hash)) {
        let leaf_index = self.size;
        let mut carry = leaf_hash;
        let mut size = self.size;
        let mut level = 0u32;
        completed(level, leaf_index, &carry);
        // Each trailing one bit of the old size is a perfect subtree of the same height as
        // `carry`: merge them, like binary addition.
        while size & 1 == 1 {
            match self.frontier.pop() {
                Some(left) => carry = node_hash(&left, &carry),
                None => break,
            }
            size >>= 1;
            level += 1;
            completed(level, leaf_index >> level, &carry);
        }
        self.frontier.push(carry);
        self.size += 1;
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn root(&self) -> Hash {
        let mut subtrees = self.frontier.iter().rev();
        match subtrees.next() {
            None => EMPTY_ROOT,
            Some(&last) => subtrees.fold(last, |right, left| node_hash(left, &right)),
        }
    }

    pub fn frontier(&self) -> &[Hash] {
        &self.frontier
    }
}

/// Supplies `MTH` of leaf ranges for proof generation, so a server can answer from stored
/// subtree hashes instead of loading every leaf. A requested range `[start, end)` is always
/// an RFC 6962 subtree: either perfect (its length a power of two and `start` a multiple of
/// it) or the ragged right edge of the tree being proved (`end` equal to its size).
pub trait SubtreeHashes {
    type Error;

    fn subtree_hash(&mut self, start: u64, end: u64) -> Result<Hash, Self::Error>;
}

/// Subtree hashes computed from a slice of all leaf hashes.
struct LeafSlice<'a>(&'a [Hash]);

impl SubtreeHashes for LeafSlice<'_> {
    type Error = Infallible;

    fn subtree_hash(&mut self, start: u64, end: u64) -> Result<Hash, Infallible> {
        // Callers validated the sizes against `self.0.len()`, so these conversions are lossless.
        Ok(root(&self.0[start as usize..end as usize]))
    }
}

pub mod stored;

#[derive(Debug, thiserror::Error)]
pub enum ProofError<E> {
    #[error("no such proof: index or sizes out of range")]
    OutOfRange,
    #[error("subtree hash source failed")]
    Source(#[source] E),
}

/// The largest power of two strictly below `n`; `n >= 2`.
pub(crate) fn split_point(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

/// The audit path for leaf `index` in the tree of the first `tree_size` leaves, ordered from
/// the leaf's sibling up to the root's other child (RFC 6962 `PATH`).
pub fn inclusion_proof_from<S: SubtreeHashes>(
    source: &mut S,
    index: u64,
    tree_size: u64,
) -> Result<Vec<Hash>, ProofError<S::Error>> {
    if index >= tree_size {
        return Err(ProofError::OutOfRange);
    }
    let mut path = Vec::new();
    let (mut start, mut end) = (0, tree_size);
    while end - start > 1 {
        let mid = start + split_point(end - start);
        let sibling = if index < mid {
            let h = source.subtree_hash(mid, end);
            end = mid;
            h
        } else {
            let h = source.subtree_hash(start, mid);
            start = mid;
            h
        };
        path.push(sibling.map_err(ProofError::Source)?);
    }
    path.reverse();
    Ok(path)
}

/// The proof that the tree of the first `old_size` leaves is a prefix of the tree of the
/// first `new_size` (RFC 6962 `PROOF`/`SUBPROOF`). Empty when the sizes are equal or
/// `old_size` is zero.
pub fn consistency_proof_from<S: SubtreeHashes>(
    source: &mut S,
    old_size: u64,
    new_size: u64,
) -> Result<Vec<Hash>, ProofError<S::Error>> {
    if old_size > new_size {
        return Err(ProofError::OutOfRange);
    }
    let mut proof = Vec::new();
    if old_size == 0 || old_size == new_size {
        return Ok(proof);
    }
    let (mut start, mut end, mut m) = (0, new_size, old_size);
    // `whole` is SUBPROOF's flag: the old tree is still an entire subtree of the new one, so
    // the verifier already knows its hash (the old root) and it need not be sent.
    let mut whole = true;
    loop {
        let n = end - start;
        if m == n {
            if !whole {
                proof.push(
                    source
                        .subtree_hash(start, end)
                        .map_err(ProofError::Source)?,
                );
            }
            break;
        }
        let k = split_point(n);
        if m <= k {
            proof.push(
                source
                    .subtree_hash(start + k, end)
                    .map_err(ProofError::Source)?,
            );
            end = start + k;
        } else {
            proof.push(
                source
                    .subtree_hash(start, start + k)
                    .map_err(ProofError::Source)?,
            );
            start += k;
            m -= k;
            whole = false;
        }
    }
    proof.reverse();
    Ok(proof)
}

/// [`inclusion_proof_from`] over all leaf hashes in memory; `None` if `index` is out of range.
pub fn inclusion_proof(leaf_hashes: &[Hash], index: u64) -> Option<Vec<Hash>> {
    let size = leaf_hashes.len() as u64;
    inclusion_proof_from(&mut LeafSlice(leaf_hashes), index, size).ok()
}

/// [`consistency_proof_from`] over leaf hashes in memory; `None` unless
/// `old_size <= new_size <= leaf_hashes.len()`.
pub fn consistency_proof(leaf_hashes: &[Hash], old_size: u64, new_size: u64) -> Option<Vec<Hash>> {
    if new_size > leaf_hashes.len() as u64 {
        return None;
    }
    consistency_proof_from(&mut LeafSlice(leaf_hashes), old_size, new_size).ok()
}

/// RFC 9162 §2.1.3.2: does `proof` show `leaf_hash` at `index` in the tree of `tree_size`
/// leaves with root `root`?
pub fn verify_inclusion(
    leaf_hash: &Hash,
    index: u64,
    tree_size: u64,
    proof: &[Hash],
    root: &Hash,
) -> bool {
    if index >= tree_size {
        return false;
    }
    let (mut f, mut s) = (index, tree_size - 1);
    let mut r = *leaf_hash;
    for p in proof {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    s == 0 && r == *root
}

/// RFC 9162 §2.1.4.2: does `proof` show that the tree of `old_size` leaves with root
/// `old_root` is a prefix of the tree of `new_size` leaves with root `new_root`?
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> bool {
    if old_size > new_size {
        return false;
    }
    if old_size == new_size {
        return proof.is_empty() && old_root == new_root;
    }
    if old_size == 0 {
        return proof.is_empty() && *old_root == EMPTY_ROOT;
    }
    let mut rest = proof.iter();
    // When the old tree is a perfect subtree, its root is the proof's implicit first element.
    let first = if old_size.is_power_of_two() {
        if proof.is_empty() {
            return false;
        }
        *old_root
    } else {
        match rest.next() {
            Some(h) => *h,
            None => return false,
        }
    };
    let (mut f, mut s) = (old_size - 1, new_size - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (first, first);
    for c in rest {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    fr == *old_root && sr == *new_root && s == 0
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use proptest::prelude::*;

    fn h(hex: &str) -> Hash {
        crate::hex::decode(hex).unwrap()
    }

    fn bytes(hex: &str) -> Vec<u8> {
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect()
    }

    // Test vectors: the 8-leaf reference tree and its roots, inclusion proofs and consistency
    // proofs published in transparency-dev/merkle `proof/verify_test.go` (the same values as
    // certificate-transparency-go's merkletree tests and testdata/consistency/1/happy-path.json),
    // and the hasher vectors from transparency-dev/merkle `rfc6962/rfc6962_test.go`. Values only.
    const LEAVES: [&str; 8] = [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ];
    const ROOTS: [&str; 8] = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];
    /// (leaf index, tree size, proof)
    const INCLUSION: [(u64, u64, &[&str]); 5] = [
        (0, 1, &[]),
        (
            0,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            5,
            8,
            &[
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            3,
            &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
        ),
        (
            1,
            5,
            &[
                "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
    ];
    /// (old size, new size, proof)
    const CONSISTENCY: [(u64, u64, &[&str]); 5] = [
        (1, 1, &[]),
        (
            1,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            6,
            8,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            5,
            &[
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
        (
            6,
            7,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
    ];

    fn reference_leaves() -> Vec<Hash> {
        LEAVES.iter().map(|d| leaf_hash(&bytes(d))).collect()
    }

    fn hashes(hex: &[&str]) -> Vec<Hash> {
        hex.iter().map(|x| h(x)).collect()
    }

    #[test]
    fn l3_rfc6962_hasher_vectors() {
        assert_eq!(EMPTY_ROOT, <[u8; 32]>::from(Sha256::digest(b"")));
        assert_eq!(root(&[]), EMPTY_ROOT);
        assert_eq!(
            leaf_hash(b""),
            h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d")
        );
        assert_eq!(
            leaf_hash(b"L123456"),
            h("395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56")
        );
        // The published node vector hashes two 4-byte strings, so it is checked directly.
        let node: Hash = Sha256::new()
            .chain_update([0x01])
            .chain_update(b"N123")
            .chain_update(b"N456")
            .finalize()
            .into();
        assert_eq!(
            node,
            h("aa217fe888e47007fa15edab33c2b492a722cb106c64667fc2b044444de66bbb")
        );
    }

    #[test]
    fn l3_rfc6962_reference_roots_for_sizes_1_to_8() {
        let leaves = reference_leaves();
        let mut tree = MerkleTree::new();
        for (size, want) in (1..=8).zip(ROOTS) {
            tree.push(leaves[size - 1]);
            assert_eq!(root(&leaves[..size]), h(want), "batch root, size {size}");
            assert_eq!(tree.root(), h(want), "incremental root, size {size}");
        }
    }

    #[test]
    fn l3_rfc6962_reference_inclusion_proofs() {
        let leaves = reference_leaves();
        for (index, size, proof) in INCLUSION {
            let proof = hashes(proof);
            let root = h(ROOTS[size as usize - 1]);
            let leaf = leaves[index as usize];
            assert_eq!(
                inclusion_proof(&leaves[..size as usize], index).unwrap(),
                proof,
                "generated proof for leaf {index} of {size}"
            );
            assert!(verify_inclusion(&leaf, index, size, &proof, &root));
            assert!(!verify_inclusion(&leaf, index + 1, size, &proof, &root));
            assert!(!verify_inclusion(&leaf, index, size, &proof, &EMPTY_ROOT));
            assert!(!verify_inclusion(&EMPTY_ROOT, index, size, &proof, &root));
            for i in 0..proof.len() {
                let mut bad = proof.clone();
                bad[i][0] ^= 8;
                assert!(!verify_inclusion(&leaf, index, size, &bad, &root));
                let mut short = proof.clone();
                short.remove(i);
                assert!(!verify_inclusion(&leaf, index, size, &short, &root));
            }
            let mut long = proof.clone();
            long.push(root);
            assert!(!verify_inclusion(&leaf, index, size, &long, &root));
        }
    }

    #[test]
    fn l3_rfc6962_reference_consistency_proofs() {
        let leaves = reference_leaves();
        for (old, new, proof) in CONSISTENCY {
            let proof = hashes(proof);
            let (r1, r2) = (h(ROOTS[old as usize - 1]), h(ROOTS[new as usize - 1]));
            assert_eq!(
                consistency_proof(&leaves, old, new).unwrap(),
                proof,
                "generated proof {old} -> {new}"
            );
            assert!(verify_consistency(old, new, &r1, &r2, &proof));
            if proof.is_empty() {
                continue;
            }
            assert!(
                !verify_consistency(old, new, &r2, &r1, &proof),
                "swapped roots"
            );
            assert!(!verify_consistency(old - 1, new, &r1, &r2, &proof));
            assert!(!verify_consistency(old + 1, new, &r1, &r2, &proof));
            assert!(!verify_consistency(old, new * 2, &r1, &r2, &proof));
            assert!(!verify_consistency(old, new, &r1, &r2, &[]));
            assert!(!verify_consistency(
                old,
                new,
                &r1,
                &r2,
                &proof[..proof.len() - 1]
            ));
            for i in 0..proof.len() {
                let mut bad = proof.clone();
                bad[i][0] ^= 16;
                assert!(!verify_consistency(old, new, &r1, &r2, &bad));
            }
        }
    }

    #[test]
    fn l3_degenerate_consistency() {
        let r = h(ROOTS[2]);
        assert!(verify_consistency(0, 0, &EMPTY_ROOT, &EMPTY_ROOT, &[]));
        assert!(verify_consistency(0, 5, &EMPTY_ROOT, &r, &[]));
        assert!(
            !verify_consistency(0, 5, &r, &r, &[]),
            "size 0 has one root"
        );
        assert!(!verify_consistency(0, 5, &EMPTY_ROOT, &r, &[r]));
        assert!(!verify_consistency(3, 3, &r, &EMPTY_ROOT, &[]));
        assert!(!verify_consistency(3, 3, &r, &r, &[r]));
        assert!(!verify_consistency(4, 3, &r, &r, &[]));
        assert!(!verify_inclusion(&r, 0, 0, &[], &r));
        assert!(verify_inclusion(&r, 0, 1, &[], &r));
    }

    #[test]
    fn frontier_round_trips_and_rejects_mismatched_sizes() {
        let leaves = reference_leaves();
        let mut tree = MerkleTree::new();
        leaves[..6].iter().for_each(|l| tree.push(*l));
        assert_eq!(tree.frontier().len(), 2);
        let mut resumed = MerkleTree::from_frontier(6, tree.frontier().to_vec()).unwrap();
        resumed.push(leaves[6]);
        resumed.push(leaves[7]);
        assert_eq!(resumed.root(), h(ROOTS[7]));
        assert!(MerkleTree::from_frontier(7, tree.frontier().to_vec()).is_none());
    }

    /// RFC 6962's recursive definition, written independently of `MerkleTree`.
    fn mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => EMPTY_ROOT,
            1 => leaves[0],
            n => {
                let mut k = 1;
                while k * 2 < n {
                    k *= 2;
                }
                node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    fn arb_leaves() -> impl Strategy<Value = Vec<Hash>> {
        prop::collection::vec(any::<[u8; 32]>(), 1..200)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Control L3: the constant-memory tree the verifier streams with agrees with the
        /// batch definition at every size.
        #[test]
        fn l3_incremental_root_equals_batch_root(leaves in arb_leaves()) {
            let mut tree = MerkleTree::new();
            for (i, leaf) in leaves.iter().enumerate() {
                tree.push(*leaf);
                prop_assert_eq!(tree.size(), i as u64 + 1);
                prop_assert_eq!(tree.root(), mth(&leaves[..=i]));
            }
            prop_assert!(tree.frontier().len() <= 8);
        }

        /// Control L3: every inclusion proof verifies; a changed index, root or proof element
        /// does not.
        #[test]
        fn l3_inclusion_proofs_verify_and_resist_tampering(
            leaves in arb_leaves(),
            pick in any::<prop::sample::Index>(),
            flip in any::<(prop::sample::Index, u8)>(),
        ) {
            let size = leaves.len() as u64;
            let root = mth(&leaves);
            for index in 0..size {
                let proof = inclusion_proof(&leaves, index).unwrap();
                prop_assert!(verify_inclusion(&leaves[index as usize], index, size, &proof, &root));
            }
            let index = pick.index(leaves.len()) as u64;
            let leaf = leaves[index as usize];
            let proof = inclusion_proof(&leaves, index).unwrap();
            let bit = 1u8 << (flip.1 % 8);
            for other in [index.wrapping_sub(1), index + 1, index ^ 2] {
                if other < size && other != index {
                    prop_assert!(!verify_inclusion(&leaf, other, size, &proof, &root));
                }
            }
            let mut bad_root = root;
            bad_root[flip.0.index(32)] ^= bit;
            prop_assert!(!verify_inclusion(&leaf, index, size, &proof, &bad_root));
            let mut bad_leaf = leaf;
            bad_leaf[flip.0.index(32)] ^= bit;
            prop_assert!(!verify_inclusion(&bad_leaf, index, size, &proof, &root));
            for i in 0..proof.len() {
                let mut bad = proof.clone();
                bad[i][flip.0.index(32)] ^= bit;
                prop_assert!(!verify_inclusion(&leaf, index, size, &bad, &root));
            }
        }

        /// Control L3: every consistency proof between two sizes of one log verifies; a
        /// changed root or proof element does not.
        #[test]
        fn l3_consistency_proofs_verify_and_resist_tampering(
            leaves in arb_leaves(),
            sizes in any::<(prop::sample::Index, prop::sample::Index)>(),
            flip in any::<(prop::sample::Index, u8)>(),
        ) {
            let n = leaves.len();
            let new = sizes.0.index(n) + 1;
            let old = sizes.1.index(new + 1);
            let (old_root, new_root) = (mth(&leaves[..old]), mth(&leaves[..new]));
            let (old, new) = (old as u64, new as u64);
            let proof = consistency_proof(&leaves, old, new).unwrap();
            prop_assert!(verify_consistency(old, new, &old_root, &new_root, &proof));
            for small in 0..=old.min(8) {
                let p = consistency_proof(&leaves, small, new).unwrap();
                let r = mth(&leaves[..small as usize]);
                prop_assert!(verify_consistency(small, new, &r, &new_root, &p));
            }
            let bit = 1u8 << (flip.1 % 8);
            let byte = flip.0.index(32);
            let mut bad_old = old_root;
            bad_old[byte] ^= bit;
            prop_assert!(!verify_consistency(old, new, &bad_old, &new_root, &proof));
            if old > 0 {
                // Every tree extends the empty one, so only a non-empty old tree pins the new root.
                let mut bad_new = new_root;
                bad_new[byte] ^= bit;
                prop_assert!(!verify_consistency(old, new, &old_root, &bad_new, &proof));
            }
            for i in 0..proof.len() {
                let mut bad = proof.clone();
                bad[i][byte] ^= bit;
                prop_assert!(!verify_consistency(old, new, &old_root, &new_root, &bad));
            }
        }
    }
}
