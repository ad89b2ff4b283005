//! One severity scale for every record, so `--min-severity` means the same for all kinds:
//! `info < low < medium < high < critical` (the scan findings' scale).
//!
//! - heartbeat: ok → info, a check unknown → low, warn → medium, crit or services down → high
//!   (down as [`Services::judge`] reads it: a `systemd` check that could not look is unknown,
//!   low, whatever `services_ok` says).
//! - scan: the worst finding's severity (info without findings).
//! - attention: its new level's ([`AttentionLevel::severity`]): ok → info, attn → medium,
//!   crit → high.
//! - other records: a `severity` field in the record or its `body`, else info.

use serde::Deserialize;
pub use vaultmesh_proto::Severity;
use vaultmesh_proto::heartbeat::SERVICES_CHECK;
use vaultmesh_proto::{AttentionLevel, CheckStatus, Services};

/// Only the parts of a record that decide its severity.
#[derive(Deserialize)]
struct Partial {
    #[serde(default)]
    services_ok: Option<bool>,
    #[serde(default)]
    checks: Vec<PartialCheck>,
    #[serde(default)]
    findings: Vec<PartialFinding>,
    #[serde(default)]
    severity: Option<Severity>,
    #[serde(default)]
    body: Option<PartialBody>,
}

#[derive(Deserialize)]
struct PartialCheck {
    #[serde(default)]
    name: String,
    status: CheckStatus,
}

#[derive(Deserialize)]
struct PartialFinding {
    severity: Severity,
}

#[derive(Deserialize)]
struct PartialBody {
    #[serde(default)]
    severity: Option<Severity>,
    /// An attention change's new level.
    #[serde(default)]
    level: Option<AttentionLevel>,
}

#[derive(Deserialize)]
struct PartialLine {
    record: Partial,
}

/// The severity of a stored line of `kind` (info if the record cannot be read).
pub fn of_line(kind: &str, line: &[u8]) -> Severity {
    let Ok(PartialLine { record: r }) = serde_json::from_slice::<PartialLine>(line) else {
        return Severity::Info;
    };
    match kind {
        "heartbeat" => {
            let mut s = Severity::Info;
            for c in &r.checks {
                s = s.max(match c.status {
                    CheckStatus::Crit => Severity::High,
                    CheckStatus::Warn => Severity::Medium,
                    CheckStatus::Unknown => Severity::Low,
                    CheckStatus::Ok => Severity::Info,
                });
            }
            let systemd = r.checks.iter().find(|c| c.name == SERVICES_CHECK);
            if Services::judge(r.services_ok.unwrap_or(true), systemd.map(|c| c.status))
                == Services::Down
            {
                s = s.max(Severity::High);
            }
            s
        }
        "scan" => r
            .findings
            .iter()
            .map(|f| f.severity)
            .max()
            .unwrap_or(Severity::Info),
        "attention" => r
            .body
            .and_then(|b| b.level)
            .map_or(Severity::Info, AttentionLevel::severity),
        _ => r
            .severity
            .or(r.body.and_then(|b| b.severity))
            .unwrap_or(Severity::Info),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severities_per_kind() {
        let hb = |checks: &str, services: bool| {
            format!(
                r#"{{"kind":"heartbeat","ts":"t","record":{{"services_ok":{services},"checks":[{checks}]}}}}"#
            )
        };
        assert_eq!(
            of_line("heartbeat", hb("", true).as_bytes()),
            Severity::Info
        );
        assert_eq!(
            of_line(
                "heartbeat",
                hb(r#"{"status":"warn"},{"status":"ok"}"#, true).as_bytes()
            ),
            Severity::Medium
        );
        assert_eq!(
            of_line("heartbeat", hb(r#"{"status":"unknown"}"#, true).as_bytes()),
            Severity::Low
        );
        assert_eq!(
            of_line("heartbeat", hb("", false).as_bytes()),
            Severity::High
        );
        // An older agent's "false" beside a systemd check that could not look: unknown, low.
        assert_eq!(
            of_line(
                "heartbeat",
                hb(r#"{"name":"systemd","status":"unknown"}"#, false).as_bytes()
            ),
            Severity::Low
        );
        let scan = r#"{"kind":"scan","ts":"t","record":{"findings":[{"severity":"low"},{"severity":"critical"}]}}"#;
        assert_eq!(of_line("scan", scan.as_bytes()), Severity::Critical);
        let incident = r#"{"kind":"incident","ts":"t","record":{"body":{"severity":"high"}}}"#;
        assert_eq!(of_line("incident", incident.as_bytes()), Severity::High);
        let attention = |level: &str| {
            format!(
                r#"{{"kind":"attention","ts":"t","record":{{"body":{{"level":"{level}","previous":"ok","reasons":[]}}}}}}"#
            )
        };
        for (level, want) in [
            ("ok", Severity::Info),
            ("attn", Severity::Medium),
            ("crit", Severity::High),
        ] {
            assert_eq!(of_line("attention", attention(level).as_bytes()), want);
        }
        assert_eq!(of_line("note", b"garbage"), Severity::Info);
        assert!("urgent".parse::<Severity>().is_err());
        assert_eq!("HIGH".parse::<Severity>(), Ok(Severity::High));
    }
}
