//! The VaultMesh Command Center: an axum server that ingests heartbeats from node agents,
//! keeps the fleet's state and shows it.
//!
//! - [`admin`]: the admin API's client behind `command issue|list` and `node revoke|readmit`.
//! - [`config`]: the server's typed configuration (flags and environment).
//! - [`store`]: fleet state — latest heartbeat, bounded history and counters per node — behind
//!   one small type, so handlers never touch the map or (later) the durable log directly.
//! - [`error`]: the one error type every handler returns; each becomes a status and a JSON body.
//! - [`agent_auth`]: the `Signed` extractor: the node-signature check on agent requests (the
//!   checks themselves: `vaultmesh_engines::auth`).
//! - [`buckets`]: token buckets by key (request rates, enrollment rates, byte budgets).
//! - [`budget`]: bytes per hour each node may send, per kind.
//! - [`api`]: JSON handlers (`/api/agent/heartbeat`, `/api/nodes`, `/healthz`).
//! - [`policy`]: per-profile policy files (commands, services, thresholds, scan schedule).
//! - [`attention`]: the attention rules and the engine that keeps every node's level.
//! - [`orchestrator`]: scheduled `scan.sovereign` commands.
//! - [`ui`]: server-rendered, auto-escaped HTML pages (`/`).
//! - [`bus`]: the live event bus (broadcast + resume window) behind `GET /events`.
//! - [`sse`]: the `GET /events` stream.
//! - [`server`]: the router, its middleware and the server.
//! - [`listener`]: connections: the bound, the header and write timeouts, the open-file limit.
//! - [`guard`]: what every request passes before authentication: its host (DNS rebinding) and,
//!   for a write, its site (cross-site request forgery).
//! - [`refusals`]: why a request was refused, in the log, a bounded number of lines per reason.
//! - [`timeout`]: every request answered in bounded time, a timeout as a JSON error.
//! - [`logs`]: the `logs view|tail|stats` tools over the log files.
//! - [`demo`]: the Command Center plus a real agent for this host in one process.

pub mod access;
pub mod admin;
pub mod agent_auth;
pub mod api;
pub mod commands;
pub mod config;
pub mod demo;
pub mod error;
pub mod guard;
pub mod listener;
pub mod metrics;
pub mod notifiers;
pub mod refusals;
pub mod server;
pub mod sse;
pub mod timeout;
pub mod ui;

/// The Command Center's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
