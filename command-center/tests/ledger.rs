//! The ledger end to end with the real binary: checkpoints signed as scans arrive, inclusion
//! proofs that verify against the signed root, `ledger verify|prove|build` offline, and
//! tampering (a changed, deleted or reordered line) detected — by `ledger verify` naming the
//! line, and by the Command Center raising its alarm on start. The chain file only grows, a
//! checkpoint at a time; a crash mid-append is cut at start; the previous release's
//! `PROOFCHAIN.json` is converted once.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use uuid::Uuid;
use vaultmesh_proto::checkpoint::Checkpoint;
use vaultmesh_proto::merkle::{self, Hash};
use vaultmesh_testkit::{
    CommandCenter, cc_command, heartbeat_json, keygen, text, wait_for, workspace_root,
};

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
    let chain_path = log.join("PROOFCHAIN.jsonl");
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

    // The chain rolled back to its first checkpoint (the header and one line): ROOT.txt is
    // no note of it.
    let rolled: Vec<&str> = chain.lines().take(2).collect();
    std::fs::write(&chain_path, rolled.join("\n") + "\n").unwrap();
    cc.restart();
    assert!(
        alarm(&cc).contains("not a checkpoint of PROOFCHAIN.jsonl"),
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
        serde_json::from_str::<Value>(chain.lines().nth(1).unwrap()).unwrap()["signed_note"]
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
        for f in ["PROOFCHAIN.jsonl", "ROOT.txt"] {
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
        offline.path().join("PROOFCHAIN.jsonl"),
        cc.log_dir().join("PROOFCHAIN.jsonl"),
    )
    .unwrap();
    wait_for(Duration::from_secs(10), || {
        (cc.get_json("/api/ledger/root")["size"] == 1).then_some(())
    })
    .expect("served");
    std::fs::remove_file(cc.log_dir().join("PROOFCHAIN.jsonl")).unwrap();
    let alarm = wait_for(Duration::from_secs(10), || {
        cc.get_json("/api/ledger/root")["alarm"]
            .as_str()
            .map(str::to_string)
    })
    .expect("the alarm is raised");
    assert!(alarm.contains("removed or emptied"), "{alarm}");
}

/// The log is read once at start, and the ledger says so (`read_here=0`): what it needs to see.
const LEDGER_INFO: (&str, &str) = ("RUST_LOG", "warn,vaultmesh_store::ledger=info");

fn chain_lines(log: &Path) -> Vec<Value> {
    std::fs::read_to_string(log.join("PROOFCHAIN.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A checkpoint appends one line to `PROOFCHAIN.jsonl` and changes nothing before it; the
/// store's replay hashes the scan log for the ledger at start (it reads nothing itself); a
/// checkpoint line cut short by a crash is ignored by `ledger verify` and cut at start, and the
/// chain goes on; a real kill -9 amid scans and checkpoints leaves a chain that verifies.
#[test]
fn the_chain_grows_a_line_per_checkpoint_and_survives_a_crash_mid_append() {
    let keys = tempfile::tempdir().unwrap();
    let (key, public) = keygen(keys.path());
    let mut cc = CommandCenter::start_with_env(
        &["--signing-key", &key, "--ledger-interval", "100ms"],
        &[LEDGER_INFO],
    );
    let log = cc.log_dir();
    let chain = log.join("PROOFCHAIN.jsonl");
    assert_eq!(
        cc.post_json("/api/agent/heartbeat", &heartbeat_json(NODE, "n1", 1))
            .status,
        200
    );
    let post_and_wait = |cc: &CommandCenter, scans: std::ops::RangeInclusive<u128>| {
        let last = *scans.end();
        for n in scans {
            assert_eq!(cc.post_json("/api/agent/scans", &scan(n)).status, 200);
        }
        wait_for(Duration::from_secs(10), || {
            (cc.get_json("/api/ledger/root")["size"] == last as u64).then_some(())
        })
        .expect("checkpointed");
    };
    post_and_wait(&cc, 1..=3);
    let first = std::fs::read(&chain).unwrap();
    // One scan: one checkpoint (two could straddle a ledger tick).
    post_and_wait(&cc, 4..=4);
    let second = std::fs::read(&chain).unwrap();
    assert!(
        second.starts_with(&first),
        "the first checkpoint is unchanged"
    );
    let added = &second[first.len()..];
    let entries = chain_lines(&log);
    let newest = entries.last().unwrap();
    assert_eq!(newest["size"], 4);
    assert_eq!(
        (added.iter().filter(|b| **b == b'\n').count(), added.last()),
        (1, Some(&b'\n')),
        "one line"
    );
    assert_eq!(
        &serde_json::from_slice::<Value>(added).unwrap(),
        newest,
        "this checkpoint's"
    );
    assert_eq!(entries[0]["version"], 2);
    assert_eq!(entries[0]["log"], "sovereign-scans.jsonl");
    cc.kill9();

    // A crash halfway through the next append: part of a line, no newline, ROOT.txt unchanged.
    let good = std::fs::read(&chain).unwrap();
    let root_txt = std::fs::read_to_string(log.join("ROOT.txt")).unwrap();
    let torn = &added[..added.len() / 2];
    std::fs::write(&chain, [good.as_slice(), torn].concat()).unwrap();
    let out = ledger(&["verify", "--public-key", &public], &log);
    assert!(out.status.success(), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains(&format!(
            "ok: 4 lines, {} checkpoints in PROOFCHAIN.jsonl",
            entries.len() - 1
        )),
        "{said}"
    );
    assert!(
        said.contains(&format!("note: the last {} bytes", torn.len())),
        "{said}"
    );
    cc.restart();
    let root = cc.get_json("/api/ledger/root");
    assert_eq!(
        (root["size"].clone(), root["alarm"].clone()),
        (json!(4), Value::Null)
    );
    assert_eq!(
        std::fs::read(&chain).unwrap(),
        good,
        "the unfinished line was cut"
    );
    assert_eq!(
        std::fs::read_to_string(log.join("ROOT.txt")).unwrap(),
        root_txt
    );
    // The store's replay hashed all four lines; the ledger read none itself.
    cc.wait_for_log(&["from_replay=4", "read_here=0"]);
    post_and_wait(&cc, 5..=6);
    assert!(std::fs::read(&chain).unwrap().starts_with(&good));
    let out = ledger(&["verify", "--public-key", &public], &log);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("note:"),
        "{}",
        text(&out)
    );

    // Real crashes: kill -9 while scans arrive and checkpoints are written every 100 ms.
    for round in 0..3u128 {
        let base = 100 + round * 20;
        for n in base..base + 20 {
            assert_eq!(cc.post_json("/api/agent/scans", &scan(n)).status, 200);
        }
        std::thread::sleep(Duration::from_millis(30 * round as u64 + 80));
        cc.restart();
        assert_eq!(cc.get_json("/api/ledger/root")["alarm"], Value::Null);
        let out = ledger(&["verify", "--public-key", &public], &log);
        assert!(out.status.success(), "round {round}: {}", text(&out));
    }
    let total = lines(&log).len() as u64;
    wait_for(Duration::from_secs(10), || {
        (cc.get_json("/api/ledger/root")["size"] == total).then_some(())
    })
    .expect("every scan checkpointed after the crashes");
}

/// A log directory of the previous release (`testkit/fixtures/ledger-v1`, written by main at
/// 52b62ba: three checkpoints over nine scans in `PROOFCHAIN.json`): `ledger verify` and
/// `prove` read it as it is; the Command Center converts it once into `PROOFCHAIN.jsonl`, field
/// for field, removes the old file, and goes on appending; `ledger build` converts it too.
#[test]
fn a_chain_of_the_previous_release_is_read_converted_once_and_extended() {
    let fixture = workspace_root().join("testkit/fixtures/ledger-v1");
    let public = std::fs::read_to_string(fixture.join("public.txt")).unwrap();
    let public = public.trim();
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("cc.key");
    std::fs::copy(fixture.join("cc.key"), &key).unwrap();
    let key = key.to_str().unwrap();
    let copy = |into: &Path| {
        std::fs::create_dir_all(into).unwrap();
        for f in [
            "sovereign-scans.jsonl",
            "nodes.jsonl",
            "heartbeats.jsonl",
            "PROOFCHAIN.json",
            "ROOT.txt",
        ] {
            std::fs::copy(fixture.join(f), into.join(f)).unwrap();
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("logs");
    copy(&log);
    let v1: Value =
        serde_json::from_slice(&std::fs::read(log.join("PROOFCHAIN.json")).unwrap()).unwrap();
    assert_eq!(v1["version"], 1);

    // Read as it is, nothing changed.
    let out = ledger(&["verify", "--public-key", public], &log);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("ok: 9 lines, 3 checkpoints in PROOFCHAIN.json,"),
        "{}",
        text(&out)
    );
    let out = ledger(
        &["prove", "--scan-id", &Uuid::from_u128(4).to_string()],
        &log,
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(!log.join("PROOFCHAIN.jsonl").exists());

    // The Command Center converts it at start.
    let mut cc = CommandCenter::start_in(
        dir,
        &["--signing-key", key, "--ledger-interval", "100ms"],
        &[LEDGER_INFO],
    );
    let root = cc.get_json("/api/ledger/root");
    assert_eq!(
        (
            root["size"].clone(),
            root["checkpoints"].clone(),
            root["alarm"].clone()
        ),
        (json!(9), json!(3), Value::Null)
    );
    assert!(
        !log.join("PROOFCHAIN.json").exists(),
        "the old file is removed"
    );
    let converted = std::fs::read(log.join("PROOFCHAIN.jsonl")).unwrap();
    let lines = chain_lines(&log);
    let mut header = v1.clone();
    header.as_object_mut().unwrap().remove("checkpoints");
    header["version"] = json!(2);
    assert_eq!(lines[0], header);
    assert_eq!(lines[1..], v1["checkpoints"].as_array().unwrap()[..]);
    cc.wait_for_log(&["Converted the ledger chain"]);

    // It goes on appending after the converted checkpoints.
    assert_eq!(
        cc.post_json("/api/agent/heartbeat", &heartbeat_json(NODE, "n1", 2))
            .status,
        200
    );
    for n in 10..=11 {
        assert_eq!(cc.post_json("/api/agent/scans", &scan(n)).status, 200);
    }
    wait_for(Duration::from_secs(10), || {
        (cc.get_json("/api/ledger/root")["size"] == 11).then_some(())
    })
    .expect("a checkpoint after the converted ones");
    assert!(
        std::fs::read(log.join("PROOFCHAIN.jsonl"))
            .unwrap()
            .starts_with(&converted)
    );
    let out = ledger(&["verify", "--public-key", public], &log);
    assert!(out.status.success(), "{}", text(&out));
    // Four or more checkpoints: the two scans may straddle a ledger tick.
    let checkpoints = cc.get_json("/api/ledger/root")["checkpoints"].clone();
    assert!(checkpoints.as_u64().unwrap() >= 4);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!(
            "ok: 11 lines, {checkpoints} checkpoints in PROOFCHAIN.jsonl,"
        )),
        "{}",
        text(&out)
    );
    // Once: the next start converts nothing.
    cc.restart();
    assert!(!cc.stderr().contains("Converted"), "{}", cc.stderr());
    assert_eq!(cc.get_json("/api/ledger/root")["checkpoints"], checkpoints);
    cc.kill9();

    // `ledger build` converts too (nothing new to sign: the chain covers the log).
    let other = tempfile::tempdir().unwrap();
    copy(other.path());
    let out = ledger(&["build", "--signing-key", key], other.path());
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("nothing new"),
        "{}",
        text(&out)
    );
    assert!(!other.path().join("PROOFCHAIN.json").exists());
    let out = ledger(&["verify", "--public-key", public], other.path());
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("9 lines, 3 checkpoints in PROOFCHAIN.jsonl,"),
        "{}",
        text(&out)
    );
}
