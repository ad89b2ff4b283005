//! The non-command sections of a policy file: required services, attention thresholds, the scan
//! schedule and the allowed listeners. Every key has a default, so an empty file (or no file)
//! is a complete policy; [`Settings::default`] is the documented default policy.

use std::time::Duration;

use serde::Deserialize;
use vaultmesh_process::duration;
use vaultmesh_proto::scan::AllowedListener;
use vaultmesh_proto::{AttentionLevel, Severity};

/// Everything but `[commands]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(default)]
    pub services: Services,
    #[serde(default)]
    pub attention: Thresholds,
    #[serde(default)]
    pub scan: ScanSchedule,
    #[serde(default)]
    pub network: Network,
}

/// `[services]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Services {
    /// Units the node's `systemd` check must report active (exact names).
    pub required: Vec<String>,
}

/// `[attention]`: when a node needs an admin.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Thresholds {
    /// No heartbeat for this long → ATTN; for `critical_after` → CRIT.
    #[serde(deserialize_with = "duration::deserialize")]
    pub stale_after: Duration,
    #[serde(deserialize_with = "duration::deserialize")]
    pub critical_after: Duration,
    /// Fullest disk, % used.
    pub disk_attn_pct: f64,
    pub disk_crit_pct: f64,
    /// A filesystem that will be full within this many days at its 7-day trend → ATTN, and
    /// within `disk_forecast_crit_days` → CRIT; `0` turns the rule off.
    pub disk_forecast_attn_days: f64,
    pub disk_forecast_crit_days: f64,
    /// Memory, % used.
    pub memory_attn_pct: f64,
    pub memory_crit_pct: f64,
    /// 5-minute load average per CPU.
    pub load_attn_per_cpu: f64,
    pub load_crit_per_cpu: f64,
    /// Lowest finding severity in the latest scan that raises ATTN, and CRIT.
    pub findings_attn: Severity,
    pub findings_crit: Severity,
    /// Level raised by drift between the last two scans (`ok` ignores drift).
    pub drift: AttentionLevel,
    /// Level raised by a tunnel that is down (`cloudflare_ok: false`).
    pub tunnel: AttentionLevel,
    /// Level raised by a listener not in `[network] allowed_listeners`.
    pub listeners: AttentionLevel,
    /// Flap damping: consecutive bad heartbeats before a heartbeat-borne reason is raised, and
    /// consecutive good ones before it clears.
    pub raise_after: u32,
    pub clear_after: u32,
    /// Level raised by an agent older than `min_agent_version`, or more than one release (a
    /// `major.minor`) behind the Command Center (`ok` turns the rule off).
    pub agent_skew: AttentionLevel,
    /// The oldest agent version this profile's nodes may run (`x.y.z`); unset, only the
    /// release rule applies.
    pub min_agent_version: Option<String>,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            stale_after: Duration::from_secs(90),
            critical_after: Duration::from_secs(300),
            disk_attn_pct: 85.0,
            disk_crit_pct: 95.0,
            disk_forecast_attn_days: 14.0,
            disk_forecast_crit_days: 3.0,
            memory_attn_pct: 90.0,
            memory_crit_pct: 97.0,
            load_attn_per_cpu: 2.0,
            load_crit_per_cpu: 4.0,
            findings_attn: Severity::Medium,
            findings_crit: Severity::High,
            drift: AttentionLevel::Attn,
            tunnel: AttentionLevel::Attn,
            listeners: AttentionLevel::Attn,
            raise_after: 1,
            clear_after: 1,
            agent_skew: AttentionLevel::Attn,
            min_agent_version: None,
        }
    }
}

/// `[scan]`: how often the Command Center asks a node for a sovereign scan.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScanSchedule {
    /// A node whose latest scan is older than this is sent `scan.sovereign`; `0` turns
    /// scheduled scans off.
    #[serde(deserialize_with = "duration::deserialize")]
    pub interval: Duration,
    /// Scans are spread over this window (a per-node offset), so a fleet is not scanned at once.
    #[serde(deserialize_with = "duration::deserialize")]
    pub spread: Duration,
}

impl Default for ScanSchedule {
    fn default() -> Self {
        ScanSchedule {
            interval: Duration::from_secs(24 * 3600),
            spread: Duration::from_secs(600),
        }
    }
}

/// `[network]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Network {
    /// `proto/port` entries that may listen on non-loopback addresses (`tcp/22`). Unset: the
    /// Command Center does not judge listeners (drift still shows new ones).
    pub allowed_listeners: Option<Vec<String>>,
}

impl Network {
    /// Whether a listener fact key (`tcp/0.0.0.0:22`, `tcp6/[::]:22`) is allowed; `None` when
    /// no allow list is set.
    pub fn allows(&self, fact_key: &str) -> Option<bool> {
        let list = self.allowed_listeners.as_ref()?;
        Some(
            list.iter()
                .filter_map(|a| AllowedListener::parse(a))
                .any(|a| a.allows(fact_key)),
        )
    }
}

impl Settings {
    /// Checks what serde cannot: orderings and ranges. Errors are `key: reason`.
    pub fn validate(&self) -> Result<(), String> {
        let a = &self.attention;
        if a.stale_after.is_zero() {
            return Err("attention.stale_after: must be more than 0".into());
        }
        if a.critical_after < a.stale_after {
            return Err(format!(
                "attention.critical_after: {} is shorter than stale_after ({})",
                duration::format(a.critical_after),
                duration::format(a.stale_after)
            ));
        }
        for (key, attn, crit, max) in [
            ("disk", a.disk_attn_pct, a.disk_crit_pct, 100.0),
            ("memory", a.memory_attn_pct, a.memory_crit_pct, 100.0),
            ("load", a.load_attn_per_cpu, a.load_crit_per_cpu, 1000.0),
        ] {
            let suffix = if key == "load" { "per_cpu" } else { "pct" };
            if !(attn > 0.0 && attn <= max) {
                return Err(format!(
                    "attention.{key}_attn_{suffix}: {attn} is outside 0..{max}"
                ));
            }
            if !(crit >= attn && crit <= max) {
                return Err(format!(
                    "attention.{key}_crit_{suffix}: {crit} must be between {key}_attn_{suffix} ({attn}) and {max}"
                ));
            }
        }
        let (fa, fc) = (a.disk_forecast_attn_days, a.disk_forecast_crit_days);
        if !(0.0..=3650.0).contains(&fa) {
            return Err(format!(
                "attention.disk_forecast_attn_days: {fa} is outside 0..3650 (0 turns the rule off)"
            ));
        }
        if !(0.0..=fa).contains(&fc) {
            return Err(format!(
                "attention.disk_forecast_crit_days: {fc} must be between 0 and disk_forecast_attn_days ({fa})"
            ));
        }
        if a.findings_crit < a.findings_attn {
            return Err(format!(
                "attention.findings_crit: {} is below findings_attn ({})",
                a.findings_crit, a.findings_attn
            ));
        }
        for (key, n) in [
            ("raise_after", a.raise_after),
            ("clear_after", a.clear_after),
        ] {
            if !(1..=100).contains(&n) {
                return Err(format!("attention.{key}: {n} is outside 1..100"));
            }
        }
        if let Some(v) = &a.min_agent_version
            && let Err(e) = semver::Version::parse(v)
        {
            return Err(format!(
                "attention.min_agent_version: {v:?} is not a version like \"0.3.0\" ({e})"
            ));
        }
        let s = &self.scan;
        if !s.interval.is_zero() && s.interval < Duration::from_secs(60) {
            return Err("scan.interval: must be 0 (off) or at least 1m".into());
        }
        if !s.interval.is_zero() && s.spread > s.interval {
            return Err("scan.spread: must not be longer than scan.interval".into());
        }
        for (i, u) in self.services.required.iter().enumerate() {
            if u.trim().is_empty() || u.len() > 256 || u.chars().any(|c| c.is_control() || c == '/')
            {
                return Err(format!("services.required[{i}]: {u:?} is not a unit name"));
            }
        }
        if let Some(list) = &self.network.allowed_listeners {
            for (i, entry) in list.iter().enumerate() {
                if AllowedListener::parse(entry).is_none() {
                    return Err(format!(
                        "network.allowed_listeners[{i}]: {entry:?} is not proto/port (e.g. \"tcp/22\")"
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Settings, String> {
        let s: Settings = toml::from_str(text).map_err(|e| e.message().to_string())?;
        s.validate()?;
        Ok(s)
    }

    #[test]
    fn defaults_are_a_complete_valid_policy() {
        let s = parse("").unwrap();
        assert_eq!(s, Settings::default());
        assert_eq!(s.attention.stale_after, Duration::from_secs(90));
    }

    #[test]
    fn values_are_checked_and_errors_name_the_key() {
        let s =
            parse("[attention]\nstale_after = \"2m\"\ncritical_after = \"10m\"\nraise_after = 3\n")
                .unwrap();
        assert_eq!(s.attention.raise_after, 3);
        for (text, key) in [
            (
                "[attention]\nstale_after = \"10m\"\ncritical_after = \"5m\"",
                "attention.critical_after",
            ),
            (
                "[attention]\ndisk_attn_pct = 96.0",
                "attention.disk_crit_pct",
            ),
            (
                "[attention]\nfindings_attn = \"high\"\nfindings_crit = \"low\"",
                "attention.findings_crit",
            ),
            ("[attention]\nclear_after = 0", "attention.clear_after"),
            (
                "[attention]\nmin_agent_version = \"0.3\"",
                "attention.min_agent_version",
            ),
            (
                "[attention]\ndisk_forecast_attn_days = 2.0",
                "attention.disk_forecast_crit_days",
            ),
            (
                "[attention]\ndisk_forecast_attn_days = -1.0",
                "attention.disk_forecast_attn_days",
            ),
            ("[scan]\ninterval = \"10s\"", "scan.interval"),
            (
                "[network]\nallowed_listeners = [\"ssh\"]",
                "network.allowed_listeners[0]",
            ),
            ("[services]\nrequired = [\"\"]", "services.required[0]"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.starts_with(key), "{text}: {e}");
        }
        assert!(
            parse("[attention]\nstale = 1")
                .unwrap_err()
                .contains("unknown field `stale`")
        );
        assert!(parse("[attention]\ndrift = \"loud\"").is_err());
    }

    #[test]
    fn listener_allow_list_matches_both_families() {
        let n = Network {
            allowed_listeners: Some(vec!["tcp/22".into(), "udp/53".into()]),
        };
        assert_eq!(n.allows("tcp/0.0.0.0:22"), Some(true));
        assert_eq!(n.allows("tcp6/[::]:22"), Some(true));
        assert_eq!(n.allows("udp6/[::]:53"), Some(true));
        assert_eq!(n.allows("tcp/0.0.0.0:8080"), Some(false));
        assert_eq!(n.allows("udp/0.0.0.0:22"), Some(false));
        assert_eq!(Network::default().allows("tcp/0.0.0.0:8080"), None);
    }
}
