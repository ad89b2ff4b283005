//! Issuing a command: the one path both `POST /api/commands` and the scan orchestrator take.
//! It checks the request's shape, the node (known, not revoked) and its profile's policy,
//! bounds the signed size so every command fits an agent's poll reply, then signs, logs and
//! queues it. See `docs/COMMANDS.md`.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use uuid::Uuid;
use vaultmesh_proto::auth::NodeKey;
use vaultmesh_proto::command::{COMMAND_MAX, Command, SignedCommand};
use vaultmesh_store::policy::LivePolicies;
use vaultmesh_store::{Store, StoreError};

/// Default time to live of a command.
pub const DEFAULT_TTL: Duration = Duration::from_secs(300);
/// Shortest and longest time to live, in seconds.
pub const TTL_RANGE: std::ops::RangeInclusive<u64> = 30..=3600;

/// A command to issue.
#[derive(Debug, Clone)]
pub struct IssueRequest {
    pub node_id: Uuid,
    /// An action name such as `service.restart`.
    pub action: String,
    /// The action's arguments: a JSON object (`null` is taken as `{}`).
    pub args: serde_json::Value,
    /// How long the command stays valid ([`TTL_RANGE`] seconds).
    pub ttl: Duration,
    /// Who asked: the signed-in admin, or `orchestrator`.
    pub issued_by: String,
}

/// Why a command was not issued.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// The action is not a name like `service.restart`, the args not an object, or the time to
    /// live out of range.
    #[error("{0}")]
    Invalid(String),
    #[error("no node {0}")]
    NoNode(Uuid),
    /// The node was revoked: its key is refused, so it could not fetch the command.
    #[error(
        "node {node_id} was revoked at {at} by {by}; a revoked node cannot fetch commands \
         (re-admit it and let it enroll again first)"
    )]
    Revoked {
        node_id: Uuid,
        at: String,
        by: String,
    },
    /// The node's profile policy does not allow it.
    #[error("{0}")]
    Refused(String),
    /// Signed, it would not fit an agent's poll reply.
    #[error(
        "the signed command would be {0} bytes; at most {COMMAND_MAX}: shorten args or issued_by"
    )]
    TooLarge(usize),
    /// The store refused or failed the write.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Checks `req` (shape, node, policy, size), then signs it with `key`, logs and queues it.
/// Returns once the command is durable.
pub async fn issue(
    store: &dyn Store,
    policies: &LivePolicies,
    key: Arc<NodeKey>,
    req: IssueRequest,
) -> Result<SignedCommand, IssueError> {
    let IssueRequest {
        node_id,
        action,
        args,
        ttl,
        issued_by,
    } = req;
    if action.is_empty()
        || action.len() > 64
        || !action
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b == b'.' || b == b'_')
    {
        return Err(IssueError::Invalid(format!(
            "action {action:?} is not an action name like service.restart"
        )));
    }
    let args = if args.is_null() {
        serde_json::json!({})
    } else {
        args
    };
    if !args.is_object() {
        return Err(IssueError::Invalid("args must be a JSON object".into()));
    }
    if !TTL_RANGE.contains(&ttl.as_secs()) {
        return Err(IssueError::Invalid(format!(
            "ttl_s must be between {} and {}",
            TTL_RANGE.start(),
            TTL_RANGE.end()
        )));
    }
    let snap = store.snapshot(node_id).ok_or(IssueError::NoNode(node_id))?;
    if let Some(rev) = &snap.revoked {
        return Err(IssueError::Revoked {
            node_id,
            at: rev.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            by: rev.by.clone(),
        });
    }
    policies
        .get()
        .check_command(&snap.latest.os_profile, &action, &args)
        .map_err(IssueError::Refused)?;
    // Every command fits an agent's bounded poll reply (`POLL_REPLY_MAX`): measure it signed,
    // with the longest seq, and 64 bytes to spare for the timestamps' digits.
    let probe_time = Utc::now();
    let probe = SignedCommand::sign(
        Command {
            command_id: Uuid::nil(),
            node_id,
            action: action.clone(),
            args: args.clone(),
            nonce: Uuid::nil().simple().to_string(),
            seq: u64::MAX.to_string(),
            issued_at: probe_time,
            expires_at: probe_time,
            issued_by: issued_by.clone(),
        },
        &key,
    );
    let len = probe.json_len().saturating_add(64);
    if len > COMMAND_MAX {
        return Err(IssueError::TooLarge(len));
    }
    let build = Box::new(move |seq: u64| {
        let now = Utc::now();
        let command = Command {
            command_id: Uuid::now_v7(),
            node_id,
            action,
            args,
            nonce: Uuid::new_v4().simple().to_string(),
            seq: seq.to_string(),
            issued_at: now,
            expires_at: now + chrono::Duration::from_std(ttl).unwrap_or_default(),
            issued_by,
        };
        SignedCommand::sign(command, &key)
    });
    let signed = store.issue_command(node_id, build).await?;
    tracing::info!(command_id = %signed.command.command_id, %node_id, action = %signed.command.action, issued_by = %signed.command.issued_by, "Command issued.");
    Ok(signed)
}
