//! Commands in memory: per node the next `seq`, the queue of commands not yet delivered, the
//! status of recent commands, and the receipt chain (last receipt hash, whether it ever broke).
//! Rebuilt from `commands.jsonl` (`command` and `receipt` lines).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use uuid::Uuid;
use vaultmesh_proto::command::{POLL_BATCH_MAX, ReceiptStatus, SignedCommand, SignedReceipt};

/// Commands whose status is kept in memory.
pub const KEPT: usize = 2000;

/// A delivered command without a receipt is handed out again after this long.
pub const REDELIVER_AFTER: chrono::TimeDelta = chrono::TimeDelta::seconds(120);

/// Where a command is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CommandStatus {
    Issued,
    Delivered,
    Ok,
    Failed,
    Rejected,
    Timeout,
}

impl From<ReceiptStatus> for CommandStatus {
    fn from(s: ReceiptStatus) -> Self {
        match s {
            ReceiptStatus::Ok => CommandStatus::Ok,
            ReceiptStatus::Failed => CommandStatus::Failed,
            ReceiptStatus::Rejected => CommandStatus::Rejected,
            ReceiptStatus::Timeout => CommandStatus::Timeout,
        }
    }
}

/// A command as `GET /api/commands` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CommandView {
    #[serde(flatten)]
    pub signed: SignedCommand,
    pub status: CommandStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<SignedReceipt>,
    /// Whether the receipt continued the node's chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain_ok: Option<bool>,
}

/// The `record` of a `receipt` line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReceiptRecord {
    #[serde(flatten)]
    pub signed: SignedReceipt,
    pub chain_ok: bool,
}

/// What a receipt would be to the log ([`CommandState::check_receipt`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReceiptCheck {
    /// It answers no known command of its node.
    Unknown,
    /// The command's first receipt; whether it continues the node's chain.
    New { chain_ok: bool },
    /// The receipt the command already has, sent again (its reply was lost): nothing to log.
    Duplicate { chain_ok: bool },
    /// A different receipt for a command that has one; `kept_sha256` is the kept one's hash.
    Conflict { kept_sha256: String },
}

#[derive(Debug, Default)]
struct NodeCommands {
    last_seq: u64,
    pending: VecDeque<Uuid>,
    last_receipt: Option<String>,
    chain_broken: bool,
    notify: Arc<Notify>,
}

#[derive(Debug, Default)]
pub struct CommandState {
    nodes: HashMap<Uuid, NodeCommands>,
    commands: HashMap<Uuid, CommandView>,
    order: VecDeque<Uuid>,
}

impl CommandState {
    pub fn get(&self, id: &Uuid) -> Option<&CommandView> {
        self.commands.get(id)
    }

    /// The seq the next command for `node` gets.
    pub fn next_seq(&self, node: &Uuid) -> u64 {
        self.nodes.get(node).map_or(1, |n| n.last_seq + 1)
    }

    /// Wakes `node`'s long-poll when a command is queued.
    pub fn notify(&mut self, node: Uuid) -> Arc<Notify> {
        Arc::clone(&self.nodes.entry(node).or_default().notify)
    }

    pub fn apply_command(&mut self, signed: &SignedCommand) {
        let c = &signed.command;
        let n = self.nodes.entry(c.node_id).or_default();
        n.last_seq = n.last_seq.max(c.seq_number().unwrap_or(0));
        n.pending.push_back(c.command_id);
        n.notify.notify_waiters();
        self.commands.insert(
            c.command_id,
            CommandView {
                signed: signed.clone(),
                status: CommandStatus::Issued,
                delivered_at: None,
                receipt: None,
                chain_ok: None,
            },
        );
        self.order.push_back(c.command_id);
        while self.order.len() > KEPT {
            if let Some(old) = self.order.pop_front() {
                self.commands.remove(&old);
            }
        }
    }

    /// `node`'s unexpired commands to hand out, oldest first: those never delivered, and
    /// those delivered [`REDELIVER_AFTER`] ago without a receipt (the reply to the long-poll
    /// may have been lost; the agent refuses one it already ran, with a receipt). At most
    /// [`POLL_BATCH_MAX`] at a time, so the reply stays within what an agent reads.
    pub fn deliverable(&self, node: &Uuid, now: DateTime<Utc>) -> Vec<SignedCommand> {
        let Some(n) = self.nodes.get(node) else {
            return Vec::new();
        };
        n.pending
            .iter()
            .filter_map(|id| self.commands.get(id))
            .filter(|v| v.signed.command.expires_at > now)
            .filter(|v| match v.status {
                CommandStatus::Issued => true,
                CommandStatus::Delivered => {
                    v.delivered_at.is_none_or(|at| now - at >= REDELIVER_AFTER)
                }
                _ => false,
            })
            .map(|v| v.signed.clone())
            .take(POLL_BATCH_MAX)
            .collect()
    }

    /// Marks `ids` delivered to `node` at `at`; drops answered and expired commands from its
    /// queue.
    pub fn apply_delivered(&mut self, node: &Uuid, ids: &[Uuid], at: DateTime<Utc>) {
        let waiting = |v: &CommandView| {
            matches!(v.status, CommandStatus::Issued | CommandStatus::Delivered)
                && v.signed.command.expires_at > at
        };
        for id in ids {
            if let Some(v) = self.commands.get_mut(id)
                && waiting(v)
            {
                v.status = CommandStatus::Delivered;
                v.delivered_at = Some(at);
            }
        }
        if let Some(n) = self.nodes.get_mut(node) {
            let commands = &self.commands;
            n.pending
                .retain(|id| commands.get(id).is_some_and(&waiting));
        }
    }

    /// What recording `r` would mean: a command's first receipt (and whether it continues the
    /// node's chain), the same receipt again, or another receipt for a command that has one.
    pub fn check_receipt(&self, r: &SignedReceipt) -> ReceiptCheck {
        let Some(c) = self
            .commands
            .get(&r.receipt.command_id)
            .filter(|c| c.signed.command.node_id == r.receipt.node_id)
        else {
            return ReceiptCheck::Unknown;
        };
        if let Some(kept) = &c.receipt {
            let kept_sha256 = kept.chain_hash();
            return if kept_sha256 == r.chain_hash() {
                ReceiptCheck::Duplicate {
                    chain_ok: c.chain_ok.unwrap_or(true),
                }
            } else {
                ReceiptCheck::Conflict { kept_sha256 }
            };
        }
        let last = self
            .nodes
            .get(&r.receipt.node_id)
            .and_then(|n| n.last_receipt.clone());
        ReceiptCheck::New {
            chain_ok: r.receipt.prev_receipt_sha256 == last,
        }
    }

    pub fn apply_receipt(&mut self, rec: &ReceiptRecord) {
        let r = &rec.signed.receipt;
        let n = self.nodes.entry(r.node_id).or_default();
        n.last_receipt = Some(rec.signed.chain_hash());
        if !rec.chain_ok {
            n.chain_broken = true;
        }
        if let Some(v) = self.commands.get_mut(&r.command_id) {
            v.status = r.status.into();
            v.receipt = Some(rec.signed.clone());
            v.chain_ok = Some(rec.chain_ok);
            n.pending.retain(|id| *id != r.command_id);
        }
    }

    /// `Some(false)` once the node's chain broke, `Some(true)` after receipts that all chained,
    /// `None` before any receipt.
    pub fn chain_ok(&self, node: &Uuid) -> Option<bool> {
        let n = self.nodes.get(node)?;
        n.last_receipt.as_ref().map(|_| !n.chain_broken)
    }

    /// Recent commands, newest first.
    pub fn list(
        &self,
        node: Option<Uuid>,
        status: Option<CommandStatus>,
        limit: usize,
    ) -> Vec<CommandView> {
        self.order
            .iter()
            .rev()
            .filter_map(|id| self.commands.get(id))
            .filter(|v| {
                node.is_none_or(|n| v.signed.command.node_id == n)
                    && status.is_none_or(|s| v.status == s)
            })
            .take(limit)
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vaultmesh_proto::auth::NodeKey;
    use vaultmesh_proto::command::Command;

    fn command(node: Uuid, issued_at: DateTime<Utc>) -> SignedCommand {
        let c = Command {
            command_id: Uuid::now_v7(),
            node_id: node,
            action: "agent.ping".into(),
            args: serde_json::json!({}),
            nonce: "n".into(),
            seq: "1".into(),
            issued_at,
            expires_at: issued_at + chrono::TimeDelta::seconds(600),
            issued_by: "test".into(),
        };
        SignedCommand::sign(c, &NodeKey::from_seed([1; 32]))
    }

    #[test]
    fn a_delivered_command_without_receipt_is_handed_out_again_after_the_lease_only() {
        let node = Uuid::from_u128(1);
        let t0 = Utc::now();
        let mut st = CommandState::default();
        let c = command(node, t0);
        let id = c.command.command_id;
        st.apply_command(&c);
        assert_eq!(st.deliverable(&node, t0).len(), 1);
        st.apply_delivered(&node, &[id], t0);
        assert!(
            st.deliverable(&node, t0 + chrono::TimeDelta::seconds(1))
                .is_empty()
        );
        let later = t0 + REDELIVER_AFTER;
        assert_eq!(st.deliverable(&node, later).len(), 1);
        // Expired: never again.
        assert!(
            st.deliverable(&node, t0 + chrono::TimeDelta::seconds(601))
                .is_empty()
        );
        // Delivered again at `later`; the lease starts over.
        st.apply_delivered(&node, &[id], later);
        assert!(st.deliverable(&node, later).is_empty());
        assert_eq!(st.get(&id).map(|v| v.delivered_at), Some(Some(later)));
    }

    #[test]
    fn a_poll_hands_out_at_most_a_batch_oldest_first() {
        let node = Uuid::from_u128(1);
        let t0 = Utc::now();
        let mut st = CommandState::default();
        let all: Vec<SignedCommand> = (0..POLL_BATCH_MAX + 5).map(|_| command(node, t0)).collect();
        for c in &all {
            st.apply_command(c);
        }
        let first = st.deliverable(&node, t0);
        assert_eq!(first, all[..POLL_BATCH_MAX]);
        let ids: Vec<Uuid> = first.iter().map(|c| c.command.command_id).collect();
        st.apply_delivered(&node, &ids, t0);
        assert_eq!(st.deliverable(&node, t0), all[POLL_BATCH_MAX..]);
    }
}
