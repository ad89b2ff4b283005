//! The `data` of the live events on `GET /events` that are neither a heartbeat (its data is
//! [`crate::NodeSummary::heartbeat_event_json`]) nor an event envelope: `scan` and `command`.
//!
//! Their members serialize in alphabetical order, as they did when they were built as JSON
//! objects, so the stream is byte for byte what it was (`docs/API.md`).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Serialize, Serializer};
use uuid::Uuid;

use crate::command::{ReceiptStatus, SignedCommand};
use crate::severity::Severity;

/// `scan`: a node's scan report was stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScanEvent {
    /// Findings per severity (by name; severities without findings are absent).
    #[serde(serialize_with = "by_name")]
    pub counts: BTreeMap<Severity, u64>,
    /// Facts that differ from the node's previous scan.
    pub drift: usize,
    /// How many findings the report holds.
    pub findings: usize,
    pub finished_at: DateTime<Utc>,
    pub node_id: Uuid,
    pub scan_id: Uuid,
}

/// Severities in the order of their names, as a JSON object's members always were.
fn by_name<S: Serializer>(counts: &BTreeMap<Severity, u64>, s: S) -> Result<S::Ok, S::Error> {
    let named: BTreeMap<&str, u64> = counts.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    named.serialize(s)
}

/// `command`: a command was issued, handed to its node, or completed (its receipt stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandEvent {
    /// Signed and queued for the node.
    Issued(CommandSent),
    /// Handed to the node's long-poll.
    Delivered(CommandSent),
    /// The node's signed receipt was stored.
    Completed {
        command_id: Uuid,
        node_id: Uuid,
        /// How the command ended on the node.
        result: ReceiptStatus,
        /// Why it was rejected or failed.
        reason: Option<String>,
        /// Whether the receipt continued the node's receipt chain.
        chain_ok: bool,
    },
}

/// What `issued` and `delivered` say about a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandSent {
    pub command_id: Uuid,
    pub node_id: Uuid,
    pub action: String,
    /// The node's counter, as the signed command carries it (a decimal string).
    pub seq: String,
}

impl CommandSent {
    pub fn of(signed: &SignedCommand) -> CommandSent {
        let c = &signed.command;
        CommandSent {
            command_id: c.command_id,
            node_id: c.node_id,
            action: c.action.clone(),
            seq: c.seq.clone(),
        }
    }
}

impl CommandEvent {
    /// The node the command is for.
    pub fn node_id(&self) -> Uuid {
        match self {
            CommandEvent::Issued(c) | CommandEvent::Delivered(c) => c.node_id,
            CommandEvent::Completed { node_id, .. } => *node_id,
        }
    }
}

/// `{"action", "command_id", "node_id", "seq", "status"}`.
#[derive(Serialize)]
struct SentData<'a> {
    action: &'a str,
    command_id: Uuid,
    node_id: Uuid,
    seq: &'a str,
    status: &'static str,
}

impl SentData<'_> {
    fn of<'a>(c: &'a CommandSent, status: &'static str) -> SentData<'a> {
        SentData {
            action: &c.action,
            command_id: c.command_id,
            node_id: c.node_id,
            seq: &c.seq,
            status,
        }
    }
}

/// `{"chain_ok", "command_id", "node_id", "reason", "result", "status": "completed"}`.
#[derive(Serialize)]
struct CompletedData<'a> {
    chain_ok: bool,
    command_id: Uuid,
    node_id: Uuid,
    reason: &'a Option<String>,
    result: ReceiptStatus,
    status: &'static str,
}

impl Serialize for CommandEvent {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            CommandEvent::Issued(c) => SentData::of(c, "issued").serialize(s),
            CommandEvent::Delivered(c) => SentData::of(c, "delivered").serialize(s),
            CommandEvent::Completed {
                command_id,
                node_id,
                result,
                reason,
                chain_ok,
            } => CompletedData {
                chain_ok: *chain_ok,
                command_id: *command_id,
                node_id: *node_id,
                reason,
                result: *result,
                status: "completed",
            }
            .serialize(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The typed events serialize to the very bytes the JSON objects they replace did.
    #[test]
    fn scan_and_command_data_are_what_they_were() {
        let (node, id) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let at = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let counts: BTreeMap<Severity, u64> = [
            (Severity::Info, 3),
            (Severity::High, 1),
            (Severity::Critical, 2),
        ]
        .into();
        let scan = ScanEvent {
            counts: counts.clone(),
            drift: 4,
            findings: 6,
            finished_at: at,
            node_id: node,
            scan_id: id,
        };
        let before = json!({"scan_id": id, "node_id": node, "finished_at": at,
            "counts": counts, "findings": 6, "drift": 4});
        assert_eq!(serde_json::to_string(&scan).unwrap(), before.to_string());

        let sent = CommandSent {
            command_id: id,
            node_id: node,
            action: "agent.ping".into(),
            seq: "7".into(),
        };
        for (event, status) in [
            (CommandEvent::Issued(sent.clone()), "issued"),
            (CommandEvent::Delivered(sent.clone()), "delivered"),
        ] {
            let before = json!({"command_id": id, "node_id": node, "action": "agent.ping",
                "seq": "7", "status": status});
            assert_eq!(serde_json::to_string(&event).unwrap(), before.to_string());
        }
        for reason in [None, Some("no such unit".to_string())] {
            let done = CommandEvent::Completed {
                command_id: id,
                node_id: node,
                result: ReceiptStatus::Failed,
                reason: reason.clone(),
                chain_ok: false,
            };
            let before = json!({"command_id": id, "node_id": node, "status": "completed",
                "result": ReceiptStatus::Failed, "reason": reason, "chain_ok": false});
            assert_eq!(serde_json::to_string(&done).unwrap(), before.to_string());
            assert_eq!(done.node_id(), node);
        }
    }
}
