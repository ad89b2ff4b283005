//! `serve` (the default): the API, the console and the engines until SIGTERM.

use vaultmesh_command_center::config::ServeConfig;
use vaultmesh_command_center::server::{ServeError, Server};
use vaultmesh_process::service;

use super::Failure;

/// Validates `config`, binds, replays, and serves until SIGTERM or Ctrl-C.
pub async fn serve(config: ServeConfig) -> Result<(), Failure> {
    config.prepare().map_err(|e| (2, e))?;
    let server = Server::bind(&config).await.map_err(|e| match e {
        ServeError::Config(m) => (2, m),
        ServeError::Locked(e) => (2, e.to_string()),
        other => (1, other.to_string()),
    })?;
    let replay = server.replay_report();
    if !replay.skipped.is_empty() {
        eprintln!(
            "warning: skipped {} bad log line(s) during replay; first: {}:{}: {}",
            replay.skipped.len(),
            replay.skipped[0].file.display(),
            replay.skipped[0].line,
            replay.skipped[0].reason
        );
    }
    let hosts = &server.state().hosts;
    if config.access.access_team_domain.is_some() && !hosts.has_public() {
        eprintln!(
            "warning: Cloudflare Access is configured but no --allowed-host (nor a console_url in --notify-config): admins reaching the public hostname get 421; add --allowed-host <the public hostname>"
        );
    }
    tracing::info!(hosts = %hosts.names().join(","), "Admin requests are answered for these hosts only (--allowed-host).");
    if server.state().tokens.0.is_empty() {
        eprintln!(
            "warning: no --enroll-token configured: new agents enroll only with tokens minted at runtime (the console's Add node page, or `vaultmesh-command-center token create`)"
        );
    }
    if server.state().cc_key.is_none() {
        tracing::info!(
            "No signing key (--signing-key, or the systemd credential cc.key): commands cannot be issued."
        );
    }
    // Before saying it listens: from then on, SIGTERM is a clean stop.
    let cancel = service::shutdown_token();
    println!(
        "vaultmesh-command-center listening on http://{}",
        server.local_addr()
    );
    tracing::info!(addr = %server.local_addr(), "Command Center listening.");
    let watchdog = service::spawn_watchdog(cancel.clone());
    reload_policies_on_sighup(std::sync::Arc::clone(&server.state().policies));
    service::notify_ready(&format!("serving on {}", server.local_addr()));
    let stopping = cancel.clone();
    let result = server
        .run(async move {
            stopping.cancelled().await;
            service::notify_stopping();
        })
        .await;
    cancel.cancel();
    if let Some(w) = watchdog {
        let _ = w.await;
    }
    result.map_err(|e| (1, e.to_string()))?;
    tracing::info!("Command Center stopped.");
    Ok(())
}

/// SIGHUP reloads the policy directory; an invalid set is refused and the old one kept.
fn reload_policies_on_sighup(policies: std::sync::Arc<vaultmesh_store::policy::LivePolicies>) {
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            return;
        };
        while hup.recv().await.is_some() {
            match policies.reload() {
                Ok(n) => tracing::info!(files = n, "Policies reloaded."),
                Err(e) => {
                    tracing::error!(error = %e, "Policy reload refused; the previous policies stay in force.")
                }
            }
        }
    });
}
