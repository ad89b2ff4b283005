//! `load`: the 1/5/15-minute load averages, judged per CPU so one threshold fits every node.

use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use vaultmesh_agent_core::registry::{CheckConfigError, CheckRegistration, parse_table};
use vaultmesh_agent_core::{Check, CheckContext, CheckOutcome, Contribution};
use vaultmesh_proto::Metrics;

use crate::procfs;
use crate::thresholds::Thresholds;

/// Which average the thresholds apply to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
enum Window {
    #[serde(rename = "1m")]
    One,
    #[serde(rename = "5m")]
    Five,
    #[serde(rename = "15m")]
    Fifteen,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct LoadConfig {
    /// Load per CPU at which the node is warn / crit.
    warn_per_cpu: f64,
    crit_per_cpu: f64,
    /// `1m`, `5m` (default) or `15m`.
    window: Window,
}

impl Default for LoadConfig {
    fn default() -> Self {
        LoadConfig {
            warn_per_cpu: 1.5,
            crit_per_cpu: 3.0,
            window: Window::Five,
        }
    }
}

#[derive(Debug)]
struct Load {
    thresholds: Thresholds,
    window: Window,
    files: Files,
}

/// The two kernel files a run reads, kept open.
#[derive(Debug)]
struct Files {
    loadavg: procfs::Kept,
    /// The CPUs the kernel runs: the load average counts every one, not only those this
    /// process may use.
    online: procfs::Kept,
}

impl Files {
    fn new() -> Files {
        Files {
            loadavg: procfs::Kept::new("/proc/loadavg"),
            online: procfs::Kept::new("/sys/devices/system/cpu/online"),
        }
    }
}

/// The averages and the CPU count, as measured. They go to the heartbeat's `metrics.load` and
/// `metrics.cpu_count`; the check's own metrics carry only the per-CPU figures judged.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Sample {
    load: [f64; 3],
    cpu_count: u32,
}

impl Load {
    fn new(c: LoadConfig) -> Result<Self, CheckConfigError> {
        let thresholds = Thresholds::new(c.warn_per_cpu, c.crit_per_cpu);
        thresholds.validate("warn_per_cpu", "crit_per_cpu", 1000.0)?;
        Ok(Load {
            thresholds,
            window: c.window,
            files: Files::new(),
        })
    }

    fn evaluate(&self, s: Sample) -> CheckOutcome {
        if s.cpu_count == 0 || s.load.iter().any(|l| !l.is_finite() || *l < 0.0) {
            return CheckOutcome::unknown(format!(
                "implausible load sample {:?} on {} CPUs",
                s.load, s.cpu_count
            ));
        }
        let cpus = f64::from(s.cpu_count);
        let per_cpu = s.load.map(|l| l / cpus);
        let (idx, label) = match self.window {
            Window::One => (0, "1m"),
            Window::Five => (1, "5m"),
            Window::Fifteen => (2, "15m"),
        };
        let status = self.thresholds.classify(per_cpu[idx]);
        let summary = format!(
            "load {:.2} {:.2} {:.2} on {} CPU{} ({label}: {:.2} per CPU)",
            s.load[0],
            s.load[1],
            s.load[2],
            s.cpu_count,
            if s.cpu_count == 1 { "" } else { "s" },
            per_cpu[idx]
        );
        let r2 = |v: f64| (v * 100.0).round() / 100.0;
        CheckOutcome::new(status, summary)
            .with_metric("load1_per_cpu", r2(per_cpu[0]))
            .with_metric("load5_per_cpu", r2(per_cpu[1]))
            .with_metric("load15_per_cpu", r2(per_cpu[2]))
            .contributing(Contribution::metrics(Metrics {
                load: Some(s.load),
                cpu_count: Some(s.cpu_count),
                ..Metrics::default()
            }))
    }
}

fn sample(files: &Files) -> Result<Sample, String> {
    let load = procfs::parse_loadavg(&files.loadavg.read()?)?;
    let cpu_count = match (files.online.read()).and_then(|t| procfs::parse_cpu_list(&t)) {
        Ok(n) => n,
        Err(_) => std::thread::available_parallelism()
            .map_or(1, |n| u32::try_from(n.get()).unwrap_or(u32::MAX)),
    };
    Ok(Sample { load, cpu_count })
}

#[async_trait]
impl Check for Load {
    async fn run(&self, _ctx: &CheckContext) -> CheckOutcome {
        // Two reads of kernel files: they never block on storage, so no blocking thread.
        match sample(&self.files) {
            Ok(s) => self.evaluate(s),
            Err(e) => CheckOutcome::unknown(e),
        }
    }
}

inventory::submit! {
    CheckRegistration {
        name: "load",
        description: "1/5/15-minute load average, normalised per CPU",
        enabled_by_default: true,
        default_interval: Duration::from_secs(30),
        default_timeout: Duration::from_secs(5),
        example: "warn_per_cpu = 1.5\ncrit_per_cpu = 3.0\nwindow = \"5m\"   # 1m, 5m or 15m\n",
        build: |t| Ok(Box::new(Load::new(parse_table(t)?)?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vaultmesh_proto::CheckStatus;

    fn check(load: [f64; 3], cpus: u32, want: CheckStatus, summary: &str) {
        let l = Load::new(LoadConfig::default()).unwrap();
        let out = l.evaluate(Sample {
            load,
            cpu_count: cpus,
        });
        assert_eq!((out.status, out.summary.as_str()), (want, summary));
    }

    #[test]
    fn verdicts() {
        check(
            [0.5, 0.4, 0.3],
            2,
            CheckStatus::Ok,
            "load 0.50 0.40 0.30 on 2 CPUs (5m: 0.20 per CPU)",
        );
        check(
            [9.0, 3.0, 1.0],
            2,
            CheckStatus::Warn,
            "load 9.00 3.00 1.00 on 2 CPUs (5m: 1.50 per CPU)",
        );
        check(
            [9.0, 7.0, 1.0],
            2,
            CheckStatus::Crit,
            "load 9.00 7.00 1.00 on 2 CPUs (5m: 3.50 per CPU)",
        );
        check(
            [1.0, 1.0, 1.0],
            1,
            CheckStatus::Ok,
            "load 1.00 1.00 1.00 on 1 CPU (5m: 1.00 per CPU)",
        );
        check(
            [1.0, 1.0, 1.0],
            0,
            CheckStatus::Unknown,
            "implausible load sample [1.0, 1.0, 1.0] on 0 CPUs",
        );
    }

    #[test]
    fn window_selects_the_average() {
        let t: toml::Table = toml::from_str("window = \"1m\"").unwrap();
        let l = Load::new(parse_table(&t).unwrap()).unwrap();
        assert_eq!(
            l.evaluate(Sample {
                load: [9.0, 0.0, 0.0],
                cpu_count: 1
            })
            .status,
            CheckStatus::Crit
        );
        let t: toml::Table = toml::from_str("window = \"2m\"").unwrap();
        assert_eq!(parse_table::<LoadConfig>(&t).unwrap_err().key, "window");
    }

    #[test]
    fn samples_this_machine() {
        let s = sample(&Files::new()).unwrap();
        assert!(s.cpu_count >= 1);
    }
}
