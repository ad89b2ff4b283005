//! The agent's main loop: run checks on their schedules and send a heartbeat every interval.
//!
//! Sending retries with exponential backoff and jitter until the next heartbeat is due; then the
//! stale heartbeat is dropped in favour of a fresh one. A 4xx answer is not retried (the same
//! heartbeat would be refused again) but the loop carries on. The agent never listens on a socket.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use vaultmesh_proto::{HeartbeatAccepted, NodeHeartbeat};

use crate::action::ActionContext;
use crate::backoff::Backoff;
use crate::check::CheckContext;
use crate::client::{CcClient, ClientError};
use crate::commands::CommandRunner;
use crate::config::{AgentConfig, ConfigErrors};
use crate::heartbeat::HeartbeatBuilder;
use crate::identity::{self, IdentityError};
use crate::registry;
use crate::scans::ScanOutbox;
use crate::scheduler::Scheduler;

/// Longest the agent waits for its first round of checks before it starts heartbeating.
const PRIME_LIMIT: Duration = Duration::from_secs(10);

/// Longest a heartbeat waits for the checks that tick with it to finish (and at most a
/// quarter of its interval): a check stuck until its timeout sends its previous run instead.
const SETTLE_MAX: Duration = Duration::from_secs(2);

/// Attempts `run --once` makes before giving up.
const ONCE_ATTEMPTS: u32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("{0}")]
    Config(#[from] ConfigErrors),
    #[error("node identity: {0}")]
    Identity(#[from] IdentityError),
    #[error("{0}")]
    Client(#[from] ClientError),
    #[error(
        "this node is not enrolled with the Command Center: set VAULTMESH_ENROLL_TOKEN to one of its enrollment tokens"
    )]
    NotEnrolled,
    #[error(
        "the Command Center refused this node's enrollment ({refusals} time(s) in a row; see the last refusal above); trying again in {}s",
        retry_in.as_secs()
    )]
    EnrollHeld { refusals: u32, retry_in: Duration },
}

/// The longest an agent waits between enrollments its Command Center refused (`403`: the node
/// or its key is revoked). The wait starts at the heartbeat interval and doubles up to this, so
/// a revoked node knocks a few times an hour, and one re-admitted with `allow_old_key` is back
/// within this long (at once, if its agent is restarted).
pub const ENROLL_HOLD_MAX: Duration = Duration::from_secs(300);

/// After a refused enrollment: how many in a row, and when to try again.
#[derive(Debug, Default)]
struct EnrollHold {
    refusals: u32,
    until: Option<tokio::time::Instant>,
}

/// A configured agent, ready to run.
#[derive(Debug)]
pub struct Agent {
    config: AgentConfig,
    scheduler: Arc<Scheduler>,
    heartbeat: HeartbeatBuilder,
    client: CcClient,
    hostname: String,
    public_key: String,
    runner: Arc<CommandRunner>,
    scans: ScanOutbox,
    enroll_hold: std::sync::Mutex<EnrollHold>,
    /// This key is enrolled: read from the state directory's `enrolled` once, then kept, so a
    /// heartbeat reads no file (only `rekey` changes the key, with the agent stopped).
    enrolled: AtomicBool,
}

impl Agent {
    /// Loads (or creates) the node id, builds every check from config, prepares the client.
    pub fn new(config: AgentConfig) -> Result<Agent, AgentError> {
        let checks = registry::configure(&config)?;
        let node_id = identity::load_or_create_node_id(&config.state_dir)?;
        let key = identity::load_or_create_node_key(&config.state_dir)?;
        let public_key = key.public_base64();
        let hostname = config
            .hostname
            .clone()
            .or_else(crate::host::hostname)
            .unwrap_or_else(|| "unknown".to_string());
        let scans = ScanOutbox::persistent(&config.state_dir);
        let ctx = CheckContext {
            node_id,
            vaultmesh_root: config.vaultmesh_root.clone(),
            os_profile: config.os_profile.clone(),
            config_file: config.source.clone(),
            scans: scans.clone(),
            timeout: None,
        };
        let heartbeat = HeartbeatBuilder::new(
            node_id,
            hostname.clone(),
            config.os_profile.clone(),
            config.vaultmesh_root.display().to_string(),
        )
        .with_labels(config.labels.clone());
        let action_ctx = ActionContext {
            check_ctx: ctx.clone(),
            checks: Arc::new(checks.clone()),
            service: Arc::new(config.command_service.clone()),
        };
        let runner = CommandRunner::new(
            node_id,
            key.clone(),
            config.cc_public_key.as_deref(),
            &config.command_allow,
            &config.state_dir,
            action_ctx,
        )?;
        let client = CcClient::for_agent(&config, node_id, key)?;
        Ok(Agent {
            runner: Arc::new(runner),
            scheduler: Arc::new(Scheduler::new(checks, ctx)),
            heartbeat,
            client,
            config,
            hostname,
            public_key,
            scans,
            enroll_hold: std::sync::Mutex::default(),
            enrolled: AtomicBool::new(false),
        })
    }

    pub fn node_id(&self) -> uuid::Uuid {
        self.heartbeat.node_id()
    }

    pub fn config(&self) -> &AgentConfig {
        &self.config
    }

    /// Runs every check once and returns the heartbeat they make (nothing is sent).
    pub async fn collect(&self) -> NodeHeartbeat {
        self.scheduler.run_all_once().await;
        self.build_heartbeat()
    }

    fn build_heartbeat(&self) -> NodeHeartbeat {
        let mut hb = self.heartbeat.build(self.scheduler.latest());
        hb.last_scan = self.scans.last_scan();
        hb
    }

    /// Sends the pending scan report, if any. A refusal (4xx) drops it: the same report would
    /// be refused again.
    async fn flush_scan(&self) {
        flush_scan(&self.client, &self.scans).await;
    }

    /// Enrolls the node key with the Command Center unless it is already recorded as enrolled.
    pub async fn ensure_enrolled(&self) -> Result<(), AgentError> {
        if self.enrolled.load(Ordering::Relaxed) {
            return Ok(());
        }
        let state = &self.config.state_dir;
        if identity::is_enrolled(state, &self.public_key) {
            self.enrolled.store(true, Ordering::Relaxed);
            return Ok(());
        }
        let Some(token) = &self.config.enroll_token else {
            return Err(AgentError::NotEnrolled);
        };
        let now = tokio::time::Instant::now();
        {
            let hold = self.enroll_hold.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(until) = hold.until
                && until > now
            {
                return Err(AgentError::EnrollHeld {
                    refusals: hold.refusals,
                    retry_in: until - now,
                });
            }
        }
        let reply = match self
            .client
            .enroll(&self.hostname, &self.config.os_profile, &token.0)
            .await
        {
            Err(e @ ClientError::Rejected { status: 403, .. }) => {
                // Revoked: knocking every interval would only fill the Command Center's
                // refusal log. Back off, doubling, up to ENROLL_HOLD_MAX.
                let mut hold = self.enroll_hold.lock().unwrap_or_else(|p| p.into_inner());
                let wait = self
                    .config
                    .interval
                    .saturating_mul(1u32 << hold.refusals.min(16))
                    .min(ENROLL_HOLD_MAX);
                hold.refusals = hold.refusals.saturating_add(1);
                hold.until = Some(now + wait);
                tracing::error!(error = %e, retry_in_s = wait.as_secs(), "Enrollment refused.");
                return Err(e.into());
            }
            other => other?,
        };
        *self.enroll_hold.lock().unwrap_or_else(|p| p.into_inner()) = EnrollHold::default();
        identity::mark_enrolled(state, &self.public_key)?;
        self.enrolled.store(true, Ordering::Relaxed);
        tracing::info!(node_id = %reply.node_id, public_key = %self.public_key, "Enrolled with the Command Center.");
        Ok(())
    }

    /// Sends a heartbeat; if the Command Center no longer knows the key, enrolls again (when a
    /// token is configured) and retries once.
    async fn send(&self, hb: &NodeHeartbeat) -> Result<HeartbeatAccepted, AgentError> {
        self.ensure_enrolled().await?;
        match self.client.post_heartbeat(hb).await {
            Err(e) if e.is_unauthorized() && self.config.enroll_token.is_some() => {
                tracing::warn!(error = %e, "The Command Center refused this node's key; enrolling again.");
                identity::forget_enrollment(&self.config.state_dir);
                self.enrolled.store(false, Ordering::Relaxed);
                self.ensure_enrolled().await?;
                Ok(self.client.post_heartbeat(hb).await?)
            }
            other => Ok(other?),
        }
    }

    /// Runs every check once and sends one heartbeat, retrying transient failures a few times.
    pub async fn run_once(&self) -> Result<HeartbeatAccepted, AgentError> {
        let hb = self.collect().await;
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(5));
        let mut attempt = 1;
        loop {
            match self.send(&hb).await {
                Ok(ack) => {
                    // The Command Center takes scans only from nodes it has heard from.
                    self.flush_scan().await;
                    return Ok(ack);
                }
                Err(AgentError::Client(e)) if e.is_retryable() && attempt < ONCE_ATTEMPTS => {
                    let delay = backoff.next_delay();
                    tracing::warn!(attempt, error = %e, retry_in_ms = delay.as_millis() as u64, "Heartbeat failed; retrying.");
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Runs until `cancel` fires. `on_ready` is called once every check has run once and the
    /// schedules are started (for `sd_notify`), `on_tick` after every heartbeat cycle.
    pub async fn run(
        &self,
        cancel: CancellationToken,
        on_ready: impl FnOnce(),
        on_tick: impl Fn(),
    ) -> Result<(), AgentError> {
        tracing::info!(
            node_id = %self.node_id(),
            cc_url = %self.client.base_url(),
            interval = %vaultmesh_process::duration::format(self.config.interval),
            checks = ?self.scheduler.checks().iter().map(|c| c.name()).collect::<Vec<_>>(),
            "Agent started."
        );
        // Prime every check so the first heartbeat is complete (a slow one, like a scan, finishes
        // in the background), then hand them to their loops.
        self.scheduler.prime(PRIME_LIMIT).await;
        let start = tokio::time::Instant::now();
        let mut loops = self.scheduler.spawn(start, cancel.clone());
        loops.spawn(command_loop(
            self.client.clone(),
            Arc::clone(&self.runner),
            self.scans.clone(),
            cancel.clone(),
        ));
        // Ready once the checks run: a Command Center that is down must not hold up startup.
        on_ready();

        // The first heartbeat goes at once (every check has just run); the next ones tick with
        // the checks that share the heartbeat's interval, in their wake-up, and go as soon as
        // those checks finish (at most `settle` later; not waiting for one whose last run was
        // slower than that): one wake-up a cycle, not two, and a heartbeat that carries this
        // tick's runs rather than runs up to an interval old. The second heartbeat can come up
        // to an interval and a second after the first (`Scheduler::first_run_at`).
        let interval = self.config.interval;
        let settle = (interval / 4).min(SETTLE_MAX);
        let mut ticker =
            tokio::time::interval_at(self.scheduler.first_run_at(start, interval), interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut backoff =
            Backoff::new(Duration::from_secs(1), interval.max(Duration::from_secs(2)));
        let mut first = true;
        loop {
            if !std::mem::take(&mut first) {
                let tick = tokio::select! {
                    _ = cancel.cancelled() => break,
                    tick = ticker.tick() => tick,
                };
                let settled = self.scheduler.ran_since(interval, tick, settle);
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::timeout_at(tick + settle, settled) => {}
                }
            }
            let hb = self.build_heartbeat();
            let deadline = tokio::time::Instant::now() + interval;
            self.send_until(&hb, deadline, &mut backoff, &cancel).await;
            // After the heartbeat, which enrolls the node if it must.
            self.flush_scan().await;
            on_tick();
        }
        cancel.cancel();
        while loops.join_next().await.is_some() {}
        tracing::info!("Agent stopped.");
        Ok(())
    }

    async fn send_until(
        &self,
        hb: &NodeHeartbeat,
        deadline: tokio::time::Instant,
        backoff: &mut Backoff,
        cancel: &CancellationToken,
    ) {
        loop {
            match self.send(hb).await {
                Ok(_) => {
                    tracing::debug!(seq = hb.seq.as_deref().unwrap_or(""), "Heartbeat accepted.");
                    backoff.reset();
                    return;
                }
                Err(AgentError::Client(e)) if e.is_retryable() => {
                    let delay = backoff.next_delay();
                    if tokio::time::Instant::now() + delay >= deadline {
                        tracing::warn!(error = %e, "Heartbeat failed; the next one is due before a retry.");
                        return;
                    }
                    tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "Heartbeat failed; retrying.");
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
                Err(e @ AgentError::EnrollHeld { .. }) => {
                    // The refusal itself was logged when it came.
                    tracing::debug!(error = %e, "Heartbeat not sent.");
                    return;
                }
                Err(e) => {
                    tracing::error!(error = %e, "Heartbeat refused; not retrying this one.");
                    return;
                }
            }
        }
    }
}

/// Keeps one long-poll open for commands; runs each, returns its receipt. Independent of the
/// heartbeat loop; backs off after errors. Public for the Command Center's `demo`, whose
/// simulated nodes answer commands as an agent does.
pub async fn command_loop(
    client: CcClient,
    runner: Arc<CommandRunner>,
    scans: ScanOutbox,
    cancel: CancellationToken,
) {
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
    while !cancel.is_cancelled() {
        runner.flush_receipts(&client).await;
        // A receipt that could not be delivered (the node not enrolled yet, the Command
        // Center away) is retried within seconds, not after a full long-poll.
        let wait = if runner.has_unsent() {
            Duration::from_secs(2)
        } else {
            Duration::from_secs(25)
        };
        let polled = tokio::select! {
            _ = cancel.cancelled() => return,
            r = client.poll_commands(wait) => r,
        };
        match polled {
            Ok(commands) => {
                backoff.reset();
                for c in commands {
                    match runner.handle(c).await {
                        Ok(_) => {}
                        Err(e) => {
                            tracing::error!(error = %e, "Cannot record a command; not running it.")
                        }
                    }
                }
                // A command may have produced a scan (`scan.sovereign`): deliver it now.
                flush_scan(&client, &scans).await;
                runner.flush_receipts(&client).await;
            }
            Err(e) => {
                let delay = backoff.next_delay();
                if matches!(e, ClientError::TooLarge { .. } | ClientError::BadReply(_)) {
                    // Not the network: a reply no agent reads (too large, or not commands).
                    tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "Command poll reply refused; retrying.");
                } else {
                    tracing::debug!(error = %e, retry_in_ms = delay.as_millis() as u64, "Command poll failed.");
                }
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

async fn flush_scan(client: &CcClient, scans: &ScanOutbox) {
    let Some(report) = scans.pending() else {
        return;
    };
    match client.post_scan(&report).await {
        Ok(_) => {
            tracing::info!(scan_id = %report.scan_id, findings = report.findings.len(), "Scan report delivered.");
            scans.mark_sent(report.scan_id);
        }
        // 401: the heartbeat path re-enrolls; the report goes out on the next try.
        Err(e) if e.is_retryable() || e.is_unauthorized() => {
            tracing::warn!(scan_id = %report.scan_id, error = %e, "Scan report not delivered; will retry.");
        }
        Err(e) => {
            tracing::error!(scan_id = %report.scan_id, error = %e, "Scan report refused; dropping it.");
            scans.mark_sent(report.scan_id);
        }
    }
}
