//! The node agent's footprint, measured next to `prometheus-node-exporter` (Debian package) on
//! the same machine:
//!
//! - the shipped binary's size (stripped, `--profile agent`);
//! - steady RSS and CPU per heartbeat cycle with every check enabled and due every cycle: the
//!   systemd check over a real D-Bus daemon (with a test systemd service on it), cloudflared
//!   against a fake metrics server (the true edge), disk, memory, load, cpu, net, diskio; the
//!   sovereign scan runs once at start (its interval is hours) and is reported apart;
//! - node exporter: RSS and CPU per scrape, binary size;
//! - each figure beside issue 24's goal and the figure before it.
//!
//! `cargo run --release -p vaultmesh-bench --bin agent-bench -- [CYCLES] [INTERVAL_MS]`
//! (defaults 60 cycles of 1000 ms). `AGENT_BENCH_MUSL=1` also builds the static musl agent
//! (`--target x86_64-unknown-linux-musl`; or give the path of one) and measures it the same
//! way, side by side;
//! `AGENT_BENCH_BEFORE=PATH` measures another agent binary (an older build) in the same run.
//!
//! Then **each check's CPU per run, alone**: every built-in check, in a process of its own
//! (this binary again), built from the same configuration through the agent's registry and run
//! the way the agent's scheduler runs it (`run_isolated` on a current-thread runtime), once to
//! warm up (a connection, a first read) and then `min(CYCLES, 20)` times 1.1 s apart (the
//! scan: 3 times). The figure is the process's CPU time (`CLOCK_PROCESS_CPUTIME_ID`: every
//! thread, the blocking pool's too) across each run, so nothing else the agent does (the
//! heartbeat, other checks) is in it. It is compiled in this binary's profile (release:
//! opt-level 3), not the agent's `s`. `AGENT_BENCH_PER_CHECK=0` skips the table, `=only` prints
//! just it.
//!
//! Each agent runs with the malloc settings its unit gives it (`GLIBC_TUNABLES` from
//! `systemd/vaultmesh-node-agent.service`), as it does on a node; the `AGENT_BENCH_BEFORE` build
//! without them, as its unit ran it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use vaultmesh_bench::fleet::{Server, TOKEN};
use vaultmesh_bench::{
    NodeExporter, arg_or, built_binary, built_binary_for, cpu_time, cpu_time_precise, memory_kib,
};
use vaultmesh_testkit::agent_unit_env;
// The per-check table builds the checks through the registry; link them.
use vaultmesh_checks as _;
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
    /// The Command Center the agents report to; none when only the per-check table is made
    /// (its children never call it).
    cc: Option<Server>,
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

[checks.cpu]
enabled = {}
interval = "{every}"

[checks.net]
enabled = {}
interval = "{every}"

[checks.diskio]
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
            self.on("cpu"),
            self.on("net"),
            self.on("diskio"),
            self.on("sovereign_scan"),
            cf = self.cloudflared_url
        )
    }

    /// Runs `agent_bin` as a node of its own (a new state directory) and measures it.
    /// `unit_env`: with the unit's `GLIBC_TUNABLES`.
    fn measure(&self, agent_bin: &Path, unit_env: bool) -> anyhow::Result<Figures> {
        let cc = self
            .cc
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("no Command Center"))?;
        let interval_ms = self.interval_ms as u64;
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
        // At least 6 s: the blocking threads that ran the scan idle out after 5 s (the agent's
        // `thread_keep_alive`), and a thread that exits during the window takes its CPU time
        // out of the schedstat sum (the figure came out 0.00 ms once).
        std::thread::sleep(Duration::from_millis((3 * interval_ms).max(6000)));
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

/// Set in the process that measures one check: its name.
const CHILD: &str = "AGENT_BENCH_CHECK_COST";
/// Runs the child makes (after one to warm up).
const CHILD_RUNS: &str = "AGENT_BENCH_CHECK_COST_RUNS";
/// Pause between two runs: checks run on intervals, not back to back. Longer than the rate
/// checks' shortest window (1 s), so no run waits inside itself (the agent's shortest interval
/// is 1 s too).
const CHILD_PAUSE: Duration = Duration::from_millis(1100);

/// This process's CPU time so far, every thread's (including those that have exited).
fn process_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}

/// One check's cost, as the child measured it.
struct CheckCost {
    name: String,
    runs: usize,
    mean_ms: f64,
    median_ms: f64,
    max_ms: f64,
    status: String,
    summary: String,
}

/// In the child: builds check `name` from `VAULTMESH_CONFIG` through the registry, runs it once
/// to warm up, then measures `AGENT_BENCH_CHECK_COST_RUNS` runs; prints one JSON line.
fn check_cost_child(name: &str) -> anyhow::Result<()> {
    use vaultmesh_agent_core::config::AgentConfig;
    use vaultmesh_agent_core::{CheckContext, registry, scheduler};

    let runs: usize = std::env::var(CHILD_RUNS)?.parse()?;
    let config_path = std::env::var_os("VAULTMESH_CONFIG").map(PathBuf::from);
    let config =
        AgentConfig::load(config_path.as_deref()).map_err(|e| anyhow::anyhow!("config: {e}"))?;
    // The agent's runtime: one thread, tokio's blocking pool for what may block.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_keep_alive(Duration::from_secs(5))
        .build()?;
    runtime.block_on(async {
        let checks = registry::configure(&config).map_err(|e| anyhow::anyhow!("{e}"))?;
        let check = checks
            .iter()
            .find(|c| c.name() == name)
            .ok_or_else(|| anyhow::anyhow!("no check {name:?} in this build"))?;
        let ctx = CheckContext {
            os_profile: config.os_profile.clone(),
            config_file: config.source.clone(),
            ..CheckContext::new(uuid::Uuid::nil(), config.vaultmesh_root.clone())
        };
        scheduler::run_isolated(check, &ctx).await;
        let mut costs = Vec::with_capacity(runs);
        let mut last = None;
        for _ in 0..runs {
            tokio::time::sleep(CHILD_PAUSE).await;
            let before = process_cpu();
            let run = scheduler::run_isolated(check, &ctx).await;
            costs.push((process_cpu() - before).as_secs_f64() * 1e3);
            last = Some(run.result);
        }
        let last = last.ok_or_else(|| anyhow::anyhow!("no runs"))?;
        costs.sort_by(f64::total_cmp);
        println!(
            "{}",
            serde_json::json!({
                "runs": runs,
                "mean_ms": costs.iter().sum::<f64>() / runs as f64,
                "median_ms": costs[runs / 2],
                "max_ms": costs[runs - 1],
                "status": last.status.as_str(),
                "summary": last.summary,
            })
        );
        Ok(())
    })
}

/// Each check of this build measured alone, one child process each, one after the other.
fn per_check_costs(rig: &Rig) -> anyhow::Result<Vec<CheckCost>> {
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, rig.config())?;
    let mut out = Vec::new();
    for name in vaultmesh_checks::built_in() {
        if !rig.on(name) {
            continue;
        }
        // The scan takes a large fraction of a second each time; its interval is hours.
        let runs = if name == "sovereign_scan" {
            3
        } else {
            rig.cycles.min(20)
        };
        let child = Command::new(std::env::current_exe()?)
            .env(CHILD, name)
            .env(CHILD_RUNS, runs.to_string())
            .env("VAULTMESH_CONFIG", &config)
            .env(
                "VAULTMESH_CC_URL",
                rig.cc
                    .as_ref()
                    .map_or("http://127.0.0.1:9", |cc| cc.base.as_str()),
            )
            .env("VAULTMESH_STATE_DIR", dir.path().join("state"))
            .env("VAULTMESH_OS_PROFILE", "DebianVault")
            .env("DBUS_SYSTEM_BUS_ADDRESS", &rig.bus.address)
            .env("RUST_LOG", "warn")
            .env(
                "GLIBC_TUNABLES",
                agent_unit_env("GLIBC_TUNABLES").unwrap_or_default(),
            )
            .stderr(Stdio::inherit())
            .output()?;
        anyhow::ensure!(
            child.status.success(),
            "measuring {name} failed: {}",
            child.status
        );
        let v: serde_json::Value = serde_json::from_slice(&child.stdout)?;
        let f = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
        out.push(CheckCost {
            name: name.to_string(),
            runs,
            mean_ms: f("mean_ms"),
            median_ms: f("median_ms"),
            max_ms: f("max_ms"),
            status: v["status"].as_str().unwrap_or("?").to_string(),
            summary: v["summary"].as_str().unwrap_or("").to_string(),
        });
    }
    Ok(out)
}

fn print_check_costs(costs: &[CheckCost]) {
    println!(
        "\n  CPU per run, each check alone (in-process, as the scheduler runs it; release build):"
    );
    println!(
        "  {:<16} {:>6} {:>12} {:>12} {:>12}   last result",
        "check", "runs", "mean", "median", "max"
    );
    for c in costs {
        let summary: String = c.summary.chars().take(70).collect();
        println!(
            "  {:<16} {:>6} {:>9.3} ms {:>9.3} ms {:>9.3} ms   {} {}",
            c.name, c.runs, c.mean_ms, c.median_ms, c.max_ms, c.status, summary
        );
    }
}

fn main() -> anyhow::Result<()> {
    if let Ok(name) = std::env::var(CHILD) {
        return check_cost_child(&name);
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cycles = arg_or(1, "CYCLES", 60)?.max(2);
    // The agent's shortest heartbeat interval is 1 s.
    let interval_ms = arg_or(2, "INTERVAL_MS", 1000)?.max(1000);
    let per_check = std::env::var("AGENT_BENCH_PER_CHECK").unwrap_or_default();
    // As it ships: the `agent` profile (small before fast); not needed for the table alone.
    let agent_bin: PathBuf = match std::env::var_os("AGENT_BENCH_BIN") {
        Some(p) => p.into(),
        None if per_check == "only" => PathBuf::new(),
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
        cc: if per_check == "only" {
            None
        } else {
            Some(Server::start(&[])?)
        },
        bus,
        cloudflared_url: cloudflared.url(),
        cycles,
        interval_ms,
        only: std::env::var("AGENT_BENCH_ONLY").ok(),
        skip: std::env::var("AGENT_BENCH_SKIP").unwrap_or_default(),
    };
    if per_check == "only" {
        print_check_costs(&per_check_costs(&rig)?);
        return Ok(());
    }
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
    if per_check != "0" {
        print_check_costs(&per_check_costs(&rig)?);
    }
    Ok(())
}

/// Starts `prometheus-node-exporter` on a loopback port and scrapes it `n` times, one a second;
/// (steady RSS KiB, CPU ms per scrape, binary bytes).
fn node_exporter(n: usize) -> anyhow::Result<(u64, f64, u64)> {
    let http = reqwest::blocking::Client::new();
    let exporter = NodeExporter::start(&http)?;
    let (pid, url) = (exporter.pid(), &exporter.url);
    // Warm: a few scrapes first.
    for _ in 0..3 {
        http.get(url).send()?.bytes()?;
    }
    let cpu0 = cpu_time(pid)?;
    for _ in 0..n {
        http.get(url).send()?.bytes()?;
        std::thread::sleep(Duration::from_secs(1));
    }
    let cpu = cpu_time(pid)? - cpu0;
    let (_, rss) = memory_kib(pid);
    Ok((
        rss,
        cpu.as_secs_f64() * 1e3 / n as f64,
        std::fs::metadata(&exporter.binary)?.len(),
    ))
}
