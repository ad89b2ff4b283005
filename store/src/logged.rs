//! [`LoggedStore`]: the one implementation of [`Store`], over a [`Backend`] that keeps the log.
//!
//! What a write checks (one key per node, the next command `seq`, a receipt's place in its
//! chain, a duplicate scan, the incident an ack answers) is decided here, once, against
//! [`Memory`]. The backend decides what "durable" and "exclusive" mean: an fsynced file and a
//! local lock for [`super::jsonl`], a committed row and a database-wide lock for
//! [`super::postgres`], where several Command Centers share one log.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;
use vaultmesh_proto::auth::EnrollRequest;
use vaultmesh_proto::command::{SignedCommand, SignedReceipt};
use vaultmesh_proto::{
    EventEnvelope, NewEvent, NodeDetail, NodeHeartbeat, NodeSummary, ScanAccepted, ScanReport,
};

use super::change::{Change, kinds};
use super::commands::{CommandStatus, CommandView, ReceiptCheck, ReceiptRecord};
use super::events::{EventQuery, Silence};
use super::fleet::LatestMeasures;
use super::memory::Memory;
use super::registry::{Binding, EnrollCheck, NodeRecord, ReadmitRefusal, Refusal};
use super::tokens::{ApiToken, MintedToken, NewToken, TokenRecord, TokenState, TokenUse};
use super::{CommandBuilder, NodeSnapshot, ReceiptOutcome, Store, StoreError};
use vaultmesh_proto::Severity;
use vaultmesh_proto::event::{
    EnrollRefusedBody, NodeLifecycleBody, ReceiptConflictBody, SYSTEM_AUTHOR, kinds as event_kinds,
};

/// Which writes exclude each other (the JSONL backend keeps one lock per gate; PostgreSQL one
/// lock for all).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    Events,
    Nodes,
    Commands,
    Scans,
}

/// Decides what a checked write logs, looking at up-to-date memory.
pub type Check = Box<dyn FnOnce(&Memory) -> Result<Vec<Change>, StoreError> + Send>;

/// Where the log is kept.
#[async_trait]
pub trait Backend: Send + Sync + std::fmt::Debug + 'static {
    /// The state the log has been applied to.
    fn memory(&self) -> &Arc<Memory>;

    /// Logs `change` durably. It has been applied to memory and published, in log order, when
    /// this returns.
    async fn append(&self, change: Change) -> Result<(), StoreError>;

    /// Runs `check` against memory that holds every change logged so far (by any instance
    /// sharing the log), exclusively of every other checked write on `gate`, and logs what it
    /// returns like [`Backend::append`]. Nothing is logged if it fails or returns nothing.
    async fn append_checked(&self, gate: Gate, check: Check) -> Result<(), StoreError>;

    /// Events matching `query` that memory no longer holds.
    async fn query_log_events(&self, query: EventQuery) -> Result<Vec<EventEnvelope>, StoreError>;

    /// Bytes of `sovereign-scans.jsonl` known durable: what the ledger may hash.
    fn scans_durable_len(&self) -> u64;

    /// See [`Store::first_request`].
    async fn first_request(&self, digest: [u8; 32]) -> Result<super::seen::Seen, StoreError>;

    /// Whether this instance runs the fleet-wide writers (attention log, scheduled scans).
    fn leads(&self) -> bool {
        true
    }
}

/// A store: memory plus the backend that logs and applies every change.
#[derive(Debug)]
pub struct LoggedStore<B> {
    pub(crate) backend: B,
    /// Receipt conflicts already logged as events, `(node, command, refused receipt's hash)`:
    /// a node sending the same conflicting receipt again is answered `409` without a new event.
    conflicts_logged: Mutex<std::collections::HashSet<(Uuid, Uuid, String)>>,
}

/// How many distinct receipt conflicts are remembered before the set starts over.
const CONFLICTS_REMEMBERED: usize = 10_000;

impl<B: Backend> LoggedStore<B> {
    pub fn new(backend: B) -> Self {
        LoggedStore {
            backend,
            conflicts_logged: Mutex::default(),
        }
    }

    /// True the first time this conflicting receipt is seen (by this process).
    fn first_conflict(&self, node_id: Uuid, command_id: Uuid, refused_sha256: &str) -> bool {
        let mut seen = self
            .conflicts_logged
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if seen.len() >= CONFLICTS_REMEMBERED {
            seen.clear();
        }
        seen.insert((node_id, command_id, refused_sha256.to_string()))
    }

    pub fn backend(&self) -> &B {
        &self.backend
    }

    fn mem(&self) -> &Memory {
        self.backend.memory()
    }

    /// A checked write whose check also yields an answer for the caller.
    /// Writes a `kind` revocation of token `id` by `by` under the registry's gate, unless
    /// `revoked` says it is revoked already; `NotFound` naming `what` if `revoked` does not
    /// know it (`None`). Returns the id.
    async fn revoke_record(
        &self,
        kind: &'static str,
        what: &'static str,
        id: &str,
        by: String,
        revoked: fn(&super::registry::Registry, &str) -> Option<bool>,
    ) -> Result<String, StoreError> {
        let id = id.to_string();
        self.checked(Gate::Nodes, move |m| {
            match revoked(&m.registry(), &id) {
                None => return Err(StoreError::NotFound(format!("no {what} {id}"))),
                Some(true) => return Ok((Vec::new(), id)),
                Some(false) => {}
            }
            let change = Change::Token {
                kind: kind.into(),
                ts: Utc::now(),
                record: TokenRecord {
                    id: id.clone(),
                    by,
                    ..TokenRecord::default()
                },
            };
            Ok((vec![change], id))
        })
        .await
    }

    async fn checked<T: Send + 'static>(
        &self,
        gate: Gate,
        f: impl FnOnce(&Memory) -> Result<(Vec<Change>, T), StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let answer = Arc::new(Mutex::new(None));
        let slot = Arc::clone(&answer);
        self.backend
            .append_checked(
                gate,
                Box::new(move |m| {
                    let (changes, t) = f(m)?;
                    *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(t);
                    Ok(changes)
                }),
            )
            .await?;
        let t = answer.lock().unwrap_or_else(|p| p.into_inner()).take();
        t.ok_or_else(|| StoreError::Unavailable("the write's check did not run".into()))
    }

    /// Revokes `node_id` (`decommission`: and takes it out of the fleet's views) and logs
    /// `node_revoked` (or `node_decommissioned`).
    async fn revocation(
        &self,
        node_id: Uuid,
        by: String,
        reason: Option<String>,
        decommission: bool,
    ) -> Result<EventEnvelope, StoreError> {
        let record = NodeRecord {
            decommission,
            ..NodeRecord::admin(by.clone(), reason.clone(), false)
        };
        let key = self
            .checked(Gate::Nodes, move |m| {
                let reg = m.registry();
                let b = reg.recorded(&node_id).ok_or_else(|| {
                    StoreError::NotFound(format!("node {node_id} is not enrolled"))
                })?;
                // A re-admitted node that has not enrolled again may be revoked (or
                // decommissioned) again: that withdraws the re-admission. A revoked node may
                // be decommissioned.
                if let Some(rev) = &b.revoked
                    && b.readmitted.is_none()
                    && (rev.decommissioned || !decommission)
                {
                    let what = if rev.decommissioned {
                        "decommissioned"
                    } else {
                        "revoked"
                    };
                    return Err(StoreError::Conflict(format!(
                        "node {node_id} was already {what} at {} by {}",
                        rev.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                        rev.by
                    )));
                }
                let change = Change::Node {
                    kind: kinds::REVOKE.into(),
                    node_id,
                    ts: Utc::now(),
                    record,
                };
                Ok((vec![change], b.public_key.clone()))
            })
            .await?;
        let body = NodeLifecycleBody {
            key_id: vaultmesh_proto::command::key_id(&key),
            reason,
            allow_old_key: None,
            severity: Severity::Medium,
        };
        let kind = if decommission {
            event_kinds::NODE_DECOMMISSIONED
        } else {
            event_kinds::NODE_REVOKED
        };
        self.lifecycle_event(kind, node_id, by, &body).await
    }

    /// Logs a node lifecycle event (`node_revoked`, ...) with a typed body.
    async fn lifecycle_event(
        &self,
        kind: &'static str,
        node_id: Uuid,
        author: String,
        body: &impl serde::Serialize,
    ) -> Result<EventEnvelope, StoreError> {
        let body = serde_json::to_value(body)
            .map_err(|e| StoreError::Unavailable(format!("cannot encode a {kind} event: {e}")))?;
        self.event(move |_| {
            Ok(envelope(
                kind.into(),
                Some(node_id),
                author,
                body,
                Vec::new(),
            ))
        })
        .await
    }

    /// Stamps and seals an event and logs it after `check` accepts it.
    async fn event(
        &self,
        f: impl FnOnce(&Memory) -> Result<EventEnvelope, StoreError> + Send + 'static,
    ) -> Result<EventEnvelope, StoreError> {
        self.checked(Gate::Events, move |m| {
            let e = f(m)?.sealed();
            Ok((vec![Change::Event(e.clone())], e))
        })
        .await
    }
}

fn envelope(
    kind: String,
    node_id: Option<Uuid>,
    author: String,
    body: serde_json::Value,
    refs: Vec<Uuid>,
) -> EventEnvelope {
    EventEnvelope {
        id: Uuid::now_v7(),
        kind,
        ts: Utc::now(),
        node_id,
        author,
        body,
        refs,
        hash: String::new(),
    }
}

#[async_trait]
impl<B: Backend> Store for LoggedStore<B> {
    async fn record_heartbeat(
        &self,
        hb: NodeHeartbeat,
        received_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.mem().fleet.admits(hb.node_id)?;
        self.backend
            .append(Change::Heartbeat { hb, received_at })
            .await
    }

    fn summaries(&self) -> Vec<NodeSummary> {
        self.mem().summaries()
    }

    fn summaries_with_latest(&self) -> Vec<(NodeSummary, LatestMeasures)> {
        self.mem().summaries_with_latest()
    }

    fn detail(&self, node_id: Uuid) -> Option<NodeDetail> {
        self.mem().detail(node_id)
    }

    fn node_count(&self) -> usize {
        self.mem().fleet.node_count()
    }

    async fn record_event(
        &self,
        new: NewEvent,
        author: String,
    ) -> Result<EventEnvelope, StoreError> {
        self.event(move |m| {
            let node_id = m.events().check(&new, |n| m.fleet.detail(n).is_some())?;
            Ok(envelope(new.kind, node_id, author, new.body, new.refs))
        })
        .await
    }

    async fn query_events(&self, query: EventQuery) -> Result<Vec<EventEnvelope>, StoreError> {
        if let Some(hit) = self.mem().events().query(&query) {
            return Ok(hit);
        }
        self.backend.query_log_events(query).await
    }

    fn recent_events(&self, query: &EventQuery) -> Vec<EventEnvelope> {
        self.mem().recent_events(query)
    }

    fn summary(&self, node_id: Uuid) -> Option<NodeSummary> {
        self.mem().summary(node_id)
    }

    fn scans_durable_len(&self) -> u64 {
        self.backend.scans_durable_len()
    }

    fn latest_scan(&self, node_id: Uuid) -> Option<Arc<ScanReport>> {
        self.mem().latest_scan(node_id)
    }

    async fn first_request(&self, digest: [u8; 32]) -> Result<super::seen::Seen, StoreError> {
        self.backend.first_request(digest).await
    }

    fn binding(&self, node_id: Uuid) -> Option<Binding> {
        self.mem().binding(node_id)
    }

    async fn enroll(
        &self,
        req: &EnrollRequest,
        token: TokenUse,
    ) -> Result<DateTime<Utc>, StoreError> {
        let req = req.clone();
        self.checked(Gate::Nodes, move |m| {
            let reg = m.registry();
            let ts = Utc::now();
            // A minted token is checked here, against memory holding every use logged so far
            // and exclusively of every other enrollment: the `enroll` record below is its use.
            // Revoked or expired, it is refused even for a node already enrolled with this key.
            if let TokenUse::Minted { id } = &token {
                let state = reg
                    .minted(id)
                    .map(|t| t.state(ts))
                    .ok_or_else(|| StoreError::NotFound(format!("no enrollment token {id}")))?;
                if matches!(state, TokenState::Revoked | TokenState::Expired) {
                    return Err(StoreError::TokenRefused {
                        id: id.clone(),
                        state,
                    });
                }
            }
            match reg.check_enroll(&req.node_id, &req.public_key) {
                EnrollCheck::AlreadyEnrolled(at) => return Ok((Vec::new(), at)),
                EnrollCheck::Conflict => {
                    return Err(StoreError::Conflict(format!(
                        "node {} is enrolled with a different key; revoke it first (POST /api/nodes/{}/revoke)",
                        req.node_id, req.node_id
                    )));
                }
                EnrollCheck::KeyInUse(owner) => {
                    return Err(StoreError::Conflict(format!(
                        "this key is already enrolled as node {owner}; a key belongs to one node \
                         (give this node its own key: `vaultmesh-node-agent rekey`)"
                    )));
                }
                EnrollCheck::Refused(r) => return Err(StoreError::Revoked(r)),
                EnrollCheck::New => {}
            }
            let single_use = match &token {
                TokenUse::Configured { id, single_use } => {
                    if *single_use && reg.token_spent(id) {
                        return Err(StoreError::TokenSpent);
                    }
                    *single_use
                }
                TokenUse::Minted { id } => {
                    if let Some(t) = reg.minted(id)
                        && t.state(ts) != TokenState::Active
                    {
                        return Err(StoreError::TokenRefused {
                            id: id.clone(),
                            state: t.state(ts),
                        });
                    }
                    false
                }
            };
            let record = NodeRecord {
                public_key: Some(req.public_key),
                hostname: Some(req.hostname),
                os_profile: Some(req.os_profile),
                token_id: Some(token.id().to_string()),
                single_use,
                ..NodeRecord::default()
            };
            let change = Change::Node {
                kind: kinds::ENROLL.into(),
                node_id: req.node_id,
                ts,
                record,
            };
            Ok((vec![change], ts))
        })
        .await
    }

    async fn create_token(&self, new: NewToken) -> Result<MintedToken, StoreError> {
        self.checked(Gate::Nodes, move |m| {
            if m.registry().minted(&new.id).is_some() {
                return Err(StoreError::Conflict(format!(
                    "an enrollment token with id {} exists",
                    new.id
                )));
            }
            let ts = Utc::now();
            let record = new.record();
            let token = MintedToken::created(ts, &record).ok_or_else(|| {
                StoreError::Invalid("an enrollment token record lacks a field".into())
            })?;
            let change = Change::Token {
                kind: kinds::TOKEN_CREATED.into(),
                ts,
                record,
            };
            Ok((vec![change], token))
        })
        .await
    }

    async fn revoke_token(&self, id: &str, by: String) -> Result<MintedToken, StoreError> {
        let revoked = self
            .revoke_record(
                kinds::TOKEN_REVOKED,
                "enrollment token",
                id,
                by,
                |reg, id| reg.minted(id).map(|t| t.revoked.is_some()),
            )
            .await?;
        self.mem()
            .registry()
            .minted(&revoked)
            .cloned()
            .ok_or_else(|| StoreError::NotFound(format!("no enrollment token {revoked}")))
    }

    fn tokens(&self) -> Vec<MintedToken> {
        self.mem().registry().minted_tokens()
    }

    async fn create_api_token(&self, new: ApiToken) -> Result<ApiToken, StoreError> {
        self.checked(Gate::Nodes, move |m| {
            let reg = m.registry();
            if reg.api_token(&new.id).is_some() {
                return Err(StoreError::Conflict(format!(
                    "an API token with id {} exists",
                    new.id
                )));
            }
            // A name authors what its token posts: one name, one token, ever (in any case).
            if let Some(t) = reg
                .api_tokens()
                .into_iter()
                .find(|t| t.name.eq_ignore_ascii_case(&new.name))
            {
                return Err(StoreError::Conflict(format!(
                    "name: API token {} is named {:?} (made {}); a name stands for one token, ever: choose another",
                    t.id,
                    t.name,
                    t.created_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                )));
            }
            let change = Change::Token {
                kind: kinds::API_TOKEN_CREATED.into(),
                ts: new.created_at,
                record: new.record(),
            };
            Ok((vec![change], new))
        })
        .await
    }

    async fn revoke_api_token(&self, id: &str, by: String) -> Result<ApiToken, StoreError> {
        let revoked = self
            .revoke_record(kinds::API_TOKEN_REVOKED, "API token", id, by, |reg, id| {
                reg.api_token(id).map(|t| t.revoked.is_some())
            })
            .await?;
        self.mem()
            .registry()
            .api_token(&revoked)
            .cloned()
            .ok_or_else(|| StoreError::NotFound(format!("no API token {revoked}")))
    }

    async fn api_token_used(&self, id: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        let change = Change::Token {
            kind: kinds::API_TOKEN_USED.into(),
            ts: at,
            record: TokenRecord {
                id: id.to_string(),
                ..TokenRecord::default()
            },
        };
        self.backend.append(change).await
    }

    fn api_tokens(&self) -> Vec<ApiToken> {
        self.mem().registry().api_tokens()
    }

    fn api_token_by_hash(&self, sha256: &str) -> Option<ApiToken> {
        let id = sha256.get(..16)?;
        self.mem()
            .registry()
            .api_token(id)
            .filter(|t| t.sha256 == sha256)
            .cloned()
    }

    fn token_by_hash(&self, sha256: &str) -> Option<MintedToken> {
        let id = sha256.get(..16)?;
        self.mem()
            .registry()
            .minted(id)
            .filter(|t| t.sha256 == sha256)
            .cloned()
    }

    async fn revoke(
        &self,
        node_id: Uuid,
        by: String,
        reason: Option<String>,
    ) -> Result<EventEnvelope, StoreError> {
        self.revocation(node_id, by, reason, false).await
    }

    async fn decommission(
        &self,
        node_id: Uuid,
        by: String,
        reason: Option<String>,
    ) -> Result<EventEnvelope, StoreError> {
        self.revocation(node_id, by, reason, true).await
    }

    async fn rename(
        &self,
        node_id: Uuid,
        by: String,
        display_name: Option<String>,
    ) -> Result<EventEnvelope, StoreError> {
        self.event(move |m| {
            let (hb, _, _) = m
                .fleet
                .latest(node_id)
                .ok_or_else(|| StoreError::NotFound(format!("no node {node_id}")))?;
            if let Some(rev) = m.revoked(node_id).filter(|r| r.decommissioned) {
                return Err(StoreError::Conflict(format!(
                    "node {node_id} was decommissioned at {} by {}: it is out of the fleet's views \
                     until it enrolls again, so it is not renamed",
                    rev.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    rev.by
                )));
            }
            let previous = m.events().display_name(&node_id).map(str::to_string);
            if previous == display_name {
                return Err(StoreError::Conflict(match &previous {
                    Some(p) => format!("node {node_id} is already named {p:?}"),
                    None => format!("node {node_id} has no display name to clear"),
                }));
            }
            let body = vaultmesh_proto::event::NodeRenamedBody {
                hostname: hb.hostname.clone(),
                previous,
                display_name,
                severity: Severity::Info,
            };
            let body = serde_json::to_value(&body).map_err(|e| {
                StoreError::Unavailable(format!("cannot encode a node_renamed event: {e}"))
            })?;
            Ok(envelope(
                event_kinds::NODE_RENAMED.into(),
                Some(node_id),
                by,
                body,
                Vec::new(),
            ))
        })
        .await
    }

    async fn readmit(
        &self,
        node_id: Uuid,
        by: String,
        reason: Option<String>,
        allow_old_key: bool,
    ) -> Result<EventEnvelope, StoreError> {
        let record = NodeRecord::admin(by.clone(), reason.clone(), allow_old_key);
        let key = self
            .checked(Gate::Nodes, move |m| {
                let b = m.binding(node_id);
                match m.registry().check_readmit(&node_id) {
                    Err(ReadmitRefusal::Unknown) => {
                        return Err(StoreError::NotFound(format!(
                            "node {node_id} is not enrolled"
                        )));
                    }
                    Err(ReadmitRefusal::NotRevoked) => {
                        return Err(StoreError::Conflict(format!(
                            "node {node_id} is not revoked; only a revoked node can be re-admitted"
                        )));
                    }
                    Ok(()) => {}
                }
                let change = Change::Node {
                    kind: kinds::READMIT.into(),
                    node_id,
                    ts: Utc::now(),
                    record,
                };
                Ok((vec![change], b.map(|b| b.public_key).unwrap_or_default()))
            })
            .await?;
        let body = NodeLifecycleBody {
            key_id: vaultmesh_proto::command::key_id(&key),
            reason,
            allow_old_key: Some(allow_old_key),
            severity: Severity::Medium,
        };
        self.lifecycle_event(event_kinds::NODE_READMITTED, node_id, by, &body)
            .await
    }

    async fn record_enroll_refused(
        &self,
        node_id: Uuid,
        refusal: &Refusal,
        public_key: &str,
    ) -> Result<EventEnvelope, StoreError> {
        let body = EnrollRefusedBody {
            code: refusal.code().into(),
            reason: refusal.to_string(),
            key_id: vaultmesh_proto::command::key_id(public_key),
            severity: Severity::High,
        };
        self.lifecycle_event(
            event_kinds::ENROLL_REFUSED,
            node_id,
            SYSTEM_AUTHOR.into(),
            &body,
        )
        .await
    }

    async fn issue_command(
        &self,
        node_id: Uuid,
        build: CommandBuilder,
    ) -> Result<SignedCommand, StoreError> {
        self.checked(Gate::Commands, move |m| {
            let signed = build(m.commands_state().next_seq(&node_id));
            Ok((vec![Change::Command(signed.clone())], signed))
        })
        .await
    }

    async fn take_commands(&self, node_id: Uuid) -> Result<Vec<SignedCommand>, StoreError> {
        // The long-poll asks on every wake-up; only a node with something to deliver writes.
        if self
            .mem()
            .commands_state()
            .deliverable(&node_id, Utc::now())
            .is_empty()
        {
            return Ok(Vec::new());
        }
        self.checked(Gate::Commands, move |m| {
            let at = Utc::now();
            let taken = m.commands_state().deliverable(&node_id, at);
            if taken.is_empty() {
                return Ok((Vec::new(), taken));
            }
            let change = Change::Delivered {
                node_id,
                at,
                commands: taken.iter().map(|c| c.command.command_id).collect(),
            };
            Ok((vec![change], taken))
        })
        .await
    }

    fn command_notify(&self, node_id: Uuid) -> Arc<tokio::sync::Notify> {
        self.mem().command_notify(node_id)
    }

    async fn record_receipt(&self, receipt: SignedReceipt) -> Result<ReceiptOutcome, StoreError> {
        let node_id = receipt.receipt.node_id;
        let command_id = receipt.receipt.command_id;
        let refused_sha256 = receipt.chain_hash();
        let checked = self
            .checked(Gate::Commands, move |m| {
                let outcome = match m.commands_state().check_receipt(&receipt) {
                    ReceiptCheck::Unknown => {
                        return Err(StoreError::Invalid(format!(
                            "receipt for unknown command {}",
                            receipt.receipt.command_id
                        )));
                    }
                    ReceiptCheck::Conflict { kept_sha256 } => {
                        return Ok((Vec::new(), Err(kept_sha256)));
                    }
                    ReceiptCheck::Duplicate { chain_ok } => {
                        return Ok((
                            Vec::new(),
                            Ok(ReceiptOutcome {
                                chain_ok,
                                duplicate: true,
                            }),
                        ));
                    }
                    ReceiptCheck::New { chain_ok } => ReceiptOutcome {
                        chain_ok,
                        duplicate: false,
                    },
                };
                let rec = ReceiptRecord {
                    signed: receipt,
                    chain_ok: outcome.chain_ok,
                };
                Ok((
                    vec![Change::Receipt {
                        rec,
                        ts: Utc::now(),
                    }],
                    Ok(outcome),
                ))
            })
            .await?;
        let outcome = match checked {
            Ok(o) => o,
            Err(kept_sha256) => {
                let body = ReceiptConflictBody {
                    command_id,
                    kept_sha256: kept_sha256.clone(),
                    refused_sha256: refused_sha256.clone(),
                    severity: Severity::High,
                };
                let first = self.first_conflict(node_id, command_id, &refused_sha256);
                if first {
                    tracing::warn!(%node_id, %command_id, kept = %kept_sha256, refused = %refused_sha256, "A second, different receipt for a command that has one; the first is kept.");
                }
                if first
                    && let Err(e) = self
                        .lifecycle_event(
                            event_kinds::RECEIPT_CONFLICT,
                            node_id,
                            SYSTEM_AUTHOR.into(),
                            &body,
                        )
                        .await
                {
                    tracing::error!(%node_id, error = %e, "Cannot log a receipt conflict.");
                }
                return Err(StoreError::Conflict(format!(
                    "command {command_id} already has a different receipt (sha256 {kept_sha256}); the first is kept"
                )));
            }
        };
        if !outcome.chain_ok && !outcome.duplicate {
            tracing::error!(%node_id, "Receipt chain broken: a receipt does not follow the node's previous one.");
        }
        Ok(outcome)
    }

    fn commands(
        &self,
        node_id: Option<Uuid>,
        status: Option<CommandStatus>,
        limit: usize,
    ) -> Vec<CommandView> {
        self.mem().command_list(node_id, status, limit)
    }

    async fn record_scan(
        &self,
        report: ScanReport,
        received_at: DateTime<Utc>,
    ) -> Result<ScanAccepted, StoreError> {
        self.checked(Gate::Scans, move |m| {
            let scan_id = report.scan_id;
            let st = m.scans();
            if st.is_duplicate(&report.node_id, &scan_id) {
                let dup = ScanAccepted {
                    accepted: true,
                    scan_id,
                    duplicate: true,
                    drift: 0,
                };
                return Ok((Vec::new(), dup));
            }
            let drift = st.drift_of(&report);
            let accepted = ScanAccepted {
                accepted: true,
                scan_id,
                duplicate: false,
                drift: drift.len(),
            };
            let change = Change::Scan {
                report,
                received_at,
                drift: Some(drift),
            };
            Ok((vec![change], accepted))
        })
        .await
    }

    async fn history(
        &self,
        node_id: Uuid,
        range: vaultmesh_proto::history::Range,
        metrics: &[String],
    ) -> Result<Option<vaultmesh_proto::history::NodeHistory>, crate::history::HistoryError> {
        self.backend
            .memory()
            .node_history(node_id, range, metrics, Utc::now())
            .await
    }

    fn snapshot(&self, node_id: Uuid) -> Option<NodeSnapshot> {
        self.mem().snapshot(node_id)
    }

    fn node_ids(&self) -> Vec<Uuid> {
        self.mem().fleet.node_ids()
    }

    fn newest_seen(&self) -> Option<DateTime<Utc>> {
        self.mem().fleet.newest_seen()
    }

    async fn record_system_event(
        &self,
        kind: &str,
        node_id: Option<Uuid>,
        body: serde_json::Value,
        refs: Vec<Uuid>,
    ) -> Result<EventEnvelope, StoreError> {
        // Only declared kinds, so the list of what the logs hold (`change::kinds_of`, LOGS.md)
        // stays complete.
        if !super::change::kinds_of(super::logdir::LogName::Events).contains(&kind) {
            return Err(StoreError::Invalid(format!(
                "event kind {kind:?} is not declared (vaultmesh_proto::event::SYSTEM_KINDS)"
            )));
        }
        let kind = kind.to_string();
        self.event(move |_| Ok(envelope(kind, node_id, SYSTEM_AUTHOR.into(), body, refs)))
            .await
    }

    fn silences(&self) -> Vec<Silence> {
        self.mem().silences()
    }

    fn attention_log(
        &self,
    ) -> std::collections::HashMap<Uuid, (DateTime<Utc>, vaultmesh_proto::event::AttentionBody)>
    {
        self.mem().attention_log()
    }

    fn set_attention(&self, node_id: Uuid, attention: vaultmesh_proto::Attention) {
        self.mem().set_attention(node_id, attention);
    }

    fn leads(&self) -> bool {
        self.backend.leads()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `docs/LOGS.md` lists every kind the logs hold; the Command Center cannot write an event
    /// of a kind that list (`change::kinds_of`) does not have.
    #[tokio::test]
    async fn only_declared_event_kinds_are_written() {
        let dir = tempfile::tempdir().unwrap();
        let bus = Arc::new(crate::bus::Bus::new(16, 16));
        let (store, _) =
            crate::JsonlStore::open(&crate::StoreOptions::new(dir.path().into()), bus).unwrap();
        let err = store
            .record_system_event("undeclared_kind", None, serde_json::json!({}), Vec::new())
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::Invalid(m) if m.contains("undeclared_kind")),
            "{err}"
        );
        let e = store
            .record_system_event(
                "incident",
                None,
                serde_json::json!({"title": "t"}),
                Vec::new(),
            )
            .await
            .unwrap();
        assert_eq!(e.author, "command-center");
    }
}
