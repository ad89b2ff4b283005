//! Wire types shared by the node agent and the Command Center.
//!
//! Everything that crosses the network is defined here and nowhere else, so both sides agree by
//! construction. The rules of the contract (see `docs/API.md`):
//!
//! - Timestamps are RFC 3339 in UTC.
//! - Agent request bodies (enrollment, heartbeat, scan report, receipt) and everything nested in
//!   them ignore unknown members — none of their types denies unknown fields — so newer agents
//!   can talk to older servers and back. Signed command and receipt objects keep them
//!   ([`command::AsSigned`]). Admin bodies written by people ([`NewEvent`] and its kind bodies)
//!   refuse them, so a typo is an error.
//! - Optional additions are omitted when absent, so a heartbeat from the user's original agent — the
//!   seven seed fields only — is still a valid [`NodeHeartbeat`].
//! - 64-bit counters travel as strings (canonical JSON rounds integers above 2^53).
//!
//! **Architecture invariant:** this crate depends on no async runtime and no web framework; it is
//! plain data plus serde.

pub mod api;
pub mod auth;
pub mod canonical;
pub mod check;
pub mod checkpoint;
pub mod command;
pub mod display_name;
pub mod event;
pub mod heartbeat;
pub mod history;
pub mod labels;
pub mod live;
pub mod merkle;
pub mod scan;
pub mod session;
pub mod severity;
pub mod text;

pub use api::{
    Attention, AttentionLevel, ErrorBody, Health, HeartbeatAccepted, HistoryPoint, Incident,
    IncidentState, NodeDetail, NodeSummary, Reason, ScanAccepted,
};
pub use check::{CheckResult, CheckStatus};
pub use event::{EventEnvelope, NewEvent};
pub use heartbeat::{
    CpuUsage, DiskIo, DiskUsage, HeartbeatError, LastScan, Metrics, NetRates, NodeHeartbeat,
    Services, Temperature, Updates,
};
pub use scan::{Finding, Fingerprint, ScanReport};
pub use severity::Severity;
