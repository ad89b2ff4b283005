//! The result of one run of one check, as carried in heartbeats.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Verdict of a check. Ordered from best to worst, so `max()` over a set of statuses is the worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    /// Everything the check looks at is within bounds.
    Ok,
    /// Something is degraded but not yet failing.
    Warn,
    /// Something is failing and needs a human.
    Crit,
    /// The check could not decide (timed out, panicked, no data source).
    Unknown,
}

impl CheckStatus {
    /// The lowercase wire name (`ok`, `warn`, `crit`, `unknown`).
    pub fn as_str(self) -> &'static str {
        match self {
            CheckStatus::Ok => "ok",
            CheckStatus::Warn => "warn",
            CheckStatus::Crit => "crit",
            CheckStatus::Unknown => "unknown",
        }
    }

    /// Severity rank for "worst of" decisions: crit > warn > unknown > ok.
    ///
    /// `unknown` ranks below `warn` because "we could not look" is less actionable than a
    /// measured degradation, but above `ok` because it is not a clean bill of health.
    pub fn severity(self) -> u8 {
        match self {
            CheckStatus::Ok => 0,
            CheckStatus::Unknown => 1,
            CheckStatus::Warn => 2,
            CheckStatus::Crit => 3,
        }
    }

    /// The worse of two statuses by [`CheckStatus::severity`].
    pub fn worst(self, other: CheckStatus) -> CheckStatus {
        if other.severity() > self.severity() {
            other
        } else {
            self
        }
    }
}

impl fmt::Display for CheckStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One check's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    /// Registered name of the check (`disk`, `memory`, ...).
    pub name: String,
    pub status: CheckStatus,
    /// One human sentence: what was found, naming the offending item when not ok.
    pub summary: String,
    pub observed_at: DateTime<Utc>,
    /// Wall time the check took.
    #[serde(default)]
    pub duration_ms: u64,
    /// Flat numeric measurements (`used_pct`, `load1_per_cpu`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: BTreeMap<String, f64>,
    /// Check-specific structured detail.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub details: serde_json::Value,
}

impl CheckResult {
    /// A result with no metrics or details, observed now.
    pub fn new(name: impl Into<String>, status: CheckStatus, summary: impl Into<String>) -> Self {
        CheckResult {
            name: name.into(),
            status,
            summary: summary.into(),
            observed_at: Utc::now(),
            duration_ms: 0,
            metrics: BTreeMap::new(),
            details: serde_json::Value::Null,
        }
    }

    /// Adds one numeric metric.
    pub fn with_metric(mut self, key: impl Into<String>, value: f64) -> Self {
        self.metrics.insert(key.into(), value);
        self
    }

    /// Sets the structured details.
    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_wire_names() {
        for (s, name) in [
            (CheckStatus::Ok, "\"ok\""),
            (CheckStatus::Warn, "\"warn\""),
            (CheckStatus::Crit, "\"crit\""),
            (CheckStatus::Unknown, "\"unknown\""),
        ] {
            assert_eq!(serde_json::to_string(&s).unwrap(), name);
            assert_eq!(serde_json::from_str::<CheckStatus>(name).unwrap(), s);
        }
        assert!(serde_json::from_str::<CheckStatus>("\"OK\"").is_err());
    }

    #[test]
    fn worst_prefers_crit_then_warn_then_unknown() {
        use CheckStatus::*;
        assert_eq!(Ok.worst(Unknown), Unknown);
        assert_eq!(Unknown.worst(Warn), Warn);
        assert_eq!(Crit.worst(Warn), Crit);
        assert_eq!(Warn.worst(Ok), Warn);
    }

    #[test]
    fn result_round_trip_omits_empty_parts() {
        let r = CheckResult::new("load", CheckStatus::Warn, "load 3.2 per CPU")
            .with_metric("load1_per_cpu", 3.2);
        let json = serde_json::to_value(&r).unwrap();
        assert!(json.get("details").is_none());
        assert_eq!(json["metrics"]["load1_per_cpu"], 3.2);
        let back: CheckResult = serde_json::from_value(json).unwrap();
        assert_eq!(back, r);
    }
}
