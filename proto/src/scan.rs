//! `ScanReport`: what a node's sovereign security scan found, sent to `POST /api/agent/scans`.
//!
//! A report carries the rules' **findings** (judgements made on the node) and a **fingerprint**
//! (plain facts: listening sockets, file hashes, sysctl values, set-uid binaries). The Command
//! Center compares a node's fingerprint with its previous one to detect drift, so facts are
//! grouped by category and keyed by a stable name:
//!
//! ```json
//! {"listeners": {"tcp/0.0.0.0:22": "listen"}, "files": {"/etc/passwd": "<sha256>"}}
//! ```

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::heartbeat::{HeartbeatError, LastScan, count, text};
use crate::severity::Severity;

/// Upper bounds the Command Center enforces on a scan report.
pub mod limits {
    /// Most findings in one report (a scan stops adding findings at this count).
    pub const FINDINGS_MAX: usize = 1000;
    /// Most facts across all fingerprint categories.
    pub const FACTS_MAX: usize = 20_000;
    /// Longest rule name, fact category or fact key, in bytes.
    pub const NAME_MAX: usize = 4096;
    /// Longest title.
    pub const TITLE_MAX: usize = 256;
    /// Longest detail, evidence or fact value, in bytes.
    pub const TEXT_MAX: usize = 4096;
    /// Most rule errors.
    pub const ERRORS_MAX: usize = 64;
    /// Largest report an agent sends, as JSON (it cuts details, facts, then findings to fit);
    /// the Command Center accepts request bodies up to [`REPORT_BODY_MAX`].
    pub const REPORT_BYTES: usize = 4 << 20;
    /// Largest `POST /api/agent/scans` body the Command Center accepts.
    pub const REPORT_BODY_MAX: usize = REPORT_BYTES + (256 << 10);
}

/// Categories of facts: category → key → value.
pub type Fingerprint = BTreeMap<String, BTreeMap<String, String>>;

/// One finding of one rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// Registered name of the rule (`sshd`, `listeners`, ...).
    pub rule: String,
    pub severity: Severity,
    /// One line naming the problem.
    pub title: String,
    /// Why it matters and what to do.
    #[serde(default)]
    pub detail: String,
    /// What was seen, verbatim (a config line, a path and its mode, ...).
    #[serde(default)]
    pub evidence: String,
}

/// A rule that could not finish (unreadable file, time budget spent, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleError {
    pub rule: String,
    pub error: String,
}

/// A complete scan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScanReport {
    /// UUID v4 chosen by the agent; a report sent twice is stored once.
    pub scan_id: Uuid,
    pub node_id: Uuid,
    pub profile: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub findings: Vec<Finding>,
    #[serde(default)]
    pub fingerprint: Fingerprint,
    /// Findings per severity; severities without findings are omitted.
    #[serde(default)]
    pub counts: BTreeMap<Severity, u64>,
    /// Rules that ran.
    #[serde(default)]
    pub rules: Vec<String>,
    /// Rules that could not finish; their findings and facts may be partial.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<RuleError>,
    /// Findings were dropped at [`limits::FINDINGS_MAX`].
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

/// Counts findings per severity.
pub fn count_findings(findings: &[Finding]) -> BTreeMap<Severity, u64> {
    let mut counts = BTreeMap::new();
    for f in findings {
        *counts.entry(f.severity).or_insert(0) += 1;
    }
    counts
}

impl ScanReport {
    /// The worst severity among the findings.
    pub fn worst(&self) -> Option<Severity> {
        self.findings.iter().map(|f| f.severity).max()
    }

    /// The pointer a heartbeat carries.
    pub fn last_scan(&self) -> LastScan {
        LastScan {
            scan_id: self.scan_id.to_string(),
            finished_at: self.finished_at,
            counts: self
                .counts
                .iter()
                .map(|(s, n)| (s.as_str().to_string(), *n))
                .collect(),
        }
    }

    /// Checks the bounds in [`limits`]; `counts` must agree with `findings`.
    pub fn validate(&self) -> Result<(), HeartbeatError> {
        use limits::*;
        text(
            "profile",
            &self.profile,
            crate::heartbeat::limits::PROFILE_MAX,
            true,
        )?;
        count("findings", self.findings.len(), FINDINGS_MAX)?;
        for f in &self.findings {
            text("findings[].rule", &f.rule, NAME_MAX, true)?;
            text("findings[].title", &f.title, TITLE_MAX, true)?;
            long_text("findings[].detail", &f.detail)?;
            long_text("findings[].evidence", &f.evidence)?;
        }
        let facts: usize = self.fingerprint.values().map(BTreeMap::len).sum();
        count("fingerprint", facts, FACTS_MAX)?;
        for (cat, facts) in &self.fingerprint {
            text("fingerprint category", cat, NAME_MAX, true)?;
            for (k, v) in facts {
                text("fingerprint key", k, NAME_MAX, true)?;
                long_text("fingerprint value", v)?;
            }
        }
        count("rules", self.rules.len(), ERRORS_MAX * 4)?;
        count("errors", self.errors.len(), ERRORS_MAX)?;
        for e in &self.errors {
            text("errors[].rule", &e.rule, NAME_MAX, true)?;
            long_text("errors[].error", &e.error)?;
        }
        if self.counts != count_findings(&self.findings) {
            return Err(HeartbeatError::Inconsistent {
                field: "counts",
                reason: "does not match the findings",
            });
        }
        if self.finished_at < self.started_at {
            return Err(HeartbeatError::Inconsistent {
                field: "finished_at",
                reason: "is before started_at",
            });
        }
        Ok(())
    }
}

/// Multi-line text (evidence may quote several lines) — length only, newlines and tabs allowed.
fn long_text(field: &'static str, value: &str) -> Result<(), HeartbeatError> {
    if value.len() > limits::TEXT_MAX {
        return Err(HeartbeatError::TooLong {
            field,
            len: value.len(),
            max: limits::TEXT_MAX,
        });
    }
    if let Some(c) = crate::text::first_deceptive(value, &['\n', '\t']) {
        return Err(HeartbeatError::ControlChar {
            field,
            ch: format!("U+{:04X}", u32::from(c)),
        });
    }
    Ok(())
}

/// An allowed listener, `tcp/22` or `udp/53`: the entry format of the agent's `listeners` rule
/// and of a policy's `[network] allowed_listeners`, matched against `listeners` fact keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllowedListener {
    /// `tcp` or `udp`.
    pub proto: &'static str,
    pub port: u16,
}

impl AllowedListener {
    /// Parses `proto/port` (case-insensitive protocol).
    pub fn parse(entry: &str) -> Option<AllowedListener> {
        let (proto, port) = entry.split_once('/')?;
        let proto = match proto.trim().to_ascii_lowercase().as_str() {
            "tcp" => "tcp",
            "udp" => "udp",
            _ => return None,
        };
        Some(AllowedListener {
            proto,
            port: port.trim().parse().ok()?,
        })
    }

    /// Whether it allows the listener of fact key `tcp/0.0.0.0:22` or `tcp6/[::]:22`.
    pub fn allows(&self, fact_key: &str) -> bool {
        let Some((table, addr)) = fact_key.split_once('/') else {
            return false;
        };
        table.trim_end_matches('6') == self.proto
            && addr
                .rsplit_once(':')
                .is_some_and(|(_, p)| p.parse() == Ok(self.port))
    }
}

/// One difference between two fingerprints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drift {
    pub category: String,
    pub key: String,
    /// `None` when the fact is new.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
    /// `None` when the fact disappeared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
}

impl Drift {
    /// `added`, `removed` or `changed`.
    pub fn change(&self) -> &'static str {
        match (&self.before, &self.after) {
            (None, _) => "added",
            (_, None) => "removed",
            _ => "changed",
        }
    }
}

/// Facts that differ from `before` to `after`, in category then key order. Categories present
/// on only one side are compared against an empty set only when the other side ran the same
/// rule set — callers pass fingerprints of full scans.
pub fn diff(before: &Fingerprint, after: &Fingerprint) -> Vec<Drift> {
    let empty = BTreeMap::new();
    let mut cats: Vec<&String> = before.keys().chain(after.keys()).collect();
    cats.sort();
    cats.dedup();
    let mut out = Vec::new();
    for cat in cats {
        let b = before.get(cat).unwrap_or(&empty);
        let a = after.get(cat).unwrap_or(&empty);
        let mut keys: Vec<&String> = b.keys().chain(a.keys()).collect();
        keys.sort();
        keys.dedup();
        for key in keys {
            let (bv, av) = (b.get(key), a.get(key));
            if bv != av {
                out.push(Drift {
                    category: cat.clone(),
                    key: key.clone(),
                    before: bv.cloned(),
                    after: av.cloned(),
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> ScanReport {
        let findings = vec![Finding {
            rule: "sshd".into(),
            severity: Severity::High,
            title: "Root may log in over SSH".into(),
            detail: "Set PermitRootLogin no".into(),
            evidence: "/etc/ssh/sshd_config:12: PermitRootLogin yes".into(),
        }];
        ScanReport {
            scan_id: Uuid::nil(),
            node_id: Uuid::nil(),
            profile: "ArchVault".into(),
            started_at: "2026-01-01T00:00:00Z".parse().unwrap(),
            finished_at: "2026-01-01T00:00:01Z".parse().unwrap(),
            counts: count_findings(&findings),
            findings,
            fingerprint: [(
                "listeners".to_string(),
                [("tcp/0.0.0.0:22".to_string(), "listen".to_string())].into(),
            )]
            .into(),
            rules: vec!["sshd".into(), "listeners".into()],
            errors: vec![],
            truncated: false,
        }
    }

    #[test]
    fn round_trips_and_validates() {
        let r = report();
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains(r#""counts":{"high":1}"#), "{json}");
        let back: ScanReport = serde_json::from_str(&json).unwrap();
        assert_eq!(back, r);
        r.validate().unwrap();
        assert_eq!(r.last_scan().counts["high"], 1);
    }

    #[test]
    fn refuses_inconsistent_or_oversized_reports() {
        let mut r = report();
        r.counts.clear();
        assert!(r.validate().unwrap_err().to_string().contains("counts"));
        let mut r = report();
        r.findings[0].title = "x".repeat(300);
        assert!(r.validate().is_err());
        let mut r = report();
        r.findings[0].evidence = "a\u{1b}[31m".into();
        assert!(r.validate().is_err());
        let mut r = report();
        r.finished_at = "2025-01-01T00:00:00Z".parse().unwrap();
        assert!(r.validate().is_err());
    }

    #[test]
    fn allowed_listeners_parse_and_match_both_families() {
        let ssh = AllowedListener::parse(" TCP/22 ").unwrap();
        assert!(ssh.allows("tcp/0.0.0.0:22") && ssh.allows("tcp6/[::]:22"));
        assert!(!ssh.allows("udp/0.0.0.0:22") && !ssh.allows("tcp/0.0.0.0:2222"));
        for bad in ["ssh", "tcp/", "icmp/1", "tcp/70000"] {
            assert!(AllowedListener::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn diff_names_added_removed_and_changed_facts() {
        let before: Fingerprint = [
            (
                "files".to_string(),
                [
                    ("/etc/passwd".to_string(), "aa".to_string()),
                    ("/etc/group".to_string(), "bb".to_string()),
                ]
                .into(),
            ),
            (
                "listeners".to_string(),
                [("tcp/0.0.0.0:22".to_string(), "listen".to_string())].into(),
            ),
        ]
        .into();
        let mut after = before.clone();
        after
            .get_mut("files")
            .unwrap()
            .insert("/etc/passwd".into(), "cc".into());
        after.get_mut("files").unwrap().remove("/etc/group");
        after
            .get_mut("listeners")
            .unwrap()
            .insert("tcp/0.0.0.0:8080".into(), "listen".into());
        let d = diff(&before, &after);
        let changes: Vec<_> = d.iter().map(|d| (d.key.as_str(), d.change())).collect();
        assert_eq!(
            changes,
            [
                ("/etc/group", "removed"),
                ("/etc/passwd", "changed"),
                ("tcp/0.0.0.0:8080", "added")
            ]
        );
        assert!(diff(&before, &before).is_empty());
    }
}
