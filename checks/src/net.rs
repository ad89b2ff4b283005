//! `net`: traffic, errors and drops per network interface since the previous run, from
//! `/proc/net/dev` (one read for every interface).
//!
//! By default only *physical* interfaces are watched: those with a `device` link in
//! `/sys/class/net/<name>/` (a NIC, a virtio or Xen NIC, a USB adapter). Loopback, bridges,
//! veth pairs, docker/podman/libvirt networks, tun/tap, WireGuard, bonds, VLANs and dummies have
//! none, whatever their name, so no list of name patterns has to keep up. `include` globs
//! replace that rule (a container's `eth0` is a veth: `include = ["eth0"]`), `exclude` globs
//! always drop a name. Both match the name as shown (see [`crate::counters::device_name`]).
//!
//! An interface seen for the first time (hotplugged, or created since the last run), or whose
//! counters went down (the driver reloaded, the interface re-created, a 32-bit counter wrapped:
//! they cannot be told apart), has no rate this run; its new counters are the baseline for the
//! next. Never a negative or huge rate.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use vaultmesh_agent_core::registry::{CheckConfigError, CheckRegistration, parse_table};
use vaultmesh_agent_core::{Check, CheckContext, CheckOutcome, Contribution};
use vaultmesh_proto::{CheckStatus, Metrics, NetRates};

use crate::counters::{DeviceFacts, NameFilter, Previous, bytes_per_s, device_name, per_second};
use crate::thresholds::Thresholds;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct NetConfig {
    /// Errors per second (receive + transmit) on one interface at which the node is warn / crit.
    errors_warn_per_s: f64,
    errors_crit_per_s: f64,
    /// Drops per second (receive + transmit) on one interface at which the node is warn / crit.
    drops_warn_per_s: f64,
    drops_crit_per_s: f64,
    /// If set, watch exactly the interfaces matching one of these globs (physical or not).
    include: Vec<String>,
    /// Never watch the interfaces matching one of these globs.
    exclude: Vec<String>,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            errors_warn_per_s: 1.0,
            errors_crit_per_s: 10.0,
            // Many drivers count frames for protocols nobody listens to as receive drops.
            drops_warn_per_s: 100.0,
            drops_crit_per_s: 1000.0,
            include: Vec::new(),
            exclude: Vec::new(),
        }
    }
}

/// One interface's counters in `/proc/net/dev`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IfCounters {
    pub rx_bytes: u64,
    pub rx_errors: u64,
    pub rx_drops: u64,
    pub tx_bytes: u64,
    pub tx_errors: u64,
    pub tx_drops: u64,
}

impl IfCounters {
    fn fields(&self) -> [u64; 6] {
        [
            self.rx_bytes,
            self.rx_errors,
            self.rx_drops,
            self.tx_bytes,
            self.tx_errors,
            self.tx_drops,
        ]
    }
}

/// Parses `/proc/net/dev`: `name: 8 receive counters 8 transmit counters` per line. Names come
/// back as the kernel wrote them; lines that are not such a line (the two headers, a torn
/// read) are skipped.
pub fn parse_net_dev(text: &str) -> Vec<(&str, IfCounters)> {
    text.lines()
        .filter_map(|line| {
            let (name, rest) = line.split_once(':')?;
            let name = name.trim();
            let v: Vec<u64> = rest
                .split_whitespace()
                .map(str::parse)
                .collect::<Result<_, _>>()
                .ok()?;
            if name.is_empty() || v.len() < 16 {
                return None;
            }
            Some((
                name,
                IfCounters {
                    rx_bytes: v[0],
                    rx_errors: v[2],
                    rx_drops: v[3],
                    tx_bytes: v[8],
                    tx_errors: v[10],
                    tx_drops: v[11],
                },
            ))
        })
        .collect()
}

/// The rates between two reads over `elapsed`, and how many interfaces of the second read have
/// none yet (new, or counters that went down).
pub fn rates(
    prev: &BTreeMap<String, IfCounters>,
    cur: &BTreeMap<String, IfCounters>,
    elapsed: Duration,
) -> (Vec<NetRates>, usize) {
    let mut out = Vec::with_capacity(cur.len());
    let mut restarted = 0;
    for (name, c) in cur {
        let Some(p) = prev.get(name) else {
            restarted += 1;
            continue;
        };
        if c.fields().iter().zip(p.fields()).any(|(c, p)| *c < p) {
            restarted += 1;
            continue;
        }
        let r = |a: u64, b: u64| per_second(b - a, elapsed);
        out.push(NetRates {
            interface: name.clone(),
            rx_bytes_per_s: r(p.rx_bytes, c.rx_bytes),
            tx_bytes_per_s: r(p.tx_bytes, c.tx_bytes),
            rx_errors_per_s: r(p.rx_errors, c.rx_errors),
            tx_errors_per_s: r(p.tx_errors, c.tx_errors),
            rx_drops_per_s: r(p.rx_drops, c.rx_drops),
            tx_drops_per_s: r(p.tx_drops, c.tx_drops),
        });
    }
    (out, restarted)
}

#[derive(Debug)]
struct Net {
    errors: Thresholds,
    drops: Thresholds,
    filter: NameFilter,
    /// `/` but in tests.
    root: PathBuf,
    /// `/proc/net/dev` under `root`.
    dev: crate::procfs::Kept,
    prev: Previous<BTreeMap<String, IfCounters>>,
    /// The interfaces (raw names) the kernel ties to a device, kept while the same
    /// interfaces are listed.
    physical: DeviceFacts<BTreeSet<String>>,
}

impl Net {
    fn new(c: NetConfig, root: &Path) -> Result<Self, CheckConfigError> {
        let errors = Thresholds::new(c.errors_warn_per_s, c.errors_crit_per_s);
        errors.validate("errors_warn_per_s", "errors_crit_per_s", 1e9)?;
        let drops = Thresholds::new(c.drops_warn_per_s, c.drops_crit_per_s);
        drops.validate("drops_warn_per_s", "drops_crit_per_s", 1e9)?;
        let mut net = Net {
            errors,
            drops,
            filter: NameFilter::new(&c.include, &c.exclude)?,
            root: root.to_path_buf(),
            dev: crate::procfs::Kept::new(root.join("proc/net/dev")),
            prev: Previous::new(None),
            physical: DeviceFacts::default(),
        };
        net.prev = Previous::new(net.read().ok());
        Ok(net)
    }

    /// Whether the kernel ties `name` to a device: `/sys/class/net/<name>/device` exists.
    fn physical(&self, name: &str) -> bool {
        if name == "." || name == ".." || name.contains('/') {
            return false;
        }
        let link = self.root.join("sys/class/net").join(name).join("device");
        std::fs::symlink_metadata(link).is_ok()
    }

    /// The watched interfaces' counters, by the name shown.
    fn read(&self) -> Result<BTreeMap<String, IfCounters>, String> {
        let text = self.dev.read_lossy()?;
        let parsed = parse_net_dev(&text);
        let names = parsed.iter().map(|(raw, _)| *raw);
        // Only the default rule asks which are physical.
        let physical = if self.filter.has_include() {
            Default::default()
        } else {
            self.physical.get(names.clone(), || {
                Ok(names
                    .clone()
                    .filter(|raw| self.physical(raw))
                    .map(str::to_string)
                    .collect())
            })?
        };
        Ok(parsed
            .into_iter()
            .filter_map(|(raw, c)| {
                let shown = device_name(raw);
                self.filter
                    .wants(&shown, || physical.contains(raw))
                    .then_some((shown, c))
            })
            .collect())
    }

    fn evaluate(&self, nets: Vec<NetRates>, restarted: usize) -> CheckOutcome {
        let mut status = CheckStatus::Ok;
        let mut problems = Vec::new();
        let (mut max_errors, mut max_drops, mut rx, mut tx) = (0.0f64, 0.0f64, 0.0, 0.0);
        for n in &nets {
            let errors = n.rx_errors_per_s + n.tx_errors_per_s;
            let drops = n.rx_drops_per_s + n.tx_drops_per_s;
            for (what, value, t) in [
                ("errors", errors, self.errors),
                ("drops", drops, self.drops),
            ] {
                let s = t.classify(value);
                if s != CheckStatus::Ok {
                    problems.push((
                        s,
                        format!("{} {value:.2} {what}/s (≥ {}/s)", n.interface, t.limit(s)),
                    ));
                }
                status = status.worst(s);
            }
            max_errors = max_errors.max(errors);
            max_drops = max_drops.max(drops);
            rx += n.rx_bytes_per_s;
            tx += n.tx_bytes_per_s;
        }
        vaultmesh_agent_core::sort::sort_by_key(&mut problems, |p| {
            std::cmp::Reverse(p.0.severity())
        });
        let mut summary = if !problems.is_empty() {
            problems
                .into_iter()
                .map(|p| p.1)
                .collect::<Vec<_>>()
                .join("; ")
        } else if nets.is_empty() {
            "no network interfaces to watch (loopback and virtual ones are skipped unless listed in include)"
                .to_string()
        } else {
            format!(
                "{} interface{}: receive {}, transmit {}, {max_errors:.2} errors/s, {max_drops:.2} drops/s at most",
                nets.len(),
                if nets.len() == 1 { "" } else { "s" },
                bytes_per_s(rx),
                bytes_per_s(tx),
            )
        };
        if restarted > 0 {
            summary.push_str(&format!(
                "; {restarted} more measured from the next run (new, or counters reset)"
            ));
        }
        CheckOutcome::new(status, summary)
            .with_metric("interfaces", nets.len() as f64)
            .with_metric("max_errors_per_s", max_errors)
            .with_metric("max_drops_per_s", max_drops)
            .with_metric("rx_bytes_per_s", crate::counters::round2(rx))
            .with_metric("tx_bytes_per_s", crate::counters::round2(tx))
            .contributing(Contribution::metrics(Metrics {
                net: nets,
                ..Metrics::default()
            }))
    }
}

#[async_trait]
impl Check for Net {
    async fn run(&self, _ctx: &CheckContext) -> CheckOutcome {
        // A procfs read and a sysfs lookup per interface: never blocked on storage.
        match self.prev.next(|| self.read(), rates).await {
            Ok((nets, restarted)) => self.evaluate(nets, restarted),
            Err(e) => CheckOutcome::unknown(e),
        }
    }
}

inventory::submit! {
    CheckRegistration {
        name: "net",
        description: "Traffic, errors and drops per physical network interface since the last run",
        enabled_by_default: true,
        default_interval: Duration::from_secs(30),
        default_timeout: Duration::from_secs(5),
        example: r#"errors_warn_per_s = 1.0   # receive + transmit, per interface
errors_crit_per_s = 10.0
drops_warn_per_s = 100.0
drops_crit_per_s = 1000.0
include = []              # globs; if set, exactly these (e.g. ["eth0"] in a container)
exclude = []              # globs, e.g. ["enx*"]
"#,
        build: |t| Ok(Box::new(Net::new(parse_table(t)?, Path::new("/"))?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/net")
    }

    fn fixture(name: &str) -> String {
        String::from_utf8_lossy(&std::fs::read(fixtures().join(name)).unwrap()).into_owned()
    }

    /// A check whose root has the fixture `sys` tree and `/proc/net/dev` = `capture`.
    fn net_in(root: &tempfile::TempDir, capture: &str, toml: &str) -> Net {
        let link = root.path().join("sys");
        if !link.exists() {
            std::os::unix::fs::symlink(fixtures().join("sys"), link).unwrap();
        }
        put(root, capture);
        let t: toml::Table = toml::from_str(toml).unwrap();
        let mut n = Net::new(parse_table(&t).unwrap(), root.path()).unwrap();
        n.prev.min_window = Duration::ZERO;
        n
    }

    fn put(root: &tempfile::TempDir, capture: &str) {
        let dir = root.path().join("proc/net");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(fixtures().join(capture), dir.join("dev")).unwrap();
    }

    #[test]
    fn parses_every_well_formed_line() {
        let text = fixture("proc-net-dev.2");
        let got = parse_net_dev(&text);
        let names: Vec<&str> = got.iter().map(|g| g.0).collect();
        assert_eq!(
            names,
            [
                "lo",
                "enp3s0",
                "enp4s0",
                "wlp2s0",
                "docker0",
                "veth1a2b3c4",
                "br-0123abcd4567",
                "wg0",
                "enx001122334455"
            ],
            "the headers, a truncated line and garbage are skipped"
        );
        assert_eq!(
            got[1].1,
            IfCounters {
                rx_bytes: 7247067890,
                rx_errors: 22,
                rx_drops: 432,
                tx_bytes: 1237067890,
                tx_errors: 0,
                tx_drops: 4,
            }
        );
        assert_eq!(got[8].1.rx_bytes, 12345678, "no space after the colon");
    }

    #[test]
    fn two_captures_give_rates_for_physical_interfaces_only() {
        let root = tempfile::tempdir().unwrap();
        let n = net_in(&root, "proc-net-dev.1", "");
        let prev = n.read().unwrap();
        assert_eq!(
            prev.keys().collect::<Vec<_>>(),
            ["enp3s0", "enp4s0", "wlp2s0"],
            "loopback, bridges, veth, docker and WireGuard have no device link"
        );
        put(&root, "proc-net-dev.2");
        let cur = n.read().unwrap();
        let (nets, restarted) = rates(&prev, &cur, Duration::from_secs(10));
        // enp4s0 wrapped, wlp2s0 was reset, enx… was plugged in: no rate for them yet.
        assert_eq!(restarted, 3);
        assert_eq!(
            nets,
            [NetRates {
                interface: "enp3s0".into(),
                rx_bytes_per_s: 1_250_000.0,
                tx_bytes_per_s: 250_000.0,
                rx_errors_per_s: 0.5,
                tx_errors_per_s: 0.0,
                rx_drops_per_s: 3.0,
                tx_drops_per_s: 0.1,
            }]
        );
        let out = n.evaluate(nets, restarted);
        assert_eq!(out.status, CheckStatus::Ok, "{}", out.summary);
        assert_eq!(
            out.summary,
            "1 interface: receive 1.2 MiB/s, transmit 244.1 KiB/s, 0.50 errors/s, 3.10 drops/s at most; 3 more measured from the next run (new, or counters reset)"
        );
        assert_eq!(out.metrics["max_drops_per_s"], 3.1);
        // The next pair: the reset and hotplugged interfaces have rates now.
        let (nets, restarted) = rates(&cur, &cur, Duration::from_secs(10));
        assert_eq!((nets.len(), restarted), (4, 0));
    }

    #[test]
    fn include_and_exclude() {
        let root = tempfile::tempdir().unwrap();
        let n = net_in(&root, "proc-net-dev.1", "include = [\"veth*\", \"lo\"]");
        assert_eq!(
            n.read().unwrap().keys().collect::<Vec<_>>(),
            ["lo", "veth1a2b3c4"]
        );
        let n = net_in(&root, "proc-net-dev.1", "exclude = [\"wl*\", \"enp4s0\"]");
        assert_eq!(n.read().unwrap().keys().collect::<Vec<_>>(), ["enp3s0"]);
        // No sysfs at all (a chroot): nothing is physical; the summary says what to do.
        let bare = tempfile::tempdir().unwrap();
        put(&bare, "proc-net-dev.1");
        let n = Net::new(NetConfig::default(), bare.path()).unwrap();
        assert!(n.read().unwrap().is_empty());
        assert_eq!(
            n.evaluate(Vec::new(), 0).summary,
            "no network interfaces to watch (loopback and virtual ones are skipped unless listed in include)"
        );
    }

    #[tokio::test]
    async fn hostile_names_are_escaped_and_pass_the_wire_checks() {
        let root = tempfile::tempdir().unwrap();
        let n = net_in(&root, "proc-net-dev.hostile.1", "include = [\"*\"]");
        put(&root, "proc-net-dev.hostile.2");
        n.prev.backdate(Duration::from_secs(10));
        let ctx = CheckContext::new(uuid::Uuid::nil(), "/");
        let out = n.run(&ctx).await;
        let names: Vec<&str> = out
            .contribution
            .metrics
            .net
            .iter()
            .map(|r| r.interface.as_str())
            .collect();
        assert_eq!(
            names,
            [
                "..",
                "a\\u{200b}b",
                "bad\u{fffd}\u{fffd}",
                "eth\\u{202e}0gpj",
                "n".repeat(64).as_str(),
                "ok0",
                "x\\u{1b}[2Jy",
            ]
        );
        let mut hb: vaultmesh_proto::NodeHeartbeat = serde_json::from_value(serde_json::json!({
            "node_id": uuid::Uuid::nil(), "hostname": "h", "os_profile": "Generic",
            "cloudflare_ok": true, "services_ok": true, "vaultmesh_root": "/",
            "timestamp": "2026-12-07T05:00:00Z"}))
        .unwrap();
        out.contribution.apply(&mut hb);
        hb.validate().unwrap();
        // Without include, none of them is physical (no sysfs entry; `..` never is).
        let n = net_in(&root, "proc-net-dev.hostile.1", "");
        assert!(n.read().unwrap().is_empty());
    }

    #[test]
    fn verdicts() {
        let root = tempfile::tempdir().unwrap();
        let n = net_in(&root, "proc-net-dev.1", "");
        let r = |name: &str, rx_err: f64, tx_drop: f64| NetRates {
            interface: name.into(),
            rx_bytes_per_s: 100.0,
            tx_bytes_per_s: 3000.0,
            rx_errors_per_s: rx_err,
            tx_errors_per_s: 0.0,
            rx_drops_per_s: 0.0,
            tx_drops_per_s: tx_drop,
        };
        let out = n.evaluate(vec![r("eth0", 0.0, 0.0), r("eth1", 0.0, 0.0)], 0);
        assert_eq!(
            (out.status, out.summary.as_str()),
            (
                CheckStatus::Ok,
                "2 interfaces: receive 200 B/s, transmit 5.9 KiB/s, 0.00 errors/s, 0.00 drops/s at most"
            )
        );
        let out = n.evaluate(vec![r("eth0", 2.0, 0.0), r("eth1", 12.5, 1500.0)], 0);
        assert_eq!(
            (out.status, out.summary.as_str()),
            (
                CheckStatus::Crit,
                "eth1 12.50 errors/s (≥ 10/s); eth1 1500.00 drops/s (≥ 1000/s); eth0 2.00 errors/s (≥ 1/s)"
            )
        );
    }

    #[test]
    fn bad_config_names_the_key() {
        for (toml, key) in [
            (
                "errors_warn_per_s = 5.0\nerrors_crit_per_s = 1.0",
                "errors_warn_per_s",
            ),
            ("drops_crit_per_s = -1.0", "drops_crit_per_s"),
            ("include = [\"[eth\"]", "include"),
            ("exclude = \"docker*\"", "exclude"),
            ("interfaces = []", "interfaces"),
        ] {
            let t: toml::Table = toml::from_str(toml).unwrap();
            let err = parse_table::<NetConfig>(&t)
                .and_then(|c| Net::new(c, Path::new("/nonexistent")))
                .unwrap_err();
            assert_eq!(err.key, key, "{toml}");
        }
    }

    #[tokio::test]
    async fn measures_this_machine() {
        let mut n = Net::new(
            NetConfig {
                include: vec!["*".into()],
                ..NetConfig::default()
            },
            Path::new("/"),
        )
        .unwrap();
        n.prev.min_window = Duration::from_millis(20);
        let out = n.run(&CheckContext::new(uuid::Uuid::nil(), "/")).await;
        assert_ne!(out.status, CheckStatus::Unknown, "{}", out.summary);
        assert!(
            out.contribution
                .metrics
                .net
                .iter()
                .any(|r| r.interface == "lo"),
            "{out:?}"
        );
    }
}
