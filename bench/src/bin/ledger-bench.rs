//! The ledger's Merkle tree at scale: the root over N leaves (default 1,000,000) next to plain
//! SHA-256 of the same lines on the same machine (the target is within 2×), the cached tree's
//! memory and build time, and inclusion and consistency proof generation and verification.
//!
//! `cargo run --release -p vaultmesh-bench --bin ledger-bench -- [LEAVES]`

use std::time::Instant;

use sha2::{Digest, Sha256};
use vaultmesh_proto::merkle::{self, Frontier, Tree};

fn main() -> anyhow::Result<()> {
    let n = vaultmesh_bench::arg_or(1, "LEAVES", 1_000_000)?;
    // Lines shaped like a small scan record (~300 bytes).
    let lines: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            format!(
                "{{\"kind\":\"scan\",\"ts\":\"2026-11-29T10:00:00Z\",\"node_id\":\"5eed0000-0000-4000-8000-{i:012}\",\"record\":{{\"scan_id\":\"{i:08x}-0000-4000-8000-000000000000\",\"findings\":[],\"fingerprint\":{{\"sysctl\":{{\"kernel.kptr_restrict\":\"1\"}}}},\"rules\":[\"sysctl\"]}}}}"
            )
            .into_bytes()
        })
        .collect();
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
        for l in &lines {
            last = Sha256::digest(l).into();
        }
        last
    });
    let tree = best(&|| {
        let mut f = Frontier::new();
        for l in &lines {
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
    for l in &lines {
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
    Ok(())
}
