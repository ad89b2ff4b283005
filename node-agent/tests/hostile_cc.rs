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

/// Issue 21 item 1: a command's arguments cannot steer the agent. `service.status` and
/// `service.restart` took a test-only `bus_address` argument, and a signed command with
/// `nonce-tcp:host=…,port=…,noncefile=<node.key>` made the agent connect to that address and
/// send the node key. Every action the agent registers has a test below that attacks it
/// through the real binary: each hostile argument set (each also carrying the original
/// attack) comes back as a signed `rejected` receipt in an unbroken chain, nothing connects to
/// the trap, and the same action with its genuine arguments then runs.
///
/// The actions the tests below attack, one test each.
const ATTACKED: [&str; 5] = [
    "agent.ping",
    "checks.run",
    "scan.sovereign",
    "service.restart",
    "service.status",
];

/// A new action must get a hostile-argument test of its own (and its cases in
/// [`hostile_cases`]).
#[test]
fn every_registered_action_has_a_hostile_argument_test() {
    let out = NodeAgent::new("http://127.0.0.1:9").run(&["actions", "--json"]);
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut registered: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    registered.sort_unstable();
    assert_eq!(registered, ATTACKED, "one hostile-argument test per action");
    for action in ATTACKED {
        assert!(!hostile_cases(action, "x").is_empty(), "{action}");
    }
}

/// The arguments `action` is attacked with, and what its refusal says. `steal` is a D-Bus
/// address that would send the node key to the trap: every action gets it as an extra member.
fn hostile_cases(action: &str, steal: &str) -> Vec<(serde_json::Value, &'static str)> {
    use serde_json::json;
    let bus = "unknown field `bus_address`";
    match action {
        "agent.ping" => vec![
            (json!({"bus_address": steal}), bus),
            (
                json!(["x"]),
                "bad arguments: must be a JSON object, not an array",
            ),
        ],
        "checks.run" => vec![
            (json!({"name": "memory", "bus_address": steal}), bus),
            (
                json!({"name": "memory", "config": {"path": "/etc/shadow"}}),
                "unknown field `config`",
            ),
            (
                json!({"name": "../../etc/shadow"}),
                "this node has no check named \"../../etc/shadow\"",
            ),
            (
                json!({"name": "load"}),
                "check load is disabled in this node's configuration",
            ),
            (json!({}), "missing field `name`"),
        ],
        "scan.sovereign" => vec![
            (json!({"bus_address": steal}), bus),
            (json!({"root": "/etc"}), "unknown field `root`"),
        ],
        "service.status" => vec![
            (
                json!({"unit": "cloudflared.service", "bus_address": steal}),
                bus,
            ),
            (json!({"unit": "../../etc/shadow"}), "is not a unit name"),
            (
                json!({"unit": "cloudflared.service", "bus": "session"}),
                "unknown field `bus`",
            ),
        ],
        "service.restart" => vec![
            (
                json!({"unit": "cloudflared.service", "bus_address": steal}),
                bus,
            ),
            (
                json!({"unit": "sshd.service"}),
                "unit \"sshd.service\" is not in this node's [commands.service] restart_units",
            ),
            (
                json!({"unit": "modprobe@evil.service"}),
                "unit \"modprobe@evil.service\" is not in this node's [commands.service] restart_units",
            ),
            // A template's instance is an argument to its program: `vaultmesh-*.service`
            // does not cover it.
            (
                json!({"unit": "vaultmesh-x@evil.service"}),
                "unit \"vaultmesh-x@evil.service\" is not in this node's [commands.service] restart_units",
            ),
        ],
        _ => Vec::new(),
    }
}

/// Arguments `action` takes on this node.
fn genuine_args(action: &str) -> serde_json::Value {
    match action {
        "checks.run" => serde_json::json!({"name": "memory"}),
        "service.status" | "service.restart" => serde_json::json!({"unit": "cloudflared.service"}),
        _ => serde_json::json!({}),
    }
}

/// A running agent that allows every action, with systemd on a private bus that its own
/// `[commands.service]` names, and a TCP trap where a hostile D-Bus address would connect.
struct Node {
    _child: vaultmesh_testkit::ChildGuard,
    systemd: FakeSystemd,
    _bus: DbusDaemon,
    trap: std::net::TcpListener,
    fake: FakeCommandCenter,
    agent: NodeAgent,
    cc_key: NodeKey,
}

impl Node {
    fn start() -> Node {
        let bus = DbusDaemon::start();
        let systemd = FakeSystemd::start(
            &bus.address,
            &[FakeUnit::new("cloudflared.service", "failed", "failed")],
        );
        let trap = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        trap.set_nonblocking(true).unwrap();
        let cc_key = NodeKey::from_seed([1u8; 32]);
        let fake = FakeCommandCenter::start();
        let agent = NodeAgent::new(&fake.url)
            .env("VAULTMESH_CC_PUBKEY", &cc_key.public_base64())
            .env("VAULTMESH_INTERVAL", "1s")
            .config(&format!(
                "[commands]\nallow = {ATTACKED:?}\n\
                 [commands.service]\nrestart_units = [\"cloudflared.service\", \"vaultmesh-*.service\"]\nbus_address = {:?}\n\
                 [checks.load]\nenabled = false\n\
                 [checks.sovereign_scan]\nenabled = true\ninterval = \"1h\"\n",
                bus.address
            ));
        let child = agent.spawn(&["run"]);
        Node {
            _child: child,
            systemd,
            _bus: bus,
            trap,
            fake,
            agent,
            cc_key,
        }
    }

    /// `nonce-tcp:` to the trap with this node's key as the nonce file: systemd's bus, were
    /// it taken from a command, would send the key there.
    fn steal(&self) -> String {
        format!(
            "nonce-tcp:host=127.0.0.1,port={},noncefile={}",
            self.trap.local_addr().unwrap().port(),
            self.agent.state_dir().join("node.key").display()
        )
    }

    /// Sends `action` every hostile argument set, then its genuine arguments; asserts each
    /// hostile one is a signed, chained `rejected` receipt, nothing connected to the trap, and
    /// the genuine command ran. Returns its output.
    fn attack(&self, action: &str) -> String {
        let (node, node_key) = self.agent.identity();
        let cases = hostile_cases(action, &self.steal());
        let mut args: Vec<serde_json::Value> = cases.iter().map(|(a, _)| a.clone()).collect();
        args.push(genuine_args(action));
        let commands: Vec<SignedCommand> = args
            .into_iter()
            .zip(1u64..)
            .map(|(args, seq)| {
                SignedCommand::sign(command(node, seq, action, args, 300), &self.cc_key)
            })
            .collect();
        self.fake.push(commands.clone());
        let receipts = wait_for(Duration::from_secs(60), || {
            let r = self.fake.receipts();
            (r.len() == commands.len()).then_some(r)
        })
        .expect("a receipt for every command");
        // Had an argument chosen systemd's bus, the agent would have connected (and sent the
        // key) before answering.
        match self.trap.accept() {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("the trap: {e}"),
            Ok((mut stream, _)) => {
                use std::io::Read;
                stream.set_nonblocking(false).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(2)))
                    .unwrap();
                let mut sent = vec![0u8; 4096];
                let n = stream.read(&mut sent).unwrap_or(0);
                let key = std::fs::read(self.agent.state_dir().join("node.key")).unwrap();
                panic!(
                    "the agent connected where a command told it to, and sent {n} bytes{}",
                    if sent[..n].starts_with(&key) {
                        ": the node key"
                    } else {
                        ""
                    }
                );
            }
        }
        assert_chained(&receipts, &node_key);
        for ((r, c), (args, reason)) in receipts.iter().zip(&commands).zip(&cases) {
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
        let genuine = &receipts.last().unwrap().receipt;
        assert_eq!(
            genuine.status,
            ReceiptStatus::Ok,
            "{action} {}: {:?}",
            genuine_args(action),
            genuine.reason
        );
        genuine.output.clone()
    }
}

#[test]
fn hostile_arguments_to_agent_ping_are_rejected_and_steer_nothing() {
    let out = Node::start().attack("agent.ping");
    assert!(out.starts_with("pong"), "{out}");
}

#[test]
fn hostile_arguments_to_checks_run_are_rejected_and_steer_nothing() {
    let out = Node::start().attack("checks.run");
    assert!(out.contains("\"name\":\"memory\""), "{out}");
}

#[test]
fn hostile_arguments_to_scan_sovereign_are_rejected_and_steer_nothing() {
    // The genuine scan ran (its report waits in the outbox: this Command Center takes none).
    let out = Node::start().attack("scan.sovereign");
    assert!(out.contains("\"scan_id\""), "{out}");
}

#[test]
fn hostile_arguments_to_service_status_are_rejected_and_steer_nothing() {
    // The genuine command read systemd on the bus this node's own config names.
    let out = Node::start().attack("service.status");
    assert!(out.contains("\"active_state\":\"failed\""), "{out}");
}

#[test]
fn hostile_arguments_to_service_restart_are_rejected_and_steer_nothing() {
    let node = Node::start();
    node.attack("service.restart");
    let unit = node.systemd.unit("cloudflared.service").unwrap();
    assert_eq!(
        unit.active_state, "active",
        "restarted on the bus this node's own config names"
    );
}
