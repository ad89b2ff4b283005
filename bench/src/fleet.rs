//! A simulated fleet for the benchmarks: node keys, signed agent requests, enrollment, and the
//! real Command Center binary started on a loopback port.

use std::process::{Child, Command, Stdio};

use anyhow::Context;
use vaultmesh_proto::auth::{
    EnrollRequest, HEADER_NODE, HEADER_SIGNATURE, HEADER_TIMESTAMP, NodeKey,
};

use crate::{node_id, release_binary};

/// The enrollment token the benchmarks start the Command Center with.
pub const TOKEN: &str = "bench-enroll-token-0123456789";

/// Node `i`'s key (deterministic).
pub fn key_of(i: usize) -> NodeKey {
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
    seed[8] = 0xb7;
    NodeKey::from_seed(seed)
}

/// A signed agent POST from node `i`, as the agent sends it.
pub fn signed_post(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    i: usize,
    body: Vec<u8>,
) -> reqwest::RequestBuilder {
    let id = node_id(i);
    let h = key_of(i).sign_request("POST", path, &id, chrono::Utc::now().timestamp(), &body);
    http.post(format!("{base}{path}"))
        .header("content-type", "application/json")
        .header(HEADER_NODE, h.node)
        .header(HEADER_TIMESTAMP, h.timestamp)
        .header(HEADER_SIGNATURE, h.signature)
        .body(body)
}

/// Enrolls nodes `0..n` with `token` ([`TOKEN`] for a [`Server`]), eight at a time. A node
/// already enrolled with the same key is fine.
pub async fn enroll_all(
    http: &reqwest::Client,
    base: &str,
    n: usize,
    token: &str,
) -> anyhow::Result<()> {
    let mut lanes = tokio::task::JoinSet::new();
    for lane in 0..8.min(n) {
        let (http, base, token) = (http.clone(), base.to_string(), token.to_string());
        lanes.spawn(async move {
            for i in (lane..n).step_by(8) {
                enroll_one(&http, &base, i, &token).await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(r) = lanes.join_next().await {
        r??;
    }
    Ok(())
}

async fn enroll_one(
    http: &reqwest::Client,
    base: &str,
    i: usize,
    token: &str,
) -> anyhow::Result<()> {
    {
        let req = EnrollRequest {
            node_id: node_id(i),
            public_key: key_of(i).public_base64(),
            hostname: format!("vault-node-{i:04}"),
            os_profile: "ArchVault".into(),
            token: token.into(),
            nonce: None,
        };
        let r = signed_post(
            http,
            base,
            "/api/agent/enroll",
            i,
            serde_json::to_vec(&req)?,
        )
        .send()
        .await?;
        anyhow::ensure!(
            r.status().is_success(),
            "enrollment of node {i} refused: {} {}",
            r.status(),
            r.text().await.unwrap_or_default()
        );
    }
    Ok(())
}

/// The release Command Center, serving on a loopback port with [`TOKEN`]; killed on drop.
pub struct Server {
    pub child: Child,
    pub base: String,
    /// From the process's start until it listened (its log loaded): the build before it,
    /// however long, is not counted.
    pub started_in: std::time::Duration,
    logs: tempfile::TempDir,
    extra: Vec<String>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("base", &self.base).finish()
    }
}

impl Server {
    /// Builds (release) and starts `serve` with `extra` arguments.
    pub fn start(extra: &[&str]) -> anyhow::Result<Server> {
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        Self::spawn(tempfile::tempdir()?, extra)
    }

    /// Its log directory.
    pub fn log_dir(&self) -> &std::path::Path {
        self.logs.path()
    }

    /// Kills the server (SIGKILL) and starts it again on the same log directory and arguments;
    /// returns once it listens (after its replay).
    pub fn restart(mut self) -> anyhow::Result<Server> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let logs = std::mem::replace(&mut self.logs, tempfile::tempdir()?);
        Self::spawn(logs, std::mem::take(&mut self.extra))
    }

    fn spawn(logs: tempfile::TempDir, extra: Vec<String>) -> anyhow::Result<Server> {
        let cc = release_binary("vaultmesh-command-center", "vaultmesh-command-center")?;
        let spawned = std::time::Instant::now();
        let mut child = Command::new(&cc)
            .args(["serve", "--listen", "127.0.0.1:0", "--enroll-token", TOKEN])
            // A simulated fleet posts faster than real nodes; measure ingest, not the limiter.
            .args(["--agent-rate", "1000000", "--agent-burst", "1000000"])
            .args(["--enroll-rate", "1000000", "--enroll-burst", "1000000"])
            .args(["--heartbeat-budget", "1024GiB", "--scan-budget", "1024GiB"])
            .args([
                "--fleet-heartbeat-budget",
                "1024GiB",
                "--fleet-scan-budget",
                "1024GiB",
            ])
            .args(["--receipt-budget", "1024GiB"])
            .args(&extra)
            .arg("--log-dir")
            .arg(logs.path())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()?;
        let base = listening_base(&mut child)?;
        Ok(Server {
            child,
            base,
            started_in: spawned.elapsed(),
            logs,
            extra,
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads the `listening on http://ADDR` line a server started with piped stdout prints first
/// (the Command Center and `ingest-floor` both do) and returns the base URL.
pub fn listening_base(child: &mut Child) -> anyhow::Result<String> {
    let stdout = child.stdout.take().context("stdout")?;
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)?;
    Ok(line
        .split("listening on ")
        .nth(1)
        .context("no listening line")?
        .trim()
        .to_string())
}
