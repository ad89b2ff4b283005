//! `store export|import`: copy the log between a log directory and a PostgreSQL database.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::Failure;

#[derive(Debug, Args)]
pub struct StoreUrlArg {
    /// The PostgreSQL database (postgres://USER[:PASSWORD]@HOST[:PORT]/DB).
    #[arg(
        long = "store",
        env = "VAULTMESH_STORE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub url: String,
}

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Write every log in the database to JSONL files in an empty directory (what the file
    /// store keeps: `ledger`, `logs` and `serve --log-dir` work on it).
    #[command(
        after_help = "Example:\n  vaultmesh-command-center store export --store postgres://vaultmesh@localhost/vaultmesh --to /srv/vaultmesh-export"
    )]
    Export {
        #[command(flatten)]
        db: StoreUrlArg,
        /// Directory to write (created if missing; must hold no log).
        #[arg(long, value_name = "DIR")]
        to: PathBuf,
    },
    /// Read a log directory into an empty database, all or nothing (to move a Command Center
    /// from the file store to PostgreSQL).
    #[command(
        after_help = "Example:\n  vaultmesh-command-center store import --from /var/lib/vaultmesh/cc --store postgres://vaultmesh@localhost/vaultmesh"
    )]
    Import {
        /// The log directory to read (stop the Command Center that writes it first).
        #[arg(long, value_name = "DIR")]
        from: PathBuf,
        #[command(flatten)]
        db: StoreUrlArg,
    },
}

/// Exit 2 unless `url` names a PostgreSQL database.
pub fn require_postgres(url: &str) -> Result<(), Failure> {
    use vaultmesh_store::postgres;
    if postgres::is_postgres_url(url) {
        return Ok(());
    }
    Err((
        2,
        format!(
            "--store {}: not a PostgreSQL URL; write postgres://USER@HOST/DB",
            postgres::redact(url)
        ),
    ))
}

/// `store export|import`.
pub async fn store(cmd: StoreCommand) -> Result<(), Failure> {
    use vaultmesh_store::postgres::{PgError, transfer};
    let code = |e: &PgError| match e {
        PgError::Transfer(_) | PgError::NewerSchema { .. } => 2,
        _ => 1,
    };
    match cmd {
        StoreCommand::Export { db, to } => {
            require_postgres(&db.url)?;
            let counts = transfer::export(&db.url, &to)
                .await
                .map_err(|e| (code(&e), e.to_string()))?;
            println!("exported to {}: {counts}", to.display());
        }
        StoreCommand::Import { from, db } => {
            require_postgres(&db.url)?;
            let (counts, skipped) = transfer::import(&from, &db.url)
                .await
                .map_err(|e| (code(&e), e.to_string()))?;
            println!("imported from {}: {counts}", from.display());
            if let Some(first) = skipped.first() {
                eprintln!(
                    "warning: skipped {} bad line(s); first: {}:{}: {}",
                    skipped.len(),
                    first.file.display(),
                    first.line,
                    first.reason
                );
            }
        }
    }
    Ok(())
}
