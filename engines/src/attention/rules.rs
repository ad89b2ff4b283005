//! The attention rules: pure functions from a node's state and its profile's settings to the
//! reasons it needs an admin. No clocks, no I/O — `now` is passed in — so every rule is tested
//! with plain values.
//!
//! Rules come in two kinds:
//! - **observed** rules read the latest heartbeat (`services`, `tunnel`, `check.<name>`,
//!   `threshold.<metric>`, `required_service.<unit>`). They are flap-damped per heartbeat by
//!   [`super::damping`].
//! - **state** rules read durable state (`stale`, `scan.findings`, `scan.errors`,
//!   `scan.overdue`, `listeners`, `drift`, `receipt_chain`, `incident`). They apply as soon as the state changes.
//!
//! The Command Center has reasons of its own, about itself rather than any node
//! ([`command_center`]: `cc.storage`, `cc.disk_free`).

use chrono::{DateTime, Utc};
use vaultmesh_proto::event::incident_level;
use vaultmesh_proto::heartbeat::SERVICES_CHECK;
use vaultmesh_proto::{AttentionLevel, CheckStatus, IncidentState, Reason, Services};

use vaultmesh_store::NodeSnapshot;
use vaultmesh_store::health::StorageState;
use vaultmesh_store::policy::Settings;

/// Every rule name [`observed`], [`state`] and [`command_center`] produce, but those of the open
/// families.
pub const RULES: [&str; 20] = [
    "revoked",
    "stale",
    "services",
    "tunnel",
    "threshold.disk",
    "disk.forecast",
    "threshold.memory",
    "threshold.load",
    "scan.findings",
    "scan.errors",
    "scan.overdue",
    "listeners",
    "drift",
    "receipt_chain",
    "agent_version",
    "cc.storage",
    "cc.disk_free",
    "budget.heartbeats",
    "budget.scans",
    "budget.receipts",
];

/// Families whose members are named by the node (`check.<check>`, `required_service.<unit>`,
/// `incident.<id>`).
pub const FAMILIES: [&str; 3] = ["check.", "required_service.", "incident."];

/// Whether `name` names rules the way a notification route writes it: a rule, a family ending
/// in `.` (`check.`, `scan.`), or a member of an open family (`check.disk`). The reason when
/// not, with the near name.
pub fn check_rule_name(name: &str) -> Result<(), String> {
    let known = || RULES.iter().chain(FAMILIES.iter()).copied();
    let ok = if name.ends_with('.') {
        known().any(|r| r.starts_with(name) && r != name) || FAMILIES.contains(&name)
    } else {
        RULES.contains(&name)
            || FAMILIES
                .iter()
                .any(|f| name.len() > f.len() && name.starts_with(f))
    };
    if ok {
        return Ok(());
    }
    // A family written without its dot is the commonest slip.
    let candidates: Vec<String> = known()
        .map(str::to_string)
        .chain(["scan.", "threshold.", "cc."].map(String::from))
        .collect();
    Err(format!(
        "no attention rule {name:?}{}; rules: {}; families (end in .): check., required_service., incident., scan., threshold., cc.",
        vaultmesh_process::suggest::did_you_mean(name, candidates.iter().map(String::as_str)),
        RULES.join(", "),
    ))
}

/// Whether `rule` is an observed (heartbeat-borne, damped) rule.
pub fn is_observed(rule: &str) -> bool {
    rule == "services"
        || rule == "tunnel"
        || rule.starts_with("check.")
        || rule.starts_with("threshold.")
        || rule.starts_with("required_service.")
}

fn reason(
    rule: impl Into<String>,
    level: AttentionLevel,
    label: impl AsRef<str>,
    message: impl Into<String>,
) -> Reason {
    Reason {
        rule: rule.into(),
        level,
        label: fit(label.as_ref(), Reason::LABEL_MAX),
        message: message.into(),
        suppressed_by: None,
    }
}

/// The order reasons are shown in: `stale` first — a silent node leads with its silence, the
/// rest being what its last heartbeat said — then worst first, then by rule.
pub fn order(reasons: &mut [Reason]) {
    reasons.sort_by(|a, b| {
        (a.rule != "stale")
            .cmp(&(b.rule != "stale"))
            .then_with(|| b.level.cmp(&a.level))
            .then_with(|| a.rule.cmp(&b.rule))
    });
}

/// `text` cut to `max` characters, the last one `…` when it was cut.
pub fn fit(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// A percentage as a label shows it: whole, but never rounded up to 100.
fn pct_label(pct: f64) -> String {
    if (99.5..100.0).contains(&pct) {
        "99%".into()
    } else {
        format!("{pct:.0}%")
    }
}

/// Reasons from the latest heartbeat.
pub fn observed(snap: &NodeSnapshot, settings: &Settings) -> Vec<Reason> {
    use AttentionLevel::{Attn, Crit};
    let hb = &snap.latest;
    let a = &settings.attention;
    let mut out = Vec::new();
    let check = |name: &str| hb.checks.iter().find(|c| c.name == name);

    let services = hb.services();
    let systemd_says =
        || check(SERVICES_CHECK).map_or_else(String::new, |c| format!(": {}", c.summary));
    match services {
        Services::Up => {}
        Services::Down => out.push(reason(
            "services",
            Crit,
            "Services down",
            format!("services are down{}", systemd_says()),
        )),
        // Not knowing is not "down": look, but do not page.
        Services::Unknown => out.push(reason(
            "services",
            Attn,
            "Services unknown",
            format!("cannot reach systemd{}", systemd_says()),
        )),
    }
    if !hb.cloudflare_ok && a.tunnel > AttentionLevel::Ok {
        let why = check("cloudflared").map_or_else(String::new, |c| format!(": {}", c.summary));
        out.push(reason(
            "tunnel",
            a.tunnel,
            "Tunnel down",
            format!("Cloudflare Tunnel is down{why}"),
        ));
    }
    for c in &hb.checks {
        // Covered by the flags above and by the scan rules below.
        let covered = (c.name == SERVICES_CHECK && services != Services::Up)
            || (c.name == "cloudflared" && !hb.cloudflare_ok)
            || (c.name == "sovereign_scan" && c.status != CheckStatus::Unknown);
        let level = match c.status {
            CheckStatus::Ok => continue,
            CheckStatus::Warn | CheckStatus::Unknown => Attn,
            CheckStatus::Crit => Crit,
        };
        if !covered {
            out.push(reason(
                format!("check.{}", c.name),
                level,
                format!("{} {}", fit(&c.name, 24), c.status),
                format!("{} is {}: {}", c.name, c.status, c.summary),
            ));
        }
    }
    if let Some(m) = &hb.metrics {
        if let Some((mount, pct)) = m.fullest_disk()
            && let Some(level) = grade(pct, a.disk_attn_pct, a.disk_crit_pct)
        {
            out.push(reason(
                "threshold.disk",
                level,
                format!("Disk {} {}", fit(mount, 20), pct_label(pct)),
                format!("disk {mount} is {pct:.1}% full"),
            ));
        }
        if let Some(pct) = m.mem_used_pct()
            && let Some(level) = grade(pct, a.memory_attn_pct, a.memory_crit_pct)
        {
            out.push(reason(
                "threshold.memory",
                level,
                format!("Memory {}", pct_label(pct)),
                format!("memory is {pct:.1}% used"),
            ));
        }
        if let (Some(load), Some(cpus)) = (m.load, m.cpu_count.filter(|c| *c > 0)) {
            let per_cpu = load[1] / f64::from(cpus);
            if let Some(level) = grade(per_cpu, a.load_attn_per_cpu, a.load_crit_per_cpu) {
                out.push(reason(
                    "threshold.load",
                    level,
                    format!("Load {per_cpu:.1}/CPU"),
                    format!(
                        "5-minute load is {:.2} per CPU ({} over {cpus} CPUs)",
                        per_cpu, load[1]
                    ),
                ));
            }
        }
    }
    if a.agent_skew > AttentionLevel::Ok
        && let Some(v) = &hb.agent_version
        && let Some((label, message)) = agent_skew(v, &CC_VERSION, a.min_agent_version.as_deref())
    {
        out.push(reason("agent_version", a.agent_skew, label, message));
    }
    // A node whose systemd cannot be reached reports no units: that is the one reason above,
    // not one "not reported" per required unit.
    if !settings.services.required.is_empty() && services != Services::Unknown {
        let units = check("systemd")
            .and_then(|c| c.details.get("units"))
            .and_then(|u| u.as_array());
        for unit in &settings.services.required {
            let state = units.and_then(|list| {
                list.iter()
                    .find(|u| u.get("name").and_then(|n| n.as_str()) == Some(unit.as_str()))
                    .and_then(|u| u.get("active_state").and_then(|s| s.as_str()))
            });
            let rule = format!("required_service.{unit}");
            match state {
                Some("active") => {}
                Some(s) => out.push(reason(
                    rule,
                    Crit,
                    format!("{} {}", fit(unit, 20), fit(s, 11)),
                    format!("required service {unit} is {s}"),
                )),
                None => out.push(reason(
                    rule,
                    Attn,
                    format!("{} unreported", fit(unit, 20)),
                    format!("required service {unit} is not reported by the node's systemd check (add it to [checks.systemd] units)"),
                )),
            }
        }
    }
    out
}

/// This Command Center's version: agents are judged against its release.
static CC_VERSION: std::sync::LazyLock<semver::Version> = std::sync::LazyLock::new(|| {
    semver::Version::parse(env!("CARGO_PKG_VERSION"))
        .unwrap_or_else(|_| semver::Version::new(0, 0, 0))
});

/// Why an agent's version is too old: below `min` (the profile's `min_agent_version`), or more
/// than one release behind `cc`. A release is a `major.minor`: the one before `x.y` is
/// `x.(y-1)`, and before `x.0` any `(x-1).*`; patch versions do not count. A version that does
/// not parse is reported too (an agent always sends its own `CARGO_PKG_VERSION`). `None` when
/// the agent is recent enough (newer than the Command Center included).
pub fn agent_skew(
    agent: &str,
    cc: &semver::Version,
    min: Option<&str>,
) -> Option<(String, String)> {
    let Ok(v) = semver::Version::parse(agent) else {
        return Some((
            "Agent version ?".into(),
            format!(
                "agent version {:?} is not a version (x.y.z)",
                fit(agent, 64)
            ),
        ));
    };
    if let Some(min) = min.and_then(|m| semver::Version::parse(m).ok())
        && v < min
    {
        return Some((
            format!("Agent {} < {}", fit(agent, 12), fit(&min.to_string(), 12)),
            format!(
                "agent {v} is older than the minimum {min} this node's policy sets (attention.min_agent_version)"
            ),
        ));
    }
    let behind = if v.major == cc.major {
        cc.minor.saturating_sub(v.minor)
    } else if v.major < cc.major {
        // Before x.0 comes any (x-1).y; anything older is two releases or more.
        if cc.minor == 0 && v.major + 1 == cc.major {
            1
        } else {
            2 + cc.minor
        }
    } else {
        0
    };
    (behind > 1).then(|| {
        (
            format!("Agent {} old", fit(agent, 20)),
            format!(
                "agent {v} is {behind} releases behind this Command Center ({cc}); upgrade it (one release behind is fine)"
            ),
        )
    })
}

/// `Some(level)` when `value` reaches a threshold.
fn grade(value: f64, attn: f64, crit: f64) -> Option<AttentionLevel> {
    if value >= crit {
        Some(AttentionLevel::Crit)
    } else if value >= attn {
        Some(AttentionLevel::Attn)
    } else {
        None
    }
}

/// Reasons from durable state, judged at `now`.
pub fn state(snap: &NodeSnapshot, settings: &Settings, now: DateTime<Utc>) -> Vec<Reason> {
    use AttentionLevel::{Attn, Crit};
    let a = &settings.attention;
    let mut out = Vec::new();

    // A revoked node is retired or locked out on purpose: that is all there is to say about it
    // (no `stale` that would turn CRIT and stay so, no overdue scans, no broken chain).
    // A decommissioned one has left the fleet: nothing at all.
    if let Some(rev) = &snap.revoked {
        if rev.decommissioned {
            return out;
        }
        let readmitted = if rev.readmitted {
            "; re-admitted, it may enroll again"
        } else {
            ""
        };
        out.push(reason(
            "revoked",
            AttentionLevel::Ok,
            "Revoked",
            format!(
                "revoked at {} by {}: its requests are refused{readmitted}",
                rev.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                rev.by
            ),
        ));
        return out;
    }

    let silent = (now - snap.last_seen).to_std().unwrap_or_default();
    let ago = vaultmesh_process::duration::format(std::time::Duration::from_secs(silent.as_secs()));
    let stale = format!("Stale {}", coarse(silent));
    if silent >= a.critical_after {
        out.push(reason(
            "stale",
            Crit,
            stale,
            format!("no heartbeat for {ago}"),
        ));
    } else if silent >= a.stale_after {
        out.push(reason(
            "stale",
            Attn,
            stale,
            format!("no heartbeat for {ago}"),
        ));
    }

    if let Some(scan) = &snap.latest_scan {
        if let Some(worst) = scan.worst() {
            let level = if worst >= a.findings_crit {
                Some(Crit)
            } else if worst >= a.findings_attn {
                Some(Attn)
            } else {
                None
            };
            if let Some(level) = level {
                let counts: Vec<String> = scan
                    .counts
                    .iter()
                    .rev()
                    .filter(|(s, _)| **s >= a.findings_attn)
                    .map(|(s, n)| format!("{n} {s}"))
                    .collect();
                out.push(reason(
                    "scan.findings",
                    level,
                    format!("Findings: {}", counts.join(", ")),
                    format!(
                        "scan found {}: {}",
                        counts.join(", "),
                        scan.findings.first().map_or("", |f| f.title.as_str())
                    ),
                ));
            }
        }
        let interval = settings.scan.interval;
        let age = (now - scan.finished_at).to_std().unwrap_or_default();
        if !interval.is_zero() && age > interval * 2 {
            out.push(reason(
                "scan.overdue",
                Attn,
                format!("Scan {} old", coarse(age)),
                format!(
                    "latest scan is {} old; the profile asks for one every {}",
                    coarse(age),
                    coarse(interval)
                ),
            ));
        }
        if !scan.errors.is_empty() {
            let rules: Vec<&str> = scan.errors.iter().map(|e| e.rule.as_str()).collect();
            out.push(reason(
                "scan.errors",
                Attn,
                "Scan incomplete",
                format!("scan rules did not finish: {}", rules.join(", ")),
            ));
        }
        if a.listeners > AttentionLevel::Ok
            && let Some(listeners) = scan.fingerprint.get("listeners")
        {
            let unexpected: Vec<&str> = listeners
                .keys()
                .filter(|k| settings.network.allows(k) == Some(false))
                .map(String::as_str)
                .collect();
            if !unexpected.is_empty() {
                out.push(reason(
                    "listeners",
                    a.listeners,
                    match unexpected.as_slice() {
                        [one] => format!("Listener {one}"),
                        many => format!("{} unexpected listeners", many.len()),
                    },
                    format!("not in allowed_listeners: {}", unexpected.join(", ")),
                ));
            }
        }
    }

    if !snap.drift.is_empty() && a.drift > AttentionLevel::Ok {
        let shown: Vec<String> = snap.drift.iter().take(3).map(describe_drift).collect();
        let more = snap.drift.len().saturating_sub(shown.len());
        let mut message = format!(
            "{} change{} since the previous scan: {}",
            snap.drift.len(),
            if snap.drift.len() == 1 { "" } else { "s" },
            shown.join("; ")
        );
        if more > 0 {
            message.push_str(&format!("; and {more} more"));
        }
        let label = match snap.drift.len() {
            1 => "Drift: 1 change".to_string(),
            n => format!("Drift: {n} changes"),
        };
        out.push(reason("drift", a.drift, label, message));
    }

    if let Some(r) = disk_forecast(&snap.forecasts, a) {
        out.push(r);
    }

    if snap.receipt_chain_ok == Some(false) {
        out.push(reason(
            "receipt_chain",
            Crit,
            "Receipt chain broken",
            "command receipt chain broken: a receipt does not continue the node's chain",
        ));
    }

    for i in &snap.incidents {
        let mut r = reason(
            format!("incident.{}", i.id),
            incident_level(i.severity),
            format!("Incident: {}", i.title),
            format!("open incident ({}): {}", i.severity, i.title),
        );
        if i.state == IncidentState::Acknowledged {
            r.suppressed_by = Some(format!(
                "acknowledged by {}",
                i.acked_by.as_deref().unwrap_or("?")
            ));
        }
        out.push(r);
    }
    out
}

/// Hours of trend a forecast needs before it may raise `disk.forecast`: a day, so one busy
/// afternoon does not page anyone.
pub const FORECAST_HOURS: u32 = 24;

/// `disk.forecast`: the filesystem that fills soonest at its 7-day trend, when that is within the
/// profile's days.
fn disk_forecast(
    forecasts: &[vaultmesh_proto::history::DiskForecast],
    a: &vaultmesh_store::policy::settings::Thresholds,
) -> Option<Reason> {
    if a.disk_forecast_attn_days <= 0.0 {
        return None;
    }
    let (f, days) = forecasts
        .iter()
        .filter(|f| f.hours >= FORECAST_HOURS)
        .filter_map(|f| Some((f, f.days_until_full?)))
        .min_by(|a, b| a.1.total_cmp(&b.1))?;
    let level = if days <= a.disk_forecast_crit_days {
        AttentionLevel::Crit
    } else if days <= a.disk_forecast_attn_days {
        AttentionLevel::Attn
    } else {
        return None;
    };
    Some(reason(
        "disk.forecast",
        level,
        format!(
            "Disk {} full in {}",
            fit(&f.mount, 16),
            if days < 1.0 {
                format!("{:.0}h", (days * 24.0).max(1.0))
            } else {
                format!("{days:.0}d")
            }
        ),
        format!(
            "disk {} is {:.1}% full and grows {:.2}% a day (7-day trend): full in about {}",
            f.mount,
            f.used_pct,
            f.pct_per_day,
            if days < 1.0 {
                format!("{:.0} hours", (days * 24.0).max(1.0))
            } else {
                format!("{days:.0} days")
            }
        ),
    ))
}

/// A node refused for sending more than its hourly byte budget of a kind (within the last
/// hour): `budget.heartbeats`, `budget.scans`, `budget.receipts`, ATTN.
pub fn budget(
    refusals: &[(crate::budget::Kind, crate::budget::Refusals)],
    limit: impl Fn(crate::budget::Kind) -> u64,
) -> Vec<Reason> {
    refusals
        .iter()
        .map(|(kind, r)| {
            reason(
                format!("budget.{}", kind.name()),
                AttentionLevel::Attn,
                format!("Over {} budget", kind.name()),
                format!(
                    "{} {} refused since {}: over the node's budget of {} an hour",
                    r.count,
                    kind.name(),
                    r.since.format("%H:%M UTC"),
                    vaultmesh_store::health::human_bytes(limit(*kind))
                ),
            )
        })
        .collect()
}

/// The Command Center's own reasons, from its storage: `cc.storage` (CRIT) while the logs
/// refuse writes, `cc.disk_free` (ATTN) while the log volume is below `--min-free`.
pub fn command_center(storage: &StorageState, now: DateTime<Utc>) -> Vec<Reason> {
    let mut out = Vec::new();
    if let Some(f) = &storage.failing {
        let for_how_long = (now - f.since).to_std().unwrap_or_default();
        out.push(reason(
            "cc.storage",
            AttentionLevel::Crit,
            "Logs refuse writes",
            format!(
                "the logs refuse writes (for {}): {}; heartbeats, scans, events and commands get 503 until it has room, everything already received is still shown",
                coarse(for_how_long),
                f.cause
            ),
        ));
    }
    if let Some(v) = storage.volume.filter(|v| v.low) {
        out.push(reason(
            "cc.disk_free",
            AttentionLevel::Attn,
            format!("Log volume {:.0}% free", v.free_pct()),
            format!(
                "the log volume has {} free ({:.1}%), below --min-free {}",
                vaultmesh_store::health::human_bytes(v.free_bytes),
                v.free_pct(),
                storage.min_free.as_deref().unwrap_or("?")
            ),
        ));
    }
    out
}

/// A duration in its largest whole unit: `40s`, `6m`, `5h`, `2d`.
pub fn coarse(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// One line for a fingerprint change: `new listener tcp/0.0.0.0:8080`, `/etc/passwd changed`.
pub fn describe_drift(d: &vaultmesh_proto::scan::Drift) -> String {
    match (d.category.as_str(), d.change()) {
        ("profile", _) => format!(
            "profile changed from {} to {}",
            d.before.as_deref().unwrap_or("?"),
            d.after.as_deref().unwrap_or("?")
        ),
        ("listeners", "added") => format!("new listener {}", d.key),
        ("listeners", "removed") => format!("listener {} is gone", d.key),
        (cat, "added") => format!("{cat}: {} appeared", d.key),
        (cat, "removed") => format!("{cat}: {} disappeared", d.key),
        (cat, _) => format!("{cat}: {} changed", d.key),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use uuid::Uuid;
    use vaultmesh_proto::scan::Drift;
    use vaultmesh_proto::{CheckResult, Metrics, NodeHeartbeat, ScanReport, Severity};

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap()
    }

    fn snap() -> NodeSnapshot {
        NodeSnapshot {
            node_id: Uuid::from_u128(1),
            latest: NodeHeartbeat {
                node_id: Uuid::from_u128(1),
                hostname: "n1".into(),
                os_profile: "ArchVault".into(),
                cloudflare_ok: true,
                services_ok: true,
                vaultmesh_root: "/opt/vaultmesh".into(),
                timestamp: t(0),
                agent_version: None,
                seq: None,
                uptime_s: None,
                metrics: None,
                checks: vec![],
                last_scan: None,
                labels: Default::default(),
            }
            .into(),
            last_seen: t(0),
            heartbeats: 1,
            latest_scan: None,
            drift: Default::default(),
            incidents: vec![],
            receipt_chain_ok: None,
            revoked: None,
            forecasts: vec![],
        }
    }

    #[test]
    fn a_revoked_node_has_one_reason_and_is_never_stale() {
        let mut s = snap();
        s.revoked = Some(vaultmesh_proto::api::NodeRevoked {
            at: t(5),
            by: "alice@example.com".into(),
            readmitted: false,
            decommissioned: false,
        });
        s.receipt_chain_ok = Some(false);
        let settings = Settings::default();
        let got = state(&s, &settings, t(86_400 * 30));
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(
            (got[0].rule.as_str(), got[0].level),
            ("revoked", AttentionLevel::Ok)
        );
        assert!(got[0].message.contains("alice@example.com"), "{got:?}");
    }

    #[test]
    fn a_decommissioned_node_has_no_reason_at_all() {
        let mut s = snap();
        s.revoked = Some(vaultmesh_proto::api::NodeRevoked {
            at: t(5),
            by: "alice@example.com".into(),
            readmitted: false,
            decommissioned: true,
        });
        s.receipt_chain_ok = Some(false);
        let got = state(&s, &Settings::default(), t(86_400 * 30));
        assert!(got.is_empty(), "{got:?}");
    }

    fn rules(snap: &NodeSnapshot, s: &Settings, now: i64) -> Vec<(String, AttentionLevel)> {
        let all: Vec<_> = observed(snap, s)
            .into_iter()
            .chain(state(snap, s, t(now)))
            .inspect(|r| {
                let n = r.label.chars().count();
                assert!((1..=Reason::LABEL_MAX).contains(&n), "label {r:?}");
            })
            .map(|r| (r.rule, r.level))
            .collect();
        for (rule, _) in &all {
            assert_eq!(check_rule_name(rule), Ok(()), "a rule a route cannot name");
        }
        all
    }

    fn forecast(
        mount: &str,
        days: Option<f64>,
        hours: u32,
    ) -> vaultmesh_proto::history::DiskForecast {
        vaultmesh_proto::history::DiskForecast {
            mount: mount.into(),
            used_pct: 80.0,
            pct_per_day: 1.5,
            days_until_full: days,
            hours,
        }
    }

    #[test]
    fn a_disk_that_fills_within_the_profiles_days_raises_disk_forecast() {
        let settings = Settings::default(); // 14 days ATTN, 3 days CRIT
        let mut s = snap();
        let level = |s: &NodeSnapshot, settings: &Settings| {
            rules(s, settings, 0)
                .into_iter()
                .find(|(r, _)| r == "disk.forecast")
                .map(|(_, l)| l)
        };
        s.forecasts = vec![forecast("/", None, 168), forecast("/srv", Some(40.0), 168)];
        assert_eq!(level(&s, &settings), None, "not growing, or not soon");
        s.forecasts.push(forecast("/var", Some(10.0), 168));
        assert_eq!(level(&s, &settings), Some(AttentionLevel::Attn));
        s.forecasts.push(forecast("/tmp", Some(0.5), 168));
        assert_eq!(level(&s, &settings), Some(AttentionLevel::Crit));
        let r = state(&s, &settings, t(0))
            .into_iter()
            .find(|r| r.rule == "disk.forecast")
            .unwrap();
        assert!(
            r.message.contains("/tmp") && r.message.contains("12 hours"),
            "{r:?}"
        );
        // Less than a day of trend never raises it.
        s.forecasts = vec![forecast("/tmp", Some(0.5), 12)];
        assert_eq!(level(&s, &settings), None);
        // 0 turns it off.
        let mut off = Settings::default();
        off.attention.disk_forecast_attn_days = 0.0;
        off.attention.disk_forecast_crit_days = 0.0;
        s.forecasts = vec![forecast("/tmp", Some(0.5), 168)];
        assert_eq!(level(&s, &off), None);
    }

    #[test]
    fn the_command_centers_own_rules_can_be_named() {
        let storage = vaultmesh_store::health::StorageState {
            failing: Some(vaultmesh_store::health::WriteFailure {
                cause: "heartbeats.jsonl: No space left on device".into(),
                since: t(0),
            }),
            volume: Some(vaultmesh_store::health::Volume {
                free_bytes: 1,
                total_bytes: 100,
                low: true,
            }),
            min_free: Some("5%".into()),
        };
        let reasons = command_center(&storage, t(60));
        assert_eq!(reasons.len(), 2);
        for r in &reasons {
            assert_eq!(
                check_rule_name(&r.rule),
                Ok(()),
                "a rule a route cannot name"
            );
        }
    }

    #[test]
    fn an_agent_more_than_one_release_behind_or_below_the_minimum_is_reported() {
        let cc = semver::Version::parse("0.4.2").unwrap();
        let judged = |v: &str, min: Option<&str>| agent_skew(v, &cc, min).map(|(l, _)| l);
        assert_eq!(judged("0.4.0", None), None, "same release, older patch");
        assert_eq!(judged("0.3.9", None), None, "one release behind");
        assert_eq!(judged("0.5.0", None), None, "newer than the CC");
        assert_eq!(judged("0.2.7", None).as_deref(), Some("Agent 0.2.7 old"));
        assert_eq!(
            judged("0.3.9", Some("0.4.0")).as_deref(),
            Some("Agent 0.3.9 < 0.4.0"),
            "the profile's minimum wins"
        );
        assert_eq!(judged("banana", None).as_deref(), Some("Agent version ?"));
        let (_, why) = agent_skew("0.1.0", &cc, None).unwrap();
        assert!(why.contains("3 releases behind"), "{why}");
        // Across a major: before 1.0 comes any 0.y; before 1.1, 1.0 only.
        let one = semver::Version::parse("1.0.3").unwrap();
        assert_eq!(agent_skew("0.9.1", &one, None), None);
        assert!(agent_skew("0.9.1", &semver::Version::parse("1.1.0").unwrap(), None).is_some());
        assert!(agent_skew("1.0.0", &semver::Version::parse("2.1.0").unwrap(), None).is_some());
    }

    #[test]
    fn rule_names_families_and_typos() {
        for ok in [
            "stale",
            "check.",
            "check.disk",
            "scan.",
            "threshold.",
            "threshold.load",
            "cc.",
            "cc.storage",
            "incident.0190a5b2-7c3e-7d4f-8a1b-2c3d4e5f6a7b",
            "required_service.sshd.service",
        ] {
            assert_eq!(check_rule_name(ok), Ok(()), "{ok}");
        }
        for (typo, hint) in [
            ("check", Some("check.")),
            ("stael", Some("stale")),
            ("tunel", Some("tunnel")),
            ("threshold.dsk", Some("threshold.disk")),
            ("services.", Some("services")),
            ("bogus", None),
        ] {
            let e = check_rule_name(typo).unwrap_err();
            assert!(e.starts_with(&format!("no attention rule {typo:?}")), "{e}");
            match hint {
                Some(h) => assert!(e.contains(&format!("did you mean {h:?}?")), "{typo}: {e}"),
                None => assert!(!e.contains("did you mean"), "{e}"),
            }
        }
    }

    #[test]
    fn a_healthy_fresh_node_is_ok() {
        assert!(rules(&snap(), &Settings::default(), 10).is_empty());
    }

    #[test]
    fn staleness_goes_attn_then_crit() {
        let s = Settings::default();
        assert_eq!(rules(&snap(), &s, 89), []);
        assert_eq!(
            rules(&snap(), &s, 90),
            [("stale".into(), AttentionLevel::Attn)]
        );
        assert_eq!(
            rules(&snap(), &s, 300),
            [("stale".into(), AttentionLevel::Crit)]
        );
    }

    #[test]
    fn flags_checks_and_thresholds() {
        let mut n = snap();
        std::sync::Arc::make_mut(&mut n.latest).cloudflare_ok = false;
        std::sync::Arc::make_mut(&mut n.latest).services_ok = false;
        let check = |name: &str, status| CheckResult {
            name: name.into(),
            status,
            summary: format!("{name} says so"),
            observed_at: t(0),
            duration_ms: 1,
            metrics: Default::default(),
            details: serde_json::json!({"units": [{"name": "sshd.service", "active_state": "failed"}]}),
        };
        std::sync::Arc::make_mut(&mut n.latest).checks = vec![
            check("systemd", CheckStatus::Crit),
            check("cloudflared", CheckStatus::Crit),
            check("memory", CheckStatus::Warn),
            check("sovereign_scan", CheckStatus::Crit),
        ];
        std::sync::Arc::make_mut(&mut n.latest).metrics = Some(Metrics {
            load: Some([1.0, 9.0, 1.0]),
            cpu_count: Some(2),
            mem_total_bytes: Some(100),
            mem_used_bytes: Some(91),
            disks: vec![vaultmesh_proto::DiskUsage {
                mount: "/".into(),
                fs: "ext4".into(),
                total_bytes: 100,
                used_bytes: 96,
                inodes_total: None,
                inodes_used: None,
            }],
            ..Metrics::default()
        });
        let mut s = Settings::default();
        s.services.required = vec!["sshd.service".into(), "nginx.service".into()];
        use AttentionLevel::{Attn, Crit};
        assert_eq!(
            rules(&n, &s, 1),
            [
                ("services".into(), Crit),
                ("tunnel".into(), Attn),
                ("check.memory".into(), Attn),
                ("threshold.disk".into(), Crit),
                ("threshold.memory".into(), Attn),
                ("threshold.load".into(), Crit),
                ("required_service.sshd.service".into(), Crit),
                ("required_service.nginx.service".into(), Attn),
            ]
        );
        s.attention.tunnel = AttentionLevel::Ok;
        assert!(!rules(&n, &s, 1).iter().any(|(r, _)| r == "tunnel"));
    }

    #[test]
    fn each_reason_has_a_short_label_and_keeps_the_raw_words_for_its_detail() {
        let raw = "cloudflared metrics unreachable at http://127.0.0.1:20241/ready: error sending request: client error (Connect): tcp connect error: Connection refused (os error 111)";
        let check = |name: &str, status, summary: &str| CheckResult {
            name: name.into(),
            status,
            summary: summary.into(),
            observed_at: t(0),
            duration_ms: 1,
            metrics: Default::default(),
            details: serde_json::json!({"units": [{"name": "nginx.service", "active_state": "failed"}]}),
        };
        let mut n = snap();
        std::sync::Arc::make_mut(&mut n.latest).cloudflare_ok = false;
        std::sync::Arc::make_mut(&mut n.latest).checks = vec![
            check("cloudflared", CheckStatus::Crit, raw),
            check("systemd", CheckStatus::Ok, "ok"),
            check(
                "backup_age_of_the_nightly_snapshot_job",
                CheckStatus::Warn,
                "old",
            ),
        ];
        std::sync::Arc::make_mut(&mut n.latest).metrics = Some(Metrics {
            load: Some([1.0, 5.0, 1.0]),
            cpu_count: Some(2),
            mem_total_bytes: Some(1000),
            mem_used_bytes: Some(935),
            disks: vec![vaultmesh_proto::DiskUsage {
                mount: "/".into(),
                fs: "ext4".into(),
                total_bytes: 1000,
                used_bytes: 912,
                inodes_total: None,
                inodes_used: None,
            }],
            ..Metrics::default()
        });
        let mut s = Settings::default();
        s.services.required = vec!["nginx.service".into(), "postgres.service".into()];
        let mut got: Vec<Reason> = observed(&n, &s)
            .into_iter()
            .chain(state(&n, &s, t(330)))
            .collect();
        order(&mut got);
        let labels: Vec<(&str, &str)> = got
            .iter()
            .map(|r| (r.rule.as_str(), r.label.as_str()))
            .collect();
        assert_eq!(
            labels,
            [
                ("stale", "Stale 5m"),
                ("required_service.nginx.service", "nginx.service failed"),
                (
                    "check.backup_age_of_the_nightly_snapshot_job",
                    "backup_age_of_the_night… warn"
                ),
                (
                    "required_service.postgres.service",
                    "postgres.service unreported"
                ),
                ("threshold.disk", "Disk / 91%"),
                ("threshold.load", "Load 2.5/CPU"),
                ("threshold.memory", "Memory 94%"),
                ("tunnel", "Tunnel down"),
            ],
            "stale first, then worst first; names cut with …"
        );
        let tunnel = got.iter().find(|r| r.rule == "tunnel").unwrap();
        assert_eq!(tunnel.message, format!("Cloudflare Tunnel is down: {raw}"));
        // Systemd out of reach reads "Services unknown".
        std::sync::Arc::make_mut(&mut n.latest).checks =
            vec![check("systemd", CheckStatus::Unknown, "no bus")];
        assert_eq!(observed(&n, &s)[0].label, "Services unknown");
        // A label is never rounded up to a full disk.
        assert_eq!(pct_label(99.7), "99%");
        assert_eq!(fit("abcdef", 4), "abc…");
        assert_eq!(fit("abcd", 4), "abcd");
    }

    #[test]
    fn a_systemd_check_that_cannot_look_is_attn_not_services_down() {
        let mut n = snap();
        std::sync::Arc::make_mut(&mut n.latest).checks = vec![CheckResult {
            name: "systemd".into(),
            status: CheckStatus::Unknown,
            summary: "cannot connect to the system bus at unix:path=/x: No such file".into(),
            observed_at: t(0),
            duration_ms: 1,
            metrics: Default::default(),
            details: serde_json::Value::Null,
        }];
        // Current agents leave the flag true; older ones sent false. Either way: unknown.
        let mut s = Settings::default();
        s.services.required = vec!["sshd.service".into()];
        for flag in [true, false] {
            std::sync::Arc::make_mut(&mut n.latest).services_ok = flag;
            let reasons = observed(&n, &s);
            assert_eq!(reasons.len(), 1, "{reasons:?}");
            assert_eq!(
                (reasons[0].rule.as_str(), reasons[0].level),
                ("services", AttentionLevel::Attn)
            );
            assert_eq!(
                reasons[0].message,
                "cannot reach systemd: cannot connect to the system bus at unix:path=/x: No such file"
            );
        }
    }

    #[test]
    fn scans_drift_chain_and_incidents() {
        let mut n = snap();
        let finding = |sev| vaultmesh_proto::Finding {
            rule: "sshd".into(),
            severity: sev,
            title: "Root may log in over SSH".into(),
            detail: String::new(),
            evidence: String::new(),
        };
        let findings = vec![finding(Severity::High), finding(Severity::Low)];
        n.latest_scan = Some(Arc::new(ScanReport {
            scan_id: Uuid::nil(),
            node_id: n.node_id,
            profile: "ArchVault".into(),
            started_at: t(0),
            finished_at: t(0),
            counts: vaultmesh_proto::scan::count_findings(&findings),
            findings,
            fingerprint: [(
                "listeners".to_string(),
                [
                    ("tcp/0.0.0.0:22".to_string(), "uid=0".to_string()),
                    ("tcp/0.0.0.0:8080".to_string(), "uid=1000".to_string()),
                ]
                .into(),
            )]
            .into(),
            rules: vec!["sshd".into(), "listeners".into()],
            errors: vec![],
            truncated: false,
        }));
        n.drift = vec![Drift {
            category: "listeners".into(),
            key: "tcp/0.0.0.0:8080".into(),
            before: None,
            after: Some("uid=1000".into()),
        }]
        .into();
        n.receipt_chain_ok = Some(false);
        n.incidents = vec![vaultmesh_proto::Incident {
            id: Uuid::from_u128(9),
            node_id: Some(n.node_id),
            title: "disk noise".into(),
            severity: Severity::Medium,
            state: IncidentState::Acknowledged,
            opened_at: t(0),
            opened_by: "ops".into(),
            acked_at: Some(t(1)),
            acked_by: Some("alice".into()),
            resolved_at: None,
            resolved_by: None,
        }];
        let mut s = Settings::default();
        s.network.allowed_listeners = Some(vec!["tcp/22".into()]);
        let reasons = state(&n, &s, t(1));
        for r in &reasons {
            assert_eq!(
                check_rule_name(&r.rule),
                Ok(()),
                "a rule a route cannot name"
            );
        }
        let by_rule = |r: &str| reasons.iter().find(|x| x.rule.starts_with(r)).unwrap();
        assert_eq!(by_rule("scan.findings").level, AttentionLevel::Crit);
        assert!(by_rule("scan.findings").message.contains("1 high"));
        assert!(!by_rule("scan.findings").message.contains("low"));
        assert!(by_rule("listeners").message.contains("tcp/0.0.0.0:8080"));
        assert!(!by_rule("listeners").message.contains(":22"));
        assert_eq!(
            by_rule("drift").message,
            "1 change since the previous scan: new listener tcp/0.0.0.0:8080"
        );
        assert_eq!(by_rule("receipt_chain").level, AttentionLevel::Crit);
        let inc = by_rule("incident.");
        assert_eq!(inc.level, AttentionLevel::Attn);
        assert_eq!(inc.suppressed_by.as_deref(), Some("acknowledged by alice"));
        s.attention.drift = AttentionLevel::Ok;
        assert!(!state(&n, &s, t(1)).iter().any(|r| r.rule == "drift"));
        // A scan older than twice the profile's interval is overdue.
        assert!(
            !state(&n, &s, t(2 * 86_400))
                .iter()
                .any(|r| r.rule == "scan.overdue")
        );
        let overdue = state(&n, &s, t(2 * 86_400 + 1));
        let r = overdue.iter().find(|r| r.rule == "scan.overdue").unwrap();
        assert_eq!(
            r.message,
            "latest scan is 2d old; the profile asks for one every 24h"
        );
    }
}
