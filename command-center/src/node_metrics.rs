//! Per-node series on `GET /metrics`: every measurement of each node's latest heartbeat, its
//! attention and how long ago it was heard from, as `vaultmesh_node_*` gauges (names and
//! meanings: `docs/METRICS.md`, "Per-node series").
//!
//! Written straight into the exposition text rather than through the `prometheus` crate's
//! registry: every series carries the node's own labels (`label_site`, ...), whose names differ
//! from node to node, which a fixed-label `GaugeVec` cannot hold; and rendering 1,000 nodes this
//! way takes a few milliseconds where building the crate's protobuf structures would allocate
//! tens of thousands of them per scrape. The format rules that matter are few and tested here
//! and by `promtool check metrics` (`tests/metrics.rs`): label values escaped (`\\`, `\"`,
//! `\n`), one `# HELP` and `# TYPE` per family, a family's samples together, no non-finite
//! values written as Rust prints them.
//!
//! Cardinality is bounded: nodes by `--max-nodes` (decommissioned nodes are left out), and the
//! series of one node by the heartbeat's own limits (`vaultmesh_proto::heartbeat::limits`).

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use vaultmesh_proto::{AttentionLevel, CheckStatus, NodeSummary, Services};
use vaultmesh_store::LatestMeasures;

/// One node as the metrics see it: its summary and what its latest heartbeat measured.
pub type NodeState = (NodeSummary, LatestMeasures);

/// A family being written: its samples, then its name, help and type go first at the end.
struct Family {
    name: &'static str,
    help: &'static str,
    kind: &'static str,
    samples: String,
}

impl Family {
    fn new(name: &'static str, kind: &'static str, help: &'static str) -> Family {
        Family {
            name,
            help,
            kind,
            samples: String::with_capacity(16 * 1024),
        }
    }

    /// One sample: `base` is the node's labels, `extra` more `name="value"` pairs (escaped here).
    fn sample(&mut self, base: &str, extra: &[(&str, &str)], value: f64) {
        if !value.is_finite() {
            return;
        }
        self.samples.push_str(self.name);
        self.samples.push('{');
        self.samples.push_str(base);
        for (k, v) in extra {
            self.samples.push(',');
            self.samples.push_str(k);
            self.samples.push_str("=\"");
            escape_into(&mut self.samples, v);
            self.samples.push('"');
        }
        self.samples.push_str("} ");
        // Most values are whole numbers (bytes, counts): itoa; the rest ryu's shortest form,
        // which Prometheus parses ("0.25", "1.5e-5").
        if value.fract() == 0.0 && value.abs() < 1e15 {
            #[allow(clippy::cast_possible_truncation)]
            self.samples
                .push_str(itoa::Buffer::new().format(value as i64));
        } else {
            self.samples
                .push_str(ryu::Buffer::new().format_finite(value));
        }
        self.samples.push('\n');
    }

    fn write(&self, out: &mut Vec<u8>) {
        if self.samples.is_empty() {
            return;
        }
        out.reserve(self.samples.len() + 256);
        let head = format!(
            "# HELP {} {}\n# TYPE {} {}\n",
            self.name, self.help, self.name, self.kind
        );
        out.extend_from_slice(head.as_bytes());
        out.extend_from_slice(self.samples.as_bytes());
    }
}

/// Escapes a label value: backslash, double quote and newline, as the text format requires.
fn escape_into(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// The Prometheus label name of a node label: `label_` and its key with `-` and `.` as `_`
/// (keys are `a-z 0-9 _ - .` starting with a letter, [`vaultmesh_proto::labels`]).
pub fn label_name(key: &str) -> String {
    let mut s = String::with_capacity(6 + key.len());
    s.push_str("label_");
    s.extend(
        key.chars()
            .map(|c| if c == '-' || c == '.' { '_' } else { c }),
    );
    s
}

/// The labels every series of a node carries: `node_id`, `hostname`, `profile` and one
/// `label_<key>` per node label (two keys that read the same once sanitised — `a-b`, `a.b` —
/// keep the first, in key order).
fn node_labels(s: &NodeSummary) -> String {
    let mut out = String::with_capacity(128);
    let _ = write!(out, "node_id=\"{}\",hostname=\"", s.node_id);
    escape_into(&mut out, &s.hostname);
    out.push_str("\",profile=\"");
    escape_into(&mut out, &s.os_profile);
    out.push('"');
    let mut names: Vec<String> = Vec::with_capacity(s.labels.len());
    for (k, v) in &s.labels {
        let name = label_name(k);
        if names.contains(&name) {
            continue;
        }
        out.push(',');
        out.push_str(&name);
        out.push_str("=\"");
        escape_into(&mut out, v);
        out.push('"');
        names.push(name);
    }
    out
}

fn level_value(l: AttentionLevel) -> f64 {
    match l {
        AttentionLevel::Ok => 0.0,
        AttentionLevel::Attn => 1.0,
        AttentionLevel::Crit => 2.0,
    }
}

/// A check's status as a number: ok 0, warn 1, crit 2, unknown 3.
pub fn status_value(s: CheckStatus) -> f64 {
    match s {
        CheckStatus::Ok => 0.0,
        CheckStatus::Warn => 1.0,
        CheckStatus::Crit => 2.0,
        CheckStatus::Unknown => 3.0,
    }
}

fn flag(b: bool) -> f64 {
    if b { 1.0 } else { 0.0 }
}

#[allow(clippy::cast_precision_loss)]
fn f(v: u64) -> f64 {
    v as f64
}

/// Appends the per-node families for `nodes` to `out`, as of `now`.
pub fn render(nodes: &[NodeState], now: DateTime<Utc>, out: &mut Vec<u8>) {
    let mut info = Family::new(
        "vaultmesh_node_info",
        "gauge",
        "Always 1: a node the Command Center knows, with its display name and agent version.",
    );
    let mut level = Family::new(
        "vaultmesh_node_attention_level",
        "gauge",
        "The node's attention: 0 ok, 1 attn, 2 crit.",
    );
    let mut attention = Family::new(
        "vaultmesh_node_attention",
        "gauge",
        "1 for the node's attention level, 0 for the others.",
    );
    let mut age = Family::new(
        "vaultmesh_node_last_seen_age_seconds",
        "gauge",
        "Seconds since the node's latest heartbeat was received.",
    );
    let mut heartbeats = Family::new(
        "vaultmesh_node_heartbeats_total",
        "counter",
        "Heartbeats received from the node (all that are in the logs).",
    );
    let mut uptime = Family::new(
        "vaultmesh_node_uptime_seconds",
        "gauge",
        "The node's uptime, as its latest heartbeat said.",
    );
    let mut tunnel = Family::new(
        "vaultmesh_node_tunnel_up",
        "gauge",
        "1 while the node's Cloudflare Tunnel is connected (cloudflare_ok).",
    );
    let mut services = Family::new(
        "vaultmesh_node_services",
        "gauge",
        "1 for what the node's services are (up, down, unknown), 0 for the others.",
    );
    let mut load = Family::new(
        "vaultmesh_node_load",
        "gauge",
        "Load average over the window (1m, 5m, 15m).",
    );
    let mut cpus = Family::new("vaultmesh_node_cpus", "gauge", "CPUs the node runs.");
    let mut mem_total = Family::new(
        "vaultmesh_node_memory_total_bytes",
        "gauge",
        "Memory of the node.",
    );
    let mut mem_used = Family::new(
        "vaultmesh_node_memory_used_bytes",
        "gauge",
        "Memory in use on the node.",
    );
    let mut swap_total = Family::new(
        "vaultmesh_node_swap_total_bytes",
        "gauge",
        "Swap of the node.",
    );
    let mut swap_used = Family::new(
        "vaultmesh_node_swap_used_bytes",
        "gauge",
        "Swap in use on the node.",
    );
    let mut fs_size = Family::new(
        "vaultmesh_node_filesystem_size_bytes",
        "gauge",
        "Size of a mounted filesystem.",
    );
    let mut fs_used = Family::new(
        "vaultmesh_node_filesystem_used_bytes",
        "gauge",
        "Space used on a mounted filesystem.",
    );
    let mut inodes_total = Family::new(
        "vaultmesh_node_filesystem_inodes",
        "gauge",
        "Inodes of a mounted filesystem.",
    );
    let mut inodes_used = Family::new(
        "vaultmesh_node_filesystem_inodes_used",
        "gauge",
        "Inodes used on a mounted filesystem.",
    );
    let mut cpu = Family::new(
        "vaultmesh_node_cpu_busy_percent",
        "gauge",
        "CPU time over the cpu check's interval, % of all CPUs, by mode (busy = user + system + steal).",
    );
    let mut rx = Family::new(
        "vaultmesh_node_network_receive_bytes_per_second",
        "gauge",
        "Bytes received per second over the net check's interval.",
    );
    let mut tx = Family::new(
        "vaultmesh_node_network_transmit_bytes_per_second",
        "gauge",
        "Bytes sent per second over the net check's interval.",
    );
    let mut net_errors = Family::new(
        "vaultmesh_node_network_errors_per_second",
        "gauge",
        "Errors per second, by interface and direction.",
    );
    let mut net_drops = Family::new(
        "vaultmesh_node_network_drops_per_second",
        "gauge",
        "Dropped packets per second, by interface and direction.",
    );
    let mut disk_read = Family::new(
        "vaultmesh_node_disk_read_bytes_per_second",
        "gauge",
        "Bytes read per second over the diskio check's interval.",
    );
    let mut disk_write = Family::new(
        "vaultmesh_node_disk_write_bytes_per_second",
        "gauge",
        "Bytes written per second over the diskio check's interval.",
    );
    let mut disk_reads = Family::new(
        "vaultmesh_node_disk_reads_per_second",
        "gauge",
        "Reads completed per second.",
    );
    let mut disk_writes = Family::new(
        "vaultmesh_node_disk_writes_per_second",
        "gauge",
        "Writes completed per second.",
    );
    let mut disk_busy = Family::new(
        "vaultmesh_node_disk_busy_percent",
        "gauge",
        "Share of the interval the device had I/O in flight, %.",
    );
    let mut temp = Family::new(
        "vaultmesh_node_temperature_celsius",
        "gauge",
        "A hwmon sensor's temperature.",
    );
    let mut temp_crit = Family::new(
        "vaultmesh_node_temperature_crit_celsius",
        "gauge",
        "A hwmon sensor's own critical limit, when it has one.",
    );
    let mut updates = Family::new(
        "vaultmesh_node_updates_pending",
        "gauge",
        "Installed packages with a newer version known to the package manager.",
    );
    let mut security = Family::new(
        "vaultmesh_node_updates_security",
        "gauge",
        "Pending updates from a security source (absent where the distribution cannot say).",
    );
    let mut reboot = Family::new(
        "vaultmesh_node_reboot_required",
        "gauge",
        "1 when the node says a reboot is due.",
    );
    let mut checks = Family::new(
        "vaultmesh_node_check_status",
        "gauge",
        "A check's latest verdict: 0 ok, 1 warn, 2 crit, 3 unknown.",
    );
    let mut findings = Family::new(
        "vaultmesh_node_scan_findings",
        "gauge",
        "Findings of the node's latest sovereign scan, by severity.",
    );
    let mut chain = Family::new(
        "vaultmesh_node_receipt_chain_ok",
        "gauge",
        "1 while the node's command receipts continue their hash chain, 0 once one did not.",
    );

    for (s, hb) in nodes {
        if crate::api::decommissioned(s) {
            continue;
        }
        let base = node_labels(s);
        let version = hb.agent_version.as_deref().unwrap_or("");
        let display = s.display_name.as_deref().unwrap_or("");
        info.sample(
            &base,
            &[("display_name", display), ("agent_version", version)],
            1.0,
        );
        level.sample(&base, &[], level_value(s.attention.level));
        for (name, l) in [
            ("ok", AttentionLevel::Ok),
            ("attn", AttentionLevel::Attn),
            ("crit", AttentionLevel::Crit),
        ] {
            attention.sample(&base, &[("level", name)], flag(s.attention.level == l));
        }
        let seen = (now - s.last_seen).num_milliseconds().max(0);
        #[allow(clippy::cast_precision_loss)]
        age.sample(&base, &[], seen as f64 / 1000.0);
        heartbeats.sample(&base, &[], f(s.heartbeats));
        if let Some(u) = hb.uptime_s {
            uptime.sample(&base, &[], f(u));
        }
        tunnel.sample(&base, &[], flag(s.cloudflare_ok));
        for state in [Services::Up, Services::Down, Services::Unknown] {
            services.sample(
                &base,
                &[("state", state.as_str())],
                flag(s.services == state),
            );
        }
        if let Some(m) = &hb.metrics {
            if let Some([l1, l5, l15]) = m.load {
                load.sample(&base, &[("window", "1m")], l1);
                load.sample(&base, &[("window", "5m")], l5);
                load.sample(&base, &[("window", "15m")], l15);
            }
            if let Some(n) = m.cpu_count {
                cpus.sample(&base, &[], f64::from(n));
            }
            for (family, v) in [
                (&mut mem_total, m.mem_total_bytes),
                (&mut mem_used, m.mem_used_bytes),
                (&mut swap_total, m.swap_total_bytes),
                (&mut swap_used, m.swap_used_bytes),
            ] {
                if let Some(v) = v {
                    family.sample(&base, &[], f(v));
                }
            }
            if let Some(c) = &m.cpu {
                for (mode, v) in [
                    ("busy", c.busy_pct),
                    ("user", c.user_pct),
                    ("system", c.system_pct),
                    ("iowait", c.iowait_pct),
                    ("steal", c.steal_pct),
                ] {
                    cpu.sample(&base, &[("mode", mode)], v);
                }
            }
            for n in &m.net {
                let at = [("interface", n.interface.as_str())];
                rx.sample(&base, &at, n.rx_bytes_per_s);
                tx.sample(&base, &at, n.tx_bytes_per_s);
                for (dir, e, d) in [
                    ("receive", n.rx_errors_per_s, n.rx_drops_per_s),
                    ("transmit", n.tx_errors_per_s, n.tx_drops_per_s),
                ] {
                    let at = [("interface", n.interface.as_str()), ("direction", dir)];
                    net_errors.sample(&base, &at, e);
                    net_drops.sample(&base, &at, d);
                }
            }
            for d in &m.diskio {
                let at = [("device", d.device.as_str())];
                disk_read.sample(&base, &at, d.read_bytes_per_s);
                disk_write.sample(&base, &at, d.write_bytes_per_s);
                disk_reads.sample(&base, &at, d.read_iops);
                disk_writes.sample(&base, &at, d.write_iops);
                disk_busy.sample(&base, &at, d.busy_pct);
            }
            for t in &m.temperatures {
                let at = [("sensor", t.sensor.as_str()), ("label", t.label.as_str())];
                temp.sample(&base, &at, t.celsius);
                if let Some(crit) = t.crit_celsius {
                    temp_crit.sample(&base, &at, crit);
                }
            }
            if let Some(u) = &m.updates {
                let at = [("manager", u.manager.as_str())];
                updates.sample(&base, &at, f64::from(u.pending));
                if let Some(s) = u.security {
                    security.sample(&base, &at, f64::from(s));
                }
                reboot.sample(&base, &[], flag(u.reboot_required));
            }
            for d in &m.disks {
                let at = [("mount", d.mount.as_str()), ("fs", d.fs.as_str())];
                fs_size.sample(&base, &at, f(d.total_bytes));
                fs_used.sample(&base, &at, f(d.used_bytes));
                if let Some(n) = d.inodes_total {
                    inodes_total.sample(&base, &at, f(n));
                }
                if let Some(n) = d.inodes_used {
                    inodes_used.sample(&base, &at, f(n));
                }
            }
        }
        for (name, status) in &hb.checks {
            checks.sample(&base, &[("check", name.as_str())], status_value(*status));
        }
        if let Some(scan) = &s.last_scan {
            for (severity, n) in &scan.counts {
                findings.sample(&base, &[("severity", severity.as_str())], f(*n));
            }
        }
        if let Some(ok) = s.receipt_chain_ok {
            chain.sample(&base, &[], flag(ok));
        }
    }
    for family in [
        &info,
        &level,
        &attention,
        &age,
        &heartbeats,
        &uptime,
        &tunnel,
        &services,
        &load,
        &cpus,
        &mem_total,
        &mem_used,
        &swap_total,
        &swap_used,
        &fs_size,
        &fs_used,
        &inodes_total,
        &inodes_used,
        &cpu,
        &rx,
        &tx,
        &net_errors,
        &net_drops,
        &disk_read,
        &disk_write,
        &disk_reads,
        &disk_writes,
        &disk_busy,
        &temp,
        &temp_crit,
        &updates,
        &security,
        &reboot,
        &checks,
        &findings,
        &chain,
    ] {
        family.write(out);
    }
}

/// Every family name [`render`] can write (the Grafana dashboard's test checks its queries
/// against these).
pub const FAMILIES: &[&str] = &[
    "vaultmesh_node_info",
    "vaultmesh_node_attention_level",
    "vaultmesh_node_attention",
    "vaultmesh_node_last_seen_age_seconds",
    "vaultmesh_node_heartbeats_total",
    "vaultmesh_node_uptime_seconds",
    "vaultmesh_node_tunnel_up",
    "vaultmesh_node_services",
    "vaultmesh_node_load",
    "vaultmesh_node_cpus",
    "vaultmesh_node_memory_total_bytes",
    "vaultmesh_node_memory_used_bytes",
    "vaultmesh_node_swap_total_bytes",
    "vaultmesh_node_swap_used_bytes",
    "vaultmesh_node_filesystem_size_bytes",
    "vaultmesh_node_filesystem_used_bytes",
    "vaultmesh_node_filesystem_inodes",
    "vaultmesh_node_filesystem_inodes_used",
    "vaultmesh_node_cpu_busy_percent",
    "vaultmesh_node_network_receive_bytes_per_second",
    "vaultmesh_node_network_transmit_bytes_per_second",
    "vaultmesh_node_network_errors_per_second",
    "vaultmesh_node_network_drops_per_second",
    "vaultmesh_node_disk_read_bytes_per_second",
    "vaultmesh_node_disk_write_bytes_per_second",
    "vaultmesh_node_disk_reads_per_second",
    "vaultmesh_node_disk_writes_per_second",
    "vaultmesh_node_disk_busy_percent",
    "vaultmesh_node_temperature_celsius",
    "vaultmesh_node_temperature_crit_celsius",
    "vaultmesh_node_updates_pending",
    "vaultmesh_node_updates_security",
    "vaultmesh_node_reboot_required",
    "vaultmesh_node_check_status",
    "vaultmesh_node_scan_findings",
    "vaultmesh_node_receipt_chain_ok",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn node(hostname: &str, labels: &[(&str, &str)]) -> NodeState {
        let hb: vaultmesh_proto::NodeHeartbeat = serde_json::from_value(serde_json::json!({
            "node_id": uuid::Uuid::from_u128(7), "hostname": hostname, "os_profile": "ArchVault",
            "cloudflare_ok": true, "services_ok": true, "vaultmesh_root": "/",
            "timestamp": "2026-12-07T10:00:00Z", "agent_version": "0.1.0", "uptime_s": 3600,
            "metrics": {"load": [0.5, 0.25, 0.125], "cpu_count": 2, "mem_total_bytes": 1000,
                        "mem_used_bytes": 400,
                        "disks": [{"mount": "/", "fs": "ext4", "total_bytes": 100, "used_bytes": 91}]},
            "checks": [{"name": "disk", "status": "crit", "summary": "/ 91%",
                        "observed_at": "2026-12-07T10:00:00Z"}],
        }))
        .unwrap();
        let summary: NodeSummary = serde_json::from_value(serde_json::json!({
            "node_id": uuid::Uuid::from_u128(7), "hostname": hostname, "os_profile": "ArchVault",
            "last_seen": "2026-12-07T10:00:00Z", "cloudflare_ok": true, "services_ok": true,
            "heartbeats": 12, "attention": {"level": "crit", "reasons": []},
            "labels": labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<std::collections::BTreeMap<_, _>>(),
        }))
        .unwrap();
        (summary, LatestMeasures::of(&hb))
    }

    fn text(nodes: &[NodeState]) -> String {
        let mut out = Vec::new();
        let now = "2026-12-07T10:00:30Z".parse().unwrap();
        render(nodes, now, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_node_is_written_with_its_labels_and_measurements() {
        let t = text(&[node("vault-01", &[("site", "fra1"), ("rack-no.", "a")])]);
        let base = "node_id=\"00000000-0000-0000-0000-000000000007\",hostname=\"vault-01\",profile=\"ArchVault\",label_rack_no_=\"a\",label_site=\"fra1\"";
        for line in [
            format!("vaultmesh_node_attention_level{{{base}}} 2"),
            format!("vaultmesh_node_attention{{{base},level=\"crit\"}} 1"),
            format!("vaultmesh_node_attention{{{base},level=\"ok\"}} 0"),
            format!("vaultmesh_node_last_seen_age_seconds{{{base}}} 30"),
            format!("vaultmesh_node_load{{{base},window=\"5m\"}} 0.25"),
            format!("vaultmesh_node_filesystem_used_bytes{{{base},mount=\"/\",fs=\"ext4\"}} 91"),
            format!("vaultmesh_node_check_status{{{base},check=\"disk\"}} 2"),
            format!("vaultmesh_node_info{{{base},display_name=\"\",agent_version=\"0.1.0\"}} 1"),
            "# TYPE vaultmesh_node_heartbeats_total counter".to_string(),
        ] {
            assert!(t.contains(&line), "{line}\nnot in\n{t}");
        }
        assert!(
            !t.contains("vaultmesh_node_swap_used_bytes"),
            "absent measurements write no family"
        );
    }

    #[test]
    fn label_values_are_escaped_and_families_are_written_once_each() {
        let mut a = node("a", &[]);
        a.0.display_name = Some("say \"hi\" \\ there\nnow".into());
        let b = node("b", &[]);
        let t = text(&[a, b]);
        assert!(
            t.contains("display_name=\"say \\\"hi\\\" \\\\ there\\nnow\""),
            "{t}"
        );
        assert_eq!(t.matches("# TYPE vaultmesh_node_info gauge").count(), 1);
        // A family's samples are together: after its TYPE line, until the next HELP.
        let info: Vec<&str> = t
            .split("# HELP ")
            .filter(|block| block.starts_with("vaultmesh_node_info "))
            .collect();
        assert_eq!(info.len(), 1);
        assert_eq!(info[0].matches("\nvaultmesh_node_info{").count(), 2);
        for name in t.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
            let name = name.split(' ').next().unwrap();
            assert!(FAMILIES.contains(&name), "{name} missing from FAMILIES");
        }
    }

    #[test]
    fn non_finite_values_and_decommissioned_nodes_are_left_out() {
        let mut a = node("a", &[]);
        a.1.metrics.as_mut().unwrap().load = Some([f64::NAN, f64::INFINITY, 1.0]);
        let t = text(&[a]);
        for line in t.lines().filter(|l| !l.starts_with('#')) {
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().unwrap().is_finite(), "{line}");
        }
        assert_eq!(t.matches("vaultmesh_node_load{").count(), 1, "{t}");
        assert!(t.contains("window=\"15m\"} 1"));
        let mut gone = node("gone", &[]);
        gone.0.revoked = Some(
            serde_json::from_value(serde_json::json!({
                "at": "2026-12-07T09:00:00Z", "by": "admin", "readmitted": false,
                "decommissioned": true
            }))
            .unwrap(),
        );
        assert_eq!(text(&[gone]), "", "a decommissioned node has no series");
    }
}
