//! Command actions: typed operations a signed command may ask for (`agent.ping`,
//! `service.restart`, ...). Like checks, each registers itself with `inventory::submit!` from
//! the crate that implements it; the agent runs only actions that are registered *and* in its
//! own `[commands] allow` list. There is no shell.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use vaultmesh_proto::command::ReceiptStatus;

use crate::check::CheckContext;
use crate::registry::ConfiguredCheck;

/// What an action may use.
#[derive(Debug, Clone)]
pub struct ActionContext {
    pub check_ctx: CheckContext,
    /// The agent's configured checks (for `checks.run`).
    pub checks: Arc<Vec<ConfiguredCheck>>,
}

/// An action's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionOutcome {
    /// `Ok` or `Failed` (the runner produces `Rejected` and `Timeout` itself).
    pub status: ReceiptStatus,
    pub exit_code: Option<i32>,
    pub output: String,
    pub reason: Option<String>,
}

impl ActionOutcome {
    pub fn ok(output: impl Into<String>) -> Self {
        ActionOutcome {
            status: ReceiptStatus::Ok,
            exit_code: Some(0),
            output: output.into(),
            reason: None,
        }
    }

    pub fn failed(reason: impl Into<String>) -> Self {
        let reason = reason.into();
        ActionOutcome {
            status: ReceiptStatus::Failed,
            exit_code: Some(1),
            output: String::new(),
            reason: Some(reason),
        }
    }
}

/// The future an action returns.
pub type ActionFuture = Pin<Box<dyn Future<Output = ActionOutcome> + Send>>;

/// An action's entry in the registry.
#[derive(Debug)]
pub struct ActionRegistration {
    pub name: &'static str,
    pub description: &'static str,
    /// Longest the action may run before the receipt says `timeout`
    /// ([`crate::commands::ACTION_TIMEOUT`] suits most).
    pub timeout: std::time::Duration,
    /// Runs the action with its (already parsed as an object) arguments.
    pub run: fn(ActionContext, serde_json::Value) -> ActionFuture,
}

inventory::collect!(ActionRegistration);

/// Every registered action, sorted by name.
pub fn all() -> Vec<&'static ActionRegistration> {
    let mut v: Vec<_> = inventory::iter::<ActionRegistration>.into_iter().collect();
    v.sort_by_key(|a| a.name);
    v
}

pub fn find(name: &str) -> Option<&'static ActionRegistration> {
    inventory::iter::<ActionRegistration>
        .into_iter()
        .find(|a| a.name == name)
}
