//! `POST/GET /api/events`: validation, the incident lifecycle, queries, durability and the
//! envelope hash, against the real server.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use vaultmesh_testkit::{CommandCenter, heartbeat_json, http};

const NODE: &str = "550e8400-e29b-41d4-a716-446655440000";

fn with_node() -> CommandCenter {
    let cc = CommandCenter::start();
    assert_eq!(
        cc.post_json(
            "/api/agent/heartbeat",
            &heartbeat_json(NODE, "vault-node-01", 1)
        )
        .status,
        200
    );
    cc
}

fn post(cc: &CommandCenter, body: Value) -> (u16, Value) {
    let r = cc.post_json("/api/events", &body);
    (r.status, r.json())
}

#[test]
fn posted_events_are_stamped_hashed_and_returned() {
    let cc = with_node();
    let (status, e) = post(
        &cc,
        json!({"kind": "note", "node_id": NODE, "author": "ops@example.com", "body": {"text": "kernel updated"}}),
    );
    assert_eq!(status, 201, "{e}");
    let id = uuid::Uuid::parse_str(e["id"].as_str().unwrap()).unwrap();
    assert_eq!(id.get_version_num(), 7, "ids are UUID v7");
    assert_eq!(
        (
            e["kind"].as_str(),
            e["author"].as_str(),
            e["node_id"].as_str()
        ),
        (Some("note"), Some("ops@example.com"), Some(NODE))
    );
    assert_eq!(e["hash"].as_str().unwrap().len(), 64);
    // The stored envelope verifies with the library's own hash…
    let env: vaultmesh_proto::EventEnvelope = serde_json::from_value(e.clone()).unwrap();
    assert!(env.verify());
    // …and with an independent implementation (Python's json + hashlib) of the documented rule.
    assert_eq!(python_hash(&e), e["hash"].as_str().unwrap());
}

/// SHA-256 of the canonical JSON of `envelope` without `hash`, computed by Python. For the
/// ASCII member names and integer-free bodies used here, `sort_keys` + compact separators +
/// `ensure_ascii=False` is exactly RFC 8785.
fn python_hash(envelope: &Value) -> String {
    let script = r#"
import hashlib, json, sys
e = json.load(sys.stdin)
e.pop("hash")
print(hashlib.sha256(json.dumps(e, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")).hexdigest())
"#;
    let mut child = std::process::Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 (Debian: apt-get install -y python3)");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(envelope.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn independent_hashes_agree_for_every_kind_and_unicode() {
    let cc = with_node();
    let (_, inc) = post(
        &cc,
        json!({"kind": "incident", "node_id": NODE, "body": {"title": "Ünïcødé 🚨 \"quoted\" \\ back", "severity": "critical", "text": "tab\there,\nnew line, e\u{301} combining, 漢字, 𝄞"}}),
    );
    // Control characters that could deceive a reader never reach a hash: they are refused.
    for (c, named) in [('\u{7f}', "U+007F"), ('\u{1b}', "U+001B")] {
        let (status, err) = post(
            &cc,
            json!({"kind": "incident", "node_id": NODE, "body": {"title": "t", "severity": "critical", "text": format!("x{c}y")}}),
        );
        assert_eq!(status, 422, "{err}");
        assert!(err["error"].as_str().unwrap().contains(named), "{err}");
    }
    let (_, tag) = post(
        &cc,
        json!({"kind": "tag", "node_id": NODE, "body": {"label": "maint:window", "value": "€ 12:00"}}),
    );
    let (_, ack) = post(
        &cc,
        json!({"kind": "ack", "refs": [inc["id"]], "body": {"text": "looking"}}),
    );
    for e in [inc, tag, ack] {
        assert!(e.get("hash").is_some(), "{e}");
        assert_eq!(python_hash(&e), e["hash"].as_str().unwrap(), "{e}");
    }
}

#[test]
fn bad_events_get_4xx_json_errors() {
    let cc = with_node();
    let (_, inc) = post(
        &cc,
        json!({"kind": "incident", "node_id": NODE, "body": {"title": "disk full"}}),
    );
    let incident = inc["id"].as_str().unwrap().to_string();
    let cases: Vec<(Value, u16, &str)> = vec![
        (
            json!({"kind": "memo", "body": {"text": "x"}}),
            422,
            "kind \"memo\" is not one of",
        ),
        (
            json!({"kind": "note", "body": {}}),
            422,
            "missing field `text`",
        ),
        (
            json!({"kind": "note", "body": {"text": ""}}),
            422,
            "text must not be empty",
        ),
        (
            json!({"kind": "note", "body": {"text": "x"}, "colour": "red"}),
            422,
            "unknown field `colour`",
        ),
        (
            json!({"kind": "tag", "body": {"label": ""}}),
            422,
            "label must not be empty",
        ),
        (
            json!({"kind": "incident", "body": {"title": "x", "severity": "apocalyptic"}}),
            422,
            "unknown variant `apocalyptic`",
        ),
        (
            json!({"kind": "note", "node_id": "6ba7b810-9dad-11d1-80b4-00c04fd430c8", "body": {"text": "x"}}),
            422,
            "is not a node this Command Center knows",
        ),
        (
            json!({"kind": "note", "node_id": "nope", "body": {"text": "x"}}),
            422,
            "UUID",
        ),
        (json!({"kind": "ack", "body": {}}), 422, "ack needs refs"),
        (
            json!({"kind": "ack", "refs": ["6ba7b810-9dad-11d1-80b4-00c04fd430c8"]}),
            422,
            "is not a known incident",
        ),
        (
            json!({"kind": "note", "body": {"text": "x".repeat(20_000)}}),
            422,
            "the limit is 16384",
        ),
    ];
    for (body, status, want) in cases {
        let (s, e) = post(&cc, body.clone());
        assert_eq!(s, status, "{body}: {e}");
        assert!(e["error"].as_str().unwrap().contains(want), "{body}: {e}");
    }
    assert_eq!(
        cc.request("POST", "/api/events", Some("application/json"), "{")
            .status,
        400
    );
    assert_eq!(
        cc.request("POST", "/api/events", Some("text/plain"), "{}")
            .status,
        415
    );
    // Lifecycle: resolve, then ack or resolve again is a conflict.
    assert_eq!(
        post(&cc, json!({"kind": "resolve", "refs": [incident]})).0,
        201
    );
    let (s, e) = post(&cc, json!({"kind": "ack", "refs": [incident]}));
    assert_eq!(s, 409, "{e}");
    assert!(
        e["error"].as_str().unwrap().contains("already resolved"),
        "{e}"
    );
    assert_eq!(
        post(&cc, json!({"kind": "resolve", "refs": [incident]})).0,
        409
    );
}

#[test]
fn incidents_are_derived_per_node_and_survive_a_restart() {
    let mut cc = with_node();
    let (_, a) = post(
        &cc,
        json!({"kind": "incident", "node_id": NODE, "author": "alice", "body": {"title": "tunnel flapping", "severity": "medium"}}),
    );
    let (_, b) = post(
        &cc,
        json!({"kind": "incident", "node_id": NODE, "author": "alice", "body": {"title": "disk full"}}),
    );
    assert_eq!(
        post(
            &cc,
            json!({"kind": "ack", "author": "bob", "refs": [a["id"]]})
        )
        .0,
        201
    );
    assert_eq!(
        post(
            &cc,
            json!({"kind": "resolve", "author": "carol", "refs": [b["id"]]})
        )
        .0,
        201
    );
    let check = |cc: &CommandCenter| {
        let d = cc.get_json(&format!("/api/nodes/{NODE}"));
        let inc = d["incidents"].as_array().unwrap();
        assert_eq!(inc.len(), 2, "{d}");
        assert_eq!(
            (
                inc[0]["title"].as_str(),
                inc[0]["state"].as_str(),
                inc[0]["acked_by"].as_str()
            ),
            (Some("tunnel flapping"), Some("acknowledged"), Some("bob"))
        );
        assert_eq!(
            (
                inc[1]["title"].as_str(),
                inc[1]["state"].as_str(),
                inc[1]["resolved_by"].as_str()
            ),
            (Some("disk full"), Some("resolved"), Some("carol"))
        );
        assert_eq!(inc[1]["severity"], "high", "default severity");
    };
    check(&cc);
    // Operator events only: the attention engine logs its own events as it catches up.
    let operator = "/api/events?limit=10&kind=note,incident,ack,tag,resolve,silence";
    let before = cc.get_json(operator);
    cc.restart();
    check(&cc);
    assert_eq!(cc.get_json(operator), before);
    // The lifecycle still holds after replay.
    assert_eq!(post(&cc, json!({"kind": "ack", "refs": [a["id"]]})).0, 409);
}

#[test]
fn queries_filter_order_validate_and_reach_past_the_memory_window() {
    let mut cc = with_node();
    for i in 0..510 {
        let node = if i % 2 == 0 { json!(NODE) } else { Value::Null };
        assert_eq!(
            post(
                &cc,
                json!({"kind": "note", "node_id": node, "body": {"text": format!("n{i}")}})
            )
            .0,
            201
        );
    }
    assert_eq!(
        post(&cc, json!({"kind": "tag", "body": {"label": "last"}})).0,
        201
    );
    let texts = |v: &Value| {
        v.as_array()
            .unwrap()
            .iter()
            .map(|e| e["body"]["text"].as_str().unwrap_or("tag").to_string())
            .collect::<Vec<_>>()
    };

    assert_eq!(
        texts(&cc.get_json("/api/events?kind=note&limit=3")),
        ["n509", "n508", "n507"],
        "newest first by default"
    );
    // Oldest first needs events no longer in the 500-event memory window: read from the log.
    assert_eq!(
        texts(&cc.get_json("/api/events?kind=note&limit=3&order=oldest")),
        ["n0", "n1", "n2"]
    );
    assert_eq!(
        texts(&cc.get_json(&format!("/api/events?node_id={NODE}&limit=2"))),
        ["n508", "n506"]
    );
    assert_eq!(texts(&cc.get_json("/api/events?kind=tag")), ["tag"]);
    let all = cc.get_json("/api/events?limit=1000&order=oldest");
    assert_eq!(all.as_array().unwrap().len(), 511);
    let since = all[500]["ts"].as_str().unwrap().to_string();
    let recent = cc.get_json(&format!(
        "/api/events?since={}&order=oldest&limit=1000",
        since.replace('+', "%2B")
    ));
    assert_eq!(recent.as_array().unwrap().len(), 11);

    for (q, want) in [
        (
            "since=yesterday",
            "since=\"yesterday\" is not an RFC 3339 time",
        ),
        ("kind=memo", "kind=\"memo\" is not one of"),
        ("node_id=x", "\"x\" is not a node id"),
        ("limit=5000", "limit=5000 must be between 1 and 1000"),
        ("limit=-1", "bad query"),
        ("order=random", "order=\"random\" must be newest or oldest"),
        ("colour=red", "bad query"),
    ] {
        let r = cc.get(&format!("/api/events?{q}"));
        assert_eq!(r.status, 400, "{q}: {}", r.body);
        assert!(
            r.json()["error"].as_str().unwrap().contains(want),
            "{q}: {}",
            r.body
        );
    }
    cc.restart();
    assert_eq!(
        texts(&cc.get_json("/api/events?kind=note&limit=2&order=oldest")),
        ["n0", "n1"]
    );
}

#[test]
fn a_tampered_event_line_is_reported_and_not_served() {
    let mut cc = with_node();
    let (_, keep) = post(&cc, json!({"kind": "note", "body": {"text": "genuine"}}));
    let (_, tamper) = post(&cc, json!({"kind": "note", "body": {"text": "original"}}));
    cc.kill9();
    let log = cc.log_dir().join("events.jsonl");
    let text = std::fs::read_to_string(&log)
        .unwrap()
        .replace("\"text\":\"original\"", "\"text\":\"forged!!\"");
    std::fs::write(&log, text).unwrap();
    cc.restart();
    let ids: Vec<String> = cc
        .get_json("/api/events")
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    assert!(ids.contains(&keep["id"].as_str().unwrap().to_string()));
    assert!(
        !ids.contains(&tamper["id"].as_str().unwrap().to_string()),
        "the altered event is not served"
    );
}

#[test]
fn every_acknowledged_event_survives_kill_9() {
    let mut cc = with_node();
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let posters: Vec<_> = (0..4)
        .map(|t| {
            let (url, acked, stop) = (cc.url.clone(), acked.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    n += 1;
                    let body = json!({"kind": "note", "body": {"text": format!("t{t}-{n}")}});
                    match http().post(format!("{url}/api/events")).json(&body).send() {
                        Ok(r) if r.status().as_u16() == 201 => {
                            let e: Value = r.json().unwrap();
                            acked
                                .lock()
                                .unwrap()
                                .insert(e["id"].as_str().unwrap().to_string());
                        }
                        _ => break,
                    }
                }
            })
        })
        .collect();
    vaultmesh_testkit::wait_for(Duration::from_secs(30), || {
        (acked.lock().unwrap().len() >= 300).then_some(())
    })
    .unwrap();
    cc.kill9();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for p in posters {
        p.join().unwrap();
    }
    cc.restart();
    let stored: BTreeSet<String> = cc
        .get_json("/api/events?limit=1000&order=oldest")
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    let acked = acked.lock().unwrap();
    let missing: Vec<_> = acked.difference(&stored).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged events lost",
        missing.len()
    );
}
