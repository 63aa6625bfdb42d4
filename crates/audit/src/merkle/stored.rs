//! Proofs from stored subtree hashes (O(log n) per proof instead of every leaf).
//!
//! A log stores the root of every perfect, aligned subtree of `2^STORED_LEVEL` leaves or more
//! (a *node*: level `l`, index `i`, covering leaves `[i·2^l, (i+1)·2^l)`). Any leaf range a
//! proof asks for then splits, by RFC 6962's own recursion, into O(log n) nodes and runs of
//! fewer than `2^STORED_LEVEL` leaves; for an RFC 6962 proof those runs lie in at most two
//! blocks of `2^STORED_LEVEL` leaves (the proved leaf's, or the old size's, and the last one).
//!
//! Building a proof is done in three steps so storage is read in bulk, not once per node:
//! [`Plan`] lists the nodes and leaf runs a proof needs, the caller fetches them into a
//! [`StoredSource`], and the ordinary [`inclusion_proof_from`](super::inclusion_proof_from) /
//! [`consistency_proof_from`](super::consistency_proof_from) run over that source.
//!
//! Stored nodes are an acceleration, never trusted: a proof is checked against a signed root,
//! so a wrong node yields a proof that fails verification.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::convert::Infallible;

use super::{
    consistency_proof_from, inclusion_proof_from, leaf_hash, node_hash, split_point, MerkleTree,
    SubtreeHashes, EMPTY_ROOT,
};
use crate::Hash;

/// The smallest stored subtree: 2^8 = 256 leaves.
pub const STORED_LEVEL: u32 = 8;
/// Leaves per block (`2^STORED_LEVEL`).
pub const BLOCK: u64 = 1 << STORED_LEVEL;

/// A perfect aligned subtree: `2^level` leaves starting at leaf `index << level`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId {
    pub level: u32,
    pub index: u64,
}

impl NodeId {
    /// First leaf index covered.
    pub fn start(&self) -> u64 {
        self.index << self.level
    }

    /// One past the last leaf index covered.
    pub fn end(&self) -> u64 {
        (self.index + 1) << self.level
    }

    fn contains(&self, other: &NodeId) -> bool {
        self.start() <= other.start() && other.end() <= self.end()
    }
}

/// What a proof needs from storage.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Stored nodes, sorted and unique.
    pub nodes: Vec<NodeId>,
    /// Leaf index ranges `[start, end)` whose leaf data (entry hashes) is needed: sorted,
    /// disjoint, not adjacent.
    pub leaves: Vec<(u64, u64)>,
}

/// Splits `[start, end)` the way `MTH` does into stored nodes and short leaf runs.
fn decompose(start: u64, end: u64, nodes: &mut BTreeSet<NodeId>, leaves: &mut Vec<(u64, u64)>) {
    let len = end - start;
    if len == 0 {
        return;
    }
    if len.is_power_of_two() && start & (len - 1) == 0 && len >= BLOCK {
        let level = len.trailing_zeros();
        nodes.insert(NodeId {
            level,
            index: start >> level,
        });
    } else if len <= BLOCK {
        leaves.push((start, end));
    } else {
        let k = split_point(len);
        decompose(start, start + k, nodes, leaves);
        decompose(start + k, end, nodes, leaves);
    }
}

/// Leaf runs sorted, with overlapping ones merged.
fn merge_runs(mut runs: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    runs.sort_unstable();
    let mut leaves: Vec<(u64, u64)> = vec![];
    for (s, e) in runs {
        match leaves.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => leaves.push((s, e)),
        }
    }
    leaves
}

/// Records the ranges a proof asks for; the proof algorithms' control flow depends only on
/// the sizes, never on the hashes returned.
struct Recorder(Vec<(u64, u64)>);

impl SubtreeHashes for Recorder {
    type Error = Infallible;

    fn subtree_hash(&mut self, start: u64, end: u64) -> Result<Hash, Infallible> {
        self.0.push((start, end));
        Ok(EMPTY_ROOT)
    }
}

impl Plan {
    /// The plan for leaf ranges `[start, end)`.
    pub fn for_ranges(ranges: impl IntoIterator<Item = (u64, u64)>) -> Plan {
        let mut nodes = BTreeSet::new();
        let mut runs = vec![];
        for (start, end) in ranges {
            decompose(start, end, &mut nodes, &mut runs);
        }
        Plan {
            nodes: nodes.into_iter().collect(),
            leaves: merge_runs(runs),
        }
    }

    /// What both plans need, to be fetched at once (two proofs over the same log).
    pub fn union(self, other: Plan) -> Plan {
        let nodes: BTreeSet<NodeId> = self.nodes.into_iter().chain(other.nodes).collect();
        Plan {
            nodes: nodes.into_iter().collect(),
            leaves: merge_runs(self.leaves.into_iter().chain(other.leaves).collect()),
        }
    }

    /// Everything needed for the inclusion proof of leaf `index` in the tree of `tree_size`
    /// leaves, for that tree's root, and for the leaf's own data. `None` if out of range.
    pub fn inclusion(index: u64, tree_size: u64) -> Option<Plan> {
        let mut rec = Recorder(vec![(0, tree_size), (index, index + 1)]);
        inclusion_proof_from(&mut rec, index, tree_size).ok()?;
        Some(Plan::for_ranges(rec.0))
    }

    /// Everything needed for the consistency proof from `old_size` to `new_size`. `None` if
    /// `old_size > new_size`.
    pub fn consistency(old_size: u64, new_size: u64) -> Option<Plan> {
        let mut rec = Recorder(vec![]);
        consistency_proof_from(&mut rec, old_size, new_size).ok()?;
        Some(Plan::for_ranges(rec.0))
    }

    /// Number of leaves the plan reads.
    pub fn leaf_count(&self) -> u64 {
        self.leaves.iter().map(|(s, e)| e - s).sum()
    }
}

/// Of `missing` nodes, the ones not inside another: computing these from their leaves (with
/// [`nodes_from_leaves`]) yields all of them.
pub fn outermost(missing: &[NodeId]) -> Vec<NodeId> {
    let mut sorted = missing.to_vec();
    sorted.sort_by(|a, b| b.level.cmp(&a.level).then(a.index.cmp(&b.index)));
    let mut out: Vec<NodeId> = vec![];
    for n in sorted {
        if !out.iter().any(|o| o.contains(&n)) {
            out.push(n);
        }
    }
    out.sort();
    out
}

/// Every stored node (level >= [`STORED_LEVEL`]) inside `node`, including `node` itself,
/// computed from the leaf data (entry hashes) of its `2^level` leaves, in order. `None` if
/// the number of leaves is wrong.
pub fn nodes_from_leaves(node: NodeId, leaf_data: &[Hash]) -> Option<Vec<(NodeId, Hash)>> {
    if node.level < STORED_LEVEL || leaf_data.len() as u64 != node.end() - node.start() {
        return None;
    }
    let mut tree = MerkleTree::new();
    let mut out = vec![];
    for data in leaf_data {
        tree.push_reporting(leaf_hash(data), |level, index, hash| {
            if level >= STORED_LEVEL {
                out.push((
                    NodeId {
                        level,
                        index: index + (node.start() >> level),
                    },
                    *hash,
                ));
            }
        });
    }
    Some(out)
}

/// Nothing to build the requested hash from: a node or leaf the plan did not fetch, or one
/// storage does not hold.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Missing {
    #[error("subtree node (level {}, index {}) is not available", .0.level, .0.index)]
    Node(NodeId),
    #[error("leaf {0} is not available")]
    Leaf(u64),
}

/// Stored nodes and leaf data fetched for a [`Plan`]; a [`SubtreeHashes`] source.
#[derive(Clone, Debug, Default)]
pub struct StoredSource {
    nodes: HashMap<NodeId, Hash>,
    /// Leaf index -> leaf data (the entry hash, before `leaf_hash`).
    leaves: BTreeMap<u64, Hash>,
}

impl StoredSource {
    pub fn new() -> StoredSource {
        StoredSource::default()
    }

    pub fn add_node(&mut self, node: NodeId, hash: Hash) {
        self.nodes.insert(node, hash);
    }

    pub fn add_leaf(&mut self, index: u64, data: Hash) {
        self.leaves.insert(index, data);
    }

    pub fn has_node(&self, node: &NodeId) -> bool {
        self.nodes.contains_key(node)
    }

    /// The leaf data (entry hash) of leaf `index`, if fetched.
    pub fn leaf_data(&self, index: u64) -> Option<&Hash> {
        self.leaves.get(&index)
    }

    /// `MTH` of leaves `[start, end)`.
    pub fn hash(&self, start: u64, end: u64) -> Result<Hash, Missing> {
        let len = end - start;
        if len == 0 {
            return Ok(EMPTY_ROOT);
        }
        if len.is_power_of_two() && start & (len - 1) == 0 && len >= BLOCK {
            let node = NodeId {
                level: len.trailing_zeros(),
                index: start / len,
            };
            return self.nodes.get(&node).copied().ok_or(Missing::Node(node));
        }
        if len <= BLOCK {
            let mut tree = MerkleTree::new();
            for i in start..end {
                let data = self.leaves.get(&i).ok_or(Missing::Leaf(i))?;
                tree.push(leaf_hash(data));
            }
            return Ok(tree.root());
        }
        let k = split_point(len);
        Ok(node_hash(
            &self.hash(start, start + k)?,
            &self.hash(start + k, end)?,
        ))
    }
}

impl SubtreeHashes for StoredSource {
    type Error = Missing;

    fn subtree_hash(&mut self, start: u64, end: u64) -> Result<Hash, Missing> {
        self.hash(start, end)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::merkle::{consistency_proof, inclusion_proof, root};

    fn data(n: u64) -> Vec<Hash> {
        (0..n)
            .map(|i| {
                let mut h = [0u8; 32];
                h[..8].copy_from_slice(&i.to_be_bytes());
                h[31] = 0x5a;
                h
            })
            .collect()
    }

    /// What a log stores after `n` appends, recorded the way the writer does.
    fn stored_nodes(data: &[Hash]) -> HashMap<NodeId, Hash> {
        let mut tree = MerkleTree::new();
        let mut out = HashMap::new();
        for d in data {
            tree.push_reporting(leaf_hash(d), |level, index, hash| {
                if level >= STORED_LEVEL {
                    out.insert(NodeId { level, index }, *hash);
                }
            });
        }
        out
    }

    fn source(plan: &Plan, data: &[Hash], nodes: &HashMap<NodeId, Hash>) -> StoredSource {
        let mut s = StoredSource::new();
        for n in &plan.nodes {
            s.add_node(*n, nodes[n]);
        }
        for (a, b) in &plan.leaves {
            for i in *a..*b {
                s.add_leaf(i, data[i as usize]);
            }
        }
        s
    }

    fn sizes() -> Vec<u64> {
        let mut v: Vec<u64> = (1..20).collect();
        for m in [1u64, 2, 3, 4, 5, 7, 8, 9] {
            for d in [-2i64, -1, 0, 1, 2] {
                v.push((m * 256).saturating_add_signed(d));
            }
        }
        v.extend([1000, 2047, 2048, 2049, 2500, 3000]);
        v
    }

    /// Control L3: proofs built from stored nodes plus at most two blocks of leaves equal the
    /// proofs built from every leaf, for sizes around multiples of 256.
    #[test]
    fn l3_stored_node_proofs_equal_full_leaf_proofs() {
        let all = data(3000);
        let leaves: Vec<Hash> = all.iter().map(|d| leaf_hash(d)).collect();
        let nodes = stored_nodes(&all);
        for size in sizes() {
            let s = size as usize;
            let idxs = [0, 1, size / 3, size / 2, size.saturating_sub(257), size - 1];
            for index in idxs.into_iter().filter(|i| *i < size) {
                let plan = Plan::inclusion(index, size).unwrap();
                assert!(
                    plan.leaf_count() <= 2 * BLOCK + 1,
                    "{size} {index} {plan:?}"
                );
                let mut src = source(&plan, &all, &nodes);
                let proof = inclusion_proof_from(&mut src, index, size).unwrap();
                assert_eq!(
                    proof,
                    inclusion_proof(&leaves[..s], index).unwrap(),
                    "{index} of {size}"
                );
                assert_eq!(src.hash(0, size).unwrap(), root(&leaves[..s]));
                assert_eq!(src.leaf_data(index), Some(&all[index as usize]));
            }
            for old in [1, 2, size / 2, size.saturating_sub(256), size - 1, size] {
                if old == 0 || old > size {
                    continue;
                }
                let plan = Plan::consistency(old, size).unwrap();
                assert!(plan.leaf_count() <= 2 * BLOCK, "{old} {size} {plan:?}");
                let mut src = source(&plan, &all, &nodes);
                assert_eq!(
                    consistency_proof_from(&mut src, old, size).unwrap(),
                    consistency_proof(&leaves, old, size).unwrap(),
                    "{old} -> {size}"
                );
            }
        }
    }

    /// Control L4: one fetch for a consistency proof and the old tree's root (what the
    /// checkpointer reads before signing): the union of the plans serves both.
    #[test]
    fn l4_a_plan_union_serves_both_plans() {
        let all = data(3000);
        let leaves: Vec<Hash> = all.iter().map(|d| leaf_hash(d)).collect();
        let nodes = stored_nodes(&all);
        for (old, new) in [(600, 2000), (255, 257), (1024, 3000), (2999, 3000), (7, 7)] {
            let plan = Plan::consistency(old, new)
                .unwrap()
                .union(Plan::for_ranges([(0, old)]));
            let mut src = source(&plan, &all, &nodes);
            assert_eq!(
                consistency_proof_from(&mut src, old, new).unwrap(),
                consistency_proof(&leaves, old, new).unwrap(),
                "{old} -> {new}"
            );
            assert_eq!(src.hash(0, old).unwrap(), root(&leaves[..old as usize]));
            assert!(plan.leaves.windows(2).all(|w| w[0].1 < w[1].0), "{plan:?}");
        }
    }

    /// Control L3: the writer stores about one node per 128 appends, and nodes rebuilt from
    /// leaves (for logs written before nodes were stored) equal the ones the writer stores.
    #[test]
    fn l3_backfilled_nodes_equal_written_nodes() {
        let all = data(2048);
        let nodes = stored_nodes(&all);
        assert_eq!(nodes.len(), 8 + 4 + 2 + 1);
        let top = NodeId {
            level: 11,
            index: 0,
        };
        let rebuilt = nodes_from_leaves(top, &all).unwrap();
        assert_eq!(rebuilt.len(), nodes.len());
        for (id, h) in rebuilt {
            assert_eq!(nodes[&id], h);
        }
        let inner = NodeId { level: 9, index: 3 };
        let part = nodes_from_leaves(inner, &all[1536..2048]).unwrap();
        assert_eq!(part.len(), 3);
        assert!(part.iter().all(|(id, h)| nodes[id] == *h));
        assert!(nodes_from_leaves(inner, &all[..10]).is_none());
        assert_eq!(
            outermost(&[
                NodeId { level: 8, index: 7 },
                inner,
                NodeId { level: 8, index: 1 }
            ]),
            vec![NodeId { level: 8, index: 1 }, inner]
        );
    }

    /// Control L3: a tampered stored node gives a proof that does not verify against the
    /// true root (never a wrong "valid").
    #[test]
    fn l3_tampered_node_yields_a_failing_proof() {
        use crate::merkle::verify_inclusion;
        let all = data(1500);
        let leaves: Vec<Hash> = all.iter().map(|d| leaf_hash(d)).collect();
        let true_root = root(&leaves);
        let nodes = stored_nodes(&all);
        let plan = Plan::inclusion(10, 1500).unwrap();
        let true_proof = inclusion_proof(&leaves, 10).unwrap();
        let root_nodes = Plan::for_ranges([(0, 1500)]).nodes;
        assert!(plan.nodes.len() >= 4);
        for victim in &plan.nodes {
            let mut bad = nodes.clone();
            bad.get_mut(victim).unwrap()[0] ^= 1;
            let mut src = source(&plan, &all, &bad);
            let proof = inclusion_proof_from(&mut src, 10, 1500).unwrap();
            // Either the node is not on the path (the proof is the true one) or the proof
            // fails against the signed root.
            assert_eq!(
                verify_inclusion(&leaves[10], 10, 1500, &proof, &true_root),
                proof == true_proof,
                "{victim:?}"
            );
            // A node of the root's own decomposition changes the root the server reports.
            assert_eq!(
                src.hash(0, 1500).unwrap() == true_root,
                !root_nodes.contains(victim),
                "{victim:?}"
            );
            assert!(proof != true_proof || root_nodes.contains(victim));
        }
        // A node the plan did not fetch is reported, not guessed.
        let mut empty = StoredSource::new();
        assert!(matches!(
            inclusion_proof_from(&mut empty, 10, 1500),
            Err(crate::merkle::ProofError::Source(_))
        ));
    }
}
