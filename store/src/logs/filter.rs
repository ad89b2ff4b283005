//! Which lines to show: `--kind`, `--node ID|HOSTNAME`, `--since`, `--min-severity`.

use std::collections::{BTreeSet, HashSet};
use std::path::Path;

use chrono::{DateTime, Utc};
use clap::Args;
use uuid::Uuid;

use super::severity::{self, Severity};
use super::{LogsError, log_of};
use crate::logdir::{self, LogName};
use crate::record::{self, Head};
use crate::replay::for_each_line_tolerant;

/// Filters shared by `logs view` and `logs tail`.
#[derive(Debug, Clone, Default, Args)]
pub struct FilterArgs {
    /// Only these kinds (heartbeat, scan, command, note, incident, ack, tag, resolve, ...);
    /// repeat or separate with commas.
    #[arg(long, value_delimiter = ',')]
    pub kind: Vec<String>,
    /// Only this node, by node id or hostname.
    #[arg(long, value_name = "ID|HOSTNAME")]
    pub node: Option<String>,
    /// Only records at or after this time: RFC 3339 (2026-11-29T09:00:00Z) or an age (15m, 2h, 7d).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only records at least this severe: info, low, medium, high, critical.
    #[arg(long, value_name = "SEVERITY")]
    pub min_severity: Option<Severity>,
}

/// Resolved filters.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub kinds: Option<BTreeSet<String>>,
    pub nodes: Option<HashSet<Uuid>>,
    pub since: Option<DateTime<Utc>>,
    pub min_severity: Option<Severity>,
}

impl Filter {
    /// Resolves `--node HOSTNAME` against the heartbeat log and `--since AGE` against `now`.
    pub fn resolve(args: &FilterArgs, dir: &Path, now: DateTime<Utc>) -> Result<Filter, LogsError> {
        let kinds: BTreeSet<String> = args
            .kind
            .iter()
            .map(|k| k.trim().to_string())
            .filter(|k| !k.is_empty())
            .collect();
        for k in &kinds {
            if !k
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'_' || b == b'-')
            {
                return Err(LogsError::Usage(format!(
                    "--kind {k:?}: kinds are lowercase words like heartbeat or scan"
                )));
            }
            let known = super::known_kinds();
            if !known.contains(&k.as_str()) {
                return Err(LogsError::Usage(format!(
                    "--kind {k:?}: no such kind{}; kinds: {}",
                    vaultmesh_process::suggest::did_you_mean(k, known.iter().copied()),
                    known.join(", ")
                )));
            }
        }
        let since = args
            .since
            .as_deref()
            .map(|s| parse_since(s, now))
            .transpose()?;
        let nodes = match &args.node {
            None => None,
            Some(n) => Some(match Uuid::parse_str(n) {
                Ok(id) => HashSet::from([id]),
                Err(_) => {
                    let ids = nodes_with_hostname(dir, n)?;
                    if ids.is_empty() {
                        return Err(LogsError::Usage(format!(
                            "--node {n:?}: no node id, and no node with that hostname in the heartbeat log"
                        )));
                    }
                    ids
                }
            }),
        };
        Ok(Filter {
            kinds: (!kinds.is_empty()).then_some(kinds),
            nodes,
            since,
            min_severity: args.min_severity,
        })
    }

    /// The logs that can hold matching lines.
    pub fn logs(&self) -> Vec<LogName> {
        match &self.kinds {
            None => LogName::ALL.to_vec(),
            Some(kinds) => {
                let mut v: Vec<LogName> = Vec::new();
                for k in kinds {
                    let l = log_of(k);
                    if !v.contains(&l) {
                        v.push(l);
                    }
                }
                v
            }
        }
    }

    /// The line's header if the line matches (parses the record only for `--min-severity`).
    pub fn matches<'a>(&self, line: &'a [u8]) -> Option<Head<'a>> {
        let head = record::head(line)?;
        if let Some(kinds) = &self.kinds
            && !kinds.contains(head.kind.as_ref())
        {
            return None;
        }
        if let Some(nodes) = &self.nodes
            && !head.node_id.is_some_and(|id| nodes.contains(&id))
        {
            return None;
        }
        if let Some(since) = self.since
            && head.time().is_none_or(|t| t < since)
        {
            return None;
        }
        if let Some(min) = self.min_severity
            && severity::of_line(&head.kind, line) < min
        {
            return None;
        }
        Some(head)
    }
}

fn parse_since(s: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, LogsError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    match vaultmesh_process::duration::parse(s) {
        Ok(age) => chrono::Duration::from_std(age)
            .ok()
            .and_then(|age| now.checked_sub_signed(age))
            .ok_or_else(|| LogsError::Usage(format!("--since {s:?}: too far back"))),
        Err(_) => Err(LogsError::Usage(format!(
            "--since {s:?}: not an RFC 3339 time (2026-11-29T09:00:00Z) or an age (15m, 2h, 7d)"
        ))),
    }
}

/// Node ids whose heartbeats carry `hostname`.
fn nodes_with_hostname(dir: &Path, hostname: &str) -> Result<HashSet<Uuid>, LogsError> {
    let needle = format!(
        "\"hostname\":{}",
        serde_json::Value::String(hostname.to_string())
    );
    let finder = memchr::memmem::Finder::new(needle.as_bytes());
    let mut ids = HashSet::new();
    for path in logdir::files(dir, LogName::Heartbeats).map_err(LogsError::io(dir))? {
        let read = for_each_line_tolerant(&path, 0, |_, _, line| {
            if finder.find(line).is_some()
                && let Some(id) = record::head(line).and_then(|h| h.node_id)
            {
                ids.insert(id);
            }
        })
        .map_err(LogsError::io(&path))?;
        super::warn_broken(&path, read);
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_times_and_ages() {
        let now = DateTime::parse_from_rfc3339("2026-11-29T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            parse_since("2h", now).unwrap().to_rfc3339(),
            "2026-11-29T10:00:00+00:00"
        );
        assert_eq!(
            parse_since("2026-11-29T09:00:00Z", now)
                .unwrap()
                .to_rfc3339(),
            "2026-11-29T09:00:00+00:00"
        );
        assert!(
            parse_since("yesterday", now)
                .unwrap_err()
                .to_string()
                .contains("not an RFC 3339 time")
        );
    }
}
