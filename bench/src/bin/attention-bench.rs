//! Attention at fleet scale: a real store with N nodes (realistic heartbeats, a scan report each
//! with drift, open incidents on some), then the engine's full re-evaluation (what every tick
//! does) and single-node refreshes (what every heartbeat costs).
//!
//! `cargo run --release -p vaultmesh-bench --bin attention-bench -- [NODES]` (default 1000).

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use vaultmesh_bench::{node_id, realistic_heartbeat};
use vaultmesh_engines::attention::{AttentionEngine, EngineOptions};
use vaultmesh_proto::NodeHeartbeat;
use vaultmesh_proto::event::NewEvent;
use vaultmesh_store::bus::Bus;
use vaultmesh_store::policy::{LivePolicies, Policies};
use vaultmesh_store::{JsonlStore, Store, StoreOptions};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let nodes = vaultmesh_bench::arg_or(1, "NODES", 1000)?;
    let dir = tempfile::tempdir()?;
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs)?;
    let bus = Arc::new(Bus::new(4096, 1 << 16));
    let (store, _) = JsonlStore::open(&StoreOptions::new(logs), bus)?;
    let store: Arc<dyn Store> = Arc::new(store);
    let policy_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    let policies = Arc::new(LivePolicies::new(
        Some(&policy_dir),
        Policies::load(Some(&policy_dir)).map_err(anyhow::Error::msg)?,
    ));

    let t0 = Instant::now();
    for i in 0..nodes {
        let hb: NodeHeartbeat = serde_json::from_value(realistic_heartbeat(i, 1))?;
        store.record_heartbeat(hb, Utc::now()).await?;
        store
            .record_scan(vaultmesh_bench::realistic_scan(i, 1), Utc::now())
            .await?;
        store
            .record_scan(vaultmesh_bench::realistic_scan(i, 2), Utc::now())
            .await?; // 40 facts of drift each
        if i % 5 == 0 {
            let new: NewEvent = serde_json::from_value(serde_json::json!({
                "kind": "incident", "node_id": node_id(i), "author": "bench",
                "body": {"title": "disk noise", "severity": "medium"}}))?;
            store.record_event(new, "bench".into()).await?;
        }
    }
    println!(
        "setup: {nodes} nodes, {} scans, {} incidents in {:.1} s",
        nodes * 2,
        nodes / 5,
        t0.elapsed().as_secs_f64()
    );

    let engine = AttentionEngine::new(Arc::clone(&store), policies, EngineOptions::default());
    // First pass logs every node's attention (all are non-OK here); then steady state.
    let (_, first) = vaultmesh_bench::timed(|| futures_block(engine.refresh_all()));
    let mut full = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        engine.refresh_all().await;
        full.push(t.elapsed());
    }
    full.sort();
    let mut single = Vec::new();
    for i in 0..nodes.min(2000) {
        let t = Instant::now();
        engine.refresh(node_id(i)).await;
        single.push(t.elapsed());
    }
    single.sort();
    let pct = |v: &[Duration], p: f64| v[((v.len() as f64 - 1.0) * p) as usize];
    println!(
        "first evaluation (logs {nodes} attention events): {:.1} ms",
        first.as_secs_f64() * 1e3
    );
    println!(
        "full re-evaluation (each tick): median {:.1} ms, max {:.1} ms",
        pct(&full, 0.5).as_secs_f64() * 1e3,
        pct(&full, 1.0).as_secs_f64() * 1e3
    );
    println!(
        "one node (each input): p50 {:.0} µs, p99 {:.0} µs",
        pct(&single, 0.5).as_secs_f64() * 1e6,
        pct(&single, 0.99).as_secs_f64() * 1e6
    );
    Ok(())
}

/// Runs a future to completion on the current runtime from synchronous timing code.
fn futures_block<F: std::future::Future>(f: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}
