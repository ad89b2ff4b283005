//! `vaultmesh-command-center`: a thin CLI over the library, one file per subcommand in
//! [`cli`]. Exit codes: 0 success, 1 runtime failure, 2 bad usage (one readable line on stderr).

mod cli;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use vaultmesh_command_center::config::ServeConfig;

use cli::admin::{AdminVerb, ApiTokenCommand, CommandsCommand, NodeCommand, TokenCommand};
use cli::demo::DemoArgs;
use cli::ledger::LedgerCommand;
use cli::logs::LogsCommand;
use cli::notify::NotifyCommand;
use cli::policy::PolicyCommand;
use cli::roles::RolesCommand;
use cli::store::StoreCommand;

/// jemalloc rather than glibc's malloc: memory freed when connections and event streams close
/// goes back to the system (glibc kept it: `tests/connections.rs`, docs/PERFORMANCE.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Debug, Parser)]
#[command(
    name = "vaultmesh-command-center",
    version = vaultmesh_process::version!(),
    about = "VaultMesh Command Center: ingests heartbeats from node agents and shows the fleet.",
    after_help = "Examples:\n  vaultmesh-command-center demo                         CC, this host's agent and 12 simulated nodes, on ./vaultmesh-demo\n  vaultmesh-command-center serve --log-dir /var/lib/vaultmesh/cc\n  VAULTMESH_LISTEN=127.0.0.1:9000 vaultmesh-command-center\n\nRUST_LOG sets the log filter (default info)."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeConfig,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the API and dashboard (the default).
    Serve(Box<ServeConfig>),
    /// Run the Command Center with a real agent for this host and a simulated fleet.
    Demo(DemoArgs),
    /// Query the append-only logs (works with the server stopped).
    #[command(subcommand)]
    Logs(LogsCommand),
    /// Issue or list commands on a running Command Center.
    #[command(subcommand)]
    #[command(name = "command")]
    Commands(CommandsCommand),
    /// Revoke, decommission or rename a node, or re-admit a revoked one, on a running Command
    /// Center.
    #[command(subcommand)]
    Node(NodeCommand),
    /// Mint, list or revoke enrollment tokens, on a running Command Center.
    #[command(subcommand, visible_alias = "tokens")]
    Token(TokenCommand),
    /// Make, list or revoke named API tokens (for scripts, bots and this CLI), on a running
    /// Command Center.
    #[command(subcommand)]
    ApiToken(ApiTokenCommand),
    /// Validate policy files.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// The verifiable Merkle ledger over the scan log (ROOT.txt, PROOFCHAIN.jsonl).
    #[command(subcommand)]
    Ledger(LedgerCommand),
    /// Check the roles file (who is a viewer, an operator or an admin).
    #[command(subcommand)]
    Roles(RolesCommand),
    /// Check the notifications file, or send a test message through a route.
    #[command(subcommand)]
    Notify(NotifyCommand),
    /// Copy the log between a log directory and a PostgreSQL database.
    #[command(subcommand)]
    Store(StoreCommand),
    /// Print the shell completion script (packages install it; or `source <(... completions bash)`).
    Completions {
        #[arg(value_enum)]
        shell: vaultmesh_process::cli::Shell,
    },
    /// Print the man page (roff).
    Man,
    /// Create the command-signing key (mode 0600) and print the public key agents pin.
    #[command(
        after_help = "Examples:\n  vaultmesh-command-center keygen                  writes /etc/vaultmesh/cc.key (run as root)\n  vaultmesh-command-center keygen --show-public    prints its public key and key id again"
    )]
    Keygen {
        /// Where to write the key (never overwritten); with --show-public, the key to read.
        #[arg(long, default_value = vaultmesh_command_center::config::DEFAULT_KEY_FILE, value_name = "FILE")]
        out: PathBuf,
        /// Print the public key and key id of the existing key at --out, changing nothing.
        #[arg(long)]
        show_public: bool,
    },
}

fn main() -> ExitCode {
    let cli: Cli = vaultmesh_process::cli::parse_or_exit();
    vaultmesh_process::service::init_logging();
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
            Some(Command::Demo(args)) => cli::demo::run_demo(args).await,
            Some(Command::Serve(config)) => cli::serve::serve(*config).await,
            Some(Command::Logs(cmd)) => cli::logs::logs_from_store(cmd).await,
            Some(Command::Store(cmd)) => cli::store::store(cmd).await,
            Some(Command::Notify(cmd)) => cli::notify::notify(cmd).await,
            Some(Command::Roles(cmd)) => cli::roles::roles(cmd),
            Some(Command::Keygen { out, show_public }) => cli::keygen::keygen(&out, show_public),
            Some(Command::Completions { shell }) => {
                vaultmesh_process::cli::completions::<Cli>(shell, &mut std::io::stdout())
                    .map_err(|e| (1, format!("cannot write to standard output: {e}")))
            }
            Some(Command::Man) => vaultmesh_process::cli::man::<Cli>(&mut std::io::stdout())
                .map_err(|e| (1, format!("cannot write to standard output: {e}"))),
            Some(Command::Ledger(cmd)) => cli::ledger::ledger(cmd),
            Some(Command::Policy(PolicyCommand::Check { dir })) => cli::policy::policy_check(&dir),
            Some(Command::Commands(cmd)) => cli::admin::admin_verb(AdminVerb::Commands(cmd)).await,
            Some(Command::Node(cmd)) => cli::admin::admin_verb(AdminVerb::Node(cmd)).await,
            Some(Command::Token(cmd)) => cli::admin::admin_verb(AdminVerb::Token(cmd)).await,
            Some(Command::ApiToken(cmd)) => cli::admin::admin_verb(AdminVerb::ApiToken(cmd)).await,
            None => cli::serve::serve(cli.serve).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, msg)) => {
            if !msg.is_empty() {
                eprintln!("error: {msg}");
            }
            ExitCode::from(code)
        }
    }
}
