//! The node agent's engine, independent of which checks exist.
//!
//! - [`check`]: the [`Check`] trait every check implements, and what a run gets to see.
//! - [`registry`]: checks register themselves here at compile time with `inventory::submit!`;
//!   the registry turns the `[checks.<name>]` tables of the agent's TOML into configured checks.
//! - [`config`]: the agent's typed configuration (file + environment), validated at load.
//! - [`scheduler`]: runs each check on its own interval with a deterministic per-node splay, a
//!   timeout and panic isolation, and keeps the latest run (result and contribution) of each.
//! - [`scans`]: the outbox through which a scanning check's report reaches the Command Center.
//! - [`heartbeat`]: turns the latest runs into a [`vaultmesh_proto::NodeHeartbeat`].
//! - [`client`]: the outbound-only HTTP client to the Command Center.
//! - [`events`]: the notes and incidents a node posts about itself.
//! - [`sort`]: stable sorts that share one copy of the sort code (a smaller agent).
//! - [`runtime`]: the agent's main loop, used by the `vaultmesh-node-agent` binary and by the
//!   Command Center's in-process demo.
//!
//! **Architecture invariant:** this crate never names a built-in check. Checks live in the
//! `vaultmesh-checks` crate and reach the agent only through the registry.

pub mod action;
pub mod backoff;
pub mod check;
pub mod client;
pub mod commands;
pub mod config;
pub mod events;
pub mod heartbeat;
pub mod host;
pub mod http1;
pub mod identity;
pub mod procfile;
pub mod registry;
pub mod runtime;
pub mod scans;
pub mod scheduler;
pub mod sort;

pub use check::{Check, CheckContext, CheckOutcome, CheckRun, Contribution};
pub use registry::CheckRegistration;

// Re-exported so check crates can register without depending on `inventory` version details.
pub use inventory;

/// This agent's version, sent in every heartbeat.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");
