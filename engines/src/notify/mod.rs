//! Notifications: telling admins when a node needs attention, without flooding them.
//!
//! - [`config`]: the `--notify-config` file (notifiers, routes, quiet hours).
//! - [`registry`]: notifier plugins, registered at compile time like checks
//!   (`webhook`, `ntfy` and `email`, in the server's `notifiers` module).
//! - [`engine`]: turns bus events into alerts, routes them, groups them per route, repeats an
//!   unresolved CRIT, holds back flapping nodes.
//! - [`queue`]: the persisted queue (`notify-queue.jsonl` in the log directory) and the sender
//!   that retries with backoff; nothing here ever blocks ingest.
//!
//! See docs/NOTIFICATIONS.md.

pub mod config;
pub mod engine;
pub mod queue;
pub mod registry;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use vaultmesh_proto::{AttentionLevel, Reason};

pub use config::{AlertKind, NotifyConfig};

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// Notifications as the server runs them: the engine, the queue and the notifiers.
#[derive(Debug)]
pub struct Runtime {
    pub engine: Arc<engine::Engine>,
    pub queue: Arc<queue::Queue>,
    notifiers: BTreeMap<String, Arc<dyn Notifier>>,
    policy: queue::RetryPolicy,
    metrics: Option<Arc<dyn crate::Observer>>,
}

impl Runtime {
    /// Opens the queue in `log_dir` for a file read with [`load`].
    pub fn open(
        loaded: Loaded,
        log_dir: &Path,
        store: Arc<dyn vaultmesh_store::Store>,
        attention: Arc<crate::attention::AttentionEngine>,
        metrics: Option<Arc<dyn crate::Observer>>,
    ) -> Result<Runtime, String> {
        let Loaded { config, notifiers } = loaded;
        let (queue, restored) = queue::Queue::open(log_dir)
            .map_err(|e| format!("{}: {e}", log_dir.join(queue::FILE).display()))?;
        let queue = Arc::new(queue);
        let policy = queue::RetryPolicy {
            max_age: config.max_age,
            retry_max: config.retry_max,
        };
        let engine = Arc::new(engine::Engine::new(
            config,
            Arc::clone(&queue),
            restored,
            store,
            attention,
            metrics.clone(),
        ));
        Ok(Runtime {
            engine,
            queue,
            notifiers,
            policy,
            metrics,
        })
    }

    /// Starts the engine (subscribed to `bus` before this returns, so nothing published
    /// afterwards is missed) and one sender per notifier.
    pub fn spawn(
        &self,
        bus: &vaultmesh_store::bus::Bus,
        cancel: tokio_util::sync::CancellationToken,
    ) {
        let (rx, _) = bus.subscribe(None);
        tokio::spawn(Arc::clone(&self.engine).run(rx, cancel.clone()));
        queue::spawn_senders(
            &self.queue,
            &self.notifiers,
            self.policy,
            self.metrics.clone(),
            &cancel,
        );
    }

    /// Each notifier's health, for the API and the console.
    pub fn health(&self) -> BTreeMap<String, queue::NotifierHealth> {
        let mut h = self.queue.health();
        for (name, n) in &self.notifiers {
            h.entry(name.clone()).or_default().kind = n.kind().to_string();
        }
        h
    }
}

/// A notifications file, read and checked, with its notifiers built.
#[derive(Debug)]
pub struct Loaded {
    pub config: NotifyConfig,
    pub notifiers: BTreeMap<String, Arc<dyn Notifier>>,
}

/// Reads `path` and builds its notifiers; errors name the file, the key and the reason.
/// `profiles`: the profiles routes may name ([`vaultmesh_store::policy::Policies::known_profiles`]).
pub fn load(path: &Path, profiles: &[&str]) -> Result<Loaded, String> {
    let config = NotifyConfig::load(path, profiles)?;
    let notifiers = build_all(&config).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(Loaded { config, notifiers })
}

/// Every notifier of `config`, built.
fn build_all(config: &NotifyConfig) -> Result<BTreeMap<String, Arc<dyn Notifier>>, String> {
    config
        .notifiers
        .iter()
        .map(|(name, table)| {
            registry::build(name, table)
                .map(|n| (name.clone(), n))
                .map_err(|e| format!("notifiers.{name}: {e}"))
        })
        .collect()
}

/// A test message for `route` (what `notify test ROUTE` sends).
pub fn test_message(route: &str, console_url: &str) -> Message {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "this host".into());
    let now = Utc::now();
    Message {
        id: Uuid::now_v7(),
        route: route.to_string(),
        alerts: vec![Alert {
            kind: AlertKind::Attention,
            node_id: None,
            hostname: None,
            display_name: None,
            profile: None,
            level: AttentionLevel::Attn,
            previous: Some(AttentionLevel::Ok),
            title: format!("Test message from the VaultMesh Command Center on {host}"),
            reasons: vec![Reason {
                rule: "test".into(),
                level: AttentionLevel::Attn,
                label: "Test notification".into(),
                message: format!("route {route} reaches you"),
                suppressed_by: None,
            }],
            since: Some(now),
            at: now,
            link: format!("{}/console", console_url.trim_end_matches('/')),
        }],
        created_at: now,
        test: true,
    }
}

/// One thing that happened, as a message tells it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub kind: AlertKind,
    /// Absent for fleet-wide alerts (a ledger tamper alarm).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// The name an admin gave the node (`node_renamed`): titles lead with it, the hostname
    /// beside it in brackets. Absent when it has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    pub level: AttentionLevel,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<AttentionLevel>,
    /// One line: "vault-node-01 is CRIT (was OK)", or "Frankfurt edge 1 (vault-node-01) is CRIT
    /// (was OK)" for a node with a display name.
    pub title: String,
    #[serde(default)]
    pub reasons: Vec<Reason>,
    /// When the current level began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<DateTime<Utc>>,
    pub at: DateTime<Utc>,
    /// `<console_url>/console?node=<id>`, or the console itself.
    pub link: String,
}

impl Alert {
    /// The node as titles name it: "Frankfurt edge 1 (vault-node-01)", or its hostname.
    pub fn name(&self) -> String {
        vaultmesh_proto::display_name::labelled(
            self.hostname.as_deref().unwrap_or_default(),
            self.display_name.as_deref(),
        )
    }
}

/// What a notifier sends: one or more alerts grouped for one route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Stable across retries: delivery is at least once, and receivers can drop a repeat.
    #[serde(default)]
    pub id: Uuid,
    pub route: String,
    pub alerts: Vec<Alert>,
    pub created_at: DateTime<Utc>,
    /// A test message (`notify test ROUTE`).
    #[serde(default)]
    pub test: bool,
}

impl Message {
    /// The worst level among the alerts.
    pub fn level(&self) -> AttentionLevel {
        self.alerts
            .iter()
            .map(|a| a.level)
            .max()
            .unwrap_or_default()
    }

    /// A subject line.
    pub fn subject(&self) -> String {
        let prefix = if self.test { "[test] " } else { "" };
        match self.alerts.as_slice() {
            [one] => format!("{prefix}{}", one.title),
            many => format!(
                "{prefix}{} VaultMesh alerts, worst {}",
                many.len(),
                self.level().as_str().to_uppercase()
            ),
        }
    }

    /// The plain-text body: every alert with its reasons, how long, and its link.
    pub fn text(&self, now: DateTime<Utc>) -> String {
        let mut out = String::new();
        for a in &self.alerts {
            out.push_str(&a.title);
            if let Some(since) = a.since {
                let span = vaultmesh_process::duration::span((now - since).num_seconds());
                out.push_str(&format!(" — for {span}"));
            }
            out.push('\n');
            for r in &a.reasons {
                out.push_str(&format!("  • {} [{}]", r.message, r.level.as_str()));
                if let Some(s) = &r.suppressed_by {
                    out.push_str(&format!(" ({s})"));
                }
                out.push('\n');
            }
            out.push_str(&format!("  {}\n", a.link));
        }
        out
    }
}

/// Why a send failed. The text never holds a secret (a webhook URL, a token, a password).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SendError(pub String);

/// A way to reach an admin.
#[async_trait]
pub trait Notifier: Send + Sync + std::fmt::Debug {
    /// The kind it was registered as (`webhook`, `ntfy`, `email`).
    fn kind(&self) -> &'static str;

    /// Delivers `message`; `Ok` once the receiver accepted it.
    async fn send(&self, message: &Message) -> Result<(), SendError>;
}
