//! `memory`: RAM and swap in use.
//!
//! "Used" RAM is total minus *available* (what the kernel could hand out without swapping), not
//! minus free, so page cache does not look like pressure.

use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use vaultmesh_agent_core::registry::{CheckConfigError, CheckRegistration, parse_table};
use vaultmesh_agent_core::{Check, CheckContext, CheckOutcome, Contribution};
use vaultmesh_proto::{CheckStatus, Metrics};

use crate::procfs;
use crate::thresholds::{Thresholds, round1};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct MemoryConfig {
    warn_pct: f64,
    crit_pct: f64,
    swap_warn_pct: f64,
    swap_crit_pct: f64,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig {
            warn_pct: 90.0,
            crit_pct: 95.0,
            swap_warn_pct: 80.0,
            swap_crit_pct: 95.0,
        }
    }
}

#[derive(Debug)]
struct Memory {
    ram: Thresholds,
    swap: Thresholds,
    meminfo: procfs::Kept,
}

/// Raw byte counts, as measured. They go to the heartbeat's `metrics.mem_*` and
/// `metrics.swap_*`; the check's own metrics carry only the percentages judged.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Sample {
    mem_total_bytes: u64,
    mem_used_bytes: u64,
    swap_total_bytes: u64,
    swap_used_bytes: u64,
}

impl Memory {
    fn new(c: MemoryConfig) -> Result<Self, CheckConfigError> {
        let ram = Thresholds::new(c.warn_pct, c.crit_pct);
        ram.validate("warn_pct", "crit_pct", 100.0)?;
        let swap = Thresholds::new(c.swap_warn_pct, c.swap_crit_pct);
        swap.validate("swap_warn_pct", "swap_crit_pct", 100.0)?;
        Ok(Memory {
            ram,
            swap,
            meminfo: procfs::Kept::new("/proc/meminfo"),
        })
    }

    fn evaluate(&self, s: Sample) -> CheckOutcome {
        if s.mem_total_bytes == 0 {
            return CheckOutcome::unknown("the kernel reports no memory");
        }
        let ram_pct = s.mem_used_bytes as f64 * 100.0 / s.mem_total_bytes as f64;
        let ram = self.ram.classify(ram_pct);
        let swap_pct = (s.swap_total_bytes > 0)
            .then(|| s.swap_used_bytes as f64 * 100.0 / s.swap_total_bytes as f64);
        let swap = swap_pct.map_or(CheckStatus::Ok, |p| self.swap.classify(p));
        let mut summary = format!(
            "memory {}% used ({} of {})",
            round1(ram_pct),
            gib(s.mem_used_bytes),
            gib(s.mem_total_bytes)
        );
        match swap_pct {
            Some(p) => summary.push_str(&format!(", swap {}% used", round1(p))),
            None => summary.push_str(", no swap"),
        }
        let mut out = CheckOutcome::new(ram.worst(swap), summary)
            .with_metric("used_pct", round1(ram_pct))
            .contributing(Contribution::metrics(Metrics {
                mem_total_bytes: Some(s.mem_total_bytes),
                mem_used_bytes: Some(s.mem_used_bytes),
                swap_total_bytes: Some(s.swap_total_bytes),
                swap_used_bytes: Some(s.swap_used_bytes),
                ..Metrics::default()
            }));
        if let Some(p) = swap_pct {
            out = out.with_metric("swap_used_pct", round1(p));
        }
        out
    }
}

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

fn sample(meminfo: &procfs::Kept) -> Result<Sample, String> {
    let m = procfs::parse_meminfo(&meminfo.read()?)?;
    Ok(Sample {
        mem_total_bytes: m.total,
        mem_used_bytes: m.total.saturating_sub(m.available),
        swap_total_bytes: m.swap_total,
        swap_used_bytes: m.swap_total.saturating_sub(m.swap_free),
    })
}

#[async_trait]
impl Check for Memory {
    async fn run(&self, _ctx: &CheckContext) -> CheckOutcome {
        // One read of a procfs file: it never blocks on storage, so no blocking thread.
        match sample(&self.meminfo) {
            Ok(s) => self.evaluate(s),
            Err(e) => CheckOutcome::unknown(e),
        }
    }
}

inventory::submit! {
    CheckRegistration {
        name: "memory",
        description: "RAM (total minus available) and swap in use",
        enabled_by_default: true,
        default_interval: Duration::from_secs(30),
        default_timeout: Duration::from_secs(5),
        example: "warn_pct = 90.0\ncrit_pct = 95.0\nswap_warn_pct = 80.0\nswap_crit_pct = 95.0\n",
        build: |t| Ok(Box::new(Memory::new(parse_table(t)?)?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    fn check(
        total: u64,
        used: u64,
        swap_total: u64,
        swap_used: u64,
        want: CheckStatus,
        summary: &str,
    ) {
        let m = Memory::new(MemoryConfig::default()).unwrap();
        let out = m.evaluate(Sample {
            mem_total_bytes: total,
            mem_used_bytes: used,
            swap_total_bytes: swap_total,
            swap_used_bytes: swap_used,
        });
        assert_eq!((out.status, out.summary.as_str()), (want, summary));
    }

    #[test]
    fn verdicts() {
        check(
            4 * GIB,
            GIB,
            0,
            0,
            CheckStatus::Ok,
            "memory 25% used (1.0 GiB of 4.0 GiB), no swap",
        );
        check(
            10 * GIB,
            9 * GIB,
            0,
            0,
            CheckStatus::Warn,
            "memory 90% used (9.0 GiB of 10.0 GiB), no swap",
        );
        check(
            100,
            96,
            0,
            0,
            CheckStatus::Crit,
            "memory 96% used (0.0 GiB of 0.0 GiB), no swap",
        );
        check(
            4 * GIB,
            GIB,
            100,
            85,
            CheckStatus::Warn,
            "memory 25% used (1.0 GiB of 4.0 GiB), swap 85% used",
        );
        check(
            0,
            0,
            0,
            0,
            CheckStatus::Unknown,
            "the kernel reports no memory",
        );
    }

    #[test]
    fn samples_this_machine() {
        let s = sample(&procfs::Kept::new("/proc/meminfo")).unwrap();
        assert!(s.mem_total_bytes > 0 && s.mem_used_bytes <= s.mem_total_bytes);
    }

    #[test]
    fn thresholds_are_validated() {
        let e = Memory::new(MemoryConfig {
            swap_warn_pct: -1.0,
            ..MemoryConfig::default()
        })
        .unwrap_err();
        assert_eq!(e.key, "swap_warn_pct");
    }
}
