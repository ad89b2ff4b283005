//! The `Check` trait: one thing on the node worth looking at.

use std::collections::BTreeMap;
use std::path::PathBuf;

use async_trait::async_trait;
use serde::Serialize;
use vaultmesh_proto::{CheckResult, CheckStatus, Metrics, NodeHeartbeat};

/// What a check run may know about the node it runs on.
#[derive(Debug, Clone)]
pub struct CheckContext {
    pub node_id: uuid::Uuid,
    /// Root of the VaultMesh installation (`VAULTMESH_ROOT`).
    pub vaultmesh_root: PathBuf,
    /// The node's OS profile (`VAULTMESH_OS_PROFILE`).
    pub os_profile: String,
    /// The agent's configuration file, when it was read from one.
    pub config_file: Option<PathBuf>,
    /// Where a scanning check hands its report for delivery.
    pub scans: crate::scans::ScanOutbox,
    /// The run's timeout, set by the scheduler: a long check should finish (with partial
    /// results) before it.
    pub timeout: Option<std::time::Duration>,
}

impl CheckContext {
    /// A context for `node_id` with profile `Generic`, no config file and an in-memory outbox.
    pub fn new(node_id: uuid::Uuid, vaultmesh_root: impl Into<PathBuf>) -> Self {
        CheckContext {
            node_id,
            vaultmesh_root: vaultmesh_root.into(),
            os_profile: "Generic".to_string(),
            config_file: None,
            scans: crate::scans::ScanOutbox::in_memory(),
            timeout: None,
        }
    }
}

/// What a check reports. The scheduler adds the check's name, the time and the duration to make
/// a [`CheckRun`].
///
/// `metrics` and `details` travel in the heartbeat as the check's own result; what the
/// heartbeat has a typed field for (`metrics.disks`, `metrics.load`, the two flags, ...) goes in
/// `contribution` instead, and is not repeated in `details` or `metrics`, so each measurement is
/// on the wire once.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckOutcome {
    pub status: CheckStatus,
    pub summary: String,
    pub metrics: BTreeMap<String, f64>,
    pub details: serde_json::Value,
    pub contribution: Contribution,
}

impl CheckOutcome {
    pub fn new(status: CheckStatus, summary: impl Into<String>) -> Self {
        CheckOutcome {
            status,
            summary: summary.into(),
            metrics: BTreeMap::new(),
            details: serde_json::Value::Null,
            contribution: Contribution::default(),
        }
    }

    /// `unknown` with a reason: the check could not look, so it contributes nothing.
    pub fn unknown(reason: impl Into<String>) -> Self {
        CheckOutcome::new(CheckStatus::Unknown, reason)
    }

    pub fn with_metric(mut self, key: impl Into<String>, value: f64) -> Self {
        self.metrics.insert(key.into(), value);
        self
    }

    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }

    /// What this run measured for the heartbeat's typed fields.
    pub fn contributing(mut self, contribution: Contribution) -> Self {
        self.contribution = contribution;
        self
    }
}

/// What one run of a check measured for the heartbeat's typed fields: the parts of
/// [`Metrics`] it fills and the seed flags it owns. The heartbeat builder applies it as it is
/// (no JSON in between); a part left `None` or empty leaves the heartbeat's value alone.
///
/// It serialises with the heartbeat's own names (`{"metrics": {"disks": [...]}}`,
/// `{"services_ok": false}`): that is how `checks run --json` and the `checks.run` command show it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Contribution {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cloudflare_ok: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub services_ok: Option<bool>,
    #[serde(skip_serializing_if = "metrics_are_empty")]
    pub metrics: Metrics,
}

fn metrics_are_empty(m: &Metrics) -> bool {
    *m == Metrics::default()
}

impl Contribution {
    /// Fills these parts of the heartbeat's `metrics`.
    pub fn metrics(metrics: Metrics) -> Self {
        Contribution {
            metrics,
            ..Contribution::default()
        }
    }

    /// Sets `services_ok`.
    pub fn services_ok(ok: bool) -> Self {
        Contribution {
            services_ok: Some(ok),
            ..Contribution::default()
        }
    }

    /// Sets `cloudflare_ok`.
    pub fn cloudflare_ok(ok: bool) -> Self {
        Contribution {
            cloudflare_ok: Some(ok),
            ..Contribution::default()
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == Contribution::default()
    }

    /// Moves what was measured into `heartbeat`.
    pub fn apply(self, heartbeat: &mut NodeHeartbeat) {
        let Contribution {
            cloudflare_ok,
            services_ok,
            metrics,
        } = self;
        if let Some(ok) = cloudflare_ok {
            heartbeat.cloudflare_ok = ok;
        }
        if let Some(ok) = services_ok {
            heartbeat.services_ok = ok;
        }
        if metrics_are_empty(&metrics) {
            return;
        }
        // Named field by field, so a new field of `Metrics` does not compile until it is
        // handled here.
        let Metrics {
            load,
            cpu_count,
            mem_total_bytes,
            mem_used_bytes,
            swap_total_bytes,
            swap_used_bytes,
            disks,
            cpu,
            net,
            diskio,
            temperatures,
            updates,
        } = metrics;
        let m = heartbeat.metrics.get_or_insert_with(Metrics::default);
        set(&mut m.load, load);
        set(&mut m.cpu_count, cpu_count);
        set(&mut m.mem_total_bytes, mem_total_bytes);
        set(&mut m.mem_used_bytes, mem_used_bytes);
        set(&mut m.swap_total_bytes, swap_total_bytes);
        set(&mut m.swap_used_bytes, swap_used_bytes);
        if !disks.is_empty() {
            m.disks = disks;
        }
        set(&mut m.cpu, cpu);
        if !net.is_empty() {
            m.net = net;
        }
        if !diskio.is_empty() {
            m.diskio = diskio;
        }
        if !temperatures.is_empty() {
            m.temperatures = temperatures;
        }
        set(&mut m.updates, updates);
    }
}

/// `slot = value` unless `value` is `None`.
fn set<T>(slot: &mut Option<T>, value: Option<T>) {
    if value.is_some() {
        *slot = value;
    }
}

/// One run of one check: the result the heartbeat carries, and what the run contributes to
/// the heartbeat's typed fields. Serialises as the result with the contribution under
/// `contributes` (left out when empty).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckRun {
    #[serde(flatten)]
    pub result: CheckResult,
    #[serde(skip_serializing_if = "Contribution::is_empty")]
    pub contributes: Contribution,
}

/// A check. Built once from its TOML table by the constructor in its
/// [`crate::CheckRegistration`], then run by the scheduler on its interval.
///
/// `run` must not block the async executor: a system call that can wait on a disk, a network
/// or another process goes in `tokio::task::spawn_blocking` (reading a `/proc` or `/sys` file,
/// or `statvfs` of a local disk's filesystem, answers from kernel memory and need not). It may take as long as it needs; the scheduler enforces the
/// configured timeout and turns a panic into `unknown`. What it measured for the heartbeat's
/// typed fields it returns in [`CheckOutcome::contributing`]; a run that timed out or panicked
/// contributes nothing.
#[async_trait]
pub trait Check: Send + Sync + std::fmt::Debug + 'static {
    async fn run(&self, ctx: &CheckContext) -> CheckOutcome;
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use vaultmesh_proto::DiskUsage;

    fn seed() -> NodeHeartbeat {
        serde_json::from_value(serde_json::json!({
            "node_id": uuid::Uuid::nil(), "hostname": "h", "os_profile": "Generic",
            "cloudflare_ok": false, "services_ok": true, "vaultmesh_root": "/",
            "timestamp": "2026-11-29T10:00:00Z",
        }))
        .unwrap()
    }

    /// A disk, and both flags away from their seed values.
    pub(crate) fn measured() -> Contribution {
        let disk = DiskUsage {
            mount: "/".into(),
            fs: "ext4".into(),
            total_bytes: 100,
            used_bytes: 42,
            inodes_total: None,
            inodes_used: None,
        };
        Contribution {
            cloudflare_ok: Some(true),
            services_ok: Some(false),
            metrics: Metrics {
                disks: vec![disk],
                ..Metrics::default()
            },
        }
    }

    fn load() -> Contribution {
        Contribution::metrics(Metrics {
            load: Some([0.5, 0.25, 0.125]),
            cpu_count: Some(2),
            ..Metrics::default()
        })
    }

    #[test]
    fn contributions_fill_only_their_own_parts() {
        let mut hb = seed();
        Contribution::default().apply(&mut hb);
        assert_eq!(hb, seed(), "an empty contribution changes nothing");
        assert!(
            !serde_json::to_string(&hb).unwrap().contains("metrics"),
            "and adds no empty metrics object"
        );

        load().apply(&mut hb);
        Contribution::metrics(Metrics {
            mem_total_bytes: Some(4),
            mem_used_bytes: Some(1),
            swap_total_bytes: Some(0),
            swap_used_bytes: Some(0),
            ..Metrics::default()
        })
        .apply(&mut hb);
        Contribution::services_ok(false).apply(&mut hb);
        Contribution::cloudflare_ok(true).apply(&mut hb);
        Contribution::metrics(Metrics {
            temperatures: vec![vaultmesh_proto::Temperature {
                sensor: "coretemp".into(),
                label: "Core 0".into(),
                celsius: 50.0,
                crit_celsius: None,
            }],
            ..Metrics::default()
        })
        .apply(&mut hb);
        Contribution::metrics(Metrics {
            updates: Some(vaultmesh_proto::Updates {
                pending: 2,
                security: None,
                reboot_required: true,
                manager: "pacman".into(),
            }),
            ..Metrics::default()
        })
        .apply(&mut hb);
        let m = hb.metrics.as_ref().unwrap();
        assert_eq!(
            (m.temperatures.len(), m.updates.as_ref().map(|u| u.pending)),
            (1, Some(2)),
            "temperatures and updates land in their fields, each kept by the other"
        );
        assert_eq!(
            (m.load, m.cpu_count, m.mem_used_pct(), m.swap_total_bytes),
            (Some([0.5, 0.25, 0.125]), Some(2), Some(25.0), Some(0)),
            "memory after load keeps the load"
        );
        assert!(m.disks.is_empty());
        assert!(!hb.services_ok && hb.cloudflare_ok);
    }

    #[test]
    fn rate_contributions_fill_their_own_fields() {
        use vaultmesh_proto::{CpuUsage, DiskIo, NetRates};
        let mut hb = seed();
        load().apply(&mut hb);
        let cpu = CpuUsage {
            busy_pct: 30.0,
            user_pct: 20.0,
            system_pct: 9.0,
            iowait_pct: 1.0,
            steal_pct: 1.0,
        };
        Contribution::metrics(Metrics {
            cpu: Some(cpu),
            ..Metrics::default()
        })
        .apply(&mut hb);
        let net = NetRates {
            interface: "eth0".into(),
            rx_bytes_per_s: 1.0,
            tx_bytes_per_s: 2.0,
            rx_errors_per_s: 0.0,
            tx_errors_per_s: 0.0,
            rx_drops_per_s: 0.0,
            tx_drops_per_s: 0.0,
        };
        Contribution::metrics(Metrics {
            net: vec![net.clone()],
            ..Metrics::default()
        })
        .apply(&mut hb);
        let io = DiskIo {
            device: "sda".into(),
            read_bytes_per_s: 1.0,
            write_bytes_per_s: 2.0,
            read_iops: 3.0,
            write_iops: 4.0,
            busy_pct: 5.0,
        };
        Contribution::metrics(Metrics {
            diskio: vec![io.clone()],
            ..Metrics::default()
        })
        .apply(&mut hb);
        let m = hb.metrics.as_ref().unwrap();
        assert_eq!(
            (m.load, m.cpu, &m.net, &m.diskio),
            (Some([0.5, 0.25, 0.125]), Some(cpu), &vec![net], &vec![io]),
            "each part keeps the others"
        );
    }

    #[test]
    fn a_run_serialises_as_its_result_with_the_contribution_under_its_heartbeat_names() {
        let mut result = CheckResult::new("load", CheckStatus::Ok, "fine");
        result.observed_at = "2026-11-29T10:00:00Z".parse().unwrap();
        let run = CheckRun {
            result: result.clone(),
            contributes: load(),
        };
        assert_eq!(
            serde_json::to_value(&run).unwrap(),
            serde_json::json!({
                "name": "load", "status": "ok", "summary": "fine",
                "observed_at": "2026-11-29T10:00:00Z", "duration_ms": 0,
                "contributes": {"metrics": {"load": [0.5, 0.25, 0.125], "cpu_count": 2}},
            })
        );
        let run = CheckRun {
            result: result.clone(),
            contributes: measured(),
        };
        assert_eq!(
            serde_json::to_value(&run.contributes).unwrap(),
            serde_json::json!({"cloudflare_ok": true, "services_ok": false, "metrics": {"disks": [
                {"mount": "/", "fs": "ext4", "total_bytes": 100, "used_bytes": 42}]}})
        );
        // Nothing contributed: exactly the result, as before.
        let bare = CheckRun {
            result: result.clone(),
            contributes: Contribution::default(),
        };
        assert_eq!(
            serde_json::to_value(&bare).unwrap(),
            serde_json::to_value(&result).unwrap()
        );
    }
}
