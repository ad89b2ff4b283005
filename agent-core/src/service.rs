//! Life under systemd, shared by both binaries: logging, readiness (`READY=1`), watchdog pings,
//! `STOPPING=1`, and a shutdown token cancelled by SIGTERM or Ctrl-C.
//!
//! Outside systemd (no `NOTIFY_SOCKET`) every notification is a no-op.

use std::time::Duration;

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;

/// Logs to stderr (journald captures it under systemd), filtered by `RUST_LOG` (default `info`).
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
}

/// Tells systemd the service is up (`Type=notify`), with a one-line status.
pub fn notify_ready(status: &str) {
    notify(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// Tells systemd the service is shutting down.
pub fn notify_stopping() {
    notify(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

fn notify(states: &[NotifyState<'_>]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "sd_notify failed.");
    }
}

/// If systemd set `WatchdogSec=`, pings `WATCHDOG=1` at half the timeout from a task on the
/// runtime until `cancel` fires. A wedged runtime stops the pings and systemd restarts us.
pub fn spawn_watchdog(cancel: CancellationToken) -> Option<tokio::task::JoinHandle<()>> {
    let timeout = sd_notify::watchdog_enabled()?;
    let every = (timeout / 2).max(Duration::from_millis(50));
    tracing::info!(
        every_ms = every.as_millis() as u64,
        "systemd watchdog enabled."
    );
    Some(tokio::spawn(async move {
        let mut ticker = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = ticker.tick() => notify(&[NotifyState::Watchdog]),
            }
        }
    }))
}

/// A token cancelled on SIGTERM (systemd's stop) or SIGINT (Ctrl-C).
pub fn shutdown_token() -> CancellationToken {
    let cancel = CancellationToken::new();
    let token = cancel.clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "Cannot watch SIGTERM; only Ctrl-C stops this process.");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
        tracing::info!("Shutdown requested.");
        token.cancel();
    });
    cancel
}
