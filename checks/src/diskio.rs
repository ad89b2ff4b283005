//! `diskio`: read/write bytes, IOPS and busy time per block device since the previous run, from
//! `/proc/diskstats` (one read for every device).
//!
//! By default only whole disks are watched: names listed in `/sys/block` (partitions are not),
//! except loop, ram, zram and device-mapper devices (`loop*`, `ram*`, `zram*`, `dm-*`: their
//! I/O is already counted on the disks beneath) and devices that never did any I/O (an empty
//! CD drive, unused `nbd` slots). `include` globs replace that rule (partitions and LVM volumes
//! too: `include = ["dm-*"]`), `exclude` globs always drop a name.
//!
//! Busy % is the share of the interval the device had I/O in flight (`io_ticks`, in ms). An
//! SSD or NVMe drive serves many requests at once, so 100 % busy there means "never idle",
//! not "saturated"; on a spinning disk it is close to saturation.
//!
//! `io_ticks` is a 32-bit count of milliseconds and wraps every 49.7 days: a wrap whose
//! difference fits the interval is counted as one. Any other counter that went down (the
//! device re-created, an array re-assembled) gives that device no rate this run; its new
//! counters are the baseline for the next. A device seen for the first time (hotplugged) is
//! measured from the next run. Never a negative or huge rate.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use vaultmesh_agent_core::registry::{CheckConfigError, CheckRegistration, parse_table};
use vaultmesh_agent_core::{Check, CheckContext, CheckOutcome, Contribution};
use vaultmesh_proto::{CheckStatus, DiskIo, Metrics};

use crate::counters::{
    DeviceFacts, NameFilter, Previous, bytes_per_s, device_name, per_second, round2,
};
use crate::thresholds::{Thresholds, round1};

/// Devices whose I/O is counted again on the devices beneath them, or that are memory.
const VIRTUAL: &[&str] = &["loop", "ram", "zram", "dm-"];

/// `/proc/diskstats` counts 512-byte sectors whatever the device's own sector size.
const SECTOR: u64 = 512;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct DiskIoConfig {
    /// Busy % of one device over the interval at which the node is warn / crit.
    busy_warn_pct: f64,
    busy_crit_pct: f64,
    /// If set, watch exactly the devices matching one of these globs (partitions too).
    include: Vec<String>,
    /// Never watch the devices matching one of these globs.
    exclude: Vec<String>,
}

impl Default for DiskIoConfig {
    fn default() -> Self {
        DiskIoConfig {
            busy_warn_pct: 90.0,
            busy_crit_pct: 98.0,
            include: Vec::new(),
            exclude: Vec::new(),
        }
    }
}

/// One device's counters in `/proc/diskstats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DevCounters {
    pub reads: u64,
    pub sectors_read: u64,
    pub writes: u64,
    pub sectors_written: u64,
    /// Milliseconds with I/O in flight (32 bits: it wraps).
    pub io_ticks: u64,
}

/// Parses `/proc/diskstats`: `major minor name` and at least 11 counters per line (kernels
/// since 2.6; later ones add discard and flush counters, which are not used). Lines with fewer
/// (a 2.6-era partition line, a torn read) are skipped.
pub fn parse_diskstats(text: &str) -> Vec<(&str, DevCounters)> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let (_major, _minor, name) = (f.next()?, f.next()?, f.next()?);
            let v: Vec<u64> = f.map(str::parse).collect::<Result<_, _>>().ok()?;
            if v.len() < 11 {
                return None;
            }
            Some((
                name,
                DevCounters {
                    reads: v[0],
                    sectors_read: v[2],
                    writes: v[4],
                    sectors_written: v[6],
                    io_ticks: v[9],
                },
            ))
        })
        .collect()
}

/// The rates between two reads over `elapsed`, and how many devices of the second read have
/// none yet (new, or counters that went down).
pub fn rates(
    prev: &BTreeMap<String, DevCounters>,
    cur: &BTreeMap<String, DevCounters>,
    elapsed: Duration,
) -> (Vec<DiskIo>, usize) {
    let elapsed_ms = elapsed.as_secs_f64() * 1e3;
    let mut out = Vec::with_capacity(cur.len());
    let mut restarted = 0;
    for (name, c) in cur {
        let Some(p) = prev.get(name) else {
            restarted += 1;
            continue;
        };
        let went_down = c.reads < p.reads
            || c.sectors_read < p.sectors_read
            || c.writes < p.writes
            || c.sectors_written < p.sectors_written;
        let Some(ticks) = io_ticks_delta(p.io_ticks, c.io_ticks, elapsed_ms) else {
            restarted += 1;
            continue;
        };
        if went_down || elapsed_ms <= 0.0 {
            restarted += 1;
            continue;
        }
        out.push(DiskIo {
            device: name.clone(),
            read_bytes_per_s: per_second((c.sectors_read - p.sectors_read) * SECTOR, elapsed),
            write_bytes_per_s: per_second(
                (c.sectors_written - p.sectors_written) * SECTOR,
                elapsed,
            ),
            read_iops: per_second(c.reads - p.reads, elapsed),
            write_iops: per_second(c.writes - p.writes, elapsed),
            busy_pct: round2((ticks as f64 * 100.0 / elapsed_ms).min(100.0)),
        });
    }
    (out, restarted)
}

/// Milliseconds busy between two `io_ticks`: the difference, or the 32-bit wrap's if that
/// fits the interval (a little slack for the kernel's rounding); `None` when neither is
/// plausible (the counter started over).
fn io_ticks_delta(prev: u64, cur: u64, elapsed_ms: f64) -> Option<u64> {
    if cur >= prev {
        return Some(cur - prev);
    }
    let (p, c) = (u32::try_from(prev).ok()?, u32::try_from(cur).ok()?);
    let wrapped = u64::from(c.wrapping_sub(p));
    (wrapped as f64 <= elapsed_ms * 1.05 + 100.0).then_some(wrapped)
}

#[derive(Debug)]
struct DiskIoCheck {
    busy: Thresholds,
    filter: NameFilter,
    /// `/` but in tests.
    root: PathBuf,
    /// `/proc/diskstats` under `root`.
    stats: crate::procfs::Kept,
    prev: Previous<BTreeMap<String, DevCounters>>,
    /// The whole disks in `/sys/block`, kept while the same devices are listed.
    disks: DeviceFacts<BTreeSet<String>>,
}

impl DiskIoCheck {
    fn new(c: DiskIoConfig, root: &Path) -> Result<Self, CheckConfigError> {
        let busy = Thresholds::new(c.busy_warn_pct, c.busy_crit_pct);
        busy.validate("busy_warn_pct", "busy_crit_pct", 100.0)?;
        let mut check = DiskIoCheck {
            busy,
            filter: NameFilter::new(&c.include, &c.exclude)?,
            root: root.to_path_buf(),
            stats: crate::procfs::Kept::new(root.join("proc/diskstats")),
            prev: Previous::new(None),
            disks: DeviceFacts::default(),
        };
        check.prev = Previous::new(check.read().ok());
        Ok(check)
    }

    /// Whole disks: the names in `/sys/block` (where a `/` in a name is a `!`).
    fn whole_disks(&self) -> Result<BTreeSet<String>, String> {
        let dir = self.root.join("sys/block");
        let entries = std::fs::read_dir(&dir).map_err(|e| {
            format!(
                "cannot read {} (it tells disks from partitions; or set include): {e}",
                dir.display()
            )
        })?;
        Ok(entries
            .filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().replace('!', "/")))
            .collect())
    }

    /// The watched devices' counters, by the name shown.
    fn read(&self) -> Result<BTreeMap<String, DevCounters>, String> {
        let text = self.stats.read_lossy()?;
        let parsed = parse_diskstats(&text);
        // Only the default rule needs /sys/block.
        let disks = if self.filter.has_include() {
            Default::default()
        } else {
            let names = parsed.iter().map(|(raw, _)| *raw);
            self.disks.get(names, || self.whole_disks())?
        };
        Ok(parsed
            .into_iter()
            .filter_map(|(raw, c)| {
                let shown = device_name(raw);
                let by_default = || {
                    disks.contains(raw)
                        && !VIRTUAL.iter().any(|v| raw.starts_with(v))
                        && c != DevCounters::default()
                };
                self.filter.wants(&shown, by_default).then_some((shown, c))
            })
            .collect())
    }

    fn evaluate(&self, devices: Vec<DiskIo>, restarted: usize) -> CheckOutcome {
        let mut status = CheckStatus::Ok;
        let mut problems = Vec::new();
        for d in &devices {
            let s = self.busy.classify(d.busy_pct);
            if s != CheckStatus::Ok {
                problems.push((
                    s,
                    d.busy_pct,
                    format!(
                        "{} {}% busy (≥ {}%)",
                        d.device,
                        round1(d.busy_pct),
                        self.busy.limit(s)
                    ),
                ));
            }
            status = status.worst(s);
        }
        vaultmesh_agent_core::sort::sort_by(&mut problems, |a, b| {
            b.0.severity()
                .cmp(&a.0.severity())
                .then(b.1.total_cmp(&a.1))
        });
        let busiest = devices
            .iter()
            .max_by(|a, b| a.busy_pct.total_cmp(&b.busy_pct));
        let mut summary = if !problems.is_empty() {
            problems
                .into_iter()
                .map(|p| p.2)
                .collect::<Vec<_>>()
                .join("; ")
        } else if let Some(d) = busiest {
            format!(
                "{} device{}, busiest {} at {}% (read {}, write {}, {} IOPS)",
                devices.len(),
                if devices.len() == 1 { "" } else { "s" },
                d.device,
                round1(d.busy_pct),
                bytes_per_s(d.read_bytes_per_s),
                bytes_per_s(d.write_bytes_per_s),
                round1(d.read_iops + d.write_iops),
            )
        } else {
            "no block devices to watch".to_string()
        };
        if restarted > 0 {
            summary.push_str(&format!(
                "; {restarted} more measured from the next run (new, or counters reset)"
            ));
        }
        let sum = |f: fn(&DiskIo) -> f64| round2(devices.iter().map(f).sum());
        let mut out = CheckOutcome::new(status, summary)
            .with_metric("devices", devices.len() as f64)
            .with_metric("read_bytes_per_s", sum(|d| d.read_bytes_per_s))
            .with_metric("write_bytes_per_s", sum(|d| d.write_bytes_per_s));
        if let Some(d) = busiest {
            out = out.with_metric("max_busy_pct", round1(d.busy_pct));
        }
        out.contributing(Contribution::metrics(Metrics {
            diskio: devices,
            ..Metrics::default()
        }))
    }
}

#[async_trait]
impl Check for DiskIoCheck {
    async fn run(&self, _ctx: &CheckContext) -> CheckOutcome {
        // A procfs read and a sysfs directory listing: never blocked on storage.
        match self.prev.next(|| self.read(), rates).await {
            Ok((devices, restarted)) => self.evaluate(devices, restarted),
            Err(e) => CheckOutcome::unknown(e),
        }
    }
}

inventory::submit! {
    CheckRegistration {
        name: "diskio",
        description: "Read/write bytes, IOPS and busy % per block device since the last run",
        enabled_by_default: true,
        default_interval: Duration::from_secs(30),
        default_timeout: Duration::from_secs(5),
        example: r#"busy_warn_pct = 90.0     # share of the interval with I/O in flight
busy_crit_pct = 98.0
include = []             # globs; if set, exactly these (partitions too, e.g. ["sda*"])
exclude = []             # globs, e.g. ["sr*"]
"#,
        build: |t| Ok(Box::new(DiskIoCheck::new(parse_table(t)?, Path::new("/"))?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/diskio")
    }

    fn put(root: &tempfile::TempDir, capture: &str) {
        let dir = root.path().join("proc");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(fixtures().join(capture), dir.join("diskstats")).unwrap();
    }

    fn check_in(root: &tempfile::TempDir, capture: &str, toml: &str) -> DiskIoCheck {
        let link = root.path().join("sys");
        if !link.exists() {
            std::os::unix::fs::symlink(fixtures().join("sys"), link).unwrap();
        }
        put(root, capture);
        let t: toml::Table = toml::from_str(toml).unwrap();
        let mut c = DiskIoCheck::new(parse_table(&t).unwrap(), root.path()).unwrap();
        c.prev.min_window = Duration::ZERO;
        c
    }

    #[test]
    fn parses_old_and_new_kernels_lines() {
        let text = std::fs::read_to_string(fixtures().join("diskstats.2")).unwrap();
        let got: BTreeMap<&str, DevCounters> = parse_diskstats(&text).into_iter().collect();
        assert!(!got.contains_key("sda3"), "a four-counter line is skipped");
        assert!(!got.contains_key("sdd"), "a torn line is skipped");
        assert_eq!(
            got["sda"],
            DevCounters {
                reads: 250500,
                sectors_read: 41041920,
                writes: 601500,
                sectors_written: 98324480,
                io_ticks: 1204500,
            }
        );
        assert_eq!(got["sdc"].io_ticks, 9100, "14 fields (before discards)");
    }

    #[test]
    fn two_captures_give_rates_for_whole_disks() {
        let root = tempfile::tempdir().unwrap();
        let c = check_in(&root, "diskstats.1", "");
        let prev = c.read().unwrap();
        assert_eq!(
            prev.keys().collect::<Vec<_>>(),
            ["cciss/c0d0", "md127", "nvme0n1", "sda", "sdc"],
            "no partitions, loop, zram, device-mapper, or never-used sr0"
        );
        put(&root, "diskstats.2");
        let cur = c.read().unwrap();
        let (devices, restarted) = rates(&prev, &cur, Duration::from_secs(10));
        assert_eq!(restarted, 2, "md127 started over, sdb was plugged in");
        let by_name: BTreeMap<&str, &DiskIo> =
            devices.iter().map(|d| (d.device.as_str(), d)).collect();
        assert_eq!(
            by_name.keys().copied().collect::<Vec<_>>(),
            ["cciss/c0d0", "nvme0n1", "sda", "sdc"]
        );
        assert_eq!(
            *by_name["sda"],
            DiskIo {
                device: "sda".into(),
                read_bytes_per_s: 4_194_304.0,
                write_bytes_per_s: 1_048_576.0,
                read_iops: 50.0,
                write_iops: 150.0,
                busy_pct: 45.0,
            }
        );
        // io_ticks wrapped past 2^32 ms: 2000 ms busy of 10 s.
        assert_eq!(by_name["nvme0n1"].busy_pct, 20.0);
        assert_eq!(by_name["nvme0n1"].read_bytes_per_s, 104_857.6);
        assert_eq!(
            (by_name["sdc"].read_iops, by_name["sdc"].busy_pct),
            (1.0, 1.0)
        );
        assert_eq!(by_name["cciss/c0d0"].busy_pct, 0.0);
        let out = c.evaluate(devices, restarted);
        assert_eq!(out.status, CheckStatus::Ok);
        assert_eq!(
            out.summary,
            "4 devices, busiest sda at 45% (read 4.0 MiB/s, write 1.0 MiB/s, 200 IOPS); 2 more measured from the next run (new, or counters reset)"
        );
        assert_eq!(out.metrics["max_busy_pct"], 45.0);
    }

    #[test]
    fn io_ticks_wrap_or_restart() {
        assert_eq!(io_ticks_delta(100, 250, 1000.0), Some(150));
        assert_eq!(
            io_ticks_delta(u64::from(u32::MAX) - 99, 400, 1000.0),
            Some(500)
        );
        // A small number after a large one that no wrap explains: started over.
        assert_eq!(io_ticks_delta(50_000, 10, 10_000.0), None);
        assert_eq!(io_ticks_delta(u64::from(u32::MAX) + 10, 5, 1000.0), None);
        // More busy time than wall time (clock granularity) is capped at 100 %.
        let p: BTreeMap<String, DevCounters> = [(
            "sda".to_string(),
            DevCounters {
                io_ticks: 0,
                ..DevCounters::default()
            },
        )]
        .into();
        let c: BTreeMap<String, DevCounters> = [(
            "sda".to_string(),
            DevCounters {
                io_ticks: 1010,
                ..DevCounters::default()
            },
        )]
        .into();
        assert_eq!(rates(&p, &c, Duration::from_secs(1)).0[0].busy_pct, 100.0);
    }

    #[test]
    fn include_and_exclude() {
        let root = tempfile::tempdir().unwrap();
        let c = check_in(&root, "diskstats.1", "include = [\"sda*\", \"dm-*\"]");
        assert_eq!(
            c.read().unwrap().keys().collect::<Vec<_>>(),
            ["dm-0", "sda", "sda1", "sda2"]
        );
        let c = check_in(&root, "diskstats.1", "exclude = [\"md*\", \"cciss/*\"]");
        assert_eq!(
            c.read().unwrap().keys().collect::<Vec<_>>(),
            ["nvme0n1", "sda", "sdc"]
        );
        // No /sys/block: the default rule cannot tell disks from partitions.
        let bare = tempfile::tempdir().unwrap();
        put(&bare, "diskstats.1");
        let c = DiskIoCheck::new(DiskIoConfig::default(), bare.path()).unwrap();
        assert!(
            c.read()
                .unwrap_err()
                .contains("tells disks from partitions")
        );
        // ... but include needs none.
        let t: toml::Table = toml::from_str("include = [\"sda\"]").unwrap();
        let c = DiskIoCheck::new(parse_table(&t).unwrap(), bare.path()).unwrap();
        assert_eq!(c.read().unwrap().keys().collect::<Vec<_>>(), ["sda"]);
    }

    #[test]
    fn verdicts() {
        let root = tempfile::tempdir().unwrap();
        let c = check_in(&root, "diskstats.1", "");
        let d = |name: &str, busy: f64| DiskIo {
            device: name.into(),
            read_bytes_per_s: 0.0,
            write_bytes_per_s: 512.0,
            read_iops: 0.0,
            write_iops: 1.0,
            busy_pct: busy,
        };
        let out = c.evaluate(vec![d("sda", 91.0), d("sdb", 99.5), d("sdc", 95.0)], 0);
        assert_eq!(
            (out.status, out.summary.as_str()),
            (
                CheckStatus::Crit,
                "sdb 99.5% busy (≥ 98%); sdc 95% busy (≥ 90%); sda 91% busy (≥ 90%)"
            )
        );
        let out = c.evaluate(Vec::new(), 0);
        assert_eq!(
            (out.status, out.summary.as_str()),
            (CheckStatus::Ok, "no block devices to watch")
        );
    }

    #[test]
    fn bad_config_names_the_key() {
        for (toml, key) in [
            (
                "busy_warn_pct = 99.0\nbusy_crit_pct = 90.0",
                "busy_warn_pct",
            ),
            ("busy_crit_pct = 100.5", "busy_crit_pct"),
            ("include = [\"sd[\"]", "include"),
            ("devices = []", "devices"),
        ] {
            let t: toml::Table = toml::from_str(toml).unwrap();
            let err = parse_table::<DiskIoConfig>(&t)
                .and_then(|c| DiskIoCheck::new(c, Path::new("/nonexistent")))
                .unwrap_err();
            assert_eq!(err.key, key, "{toml}");
        }
    }

    /// A whole run against the fixture root, then against this machine.
    #[tokio::test]
    async fn runs() {
        let root = tempfile::tempdir().unwrap();
        let c = check_in(&root, "diskstats.1", "");
        put(&root, "diskstats.2");
        c.prev.backdate(Duration::from_secs(10));
        let ctx = CheckContext::new(uuid::Uuid::nil(), "/");
        let out = c.run(&ctx).await;
        let got = &out.contribution.metrics.diskio;
        assert_eq!(got.len(), 4, "{}", out.summary);
        let sda = got.iter().find(|d| d.device == "sda").unwrap();
        assert!((44.0..=45.0).contains(&sda.busy_pct), "{sda:?}");
        assert_eq!(out.status, CheckStatus::Ok, "{}", out.summary);
        let mut c = DiskIoCheck::new(DiskIoConfig::default(), Path::new("/")).unwrap();
        c.prev.min_window = Duration::from_millis(20);
        let out = c.run(&ctx).await;
        assert_ne!(out.status, CheckStatus::Unknown, "{}", out.summary);
    }
}
