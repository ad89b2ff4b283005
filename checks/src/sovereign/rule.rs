//! The scan-rule plugin interface: [`ScanRule`], its registry entry and what a rule sees.
//!
//! A rule registers itself like a check does:
//!
//! ```ignore
//! inventory::submit! {
//!     ScanRuleRegistration {
//!         name: "sshd",
//!         description: "sshd settings: root login, password and empty-password logins",
//!         enabled_by_default: true,
//!         example: "config = \"/etc/ssh/sshd_config\"\n",
//!         build: |table| Ok(Box::new(Sshd::new(parse_table(table)?)?)),
//!     }
//! }
//! ```
//!
//! and is tuned under `[checks.sovereign_scan.rules.<name>]` (`enabled` plus its own keys).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use vaultmesh_agent_core::registry::CheckConfigError;
use vaultmesh_proto::Severity;
use vaultmesh_proto::scan::{Finding, Fingerprint};

/// What a rule may read. Every absolute node path goes through [`ScanContext::path`], so a test
/// can point `root` at a fixture tree; `proc` is `/proc` (or a fixture) as it is.
#[derive(Debug, Clone)]
pub struct ScanContext {
    /// The filesystem root the scan reads (`/` on a real node).
    pub root: PathBuf,
    /// The procfs to read (`/proc` on a real node).
    pub proc: PathBuf,
    /// `VAULTMESH_ROOT` as the node sees it (absolute); read it through [`ScanContext::path`].
    pub vaultmesh_root: PathBuf,
    /// The running agent's executable and configuration file (real paths, not under `root`).
    pub agent_exe: Option<PathBuf>,
    pub agent_config: Option<PathBuf>,
    /// Rules stop and report an error when this passes.
    pub deadline: Instant,
    /// Most filesystem entries one rule may visit.
    pub max_files: usize,
}

impl ScanContext {
    /// `node_path` (absolute on the node) under the scan's root.
    pub fn path(&self, node_path: impl AsRef<Path>) -> PathBuf {
        let p = node_path.as_ref();
        let rel = p.strip_prefix("/").unwrap_or(p);
        if rel.as_os_str().is_empty() {
            self.root.clone()
        } else {
            self.root.join(rel)
        }
    }

    /// The node path of `host_path` (a path under `root`), for evidence and fact keys.
    pub fn node_path(&self, host_path: &Path) -> String {
        match host_path.strip_prefix(&self.root) {
            Ok(rel) => format!("/{}", rel.display()),
            Err(_) => host_path.display().to_string(),
        }
    }

    /// Fails once the scan's time budget is spent.
    pub fn check_deadline(&self) -> Result<(), RuleError> {
        if Instant::now() >= self.deadline {
            Err(RuleError::new("time budget spent; results are partial"))
        } else {
            Ok(())
        }
    }
}

/// Why a rule could not finish. Its findings and facts so far are kept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RuleError(pub String);

impl RuleError {
    pub fn new(reason: impl Into<String>) -> Self {
        RuleError(reason.into())
    }
}

/// What a rule reports: findings (judgements) and facts (for drift).
#[derive(Debug, Default)]
pub struct RuleOutput {
    pub(crate) rule: &'static str,
    pub(crate) findings: Vec<Finding>,
    pub(crate) facts: Fingerprint,
}

impl RuleOutput {
    pub fn new(rule: &'static str) -> Self {
        RuleOutput {
            rule,
            ..RuleOutput::default()
        }
    }

    /// Adds a finding of this rule.
    pub fn finding(
        &mut self,
        severity: Severity,
        title: impl Into<String>,
        detail: impl Into<String>,
        evidence: impl Into<String>,
    ) {
        self.findings.push(Finding {
            rule: self.rule.to_string(),
            severity,
            title: one_line(clip(title.into(), vaultmesh_proto::scan::limits::TITLE_MAX)),
            detail: clip(detail.into(), vaultmesh_proto::scan::limits::TEXT_MAX),
            evidence: clip(evidence.into(), vaultmesh_proto::scan::limits::TEXT_MAX),
        });
    }

    /// Records `key = value` in fact `category` (conventionally the rule's name).
    pub fn fact(
        &mut self,
        category: impl Into<String>,
        key: impl Into<String>,
        value: impl Into<String>,
    ) {
        self.facts.entry(category.into()).or_default().insert(
            key.into(),
            clip(value.into(), vaultmesh_proto::scan::limits::TEXT_MAX),
        );
    }

    pub fn findings(&self) -> &[Finding] {
        &self.findings
    }

    pub fn facts(&self) -> &Fingerprint {
        &self.facts
    }

    /// The facts of one category (empty when none).
    pub fn category(&self, category: &str) -> BTreeMap<String, String> {
        self.facts.get(category).cloned().unwrap_or_default()
    }
}

/// Cuts `s` to at most `max` bytes on a character boundary and replaces control characters
/// (other than newline and tab) with `?`, so a report always passes the Command Center's checks.
pub fn clip(s: String, max: usize) -> String {
    let mut s: String = s
        .chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                '?'
            } else {
                c
            }
        })
        .collect();
    if s.len() > max {
        let mut cut = max.saturating_sub(3);
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

/// `s` with newlines and tabs (which [`clip`] keeps) replaced by spaces: titles and fact keys
/// are single lines.
pub fn one_line(s: String) -> String {
    if s.contains(['\n', '\t']) {
        s.replace(['\n', '\t'], " ")
    } else {
        s
    }
}

/// A scan rule. Runs on a blocking thread: plain `std::fs` is fine, but long walks must call
/// [`ScanContext::check_deadline`] and respect [`ScanContext::max_files`].
pub trait ScanRule: Send + Sync + std::fmt::Debug + 'static {
    fn scan(&self, ctx: &ScanContext, out: &mut RuleOutput) -> Result<(), RuleError>;
}

/// A rule's entry in the registry.
#[derive(Debug)]
pub struct ScanRuleRegistration {
    /// Name used in `[checks.sovereign_scan.rules.<name>]`, in findings and as fact category.
    pub name: &'static str,
    pub description: &'static str,
    pub enabled_by_default: bool,
    /// The rule's keys with their defaults, as TOML.
    pub example: &'static str,
    /// Builds the rule from its table (`enabled` already removed). Must not do I/O.
    pub build: fn(&toml::Table) -> Result<Box<dyn ScanRule>, CheckConfigError>,
}

inventory::collect!(ScanRuleRegistration);

/// Every registered rule, sorted by name.
pub fn all() -> Vec<&'static ScanRuleRegistration> {
    let mut v: Vec<_> = inventory::iter::<ScanRuleRegistration>
        .into_iter()
        .collect();
    vaultmesh_agent_core::sort::sort_by_key(&mut v, |r| r.name);
    v
}

/// Runs `rule` against a context for tests: returns its output and error, if any.
pub fn run_rule(
    rule: &dyn ScanRule,
    name: &'static str,
    ctx: &ScanContext,
) -> (RuleOutput, Option<RuleError>) {
    let mut out = RuleOutput::new(name);
    let err = rule.scan(ctx, &mut out).err();
    (out, err)
}
