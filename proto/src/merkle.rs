//! RFC 9162 (RFC 6962) Merkle trees: leaf and node hashes, roots, inclusion and consistency
//! proofs, and their verification — the algorithms of RFC 9162 §2.1, over SHA-256.
//!
//! - leaf hash: `SHA-256(0x00 || leaf bytes)`
//! - node hash: `SHA-256(0x01 || left || right)`
//! - the root of the empty tree is `SHA-256("")`.
//!
//! Pure functions over `[u8; 32]` hashes; the ledger hashes each line of
//! `sovereign-scans.jsonl` (without its newline) as a leaf.

use sha2::{Digest, Sha256};

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// `SHA-256(0x00 || data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

#[cfg(test)]
thread_local! {
    /// Node hashes computed on this thread (tests count the work an operation does).
    static NODE_HASHES: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    #[cfg(test)]
    NODE_HASHES.with(|c| c.set(c.get() + 1));
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The root of the empty tree.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The largest power of two smaller than `n` (n > 1).
fn split(n: u64) -> u64 {
    debug_assert!(n > 1);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// The Merkle Tree Hash of `leaves` (leaf hashes), RFC 9162 §2.1.1.
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split(n as u64) as usize;
            node_hash(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// Builds the root incrementally in O(log n) memory: push leaf hashes in order, read the root
/// at any size. The same value as [`root`] over the same leaves.
#[derive(Debug, Clone, Default)]
pub struct Frontier {
    /// Roots of perfect subtrees, largest first, sizes the binary digits of `size`.
    stack: Vec<(u64, Hash)>,
    size: u64,
}

impl Frontier {
    pub fn new() -> Self {
        Frontier::default()
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends one leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        let mut node = (1u64, leaf);
        while let Some(&(size, left)) = self.stack.last() {
            if size != node.0 {
                break;
            }
            self.stack.pop();
            node = (size * 2, node_hash(&left, &node.1));
        }
        self.stack.push(node);
        self.size += 1;
    }

    /// The root of the leaves pushed so far.
    pub fn root(&self) -> Hash {
        let mut it = self.stack.iter().rev();
        let Some(&(_, mut acc)) = it.next() else {
            return empty_root();
        };
        for (_, left) in it {
            acc = node_hash(left, &acc);
        }
        acc
    }
}

/// The inclusion proof of leaf `index` in the tree of `leaves`, RFC 9162 §2.1.3.1.
pub fn inclusion_proof(index: u64, leaves: &[Hash]) -> Option<Vec<Hash>> {
    let n = leaves.len() as u64;
    if index >= n {
        return None;
    }
    let mut proof = Vec::new();
    path(index, leaves, &mut proof);
    Some(proof)
}

fn path(m: u64, leaves: &[Hash], out: &mut Vec<Hash>) {
    let n = leaves.len() as u64;
    if n <= 1 {
        return;
    }
    let k = split(n);
    if m < k {
        path(m, &leaves[..k as usize], out);
        out.push(root(&leaves[k as usize..]));
    } else {
        path(m - k, &leaves[k as usize..], out);
        out.push(root(&leaves[..k as usize]));
    }
}

/// The consistency proof from the tree of the first `m` leaves to the tree of all `leaves`,
/// RFC 9162 §2.1.4.1. Empty when `m` is 0 or equals the size.
pub fn consistency_proof(m: u64, leaves: &[Hash]) -> Option<Vec<Hash>> {
    let n = leaves.len() as u64;
    if m > n {
        return None;
    }
    let mut out = Vec::new();
    if m > 0 && m < n {
        subproof(m, leaves, true, &mut out);
    }
    Some(out)
}

fn subproof(m: u64, leaves: &[Hash], complete: bool, out: &mut Vec<Hash>) {
    let n = leaves.len() as u64;
    if m == n {
        if !complete {
            out.push(root(leaves));
        }
        return;
    }
    let k = split(n);
    if m <= k {
        subproof(m, &leaves[..k as usize], complete, out);
        out.push(root(&leaves[k as usize..]));
    } else {
        subproof(m - k, &leaves[k as usize..], false, out);
        out.push(root(&leaves[..k as usize]));
    }
}

/// A tree that keeps every complete subtree's hash (about twice the leaf hashes in memory), so
/// nothing is ever re-hashed: a push costs one leaf's node hashes (amortized under two), and a
/// root at any size, an inclusion proof or a consistency proof O(log n) node hashes — only the
/// subtrees along the tree's right edge are not stored, and each operation computes them once.
/// A ledger checkpoint of k new leaves over n is so O(k + log n) (tested by counting hashes).
/// Results are identical to [`root`], [`inclusion_proof`] and [`consistency_proof`].
#[derive(Debug, Clone, Default)]
pub struct Tree {
    /// `levels[h][i]`: the hash of leaves `i·2^h .. (i+1)·2^h`.
    levels: Vec<Vec<Hash>>,
}

impl Tree {
    pub fn new() -> Self {
        Tree::default()
    }

    pub fn size(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    /// The leaf hashes.
    pub fn leaves(&self) -> &[Hash] {
        self.levels.first().map_or(&[], |l| l.as_slice())
    }

    /// Appends a leaf hash, completing the subtrees it closes.
    pub fn push(&mut self, leaf: Hash) {
        if self.levels.is_empty() {
            self.levels.push(Vec::new());
        }
        self.levels[0].push(leaf);
        let mut h = 0;
        while self.levels[h].len().is_multiple_of(2) {
            let l = &self.levels[h];
            let node = node_hash(&l[l.len() - 2], &l[l.len() - 1]);
            if self.levels.len() == h + 1 {
                self.levels.push(Vec::new());
            }
            self.levels[h + 1].push(node);
            h += 1;
        }
    }

    /// The hash of leaves `start..end` (a range the RFC 9162 recursion produces: `start` is a
    /// multiple of the largest power of two not above `end - start`).
    fn range(&self, start: u64, end: u64) -> Hash {
        let n = end - start;
        if n == 0 {
            return empty_root();
        }
        if n.is_power_of_two() && start.is_multiple_of(n) {
            let h = n.trailing_zeros() as usize;
            return self.levels[h][(start >> h) as usize];
        }
        let k = split(n);
        node_hash(&self.range(start, start + k), &self.range(start + k, end))
    }

    /// The root of the first `size` leaves.
    pub fn root_at(&self, size: u64) -> Option<Hash> {
        (size <= self.size()).then(|| self.range(0, size))
    }

    /// The inclusion proof of `index` in the tree of the first `size` leaves.
    pub fn inclusion(&self, index: u64, size: u64) -> Option<Vec<Hash>> {
        if index >= size || size > self.size() {
            return None;
        }
        let mut out = Vec::new();
        self.path(index, 0, size, &mut out);
        Some(out)
    }

    fn path(&self, m: u64, start: u64, end: u64, out: &mut Vec<Hash>) {
        let n = end - start;
        if n <= 1 {
            return;
        }
        let k = split(n);
        if m < k {
            self.path(m, start, start + k, out);
            out.push(self.range(start + k, end));
        } else {
            self.path(m - k, start + k, end, out);
            out.push(self.range(start, start + k));
        }
    }

    /// The consistency proof from the first `m` leaves to the first `n`.
    pub fn consistency(&self, m: u64, n: u64) -> Option<Vec<Hash>> {
        if m > n || n > self.size() {
            return None;
        }
        let mut out = Vec::new();
        if m > 0 && m < n {
            self.sub(m, 0, n, true, &mut out);
        }
        Some(out)
    }

    fn sub(&self, m: u64, start: u64, end: u64, complete: bool, out: &mut Vec<Hash>) {
        let n = end - start;
        if m == n {
            if !complete {
                out.push(self.range(start, end));
            }
            return;
        }
        let k = split(n);
        if m <= k {
            self.sub(m, start, start + k, complete, out);
            out.push(self.range(start + k, end));
        } else {
            self.sub(m - k, start + k, end, false, out);
            out.push(self.range(start, start + k));
        }
    }
}

/// Why a proof does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("index {index} is not below tree size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("the proof has {got} hashes; expected {want}")]
    WrongLength { got: usize, want: usize },
    #[error("the proof does not lead to the expected root")]
    RootMismatch,
    #[error("sizes {0} and {1} cannot be proven consistent (the first is larger)")]
    BadSizes(u64, u64),
}

/// Verifies an inclusion proof, RFC 9162 §2.1.3.2.
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let (mut f_n, mut s_n) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s_n == 0 {
            return Err(ProofError::WrongLength {
                got: proof.len(),
                want: inclusion_len(index, size),
            });
        }
        if f_n & 1 == 1 || f_n == s_n {
            r = node_hash(p, &r);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    if s_n != 0 {
        return Err(ProofError::WrongLength {
            got: proof.len(),
            want: inclusion_len(index, size),
        });
    }
    if &r == root {
        Ok(())
    } else {
        Err(ProofError::RootMismatch)
    }
}

fn inclusion_len(index: u64, size: u64) -> usize {
    let (mut f, mut s, mut len) = (index, size - 1, 0);
    while s != 0 {
        if f & 1 == 0 && f == s {
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        }
        len += 1;
        f >>= 1;
        s >>= 1;
    }
    len
}

/// Verifies a consistency proof from (`m`, `root_m`) to (`n`, `root_n`), RFC 9162 §2.1.4.2.
pub fn verify_consistency(
    m: u64,
    n: u64,
    root_m: &Hash,
    root_n: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if m > n {
        return Err(ProofError::BadSizes(m, n));
    }
    if m == n {
        return if proof.is_empty() && root_m == root_n {
            Ok(())
        } else if !proof.is_empty() {
            Err(ProofError::WrongLength {
                got: proof.len(),
                want: 0,
            })
        } else {
            Err(ProofError::RootMismatch)
        };
    }
    if m == 0 {
        return if proof.is_empty() {
            Ok(())
        } else {
            Err(ProofError::WrongLength {
                got: proof.len(),
                want: 0,
            })
        };
    }
    // If m is a power of two, the old root is the first node of the path.
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if m.is_power_of_two() {
        path.push(*root_m);
    }
    path.extend_from_slice(proof);
    let Some((first, rest)) = path.split_first() else {
        return Err(ProofError::WrongLength { got: 0, want: 1 });
    };
    let (mut f_n, mut s_n) = (m - 1, n - 1);
    while f_n & 1 == 1 {
        f_n >>= 1;
        s_n >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if s_n == 0 {
            return Err(ProofError::WrongLength {
                got: proof.len(),
                want: proof.len() - 1,
            });
        }
        if f_n & 1 == 1 || f_n == s_n {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    if s_n != 0 {
        return Err(ProofError::WrongLength {
            got: proof.len(),
            want: proof.len() + 1,
        });
    }
    if &fr == root_m && &sr == root_n {
        Ok(())
    } else {
        Err(ProofError::RootMismatch)
    }
}

#[cfg(test)]
mod tests {
    //! Known-answer vectors from RFC 6962's reference tests (certificate-transparency-go
    //! `merkle` package and transparency-dev/merkle `testonly`): the 8 leaves below, their
    //! roots at every size, and inclusion and consistency proofs.

    use super::*;

    fn h(s: &str) -> Hash {
        let v = hex::decode(s).unwrap();
        v.try_into().unwrap()
    }

    fn leaves() -> Vec<Hash> {
        [
            "",
            "00",
            "10",
            "2021",
            "3031",
            "40414243",
            "5051525354555657",
            "606162636465666768696a6b6c6d6e6f",
        ]
        .iter()
        .map(|d| leaf_hash(&hex::decode(d).unwrap()))
        .collect()
    }

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

    #[test]
    fn empty_and_known_roots() {
        assert_eq!(
            hex::encode(empty_root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let l = leaves();
        for (i, want) in ROOTS.iter().enumerate() {
            assert_eq!(root(&l[..=i]), h(want), "size {}", i + 1);
            let mut f = Frontier::new();
            for x in &l[..=i] {
                f.push(*x);
            }
            assert_eq!(f.root(), h(want), "frontier, size {}", i + 1);
        }
        assert_eq!(Frontier::new().root(), empty_root());
    }

    #[test]
    fn known_inclusion_proofs() {
        let l = leaves();
        // (index, size, proof) from the reference test vectors.
        let cases: [(u64, u64, &[&str]); 5] = [
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
        for (index, size, want) in cases {
            let tree = &l[..size as usize];
            let proof = inclusion_proof(index, tree).unwrap();
            let want: Vec<Hash> = want.iter().map(|s| h(s)).collect();
            assert_eq!(proof, want, "inclusion of {index} in {size}");
            verify_inclusion(index, size, &tree[index as usize], &proof, &root(tree)).unwrap();
        }
        // Every leaf of every size verifies; a wrong leaf, root or index does not.
        for size in 1..=8u64 {
            let tree = &l[..size as usize];
            let r = root(tree);
            for i in 0..size {
                let p = inclusion_proof(i, tree).unwrap();
                verify_inclusion(i, size, &tree[i as usize], &p, &r).unwrap();
                let other = leaf_hash(b"not in the tree");
                assert!(verify_inclusion(i, size, &other, &p, &r).is_err());
                if size > 1 {
                    assert!(
                        verify_inclusion((i + 1) % size, size, &tree[i as usize], &p, &r).is_err()
                    );
                }
            }
            assert!(verify_inclusion(size, size, &tree[0], &[], &r).is_err());
        }
        assert!(inclusion_proof(8, &l).is_none());
    }

    #[test]
    fn the_cached_tree_agrees_with_the_reference_functions() {
        let mut t = Tree::new();
        let mut all = Vec::new();
        for i in 0..70u32 {
            let leaf = leaf_hash(&i.to_le_bytes());
            t.push(leaf);
            all.push(leaf);
        }
        for n in 0..=70u64 {
            assert_eq!(t.root_at(n).unwrap(), root(&all[..n as usize]), "root {n}");
            for i in 0..n {
                assert_eq!(
                    t.inclusion(i, n),
                    inclusion_proof(i, &all[..n as usize]),
                    "inclusion {i}/{n}"
                );
            }
            for m in 0..=n {
                assert_eq!(
                    t.consistency(m, n),
                    consistency_proof(m, &all[..n as usize]),
                    "consistency {m}/{n}"
                );
            }
        }
        assert!(t.root_at(71).is_none() && t.inclusion(5, 71).is_none());
    }

    fn hashes(f: impl FnOnce()) -> u64 {
        let before = NODE_HASHES.with(|c| c.get());
        f();
        NODE_HASHES.with(|c| c.get()) - before
    }

    /// A checkpoint of k new leaves costs O(k + log n) node hashes: the pushes, the new root and
    /// the consistency proof from the previous size — the same work at 2^17 leaves as at 2^10,
    /// up to the log.
    #[test]
    fn appending_and_proving_cost_new_leaves_plus_log_n_hashes() {
        let mut t = Tree::new();
        let mut size = 0u64;
        for n in [1_000u64, 30_001, 131_071, 131_072 + 3_333] {
            while size < n - 10 {
                t.push(leaf_hash(&size.to_le_bytes()));
                size += 1;
            }
            let old = size;
            let push = hashes(|| {
                for _ in 0..10 {
                    t.push(leaf_hash(&size.to_le_bytes()));
                    size += 1;
                }
            });
            let log = 64 - n.leading_zeros() as u64; // ⌈log2 n⌉ at most
            assert!(push <= 10 + log, "{n}: {push} hashes for 10 pushes");
            let root = hashes(|| {
                t.root_at(n).unwrap();
            });
            assert!(root <= log, "{n}: root in {root} hashes");
            let proof = hashes(|| {
                t.consistency(old, n).unwrap();
            });
            assert!(proof <= 2 * log, "{n}: consistency proof in {proof} hashes");
            for m in [1, old / 3, old - 1] {
                let proof = hashes(|| {
                    t.consistency(m, n).unwrap();
                });
                assert!(
                    proof <= 2 * log,
                    "{n}: consistency from {m} in {proof} hashes"
                );
                let path = hashes(|| {
                    t.inclusion(m, n).unwrap();
                });
                assert!(path <= 2 * log, "{n}: inclusion of {m} in {path} hashes");
            }
        }
    }

    #[test]
    fn known_consistency_proofs() {
        let l = leaves();
        let cases: [(u64, u64, &[&str]); 4] = [
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
        ];
        for (m, n, want) in cases {
            let proof = consistency_proof(m, &l[..n as usize]).unwrap();
            let want: Vec<Hash> = want.iter().map(|s| h(s)).collect();
            assert_eq!(proof, want, "consistency {m} → {n}");
        }
        for n in 1..=8u64 {
            for m in 0..=n {
                let p = consistency_proof(m, &l[..n as usize]).unwrap();
                let (rm, rn) = (root(&l[..m as usize]), root(&l[..n as usize]));
                verify_consistency(m, n, &rm, &rn, &p).unwrap_or_else(|e| panic!("{m} → {n}: {e}"));
                if m > 0 && m < n {
                    let bad = leaf_hash(b"x");
                    assert!(verify_consistency(m, n, &bad, &rn, &p).is_err());
                    assert!(verify_consistency(m, n, &rm, &bad, &p).is_err());
                }
            }
        }
        assert!(verify_consistency(3, 2, &ROOTS.map(h)[2], &ROOTS.map(h)[1], &[]).is_err());
    }
}
