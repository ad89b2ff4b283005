//! `NodeHeartbeat`: what an agent tells the Command Center every interval.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::check::{CheckResult, CheckStatus};

/// Upper bounds the Command Center enforces on a heartbeat, so one bad agent cannot bloat memory.
pub mod limits {
    /// Longest accepted hostname, in bytes (DNS allows 253).
    pub const HOSTNAME_MAX: usize = 253;
    /// Longest accepted OS profile name.
    pub const PROFILE_MAX: usize = 64;
    /// Longest accepted `vaultmesh_root` path.
    pub const ROOT_MAX: usize = 4096;
    /// Most check results in one heartbeat.
    pub const CHECKS_MAX: usize = 128;
    /// Most disks in one heartbeat.
    pub const DISKS_MAX: usize = 256;
    /// Longest check name or summary, in bytes.
    pub const TEXT_MAX: usize = 2048;
    /// Most network interfaces in `metrics.net`.
    pub const NET_MAX: usize = 256;
    /// Most block devices in `metrics.diskio`.
    pub const DISKIO_MAX: usize = 256;
    /// Longest interface or block device name, in bytes (Linux allows 15).
    pub const DEVICE_NAME_MAX: usize = 64;
    /// Largest accepted rate (bytes, packets or operations per second): 1 PB/s, far above any
    /// link or disk, so a rate beyond it is a broken counter, not traffic.
    pub const RATE_MAX: f64 = 1e15;
    /// Most temperature sensors in one heartbeat (`metrics.temperatures`).
    pub const TEMPERATURES_MAX: usize = 256;
    /// Longest sensor (hwmon chip) name or sensor label, in bytes.
    pub const SENSOR_TEXT_MAX: usize = 64;
    /// Lowest and highest plausible temperature, in °C (absolute zero; far above any chip's limit).
    pub const CELSIUS_RANGE: std::ops::RangeInclusive<f64> = -273.15..=1000.0;
    /// Longest package manager name (`metrics.updates.manager`).
    pub const MANAGER_MAX: usize = 16;
}

/// The profiles VaultMesh ships a policy for (`policies/<profile>.toml`) and the agent detects.
/// Profiles name files, so their case matters: `archvault` is not `ArchVault`.
pub const PROFILES: [&str; 3] = ["ArchVault", "DebianVault", "Generic"];

/// A heartbeat. The first seven fields are the user's original contract and are required; the
/// rest are optional additions that older agents simply leave out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeHeartbeat {
    pub node_id: Uuid,
    pub hostname: String,
    /// OS profile, e.g. `ArchVault` or `DebianVault`; selects `policies/<profile>.toml`.
    pub os_profile: String,
    /// The Cloudflare Tunnel on this node is connected.
    pub cloudflare_ok: bool,
    /// `false`: the node's `systemd` check saw a unit it must run down (its verdict is crit).
    /// `true` otherwise — also when the check could not reach systemd: that is not "down" but
    /// unknown, and the check's own `unknown` result says so (see [`NodeHeartbeat::services`]).
    pub services_ok: bool,
    /// Root of the VaultMesh installation on the node.
    pub vaultmesh_root: String,
    /// When the agent assembled this heartbeat.
    pub timestamp: DateTime<Utc>,

    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_version: Option<String>,
    /// Per-agent monotonic counter, as a decimal string (see the crate docs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uptime_s: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Metrics>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<CheckResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scan: Option<LastScan>,
    /// The node's labels from its agent's config (`[agent] labels`), bounded and ASCII-only
    /// ([`crate::labels`]); absent when it has none.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub labels: crate::labels::Labels,
}

/// Host measurements. Every part is optional: an agent fills what its enabled checks measured.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Load averages over 1, 5 and 15 minutes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load: Option<[f64; 3]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem_total_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem_used_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swap_total_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swap_used_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disks: Vec<DiskUsage>,
    /// CPU time by kind over the `cpu` check's interval, in % of all CPUs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuUsage>,
    /// Traffic per network interface over the `net` check's interval.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub net: Vec<NetRates>,
    /// I/O per block device over the `diskio` check's interval.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub diskio: Vec<DiskIo>,
    /// Temperature sensors (hwmon), from the `temperature` check; absent on a host without any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub temperatures: Vec<Temperature>,
    /// Pending package updates and whether a reboot is due, from the `updates` check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updates: Option<Updates>,
}

impl Metrics {
    /// Memory in use as a percentage of total, when both are known and total is non-zero.
    pub fn mem_used_pct(&self) -> Option<f64> {
        percent(self.mem_used_bytes?, self.mem_total_bytes?)
    }

    /// Swap in use as a percentage of total, when both are known and total is non-zero.
    pub fn swap_used_pct(&self) -> Option<f64> {
        percent(self.swap_used_bytes?, self.swap_total_bytes?)
    }

    /// The fullest disk by space: `(mount, used %)`.
    pub fn fullest_disk(&self) -> Option<(&str, f64)> {
        self.disks
            .iter()
            .filter_map(|d| Some((d.mount.as_str(), d.used_pct()?)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
    }
}

/// The check that owns `services_ok`.
pub const SERVICES_CHECK: &str = "systemd";

/// What a heartbeat says about the services its node must run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Services {
    #[default]
    Up,
    /// A unit the node must run is down (`services_ok: false`).
    Down,
    /// The `systemd` check could not look (no D-Bus, a call failed or timed out).
    Unknown,
}

impl Services {
    /// The one reading of the seed flag: `unknown` when the `systemd` check's result is
    /// `unknown`, whatever `services_ok` says (older agents sent `false` then); otherwise `down`
    /// when `services_ok` is false, else `up`.
    pub fn judge(services_ok: bool, systemd: Option<CheckStatus>) -> Services {
        match (systemd, services_ok) {
            (Some(CheckStatus::Unknown), _) => Services::Unknown,
            (_, false) => Services::Down,
            (_, true) => Services::Up,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Services::Up => "up",
            Services::Down => "down",
            Services::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One mounted filesystem.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiskUsage {
    pub mount: String,
    pub fs: String,
    pub total_bytes: u64,
    pub used_bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inodes_total: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inodes_used: Option<u64>,
}

impl DiskUsage {
    /// Space used as a percentage of total (None for a zero-sized filesystem).
    pub fn used_pct(&self) -> Option<f64> {
        percent(self.used_bytes, self.total_bytes)
    }

    /// Inodes used as a percentage of total, when the filesystem reports inodes.
    pub fn inodes_used_pct(&self) -> Option<f64> {
        percent(self.inodes_used?, self.inodes_total?)
    }
}

/// Where the CPUs' time went between two reads of `/proc/stat`, in % of all CPUs' time. The
/// parts add up: `busy_pct = user_pct + system_pct + steal_pct`, and busy + iowait + idle = 100.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CpuUsage {
    /// Everything but idle and iowait: user + nice + system + irq + softirq + steal.
    pub busy_pct: f64,
    /// user + nice (guest time is inside these).
    pub user_pct: f64,
    /// system + irq + softirq.
    pub system_pct: f64,
    /// Idle with I/O outstanding (not busy).
    pub iowait_pct: f64,
    /// Time the hypervisor ran something else while this machine's CPUs wanted to run.
    pub steal_pct: f64,
}

/// One network interface's traffic between two reads of `/proc/net/dev`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetRates {
    pub interface: String,
    pub rx_bytes_per_s: f64,
    pub tx_bytes_per_s: f64,
    pub rx_errors_per_s: f64,
    pub tx_errors_per_s: f64,
    pub rx_drops_per_s: f64,
    pub tx_drops_per_s: f64,
}

/// One block device's I/O between two reads of `/proc/diskstats`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiskIo {
    pub device: String,
    pub read_bytes_per_s: f64,
    pub write_bytes_per_s: f64,
    /// Completed reads per second.
    pub read_iops: f64,
    /// Completed writes per second.
    pub write_iops: f64,
    /// Share of the interval the device had I/O in flight (`io_ticks`), in %.
    pub busy_pct: f64,
}

/// One temperature sensor: an hwmon chip's `tempN` input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Temperature {
    /// The hwmon chip's name (`/sys/class/hwmon/hwmonN/name`), e.g. `coretemp`.
    pub sensor: String,
    /// The input's label (`tempN_label`, e.g. `Package id 0`), or `tempN` without one.
    pub label: String,
    pub celsius: f64,
    /// The sensor's own critical limit (`tempN_crit`), when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crit_celsius: Option<f64>,
}

/// Pending package updates on the node, as its package manager's local state says (no network).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Updates {
    /// Installed packages for which a newer version is known.
    pub pending: u32,
    /// How many of `pending` come from a security source; absent where the distribution cannot
    /// say (Arch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security: Option<u32>,
    /// The node must reboot to run what is installed (a new kernel, libraries).
    pub reboot_required: bool,
    /// Which package manager's state was read: `apt` or `pacman` (or a newer agent's other one).
    pub manager: String,
}

/// Pointer to the node's most recent sovereign scan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastScan {
    pub scan_id: String,
    pub finished_at: DateTime<Utc>,
    /// Findings per severity (`high` → 2, ...).
    #[serde(default)]
    pub counts: std::collections::BTreeMap<String, u64>,
}

/// Why a heartbeat was refused even though it parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeartbeatError {
    #[error("{field} must not be empty")]
    Empty { field: &'static str },
    #[error("{field} is {len} bytes; the limit is {max}")]
    TooLong {
        field: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{field} holds {len} entries; the limit is {max}")]
    TooMany {
        field: &'static str,
        len: usize,
        max: usize,
    },
    #[error(
        "{field} contains {ch}: a control character, or a bidirectional or invisible one, that could make it read as something else"
    )]
    ControlChar { field: &'static str, ch: String },
    #[error("seq must be a decimal unsigned integer, got {0:?}")]
    BadSeq(String),
    #[error(transparent)]
    Labels(#[from] crate::labels::LabelError),
    #[error("{field} {reason}")]
    Inconsistent {
        field: &'static str,
        reason: &'static str,
    },
}

impl NodeHeartbeat {
    /// Whether the node's services are up, down or unknown ([`Services::judge`]).
    pub fn services(&self) -> Services {
        let systemd = self.checks.iter().find(|c| c.name == SERVICES_CHECK);
        Services::judge(self.services_ok, systemd.map(|c| c.status))
    }

    /// Checks the bounds in [`limits`] and the shape of string fields that serde cannot express.
    pub fn validate(&self) -> Result<(), HeartbeatError> {
        text("hostname", &self.hostname, limits::HOSTNAME_MAX, true)?;
        text("os_profile", &self.os_profile, limits::PROFILE_MAX, true)?;
        text(
            "vaultmesh_root",
            &self.vaultmesh_root,
            limits::ROOT_MAX,
            true,
        )?;
        if let Some(v) = &self.agent_version {
            text("agent_version", v, limits::PROFILE_MAX, false)?;
        }
        if let Some(seq) = &self.seq
            && (seq.is_empty() || seq.len() > 20 || !seq.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(HeartbeatError::BadSeq(seq.chars().take(32).collect()));
        }
        crate::labels::check(&self.labels)?;
        count("checks", self.checks.len(), limits::CHECKS_MAX)?;
        for c in &self.checks {
            text("checks[].name", &c.name, limits::TEXT_MAX, true)?;
            text("checks[].summary", &c.summary, limits::TEXT_MAX, false)?;
        }
        if let Some(m) = &self.metrics {
            count("metrics.disks", m.disks.len(), limits::DISKS_MAX)?;
            for d in &m.disks {
                text("metrics.disks[].mount", &d.mount, limits::ROOT_MAX, true)?;
                text("metrics.disks[].fs", &d.fs, limits::PROFILE_MAX, false)?;
            }
            if let Some(c) = &m.cpu {
                for v in [
                    c.busy_pct,
                    c.user_pct,
                    c.system_pct,
                    c.iowait_pct,
                    c.steal_pct,
                ] {
                    pct("metrics.cpu", v)?;
                }
            }
            count("metrics.net", m.net.len(), limits::NET_MAX)?;
            for n in &m.net {
                text(
                    "metrics.net[].interface",
                    &n.interface,
                    limits::DEVICE_NAME_MAX,
                    true,
                )?;
                for v in [
                    n.rx_bytes_per_s,
                    n.tx_bytes_per_s,
                    n.rx_errors_per_s,
                    n.tx_errors_per_s,
                    n.rx_drops_per_s,
                    n.tx_drops_per_s,
                ] {
                    rate("metrics.net[]", v)?;
                }
            }
            count("metrics.diskio", m.diskio.len(), limits::DISKIO_MAX)?;
            for d in &m.diskio {
                text(
                    "metrics.diskio[].device",
                    &d.device,
                    limits::DEVICE_NAME_MAX,
                    true,
                )?;
                for v in [
                    d.read_bytes_per_s,
                    d.write_bytes_per_s,
                    d.read_iops,
                    d.write_iops,
                ] {
                    rate("metrics.diskio[]", v)?;
                }
                pct("metrics.diskio[].busy_pct", d.busy_pct)?;
            }
            count(
                "metrics.temperatures",
                m.temperatures.len(),
                limits::TEMPERATURES_MAX,
            )?;
            for t in &m.temperatures {
                text(
                    "metrics.temperatures[].sensor",
                    &t.sensor,
                    limits::SENSOR_TEXT_MAX,
                    true,
                )?;
                text(
                    "metrics.temperatures[].label",
                    &t.label,
                    limits::SENSOR_TEXT_MAX,
                    true,
                )?;
                celsius("metrics.temperatures[].celsius", t.celsius)?;
                if let Some(c) = t.crit_celsius {
                    celsius("metrics.temperatures[].crit_celsius", c)?;
                }
            }
            if let Some(u) = &m.updates {
                text(
                    "metrics.updates.manager",
                    &u.manager,
                    limits::MANAGER_MAX,
                    true,
                )?;
                if u.security.is_some_and(|s| s > u.pending) {
                    return Err(HeartbeatError::Inconsistent {
                        field: "metrics.updates.security",
                        reason: "exceeds metrics.updates.pending",
                    });
                }
            }
        }
        Ok(())
    }
}

/// A percentage: 0 to 100.
fn pct(field: &'static str, v: f64) -> Result<(), HeartbeatError> {
    if (0.0..=100.0).contains(&v) {
        Ok(())
    } else {
        Err(HeartbeatError::Inconsistent {
            field,
            reason: "holds a percentage outside 0..=100",
        })
    }
}

/// A rate per second: 0 to [`limits::RATE_MAX`].
fn rate(field: &'static str, v: f64) -> Result<(), HeartbeatError> {
    if (0.0..=limits::RATE_MAX).contains(&v) {
        Ok(())
    } else {
        Err(HeartbeatError::Inconsistent {
            field,
            reason: "holds a rate outside 0..=1e15 per second",
        })
    }
}

pub(crate) fn text(
    field: &'static str,
    value: &str,
    max: usize,
    required: bool,
) -> Result<(), HeartbeatError> {
    if required && value.trim().is_empty() {
        return Err(HeartbeatError::Empty { field });
    }
    if value.len() > max {
        return Err(HeartbeatError::TooLong {
            field,
            len: value.len(),
            max,
        });
    }
    if let Some(c) = crate::text::first_deceptive(value, &[]) {
        return Err(HeartbeatError::ControlChar {
            field,
            ch: format!("U+{:04X}", u32::from(c)),
        });
    }
    Ok(())
}

fn celsius(field: &'static str, value: f64) -> Result<(), HeartbeatError> {
    if !limits::CELSIUS_RANGE.contains(&value) {
        return Err(HeartbeatError::Inconsistent {
            field,
            reason: "is outside -273.15..=1000 °C",
        });
    }
    Ok(())
}

pub(crate) fn count(field: &'static str, len: usize, max: usize) -> Result<(), HeartbeatError> {
    if len > max {
        return Err(HeartbeatError::TooMany { field, len, max });
    }
    Ok(())
}

fn percent(used: u64, total: u64) -> Option<f64> {
    (total > 0).then(|| used as f64 * 100.0 / total as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example from the user's architecture note, verbatim.
    const SEED_EXAMPLE: &str = r#"{
"node_id": "550e8400-e29b-41d4-a716-446655440000",
"hostname": "vault-node-01",
"os_profile": "ArchVault",
"cloudflare_ok": true,
"services_ok": true,
"vaultmesh_root": "/var/lib/vaultmesh",
"timestamp": "2024-01-15T10:30:00Z"
}"#;

    #[test]
    fn seed_example_parses_and_round_trips() {
        let hb: NodeHeartbeat = serde_json::from_str(SEED_EXAMPLE).unwrap();
        assert_eq!(
            hb.node_id.to_string(),
            "550e8400-e29b-41d4-a716-446655440000"
        );
        assert_eq!(hb.hostname, "vault-node-01");
        assert_eq!(hb.os_profile, "ArchVault");
        assert!(hb.cloudflare_ok && hb.services_ok);
        assert_eq!(hb.timestamp.to_rfc3339(), "2024-01-15T10:30:00+00:00");
        assert!(hb.metrics.is_none() && hb.checks.is_empty());
        hb.validate().unwrap();

        // Serialising a seed-only heartbeat yields exactly the seed's fields again.
        let back = serde_json::to_value(&hb).unwrap();
        let seed: serde_json::Value = serde_json::from_str(SEED_EXAMPLE).unwrap();
        assert_eq!(back, seed);
    }

    #[test]
    fn an_unknown_systemd_check_means_services_unknown_whatever_the_flag_says() {
        use CheckStatus::*;
        for (flag, systemd, want) in [
            (true, None, Services::Up),
            (false, None, Services::Down),
            (true, Some(Ok), Services::Up),
            (true, Some(Warn), Services::Up),
            (false, Some(Crit), Services::Down),
            // Agents that cannot reach systemd leave the flag true...
            (true, Some(Unknown), Services::Unknown),
            // ... older ones sent false: still unknown, not down.
            (false, Some(Unknown), Services::Unknown),
        ] {
            assert_eq!(Services::judge(flag, systemd), want, "{flag} {systemd:?}");
        }
    }

    #[test]
    fn each_seed_field_is_required() {
        let seed: serde_json::Value = serde_json::from_str(SEED_EXAMPLE).unwrap();
        for field in [
            "node_id",
            "hostname",
            "os_profile",
            "cloudflare_ok",
            "services_ok",
            "vaultmesh_root",
            "timestamp",
        ] {
            let mut v = seed.clone();
            v.as_object_mut().unwrap().remove(field);
            let err = serde_json::from_value::<NodeHeartbeat>(v).unwrap_err();
            assert!(err.to_string().contains(field), "{field}: {err}");
        }
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let mut v: serde_json::Value = serde_json::from_str(SEED_EXAMPLE).unwrap();
        v["from_the_future"] = serde_json::json!({"x": 1});
        serde_json::from_value::<NodeHeartbeat>(v).unwrap();
    }

    #[test]
    fn full_heartbeat_round_trips() {
        let mut hb: NodeHeartbeat = serde_json::from_str(SEED_EXAMPLE).unwrap();
        hb.agent_version = Some("0.1.0".into());
        hb.seq = Some("18446744073709551615".into());
        hb.uptime_s = Some(3600);
        hb.metrics = Some(Metrics {
            load: Some([0.5, 0.25, 0.125]),
            cpu_count: Some(2),
            mem_total_bytes: Some(1 << 30),
            mem_used_bytes: Some(1 << 29),
            swap_total_bytes: Some(0),
            swap_used_bytes: Some(0),
            disks: vec![DiskUsage {
                mount: "/".into(),
                fs: "ext4".into(),
                total_bytes: 100,
                used_bytes: 91,
                inodes_total: Some(10),
                inodes_used: Some(1),
            }],
            ..Metrics::default()
        });
        hb.checks = vec![CheckResult::new("disk", CheckStatus::Crit, "/ is 91% full")];
        hb.last_scan = Some(LastScan {
            scan_id: "s-1".into(),
            finished_at: hb.timestamp,
            counts: [("high".to_string(), 2)].into(),
        });
        hb.validate().unwrap();
        let json = serde_json::to_string(&hb).unwrap();
        let back: NodeHeartbeat = serde_json::from_str(&json).unwrap();
        assert_eq!(back, hb);
        let m = back.metrics.unwrap();
        assert_eq!(m.mem_used_pct(), Some(50.0));
        assert_eq!(m.fullest_disk(), Some(("/", 91.0)));
        assert_eq!(m.disks[0].inodes_used_pct(), Some(10.0));
    }

    #[test]
    fn validation_rejects_bad_strings() {
        let base: NodeHeartbeat = serde_json::from_str(SEED_EXAMPLE).unwrap();
        let check = |f: &dyn Fn(&mut NodeHeartbeat), want: &str| {
            let mut hb = base.clone();
            f(&mut hb);
            let err = hb.validate().unwrap_err().to_string();
            assert!(err.contains(want), "{err:?} should mention {want:?}");
        };
        check(
            &|hb| hb.hostname = "  ".into(),
            "hostname must not be empty",
        );
        check(&|hb| hb.hostname = "a".repeat(300), "hostname is 300 bytes");
        check(
            &|hb| hb.os_profile = "Arch\nVault".into(),
            "control character",
        );
        check(&|hb| hb.seq = Some("-1".into()), "seq must be");
        check(
            &|hb| hb.seq = Some("123456789012345678901".into()),
            "seq must be",
        );
        check(
            &|hb| {
                hb.checks = (0..200)
                    .map(|i| CheckResult::new(format!("c{i}"), CheckStatus::Ok, ""))
                    .collect()
            },
            "checks holds 200 entries",
        );
    }

    fn with_rates() -> NodeHeartbeat {
        let mut hb: NodeHeartbeat = serde_json::from_str(SEED_EXAMPLE).unwrap();
        hb.metrics = Some(Metrics {
            cpu: Some(CpuUsage {
                busy_pct: 31.0,
                user_pct: 20.0,
                system_pct: 9.0,
                iowait_pct: 6.0,
                steal_pct: 2.0,
            }),
            net: vec![NetRates {
                interface: "enp3s0".into(),
                rx_bytes_per_s: 125000.5,
                tx_bytes_per_s: 2048.0,
                rx_errors_per_s: 0.0,
                tx_errors_per_s: 0.25,
                rx_drops_per_s: 1.5,
                tx_drops_per_s: 0.0,
            }],
            diskio: vec![DiskIo {
                device: "nvme0n1".into(),
                read_bytes_per_s: 4096.0,
                write_bytes_per_s: 1048576.0,
                read_iops: 1.0,
                write_iops: 64.5,
                busy_pct: 12.5,
            }],
            ..Metrics::default()
        });
        hb
    }

    #[test]
    fn rates_round_trip_under_their_names_and_older_heartbeats_lack_them() {
        let hb = with_rates();
        hb.validate().unwrap();
        let v = serde_json::to_value(&hb).unwrap();
        assert_eq!(
            v["metrics"],
            serde_json::json!({
                "cpu": {"busy_pct": 31.0, "user_pct": 20.0, "system_pct": 9.0,
                        "iowait_pct": 6.0, "steal_pct": 2.0},
                "net": [{"interface": "enp3s0", "rx_bytes_per_s": 125000.5,
                         "tx_bytes_per_s": 2048.0, "rx_errors_per_s": 0.0,
                         "tx_errors_per_s": 0.25, "rx_drops_per_s": 1.5,
                         "tx_drops_per_s": 0.0}],
                "diskio": [{"device": "nvme0n1", "read_bytes_per_s": 4096.0,
                            "write_bytes_per_s": 1048576.0, "read_iops": 1.0,
                            "write_iops": 64.5, "busy_pct": 12.5}],
            })
        );
        let back: NodeHeartbeat = serde_json::from_value(v).unwrap();
        assert_eq!(back, hb);
        // An older agent's metrics (no rates) still parse, and an older CC's heartbeat (no
        // metrics) gains no empty fields.
        let old: NodeHeartbeat = serde_json::from_value(serde_json::json!({
            "node_id": "550e8400-e29b-41d4-a716-446655440000", "hostname": "h",
            "os_profile": "Generic", "cloudflare_ok": true, "services_ok": true,
            "vaultmesh_root": "/", "timestamp": "2024-01-15T10:30:00Z",
            "metrics": {"load": [0.1, 0.2, 0.3], "cpu_count": 1}
        }))
        .unwrap();
        let m = old.metrics.as_ref().unwrap();
        assert!(m.cpu.is_none() && m.net.is_empty() && m.diskio.is_empty());
        let json = serde_json::to_string(&old).unwrap();
        assert!(!json.contains("cpu\"") && !json.contains("net") && !json.contains("diskio"));
    }

    #[test]
    fn rates_are_bounded() {
        let check = |f: &dyn Fn(&mut Metrics), want: &str| {
            let mut hb = with_rates();
            f(hb.metrics.as_mut().unwrap());
            let err = hb.validate().unwrap_err().to_string();
            assert!(err.contains(want), "{err:?} should mention {want:?}");
        };
        check(
            &|m| m.cpu.as_mut().unwrap().busy_pct = 100.5,
            "metrics.cpu holds a percentage outside 0..=100",
        );
        check(
            &|m| m.cpu.as_mut().unwrap().steal_pct = -0.1,
            "metrics.cpu holds a percentage",
        );
        check(
            &|m| m.net[0].rx_bytes_per_s = 2e15,
            "metrics.net[] holds a rate outside",
        );
        check(
            &|m| m.net[0].tx_drops_per_s = -1.0,
            "metrics.net[] holds a rate outside",
        );
        check(
            &|m| m.net[0].interface = "eth\u{202e}0".into(),
            "metrics.net[].interface contains U+202E",
        );
        check(
            &|m| m.net[0].interface = "x".repeat(65),
            "metrics.net[].interface is 65 bytes; the limit is 64",
        );
        check(
            &|m| m.net[0].interface = " ".into(),
            "metrics.net[].interface must not be empty",
        );
        check(
            &|m| m.net = vec![m.net[0].clone(); 257],
            "metrics.net holds 257 entries; the limit is 256",
        );
        check(
            &|m| m.diskio[0].busy_pct = 101.0,
            "metrics.diskio[].busy_pct holds a percentage",
        );
        check(
            &|m| m.diskio[0].write_iops = 1e16,
            "metrics.diskio[] holds a rate",
        );
        check(
            &|m| m.diskio[0].device = "sda\u{1b}[2J".into(),
            "metrics.diskio[].device contains U+001B",
        );
        check(
            &|m| m.diskio = vec![m.diskio[0].clone(); 257],
            "metrics.diskio holds 257 entries",
        );
    }

    #[test]
    fn zero_sized_disk_has_no_percentage() {
        let d = DiskUsage {
            mount: "/x".into(),
            fs: "tmpfs".into(),
            total_bytes: 0,
            used_bytes: 0,
            inodes_total: None,
            inodes_used: None,
        };
        assert_eq!(d.used_pct(), None);
        assert_eq!(d.inodes_used_pct(), None);
    }

    #[test]
    fn temperatures_and_updates_round_trip_and_are_bounded() {
        let old: NodeHeartbeat = serde_json::from_value(serde_json::json!({
            "node_id": "550e8400-e29b-41d4-a716-446655440000", "hostname": "h",
            "os_profile": "Generic", "cloudflare_ok": true, "services_ok": true,
            "vaultmesh_root": "/", "timestamp": "2024-01-15T10:30:00Z",
            "metrics": {"load": [0.1, 0.1, 0.1]},
        }))
        .unwrap();
        let m = old.metrics.as_ref().unwrap();
        assert!(m.temperatures.is_empty() && m.updates.is_none());
        assert!(
            !serde_json::to_string(&old)
                .unwrap()
                .contains("temperatures"),
            "absent fields stay absent"
        );

        let wire = serde_json::json!({
            "temperatures": [
                {"sensor": "coretemp", "label": "Core 0", "celsius": 47.5, "crit_celsius": 100.0},
                {"sensor": "nvme", "label": "temp1", "celsius": 38.0}
            ],
            "updates": {"pending": 4, "reboot_required": false, "manager": "pacman"}
        });
        let m: Metrics = serde_json::from_value(wire.clone()).unwrap();
        assert_eq!(m.temperatures[1].crit_celsius, None);
        assert_eq!(
            m.updates.as_ref().unwrap().security,
            None,
            "Arch cannot say"
        );
        assert_eq!(serde_json::to_value(&m).unwrap(), wire);

        let check = |f: &dyn Fn(&mut Metrics), want: &str| {
            let mut hb = old.clone();
            let mut mm = m.clone();
            f(&mut mm);
            hb.metrics = Some(mm);
            let err = hb.validate().unwrap_err().to_string();
            assert!(err.contains(want), "{err:?} should mention {want:?}");
        };
        let mut ok = old.clone();
        ok.metrics = Some(m.clone());
        ok.validate().unwrap();
        check(
            &|m| m.temperatures[0].label = "Core\u{1b}[31m0".into(),
            "metrics.temperatures[].label contains U+001B",
        );
        check(
            &|m| m.temperatures[0].sensor = "c".repeat(65),
            "metrics.temperatures[].sensor is 65 bytes; the limit is 64",
        );
        check(
            &|m| m.temperatures[0].sensor = " ".into(),
            "metrics.temperatures[].sensor must not be empty",
        );
        check(
            &|m| m.temperatures[0].celsius = 5000.0,
            "metrics.temperatures[].celsius is outside",
        );
        check(
            &|m| m.temperatures[1].crit_celsius = Some(-300.0),
            "metrics.temperatures[].crit_celsius is outside",
        );
        check(
            &|m| {
                let t = m.temperatures[0].clone();
                m.temperatures = vec![t; limits::TEMPERATURES_MAX + 1];
            },
            "metrics.temperatures holds 257 entries; the limit is 256",
        );
        check(
            &|m| m.updates.as_mut().unwrap().security = Some(5),
            "metrics.updates.security exceeds metrics.updates.pending",
        );
        check(
            &|m| m.updates.as_mut().unwrap().manager = "apt\u{202e}".into(),
            "metrics.updates.manager contains U+202E",
        );
        check(
            &|m| m.updates.as_mut().unwrap().manager = String::new(),
            "metrics.updates.manager must not be empty",
        );
    }

    #[test]
    fn the_documented_examples_parse_and_validate() {
        let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs");
        let block_after = |file: &str, marker: &str| -> String {
            let text = std::fs::read_to_string(docs.join(file)).unwrap();
            let from = text
                .find(marker)
                .unwrap_or_else(|| panic!("{marker} in {file}"));
            let rest = &text[from..];
            let start = rest.find("```json\n").unwrap() + "```json\n".len();
            let end = rest[start..].find("```").unwrap();
            rest[start..start + end].to_string()
        };
        let hb: NodeHeartbeat =
            serde_json::from_str(&block_after("API.md", "### `POST /api/agent/heartbeat`"))
                .unwrap();
        hb.validate().unwrap();
        let m = hb.metrics.unwrap();
        assert_eq!(m.temperatures.len(), 1);
        assert_eq!(m.updates.unwrap().security, Some(3));

        let snippet = block_after("PROTOCOL.md", "**Temperatures and updates (issue 27).**");
        let wrapped: serde_json::Value = serde_json::from_str(&format!("{{{snippet}}}")).unwrap();
        let m: Metrics = serde_json::from_value(wrapped["metrics"].clone()).unwrap();
        assert_eq!(m.temperatures[2].crit_celsius, None);
        let mut hb: NodeHeartbeat = serde_json::from_str(SEED_EXAMPLE).unwrap();
        hb.metrics = Some(m);
        hb.validate().unwrap();
    }
}
