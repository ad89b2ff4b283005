//! The agent's command runner against hostile commands: replayed, expired, for another node,
//! altered, signed by another key, not locally allowed, or with arguments the action does not
//! take — each rejected with a signed, chained receipt, and nothing executed. A test action
//! records every execution.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::{Duration, Utc};
use uuid::Uuid;
use vaultmesh_agent_core::CheckContext;
use vaultmesh_agent_core::action::{
    ActionContext, ActionFuture, ActionOutcome, ActionRegistration, ArgsError, parse_args,
};
use vaultmesh_agent_core::commands::CommandRunner;
use vaultmesh_proto::auth::{NodeKey, parse_public_key};
use vaultmesh_proto::command::{Command, ReceiptStatus, SignedCommand};

static RUNS: AtomicUsize = AtomicUsize::new(0);

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NoArgs {}

fn mark(_ctx: &ActionContext, args: serde_json::Value) -> Result<ActionFuture, ArgsError> {
    let NoArgs {} = parse_args(args)?;
    Ok(Box::pin(async {
        RUNS.fetch_add(1, Ordering::SeqCst);
        ActionOutcome::ok("marked")
    }))
}

vaultmesh_agent_core::inventory::submit! {
    ActionRegistration { name: "test.mark", args: "{}", description: "counts executions", timeout: vaultmesh_agent_core::commands::ACTION_TIMEOUT, prepare: mark }
}

/// A command for `test.mark` with `args`.
fn with_args(seq: u64, args: serde_json::Value) -> Command {
    Command {
        args,
        ..command(seq, NODE, "test.mark", 300)
    }
}

const NODE: u128 = 42;

fn command(seq: u64, node: u128, action: &str, ttl: i64) -> Command {
    let now = Utc::now();
    Command {
        command_id: Uuid::now_v7(),
        node_id: Uuid::from_u128(node),
        action: action.into(),
        args: serde_json::json!({}),
        nonce: Uuid::new_v4().to_string(),
        seq: seq.to_string(),
        issued_at: now - Duration::seconds(1),
        expires_at: now + Duration::seconds(ttl),
        issued_by: "test".into(),
    }
}

fn ctx() -> ActionContext {
    ActionContext {
        check_ctx: CheckContext::new(Uuid::from_u128(NODE), "/"),
        checks: Arc::new(Vec::new()),
        service: Arc::default(),
    }
}

#[tokio::test]
async fn only_genuine_fresh_allowed_commands_run_and_every_outcome_is_a_chained_receipt() {
    let dir = tempfile::tempdir().unwrap();
    let cc = NodeKey::from_seed([1u8; 32]);
    let node_key = NodeKey::from_seed([2u8; 32]);
    let node_public = parse_public_key(&node_key.public_base64()).unwrap();
    let allow = ["test.mark".to_string(), "agent.ping".to_string()];
    let runner = CommandRunner::new(
        Uuid::from_u128(NODE),
        node_key.clone(),
        Some(&cc.public_base64()),
        &allow,
        dir.path(),
        ctx(),
    )
    .unwrap();

    let genuine = SignedCommand::sign(command(1, NODE, "test.mark", 300), &cc);
    let mut flipped = SignedCommand::sign(command(5, NODE, "test.mark", 300), &cc);
    // Changed after signing.
    let mut object = flipped.command.object().clone();
    object.insert("nonce".into(), serde_json::json!("nx"));
    flipped.command = vaultmesh_proto::command::AsSigned::from_object(object).unwrap();
    // Genuinely signed, but with a member this agent does not know (a newer Command Center's
    // limit, say): refused, never run with the limit ignored.
    let mut newer = SignedCommand::sign(command(9, NODE, "test.mark", 300), &cc);
    let mut object = newer.command.object().clone();
    object.insert(
        "not_before".into(),
        serde_json::json!("2099-01-01T00:00:00Z"),
    );
    newer.command = vaultmesh_proto::command::AsSigned::from_object(object).unwrap();
    newer.signature = cc.sign(&newer.signing_bytes().unwrap());
    let cases: Vec<(SignedCommand, ReceiptStatus, &str)> = vec![
        (genuine.clone(), ReceiptStatus::Ok, ""),
        (
            genuine.clone(),
            ReceiptStatus::Rejected,
            "already received (replay)",
        ),
        (
            SignedCommand::sign(command(1, NODE, "test.mark", 300), &cc),
            ReceiptStatus::Rejected,
            "seq 1 is not above the last seen 1",
        ),
        (
            SignedCommand::sign(command(2, NODE, "test.mark", -3600), &cc),
            ReceiptStatus::Rejected,
            "expired at",
        ),
        (
            SignedCommand::sign(command(3, 7, "test.mark", 300), &cc),
            ReceiptStatus::Rejected,
            "is for node",
        ),
        (
            flipped,
            ReceiptStatus::Rejected,
            "signature does not verify",
        ),
        (
            SignedCommand::sign(
                command(6, NODE, "test.mark", 300),
                &NodeKey::from_seed([9u8; 32]),
            ),
            ReceiptStatus::Rejected,
            "signature does not verify",
        ),
        (
            SignedCommand::sign(command(7, NODE, "service.restart", 300), &cc),
            ReceiptStatus::Rejected,
            "not in this node's [commands] allow list",
        ),
        (
            newer,
            ReceiptStatus::Rejected,
            "members this agent does not understand (not_before)",
        ),
        (
            SignedCommand::sign(
                with_args(
                    10,
                    serde_json::json!({"path": "/var/lib/vaultmesh/agent/node.key"}),
                ),
                &cc,
            ),
            ReceiptStatus::Rejected,
            "test.mark: bad arguments: unknown field `path`",
        ),
        (
            SignedCommand::sign(with_args(11, serde_json::json!(["x"])), &cc),
            ReceiptStatus::Rejected,
            "test.mark: bad arguments: must be a JSON object, not an array",
        ),
        (
            SignedCommand::sign(
                command(12, NODE, &format!("x{}", "y".repeat(100_000)), 300),
                &cc,
            ),
            ReceiptStatus::Rejected,
            "is not in this node's",
        ),
        // Times at the edge of chrono's range: refused, never a panic (a crash loop).
        (
            SignedCommand::sign(
                Command {
                    issued_at: chrono::DateTime::<Utc>::MIN_UTC,
                    expires_at: chrono::DateTime::<Utc>::MIN_UTC,
                    ..command(13, NODE, "test.mark", 300)
                },
                &cc,
            ),
            ReceiptStatus::Rejected,
            "expired at",
        ),
        (
            SignedCommand::sign(
                Command {
                    expires_at: chrono::DateTime::<Utc>::MAX_UTC,
                    ..command(14, NODE, "test.mark", 300)
                },
                &cc,
            ),
            ReceiptStatus::Rejected,
            "expired at",
        ),
        (
            SignedCommand::sign(command(15, NODE, "test.mark", 300), &cc),
            ReceiptStatus::Ok,
            "",
        ),
    ];
    let mut prev: Option<String> = None;
    for (i, (sc, want, reason)) in cases.into_iter().enumerate() {
        let r = runner.handle(sc).await.unwrap();
        r.verify(&node_public)
            .expect("every receipt is signed by the node key");
        assert_eq!(r.receipt.status, want, "case {i}: {:?}", r.receipt.reason);
        assert!(
            r.receipt
                .reason
                .clone()
                .unwrap_or_default()
                .contains(reason),
            "case {i}: {:?}",
            r.receipt.reason
        );
        assert!(
            r.receipt.reason.as_ref().is_none_or(|r| r.len() < 300),
            "case {i}: a reason never quotes a hostile command whole"
        );
        assert_eq!(
            r.receipt.prev_receipt_sha256, prev,
            "case {i}: receipts form a chain"
        );
        prev = Some(r.chain_hash());
    }
    assert_eq!(
        RUNS.load(Ordering::SeqCst),
        2,
        "only the two genuine, fresh, allowed commands ran"
    );

    // The replay state is on disk: a new runner (after a restart) still refuses the replay.
    let again = CommandRunner::new(
        Uuid::from_u128(NODE),
        node_key,
        Some(&cc.public_base64()),
        &allow,
        dir.path(),
        ctx(),
    )
    .unwrap();
    let r = again.handle(genuine).await.unwrap();
    assert_eq!(r.receipt.status, ReceiptStatus::Rejected);
    assert_eq!(
        r.receipt.prev_receipt_sha256, prev,
        "and the chain continues across restarts"
    );
    assert_eq!(RUNS.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn without_a_pinned_key_every_command_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let cc = NodeKey::from_seed([1u8; 32]);
    let runner = CommandRunner::new(
        Uuid::from_u128(NODE),
        NodeKey::from_seed([2u8; 32]),
        None,
        &["agent.ping".to_string()],
        dir.path(),
        ctx(),
    )
    .unwrap();
    let r = runner
        .handle(SignedCommand::sign(
            command(1, NODE, "agent.ping", 300),
            &cc,
        ))
        .await
        .unwrap();
    assert_eq!(r.receipt.status, ReceiptStatus::Rejected);
    assert!(
        r.receipt
            .reason
            .as_deref()
            .unwrap()
            .contains("no Command Center key is pinned")
    );
}
