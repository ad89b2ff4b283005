//! `vaultmesh-command-center logs view|tail|stats`: query the JSONL logs directly, with the
//! server running or not.
//!
//! - [`filter`]: what to select (kind, node, time, severity) and how to resolve a hostname.
//! - [`severity`]: one scale for every record kind.
//! - [`view`]: `view` and `tail` (following across rotation).
//! - [`stats`]: per-node counts, first/last seen and worst severity.
//! - [`render`]: table and JSON-lines output.
//!
//! Selection uses each line's header ([`crate::store::record::head`]), so lines that do not
//! match are never parsed; `--json` prints matching lines byte for byte as they are stored.

pub mod filter;
pub mod render;
pub mod severity;
pub mod stats;
pub mod view;

use std::path::{Path, PathBuf};

use crate::store::logdir::LogName;

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

use crate::store::change::kinds;

/// Every kind a log holds: `heartbeat`, `scan`, the records of `commands.jsonl` and
/// `nodes.jsonl`, and the event kinds (operators' and the Command Center's own), sorted.
pub fn known_kinds() -> Vec<&'static str> {
    use crate::store::record::kind;
    use vaultmesh_proto::event::{OPERATOR_KINDS, SYSTEM_KINDS};
    let mut v = vec![
        kind::HEARTBEAT,
        kind::SCAN,
        kinds::COMMAND,
        kinds::DELIVERED,
        kinds::RECEIPT,
    ];
    v.extend(kinds::NODES);
    v.extend(OPERATOR_KINDS);
    v.extend(SYSTEM_KINDS);
    v.sort_unstable();
    v.dedup();
    v
}

/// The log that holds records of `kind`.
pub fn log_of(kind: &str) -> LogName {
    match kind {
        "heartbeat" => LogName::Heartbeats,
        "scan" => LogName::Scans,
        kinds::COMMAND | kinds::DELIVERED | kinds::RECEIPT => LogName::Commands,
        k if kinds::NODES.contains(&k) => LogName::Nodes,
        _ => LogName::Events,
    }
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
