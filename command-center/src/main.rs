//! `vaultmesh-command-center`: a thin CLI over the library. Exit codes: 0 success, 1 runtime
//! failure, 2 bad usage (one readable line on stderr).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use vaultmesh_agent_core::service;
use vaultmesh_command_center::config::{DEFAULT_LISTEN, ServeConfig};
use vaultmesh_command_center::demo::{self, DemoOptions};
use vaultmesh_command_center::server::Server;
use vaultmesh_command_center::store::StoreLimits;

#[derive(Debug, Parser)]
#[command(
    name = "vaultmesh-command-center",
    version,
    about = "VaultMesh Command Center: ingests heartbeats from node agents and shows the fleet.",
    after_help = "Examples:\n  vaultmesh-command-center demo                         CC + a live agent for this host, on ./vaultmesh-demo\n  vaultmesh-command-center serve --log-dir /var/lib/vaultmesh/cc\n  VAULTMESH_LISTEN=127.0.0.1:9000 vaultmesh-command-center\n\nRUST_LOG sets the log filter (default info)."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the API and dashboard (the default).
    Serve(ServeArgs),
    /// Run the Command Center with a real agent for this host in the same process.
    Demo(DemoArgs),
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Address to listen on; keep it on loopback behind cloudflared.
    #[arg(long, env = "VAULTMESH_LISTEN", default_value = DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// Directory for the append-only logs.
    #[arg(long, env = "VAULTMESH_LOG_DIR", value_name = "DIR")]
    log_dir: Option<PathBuf>,
    /// Directory of per-profile policy files.
    #[arg(long, env = "VAULTMESH_POLICY_DIR", value_name = "DIR")]
    policy_dir: Option<PathBuf>,
    /// Heartbeat history points kept per node.
    #[arg(long, default_value_t = StoreLimits::default().history_len)]
    history_len: usize,
    /// Most nodes tracked; heartbeats from further new nodes get 503.
    #[arg(long, default_value_t = StoreLimits::default().max_nodes)]
    max_nodes: usize,
    /// A node silent this long is shown as stale (e.g. 2m, 90s).
    #[arg(long, default_value = "2m", value_parser = parse_duration)]
    stale_after: Duration,
}

#[derive(Debug, Args)]
struct DemoArgs {
    #[arg(long, default_value = DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// Where the demo keeps its logs and the agent's state.
    #[arg(long, default_value = "vaultmesh-demo", value_name = "DIR")]
    data_dir: PathBuf,
    /// The agent's heartbeat interval.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    interval: Duration,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = vaultmesh_agent_core::duration::parse(s)?;
    if d.is_zero() {
        Err("must be greater than zero".into())
    } else {
        Ok(d)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Some(Command::Demo(args)) => run_demo(args).await,
            Some(Command::Serve(args)) => serve(args).await,
            None => serve(cli.serve).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, msg)) => {
            eprintln!("error: {msg}");
            ExitCode::from(code)
        }
    }
}

type Failure = (u8, String);

async fn serve(args: ServeArgs) -> Result<(), Failure> {
    let config = ServeConfig {
        listen: args.listen,
        log_dir: args.log_dir,
        policy_dir: args.policy_dir,
        limits: StoreLimits {
            history_len: args.history_len,
            max_nodes: args.max_nodes,
        },
        stale_after: args.stale_after,
    };
    config.prepare().map_err(|e| (2, e))?;
    let server = Server::bind(&config)
        .await
        .map_err(|e| (1, e.to_string()))?;
    println!(
        "vaultmesh-command-center listening on http://{}",
        server.local_addr()
    );
    tracing::info!(addr = %server.local_addr(), "Command Center listening.");
    let cancel = service::shutdown_token();
    let watchdog = service::spawn_watchdog(cancel.clone());
    service::notify_ready(&format!("serving on {}", server.local_addr()));
    let stopping = cancel.clone();
    let result = server
        .run(async move {
            stopping.cancelled().await;
            service::notify_stopping();
        })
        .await;
    cancel.cancel();
    if let Some(w) = watchdog {
        let _ = w.await;
    }
    result.map_err(|e| (1, e.to_string()))?;
    tracing::info!("Command Center stopped.");
    Ok(())
}

async fn run_demo(args: DemoArgs) -> Result<(), Failure> {
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
