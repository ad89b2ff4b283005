//! `demo`: the Command Center, a real agent for this host and a simulated fleet in one
//! process, on local data, so a newcomer sees what the product is for with one command and no
//! setup.
//!
//! This host's agent runs under the demo's own profile ([`policy`]: it asks only for what this
//! host can have), and `--nodes N` simulated nodes ([`fleet`]) enroll and report through the
//! real signed agent API, each showing one thing an admin is there for.

pub mod fleet;
pub mod policy;

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

/// The policies shipped in `policies/`, written into the demo's data directory.
const POLICIES: [(&str, &str); 3] = [
    (
        "ArchVault.toml",
        include_str!("../../../policies/ArchVault.toml"),
    ),
    (
        "DebianVault.toml",
        include_str!("../../../policies/DebianVault.toml"),
    ),
    (
        "Generic.toml",
        include_str!("../../../policies/Generic.toml"),
    ),
];

#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub listen: SocketAddr,
    /// Holds the logs, the agent's state and its VaultMesh root.
    pub data_dir: PathBuf,
    /// The heartbeat interval of this host's agent and of the simulated nodes.
    pub interval: Duration,
    /// Simulated nodes beside this host's agent (at most [`fleet::MAX_NODES`]).
    pub nodes: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("{0}")]
    Serve(#[from] ServeError),
    #[error("agent: {0}")]
    Agent(#[from] AgentError),
    #[error("{0}")]
    Setup(String),
    #[error("{0}")]
    Fleet(#[from] fleet::FleetError),
}

/// The URLs the demo serves, for its banner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listening {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    /// Whether this host's agent checks a Cloudflare Tunnel (cloudflared runs here).
    pub tunnel: bool,
}

/// The demo's connection bound: with [`crate::listener::FD_RESERVE`], 1,024 open files.
pub const DEMO_MAX_CONNECTIONS: usize = 1024 - crate::listener::FD_RESERVE as usize;

/// Runs until `cancel` fires. `on_listening` is told the URL once the server is bound.
pub async fn run(
    opts: DemoOptions,
    cancel: CancellationToken,
    on_listening: impl FnOnce(&Listening),
) -> Result<(), DemoError> {
    let data_dir = absolute(&opts.data_dir)?;
    let mut serve = ServeConfig::new(opts.listen, data_dir.join("logs"));
    // One machine, one browser: a bound that fits the open-file limit of any shell (the
    // default needs 16,384 files, which a unit's LimitNOFILE= gives, not every login).
    // The simulated nodes' own ends of their connections are files of this process too.
    serve.connections.max_connections =
        DEMO_MAX_CONNECTIONS.saturating_sub(opts.nodes * fleet::CONNECTIONS_PER_NODE);
    serve.sse.total = DEMO_MAX_CONNECTIONS / 2;
    // The whole simulated fleet enrolls from 127.0.0.1 at once.
    serve.enroll_burst = serve.enroll_burst.max(opts.nodes as u32 + 1);
    // The demo's agent enrolls with a one-off token nobody else knows.
    let mut secret = [0u8; 24];
    getrandom::fill(&mut secret).map_err(|e| DemoError::Setup(format!("no OS randomness: {e}")))?;
    let token = hex::encode(secret);
    serve.enroll_tokens = vec![token.clone()];
    // A command-signing key for the demo, made once and kept with its data.
    let key_path = data_dir.join("cc.key");
    if !key_path.exists() {
        std::fs::create_dir_all(&data_dir)
            .map_err(|e| DemoError::Setup(format!("{}: {e}", data_dir.display())))?;
        crate::commands::create_signing_key(&key_path)
            .map_err(|e| DemoError::Setup(format!("{}: {e}", key_path.display())))?;
    }
    let cc_public = std::fs::read_to_string(&key_path)
        .ok()
        .and_then(|t| vaultmesh_proto::auth::NodeKey::from_base64(&t).ok())
        .map(|k| k.public_base64())
        .ok_or_else(|| DemoError::Setup(format!("{}: not a signing key", key_path.display())))?;
    serve.signing_key_file = Some(key_path);
    // The shipped policies, so the demo can issue commands.
    let policies = data_dir.join("policies");
    std::fs::create_dir_all(&policies)
        .map_err(|e| DemoError::Setup(format!("{}: {e}", policies.display())))?;
    for (name, text) in POLICIES {
        let p = policies.join(name);
        if !p.exists() {
            std::fs::write(&p, text)
                .map_err(|e| DemoError::Setup(format!("{}: {e}", p.display())))?;
        }
    }
    // The demo's own profile, for what this host has (rewritten at every start).
    let host = policy::Host::probe(policy::CLOUDFLARED_METRICS).await;
    let demo_policy = policies.join(format!("{}.toml", policy::PROFILE));
    std::fs::write(&demo_policy, policy::policy(host, opts.interval))
        .map_err(|e| DemoError::Setup(format!("{}: {e}", demo_policy.display())))?;
    serve.policy_dir = Some(policies);
    serve.prepare().map_err(DemoError::Setup)?;

    let server = Server::bind(&serve).await?;
    let url = format!("http://{}", server.local_addr());
    on_listening(&Listening {
        url: url.clone(),
        tunnel: host.tunnel,
    });
    let server_cancel = cancel.clone();
    let server_task = tokio::spawn(server.run(async move { server_cancel.cancelled().await }));

    let root = data_dir.join("root");
    std::fs::create_dir_all(&root)
        .map_err(|e| DemoError::Setup(format!("{}: {e}", root.display())))?;
    let mut agent_config =
        AgentConfig::from_toml_with(Path::new("demo"), &policy::agent_checks(host), |_| None)
            .map_err(|e| DemoError::Setup(e.to_string()))?;
    agent_config.source = None;
    agent_config.os_profile = policy::PROFILE.to_string();
    agent_config.cc_url = url.clone();
    agent_config.interval = opts.interval;
    agent_config.state_dir = data_dir.join("agent");
    agent_config.vaultmesh_root = root;
    agent_config.enroll_token = Some(vaultmesh_agent_core::config::Secret(token.clone()));
    agent_config.cc_public_key = Some(cc_public.clone());
    agent_config.command_allow = vec![
        "agent.ping".into(),
        "checks.run".into(),
        "scan.sovereign".into(),
        "service.status".into(),
    ];
    let agent = Agent::new(agent_config)?;

    let fleet = fleet::start(
        &fleet::FleetOptions {
            base: url,
            token,
            cc_public,
            dir: fleet::dir(&data_dir),
            nodes: opts.nodes,
            interval: opts.interval,
        },
        &cancel,
    );
    let mut fleet = match fleet {
        Ok(fleet) => fleet,
        Err(e) => {
            cancel.cancel();
            let _ = server_task.await;
            return Err(e.into());
        }
    };
    let agent_result = agent.run(cancel.clone(), || {}, || {}).await;

    cancel.cancel();
    while fleet.join_next().await.is_some() {}
    agent_result?;
    match server_task.await {
        Ok(result) => result?,
        Err(e) => return Err(DemoError::Setup(format!("server task failed: {e}"))),
    }
    Ok(())
}

fn absolute(p: &Path) -> Result<PathBuf, DemoError> {
    std::path::absolute(p).map_err(|e| DemoError::Setup(format!("{}: {e}", p.display())))
}
