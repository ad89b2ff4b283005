//! The fleet simulator behind `vaultmesh-fleet-sim` and `ingest-bench`: N simulated nodes enroll,
//! report once, then send signed heartbeats, with scan reports and command round trips (issue →
//! long-poll → signed receipt) mixed in, at a fixed rate or as fast as the server answers.
//!
//! Latency is measured from when a request was *due* (open loop, as wrk2 does), so a server
//! that falls behind a fixed rate shows it in its percentiles instead of hiding it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use vaultmesh_proto::auth::{HEADER_NODE, HEADER_SIGNATURE, HEADER_TIMESTAMP};
use vaultmesh_proto::command::{SignedCommand, SignedReceipt};
use vaultmesh_proto::session::{HEADER_MAC, HEADER_SESSION, SessionId, SessionKey, SharedSecret};

use crate::fleet::{enroll_all, key_of};
use crate::{node_id, realistic_heartbeat, realistic_scan};

/// What to send, and how fast.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The Command Center, e.g. `http://127.0.0.1:8088`.
    pub base: String,
    /// Enrollment token; `None` skips enrollment (nodes already enrolled, or a floor server).
    pub token: Option<String>,
    pub nodes: usize,
    /// Timed requests in total (after one warm-up heartbeat per node).
    pub requests: usize,
    /// Requests per second; `None`: as fast as the server answers.
    pub rate: Option<f64>,
    /// Connections (and requests in flight).
    pub concurrency: usize,
    /// Every Nth request is a scan report (0: none).
    pub scan_every: usize,
    /// Every Nth request is a command round trip (0: none; needs a signing key on the server).
    pub command_every: usize,
    /// Sign every request before the clock starts, so the load generator costs the least CPU
    /// while it runs (timestamps must then stay within the server's 300 s skew window).
    pub presign: bool,
    /// Send session MACs with this Command Center key (base64) instead of a signature per
    /// request, as agents that pin the key do (`docs/PROTOCOL.md`, "Session MACs").
    pub cc_public_key: Option<String>,
}

impl SimConfig {
    /// Heartbeats only, flat out over 32 connections, presigned, without enrolling.
    pub fn heartbeats(base: &str, nodes: usize, requests: usize) -> SimConfig {
        SimConfig {
            base: base.to_string(),
            token: None,
            nodes,
            requests,
            rate: None,
            concurrency: 32,
            scan_every: 0,
            command_every: 0,
            presign: true,
            cc_public_key: None,
        }
    }
}

/// Kinds of timed operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum OpKind {
    Heartbeat,
    Scan,
    /// The whole command round trip: issue (admin API), long-poll, signed receipt.
    Command,
}

impl OpKind {
    pub fn name(self) -> &'static str {
        match self {
            OpKind::Heartbeat => "heartbeat",
            OpKind::Scan => "scan",
            OpKind::Command => "command round trip",
        }
    }
}

/// What one run measured.
#[derive(Debug, Default)]
pub struct SimReport {
    pub elapsed: Duration,
    /// Latencies in milliseconds, per kind, sorted.
    pub latencies: BTreeMap<OpKind, Vec<f64>>,
    /// Failed requests by reason (`HTTP 503`, `connect`, …).
    pub errors: BTreeMap<String, usize>,
    /// Request bytes sent in the timed phase.
    pub bytes: u64,
}

impl SimReport {
    /// Successful operations of every kind.
    pub fn ok(&self) -> usize {
        self.latencies.values().map(Vec::len).sum()
    }

    pub fn error_count(&self) -> usize {
        self.errors.values().sum()
    }

    /// Successful operations per second.
    pub fn throughput(&self) -> f64 {
        self.ok() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The `p`-quantile (0..=1) latency of `kind` in ms.
    pub fn percentile(&self, kind: OpKind, p: f64) -> f64 {
        percentile(self.latencies.get(&kind).map_or(&[][..], Vec::as_slice), p)
    }

    /// One row of a heartbeat table: name, throughput, p50, p99, errors.
    pub fn heartbeat_row(&self, name: &str) -> String {
        format!(
            "  {name:<38} {:>12.0} {:>9.2} {:>9.2} {:>7}",
            self.throughput(),
            self.percentile(OpKind::Heartbeat, 0.5),
            self.percentile(OpKind::Heartbeat, 0.99),
            self.error_count()
        )
    }

    /// A table for people.
    pub fn render(&self) -> String {
        let mut out = format!(
            "{} ok, {} failed in {:.2} s: {:.0} requests/s, {:.1} MiB/s sent\n",
            self.ok(),
            self.error_count(),
            self.elapsed.as_secs_f64(),
            self.throughput(),
            self.bytes as f64 / 1_048_576.0 / self.elapsed.as_secs_f64().max(1e-9)
        );
        out.push_str(&format!(
            "  {:<20} {:>8} {:>9} {:>9} {:>9} {:>9}\n",
            "kind", "count", "p50 ms", "p90 ms", "p99 ms", "max ms"
        ));
        for (kind, lat) in &self.latencies {
            out.push_str(&format!(
                "  {:<20} {:>8} {:>9.2} {:>9.2} {:>9.2} {:>9.2}\n",
                kind.name(),
                lat.len(),
                percentile(lat, 0.50),
                percentile(lat, 0.90),
                percentile(lat, 0.99),
                lat.last().copied().unwrap_or(f64::NAN)
            ));
        }
        for (why, n) in &self.errors {
            out.push_str(&format!("  error: {why}: {n}\n"));
        }
        out
    }

    /// The same figures as JSON, for scripts.
    pub fn to_json(&self) -> serde_json::Value {
        let kinds: serde_json::Map<String, serde_json::Value> = self
            .latencies
            .iter()
            .map(|(k, lat)| {
                (
                    k.name().to_string(),
                    serde_json::json!({
                        "count": lat.len(),
                        "p50_ms": percentile(lat, 0.50),
                        "p90_ms": percentile(lat, 0.90),
                        "p99_ms": percentile(lat, 0.99),
                        "max_ms": lat.last().copied().unwrap_or(f64::NAN),
                    }),
                )
            })
            .collect();
        serde_json::json!({
            "elapsed_s": self.elapsed.as_secs_f64(),
            "ok": self.ok(),
            "failed": self.error_count(),
            "per_second": self.throughput(),
            "kinds": kinds,
            "errors": self.errors,
        })
    }
}

/// The `p`-quantile of sorted `v` (NaN when empty).
/// The `p` quantile of `v`, which must be sorted.
pub fn percentile(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v[((v.len() as f64 * p) as usize).min(v.len() - 1)]
}

/// One request, ready to send.
#[derive(Debug, Clone)]
struct Prepared {
    path: &'static str,
    node: usize,
    body: bytes::Bytes,
    /// The credential headers, when presigned.
    signature: Option<Credential>,
}

/// What the `j`-th timed operation is, and for which node. Heartbeats go round the fleet;
/// scans and command round trips each go round it on their own count, so they spread over every
/// node too (and two round trips for one node never overlap unless the fleet is tiny).
fn plan(config: &SimConfig, j: usize) -> (OpKind, usize) {
    if config.command_every > 0 && j % config.command_every == config.command_every - 1 {
        (OpKind::Command, (j / config.command_every) % config.nodes)
    } else if config.scan_every > 0 && j % config.scan_every == config.scan_every / 2 {
        (OpKind::Scan, (j / config.scan_every * 7919) % config.nodes)
    } else {
        (OpKind::Heartbeat, j % config.nodes)
    }
}

fn prepare(
    kind: OpKind,
    node: usize,
    seq: u64,
    presign: bool,
    cc: Option<&str>,
) -> anyhow::Result<Prepared> {
    let (path, body) = match kind {
        OpKind::Scan => (
            "/api/agent/scans",
            serde_json::to_vec(&realistic_scan(node, u128::from(seq)))?,
        ),
        _ => {
            let mut hb = realistic_heartbeat(node, seq);
            hb["timestamp"] = serde_json::json!(chrono::Utc::now());
            ("/api/agent/heartbeat", serde_json::to_vec(&hb)?)
        }
    };
    let signature = presign.then(|| sign("POST", path, node, &body, cc));
    Ok(Prepared {
        path,
        node,
        body: body.into(),
        signature,
    })
}

/// A request's credential headers.
type Credential = Vec<(&'static str, String)>;

/// The credential of a request from `node` now: a signature, or a session MAC with the
/// Command Center key `cc` (one session per node and key for the whole run).
fn sign(method: &str, path: &str, node: usize, body: &[u8], cc: Option<&str>) -> Credential {
    let now = chrono::Utc::now().timestamp();
    let Some(cc) = cc else {
        let h = key_of(node).sign_request(method, path, &node_id(node), now, body);
        return vec![
            (HEADER_NODE, h.node),
            (HEADER_TIMESTAMP, h.timestamp),
            (HEADER_SIGNATURE, h.signature),
        ];
    };
    type Sessions = Mutex<HashMap<(usize, String), (SessionId, SessionKey)>>;
    static SESSIONS: OnceLock<Sessions> = OnceLock::new();
    let (session, key) = SESSIONS
        .get_or_init(Sessions::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry((node, cc.to_string()))
        .or_insert_with(|| {
            let public = vaultmesh_proto::auth::parse_public_key(cc).expect("a public key");
            let session = SessionId::new(cc, now, *uuid::Uuid::new_v4().as_bytes());
            let key = SharedSecret::between(&key_of(node), &public)
                .expect("not a low-order key")
                .session_key(&node_id(node), &session);
            (session, key)
        })
        .clone();
    let msg =
        vaultmesh_proto::session::mac_message(method, path, &node_id(node), now, &session, body);
    vec![
        (HEADER_NODE, node_id(node).to_string()),
        (HEADER_TIMESTAMP, now.to_string()),
        (HEADER_SESSION, session.to_string()),
        (HEADER_MAC, key.mac(&msg)),
    ]
}

fn send(
    http: &reqwest::Client,
    base: &str,
    p: Prepared,
    cc: Option<&str>,
) -> reqwest::RequestBuilder {
    let credential = p
        .signature
        .unwrap_or_else(|| sign("POST", p.path, p.node, &p.body, cc));
    let mut req = http
        .post(format!("{base}{}", p.path))
        .header("content-type", "application/json");
    for (name, value) in credential {
        req = req.header(name, value);
    }
    req.body(p.body)
}

/// An HTTP client for `concurrency` connections to one server.
pub fn client(concurrency: usize) -> anyhow::Result<reqwest::Client> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Ok(reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .timeout(Duration::from_secs(60))
        .build()?)
}

/// Enrolls (when a token is given), sends one warm-up heartbeat per node, then runs the timed
/// phase and reports it.
pub async fn run(config: &SimConfig) -> anyhow::Result<SimReport> {
    anyhow::ensure!(config.nodes > 0, "--nodes must be at least 1");
    anyhow::ensure!(config.concurrency > 0, "--concurrency must be at least 1");
    let http = client(config.concurrency)?;
    if let Some(token) = &config.token {
        enroll_all(&http, &config.base, config.nodes, token).await?;
    }
    warm_up(&http, config).await?;

    // Everything the timed phase sends, prepared in advance when presigning.
    let ops: Arc<Vec<(OpKind, Option<Prepared>)>> = Arc::new(
        (0..config.requests)
            .map(|j| {
                let (kind, node) = plan(config, j);
                let seq = 2 + (j / config.nodes) as u64;
                let prepared = match kind {
                    OpKind::Command => None,
                    _ if config.presign => Some(prepare(
                        kind,
                        node,
                        seq,
                        true,
                        config.cc_public_key.as_deref(),
                    )?),
                    _ => None,
                };
                Ok((kind, prepared))
            })
            .collect::<anyhow::Result<_>>()?,
    );
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..config.concurrency {
        let (http, ops, next, config) = (http.clone(), ops.clone(), next.clone(), config.clone());
        workers.spawn(async move {
            let mut part = SimReport::default();
            loop {
                let j = next.fetch_add(1, Ordering::Relaxed);
                let Some((kind, prepared)) = ops.get(j) else {
                    break;
                };
                let due = match config.rate {
                    Some(rate) => {
                        let due = start + Duration::from_secs_f64(j as f64 / rate);
                        tokio::time::sleep_until(due.into()).await;
                        due
                    }
                    None => Instant::now(),
                };
                let (_, node) = plan(&config, j);
                let seq = 2 + (j / config.nodes) as u64;
                let cc = config.cc_public_key.as_deref();
                let outcome = match (kind, prepared) {
                    (OpKind::Command, _) => command_round_trip(&http, &config.base, node, cc).await,
                    (_, Some(p)) => {
                        part.bytes += p.body.len() as u64;
                        post(send(&http, &config.base, p.clone(), cc)).await
                    }
                    (_, None) => match prepare(*kind, node, seq, false, cc) {
                        Ok(p) => {
                            part.bytes += p.body.len() as u64;
                            post(send(&http, &config.base, p, cc)).await
                        }
                        Err(e) => Err(e.to_string()),
                    },
                };
                match outcome {
                    Ok(()) => part
                        .latencies
                        .entry(*kind)
                        .or_default()
                        .push(due.elapsed().as_secs_f64() * 1000.0),
                    Err(why) => *part.errors.entry(why).or_default() += 1,
                }
            }
            part
        });
    }
    let mut report = SimReport::default();
    while let Some(part) = workers.join_next().await {
        let part = part?;
        for (k, v) in part.latencies {
            report.latencies.entry(k).or_default().extend(v);
        }
        for (k, v) in part.errors {
            *report.errors.entry(k).or_default() += v;
        }
        report.bytes += part.bytes;
    }
    report.elapsed = start.elapsed();
    for v in report.latencies.values_mut() {
        v.sort_by(f64::total_cmp);
    }
    Ok(report)
}

/// One heartbeat from every node, so each exists (commands need a known profile).
async fn warm_up(http: &reqwest::Client, config: &SimConfig) -> anyhow::Result<()> {
    let mut tasks = tokio::task::JoinSet::new();
    let lanes = config.concurrency.min(config.nodes);
    for lane in 0..lanes {
        let (http, config) = (http.clone(), config.clone());
        tasks.spawn(async move {
            for node in (lane..config.nodes).step_by(lanes) {
                let cc = config.cc_public_key.as_deref();
                let p = prepare(OpKind::Heartbeat, node, 1, false, cc)?;
                post(send(&http, &config.base, p, cc))
                    .await
                    .map_err(|e| anyhow::anyhow!("warm-up heartbeat of node {node}: {e}"))?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    Ok(())
}

async fn post(req: reqwest::RequestBuilder) -> Result<(), String> {
    match req.send().await {
        Ok(r) if r.status().is_success() => {
            // Read the body so the connection goes back to the pool.
            r.bytes()
                .await
                .map(|_| ())
                .map_err(|_| "reading reply".into())
        }
        Ok(r) => Err(format!("HTTP {}", r.status().as_u16())),
        Err(e) if e.is_connect() => Err("connect".into()),
        Err(e) if e.is_timeout() => Err("timeout".into()),
        Err(_) => Err("transport".into()),
    }
}

/// Issue `agent.ping` to `node` (admin API on loopback), take it with the node's long-poll, and
/// answer with a signed, chained receipt.
async fn command_round_trip(
    http: &reqwest::Client,
    base: &str,
    node: usize,
    cc: Option<&str>,
) -> Result<(), String> {
    let issue = serde_json::json!({"node_id": node_id(node), "action": "agent.ping", "args": {}});
    post(http.post(format!("{base}/api/commands")).json(&issue)).await?;
    let path = &format!("/api/agent/commands?wait=5s&nonce={:016x}", rand_nonce());
    let mut poll = http.get(format!("{base}{path}"));
    for (name, value) in sign("GET", path, node, b"", cc) {
        poll = poll.header(name, value);
    }
    let reply = poll
        .send()
        .await
        .map_err(|_| "poll transport".to_string())?;
    if !reply.status().is_success() {
        return Err(format!("poll HTTP {}", reply.status().as_u16()));
    }
    let commands: Vec<SignedCommand> = reply.json().await.map_err(|_| "poll reply")?;
    if commands.is_empty() {
        return Err("poll returned no command".into());
    }
    for cmd in commands {
        let signer = vaultmesh_testkit::auth::TestNode {
            id: node_id(node),
            key: key_of(node),
        };
        let receipt = signer.pong_receipt(cmd.command.command_id, chain(node, None));
        let signed = SignedReceipt::sign(receipt, &signer.key);
        let hash = signed.chain_hash();
        let body = serde_json::to_vec(&signed).map_err(|e| e.to_string())?;
        let p = Prepared {
            path: "/api/agent/receipts",
            node,
            body: body.into(),
            signature: None,
        };
        let reply = send(http, base, p, cc)
            .send()
            .await
            .map_err(|_| "receipt transport".to_string())?;
        if !reply.status().is_success() {
            return Err(format!("receipt HTTP {}", reply.status().as_u16()));
        }
        let accepted: serde_json::Value = reply.json().await.map_err(|_| "receipt reply")?;
        if accepted["chain_ok"] != true {
            return Err("receipt chain broken".into());
        }
        chain(node, Some(hash));
    }
    Ok(())
}

fn rand_nonce() -> u64 {
    uuid::Uuid::new_v4().as_u64_pair().0
}

/// Each simulated node's last receipt hash (reads it, or records a new one).
fn chain(node: usize, set: Option<String>) -> Option<String> {
    static CHAINS: std::sync::Mutex<BTreeMap<usize, String>> =
        std::sync::Mutex::new(BTreeMap::new());
    let mut chains = CHAINS.lock().unwrap_or_else(|p| p.into_inner());
    match set {
        Some(h) => chains.insert(node, h),
        None => chains.get(&node).cloned(),
    }
}
