//! The PostgreSQL store with the real binaries against a real, throwaway PostgreSQL cluster:
//! two Command Centers on one database, live events across them, node-scoped work (command
//! seq, receipt chains, delivery, scheduled scans) under two instances, a crash mid-stream,
//! the append-only trigger, and export/import with the JSONL store.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use uuid::Uuid;
use vaultmesh_proto::command::{SignedCommand, SignedReceipt};
use vaultmesh_testkit::auth::TestNode;
use vaultmesh_testkit::postgres::Postgres;
use vaultmesh_testkit::segments::{decompress, wait_compressed};
use vaultmesh_testkit::sse::SseClient;
use vaultmesh_testkit::{
    CommandCenter, cc_command, heartbeat_json, http, keygen, text, wait_for, workspace_root,
};

/// A cluster, one database, and two Command Centers sharing it (each its own log dir).
struct Pair {
    a: CommandCenter,
    b: CommandCenter,
    pg: Postgres,
    url: String,
    _keys: tempfile::TempDir,
}

fn pair_with(policy_dir: &std::path::Path, extra: &[&str]) -> Pair {
    let pg = Postgres::start();
    let url = pg.create_db("vaultmesh");
    let keys = tempfile::tempdir().unwrap();
    let (key, _public) = keygen(keys.path());
    let mut args = vec![
        "--store",
        url.as_str(),
        "--signing-key",
        key.as_str(),
        "--policy-dir",
        policy_dir.to_str().unwrap(),
        "--attention-tick",
        "200ms",
    ];
    args.extend_from_slice(extra);
    let a = CommandCenter::start_with(&args);
    let b = CommandCenter::start_with(&args);
    Pair {
        a,
        b,
        pg,
        url,
        _keys: keys,
    }
}

fn pair() -> Pair {
    pair_with(&workspace_root().join("policies"), &[])
}

fn heartbeat(node: &TestNode, seq: u64) -> Value {
    let mut hb = heartbeat_json(&node.id.to_string(), "pg-node-01", seq);
    hb["os_profile"] = json!("ArchVault");
    hb
}

fn post_heartbeat(cc: &CommandCenter, node: &TestNode, seq: u64) -> u16 {
    node.post_heartbeat(&cc.url, &heartbeat(node, seq))
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

fn issue(cc: &CommandCenter, node: Uuid) -> Value {
    let r = cc.post_json(
        "/api/commands",
        &json!({"node_id": node, "action": "agent.ping", "args": {}, "issued_by": "test"}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    r.json()
}

/// The node's long-poll on `cc`, answered at once.
fn poll(cc: &CommandCenter, node: &TestNode) -> Vec<SignedCommand> {
    let path = format!("/api/agent/commands?wait=0s&nonce={}", Uuid::new_v4());
    let r = node
        .signed(&cc.url, "GET", &path, None, Vec::new())
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    r.json().unwrap()
}

/// Runs the CLI; returns its exit code and output.
fn cli(args: &[&str]) -> (Option<i32>, String) {
    let out = cc_command(args);
    (out.status.code(), text(&out))
}

/// Runs the CLI, which must succeed; returns its output.
fn cli_ok(args: &[&str]) -> String {
    let (code, out) = cli(args);
    assert_eq!(code, Some(0), "{args:?}: {out}");
    out
}

fn commands_of(cc: &CommandCenter, node: Uuid) -> Vec<Value> {
    cc.get_json(&format!("/api/commands?node_id={node}&limit=1000"))
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn a_heartbeat_accepted_by_one_instance_is_on_the_others_api_and_stream_within_a_second() {
    let mut p = pair();
    let node = TestNode::new(Uuid::now_v7());
    let sse = SseClient::connect(&format!("{}/events?kinds=heartbeat", p.b.url), None);
    std::thread::sleep(Duration::from_millis(200));

    let sent = Instant::now();
    assert_eq!(post_heartbeat(&p.a, &node, 1), 200);
    let (name, _, data) = sse
        .next_event(Duration::from_secs(5))
        .expect("B streams the heartbeat A accepted");
    let streamed = sent.elapsed();
    assert_eq!(name, "heartbeat");
    assert!(data.contains(&node.id.to_string()), "{data}");
    assert!(
        streamed < Duration::from_secs(1),
        "B streamed A's heartbeat after {streamed:?}"
    );
    let detail = p.b.get_json(&format!("/api/nodes/{}", node.id));
    assert_eq!(detail["summary"]["hostname"], "pg-node-01");

    // Both ways, and the history survives a restart of either: it is in the database.
    for seq in 2..=5 {
        let cc = if seq % 2 == 0 { &p.b } else { &p.a };
        assert_eq!(post_heartbeat(cc, &node, seq), 200);
    }
    let history_len = |cc: &CommandCenter| {
        cc.get_json(&format!("/api/nodes/{}", node.id))["history"]
            .as_array()
            .map_or(0, Vec::len)
    };
    wait_for(Duration::from_secs(2), || {
        (history_len(&p.a) == 5).then_some(())
    })
    .expect("A applied B's heartbeats");
    p.b.restart();
    assert_eq!(history_len(&p.b), 5);
    assert_eq!(
        p.b.get_json(&format!("/api/nodes/{}", node.id))["latest"]["seq"],
        "5"
    );
}

#[test]
fn command_seq_receipt_chain_and_delivery_hold_across_two_instances() {
    let p = pair();
    let node = TestNode::new(Uuid::now_v7());
    assert_eq!(post_heartbeat(&p.a, &node, 1), 200);
    wait_for(Duration::from_secs(2), || {
        p.b.get(&format!("/api/nodes/{}", node.id))
            .status
            .eq(&200)
            .then_some(())
    })
    .unwrap();

    // Ten commands on each instance at once: twenty distinct seqs, 1 to 20.
    let issue_ten = |cc: &CommandCenter| {
        (0..10)
            .map(|_| {
                issue(cc, node.id)["command"]["seq"]
                    .as_str()
                    .unwrap()
                    .parse::<u64>()
                    .unwrap()
            })
            .collect::<Vec<_>>()
    };
    // Meanwhile both instances ingest heartbeats from other nodes as fast as they can.
    let blast = |cc: &CommandCenter, n: u128| {
        let other = TestNode::new(Uuid::from_u128(0xb1a5_7000 + n));
        for seq in 1..=60 {
            assert_eq!(post_heartbeat(cc, &other, seq), 200);
        }
    };
    let (mut seqs, from_b) = std::thread::scope(|s| {
        for n in 0..4 {
            let cc = if n % 2 == 0 { &p.a } else { &p.b };
            s.spawn(move || blast(cc, n));
        }
        let a = s.spawn(|| issue_ten(&p.a));
        let b = s.spawn(|| issue_ten(&p.b));
        (a.join().unwrap(), b.join().unwrap())
    });
    seqs.extend(from_b);
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=20).collect::<Vec<_>>());

    // Both instances applied every row, whoever wrote it: the same counts as the database.
    let stored =
        p.pg.psql(
            "vaultmesh",
            "SELECT count(*) FROM records WHERE log = 'heartbeats'",
        )
        .unwrap();
    for cc in [&p.a, &p.b] {
        let counted = wait_for(Duration::from_secs(2), || {
            let nodes = cc.get_json("/api/nodes");
            let n: u64 = nodes
                .as_array()?
                .iter()
                .filter_map(|n| n["heartbeats"].as_u64())
                .sum();
            (n.to_string() == stored).then_some(n)
        });
        assert!(counted.is_some(), "{} lost or doubled heartbeats", cc.url);
        assert_eq!(commands_of(cc, node.id).len(), 20);
    }

    // Delivered once: the poll on A takes all twenty; B then has nothing to hand out.
    let delivered = poll(&p.a, &node);
    assert_eq!(delivered.len(), 20);
    assert!(poll(&p.b, &node).is_empty(), "B delivered again");
    assert!(poll(&p.a, &node).is_empty());

    // Receipts alternate between the instances and still form one chain.
    let mut sorted = delivered;
    sorted.sort_by_key(|c| c.command.seq_number());
    let mut prev: Option<String> = None;
    for (i, c) in sorted.iter().enumerate() {
        let receipt = node.pong_receipt(c.command.command_id, prev.take());
        prev = Some(SignedReceipt::sign(receipt.clone(), &node.key).chain_hash());
        let cc = if i % 2 == 0 { &p.a } else { &p.b };
        let r = node.post_receipt(&cc.url, receipt, &node.key).unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let v: Value = r.json().unwrap();
        assert_eq!(v["chain_ok"], true, "receipt {i} via {}", cc.url);
    }
    for cc in [&p.a, &p.b] {
        let all = wait_for(Duration::from_secs(2), || {
            let all = commands_of(cc, node.id);
            all.iter().all(|c| c["status"] == "ok").then_some(all)
        })
        .expect("every command completed on both instances");
        assert_eq!(all.len(), 20);
        assert!(all.iter().all(|c| c["chain_ok"] == true));
        let n = cc.get_json(&format!("/api/nodes/{}", node.id));
        assert_eq!(n["summary"]["receipt_chain_ok"], true);
    }
}

#[test]
fn scheduled_scans_are_asked_for_once_by_two_instances() {
    let policies = tempfile::tempdir().unwrap();
    std::fs::write(
        policies.path().join("ArchVault.toml"),
        "[commands]\nallow = [{ action = \"scan.sovereign\" }, { action = \"agent.ping\" }]\n[scan]\ninterval = \"1h\"\nspread = \"0s\"\n",
    )
    .unwrap();
    let mut p = pair_with(policies.path(), &["--scan-tick", "100ms"]);
    let node = TestNode::new(Uuid::now_v7());
    assert_eq!(post_heartbeat(&p.a, &node, 1), 200);
    // Both instances' orchestrators tick ten times a second; only the leader asks.
    std::thread::sleep(Duration::from_secs(3));
    for cc in [&p.a, &p.b] {
        let scans: Vec<Value> = commands_of(cc, node.id)
            .into_iter()
            .filter(|c| c["command"]["action"] == "scan.sovereign")
            .collect();
        assert_eq!(scans.len(), 1, "{scans:?}");
    }

    // Exactly one leader; kill it, and the other takes over and schedules a new node's scan.
    let leads = |cc: &CommandCenter| {
        vaultmesh_testkit::metric(&cc.get("/metrics").body, "vaultmesh_leader") == Some(1.0)
    };
    assert!(leads(&p.a) != leads(&p.b), "not exactly one leader");
    let (leader, survivor) = if leads(&p.a) {
        (&mut p.a, &p.b)
    } else {
        (&mut p.b, &p.a)
    };
    leader.kill9();
    wait_for(Duration::from_secs(10), || leads(survivor).then_some(()))
        .expect("the survivor became the leader");
    let late = TestNode::new(Uuid::now_v7());
    assert_eq!(post_heartbeat(survivor, &late, 1), 200);
    let asked = wait_for(Duration::from_secs(10), || {
        commands_of(survivor, late.id)
            .iter()
            .any(|c| c["command"]["action"] == "scan.sovereign")
            .then_some(())
    });
    assert!(asked.is_some(), "no instance scheduled the new node's scan");
}

#[test]
fn an_attention_change_is_logged_once_not_once_per_instance() {
    let p = pair();
    let node = TestNode::new(Uuid::now_v7());
    // Flap damping raises after a few heartbeats in a row; they go to both instances.
    for seq in 1..=4 {
        let mut hb = heartbeat(&node, seq);
        hb["cloudflare_ok"] = json!(false);
        let cc = if seq % 2 == 0 { &p.a } else { &p.b };
        let r = node.post_heartbeat(&cc.url, &hb).unwrap();
        assert_eq!(r.status().as_u16(), 200);
    }
    let query = format!("/api/events?kind=attention&node_id={}", node.id);
    let events = wait_for(Duration::from_secs(5), || {
        let v = p.a.get_json(&query);
        (!v.as_array()?.is_empty()).then_some(v)
    })
    .expect("the attention change was logged");
    std::thread::sleep(Duration::from_secs(1));
    for cc in [&p.a, &p.b] {
        let v = cc.get_json(&query);
        assert_eq!(v.as_array().unwrap().len(), 1, "{v}");
    }
    assert_ne!(events[0]["body"]["level"], "ok");
}

#[test]
fn killing_an_instance_mid_stream_loses_nothing_it_acknowledged() {
    let mut p = pair();
    let node = TestNode::new(Uuid::now_v7());
    node.enroll(&p.a.url);
    let stop = Arc::new(AtomicBool::new(false));
    let acked = std::thread::scope(|s| {
        let a_url = p.a.url.clone();
        let stop2 = Arc::clone(&stop);
        let node = &node;
        let sender = s.spawn(move || {
            let mut acked = Vec::new();
            let mut seq = 0;
            while !stop2.load(Ordering::Relaxed) {
                seq += 1;
                let hb = heartbeat(node, seq);
                let body = serde_json::to_vec(&hb).unwrap();
                let r = node
                    .signed(
                        &a_url,
                        "POST",
                        "/api/agent/heartbeat",
                        Some("application/json"),
                        body,
                    )
                    .send();
                match r {
                    Ok(r) if r.status().is_success() => acked.push(seq),
                    Ok(_) => {}
                    Err(_) => break, // A is gone
                }
            }
            acked
        });
        // Mid-stream: once a good number are acknowledged, however long that takes here.
        let metrics_url = format!("{}/metrics", p.a.url);
        wait_for(Duration::from_secs(30), || {
            let m = vaultmesh_testkit::http()
                .get(&metrics_url)
                .send()
                .ok()?
                .text()
                .ok()?;
            (vaultmesh_testkit::metric(&m, "vaultmesh_heartbeats_ingested_total")? >= 30.0)
                .then_some(())
        })
        .expect("A acknowledged 30 heartbeats");
        p.a.kill9();
        stop.store(true, Ordering::Relaxed);
        sender.join().unwrap()
    });
    assert!(
        acked.len() > 20,
        "only {} heartbeats acknowledged",
        acked.len()
    );
    let stored = p
        .pg
        .psql(
            "vaultmesh",
            &format!(
                "SELECT string_agg(line::jsonb->'record'->>'seq', ',') FROM records WHERE log = 'heartbeats' AND node_id = '{}'",
                node.id
            ),
        )
        .unwrap();
    let stored: std::collections::HashSet<u64> =
        stored.split(',').filter_map(|s| s.parse().ok()).collect();
    let lost: Vec<&u64> = acked.iter().filter(|s| !stored.contains(s)).collect();
    assert!(lost.is_empty(), "acknowledged but not stored: {lost:?}");
    // B saw them too, and serves on.
    let total = wait_for(Duration::from_secs(2), || {
        let d = p.b.get_json(&format!("/api/nodes/{}", node.id));
        let n = d["summary"]["heartbeats"].as_u64()?;
        (n >= acked.len() as u64).then_some(n)
    });
    assert!(total.is_some(), "B applied every acknowledged heartbeat");
    assert_eq!(post_heartbeat(&p.b, &node, 100_000), 200);
}

#[test]
fn audit_records_refuse_update_and_delete_in_the_database_itself() {
    let p = pair();
    let node = TestNode::new(Uuid::now_v7());
    assert_eq!(post_heartbeat(&p.a, &node, 1), 200);
    let r = p.a.post_json(
        "/api/events",
        &json!({"kind": "note", "node_id": node.id, "body": {"text": "hello"}}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    for sql in [
        "UPDATE records SET line = '{}' WHERE log = 'events'",
        "DELETE FROM records WHERE log = 'events'",
        "DELETE FROM records WHERE log = 'nodes'",
        "TRUNCATE records",
    ] {
        let err = p.pg.psql("vaultmesh", sql).unwrap_err();
        assert!(err.contains("append-only"), "{sql}: {err}");
    }
    // Heartbeats are telemetry: retention may delete them.
    p.pg.psql("vaultmesh", "DELETE FROM records WHERE log = 'heartbeats'")
        .unwrap();

    // A database a newer binary migrated is refused, not misread; one without our schema (a
    // mistyped name) is an error, not an empty export.
    p.pg.psql(
        "vaultmesh",
        "INSERT INTO vaultmesh_schema (version) VALUES (99)",
    )
    .unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    let to = out_dir.path().join("x");
    let (code, out) = cli(&[
        "store",
        "export",
        "--store",
        &p.url,
        "--to",
        to.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("newer than this binary"), "{out}");
    let empty = p.pg.create_db("empty");
    let (code, out) = cli(&[
        "store",
        "export",
        "--store",
        &empty,
        "--to",
        to.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("holds no VaultMesh store"), "{out}");
}

/// Issue 23: `store import` reads rotated heartbeat segments compressed or plain, oldest first.
#[test]
fn import_reads_compressed_and_plain_heartbeat_segments() {
    let mut jsonl = CommandCenter::start_with(&["--heartbeat-rotate-size", "4KiB"]);
    let node = TestNode::new(Uuid::now_v7());
    for seq in 1..=20 {
        assert_eq!(post_heartbeat(&jsonl, &node, seq), 200);
    }
    let logs = jsonl.log_dir();
    let compressed = wait_compressed(&logs, 2, Duration::from_secs(20));
    let before = jsonl.get_json(&format!("/api/nodes/{}", node.id));
    jsonl.kill9();
    decompress(&compressed[0]);

    let pg = Postgres::start();
    let url = pg.create_db("mixed");
    let out = cli_ok(&[
        "store",
        "import",
        "--from",
        logs.to_str().unwrap(),
        "--store",
        &url,
    ]);
    assert!(out.contains("heartbeats 20"), "{out}");
    let cc = CommandCenter::start_with(&["--store", &url]);
    let after = cc.get_json(&format!("/api/nodes/{}", node.id));
    assert_eq!(after["history"], before["history"]);
    assert_eq!(after["latest"], before["latest"]);
    assert_eq!(after["summary"]["heartbeats"], 20);
}

#[test]
fn export_and_import_carry_the_same_lines_between_the_two_stores() {
    // A JSONL Command Center with some of everything.
    let keys = tempfile::tempdir().unwrap();
    let (key, public) = keygen(keys.path());
    let policies = workspace_root().join("policies");
    let args = [
        "--signing-key",
        key.as_str(),
        "--policy-dir",
        policies.to_str().unwrap(),
    ];
    let mut jsonl = CommandCenter::start_with(&args);
    let node = TestNode::new(Uuid::now_v7());
    for seq in 1..=3 {
        assert_eq!(post_heartbeat(&jsonl, &node, seq), 200);
    }
    let r = jsonl.post_json(
        "/api/events",
        &json!({"kind": "note", "node_id": node.id, "body": {"text": "exported"}}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let scan = json!({
        "scan_id": Uuid::now_v7(), "node_id": node.id, "profile": "ArchVault",
        "started_at": chrono::Utc::now(), "finished_at": chrono::Utc::now(),
        "findings": [], "fingerprint": {}, "counts": {}
    });
    let r = node
        .signed(
            &jsonl.url,
            "POST",
            "/api/agent/scans",
            Some("application/json"),
            serde_json::to_vec(&scan).unwrap(),
        )
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", r.text().unwrap_or_default());
    issue(&jsonl, node.id);
    let logs = jsonl.log_dir();
    let before = jsonl.get_json(&format!("/api/nodes/{}", node.id));
    jsonl.kill9();

    // Import into PostgreSQL; a second import is refused.
    let pg = Postgres::start();
    let url = pg.create_db("imported");
    let logs_arg = logs.to_str().unwrap();
    let import = ["store", "import", "--from", logs_arg, "--store", &url];
    assert!(cli_ok(&import).contains("heartbeats 3"));
    let (code, out) = cli(&import);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("empty"), "{out}");

    // Served from PostgreSQL: the same node, history, note, scan and command.
    let cc = CommandCenter::start_with(&[
        "--store",
        &url,
        "--signing-key",
        &key,
        "--policy-dir",
        policies.to_str().unwrap(),
    ]);
    let after = cc.get_json(&format!("/api/nodes/{}", node.id));
    assert_eq!(after["history"], before["history"]);
    assert_eq!(after["latest"], before["latest"]);
    assert_eq!(after["latest_scan"], before["latest_scan"]);
    let notes = cc.get_json(&format!("/api/events?kind=note&node_id={}", node.id));
    assert_eq!(notes[0]["body"]["text"], "exported");
    assert_eq!(commands_of(&cc, node.id).len(), 1);
    // The next command continues the node's seq.
    assert_eq!(issue(&cc, node.id)["command"]["seq"], "2");
    drop(cc);

    // Export back: every audit log line for line as the JSONL store wrote it, plus what the
    // PostgreSQL instance added; the ledger builds and verifies over the exported scan log.
    let out_dir = tempfile::tempdir().unwrap();
    let export = out_dir.path().join("export");
    let export_arg = export.to_str().unwrap();
    let export_cmd = ["store", "export", "--store", &url, "--to", export_arg];
    cli_ok(&export_cmd);
    for file in ["sovereign-scans.jsonl", "nodes.jsonl", "heartbeats.jsonl"] {
        assert_eq!(
            std::fs::read(logs.join(file)).unwrap(),
            std::fs::read(export.join(file)).unwrap(),
            "{file}"
        );
    }
    for file in ["events.jsonl", "commands.jsonl"] {
        let exported = std::fs::read_to_string(export.join(file)).unwrap();
        let original = std::fs::read_to_string(logs.join(file)).unwrap();
        assert!(exported.starts_with(&original), "{file}");
    }
    let commands = std::fs::read_to_string(export.join("commands.jsonl")).unwrap();
    assert_eq!(commands.lines().count(), 2);
    assert_eq!(cli(&export_cmd).0, Some(2));
    cli_ok(&[
        "ledger",
        "build",
        "--log-dir",
        export_arg,
        "--signing-key",
        &key,
    ]);
    cli_ok(&[
        "ledger",
        "verify",
        "--log-dir",
        export_arg,
        "--public-key",
        &public,
    ]);

    // The logs tools read the database directly.
    let view = cli_ok(&["logs", "view", "--store", &url, "--kind", "note", "--json"]);
    assert!(view.contains("exported"), "{view}");
    cli_ok(&["logs", "stats", "--store", &url, "--json"]);
    assert_eq!(cli(&["logs", "tail", "--store", &url]).0, Some(2));
}

#[test]
fn a_bad_store_url_is_one_readable_line_and_exit_2() {
    let out = cc_command(&["serve", "--store", "mysql://root:hunter2@db/x"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a PostgreSQL URL"), "{err}");
    assert!(!err.contains("hunter2"), "the password leaked: {err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    // A database that is not there: exit 1, the password not shown.
    let port = vaultmesh_testkit::free_port();
    let url = format!("postgres://vaultmesh:hunter2@127.0.0.1:{port}/none");
    let (code, out) = cli(&[
        "store",
        "export",
        "--store",
        &url,
        "--to",
        "/tmp/vaultmesh-never",
    ]);
    assert_eq!(code, Some(1), "{out}");
    assert!(!out.contains("hunter2"), "{out}");
}

#[test]
fn event_queries_beyond_memory_are_answered_from_the_database() {
    let p = pair();
    let node = TestNode::new(Uuid::now_v7());
    assert_eq!(post_heartbeat(&p.a, &node, 1), 200);
    // More notes than memory keeps (500), alternating instances and nodes.
    let other = TestNode::new(Uuid::now_v7());
    assert_eq!(post_heartbeat(&p.b, &other, 1), 200);
    for i in 0..520 {
        let (cc, n) = if i % 2 == 0 {
            (&p.a, &node)
        } else {
            (&p.b, &other)
        };
        let r = cc.post_json(
            "/api/events",
            &json!({"kind": "note", "node_id": n.id, "body": {"text": i.to_string()}}),
        );
        assert_eq!(r.status, 201, "{}", r.body);
    }
    for cc in [&p.a, &p.b] {
        // The oldest notes are no longer in memory: the database answers, filters applied.
        let oldest = cc.get_json(&format!(
            "/api/events?kind=note&node_id={}&order=oldest&limit=3",
            node.id
        ));
        let texts: Vec<&str> = oldest
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["body"]["text"].as_str().unwrap())
            .collect();
        assert_eq!(texts, ["0", "2", "4"], "{}", cc.url);
        let all = cc.get_json("/api/events?kind=note&order=oldest&limit=1000");
        assert_eq!(all.as_array().unwrap().len(), 520);
        assert_eq!(all[519]["body"]["text"], "519");
    }
}

/// Issue 21 item 6, with PostgreSQL: a request one instance accepted is refused by the other
/// (the replay guard is a table they share), and after both restart.
#[test]
fn a_request_accepted_by_one_instance_is_a_replay_to_the_other() {
    let mut p = pair();
    let node = TestNode::new(Uuid::from_u128(0x5ee0_0000_0000_4000_8000_0000_0000_0001));
    assert_eq!(post_heartbeat(&p.a, &node, 1), 200);
    let body = serde_json::to_vec(&heartbeat(&node, 2)).unwrap();
    let captured = node.signed(
        &p.a.url,
        "POST",
        "/api/agent/heartbeat",
        Some("application/json"),
        body,
    );
    let to_b = captured.try_clone().unwrap().build().unwrap();
    assert_eq!(captured.send().unwrap().status().as_u16(), 200);
    // The same bytes, to the other instance.
    let mut to_b = to_b;
    *to_b.url_mut() = format!("{}/api/agent/heartbeat", p.b.url).parse().unwrap();
    let replayed = to_b.try_clone().unwrap();
    let r = vaultmesh_testkit::http().execute(to_b).unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert!(r.text().unwrap().contains("replayed request"));
    p.b.restart();
    let mut again = replayed;
    *again.url_mut() = format!("{}/api/agent/heartbeat", p.b.url).parse().unwrap();
    assert_eq!(
        vaultmesh_testkit::http()
            .execute(again)
            .unwrap()
            .status()
            .as_u16(),
        401,
        "and after a restart"
    );
}

/// An enrollment token minted on one instance: the other enrolls with it at once (no restart),
/// two agents racing for its one use on the two instances get it once, its revocation on one
/// holds on the other, and a restart of either keeps it all (the lines are in the database, and
/// only the secret's hash is).
#[test]
fn a_token_minted_on_one_instance_enrolls_once_across_both() {
    let mut p = pair();
    let mint = |cc: &CommandCenter, uses: u32| {
        let r = cc.post_json("/api/enroll-tokens", &json!({"name": "pg", "uses": uses}));
        assert_eq!(r.status, 201, "{}", r.body);
        r.json()
    };
    let node = |n: u128| {
        TestNode::new(Uuid::from_u128(
            0x70c9_0000_0000_4000_8000_0000_0000_0000 | n,
        ))
    };
    let listed_on = |cc: &CommandCenter, id: &str| {
        cc.get_json("/api/enroll-tokens")
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["id"] == id)
            .cloned()
    };
    for round in 0..5u128 {
        let t = mint(&p.a, 1);
        let (id, secret) = (t["id"].as_str().unwrap(), t["secret"].as_str().unwrap());
        wait_for(Duration::from_secs(5), || listed_on(&p.b, id)).expect("B sees the token");
        let (a, b) = (node(round * 2), node(round * 2 + 1));
        let (ra, rb) = std::thread::scope(|s| {
            let ha = s.spawn(|| a.enroll_with(&p.a.url, secret));
            let hb = s.spawn(|| b.enroll_with(&p.b.url, secret));
            (ha.join().unwrap(), hb.join().unwrap())
        });
        let mut got = [ra, rb];
        got.sort_unstable();
        assert_eq!(got, [200, 401], "round {round}: one use, one enrollment");
    }
    let t = mint(&p.b, 5);
    let (id, secret) = (t["id"].as_str().unwrap(), t["secret"].as_str().unwrap());
    wait_for(Duration::from_secs(5), || listed_on(&p.a, id)).expect("A sees the token");
    assert_eq!(node(100).enroll_with(&p.a.url, secret), 200);
    let r =
        p.a.request("DELETE", &format!("/api/enroll-tokens/{id}"), None, "");
    assert_eq!(r.status, 200, "{}", r.body);
    wait_for(Duration::from_secs(5), || {
        (listed_on(&p.b, id)?["state"] == "revoked").then_some(())
    })
    .expect("B sees the revocation");
    assert_eq!(node(101).enroll_with(&p.b.url, secret), 401);
    p.b.restart();
    assert_eq!(listed_on(&p.b, id).unwrap()["used"], 1);
    assert_eq!(node(102).enroll_with(&p.b.url, secret), 401);
    let records =
        p.pg.psql(
            "vaultmesh",
            "SELECT line FROM records WHERE kind = 'token_created'",
        )
        .unwrap();
    assert_eq!(records.matches("\"sha256\"").count(), 6, "{records}");
    assert!(!records.contains(&secret[4..]), "{records}");
}

/// Issue 26: an API token made on one instance works on the other, its revocation there
/// reaches the first within seconds, and the database holds its hash, never its secret.
#[test]
fn an_api_token_made_on_one_instance_works_and_is_revoked_on_both() {
    let p = pair();
    let r = p.a.post_json(
        "/api/api-tokens",
        &json!({"name": "pg-bot", "role": "viewer"}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let t = r.json();
    let (id, secret) = (t["id"].as_str().unwrap(), t["secret"].as_str().unwrap());
    let read = |cc: &CommandCenter| {
        http()
            .get(format!("{}/api/nodes", cc.url))
            .bearer_auth(secret)
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    wait_for(Duration::from_secs(5), || (read(&p.b) == 200).then_some(()))
        .expect("B accepts the token made on A");
    let r =
        p.b.request("DELETE", &format!("/api/api-tokens/{id}"), None, "");
    assert_eq!(r.status, 200, "{}", r.body);
    wait_for(Duration::from_secs(5), || (read(&p.a) == 401).then_some(()))
        .expect("A refuses the token revoked on B");
    let records =
        p.pg.psql(
            "vaultmesh",
            "SELECT line FROM records WHERE kind LIKE 'api_token_%'",
        )
        .unwrap();
    assert!(
        records.contains("api_token_created") && records.contains("api_token_revoked"),
        "{records}"
    );
    assert!(!records.contains(&secret[4..]), "{records}");
}

/// Issue 25: a display name set on one instance is in the database: the other instance shows
/// it within seconds, and an instance restarted (replaying the events from PostgreSQL) keeps
/// it, as it keeps it being cleared. The event is in the `records` table once.
#[test]
fn a_display_name_set_on_one_instance_is_on_both_and_after_a_restart() {
    let mut p = pair();
    let node = TestNode::new(Uuid::now_v7());
    assert_eq!(post_heartbeat(&p.a, &node, 1), 200);
    wait_for(Duration::from_secs(5), || p.b.listed("/api/nodes", node.id)).expect("B has it");
    let rename = |cc: &CommandCenter, body: Value| {
        let r = cc.post_json(&format!("/api/nodes/{}/rename", node.id), &body);
        assert_eq!(r.status, 200, "{}", r.body);
    };
    let name_on =
        |cc: &CommandCenter| cc.listed("/api/nodes", node.id).unwrap()["display_name"].clone();

    rename(&p.a, json!({"display_name": "Frankfurt edge 1"}));
    wait_for(Duration::from_secs(5), || {
        (name_on(&p.b) == "Frankfurt edge 1").then_some(())
    })
    .expect("B shows the name A set");
    p.b.restart();
    assert_eq!(name_on(&p.b), "Frankfurt edge 1", "after a restart");
    let records =
        p.pg.psql(
            "vaultmesh",
            "SELECT line FROM records WHERE log = 'events' AND kind = 'node_renamed'",
        )
        .unwrap();
    assert_eq!(records.matches("Frankfurt edge 1").count(), 1, "{records}");

    // Cleared on B: A follows, and a restart of A keeps it cleared.
    rename(&p.b, json!({"display_name": null}));
    wait_for(Duration::from_secs(5), || {
        name_on(&p.a).is_null().then_some(())
    })
    .expect("A shows it cleared");
    p.a.restart();
    assert!(name_on(&p.a).is_null(), "after a restart");
}

/// The ledger over the PostgreSQL store: scan reports are signed from the local copy of the
/// scan log; at start the copy's lines — those already on disk and those copied from the
/// database — are handed to the ledger as the mirror reads and writes them (the ledger reads
/// none itself), for an instance restarted on its log directory and for a new one on an empty
/// directory alike; both chains verify.
#[test]
fn the_ledger_signs_scans_stored_in_postgresql_reading_the_scan_log_once() {
    let pg = Postgres::start();
    let url = pg.create_db("vaultmesh");
    let keys = tempfile::tempdir().unwrap();
    let (key, public) = keygen(keys.path());
    let args = [
        "--store",
        url.as_str(),
        "--signing-key",
        key.as_str(),
        "--ledger-interval",
        "100ms",
    ];
    let env = [("RUST_LOG", "warn,vaultmesh_store::ledger=info")];
    let node = "1ed90000-0000-4000-8000-0000000000b1";
    let scan = |n: u128| {
        json!({
            "scan_id": Uuid::from_u128(n), "node_id": node, "profile": "ArchVault",
            "started_at": "2026-11-29T10:00:00Z", "finished_at": "2026-11-29T10:00:01Z",
            "findings": [], "counts": {}, "fingerprint": {}, "rules": ["sysctl"],
        })
    };
    let signed = |cc: &CommandCenter, size: u64| {
        wait_for(Duration::from_secs(10), || {
            (cc.get_json("/api/ledger/root")["size"] == size).then_some(())
        })
        .unwrap_or_else(|| panic!("size {size}: {}", cc.get_json("/api/ledger/root")));
    };
    let mut a = CommandCenter::start_with_env(&args, &env);
    assert_eq!(
        a.post_json(
            "/api/agent/heartbeat",
            &heartbeat_json(node, "pg-ledger", 1)
        )
        .status,
        200
    );
    for n in 1..=3 {
        assert_eq!(a.post_json("/api/agent/scans", &scan(n)).status, 200);
    }
    signed(&a, 3);
    a.restart();
    assert_eq!(a.get_json("/api/ledger/root")["alarm"], Value::Null);
    a.wait_for_log(&["from_replay=3", "read_here=0"]);
    assert_eq!(a.post_json("/api/agent/scans", &scan(4)).status, 200);
    signed(&a, 4);

    // A second instance on an empty directory: the mirror copies the four lines and hands
    // them over as it writes them.
    let b = CommandCenter::start_with_env(&args, &env);
    signed(&b, 4);
    b.wait_for_log(&["from_replay=4", "read_here=0"]);
    for cc in [&a, &b] {
        let dir = cc.log_dir();
        let out = cc_command(&[
            "ledger",
            "verify",
            "--log-dir",
            dir.to_str().unwrap(),
            "--public-key",
            &public,
        ]);
        assert!(out.status.success(), "{}", text(&out));
    }
}

// History tiers (issue 23): the same answers as the JSONL store, from tables.

const RANGES: [&str; 5] = ["1h", "24h", "7d", "30d", "1y"];

/// Writes `logs/heartbeats.jsonl` as today's main writes it: each node every `every` seconds
/// for `hours` hours until a minute ago, its load cycling, its disk filling and one check in
/// ten warning.
fn heartbeat_log(logs: &std::path::Path, nodes: &[Uuid], hours: i64, every: usize) {
    let end = chrono::Utc::now().timestamp() - 60;
    let mut out = String::new();
    for (i, t) in (end - hours * 3_600..end).step_by(every).enumerate() {
        for (k, node) in nodes.iter().enumerate() {
            let ts = chrono::DateTime::from_timestamp(t, 123_456_789).unwrap();
            let mut hb = heartbeat_json(&node.to_string(), &format!("hist-{k}"), i as u64 + 1);
            hb["timestamp"] = json!(ts);
            hb["metrics"]["load"] = json!([(i % 37) as f64 / 10.0 + k as f64, 0.4, 0.3]);
            hb["metrics"]["disks"][0] = json!({"mount": "/", "fs": "ext4", "total_bytes": 1_000_000, "used_bytes": 400_000 + i * 7});
            if i % 10 == 0 {
                hb["checks"][0]["status"] = json!("warn");
            }
            out.push_str(&format!(
                "{{\"kind\":\"heartbeat\",\"ts\":{},\"node_id\":\"{node}\",\"record\":{hb}}}\n",
                serde_json::to_string(&ts).unwrap()
            ));
        }
    }
    std::fs::create_dir_all(logs).unwrap();
    std::fs::write(logs.join("heartbeats.jsonl"), out).unwrap();
}

/// `cc`'s history of `node` over `range`: its series and forecasts (`from` and `to` move
/// with the clock).
fn history_of(cc: &CommandCenter, node: Uuid, range: &str) -> (Value, Value) {
    let h = cc.get_json(&format!("/api/nodes/{node}/history?range={range}"));
    (h["series"].clone(), h["forecasts"].clone())
}

/// Forecasts equal but for rounding: a store that restarts seeds its trend from the hours it
/// stored, kept to three decimals.
fn close_forecasts(a: &Value, b: &Value) -> bool {
    let (Some(a), Some(b)) = (a.as_array(), b.as_array()) else {
        return false;
    };
    let near = |x: &Value, y: &Value| match (x.as_f64(), y.as_f64()) {
        (Some(x), Some(y)) => (x - y).abs() <= 1e-3 * x.abs().max(1.0),
        _ => x == y,
    };
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x["mount"] == y["mount"]
                && x["hours"] == y["hours"]
                && ["used_pct", "pct_per_day", "days_until_full"]
                    .iter()
                    .all(|f| near(&x[f], &y[f]))
        })
}

/// `pg` answers every range for `node` with the points `jsonl` answers, and its forecasts.
fn assert_same_history(jsonl: &CommandCenter, pg: &CommandCenter, node: Uuid, context: &str) {
    for range in RANGES {
        // Two queries a moment apart may fall on both sides of a slot boundary at the range's
        // start: then ask both again.
        let mut differ = None;
        for _ in 0..5 {
            let (js, jf) = history_of(jsonl, node, range);
            let (ps, pf) = history_of(pg, node, range);
            assert!(
                js.as_array().is_some_and(|s| !s.is_empty()),
                "{context}: {range}: {js}"
            );
            if js == ps && close_forecasts(&jf, &pf) {
                differ = None;
                break;
            }
            differ = Some((js, ps, jf, pf));
            std::thread::sleep(Duration::from_millis(300));
        }
        if let Some((js, ps, jf, pf)) = differ {
            assert_eq!(ps, js, "{context}: the {range} series");
            panic!("{context}: the {range} forecasts: {pf} against {jf}");
        }
    }
}

/// The buckets stored for `node`: `(tier, start, metrics)`.
type Stored = std::collections::BTreeSet<(String, i64, String)>;

/// What the JSONL store keeps under `logs/history/<node>/`.
fn jsonl_buckets(logs: &std::path::Path, node: Uuid) -> Stored {
    let mut out = Stored::new();
    let Ok(files) = std::fs::read_dir(logs.join("history").join(node.to_string())) else {
        return out;
    };
    for file in files {
        let path = file.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let tier = name.split('-').next().unwrap().to_string();
        for line in std::fs::read_to_string(&path).unwrap().lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            out.insert((tier.clone(), v["t"].as_i64().unwrap(), v["m"].to_string()));
        }
    }
    out
}

/// What the database keeps in `history_5m` and `history_1h` for `node` (metrics parsed and
/// written as the JSONL store does, to compare).
fn pg_buckets(pg: &Postgres, db: &str, node: Uuid) -> Stored {
    let rows = pg
        .psql(
            db,
            &format!(
                "SELECT '5m', extract(epoch FROM start)::int8, metrics::text FROM history_5m WHERE node_id = '{node}' \
                 UNION ALL SELECT '1h', extract(epoch FROM start)::int8, metrics::text FROM history_1h WHERE node_id = '{node}'"
            ),
        )
        .unwrap();
    rows.lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let mut f = l.splitn(3, '|');
            let tier = f.next().unwrap().to_string();
            let start = f.next().unwrap().parse().unwrap();
            let metrics: Value = serde_json::from_str(f.next().unwrap()).unwrap();
            (tier, start, metrics.to_string())
        })
        .collect()
}

/// Waits until the database holds exactly the buckets the JSONL store wrote for `node` (its
/// writer thread may lag).
fn assert_same_buckets(logs: &std::path::Path, pg: &Postgres, db: &str, node: Uuid) {
    let same = wait_for(Duration::from_secs(10), || {
        let (j, p) = (jsonl_buckets(logs, node), pg_buckets(pg, db, node));
        (j == p && !j.is_empty()).then_some(j.len())
    });
    if same.is_none() {
        let (j, p) = (jsonl_buckets(logs, node), pg_buckets(pg, db, node));
        let only_j: Vec<_> = j.difference(&p).take(3).collect();
        let only_p: Vec<_> = p.difference(&j).take(3).collect();
        panic!(
            "{} buckets in the files, {} in the database; only in the files: {only_j:?}; only in the database: {only_p:?}",
            j.len(),
            p.len()
        );
    }
}

/// 26 hours of `nodes`' heartbeats every `every` seconds in a log directory (`dir/logs`),
/// imported into a fresh database: the rows today's main writes, and no history stored.
fn imported_log(nodes: &[Uuid], every: usize) -> (tempfile::TempDir, Postgres, String) {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    heartbeat_log(&logs, nodes, 26, every);
    let pg = Postgres::start();
    let url = pg.create_db("vaultmesh");
    let from = logs.to_str().unwrap();
    cli_ok(&["store", "import", "--from", from, "--store", &url]);
    (dir, pg, url)
}

fn pg_args<'a>(url: &'a str, key: &'a str, policies: &'a std::path::Path) -> Vec<&'a str> {
    vec![
        "--store",
        url,
        "--signing-key",
        key,
        "--policy-dir",
        policies.to_str().unwrap(),
    ]
}

#[test]
fn postgresql_history_is_the_jsonl_history_after_a_first_start_heartbeats_restarts_and_two_instances()
 {
    let nodes = [TestNode::new(Uuid::now_v7()), TestNode::new(Uuid::now_v7())];
    let ids: Vec<Uuid> = nodes.iter().map(|n| n.id).collect();
    let (dir, pg, url) = imported_log(&ids, 60);

    // A database of the previous release: the heartbeats imported, no tier tables, schema 2.
    pg.psql(
        "vaultmesh",
        "DROP TABLE history_5m, history_1h; DROP INDEX records_heartbeats_by_node_ts; \
         DELETE FROM vaultmesh_schema WHERE version >= 3",
    )
    .unwrap();

    // The JSONL store over the same log, and PostgreSQL's first start: both roll it all up.
    let jsonl = CommandCenter::start_in(dir, &[], &[]);
    let keys = tempfile::tempdir().unwrap();
    let (key, _) = keygen(keys.path());
    let policies = workspace_root().join("policies");
    let args = pg_args(&url, &key, &policies);
    let mut a = CommandCenter::start_with(&args);
    assert_eq!(
        pg.psql("vaultmesh", "SELECT max(version) FROM vaultmesh_schema")
            .unwrap(),
        "3",
        "migrated at the first start"
    );
    for node in &ids {
        assert_same_history(&jsonl, &a, *node, "first start");
        assert_same_buckets(&jsonl.log_dir(), &pg, "vaultmesh", *node);
    }
    let stored_5m = pg
        .psql("vaultmesh", "SELECT count(*) FROM history_5m")
        .unwrap();
    assert!(
        stored_5m.parse::<u32>().unwrap() >= 2 * 26 * 12 - 2,
        "every closed 5-minute bucket of 26 hours: {stored_5m}"
    );
    drop(jsonl);

    // A second instance on the same database: it finds the tiers stored and rolls up only the
    // heartbeats since; then heartbeats through both.
    let b = CommandCenter::start_with(&args);
    let node = &nodes[0];
    let applied = |cc: &CommandCenter| {
        cc.get_json(&format!("/api/nodes/{}", node.id))["summary"]["heartbeats"].as_u64()
    };
    let total = applied(&a).unwrap() + 6;
    for seq in 1..=6 {
        let cc = if seq % 2 == 0 { &b } else { &a };
        assert_eq!(post_heartbeat(cc, node, 100 + seq), 200);
    }
    wait_for(Duration::from_secs(5), || {
        (applied(&a) == Some(total) && applied(&b) == Some(total)).then_some(())
    })
    .expect("each instance applied the other's heartbeats");

    // The JSONL store's answer for exactly these heartbeats: the database exported to a log
    // directory and served from there (its first start rolls the log up).
    let out = tempfile::tempdir().unwrap();
    let export = out.path().join("logs");
    cli_ok(&[
        "store",
        "export",
        "--store",
        &url,
        "--to",
        export.to_str().unwrap(),
    ]);
    let jsonl = CommandCenter::start_in(out, &[], &[]);
    for node in &ids {
        assert_same_history(&jsonl, &a, *node, "instance A");
        assert_same_history(&jsonl, &b, *node, "instance B");
    }
    a.kill9();
    a.restart();
    for node in &ids {
        assert_same_history(&jsonl, &a, *node, "A after kill -9");
        assert_same_buckets(&jsonl.log_dir(), &pg, "vaultmesh", *node);
    }
}

fn leads(cc: &CommandCenter) -> bool {
    vaultmesh_testkit::metric(&cc.get("/metrics").body, "vaultmesh_leader") == Some(1.0)
}

#[test]
fn history_rows_past_retention_are_deleted_by_the_leader_and_never_stored() {
    let node = Uuid::now_v7();
    let (_dir, mut pg, url) = imported_log(&[node], 120);
    let keys = tempfile::tempdir().unwrap();
    let (key, _) = keygen(keys.path());
    let policies = workspace_root().join("policies");
    let args = pg_args(&url, &key, &policies);
    let mut short = args.clone();
    short.extend([
        "--history-5m-retention",
        "12h",
        "--history-1h-retention",
        "20h",
    ]);
    let count = |sql: &str| -> u64 { pg.psql("vaultmesh", sql).unwrap().parse().unwrap() };
    let old_5m = "SELECT count(*) FROM history_5m WHERE start < now() - interval '12 hours'";
    let old_1h = "SELECT count(*) FROM history_1h WHERE start < now() - interval '20 hours'";
    let all_5m = "SELECT count(*) FROM history_5m";

    // The default retention keeps all 26 hours; this instance leads.
    let mut long = CommandCenter::start_with(&args);
    wait_for(Duration::from_secs(10), || leads(&long).then_some(())).expect("a leader");
    assert!(count(old_5m) > 100, "{}", count(old_5m));
    assert!(count(old_1h) >= 4, "{}", count(old_1h));

    // An instance with shorter retention that does not lead deletes nothing; once it leads,
    // it deletes the older rows and keeps the rest.
    let mut cc = CommandCenter::start_with(&short);
    assert!(!leads(&cc));
    assert!(count(old_5m) > 100);
    long.kill9();
    wait_for(Duration::from_secs(20), || {
        (count(old_5m) == 0 && count(old_1h) == 0).then_some(())
    })
    .unwrap_or_else(|| panic!("left {} and {}", count(old_5m), count(old_1h)));
    assert!(leads(&cc));
    assert!(count(all_5m) >= 12 * 12 - 6, "{}", count(all_5m));
    let hours = "SELECT count(*) FROM history_1h";
    // 20 hours, less what has closed since the log ended.
    assert!(count(hours) >= 17, "{}", count(hours));
    let day = cc.get_json(&format!(
        "/api/nodes/{node}/history?range=24h&metrics=load1"
    ));
    let first_point = day["series"][0]["points"][0]["t"].as_str().unwrap();
    let first_point = chrono::DateTime::parse_from_rfc3339(first_point).unwrap();
    let age = chrono::Utc::now().signed_duration_since(first_point);
    assert!(age <= chrono::Duration::minutes(12 * 60 + 5), "{age}");

    // An instance that rolls the whole log up (no tiers stored) while another leads does not
    // store what is past its retention in the first place.
    pg.psql(
        "vaultmesh",
        "DELETE FROM history_5m; DELETE FROM history_1h",
    )
    .unwrap();
    let other = CommandCenter::start_with(&short);
    assert!(!leads(&other));
    assert_eq!(count(old_5m), 0);
    assert_eq!(count(old_1h), 0);
    assert!(count(all_5m) >= 12 * 12 - 6, "{}", count(all_5m));
    drop(other);

    // Without the database, the history is refused with a reason, not made up.
    pg.stop();
    let r = cc.get(&format!("/api/nodes/{node}/history?range=24h"));
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(
        r.json()["error"].as_str().unwrap().contains("history"),
        "{}",
        r.body
    );
    pg.restart();
    let back = wait_for(Duration::from_secs(10), || {
        let r = cc.get(&format!("/api/nodes/{node}/history?range=24h"));
        (r.status == 200).then_some(r.json())
    })
    .expect("answers again once the database is back");
    assert!(!back["series"].as_array().unwrap().is_empty());
    cc.kill9();
}

#[test]
fn history_buckets_the_database_refuses_are_held_and_stored_once_it_takes_them() {
    let node = Uuid::now_v7();
    let (_dir, pg, url) = imported_log(&[node], 120);
    pg.psql(
        "vaultmesh",
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ \
           BEGIN RAISE EXCEPTION 'refused by the test'; END $$; \
         CREATE TRIGGER refuse BEFORE INSERT ON history_5m \
           FOR EACH STATEMENT EXECUTE FUNCTION refuse()",
    )
    .unwrap();
    let keys = tempfile::tempdir().unwrap();
    let (key, _) = keygen(keys.path());
    let policies = workspace_root().join("policies");
    let count = |sql: &str| -> u64 { pg.psql("vaultmesh", sql).unwrap().parse().unwrap() };
    let stored = || {
        (
            count("SELECT count(*) FROM history_5m"),
            count("SELECT count(*) FROM history_1h"),
        )
    };

    // The first start rolls up 26 hours; the database refuses the buckets: it starts anyway.
    let cc = CommandCenter::start_with(&pg_args(&url, &key, &policies));
    assert_eq!(stored().0, 0);
    cc.wait_for_log(&["Cannot store history buckets"]);
    // Once the database takes them, the held buckets are stored, all of them.
    pg.psql("vaultmesh", "DROP TRIGGER refuse ON history_5m")
        .unwrap();
    wait_for(Duration::from_secs(15), || {
        let (five, hour) = stored();
        (five >= 26 * 12 - 6 && hour >= 24).then_some(())
    })
    .unwrap_or_else(|| panic!("stored {:?}", stored()));
    let day = cc.get_json(&format!(
        "/api/nodes/{node}/history?range=24h&metrics=load1"
    ));
    assert!(day["series"][0]["points"].as_array().unwrap().len() >= 280);
}
