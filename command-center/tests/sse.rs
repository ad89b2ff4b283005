//! `GET /events` with a real HTTP SSE client against the real server: named events in order,
//! keepalive, resume with `Last-Event-ID` (or `?since=`), `resync` for a stalled client while others keep up,
//! filters.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::time::Duration;

use serde_json::{Value, json};
use vaultmesh_testkit::sse::{SseClient, SseItem};
use vaultmesh_testkit::{CommandCenter, heartbeat_json, http};

const NODE: &str = "550e8400-e29b-41d4-a716-446655440000";
const T: Duration = Duration::from_secs(10);

fn note(cc: &CommandCenter, text: &str) -> Value {
    let r = cc.post_json(
        "/api/events",
        &json!({"kind": "note", "body": {"text": text}}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    r.json()
}

fn seq_of(id: &str) -> u64 {
    id.rsplit('-').next().unwrap().parse().unwrap()
}

#[test]
fn named_events_arrive_in_order_with_ids() {
    let cc = CommandCenter::start();
    let sse = SseClient::connect(&format!("{}/events", cc.url), None);
    assert_eq!(sse.status, 200);
    assert_eq!(
        cc.post_json(
            "/api/agent/heartbeat",
            &heartbeat_json(NODE, "vault-node-01", 1)
        )
        .status,
        200
    );
    note(&cc, "first");
    let inc = cc
        .post_json(
            "/api/events",
            &json!({"kind": "incident", "node_id": NODE, "body": {"title": "disk full"}}),
        )
        .json();
    cc.post_json("/api/events", &json!({"kind": "ack", "refs": [inc["id"]]}));
    cc.post_json(
        "/api/events",
        &json!({"kind": "tag", "node_id": NODE, "body": {"label": "maint"}}),
    );
    cc.post_json(
        "/api/events",
        &json!({"kind": "resolve", "refs": [inc["id"]]}),
    );

    let mut names = Vec::new();
    let mut last = 0;
    while names.len() < 6 {
        let (event, id, data) = sse.next_event(T).expect("event");
        assert!(seq_of(&id) > last, "ids increase: {id}");
        last = seq_of(&id);
        let data: Value = serde_json::from_str(&data).unwrap();
        if event == "attention" {
            continue; // the incident changes the node's attention; not what this test is about
        }
        if event == "heartbeat" {
            assert_eq!(data["hostname"], "vault-node-01");
        } else {
            assert_eq!(
                data["kind"],
                event.as_str(),
                "envelope kind is the event name"
            );
        }
        names.push(event);
    }
    assert_eq!(
        names,
        ["heartbeat", "note", "incident", "ack", "tag", "resolve"]
    );
}

#[test]
fn keepalive_comments_flow_when_idle() {
    let cc = CommandCenter::start_with(&["--sse-keepalive", "300ms"]);
    let sse = SseClient::connect(&format!("{}/events", cc.url), None);
    let mut comments = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while std::time::Instant::now() < deadline {
        if let Some(SseItem::Comment) = sse.next_item(Duration::from_millis(500)) {
            comments += 1;
        }
    }
    assert!(comments >= 3, "{comments} keepalives in 2 s at 300 ms");
}

#[test]
fn resume_with_last_event_id_delivers_exactly_what_was_missed() {
    let mut cc = CommandCenter::start();
    let first = SseClient::connect(&format!("{}/events", cc.url), None);
    note(&cc, "a");
    note(&cc, "b");
    let (_, id_a, _) = first.next_event(T).unwrap();
    let (_, id_b, _) = first.next_event(T).unwrap();
    assert!(seq_of(&id_b) > seq_of(&id_a));
    drop(first);
    note(&cc, "c");
    note(&cc, "d");

    let resumed = SseClient::connect(&format!("{}/events", cc.url), Some(&id_b));
    let texts: Vec<String> = (0..2)
        .map(|_| {
            let (_, _, data) = resumed.next_event(T).unwrap();
            serde_json::from_str::<Value>(&data).unwrap()["body"]["text"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        texts,
        ["c", "d"],
        "the missed events, in order, nothing twice"
    );
    note(&cc, "e");
    let (_, _, data) = resumed.next_event(T).unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&data).unwrap()["body"]["text"],
        "e",
        "then live"
    );

    // An id from before a restart cannot be resumed: one resync, never a silent gap.
    cc.restart();
    let after = SseClient::connect(&format!("{}/events", cc.url), Some(&id_b));
    let (event, _, data) = after.next_event(T).unwrap();
    assert_eq!(event, "resync");
    assert_eq!(
        serde_json::from_str::<Value>(&data).unwrap()["reason"],
        "restarted"
    );
}

/// `?since=` is `Last-Event-ID` for a client that cannot set the header (a browser's first
/// `EventSource`); when both come, the header (a browser's own reconnect) wins.
#[test]
fn since_resumes_like_last_event_id_and_the_header_wins() {
    let cc = CommandCenter::start();
    let first = SseClient::connect(&format!("{}/events", cc.url), None);
    note(&cc, "a");
    note(&cc, "b");
    let (_, id_a, _) = first.next_event(T).unwrap();
    let (_, id_b, _) = first.next_event(T).unwrap();
    drop(first);
    note(&cc, "c");
    let text = |c: &SseClient| {
        let (event, _, data) = c.next_event(T).unwrap();
        let v: Value = serde_json::from_str(&data).unwrap();
        if event == "resync" {
            format!("resync {}", v["reason"].as_str().unwrap())
        } else {
            v["body"]["text"].as_str().unwrap().to_string()
        }
    };

    let since = SseClient::connect(&format!("{}/events?since={id_a}", cc.url), None);
    assert_eq!(
        [text(&since), text(&since)],
        ["b", "c"],
        "replayed after `since`"
    );
    let both = SseClient::connect(&format!("{}/events?since={id_a}", cc.url), Some(&id_b));
    assert_eq!(text(&both), "c", "the header wins over `since`");
    let bad = SseClient::connect(&format!("{}/events?since=yesterday", cc.url), None);
    assert_eq!(text(&bad), "resync bad-last-event-id");
}

#[test]
fn a_stalled_client_gets_resync_while_others_keep_up() {
    let cc = CommandCenter::start_with(&["--sse-buffer", "32"]);
    let url = format!("{}/events?kinds=note", cc.url);
    // A stalled client: it connects and never reads, so its socket buffers fill up.
    let addr = cc.url.trim_start_matches("http://");
    let stalled = std::net::TcpStream::connect(addr).unwrap();
    use std::io::Write;
    write!(
        &stalled,
        "GET /events?kinds=note HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    let healthy = SseClient::connect(&url, None);

    // Large notes fill the stalled client's kernel buffers quickly.
    let big = "x".repeat(8000);
    let total = 1200;
    let posters: Vec<_> = (0..4)
        .map(|t| {
            let (base, big) = (cc.url.clone(), big.clone());
            std::thread::spawn(move || {
                for i in 0..total / 4 {
                    let r = http()
                        .post(format!("{base}/api/events"))
                        .json(&json!({"kind": "note", "body": {"text": format!("{t}-{i}-{big}")}}))
                        .send()
                        .unwrap();
                    assert_eq!(r.status().as_u16(), 201);
                }
            })
        })
        .collect();
    let mut got = 0;
    while got < total {
        let (event, _, _) = healthy
            .next_event(Duration::from_secs(30))
            .expect("the healthy client keeps up");
        assert_eq!(event, "note", "no resync for a client that keeps up");
        got += 1;
    }
    for p in posters {
        p.join().unwrap();
    }
    // Now let the stalled client read: somewhere in its stream is exactly one resync per lag.
    stalled
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut reader = std::io::BufReader::new(stalled);
    let (mut notes, mut resyncs) = (0, 0);
    let mut line = String::new();
    use std::io::BufRead;
    while reader.read_line(&mut line).unwrap_or(0) > 0 {
        if line.starts_with("event: note") {
            notes += 1;
        } else if line.starts_with("event: resync") {
            resyncs += 1;
        }
        line.clear();
    }
    assert!(
        resyncs >= 1,
        "the stalled client was told it missed events ({notes} notes read)"
    );
    assert!(notes < total, "it did miss some");
}

#[test]
fn filters_select_kinds_and_node_and_bad_filters_are_400() {
    let cc = CommandCenter::start();
    assert_eq!(
        cc.post_json("/api/agent/heartbeat", &heartbeat_json(NODE, "a", 1))
            .status,
        200
    );
    let sse = SseClient::connect(
        &format!("{}/events?kinds=incident,heartbeat&node_id={NODE}", cc.url),
        None,
    );
    note(&cc, "not wanted");
    assert_eq!(
        cc.post_json(
            "/api/agent/heartbeat",
            &heartbeat_json("6ba7b810-9dad-11d1-80b4-00c04fd430c8", "b", 1)
        )
        .status,
        200
    );
    assert_eq!(
        cc.post_json(
            "/api/events",
            &json!({"kind": "incident", "node_id": NODE, "body": {"title": "x"}})
        )
        .status,
        201
    );
    let (event, _, _) = sse.next_event(T).unwrap();
    assert_eq!(
        event, "incident",
        "the note and the other node's heartbeat were filtered out"
    );

    // The lifecycle kinds are names a stream can be narrowed to.
    let lifecycle = SseClient::connect(&format!("{}/events?kinds=node_renamed", cc.url), None);
    note(&cc, "not wanted either");
    let r = cc.post_json(
        &format!("/api/nodes/{NODE}/rename"),
        &json!({"display_name": "edge"}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let (event, _, data) = lifecycle.next_event(T).unwrap();
    assert_eq!(event, "node_renamed", "{data}");

    for q in ["kinds=weather", "node_id=abc", "colour=red"] {
        let r = cc.get(&format!("/events?{q}"));
        assert_eq!(r.status, 400, "{q}");
        assert!(r.json()["error"].is_string());
    }
}

#[test]
fn open_streams_do_not_hold_up_a_clean_shutdown() {
    let mut cc = CommandCenter::start();
    let sse = SseClient::connect(&format!("{}/events", cc.url), None);
    note(&cc, "hello");
    assert!(sse.next_event(T).is_some());
    vaultmesh_testkit::notify::terminate(cc.pid());
    let status = cc
        .wait_exit(Duration::from_secs(5))
        .expect("exits within 5 s with a stream open");
    assert!(status.success(), "{status:?}");
}

/// Issue 20 item 10: `heartbeat` events said `attention: ok` whatever the node's state (the
/// summary was published before attention was judged). Now the event carries the summary
/// without `attention` — every other member equal to `GET /api/nodes` — and the judgement
/// arrives as its own `attention` event, which `GET /api/nodes` then agrees with.
#[test]
fn heartbeat_events_match_the_api_and_attention_comes_as_its_own_event() {
    let cc = CommandCenter::start_with(&["--attention-tick", "200ms"]);
    let sse = SseClient::connect(
        &format!("{}/events?kinds=heartbeat,attention", cc.url),
        None,
    );
    for seq in 1..=2 {
        let mut hb = heartbeat_json(NODE, "vault-node-01", seq);
        hb["services_ok"] = json!(false);
        assert_eq!(cc.post_json("/api/agent/heartbeat", &hb).status, 200);
    }
    let mut heartbeats = Vec::new();
    let mut attention = None;
    while attention.is_none() || heartbeats.len() < 2 {
        let (name, _, data) = sse.next_event(T).expect("an event");
        let v: Value = serde_json::from_str(&data).unwrap();
        match name.as_str() {
            "heartbeat" => heartbeats.push(v),
            "attention" if v["body"]["level"] == "crit" => attention = Some(v),
            _ => {}
        }
    }
    let api = cc.get_json("/api/nodes")[0].clone();
    assert_eq!(api["attention"]["level"], "crit", "{api:#}");
    assert_eq!(attention.unwrap()["node_id"], NODE);
    let last = heartbeats.last().unwrap();
    assert!(
        last.get("attention").is_none(),
        "no stale attention in the heartbeat event: {last:#}"
    );
    let mut api_without = api.clone();
    api_without.as_object_mut().unwrap().remove("attention");
    assert_eq!(
        last, &api_without,
        "the event is the API's view of the node"
    );
}

/// Issue 22: a `heartbeat` event is the node's summary put together in the one place
/// `GET /api/nodes` gets it from. It used to carry only what the heartbeat itself said, so a
/// node with a scan report lost `last_scan` on every heartbeat event (and `receipt_chain_ok`).
#[test]
fn a_heartbeat_event_says_all_the_api_says_of_the_node_but_its_attention() {
    let cc = CommandCenter::start();
    let hb = |seq| {
        cc.post_json(
            "/api/agent/heartbeat",
            &heartbeat_json(NODE, "vault-node-01", seq),
        )
    };
    assert_eq!(hb(1).status, 200);
    let scan_id = "9b2c0000-0000-4000-8000-000000000001";
    let report = json!({
        "scan_id": scan_id, "node_id": NODE, "profile": "ArchVault",
        "started_at": "2026-11-29T10:00:00Z", "finished_at": "2026-11-29T10:00:02Z",
        "findings": [{"rule": "sshd", "severity": "medium", "title": "Password login",
            "detail": "", "evidence": "/etc/ssh/sshd_config:3: PasswordAuthentication yes"}],
        "counts": {"medium": 1}, "rules": ["sshd"],
    });
    let r = cc.post_json("/api/agent/scans", &report);
    assert_eq!(r.status, 200, "{}", r.body);
    let sse = SseClient::connect(&format!("{}/events?kinds=heartbeat", cc.url), None);
    assert_eq!(hb(2).status, 200);
    let (name, _, data) = sse.next_event(T).expect("the heartbeat event");
    assert_eq!(name, "heartbeat");
    let event: Value = serde_json::from_str(&data).unwrap();
    assert_eq!(event["last_scan"]["scan_id"], scan_id, "{event:#}");
    assert_eq!(event["last_scan"]["counts"]["medium"], 1, "{event:#}");
    let mut api = cc.get_json("/api/nodes")[0].clone();
    api.as_object_mut().unwrap().remove("attention");
    assert_eq!(event, api, "the event is the API's view of the node");
}
