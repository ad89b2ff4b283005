//! `notify check|test`: validate the notifications file, or send a test message through a
//! route now.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::Failure;

#[derive(Debug, Subcommand)]
pub enum NotifyCommand {
    /// Validate the notifications file and list its routes.
    Check {
        #[arg(long, env = "VAULTMESH_NOTIFY_CONFIG", value_name = "FILE")]
        notify_config: PathBuf,
        #[command(flatten)]
        policies: NotifyPolicyDir,
    },
    /// Send a test message through ROUTE's notifier now (not through the queue).
    #[command(
        after_help = "Example:\n  vaultmesh-command-center notify test oncall --notify-config /etc/vaultmesh/notify.toml"
    )]
    Test {
        /// The route's `name`.
        route: String,
        #[arg(long, env = "VAULTMESH_NOTIFY_CONFIG", value_name = "FILE")]
        notify_config: PathBuf,
        #[command(flatten)]
        policies: NotifyPolicyDir,
    },
}

#[derive(Debug, Args)]
pub struct NotifyPolicyDir {
    /// The policy directory `serve` uses: a route's `profiles` must each have a policy file
    /// there (or be a shipped profile).
    #[arg(long, env = "VAULTMESH_POLICY_DIR", value_name = "DIR")]
    pub policy_dir: Option<PathBuf>,
}

/// `notify check|test`.
pub async fn notify(cmd: NotifyCommand) -> Result<(), Failure> {
    use vaultmesh_engines::notify;
    let (path, route, policy_dir) = match &cmd {
        NotifyCommand::Check {
            notify_config,
            policies,
        } => (notify_config, None, &policies.policy_dir),
        NotifyCommand::Test {
            route,
            notify_config,
            policies,
        } => (notify_config, Some(route.as_str()), &policies.policy_dir),
    };
    let policies =
        vaultmesh_store::policy::Policies::load(policy_dir.as_deref()).map_err(|e| (2, e))?;
    let notify::Loaded { config, notifiers } =
        notify::load(path, &policies.known_profiles()).map_err(|e| (2, e))?;
    let Some(route) = route else {
        println!(
            "ok: {} — {} notifier(s), {} route(s): {}",
            path.display(),
            notifiers.len(),
            config.routes.len(),
            config
                .routes
                .iter()
                .map(|r| format!("{} → {}", r.name, r.notifier))
                .collect::<Vec<_>>()
                .join(", ")
        );
        return Ok(());
    };
    let r = config.route(route).ok_or_else(|| {
        let names: Vec<&str> = config.routes.iter().map(|r| r.name.as_str()).collect();
        (
            2,
            format!(
                "{}: no route {route:?}; routes: {}",
                path.display(),
                if names.is_empty() {
                    "(none)".to_string()
                } else {
                    names.join(", ")
                }
            ),
        )
    })?;
    let notifier = notifiers
        .get(&r.notifier)
        .ok_or_else(|| (2, format!("route {route}: no notifier {:?}", r.notifier)))?;
    let message = notify::test_message(route, &config.console_url);
    notifier.send(&message).await.map_err(|e| {
        (
            1,
            format!(
                "route {route}: {} notifier {:?} failed: {e}",
                notifier.kind(),
                r.notifier
            ),
        )
    })?;
    println!(
        "sent a test message through route {route} ({} notifier {:?})",
        notifier.kind(),
        r.notifier
    );
    Ok(())
}
