//! The agent's command runner: verify, remember, check locally, execute, sign a receipt.
//!
//! For every command received, in this order:
//! 1. a pinned Command Center key exists and the signature verifies (`verify_strict`);
//! 2. the command is for this node, and has no member this agent does not understand;
//! 3. its `seq` is above the last seen and its id never seen — then both are written to the
//!    state directory and fsynced **before** anything runs, so a replay is refused even after a
//!    crash or restart;
//! 4. now is within `issued_at − skew … expires_at + skew`;
//! 5. the action is in this node's own `[commands] allow` list and registered;
//! 6. the action accepts the arguments: its typed struct (no unknown members) and this node's
//!    configuration (`checks.run` only a configured, enabled check; `service.restart` only a
//!    unit in `[commands.service] restart_units`).
//!
//! Every outcome — ok, failed, rejected (with the reason), timeout — gets a receipt signed by
//! the node key whose `prev_receipt_sha256` is the hash of the node's previous receipt. Receipts
//! not yet accepted by the Command Center are kept (fsynced) and resent in order.

use std::collections::{BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use vaultmesh_proto::auth::NodeKey;
use vaultmesh_proto::command::{
    CommandReceipt, ReceiptStatus, SignedCommand, SignedReceipt, bounded_output,
};

use crate::action::{self, ActionContext, ActionFuture, ActionOutcome, ActionRegistration};
use crate::client::CcClient;
use crate::identity::IdentityError;

/// Clock skew tolerated on a command's time window.
pub const SKEW: chrono::Duration = chrono::Duration::seconds(60);
/// Longest an action may run.
pub const ACTION_TIMEOUT: Duration = Duration::from_secs(60);
const REPLAY_FILE: &str = "commands.state";
const CHAIN_FILE: &str = "receipts.state";
const SEEN_KEPT: usize = 1000;
/// Longest reason a receipt carries, in bytes: a reason may quote a hostile command.
const REASON_MAX: usize = 1024;

#[derive(Debug, Default, Serialize, Deserialize)]
struct ReplayState {
    last_seq: u64,
    seen: VecDeque<Uuid>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct ChainState {
    last: Option<String>,
    /// Signed, not yet accepted by the Command Center (oldest first).
    unsent: Vec<SignedReceipt>,
}

impl ChainState {
    /// Drops the oldest unsent receipt (refused for good) and chains the ones after it to the
    /// one before it, signing them again with `key`.
    fn drop_first_and_rechain(&mut self, key: &NodeKey) {
        if self.unsent.is_empty() {
            return;
        }
        let dropped = self.unsent.remove(0);
        let mut prev = dropped.receipt.prev_receipt_sha256.clone();
        for r in &mut self.unsent {
            let mut receipt: CommandReceipt = (*r.receipt).clone();
            receipt.prev_receipt_sha256 = prev;
            *r = SignedReceipt::sign(receipt, key);
            prev = Some(r.chain_hash());
        }
        self.last = prev;
    }

    /// Signs every unsent receipt again with `key` (a new node key after `rekey`); the chain
    /// hashes do not change.
    fn resign(&mut self, key: &NodeKey) {
        for r in &mut self.unsent {
            *r = SignedReceipt::sign((*r.receipt).clone(), key);
        }
    }
}

/// After `rekey`: the receipts not yet delivered were signed with the old key, which the
/// Command Center no longer accepts; signs them again with `key`. Returns how many.
pub fn resign_unsent(state_dir: &Path, key: &NodeKey) -> Result<usize, IdentityError> {
    let mut chain: ChainState = load(&state_dir.join(CHAIN_FILE))?;
    chain.resign(key);
    if !chain.unsent.is_empty() {
        write_json(state_dir, CHAIN_FILE, &chain)?;
    }
    Ok(chain.unsent.len())
}

/// Verifies and runs commands for one node.
#[derive(Debug)]
pub struct CommandRunner {
    node_id: Uuid,
    key: NodeKey,
    pinned: Option<VerifyingKey>,
    allow: BTreeSet<String>,
    state_dir: PathBuf,
    ctx: ActionContext,
    replay: Mutex<ReplayState>,
    chain: Mutex<ChainState>,
}

fn load<T: Default + for<'de> Deserialize<'de>>(path: &Path) -> Result<T, IdentityError> {
    match std::fs::read_to_string(path) {
        Ok(t) => serde_json::from_str(&t).map_err(|e| IdentityError::BadState {
            path: path.to_path_buf(),
            reason: format!("unreadable state: {e}"),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
        Err(e) => Err(IdentityError::Io {
            path: path.to_path_buf(),
            source: e,
        }),
    }
}

impl CommandRunner {
    pub fn new(
        node_id: Uuid,
        key: NodeKey,
        pinned: Option<&str>,
        allow: &[String],
        state_dir: &Path,
        ctx: ActionContext,
    ) -> Result<CommandRunner, IdentityError> {
        let pinned = pinned.and_then(|p| vaultmesh_proto::auth::parse_public_key(p).ok());
        Ok(CommandRunner {
            node_id,
            key,
            pinned,
            allow: allow.iter().cloned().collect(),
            state_dir: state_dir.to_path_buf(),
            ctx,
            replay: Mutex::new(load(&state_dir.join(REPLAY_FILE))?),
            chain: Mutex::new(load(&state_dir.join(CHAIN_FILE))?),
        })
    }

    /// Runs (or rejects) one command and returns its signed receipt (already chained and saved).
    pub async fn handle(&self, sc: SignedCommand) -> Result<SignedReceipt, IdentityError> {
        let started = Utc::now();
        let outcome = match self.admit(&sc, started) {
            Err(reason) => {
                tracing::warn!(command_id = %sc.command.command_id, %reason, "Command rejected.");
                Outcome {
                    status: ReceiptStatus::Rejected,
                    reason: Some(reason),
                    exit_code: None,
                    output: String::new(),
                }
            }
            Ok((reg, run)) => {
                // The replay state must be on disk before the action runs.
                self.save_replay()?;
                execute(reg, run).await
            }
        };
        self.receipt(&sc, outcome, started)
    }

    /// Steps 1–6; on success the command is recorded in memory (the caller saves it) and the
    /// action is ready to run.
    fn admit(
        &self,
        sc: &SignedCommand,
        now: DateTime<Utc>,
    ) -> Result<(&'static ActionRegistration, ActionFuture), String> {
        let c = &sc.command;
        let pinned = self
            .pinned
            .as_ref()
            .ok_or("no Command Center key is pinned (VAULTMESH_CC_PUBKEY)")?;
        sc.verify(pinned).map_err(|e| format!("command {e}"))?;
        if c.node_id != self.node_id {
            return Err(format!("command is for node {}, not this node", c.node_id));
        }
        // Must-understand: a member this agent does not know may limit what the command may
        // do; ignoring it would do more than was signed for.
        let unknown = sc.unknown_members();
        if !unknown.is_empty() {
            return Err(format!(
                "command carries members this agent does not understand ({}); upgrade the agent",
                unknown.join(", ")
            ));
        }
        let seq = c.seq_number().ok_or("seq is not a number")?;
        {
            let mut r = self.replay.lock().unwrap_or_else(|p| p.into_inner());
            if r.seen.contains(&c.command_id) {
                return Err(format!(
                    "command {} was already received (replay)",
                    c.command_id
                ));
            }
            if seq <= r.last_seq {
                return Err(format!(
                    "seq {seq} is not above the last seen {} (replay)",
                    r.last_seq
                ));
            }
            r.last_seq = seq;
            r.seen.push_back(c.command_id);
            while r.seen.len() > SEEN_KEPT {
                r.seen.pop_front();
            }
        }
        // Checked: a signed time at the edge of chrono's range must not panic the agent.
        if c.issued_at
            .checked_sub_signed(SKEW)
            .is_some_and(|t| now < t)
        {
            self.save_replay().map_err(|e| e.to_string())?;
            return Err(format!(
                "issued in the future ({})",
                c.issued_at.to_rfc3339()
            ));
        }
        if c.expires_at
            .checked_add_signed(SKEW)
            .is_none_or(|t| now > t)
        {
            self.save_replay().map_err(|e| e.to_string())?;
            return Err(format!("expired at {}", c.expires_at.to_rfc3339()));
        }
        if !self.allow.contains(&c.action) {
            self.save_replay().map_err(|e| e.to_string())?;
            return Err(format!(
                "action {} is not in this node's [commands] allow list",
                action::quoted(&c.action)
            ));
        }
        let Some(reg) = action::find(&c.action) else {
            self.save_replay().map_err(|e| e.to_string())?;
            return Err(format!(
                "action {} is not known to this agent",
                action::quoted(&c.action)
            ));
        };
        match (reg.prepare)(&self.ctx, c.args.clone()) {
            Ok(run) => Ok((reg, run)),
            Err(e) => {
                self.save_replay().map_err(|e| e.to_string())?;
                Err(format!("{}: {e}", c.action))
            }
        }
    }

    fn receipt(
        &self,
        sc: &SignedCommand,
        o: Outcome,
        started: DateTime<Utc>,
    ) -> Result<SignedReceipt, IdentityError> {
        let (output, output_sha256, truncated) = bounded_output(&o.output);
        let mut chain = self.chain.lock().unwrap_or_else(|p| p.into_inner());
        let receipt = CommandReceipt {
            command_id: sc.command.command_id,
            node_id: self.node_id,
            status: o.status,
            reason: o
                .reason
                .map(|r| r[..r.floor_char_boundary(REASON_MAX)].to_string()),
            exit_code: o.exit_code,
            output,
            truncated,
            output_sha256,
            started_at: started,
            finished_at: Utc::now(),
            prev_receipt_sha256: chain.last.clone(),
        };
        let signed = SignedReceipt::sign(receipt, &self.key);
        chain.last = Some(signed.chain_hash());
        chain.unsent.push(signed.clone());
        write_json(&self.state_dir, CHAIN_FILE, &*chain)?;
        Ok(signed)
    }

    /// Whether a receipt is still waiting to be delivered.
    pub fn has_unsent(&self) -> bool {
        !self
            .chain
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .unsent
            .is_empty()
    }

    /// Sends every unsent receipt in order; stops at the first failure (kept for next time).
    pub async fn flush_receipts(&self, client: &CcClient) {
        loop {
            let next = self
                .chain
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .unsent
                .first()
                .cloned();
            let Some(r) = next else { return };
            match client.post_receipt(&r).await {
                Ok(_) => {
                    let mut chain = self.chain.lock().unwrap_or_else(|p| p.into_inner());
                    chain.unsent.retain(|u| {
                        u.receipt.command_id != r.receipt.command_id || u.signature != r.signature
                    });
                    if let Err(e) = write_json(&self.state_dir, CHAIN_FILE, &*chain) {
                        tracing::error!(error = %e, "Cannot save the receipt chain.");
                    }
                }
                Err(e) if e.is_retryable() || e.is_unauthorized() => {
                    // Not delivered, or the node's key is not accepted right now (revoked,
                    // being enrolled again): kept, in order, and resent. Dropping it would
                    // break the chain for good.
                    tracing::warn!(error = %e, "Receipt not delivered; will resend.");
                    return;
                }
                Err(e) => {
                    // Refused for good (e.g. an unknown command): drop it, and chain the
                    // receipts after it to the one before it, so the Command Center's view of
                    // the chain stays whole.
                    tracing::error!(error = %e, command_id = %r.receipt.command_id, "Receipt refused; dropped, the receipts after it are chained again.");
                    let mut chain = self.chain.lock().unwrap_or_else(|p| p.into_inner());
                    chain.drop_first_and_rechain(&self.key);
                    if let Err(e) = write_json(&self.state_dir, CHAIN_FILE, &*chain) {
                        tracing::error!(error = %e, "Cannot save the receipt chain.");
                    }
                }
            }
        }
    }

    fn save_replay(&self) -> Result<(), IdentityError> {
        let r = self.replay.lock().unwrap_or_else(|p| p.into_inner());
        write_json(&self.state_dir, REPLAY_FILE, &*r)
    }
}

#[derive(Debug)]
struct Outcome {
    status: ReceiptStatus,
    reason: Option<String>,
    exit_code: Option<i32>,
    output: String,
}

/// Runs an admitted action within its time limit; a panic is a `failed` receipt.
async fn execute(reg: &ActionRegistration, run: ActionFuture) -> Outcome {
    match tokio::time::timeout(reg.timeout, tokio::spawn(run)).await {
        Ok(Ok(ActionOutcome {
            status,
            exit_code,
            output,
            reason,
        })) => Outcome {
            status,
            reason,
            exit_code,
            output,
        },
        Ok(Err(e)) => Outcome {
            status: ReceiptStatus::Failed,
            reason: Some(format!("action panicked: {e}")),
            exit_code: None,
            output: String::new(),
        },
        Err(_) => Outcome {
            status: ReceiptStatus::Timeout,
            reason: Some(format!("no result within {}s", reg.timeout.as_secs())),
            exit_code: None,
            output: String::new(),
        },
    }
}

fn write_json<T: Serialize>(dir: &Path, name: &str, value: &T) -> Result<(), IdentityError> {
    let text = serde_json::to_string(value).map_err(|e| IdentityError::BadState {
        path: dir.join(name),
        reason: e.to_string(),
    })?;
    crate::identity::write_private(dir, name, &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receipt(n: u128, prev: Option<String>, key: &NodeKey) -> SignedReceipt {
        let t = Utc::now();
        SignedReceipt::sign(
            CommandReceipt {
                command_id: Uuid::from_u128(n),
                node_id: Uuid::from_u128(99),
                status: ReceiptStatus::Ok,
                reason: None,
                exit_code: Some(0),
                output: String::new(),
                truncated: false,
                output_sha256: String::new(),
                started_at: t,
                finished_at: t,
                prev_receipt_sha256: prev,
            },
            key,
        )
    }

    #[test]
    fn a_receipt_refused_for_good_is_dropped_and_the_rest_chain_to_the_one_before() {
        let key = NodeKey::from_seed([1; 32]);
        let delivered = Some("aa".repeat(32));
        let a = receipt(1, delivered.clone(), &key);
        let b = receipt(2, Some(a.chain_hash()), &key);
        let c = receipt(3, Some(b.chain_hash()), &key);
        let mut chain = ChainState {
            last: Some(c.chain_hash()),
            unsent: vec![a, b, c],
        };
        chain.drop_first_and_rechain(&key);
        assert_eq!(chain.unsent.len(), 2);
        assert_eq!(chain.unsent[0].receipt.prev_receipt_sha256, delivered);
        assert_eq!(
            chain.unsent[1].receipt.prev_receipt_sha256,
            Some(chain.unsent[0].chain_hash())
        );
        assert_eq!(chain.last, Some(chain.unsent[1].chain_hash()));
        let public = vaultmesh_proto::auth::parse_public_key(&key.public_base64()).unwrap();
        for r in &chain.unsent {
            r.verify(&public).unwrap();
        }
        // Dropping the last one leaves the chain where it was before it.
        chain.drop_first_and_rechain(&key);
        chain.drop_first_and_rechain(&key);
        assert!(chain.unsent.is_empty());
        assert_eq!(chain.last, delivered);
    }

    #[test]
    fn receipts_waiting_are_signed_again_after_a_rekey() {
        let dir = tempfile::tempdir().unwrap();
        let (old, new) = (NodeKey::from_seed([1; 32]), NodeKey::from_seed([2; 32]));
        let a = receipt(1, None, &old);
        let hash = a.chain_hash();
        write_json(
            dir.path(),
            CHAIN_FILE,
            &ChainState {
                last: Some(hash.clone()),
                unsent: vec![a],
            },
        )
        .unwrap();
        assert_eq!(resign_unsent(dir.path(), &new).unwrap(), 1);
        let chain: ChainState = load(&dir.path().join(CHAIN_FILE)).unwrap();
        let public = vaultmesh_proto::auth::parse_public_key(&new.public_base64()).unwrap();
        chain.unsent[0].verify(&public).unwrap();
        assert_eq!(chain.unsent[0].chain_hash(), hash, "the chain is unchanged");
    }
}
