//! The Command Center's store: what handlers call to record and read fleet data, and what the
//! offline tools read.
//!
//! **Architecture invariant:** this crate depends on no HTTP, UI or mail crate (axum, hyper,
//! maud, reqwest, lettre, prometheus); it reports what it measures through [`Observer`] (test:
//! `testkit/tests/invariants.rs::the_store_knows_no_http_ui_or_mail`).
//!
//! [`Store`] is the seam: handlers hold an `Arc<dyn Store>` and never see files. Its one
//! implementation, [`LoggedStore`], keeps state in [`Memory`] and every record in an append-only
//! log kept by a [`Backend`]: JSONL files under the log directory ([`JsonlStore`], the default)
//! or a PostgreSQL database that several Command Centers share ([`PgStore`]).
//!
//! - [`change`]: one record, typed, and its line; [`memory`]: the state it is applied to;
//!   [`logged`]: the checks every write makes, and the backend seam.
//! - [`record`]: the line format (`{"kind", "ts", "node_id", "record"}`) and a fast header parser.
//! - [`journal`]: one append-only file with a single writer thread, group commit and rotation.
//! - [`logdir`]: file names, rotated segments (plain or compressed, opened alike), retention;
//!   [`compress`]: zstd compression of closed segments in the background; [`dirlock`]: one
//!   writer per log directory.
//! - [`replay`]: reading logs back (torn tails, corrupt lines) and rebuilding state.
//! - [`snapshot`]: `state.snapshot`, the heartbeat state at a position of the heartbeat log,
//!   so a start replays only the lines after it.
//! - [`fleet`]: the in-memory state.
//! - [`scans`]: each node's latest scan report and its drift.
//! - [`jsonl`]: the JSONL backend that ties them together.
//! - [`postgres`]: the PostgreSQL backend (schema, writer, tail of other instances' writes,
//!   export and import).
//! - [`bus`]: the live event bus (broadcast and resume window) the store publishes to.
//! - [`ledger`]: the Merkle ledger over the durable scan lines.
//! - [`logs`]: the `logs view|tail|stats` tools over the log files, as a library.
//! - [`tokens`]: enrollment tokens minted at runtime, kept by their hash.
//! - [`policy`]: per-profile policy files (commands, services, thresholds, scan schedule).

pub mod bus;
pub mod change;
pub mod commands;
pub mod compress;
pub mod dirlock;
pub mod events;
pub mod fleet;
pub mod health;
pub mod history;
pub mod journal;
pub mod jsonl;
pub mod ledger;
pub mod logdir;
pub mod logged;
pub mod logs;
pub mod memory;
pub mod policy;
pub mod postgres;
pub mod record;
pub mod registry;
pub mod replay;
pub mod scans;
pub mod seen;
pub mod snapshot;
pub mod tokens;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;
use vaultmesh_proto::auth::EnrollRequest;
use vaultmesh_proto::command::{SignedCommand, SignedReceipt};
use vaultmesh_proto::scan::Drift;
use vaultmesh_proto::{
    EventEnvelope, Incident, NewEvent, NodeDetail, NodeHeartbeat, NodeSummary, ScanAccepted,
    ScanReport,
};

pub use events::EventQuery;

pub use fleet::{FleetState, LatestMeasures};
pub use jsonl::{JsonlStore, StoreOptions};
pub use logged::{Backend, LoggedStore};
pub use memory::Memory;
pub use postgres::PgStore;

/// Where the store reports what it measures; the server implements it over its `/metrics`
/// registry, tools and tests pass none.
pub trait Observer: Send + Sync + std::fmt::Debug {
    /// The append-latency sink of one log (`heartbeats`, `events`, ..., or `postgres`): each
    /// append's queueing, write and sync time.
    fn append_latency(&self, log: &str) -> LatencySink;
}

/// Receives durations in seconds (a histogram, at the server).
#[derive(Clone)]
pub struct LatencySink(std::sync::Arc<dyn Fn(f64) + Send + Sync>);

impl LatencySink {
    pub fn new(record: impl Fn(f64) + Send + Sync + 'static) -> LatencySink {
        LatencySink(std::sync::Arc::new(record))
    }

    /// Records one duration.
    pub fn record(&self, took: std::time::Duration) {
        (self.0)(took.as_secs_f64());
    }
}

impl std::fmt::Debug for LatencySink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LatencySink")
    }
}

/// Limits that keep memory bounded whatever the agents send (`serve` flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Args)]
pub struct StoreLimits {
    /// Heartbeat history points kept per node.
    #[arg(long, default_value_t = 240)]
    pub history_len: usize,
    /// Most nodes tracked; heartbeats from further new nodes get 503.
    #[arg(long, default_value_t = 10_000)]
    pub max_nodes: usize,
}

impl Default for StoreLimits {
    fn default() -> Self {
        vaultmesh_process::cli::defaults()
    }
}

/// Why the store refused or failed a write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("this Command Center already tracks {0} nodes, its limit")]
    NodeLimit(usize),
    /// The log could not be written; the record was not accepted.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The record is well-formed but refers to something that does not exist.
    #[error("{0}")]
    Invalid(String),
    /// What the request names (a node) does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The record conflicts with the current state (e.g. resolving a resolved incident).
    #[error("{0}")]
    Conflict(String),
    /// A single-use enrollment token that was already used.
    #[error("this enrollment token was single-use and has been used")]
    TokenSpent,
    /// A minted enrollment token that is not active: its id and why. The agent is told only
    /// that its token is not valid.
    #[error("enrollment token {id} is {}", state.as_str())]
    TokenRefused {
        id: String,
        state: tokens::TokenState,
    },
    /// An enrollment a revocation forbids.
    #[error("{0}")]
    Revoked(registry::Refusal),
}

/// Everything handlers need from storage.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Records a validated heartbeat. Returns once it is durable (on disk for [`JsonlStore`]).
    async fn record_heartbeat(
        &self,
        hb: NodeHeartbeat,
        received_at: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// One summary per node, sorted by hostname then id: everything known about it, its
    /// current attention included (put together in one place, [`Memory::summaries`]).
    fn summaries(&self) -> Vec<NodeSummary>;

    /// [`Store::summaries`], each with what the node's latest heartbeat measured: what per-node metrics
    /// (`GET /metrics`) are made of.
    fn summaries_with_latest(&self) -> Vec<(NodeSummary, LatestMeasures)>;

    /// Summary, latest heartbeat and bounded history of one node.
    fn detail(&self, node_id: Uuid) -> Option<NodeDetail>;

    fn node_count(&self) -> usize;

    /// Checks a validated event against current state (the incident an ack answers, ...),
    /// stamps it (`id`, `ts`, `hash`), stores it durably and returns it.
    async fn record_event(
        &self,
        new: NewEvent,
        author: String,
    ) -> Result<EventEnvelope, StoreError>;

    /// Events matching `query`, from memory when it holds the answer, else from the log.
    async fn query_events(&self, query: EventQuery) -> Result<Vec<EventEnvelope>, StoreError>;

    /// Events matching `query` among those held in memory only (the newest few hundred): for
    /// pages refreshed on every heartbeat, which must never read the log.
    fn recent_events(&self, query: &EventQuery) -> Vec<EventEnvelope>;

    /// One node's summary.
    fn summary(&self, node_id: Uuid) -> Option<NodeSummary>;

    /// Bytes of `sovereign-scans.jsonl` known durable (fsynced): what the ledger may hash.
    fn scans_durable_len(&self) -> u64;

    /// One node's latest scan report.
    fn latest_scan(&self, node_id: Uuid) -> Option<std::sync::Arc<ScanReport>>;

    /// The key `node_id` is bound to, if enrolled (revoked bindings included, marked).
    fn binding(&self, node_id: Uuid) -> Option<registry::Binding>;

    /// Binds `req.node_id` to `req.public_key` durably. Idempotent for the same key (which
    /// takes no use of the token); `Conflict` for another key unless revoked; `TokenSpent` for a
    /// used single-use configured token; `TokenRefused` for a minted token that is not active
    /// (checked, and its use taken, atomically with the enrollment); `Revoked` for a revoked
    /// node not re-admitted, or a revoked key.
    async fn enroll(
        &self,
        req: &EnrollRequest,
        token: tokens::TokenUse,
    ) -> Result<DateTime<Utc>, StoreError>;

    /// Mints an enrollment token durably (`token_created` in `nodes.jsonl`); `Conflict` if
    /// a token with its id exists.
    async fn create_token(&self, new: tokens::NewToken) -> Result<tokens::MintedToken, StoreError>;

    /// Revokes a minted token at once (`token_revoked`); revoking a revoked token changes
    /// nothing and returns it as it is. `NotFound` for an unknown id.
    async fn revoke_token(&self, id: &str, by: String) -> Result<tokens::MintedToken, StoreError>;

    /// Every minted token, newest first.
    fn tokens(&self) -> Vec<tokens::MintedToken>;

    /// The minted token whose secret hashes to `sha256` (hex), if any.
    fn token_by_hash(&self, sha256: &str) -> Option<tokens::MintedToken>;

    /// Makes an API token durably (`api_token_created` in `nodes.jsonl`); `Conflict` if a
    /// token with its id exists, or an active one with its name.
    async fn create_api_token(&self, new: tokens::ApiToken)
    -> Result<tokens::ApiToken, StoreError>;

    /// Revokes an API token at once (`api_token_revoked`); revoking a revoked token changes
    /// nothing. `NotFound` for an unknown id.
    async fn revoke_api_token(&self, id: &str, by: String) -> Result<tokens::ApiToken, StoreError>;

    /// Records that an API token was used at `at` (`api_token_used`).
    async fn api_token_used(&self, id: &str, at: DateTime<Utc>) -> Result<(), StoreError>;

    /// Every API token, newest first.
    fn api_tokens(&self) -> Vec<tokens::ApiToken>;

    /// The API token whose secret hashes to `sha256` (hex), if any.
    fn api_token_by_hash(&self, sha256: &str) -> Option<tokens::ApiToken>;

    /// Revokes a node's binding: its key stops working at once, and neither the node nor the
    /// key may enroll again until an admin re-admits the node. Logs a `node_revoked` event.
    /// `NotFound` if unknown, `Conflict` if already revoked (and not re-admitted since: revoking
    /// a re-admitted node withdraws the re-admission).
    async fn revoke(
        &self,
        node_id: Uuid,
        by: String,
        reason: Option<String>,
    ) -> Result<EventEnvelope, StoreError>;

    /// Decommissions a node: revokes it as [`Store::revoke`] does (same refusals, same way
    /// back), and marks the revocation so the node leaves the fleet's lists, attention and
    /// notifications until it enrolls again. Logs a `node_decommissioned` event. `NotFound` if
    /// unknown, `Conflict` if already decommissioned (a revoked node may be decommissioned).
    async fn decommission(
        &self,
        node_id: Uuid,
        by: String,
        reason: Option<String>,
    ) -> Result<EventEnvelope, StoreError>;

    /// Sets (or, with `None`, clears) a node's display name, checked already
    /// ([`vaultmesh_proto::display_name::check`]). Logs a `node_renamed` event with the names
    /// before and after; replaying it restores the name. `NotFound` for a node with no
    /// heartbeat, `Conflict` for a decommissioned one (out of the views until it enrolls
    /// again) or a name it has already.
    async fn rename(
        &self,
        node_id: Uuid,
        by: String,
        display_name: Option<String>,
    ) -> Result<EventEnvelope, StoreError>;

    /// Re-admits a revoked node: it may enroll again, with a new key unless `allow_old_key`.
    /// Logs a `node_readmitted` event. `NotFound` if unknown, `Conflict` if not revoked.
    async fn readmit(
        &self,
        node_id: Uuid,
        by: String,
        reason: Option<String>,
        allow_old_key: bool,
    ) -> Result<EventEnvelope, StoreError>;

    /// Remembers a signed request (its [`seen::digest`]) as accepted now, durably for this
    /// store (across restarts; with PostgreSQL, across instances); [`seen::Seen::Again`] for a
    /// replay within the window.
    async fn first_request(&self, digest: [u8; 32]) -> Result<seen::Seen, StoreError>;

    /// Logs an `enroll_refused` event: an enrollment a revocation refused.
    async fn record_enroll_refused(
        &self,
        node_id: Uuid,
        refusal: &registry::Refusal,
        public_key: &str,
    ) -> Result<EventEnvelope, StoreError>;

    /// Allocates the node's next `seq`, lets `build` make and sign the command with it, logs it
    /// durably and queues it for the node's long-poll.
    async fn issue_command(
        &self,
        node_id: Uuid,
        build: CommandBuilder,
    ) -> Result<SignedCommand, StoreError>;

    /// The node's undelivered commands, now marked delivered (durably: no instance hands them
    /// out again).
    async fn take_commands(&self, node_id: Uuid) -> Result<Vec<SignedCommand>, StoreError>;

    /// Notified when a command is queued for `node_id`.
    fn command_notify(&self, node_id: Uuid) -> std::sync::Arc<tokio::sync::Notify>;

    /// Logs a verified receipt; returns whether it continued the node's chain, and whether it
    /// was the command's receipt sent again (a lost reply: idempotent, nothing logged).
    /// `Invalid` if it answers no command of that node; `Conflict` (and a `receipt_conflict`
    /// event) if the command already has a different receipt — never a chain break.
    async fn record_receipt(&self, receipt: SignedReceipt) -> Result<ReceiptOutcome, StoreError>;

    /// Stores a validated scan report durably (once: a retry of the same `scan_id` is
    /// acknowledged as a duplicate) and computes its drift against the node's previous scan.
    async fn record_scan(
        &self,
        report: ScanReport,
        received_at: DateTime<Utc>,
    ) -> Result<ScanAccepted, StoreError>;

    /// What attention rules need about one node (no history).
    fn snapshot(&self, node_id: Uuid) -> Option<NodeSnapshot>;

    /// Every known node.
    fn node_ids(&self) -> Vec<Uuid>;

    /// The most recent time any node was heard from (what a restart's grace period starts from).
    fn newest_seen(&self) -> Option<DateTime<Utc>>;

    /// Writes an event the Command Center itself originates (`attention`, or a `resolve` that
    /// ends a silence), stamped and sealed like an operator's, and publishes it.
    async fn record_system_event(
        &self,
        kind: &str,
        node_id: Option<Uuid>,
        body: serde_json::Value,
        refs: Vec<Uuid>,
    ) -> Result<EventEnvelope, StoreError>;

    /// Silences that have not ended.
    fn silences(&self) -> Vec<events::Silence>;

    /// Every node's latest `attention` event: when, and its body.
    fn attention_log(
        &self,
    ) -> std::collections::HashMap<Uuid, (DateTime<Utc>, vaultmesh_proto::event::AttentionBody)>;

    /// Sets a node's current attention — the attention engine's judgement, which every
    /// summary carries ([`Store::summaries`]); the engine logs its changes itself
    /// ([`Store::record_system_event`]).
    fn set_attention(&self, node_id: Uuid, attention: vaultmesh_proto::Attention);

    /// Whether this instance runs the fleet-wide writers — the attention log, ending silences,
    /// scheduled scans. Always with the JSONL store; with PostgreSQL, one instance at a time.
    fn leads(&self) -> bool;

    /// One node's history over `range`, the series limited to `metrics` when not empty; `None`
    /// for an unknown node.
    async fn history(
        &self,
        node_id: Uuid,
        range: vaultmesh_proto::history::Range,
        metrics: &[String],
    ) -> Result<Option<vaultmesh_proto::history::NodeHistory>, history::HistoryError>;

    /// Recent commands, newest first.
    fn commands(
        &self,
        node_id: Option<Uuid>,
        status: Option<commands::CommandStatus>,
        limit: usize,
    ) -> Vec<commands::CommandView>;
}

/// Everything attention rules look at for one node.
#[derive(Debug, Clone)]
pub struct NodeSnapshot {
    pub node_id: Uuid,
    pub latest: std::sync::Arc<NodeHeartbeat>,
    pub last_seen: DateTime<Utc>,
    /// Heartbeats received so far: tells a new heartbeat from a re-evaluation.
    pub heartbeats: u64,
    pub latest_scan: Option<std::sync::Arc<ScanReport>>,
    pub drift: std::sync::Arc<[Drift]>,
    /// Open and acknowledged incidents.
    pub incidents: Vec<Incident>,
    pub receipt_chain_ok: Option<bool>,
    /// Set while the node is revoked (re-admitted or not, until it enrolls again).
    pub revoked: Option<vaultmesh_proto::api::NodeRevoked>,
    /// Each filesystem's fill forecast from its last 7 days.
    pub forecasts: Vec<vaultmesh_proto::history::DiskForecast>,
}

/// What [`Store::record_receipt`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiptOutcome {
    /// Whether the receipt continued the node's chain.
    pub chain_ok: bool,
    /// The command already had this very receipt: nothing was logged.
    pub duplicate: bool,
}

/// Makes the signed command once its `seq` is known.
pub type CommandBuilder = Box<dyn FnOnce(u64) -> SignedCommand + Send>;
