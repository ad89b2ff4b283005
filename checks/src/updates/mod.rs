//! `updates`: pending package updates, how many fix security issues, and whether the node must
//! reboot — from the package manager's own files, without network access and without running
//! it ([`apt`] on Debian and Ubuntu, [`pacman`] on Arch).
//!
//! It reads what the last `apt update` / `pacman -Sy` downloaded: a node whose lists are stale
//! reports the updates it knew of then. The run is on a blocking thread and stops itself at the
//! check's timeout (less a second); a node with neither `/var/lib/dpkg/status` nor
//! `/var/lib/pacman/local` is `ok`, saying no supported package manager was found (nothing to
//! update is not a fault, and an `unknown` would keep such a node in ATTN for good).
//!
//! Every file is untrusted in size: lines are read up to 64 KiB, a file up to 1 GiB, a
//! compressed database inflated up to 512 MiB, at most 200,000 packages per database.

pub mod apt;
pub mod pacman;
pub mod version;

use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::Deserialize;
use vaultmesh_agent_core::registry::{CheckConfigError, CheckRegistration, parse_table};
use vaultmesh_agent_core::{Check, CheckContext, CheckOutcome, Contribution};
use vaultmesh_proto::{CheckStatus, Metrics, Updates};

/// Longest line read of a list or status file; the rest of a longer line is skipped.
const LINE_MAX: usize = 64 * 1024;
/// Bytes read of one list or status file.
const FILE_MAX: u64 = 1 << 30;
/// List files (or sync databases) looked at.
const LISTS_MAX: usize = 1024;

/// The time one run may take, checked as it reads.
#[derive(Debug, Clone, Copy)]
pub struct Budget(Option<Instant>);

impl Budget {
    pub const EXCEEDED: &'static str = "out of time";

    pub fn until(deadline: Instant) -> Self {
        Budget(Some(deadline))
    }

    pub fn unlimited() -> Self {
        Budget(None)
    }

    pub fn check(&self) -> Result<(), String> {
        match self.0 {
            Some(d) if Instant::now() >= d => Err(Self::EXCEEDED.to_string()),
            _ => Ok(()),
        }
    }
}

/// What one package manager's state says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    pub manager: &'static str,
    pub installed: usize,
    pub pending: usize,
    pub security: Option<usize>,
    pub reboot_required: bool,
    /// Lines of `reboot-required.pkgs` (Debian), when present.
    pub reboot_pkgs: Option<usize>,
    /// Lists or databases read.
    pub sources: usize,
    /// Lists or databases not read, with why.
    pub skipped: Vec<String>,
    /// Stanzas or `desc` files without a name or version.
    pub malformed: usize,
}

impl Scan {
    fn new(manager: &'static str) -> Self {
        Scan {
            manager,
            installed: 0,
            pending: 0,
            security: None,
            reboot_required: false,
            reboot_pkgs: None,
            sources: 0,
            skipped: Vec::new(),
            malformed: 0,
        }
    }
}

/// Reads one line into `buf` (cleared first), at most `max` bytes of it; the rest of a longer
/// line is read and dropped. `Ok(false)` at the end of the input.
fn bounded_line(r: &mut impl BufRead, buf: &mut Vec<u8>, max: usize) -> std::io::Result<bool> {
    buf.clear();
    let n = r.by_ref().take(max as u64).read_until(b'\n', buf)?;
    if n == 0 {
        return Ok(false);
    }
    if buf.last() != Some(&b'\n') && n == max {
        // Skip to the end of this over-long line.
        let mut sink = Vec::new();
        loop {
            sink.clear();
            let m = r.by_ref().take(max as u64).read_until(b'\n', &mut sink)?;
            if m == 0 || sink.last() == Some(&b'\n') {
                break;
            }
        }
    }
    Ok(true)
}

/// Opens a list file, decompressing it when its name ends in `.gz` or `.lz4`, bounded to
/// [`FILE_MAX`] bytes.
fn open_list(path: &Path) -> std::io::Result<Box<dyn BufRead>> {
    let f = std::fs::File::open(path)?;
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    Ok(match ext {
        "gz" => Box::new(std::io::BufReader::new(
            flate2::read::GzDecoder::new(f).take(FILE_MAX),
        )),
        "lz4" => Box::new(std::io::BufReader::new(
            lz4_flex::frame::FrameDecoder::new(f).take(FILE_MAX),
        )),
        _ => Box::new(std::io::BufReader::new(f.take(FILE_MAX))),
    })
}

/// Reads whichever package manager's state is under `root`: `Ok(None)` when neither is.
pub fn read(root: &Path, budget: &Budget) -> Result<Option<Scan>, String> {
    if root.join("var/lib/dpkg/status").is_file() {
        return apt::read(root, budget).map(Some);
    }
    if root.join("var/lib/pacman/local").is_dir() {
        return pacman::read(root, budget).map(Some);
    }
    Ok(None)
}

/// The verdict when a reboot is required.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Level {
    Ok,
    Warn,
    Crit,
}

impl Level {
    fn status(self) -> CheckStatus {
        match self {
            Level::Ok => CheckStatus::Ok,
            Level::Warn => CheckStatus::Warn,
            Level::Crit => CheckStatus::Crit,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct UpdatesConfig {
    /// Security updates at which the check is warn / crit (0: never).
    security_warn: u32,
    security_crit: u32,
    /// Pending updates of any kind at which the check is warn / crit (0: never).
    pending_warn: u32,
    pending_crit: u32,
    /// The verdict when the node must reboot: `ok`, `warn` or `crit`.
    reboot_required: Level,
    /// Filesystem root (tests point it at a fixture tree); not a config key.
    #[serde(skip)]
    root: PathBuf,
}

impl Default for UpdatesConfig {
    fn default() -> Self {
        UpdatesConfig {
            security_warn: 1,
            security_crit: 0,
            pending_warn: 0,
            pending_crit: 0,
            reboot_required: Level::Warn,
            root: PathBuf::from("/"),
        }
    }
}

#[derive(Debug)]
struct UpdatesCheck {
    c: UpdatesConfig,
}

/// `n ≥ at`, with `at = 0` meaning never.
fn reached(n: usize, at: u32) -> bool {
    at > 0 && n >= at as usize
}

impl UpdatesCheck {
    fn new(c: UpdatesConfig) -> Result<Self, CheckConfigError> {
        for (warn_key, warn, crit_key, crit) in [
            (
                "security_warn",
                c.security_warn,
                "security_crit",
                c.security_crit,
            ),
            (
                "pending_warn",
                c.pending_warn,
                "pending_crit",
                c.pending_crit,
            ),
        ] {
            if warn > 0 && crit > 0 && warn > crit {
                return Err(CheckConfigError::new(
                    warn_key,
                    format!("{warn} must not exceed {crit_key} ({crit})"),
                ));
            }
        }
        Ok(UpdatesCheck { c })
    }

    fn evaluate(&self, scan: Option<Scan>) -> CheckOutcome {
        let Some(s) = scan else {
            return CheckOutcome::new(
                CheckStatus::Ok,
                "no supported package manager found (neither dpkg/apt nor pacman state)",
            );
        };
        let c = &self.c;
        let plural =
            |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        let reboot = if s.reboot_required {
            "; reboot required"
        } else {
            ""
        };
        if s.sources == 0 {
            // Nothing to compare with: the pending count is not known, so it is not sent.
            let reboot_status = if s.reboot_required {
                c.reboot_required.status()
            } else {
                CheckStatus::Ok
            };
            return if let Some(first) = s.skipped.first() {
                let first = crate::untrusted::clean_name(first, 256).unwrap_or_default();
                CheckOutcome::unknown(format!(
                    "{}: no package list could be read ({} not read; {first}){reboot}",
                    s.manager,
                    plural(s.skipped.len(), "source", "sources"),
                ))
            } else {
                CheckOutcome::new(
                    reboot_status,
                    format!(
                        "{}: no package lists downloaded yet, pending updates unknown{reboot}",
                        s.manager
                    ),
                )
            }
            .with_metric("installed", s.installed as f64)
            .with_metric("sources", 0.0);
        }
        let mut status = CheckStatus::Ok;
        let sec = s.security.unwrap_or(0);
        if reached(sec, c.security_crit) || reached(s.pending, c.pending_crit) {
            status = CheckStatus::Crit;
        } else if reached(sec, c.security_warn) || reached(s.pending, c.pending_warn) {
            status = CheckStatus::Warn;
        }
        if s.reboot_required {
            status = status.worst(c.reboot_required.status());
        }
        let mut summary = format!(
            "{}: {}",
            s.manager,
            plural(s.pending, "pending update", "pending updates")
        );
        if let Some(sec) = s.security {
            summary.push_str(&format!(" ({sec} security)"));
        }
        if s.reboot_required {
            summary.push_str("; reboot required");
            if let Some(n) = s.reboot_pkgs {
                summary.push_str(&format!(" (by {})", plural(n, "package", "packages")));
            }
        }
        if !s.skipped.is_empty() {
            summary.push_str(&format!(
                "; {} not read",
                plural(s.skipped.len(), "source", "sources")
            ));
        }
        let clip = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        let mut out = CheckOutcome::new(status, summary)
            .with_metric("installed", s.installed as f64)
            .with_metric("sources", s.sources as f64);
        if let Some(n) = s.reboot_pkgs {
            out = out.with_metric("reboot_pkgs", n as f64);
        }
        if s.malformed > 0 || !s.skipped.is_empty() {
            let skipped: Vec<String> = s
                .skipped
                .iter()
                .take(20)
                .filter_map(|t| crate::untrusted::clean_name(t, 256))
                .collect();
            out = out.with_details(serde_json::json!({
                "malformed": s.malformed,
                "skipped": skipped,
            }));
        }
        out.contributing(Contribution::metrics(Metrics {
            updates: Some(Updates {
                pending: clip(s.pending),
                security: s.security.map(clip),
                reboot_required: s.reboot_required,
                manager: s.manager.to_string(),
            }),
            ..Metrics::default()
        }))
    }
}

/// How long a run may read: the check's timeout less a second (at least half of it).
fn budget_for(timeout: Option<Duration>) -> Budget {
    let t = timeout.unwrap_or(Duration::from_secs(30));
    Budget::until(Instant::now() + t.saturating_sub(Duration::from_secs(1)).max(t / 2))
}

#[async_trait]
impl Check for UpdatesCheck {
    async fn run(&self, ctx: &CheckContext) -> CheckOutcome {
        let root = self.c.root.clone();
        let budget = budget_for(ctx.timeout);
        match tokio::task::spawn_blocking(move || read(&root, &budget)).await {
            Ok(Ok(scan)) => self.evaluate(scan),
            Ok(Err(e)) if e == Budget::EXCEEDED => CheckOutcome::unknown(
                "the package lists took longer than the check's timeout to read",
            ),
            Ok(Err(e)) => CheckOutcome::unknown(e),
            Err(e) => CheckOutcome::unknown(format!("reading the package state failed: {e}")),
        }
    }
}

inventory::submit! {
    CheckRegistration {
        name: "updates",
        description: "Pending (security) updates and a due reboot, from apt's or pacman's local state",
        enabled_by_default: true,
        default_interval: Duration::from_secs(3600),
        default_timeout: Duration::from_secs(30),
        example: r#"security_warn = 1        # security updates → warn (0: never)
security_crit = 0        # security updates → crit (0: never)
pending_warn = 0         # pending updates of any kind → warn (0: never)
pending_crit = 0
reboot_required = "warn" # verdict when the node must reboot: "ok", "warn" or "crit"
"#,
        build: |t| Ok(Box::new(UpdatesCheck::new(parse_table(t)?)?)),
    }
}

#[cfg(test)]
mod tests;
