//! The ledger end to end with the real binary: checkpoints signed as scans arrive, inclusion
//! proofs that verify against the signed root, `ledger verify|prove|build` offline, and
//! tampering (a changed, deleted or reordered line) detected — by `ledger verify` naming the
//! line, and by the Command Center raising its alarm on start.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use uuid::Uuid;
use vaultmesh_proto::checkpoint::Checkpoint;
use vaultmesh_proto::merkle::{self, Hash};
use vaultmesh_testkit::{CommandCenter, cc_command, heartbeat_json, keygen, text, wait_for};

const NODE: &str = "1ed90000-0000-4000-8000-000000000001";

fn scan(n: u128) -> Value {
    json!({
        "scan_id": Uuid::from_u128(n), "node_id": NODE, "profile": "ArchVault",
        "started_at": "2026-11-29T10:00:00Z", "finished_at": "2026-11-29T10:00:01Z",
        "findings": [], "counts": {}, "fingerprint": {"sysctl": {"kernel.kptr_restrict": n.to_string()}},
        "rules": ["sysctl"],
    })
}

fn hex32(s: &Value) -> Hash {
    hex::decode(s.as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap()
}

fn lines(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log.join("sovereign-scans.jsonl"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn write_lines(log: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(log.join("sovereign-scans.jsonl"), text).unwrap();
}

fn ledger(args: &[&str], log: &Path) -> std::process::Output {
    let mut a = vec!["ledger"];
    a.extend_from_slice(args);
    a.extend_from_slice(&["--log-dir", log.to_str().unwrap()]);
    cc_command(&a)
}

#[test]
fn scans_are_checkpointed_proven_verified_and_tampering_is_caught() {
    let keys = tempfile::tempdir().unwrap();
    let (key, public) = keygen(keys.path());
    let mut cc = CommandCenter::start_with(&["--signing-key", &key, "--ledger-interval", "200ms"]);
    let log = cc.log_dir();
    assert_eq!(
        cc.post_json("/api/agent/heartbeat", &heartbeat_json(NODE, "n1", 1))
            .status,
        200
    );
    for n in 1..=5 {
        assert_eq!(cc.post_json("/api/agent/scans", &scan(n)).status, 200);
    }
    let root = wait_for(Duration::from_secs(10), || {
        let r = cc.get_json("/api/ledger/root");
        (r["size"] == 5).then_some(r)
    })
    .expect("a checkpoint over the five scans");

    // ROOT.txt is the signed note; it verifies with the Command Center's key.
    let note = std::fs::read_to_string(log.join("ROOT.txt")).unwrap();
    assert_eq!(root["signed_note"], note.as_str());
    let pk = vaultmesh_proto::auth::parse_public_key(&public).unwrap();
    let cp = Checkpoint::verify(&note, "vaultmesh/sovereign-scans", &pk).unwrap();
    assert_eq!(cp.size, 5);
    // The root is the RFC 9162 tree over the raw lines of the log.
    let leaves: Vec<Hash> = lines(&log)
        .iter()
        .map(|l| merkle::leaf_hash(l.as_bytes()))
        .collect();
    assert_eq!(cp.root, merkle::root(&leaves));

    // The proof of scan 3 verifies against the signed root from line 3's own bytes.
    let proof = cc.get_json(&format!("/api/ledger/proof/{}", Uuid::from_u128(3)));
    assert_eq!(proof["index"], 2);
    let path: Vec<Hash> = proof["inclusion"]
        .as_array()
        .unwrap()
        .iter()
        .map(hex32)
        .collect();
    let leaf = merkle::leaf_hash(lines(&log)[2].as_bytes());
    assert_eq!(hex32(&proof["leaf_hash"]), leaf);
    merkle::verify_inclusion(2, 5, &leaf, &path, &cp.root).unwrap();
    assert_eq!(
        cc.get(&format!("/api/ledger/proof/{}", Uuid::from_u128(99)))
            .status,
        404
    );
    assert_eq!(cc.get("/api/ledger/proof/nope").status, 400);

    // The log grows: a second checkpoint, consistent with the first.
    for n in 6..=8 {
        assert_eq!(cc.post_json("/api/agent/scans", &scan(n)).status, 200);
    }
    wait_for(Duration::from_secs(10), || {
        (cc.get_json("/api/ledger/root")["size"] == 8).then_some(())
    })
    .expect("a second checkpoint");
    let out = ledger(&["verify", "--public-key", &public], &log);
    assert!(out.status.success(), "{}", text(&out));
    // Two or more checkpoints: the batch may straddle a ledger tick.
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("8 lines, "),
        "{}",
        text(&out)
    );
    let out = ledger(
        &["prove", "--scan-id", &Uuid::from_u128(7).to_string()],
        &log,
    );
    assert!(out.status.success(), "{}", text(&out));
    let offline: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(offline["tree_size"], 8);
    assert_eq!(offline["index"], 6);
    cc.kill9();

    // Tampering, each detected by `ledger verify` naming the line.
    let good = lines(&log);
    let mut changed = good.clone();
    changed[1] = changed[1].replace("\"2\"", "\"9\"");
    for (what, tampered, want) in [
        ("a changed line", changed, "line 2 of sovereign-scans.jsonl"),
        (
            "a deleted line",
            [&good[..3], &good[4..]].concat(),
            "line 4",
        ),
        (
            "reordered lines",
            [vec![good[1].clone(), good[0].clone()], good[2..].to_vec()].concat(),
            "line 1 ",
        ),
        (
            "a truncated log",
            good[..6].to_vec(),
            "has 6 lines but checkpoint",
        ),
    ] {
        write_lines(&log, &tampered);
        let out = ledger(&["verify"], &log);
        assert_eq!(out.status.code(), Some(1), "{what}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{what}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }

    // The Command Center starting on a truncated log raises the alarm, loudly and durably.
    write_lines(&log, &good[..6]);
    cc.restart();
    let root = cc.get_json("/api/ledger/root");
    assert!(
        root["alarm"]
            .as_str()
            .unwrap()
            .contains("lines were removed"),
        "{root}"
    );
    let health = cc.get_json("/healthz");
    assert_eq!(health["status"], "alarm");
    let incidents = wait_for(Duration::from_secs(5), || {
        let e = cc.get_json("/api/events?kind=incident");
        (!e.as_array().unwrap().is_empty()).then_some(e)
    })
    .expect("an incident is opened");
    assert_eq!(incidents[0]["body"]["severity"], "critical");
    assert!(
        incidents[0]["body"]["title"]
            .as_str()
            .unwrap()
            .contains("Ledger tamper alarm")
    );
    // ... and the chain is never extended over the tampered log.
    assert_eq!(cc.post_json("/api/agent/scans", &scan(20)).status, 200);
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(cc.get_json("/api/ledger/root")["size"], 8);
}

/// A Command Center without a signing key (scans are logged, nothing is signed) that has heard
/// from [`NODE`].
fn keyless_with_node() -> CommandCenter {
    let cc = CommandCenter::start_with(&["--ledger-interval", "100ms"]);
    assert_eq!(
        cc.post_json("/api/agent/heartbeat", &heartbeat_json(NODE, "n1", 1))
            .status,
        200
    );
    cc
}

#[test]
fn ledger_build_extends_the_chain_offline_and_only_when_the_log_grew() {
    let keys = tempfile::tempdir().unwrap();
    let (key, _) = keygen(keys.path());
    let mut cc = keyless_with_node();
    let log = cc.log_dir();
    for n in 1..=3 {
        assert_eq!(cc.post_json("/api/agent/scans", &scan(n)).status, 200);
    }
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(cc.get_json("/api/ledger/root")["size"], 0);
    assert!(!log.join("ROOT.txt").exists());

    // `ledger build` writes the directory: not while the Command Center runs.
    let out = ledger(&["build", "--signing-key", &key], &log);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("vaultmesh.lock is held by pid"),
        "{}",
        text(&out)
    );
    cc.kill9();
    let out = ledger(&["build", "--signing-key", &key], &log);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("3 lines"),
        "{}",
        text(&out)
    );
    let out = ledger(&["build", "--signing-key", &key], &log);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("nothing new"),
        "{}",
        text(&out)
    );
    assert!(ledger(&["verify"], &log).status.success());
    let out = ledger(&["build", "--signing-key", "/nonexistent"], &log);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = ledger(&["prove", "--scan-id", "nope"], &log);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    // Started again, the Command Center serves the chain built offline.
    cc.restart();
    assert_eq!(cc.get_json("/api/ledger/root")["size"], 3);
}

#[test]
fn the_alarm_cannot_be_dodged_by_removing_rolling_back_or_re_signing_the_chain() {
    let keys = tempfile::tempdir().unwrap();
    let (key, _) = keygen(keys.path());
    let other_dir = tempfile::tempdir().unwrap();
    let (other_key, _) = keygen(other_dir.path());
    let mut cc = CommandCenter::start_with(&["--signing-key", &key, "--ledger-interval", "100ms"]);
    let log = cc.log_dir();
    assert_eq!(
        cc.post_json("/api/agent/heartbeat", &heartbeat_json(NODE, "n1", 1))
            .status,
        200
    );
    let post_and_wait = |cc: &CommandCenter, n: u128| {
        assert_eq!(cc.post_json("/api/agent/scans", &scan(n)).status, 200);
        wait_for(Duration::from_secs(10), || {
            (cc.get_json("/api/ledger/root")["size"] == n as u64).then_some(())
        })
        .expect("checkpointed");
    };
    post_and_wait(&cc, 1);
    post_and_wait(&cc, 2);
    // One writer at a time: `ledger build` refuses while the signing Command Center runs.
    let out = ledger(&["build", "--signing-key", &key], &log);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("vaultmesh.lock is held by pid"));
    cc.kill9();
    let chain_path = log.join("PROOFCHAIN.json");
    let chain = std::fs::read_to_string(&chain_path).unwrap();
    let alarm = |cc: &CommandCenter| {
        cc.get_json("/api/ledger/root")["alarm"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };

    // The chain removed, ROOT.txt left: caught.
    std::fs::remove_file(&chain_path).unwrap();
    cc.restart();
    assert!(alarm(&cc).contains("chain was removed"), "{}", alarm(&cc));
    cc.kill9();

    // The chain rolled back to its first checkpoint: ROOT.txt is no note of it.
    let mut rolled: Value = serde_json::from_str(&chain).unwrap();
    rolled["checkpoints"].as_array_mut().unwrap().truncate(1);
    std::fs::write(&chain_path, rolled.to_string()).unwrap();
    cc.restart();
    assert!(
        alarm(&cc).contains("not a checkpoint of PROOFCHAIN.json"),
        "{}",
        alarm(&cc)
    );
    assert_eq!(
        cc.get(&format!("/api/ledger/proof/{}", Uuid::from_u128(1)))
            .status,
        503
    );
    cc.kill9();

    // Both files replaced by a chain signed with another key: not our signature.
    std::fs::remove_file(&chain_path).unwrap();
    std::fs::remove_file(log.join("ROOT.txt")).unwrap();
    let out = ledger(&["build", "--signing-key", &other_key], &log);
    assert!(out.status.success(), "{}", text(&out));
    cc.restart();
    assert!(
        alarm(&cc).contains("signed by a key other than the one given"),
        "{}",
        alarm(&cc)
    );
    cc.kill9();

    // The genuine chain back: quiet again, and it grows.
    std::fs::write(&chain_path, &chain).unwrap();
    let first_note =
        serde_json::from_str::<Value>(&chain).unwrap()["checkpoints"][0]["signed_note"]
            .as_str()
            .unwrap()
            .to_string();
    // A ROOT.txt one checkpoint behind (a crash between the two writes) is repaired.
    std::fs::write(log.join("ROOT.txt"), first_note).unwrap();
    cc.restart();
    assert_eq!(alarm(&cc), "");
    post_and_wait(&cc, 3);
    assert!(ledger(&["verify"], &log).status.success());
}

/// LEDGER.md: a Command Center without a signing key serves a chain `ledger build` made on a
/// copy of its log (the key never on the server) as soon as the files are copied back — and a
/// copied-back chain that does not extend the one it serves is the tamper alarm.
#[test]
fn a_running_command_center_without_a_key_adopts_a_chain_built_offline() {
    let keys = tempfile::tempdir().unwrap();
    let (key, public) = keygen(keys.path());
    let other_dir = tempfile::tempdir().unwrap();
    let (other_key, _) = keygen(other_dir.path());
    let cc = keyless_with_node();
    let log = cc.log_dir();
    let offline = tempfile::tempdir().unwrap();
    // The offline signer: copy the log over, build there, copy the two ledger files back.
    let sign_offline = |with: &str, into: &Path| {
        std::fs::copy(
            log.join("sovereign-scans.jsonl"),
            into.join("sovereign-scans.jsonl"),
        )
        .unwrap();
        let out = ledger(&["build", "--signing-key", with], into);
        assert!(out.status.success(), "{}", text(&out));
        for f in ["PROOFCHAIN.json", "ROOT.txt"] {
            std::fs::copy(into.join(f), log.join(f)).unwrap();
        }
    };
    let served = |size: u64| {
        wait_for(Duration::from_secs(10), || {
            let r = cc.get_json("/api/ledger/root");
            (r["size"] == size).then_some(r)
        })
        .unwrap_or_else(|| {
            panic!(
                "size {size} not served: {}",
                cc.get_json("/api/ledger/root")
            )
        })
    };

    for n in 1..=3 {
        assert_eq!(cc.post_json("/api/agent/scans", &scan(n)).status, 200);
    }
    assert_eq!(cc.get_json("/api/ledger/root")["size"], 0);
    sign_offline(&key, offline.path());
    let root = served(3);
    assert_eq!(root["checkpoints"], 1);
    assert_eq!(root["alarm"], Value::Null);
    let proof = cc.get_json(&format!("/api/ledger/proof/{}", Uuid::from_u128(2)));
    assert_eq!(
        (proof["index"].clone(), proof["tree_size"].clone()),
        (json!(1), json!(3))
    );
    let leaf = merkle::leaf_hash(lines(&log)[1].as_bytes());
    let path: Vec<Hash> = proof["inclusion"]
        .as_array()
        .unwrap()
        .iter()
        .map(hex32)
        .collect();
    merkle::verify_inclusion(1, 3, &leaf, &path, &hex32(&proof["root"])).unwrap();

    // The log grows; the next offline build extends the chain and is served in turn.
    for n in 4..=5 {
        assert_eq!(cc.post_json("/api/agent/scans", &scan(n)).status, 200);
    }
    sign_offline(&key, offline.path());
    assert_eq!(served(5)["checkpoints"], 2);
    let out = ledger(&["verify", "--public-key", &public], &log);
    assert!(out.status.success(), "{}", text(&out));

    // A chain that does not extend the one served (a fresh one, by another key): the alarm.
    assert_eq!(cc.post_json("/api/agent/scans", &scan(6)).status, 200);
    let elsewhere = tempfile::tempdir().unwrap();
    sign_offline(&other_key, elsewhere.path());
    let alarm = wait_for(Duration::from_secs(10), || {
        cc.get_json("/api/ledger/root")["alarm"]
            .as_str()
            .map(str::to_string)
    })
    .expect("the alarm is raised");
    assert!(alarm.contains("does not extend the one served"), "{alarm}");
    assert_eq!(
        cc.get_json("/api/ledger/root")["size"],
        5,
        "the old chain is still served"
    );
    assert_eq!(
        cc.get(&format!("/api/ledger/proof/{}", Uuid::from_u128(2)))
            .status,
        503
    );
    assert_eq!(cc.get_json("/healthz")["status"], "alarm");

    // The chain file removed while a chain is served: the alarm too.
    let cc = keyless_with_node();
    assert_eq!(cc.post_json("/api/agent/scans", &scan(1)).status, 200);
    let offline = tempfile::tempdir().unwrap();
    std::fs::copy(
        cc.log_dir().join("sovereign-scans.jsonl"),
        offline.path().join("sovereign-scans.jsonl"),
    )
    .unwrap();
    assert!(
        ledger(&["build", "--signing-key", &key], offline.path())
            .status
            .success()
    );
    std::fs::copy(
        offline.path().join("PROOFCHAIN.json"),
        cc.log_dir().join("PROOFCHAIN.json"),
    )
    .unwrap();
    wait_for(Duration::from_secs(10), || {
        (cc.get_json("/api/ledger/root")["size"] == 1).then_some(())
    })
    .expect("served");
    std::fs::remove_file(cc.log_dir().join("PROOFCHAIN.json")).unwrap();
    let alarm = wait_for(Duration::from_secs(10), || {
        cc.get_json("/api/ledger/root")["alarm"]
            .as_str()
            .map(str::to_string)
    })
    .expect("the alarm is raised");
    assert!(alarm.contains("removed or emptied"), "{alarm}");
}
