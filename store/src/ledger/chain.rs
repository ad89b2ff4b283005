//! The chain of signed checkpoints over `sovereign-scans.jsonl` ([`ProofChain`]), making its
//! next checkpoint, and the checks that make it verifiable offline. How it is kept on disk
//! (`PROOFCHAIN.jsonl`, appended; `ROOT.txt`) is [`super::file`].
//!
//! The chain only grows: a new checkpoint is appended with the consistency proof from the one
//! before it and the leaf hashes of the lines it adds; nothing already in it changes.

use std::io::Write;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use vaultmesh_proto::auth::NodeKey;
use vaultmesh_proto::checkpoint::{Checkpoint, parse_verifier_key, verifier_key};
use vaultmesh_proto::merkle::{self, Frontier, Hash};

use super::LedgerError;

pub const ROOT_FILE: &str = "ROOT.txt";
pub const LOG_FILE: &str = "sovereign-scans.jsonl";
/// The format version of `PROOFCHAIN.jsonl` (a header line, then a line per checkpoint).
pub const VERSION: u32 = 2;
/// The format version of `PROOFCHAIN.json` (one document). Both hash as version 1 defined.
pub const LEGACY_VERSION: u32 = 1;

/// The chain: the header fields of `PROOFCHAIN.jsonl` and its checkpoints (also the layout of
/// the version 1 `PROOFCHAIN.json`, which serde reads and writes directly).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProofChain {
    /// Format version of the file it was read from: 2 (`PROOFCHAIN.jsonl`) or 1
    /// (`PROOFCHAIN.json`).
    pub version: u32,
    /// The checkpoints' origin line, also the signing key's name.
    pub origin: String,
    /// The log the tree is over (a file next to this one).
    pub log: String,
    /// How leaves are hashed, in words (for a reader; the rule is fixed by `version`).
    pub leaf: String,
    /// The C2SP verifier key of the signing key: `name+keyid+base64(0x01 ‖ key)`.
    pub verifier_key: String,
    pub checkpoints: Vec<Entry>,
}

/// One checkpoint of the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// Tree size: the first `size` lines of the log.
    pub size: u64,
    /// Root hash, lowercase hex.
    pub root: String,
    /// The signed checkpoint (what `ROOT.txt` held when this was the newest).
    pub signed_note: String,
    /// Consistency proof from the previous checkpoint's tree to this one (hex hashes; empty for
    /// the first checkpoint).
    pub consistency: Vec<String>,
    /// Leaf hashes of the lines this checkpoint adds (lines `previous size + 1 ..= size`),
    /// concatenated, standard base64. Lets a verifier name the first line that changed.
    pub leaves: String,
    /// When it was made (RFC 3339).
    pub created_at: chrono::DateTime<chrono::Utc>,
}

fn hex32(s: &str) -> Option<Hash> {
    hex::decode(s).ok()?.try_into().ok()
}

impl ProofChain {
    pub fn new(origin: &str, key: &NodeKey) -> ProofChain {
        let public = vaultmesh_proto::auth::parse_public_key(&key.public_base64())
            .unwrap_or_else(|_| unreachable!("a key's own public key parses"));
        ProofChain {
            version: VERSION,
            origin: origin.to_string(),
            log: LOG_FILE.to_string(),
            leaf: "SHA-256(0x00 || line bytes without the newline); node SHA-256(0x01 || left || right) (RFC 9162)".into(),
            verifier_key: verifier_key(origin, &public),
            checkpoints: Vec::new(),
        }
    }

    /// The size of the newest checkpoint (0 without one).
    pub fn size(&self) -> u64 {
        self.checkpoints.last().map_or(0, |e| e.size)
    }

    /// Whether `self` is `other` with zero or more checkpoints after its own: same origin, log,
    /// hashing rule and key, and `other`'s checkpoints its first ones (the format version may
    /// differ: a chain converted from `PROOFCHAIN.json` extends it).
    pub fn extends(&self, other: &ProofChain) -> bool {
        self.origin == other.origin
            && self.log == other.log
            && self.leaf == other.leaf
            && self.verifier_key == other.verifier_key
            && self.checkpoints.starts_with(&other.checkpoints)
    }

    /// The checkpoint over `tree` (all the log's leaves) to append, if it holds more than the
    /// newest one: signed, with the consistency proof from the newest one and the hashes of
    /// the leaves it adds. O(new leaves + log n): the cached tree answers the root and the
    /// proof in O(log n) hashes. [`super::file::Appender::append`] makes it part of the chain.
    pub fn next_checkpoint(
        &self,
        tree: &merkle::Tree,
        key: &NodeKey,
    ) -> Result<Option<Entry>, LedgerError> {
        let public = vaultmesh_proto::auth::parse_public_key(&key.public_base64())
            .map_err(|e| LedgerError::Chain(e.to_string()))?;
        if verifier_key(&self.origin, &public) != self.verifier_key {
            return Err(LedgerError::Chain(
                "the chain is signed by another key; refusing to mix keys in one chain".into(),
            ));
        }
        let old = self.size();
        let new = tree.size();
        if new <= old {
            return Ok(None);
        }
        let leaves = tree.leaves();
        let out_of_range = || LedgerError::Chain("tree size out of range".into());
        let root = tree.root_at(new).ok_or_else(out_of_range)?;
        let consistency = tree.consistency(old, new).ok_or_else(out_of_range)?;
        let note = Checkpoint {
            origin: self.origin.clone(),
            size: new,
            root,
        }
        .sign(&self.origin, key);
        let added: Vec<u8> = leaves[old as usize..].iter().flatten().copied().collect();
        Ok(Some(Entry {
            size: new,
            root: hex::encode(root),
            signed_note: note,
            consistency: consistency.iter().map(hex::encode).collect(),
            leaves: STANDARD.encode(added),
            created_at: chrono::Utc::now(),
        }))
    }

    /// Checks the whole chain against the log's `leaves` (recomputed from the log): every
    /// signature (by `pinned` when given, else by the chain's own verifier key), every root,
    /// every consistency proof, and every stored leaf hash. The first problem is the error.
    pub fn verify(
        &self,
        leaves: &[Hash],
        pinned: Option<&ed25519_dalek::VerifyingKey>,
    ) -> Result<(), LedgerError> {
        let bad = |m: String| Err(LedgerError::Tampered(m));
        if self.version != VERSION && self.version != LEGACY_VERSION {
            return bad(format!(
                "the chain's version {} is neither {VERSION} nor {LEGACY_VERSION}",
                self.version
            ));
        }
        let (name, own) = parse_verifier_key(&self.verifier_key)
            .map_err(|e| LedgerError::Chain(e.to_string()))?;
        if pinned.is_some_and(|p| p != &own) {
            return bad("the chain is signed by a key other than the one given".into());
        }
        let key = pinned.unwrap_or(&own);
        let mut frontier = Frontier::new();
        let mut prev: Option<(u64, Hash)> = None;
        for (i, e) in self.checkpoints.iter().enumerate() {
            let n = i + 1;
            let cp = Checkpoint::verify(&e.signed_note, &name, key)
                .map_err(|err| LedgerError::Tampered(format!("checkpoint {n}: {err}")))?;
            let Some(root) = hex32(&e.root) else {
                return bad(format!("checkpoint {n}: root is not a hex SHA-256"));
            };
            if cp.size != e.size || cp.root != root || cp.origin != self.origin {
                return bad(format!(
                    "checkpoint {n}: the signed note does not match its size, root or origin"
                ));
            }
            let from = prev.map_or(0, |p| p.0);
            if e.size <= from {
                return bad(format!(
                    "checkpoint {n}: size {} does not grow from {from}",
                    e.size
                ));
            }
            if e.size > leaves.len() as u64 {
                return bad(format!(
                    "{LOG_FILE} has {} lines but checkpoint {n} signed {}: lines were removed",
                    leaves.len(),
                    e.size
                ));
            }
            let stored = STANDARD.decode(&e.leaves).map_err(|_| {
                LedgerError::Tampered(format!("checkpoint {n}: leaves are not base64"))
            })?;
            if stored.len() as u64 != (e.size - from) * 32 {
                return bad(format!(
                    "checkpoint {n}: {} leaf bytes for {} lines",
                    stored.len(),
                    e.size - from
                ));
            }
            for (j, chunk) in stored.chunks(32).enumerate() {
                let index = from as usize + j;
                if leaves[index].as_slice() != chunk {
                    return bad(format!(
                        "line {} of {LOG_FILE} is not the line checkpoint {n} signed (changed, removed or reordered)",
                        index + 1
                    ));
                }
                frontier.push(leaves[index]);
            }
            if frontier.root() != root {
                return bad(format!(
                    "checkpoint {n}: the root does not match its leaves"
                ));
            }
            if let Some((m, root_m)) = prev {
                let proof: Option<Vec<Hash>> = e.consistency.iter().map(|h| hex32(h)).collect();
                let proof = proof.ok_or_else(|| {
                    LedgerError::Tampered(format!("checkpoint {n}: consistency proof is not hex"))
                })?;
                merkle::verify_consistency(m, e.size, &root_m, &root, &proof).map_err(|err| {
                    LedgerError::Tampered(format!(
                        "checkpoint {n}: consistency proof from size {m}: {err}"
                    ))
                })?;
            }
            prev = Some((e.size, root));
        }
        Ok(())
    }
}

/// Writes `dir/name` atomically: a temporary file, fsync, rename, fsync of the directory.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), LedgerError> {
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let path = dir.join(name);
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |e| LedgerError::Io(p, e)
    };
    let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(io(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io(&path))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))?;
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn leaves(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| merkle::leaf_hash(format!("{{\"line\":{i}}}").as_bytes()))
            .collect()
    }

    pub(crate) fn tree_of(leaves: &[Hash]) -> merkle::Tree {
        let mut t = merkle::Tree::new();
        for l in leaves {
            t.push(*l);
        }
        t
    }

    /// Appends the next checkpoint in memory only; whether there was one.
    pub(crate) fn extend(c: &mut ProofChain, tree: &merkle::Tree, key: &NodeKey) -> bool {
        match c.next_checkpoint(tree, key).unwrap() {
            Some(e) => {
                c.checkpoints.push(e);
                true
            }
            None => false,
        }
    }

    pub(crate) fn chain_over(sizes: &[usize], key: &NodeKey) -> (ProofChain, Vec<Hash>) {
        let all = leaves(*sizes.last().unwrap());
        let mut c = ProofChain::new("vaultmesh.test/scans", key);
        for s in sizes {
            assert!(extend(&mut c, &tree_of(&all[..*s]), key));
        }
        (c, all)
    }

    #[test]
    fn a_growing_log_gives_a_verifiable_chain() {
        let key = NodeKey::from_seed([3; 32]);
        let (mut c, all) = chain_over(&[1, 2, 5, 8, 13], &key);
        c.verify(&all, None).unwrap();
        assert!(
            !extend(&mut c, &tree_of(&all), &key),
            "nothing new: no checkpoint"
        );
        assert_eq!(c.checkpoints.len(), 5);
        assert!(c.checkpoints[0].consistency.is_empty());
        assert!(!c.checkpoints[4].consistency.is_empty());
        // Pinning the right key passes; another key is refused.
        let public = vaultmesh_proto::auth::parse_public_key(&key.public_base64()).unwrap();
        c.verify(&all, Some(&public)).unwrap();
        let other =
            vaultmesh_proto::auth::parse_public_key(&NodeKey::from_seed([4; 32]).public_base64())
                .unwrap();
        assert!(c.verify(&all, Some(&other)).is_err());
        // A longer log than the chain is fine (not yet checkpointed).
        let mut more = all.clone();
        more.push(merkle::leaf_hash(b"new"));
        c.verify(&more, None).unwrap();
    }

    #[test]
    fn changed_removed_and_reordered_lines_are_named() {
        let key = NodeKey::from_seed([3; 32]);
        let (c, all) = chain_over(&[4, 9], &key);
        let err = |leaves: &[Hash]| c.verify(leaves, None).unwrap_err().to_string();

        let mut changed = all.clone();
        changed[6] = merkle::leaf_hash(b"edited");
        assert!(
            err(&changed).contains("line 7 of sovereign-scans.jsonl"),
            "{}",
            err(&changed)
        );

        let mut removed = all.clone();
        removed.remove(2);
        assert!(err(&removed).contains("line 3"), "{}", err(&removed));
        assert!(err(&all[..8]).contains("has 8 lines but checkpoint 2 signed 9"));

        let mut reordered = all.clone();
        reordered.swap(0, 1);
        assert!(err(&reordered).contains("line 1 "), "{}", err(&reordered));
    }

    #[test]
    fn a_tampered_chain_is_refused() {
        let key = NodeKey::from_seed([3; 32]);
        let (c, all) = chain_over(&[3, 7], &key);
        let mut bad = c.clone();
        bad.checkpoints[1].consistency[0] = hex::encode([0u8; 32]);
        assert!(
            bad.verify(&all, None)
                .unwrap_err()
                .to_string()
                .contains("consistency")
        );
        let mut bad = c.clone();
        bad.checkpoints[1].root = hex::encode([1u8; 32]);
        assert!(
            bad.verify(&all, None)
                .unwrap_err()
                .to_string()
                .contains("does not match")
        );
        let mut bad = c.clone();
        bad.checkpoints[0].signed_note = bad.checkpoints[0].signed_note.replace("\n3\n", "\n2\n");
        assert!(
            bad.verify(&all, None)
                .unwrap_err()
                .to_string()
                .contains("checkpoint 1")
        );
    }
}

#[cfg(test)]
mod worked_example {
    //! The worked example of `docs/LEDGER.md`: if this fails, the document is wrong.
    use super::*;

    pub const LINES: [&str; 3] = [
        r#"{"kind":"scan","ts":"2026-11-29T10:00:00Z","node_id":"00000000-0000-4000-8000-000000000001","record":{"scan_id":"00000000-0000-4000-8000-0000000000a1"}}"#,
        r#"{"kind":"scan","ts":"2026-11-29T10:05:00Z","node_id":"00000000-0000-4000-8000-000000000002","record":{"scan_id":"00000000-0000-4000-8000-0000000000a2"}}"#,
        r#"{"kind":"scan","ts":"2026-11-29T10:10:00Z","node_id":"00000000-0000-4000-8000-000000000001","record":{"scan_id":"00000000-0000-4000-8000-0000000000a3"}}"#,
    ];

    /// `docs/LEDGER.md`'s value line `- label: `value``.
    fn value(label: &str, value: &str) -> String {
        format!("- {label}: `{value}`\n")
    }

    /// `docs/LEDGER.md`'s example block `name` (its text without the final newline).
    fn block(lang: &str, name: &str, text: &str) -> String {
        format!(
            "```{lang} example={name}\n{}\n```\n",
            text.trim_end_matches('\n')
        )
    }

    #[test]
    fn the_documented_example_holds() {
        let key = NodeKey::from_seed([7; 32]);
        let leaves: Vec<Hash> = LINES
            .iter()
            .map(|l| merkle::leaf_hash(l.as_bytes()))
            .collect();
        let doc =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/LEDGER.md"))
                .unwrap();
        let mut t = merkle::Tree::new();
        for l in &leaves {
            t.push(*l);
        }
        let origin = "example.org/sovereign-scans";
        let mut c = ProofChain::new(origin, &key);
        let mut first = merkle::Tree::new();
        first.push(leaves[0]);
        first.push(leaves[1]);
        assert!(super::tests::extend(&mut c, &first, &key));
        assert!(super::tests::extend(&mut c, &t, &key));
        for (e, at) in c
            .checkpoints
            .iter_mut()
            .zip(["2026-11-29T10:05:01Z", "2026-11-29T10:10:01Z"])
        {
            e.created_at = at.parse().unwrap();
        }
        let chain_file = String::from_utf8(super::super::file::encode(&c).unwrap()).unwrap();
        let root_txt = &c.checkpoints[1].signed_note;
        let mut facts = vec![
            value("key seed", &STANDARD.encode([7u8; 32])),
            value("origin", origin),
            value("public key (base64)", &key.public_base64()),
            value("key id", c.verifier_key.split('+').nth(1).unwrap()),
            value("verifier key", &c.verifier_key),
            block("text", "scan-log", &LINES.join("\n")),
            block("text", "root-txt", root_txt),
            block("jsonl", "proofchain", &chain_file),
        ];
        for (i, l) in leaves.iter().enumerate() {
            facts.push(value(&format!("leaf {i}"), &hex::encode(l)));
        }
        facts.push(value("root of 2", &c.checkpoints[0].root));
        facts.push(value("root of 3", &c.checkpoints[1].root));
        facts.push(value(
            "consistency 2 → 3",
            &c.checkpoints[1].consistency.join(", "),
        ));
        let inclusion: Vec<String> = t.inclusion(0, 3).unwrap().iter().map(hex::encode).collect();
        facts.push(value("inclusion of leaf 0 in 3", &inclusion.join(", ")));
        for f in &facts {
            assert!(doc.contains(f.as_str()), "docs/LEDGER.md lacks\n{f}");
        }

        // The documented files are what `ledger verify` accepts, pinned to the documented key.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(LOG_FILE), LINES.join("\n") + "\n").unwrap();
        std::fs::write(dir.path().join(super::super::CHAIN_FILE), &chain_file).unwrap();
        std::fs::write(dir.path().join(ROOT_FILE), root_txt).unwrap();
        let public = vaultmesh_proto::auth::parse_public_key(&key.public_base64()).unwrap();
        let v = super::super::verify_offline(dir.path(), Some(&public)).unwrap();
        assert_eq!((v.lines, v.checkpoints, v.torn), (3, 2, 0));
    }
}
