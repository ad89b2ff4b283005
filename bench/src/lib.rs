//! Shared pieces of the benchmark binaries: realistic records, timing and process memory.

pub mod backfill;
pub mod fleet;
pub mod sim;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;

use uuid::Uuid;

/// Builds a workspace binary in release mode and returns its path.
pub fn release_binary(package: &str, name: &str) -> anyhow::Result<PathBuf> {
    built_binary(package, name, "release")
}

/// Builds a workspace binary with a cargo profile (`release`, or `agent` for the node agent as
/// it ships) and returns its path.
///
/// `VAULTMESH_BENCH_PROFILE=dev` overrides the profile (the CI smoke tests use the debug
/// binaries the test build already made, instead of a release build).
pub fn built_binary(package: &str, name: &str, profile: &str) -> anyhow::Result<PathBuf> {
    built_binary_for(package, name, profile, None)
}

/// [`built_binary`] for another target than the host's (`x86_64-unknown-linux-musl`: the
/// static build), when `target` is given.
pub fn built_binary_for(
    package: &str,
    name: &str,
    profile: &str,
    target: Option<&str>,
) -> anyhow::Result<PathBuf> {
    let profile = std::env::var("VAULTMESH_BENCH_PROFILE").unwrap_or_else(|_| profile.to_string());
    let profile = profile.as_str();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or_else(|| anyhow::anyhow!("no workspace"))?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build.current_dir(root).args([
        "build",
        "--profile",
        profile,
        "--quiet",
        "-p",
        package,
        "--bin",
        name,
    ]);
    if let Some(t) = target {
        build.args(["--target", t]);
    }
    let status = build.status()?;
    anyhow::ensure!(status.success(), "cargo build -p {package} failed");
    let mut dir = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("target"));
    if let Some(t) = target {
        dir = dir.join(t);
    }
    let dir = dir.join(if profile == "dev" { "debug" } else { profile });
    Ok(dir.join(name))
}

/// Node ids `0..n` as UUIDs.
pub fn node_id(i: usize) -> Uuid {
    Uuid::from_u128(0x5eed_0000_0000_4000_8000_0000_0000_0000 | i as u128)
}

/// A heartbeat shaped like a real agent's: six checks with details, two disks, all metrics.
pub fn realistic_heartbeat(i: usize, seq: u64) -> serde_json::Value {
    let id = node_id(i);
    serde_json::json!({
        "node_id": id, "hostname": format!("vault-node-{i:04}"), "os_profile": if i.is_multiple_of(2) { "ArchVault" } else { "DebianVault" },
        "cloudflare_ok": true, "services_ok": true, "vaultmesh_root": "/var/lib/vaultmesh",
        "timestamp": "2026-11-29T10:00:00Z", "agent_version": "0.1.0", "seq": seq.to_string(), "uptime_s": 86_400 + seq,
        "metrics": {"load": [0.42, 0.31, 0.22], "cpu_count": 4, "mem_total_bytes": 8_589_934_592u64, "mem_used_bytes": 2_147_483_648u64,
            "swap_total_bytes": 0, "swap_used_bytes": 0,
            "disks": [{"mount": "/", "fs": "ext4", "total_bytes": 107_374_182_400u64, "used_bytes": 45_097_156_608u64, "inodes_total": 6_553_600, "inodes_used": 412_345},
                      {"mount": "/var/lib/vaultmesh", "fs": "xfs", "total_bytes": 536_870_912_000u64, "used_bytes": 128_849_018_880u64, "inodes_total": 262_144_000, "inodes_used": 1_234_567}],
            // What the issue-27 checks add (cpu, net, diskio, temperature, updates).
            "cpu": {"busy_pct": 12.5, "user_pct": 8.25, "system_pct": 3.75, "iowait_pct": 0.5, "steal_pct": 0.5},
            "net": [{"interface": "enp3s0", "rx_bytes_per_s": 183_402.5, "tx_bytes_per_s": 96_120.25, "rx_errors_per_s": 0.0, "tx_errors_per_s": 0.0, "rx_drops_per_s": 0.0, "tx_drops_per_s": 0.0}],
            "diskio": [{"device": "nvme0n1", "read_bytes_per_s": 40_960.0, "write_bytes_per_s": 1_228_800.0, "read_iops": 2.5, "write_iops": 61.25, "busy_pct": 3.5}],
            "temperatures": [{"sensor": "coretemp", "label": "Package id 0", "celsius": 47.0, "crit_celsius": 100.0},
                             {"sensor": "nvme", "label": "Composite", "celsius": 38.85, "crit_celsius": 84.85}],
            "updates": {"pending": 3, "security": 1, "reboot_required": false, "manager": "apt"}},
        "checks": [
            {"name": "cloudflared", "status": "ok", "summary": "tunnel up: 4 ready connections", "observed_at": "2026-11-29T09:59:58Z", "duration_ms": 2, "metrics": {"ready_connections": 4.0}, "details": {"connector_id": "7b5a4c5e-6d7f-4a1b-9c2d-3e4f5a6b7c8d"}},
            {"name": "disk", "status": "ok", "summary": "2 filesystems, fullest / at 42%", "observed_at": "2026-11-29T09:59:58Z", "duration_ms": 1, "metrics": {"filesystems": 2.0, "max_used_pct": 42.0, "max_inodes_used_pct": 6.3}},
            {"name": "load", "status": "ok", "summary": "load 0.42 0.31 0.22 on 4 CPUs (5m: 0.08 per CPU)", "observed_at": "2026-11-29T09:59:58Z", "duration_ms": 0, "metrics": {"load1": 0.42, "load5": 0.31, "load15": 0.22, "cpu_count": 4.0}},
            {"name": "memory", "status": "ok", "summary": "memory 25% used (2.0 GiB of 8.0 GiB), no swap", "observed_at": "2026-11-29T09:59:58Z", "duration_ms": 0, "metrics": {"used_pct": 25.0}},
            {"name": "systemd", "status": "ok", "summary": "3 units as expected", "observed_at": "2026-11-29T09:59:58Z", "duration_ms": 3, "metrics": {"units": 3.0, "active": 3.0, "failed": 0.0, "restarts": 0.0}},
            {"name": "sovereign_scan", "status": "warn", "summary": "1 medium finding", "observed_at": "2026-11-29T09:30:00Z", "duration_ms": 290, "metrics": {"findings": 1.0, "medium": 1.0}}
        ],
        "last_scan": {"scan_id": "0193a1f0-7c1e-7000-8000-000000000001", "finished_at": "2026-11-29T09:30:00Z", "counts": {"medium": 1}}
    })
}

/// A heartbeat line as the Command Center logs it for node `i`'s `seq`-th heartbeat at
/// `at`, with values that move the way a real agent's do from one heartbeat to the next
/// (modelled on a line the real agent sent, `demo`): nanosecond clocks, load, memory and disks
/// drifting, each check re-run with its summary and metrics agreeing with the measurements.
/// [`realistic_heartbeat`] repeats the same values, which compress far better than real ones
/// do; disk figures use this.
pub fn live_heartbeat_line(i: usize, seq: u64, at: chrono::DateTime<chrono::Utc>) -> Vec<u8> {
    use chrono::Duration as D;
    // Deterministic noise per (node, heartbeat, field).
    let noise = |field: u64| -> u64 {
        let mut z = (i as u64) ^ seq.rotate_left(20) ^ field.rotate_left(40);
        z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let unit = |field: u64| (noise(field) % 1_000_000) as f64 / 1_000_000.0;
    let nanos = |field: u64| D::nanoseconds((noise(field) % 1_000_000_000) as i64);
    let round = |x: f64, d: i32| (x * 10f64.powi(d)).round() / 10f64.powi(d);
    let cpus = 4.0;
    let phase = seq as f64 / 60.0 + i as f64;
    let load1 = round((0.6 + 0.4 * phase.sin() + 0.3 * unit(1)).max(0.0), 2);
    let load5 = round((0.6 + 0.35 * (phase - 0.1).sin()).max(0.0), 2);
    let load15 = round((0.6 + 0.3 * (phase - 0.3).sin()).max(0.0), 2);
    let mem_total = 8_589_934_592u64;
    let mem_used = 2_147_483_648 + (noise(2) % 262_144) * 4096;
    let mem_pct = round(mem_used as f64 * 100.0 / mem_total as f64, 1);
    let root_total = 107_374_182_400u64;
    let root_used = 45_097_156_608 + seq * 40_960 + (noise(3) % 256) * 4096;
    let data_total = 536_870_912_000u64;
    let data_used = 128_849_018_880 + seq * 409_600 + (noise(4) % 256) * 4096;
    let root_pct = round(root_used as f64 * 100.0 / root_total as f64, 1);
    let data_pct = round(data_used as f64 * 100.0 / data_total as f64, 1);
    let inodes_used = 412_345 + seq / 10 + noise(5) % 50;
    let ran = |k: u64| at - D::seconds((noise(10 + k) % 30) as i64) + nanos(20 + k);
    let scan_at =
        at - D::seconds((seq % 720) as i64 * 30) - D::seconds(7) + D::nanoseconds(123_456_789);
    let scan_id = Uuid::from_u128(
        0x0193_a1f0_7c1e_7000_8000_0000_0000_0000 | (i as u128) << 16 | (seq / 720) as u128,
    );
    let id = node_id(i);
    let hb = serde_json::json!({
        "node_id": id, "hostname": format!("vault-node-{i:04}"), "os_profile": if i.is_multiple_of(2) { "ArchVault" } else { "DebianVault" },
        "cloudflare_ok": true, "services_ok": true, "vaultmesh_root": "/var/lib/vaultmesh",
        "timestamp": at + nanos(6), "agent_version": "0.1.0", "seq": (1_796_548_737_982 + seq).to_string(), "uptime_s": 86_400 + seq * 30,
        "metrics": {"load": [load1, load5, load15], "cpu_count": 4, "mem_total_bytes": mem_total, "mem_used_bytes": mem_used,
            "swap_total_bytes": 0, "swap_used_bytes": 0,
            "disks": [{"mount": "/", "fs": "ext4", "total_bytes": root_total, "used_bytes": root_used, "inodes_total": 6_553_600, "inodes_used": inodes_used},
                      {"mount": "/var/lib/vaultmesh", "fs": "xfs", "total_bytes": data_total, "used_bytes": data_used, "inodes_total": 262_144_000, "inodes_used": 1_234_567}]},
        "checks": [
            {"name": "cloudflared", "status": "ok", "summary": "tunnel up: 4 ready connections", "observed_at": ran(0), "duration_ms": noise(7) % 4, "metrics": {"ready_connections": 4.0}},
            {"name": "disk", "status": "ok", "summary": format!("2 filesystems, fullest / at {root_pct}%"), "observed_at": ran(1), "duration_ms": 1, "metrics": {"filesystems": 2.0, "max_inodes_used_pct": 6.3, "max_used_pct": root_pct.max(data_pct)}},
            {"name": "load", "status": "ok", "summary": format!("load {load1} {load5} {load15} on 4 CPUs (5m: {} per CPU)", round(load5 / cpus, 2)), "observed_at": ran(2), "duration_ms": 0,
             "metrics": {"load15_per_cpu": round(load15 / cpus, 2), "load1_per_cpu": round(load1 / cpus, 2), "load5_per_cpu": round(load5 / cpus, 2)}},
            {"name": "memory", "status": "ok", "summary": format!("memory {mem_pct}% used ({:.1} GiB of 8.0 GiB), no swap", mem_used as f64 / 1_073_741_824.0), "observed_at": ran(3), "duration_ms": 0, "metrics": {"used_pct": mem_pct}},
            {"name": "systemd", "status": "ok", "summary": "3 units as expected", "observed_at": ran(4), "duration_ms": noise(8) % 6, "metrics": {"units": 3.0, "active": 3.0, "failed": 0.0, "restarts": 0.0}},
            {"name": "sovereign_scan", "status": "warn", "summary": "1 finding (1 medium); worst: fs.protected_fifos is 0; expected >=1", "observed_at": scan_at, "duration_ms": 774,
             "metrics": {"findings": 1.0, "findings_medium": 1.0},
             "details": {"counts": {"medium": 1}, "errors": [], "rules": ["file_hashes", "listeners", "setuid", "sshd", "sysctl", "world_writable"], "scan_id": scan_id, "truncated": false}}
        ],
        "last_scan": {"scan_id": scan_id, "finished_at": scan_at + D::milliseconds(648), "counts": {"medium": 1}}
    });
    vaultmesh_store::record::encode(
        "heartbeat",
        at + D::milliseconds((noise(9) % 40) as i64) + nanos(30),
        Some(id),
        &hb,
    )
    .expect("a heartbeat encodes")
}

/// A scan report shaped like a real one: a finding and 40 file hashes (which change with `n`).
pub fn realistic_scan(i: usize, n: u128) -> vaultmesh_proto::ScanReport {
    use vaultmesh_proto::scan::{Finding, count_findings};
    let findings = vec![Finding {
        rule: "sysctl".into(),
        severity: vaultmesh_proto::Severity::Medium,
        title: "kernel.kptr_restrict is 0; expected >=1".into(),
        detail: String::new(),
        evidence: "/proc/sys/kernel/kptr_restrict = 0".into(),
    }];
    let mut fingerprint = vaultmesh_proto::Fingerprint::new();
    for f in 0..40 {
        fingerprint
            .entry("file_hashes".into())
            .or_default()
            .insert(format!("/etc/file{f}"), format!("{:064x}", n * 1000 + f));
    }
    let now = chrono::Utc::now();
    vaultmesh_proto::ScanReport {
        scan_id: Uuid::new_v4(),
        node_id: node_id(i),
        profile: if i.is_multiple_of(2) {
            "ArchVault"
        } else {
            "DebianVault"
        }
        .into(),
        started_at: now,
        finished_at: now,
        counts: count_findings(&findings),
        findings,
        fingerprint,
        rules: vec!["file_hashes".into(), "sysctl".into()],
        errors: vec![],
        truncated: false,
    }
}

pub use vaultmesh_testkit::memory_kib;

/// CPU time of a process's live threads to the nanosecond (`/proc/<pid>/task/*/schedstat`).
/// Threads that exited in between are missing, so use it where threads live long (the agent).
pub fn cpu_time_precise(pid: u32) -> anyhow::Result<Duration> {
    let mut ns = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let stat = std::fs::read_to_string(task?.path().join("schedstat")).unwrap_or_default();
        ns += stat
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    }
    Ok(Duration::from_nanos(ns))
}

/// Reads `/proc/<pid>/stat`: user + system CPU time of a process.
pub fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("no process {pid}"))?;
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("odd /proc stat")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 =
        f.get(11).context("utime")?.parse::<u64>()? + f.get(12).context("stime")?.parse::<u64>()?;
    // USER_HZ is 100 on every Linux this runs on.
    Ok(Duration::from_millis(ticks * 10))
}

/// Runs `f` `n` times and returns the median duration.
pub fn median_of(
    n: usize,
    mut f: impl FnMut() -> anyhow::Result<Duration>,
) -> anyhow::Result<Duration> {
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        v.push(f()?);
    }
    v.sort();
    Ok(v[v.len() / 2])
}

/// Wall time of `f`.
pub fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let out = f();
    (out, start.elapsed())
}

/// Positional argument `n` parsed as a number, or `default` when absent.
pub fn arg_or(n: usize, name: &str, default: usize) -> anyhow::Result<usize> {
    match std::env::args().nth(n) {
        None => Ok(default),
        Some(a) => a
            .parse()
            .map_err(|e| anyhow::anyhow!("{name} must be a number, not {a:?}: {e}")),
    }
}

/// `prometheus-node-exporter` (the Debian package, its default collectors) on a loopback port,
/// answering: the peer `agent-bench` and `metrics-bench` measure beside their own figures.
/// Killed when dropped.
#[derive(Debug)]
pub struct NodeExporter {
    child: std::process::Child,
    pub url: String,
    pub binary: PathBuf,
}

impl NodeExporter {
    /// Starts it and waits (up to 10 s) until `/metrics` answers.
    pub fn start(http: &reqwest::blocking::Client) -> anyhow::Result<NodeExporter> {
        let binary = PathBuf::from("/usr/bin/prometheus-node-exporter");
        anyhow::ensure!(
            binary.exists(),
            "install it with: sudo apt-get install -y prometheus-node-exporter"
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new(&binary)
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        let exporter = NodeExporter {
            child,
            url: format!("http://127.0.0.1:{port}/metrics"),
            binary,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while http.get(&exporter.url).send().is_err() {
            anyhow::ensure!(Instant::now() < deadline, "node exporter did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(exporter)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for NodeExporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
