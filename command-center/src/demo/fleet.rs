//! The demo's simulated fleet: `demo --nodes N` adds N nodes beside this host's real agent,
//! each talking to the Command Center exactly as an agent does — its own node id and Ed25519
//! key (kept under the demo's `fleet/<hostname>/`, so a restart is the same fleet), enrolled
//! with the demo's token, then signed (session-MAC'd) heartbeats and scan reports over loopback
//! HTTP through the agent's own client (`vaultmesh_agent_core::client::CcClient`). Each
//! answers commands through the agent's own runner and long-poll (verified against the pinned
//! Command Center key, a signed and chained receipt for every one); it runs only
//! [`ALLOWED_ACTIONS`] and refuses the rest with a signed `rejected` receipt, as an agent whose
//! `[commands] allow` lists only those does.
//!
//! What they report is made up, but shaped like the real checks' results (the same summaries,
//! metrics and unit details), and each node has a role that makes one thing happen over time —
//! a disk that is full, one that fills and is cleaned, a unit that fails and recovers, a busy
//! CPU, drift between scans, a node that stops heartbeating and comes back — so each produces
//! its intended attention reason under its profile's policy and nothing it does not mean.
//! Each carries `site` and `role` labels read off its hostname ([`labels`]), so the console
//! groups the fleet by site.
//! Time is counted in heartbeat intervals (ticks), so `--interval` speeds the whole story up.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use vaultmesh_agent_core::action::ActionContext;
use vaultmesh_agent_core::client::{CcClient, ClientError};
use vaultmesh_agent_core::commands::CommandRunner;
use vaultmesh_agent_core::identity::{self, IdentityError};
use vaultmesh_agent_core::scans::ScanOutbox;
use vaultmesh_agent_core::{CheckContext, runtime::command_loop};
use vaultmesh_proto::scan::{Fingerprint, count_findings};
use vaultmesh_proto::{CheckResult, CheckStatus, DiskUsage, Metrics, NodeHeartbeat, ScanReport};

/// The most simulated nodes `demo --nodes` takes.
pub const MAX_NODES: u32 = 200;

/// The actions a simulated node runs (its `[commands] allow`): `agent.ping` answers without
/// touching this host. Whatever else a policy lets the Command Center sign (a check, a scan, a
/// unit's state) would run on the machine the demo runs on, so it is refused, with a receipt.
pub const ALLOWED_ACTIONS: [&str; 1] = ["agent.ping"];

/// Connections each simulated node keeps to the Command Center (heartbeats, the long-poll),
/// whose client ends are files of the demo's process too.
pub const CONNECTIONS_PER_NODE: usize = 2;

/// What a simulated node is there to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Everything as its profile asks: OK.
    Healthy,
    /// `/` between 96 and 98% full: `threshold.disk` (and the disk check) CRIT.
    FullDisk,
    /// `nginx.service` fails for a while, then recovers: `services` CRIT, then OK.
    FailingUnit,
    /// A 5-minute load of 2.2–2.8 per CPU: `threshold.load` (and the load check) ATTN.
    HighLoad,
    /// Stops heartbeating after two heartbeats and comes back much later: `stale` ATTN, CRIT.
    Stale,
    /// Each scan changes two hashed files from the previous one: `drift` ATTN.
    Drift,
    /// A data disk filling from 78% (ATTN at 85%, CRIT at 95%), then cleaned to 61%.
    FillingDisk,
}

/// One simulated node: who it says it is and what it shows.
#[derive(Debug, Clone, PartialEq)]
pub struct Blueprint {
    pub hostname: String,
    pub profile: &'static str,
    pub role: Role,
    pub cpus: u32,
    pub mem_gib: u64,
}

/// The first twelve nodes: every role once, and healthy nodes of every profile.
const ROSTER: [(&str, &str, Role, u32, u64); 12] = [
    ("fra1-vault-01", "ArchVault", Role::Healthy, 4, 8),
    ("fra1-vault-02", "ArchVault", Role::FullDisk, 4, 8),
    ("ams1-edge-01", "DebianVault", Role::FailingUnit, 2, 4),
    ("ams1-build-01", "DebianVault", Role::HighLoad, 8, 32),
    ("lab-pi-03", super::policy::PROFILE, Role::Stale, 4, 4),
    ("nyc1-vault-01", "ArchVault", Role::Drift, 4, 8),
    ("nyc1-db-01", "DebianVault", Role::FillingDisk, 8, 64),
    ("sgp1-vault-01", "Generic", Role::Healthy, 2, 4),
    ("lab-nas-01", super::policy::PROFILE, Role::Healthy, 4, 16),
    ("fra1-vault-03", "ArchVault", Role::Healthy, 4, 8),
    ("ams1-edge-02", "DebianVault", Role::Healthy, 2, 4),
    ("nyc1-cache-01", "Generic", Role::Healthy, 4, 16),
];

/// The fleet of `n` nodes: [`ROSTER`] first, then healthy nodes across the sites and profiles.
pub fn roster(n: usize) -> Vec<Blueprint> {
    const SITES: [&str; 4] = ["fra1", "ams1", "nyc1", "sgp1"];
    const PROFILES: [&str; 3] = ["ArchVault", "DebianVault", "Generic"];
    (0..n)
        .map(|i| match ROSTER.get(i) {
            Some(&(hostname, profile, role, cpus, mem_gib)) => Blueprint {
                hostname: hostname.to_string(),
                profile,
                role,
                cpus,
                mem_gib,
            },
            None => Blueprint {
                hostname: format!("{}-node-{:03}", SITES[i % SITES.len()], i + 1),
                profile: PROFILES[i % PROFILES.len()],
                role: Role::Healthy,
                cpus: 4,
                mem_gib: 8,
            },
        })
        .collect()
}

/// Units a node of `profile` must run (its policy's `[services] required`); the systemd check
/// of every simulated node watches them, its agent and its role's extra unit.
fn required_units(profile: &str) -> &'static [&'static str] {
    match profile {
        "ArchVault" => &["sshd.service", "cloudflared.service"],
        "DebianVault" => &["ssh.service", "cloudflared.service"],
        _ => &[],
    }
}

/// Ticks in one round of the changing roles.
const CYCLE: u64 = 48;
/// A [`Role::FailingUnit`] node's unit is failed for ticks `FAILED.0..FAILED.1` of a cycle.
const FAILED: (u64, u64) = (3, 36);
/// A [`Role::Stale`] node heartbeats for ticks `0..2` and `ALIVE_AGAIN..STALE_CYCLE`.
const STALE_CYCLE: u64 = 144;
const ALIVE_AGAIN: u64 = 120;
/// A [`Role::Drift`] node scans at tick 0, at [`DRIFT_FIRST`] and then every [`DRIFT_EVERY`].
const DRIFT_FIRST: u64 = 3;
const DRIFT_EVERY: u64 = 24;
/// Every other node scans at tick 0 and then about this often, whatever the interval, so its
/// latest scan is never older than its profile's scan interval (6 hours at the least) and the
/// Command Center never schedules one (`scan.sovereign` is not in [`ALLOWED_ACTIONS`]).
const SCAN_EVERY: Duration = Duration::from_secs(3600);

/// [`SCAN_EVERY`] in ticks of `interval`.
fn scan_every(interval: Duration) -> u64 {
    (SCAN_EVERY.as_secs() / interval.as_secs().max(1)).max(1)
}

/// Whether the node sends a heartbeat at `tick`.
pub fn heartbeats_at(role: Role, tick: u64) -> bool {
    role != Role::Stale || {
        let t = tick % STALE_CYCLE;
        !(2..ALIVE_AGAIN).contains(&t)
    }
}

/// Whether the node sends a scan report at `tick` (every `every` ticks but for drift).
fn scans_at(role: Role, tick: u64, every: u64) -> bool {
    match role {
        Role::Drift => {
            tick == 0 || (tick >= DRIFT_FIRST && (tick - DRIFT_FIRST).is_multiple_of(DRIFT_EVERY))
        }
        _ => tick.is_multiple_of(every),
    }
}

/// Deterministic noise in `0..1` for (node, tick, field).
fn noise(node: usize, tick: u64, field: u64) -> f64 {
    let mut z = (node as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ^ tick.rotate_left(20)
        ^ field.rotate_left(40);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    ((z ^ (z >> 31)) % 1_000_000) as f64 / 1_000_000.0
}

/// What a node measures at `tick`.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    /// 1, 5 and 15-minute load averages.
    pub load: [f64; 3],
    pub mem_used_pct: f64,
    /// `/`, % used.
    pub root_pct: f64,
    /// `/var/lib/vaultmesh`, % used.
    pub data_pct: f64,
    /// The role's unit (`nginx.service`) is failed.
    pub unit_failed: bool,
}

/// The measurements of node `i` with blueprint `bp` at `tick`.
pub fn reading(i: usize, bp: &Blueprint, tick: u64) -> Reading {
    let phase = tick % CYCLE;
    let wave = (tick as f64 / 7.0 + i as f64).sin();
    let cpus = f64::from(bp.cpus);
    let per_cpu5 = match bp.role {
        Role::HighLoad => 2.45 + 0.3 * wave,
        _ => 0.25 + 0.15 * wave + 0.05 * noise(i, tick, 1),
    };
    let round2 = |v: f64| (v * 100.0).round() / 100.0;
    let load5 = round2(per_cpu5 * cpus);
    let load = [
        round2((per_cpu5 + 0.2 * (noise(i, tick, 2) - 0.5)).max(0.0) * cpus),
        load5,
        round2(per_cpu5 * 0.9 * cpus),
    ];
    let root_pct = match bp.role {
        Role::FullDisk => 96.0 + 0.1 * (tick % 20) as f64,
        _ => 38.0 + 4.0 * (i % 7) as f64 + 0.01 * (tick % 100) as f64,
    };
    let data_pct = match bp.role {
        Role::FillingDisk if phase < 40 => 78.0 + 0.5 * phase as f64,
        Role::FillingDisk => 61.0 + 0.2 * (phase - 40) as f64,
        _ => 20.0 + 5.0 * (i % 5) as f64 + 0.5 * noise(i, tick, 3),
    };
    Reading {
        load,
        mem_used_pct: 30.0 + 3.0 * (i % 9) as f64 + 2.0 * noise(i, tick, 4),
        root_pct,
        data_pct,
        unit_failed: bp.role == Role::FailingUnit && (FAILED.0..FAILED.1).contains(&phase),
    }
}

/// One simulated node: its identity and the client it speaks through.
struct SimNode {
    index: usize,
    blueprint: Blueprint,
    node_id: Uuid,
    public_key: String,
    state_dir: PathBuf,
    client: CcClient,
    /// Runs (or refuses) the commands it is sent, and signs their receipts.
    runner: Arc<CommandRunner>,
    /// When its (made-up) services started, for uptime and the units' timestamps.
    booted: DateTime<Utc>,
    /// The latest scan it sent in this run.
    last_scan: Option<vaultmesh_proto::heartbeat::LastScan>,
    scans_sent: u64,
}

/// Why the simulated fleet could not start.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("simulated node {hostname}: {source}")]
    Identity {
        hostname: String,
        source: IdentityError,
    },
    #[error("simulated node {hostname}: {source}")]
    Client {
        hostname: String,
        source: ClientError,
    },
}

/// Where the fleet lives and whom it talks to.
#[derive(Debug, Clone)]
pub struct FleetOptions {
    /// The Command Center's URL.
    pub base: String,
    /// The demo's enrollment token.
    pub token: String,
    /// The Command Center's command-signing public key (base64), pinned as an agent does.
    pub cc_public: String,
    /// `<data dir>/fleet`: one directory per node, named by its hostname.
    pub dir: PathBuf,
    pub nodes: usize,
    pub interval: Duration,
}

/// Loads (or creates) every node's identity and starts one task per node; they run until
/// `cancel` fires.
pub fn start(
    opts: &FleetOptions,
    cancel: &CancellationToken,
) -> Result<tokio::task::JoinSet<()>, FleetError> {
    let mut tasks = tokio::task::JoinSet::new();
    let nodes = roster(opts.nodes);
    let count = nodes.len().max(1) as u32;
    for (index, blueprint) in nodes.into_iter().enumerate() {
        let node = SimNode::open(index, blueprint, opts)?;
        // Spread the fleet over one interval so it does not post in lockstep.
        let offset = opts
            .interval
            .mul_f64(f64::from(index as u32) / f64::from(count));
        let (interval, token, cancel) = (opts.interval, opts.token.clone(), cancel.clone());
        tasks.spawn(node.run(offset, interval, token, cancel));
    }
    Ok(tasks)
}

impl SimNode {
    fn open(
        index: usize,
        blueprint: Blueprint,
        opts: &FleetOptions,
    ) -> Result<SimNode, FleetError> {
        let hostname = blueprint.hostname.clone();
        let identity_err = |source| FleetError::Identity {
            hostname: hostname.clone(),
            source,
        };
        let state_dir = opts.dir.join(&blueprint.hostname);
        let node_id = identity::load_or_create_node_id(&state_dir).map_err(identity_err)?;
        let key = identity::load_or_create_node_key(&state_dir).map_err(identity_err)?;
        let public_key = key.public_base64();
        let mut check_ctx = CheckContext::new(node_id, "/var/lib/vaultmesh");
        check_ctx.os_profile = blueprint.profile.to_string();
        let runner = CommandRunner::new(
            node_id,
            key.clone(),
            Some(&opts.cc_public),
            &ALLOWED_ACTIONS.map(String::from),
            &state_dir,
            ActionContext {
                check_ctx,
                checks: Arc::default(),
                service: Arc::default(),
            },
        )
        .map_err(identity_err)?;
        let client = CcClient::new(&opts.base, Duration::from_secs(10), node_id, key, None)
            .map_err(|source| FleetError::Client {
                hostname: hostname.clone(),
                source,
            })?
            .with_sessions(&opts.cc_public);
        let booted = Utc::now()
            - chrono::Duration::seconds(86_400 * (1 + index as i64 % 40) + 3_600 * index as i64);
        Ok(SimNode {
            index,
            blueprint,
            node_id,
            public_key,
            state_dir,
            client,
            runner: Arc::new(runner),
            booted,
            last_scan: None,
            scans_sent: 0,
        })
    }

    /// Heartbeats (and scans) every `interval` after `offset`, and once enrolled answers
    /// commands, until `cancel` fires.
    async fn run(
        self,
        offset: Duration,
        interval: Duration,
        token: String,
        cancel: CancellationToken,
    ) {
        let mut commands = None;
        tokio::select! {
            () = cancel.cancelled() => {}
            () = self.report(offset, interval, &token, &mut commands, &cancel) => {}
        }
        if let Some(task) = commands {
            let _ = task.await;
        }
    }

    async fn report(
        mut self,
        offset: Duration,
        interval: Duration,
        token: &str,
        commands: &mut Option<tokio::task::JoinHandle<()>>,
        cancel: &CancellationToken,
    ) {
        tokio::time::sleep(offset).await;
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // A scan that could not go out (the heartbeat before it failed) goes with a later one.
        let mut scan_due = false;
        for tick in 0u64.. {
            ticker.tick().await;
            if !heartbeats_at(self.blueprint.role, tick) {
                continue;
            }
            scan_due |= scans_at(self.blueprint.role, tick, scan_every(interval));
            let hb = self.heartbeat(tick, Utc::now());
            if let Err(e) = self.send_heartbeat(&hb, token).await {
                tracing::warn!(node = %self.blueprint.hostname, error = %e, "Simulated node: heartbeat failed.");
                continue;
            }
            // Enrolled: take commands, as an agent does (a node that stops heartbeating is
            // gone, and takes none).
            if commands.is_none() && self.blueprint.role != Role::Stale {
                *commands = Some(tokio::spawn(command_loop(
                    self.client.clone(),
                    Arc::clone(&self.runner),
                    ScanOutbox::in_memory(),
                    cancel.clone(),
                )));
            }
            // The Command Center takes scans only from nodes it has heard from.
            if scan_due {
                let report = self.scan(Utc::now());
                match self.client.post_scan(&report).await {
                    Ok(_) => {
                        self.last_scan = Some(report.last_scan());
                        self.scans_sent += 1;
                        scan_due = false;
                    }
                    Err(e) => {
                        tracing::warn!(node = %self.blueprint.hostname, error = %e, "Simulated node: scan report failed.");
                    }
                }
            }
        }
    }

    /// Enrolls unless this key is recorded as enrolled, then sends; a key the Command Center
    /// no longer knows is enrolled again, once, as the agent does.
    async fn send_heartbeat(&self, hb: &NodeHeartbeat, token: &str) -> Result<(), ClientError> {
        self.ensure_enrolled(token).await?;
        match self.client.post_heartbeat(hb).await {
            Err(e) if e.is_unauthorized() => {
                identity::forget_enrollment(&self.state_dir);
                self.ensure_enrolled(token).await?;
                self.client.post_heartbeat(hb).await.map(|_| ())
            }
            other => other.map(|_| ()),
        }
    }

    async fn ensure_enrolled(&self, token: &str) -> Result<(), ClientError> {
        if identity::is_enrolled(&self.state_dir, &self.public_key) {
            return Ok(());
        }
        let bp = &self.blueprint;
        self.client.enroll(&bp.hostname, bp.profile, token).await?;
        if let Err(e) = identity::mark_enrolled(&self.state_dir, &self.public_key) {
            tracing::warn!(node = %bp.hostname, error = %e, "Simulated node: cannot record its enrollment.");
        }
        Ok(())
    }

    fn heartbeat(&self, tick: u64, now: DateTime<Utc>) -> NodeHeartbeat {
        heartbeat(
            self.index,
            &self.blueprint,
            self.node_id,
            tick,
            now,
            self.booted,
            self.last_scan.clone(),
        )
    }

    fn scan(&self, now: DateTime<Utc>) -> ScanReport {
        scan(&self.blueprint, self.node_id, self.scans_sent % 2 == 1, now)
    }
}

const GIB: u64 = 1 << 30;

fn check(
    name: &str,
    status: CheckStatus,
    summary: String,
    now: DateTime<Utc>,
    metrics: &[(&str, f64)],
    details: serde_json::Value,
) -> CheckResult {
    CheckResult {
        name: name.to_string(),
        status,
        summary,
        observed_at: now,
        duration_ms: 1,
        metrics: metrics.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        details,
    }
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

/// Node `i`'s heartbeat at `tick`: the seed fields, the metrics and the six checks' results
/// as the real checks would report these measurements with their default thresholds.
pub fn heartbeat(
    i: usize,
    bp: &Blueprint,
    node_id: Uuid,
    tick: u64,
    now: DateTime<Utc>,
    booted: DateTime<Utc>,
    last_scan: Option<vaultmesh_proto::heartbeat::LastScan>,
) -> NodeHeartbeat {
    let r = reading(i, bp, tick);
    let classify = |v: f64, warn: f64, crit: f64| {
        if v >= crit {
            CheckStatus::Crit
        } else if v >= warn {
            CheckStatus::Warn
        } else {
            CheckStatus::Ok
        }
    };

    // disk: `/` and `/var/lib/vaultmesh`, warn 85%, crit 95% (the check's defaults).
    let disk = |mount: &str, fs: &str, total_gib: u64, pct: f64| DiskUsage {
        mount: mount.to_string(),
        fs: fs.to_string(),
        total_bytes: total_gib * GIB,
        used_bytes: (total_gib as f64 * GIB as f64 * pct / 100.0) as u64,
        inodes_total: Some(6_553_600),
        inodes_used: Some(400_000 + 1_000 * i as u64),
    };
    let disks = vec![
        disk("/", "ext4", 100, r.root_pct),
        disk("/var/lib/vaultmesh", "xfs", 500, r.data_pct),
    ];
    let mut problems: Vec<(CheckStatus, f64, String)> = disks
        .iter()
        .filter_map(|d| {
            let pct = d.used_bytes as f64 * 100.0 / d.total_bytes as f64;
            let s = classify(pct, 85.0, 95.0);
            let limit = if s == CheckStatus::Crit { 95 } else { 85 };
            (s != CheckStatus::Ok).then(|| {
                (
                    s,
                    pct,
                    format!("{} is {}% full (≥ {limit}%)", d.mount, round1(pct)),
                )
            })
        })
        .collect();
    problems.sort_by(|a, b| {
        b.0.severity()
            .cmp(&a.0.severity())
            .then(b.1.total_cmp(&a.1))
    });
    let max_pct = r.root_pct.max(r.data_pct);
    let max_mount = if r.root_pct >= r.data_pct {
        "/"
    } else {
        "/var/lib/vaultmesh"
    };
    let disk_status = problems
        .iter()
        .map(|p| p.0)
        .fold(CheckStatus::Ok, CheckStatus::worst);
    let disk_summary = if problems.is_empty() {
        format!("2 filesystems, fullest {max_mount} at {}%", round1(max_pct))
    } else {
        problems
            .iter()
            .map(|p| p.2.as_str())
            .collect::<Vec<_>>()
            .join("; ")
    };

    // load: the 5-minute window, warn 1.5, crit 3.0 per CPU.
    let cpus = f64::from(bp.cpus);
    let per = r.load.map(|l| (l / cpus * 100.0).round() / 100.0);
    let load_summary = format!(
        "load {:.2} {:.2} {:.2} on {} CPUs (5m: {:.2} per CPU)",
        r.load[0], r.load[1], r.load[2], bp.cpus, per[1]
    );

    // memory: warn 90%, crit 97%.
    let mem_total = bp.mem_gib * GIB;
    let mem_used = (mem_total as f64 * r.mem_used_pct / 100.0) as u64;
    let mem_summary = format!(
        "memory {}% used ({:.1} GiB of {:.1} GiB), no swap",
        round1(r.mem_used_pct),
        mem_used as f64 / GIB as f64,
        mem_total as f64 / GIB as f64
    );

    // systemd: the required units, the agent, and the role's nginx on the edge nodes.
    let mut units: Vec<&str> = required_units(bp.profile).to_vec();
    units.push("vaultmesh-node-agent.service");
    if bp.role == Role::FailingUnit || bp.hostname.contains("edge") {
        units.push("nginx.service");
    }
    units.sort_unstable();
    let since_us = |t: DateTime<Utc>| u64::try_from(t.timestamp_micros()).unwrap_or(0);
    let unit_details: Vec<serde_json::Value> = units
        .iter()
        .map(|&name| {
            let failed = r.unit_failed && name == "nginx.service";
            json!({
                "name": name,
                "load_state": "loaded",
                "active_state": if failed { "failed" } else { "active" },
                "sub_state": if failed { "failed" } else { "running" },
                "active_enter_us": since_us(booted),
                "inactive_enter_us": if failed { since_us(now) } else { 0 },
                "restarts": if failed { 5 } else { 0 },
                "expect": "active",
                "status": if failed { "crit" } else { "ok" },
            })
        })
        .collect();
    let (systemd_status, systemd_summary) = if r.unit_failed {
        (
            CheckStatus::Crit,
            "nginx.service failed (failed)".to_string(),
        )
    } else {
        (
            CheckStatus::Ok,
            format!("{} units as expected", units.len()),
        )
    };
    let active = units.len() as f64 - if r.unit_failed { 1.0 } else { 0.0 };

    let mut checks = vec![
        check(
            "cloudflared",
            CheckStatus::Ok,
            "tunnel up: 4 ready connections".into(),
            now,
            &[("ready_connections", 4.0)],
            json!({"connector_id": Uuid::from_u128(node_id.as_u128() ^ 0xc0ff_ee00)}),
        ),
        check(
            "disk",
            disk_status,
            disk_summary,
            now,
            &[
                ("filesystems", 2.0),
                ("max_used_pct", round1(max_pct)),
                ("max_inodes_used_pct", 6.3),
            ],
            serde_json::Value::Null,
        ),
        check(
            "load",
            classify(per[1], 1.5, 3.0),
            load_summary,
            now,
            &[
                ("load1_per_cpu", per[0]),
                ("load5_per_cpu", per[1]),
                ("load15_per_cpu", per[2]),
            ],
            serde_json::Value::Null,
        ),
        check(
            "memory",
            classify(r.mem_used_pct, 90.0, 97.0),
            mem_summary,
            now,
            &[("used_pct", round1(r.mem_used_pct))],
            serde_json::Value::Null,
        ),
        check(
            "systemd",
            systemd_status,
            systemd_summary,
            now,
            &[
                ("units", units.len() as f64),
                ("active", active),
                ("failed", if r.unit_failed { 1.0 } else { 0.0 }),
                ("restarts", if r.unit_failed { 5.0 } else { 0.0 }),
            ],
            json!({ "units": unit_details }),
        ),
    ];
    // Until its first scan the node has no sovereign_scan result, as an agent whose first
    // scan is still running; then the scan's verdict (no findings).
    if last_scan.is_some() {
        checks.push(check(
            "sovereign_scan",
            CheckStatus::Ok,
            "no findings from 6 rules".into(),
            now,
            &[("findings", 0.0)],
            serde_json::Value::Null,
        ));
    }
    NodeHeartbeat {
        node_id,
        hostname: bp.hostname.clone(),
        os_profile: bp.profile.to_string(),
        cloudflare_ok: true,
        services_ok: !r.unit_failed,
        vaultmesh_root: "/var/lib/vaultmesh".into(),
        timestamp: now,
        agent_version: Some(vaultmesh_agent_core::AGENT_VERSION.to_string()),
        seq: Some((u64::try_from(now.timestamp_millis()).unwrap_or(0)).to_string()),
        uptime_s: u64::try_from((now - booted).num_seconds()).ok(),
        metrics: Some(Metrics {
            load: Some(r.load),
            cpu_count: Some(bp.cpus),
            mem_total_bytes: Some(mem_total),
            mem_used_bytes: Some(mem_used),
            swap_total_bytes: Some(0),
            swap_used_bytes: Some(0),
            disks,
            ..Metrics::default()
        }),
        checks,
        last_scan,
        labels: labels(&bp.hostname),
    }
}

/// A simulated node's labels, as its agent's `[agent] labels` would give them, read off its
/// hostname (`<site>-<role>-<n>`): `site` (`fra1`, `ams1`, `lab`, ...) and `role` (`vault`,
/// `edge`, `db`, ...), so the console's node list groups the fleet by site or role.
pub fn labels(hostname: &str) -> vaultmesh_proto::labels::Labels {
    let mut parts = hostname.split('-');
    [("site", parts.next()), ("role", parts.next())]
        .into_iter()
        .filter_map(|(k, v)| Some((k.to_string(), v.filter(|v| !v.is_empty())?.to_string())))
        .collect()
}

/// A scan report of `bp`'s node: no findings, SSH the only listener (as its policy allows),
/// and hashed files whose two `changed` values differ — the drift a [`Role::Drift`] node
/// alternates between.
pub fn scan(bp: &Blueprint, node_id: Uuid, changed: bool, now: DateTime<Utc>) -> ScanReport {
    let hash = |what: &str, salt: u64| {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(format!("{node_id}/{what}/{salt}")))
    };
    let edited = u64::from(changed && bp.role == Role::Drift);
    let mut fingerprint = Fingerprint::new();
    let files: BTreeMap<String, String> = [
        ("/etc/group", 0),
        ("/etc/passwd", 0),
        ("/etc/ssh/sshd_config", edited),
        ("/etc/sudoers", edited),
        ("agent:binary", 0),
    ]
    .into_iter()
    .map(|(path, salt)| (path.to_string(), hash(path, salt)))
    .collect();
    fingerprint.insert("file_hashes".into(), files);
    fingerprint.insert(
        "listeners".into(),
        [
            ("tcp/0.0.0.0:22".to_string(), "uid=0".to_string()),
            ("tcp6/[::]:22".to_string(), "uid=0".to_string()),
        ]
        .into(),
    );
    fingerprint.insert(
        "setuid".into(),
        ["/usr/bin/passwd", "/usr/bin/su", "/usr/bin/sudo"]
            .into_iter()
            .map(|p| (p.to_string(), format!("4755 root {}", hash(p, 0))))
            .collect(),
    );
    let findings = Vec::new();
    ScanReport {
        scan_id: Uuid::new_v4(),
        node_id,
        profile: bp.profile.to_string(),
        started_at: now - chrono::Duration::milliseconds(900),
        finished_at: now,
        counts: count_findings(&findings),
        findings,
        fingerprint,
        rules: [
            "file_hashes",
            "listeners",
            "setuid",
            "sshd",
            "sysctl",
            "world_writable",
        ]
        .map(String::from)
        .to_vec(),
        errors: Vec::new(),
        truncated: false,
    }
}

/// The fleet's directory under the demo's data directory.
pub fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join("fleet")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Arc;

    use vaultmesh_engines::attention::rules;
    use vaultmesh_proto::AttentionLevel::{self, Attn, Crit};
    use vaultmesh_store::NodeSnapshot;
    use vaultmesh_store::policy::Policies;

    use super::*;
    use crate::demo::policy::{self, Host};

    /// The policies the demo writes: the shipped three and `Demo` (without a tunnel here).
    fn policies() -> Policies {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in crate::demo::POLICIES {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        std::fs::write(
            dir.path().join("Demo.toml"),
            policy::policy(Host { tunnel: false }, Duration::from_secs(5)),
        )
        .unwrap();
        Policies::load(Some(dir.path())).unwrap()
    }

    fn snapshot(hb: NodeHeartbeat, now: DateTime<Utc>) -> NodeSnapshot {
        NodeSnapshot {
            node_id: hb.node_id,
            latest: hb.into(),
            last_seen: now,
            heartbeats: 1,
            latest_scan: None,
            drift: Default::default(),
            incidents: vec![],
            receipt_chain_ok: None,
            revoked: None,
            forecasts: vec![],
        }
    }

    /// The reasons a role's heartbeat at `tick` is meant to raise, by rule.
    fn intended(i: usize, bp: &Blueprint, tick: u64) -> Vec<(String, AttentionLevel)> {
        let r = reading(i, bp, tick);
        let pair = |a: &str, b: &str, l| vec![(a.to_string(), l), (b.to_string(), l)];
        match bp.role {
            Role::FullDisk => pair("check.disk", "threshold.disk", Crit),
            Role::HighLoad => pair("check.load", "threshold.load", Attn),
            Role::FailingUnit if r.unit_failed => vec![("services".into(), Crit)],
            Role::FillingDisk if r.data_pct >= 95.0 => pair("check.disk", "threshold.disk", Crit),
            Role::FillingDisk if r.data_pct >= 85.0 => pair("check.disk", "threshold.disk", Attn),
            _ => vec![],
        }
    }

    #[test]
    fn every_heartbeat_raises_exactly_its_roles_reasons_under_its_profile() {
        let policies = policies();
        let now = Utc::now();
        let scanned = Some(vaultmesh_proto::heartbeat::LastScan {
            scan_id: Uuid::nil().to_string(),
            finished_at: now,
            counts: BTreeMap::new(),
        });
        let mut raised = BTreeSet::new();
        for (i, bp) in roster(16).iter().enumerate() {
            let settings = policies.settings(bp.profile);
            for tick in 0..STALE_CYCLE * 2 {
                let last_scan = (tick > 0).then(|| scanned.clone()).flatten();
                let hb = heartbeat(
                    i,
                    bp,
                    Uuid::from_u128(i as u128 + 1),
                    tick,
                    now,
                    now,
                    last_scan,
                );
                hb.validate().unwrap();
                let got: Vec<(String, AttentionLevel)> =
                    rules::observed(&snapshot(hb, now), settings)
                        .into_iter()
                        .map(|r| (r.rule, r.level))
                        .collect();
                assert_eq!(got, intended(i, bp, tick), "{} at tick {tick}", bp.hostname);
                raised.extend(
                    got.into_iter()
                        .map(|(rule, level)| (bp.role as u8, rule, level)),
                );
            }
        }
        // Over a cycle the changing roles show every state they are there for.
        for (role, rule, level) in [
            (Role::FillingDisk, "threshold.disk", Attn),
            (Role::FillingDisk, "threshold.disk", Crit),
            (Role::FailingUnit, "services", Crit),
        ] {
            assert!(
                raised.contains(&(role as u8, rule.to_string(), level)),
                "{role:?} {rule} {level}"
            );
        }
        assert!(roster(16)[12..].iter().all(|b| b.role == Role::Healthy));
    }

    #[test]
    fn a_drift_node_drifts_at_every_scan_and_the_others_never_do() {
        let policies = policies();
        let now = Utc::now();
        for (i, bp) in roster(12).iter().enumerate() {
            let id = Uuid::from_u128(i as u128 + 1);
            let scans: Vec<ScanReport> = (0..4).map(|n| scan(bp, id, n % 2 == 1, now)).collect();
            for pair in scans.windows(2) {
                pair[1].validate().unwrap();
                let drift = vaultmesh_proto::scan::diff(&pair[0].fingerprint, &pair[1].fingerprint);
                let mut snap = snapshot(heartbeat(i, bp, id, 1, now, now, None), now);
                snap.latest_scan = Some(Arc::new(pair[1].clone()));
                snap.drift = drift.into();
                let got: Vec<String> = rules::state(&snap, policies.settings(bp.profile), now)
                    .into_iter()
                    .map(|r| r.rule)
                    .collect();
                let want: &[&str] = if bp.role == Role::Drift {
                    &["drift"]
                } else {
                    &[]
                };
                assert_eq!(got, want, "{}", bp.hostname);
            }
        }
        assert!(
            scans_at(Role::Drift, DRIFT_FIRST, 720)
                && scans_at(Role::Drift, DRIFT_FIRST + DRIFT_EVERY, 720)
        );
        assert!(!scans_at(Role::Healthy, DRIFT_FIRST, 720) && scans_at(Role::Healthy, 0, 720));
        // Hourly at any interval; at least every tick.
        assert_eq!(scan_every(Duration::from_secs(5)), 720);
        assert_eq!(scan_every(Duration::from_millis(1500)), 3600);
        assert_eq!(scan_every(Duration::from_secs(7200)), 1);
    }

    #[test]
    fn the_stale_node_stops_after_two_heartbeats_and_comes_back() {
        let sent: Vec<u64> = (0..STALE_CYCLE + 3)
            .filter(|t| heartbeats_at(Role::Stale, *t))
            .collect();
        let back: Vec<u64> = (ALIVE_AGAIN..STALE_CYCLE + 2).collect();
        assert_eq!(sent, [&[0, 1][..], &back].concat());
        assert!((0..STALE_CYCLE).all(|t| heartbeats_at(Role::Healthy, t)));
        // Silent long enough for the Demo profile's CRIT (18 intervals).
        assert!(ALIVE_AGAIN - 2 > u64::from(policy::CRITICAL_INTERVALS));
    }

    #[test]
    fn the_roster_names_each_node_once() {
        let fleet = roster(MAX_NODES as usize);
        let names: BTreeSet<&str> = fleet.iter().map(|b| b.hostname.as_str()).collect();
        assert_eq!(names.len(), fleet.len());
        assert_eq!(roster(0), []);
    }

    /// Issue 25: the demo's fleet groups by label. Every node has a `site` and a `role` read
    /// off its hostname, valid labels, and the first twelve span five sites.
    #[test]
    fn every_simulated_node_has_a_site_and_a_role_label() {
        let fleet = roster(MAX_NODES as usize);
        let mut sites = BTreeSet::new();
        for (i, bp) in fleet.iter().enumerate() {
            let l = labels(&bp.hostname);
            vaultmesh_proto::labels::check(&l).unwrap();
            assert_eq!(l.len(), 2, "{}: {l:?}", bp.hostname);
            assert!(
                bp.hostname
                    .starts_with(&format!("{}-{}-", l["site"], l["role"]))
            );
            let hb = heartbeat(i, bp, Uuid::from_u128(1), 0, Utc::now(), Utc::now(), None);
            assert_eq!(hb.labels, l);
            if i < 12 {
                sites.insert(l["site"].clone());
            }
        }
        assert_eq!(
            sites.into_iter().collect::<Vec<_>>(),
            ["ams1", "fra1", "lab", "nyc1", "sgp1"]
        );
        assert_eq!(
            labels("fra1-vault-01"),
            [
                ("role".to_string(), "vault".to_string()),
                ("site".to_string(), "fra1".to_string())
            ]
            .into()
        );
        assert_eq!(labels("solo").len(), 1);
    }
}
