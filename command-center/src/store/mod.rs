//! The Command Center's store: what handlers call to record and read fleet data.
//!
//! [`Store`] is the seam: handlers hold an `Arc<dyn Store>` and never see files. The default
//! implementation, [`JsonlStore`], keeps state in memory ([`FleetState`]) and every record in
//! append-only JSONL files under the log directory, rebuilding the state from them on start.
//!
//! - [`record`]: the line format (`{"kind", "ts", "node_id", "record"}`) and a fast header parser.
//! - [`journal`]: one append-only file with a single writer thread, group commit and rotation.
//! - [`logdir`]: file names, rotated segments, retention.
//! - [`replay`]: reading logs back (torn tails, corrupt lines) and rebuilding state.
//! - [`fleet`]: the in-memory state.
//! - [`jsonl`]: the store that ties them together.

pub mod commands;
pub mod events;
pub mod fleet;
pub mod journal;
pub mod jsonl;
pub mod logdir;
pub mod record;
pub mod registry;
pub mod replay;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;
use vaultmesh_proto::auth::EnrollRequest;
use vaultmesh_proto::command::{SignedCommand, SignedReceipt};
use vaultmesh_proto::{EventEnvelope, NewEvent, NodeDetail, NodeHeartbeat, NodeSummary};

pub use events::EventQuery;

pub use fleet::FleetState;
pub use jsonl::{JsonlStore, StoreOptions};

/// Limits that keep memory bounded whatever the agents send.
#[derive(Debug, Clone, Copy)]
pub struct StoreLimits {
    /// History points kept per node.
    pub history_len: usize,
    /// Distinct nodes tracked; heartbeats from further new nodes are refused.
    pub max_nodes: usize,
}

impl Default for StoreLimits {
    fn default() -> Self {
        StoreLimits {
            history_len: 240,
            max_nodes: 10_000,
        }
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
    /// The record conflicts with the current state (e.g. resolving a resolved incident).
    #[error("{0}")]
    Conflict(String),
    /// A single-use enrollment token that was already used.
    #[error("this enrollment token was single-use and has been used")]
    TokenSpent,
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

    /// One summary per node, sorted by hostname then id.
    fn summaries(&self) -> Vec<NodeSummary>;

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

    /// The key `node_id` is bound to, if enrolled (revoked bindings included, marked).
    fn binding(&self, node_id: Uuid) -> Option<registry::Binding>;

    /// Binds `req.node_id` to `req.public_key` durably. Idempotent for the same key;
    /// `Conflict` for another key unless revoked; `TokenSpent` for a used single-use token.
    async fn enroll(
        &self,
        req: &EnrollRequest,
        token_id: String,
        single_use: bool,
    ) -> Result<DateTime<Utc>, StoreError>;

    /// Revokes a node's binding, so it can re-enroll with a new key. `Invalid` if unknown.
    async fn revoke(&self, node_id: Uuid) -> Result<(), StoreError>;

    /// Allocates the node's next `seq`, lets `build` make and sign the command with it, logs it
    /// durably and queues it for the node's long-poll.
    async fn issue_command(
        &self,
        node_id: Uuid,
        build: CommandBuilder,
    ) -> Result<SignedCommand, StoreError>;

    /// The node's undelivered commands, now marked delivered.
    fn take_commands(&self, node_id: Uuid) -> Vec<SignedCommand>;

    /// Notified when a command is queued for `node_id`.
    fn command_notify(&self, node_id: Uuid) -> std::sync::Arc<tokio::sync::Notify>;

    /// Logs a verified receipt; returns whether it continued the node's chain. `Invalid` if it
    /// answers no command of that node.
    async fn record_receipt(&self, receipt: SignedReceipt) -> Result<bool, StoreError>;

    /// Recent commands, newest first.
    fn commands(
        &self,
        node_id: Option<Uuid>,
        status: Option<commands::CommandStatus>,
        limit: usize,
    ) -> Vec<commands::CommandView>;
}

/// Makes the signed command once its `seq` is known.
pub type CommandBuilder = Box<dyn FnOnce(u64) -> SignedCommand + Send>;
