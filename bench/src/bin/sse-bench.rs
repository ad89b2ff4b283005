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

/// The event a client is reading the data of.
#[derive(Clone, Copy)]
enum Event {
    Heartbeat,
    Note,
    Other,
}

/// The `sent=<micros>;` a bench note carries in its text.
fn sent_at(data: &[u8]) -> Option<u128> {
    let at = data.windows(5).position(|w| w == b"sent=")? + 5;
    let len = data[at..].iter().position(|b| !b.is_ascii_digit())?;
    std::str::from_utf8(&data[at..at + len]).ok()?.parse().ok()
}

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
    let result = rt.block_on(run(&base, server.child.id(), clients, heartbeats));
    drop(server);
    result
}

async fn run(base: &str, pid: u32, clients: usize, heartbeats: usize) -> anyhow::Result<()> {
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

    let cpu_before = vaultmesh_bench::cpu_time(pid)?;
    let (rate, p50, p99) = ingest(&http, base, heartbeats, nodes, 0).await?;
    let cpu = vaultmesh_bench::cpu_time(pid)? - cpu_before;
    println!(
        "ingest, no SSE clients:        {rate:>7.0} heartbeats/s  p50 {p50:>6.2} ms  p99 {p99:>6.2} ms  (Command Center CPU {:.0} us per heartbeat)",
        cpu.as_secs_f64() * 1e6 / heartbeats as f64
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
            // Lines as bytes into one reused buffer: the clients share the two CPUs with the
            // Command Center, so they only look for what they count (a `String` per line
            // and its UTF-8 check cost them more than the server spends sending it).
            let mut reader = tokio::io::BufReader::with_capacity(
                64 << 10,
                tokio_util::io::StreamReader::new(stream),
            );
            let mut line = Vec::with_capacity(4096);
            let mut event = Event::Other;
            loop {
                line.clear();
                if reader.read_until(b'\n', &mut line).await? == 0 {
                    break;
                }
                if let Some(name) = line.strip_prefix(b"event: ") {
                    event = match name {
                        b"heartbeat\n" => Event::Heartbeat,
                        b"note\n" => Event::Note,
                        _ => Event::Other,
                    };
                } else if line.starts_with(b"data: ") {
                    match event {
                        Event::Heartbeat => {
                            hb.fetch_add(1, Ordering::Relaxed);
                        }
                        Event::Note => {
                            if let Some(sent) = sent_at(&line) {
                                let now = start.elapsed().as_micros();
                                let _ = lat.send((now.saturating_sub(sent)) as f64 / 1000.0);
                            }
                        }
                        Event::Other => {}
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
    let cpu_before = vaultmesh_bench::cpu_time(pid)?;
    let (rate, p50, p99) = ingest(&http, base, heartbeats, nodes, 1).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cpu = vaultmesh_bench::cpu_time(pid)? - cpu_before;
    let delivered = received_hb.load(Ordering::Relaxed) - before;
    println!(
        "ingest, {clients} SSE clients:  {rate:>7.0} heartbeats/s  p50 {p50:>6.2} ms  p99 {p99:>6.2} ms  ({delivered} of {} heartbeat events delivered; Command Center CPU {:.0} us per heartbeat, {:.2} us per event delivered; goal: >= 5,000 heartbeats/s, before: 634)",
        heartbeats * clients,
        cpu.as_secs_f64() * 1e6 / heartbeats as f64,
        cpu.as_secs_f64() * 1e6 / delivered.max(1) as f64
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
