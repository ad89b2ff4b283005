//! Prometheus metrics served at `GET /metrics` in the Prometheus text format (0.0.4), through
//! the `prometheus` crate. Counters are bumped where things happen; gauges that mirror state
//! (nodes by attention level) are read when scraped. Names and meanings: `docs/METRICS.md`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::error::Rejected;
use crate::server::AppState;

/// Every metric of one Command Center.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    pub heartbeats: IntCounter,
    pub scans: IntCounter,
    /// Requests answered with an error, by route and reason.
    pub rejected: IntCounterVec,
    pub nodes: IntGaugeVec,
    pub sse_clients: IntGauge,
    /// Open client connections, and those the listener closed, by reason ([`crate::listener`]).
    pub connections: crate::listener::ConnMetrics,
    /// 1 while this instance runs the fleet-wide writers (always, with the file store).
    pub leader: IntGauge,
    /// Notification attempts by notifier and outcome (`sent`, `failed`, `dropped`).
    pub notifications: IntCounterVec,
    /// Alerts a route did not take (filters, quiet hours), by route.
    pub notifications_suppressed: IntCounterVec,
    pub notifications_pending: IntGauge,
    /// 1 while a notifier's last attempt failed.
    pub notifier_failing: IntGaugeVec,
    /// Time from handing a line to a log until it is on disk (fdatasync), per log.
    pub append_seconds: HistogramVec,
    pub replay_seconds: Gauge,
    pub replay_lines: IntGauge,
    /// Commands signed and queued, by who asked (`admin` or `orchestrator`).
    pub commands_issued: IntCounterVec,
    /// Receipts by status (`ok`, `failed`, `rejected`, `timeout`).
    pub receipts: IntCounterVec,
    pub receipt_chain_breaks: IntCounter,
    /// Agent requests refused because their node was over its hourly byte budget, by kind.
    pub budget_refusals: IntCounterVec,
    /// Agent requests whose credential verified, by credential (`signature`, `mac`).
    pub agent_credentials: IntCounterVec,
    /// Events nodes posted about themselves (`POST /api/agent/events`), by kind.
    pub agent_events: IntCounterVec,
    /// 1 while the logs refuse writes (a full disk, an I/O error).
    pub storage_degraded: IntGauge,
    /// Failed log writes, by file.
    pub log_write_errors: IntCounterVec,
    pub volume_free_bytes: IntGauge,
    pub volume_size_bytes: IntGauge,
}

fn registered<T: prometheus::core::Collector + Clone + 'static>(registry: &Registry, m: T) -> T {
    // Names are constants and distinct: registration cannot fail.
    let _ = registry.register(Box::new(m.clone()));
    m
}

impl Metrics {
    pub fn new() -> Metrics {
        let r = Registry::new();
        let counter = |name: &str, help: &str| {
            registered(
                &r,
                IntCounter::new(name, help).unwrap_or_else(|_| unreachable!("valid metric name")),
            )
        };
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            registered(
                &r,
                IntCounterVec::new(Opts::new(name, help), labels)
                    .unwrap_or_else(|_| unreachable!("valid metric name")),
            )
        };
        let append_seconds = registered(
            &r,
            HistogramVec::new(
                HistogramOpts::new(
                    "vaultmesh_log_append_seconds",
                    "Time from handing a line to a log until it is on disk (group commit with fdatasync).",
                )
                .buckets(vec![
                    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                    0.5, 1.0,
                ]),
                &["log"],
            )
            .unwrap_or_else(|_| unreachable!("valid metric name")),
        );
        let nodes = registered(
            &r,
            IntGaugeVec::new(
                Opts::new("vaultmesh_nodes", "Nodes by attention level."),
                &["level"],
            )
            .unwrap_or_else(|_| unreachable!("valid metric name")),
        );
        let gauge = |name: &str, help: &str| {
            registered(
                &r,
                IntGauge::new(name, help).unwrap_or_else(|_| unreachable!("valid metric name")),
            )
        };
        let notifier_failing = registered(
            &r,
            IntGaugeVec::new(
                Opts::new(
                    "vaultmesh_notifier_failing",
                    "1 while a notifier's last attempt failed (its messages wait and are retried).",
                ),
                &["notifier"],
            )
            .unwrap_or_else(|_| unreachable!("valid metric name")),
        );
        let sse_clients = gauge("vaultmesh_sse_clients", "Open /events streams.");
        let log_write_errors = registered(
            &r,
            IntCounterVec::new(
                Opts::new(
                    "vaultmesh_log_write_errors_total",
                    "Log writes that failed (full disk, I/O error) and were refused, by file.",
                ),
                &["file"],
            )
            .unwrap_or_else(|_| unreachable!("valid metric name")),
        );
        let leader = gauge(
            "vaultmesh_leader",
            "1 if this instance runs the fleet-wide writers (attention log, scheduled scans).",
        );
        let replay_lines = gauge(
            "vaultmesh_replay_lines",
            "Log lines replayed when this process started.",
        );
        let replay_seconds = registered(
            &r,
            Gauge::new(
                "vaultmesh_replay_seconds",
                "How long replaying the logs took when this process started.",
            )
            .unwrap_or_else(|_| unreachable!("valid metric name")),
        );
        let build = registered(
            &r,
            IntGaugeVec::new(
                Opts::new(
                    "vaultmesh_build_info",
                    "Always 1; the version of this Command Center.",
                ),
                &["version"],
            )
            .unwrap_or_else(|_| unreachable!("valid metric name")),
        );
        build.with_label_values(&[crate::VERSION]).set(1);
        Metrics {
            heartbeats: counter(
                "vaultmesh_heartbeats_ingested_total",
                "Heartbeats accepted (verified and on disk).",
            ),
            scans: counter(
                "vaultmesh_scans_ingested_total",
                "Scan reports accepted (verified and on disk; a report sent twice counts once).",
            ),
            rejected: counter_vec(
                "vaultmesh_requests_rejected_total",
                "Requests answered with an error, by route and reason.",
                &["route", "reason"],
            ),
            commands_issued: counter_vec(
                "vaultmesh_commands_issued_total",
                "Commands signed and queued, by who asked (an admin or the scan orchestrator).",
                &["by"],
            ),
            receipts: counter_vec(
                "vaultmesh_command_receipts_total",
                "Signed command receipts accepted, by outcome on the node.",
                &["status"],
            ),
            receipt_chain_breaks: counter(
                "vaultmesh_receipt_chain_breaks_total",
                "Receipts that did not chain to their node's previous receipt.",
            ),
            notifications: counter_vec(
                "vaultmesh_notifications_total",
                "Notification attempts by notifier and outcome (sent, failed and retried, dropped).",
                &["notifier", "outcome"],
            ),
            notifications_suppressed: counter_vec(
                "vaultmesh_notifications_suppressed_total",
                "Alerts a route did not take (its filters, minimum level or quiet hours).",
                &["route"],
            ),
            notifications_pending: gauge(
                "vaultmesh_notifications_pending",
                "Notifications queued and not yet sent.",
            ),
            notifier_failing,
            agent_credentials: counter_vec(
                "vaultmesh_agent_requests_verified_total",
                "Agent requests whose credential verified, by credential: an Ed25519 signature or a session MAC.",
                &["credential"],
            ),
            agent_events: counter_vec(
                "vaultmesh_agent_events_total",
                "Notes and incidents nodes posted about themselves (POST /api/agent/events), by kind.",
                &["kind"],
            ),
            budget_refusals: counter_vec(
                "vaultmesh_budget_refusals_total",
                "Agent requests refused because their node sent more than its hourly byte budget, by kind.",
                &["kind"],
            ),
            storage_degraded: gauge(
                "vaultmesh_storage_degraded",
                "1 while the logs refuse writes (a full disk, an I/O error); reads keep working.",
            ),
            log_write_errors,
            volume_free_bytes: gauge(
                "vaultmesh_log_volume_free_bytes",
                "Free space on the log directory's filesystem (for an unprivileged writer).",
            ),
            volume_size_bytes: gauge(
                "vaultmesh_log_volume_size_bytes",
                "Size of the log directory's filesystem.",
            ),
            nodes,
            sse_clients,
            connections: crate::listener::ConnMetrics {
                open: gauge(
                    "vaultmesh_connections_open",
                    "Open client connections (at most --max-connections).",
                ),
                closed: counter_vec(
                    "vaultmesh_connections_closed_total",
                    "Client connections the Command Center closed, by reason: header_timeout (no whole request head within --header-timeout), idle_timeout (no new request within --idle-timeout of a response), write_timeout (the client read nothing for --write-timeout), evicted (idle, to make room at --max-connections), refused (503 at the bound, every connection busy).",
                    &["reason"],
                ),
            },
            leader,
            append_seconds,
            replay_seconds,
            replay_lines,
            registry: r,
        }
    }

    /// Records how long start-up replay took.
    pub fn replayed(&self, lines: u64, took: Duration) {
        self.replay_lines
            .set(i64::try_from(lines).unwrap_or(i64::MAX));
        self.replay_seconds.set(took.as_secs_f64());
    }

    /// The append-latency histogram of one log.
    pub fn append_latency(&self, log: &str) -> Histogram {
        self.append_seconds.with_label_values(&[log])
    }

    /// The exposition text.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 * 1024);
        // Encoding our own well-formed families into a Vec cannot fail.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Keeps [`Metrics::sse_clients`] right: one per open stream, dropped with it.
#[derive(Debug)]
pub struct StreamGauge(IntGauge);

impl StreamGauge {
    pub fn open(gauge: &IntGauge) -> StreamGauge {
        gauge.inc();
        StreamGauge(gauge.clone())
    }
}

impl Drop for StreamGauge {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// `GET /metrics`.
pub async fn scrape(State(state): State<AppState>) -> Response {
    let m = &state.metrics;
    let counts = state.attention.level_counts(state.store.node_count());
    for (level, n) in ["ok", "attn", "crit"].iter().zip(counts) {
        m.nodes
            .with_label_values(&[level])
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
    m.leader.set(i64::from(state.store.leads()));
    let storage = state.storage.state();
    m.storage_degraded.set(i64::from(storage.failing.is_some()));
    if let Some(v) = storage.volume {
        m.volume_free_bytes
            .set(i64::try_from(v.free_bytes).unwrap_or(i64::MAX));
        m.volume_size_bytes
            .set(i64::try_from(v.total_bytes).unwrap_or(i64::MAX));
    }
    for (file, n) in state.storage.failure_counts() {
        // StorageHealth keeps the running count; the counter catches up to it.
        let c = m.log_write_errors.with_label_values(&[file.as_str()]);
        if n > c.get() {
            c.inc_by(n - c.get());
        }
    }
    let mut body = m.render();
    crate::node_metrics::render(
        &state.store.summaries_with_latest(),
        chrono::Utc::now(),
        &mut body,
    );
    ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], body).into_response()
}

/// What [`count_rejections`] needs of the server's state (which provides it through `FromRef`).
#[derive(Debug, Clone)]
pub struct Counting {
    pub metrics: Arc<Metrics>,
    pub refusals: Arc<crate::refusals::RefusalLog>,
}

/// Middleware: counts every response an [`crate::error::ApiError`] produced, by route template
/// (never the raw path, so the label set stays small) and reason, and logs the refusals worth
/// an operator's attention ([`crate::refusals`]): every refused agent request, and admin
/// requests refused for their credentials, rights, host, rate or time.
pub async fn count_rejections(State(state): State<Counting>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_string();
    let agent = req.uri().path().starts_with("/api/agent/");
    let method = req.method().clone();
    let headers = req.headers();
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let node_id: Option<uuid::Uuid> =
        header(vaultmesh_proto::auth::HEADER_NODE).and_then(|v| v.parse().ok());
    let cf_connecting_ip: Option<std::net::IpAddr> =
        header(crate::refusals::CF_CONNECTING_IP).and_then(|v| v.parse().ok());
    let remote = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let res = next.run(req).await;
    if let Some(rejected) = res.extensions().get::<Rejected>() {
        state
            .metrics
            .rejected
            .with_label_values(&[route.as_str(), rejected.reason])
            .inc();
        let status = res.status().as_u16();
        if agent || matches!(status, 401 | 403 | 408 | 421 | 429 | 503) {
            state.refusals.record(&crate::refusals::Refused {
                reason: rejected.why,
                status,
                method: method.as_str(),
                route: &route,
                node_id,
                remote,
                cf_connecting_ip,
                detail: &rejected.detail,
            });
        }
    }
    res
}

/// The store's measurements go to `/metrics`.
impl vaultmesh_store::Observer for Metrics {
    fn append_latency(&self, log: &str) -> vaultmesh_store::LatencySink {
        let histogram = Metrics::append_latency(self, log);
        vaultmesh_store::LatencySink::new(move |seconds| histogram.observe(seconds))
    }
}

/// The engines' counts go to `/metrics`.
impl vaultmesh_engines::Observer for Metrics {
    fn command_issued(&self, source: &str) {
        self.commands_issued.with_label_values(&[source]).inc();
    }

    fn notification_suppressed(&self, route: &str) {
        self.notifications_suppressed
            .with_label_values(&[route])
            .inc();
    }

    fn notification(&self, notifier: &str, outcome: &str) {
        self.notifications
            .with_label_values(&[notifier, outcome])
            .inc();
    }

    fn notifier_state(&self, pending: usize, notifier: &str, failing: bool) {
        self.notifications_pending
            .set(i64::try_from(pending).unwrap_or(i64::MAX));
        self.notifier_failing
            .with_label_values(&[notifier])
            .set(i64::from(failing));
    }
}
