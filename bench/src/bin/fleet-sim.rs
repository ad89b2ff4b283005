//! `vaultmesh-fleet-sim`: a simulated fleet against a running Command Center.
//!
//! N nodes enroll with the given token (each with a deterministic key, so a second run reuses
//! the enrollment), report once, then send signed heartbeats shaped like a real agent's (six
//! checks, two disks, all metrics), with scan reports and command round trips mixed in, at a
//! fixed rate or as fast as the server answers. Prints throughput, latency percentiles per kind
//! and errors by reason.

use std::time::Duration;

use clap::Parser;
use vaultmesh_bench::sim::{SimConfig, run};

/// Simulate a fleet of signed agents against a Command Center and measure it.
#[derive(Debug, Parser)]
#[command(
    name = "vaultmesh-fleet-sim",
    version,
    after_help = "Examples:\n  \
  vaultmesh-fleet-sim --cc http://127.0.0.1:8088 --token $TOKEN --nodes 1000 --rate 500 --duration 60s\n  \
  vaultmesh-fleet-sim --cc http://127.0.0.1:8088 --token $TOKEN --nodes 10000 --requests 100000 --presign\n\n\
Commands (--command-every) need the Command Center started with --signing-key and a policy\n\
that allows agent.ping (the shipped ones do)."
)]
struct Cli {
    /// Command Center base URL.
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:8088")]
    cc: String,
    /// Enrollment token (as given to `serve --enroll-token`); omit if the nodes are enrolled.
    #[arg(long, env = "VAULTMESH_ENROLL_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Simulated nodes.
    #[arg(long, default_value_t = 1000)]
    nodes: usize,
    /// Requests per second in total (default: as fast as the server answers).
    #[arg(long)]
    rate: Option<f64>,
    /// Timed requests in total.
    #[arg(long, conflicts_with = "duration")]
    requests: Option<usize>,
    /// How long to send at --rate (e.g. 30s, 5m).
    #[arg(long, value_parser = humantime::parse_duration, requires = "rate")]
    duration: Option<Duration>,
    /// Connections, i.e. requests in flight.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Every Nth request is a scan report (0: none).
    #[arg(long, default_value_t = 500)]
    scan_every: usize,
    /// Every Nth request is a command round trip: issue agent.ping, long-poll, signed receipt (0: none).
    #[arg(long, default_value_t = 0)]
    command_every: usize,
    /// Sign every request before the clock starts (least load-generator CPU during the run).
    #[arg(long)]
    presign: bool,
    /// Send session MACs with this Command Center key (base64; `keygen` prints it) instead of a
    /// signature per request, as agents that pin the key do.
    #[arg(long, value_name = "BASE64")]
    cc_public_key: Option<String>,
    /// Print the figures as JSON.
    #[arg(long)]
    json: bool,
    /// Instead of sending, write this many days of the fleet's past heartbeats into --log-dir,
    /// as a Command Center would have logged them (daily segments), for a Command Center
    /// started over that directory to roll up into its history.
    #[arg(long, value_name = "DAYS", requires = "log_dir")]
    backfill_days: Option<u32>,
    /// The log directory --backfill-days writes (created if missing).
    #[arg(long, value_name = "DIR", requires = "backfill_days")]
    log_dir: Option<std::path::PathBuf>,
    /// Heartbeat interval of the backfilled history.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30s", requires = "backfill_days")]
    interval: Duration,
}

fn main() {
    let cli = Cli::parse();
    if let (Some(days), Some(dir)) = (cli.backfill_days, &cli.log_dir) {
        if cli.nodes == 0 || days == 0 || cli.interval.is_zero() {
            eprintln!("error: --nodes, --backfill-days and --interval must be positive");
            std::process::exit(2);
        }
        match vaultmesh_bench::backfill::backfill(
            dir,
            cli.nodes,
            days,
            cli.interval,
            chrono::Utc::now(),
        ) {
            Ok(b) => println!(
                "wrote {} heartbeats ({:.0} MiB) from {} nodes over {days} days into {} ({} rotated segments)",
                b.lines,
                b.bytes as f64 / 1048576.0,
                cli.nodes,
                dir.display(),
                b.segments
            ),
            Err(e) => {
                eprintln!("error: {e:#}");
                std::process::exit(1);
            }
        }
        return;
    }
    let requests = match (cli.requests, cli.duration, cli.rate) {
        (Some(n), _, _) => n,
        (None, Some(d), Some(rate)) => (d.as_secs_f64() * rate).round() as usize,
        _ => 10_000,
    };
    if cli.nodes == 0 || cli.concurrency == 0 || cli.rate.is_some_and(|r| r.is_nan() || r <= 0.0) {
        eprintln!("error: --nodes, --concurrency and --rate must be positive");
        std::process::exit(2);
    }
    let config = SimConfig {
        base: cli.cc.trim_end_matches('/').to_string(),
        token: cli.token,
        nodes: cli.nodes,
        requests,
        rate: cli.rate,
        concurrency: cli.concurrency,
        scan_every: cli.scan_every,
        command_every: cli.command_every,
        presign: cli.presign,
        cc_public_key: cli.cc_public_key,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    match runtime.block_on(run(&config)) {
        Ok(report) if cli.json => println!("{}", report.to_json()),
        Ok(report) => print!("{}", report.render()),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}
