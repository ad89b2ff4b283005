//! The agent's command line, as clap definitions only: `main.rs` parses it, and
//! `vaultmesh-node-agent-dist` (`src/dist.rs`) writes the shell completions and the man
//! page the packages install from it. The generators live in that build-time tool, not in the
//! shipped agent, whose binary they would grow by about 0.1 MiB (docs/PERFORMANCE.md).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "vaultmesh-node-agent",
    version = vaultmesh_process::version!(),
    about = "VaultMesh node agent: runs health checks and reports to the Command Center (outbound only).",
    after_help = "Examples:\n  vaultmesh-node-agent run --once          send one heartbeat and exit\n  vaultmesh-node-agent checks list         show every check and whether it is enabled\n  vaultmesh-node-agent checks run disk     run one check now and print the result\n  vaultmesh-node-agent config check        validate /etc/vaultmesh/agent.toml\n  vaultmesh-node-agent event note --text 'rebooted'   post a note about this node\n\nEnvironment: VAULTMESH_CC_URL, VAULTMESH_OS_PROFILE, VAULTMESH_INTERVAL, VAULTMESH_STATE_DIR,\nVAULTMESH_ROOT, VAULTMESH_CONFIG, RUST_LOG (log filter, default info)."
)]
pub struct Cli {
    /// Agent config file [default: /etc/vaultmesh/agent.toml, if it exists].
    #[arg(long, global = true, env = "VAULTMESH_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the agent (the default): checks on their schedules, a heartbeat every interval.
    Run {
        /// Run every check once, send one heartbeat, and exit (0 if the Command Center accepted it).
        #[arg(long)]
        once: bool,
    },
    /// Inspect or run the registered checks.
    #[command(subcommand)]
    Checks(ChecksCommand),
    /// Work with the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// List the command actions this agent knows, and whether its `[commands]` allow list permits each.
    Actions {
        #[arg(long)]
        json: bool,
    },
    /// Post a note or an incident about this node to the Command Center, with the node's own
    /// key; prints the event's id. The event's node and author are this node (`node:<id>`).
    #[command(
        subcommand,
        after_help = "Examples:\n  vaultmesh-node-agent event note --text 'rebooted for the kernel update'\n  vaultmesh-node-agent event incident --title 'RAID degraded' --severity critical --text \"$(mdadm --detail /dev/md0)\""
    )]
    Event(EventCommand),
    /// Replace the node key with a new one (for a node the Command Center re-admitted after a
    /// revocation). Stop the agent first; the next run enrolls the new key.
    #[command(
        after_help = "Example:\n  systemctl stop vaultmesh-node-agent && vaultmesh-node-agent rekey && systemctl start vaultmesh-node-agent"
    )]
    Rekey,
}

#[derive(Debug, Subcommand)]
pub enum ChecksCommand {
    /// List every registered check, whether it is enabled, and its schedule.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Run one check now (enabled or not) and print its result.
    Run {
        /// Check name, as shown by `checks list`.
        name: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum EventCommand {
    /// A note about this node (free text).
    Note {
        /// The note (up to 8 KiB; may span lines).
        #[arg(long)]
        text: String,
    },
    /// An incident on this node: `high` and `critical` ones make it CRIT, the others ATTN,
    /// until an operator resolves it.
    Incident {
        /// One line (up to 256 bytes).
        #[arg(long)]
        title: String,
        /// info, low, medium, high or critical.
        #[arg(long, default_value = "high", value_parser = severity)]
        severity: vaultmesh_proto::Severity,
        /// Details (up to 8 KiB; may span lines).
        #[arg(long)]
        text: Option<String>,
    },
}

/// `--severity`: one of the five, with a suggestion for a typo.
fn severity(s: &str) -> Result<vaultmesh_proto::Severity, String> {
    const ALL: [&str; 5] = ["info", "low", "medium", "high", "critical"];
    s.parse().map_err(|_| {
        format!(
            "{s:?} is not a severity; use {}{}",
            ALL.join(", "),
            vaultmesh_process::suggest::did_you_mean(s, ALL)
        )
    })
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the config file and environment; exit 2 naming every problem.
    Check,
}
