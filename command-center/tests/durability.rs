//! The store keeps what it acknowledged: crash (kill -9) mid-stream, torn and corrupt lines,
//! rotation and retention, and replay rebuilding exactly the state the live server had.
//! Real binary, real files, real HTTP.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::collections::BTreeSet;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use vaultmesh_testkit::auth::TestNode;
use vaultmesh_testkit::segments::{decompress, heartbeat_segments, wait_compressed};
use vaultmesh_testkit::{CommandCenter, cc_command, heartbeat_json, text};

fn node(i: u32) -> String {
    format!("00000000-0000-4000-8000-{i:012}")
}

/// Every (node, seq) stored in the heartbeat log, via `logs view --json`.
fn logged(cc: &CommandCenter) -> BTreeSet<(String, u64)> {
    let dir = cc.log_dir();
    let out = cc_command(&[
        "logs",
        "view",
        "--kind",
        "heartbeat",
        "--limit",
        "0",
        "--json",
        "--log-dir",
        dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["node_id"].as_str().unwrap().to_string(),
                v["record"]["seq"].as_str().unwrap().parse().unwrap(),
            )
        })
        .collect()
}

#[test]
fn every_acknowledged_heartbeat_survives_kill_9() {
    let mut cc = CommandCenter::start();
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let stop = Arc::new(AtomicBool::new(false));
    // Four concurrent senders, so group commit batches several appends per fsync.
    let senders: Vec<_> = (0..4)
        .map(|i| {
            let (url, acked, stop) = (cc.url.clone(), acked.clone(), stop.clone());
            std::thread::spawn(move || {
                let id = node(i);
                let mut seq = 0;
                while !stop.load(Ordering::Relaxed) {
                    seq += 1;
                    let hb = heartbeat_json(&id, &format!("node-{i}"), seq);
                    match TestNode::new(id.parse().unwrap()).post_heartbeat(&url, &hb) {
                        Ok(r) if r.status().is_success() => {
                            acked.lock().unwrap().insert((id.clone(), seq));
                        }
                        _ => break, // the server died mid-request: not acknowledged
                    }
                }
            })
        })
        .collect();
    // Let a few hundred land, then crash the server while requests are in flight.
    vaultmesh_testkit::wait_for(Duration::from_secs(30), || {
        (acked.lock().unwrap().len() >= 300).then_some(())
    })
    .unwrap();
    cc.kill9();
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        s.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 300);

    cc.restart();
    let on_disk = logged(&cc);
    let missing: Vec<_> = acked.difference(&on_disk).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged heartbeats lost, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    // And the replayed state counts them.
    let nodes = cc.get_json("/api/nodes");
    let replayed: u64 = nodes
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["heartbeats"].as_u64().unwrap())
        .sum();
    assert_eq!(replayed, on_disk.len() as u64);
}

#[test]
fn replay_rebuilds_the_state_the_live_server_had() {
    let mut cc = CommandCenter::start_with(&["--history-len", "5"]);
    let before = post_three_nodes(&cc, 12);
    assert_eq!(before.1[0]["history"].as_array().unwrap().len(), 5);

    cc.restart();
    assert_eq!(state(&cc), before);
}

/// Heartbeats `1..=seqs` from nodes 0, 1 and 2 (each with its own load); returns [`state`].
fn post_three_nodes(cc: &CommandCenter, seqs: u64) -> (serde_json::Value, Vec<serde_json::Value>) {
    for seq in 1..=seqs {
        for i in 0..3 {
            let mut hb = heartbeat_json(&node(i), &format!("host-{i}"), seq);
            hb["metrics"]["load"][0] = serde_json::json!(seq as f64 / 10.0 + i as f64);
            assert_eq!(cc.post_json("/api/agent/heartbeat", &hb).status, 200);
        }
    }
    state(cc)
}

/// `/api/nodes` and each of nodes 0, 1 and 2's detail.
fn state(cc: &CommandCenter) -> (serde_json::Value, Vec<serde_json::Value>) {
    let details = (0..3)
        .map(|i| cc.get_json(&format!("/api/nodes/{}", node(i))))
        .collect();
    (cc.get_json("/api/nodes"), details)
}

#[test]
fn torn_and_corrupt_lines_never_stop_a_start_nor_lose_good_records() {
    let mut cc = CommandCenter::start();
    for seq in 1..=3 {
        assert_eq!(
            cc.post_json(
                "/api/agent/heartbeat",
                &heartbeat_json(&node(1), "good", seq)
            )
            .status,
            200
        );
    }
    cc.kill9();
    let log = cc.log_dir().join("heartbeats.jsonl");
    let good = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = good.lines().collect();
    // A corrupt line in the middle, a record of the wrong kind, and a torn final line.
    let damaged = format!(
        "{}\n{{\"kind\":\"heartbeat\",\"ts\":\"2026-11-29T10:00:00Z\",\"node_id\":\"{}\",\"record\":{{\"not\":\"a heartbeat\"}}}}\nthis is not json\n{}\n{}\n{{\"kind\":\"heartbeat\",\"ts\":\"2026-11-",
        lines[0],
        node(2),
        lines[1],
        lines[2]
    );
    std::fs::write(&log, &damaged).unwrap();

    cc.restart();
    let nodes = cc.get_json("/api/nodes");
    assert_eq!(nodes.as_array().unwrap().len(), 1, "{nodes}");
    assert_eq!(nodes[0]["hostname"], "good");
    assert_eq!(nodes[0]["heartbeats"], 3);
    // The torn tail was cut; the bad middle lines were left alone (never rewritten).
    let now = std::fs::read_to_string(&log).unwrap();
    assert!(now.ends_with('\n'));
    assert!(now.contains("this is not json\n") && now.contains("\"not\":\"a heartbeat\""));
    assert!(!now.contains("\"ts\":\"2026-11-\n"));
    // New records append cleanly after the cut.
    assert_eq!(
        cc.post_json("/api/agent/heartbeat", &heartbeat_json(&node(1), "good", 4))
            .status,
        200
    );
    let after = std::fs::read_to_string(&log).unwrap();
    assert!(after.lines().last().unwrap().contains("\"seq\":\"4\""));
    assert_eq!(
        after
            .lines()
            .filter(|l| serde_json::from_str::<serde_json::Value>(l).is_err())
            .count(),
        1
    );
}

#[test]
fn the_heartbeat_log_rotates_by_size_keeps_every_record_and_expires_old_segments() {
    let mut cc = CommandCenter::start_with(&[
        "--heartbeat-rotate-size",
        "4KiB",
        "--heartbeat-retention",
        "1d",
    ]);
    // A segment rotated three days ago: past retention, deleted at the next rotation.
    let old = cc.log_dir().join("heartbeats-20200101T000000Z.jsonl");
    let mut f = std::fs::File::create(&old).unwrap();
    writeln!(f, "{}", serde_json::json!({"kind": "heartbeat", "ts": "2020-01-01T00:00:00Z", "node_id": node(9), "record": heartbeat_json(&node(9), "ancient", 1)})).unwrap();
    drop(f);

    for seq in 1..=40 {
        assert_eq!(
            cc.post_json(
                "/api/agent/heartbeat",
                &heartbeat_json(&node(1), "rotating", seq)
            )
            .status,
            200
        );
    }
    let segments: Vec<_> = std::fs::read_dir(cc.log_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("heartbeats-"))
        .collect();
    assert!(segments.len() >= 3, "{segments:?}");
    assert!(!old.exists(), "the segment past retention was deleted");
    // Closed segments are compressed in the background, and read back as they were.
    wait_compressed(&cc.log_dir(), 3, Duration::from_secs(20));
    assert_eq!(logged(&cc).len(), 40);

    cc.restart();
    let nodes = cc.get_json("/api/nodes");
    assert_eq!(nodes.as_array().unwrap().len(), 1, "{nodes}");
    assert_eq!(
        nodes[0]["heartbeats"], 40,
        "every record replayed across segments"
    );
    assert_eq!(logged(&cc).len(), 40);
}

/// Issue 23: a log directory as today's release leaves it (plain segments) replays, is
/// compressed after the start, and replays to the same state; what a crash mid-compression
/// leaves (a temp file, a segment in both forms) is cleaned up at start and never read.
#[test]
fn plain_segments_from_before_compress_at_start_and_replay_the_same() {
    let mut cc = CommandCenter::start_with(&[
        "--heartbeat-rotate-size",
        "4KiB",
        "--heartbeat-zstd-level",
        "0",
        "--history-len",
        "8",
    ]);
    let before = post_three_nodes(&cc, 15);
    cc.kill9();
    let dir = cc.log_dir();
    let plain = heartbeat_segments(&dir);
    assert!(plain.len() >= 3, "{plain:?}");
    assert!(plain.iter().all(|n| n.ends_with(".jsonl")), "{plain:?}");
    // A crash mid-compression: a torn temp file, and a segment beside a (garbage) compressed copy.
    std::fs::write(dir.join(format!("{}.zst.tmp", plain[0])), b"torn").unwrap();
    std::fs::write(dir.join(format!("{}.zst", plain[1])), b"not zstd").unwrap();

    let same = |cc: &CommandCenter| assert_eq!(state(cc), before);
    // Default flags: compression on.
    cc.restart_with(&["--history-len", "8"]);
    same(&cc);
    let compressed = wait_compressed(&dir, plain.len(), Duration::from_secs(20));
    assert_eq!(compressed.len(), plain.len(), "{compressed:?}");
    assert!(
        !heartbeat_segments(&dir).iter().any(|n| n.ends_with(".tmp")),
        "no temp file left"
    );
    cc.restart();
    same(&cc);
    // A mix of both forms replays the same too.
    cc.kill9();
    decompress(&compressed[1]);
    cc.restart_with(&["--history-len", "8", "--heartbeat-zstd-level", "0"]);
    same(&cc);
}

/// Issue 20 item 2: a second Command Center on the same log directory used to start, and the
/// two states split. Every writer now takes the directory's lock; a second one exits 2 with one
/// line naming the lock file and the holder's pid, and read-only tools keep working alongside.
#[test]
fn one_writer_per_log_directory_and_readers_alongside() {
    let tmp = tempfile::tempdir().unwrap();
    let (key, _) = vaultmesh_testkit::keygen(tmp.path());
    let mut cc = CommandCenter::start_with(&["--signing-key", &key, "--ledger-interval", "100ms"]);
    let n = TestNode::new(uuid::Uuid::parse_str(&node(1)).unwrap());
    assert_eq!(
        cc.post_json("/api/agent/heartbeat", &heartbeat_json(&node(1), "h", 1))
            .status,
        200
    );
    let scan_id = uuid::Uuid::from_u128(7).to_string();
    let scan = serde_json::json!({
        "scan_id": scan_id, "node_id": node(1), "profile": "ArchVault",
        "started_at": "2026-11-29T10:00:00Z", "finished_at": "2026-11-29T10:00:01Z",
        "findings": [], "counts": {}, "fingerprint": {}, "rules": ["sysctl"],
    });
    assert_eq!(cc.post_json("/api/agent/scans", &scan).status, 200);
    vaultmesh_testkit::wait_for(Duration::from_secs(10), || {
        (cc.get_json("/api/ledger/root")["size"] == 1).then_some(())
    })
    .expect("a checkpoint");
    let dir = cc.log_dir().display().to_string();
    let lock_line = |out: &std::process::Output| {
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(2), "{}", text(out));
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(
            stderr.contains(&format!("{dir}/vaultmesh.lock is held by pid {}", cc.pid())),
            "names the lock file and the holder: {stderr}"
        );
    };
    for writer in [
        vec!["serve", "--listen", "127.0.0.1:0", "--log-dir", &dir],
        vec!["ledger", "build", "--log-dir", &dir, "--signing-key", &key],
        vec![
            "store",
            "import",
            "--from",
            &dir,
            "--store",
            "postgres://nobody@127.0.0.1:1/none",
        ],
    ] {
        lock_line(&cc_command(&writer));
    }
    // Readers.
    for reader in [
        vec!["logs", "view", "--log-dir", &dir],
        vec!["logs", "stats", "--log-dir", &dir],
        vec!["ledger", "verify", "--log-dir", &dir],
        vec!["ledger", "prove", "--log-dir", &dir, "--scan-id", &scan_id],
    ] {
        let out = cc_command(&reader);
        assert!(out.status.success(), "{reader:?}: {}", text(&out));
    }
    let mut tail = std::process::Command::new(vaultmesh_testkit::binary(vaultmesh_testkit::CC_BIN))
        .args(["logs", "tail", "--log-dir", &dir])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(tail.stdout.take().unwrap()),
        &mut first,
    )
    .unwrap();
    assert!(
        !first.is_empty(),
        "logs tail prints alongside a running server"
    );
    let _ = tail.kill();
    let _ = tail.wait();
    // The lock dies with its holder, however it dies: no stale lock after kill -9.
    cc.restart();
    assert_eq!(
        n.post_heartbeat(&cc.url, &heartbeat_json(&node(1), "h", 2))
            .unwrap()
            .status(),
        200,
        "the node enrolled before is still enrolled"
    );
}
