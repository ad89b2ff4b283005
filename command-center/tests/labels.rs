//! Node labels against the real binaries (issue 25): from the agent's config through its
//! heartbeats, from admins' `tag` events (which win for their key), in `GET /api/nodes` and the
//! console's list, across a restart, and matched by notification routes.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::time::Duration;

use serde_json::{Value, json};
use uuid::Uuid;
use vaultmesh_testkit::auth::TestNode;
use vaultmesh_testkit::receiver::{Received, Receiver};
use vaultmesh_testkit::{CommandCenter, NodeAgent, heartbeat_json, wait_for};

fn labels_of(cc: &CommandCenter, id: &str) -> Option<Value> {
    cc.get_json("/api/nodes")
        .as_array()?
        .iter()
        .find(|n| n["node_id"] == id)
        .map(|n| n["labels"].clone())
}

/// A CRIT heartbeat (services down, twice: flap damping raises after two) with `labels`.
fn crit_with(cc: &CommandCenter, node: &TestNode, host: &str, labels: &Value, seq: &mut u64) {
    for _ in 0..2 {
        *seq += 1;
        let mut hb = heartbeat_json(&node.id.to_string(), host, *seq);
        hb["services_ok"] = json!(false);
        hb["labels"] = labels.clone();
        let r = node.post_heartbeat(&cc.url, &hb).unwrap();
        assert_eq!(r.status().as_u16(), 200);
    }
}

fn naming(got: &[Received], host: &str) -> usize {
    got.iter().filter(|r| r.body.contains(host)).count()
}

#[test]
fn labels_from_the_agent_and_from_tags_reach_the_api_the_console_and_the_routes_that_match() {
    let hook = Receiver::start();
    let (mut cc, _dir) = CommandCenter::start_notifying(&format!(
        "[notifiers.fra]\nkind = \"webhook\"\nurl = \"{}\"\n\
             [notifiers.all]\nkind = \"webhook\"\nurl = \"{}\"\n\
             [[routes]]\nname = \"fra-oncall\"\nnotifier = \"fra\"\ngroup_window = \"1s\"\n\
             match_labels = {{ site = \"fra1\" }}\n\
             [[routes]]\nname = \"everyone\"\nnotifier = \"all\"\ngroup_window = \"1s\"\n",
        hook.url("/fra"),
        hook.url("/all")
    ));

    // The real agent sends its config's labels in every heartbeat.
    let agent = NodeAgent::new(&cc.url)
        .env("VAULTMESH_INTERVAL", "1s")
        .config("[agent]\nlabels = { site = \"fra1\", role = \"db\" }\n");
    let _daemon = agent.spawn(&["run"]);
    let id = wait_for(Duration::from_secs(30), || {
        let id = std::fs::read_to_string(agent.state_dir().join("node_id")).ok()?;
        let id = id.trim().to_string();
        labels_of(&cc, &id)?.is_object().then_some(id)
    })
    .expect("the agent reported its labels");
    assert_eq!(
        labels_of(&cc, &id).unwrap(),
        json!({"role": "db", "site": "fra1"})
    );
    let list = cc.get("/console/nodes").body;
    assert!(list.contains("site:fra1"), "{list}");

    // Bounded, ASCII-only labels: anything else is refused with the label named.
    let bad = TestNode::new(Uuid::now_v7());
    for (labels, says) in [
        (json!({"Site": "fra1"}), "\"Site\""),
        (json!({"site": "fra\u{202e}1"}), "\"site\""),
        (json!({"site": ""}), "is empty"),
    ] {
        let mut hb = heartbeat_json(&bad.id.to_string(), "bad", 1);
        hb["labels"] = labels;
        let r = bad.post_heartbeat(&cc.url, &hb).unwrap();
        assert_eq!(r.status().as_u16(), 422);
        let body: Value = r.json().unwrap();
        let error = body["error"].as_str().unwrap();
        assert!(error.contains(says), "{error}");
    }

    // Routes match labels: the fra1 route hears of the fra1 node only.
    let fra = TestNode::new(Uuid::now_v7());
    let ams = TestNode::new(Uuid::now_v7());
    let (mut s1, mut s2) = (0, 0);
    crit_with(&cc, &fra, "vault-fra", &json!({"site": "fra1"}), &mut s1);
    crit_with(&cc, &ams, "vault-ams", &json!({"site": "ams3"}), &mut s2);
    hook.wait_until(Duration::from_secs(15), |got| {
        let all: Vec<Received> = got.iter().filter(|r| r.path == "/all").cloned().collect();
        naming(&all, "vault-fra") > 0 && naming(&all, "vault-ams") > 0
    });
    std::thread::sleep(Duration::from_secs(2));
    let got: Vec<Received> = hook.received();
    let to_fra: Vec<Received> = got.iter().filter(|r| r.path == "/fra").cloned().collect();
    assert!(naming(&to_fra, "vault-fra") > 0, "{got:?}");
    assert_eq!(naming(&to_fra, "vault-ams"), 0, "{got:?}");

    // An admin's tag wins over the agent's label of the same key, and a later heartbeat does
    // not take it back.
    let r = cc.post_json(
        "/api/events",
        &json!({"kind": "tag", "node_id": ams.id, "author": "alice",
                "body": {"label": "site", "value": "fra1"}}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    crit_with(
        &cc,
        &ams,
        "vault-ams",
        &json!({"site": "ams3", "rack": "r2"}),
        &mut s2,
    );
    let ams_id = ams.id.to_string();
    assert_eq!(
        labels_of(&cc, &ams_id).unwrap(),
        json!({"rack": "r2", "site": "fra1"})
    );
    // A free-text tag is a note, not a label.
    let r = cc.post_json(
        "/api/events",
        &json!({"kind": "tag", "node_id": ams.id, "author": "alice",
                "body": {"label": "owner", "value": "the storage team"}}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(labels_of(&cc, &ams_id).unwrap().get("owner").is_none());

    // Both kinds survive a restart.
    cc.restart();
    assert_eq!(
        labels_of(&cc, &ams_id).unwrap(),
        json!({"rack": "r2", "site": "fra1"})
    );
    assert_eq!(labels_of(&cc, &id).unwrap()["site"], "fra1");
}
