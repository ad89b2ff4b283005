//! `logs stats`: per node, how many records of each kind, first and last seen, worst severity.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::LogsError;
use super::render::clean;
use super::severity::{self, Severity};
use crate::logdir::{self, LogName};
use crate::record;
use crate::replay::for_each_line_tolerant;

#[derive(Debug, Clone, Serialize)]
pub struct NodeStats {
    pub node_id: Uuid,
    pub hostname: Option<String>,
    pub counts: BTreeMap<String, u64>,
    pub first_seen: Option<DateTime<Utc>>,
    pub last_seen: Option<DateTime<Utc>>,
    pub worst_severity: Option<&'static str>,
}

/// Reads every log in `dir`.
pub fn collect(dir: &Path) -> Result<Vec<NodeStats>, LogsError> {
    let mut nodes: HashMap<Uuid, (NodeStats, Severity)> = HashMap::new();
    let hostname_finder = memchr::memmem::Finder::new(b"\"hostname\":\"");
    for log in LogName::ALL {
        for path in logdir::files(dir, log).map_err(LogsError::io(dir))? {
            let read = for_each_line_tolerant(&path, 0, |_, _, line| {
                let Some(head) = record::head(line) else {
                    return;
                };
                let Some(id) = head.node_id else { return };
                let (s, worst) = nodes.entry(id).or_insert_with(|| {
                    (
                        NodeStats {
                            node_id: id,
                            hostname: None,
                            counts: BTreeMap::new(),
                            first_seen: None,
                            last_seen: None,
                            worst_severity: None,
                        },
                        Severity::Info,
                    )
                });
                *s.counts.entry(head.kind.to_string()).or_default() += 1;
                if let Some(t) = head.time() {
                    s.first_seen = Some(s.first_seen.map_or(t, |f| f.min(t)));
                    s.last_seen = Some(s.last_seen.map_or(t, |l| l.max(t)));
                }
                *worst = (*worst).max(severity::of_line(&head.kind, line));
                if head.kind == "heartbeat"
                    && let Some(i) = hostname_finder.find(line)
                {
                    let rest = &line[i + 12..];
                    if let Some(end) = memchr::memchr2(b'"', b'\\', rest) {
                        s.hostname = Some(clean(&String::from_utf8_lossy(&rest[..end])));
                    }
                }
            })
            .map_err(LogsError::io(&path))?;
            super::warn_broken(&path, read);
        }
    }
    let mut v: Vec<NodeStats> = nodes
        .into_values()
        .map(|(mut s, worst)| {
            s.worst_severity = Some(worst.as_str());
            s
        })
        .collect();
    v.sort_by(|a, b| a.hostname.cmp(&b.hostname).then(a.node_id.cmp(&b.node_id)));
    Ok(v)
}

pub fn print(out: &mut impl Write, stats: &[NodeStats], json: bool) -> std::io::Result<()> {
    if json {
        for s in stats {
            serde_json::to_writer(&mut *out, s)?;
            out.write_all(b"\n")?;
        }
        return out.flush();
    }
    writeln!(
        out,
        "{:<36} {:<20} {:>10} {:>6} {:>8} {:>7} {:<20} {:<20} WORST",
        "NODE", "HOSTNAME", "HEARTBEATS", "SCANS", "COMMANDS", "EVENTS", "FIRST SEEN", "LAST SEEN"
    )?;
    for s in stats {
        let count = |k: &[&str]| {
            k.iter()
                .map(|k| s.counts.get(*k).copied().unwrap_or(0))
                .sum::<u64>()
        };
        let events: u64 = s
            .counts
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "heartbeat" | "scan" | "command" | "receipt"))
            .map(|(_, n)| n)
            .sum();
        let t = |t: Option<DateTime<Utc>>| {
            t.map_or_else(|| "-".into(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        };
        writeln!(
            out,
            "{:<36} {:<20} {:>10} {:>6} {:>8} {:>7} {:<20} {:<20} {}",
            s.node_id,
            s.hostname.as_deref().unwrap_or("-"),
            count(&["heartbeat"]),
            count(&["scan"]),
            count(&["command", "receipt"]),
            events,
            t(s.first_seen),
            t(s.last_seen),
            s.worst_severity.unwrap_or("info")
        )?;
    }
    out.flush()
}
