//! `vaultmesh-command-center logs view|tail|stats` over real log directories written by the
//! real server (plus scan and event lines written as fixtures, for kinds no endpoint produces yet).

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use vaultmesh_testkit::segments::{decompress, heartbeat_segments, wait_compressed};
use vaultmesh_testkit::{
    CC_BIN, ChildGuard, CommandCenter, binary, cc_command, heartbeat_json, text,
};

const A: &str = "00000000-0000-4000-8000-00000000000a";
const B: &str = "00000000-0000-4000-8000-00000000000b";

/// A server with heartbeats from two nodes (b has a crit check), an old scan and a recent
/// incident appended as fixtures. Stopped, so only files remain.
fn fixture() -> CommandCenter {
    let mut cc = CommandCenter::start();
    for seq in 1..=3 {
        assert_eq!(
            cc.post_json("/api/agent/heartbeat", &heartbeat_json(A, "alpha", seq))
                .status,
            200
        );
        let mut hb = heartbeat_json(B, "bravo", seq);
        hb["checks"][0]["status"] = "crit".into();
        hb["checks"][0]["summary"] = "/ is 97% full".into();
        assert_eq!(cc.post_json("/api/agent/heartbeat", &hb).status, 200);
    }
    cc.kill9();
    let dir = cc.log_dir();
    let scan = serde_json::json!({"kind": "scan", "ts": "2020-01-01T00:00:00Z", "node_id": A,
        "record": {"scan_id": "s1", "findings": [{"rule": "sshd", "severity": "critical", "title": "root login"}]}});
    std::fs::write(dir.join("sovereign-scans.jsonl"), format!("{scan}\n")).unwrap();
    let incident = serde_json::json!({"kind": "incident", "ts": chrono::Utc::now(), "node_id": B,
        "record": {"body": {"title": "disk \u{1b}[31mfull", "severity": "high"}}});
    std::fs::write(dir.join("events.jsonl"), format!("{incident}\n")).unwrap();
    cc
}

fn logs(cc: &CommandCenter, args: &[&str]) -> (i32, String, String) {
    let dir = cc.log_dir();
    let mut all: Vec<&str> = vec!["logs"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--log-dir", dir.to_str().unwrap()]);
    let out = cc_command(&all);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn data_lines(table: &str) -> Vec<&str> {
    table.lines().skip(1).collect()
}

#[test]
fn view_filters_by_kind_node_time_severity_and_limit() {
    let cc = fixture();
    let (code, out, err) = logs(&cc, &["view", "--limit", "0"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("TIME (UTC)"), "{out}");
    assert_eq!(
        data_lines(&out).len(),
        10,
        "2 enrollments, 6 heartbeats, a scan, an incident: {out}"
    );
    assert_eq!(
        data_lines(&out)
            .iter()
            .filter(|l| l.contains(" enroll "))
            .count(),
        2,
        "{out}"
    );
    assert!(data_lines(&out)[0].contains("scan"), "oldest first: {out}");
    assert!(
        !out.contains('\u{1b}'),
        "control characters from records never reach the terminal"
    );

    let (_, out, _) = logs(&cc, &["view", "--kind", "heartbeat", "--node", "alpha"]);
    assert_eq!(data_lines(&out).len(), 3, "{out}");
    assert!(
        data_lines(&out).iter().all(|l| l.contains("alpha")),
        "{out}"
    );

    let (_, out, _) = logs(&cc, &["view", "--node", B, "--limit", "2"]);
    let rows = data_lines(&out);
    assert_eq!(rows.len(), 2, "{out}");
    assert!(rows[1].contains("incident"), "the newest last: {out}");

    let (_, out, _) = logs(&cc, &["view", "--since", "1h", "--kind", "scan,incident"]);
    assert_eq!(data_lines(&out).len(), 1, "the 2020 scan is too old: {out}");

    let (_, out, _) = logs(&cc, &["view", "--min-severity", "high", "--limit", "0"]);
    let rows = data_lines(&out);
    assert_eq!(
        rows.len(),
        5,
        "3 crit heartbeats, the critical scan, the high incident: {out}"
    );
    assert!(
        rows.iter()
            .all(|r| !r.contains("alpha") || r.contains("scan")),
        "{out}"
    );

    let (_, out, _) = logs(
        &cc,
        &[
            "view",
            "--kind",
            "heartbeat",
            "--node",
            "bravo",
            "--json",
            "--limit",
            "1",
        ],
    );
    let stored = std::fs::read_to_string(cc.log_dir().join("heartbeats.jsonl")).unwrap();
    assert_eq!(
        out.trim_end(),
        stored.lines().last().unwrap(),
        "--json prints the stored line byte for byte"
    );
}

#[test]
fn stats_per_node() {
    let cc = fixture();
    let (code, out, err) = logs(&cc, &["stats", "--json"]);
    assert_eq!(code, 0, "{err}");
    let rows: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(
        (
            rows[0]["hostname"].as_str(),
            rows[0]["counts"]["heartbeat"].as_u64(),
            rows[0]["counts"]["scan"].as_u64()
        ),
        (Some("alpha"), Some(3), Some(1))
    );
    assert_eq!(rows[0]["worst_severity"], "critical");
    assert_eq!(rows[0]["first_seen"], "2020-01-01T00:00:00Z");
    assert_eq!(
        (
            rows[1]["hostname"].as_str(),
            rows[1]["counts"]["incident"].as_u64()
        ),
        (Some("bravo"), Some(1))
    );
    assert_eq!(rows[1]["worst_severity"], "high");
    let (_, table, _) = logs(&cc, &["stats"]);
    assert!(table.lines().nth(1).unwrap().contains("alpha"), "{table}");
}

#[test]
fn bad_arguments_exit_2_with_one_line() {
    let cc = fixture();
    for (args, want) in [
        (
            &["view", "--since", "yesterday"][..],
            "--since \"yesterday\": not an RFC 3339 time",
        ),
        (
            &["view", "--min-severity", "urgent"][..],
            "\"urgent\" is not a severity",
        ),
        (
            &["view", "--node", "nobody"][..],
            "--node \"nobody\": no node id, and no node with that hostname",
        ),
        (
            &["view", "--kind", "Heart Beat"][..],
            "--kind \"Heart Beat\": kinds are lowercase words",
        ),
        (
            &["view", "--kind", "heartbeats"][..],
            "--kind \"heartbeats\": no such kind; did you mean \"heartbeat\"?; kinds: ack, api_token_created, api_token_revoked, api_token_used, attention, command, delivered, enroll,",
        ),
        (
            &["view", "--kind", "scan,bogus"][..],
            "--kind \"bogus\": no such kind; kinds: ack,",
        ),
        (
            &["view", "--limit", "many"][..],
            "invalid value 'many' for '--limit <LIMIT>'",
        ),
    ] {
        let (code, _, err) = logs(&cc, args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(
            err.lines().next().unwrap().contains(want),
            "{args:?}: {err}"
        );
        // Our own refusals are one line; clap's add only its pointer to --help.
        let rest: Vec<&str> = err.lines().skip(1).collect();
        assert!(
            rest.is_empty() || rest == ["For more information, try '--help'."],
            "{args:?}: {err}"
        );
    }
    let out = cc_command(&["logs", "view", "--log-dir", "/nonexistent/logs"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--log-dir /nonexistent/logs: No such file"),
        "{}",
        text(&out)
    );
}

#[test]
fn tail_follows_new_records_across_rotation() {
    let cc = CommandCenter::start_with(&["--heartbeat-rotate-size", "4KiB"]);
    assert_eq!(
        cc.post_json("/api/agent/heartbeat", &heartbeat_json(A, "alpha", 1))
            .status,
        200
    );
    let dir = cc.log_dir();
    let mut tail = ChildGuard(
        Command::new(binary(CC_BIN))
            .args([
                "logs",
                "tail",
                "--kind",
                "heartbeat",
                "--json",
                "-n",
                "1",
                "--log-dir",
                dir.to_str().unwrap(),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = tail.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            let _ = tx.send(v["record"]["seq"].as_str().unwrap().parse::<u64>().unwrap());
        }
    });
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(10)).unwrap(),
        1,
        "history first"
    );
    // Enough heartbeats to rotate the 4 KiB log several times while tail follows.
    for seq in 2..=30 {
        assert_eq!(
            cc.post_json("/api/agent/heartbeat", &heartbeat_json(A, "alpha", seq))
                .status,
            200
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut seen = Vec::new();
    while seen.len() < 29 {
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(seq) => seen.push(seq),
            Err(_) => break,
        }
    }
    assert_eq!(
        seen,
        (2..=30).collect::<Vec<_>>(),
        "every record once, in order, across rotation"
    );
    let segments = std::fs::read_dir(&dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("heartbeats-")
        })
        .count();
    assert!(segments >= 2, "the log rotated during the test");
    // Segments were compressed while tail followed (within milliseconds of their rotation, so
    // mostly between two of its polls): it recognised its own file in compressed form.
    assert!(
        vaultmesh_testkit::wait_for(Duration::from_secs(10), || {
            heartbeat_segments(&dir)
                .iter()
                .any(|n| n.ends_with(".zst"))
                .then_some(())
        })
        .is_some(),
        "{:?}",
        heartbeat_segments(&dir)
    );
    let _ = std::io::stdout().flush();
}

/// Issue 23: `view`, `stats` and `--node HOSTNAME` read compressed and plain segments alike,
/// and `--json` prints a compressed line byte for byte as it was written.
#[test]
fn view_and_stats_read_compressed_and_plain_segments_alike() {
    let mut cc = CommandCenter::start_with(&["--heartbeat-rotate-size", "4KiB"]);
    for seq in 1..=20 {
        for (id, host) in [(A, "alpha"), (B, "bravo")] {
            assert_eq!(
                cc.post_json("/api/agent/heartbeat", &heartbeat_json(id, host, seq))
                    .status,
                200
            );
        }
    }
    let dir = cc.log_dir();
    let compressed = wait_compressed(&dir, 3, Duration::from_secs(20));
    cc.kill9();
    decompress(&compressed[1]);
    let mut oldest = String::new();
    BufReader::new(vaultmesh_store::logdir::open_read(&compressed[0], 0).unwrap())
        .read_line(&mut oldest)
        .unwrap();

    let (code, out, err) = logs(
        &cc,
        &[
            "view",
            "--node",
            "alpha",
            "--kind",
            "heartbeat",
            "--json",
            "--limit",
            "0",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let seqs: Vec<u64> = out
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["record"]["seq"].as_str().unwrap().parse().unwrap()
        })
        .collect();
    assert_eq!(
        seqs,
        (1..=20).collect::<Vec<_>>(),
        "every record once, in order"
    );
    let (_, all, _) = logs(
        &cc,
        &["view", "--kind", "heartbeat", "--json", "--limit", "0"],
    );
    assert_eq!(
        all.lines().next().unwrap(),
        oldest.trim_end(),
        "the first (compressed) line byte for byte"
    );
    let (code, out, err) = logs(&cc, &["stats", "--json"]);
    assert_eq!(code, 0, "{err}");
    let counts: Vec<(String, u64)> = out
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["hostname"].as_str().unwrap().to_string(),
                v["counts"]["heartbeat"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        counts,
        [("alpha".to_string(), 20), ("bravo".to_string(), 20)]
    );
}

/// An attention change is as severe as its new level (crit → high, attn → medium, ok → info),
/// so `--min-severity high` shows every node that went CRIT.
#[test]
fn attention_changes_are_as_severe_as_their_level() {
    // Ids that differ in the 8 characters the NODE column shows.
    const WARN: &str = "a0000000-0000-4000-8000-00000000000a";
    const CRIT: &str = "b0000000-0000-4000-8000-00000000000b";
    let mut cc = CommandCenter::start();
    for (node, host, status) in [(WARN, "alpha", "warn"), (CRIT, "bravo", "crit")] {
        let mut hb = heartbeat_json(node, host, 1);
        hb["checks"][0]["status"] = status.into();
        assert_eq!(cc.post_json("/api/agent/heartbeat", &hb).status, 200);
    }
    // Events the API serves are on disk.
    vaultmesh_testkit::wait_for(Duration::from_secs(10), || {
        let events = cc.get_json("/api/events?kind=attention");
        (events.as_array().unwrap().len() == 2).then_some(())
    })
    .expect("two attention events");
    cc.kill9();

    let (code, out, err) = logs(&cc, &["view", "--kind", "attention", "--limit", "0"]);
    assert_eq!(code, 0, "{err}");
    let rows = data_lines(&out);
    assert_eq!(rows.len(), 2, "{out}");
    // TIME is two words, then KIND, NODE (the id's first 8 characters), SEVERITY.
    let severity = |node: &str| {
        let row = rows.iter().find(|r| r.contains(&node[..8])).unwrap();
        row.split_whitespace().nth(4).unwrap().to_string()
    };
    assert_eq!(
        (severity(WARN), severity(CRIT)),
        ("medium".into(), "high".into()),
        "{out}"
    );

    let (_, out, _) = logs(
        &cc,
        &["view", "--kind", "attention", "--min-severity", "high"],
    );
    let rows = data_lines(&out);
    assert_eq!(rows.len(), 1, "only the CRIT: {out}");
    assert!(rows[0].contains(&CRIT[..8]), "{out}");
}
