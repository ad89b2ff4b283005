//! The log directory's layout: one active file per log (`heartbeats.jsonl`), and for logs that
//! rotate, closed segments named by their rotation time (`heartbeats-20261129T093000Z.jsonl`),
//! which sort in time order. Retention deletes old segments of rotating logs only.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};

/// The logs the Command Center keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogName {
    Heartbeats,
    Scans,
    Commands,
    Events,
    /// Enrollments and revocations: the node registry.
    Nodes,
}

impl LogName {
    pub const ALL: [LogName; 5] = [
        LogName::Heartbeats,
        LogName::Scans,
        LogName::Commands,
        LogName::Events,
        LogName::Nodes,
    ];

    /// Base name of the file (`heartbeats` → `heartbeats.jsonl`).
    pub fn stem(self) -> &'static str {
        match self {
            LogName::Heartbeats => "heartbeats",
            LogName::Scans => "sovereign-scans",
            LogName::Commands => "commands",
            LogName::Events => "events",
            LogName::Nodes => "nodes",
        }
    }

    /// The log whose [`LogName::stem`] this is.
    pub fn from_stem(stem: &str) -> Option<LogName> {
        LogName::ALL.into_iter().find(|l| l.stem() == stem)
    }

    /// Only heartbeats rotate and expire; scans, commands and events are the audit trail.
    pub fn rotates(self) -> bool {
        matches!(self, LogName::Heartbeats)
    }

    pub fn active(self, dir: &Path) -> PathBuf {
        dir.join(format!("{}.jsonl", self.stem()))
    }
}

const STAMP: &str = "%Y%m%dT%H%M%SZ";

/// Name for a segment rotated at `at`, not clashing with an existing file.
pub fn rotated_path(dir: &Path, log: LogName, at: DateTime<Utc>) -> PathBuf {
    let base = format!("{}-{}", log.stem(), at.format(STAMP));
    let mut path = dir.join(format!("{base}.jsonl"));
    let mut n = 1;
    while path.exists() {
        path = dir.join(format!("{base}-{n}.jsonl"));
        n += 1;
    }
    path
}

/// When a segment was rotated, from its name.
fn rotated_at(log: LogName, file_name: &str) -> Option<DateTime<Utc>> {
    let rest = file_name
        .strip_prefix(log.stem())?
        .strip_prefix('-')?
        .strip_suffix(".jsonl")?;
    let stamp = rest.get(..16)?;
    NaiveDateTime::parse_from_str(stamp, STAMP)
        .ok()
        .map(|t| t.and_utc())
}

/// Closed segments of `log`, oldest first, with their rotation times.
pub fn segments(dir: &Path, log: LogName) -> std::io::Result<Vec<(PathBuf, DateTime<Utc>)>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        if let Some(at) = name.to_str().and_then(|n| rotated_at(log, n)) {
            out.push((entry.path(), at));
        }
    }
    // Same second: the plain name came first, then -1, -2, ...
    out.sort_by(|a, b| {
        a.1.cmp(&b.1)
            .then(a.0.as_os_str().len().cmp(&b.0.as_os_str().len()))
            .then(a.0.cmp(&b.0))
    });
    Ok(out)
}

/// Every file of `log` in time order: closed segments, then the active file if it exists.
pub fn files(dir: &Path, log: LogName) -> std::io::Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = segments(dir, log)?.into_iter().map(|s| s.0).collect();
    let active = log.active(dir);
    if active.exists() {
        v.push(active);
    }
    Ok(v)
}

/// Deletes closed segments of a rotating `log` rotated more than `keep` before `now`.
/// Returns the deleted paths.
pub fn expire(
    dir: &Path,
    log: LogName,
    keep: Duration,
    now: DateTime<Utc>,
) -> std::io::Result<Vec<PathBuf>> {
    if !log.rotates() {
        return Ok(Vec::new());
    }
    let keep = chrono::Duration::from_std(keep).unwrap_or(chrono::Duration::MAX);
    let mut deleted = Vec::new();
    for (path, at) in segments(dir, log)? {
        if now - at > keep {
            std::fs::remove_file(&path)?;
            deleted.push(path);
        }
    }
    Ok(deleted)
}

/// fsyncs a directory, so a created, renamed or deleted entry survives a crash.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_sort_by_rotation_time_and_expire() {
        let dir = tempfile::tempdir().unwrap();
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let a = rotated_path(dir.path(), LogName::Heartbeats, t("2026-11-01T00:00:00Z"));
        std::fs::write(&a, "").unwrap();
        let b = rotated_path(dir.path(), LogName::Heartbeats, t("2026-11-20T12:00:00Z"));
        std::fs::write(&b, "").unwrap();
        let b2 = rotated_path(dir.path(), LogName::Heartbeats, t("2026-11-20T12:00:00Z"));
        assert!(
            b2.to_string_lossy()
                .ends_with("heartbeats-20261120T120000Z-1.jsonl"),
            "{b2:?}"
        );
        std::fs::write(&b2, "").unwrap();
        std::fs::write(LogName::Heartbeats.active(dir.path()), "").unwrap();
        std::fs::write(dir.path().join("events.jsonl"), "").unwrap();

        let all = files(dir.path(), LogName::Heartbeats).unwrap();
        let names: Vec<_> = all
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "heartbeats-20261101T000000Z.jsonl",
                "heartbeats-20261120T120000Z.jsonl",
                "heartbeats-20261120T120000Z-1.jsonl",
                "heartbeats.jsonl"
            ]
        );
        let gone = expire(
            dir.path(),
            LogName::Heartbeats,
            Duration::from_secs(7 * 86_400),
            t("2026-11-25T00:00:00Z"),
        )
        .unwrap();
        assert_eq!(gone, vec![a]);
        assert!(
            expire(
                dir.path(),
                LogName::Events,
                Duration::ZERO,
                t("2030-01-01T00:00:00Z")
            )
            .unwrap()
            .is_empty()
        );
    }
}
