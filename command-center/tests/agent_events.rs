//! Events from agents (issue 26): a node posts a `note` or an `incident` about itself with its
//! own key — the real agent binary's `event` verb against the real server — and nothing else:
//! not about another node, not under another author, not another kind, not unsigned, replayed,
//! revoked, nor past its event rate.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::time::Duration;
use uuid::Uuid;
use vaultmesh_testkit::auth::TestNode;
use vaultmesh_testkit::fake_cc::FakeCommandCenter;
use vaultmesh_testkit::sse::SseClient;
use vaultmesh_testkit::{CommandCenter, NodeAgent, Reply, metric, text, wait_for};

const EVENTS: &str = "/api/agent/events";

fn node(n: u128) -> TestNode {
    TestNode::new(Uuid::from_u128(
        0xe7e7_0000_0000_4000_8000_0000_0000_0000 | n,
    ))
}

/// `n`, enrolled and known by a heartbeat (events are about nodes the Command Center knows).
fn known(cc: &CommandCenter, n: &TestNode) {
    let hb = vaultmesh_testkit::heartbeat_json(&n.id.to_string(), "h", 1);
    let r = n.post_heartbeat(&cc.url, &hb).unwrap();
    assert_eq!(r.status().as_u16(), 200);
}

/// `POST /api/agent/events` with `body`, signed by `n`, a fresh nonce in the path so identical
/// bodies are distinct requests.
fn post(cc: &CommandCenter, n: &TestNode, body: &serde_json::Value) -> Reply {
    let path = format!("{EVENTS}?nonce={:016x}", rand_nonce());
    Reply::from(
        n.signed(
            &cc.url,
            "POST",
            &path,
            Some("application/json"),
            serde_json::to_vec(body).unwrap(),
        )
        .send()
        .unwrap(),
    )
}

fn rand_nonce() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    N.fetch_add(1, Ordering::Relaxed)
}

fn error_of(r: &Reply) -> String {
    r.json()["error"].as_str().unwrap_or_default().to_string()
}

fn events_of(cc: &CommandCenter, node: Uuid) -> Vec<serde_json::Value> {
    cc.get_json(&format!("/api/events?node_id={node}&order=oldest"))
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn the_real_agent_posts_a_note_and_an_incident_about_itself() {
    let cc = CommandCenter::start_with(&["--attention-tick", "200ms"]);
    let agent = NodeAgent::new(&cc.url);
    let once = agent.run(&["run", "--once"]);
    assert!(once.status.success(), "{}", text(&once));
    let (id, _) = agent.identity();
    let author = format!("node:{id}");
    let sse = SseClient::connect(&format!("{}/events", cc.url), None);
    assert_eq!(sse.status, 200);

    let note = agent.run(&["event", "note", "--text", "rebooted for the kernel update"]);
    assert!(note.status.success(), "{}", text(&note));
    let note_id: Uuid = String::from_utf8_lossy(&note.stdout)
        .trim()
        .parse()
        .unwrap();
    let incident = agent.run(&[
        "event",
        "incident",
        "--title",
        "RAID degraded <md0>",
        "--severity",
        "critical",
        "--text",
        "sdb failed\nreplace it",
    ]);
    assert!(incident.status.success(), "{}", text(&incident));
    let incident_id: Uuid = String::from_utf8_lossy(&incident.stdout)
        .trim()
        .parse()
        .unwrap();

    // In the log, about this node, authored by it.
    let events = events_of(&cc, id);
    let by_id = |want: Uuid| {
        events
            .iter()
            .find(|e| e["id"] == want.to_string())
            .unwrap_or_else(|| panic!("{want} in {events:#?}"))
    };
    let n = by_id(note_id);
    assert_eq!(
        (
            n["kind"].as_str(),
            n["author"].as_str(),
            n["node_id"].as_str()
        ),
        (
            Some("note"),
            Some(author.as_str()),
            Some(id.to_string().as_str())
        )
    );
    assert_eq!(n["body"]["text"], "rebooted for the kernel update");
    let i = by_id(incident_id);
    assert_eq!(i["kind"], "incident");
    assert_eq!(i["author"], author.as_str());
    assert_eq!(i["body"]["severity"], "critical");
    assert_eq!(i["body"]["title"], "RAID degraded <md0>");

    // On the stream as an operator's would be, and the incident makes the node CRIT.
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let (kind, _, data) = sse
            .next_event(Duration::from_secs(10))
            .expect("the events on the stream");
        let v: serde_json::Value = serde_json::from_str(&data).unwrap_or_default();
        if v["author"] == author.as_str() {
            assert_eq!(v["kind"].as_str(), Some(kind.as_str()), "{data}");
            seen.push(kind);
        }
    }
    assert_eq!(seen, ["note", "incident"]);
    let crit = wait_for(Duration::from_secs(10), || {
        cc.listed("/api/attention", id)
            .filter(|row| row["attention"]["level"] == "crit")
    });
    assert!(crit.is_some(), "{:#?}", cc.get_json("/api/attention"));

    // The console's feed shows the node as author, its title escaped.
    let feed = cc.get("/console/feed");
    assert_eq!(feed.status, 200);
    assert!(feed.body.contains(&author), "{}", feed.body);
    assert!(
        feed.body.contains("RAID degraded &lt;md0&gt;"),
        "{}",
        feed.body
    );
    assert!(!feed.body.contains("<md0>"), "{}", feed.body);

    // Counted by kind.
    let metrics = cc.get("/metrics").body;
    assert_eq!(
        metric(&metrics, "vaultmesh_agent_events_total{kind=\"incident\"}"),
        Some(1.0)
    );

    // Bad input: exit 2 naming the argument, nothing sent.
    for (args, named) in [
        (
            vec!["event", "incident", "--title", " ", "--severity", "high"],
            "--title: must not be empty",
        ),
        (
            vec!["event", "incident", "--title", "x", "--severity", "hgih"],
            "did you mean \"high\"?",
        ),
        (
            vec!["event", "note", "--text", "bidi \u{202e} trick"],
            "--text: contains U+202E",
        ),
    ] {
        let out = agent.run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        assert!(text(&out).contains(named), "{args:?}: {}", text(&out));
    }
    let by_node = |events: &[serde_json::Value]| {
        events
            .iter()
            .filter(|e| e["author"] == author.as_str())
            .count()
    };
    assert_eq!(by_node(&events_of(&cc, id)), 2, "nothing more was sent");
    assert_eq!(by_node(&events), 2);

    // A node that never ran has no identity to post with: said, and none is made.
    let fresh = NodeAgent::new(&cc.url);
    let out = fresh.run(&["event", "note", "--text", "hello"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("no identity"), "{}", text(&out));
    assert!(!fresh.state_dir().join("node_id").exists());
}

#[test]
fn an_older_command_center_answering_404_is_named() {
    let fake = FakeCommandCenter::start();
    let agent = NodeAgent::new(&fake.url);
    let once = agent.run(&["run", "--once"]);
    assert!(once.status.success(), "{}", text(&once));
    let out = agent.run(&["event", "note", "--text", "hello"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("does not take events from nodes")
            && text(&out).contains("older than this agent"),
        "{}",
        text(&out)
    );
}

#[test]
fn a_node_posts_about_itself_only_and_only_notes_and_incidents() {
    // Room for every refusal below: the event rate has a test of its own.
    let cc =
        CommandCenter::start_with(&["--agent-event-rate", "600", "--agent-event-burst", "100"]);
    let (a, b) = (node(1), node(2));
    let note = serde_json::json!({"kind": "note", "body": {"text": "hi"}});
    // A node that has not sent a heartbeat yet is not one to post about.
    a.enroll(&cc.url);
    let r = post(&cc, &a, &note);
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(
        error_of(&r).contains("send one before events"),
        "{}",
        r.body
    );
    known(&cc, &a);
    known(&cc, &b);

    // Its own node, named or not, and its own author, named or not.
    for body in [
        note.clone(),
        serde_json::json!({"kind": "note", "node_id": a.id, "body": {"text": "named"}}),
        serde_json::json!({"kind": "note", "author": format!("node:{}", a.id), "body": {"text": "authored"}}),
    ] {
        let r = post(&cc, &a, &body);
        assert_eq!(r.status, 201, "{body}: {}", r.body);
        assert_eq!(r.json()["node_id"], a.id.to_string());
        assert_eq!(r.json()["author"], format!("node:{}", a.id));
    }

    // Another node: refused naming both.
    let r = post(
        &cc,
        &a,
        &serde_json::json!({"kind": "incident", "node_id": b.id, "body": {"title": "b is down"}}),
    );
    assert_eq!(r.status, 403, "{}", r.body);
    let e = error_of(&r);
    assert!(
        e.contains(&b.id.to_string()) && e.contains(&a.id.to_string()),
        "{e}"
    );
    // Another author: an operator's, or another node's.
    for claimed in ["ops@example.com".to_string(), format!("node:{}", b.id)] {
        let r = post(
            &cc,
            &a,
            &serde_json::json!({"kind": "note", "author": claimed, "body": {"text": "x"}}),
        );
        assert_eq!(r.status, 403, "{claimed}: {}", r.body);
        assert!(error_of(&r).contains("omit author"), "{}", r.body);
    }
    // Another kind: 422 naming it and the allowed ones.
    for kind in ["ack", "silence", "attention", "node_revoked"] {
        let r = post(
            &cc,
            &a,
            &serde_json::json!({"kind": kind, "refs": [Uuid::nil()], "body": {}}),
        );
        assert_eq!(r.status, 422, "{kind}: {}", r.body);
        let e = error_of(&r);
        assert!(
            e.contains(&format!("{kind:?}")) && e.contains("note or incident"),
            "{e}"
        );
    }
    // Deceptive or malformed bodies, as the operator route refuses them.
    for (body, want) in [
        (
            serde_json::json!({"kind": "incident", "body": {"title": "ok\u{202e}gnp.exe"}}),
            "U+202E",
        ),
        (
            serde_json::json!({"kind": "incident", "body": {"title": "x", "severity": "dire"}}),
            "unknown variant",
        ),
        (
            serde_json::json!({"kind": "note", "body": {"text": "x"}, "extra": 1}),
            "unknown field",
        ),
    ] {
        let r = post(&cc, &a, &body);
        assert_eq!(r.status, 422, "{body}: {}", r.body);
        assert!(error_of(&r).contains(want), "{}", r.body);
    }
    assert!(events_of(&cc, b.id).is_empty(), "nothing about b");

    // An operator cannot write an event that reads as a node's.
    let r = cc.post_json(
        "/api/events",
        &serde_json::json!({"kind": "note", "node_id": a.id, "author": format!("node:{}", a.id), "body": {"text": "forged"}}),
    );
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(error_of(&r).contains("reserved"), "{}", r.body);

    // Unsigned, replayed: 401.
    let r = cc.unsigned_request(
        "POST",
        EVENTS,
        Some("application/json"),
        serde_json::to_vec(&note).unwrap(),
    );
    assert_eq!(r.status, 401, "{}", r.body);
    let body = serde_json::to_vec(&note).unwrap();
    let path = format!("{EVENTS}?nonce=replay");
    let req = || {
        a.signed_at(
            &cc.url,
            "POST",
            &path,
            Some("application/json"),
            body.clone(),
            chrono::Utc::now().timestamp() - 30,
        )
    };
    assert_eq!(Reply::from(req().send().unwrap()).status, 201);
    let r = Reply::from(req().send().unwrap());
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(error_of(&r).contains("replayed request"), "{}", r.body);

    // Revoked: 401, as on every agent route.
    let r = cc.unsigned_request("POST", &format!("/api/nodes/{}/revoke", a.id), None, "");
    assert_eq!(r.status, 200, "{}", r.body);
    let r = post(&cc, &a, &note);
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(error_of(&r).contains("was revoked"), "{}", r.body);
    let authored = events_of(&cc, a.id)
        .iter()
        .filter(|e| e["author"] == format!("node:{}", a.id))
        .count();
    assert_eq!(
        authored, 4,
        "three bodies and the first of the replayed pair"
    );
}

#[test]
fn events_past_a_nodes_event_rate_are_429_on_top_of_its_request_rate() {
    let cc = CommandCenter::start_with(&["--agent-event-rate", "1", "--agent-event-burst", "3"]);
    let (a, b) = (node(11), node(12));
    known(&cc, &a);
    known(&cc, &b);
    let note = serde_json::json!({"kind": "note", "body": {"text": "flapping"}});
    for _ in 0..3 {
        assert_eq!(post(&cc, &a, &note).status, 201);
    }
    let r = post(&cc, &a, &note);
    assert_eq!(r.status, 429, "{}", r.body);
    let retry: u64 = r.json()["error"]
        .as_str()
        .and_then(|e| e.rsplit("retry in ").next())
        .and_then(|s| s.trim_end_matches(" s").parse().ok())
        .unwrap_or(0);
    assert!((1..=60).contains(&retry), "{}", r.body);
    assert!(error_of(&r).contains("--agent-event-rate"), "{}", r.body);
    // The Retry-After header: read off a raw refusal.
    let raw = a
        .signed(
            &cc.url,
            "POST",
            &format!("{EVENTS}?nonce=raw"),
            Some("application/json"),
            serde_json::to_vec(&note).unwrap(),
        )
        .send()
        .unwrap();
    assert_eq!(raw.status().as_u16(), 429);
    let header: u64 = raw.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&header), "{header}");

    // The node's other requests go on; another node has its own allowance.
    let hb = vaultmesh_testkit::heartbeat_json(&a.id.to_string(), "a", 2);
    assert_eq!(a.post_heartbeat(&cc.url, &hb).unwrap().status(), 200);
    assert_eq!(post(&cc, &b, &note).status, 201);

    let metrics = cc.get("/metrics").body;
    assert_eq!(
        metric(
            &metrics,
            "vaultmesh_requests_rejected_total{reason=\"event_rate_limited\",route=\"/api/agent/events\"}"
        ),
        Some(2.0),
        "{metrics}"
    );
    cc.wait_for_log(&["event_rate_limited"]);
}

/// An agent that pins the Command Center's key posts its event with a session MAC, as it sends
/// its heartbeats: the event verb uses the agent's whole configuration.
#[test]
fn a_pinned_agent_posts_its_event_with_a_session_mac() {
    let (cc, _keys, public) = vaultmesh_testkit::commanding_center(&[]);
    let agent = NodeAgent::new(&cc.url).env("VAULTMESH_CC_PUBKEY", &public);
    let once = agent.run(&["run", "--once"]);
    assert!(once.status.success(), "{}", text(&once));
    let (id, _) = agent.identity();
    let verified = |credential: &str| {
        metric(
            &cc.get("/metrics").body,
            &format!("vaultmesh_agent_requests_verified_total{{credential=\"{credential}\"}}"),
        )
        .unwrap_or(0.0)
    };
    let (macs, signatures) = (verified("mac"), verified("signature"));
    let out = agent.run(&["event", "note", "--text", "pinned"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(verified("mac"), macs + 1.0, "the event carried a MAC");
    assert_eq!(verified("signature"), signatures);
    let id_printed = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let events = events_of(&cc, id);
    let posted = events
        .iter()
        .find(|e| e["id"] == id_printed.as_str())
        .unwrap_or_else(|| panic!("{id_printed} in {events:#?}"));
    assert_eq!(posted["author"], format!("node:{id}"));
    assert_eq!(posted["body"]["text"], "pinned");
}

/// A node may hold at most 20 open incidents of its own: the next is 409 until an operator
/// resolves one (open incidents are kept and notified until resolved).
#[test]
fn a_node_holds_a_bounded_number_of_open_incidents_of_its_own() {
    let cc = CommandCenter::start_with(&[
        "--agent-event-rate",
        "100000",
        "--agent-event-burst",
        "1000",
    ]);
    let a = node(21);
    known(&cc, &a);
    let incident = |n: usize| serde_json::json!({"kind": "incident", "body": {"title": format!("disk error {n}"), "severity": "low"}});
    let mut first = None;
    for n in 0..20 {
        let r = post(&cc, &a, &incident(n));
        assert_eq!(r.status, 201, "{}", r.body);
        first.get_or_insert(r.json()["id"].as_str().unwrap().to_string());
    }
    let r = post(&cc, &a, &incident(20));
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(
        error_of(&r).contains("20 open incidents of its own"),
        "{}",
        r.body
    );
    // Notes go on; once an operator resolves one, the node may open another.
    let note = serde_json::json!({"kind": "note", "body": {"text": "still failing"}});
    assert_eq!(post(&cc, &a, &note).status, 201);
    let resolve =
        serde_json::json!({"kind": "resolve", "refs": [first.unwrap()], "author": "alice"});
    let r = cc.post_json("/api/events", &resolve);
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(post(&cc, &a, &incident(21)).status, 201);
}
