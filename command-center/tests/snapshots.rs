//! The state snapshot (`state.snapshot`, docs/LOGS.md): a restart loads it and reads only the
//! heartbeat lines after it, and gets the state a full replay gets; a corrupt snapshot is
//! refused with a warning; a `kill -9` while one is written never costs a correct start.
//! Real binary, real files, real HTTP.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::time::Duration;

use vaultmesh_testkit::{CommandCenter, heartbeat_json};

/// Logs the snapshot's own lines (info) besides every warning.
const LOG: (&str, &str) = ("RUST_LOG", "warn,vaultmesh_store::snapshot=info");

fn node(i: u32) -> String {
    format!("00000000-0000-4000-8000-{i:012}")
}

fn post(cc: &CommandCenter, nodes: u32, seqs: std::ops::Range<u64>) {
    for seq in seqs {
        for i in 0..nodes {
            let mut hb = heartbeat_json(&node(i), &format!("host-{i}"), seq);
            hb["metrics"]["load"][0] = serde_json::json!(seq as f64 / 10.0 + f64::from(i));
            hb["checks"][0]["status"] = ["ok", "warn", "crit"][seq as usize % 3].into();
            assert_eq!(cc.post_json("/api/agent/heartbeat", &hb).status, 200);
        }
    }
}

/// What the heartbeats built, as the API shows it: every summary (without the attention the
/// engine judges afresh after a start) and every node's detail (latest heartbeat, history).
fn heartbeat_state(cc: &CommandCenter) -> Vec<serde_json::Value> {
    let mut list = cc.get_json("/api/nodes");
    let mut out = Vec::new();
    for s in list.as_array_mut().unwrap() {
        let id = s["node_id"].as_str().unwrap().to_string();
        s.as_object_mut().unwrap().remove("attention");
        let d = cc.get_json(&format!("/api/nodes/{id}"));
        out.push(serde_json::json!([s, d["latest"], d["history"]]));
    }
    out
}

fn snapshot_line(cc: &CommandCenter) -> Option<String> {
    cc.stderr()
        .lines()
        .find(|l| l.contains("Loaded the state snapshot"))
        .map(str::to_string)
}

#[test]
fn a_restart_reads_only_the_lines_after_the_snapshot_and_equals_a_full_replay() {
    let mut cc = CommandCenter::start_with_env(
        &["--history-len", "5", "--heartbeat-rotate-size", "8KiB"],
        &[LOG],
    );
    post(&cc, 4, 1..16);
    let before = heartbeat_state(&cc);
    assert_eq!(before[0][2].as_array().unwrap().len(), 5);
    // A clean stop writes the snapshot: the next start reads no heartbeat line.
    assert!(cc.stop().success());
    assert!(cc.log_dir().join("state.snapshot").exists());
    cc.restart();
    let loaded = snapshot_line(&cc).expect("the snapshot was loaded");
    assert!(loaded.contains("tail_lines=0"), "{loaded}");
    assert_eq!(heartbeat_state(&cc), before);

    // More heartbeats, across rotations, then a crash: the snapshot (the shutdown's, or a
    // rotation's) and the lines after it.
    post(&cc, 5, 16..30);
    let segments = std::fs::read_dir(cc.log_dir())
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            name.to_string_lossy().starts_with("heartbeats-")
        })
        .count();
    assert!(segments >= 2, "the log rotated");
    // Each rotation wrote a snapshot; some lines after the last one.
    let active = cc.log_dir().join("heartbeats.jsonl");
    let mut seq = 30;
    while std::fs::metadata(&active).unwrap().len() == 0 {
        post(&cc, 1, seq..seq + 1);
        seq += 1;
    }
    let before = heartbeat_state(&cc);
    cc.kill9();
    cc.restart();
    let loaded = snapshot_line(&cc).expect("the snapshot was loaded");
    assert!(!loaded.contains("tail_lines=0"), "{loaded}");
    assert_eq!(heartbeat_state(&cc), before, "snapshot + tail");

    // Without the snapshot: the full replay builds the same.
    cc.kill9();
    std::fs::remove_file(cc.log_dir().join("state.snapshot")).unwrap();
    cc.restart();
    assert_eq!(snapshot_line(&cc), None);
    assert_eq!(heartbeat_state(&cc), before, "full replay");
}

#[test]
fn a_corrupt_snapshot_is_refused_with_a_warning_and_the_log_replayed() {
    let mut cc = CommandCenter::start_with_env(&[], &[LOG]);
    post(&cc, 3, 1..6);
    let before = heartbeat_state(&cc);
    assert!(cc.stop().success());
    let path = cc.log_dir().join("state.snapshot");
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    cc.restart();
    cc.wait_for_log(&[
        "The state snapshot cannot be used; replaying the whole heartbeat log.",
        "checksum does not match",
    ]);
    assert_eq!(snapshot_line(&cc), None);
    assert_eq!(heartbeat_state(&cc), before);
}

/// A snapshot written every 5 ms, and the process killed the moment one is being written
/// (its temp file appears: an unchanged state is not written again, so a heartbeat comes
/// first): the next start has the last acknowledged heartbeat, and the state it has is the
/// state a full replay of the log builds.
#[test]
fn kill_9_while_a_snapshot_is_written_never_costs_a_correct_start() {
    let mut cc = CommandCenter::start_with_env(&["--snapshot-interval", "5ms"], &[LOG]);
    post(&cc, 300, 1..2);
    let temp = cc.log_dir().join("state.snapshot.tmp");
    let mut mid_write = 0;
    for round in 0..100u32 {
        let seq = u64::from(round) + 2;
        post(&cc, 1, seq..seq + 1);
        let deadline = std::time::Instant::now() + Duration::from_millis(200);
        while !temp.exists() && std::time::Instant::now() < deadline {
            std::hint::spin_loop();
        }
        std::thread::sleep(Duration::from_micros(u64::from(round % 4) * 500));
        cc.kill9();
        let killed_mid_write = temp.exists();
        cc.restart();
        let latest = cc.get_json(&format!("/api/nodes/{}", node(0)))["latest"].clone();
        assert_eq!(latest["seq"], seq.to_string(), "round {round}");
        if killed_mid_write {
            mid_write += 1;
            let started = heartbeat_state(&cc);
            assert!(
                snapshot_line(&cc).is_some(),
                "the previous snapshot was loaded"
            );
            cc.kill9();
            std::fs::remove_file(cc.log_dir().join("state.snapshot")).unwrap();
            cc.restart();
            assert_eq!(heartbeat_state(&cc), started, "round {round}: full replay");
            if mid_write >= 3 {
                break;
            }
        }
    }
    assert!(
        mid_write > 0,
        "no kill fell while a snapshot was written: the test proved nothing"
    );
}
