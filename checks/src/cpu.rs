//! `cpu`: where the CPUs' time went since the previous run, from the aggregate `cpu` line of
//! `/proc/stat`.
//!
//! The line counts clock ticks per kind since boot, summed over every CPU: user, nice, system,
//! idle, iowait, irq, softirq, steal, guest, guest_nice. Guest time is already inside user and
//! nice, so the total leaves it out. Of the difference between two reads:
//!
//! - `user_pct` = user + nice, `system_pct` = system + irq + softirq, `steal_pct` = steal;
//! - `busy_pct` = everything but idle and iowait = user + system + steal (as above);
//! - `iowait_pct` = idle with I/O outstanding: not busy, but shown (and judged if asked).
//!
//! So busy + iowait + idle = 100. A kind that went down between reads (a NO_HZ kernel's iowait
//! can dip) counts as zero; if the whole sum went down (a restored VM snapshot), the run is
//! `unknown` and the new read is the baseline for the next.

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use vaultmesh_agent_core::registry::{CheckConfigError, CheckRegistration, parse_table};
use vaultmesh_agent_core::{Check, CheckContext, CheckOutcome, Contribution};
use vaultmesh_proto::{CheckStatus, CpuUsage, Metrics};

use crate::counters::{Previous, round2};
use crate::procfs;
use crate::thresholds::{Thresholds, round1};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct CpuConfig {
    /// Busy % (of all CPUs, over the interval) at which the node is warn / crit.
    warn_pct: f64,
    crit_pct: f64,
    /// Optional: iowait % at which the node is warn / crit (not judged unless set).
    iowait_warn_pct: Option<f64>,
    iowait_crit_pct: Option<f64>,
    /// Optional: steal % at which the node is warn / crit (not judged unless set).
    steal_warn_pct: Option<f64>,
    steal_crit_pct: Option<f64>,
}

impl Default for CpuConfig {
    fn default() -> Self {
        CpuConfig {
            warn_pct: 90.0,
            crit_pct: 98.0,
            iowait_warn_pct: None,
            iowait_crit_pct: None,
            steal_warn_pct: None,
            steal_crit_pct: None,
        }
    }
}

/// The aggregate `cpu` line of `/proc/stat`, in clock ticks. Kinds an old kernel does not
/// report are zero.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTimes {
    pub user: u64,
    pub nice: u64,
    pub system: u64,
    pub idle: u64,
    pub iowait: u64,
    pub irq: u64,
    pub softirq: u64,
    pub steal: u64,
}

impl CpuTimes {
    fn fields(&self) -> [u64; 8] {
        [
            self.user,
            self.nice,
            self.system,
            self.idle,
            self.iowait,
            self.irq,
            self.softirq,
            self.steal,
        ]
    }

    fn total(&self) -> u128 {
        self.fields().iter().map(|&v| u128::from(v)).sum()
    }
}

/// Parses the aggregate `cpu` line of `/proc/stat` (at least user, nice, system and idle).
pub fn parse_stat(text: &str) -> Result<CpuTimes, String> {
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("cpu "))
        .ok_or("/proc/stat has no aggregate cpu line")?;
    let values: Vec<u64> = line
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .map_err(|_| format!("/proc/stat's cpu line is not numbers: {:?}", line.trim()))?;
    if values.len() < 4 {
        return Err(format!(
            "/proc/stat's cpu line has {} fields; at least 4 expected",
            values.len()
        ));
    }
    let at = |i: usize| values.get(i).copied().unwrap_or(0);
    Ok(CpuTimes {
        user: at(0),
        nice: at(1),
        system: at(2),
        idle: at(3),
        iowait: at(4),
        irq: at(5),
        softirq: at(6),
        steal: at(7),
    })
}

/// The shares of the time between two reads.
pub fn usage(prev: &CpuTimes, cur: &CpuTimes) -> Result<CpuUsage, String> {
    if cur.total() < prev.total() {
        return Err(
            "the CPU time counters went backwards (a restored snapshot?); measuring again from this read"
                .to_string(),
        );
    }
    let d = |a: u64, b: u64| b.saturating_sub(a) as f64;
    let user = d(prev.user, cur.user) + d(prev.nice, cur.nice);
    let system = d(prev.system, cur.system) + d(prev.irq, cur.irq) + d(prev.softirq, cur.softirq);
    let steal = d(prev.steal, cur.steal);
    let iowait = d(prev.iowait, cur.iowait);
    let idle = d(prev.idle, cur.idle);
    let total = user + system + steal + iowait + idle;
    if total <= 0.0 {
        return Err("no CPU time passed between two reads of /proc/stat".to_string());
    }
    let pct = |v: f64| round2(v * 100.0 / total);
    Ok(CpuUsage {
        busy_pct: pct(user + system + steal),
        user_pct: pct(user),
        system_pct: pct(system),
        iowait_pct: pct(iowait),
        steal_pct: pct(steal),
    })
}

#[derive(Debug)]
struct Cpu {
    busy: Thresholds,
    iowait: Option<Thresholds>,
    steal: Option<Thresholds>,
    /// `/proc/stat` (under a fixture root in tests).
    stat: procfs::Kept,
    prev: Previous<CpuTimes>,
}

impl Cpu {
    fn new(c: CpuConfig, root: &Path) -> Result<Self, CheckConfigError> {
        let busy = Thresholds::new(c.warn_pct, c.crit_pct);
        busy.validate("warn_pct", "crit_pct", 100.0)?;
        let iowait = Thresholds::optional(
            c.iowait_warn_pct,
            c.iowait_crit_pct,
            ("iowait_warn_pct", "iowait_crit_pct"),
            100.0,
        )?;
        let steal = Thresholds::optional(
            c.steal_warn_pct,
            c.steal_crit_pct,
            ("steal_warn_pct", "steal_crit_pct"),
            100.0,
        )?;
        let stat = procfs::Kept::new(root.join("proc/stat"));
        let first = read(&stat).ok();
        Ok(Cpu {
            busy,
            iowait,
            steal,
            stat,
            prev: Previous::new(first),
        })
    }

    fn evaluate(&self, u: CpuUsage) -> CheckOutcome {
        let mut status = CheckStatus::Ok;
        let mut problems = Vec::new();
        for (what, value, limits) in [
            ("busy", u.busy_pct, Some(self.busy)),
            ("iowait", u.iowait_pct, self.iowait),
            ("steal", u.steal_pct, self.steal),
        ] {
            let Some(t) = limits else { continue };
            let s = t.classify(value);
            if s != CheckStatus::Ok {
                problems.push(format!("{what} ≥ {}%", t.limit(s)));
            }
            status = status.worst(s);
        }
        let mut summary = format!(
            "cpu {}% busy (user {}, system {}, steal {}), iowait {}%",
            round1(u.busy_pct),
            round1(u.user_pct),
            round1(u.system_pct),
            round1(u.steal_pct),
            round1(u.iowait_pct),
        );
        if !problems.is_empty() {
            summary.push_str(": ");
            summary.push_str(&problems.join(", "));
        }
        // The figures judged are the heartbeat's `metrics.cpu`: not repeated in the check's
        // own metrics, so each is on the wire once.
        CheckOutcome::new(status, summary).contributing(Contribution::metrics(Metrics {
            cpu: Some(u),
            ..Metrics::default()
        }))
    }
}

fn read(stat: &procfs::Kept) -> Result<CpuTimes, String> {
    parse_stat(&stat.read()?)
}

#[async_trait]
impl Check for Cpu {
    async fn run(&self, _ctx: &CheckContext) -> CheckOutcome {
        // One read of a procfs file: it never blocks on storage, so no blocking thread.
        match self
            .prev
            .next(|| read(&self.stat), |a, b, _| usage(a, b))
            .await
        {
            Ok(Ok(u)) => self.evaluate(u),
            Ok(Err(e)) | Err(e) => CheckOutcome::unknown(e),
        }
    }
}

inventory::submit! {
    CheckRegistration {
        name: "cpu",
        description: "CPU busy % (user, system, steal) and iowait since the last run, from /proc/stat",
        enabled_by_default: true,
        default_interval: Duration::from_secs(30),
        default_timeout: Duration::from_secs(5),
        example: r#"warn_pct = 90.0          # busy: everything but idle and iowait
crit_pct = 98.0
# iowait_warn_pct = 20.0  # judged only when set
# iowait_crit_pct = 50.0
# steal_warn_pct = 10.0
# steal_crit_pct = 25.0
"#,
        build: |t| Ok(Box::new(Cpu::new(parse_table(t)?, Path::new("/"))?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cpu");
        std::fs::read_to_string(dir.join(name)).unwrap()
    }

    fn between(a: &str, b: &str) -> Result<CpuUsage, String> {
        usage(&parse_stat(&fixture(a))?, &parse_stat(&fixture(b))?)
    }

    fn cpu(toml: &str) -> Result<Cpu, CheckConfigError> {
        let t: toml::Table = toml::from_str(toml).unwrap();
        Cpu::new(parse_table(&t)?, Path::new("/nonexistent"))
    }

    #[test]
    fn two_captures_give_the_shares() {
        // 4 CPUs, 10 s: 4000 ticks. user+nice 1200, system+softirq 400, steal 80, iowait 240,
        // idle 2080; guest (50) is inside user and not counted twice.
        let u = between("stat.1", "stat.2").unwrap();
        assert_eq!(
            u,
            CpuUsage {
                busy_pct: 42.0,
                user_pct: 30.0,
                system_pct: 10.0,
                iowait_pct: 6.0,
                steal_pct: 2.0,
            }
        );
        let out = cpu("").unwrap().evaluate(u);
        assert_eq!(out.status, CheckStatus::Ok);
        assert_eq!(
            out.summary,
            "cpu 42% busy (user 30, system 10, steal 2), iowait 6%"
        );
        assert!(
            out.metrics.is_empty(),
            "the figures are in metrics.cpu only"
        );
        assert_eq!(out.contribution.metrics.cpu, Some(u));
    }

    #[test]
    fn odd_captures() {
        // A kind that dips counts as zero; the rest still add up.
        let u = between("stat.1", "stat.iowait-dips").unwrap();
        assert_eq!((u.busy_pct, u.iowait_pct, u.steal_pct), (60.3, 0.0, 0.3));
        // A 2.4-era line: four kinds.
        let u = between("stat.old-kernel", "stat.old-kernel.2").unwrap();
        assert_eq!((u.busy_pct, u.user_pct, u.system_pct), (40.0, 30.0, 10.0));
        // Counters that went backwards: no rate, an explanation.
        assert!(
            between("stat.1", "stat.reset")
                .unwrap_err()
                .contains("went backwards")
        );
        // The same read twice: no time passed.
        assert!(
            between("stat.1", "stat.1")
                .unwrap_err()
                .contains("no CPU time passed")
        );
        assert!(
            parse_stat(&fixture("stat.garbage"))
                .unwrap_err()
                .contains("not numbers: \"x y z w\"")
        );
        assert_eq!(
            parse_stat("intr 1\ncpu0 1 2 3 4\n").unwrap_err(),
            "/proc/stat has no aggregate cpu line"
        );
        assert!(
            parse_stat("cpu  1 2 x 4\n")
                .unwrap_err()
                .contains("not numbers")
        );
        assert!(
            parse_stat("cpu  1 2 3\n")
                .unwrap_err()
                .contains("at least 4")
        );
    }

    #[test]
    fn verdicts() {
        let u = |busy: f64, iowait: f64, steal: f64| CpuUsage {
            busy_pct: busy,
            user_pct: busy - steal,
            system_pct: 0.0,
            iowait_pct: iowait,
            steal_pct: steal,
        };
        let check = |toml: &str, v: CpuUsage, want: CheckStatus, summary: &str| {
            let out = cpu(toml).unwrap().evaluate(v);
            assert_eq!((out.status, out.summary.as_str()), (want, summary));
        };
        check(
            "",
            u(91.0, 0.0, 0.0),
            CheckStatus::Warn,
            "cpu 91% busy (user 91, system 0, steal 0), iowait 0%: busy ≥ 90%",
        );
        check(
            "",
            u(99.0, 0.0, 0.0),
            CheckStatus::Crit,
            "cpu 99% busy (user 99, system 0, steal 0), iowait 0%: busy ≥ 98%",
        );
        // iowait and steal are judged only when asked.
        check(
            "",
            u(10.0, 80.0, 9.0),
            CheckStatus::Ok,
            "cpu 10% busy (user 1, system 0, steal 9), iowait 80%",
        );
        check(
            "iowait_warn_pct = 20.0\nsteal_crit_pct = 5.0",
            u(10.0, 80.0, 9.0),
            CheckStatus::Crit,
            "cpu 10% busy (user 1, system 0, steal 9), iowait 80%: iowait ≥ 20%, steal ≥ 5%",
        );
    }

    #[test]
    fn bad_config_names_the_key() {
        for (toml, key) in [
            ("warn_pct = 99.0\ncrit_pct = 90.0", "warn_pct"),
            ("crit_pct = 101.0", "crit_pct"),
            ("iowait_warn_pct = -1.0", "iowait_warn_pct"),
            (
                "steal_warn_pct = 30.0\nsteal_crit_pct = 20.0",
                "steal_warn_pct",
            ),
            ("busy_pct = 3.0", "busy_pct"),
            ("warn_pct = \"high\"", "warn_pct"),
        ] {
            assert_eq!(cpu(toml).unwrap_err().key, key, "{toml}");
        }
    }

    /// A whole run against a fixture root: the check's first read at build, the second at run.
    #[tokio::test]
    async fn runs_against_a_fixture_root() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("proc")).unwrap();
        let stat = root.path().join("proc/stat");
        std::fs::write(&stat, fixture("stat.1")).unwrap();
        let mut c = Cpu::new(CpuConfig::default(), root.path()).unwrap();
        c.prev.min_window = Duration::ZERO;
        std::fs::write(&stat, fixture("stat.2")).unwrap();
        let ctx = CheckContext::new(uuid::Uuid::nil(), "/");
        let out = c.run(&ctx).await;
        assert_eq!(out.status, CheckStatus::Ok, "{}", out.summary);
        assert_eq!(out.contribution.metrics.cpu.unwrap().busy_pct, 42.0);
        // Then the counters go backwards: unknown, and the reset read is the new baseline.
        std::fs::write(&stat, fixture("stat.reset")).unwrap();
        let out = c.run(&ctx).await;
        assert_eq!(out.status, CheckStatus::Unknown);
        assert!(out.contribution.is_empty());
        // A root with no /proc/stat: unknown, naming the file.
        let empty = tempfile::tempdir().unwrap();
        let out = Cpu::new(CpuConfig::default(), empty.path())
            .unwrap()
            .run(&ctx)
            .await;
        assert_eq!(out.status, CheckStatus::Unknown);
        assert!(
            out.summary.starts_with(&format!(
                "cannot read {}: ",
                empty.path().join("proc/stat").display()
            )),
            "{}",
            out.summary
        );
    }

    #[tokio::test]
    async fn measures_this_machine() {
        let mut c = Cpu::new(CpuConfig::default(), Path::new("/")).unwrap();
        c.prev.min_window = Duration::from_millis(50);
        let ctx = CheckContext::new(uuid::Uuid::nil(), "/");
        let out = c.run(&ctx).await;
        // Over 50 ms, a quiet machine may not tick at all; then the check says so.
        if out.status != CheckStatus::Unknown {
            let u = out.contribution.metrics.cpu.unwrap();
            assert!((0.0..=100.0).contains(&u.busy_pct), "{u:?}");
        } else {
            assert!(out.summary.contains("no CPU time"), "{}", out.summary);
        }
    }
}
