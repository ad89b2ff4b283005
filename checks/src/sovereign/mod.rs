//! `sovereign_scan`: the node's security scan.
//!
//! The scan is a set of rules, each a plugin registered with `inventory` ([`rule`]) and tuned
//! under `[checks.sovereign_scan.rules.<name>]`. Rules run one after another on a blocking
//! thread, read the node through a configurable `root` and `proc` (fixture trees in tests), and
//! report findings plus facts. The check assembles them into a [`ScanReport`], hands it to the
//! agent's scan outbox (which sends it to `POST /api/agent/scans`) and reports a summary:
//! critical or high findings → crit, medium → warn, only low/info → ok, every rule failed →
//! unknown.
//!
//! Limits: the whole scan has a time `budget` (rules past it stop with an error and partial
//! results), each rule visits at most `max_files` entries, and a report holds at most
//! [`vaultmesh_proto::scan::limits::FINDINGS_MAX`] findings (`truncated` is set beyond that).

pub mod rule;
mod rules;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::Deserialize;
use vaultmesh_agent_core::registry::{CheckConfigError, CheckRegistration, parse_table};
use vaultmesh_agent_core::{Check, CheckContext, CheckOutcome};
use vaultmesh_proto::scan::{RuleError as WireRuleError, count_findings, limits};
use vaultmesh_proto::{CheckStatus, ScanReport, Severity};

pub use rule::{RuleError, RuleOutput, ScanContext, ScanRule, ScanRuleRegistration};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct ScanConfig {
    /// Filesystem root the rules read (`/`); a fixture tree in tests.
    root: PathBuf,
    /// procfs to read (`/proc`).
    proc: PathBuf,
    /// Time the whole scan may take.
    #[serde(deserialize_with = "vaultmesh_process::duration::deserialize")]
    budget: Duration,
    /// Most filesystem entries one rule may visit.
    max_files: usize,
    /// Per-rule tables: `enabled` plus the rule's own keys.
    rules: toml::Table,
}

impl Default for ScanConfig {
    fn default() -> Self {
        ScanConfig {
            root: PathBuf::from("/"),
            proc: PathBuf::from("/proc"),
            budget: Duration::from_secs(120),
            max_files: 200_000,
            rules: toml::Table::new(),
        }
    }
}

/// A configured rule.
#[derive(Debug)]
struct Configured {
    name: &'static str,
    rule: Box<dyn ScanRule>,
}

/// The check.
#[derive(Debug)]
pub struct SovereignScan {
    root: PathBuf,
    proc: PathBuf,
    budget: Duration,
    max_files: usize,
    rules: std::sync::Arc<Vec<Configured>>,
    /// Held for the length of a scan: a scan asked for while another runs (the scheduled one
    /// and a `scan.sovereign` command) waits for it instead of running alongside.
    running: std::sync::Arc<std::sync::Mutex<()>>,
}

impl SovereignScan {
    fn new(c: ScanConfig) -> Result<Self, CheckConfigError> {
        if !c.root.is_absolute() {
            return Err(CheckConfigError::new("root", "must be an absolute path"));
        }
        if !c.proc.is_absolute() {
            return Err(CheckConfigError::new("proc", "must be an absolute path"));
        }
        if c.budget < Duration::from_millis(100) || c.budget > Duration::from_secs(3600) {
            return Err(CheckConfigError::new(
                "budget",
                "must be between 100ms and 1h",
            ));
        }
        if c.max_files == 0 {
            return Err(CheckConfigError::new("max_files", "must be at least 1"));
        }
        let registered = rule::all();
        for name in c.rules.keys() {
            if !registered.iter().any(|r| r.name == name) {
                let known: Vec<_> = registered.iter().map(|r| r.name).collect();
                return Err(CheckConfigError::new(
                    format!("rules.{name}"),
                    format!(
                        "no such scan rule; registered rules are: {}",
                        known.join(", ")
                    ),
                ));
            }
        }
        let mut rules = Vec::new();
        for reg in registered {
            let mut table = match c.rules.get(reg.name) {
                None => toml::Table::new(),
                Some(toml::Value::Table(t)) => t.clone(),
                Some(_) => {
                    return Err(CheckConfigError::new(
                        format!("rules.{}", reg.name),
                        "must be a table",
                    ));
                }
            };
            let enabled = match table.remove("enabled") {
                None => reg.enabled_by_default,
                Some(toml::Value::Boolean(b)) => b,
                Some(_) => {
                    return Err(CheckConfigError::new(
                        format!("rules.{}.enabled", reg.name),
                        "must be true or false",
                    ));
                }
            };
            let rule = (reg.build)(&table).map_err(|e| {
                CheckConfigError::new(format!("rules.{}.{}", reg.name, e.key), e.reason)
            })?;
            if enabled {
                rules.push(Configured {
                    name: reg.name,
                    rule,
                });
            }
        }
        Ok(SovereignScan {
            root: c.root,
            proc: c.proc,
            budget: c.budget,
            max_files: c.max_files,
            rules: std::sync::Arc::new(rules),
            running: std::sync::Arc::default(),
        })
    }

    /// Runs every enabled rule (blocking) and assembles the report.
    fn scan(&self, ctx: &CheckContext) -> ScanReport {
        let started_at = chrono::Utc::now();
        let sctx = ScanContext {
            root: self.root.clone(),
            proc: self.proc.clone(),
            vaultmesh_root: ctx.vaultmesh_root.clone(),
            agent_exe: std::env::current_exe().ok(),
            agent_config: ctx.config_file.clone(),
            // Within the budget, and done (with partial results) before the run's timeout.
            deadline: Instant::now()
                + ctx.timeout.map_or(self.budget, |t| {
                    self.budget
                        .min(t.saturating_sub(Duration::from_secs(2)).max(t / 2))
                }),
            max_files: self.max_files,
        };
        let mut report = ScanReport {
            scan_id: uuid::Uuid::new_v4(),
            node_id: ctx.node_id,
            profile: ctx.os_profile.clone(),
            started_at,
            finished_at: started_at,
            findings: Vec::new(),
            fingerprint: Default::default(),
            counts: Default::default(),
            rules: Vec::new(),
            errors: Vec::new(),
            truncated: false,
        };
        for c in self.rules.iter() {
            report.rules.push(c.name.to_string());
            let mut out = RuleOutput::new(c.name);
            let result = if Instant::now() >= sctx.deadline {
                Err(RuleError::new("not run: the scan's time budget was spent"))
            } else {
                c.rule.scan(&sctx, &mut out)
            };
            if let Err(e) = result {
                tracing::warn!(rule = c.name, error = %e, "Scan rule did not finish.");
                partial(&mut report, c.name, e.0);
            }
            for f in out.findings {
                if report.findings.len() < limits::FINDINGS_MAX {
                    report.findings.push(f);
                } else {
                    report.truncated = true;
                }
            }
            let mut facts: usize = report.fingerprint.values().map(|m| m.len()).sum();
            for (cat, map) in out.facts {
                let slot = report.fingerprint.entry(cat.clone()).or_default();
                let mut dropped = false;
                for (k, v) in map {
                    if facts < limits::FACTS_MAX {
                        slot.insert(k, v);
                        facts += 1;
                    } else {
                        dropped = true;
                    }
                }
                if dropped {
                    // The category is incomplete: the Command Center must not read it as
                    // facts that disappeared.
                    partial(
                        &mut report,
                        &cat,
                        "facts dropped at the report's fact limit".into(),
                    );
                }
            }
        }
        vaultmesh_agent_core::sort::sort_by_key(&mut report.findings, |f| {
            std::cmp::Reverse(f.severity)
        });
        fit(&mut report, REPORT_MAX_BYTES);
        report.counts = count_findings(&report.findings);
        report.finished_at = chrono::Utc::now();
        report
    }
}

/// Largest report the agent sends (the Command Center accepts a little more); see [`fit`].
pub const REPORT_MAX_BYTES: usize = vaultmesh_proto::scan::limits::REPORT_BYTES;

/// Records that `rule`'s results (findings and its fact category) are partial.
fn partial(report: &mut ScanReport, rule: &str, error: String) {
    report.truncated |= error.contains("dropped");
    if report.errors.iter().any(|e| e.rule == rule) || report.errors.len() >= limits::ERRORS_MAX {
        return;
    }
    report.errors.push(WireRuleError {
        rule: rule.to_string(),
        error: rule::clip(error, limits::TEXT_MAX),
    });
}

/// Shrinks `report` until its JSON is at most `max` bytes: first long details and evidence are
/// cut, then whole fact categories go (largest first, each recorded as partial so it is not
/// taken for drift), then the least severe findings. Sets `truncated` if anything was dropped.
fn fit(report: &mut ScanReport, max: usize) {
    let size = |r: &ScanReport| serde_json::to_vec(r).map_or(usize::MAX, |v| v.len());
    if size(report) <= max {
        return;
    }
    for f in &mut report.findings {
        f.detail = rule::clip(std::mem::take(&mut f.detail), 512);
        f.evidence = rule::clip(std::mem::take(&mut f.evidence), 512);
    }
    while size(report) > max {
        let Some(largest) = report
            .fingerprint
            .iter()
            .max_by_key(|(_, m)| m.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>())
            .map(|(c, _)| c.clone())
        else {
            break;
        };
        report.fingerprint.remove(&largest);
        report.truncated = true;
        partial(
            report,
            &largest,
            "facts dropped to fit the report size limit".into(),
        );
    }
    while size(report) > max && report.findings.pop().is_some() {
        report.truncated = true;
    }
}

/// The check's verdict on a report.
fn outcome(report: &ScanReport) -> CheckOutcome {
    let worst = report.worst();
    let status = match worst {
        _ if !report.rules.is_empty() && report.errors.len() == report.rules.len() => {
            CheckStatus::Unknown
        }
        Some(Severity::Critical | Severity::High) => CheckStatus::Crit,
        Some(Severity::Medium) => CheckStatus::Warn,
        _ => CheckStatus::Ok,
    };
    let mut summary = if report.findings.is_empty() {
        format!("no findings from {} rules", report.rules.len())
    } else {
        let parts: Vec<String> = report
            .counts
            .iter()
            .rev()
            .map(|(s, n)| format!("{n} {s}"))
            .collect();
        let top = &report.findings[0];
        format!(
            "{} findings ({}); worst: {}",
            report.findings.len(),
            parts.join(", "),
            top.title
        )
    };
    if !report.errors.is_empty() {
        let names: Vec<&str> = report.errors.iter().map(|e| e.rule.as_str()).collect();
        summary.push_str(&format!("; incomplete: {}", names.join(", ")));
    }
    let mut out = CheckOutcome::new(status, rule::clip(summary, 1024))
        .with_metric("findings", report.findings.len() as f64)
        .with_details(serde_json::json!({
            "scan_id": report.scan_id,
            "counts": report.counts,
            "rules": report.rules,
            "errors": report.errors,
            "truncated": report.truncated,
        }));
    for (s, n) in &report.counts {
        out = out.with_metric(format!("findings_{s}"), *n as f64);
    }
    out
}

#[async_trait]
impl Check for SovereignScan {
    async fn run(&self, ctx: &CheckContext) -> CheckOutcome {
        let this = SovereignScan {
            root: self.root.clone(),
            proc: self.proc.clone(),
            budget: self.budget,
            max_files: self.max_files,
            rules: std::sync::Arc::clone(&self.rules),
            running: std::sync::Arc::clone(&self.running),
        };
        let task_ctx = ctx.clone();
        let scan = move || {
            let _one_at_a_time = this.running.lock().unwrap_or_else(|p| p.into_inner());
            this.scan(&task_ctx)
        };
        match tokio::task::spawn_blocking(scan).await {
            Ok(report) => {
                let out = outcome(&report);
                ctx.scans.submit(report);
                out
            }
            Err(e) => CheckOutcome::unknown(format!("scan failed: {e}")),
        }
    }
}

inventory::submit! {
    CheckRegistration {
        name: "sovereign_scan",
        description: "Security scan: listeners, sshd, file modes and hashes, sysctls, set-uid binaries",
        enabled_by_default: true,
        default_interval: Duration::from_secs(6 * 3600),
        default_timeout: Duration::from_secs(300),
        example: "root = \"/\"\nproc = \"/proc\"\nbudget = \"2m\"\nmax_files = 200000\n",
        build: |t| Ok(Box::new(SovereignScan::new(parse_table(t)?)?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(toml_text: &str) -> Result<SovereignScan, CheckConfigError> {
        SovereignScan::new(parse_table(&toml_text.parse::<toml::Table>().unwrap())?)
    }

    #[test]
    fn config_names_rule_keys() {
        let e = build("[rules.nope]\nenabled = true\n").unwrap_err();
        assert_eq!(e.key, "rules.nope");
        assert!(e.reason.contains("registered rules are"), "{}", e.reason);
        let e = build("[rules.listeners]\nenabled = 3\n").unwrap_err();
        assert_eq!(e.key, "rules.listeners.enabled");
        let e = build("root = \"relative\"\n").unwrap_err();
        assert_eq!(e.key, "root");
        let s = build("[rules.listeners]\nenabled = false\n").unwrap();
        assert!(s.rules.iter().all(|r| r.name != "listeners"));
    }

    /// Test-only rules: one that runs until the budget is spent, one that floods findings.
    #[derive(Debug)]
    struct Slow;
    impl ScanRule for Slow {
        fn scan(&self, ctx: &ScanContext, out: &mut RuleOutput) -> Result<(), RuleError> {
            out.fact("test_slow", "started", "yes");
            loop {
                ctx.check_deadline()?;
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
    #[derive(Debug)]
    struct Flood;
    impl ScanRule for Flood {
        fn scan(&self, _ctx: &ScanContext, out: &mut RuleOutput) -> Result<(), RuleError> {
            for i in 0..5000 {
                out.finding(
                    Severity::Low,
                    format!("finding\n{i}"),
                    "",
                    "x".repeat(10_000),
                );
            }
            Ok(())
        }
    }
    inventory::submit! { ScanRuleRegistration { name: "test_slow", description: "test", enabled_by_default: false, example: "", build: |_| Ok(Box::new(Slow)) } }
    inventory::submit! { ScanRuleRegistration { name: "test_flood", description: "test", enabled_by_default: false, example: "", build: |_| Ok(Box::new(Flood)) } }

    fn only(rules: &[&str], extra: &str) -> SovereignScan {
        let mut text = String::from(extra);
        for reg in rule::all() {
            text.push_str(&format!(
                "[rules.{}]\nenabled = {}\n",
                reg.name,
                rules.contains(&reg.name)
            ));
        }
        build(&text).unwrap()
    }

    #[test]
    fn a_scan_stops_at_its_budget_and_reports_partial_results() {
        let scan = only(&["test_slow", "world_writable"], "budget = \"200ms\"\n");
        let t0 = Instant::now();
        let ctx = CheckContext::new(uuid::Uuid::nil(), "/nonexistent");
        let report = scan.scan(&ctx);
        assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
        let errors: Vec<(&str, &str)> = report
            .errors
            .iter()
            .map(|e| (e.rule.as_str(), e.error.as_str()))
            .collect();
        assert_eq!(
            errors,
            [
                ("test_slow", "time budget spent; results are partial"),
                (
                    "world_writable",
                    "not run: the scan's time budget was spent"
                ),
            ]
        );
        assert_eq!(
            report.fingerprint["test_slow"]["started"], "yes",
            "partial facts kept"
        );
        assert_eq!(
            outcome(&report).status,
            CheckStatus::Unknown,
            "no rule finished"
        );
        report.validate().unwrap();
    }

    #[test]
    fn a_flood_of_findings_is_cut_to_a_report_the_command_center_accepts() {
        let scan = only(&["test_flood"], "");
        let report = scan.scan(&CheckContext::new(uuid::Uuid::nil(), "/"));
        assert!(report.findings.len() <= limits::FINDINGS_MAX);
        assert!(report.truncated);
        let bytes = serde_json::to_vec(&report).unwrap().len();
        assert!(bytes <= REPORT_MAX_BYTES, "{bytes}");
        assert!(
            !report.findings[0].title.contains('\n'),
            "titles are one line"
        );
        report.validate().unwrap();
        let out = outcome(&report);
        assert_eq!(out.status, CheckStatus::Ok, "low findings only");
        assert!(out.summary.len() <= 1024);
    }

    #[test]
    fn oversized_fact_categories_are_dropped_and_marked_partial() {
        let mut report = only(&[], "").scan(&CheckContext::new(uuid::Uuid::nil(), "/"));
        for i in 0..3000 {
            report
                .fingerprint
                .entry("big".into())
                .or_default()
                .insert(format!("/k/{i}/{}", "x".repeat(1000)), "v".into());
        }
        report
            .fingerprint
            .entry("small".into())
            .or_default()
            .insert("a".into(), "b".into());
        fit(&mut report, 100_000);
        assert!(!report.fingerprint.contains_key("big"));
        assert_eq!(report.fingerprint["small"]["a"], "b");
        assert!(report.truncated);
        assert_eq!(report.errors[0].rule, "big");
        report.validate().unwrap();
    }

    #[test]
    fn every_registered_rule_builds_from_its_example() {
        for reg in rule::all() {
            let table: toml::Table = reg.example.parse().unwrap_or_else(|e| {
                panic!("{}: example is not TOML: {e}", reg.name);
            });
            (reg.build)(&table).unwrap_or_else(|e| panic!("{}: {e}", reg.name));
        }
    }
}
