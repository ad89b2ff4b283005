//! Node lifecycle against the real binary (issue 25): decommissioning a retired node takes it
//! out of the fleet's lists, attention and notifications, keeps its history in the logs, holds
//! across a restart, and re-admission brings it back.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::time::Duration;

use serde_json::{Value, json};
use uuid::Uuid;
use vaultmesh_testkit::auth::TestNode;
use vaultmesh_testkit::receiver::{Received, Receiver};
use vaultmesh_testkit::{CommandCenter, TEST_TOKEN, cc_command, heartbeat_json, text, wait_for};

const HOST: &str = "vault-node-retired";

/// Two heartbeats in a row with the services down: CRIT (flap damping raises after two).
fn services_down(cc: &CommandCenter, node: &TestNode, host: &str, seq: &mut u64) {
    for _ in 0..2 {
        *seq += 1;
        let mut hb = heartbeat_json(&node.id.to_string(), host, *seq);
        hb["services_ok"] = json!(false);
        let r = node.post_heartbeat(&cc.url, &hb).unwrap();
        assert_eq!(r.status().as_u16(), 200);
    }
}

/// The messages among `got` that name `host`.
fn about<'a>(got: &'a [Received], host: &str) -> Vec<&'a Received> {
    got.iter().filter(|r| r.body.contains(host)).collect()
}

fn admin(cc: &CommandCenter, args: &[&str]) -> String {
    let mut all = args.to_vec();
    all.extend_from_slice(&["--url", &cc.url]);
    let out = cc_command(&all);
    assert!(out.status.success(), "{args:?}: {}", text(&out));
    text(&out)
}

/// Issue 25: a retired node stayed CRIT and kept notifying (a repeat every interval) until
/// someone edited the logs. Decommissioned, it is quiet, out of every list, and stays so
/// across a restart; its history is still in the logs; re-admitted and enrolled again, it is back.
#[test]
fn a_decommissioned_node_stops_notifying_and_leaves_the_views_until_readmitted() {
    let hook = Receiver::start();
    let (mut cc, _dir) = CommandCenter::start_notifying(&format!(
        "retry_max = \"1s\"\n[notifiers.hook]\nkind = \"webhook\"\nurl = \"{}\"\n\
             [[routes]]\nname = \"oncall\"\nnotifier = \"hook\"\ngroup_window = \"1s\"\nrepeat_interval = \"2s\"\n",
        hook.url("/hook")
    ));
    let node = TestNode::new(Uuid::now_v7());
    let keeper = TestNode::new(Uuid::now_v7());
    let mut seq = 0;
    services_down(&cc, &node, HOST, &mut seq);
    let mut kseq = 0;
    services_down(&cc, &keeper, "vault-node-keeper", &mut kseq);
    // Today's behaviour, the reason for the item: CRIT, told, then told again.
    let got = hook.wait_until(Duration::from_secs(15), |got| about(got, HOST).len() >= 2);
    let told = about(&got, HOST);
    assert!(told.len() >= 2, "{got:?}");
    assert!(told[1].body.contains("still CRIT"), "{:?}", told[1]);

    let out = admin(
        &cc,
        &[
            "node",
            "decommission",
            HOST,
            "--reason",
            "replaced by vault-node-07",
        ],
    );
    assert!(out.contains("decommissioned vault-node-retired"), "{out}");
    let at_decommission = hook.received().len();

    // Out of the fleet's lists and attention, at once.
    assert!(cc.listed("/api/nodes", node.id).is_none());
    assert!(cc.listed("/api/nodes", keeper.id).is_some());
    let row = wait_for(Duration::from_secs(10), || {
        let row = cc.listed("/api/nodes?include=decommissioned", node.id)?;
        row["attention"]["reasons"]
            .as_array()?
            .is_empty()
            .then_some(row)
    })
    .expect("its attention has no reason left");
    assert_eq!(row["attention"]["level"], "ok", "{row:#}");
    assert_eq!(row["revoked"]["decommissioned"], true, "{row:#}");
    assert!(cc.listed("/api/attention", node.id).is_none());
    assert!(cc.listed("/api/attention", keeper.id).is_some());
    let fragment = cc.get("/console/nodes").body;
    assert!(!fragment.contains(&node.id.to_string()), "{fragment}");
    assert!(fragment.contains(&keeper.id.to_string()), "{fragment}");
    let kpis = cc.get("/console/kpis").body;
    assert!(kpis.contains(r#"data-kpi="total">1<"#), "{kpis}");
    assert!(!cc.get("/").body.contains(HOST), "the overview");
    // A typo in ?include= is refused with the near name.
    let r = cc.get("/api/nodes?include=decomissioned");
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("\"decommissioned\"")
    );

    // Its key is refused, like a revoked one's.
    let mut hb = heartbeat_json(&node.id.to_string(), HOST, seq + 1);
    hb["services_ok"] = json!(false);
    let r = node
        .signed(
            &cc.url,
            "POST",
            "/api/agent/heartbeat",
            Some("application/json"),
            serde_json::to_vec(&hb).unwrap(),
        )
        .send()
        .unwrap();
    assert_eq!(
        r.status().as_u16(),
        401,
        "a decommissioned node's heartbeat"
    );

    // Quiet: no recovery message for it, and no repeat (every 2 s before), while the other
    // CRIT node keeps being told.
    std::thread::sleep(Duration::from_secs(6));
    let after: Vec<Received> = hook.received().into_iter().skip(at_decommission).collect();
    assert!(about(&after, HOST).is_empty(), "{after:?}");
    assert!(!about(&after, "vault-node-keeper").is_empty(), "{after:?}");

    // Its history stays: the API and `logs view` list its events, the decommission last.
    let events = cc.get_json(&format!("/api/events?node_id={}&order=oldest", node.id));
    let kinds: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"attention"), "{kinds:?}");
    let d = events
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "node_decommissioned")
        .expect("the decommission is logged");
    assert_eq!(d["body"]["reason"], "replaced by vault-node-07");
    assert_eq!(d["author"], "anonymous");
    let out = cc_command(&[
        "logs",
        "view",
        "--node",
        &node.id.to_string(),
        "--log-dir",
        cc.log_dir().to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let shown = text(&out);
    assert!(shown.contains("node_decommissioned"), "{shown}");
    assert!(shown.contains("heartbeat"), "{shown}");

    // A restart (replay) keeps it decommissioned and quiet.
    cc.restart();
    assert!(cc.listed("/api/nodes", node.id).is_none());
    let row = cc
        .listed("/api/nodes?include=decommissioned", node.id)
        .unwrap();
    assert_eq!(row["revoked"]["decommissioned"], true, "{row:#}");
    std::thread::sleep(Duration::from_secs(4));
    let after: Vec<Received> = hook.received().into_iter().skip(at_decommission).collect();
    assert!(about(&after, HOST).is_empty(), "{after:?}");

    // Re-admitted (named by its hostname: the CLI finds decommissioned nodes too), it enrolls
    // with a new key and is back in the fleet.
    let out = admin(&cc, &["node", "readmit", HOST]);
    assert!(out.contains("re-admitted"), "{out}");
    assert!(
        cc.listed("/api/nodes", node.id).is_none(),
        "not before it enrolls"
    );
    let back = TestNode::with_key(node.id, 1);
    assert_eq!(back.enroll_with(&cc.url, TEST_TOKEN), 200);
    let r = back
        .post_heartbeat(
            &cc.url,
            &heartbeat_json(&node.id.to_string(), HOST, seq + 2),
        )
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let row = cc.listed("/api/nodes", node.id).expect("back in the fleet");
    assert!(row.get("revoked").is_none(), "{row:#}");
    assert!(cc.get("/console/nodes").body.contains(&node.id.to_string()));
}

/// The API's and the console form's refusals, and the console form without script.
#[test]
fn decommission_refuses_what_it_cannot_do_and_the_console_form_needs_its_confirmation() {
    let cc = CommandCenter::start();
    let a = TestNode::new(Uuid::now_v7());
    let b = TestNode::new(Uuid::now_v7());
    for n in [&a, &b] {
        let r = n
            .post_heartbeat(&cc.url, &heartbeat_json(&n.id.to_string(), "h", 1))
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
    }
    let post = |path: String, body: &str| {
        cc.unsigned_request("POST", &path, Some("application/json"), body)
    };
    let error = |r: &vaultmesh_testkit::Reply| r.json()["error"].as_str().unwrap().to_string();
    let r = post(format!("/api/nodes/{}/decommission", Uuid::now_v7()), "");
    assert_eq!(r.status, 404, "{}", r.body);
    let r = post(
        format!("/api/nodes/{}/decommission", a.id),
        r#"{"allow_old_key": true}"#,
    );
    assert_eq!(r.status, 422, "{}", r.body);
    let r = post(
        format!("/api/nodes/{}/decommission", a.id),
        r#"{"reson": "x"}"#,
    );
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(error(&r).contains("reason"), "the near name: {}", r.body);
    let r = post(
        format!("/api/nodes/{}/decommission", a.id),
        r#"{"reason": "bad\u202eidea"}"#,
    );
    assert_eq!(r.status, 422, "{}", r.body);
    // A revoked node may be decommissioned; a decommissioned one not again.
    assert_eq!(post(format!("/api/nodes/{}/revoke", a.id), "").status, 200);
    let r = post(format!("/api/nodes/{}/decommission", a.id), "");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["state"], "decommissioned");
    assert_eq!(r.json()["event"]["kind"], "node_decommissioned");
    let r = post(format!("/api/nodes/{}/decommission", a.id), "");
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(error(&r).contains("already decommissioned"), "{}", r.body);
    let r = post(format!("/api/nodes/{}/revoke", a.id), "");
    assert_eq!(r.status, 409, "{}", r.body);

    // The console's form, as a browser without the script posts it.
    let http = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let form = |origin: &str, body: &str| {
        http.post(format!("{}/console/nodes/{}/decommission", cc.url, b.id))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("origin", origin)
            .body(body.to_string())
            .send()
            .unwrap()
    };
    // Without "I understand" ticked: refused, nothing done.
    let r = form(&cc.url, "reason=old");
    assert_eq!(r.status().as_u16(), 422);
    let body: Value = r.json().unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("I understand"),
        "{body}"
    );
    let r = form(&cc.url, "reason=old&confirm=yes&extra=1");
    assert_eq!(r.status().as_u16(), 400, "an unknown field");
    // Another site riding an admin's browser: refused.
    let r = form("https://evil.example", "confirm=yes");
    assert_eq!(r.status().as_u16(), 403);
    assert!(cc.listed("/api/nodes", b.id).is_some());
    // Ticked: done, and back to the console, which no longer lists it.
    let r = form(&cc.url, "reason=old+rack&confirm=yes");
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(r.headers()["location"], "/console");
    assert!(cc.listed("/api/nodes", b.id).is_none());
    let events = cc.get_json(&format!(
        "/api/events?node_id={}&kind=node_decommissioned",
        b.id
    ));
    assert_eq!(events[0]["body"]["reason"], "old rack");
    assert_eq!(events[0]["author"], "console");
    // Its panel still opens (from a link in the logs), and says what happened.
    let panel = cc.get(&format!("/console/nodes/{}", b.id));
    assert_eq!(panel.status, 200);
    assert!(panel.body.contains("data-decommissioned"), "{}", panel.body);
    assert!(
        !panel
            .body
            .contains(&format!("/console/nodes/{}/decommission", b.id)),
        "no second form"
    );
}
