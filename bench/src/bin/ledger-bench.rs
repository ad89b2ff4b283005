//! The ledger at scale (N leaves, default 1,000,000):
//!
//! - the Merkle tree: the root next to plain SHA-256 of the same lines on the same machine (the
//!   target is within 2×), the cached tree's memory and build time, and inclusion and
//!   consistency proof generation and verification;
//! - a checkpoint of a batch of new scans over N leaves: time and bytes written, before (the
//!   version 1 `PROOFCHAIN.json` rewritten whole, as `ProofChain::save` did) and after (a line
//!   appended to `PROOFCHAIN.jsonl`), both fsynced, in a directory on disk;
//! - start-up: the scan log read by the store's replay and again by the ledger (before) or once,
//!   the replay handing each line to the ledger (after).
//!
//! `cargo run --release -p vaultmesh-bench --bin ledger-bench -- [LEAVES] [DIR]`
//! (DIR: where the files go, default the system temporary directory; it must be on a disk, not
//! a tmpfs, for the fsyncs to count.)

use std::path::Path;
use std::time::Instant;

use sha2::{Digest, Sha256};
use vaultmesh_proto::auth::NodeKey;
use vaultmesh_proto::merkle::{self, Frontier, Tree};
use vaultmesh_store::ledger::chain::{ROOT_FILE, write_atomic};
use vaultmesh_store::ledger::{LEGACY_CHAIN_FILE, LOG_FILE, Leaves, ProofChain, file};
use vaultmesh_store::replay;

/// New scans per checkpoint in the checkpoint benchmark.
const BATCH: usize = 100;
/// Checkpoints timed, each way.
const ROUNDS: usize = 15;

fn main() -> anyhow::Result<()> {
    let n = vaultmesh_bench::arg_or(1, "LEAVES", 1_000_000)?;
    let base = std::env::args()
        .nth(2)
        .map_or_else(std::env::temp_dir, std::path::PathBuf::from);
    // Lines shaped like a small scan record (~300 bytes), and a batch of new ones.
    let lines: Vec<Vec<u8>> = (0..n + BATCH * ROUNDS)
        .map(|i| {
            format!(
                "{{\"kind\":\"scan\",\"ts\":\"2026-11-29T10:00:00Z\",\"node_id\":\"5eed0000-0000-4000-8000-{i:012}\",\"record\":{{\"scan_id\":\"{i:08x}-0000-4000-8000-000000000000\",\"findings\":[],\"fingerprint\":{{\"sysctl\":{{\"kernel.kptr_restrict\":\"1\"}}}},\"rules\":[\"sysctl\"]}}}}"
            )
            .into_bytes()
        })
        .collect();
    let (lines, new_lines) = lines.split_at(n);
    let bytes: usize = lines.iter().map(Vec::len).sum();
    println!(
        "ledger-bench: {n} leaves, {:.0} MiB of lines",
        bytes as f64 / (1 << 20) as f64
    );

    let best = |f: &dyn Fn() -> [u8; 32]| {
        (0..3)
            .map(|_| {
                let t = Instant::now();
                std::hint::black_box(f());
                t.elapsed().as_secs_f64()
            })
            .fold(f64::MAX, f64::min)
    };
    let raw = best(&|| {
        let mut last = [0u8; 32];
        for l in lines {
            last = Sha256::digest(l).into();
        }
        last
    });
    let tree = best(&|| {
        let mut f = Frontier::new();
        for l in lines {
            f.push(merkle::leaf_hash(l));
        }
        f.root()
    });
    println!(
        "plain SHA-256 of every line: {:.0} ms ({:.0} MiB/s)",
        raw * 1e3,
        bytes as f64 / (1 << 20) as f64 / raw
    );
    println!(
        "RFC 9162 root (leaf + node hashes): {:.0} ms = {:.2}× plain SHA-256",
        tree * 1e3,
        tree / raw
    );

    let t = Instant::now();
    let mut cached = Tree::new();
    for l in lines {
        cached.push(merkle::leaf_hash(l));
    }
    println!(
        "cached tree (every complete subtree): built in {:.0} ms, {:.0} MiB",
        t.elapsed().as_secs_f64() * 1e3,
        (2 * n * 32) as f64 / (1 << 20) as f64
    );
    let size = n as u64;
    let root = cached.root_at(size).unwrap_or_default();
    let samples = 10_000u64;
    let t = Instant::now();
    let mut proofs = Vec::new();
    for k in 0..samples {
        let i = k * 7919 % size;
        proofs.push((i, cached.inclusion(i, size).unwrap_or_default()));
    }
    let generate = t.elapsed().as_secs_f64() / samples as f64;
    let t = Instant::now();
    for (i, p) in &proofs {
        merkle::verify_inclusion(*i, size, &cached.leaves()[*i as usize], p, &root)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let ver = t.elapsed().as_secs_f64() / samples as f64;
    println!(
        "inclusion proof ({} hashes): generate {:.1} µs, verify {:.1} µs",
        proofs[0].1.len(),
        generate * 1e6,
        ver * 1e6
    );
    let m = size / 3;
    let t = Instant::now();
    let c = cached.consistency(m, size).unwrap_or_default();
    let cgen = t.elapsed().as_secs_f64();
    let t = Instant::now();
    merkle::verify_consistency(m, size, &cached.root_at(m).unwrap_or_default(), &root, &c)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!(
        "consistency proof {m} → {size} ({} hashes): generate {:.1} µs, verify {:.1} µs",
        c.len(),
        cgen * 1e6,
        t.elapsed().as_secs_f64() * 1e6
    );

    checkpoints(&base, lines, new_lines)?;
    start_up(&base, lines)?;
    Ok(())
}

/// Median of `v`.
fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A chain over `lines`, a checkpoint every `lines.len() / 100` of them, and the tree.
fn chain_over(lines: &[Vec<u8>], key: &NodeKey) -> anyhow::Result<(ProofChain, Tree)> {
    let mut chain = ProofChain::new("bench/sovereign-scans", key);
    let mut tree = Tree::new();
    let every = (lines.len() / 100).max(1);
    for batch in lines.chunks(every) {
        for l in batch {
            tree.push(merkle::leaf_hash(l));
        }
        let entry = chain
            .next_checkpoint(&tree, key)?
            .ok_or_else(|| anyhow::anyhow!("no checkpoint"))?;
        chain.checkpoints.push(entry);
    }
    Ok((chain, tree))
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// Checkpoints of `BATCH` new scans over the chain of `lines`: rewritten whole (version 1) and
/// appended (version 2).
fn checkpoints(base: &Path, lines: &[Vec<u8>], new_lines: &[Vec<u8>]) -> anyhow::Result<()> {
    let key = NodeKey::from_seed([9; 32]);
    let (chain, tree) = chain_over(lines, &key)?;
    let mut results = Vec::new();
    for append in [false, true] {
        let dir = tempfile::tempdir_in(base)?;
        let (mut chain, mut tree) = (chain.clone(), tree.clone());
        let mut appender = None;
        if append {
            write_atomic(dir.path(), file::CHAIN_FILE, &file::encode(&chain)?)?;
            let (opened, a) = file::open(dir.path())?;
            chain = opened.ok_or_else(|| anyhow::anyhow!("no chain"))?;
            appender = Some(a);
        }
        let (mut times, mut written) = (Vec::new(), Vec::new());
        for batch in new_lines.chunks(BATCH) {
            for l in batch {
                tree.push(merkle::leaf_hash(l));
            }
            let t = Instant::now();
            let entry = chain
                .next_checkpoint(&tree, &key)?
                .ok_or_else(|| anyhow::anyhow!("no checkpoint"))?;
            let bytes = match &mut appender {
                Some(a) => {
                    let before = file_len(&dir.path().join(file::CHAIN_FILE));
                    a.append(dir.path(), &mut chain, entry)?;
                    file_len(&dir.path().join(file::CHAIN_FILE)) - before
                }
                None => {
                    // What `ProofChain::save` did before the line format.
                    chain.checkpoints.push(entry);
                    let mut v1 = chain.clone();
                    v1.version = vaultmesh_store::ledger::chain::LEGACY_VERSION;
                    let json = serde_json::to_vec_pretty(&v1)?;
                    write_atomic(dir.path(), LEGACY_CHAIN_FILE, &json)?;
                    let note = &chain.checkpoints[chain.checkpoints.len() - 1].signed_note;
                    write_atomic(dir.path(), ROOT_FILE, note.as_bytes())?;
                    json.len() as u64
                }
            };
            times.push(t.elapsed().as_secs_f64());
            written.push((bytes + file_len(&dir.path().join(ROOT_FILE))) as f64);
        }
        results.push((median(&mut times), median(&mut written)));
    }
    let [(t1, b1), (t2, b2)] = results[..] else {
        anyhow::bail!("two runs");
    };
    println!(
        "checkpoint of {BATCH} new scans over {} leaves ({} checkpoints so far), median of {ROUNDS}:",
        lines.len(),
        chain.checkpoints.len()
    );
    println!(
        "  before, PROOFCHAIN.json rewritten whole: {:.1} ms, {:.1} MB written",
        t1 * 1e3,
        b1 / 1e6
    );
    println!(
        "  after, a line appended to PROOFCHAIN.jsonl: {:.2} ms, {:.1} KB written ({:.0}× less time, {:.0}× fewer bytes)",
        t2 * 1e3,
        b2 / 1e3,
        t1 / t2,
        b1 / b2
    );
    Ok(())
}

/// The scan log at start: read by the store's replay and again by the ledger, or once.
fn start_up(base: &Path, lines: &[Vec<u8>]) -> anyhow::Result<()> {
    let dir = tempfile::tempdir_in(base)?;
    let path = dir.path().join(LOG_FILE);
    let mut text = Vec::new();
    for l in lines {
        text.extend_from_slice(l);
        text.push(b'\n');
    }
    std::fs::write(&path, &text)?;
    let durable = text.len() as u64;
    let best = |f: &dyn Fn() -> anyhow::Result<u64>| -> anyhow::Result<f64> {
        let mut best = f64::MAX;
        for _ in 0..3 {
            let t = Instant::now();
            std::hint::black_box(f()?);
            best = best.min(t.elapsed().as_secs_f64());
        }
        Ok(best)
    };
    // The store's pass alone stands for replay's reading and splitting (its decoding is the
    // same either way and left out).
    let store = best(&|| {
        Ok(replay::for_each_line(&path, |_, _, l| {
            std::hint::black_box(l);
        })?)
    })?;
    let ledger = best(&|| Ok(Leaves::read(dir.path())?.tree.size()))?;
    let fed = best(&|| {
        let mut leaves = Leaves::default();
        replay::for_each_line(&path, |_, offset, l| {
            leaves.feed(offset, l, durable);
        })?;
        Ok(leaves.tree.size())
    })?;
    println!(
        "start-up, the scan log ({:.0} MiB, page cache warm, best of 3):",
        durable as f64 / (1 << 20) as f64
    );
    println!(
        "  before, read by the replay then by the ledger: {:.0} + {:.0} = {:.0} ms, {:.0} MiB read",
        store * 1e3,
        ledger * 1e3,
        (store + ledger) * 1e3,
        2.0 * durable as f64 / (1 << 20) as f64
    );
    println!(
        "  after, read once, the replay hashing for the ledger: {:.0} ms, {:.0} MiB read",
        fed * 1e3,
        durable as f64 / (1 << 20) as f64
    );
    Ok(())
}
