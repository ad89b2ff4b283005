//! `temperature`: every hwmon temperature sensor, judged against its own limits when it has
//! them.
//!
//! Reads `/sys/class/hwmon/hwmon*/`: the chip's `name`, and for each `tempN_input`
//! (millidegrees Celsius) its `tempN_label`, `tempN_max` and `tempN_crit`; an input whose
//! `tempN_fault` is 1 or `tempN_enable` is 0 is skipped. Older drivers keep the attributes in
//! `hwmonN/device/`, which is read when `hwmonN/name` is missing.
//!
//! The limits of one input (the rule docs/CHECKS.md states):
//! - crit at the sensor's `tempN_crit` when it has a plausible one (20..=200 °C), else at
//!   `crit_celsius`;
//! - warn at the sensor's `tempN_max` when it has a plausible one below its crit, else at the
//!   sensor's crit − `crit_margin` when it has a crit, else at `warn_celsius`.
//!
//! `use_sensor_limits = false` judges every input by `warn_celsius` / `crit_celsius` alone.
//!
//! Chip names and labels are text a driver (or a device's firmware) chose: each is read up to
//! 4 KiB, trimmed, control/bidirectional/invisible characters replaced by `?`, cut to 64 bytes
//! ([`crate::untrusted::clean_name`]), so a heartbeat always passes `validate()`. Readings
//! outside -60..=250 °C (disconnected probes read -128 or 255) are not temperatures and are
//! skipped. A host without sensors (most virtual machines, containers) is `ok`, saying so.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use vaultmesh_agent_core::registry::{CheckConfigError, CheckRegistration, parse_table};
use vaultmesh_agent_core::{Check, CheckContext, CheckOutcome, Contribution};
use vaultmesh_proto::heartbeat::limits;
use vaultmesh_proto::{CheckStatus, Metrics, Temperature};

use crate::thresholds::{Thresholds, round1};
use crate::untrusted::{clean_name, read_prefix};

/// Readings outside this range are a disconnected or broken probe, not a temperature.
const PLAUSIBLE_READING: std::ops::RangeInclusive<f64> = -60.0..=250.0;
/// A sensor's own limit outside this range is a placeholder (0, -273), not a limit.
const PLAUSIBLE_LIMIT: std::ops::RangeInclusive<f64> = 20.0..=200.0;
/// Bytes read of one attribute file (sysfs attributes are at most a page).
const ATTR_MAX: usize = 4096;
/// hwmon devices and directory entries per device looked at, so a strange tree cannot make
/// one run unbounded.
const DEVICES_MAX: usize = 256;
const ENTRIES_MAX: usize = 4096;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct TemperatureConfig {
    /// °C at which a sensor without its own limits is warn / crit.
    warn_celsius: f64,
    crit_celsius: f64,
    /// Below a sensor's own crit, by this many °C, it is warn (when it has no `tempN_max`).
    crit_margin: f64,
    /// Judge a sensor by its own `tempN_crit` / `tempN_max` when it has them.
    use_sensor_limits: bool,
    /// Sensors to skip: a chip name (`"acpitz"`) or `"chip/label"` (`"nvme/Sensor 2"`).
    ignore: Vec<String>,
    /// Filesystem root (tests point it at a fixture tree); not a config key.
    #[serde(skip)]
    root: PathBuf,
}

impl Default for TemperatureConfig {
    fn default() -> Self {
        TemperatureConfig {
            warn_celsius: 80.0,
            crit_celsius: 95.0,
            crit_margin: 10.0,
            use_sensor_limits: true,
            ignore: Vec::new(),
            root: PathBuf::from("/"),
        }
    }
}

#[derive(Debug)]
struct Temperatures {
    defaults: Thresholds,
    crit_margin: f64,
    use_sensor_limits: bool,
    ignore: Vec<String>,
    root: PathBuf,
}

/// One input as read, before judging.
#[derive(Debug, Clone, PartialEq)]
struct Reading {
    sensor: String,
    label: String,
    celsius: f64,
    max_celsius: Option<f64>,
    crit_celsius: Option<f64>,
}

impl Temperatures {
    fn new(c: TemperatureConfig) -> Result<Self, CheckConfigError> {
        let defaults = Thresholds::new(c.warn_celsius, c.crit_celsius);
        defaults.validate("warn_celsius", "crit_celsius", 200.0)?;
        if !(0.0..=100.0).contains(&c.crit_margin) {
            return Err(CheckConfigError::new(
                "crit_margin",
                format!("{} is outside 0..=100", c.crit_margin),
            ));
        }
        Ok(Temperatures {
            defaults,
            crit_margin: c.crit_margin,
            use_sensor_limits: c.use_sensor_limits,
            ignore: c.ignore,
            root: c.root,
        })
    }

    /// The warn/crit limits of one input (the rule in the module docs).
    fn limits(&self, r: &Reading) -> Thresholds {
        if !self.use_sensor_limits {
            return self.defaults;
        }
        let plausible = |v: Option<f64>| v.filter(|v| PLAUSIBLE_LIMIT.contains(v));
        match plausible(r.crit_celsius) {
            Some(crit) => {
                let warn = plausible(r.max_celsius)
                    .filter(|max| *max < crit)
                    .unwrap_or(crit - self.crit_margin);
                Thresholds::new(warn, crit)
            }
            None => self.defaults,
        }
    }

    fn ignored(&self, r: &Reading) -> bool {
        self.ignore
            .iter()
            .any(|i| *i == r.sensor || *i == format!("{}/{}", r.sensor, r.label))
    }

    fn evaluate(&self, readings: Vec<Reading>) -> CheckOutcome {
        let readings: Vec<Reading> = readings.into_iter().filter(|r| !self.ignored(r)).collect();
        if readings.is_empty() {
            return CheckOutcome::new(
                CheckStatus::Ok,
                "no temperature sensors (none in /sys/class/hwmon, as on most virtual machines)",
            )
            .with_metric("sensors", 0.0);
        }
        let mut worst = CheckStatus::Ok;
        let mut problems = Vec::new();
        for r in &readings {
            let t = self.limits(r);
            let s = t.classify(r.celsius);
            worst = worst.worst(s);
            if s != CheckStatus::Ok {
                let (word, limit) = if s == CheckStatus::Crit {
                    ("crit", t.crit)
                } else {
                    ("warn", t.warn)
                };
                problems.push((
                    s,
                    r.celsius,
                    format!(
                        "{}/{} at {} °C (≥ {word} {} °C)",
                        r.sensor,
                        r.label,
                        round1(r.celsius),
                        round1(limit)
                    ),
                ));
            }
        }
        let hottest = readings
            .iter()
            .max_by(|a, b| a.celsius.total_cmp(&b.celsius))
            .expect("readings is not empty");
        let max_celsius = round1(hottest.celsius);
        let summary = if problems.is_empty() {
            format!(
                "{} sensor{}, hottest {}/{} at {} °C",
                readings.len(),
                if readings.len() == 1 { "" } else { "s" },
                hottest.sensor,
                hottest.label,
                round1(hottest.celsius)
            )
        } else {
            vaultmesh_agent_core::sort::sort_by(&mut problems, |a, b| {
                b.0.severity()
                    .cmp(&a.0.severity())
                    .then(b.1.total_cmp(&a.1))
            });
            let shown: Vec<&str> = problems.iter().take(5).map(|p| p.2.as_str()).collect();
            let more = problems.len().saturating_sub(shown.len());
            let mut s = shown.join("; ");
            if more > 0 {
                s.push_str(&format!("; and {more} more"));
            }
            s
        };
        let sensors = readings.len();
        let temperatures = readings
            .into_iter()
            .take(limits::TEMPERATURES_MAX)
            .map(|r| Temperature {
                sensor: r.sensor,
                label: r.label,
                celsius: round1(r.celsius),
                crit_celsius: r
                    .crit_celsius
                    .filter(|c| PLAUSIBLE_LIMIT.contains(c))
                    .map(round1),
            })
            .collect();
        CheckOutcome::new(worst, summary)
            .with_metric("sensors", sensors as f64)
            .with_metric("max_celsius", max_celsius)
            .contributing(Contribution::metrics(Metrics {
                temperatures,
                ..Metrics::default()
            }))
    }
}

/// A millidegree attribute (`45000` → 45.0), or `None` when missing, unreadable or not a number.
fn millidegrees(path: &Path) -> Option<f64> {
    let (text, cut) = read_prefix(path, ATTR_MAX).ok()?;
    if cut {
        return None;
    }
    let v: i64 = text.trim().parse().ok()?;
    Some(v as f64 / 1000.0)
}

fn attr_text(path: &Path) -> Option<String> {
    read_prefix(path, ATTR_MAX).ok().map(|(t, _)| t)
}

/// Every temperature input under `{root}/sys/class/hwmon`, in hwmon then input order, with the
/// (sensor, label) pairs made unique (a second `nvme`/`Composite` becomes `Composite (2)`).
fn read_sensors(root: &Path) -> Vec<Reading> {
    let base = root.join("sys/class/hwmon");
    let Ok(entries) = std::fs::read_dir(&base) else {
        return Vec::new();
    };
    let mut devices: Vec<(u32, PathBuf)> = entries
        .take(ENTRIES_MAX)
        .filter_map(Result::ok)
        .filter_map(|e| {
            let n: u32 = e
                .file_name()
                .to_str()?
                .strip_prefix("hwmon")?
                .parse()
                .ok()?;
            Some((n, e.path()))
        })
        .collect();
    vaultmesh_agent_core::sort::sort(&mut devices);
    devices.truncate(DEVICES_MAX);
    let mut out: Vec<Reading> = Vec::new();
    for (n, dir) in devices {
        let dir = if dir.join("name").exists() || !dir.join("device/name").exists() {
            dir
        } else {
            dir.join("device")
        };
        let sensor = attr_text(&dir.join("name"))
            .and_then(|t| clean_name(&t, limits::SENSOR_TEXT_MAX))
            .unwrap_or_else(|| format!("hwmon{n}"));
        let Ok(files) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut inputs: Vec<u32> = files
            .take(ENTRIES_MAX)
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name();
                let idx = name
                    .to_str()?
                    .strip_prefix("temp")?
                    .strip_suffix("_input")?;
                idx.parse().ok()
            })
            .collect();
        vaultmesh_agent_core::sort::sort(&mut inputs);
        for i in inputs {
            let attr = |suffix: &str| dir.join(format!("temp{i}_{suffix}"));
            let flag = |suffix: &str| attr_text(&attr(suffix)).map(|t| t.trim().to_string());
            if flag("fault").as_deref() == Some("1") || flag("enable").as_deref() == Some("0") {
                continue;
            }
            let Some(celsius) = millidegrees(&attr("input")) else {
                continue;
            };
            if !PLAUSIBLE_READING.contains(&celsius) {
                continue;
            }
            let label = attr_text(&attr("label"))
                .and_then(|t| clean_name(&t, limits::SENSOR_TEXT_MAX))
                .unwrap_or_else(|| format!("temp{i}"));
            out.push(Reading {
                sensor: sensor.clone(),
                label,
                celsius,
                max_celsius: millidegrees(&attr("max")),
                crit_celsius: millidegrees(&attr("crit")),
            });
        }
    }
    make_unique(&mut out);
    out
}

fn make_unique(readings: &mut [Reading]) {
    let mut seen = std::collections::BTreeMap::<(String, String), u32>::new();
    for r in readings.iter_mut() {
        let n = seen.entry((r.sensor.clone(), r.label.clone())).or_insert(0);
        *n += 1;
        if *n > 1 {
            let suffix = format!(" ({n})");
            let mut label = r.label.clone();
            while label.len() + suffix.len() > limits::SENSOR_TEXT_MAX {
                label.pop();
            }
            r.label = label + &suffix;
        }
    }
}

#[async_trait]
impl Check for Temperatures {
    async fn run(&self, _ctx: &CheckContext) -> CheckOutcome {
        // Some hwmon drivers answer a read over I²C, ACPI or SMART (drivetemp): slow, so a
        // blocking thread, under the check's timeout.
        let root = self.root.clone();
        match tokio::task::spawn_blocking(move || read_sensors(&root)).await {
            Ok(readings) => self.evaluate(readings),
            Err(e) => CheckOutcome::unknown(format!("reading hwmon failed: {e}")),
        }
    }
}

inventory::submit! {
    CheckRegistration {
        name: "temperature",
        description: "hwmon temperature sensors, against their own crit/max limits when present",
        enabled_by_default: true,
        default_interval: Duration::from_secs(60),
        default_timeout: Duration::from_secs(10),
        example: r#"warn_celsius = 80.0      # sensors without their own limits
crit_celsius = 95.0
crit_margin = 10.0       # warn this far below a sensor's own crit (when it has no max)
use_sensor_limits = true
ignore = []              # chip names or "chip/label", e.g. ["acpitz", "nvme/Sensor 2"]
"#,
        build: |t| Ok(Box::new(Temperatures::new(parse_table(t)?)?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/temperature")
            .join(name)
    }

    fn check_at(root: PathBuf) -> Temperatures {
        Temperatures::new(TemperatureConfig {
            root,
            ..TemperatureConfig::default()
        })
        .unwrap()
    }

    fn reading(sensor: &str, label: &str, c: f64, max: Option<f64>, crit: Option<f64>) -> Reading {
        Reading {
            sensor: sensor.into(),
            label: label.into(),
            celsius: c,
            max_celsius: max,
            crit_celsius: crit,
        }
    }

    #[test]
    fn the_limits_rule() {
        let t = check_at("/".into());
        let lim = |max, crit| {
            let l = t.limits(&reading("c", "l", 0.0, max, crit));
            (l.warn, l.crit)
        };
        // Sensor crit and max: warn at max, crit at crit.
        assert_eq!(lim(Some(84.0), Some(100.0)), (84.0, 100.0));
        // Sensor crit only (or a max not below it): crit − margin.
        assert_eq!(lim(None, Some(100.0)), (90.0, 100.0));
        assert_eq!(lim(Some(100.0), Some(100.0)), (90.0, 100.0));
        // No plausible limit of its own: the configured ones.
        assert_eq!(lim(None, None), (80.0, 95.0));
        assert_eq!(
            lim(Some(84.0), Some(0.0)),
            (80.0, 95.0),
            "a crit of 0 is unset"
        );
        assert_eq!(lim(None, Some(-273.15)), (80.0, 95.0));
        // A max without a crit is not used.
        assert_eq!(lim(Some(60.0), None), (80.0, 95.0));
        let off = Temperatures::new(TemperatureConfig {
            use_sensor_limits: false,
            ..TemperatureConfig::default()
        })
        .unwrap();
        let l = off.limits(&reading("c", "l", 0.0, Some(84.0), Some(100.0)));
        assert_eq!((l.warn, l.crit), (80.0, 95.0));
    }

    #[test]
    fn a_healthy_laptop_from_its_fixture_tree() {
        let t = check_at(fixture("laptop"));
        let r = read_sensors(&t.root);
        let names: Vec<String> = r
            .iter()
            .map(|r| format!("{}/{}", r.sensor, r.label))
            .collect();
        assert_eq!(
            names,
            [
                "acpitz/temp1",
                "nvme/Composite",
                "nvme/Sensor 1",
                "coretemp/Package id 0",
                "coretemp/Core 0",
                "coretemp/Core 1",
                "nvme/Composite (2)",
                "hwmon4/temp1",
            ]
        );
        let out = t.evaluate(r);
        assert_eq!(out.status, CheckStatus::Ok, "{}", out.summary);
        assert_eq!(
            out.summary,
            "8 sensors, hottest coretemp/Package id 0 at 54 °C"
        );
        assert_eq!(out.metrics["sensors"], 8.0);
        assert_eq!(out.metrics["max_celsius"], 54.0);
        let temps = &out.contribution.metrics.temperatures;
        assert_eq!(temps.len(), 8);
        assert_eq!(
            temps[1],
            Temperature {
                sensor: "nvme".into(),
                label: "Composite".into(),
                celsius: 38.9,
                crit_celsius: Some(84.9),
            }
        );
        assert_eq!(temps[0].crit_celsius, Some(119.0));
        assert_eq!(temps[7].crit_celsius, None);
    }

    #[test]
    fn a_hot_host_is_warn_or_crit_by_each_sensors_limits() {
        let t = check_at(fixture("hot"));
        let out = t.evaluate(read_sensors(&t.root));
        assert_eq!(out.status, CheckStatus::Crit, "{}", out.summary);
        assert_eq!(
            out.summary,
            "acpitz/temp1 at 97 °C (≥ crit 95 °C); coretemp/Package id 0 at 91 °C (≥ warn 84 °C); nvme/Composite at 77 °C (≥ warn 75 °C)"
        );
        // Ignoring the chips that are hot leaves the host ok.
        let calm = Temperatures::new(TemperatureConfig {
            root: fixture("hot"),
            ignore: vec![
                "acpitz".into(),
                "coretemp/Package id 0".into(),
                "nvme".into(),
            ],
            ..TemperatureConfig::default()
        })
        .unwrap();
        let out = calm.evaluate(read_sensors(&calm.root));
        assert_eq!(out.status, CheckStatus::Ok, "{}", out.summary);
        assert_eq!(out.summary, "1 sensor, hottest coretemp/Core 0 at 60 °C");
    }

    #[test]
    fn a_host_without_sensors_is_ok_and_says_so() {
        let empty = tempfile::tempdir().unwrap();
        let t = check_at(empty.path().into());
        let out = t.evaluate(read_sensors(&t.root));
        assert_eq!(out.status, CheckStatus::Ok);
        assert!(
            out.summary.starts_with("no temperature sensors"),
            "{}",
            out.summary
        );
        assert!(
            out.contribution.is_empty(),
            "no empty list in the heartbeat"
        );
        // A hwmon directory with only non-temperature devices (a fan) is the same.
        std::fs::create_dir_all(empty.path().join("sys/class/hwmon/hwmon0")).unwrap();
        std::fs::write(
            empty.path().join("sys/class/hwmon/hwmon0/fan1_input"),
            "1200\n",
        )
        .unwrap();
        assert!(read_sensors(&t.root).is_empty());
    }

    /// Control and bidi characters in names, over-long labels, faulty and disabled inputs,
    /// garbage and implausible readings: what reaches the heartbeat passes validate().
    #[test]
    fn hostile_names_and_readings_are_cleaned_bounded_or_skipped() {
        let t = check_at(fixture("hostile"));
        let r = read_sensors(&t.root);
        let names: Vec<String> = r
            .iter()
            .map(|r| format!("{}/{}", r.sensor, r.label))
            .collect();
        assert_eq!(
            names,
            [
                format!("evil?[2J?board/{}", "L".repeat(64)),
                "evil?[2J?board/temp7".to_string(),
                "hwmon1/temp1".to_string(),
            ]
        );
        let out = t.evaluate(r);
        let mut hb: vaultmesh_proto::NodeHeartbeat = serde_json::from_value(serde_json::json!({
            "node_id": uuid::Uuid::nil(), "hostname": "h", "os_profile": "Generic",
            "cloudflare_ok": true, "services_ok": true, "vaultmesh_root": "/",
            "timestamp": "2026-12-07T00:00:00Z",
        }))
        .unwrap();
        out.contribution.apply(&mut hb);
        hb.validate().unwrap();
    }

    #[test]
    fn huge_attribute_files_are_read_only_up_to_their_bound() {
        let dir = tempfile::tempdir().unwrap();
        let hw = dir.path().join("sys/class/hwmon/hwmon0");
        std::fs::create_dir_all(&hw).unwrap();
        // 8 MiB of name and of input: the name is cut, the reading refused, quickly.
        std::fs::write(hw.join("name"), "n".repeat(8 << 20)).unwrap();
        std::fs::write(hw.join("temp1_input"), "4".repeat(8 << 20)).unwrap();
        std::fs::write(hw.join("temp2_input"), "41000\n").unwrap();
        std::fs::write(hw.join("temp2_label"), "l".repeat(8 << 20)).unwrap();
        let started = std::time::Instant::now();
        let r = read_sensors(dir.path());
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].sensor, "n".repeat(64));
        assert_eq!(r[0].label, "l".repeat(64));
        assert_eq!(r[0].celsius, 41.0);
    }

    #[test]
    fn more_sensors_than_a_heartbeat_holds_are_judged_but_capped() {
        let t = check_at("/".into());
        let many: Vec<Reading> = (0..300)
            .map(|i| reading("coretemp", &format!("Core {i}"), 40.0, None, None))
            .chain([reading("coretemp", "Core 999", 99.0, None, None)])
            .collect();
        let out = t.evaluate(many);
        assert_eq!(out.status, CheckStatus::Crit, "the 301st sensor is judged");
        assert_eq!(out.metrics["sensors"], 301.0);
        assert_eq!(
            out.contribution.metrics.temperatures.len(),
            limits::TEMPERATURES_MAX
        );
    }

    #[test]
    fn bad_config_names_the_key() {
        let cases = [
            ("warn_celsius = 99.0\ncrit_celsius = 90.0", "warn_celsius"),
            ("crit_celsius = 500.0", "crit_celsius"),
            ("crit_margin = -1.0", "crit_margin"),
            ("root = \"/tmp\"", "root"),
            ("ignroe = []", "ignroe"),
        ];
        for (toml, key) in cases {
            let t: toml::Table = toml::from_str(toml).unwrap();
            let err = parse_table::<TemperatureConfig>(&t)
                .and_then(Temperatures::new)
                .unwrap_err();
            assert_eq!(err.key, key, "{toml}: {err:?}");
        }
        // The registration's example parses.
        let reg = vaultmesh_agent_core::registry::all()
            .into_iter()
            .find(|r| r.name == "temperature")
            .unwrap();
        (reg.build)(&toml::from_str(reg.example).unwrap()).unwrap();
    }

    #[tokio::test]
    async fn runs_on_this_machine() {
        let t = Temperatures::new(TemperatureConfig::default()).unwrap();
        let out = t.run(&CheckContext::new(uuid::Uuid::nil(), "/")).await;
        assert_ne!(out.status, CheckStatus::Unknown, "{}", out.summary);
    }
}
