//! SSE and ingest benchmark against the real `vaultmesh-command-center serve` (release build):
//!
//! 1. Ingest: N heartbeats posted by 32 concurrent senders — throughput and p50/p99 latency —
//!    first with no SSE client, then with C clients attached (default 1,000) receiving every
//!    heartbeat.
//! 2. Delivery: with the C clients connected, notes are posted one at a time; each client
//!    records the time from the POST to its own receipt. p50/p99 over every (note, client).
//!
//! Usage: `cargo run --release -p vaultmesh-bench --bin sse-bench -- [CLIENTS] [HEARTBEATS]`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::StreamExt;
use tokio::io::AsyncBufReadExt;
use vaultmesh_bench::fleet::{Server, TOKEN, enroll_all, key_of, signed_post};
use vaultmesh_bench::{node_id, realistic_heartbeat};

/// Distinct nodes the senders report for (32 senders × 100 nodes each), fewer for a short run.
const NODES: usize = 3200;

/// Per-request cost of the agent signature on a realistic heartbeat (one core).
fn signature_costs(n: i64) {
    let key = key_of(0);
    let public = vaultmesh_proto::auth::parse_public_key(&key.public_base64())
        .unwrap_or_else(|_| unreachable!());
    let body = serde_json::to_vec(&realistic_heartbeat(0, 1)).unwrap_or_default();
    let id = node_id(0);
    let t = Instant::now();
    let mut sig = None;
    for i in 0..n {
        sig = Some(key.sign_request(
            "POST",
            "/api/agent/heartbeat",
            &id,
            1_764_410_400 + i,
            &body,
        ));
    }
    let sign = t.elapsed().as_secs_f64() / n as f64 * 1e6;
    let h = sig.unwrap_or_else(|| unreachable!());
    let msg = vaultmesh_proto::auth::request_message(
        "POST",
        "/api/agent/heartbeat",
        &id,
        1_764_410_400 + n - 1,
        &body,
    );
    let t = Instant::now();
    for _ in 0..n {
        let _ = vaultmesh_proto::auth::verify(&public, &h.signature, &msg);
    }
    let verify = t.elapsed().as_secs_f64() / n as f64 * 1e6;
    println!(
        "request signature on a {}-byte heartbeat: sign {sign:.1} us incl. SHA-256 of the body (agent), verify {verify:.1} us (Command Center)",
        body.len()
    );
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let clients: usize = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(1000);
    let heartbeats: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(5000);
    // Every client comes from 127.0.0.1 without signing in: one address holds them all.
    let streams = clients.to_string();
    let server = Server::start(&[
        "--sse-buffer",
        "8192",
        "--sse-per-address",
        &streams,
        "--sse-total",
        &streams,
    ])?;
    let base = server.base.clone();
    println!("sse-bench: {clients} SSE clients, {heartbeats} heartbeats, server {base}");
    signature_costs((heartbeats as i64 * 4).clamp(100, 20_000));

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = rt.block_on(run(&base, clients, heartbeats));
    drop(server);
    result
}

async fn run(base: &str, clients: usize, heartbeats: usize) -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()?;
    let enroll_start = Instant::now();
    let nodes = NODES.min(heartbeats.max(32));
    enroll_all(&http, base, nodes, TOKEN).await?;
    println!(
        "enrolled {nodes} nodes in {:.2}s",
        enroll_start.elapsed().as_secs_f64()
    );

    let (rate, p50, p99) = ingest(&http, base, heartbeats, nodes, 0).await?;
    println!(
        "ingest, no SSE clients:        {rate:>7.0} heartbeats/s  p50 {p50:>6.2} ms  p99 {p99:>6.2} ms"
    );

    // Connect the clients; each counts heartbeats and records note latencies.
    let start = Instant::now();
    let received_hb = Arc::new(AtomicU64::new(0));
    let (lat_tx, mut lat_rx) = tokio::sync::mpsc::unbounded_channel::<f64>();
    let mut tasks = Vec::with_capacity(clients);
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(clients);
    for _ in 0..clients {
        let (url, hb, lat, ready) = (
            format!("{base}/events?kinds=heartbeat,note"),
            received_hb.clone(),
            lat_tx.clone(),
            ready_tx.clone(),
        );
        let client = reqwest::Client::new();
        tasks.push(tokio::spawn(async move {
            let resp = client
                .get(url)
                .header("accept", "text/event-stream")
                .send()
                .await?;
            let _ = ready.send(()).await;
            let stream = resp
                .bytes_stream()
                .map(|r| r.map_err(std::io::Error::other));
            let mut lines = tokio_util::io::StreamReader::new(stream).lines();
            let mut event = String::new();
            while let Some(l) = lines.next_line().await? {
                if let Some(name) = l.strip_prefix("event: ") {
                    event = name.to_string();
                } else if let Some(data) = l.strip_prefix("data: ") {
                    if event == "heartbeat" {
                        hb.fetch_add(1, Ordering::Relaxed);
                    } else if event == "note"
                        && let Some(sent) = data
                            .split("sent=")
                            .nth(1)
                            .and_then(|s| s.split(';').next())
                            .and_then(|s| s.parse::<u128>().ok())
                    {
                        let now = start.elapsed().as_micros();
                        let _ = lat.send((now.saturating_sub(sent)) as f64 / 1000.0);
                    }
                }
            }
            anyhow::Ok(())
        }));
    }
    drop(lat_tx);
    for _ in 0..clients {
        ready_rx
            .recv()
            .await
            .context("a client failed to connect")?;
    }
    println!(
        "{clients} SSE clients connected in {:.2}s",
        start.elapsed().as_secs_f64()
    );

    // Delivery latency: one note at a time.
    let notes = 50;
    for i in 0..notes {
        let sent = start.elapsed().as_micros();
        let body = serde_json::json!({"kind": "note", "body": {"text": format!("bench {i} sent={sent};")}});
        let r = http
            .post(format!("{base}/api/events"))
            .json(&body)
            .send()
            .await?;
        anyhow::ensure!(r.status().as_u16() == 201, "note refused: {}", r.status());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut lat = Vec::new();
    while let Ok(v) = lat_rx.try_recv() {
        lat.push(v);
    }
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(f64::NAN)
    };
    println!(
        "delivery POST -> every client: {} of {} deliveries, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        lat.len(),
        notes * clients,
        pct(0.50),
        pct(0.99),
        lat.last().copied().unwrap_or(f64::NAN)
    );

    let before = received_hb.load(Ordering::Relaxed);
    let (rate, p50, p99) = ingest(&http, base, heartbeats, nodes, 1).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let delivered = received_hb.load(Ordering::Relaxed) - before;
    println!(
        "ingest, {clients} SSE clients:  {rate:>7.0} heartbeats/s  p50 {p50:>6.2} ms  p99 {p99:>6.2} ms  ({delivered} of {} heartbeat events delivered)",
        heartbeats * clients
    );
    for t in tasks {
        t.abort();
    }
    Ok(())
}

/// Posts `n` heartbeats for `nodes` nodes from 32 concurrent senders; (per second, p50 ms,
/// p99 ms).
async fn ingest(
    http: &reqwest::Client,
    base: &str,
    n: usize,
    nodes: usize,
    round: u64,
) -> anyhow::Result<(f64, f64, f64)> {
    let senders = 32;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for s in 0..senders {
        let (http, base) = (http.clone(), base.to_string());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            for i in 0..n / senders {
                // Distinct for one `i` across senders, so no two requests are identical.
                let node = (s + 32 * (i % 100)) % nodes;
                let hb = realistic_heartbeat(node, round * 1_000_000 + i as u64);
                let body = serde_json::to_vec(&hb)?;
                let t = Instant::now();
                let r = signed_post(&http, &base, "/api/agent/heartbeat", node, body)
                    .send()
                    .await?;
                anyhow::ensure!(r.status().is_success(), "heartbeat refused: {}", r.status());
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            anyhow::Ok(lat)
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await??);
    }
    let secs = start.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    Ok((lat.len() as f64 / secs, pct(0.5), pct(0.99)))
}
