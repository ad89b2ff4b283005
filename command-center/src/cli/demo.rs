//! `demo`: the Command Center with a real agent for this host, in one process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use vaultmesh_command_center::config::DEFAULT_LISTEN;
use vaultmesh_command_center::demo::{self, DemoOptions};
use vaultmesh_process::service;

use super::Failure;

#[derive(Debug, Args)]
pub struct DemoArgs {
    #[arg(long, default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// Where the demo keeps its logs and the agent's state.
    #[arg(long, default_value = "vaultmesh-demo", value_name = "DIR")]
    pub data_dir: PathBuf,
    /// The agent's heartbeat interval.
    #[arg(long, default_value = "5s", value_parser = vaultmesh_process::duration::parse_nonzero)]
    pub interval: Duration,
}

pub async fn run_demo(args: DemoArgs) -> Result<(), Failure> {
    let opts = DemoOptions {
        listen: args.listen,
        data_dir: args.data_dir,
        interval: args.interval,
    };
    let cancel = service::shutdown_token();
    demo::run(opts, cancel, |url| {
        println!("vaultmesh-command-center listening on {url}");
        println!("VaultMesh demo: open {url}/ (dashboard) or {url}/api/nodes — Ctrl-C to stop.");
    })
    .await
    .map_err(|e| (1, e.to_string()))
}
