//! Merkle trees over keccak256 with sorted pairs: the one algorithm shared by the arena
//! (match-result roots), learning (dataset roots) and `ProofOfLearning.verifyProof`.
//!
//! - A leaf is `keccak256(keccak256(data))`. Its preimage is 32 bytes while an inner
//!   node's is 64, so a proof can never pass an inner node off as a leaf.
//! - A parent is `keccak256(min(a, b) ++ max(a, b))`, so proofs need no left/right bits.
//! - Each level pairs nodes `(0, 1), (2, 3), ...`; an unpaired last node moves up as is.
//! - The root of no leaves is zero; the root of one leaf is that leaf.
//!
//! Sorted pairs make a root blind to the order of two siblings. Where order matters
//! (the pairs a training run used, in order) build leaves with [`ordered_leaf`], which
//! binds each item to its position.

use alloy::primitives::{B256, keccak256};

/// The leaf for `data`: `keccak256(keccak256(data))`.
pub fn leaf_hash(data: &[u8]) -> B256 {
    keccak256(keccak256(data))
}

/// The leaf for the item at `index` of an ordered list: [`leaf_hash`] of the index as
/// 8 big-endian bytes followed by `data`.
pub fn ordered_leaf(index: u64, data: &[u8]) -> B256 {
    let mut buf = Vec::with_capacity(8 + data.len());
    buf.extend_from_slice(&index.to_be_bytes());
    buf.extend_from_slice(data);
    leaf_hash(&buf)
}

/// The parent of two nodes: `keccak256(min(a, b) ++ max(a, b))`.
pub(crate) fn hash_pair(a: B256, b: B256) -> B256 {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    let mut buf = [0u8; 64];
    buf[..32].copy_from_slice(lo.as_slice());
    buf[32..].copy_from_slice(hi.as_slice());
    keccak256(buf)
}

/// A built tree: every level from the leaves up to the root, so many proofs are cheap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MerkleTree {
    levels: Vec<Vec<B256>>,
}

impl MerkleTree {
    /// Builds the tree over `leaves` (already hashed, e.g. with [`leaf_hash`]).
    pub fn new(leaves: Vec<B256>) -> Self {
        let mut levels = vec![leaves];
        while levels.last().is_some_and(|level| level.len() > 1) {
            let below = levels.last().expect("levels is never empty");
            let above = below
                .chunks(2)
                .map(|pair| match pair {
                    [a, b] => hash_pair(*a, *b),
                    [a] => *a,
                    _ => unreachable!("chunks(2) yields one or two nodes"),
                })
                .collect();
            levels.push(above);
        }
        Self { levels }
    }

    /// How many leaves the tree holds.
    pub(crate) fn len(&self) -> usize {
        self.levels[0].len()
    }

    /// True when the tree has no leaves.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.levels[0].is_empty()
    }

    /// The root (zero for an empty tree).
    pub fn root(&self) -> B256 {
        self.levels
            .last()
            .and_then(|top| top.first())
            .copied()
            .unwrap_or(B256::ZERO)
    }

    /// The sibling path from leaf `index` to the root, or `None` if out of range.
    pub fn proof(&self, index: usize) -> Option<Vec<B256>> {
        if index >= self.len() {
            return None;
        }
        let mut path = Vec::with_capacity(self.levels.len());
        let mut i = index;
        for level in &self.levels[..self.levels.len() - 1] {
            let sibling = i ^ 1;
            if let Some(node) = level.get(sibling) {
                path.push(*node);
            }
            i /= 2;
        }
        Some(path)
    }
}

/// The root over `leaves` (zero when there are none).
pub fn root(leaves: &[B256]) -> B256 {
    MerkleTree::new(leaves.to_vec()).root()
}

/// The proof for leaf `index` of `leaves`, or `None` if out of range.
pub fn proof(leaves: &[B256], index: usize) -> Option<Vec<B256>> {
    MerkleTree::new(leaves.to_vec()).proof(index)
}

/// True when `proof` links `leaf` to `root`; the same check as the contract's `verifyProof`.
pub fn verify(proof: &[B256], root: B256, leaf: B256) -> bool {
    proof
        .iter()
        .fold(leaf, |node, sibling| hash_pair(node, *sibling))
        == root
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn leaves(n: usize) -> Vec<B256> {
        (0..n)
            .map(|i| leaf_hash(format!("item {i}").as_bytes()))
            .collect()
    }

    #[test]
    fn empty_and_single_leaf_roots() {
        assert_eq!(root(&[]), B256::ZERO);
        assert!(MerkleTree::new(vec![]).is_empty());
        assert_eq!(proof(&[], 0), None);
        let one = leaves(1);
        assert_eq!(root(&one), one[0]);
        assert_eq!(proof(&one, 0), Some(vec![]));
        assert!(verify(&[], one[0], one[0]));
    }

    #[test]
    fn three_leaves_match_a_hand_built_tree() {
        let l = leaves(3);
        let expected = hash_pair(hash_pair(l[0], l[1]), l[2]);
        assert_eq!(root(&l), expected);
        assert_eq!(proof(&l, 2), Some(vec![hash_pair(l[0], l[1])]));
        assert_eq!(proof(&l, 0), Some(vec![l[1], l[2]]));
        assert_eq!(proof(&l, 3), None);
    }

    #[test]
    fn pair_hash_is_sorted_and_leaf_hash_is_double_keccak() {
        let (a, b) = (leaf_hash(b"a"), leaf_hash(b"b"));
        assert_eq!(hash_pair(a, b), hash_pair(b, a));
        let lo_hi = if a < b { [a, b] } else { [b, a] };
        assert_eq!(hash_pair(a, b), keccak256(lo_hi.concat()));
        assert_eq!(leaf_hash(b"x"), keccak256(keccak256(b"x")));
    }

    #[test]
    fn ordered_leaves_bind_position() {
        assert_ne!(ordered_leaf(0, b"p"), ordered_leaf(1, b"p"));
        let forward = root(&[ordered_leaf(0, b"a"), ordered_leaf(1, b"b")]);
        let swapped = root(&[ordered_leaf(0, b"b"), ordered_leaf(1, b"a")]);
        assert_ne!(forward, swapped);
    }

    #[test]
    fn inner_node_is_not_accepted_as_a_leaf_of_the_wrong_level() {
        let l = leaves(4);
        let tree = MerkleTree::new(l.clone());
        let inner = hash_pair(l[0], l[1]);
        // The inner node verifies only with the one-step path, never as a leaf with l[0]'s proof.
        assert!(!verify(&tree.proof(0).unwrap(), tree.root(), inner));
    }

    proptest! {
        #[test]
        fn every_proof_verifies_and_tampering_fails(n in 1usize..40, pick in any::<prop::sample::Index>(), flip in 0usize..32) {
            let l = leaves(n);
            let tree = MerkleTree::new(l.clone());
            let i = pick.index(n);
            let p = tree.proof(i).unwrap();
            prop_assert!(verify(&p, tree.root(), l[i]));
            let mut bad = l[i];
            bad.0[flip] ^= 0x01;
            prop_assert!(!verify(&p, tree.root(), bad));
            if !p.is_empty() {
                let mut bad_path = p.clone();
                bad_path[0].0[flip] ^= 0x80;
                prop_assert!(!verify(&bad_path, tree.root(), l[i]));
            }
        }
    }
}
