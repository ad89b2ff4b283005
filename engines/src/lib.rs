//! The Command Center's engines: what it decides, apart from how it is asked.
//!
//! - [`attention`]: the pure attention rules and the engine that keeps every node's level.
//! - [`notify`]: the notification engine (routes, grouping, repeats, quiet hours), its durable
//!   queue, and the registry notifier kinds plug into.
//! - [`orchestrator`]: scheduled, spread-out `scan.sovereign` commands per profile.
//! - [`issue`]: issuing a command — the policy check, the size bound, signing, logging.
//! - [`budget`] and [`buckets`]: bytes per hour per node and fleet, and the token buckets
//!   behind every rate.
//! - [`auth`]: who an agent request is from — enrollment tokens, the signed-request checks
//!   (clock, key, signature, replay guard) and why credentials were refused.
//! - [`limits`]: agent requests a second per node, enrollments per source network, bodies being
//!   received per node.
//!
//! **Architecture invariant:** this crate depends on no HTTP or UI crate (axum, hyper, maud,
//! reqwest, lettre, prometheus); what it measures goes through [`Observer`], and its errors are
//! its own (test: `testkit/tests/invariants.rs::the_engines_know_no_http_or_ui`).

pub mod attention;
pub mod auth;
pub mod buckets;
pub mod budget;
pub mod issue;
pub mod limits;
pub mod notify;
pub mod orchestrator;

/// Where the engines report what they count; the server implements it over its `/metrics`
/// registry. No method has a default: an implementation that forgets one does not compile.
pub trait Observer: Send + Sync + std::fmt::Debug {
    /// A command was issued by `source` (`admin`, `orchestrator`).
    fn command_issued(&self, source: &str);
    /// A route passed an alert by (repeat interval, quiet hours, level).
    fn notification_suppressed(&self, route: &str);
    /// A notifier's message was `sent`, `failed` (will retry) or `dropped`.
    fn notification(&self, notifier: &str, outcome: &str);
    /// Messages waiting in the queue, and whether `notifier` is failing now.
    fn notifier_state(&self, pending: usize, notifier: &str, failing: bool);
}
