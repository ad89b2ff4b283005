//! `logs view|tail|stats`: the log tools, over the files or a snapshot of the database.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use vaultmesh_store::logs::{
    self, LogsError,
    filter::{Filter, FilterArgs},
    render::Format,
    stats, view,
};

use super::Failure;
use super::store::require_postgres;

#[derive(Debug, Subcommand)]
pub enum LogsCommand {
    /// Print the newest matching records, oldest first.
    #[command(
        after_help = "Examples:\n  vaultmesh-command-center logs view --kind heartbeat --node vault-node-01 --since 2h\n  vaultmesh-command-center logs view --min-severity high --limit 20\n  vaultmesh-command-center logs view --kind scan --json | jq .record.findings"
    )]
    View {
        #[command(flatten)]
        filter: FilterArgs,
        /// How many records at most (the newest); 0 for all.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Print the stored JSON lines instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        dir: LogSourceArg,
    },
    /// Print the last matching records, then follow new ones (across rotation) until Ctrl-C.
    Tail {
        #[command(flatten)]
        filter: FilterArgs,
        /// How many past records to print first.
        #[arg(long, short = 'n', default_value_t = 10)]
        lines: usize,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        dir: LogSourceArg,
    },
    /// Per node: records by kind, first and last seen, worst severity.
    Stats {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        dir: LogSourceArg,
    },
}

#[derive(Debug, Args)]
pub struct LogDirArg {
    /// The Command Center's log directory.
    #[arg(
        long,
        env = "VAULTMESH_LOG_DIR",
        value_name = "DIR",
        default_value = "vaultmesh-logs"
    )]
    pub log_dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct LogSourceArg {
    #[command(flatten)]
    pub files: LogDirArg,
    /// Read the logs from this PostgreSQL database instead (a consistent snapshot).
    #[arg(
        long = "store",
        env = "VAULTMESH_STORE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub store_url: Option<String>,
}

/// `logs ... --store URL`: the same tools over a snapshot of the database, exported to a
/// private temporary directory that is removed afterwards.
pub async fn logs_from_store(mut cmd: LogsCommand) -> Result<(), Failure> {
    use vaultmesh_store::postgres::transfer;
    let tail = matches!(cmd, LogsCommand::Tail { .. });
    let dir = match &mut cmd {
        LogsCommand::View { dir, .. }
        | LogsCommand::Tail { dir, .. }
        | LogsCommand::Stats { dir, .. } => dir,
    };
    let Some(url) = dir.store_url.clone() else {
        return logs(cmd);
    };
    require_postgres(&url)?;
    if tail {
        return Err((
            2,
            "--store: `logs tail` follows log files; with PostgreSQL use `logs view --store ...` or the live /events stream".into(),
        ));
    }
    let snapshot = std::env::temp_dir().join(format!("vaultmesh-logs-{}", uuid::Uuid::new_v4()));
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&snapshot)
            .map_err(|e| (1, format!("cannot create {}: {e}", snapshot.display())))?;
    }
    let exported = transfer::export(&url, &snapshot).await;
    dir.files.log_dir.clone_from(&snapshot);
    let result = match exported {
        Ok(_) => logs(cmd),
        Err(e) => Err((1, e.to_string())),
    };
    let _ = std::fs::remove_dir_all(&snapshot);
    result
}

pub fn logs(cmd: LogsCommand) -> Result<(), Failure> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let format = |json: bool| if json { Format::Json } else { Format::Table };
    let result = match cmd {
        LogsCommand::View {
            filter,
            limit,
            json,
            dir,
        } => logs::require_dir(&dir.files.log_dir).and_then(|()| {
            let f = Filter::resolve(&filter, &dir.files.log_dir, chrono::Utc::now())?;
            let lines = view::select(&dir.files.log_dir, &f, limit)?;
            view::print(&mut out, format(json), &lines).map_err(LogsError::io(&dir.files.log_dir))
        }),
        LogsCommand::Tail {
            filter,
            lines,
            json,
            dir,
        } => logs::require_dir(&dir.files.log_dir).and_then(|()| {
            let f = Filter::resolve(&filter, &dir.files.log_dir, chrono::Utc::now())?;
            view::tail(
                &dir.files.log_dir,
                &f,
                lines,
                format(json),
                &mut out,
                Duration::from_millis(200),
                || false,
            )
        }),
        LogsCommand::Stats { json, dir } => logs::require_dir(&dir.files.log_dir).and_then(|()| {
            let s = stats::collect(&dir.files.log_dir)?;
            stats::print(&mut out, &s, json).map_err(LogsError::io(&dir.files.log_dir))
        }),
    };
    match result {
        Ok(()) => Ok(()),
        // `logs view | head`: the reader went away; that is not an error.
        Err(LogsError::Io { source, .. }) if source.kind() == std::io::ErrorKind::BrokenPipe => {
            Ok(())
        }
        Err(e @ LogsError::Usage(_)) => Err((2, e.to_string())),
        Err(e) => Err((1, e.to_string())),
    }
}
