//! The node agent's footprint, measured next to `prometheus-node-exporter` (Debian package) on
//! the same machine:
//!
//! - the release binary's size;
//! - steady RSS and CPU per heartbeat cycle with every check enabled and due every cycle: the
//!   systemd check over a real D-Bus daemon (with a test systemd service on it), cloudflared
//!   against a fake metrics server (the true edge), disk, memory, load; the sovereign scan runs
//!   once at start (its interval is hours) and is reported apart;
//! - node exporter: RSS and CPU per scrape, binary size.
//!
//! `cargo run --release -p vaultmesh-bench --bin agent-bench -- [CYCLES] [INTERVAL_MS]`
//! (defaults 60 cycles of 1000 ms).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use vaultmesh_bench::fleet::{Server, TOKEN};
use vaultmesh_bench::{arg_or, built_binary, cpu_time, cpu_time_precise, memory_kib};
use vaultmesh_testkit::cloudflared::{FakeCloudflared, ReadyReply};
use vaultmesh_testkit::dbus::{DbusDaemon, FakeSystemd, FakeUnit};

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

fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cycles = arg_or(1, "CYCLES", 60)?.max(2);
    // The agent's shortest heartbeat interval is 1 s.
    let interval_ms = arg_or(2, "INTERVAL_MS", 1000)?.max(1000);
    // As it ships: the `agent` profile (small before fast).
    let agent_bin = match std::env::var_os("AGENT_BENCH_BIN") {
        Some(p) => p.into(),
        None => built_binary("vaultmesh-node-agent", "vaultmesh-node-agent", "agent")?,
    };
    let size = std::fs::metadata(&agent_bin)?.len();
    println!(
        "agent-bench: {cycles} heartbeat cycles of {interval_ms} ms, every check due every cycle"
    );

    let cc = Server::start(&[])?;
    let bus = DbusDaemon::start();
    let units = [
        FakeUnit::new("cloudflared.service", "active", "running"),
        FakeUnit::new("sshd.service", "active", "running"),
        FakeUnit::new("vaultmesh-node-agent.service", "active", "running"),
    ];
    let _systemd = FakeSystemd::start(&bus.address, &units);
    let cloudflared = FakeCloudflared::start(ReadyReply::connections(4));
    let dir = tempfile::tempdir()?;
    let every = format!("{interval_ms}ms");
    // AGENT_BENCH_ONLY=disk (or `none`) keeps just that check on: the cost of each one.
    // AGENT_BENCH_SKIP=sovereign_scan,... turns checks off (the smoke test skips the scan,
    // which takes minutes in a debug build).
    let only = std::env::var("AGENT_BENCH_ONLY").ok();
    let skip = std::env::var("AGENT_BENCH_SKIP").unwrap_or_default();
    let on = |check: &str| {
        only.as_deref().is_none_or(|o| o == check) && !skip.split(',').any(|s| s == check)
    };
    let config = format!(
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
        on("systemd"),
        on("cloudflared"),
        on("disk"),
        on("memory"),
        on("load"),
        on("sovereign_scan"),
        cf = cloudflared.url()
    );
    std::fs::write(dir.path().join("agent.toml"), config)?;
    let mut agent = Command::new(&agent_bin);
    agent
        .arg("run")
        .env("VAULTMESH_CC_URL", &cc.base)
        .env("VAULTMESH_CONFIG", dir.path().join("agent.toml"))
        .env("VAULTMESH_STATE_DIR", dir.path().join("state"))
        .env("VAULTMESH_ENROLL_TOKEN", TOKEN)
        .env("VAULTMESH_OS_PROFILE", "DebianVault")
        .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    let started = Instant::now();
    let agent = Killed(agent.spawn()?);
    let pid = agent.0.id();

    // Warm-up: enrolled, first scan sent, a few cycles run.
    let http = reqwest::blocking::Client::new();
    let scanned = |http: &reqwest::blocking::Client| -> bool {
        http.get(format!("{}/api/nodes", cc.base))
            .send()
            .ok()
            .and_then(|r| r.json::<serde_json::Value>().ok())
            .and_then(|v| v.as_array()?.first()?.get("last_scan").cloned())
            .is_some_and(|s| !s.is_null())
    };
    while on("sovereign_scan") && !scanned(&http) {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(120),
            "the agent sent no scan in 120 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let scan_done = started.elapsed();
    let (scan_peak, _) = memory_kib(pid);
    let cpu_start = cpu_time(pid)?;
    std::thread::sleep(Duration::from_millis(3 * interval_ms as u64));
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
    std::thread::sleep(Duration::from_millis((cycles * interval_ms) as u64));
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
    let (peak, rss) = memory_kib(pid);
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
    let beats = (hb1 - hb0).max(1.0);
    // schedstat (ns, live threads) is the figure; /proc stat (10 ms ticks) cross-checks it.
    let per_cycle = precise1.saturating_sub(precise0).as_secs_f64() * 1e3 / beats;
    let per_cycle_ticks = (cpu1 - cpu0).as_secs_f64() * 1e3 / beats;
    drop(agent);
    println!(
        "\n  {:<36} {:>14} {:>12} {:>16}",
        "", "steady RSS", "binary", "CPU per cycle"
    );
    println!(
        "  {:<36} {:>10.1} MiB {:>8.1} MiB {:>13.2} ms",
        "vaultmesh-node-agent (all checks)",
        mib(rss),
        size as f64 / 1_048_576.0,
        per_cycle
    );
    println!(
        "    CPU per cycle from /proc/PID/stat ticks: {per_cycle_ticks:.2} ms (10 ms resolution)"
    );
    println!(
        "    {beats:.0} heartbeats in {:.1} s; peak RSS {:.1} MiB ({:.1} MiB once the start-up scan was sent, {:.1} s after start, {:.0} ms CPU up to then)",
        wall.as_secs_f64(),
        mib(peak),
        mib(scan_peak),
        scan_done.as_secs_f64(),
        cpu_start.as_secs_f64() * 1e3
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
    println!(
        "  targets: RSS <= 6 MiB, CPU <= 1.5 ms per heartbeat cycle, stripped binary <= 8 MiB"
    );
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
