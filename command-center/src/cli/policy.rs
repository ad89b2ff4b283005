//! `policy check [DIR]`: validate every policy file.

use std::path::PathBuf;

use clap::Subcommand;

use super::Failure;

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Check every *.toml in DIR; exit 2 naming file, key and reason on the first problem.
    Check {
        /// The policy directory.
        #[arg(default_value = "policies", env = "VAULTMESH_POLICY_DIR")]
        dir: PathBuf,
    },
}

/// `policy check [DIR]`: validates every policy file.
pub fn policy_check(dir: &std::path::Path) -> Result<(), Failure> {
    let p = vaultmesh_store::policy::Policies::load(Some(dir)).map_err(|e| (2, e))?;
    if p.is_empty() {
        return Err((2, format!("{}: no *.toml policy files", dir.display())));
    }
    println!(
        "ok: {} — {} polic{}: {}",
        dir.display(),
        p.len(),
        if p.len() == 1 { "y" } else { "ies" },
        p.profiles().join(", ")
    );
    Ok(())
}
