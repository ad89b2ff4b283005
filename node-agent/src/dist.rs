//! `vaultmesh-node-agent-dist`: writes what the packages install from the agent's command line
//! (`scripts/dist`, the PKGBUILD) — a shell completion script or the man page, generated from
//! the clap definitions in `src/cli.rs`. A build-time tool, not shipped: keeping the generators
//! (clap_complete, clap_mangen) out of the agent takes about 0.1 MiB off its binary.
//!
//! Exit codes: 0 written, 1 standard output failed, 2 bad usage.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use vaultmesh_node_agent::cli::Cli;

#[derive(Debug, Parser)]
#[command(
    name = "vaultmesh-node-agent-dist",
    version = vaultmesh_process::version!(),
    about = "Writes vaultmesh-node-agent's shell completions and man page (for packaging)."
)]
struct Dist {
    #[command(subcommand)]
    command: What,
}

#[derive(Debug, Subcommand)]
enum What {
    /// Print vaultmesh-node-agent's shell completion script.
    Completions {
        #[arg(value_enum)]
        shell: vaultmesh_process::cli::Shell,
    },
    /// Print vaultmesh-node-agent's man page (roff).
    Man,
}

fn main() -> ExitCode {
    let dist: Dist = vaultmesh_process::cli::parse_or_exit();
    let mut out = std::io::stdout();
    let written = match dist.command {
        What::Completions { shell } => vaultmesh_process::cli::completions::<Cli>(shell, &mut out),
        What::Man => vaultmesh_process::cli::man::<Cli>(&mut out),
    };
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: cannot write to standard output: {e}");
            ExitCode::FAILURE
        }
    }
}
