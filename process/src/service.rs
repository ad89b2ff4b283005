//! Life under systemd, shared by both binaries: logging, readiness (`READY=1`), watchdog pings,
//! `STOPPING=1`, and a shutdown token cancelled by SIGTERM or Ctrl-C.
//!
//! Outside systemd (no `NOTIFY_SOCKET`) every notification is a no-op.

use std::time::Duration;

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;

/// Logs to stderr (journald captures it under systemd), filtered by `RUST_LOG` (default `info`):
/// a level, and per-target levels such as `warn,vaultmesh_agent_core=debug`. (`Targets` rather
/// than `EnvFilter`, whose regular-expression engine would add a megabyte to the agent.)
pub fn init_logging() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = log_filter(std::env::var("RUST_LOG").ok().as_deref());
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                // Colours only for a person at a terminal, never into the journal or a file.
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
        )
        .with(filter)
        .init();
}

/// The filter `RUST_LOG` asks for; `info` when unset or unreadable (with a warning on stderr).
fn log_filter(spec: Option<&str>) -> tracing_subscriber::filter::Targets {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    let default = || Targets::new().with_default(LevelFilter::INFO);
    match spec.map(str::trim).filter(|s| !s.is_empty()) {
        None => default(),
        Some(s) => s.parse().unwrap_or_else(|e| {
            eprintln!("warning: RUST_LOG={s:?} is not a log filter ({e}); logging at info");
            default()
        }),
    }
}

/// Tells systemd the service is up (`Type=notify`), with a one-line status.
pub fn notify_ready(status: &str) {
    notify(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// Tells systemd a long start is still making progress (`EXTEND_TIMEOUT_USEC`): the start
/// timeout is extended by `extend` from now, and `status` is shown in `systemctl status`.
pub fn notify_progress(status: &str, extend: Duration) {
    let usec = u32::try_from(extend.as_micros()).unwrap_or(u32::MAX);
    notify(&[
        NotifyState::ExtendTimeoutUsec(usec),
        NotifyState::Status(status),
    ]);
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
    use tokio::signal::unix::{SignalKind, signal};
    let cancel = CancellationToken::new();
    let token = cancel.clone();
    // Installed now, not when the task first runs: a SIGTERM sent as soon as this returns (as
    // soon as `serve` says it listens) stops the process cleanly instead of killing it.
    let term = signal(SignalKind::terminate());
    tokio::spawn(async move {
        match term {
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

#[cfg(test)]
mod log_tests {
    use super::log_filter;
    use tracing::Level;

    #[test]
    fn rust_log_levels_and_targets() {
        let f = log_filter(None);
        assert!(f.would_enable("anything", &Level::INFO));
        assert!(!f.would_enable("anything", &Level::DEBUG));
        let f = log_filter(Some("warn,vaultmesh_agent_core=debug"));
        assert!(!f.would_enable("hyper", &Level::INFO));
        assert!(f.would_enable("vaultmesh_agent_core::runtime", &Level::DEBUG));
        let f = log_filter(Some("=nonsense=="));
        assert!(
            f.would_enable("x", &Level::INFO),
            "a bad filter falls back to info"
        );
    }
}
