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
    let profile = std::env::var("VAULTMESH_BENCH_PROFILE").unwrap_or_else(|_| profile.to_string());
    let profile = profile.as_str();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or_else(|| anyhow::anyhow!("no workspace"))?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(root)
        .args([
            "build",
            "--profile",
            profile,
            "--quiet",
            "-p",
            package,
            "--bin",
            name,
        ])
        .status()?;
    anyhow::ensure!(status.success(), "cargo build -p {package} failed");
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("target"));
    let dir = if profile == "dev" { "debug" } else { profile };
    Ok(target.join(dir).join(name))
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
                      {"mount": "/var/lib/vaultmesh", "fs": "xfs", "total_bytes": 536_870_912_000u64, "used_bytes": 128_849_018_880u64, "inodes_total": 262_144_000, "inodes_used": 1_234_567}]},
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
