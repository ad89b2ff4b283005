//! `demo`: the Command Center with a real agent for this host and a simulated fleet, in one
//! process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use vaultmesh_command_center::config::DEFAULT_LISTEN;
use vaultmesh_command_center::demo::{self, DemoOptions, fleet::MAX_NODES};
use vaultmesh_process::service;

use super::Failure;

#[derive(Debug, Args)]
pub struct DemoArgs {
    #[arg(long, default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// Where the demo keeps its logs, the agent's state and the simulated nodes' identities.
    #[arg(long, default_value = "vaultmesh-demo", value_name = "DIR")]
    pub data_dir: PathBuf,
    /// The heartbeat interval of this host's agent and of the simulated nodes (their story
    /// moves one step per interval).
    #[arg(long, default_value = "5s", value_parser = vaultmesh_process::duration::parse_nonzero)]
    pub interval: Duration,
    /// Simulated nodes beside this host's agent, enrolled and reporting through the signed
    /// agent API (0: only this host; at most 200).
    #[arg(long, value_name = "N", default_value_t = 12, allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(0..=i64::from(MAX_NODES)))]
    pub nodes: u32,
}

pub async fn run_demo(args: DemoArgs) -> Result<(), Failure> {
    let nodes = args.nodes as usize;
    let opts = DemoOptions {
        listen: args.listen,
        data_dir: args.data_dir,
        interval: args.interval,
        nodes,
    };
    let cancel = service::shutdown_token();
    demo::run(opts, cancel, |at| {
        let url = &at.url;
        println!("vaultmesh-command-center listening on {url}");
        let fleet = match nodes {
            0 => String::new(),
            1 => " and 1 simulated node".to_string(),
            n => format!(" and {n} simulated nodes"),
        };
        let tunnel = if at.tunnel {
            "cloudflared runs here: its tunnel is checked"
        } else {
            "no cloudflared here: no tunnel is asked for"
        };
        println!("VaultMesh demo: this host's agent (profile Demo; {tunnel}){fleet}.");
        println!("  Mission Console  {url}/console");
        println!("  Overview         {url}/");
        println!("  Nodes (JSON)     {url}/api/nodes");
        println!("Ctrl-C to stop.");
    })
    .await
    .map_err(|e| (1, e.to_string()))
}
