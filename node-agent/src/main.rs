//! `vaultmesh-node-agent`: the daemon on each node. A thin CLI over `vaultmesh-agent-core`;
//! the checks come from `vaultmesh-checks`, linked below so their registrations survive linking.
//!
//! Exit codes: 0 success, 1 the work failed (e.g. the Command Center was unreachable for
//! `run --once`), 2 bad usage or configuration (one line per problem on stderr).

use std::process::ExitCode;

use vaultmesh_agent_core::CheckContext;
use vaultmesh_agent_core::config::{AgentConfig, ConfigErrors};
use vaultmesh_agent_core::registry::{self, ConfiguredCheck};
use vaultmesh_agent_core::runtime::{Agent, AgentError};
use vaultmesh_agent_core::scheduler::run_isolated;
use vaultmesh_node_agent::cli::{ChecksCommand, Cli, Command, ConfigCommand, EventCommand};
use vaultmesh_process::{duration, service};

// The built-in checks register themselves through `inventory`; nothing references them by name,
// so without this line the linker would drop them and the registry would be empty.
use vaultmesh_checks as _;

/// How a command failed, which decides the exit code.
enum Failure {
    Usage(String),
    Runtime(String),
}

impl From<ConfigErrors> for Failure {
    fn from(e: ConfigErrors) -> Self {
        Failure::Usage(e.to_string())
    }
}

impl From<AgentError> for Failure {
    fn from(e: AgentError) -> Self {
        match e {
            AgentError::Config(c) => c.into(),
            other => Failure::Runtime(other.to_string()),
        }
    }
}

fn main() -> ExitCode {
    let cli: Cli = vaultmesh_process::cli::parse_or_exit();
    vaultmesh_process::service::init_logging();
    // One thread runs everything: the agent waits on timers and sockets almost all the time,
    // and a single thread keeps its memory small. Work that can block for long (statvfs on a
    // network mount, the scan's file hashing) goes to tokio's blocking pool, whose idle threads
    // exit; the pool keeps tokio's default bound (512), so a mount that hangs every statvfs
    // cannot exhaust it. The fsyncs of the command replay store and the scan outbox (rare:
    // one per command or scan) run on this thread.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_keep_alive(std::time::Duration::from_secs(5))
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(msg)) => {
            for line in msg.lines() {
                eprintln!("error: {line}");
            }
            ExitCode::from(2)
        }
        Err(Failure::Runtime(msg)) => {
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(cli: Cli) -> Result<(), Failure> {
    let config = AgentConfig::load(cli.config.as_deref())?;
    match cli.command.unwrap_or(Command::Run { once: false }) {
        Command::Run { once: true } => {
            let agent = Agent::new(config)?;
            let ack = agent.run_once().await?;
            println!(
                "heartbeat accepted for node {} at {}",
                ack.node_id,
                ack.received_at.to_rfc3339()
            );
            Ok(())
        }
        Command::Run { once: false } => run_forever(config).await,
        Command::Checks(ChecksCommand::List { json }) => list_checks(&config, json),
        Command::Checks(ChecksCommand::Run { name, json }) => run_check(&config, &name, json).await,
        Command::Actions { json } => {
            let rows: Vec<serde_json::Value> = vaultmesh_agent_core::action::all()
                .iter()
                .map(|a| serde_json::json!({"name": a.name, "args": a.args, "description": a.description, "allowed": config.command_allow.iter().any(|x| x == a.name)}))
                .collect();
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&rows)
                        .map_err(|e| Failure::Runtime(e.to_string()))?
                );
            } else {
                println!(
                    "{:<16} {:<8} {:<16} DESCRIPTION",
                    "ACTION", "ALLOWED", "ARGUMENTS"
                );
                for r in &rows {
                    println!(
                        "{:<16} {:<8} {:<16} {}",
                        r["name"].as_str().unwrap_or(""),
                        if r["allowed"] == true { "yes" } else { "no" },
                        r["args"].as_str().unwrap_or(""),
                        r["description"].as_str().unwrap_or("")
                    );
                }
            }
            Ok(())
        }
        Command::Event(which) => {
            use vaultmesh_agent_core::events::{self, NodeEvent, PostError};
            let event = match which {
                EventCommand::Note { text } => NodeEvent::Note { text },
                EventCommand::Incident {
                    title,
                    severity,
                    text,
                } => NodeEvent::Incident {
                    title,
                    severity,
                    text,
                },
            };
            match events::post(&config, &event).await {
                Ok(stored) => {
                    println!("{}", stored.id);
                    Ok(())
                }
                Err(e @ PostError::Invalid { .. }) => Err(Failure::Usage(e.to_string())),
                Err(e) => Err(Failure::Runtime(e.to_string())),
            }
        }
        Command::Rekey => {
            let (old, new, archived) = vaultmesh_agent_core::identity::rekey(&config.state_dir)
                .map_err(|e| Failure::Runtime(e.to_string()))?;
            // Receipts waiting to be delivered were signed with the old key: sign them again.
            let key = vaultmesh_agent_core::identity::load_or_create_node_key(&config.state_dir)
                .map_err(|e| Failure::Runtime(e.to_string()))?;
            let resigned = vaultmesh_agent_core::commands::resign_unsent(&config.state_dir, &key)
                .map_err(|e| Failure::Runtime(e.to_string()))?;
            if resigned > 0 {
                println!(
                    "{resigned} receipt(s) waiting to be delivered signed again with the new key"
                );
            }
            println!("old key {old} kept as {}", archived.display());
            println!("new key {new}");
            println!(
                "key id {}: start the agent to enroll it (the Command Center must have re-admitted this node)",
                vaultmesh_proto::command::key_id(&new)
            );
            Ok(())
        }
        Command::Config(ConfigCommand::Check) => {
            let checks = registry::configure(&config)?;
            let enabled: Vec<_> = checks
                .iter()
                .filter(|c| c.settings.enabled)
                .map(ConfiguredCheck::name)
                .collect();
            println!(
                "ok: {} — Command Center {}, profile {}, interval {}, checks enabled: {}",
                config.file_label(),
                config.cc_url,
                config.os_profile,
                duration::format(config.interval),
                if enabled.is_empty() {
                    "none".to_string()
                } else {
                    enabled.join(", ")
                }
            );
            for warning in permission_warnings(&config) {
                eprintln!("warning: {warning}");
            }
            Ok(())
        }
    }
}

/// Files that hold secrets or identity but others may read or write: the config file (others
/// writing it could point the agent elsewhere), the state directory and the node key.
fn permission_warnings(config: &AgentConfig) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    let mode = |p: &std::path::Path| {
        std::fs::metadata(p)
            .ok()
            .map(|m| m.permissions().mode() & 0o777)
    };
    if let Some(file) = &config.source
        && let Some(m) = mode(file)
        && m & 0o022 != 0
    {
        out.push(format!(
            "{} is writable by group or others (mode {m:04o}): chmod go-w {}",
            file.display(),
            file.display()
        ));
    }
    if let Some(m) = mode(&config.state_dir)
        && m & 0o077 != 0
    {
        out.push(format!(
            "{} is open to group or others (mode {m:04o}); the agent creates it 0700: chmod 700 {}",
            config.state_dir.display(),
            config.state_dir.display()
        ));
    }
    let key = config.state_dir.join("node.key");
    if let Some(m) = mode(&key)
        && m & 0o077 != 0
    {
        out.push(format!(
            "{} (the node's private key) is readable by group or others (mode {m:04o}): chmod 600 {}",
            key.display(),
            key.display()
        ));
    }
    out
}

async fn run_forever(config: AgentConfig) -> Result<(), Failure> {
    let agent = Agent::new(config)?;
    let cancel = service::shutdown_token();
    let watchdog = service::spawn_watchdog(cancel.clone());
    let node_id = agent.node_id();
    let result = agent
        .run(
            cancel.clone(),
            || service::notify_ready(&format!("node {node_id} reporting")),
            || {},
        )
        .await;
    service::notify_stopping();
    cancel.cancel();
    if let Some(w) = watchdog {
        let _ = w.await;
    }
    result?;
    Ok(())
}

fn list_checks(config: &AgentConfig, json: bool) -> Result<(), Failure> {
    let checks = registry::configure(config)?;
    if json {
        let rows: Vec<_> = checks
            .iter()
            .map(|c| {
                serde_json::json!({
                    "name": c.name(),
                    "description": c.registration.description,
                    "enabled": c.settings.enabled,
                    "interval_s": c.settings.interval.as_secs_f64(),
                    "timeout_s": c.settings.timeout.as_secs_f64(),
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).map_err(|e| Failure::Runtime(e.to_string()))?
        );
        return Ok(());
    }
    println!(
        "{:<10} {:<8} {:<9} {:<8} DESCRIPTION",
        "NAME", "ENABLED", "INTERVAL", "TIMEOUT"
    );
    for c in &checks {
        println!(
            "{:<10} {:<8} {:<9} {:<8} {}",
            c.name(),
            if c.settings.enabled { "yes" } else { "no" },
            duration::format(c.settings.interval),
            duration::format(c.settings.timeout),
            c.registration.description
        );
    }
    Ok(())
}

async fn run_check(config: &AgentConfig, name: &str, json: bool) -> Result<(), Failure> {
    let checks = registry::configure(config)?;
    let Some(check) = checks.iter().find(|c| c.name() == name) else {
        let known: Vec<_> = checks.iter().map(ConfiguredCheck::name).collect();
        return Err(Failure::Usage(format!(
            "no check named {name:?}; registered checks are: {}",
            known.join(", ")
        )));
    };
    // Running a check needs no identity; a nil id keeps `checks run` free of side effects.
    let ctx = CheckContext {
        os_profile: config.os_profile.clone(),
        config_file: config.source.clone(),
        ..CheckContext::new(uuid::Uuid::nil(), config.vaultmesh_root.clone())
    };
    let run = run_isolated(check, &ctx).await;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&run).map_err(|e| Failure::Runtime(e.to_string()))?
        );
    } else {
        let result = &run.result;
        println!(
            "{} {}: {} ({} ms)",
            result.status.as_str().to_uppercase(),
            result.name,
            result.summary,
            result.duration_ms
        );
        for (k, v) in &result.metrics {
            println!("  {k} = {v}");
        }
        // What the heartbeat's typed fields get from this run, with their names there.
        if !run.contributes.is_empty() {
            let fields = serde_json::to_string(&run.contributes)
                .map_err(|e| Failure::Runtime(e.to_string()))?;
            println!("  heartbeat: {fields}");
        }
        // A scanning check also made a report: show its findings.
        if let Some(report) = ctx.scans.pending() {
            for f in &report.findings {
                println!(
                    "  {} {}: {} [{}]",
                    f.severity.as_str().to_uppercase(),
                    f.rule,
                    f.title,
                    f.evidence.lines().next().unwrap_or("")
                );
            }
            for e in &report.errors {
                println!("  ERROR {}: {}", e.rule, e.error);
            }
        }
    }
    Ok(())
}
