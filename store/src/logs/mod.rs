//! `vaultmesh-command-center logs view|tail|stats`: query the JSONL logs directly, with the
//! server running or not.
//!
//! - [`filter`]: what to select (kind, node, time, severity) and how to resolve a hostname.
//! - [`severity`]: one scale for every record kind.
//! - [`view`]: `view` and `tail` (following across rotation).
//! - [`stats`]: per-node counts, first/last seen and worst severity.
//! - [`render`]: table and JSON-lines output.
//!
//! Selection uses each line's header ([`crate::record::head`]), so lines that do not
//! match are never parsed; `--json` prints matching lines byte for byte as they are stored.

pub mod filter;
pub mod render;
pub mod severity;
pub mod stats;
pub mod view;

use std::path::{Path, PathBuf};

use crate::logdir::LogName;

/// A bad argument or an unusable log directory (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum LogsError {
    #[error("{0}")]
    Usage(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl LogsError {
    pub fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LogsError + '_ {
        move |source| LogsError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

use crate::change::kinds_of;

/// Every kind a log holds ([`kinds_of`] each log), sorted.
pub fn known_kinds() -> Vec<&'static str> {
    let mut v: Vec<&str> = LogName::ALL.into_iter().flat_map(kinds_of).collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// The log that holds records of `kind` (the event log for a kind no log declares).
pub fn log_of(kind: &str) -> LogName {
    LogName::ALL
        .into_iter()
        .find(|log| kinds_of(*log).contains(&kind))
        .unwrap_or(LogName::Events)
}

/// Checks that `dir` is a directory, with a one-line error otherwise.
pub fn require_dir(dir: &Path) -> Result<(), LogsError> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(LogsError::Usage(format!(
            "--log-dir {}: not a directory",
            dir.display()
        ))),
        Err(e) => Err(LogsError::Usage(format!(
            "--log-dir {}: {e}",
            dir.display()
        ))),
    }
}

/// A compressed segment damaged on disk: the tools show what it holds up to the damage and
/// say where it breaks (on stderr), then go on with the other files.
fn warn_broken(path: &Path, read: Result<u64, crate::replay::Broken>) {
    if let Err(b) = read {
        tracing::warn!(file = %path.display(), line = b.line, reason = %b.reason, "Skipped the rest of a damaged log segment.");
    }
}
