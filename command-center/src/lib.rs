//! The VaultMesh Command Center's HTTP layer, console and CLI library, over the store
//! (`vaultmesh_store`) and the engines (`vaultmesh_engines`). See docs/ARCHITECTURE.md.
//!
//! - [`server`]: the router, its middleware, `AppState` and its substates, and the server.
//! - [`config`]: `serve`'s flags, which are its configuration (`clap::Args`).
//! - [`api`], [`commands`], [`sse`]: the JSON handlers, the command routes, `GET /events`.
//! - [`error`]: the one error type every handler returns, and the mapping of each domain error
//!   to a status and a JSON body — the only place one becomes the other.
//! - [`agent_auth`]: the `Signed` extractor: the node-signature check on agent requests (the
//!   checks themselves: `vaultmesh_engines::auth`).
//! - [`access`]: admin authentication (Cloudflare Access, the admin token).
//! - [`guard`]: what every request passes before authentication: its host (DNS rebinding) and,
//!   for a write, its site (cross-site request forgery).
//! - [`listener`]: connections: the bound, the header and write timeouts, the open-file limit.
//! - [`timeout`]: every request answered in bounded time, a timeout as a JSON error.
//! - [`metrics`], [`refusals`]: `GET /metrics` and why a request was refused, in the log.
//! - [`ui`]: the overview and the mission console, server-rendered and auto-escaped.
//! - [`notifiers`]: the notifier kinds (webhook, ntfy, email) the notification engine sends
//!   through.
//! - [`tokens`]: enrollment tokens minted at runtime: the request, the secret and its hash, the
//!   listing, the install line; [`enroll_tokens`]: their routes (`/api/enroll-tokens`), and
//!   which token an enrollment presents.
//! - [`admin`]: the admin API's client behind `command issue|list` and `node revoke|readmit`.
//! - [`demo`]: the Command Center plus a real agent for this host in one process.

pub mod access;
pub mod admin;
pub mod agent_auth;
pub mod api;
pub mod api_tokens;
pub mod commands;
pub mod config;
pub mod demo;
pub mod enroll_tokens;
pub mod error;
pub mod guard;
pub mod listener;
pub mod metrics;
pub mod node_metrics;
pub mod notifiers;
pub mod oidc;
pub mod refusals;
pub mod roles;
pub mod server;
pub mod sse;
pub mod timeout;
pub mod tokens;
pub mod ui;

/// The Command Center's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
