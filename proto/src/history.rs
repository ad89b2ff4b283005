//! A node's history over time: `GET /api/nodes/{id}/history` (docs/API.md#node-history).
//!
//! Every numeric measurement of a heartbeat is a *metric* (`load1`, `mem_used_pct`,
//! `disk_used_pct:/var`, `checks_crit`, ...). The Command Center keeps each metric in three tiers
//! — raw samples, 5-minute and 1-hour buckets with min/avg/max — and answers a range with at most
//! [`MAX_POINTS`] points per series, merging buckets into a wider [`NodeHistory::resolution_secs`]
//! when the range holds more.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Metrics;
use crate::check::CheckStatus;

/// Most points a series of a history answer holds.
pub const MAX_POINTS: usize = 300;

/// The ranges a history can be asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Range {
    #[serde(rename = "1h")]
    Hour,
    #[serde(rename = "24h")]
    Day,
    #[serde(rename = "7d")]
    Week,
    #[serde(rename = "30d")]
    Month,
    #[serde(rename = "1y")]
    Year,
}

impl Range {
    pub const ALL: [Range; 5] = [
        Range::Hour,
        Range::Day,
        Range::Week,
        Range::Month,
        Range::Year,
    ];

    /// The wire name (`1h`, `24h`, `7d`, `30d`, `1y`).
    pub fn name(self) -> &'static str {
        match self {
            Range::Hour => "1h",
            Range::Day => "24h",
            Range::Week => "7d",
            Range::Month => "30d",
            Range::Year => "1y",
        }
    }

    pub fn from_name(name: &str) -> Option<Range> {
        Range::ALL.into_iter().find(|r| r.name() == name)
    }

    /// The span in seconds (a year is 365 days).
    pub fn secs(self) -> i64 {
        match self {
            Range::Hour => 3_600,
            Range::Day => 86_400,
            Range::Week => 7 * 86_400,
            Range::Month => 30 * 86_400,
            Range::Year => 365 * 86_400,
        }
    }

    /// The tier the answer is read from: the coarsest whose buckets still fit [`MAX_POINTS`]
    /// in the range at least once.
    pub fn tier(self) -> Tier {
        match self {
            Range::Hour => Tier::Raw,
            Range::Day => Tier::FiveMinutes,
            Range::Week | Range::Month | Range::Year => Tier::Hour,
        }
    }

    /// The width of each point of the answer: the narrowest of [`RESOLUTIONS`] that is at least
    /// the tier's width and leaves at most [`MAX_POINTS`] points in the range.
    pub fn resolution_secs(self) -> u32 {
        let floor = self.tier().secs().max(1);
        RESOLUTIONS
            .into_iter()
            .find(|&w| {
                w >= floor && (self.secs() as u64).div_ceil(u64::from(w)) <= MAX_POINTS as u64
            })
            .unwrap_or(RESOLUTIONS[RESOLUTIONS.len() - 1])
    }
}

/// The point widths an answer may have, in seconds: 15 s to 7 days.
pub const RESOLUTIONS: [u32; 13] = [
    15, 30, 60, 300, 600, 900, 1_800, 3_600, 7_200, 10_800, 21_600, 86_400, 172_800,
];

/// Where points come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Tier {
    /// One point per heartbeat.
    #[serde(rename = "raw")]
    Raw,
    /// 5-minute buckets.
    #[serde(rename = "5m")]
    FiveMinutes,
    /// 1-hour buckets.
    #[serde(rename = "1h")]
    Hour,
}

impl Tier {
    /// A bucket's width in seconds (0 for raw samples).
    pub fn secs(self) -> u32 {
        match self {
            Tier::Raw => 0,
            Tier::FiveMinutes => 300,
            Tier::Hour => 3_600,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Tier::Raw => "raw",
            Tier::FiveMinutes => "5m",
            Tier::Hour => "1h",
        }
    }
}

/// What a metric measures, for axes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    /// A load average (runnable tasks).
    Load,
    /// A percentage, 0 to 100.
    Percent,
    /// A count (checks in a status).
    Count,
    /// Bytes per second.
    #[serde(rename = "bytes_per_s")]
    BytesPerSec,
    /// Degrees Celsius.
    Celsius,
}

/// The metric name of a filesystem's used %: `disk_used_pct:<mount>`.
pub const DISK_PREFIX: &str = "disk_used_pct:";

/// The fixed metrics, their units, and what they are (a disk's is [`DISK_PREFIX`] + mount).
/// Network, disk I/O and temperature are kept for the node as a whole (summed over its
/// interfaces and devices, the busiest device, the hottest sensor), so a node's history has a
/// bounded number of series however many devices it has; `/metrics` has them one by one.
pub const METRICS: [(&str, Unit, &str); 18] = [
    ("load1", Unit::Load, "load average over 1 minute"),
    ("load5", Unit::Load, "load average over 5 minutes"),
    ("load15", Unit::Load, "load average over 15 minutes"),
    ("mem_used_pct", Unit::Percent, "memory in use"),
    ("swap_used_pct", Unit::Percent, "swap in use"),
    (
        "cpu_busy_pct",
        Unit::Percent,
        "CPU time busy (user, system, steal)",
    ),
    (
        "cpu_iowait_pct",
        Unit::Percent,
        "CPU time idle waiting for I/O",
    ),
    (
        "cpu_steal_pct",
        Unit::Percent,
        "CPU time the hypervisor took",
    ),
    (
        "net_rx_bytes_per_s",
        Unit::BytesPerSec,
        "received, all interfaces the net check watches",
    ),
    (
        "net_tx_bytes_per_s",
        Unit::BytesPerSec,
        "sent, all interfaces the net check watches",
    ),
    (
        "diskio_read_bytes_per_s",
        Unit::BytesPerSec,
        "read, all devices the diskio check watches",
    ),
    (
        "diskio_write_bytes_per_s",
        Unit::BytesPerSec,
        "written, all devices the diskio check watches",
    ),
    (
        "diskio_busy_pct",
        Unit::Percent,
        "the busiest device's time with I/O in flight",
    ),
    ("temp_max_celsius", Unit::Celsius, "the hottest sensor"),
    ("checks_ok", Unit::Count, "checks reporting ok"),
    ("checks_warn", Unit::Count, "checks reporting warn"),
    ("checks_crit", Unit::Count, "checks reporting crit"),
    ("checks_unknown", Unit::Count, "checks reporting unknown"),
];

/// The unit of a metric name, `None` for a name that is no metric.
pub fn unit_of(metric: &str) -> Option<Unit> {
    if let Some(mount) = metric.strip_prefix(DISK_PREFIX) {
        return (!mount.is_empty()).then_some(Unit::Percent);
    }
    METRICS
        .iter()
        .find(|(name, ..)| *name == metric)
        .map(|(_, unit, _)| *unit)
}

/// Every metric a heartbeat measures, by name, in [`METRICS`] order then disks in the order
/// reported. What the history keeps of one heartbeat.
pub fn measure(metrics: Option<&Metrics>, statuses: &[CheckStatus]) -> Vec<Sample> {
    let mut out = Vec::with_capacity(20);
    if let Some(m) = metrics {
        if let Some(load) = m.load {
            for (name, v) in ["load1", "load5", "load15"].into_iter().zip(load) {
                out.push((Cow::Borrowed(name), v));
            }
        }
        if let Some(pct) = m.mem_used_pct() {
            out.push((Cow::Borrowed("mem_used_pct"), pct));
        }
        if let Some(pct) = m.swap_used_pct() {
            out.push((Cow::Borrowed("swap_used_pct"), pct));
        }
        if let Some(c) = &m.cpu {
            out.push((Cow::Borrowed("cpu_busy_pct"), c.busy_pct));
            out.push((Cow::Borrowed("cpu_iowait_pct"), c.iowait_pct));
            out.push((Cow::Borrowed("cpu_steal_pct"), c.steal_pct));
        }
        if !m.net.is_empty() {
            let rx = m.net.iter().map(|n| n.rx_bytes_per_s).sum();
            let tx = m.net.iter().map(|n| n.tx_bytes_per_s).sum();
            out.push((Cow::Borrowed("net_rx_bytes_per_s"), rx));
            out.push((Cow::Borrowed("net_tx_bytes_per_s"), tx));
        }
        if !m.diskio.is_empty() {
            let read = m.diskio.iter().map(|d| d.read_bytes_per_s).sum();
            let write = m.diskio.iter().map(|d| d.write_bytes_per_s).sum();
            let busy = m.diskio.iter().map(|d| d.busy_pct).fold(0.0, f64::max);
            out.push((Cow::Borrowed("diskio_read_bytes_per_s"), read));
            out.push((Cow::Borrowed("diskio_write_bytes_per_s"), write));
            out.push((Cow::Borrowed("diskio_busy_pct"), busy));
        }
        if let Some(t) = m
            .temperatures
            .iter()
            .map(|t| t.celsius)
            .filter(|c| c.is_finite())
            .reduce(f64::max)
        {
            out.push((Cow::Borrowed("temp_max_celsius"), t));
        }
    }
    if !statuses.is_empty() {
        let mut counts = [0u32; 4];
        for s in statuses {
            counts[match s {
                CheckStatus::Ok => 0,
                CheckStatus::Warn => 1,
                CheckStatus::Crit => 2,
                CheckStatus::Unknown => 3,
            }] += 1;
        }
        for (name, n) in ["checks_ok", "checks_warn", "checks_crit", "checks_unknown"]
            .into_iter()
            .zip(counts)
        {
            out.push((Cow::Borrowed(name), f64::from(n)));
        }
    }
    if let Some(m) = metrics {
        for d in &m.disks {
            if let Some(pct) = d.used_pct() {
                out.push((Cow::Owned(format!("{DISK_PREFIX}{}", d.mount)), pct));
            }
        }
    }
    out
}

/// One measurement: a metric's name (borrowed for the fixed ones) and its value.
pub type Sample = (Cow<'static, str>, f64);

/// One point: the bucket starting at `t`, `resolution_secs` wide (a raw point is one sample,
/// `min == avg == max`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub t: DateTime<Utc>,
    pub min: f64,
    pub avg: f64,
    pub max: f64,
    /// Samples the point summarizes.
    pub n: u32,
}

/// One metric over the range, oldest point first; buckets without samples are absent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Series {
    pub metric: String,
    pub unit: Unit,
    pub points: Vec<Point>,
}

/// When a filesystem will be full at the pace of its last 7 days.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiskForecast {
    pub mount: String,
    /// Used % now (the newest hour's average).
    pub used_pct: f64,
    /// Least-squares slope over the hourly averages of the last 7 days, % per day.
    pub pct_per_day: f64,
    /// Days until 100 % at that pace; `None` when it is not growing.
    pub days_until_full: Option<f64>,
    /// Hours of data the trend rests on.
    pub hours: u32,
}

/// The answer of `GET /api/nodes/{id}/history`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeHistory {
    pub node_id: Uuid,
    pub range: Range,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// The tier the points were read from.
    pub tier: Tier,
    /// The width of each point.
    pub resolution_secs: u32,
    pub series: Vec<Series>,
    /// Each filesystem's forecast, when there is enough history for one.
    pub forecasts: Vec<DiskForecast>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_range_answers_at_most_300_points_at_a_resolution_its_tier_holds() {
        let expect = [
            (Range::Hour, 15),
            (Range::Day, 300),
            (Range::Week, 3_600),
            (Range::Month, 10_800),
            (Range::Year, 172_800),
        ];
        for (range, width) in expect {
            assert_eq!(range.resolution_secs(), width, "{range:?}");
            assert!(range.secs() / i64::from(width) <= MAX_POINTS as i64);
            assert_eq!(i64::from(width) % i64::from(range.tier().secs().max(1)), 0);
            assert_eq!(Range::from_name(range.name()), Some(range));
        }
    }

    #[test]
    fn cpu_network_disk_io_and_temperature_are_kept_for_the_node_as_a_whole() {
        let m: Metrics = serde_json::from_value(serde_json::json!({
            "cpu": {"busy_pct": 40.0, "user_pct": 30.0, "system_pct": 8.0, "iowait_pct": 5.0, "steal_pct": 2.0},
            "net": [{"interface": "eth0", "rx_bytes_per_s": 100.0, "tx_bytes_per_s": 10.0,
                     "rx_errors_per_s": 0.0, "tx_errors_per_s": 0.0, "rx_drops_per_s": 0.0, "tx_drops_per_s": 0.0},
                    {"interface": "eth1", "rx_bytes_per_s": 50.0, "tx_bytes_per_s": 5.0,
                     "rx_errors_per_s": 0.0, "tx_errors_per_s": 0.0, "rx_drops_per_s": 0.0, "tx_drops_per_s": 0.0}],
            "diskio": [{"device": "sda", "read_bytes_per_s": 1.0, "write_bytes_per_s": 2.0,
                        "read_iops": 0.0, "write_iops": 0.0, "busy_pct": 7.0},
                       {"device": "sdb", "read_bytes_per_s": 3.0, "write_bytes_per_s": 4.0,
                        "read_iops": 0.0, "write_iops": 0.0, "busy_pct": 30.0}],
            "temperatures": [{"sensor": "coretemp", "label": "Core 0", "celsius": 61.0},
                             {"sensor": "nvme", "label": "Composite", "celsius": 44.0}]
        }))
        .unwrap();
        let got: Vec<(String, f64)> = measure(Some(&m), &[])
            .into_iter()
            .map(|(n, v)| (n.into_owned(), v))
            .collect();
        let want = [
            ("cpu_busy_pct", 40.0),
            ("cpu_iowait_pct", 5.0),
            ("cpu_steal_pct", 2.0),
            ("net_rx_bytes_per_s", 150.0),
            ("net_tx_bytes_per_s", 15.0),
            ("diskio_read_bytes_per_s", 4.0),
            ("diskio_write_bytes_per_s", 6.0),
            ("diskio_busy_pct", 30.0),
            ("temp_max_celsius", 61.0),
        ];
        assert_eq!(
            got,
            want.map(|(n, v)| (n.to_string(), v)),
            "summed over interfaces and devices, the busiest device, the hottest sensor"
        );
        for (name, _) in &got {
            assert!(unit_of(name).is_some(), "{name}");
        }
        assert_eq!(unit_of("net_rx_bytes_per_s"), Some(Unit::BytesPerSec));
        assert_eq!(unit_of("temp_max_celsius"), Some(Unit::Celsius));
    }

    #[test]
    fn a_heartbeat_measures_load_memory_swap_checks_and_each_disk() {
        let m: Metrics = serde_json::from_value(serde_json::json!({
            "load": [0.5, 0.4, 0.3], "mem_total_bytes": 1000, "mem_used_bytes": 250,
            "swap_total_bytes": 0, "swap_used_bytes": 0,
            "disks": [{"mount": "/", "fs": "ext4", "total_bytes": 100, "used_bytes": 91},
                      {"mount": "/var", "fs": "xfs", "total_bytes": 0, "used_bytes": 0}]
        }))
        .unwrap();
        let got = measure(
            Some(&m),
            &[CheckStatus::Ok, CheckStatus::Crit, CheckStatus::Ok],
        );
        let names: Vec<_> = got.iter().map(|(n, _)| n.as_ref()).collect();
        assert_eq!(
            names,
            [
                "load1",
                "load5",
                "load15",
                "mem_used_pct",
                "checks_ok",
                "checks_warn",
                "checks_crit",
                "checks_unknown",
                "disk_used_pct:/"
            ],
            "no swap or zero-sized disk: nothing to divide by"
        );
        assert_eq!(got[3].1, 25.0);
        assert_eq!(got[4].1, 2.0);
        assert_eq!(got[8].1, 91.0);
        for (name, _) in &got {
            assert!(unit_of(name).is_some(), "{name}");
        }
        assert_eq!(unit_of("disk_used_pct:"), None);
        assert_eq!(unit_of("load2"), None);
    }
}
