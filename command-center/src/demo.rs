//! `demo`: the Command Center and a real agent for this host in one process, on local data,
//! so a newcomer sees a live fleet of one with a single command and no setup.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use vaultmesh_agent_core::config::AgentConfig;
use vaultmesh_agent_core::runtime::{Agent, AgentError};

// The agent runs the built-in checks; link them so their registrations are kept.
use vaultmesh_checks as _;

use crate::config::ServeConfig;
use crate::server::{ServeError, Server};

#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub listen: SocketAddr,
    /// Holds the logs, the agent's state and its VaultMesh root.
    pub data_dir: PathBuf,
    /// The agent's heartbeat interval.
    pub interval: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("{0}")]
    Serve(#[from] ServeError),
    #[error("agent: {0}")]
    Agent(#[from] AgentError),
    #[error("{0}")]
    Setup(String),
}

/// Runs until `cancel` fires. `on_listening` gets the dashboard URL once the server is bound.
pub async fn run(
    opts: DemoOptions,
    cancel: CancellationToken,
    on_listening: impl FnOnce(&str),
) -> Result<(), DemoError> {
    let data_dir = absolute(&opts.data_dir)?;
    let mut serve = ServeConfig::new(opts.listen, data_dir.join("logs"));
    // The demo's agent enrolls with a one-off token nobody else knows.
    let mut secret = [0u8; 24];
    getrandom::fill(&mut secret).map_err(|e| DemoError::Setup(format!("no OS randomness: {e}")))?;
    let token = hex::encode(secret);
    serve.enroll_tokens = vec![token.clone()];
    serve.stale_after = (opts.interval * 4).max(Duration::from_secs(10));
    serve.prepare().map_err(DemoError::Setup)?;

    let server = Server::bind(&serve).await?;
    let url = format!("http://{}", server.local_addr());
    on_listening(&url);
    let server_cancel = cancel.clone();
    let server_task = tokio::spawn(server.run(async move { server_cancel.cancelled().await }));

    let root = data_dir.join("root");
    std::fs::create_dir_all(&root)
        .map_err(|e| DemoError::Setup(format!("{}: {e}", root.display())))?;
    let mut agent_config = AgentConfig::from_toml_with(Path::new("demo"), "", |_| None)
        .map_err(|e| DemoError::Setup(e.to_string()))?;
    agent_config.source = None;
    agent_config.cc_url = url;
    agent_config.interval = opts.interval;
    agent_config.state_dir = data_dir.join("agent");
    agent_config.vaultmesh_root = root;
    agent_config.enroll_token = Some(vaultmesh_agent_core::config::Secret(token));
    let agent = Agent::new(agent_config)?;
    agent.run(cancel.clone(), || {}, || {}).await?;

    cancel.cancel();
    match server_task.await {
        Ok(result) => result?,
        Err(e) => return Err(DemoError::Setup(format!("server task failed: {e}"))),
    }
    Ok(())
}

fn absolute(p: &Path) -> Result<PathBuf, DemoError> {
    std::path::absolute(p).map_err(|e| DemoError::Setup(format!("{}: {e}", p.display())))
}
