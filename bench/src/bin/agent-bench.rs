//! The node agent's footprint, measured next to `prometheus-node-exporter` (Debian package) on
//! the same machine:
//!
//! - the shipped binary's size (stripped, `--profile agent`);
//! - steady RSS and CPU per heartbeat cycle with every check enabled and due every cycle: the
//!   systemd check over a real D-Bus daemon (with a test systemd service on it), cloudflared
//!   against a fake metrics server (the true edge), disk, memory, load; the sovereign scan runs
//!   once at start (its interval is hours) and is reported apart;
//! - node exporter: RSS and CPU per scrape, binary size;
//! - each figure beside issue 24's goal and the figure before it.
//!
//! `cargo run --release -p vaultmesh-bench --bin agent-bench -- [CYCLES] [INTERVAL_MS]`
//! (defaults 60 cycles of 1000 ms). `AGENT_BENCH_MUSL=1` also builds the static musl agent
//! (`--target x86_64-unknown-linux-musl`; or give the path of one) and measures it the same
//! way, side by side;
//! `AGENT_BENCH_BEFORE=PATH` measures another agent binary (an older build) in the same run.
//!
//! Each agent runs with the malloc settings its unit gives it (`GLIBC_TUNABLES` from
//! `systemd/vaultmesh-node-agent.service`), as it does on a node; the `AGENT_BENCH_BEFORE` build
//! without them, as its unit ran it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use vaultmesh_bench::fleet::{Server, TOKEN};
use vaultmesh_bench::{
    arg_or, built_binary, built_binary_for, cpu_time, cpu_time_precise, memory_kib,
};
use vaultmesh_testkit::agent_unit_env;
use vaultmesh_testkit::cloudflared::{FakeCloudflared, ReadyReply};
use vaultmesh_testkit::dbus::{DbusDaemon, FakeSystemd, FakeUnit};

/// Issue 24's goals for the agent as shipped, all built-in checks on.
const GOAL_RSS_MIB: f64 = 4.2;
const GOAL_BINARY_MIB: f64 = 4.0;
const GOAL_CPU_MS: f64 = 1.0;
/// The figures before issue 24 (docs/PERFORMANCE.md), for comparison.
const BEFORE: (&str, &str, &str) = ("6.4 MiB", "4.7 MiB", "1.6-1.8 ms");

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// What one agent binary measured.
struct Figures {
    rss_kib: u64,
    size: u64,
    /// CPU per heartbeat cycle from schedstat (ns resolution).
    per_cycle_ms: f64,
    /// The same from /proc/PID/stat (10 ms ticks), as a cross-check.
    per_cycle_ticks_ms: f64,
    beats: f64,
    wall: Duration,
    peak_kib: u64,
    scan_peak_kib: u64,
    scan_done: Duration,
    cpu_start: Duration,
}

/// What every measured agent shares: the Command Center, the bus with its systemd, the fake
/// cloudflared and the run's settings.
struct Rig {
    cc: Server,
    bus: DbusDaemon,
    cloudflared_url: String,
    cycles: usize,
    interval_ms: usize,
    only: Option<String>,
    skip: String,
}

impl Rig {
    fn on(&self, check: &str) -> bool {
        self.only.as_deref().is_none_or(|o| o == check) && !self.skip.split(',').any(|s| s == check)
    }

    fn config(&self) -> String {
        let every = format!("{}ms", self.interval_ms);
        format!(
            r#"[agent]
interval = "{every}"

[checks.systemd]
enabled = {}
interval = "{every}"
units = ["cloudflared.service", "sshd.service", "vaultmesh-node-agent.service"]

[checks.cloudflared]
enabled = {}
interval = "{every}"
metrics_url = "{cf}"

[checks.disk]
enabled = {}
interval = "{every}"

[checks.memory]
enabled = {}
interval = "{every}"

[checks.load]
enabled = {}
interval = "{every}"

[checks.sovereign_scan]
enabled = {}
"#,
            self.on("systemd"),
            self.on("cloudflared"),
            self.on("disk"),
            self.on("memory"),
            self.on("load"),
            self.on("sovereign_scan"),
            cf = self.cloudflared_url
        )
    }

    /// Runs `agent_bin` as a node of its own (a new state directory) and measures it.
    /// `unit_env`: with the unit's `GLIBC_TUNABLES`.
    fn measure(&self, agent_bin: &Path, unit_env: bool) -> anyhow::Result<Figures> {
        let (cc, interval_ms) = (&self.cc, self.interval_ms as u64);
        let size = std::fs::metadata(agent_bin)?.len();
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("agent.toml"), self.config())?;
        let mut agent = Command::new(agent_bin);
        agent
            .arg("run")
            .env("VAULTMESH_CC_URL", &cc.base)
            .env("VAULTMESH_CONFIG", dir.path().join("agent.toml"))
            .env("VAULTMESH_STATE_DIR", dir.path().join("state"))
            .env("VAULTMESH_ENROLL_TOKEN", TOKEN)
            .env("VAULTMESH_OS_PROFILE", "DebianVault")
            .env("DBUS_SYSTEM_BUS_ADDRESS", &self.bus.address)
            .env("RUST_LOG", "warn")
            .env(
                "GLIBC_TUNABLES",
                unit_env
                    .then(|| agent_unit_env("GLIBC_TUNABLES"))
                    .flatten()
                    .unwrap_or_default(),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        let started = Instant::now();
        let agent = Killed(agent.spawn()?);
        let pid = agent.0.id();
        let node_id = || -> Option<String> {
            std::fs::read_to_string(dir.path().join("state/node_id"))
                .ok()
                .map(|t| t.trim().to_string())
        };

        // Warm-up: enrolled, first scan sent, a few cycles run.
        let http = reqwest::blocking::Client::new();
        let scanned = |http: &reqwest::blocking::Client| -> bool {
            let Some(id) = node_id() else { return false };
            http.get(format!("{}/api/nodes", cc.base))
                .send()
                .ok()
                .and_then(|r| r.json::<serde_json::Value>().ok())
                .and_then(|v| {
                    v.as_array()?
                        .iter()
                        .find(|n| n.get("node_id").and_then(|i| i.as_str()) == Some(id.as_str()))?
                        .get("last_scan")
                        .cloned()
                })
                .is_some_and(|s| !s.is_null())
        };
        while self.on("sovereign_scan") && !scanned(&http) {
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(120),
                "the agent sent no scan in 120 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let scan_done = started.elapsed();
        let (scan_peak_kib, _) = memory_kib(pid);
        let cpu_start = cpu_time(pid)?;
        std::thread::sleep(Duration::from_millis(3 * interval_ms));
        let heartbeats = |http: &reqwest::blocking::Client| -> anyhow::Result<f64> {
            let m = http.get(format!("{}/metrics", cc.base)).send()?.text()?;
            vaultmesh_testkit::metric(&m, "vaultmesh_heartbeats_ingested_total")
                .ok_or_else(|| anyhow::anyhow!("no heartbeat counter"))
        };

        // Steady state.
        // Profiling aid: AGENT_BENCH_PERF=FILE records the steady window with perf.
        let perf = std::env::var_os("AGENT_BENCH_PERF").map(|out| {
            let mut cmd = Command::new("perf");
            if out == "strace" {
                cmd = Command::new("strace");
                cmd.args(["-c", "-f", "-o", "/tmp/agent.strace"]);
            } else {
                cmd.args(["record", "-F", "4000", "-g", "-o"]).arg(out);
            }
            cmd.args(["-p", &pid.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
        });
        let hb0 = heartbeats(&http)?;
        let cpu0 = cpu_time(pid)?;
        let precise0 = cpu_time_precise(pid)?;
        let t0 = Instant::now();
        std::thread::sleep(Duration::from_millis(self.cycles as u64 * interval_ms));
        let mut agent = agent;
        anyhow::ensure!(
            agent.0.try_wait()?.is_none(),
            "the agent exited during the measurement"
        );
        let cpu1 = cpu_time(pid)?;
        let precise1 = cpu_time_precise(pid)?;
        let wall = t0.elapsed();
        let hb1 = heartbeats(&http)?;
        if let Some(Ok(mut p)) = perf {
            let _ = Command::new("kill")
                .args(["-INT", &p.id().to_string()])
                .status();
            let _ = p.wait();
        }
        let (peak_kib, rss_kib) = memory_kib(pid);
        if std::env::var_os("AGENT_BENCH_SMAPS").is_some() {
            print!(
                "{}",
                std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))?
            );
            println!(
                "threads: {}",
                std::fs::read_dir(format!("/proc/{pid}/task"))?.count()
            );
        }
        // The Command Center counts every node's heartbeats; only this agent sends now.
        let beats = (hb1 - hb0).max(1.0);
        Ok(Figures {
            rss_kib,
            size,
            // schedstat (ns, live threads) is the figure; /proc stat (10 ms ticks) cross-checks it.
            per_cycle_ms: precise1.saturating_sub(precise0).as_secs_f64() * 1e3 / beats,
            per_cycle_ticks_ms: (cpu1 - cpu0).as_secs_f64() * 1e3 / beats,
            beats,
            wall,
            peak_kib,
            scan_peak_kib,
            scan_done,
            cpu_start,
        })
    }
}

/// "met" when `value` is within `goal`, else how far off.
fn verdict(value: f64, goal: f64, unit: &str) -> String {
    if value <= goal {
        "met".to_string()
    } else {
        format!("gap {:.2} {unit}", value - goal)
    }
}

fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cycles = arg_or(1, "CYCLES", 60)?.max(2);
    // The agent's shortest heartbeat interval is 1 s.
    let interval_ms = arg_or(2, "INTERVAL_MS", 1000)?.max(1000);
    // As it ships: the `agent` profile (small before fast).
    let agent_bin: PathBuf = match std::env::var_os("AGENT_BENCH_BIN") {
        Some(p) => p.into(),
        None => built_binary("vaultmesh-node-agent", "vaultmesh-node-agent", "agent")?,
    };
    let mut agents = vec![(
        "vaultmesh-node-agent (all checks)".to_string(),
        agent_bin,
        true,
    )];
    // AGENT_BENCH_MUSL=1 builds the static musl agent; a path measures that binary instead.
    if let Some(musl) = std::env::var_os("AGENT_BENCH_MUSL") {
        let musl = if musl == "1" {
            built_binary_for(
                "vaultmesh-node-agent",
                "vaultmesh-node-agent",
                "agent",
                Some("x86_64-unknown-linux-musl"),
            )?
        } else {
            musl.into()
        };
        agents.push(("  the same, static musl build".to_string(), musl, true));
    }
    if let Some(before) = std::env::var_os("AGENT_BENCH_BEFORE") {
        agents.push((
            "  before (AGENT_BENCH_BEFORE)".to_string(),
            before.into(),
            false,
        ));
    }
    println!(
        "agent-bench: {cycles} heartbeat cycles of {interval_ms} ms, every check due every cycle"
    );

    let bus = DbusDaemon::start();
    let units = [
        FakeUnit::new("cloudflared.service", "active", "running"),
        FakeUnit::new("sshd.service", "active", "running"),
        FakeUnit::new("vaultmesh-node-agent.service", "active", "running"),
    ];
    let _systemd = FakeSystemd::start(&bus.address, &units);
    let cloudflared = FakeCloudflared::start(ReadyReply::connections(4));
    // AGENT_BENCH_ONLY=disk (or `none`) keeps just that check on: the cost of each one.
    // AGENT_BENCH_SKIP=sovereign_scan,... turns checks off (the smoke test skips the scan,
    // which takes minutes in a debug build).
    let rig = Rig {
        cc: Server::start(&[])?,
        bus,
        cloudflared_url: cloudflared.url(),
        cycles,
        interval_ms,
        only: std::env::var("AGENT_BENCH_ONLY").ok(),
        skip: std::env::var("AGENT_BENCH_SKIP").unwrap_or_default(),
    };
    // One agent at a time, so none measures another's load.
    let mut measured = Vec::new();
    for (label, bin, unit_env) in agents {
        let f = rig.measure(&bin, unit_env)?;
        measured.push((label, f));
    }

    println!(
        "\n  {:<36} {:>14} {:>12} {:>16}   goals",
        "", "steady RSS", "binary", "CPU per cycle"
    );
    for (label, f) in &measured {
        let (rss, size) = (mib(f.rss_kib), f.size as f64 / 1_048_576.0);
        println!(
            "  {:<36} {:>10.1} MiB {:>8.1} MiB {:>13.2} ms   RSS {}, binary {}, CPU {}",
            label,
            rss,
            size,
            f.per_cycle_ms,
            verdict(rss, GOAL_RSS_MIB, "MiB"),
            verdict(size, GOAL_BINARY_MIB, "MiB"),
            verdict(f.per_cycle_ms, GOAL_CPU_MS, "ms"),
        );
    }
    println!(
        "  {:<36} {:>14} {:>12} {:>16}",
        "goal (issue 24)",
        format!("<= {GOAL_RSS_MIB:.1} MiB"),
        format!("<= {GOAL_BINARY_MIB:.1} MiB"),
        format!("<= {GOAL_CPU_MS:.2} ms"),
    );
    println!(
        "  {:<36} {:>14} {:>12} {:>16}",
        "before (docs/PERFORMANCE.md)", BEFORE.0, BEFORE.1, BEFORE.2
    );
    match node_exporter(cycles.min(30)) {
        Ok((rss, per_scrape, size)) => println!(
            "  {:<36} {:>10.1} MiB {:>8.1} MiB {:>13.2} ms",
            "prometheus-node-exporter (1 scrape)",
            mib(rss),
            size as f64 / 1_048_576.0,
            per_scrape
        ),
        Err(e) => println!("  prometheus-node-exporter: not measured ({e})"),
    }
    for (label, f) in &measured {
        println!(
            "\n  {}: {:.0} heartbeats in {:.1} s; CPU per cycle from /proc/PID/stat ticks {:.2} ms (10 ms resolution); peak RSS {:.1} MiB ({:.1} MiB once the start-up scan was sent, {:.1} s after start, {:.0} ms CPU up to then)",
            label.trim(),
            f.beats,
            f.wall.as_secs_f64(),
            f.per_cycle_ticks_ms,
            mib(f.peak_kib),
            mib(f.scan_peak_kib),
            f.scan_done.as_secs_f64(),
            f.cpu_start.as_secs_f64() * 1e3
        );
    }
    Ok(())
}

/// Starts `prometheus-node-exporter` on a loopback port and scrapes it `n` times, one a second;
/// (steady RSS KiB, CPU ms per scrape, binary bytes).
fn node_exporter(n: usize) -> anyhow::Result<(u64, f64, u64)> {
    let bin = Path::new("/usr/bin/prometheus-node-exporter");
    anyhow::ensure!(
        bin.exists(),
        "install it with: sudo apt-get install -y prometheus-node-exporter"
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let child = Killed(
        Command::new(bin)
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    let pid = child.0.id();
    let http = reqwest::blocking::Client::new();
    let url = format!("http://127.0.0.1:{port}/metrics");
    let deadline = Instant::now() + Duration::from_secs(10);
    while http.get(&url).send().is_err() {
        anyhow::ensure!(Instant::now() < deadline, "node exporter did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Warm: a few scrapes first.
    for _ in 0..3 {
        http.get(&url).send()?.bytes()?;
    }
    let cpu0 = cpu_time(pid)?;
    for _ in 0..n {
        http.get(&url).send()?.bytes()?;
        std::thread::sleep(Duration::from_secs(1));
    }
    let cpu = cpu_time(pid)? - cpu0;
    let (_, rss) = memory_kib(pid);
    Ok((
        rss,
        cpu.as_secs_f64() * 1e3 / n as f64,
        std::fs::metadata(bin)?.len(),
    ))
}
