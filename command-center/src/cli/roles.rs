//! `roles check FILE`: validate the roles file `serve --roles` reads.

use std::path::PathBuf;

use clap::Subcommand;

use super::Failure;

#[derive(Debug, Subcommand)]
pub enum RolesCommand {
    /// Check the roles file; exit 2 naming the file, key and reason on the first problem.
    #[command(
        after_help = "Example:\n  vaultmesh-command-center roles check /etc/vaultmesh/roles.toml"
    )]
    Check {
        /// The roles file.
        #[arg(env = "VAULTMESH_ROLES", value_name = "FILE")]
        file: PathBuf,
    },
}

/// `roles check FILE`.
pub fn roles(cmd: RolesCommand) -> Result<(), Failure> {
    let RolesCommand::Check { file } = cmd;
    let map = vaultmesh_command_center::roles::RoleMap::load(&file).map_err(|e| (2, e))?;
    println!("ok: {} — {}", file.display(), map.summary());
    if let Some(w) = map.warning() {
        eprintln!("warning: {}: {w}", file.display());
    }
    Ok(())
}
