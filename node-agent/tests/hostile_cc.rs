//! The real agent binary against a hostile Command Center that hands it forged, replayed,
//! expired, misrouted and unauthorised commands, and commands whose arguments try to steer the
//! agent (another D-Bus address, a file, a unit it may not restart): each comes back as a
//! signed `rejected` receipt in an unbroken chain, and none runs.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::time::Duration;

use chrono::Utc;
use uuid::Uuid;
use vaultmesh_proto::auth::{NodeKey, parse_public_key};
use vaultmesh_proto::command::{ReceiptStatus, SignedCommand, SignedReceipt};
use vaultmesh_testkit::dbus::{DbusDaemon, FakeSystemd, FakeUnit};
use vaultmesh_testkit::fake_cc::{FakeCommandCenter, command};
use vaultmesh_testkit::{NodeAgent, wait_for};

/// Asserts every receipt is signed by `node_key` and continues the one before.
fn assert_chained(receipts: &[SignedReceipt], node_key: &NodeKey) {
    let public = parse_public_key(&node_key.public_base64()).unwrap();
    let mut prev = None;
    for r in receipts {
        r.verify(&public).expect("signed by the node key");
        assert_eq!(r.receipt.prev_receipt_sha256, prev, "the chain is unbroken");
        prev = Some(r.chain_hash());
    }
}

#[test]
fn forged_replayed_expired_misrouted_and_unallowed_commands_are_rejected_and_never_run() {
    let cc_key = NodeKey::from_seed([1u8; 32]);
    let fake = FakeCommandCenter::start();
    let agent = NodeAgent::new(&fake.url)
        .env("VAULTMESH_CC_PUBKEY", &cc_key.public_base64())
        .env("VAULTMESH_INTERVAL", "1s")
        .config("[commands]\nallow = [\"agent.ping\", \"checks.run\"]\n");
    let _child = agent.spawn(&["run"]);
    let (node, node_key) = agent.identity();

    let genuine = SignedCommand::sign(
        command(node, 1, "agent.ping", serde_json::json!({}), 300),
        &cc_key,
    );
    fake.push(vec![genuine.clone()]);
    wait_for(Duration::from_secs(10), || {
        (fake.receipts().len() == 1).then_some(())
    })
    .expect("receipt for the genuine command");

    let mut flipped = SignedCommand::sign(
        command(node, 5, "agent.ping", serde_json::json!({}), 300),
        &cc_key,
    );
    // Changed after signing.
    let mut object = flipped.command.object().clone();
    object.insert("args".into(), serde_json::json!({"injected": "yes"}));
    flipped.command = vaultmesh_proto::command::AsSigned::from_object(object).unwrap();
    let hostile = vec![
        (genuine.clone(), "already received (replay)"),
        (
            SignedCommand::sign(
                command(node, 3, "agent.ping", serde_json::json!({}), -3600),
                &cc_key,
            ),
            "expired at",
        ),
        (
            SignedCommand::sign(
                command(Uuid::new_v4(), 4, "agent.ping", serde_json::json!({}), 300),
                &cc_key,
            ),
            "is for node",
        ),
        (flipped, "signature does not verify"),
        (
            SignedCommand::sign(
                command(node, 6, "agent.ping", serde_json::json!({}), 300),
                &NodeKey::from_seed([9u8; 32]),
            ),
            "signature does not verify",
        ),
        (
            SignedCommand::sign(
                command(
                    node,
                    7,
                    "service.restart",
                    serde_json::json!({"unit": "sshd.service"}),
                    300,
                ),
                &cc_key,
            ),
            "not in this node's [commands] allow list",
        ),
    ];
    fake.push(hostile.iter().map(|(c, _)| c.clone()).collect());
    // And a genuine command after them still runs — here as another Command Center might write
    // it: another spelling of its times, signed over the JCS bytes of exactly that object
    // (docs/PROTOCOL.md). One with a member this agent does not know is refused, not run with
    // the member ignored (must-understand: it may limit what the command may do).
    let mut object = serde_json::to_value(command(
        node,
        8,
        "checks.run",
        serde_json::json!({"name": "load"}),
        300,
    ))
    .unwrap();
    let expires = chrono::DateTime::parse_from_rfc3339(object["expires_at"].as_str().unwrap())
        .unwrap()
        .with_timezone(&Utc);
    object["expires_at"] =
        serde_json::json!(expires.format("%Y-%m-%dT%H:%M:%S%.3f+00:00").to_string());
    let signed = |object: &serde_json::Value| -> SignedCommand {
        let mut msg = b"vaultmesh-command-v1\n".to_vec();
        msg.extend(vaultmesh_proto::canonical::to_jcs(object).unwrap());
        serde_json::from_value(serde_json::json!({
            "command": object, "signature": cc_key.sign(&msg), "key_id": "ignored-by-the-agent"
        }))
        .unwrap()
    };
    let after = signed(&object);
    let mut newer = object.clone();
    newer["command_id"] = serde_json::json!(uuid::Uuid::now_v7());
    newer["seq"] = serde_json::json!("9");
    newer["priority"] = serde_json::json!({"level": "low"});
    let newer = signed(&newer);
    fake.push(vec![after.clone(), newer.clone()]);
    let receipts = wait_for(Duration::from_secs(20), || {
        let r = fake.receipts();
        (r.len() == 1 + hostile.len() + 2).then_some(r)
    })
    .expect("a receipt for every command");

    assert_chained(&receipts, &node_key);
    assert_eq!(receipts[0].receipt.status, ReceiptStatus::Ok);
    for (r, (c, reason)) in receipts[1..=hostile.len()].iter().zip(&hostile) {
        assert_eq!(r.receipt.command_id, c.command.command_id);
        assert_eq!(r.receipt.status, ReceiptStatus::Rejected, "{reason}");
        assert!(
            r.receipt
                .reason
                .as_deref()
                .unwrap_or_default()
                .contains(reason),
            "{:?} should say {reason:?}",
            r.receipt.reason
        );
        assert!(
            r.receipt.output.is_empty() && r.receipt.exit_code.is_none(),
            "nothing ran for {reason}"
        );
    }
    let ran = &receipts[receipts.len() - 2];
    assert_eq!(
        (ran.receipt.command_id, ran.receipt.status),
        (after.command.command_id, ReceiptStatus::Ok)
    );
    let last = receipts.last().unwrap();
    assert_eq!(
        (last.receipt.command_id, last.receipt.status),
        (newer.command.command_id, ReceiptStatus::Rejected)
    );
    assert!(
        last.receipt
            .reason
            .as_deref()
            .unwrap_or_default()
            .contains("does not understand (priority)"),
        "{:?}",
        last.receipt.reason
    );
}

/// Issue 21 item 1: a command's arguments cannot steer the agent. With the old test-only
/// `bus_address` argument, `nonce-tcp:host=…,port=…,noncefile=<node.key>` made the agent
/// connect to that address and send the node key. Every action gets hostile arguments (the
/// test covers every action the binary registers); each is a signed `rejected` receipt,
/// nothing connects to the trap, and the service actions still work on the bus this node's
/// own `[commands.service]` names.
#[test]
fn hostile_arguments_to_every_action_are_rejected_and_steer_nothing() {
    let bus = DbusDaemon::start();
    let systemd = FakeSystemd::start(
        &bus.address,
        &[FakeUnit::new("cloudflared.service", "failed", "failed")],
    );
    // Where a hostile address would send the file.
    let trap = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    trap.set_nonblocking(true).unwrap();
    let port = trap.local_addr().unwrap().port();

    let cc_key = NodeKey::from_seed([1u8; 32]);
    let fake = FakeCommandCenter::start();
    let agent = NodeAgent::new(&fake.url)
        .env("VAULTMESH_CC_PUBKEY", &cc_key.public_base64())
        .env("VAULTMESH_INTERVAL", "1s")
        .config(&format!(
            "[commands]\nallow = [\"agent.ping\", \"checks.run\", \"scan.sovereign\", \"service.status\", \"service.restart\"]\n\
             [commands.service]\nrestart_units = [\"cloudflared.service\"]\nbus_address = {:?}\n\
             [checks.load]\nenabled = false\n",
            bus.address
        ));
    let _child = agent.spawn(&["run"]);
    let (node, node_key) = agent.identity();
    let steal = format!(
        "nonce-tcp:host=127.0.0.1,port={port},noncefile={}",
        agent.state_dir().join("node.key").display()
    );

    let hostile: Vec<(&str, serde_json::Value, &str)> = vec![
        (
            "agent.ping",
            serde_json::json!({"bus_address": steal}),
            "unknown field `bus_address`",
        ),
        (
            "checks.run",
            serde_json::json!({"name": "memory", "config": {"path": "/etc/shadow"}}),
            "unknown field `config`",
        ),
        (
            "checks.run",
            serde_json::json!({"name": "../../etc/shadow"}),
            "this node has no check named",
        ),
        (
            "checks.run",
            serde_json::json!({"name": "load"}),
            "check load is disabled in this node's configuration",
        ),
        (
            "scan.sovereign",
            serde_json::json!({"root": "/etc"}),
            "unknown field `root`",
        ),
        (
            "service.status",
            serde_json::json!({"unit": "cloudflared.service", "bus_address": steal}),
            "unknown field `bus_address`",
        ),
        (
            "service.status",
            serde_json::json!({"unit": "../../etc/shadow"}),
            "is not a unit name",
        ),
        (
            "service.status",
            serde_json::json!(["cloudflared.service"]),
            "bad arguments: must be a JSON object, not an array",
        ),
        (
            "service.restart",
            serde_json::json!({"unit": "cloudflared.service", "bus_address": steal}),
            "unknown field `bus_address`",
        ),
        (
            "service.restart",
            serde_json::json!({"unit": "modprobe@evil.service"}),
            "unit modprobe@evil.service is not in this node's [commands.service] restart_units",
        ),
    ];
    // Every action the binary registers is attacked.
    let listed: serde_json::Value =
        serde_json::from_slice(&agent.run(&["actions", "--json"]).stdout).unwrap();
    let mut registered: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    let mut attacked: Vec<&str> = hostile.iter().map(|(a, _, _)| *a).collect();
    registered.sort_unstable();
    attacked.sort_unstable();
    attacked.dedup();
    assert_eq!(attacked, registered, "a hostile case for every action");

    let commands: Vec<SignedCommand> = hostile
        .iter()
        .zip(1u64..)
        .map(|((action, args, _), seq)| {
            SignedCommand::sign(command(node, seq, action, args.clone(), 300), &cc_key)
        })
        .collect();
    fake.push(commands.clone());
    // Then the genuine service commands work, on the bus the node's own config names.
    let seq = hostile.len() as u64;
    let status = SignedCommand::sign(
        command(
            node,
            seq + 1,
            "service.status",
            serde_json::json!({"unit": "cloudflared.service"}),
            300,
        ),
        &cc_key,
    );
    let restart = SignedCommand::sign(
        command(
            node,
            seq + 2,
            "service.restart",
            serde_json::json!({"unit": "cloudflared.service"}),
            300,
        ),
        &cc_key,
    );
    fake.push(vec![status, restart]);
    let receipts = wait_for(Duration::from_secs(30), || {
        let r = fake.receipts();
        (r.len() == hostile.len() + 2).then_some(r)
    })
    .expect("a receipt for every command");

    assert_chained(&receipts, &node_key);
    for (r, (c, (action, args, reason))) in receipts.iter().zip(commands.iter().zip(&hostile)) {
        assert_eq!(r.receipt.command_id, c.command.command_id);
        let got = r.receipt.reason.as_deref().unwrap_or_default();
        assert_eq!(
            r.receipt.status,
            ReceiptStatus::Rejected,
            "{action} {args}: {got}"
        );
        assert!(
            got.starts_with(&format!("{action}: ")) && got.contains(reason),
            "{action} {args}: {got:?} should say {reason:?}"
        );
        assert!(
            r.receipt.output.is_empty() && r.receipt.exit_code.is_none(),
            "nothing ran for {action} {args}"
        );
    }
    let n = hostile.len();
    assert_eq!(
        receipts[n].receipt.status,
        ReceiptStatus::Ok,
        "{:?}",
        receipts[n].receipt.reason
    );
    assert!(
        receipts[n]
            .receipt
            .output
            .contains("\"active_state\":\"failed\"")
    );
    assert_eq!(
        receipts[n + 1].receipt.status,
        ReceiptStatus::Ok,
        "{:?}",
        receipts[n + 1].receipt.reason
    );
    assert_eq!(
        systemd.unit("cloudflared.service").unwrap().active_state,
        "active"
    );
    match trap.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the agent connected where a command told it to: {other:?}"),
    }
}
