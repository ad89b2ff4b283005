//! The worked examples of `docs/PROTOCOL.md` (and `docs/EVENT_ENVELOPE.md`, `docs/LEDGER.md`)
//! are the contract a stranger implements from, so every printed signature and hash is checked
//! twice: recomputed from the documented rules by a second implementation in Python
//! (`doc_examples.py`, standard library + `cryptography`), and produced and verified by our own
//! Rust code here (the ledger's in `store/src/ledger/chain.rs::worked_example`). Neither the
//! document nor the code can change without the other. The Python ledger verifier also checks a
//! chain our binary wrote.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};
use vaultmesh_proto::auth::{self, NodeKey};
use vaultmesh_proto::command::{self, SignedCommand, SignedReceipt};
use vaultmesh_proto::session::{self, SessionId, SharedSecret};
use vaultmesh_testkit::{cc_command, text, workspace_root};

/// A document's examples: fenced blocks with the info string `<language> example=<name>`, and
/// bullet lines `` - <label>: `<value>` `` — the same rules as `doc_examples.py`.
struct Doc {
    path: PathBuf,
    blocks: HashMap<String, String>,
    values: HashMap<String, String>,
}

impl Doc {
    fn read(path: &Path) -> Doc {
        let text = std::fs::read_to_string(path).unwrap();
        let mut blocks = HashMap::new();
        let mut values = HashMap::new();
        let mut lines = text.lines();
        while let Some(line) = lines.next() {
            if let Some(info) = line.strip_prefix("```")
                && let Some((_, name)) = info.split_once(" example=")
            {
                let body: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
                blocks.insert(name.to_string(), body.join("\n"));
            } else if let Some(item) = line.strip_prefix("- ")
                && let Some((label, value)) = item.split_once(": `")
                && let Some(value) = value.strip_suffix('`')
                && !label.contains('`')
                && !value.contains('`')
            {
                values.insert(label.to_string(), value.to_string());
            }
        }
        Doc {
            path: path.to_path_buf(),
            blocks,
            values,
        }
    }

    fn block(&self, name: &str) -> &str {
        self.blocks
            .get(name)
            .unwrap_or_else(|| panic!("{} has no block `example={name}`", self.path.display()))
    }

    fn json(&self, name: &str) -> Value {
        serde_json::from_str(self.block(name)).unwrap()
    }

    fn value(&self, label: &str) -> &str {
        self.values
            .get(label)
            .unwrap_or_else(|| panic!("{} has no line `- {label}: ...`", self.path.display()))
    }
}

fn protocol() -> Doc {
    Doc::read(&workspace_root().join("docs/PROTOCOL.md"))
}

fn prefixed(prefix: &[u8], jcs: &str) -> Vec<u8> {
    [prefix, jcs.as_bytes()].concat()
}

#[test]
fn the_protocol_examples_are_what_our_code_signs_and_verifies() {
    let doc = protocol();
    let node = NodeKey::from_base64(doc.value("node key seed")).unwrap();
    assert_eq!(node.public_base64(), doc.value("node public key"));
    let node_public = auth::parse_public_key(doc.value("node public key")).unwrap();
    let cc = NodeKey::from_base64(doc.value("command center key seed")).unwrap();
    assert_eq!(cc.public_base64(), doc.value("command center public key"));
    assert_eq!(
        command::key_id(&cc.public_base64()),
        doc.value("command center key id")
    );
    let cc_public = auth::parse_public_key(&cc.public_base64()).unwrap();

    // Signed requests: the message and the signature the agent's client makes.
    let node_id = "550e8400-e29b-41d4-a716-446655440000".parse().unwrap();
    for (name, path, body) in [
        (
            "heartbeat",
            "/api/agent/heartbeat",
            doc.value("heartbeat body").to_string(),
        ),
        (
            "enroll",
            "/api/agent/enroll",
            doc.block("enroll-body").to_string(),
        ),
    ] {
        let message = auth::request_message("POST", path, &node_id, 1_764_410_400, body.as_bytes());
        assert_eq!(
            String::from_utf8(message.clone()).unwrap(),
            doc.block(&format!("{name}-message"))
        );
        let signed = node.sign_request("POST", path, &node_id, 1_764_410_400, body.as_bytes());
        assert_eq!(signed.signature, doc.value(&format!("{name} signature")));
        auth::verify(&node_public, &signed.signature, &message).unwrap();
    }
    // An event from a node: the body the agent's `event incident` sends, signed as printed.
    let event = vaultmesh_agent_core::events::NodeEvent::Incident {
        title: "RAID degraded on md0".into(),
        severity: vaultmesh_proto::Severity::Critical,
        text: Some("sdb failed; the array runs on one disk".into()),
    };
    event.check().unwrap();
    let body = serde_json::to_string(&event.body()).unwrap();
    assert_eq!(body, doc.block("event-body"), "our agent sends these bytes");
    let path = "/api/agent/events?nonce=5f0e3c1a9b7d4e2f";
    let message = auth::request_message("POST", path, &node_id, 1_764_410_400, body.as_bytes());
    assert_eq!(
        String::from_utf8(message.clone()).unwrap(),
        doc.block("event-message")
    );
    let signed = node.sign_request("POST", path, &node_id, 1_764_410_400, body.as_bytes());
    assert_eq!(signed.signature, doc.value("event signature"));
    auth::verify(&node_public, &signed.signature, &message).unwrap();
    let request = format!(
        "POST {path} HTTP/1.1\nHost: cc.example.com\nContent-Type: application/json\nContent-Length: {}\n{}: {}\n{}: {}\n{}: {}\n\n{body}",
        body.len(),
        "X-VaultMesh-Node",
        signed.node,
        "X-VaultMesh-Timestamp",
        signed.timestamp,
        "X-VaultMesh-Signature",
        signed.signature
    );
    assert_eq!(request, doc.block("event-request"));
    assert_eq!(
        vaultmesh_proto::event::node_author(&node_id),
        "node:550e8400-e29b-41d4-a716-446655440000"
    );

    let enroll: auth::EnrollRequest = serde_json::from_str(doc.block("enroll-body")).unwrap();
    assert_eq!(enroll.public_key, node.public_base64());

    // A session MAC: the message and MAC the agent's client makes, which the Command Center's
    // side (its key, the node's public key) derives the same key for.
    // 00112233445566778899aabbccddeeff
    let nonce: [u8; 16] = std::array::from_fn(|i| i as u8 * 0x11);
    let session = SessionId::new(&cc.public_base64(), 1_764_410_400, nonce);
    assert_eq!(session.to_string(), doc.value("session id"));
    let body = doc.value("heartbeat body").as_bytes();
    let message = session::mac_message(
        "POST",
        "/api/agent/heartbeat",
        &node_id,
        1_764_410_460,
        &session,
        body,
    );
    assert_eq!(
        String::from_utf8(message.clone()).unwrap(),
        doc.block("heartbeat-mac-message")
    );
    let agent_side = SharedSecret::between(&node, &cc_public).unwrap();
    let mac = agent_side.session_key(&node_id, &session).mac(&message);
    assert_eq!(mac, doc.value("heartbeat MAC"));
    let cc_side = SharedSecret::between(&cc, &node_public).unwrap();
    cc_side
        .session_key(&node_id, &session)
        .verify(&message, &mac)
        .unwrap();

    // The command: the Command Center signs exactly this, and the agent verifies it as printed.
    let signed: SignedCommand = serde_json::from_value(json!({
        "command": doc.json("command"),
        "signature": doc.value("command signature"),
        "key_id": doc.value("command center key id"),
    }))
    .unwrap();
    signed.verify(&cc_public).unwrap();
    assert_eq!(
        signed.signing_bytes().unwrap(),
        prefixed(command::COMMAND_DOMAIN, doc.block("command-jcs"))
    );
    let ours = SignedCommand::sign((*signed.command).clone(), &cc);
    assert_eq!(ours, signed, "our Command Center signs the same object");

    // The receipts: the agent signs exactly these, the Command Center verifies and chains them.
    let mut prev: Option<String> = None;
    for n in [1, 2] {
        let signed: SignedReceipt = serde_json::from_value(json!({
            "receipt": doc.json(&format!("receipt-{n}")),
            "signature": doc.value(&format!("receipt {n} signature")),
        }))
        .unwrap();
        signed.verify(&node_public).unwrap();
        assert_eq!(
            signed.signing_bytes().unwrap(),
            prefixed(
                command::RECEIPT_DOMAIN,
                doc.block(&format!("receipt-{n}-jcs"))
            )
        );
        assert_eq!(signed.receipt.prev_receipt_sha256, prev, "receipt {n}");
        assert_eq!(
            signed.chain_hash(),
            doc.value(&format!("receipt {n} chain hash"))
        );
        // Our agent writes this very object (optional members as the document says).
        let ours = SignedReceipt::sign((*signed.receipt).clone(), &node);
        assert_eq!(ours, signed, "receipt {n}: our agent signs the same object");
        prev = Some(signed.chain_hash());
    }
}

/// The `metrics` rates example of PROTOCOL.md's heartbeat section is what the proto parses,
/// accepts, and writes back member for member.
#[test]
fn the_heartbeat_rates_example_is_what_the_proto_parses_and_accepts() {
    let example = protocol().json("heartbeat-rates");
    let metrics: vaultmesh_proto::Metrics = serde_json::from_value(example.clone()).unwrap();
    let cpu = metrics.cpu.unwrap();
    assert_eq!(
        cpu.busy_pct,
        cpu.user_pct + cpu.system_pct + cpu.steal_pct,
        "the documented identity"
    );
    assert_eq!(serde_json::to_value(&metrics).unwrap(), example);
    let mut hb: vaultmesh_proto::NodeHeartbeat = serde_json::from_value(json!({
        "node_id": "550e8400-e29b-41d4-a716-446655440000", "hostname": "vault-node-01",
        "os_profile": "ArchVault", "cloudflare_ok": true, "services_ok": true,
        "vaultmesh_root": "/var/lib/vaultmesh", "timestamp": "2024-01-15T10:30:00Z"}))
    .unwrap();
    hb.metrics = Some(metrics);
    hb.validate().unwrap();
}

#[test]
fn the_event_envelope_example_is_what_our_code_hashes() {
    let doc = Doc::read(&workspace_root().join("docs/EVENT_ENVELOPE.md"));
    let envelope: vaultmesh_proto::EventEnvelope =
        serde_json::from_value(doc.json("event-envelope")).unwrap();
    assert_eq!(envelope.compute_hash(), doc.value("envelope hash"));
    assert!(envelope.verify());
    let mut unsealed = doc.json("event-envelope");
    unsealed.as_object_mut().unwrap().remove("hash");
    assert_eq!(
        vaultmesh_proto::canonical::to_jcs(&unsealed).unwrap(),
        doc.block("event-envelope-jcs").as_bytes()
    );
}

/// Runs `doc_examples.py` on `docs`; its output and whether it passed.
fn python(docs: &Path) -> (bool, String) {
    let script = workspace_root().join("testkit/tests/doc_examples.py");
    // Debian's python3 with its python3-cryptography package (scripts/test installs it).
    let out = Command::new("/usr/bin/python3")
        .arg(&script)
        .arg(docs)
        .output()
        .expect("/usr/bin/python3 (apt-get install -y python3 python3-cryptography)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !text.contains("No module named 'cryptography'"),
        "apt-get install -y python3-cryptography"
    );
    (out.status.success(), text)
}

#[test]
fn python_recomputes_every_printed_signature_and_hash_from_the_documented_rules() {
    let (ok, out) = python(&workspace_root().join("docs"));
    assert!(ok, "{out}");
    for what in [
        "command JCS",
        "command signature verifies",
        "receipt 2 chain hash",
        "enroll signature",
        "event signature",
        "event request signature",
        "envelope hash",
        "history points",
        "root of 3",
        "ROOT.txt",
        "PROOFCHAIN.jsonl",
        "PROOFCHAIN.jsonl checkpoints verified",
    ] {
        assert!(out.contains(&format!("ok: {what}\n")), "{out}");
    }

    // And it is not vacuous: one changed character in a printed value is caught and named.
    let docs = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(workspace_root().join("docs")).unwrap() {
        let entry = entry.unwrap();
        if entry.path().extension().is_some_and(|e| e == "md") {
            std::fs::copy(entry.path(), docs.path().join(entry.file_name())).unwrap();
        }
    }
    let doc = protocol();
    let hash = doc.value("receipt 1 chain hash");
    let text = std::fs::read_to_string(docs.path().join("PROTOCOL.md")).unwrap();
    let wrong = format!(
        "{}{}",
        if hash.starts_with('0') { "1" } else { "0" },
        &hash[1..]
    );
    let line = format!("- receipt 1 chain hash: `{hash}`");
    assert!(text.contains(&line));
    std::fs::write(
        docs.path().join("PROTOCOL.md"),
        text.replace(&line, &format!("- receipt 1 chain hash: `{wrong}`")),
    )
    .unwrap();
    let (ok, out) = python(docs.path());
    assert!(!ok, "{out}");
    assert!(out.contains("FAIL: receipt 1 chain hash"), "{out}");
}

/// `docs/LEDGER.md` is enough to verify a real ledger: the Python verifier, written from the
/// page alone, checks the chain our `ledger build` wrote — a previous release's
/// `PROOFCHAIN.json` (`testkit/fixtures/ledger-v1`) converted and extended by a checkpoint
/// line — ignores an unfinished last line, and names a changed line of the log.
#[test]
fn python_verifies_a_chain_our_binary_wrote_from_the_documented_rules() {
    let fixture = workspace_root().join("testkit/fixtures/ledger-v1");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path();
    for f in [
        "sovereign-scans.jsonl",
        "PROOFCHAIN.json",
        "ROOT.txt",
        "cc.key",
    ] {
        std::fs::copy(fixture.join(f), log.join(f)).unwrap();
    }
    let public = std::fs::read_to_string(fixture.join("public.txt")).unwrap();
    let public = public.trim();
    let scans = log.join("sovereign-scans.jsonl");
    let mut lines: Vec<String> = std::fs::read_to_string(&scans)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    for n in 10..=12 {
        lines.push(lines[0].replace(
            "00000000-0000-0000-0000-000000000001",
            &format!("00000000-0000-0000-0000-0000000000{n}"),
        ));
    }
    std::fs::write(&scans, lines.join("\n") + "\n").unwrap();
    let key = log.join("cc.key");
    let build = cc_command(&[
        "ledger",
        "build",
        "--log-dir",
        log.to_str().unwrap(),
        "--signing-key",
        key.to_str().unwrap(),
    ]);
    assert!(build.status.success(), "{}", text(&build));
    assert!(!log.join("PROOFCHAIN.json").exists());

    let verify = || {
        let out = Command::new("/usr/bin/python3")
            .arg(workspace_root().join("testkit/tests/doc_examples.py"))
            .args(["--verify-ledger", log.to_str().unwrap(), public])
            .output()
            .expect("/usr/bin/python3");
        (out.status.success(), text(&out))
    };
    let (ok, out) = verify();
    assert!(ok, "{out}");
    assert!(out.contains("ok: 12 lines, 4 checkpoints"), "{out}");

    // An unfinished checkpoint line (a crash mid-append) is not part of the chain.
    let chain = log.join("PROOFCHAIN.jsonl");
    let mut bytes = std::fs::read(&chain).unwrap();
    bytes.extend_from_slice(br#"{"size":13,"root":"ab"#);
    std::fs::write(&chain, bytes).unwrap();
    let (ok, out) = verify();
    assert!(ok, "{out}");

    // A changed line of the log is named.
    lines[4] = lines[4].replace("\"5\"", "\"6\"");
    std::fs::write(&scans, lines.join("\n") + "\n").unwrap();
    let (ok, out) = verify();
    assert!(!ok, "{out}");
    assert!(
        out.contains("FAIL: line 5 of sovereign-scans.jsonl is not the line checkpoint 2 signed"),
        "{out}"
    );
}
