//! Node display names against the real binary (issue 25, node lifecycle): `POST
//! /api/nodes/{id}/rename` sets or clears the name an admin gives a node; it is logged as a
//! `node_renamed` event by its author, carried by `GET /api/nodes` and `/api/attention`, shown
//! (escaped, the hostname beside it) in the console, the overview and notifications, kept
//! across a restart; what it cannot take is refused with the field named.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::time::Duration;

use serde_json::{Value, json};
use uuid::Uuid;
use vaultmesh_testkit::access::{Certs, mint, user_claims};
use vaultmesh_testkit::auth::TestNode;
use vaultmesh_testkit::receiver::Receiver;
use vaultmesh_testkit::{CommandCenter, Reply, heartbeat_json, http};

const HOST: &str = "vault-node-01";
const NAME: &str = "Frankfurt edge 1";

fn beat(cc: &CommandCenter, node: &TestNode, host: &str, seq: u64, services_ok: bool) {
    let mut hb = heartbeat_json(&node.id.to_string(), host, seq);
    hb["services_ok"] = json!(services_ok);
    let r = node.post_heartbeat(&cc.url, &hb).unwrap();
    assert_eq!(r.status().as_u16(), 200);
}

fn rename(cc: &CommandCenter, id: Uuid, body: &str) -> Reply {
    cc.unsigned_request(
        "POST",
        &format!("/api/nodes/{id}/rename"),
        Some("application/json"),
        body,
    )
}

fn renames(cc: &CommandCenter, id: Uuid) -> Vec<Value> {
    let events = cc.get_json(&format!(
        "/api/events?node_id={id}&kind=node_renamed&order=oldest"
    ));
    events.as_array().unwrap().clone()
}

fn error(r: &Reply) -> String {
    r.json()["error"].as_str().unwrap_or_default().to_string()
}

/// The whole path: renamed, it is named so in the API, the console, the overview, its
/// attention and its notifications (hostname beside it); the event says who and what; a
/// restart keeps the name; cleared, the hostname is back, after a restart too.
#[test]
fn a_renamed_node_is_shown_by_its_name_everywhere_and_keeps_it_across_restarts() {
    let hook = Receiver::start();
    let (mut cc, _dir) = CommandCenter::start_notifying(&format!(
        "[notifiers.hook]\nkind = \"webhook\"\nurl = \"{}\"\n\
         [[routes]]\nname = \"oncall\"\nnotifier = \"hook\"\ngroup_window = \"1s\"\n",
        hook.url("/hook")
    ));
    let node = TestNode::new(Uuid::now_v7());
    let other = TestNode::new(Uuid::now_v7());
    beat(&cc, &node, HOST, 1, true);
    beat(&cc, &other, "vault-node-02", 1, true);
    // Today: no display name.
    assert!(cc.listed("/api/nodes", node.id).unwrap()["display_name"].is_null());

    let r = rename(
        &cc,
        node.id,
        &json!({"display_name": format!("  {NAME} ")}).to_string(),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let reply = r.json();
    assert_eq!(reply["display_name"], NAME, "trimmed: {reply:#}");
    assert_eq!(reply["event"]["kind"], "node_renamed");

    let row = cc.listed("/api/nodes", node.id).unwrap();
    assert_eq!(row["display_name"], NAME, "{row:#}");
    assert_eq!(row["hostname"], HOST, "the hostname stays");
    assert!(
        cc.listed("/api/nodes", other.id).unwrap()["display_name"].is_null(),
        "absent for a node without one"
    );
    let detail = cc.get_json(&format!("/api/nodes/{}", node.id));
    assert_eq!(detail["summary"]["display_name"], NAME, "{detail:#}");

    // The event: who, the names before and after, the hostname.
    let events = renames(&cc, node.id);
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["author"], "anonymous", "loopback without auth");
    assert_eq!(
        events[0]["body"],
        json!({"hostname": HOST, "previous": null, "display_name": NAME, "severity": "info"})
    );

    // The console's row (and its filter text) and the overview lead with the name, the
    // hostname beside it.
    let list = cc.get("/console/nodes").body;
    assert!(list.contains(&format!(r#"data-name="{NAME}""#)), "{list}");
    assert!(
        list.contains("frankfurt edge 1"),
        "the filter matches it: {list}"
    );
    assert!(
        list.contains(&format!(
            r#"<span class="display-name" data-display-name title="{HOST}">{NAME}</span>"#
        )),
        "{list}"
    );
    let panel = cc.get(&format!("/console/nodes/{}", node.id)).body;
    assert!(
        panel.contains(&format!(r#"value="{NAME}""#)),
        "the rename form: {panel}"
    );
    let overview = cc.get("/").body;
    assert!(
        overview.contains(NAME) && overview.contains(HOST),
        "{overview}"
    );
    let feed = cc.get("/console/feed").body;
    assert!(feed.contains(&format!("{NAME} ({HOST})")), "{feed}");

    // CRIT: its attention and its notification name it.
    beat(&cc, &node, HOST, 2, false);
    beat(&cc, &node, HOST, 3, false);
    let got = hook.wait_until(Duration::from_secs(15), |got| {
        got.iter().any(|m| m.body.contains("is CRIT"))
    });
    let told = got.iter().find(|m| m.body.contains("is CRIT")).unwrap();
    let alert = &told.json()["alerts"][0];
    assert_eq!(
        alert["title"].as_str().unwrap(),
        format!("{NAME} ({HOST}) is CRIT (was OK)"),
        "{alert:#}"
    );
    assert_eq!(alert["display_name"], NAME);
    assert_eq!(alert["hostname"], HOST);
    let row = cc.listed("/api/attention", node.id).unwrap();
    assert_eq!(row["display_name"], NAME, "{row:#}");
    let attention = cc.get("/console/attention").body;
    assert!(attention.contains(NAME), "{attention}");

    // A restart (replay of the events log) keeps it.
    cc.restart();
    let row = cc.listed("/api/nodes", node.id).unwrap();
    assert_eq!(row["display_name"], NAME, "after a restart: {row:#}");

    // Cleared (null), the node is its hostname again, after a restart too.
    let r = rename(&cc, node.id, r#"{"display_name": null}"#);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.json()["display_name"].is_null());
    assert!(cc.listed("/api/nodes", node.id).unwrap()["display_name"].is_null());
    let events = renames(&cc, node.id);
    assert_eq!(events.len(), 2, "{events:#?}");
    assert_eq!(events[1]["body"]["previous"], NAME);
    assert!(events[1]["body"]["display_name"].is_null());
    // An empty string clears too (nothing to clear now: a conflict says so).
    let r = rename(&cc, node.id, r#"{"display_name": "  "}"#);
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(error(&r).contains("no display name to clear"), "{}", r.body);
    cc.restart();
    assert!(cc.listed("/api/nodes", node.id).unwrap()["display_name"].is_null());
    assert!(!cc.get("/console/nodes").body.contains(NAME));
}

/// What the route refuses, each with the field and the reason; names are escaped wherever
/// they are shown; and the console's form without script.
#[test]
fn rename_refuses_what_it_cannot_take_and_escapes_what_it_shows() {
    let cc = CommandCenter::start();
    let node = TestNode::new(Uuid::now_v7());
    let retired = TestNode::new(Uuid::now_v7());
    beat(&cc, &node, HOST, 1, true);
    beat(&cc, &retired, "vault-node-old", 1, true);

    let long = "x".repeat(65);
    for (body, status, says) in [
        (
            json!({"display_name": long}).to_string(),
            422,
            "display_name is 65 characters; the limit is 64",
        ),
        (
            json!({"display_name": "edge\u{202e}1"}).to_string(),
            422,
            "display_name contains U+202E",
        ),
        (
            json!({"display_name": "edge\u{200b}1"}).to_string(),
            422,
            "display_name contains U+200B",
        ),
        (
            json!({"display_name": "edge\n1"}).to_string(),
            422,
            "display_name contains U+000A",
        ),
        ("{}".into(), 422, "missing field `display_name`"),
        (
            r#"{"display_name": "a", "name": "b"}"#.into(),
            422,
            "unknown field `name`",
        ),
        (r#"{"display_name": 7}"#.into(), 422, "display_name"),
        ("{".into(), 400, "malformed JSON"),
    ] {
        let r = rename(&cc, node.id, &body);
        assert_eq!(r.status, status, "{body}: {}", r.body);
        assert!(error(&r).contains(says), "{body}: {}", r.body);
    }
    // 64 characters (not bytes) pass.
    let at_limit = "é".repeat(64);
    let r = rename(&cc, node.id, &json!({"display_name": at_limit}).to_string());
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        renames(&cc, node.id).len() == 1,
        "only the accepted one is logged"
    );

    // No such node: 404; not a node id: 400.
    let r = rename(&cc, Uuid::now_v7(), r#"{"display_name": "x"}"#);
    assert_eq!(r.status, 404, "{}", r.body);
    let r = rename(&cc, Uuid::nil(), r#"{"display_name": "x"}"#);
    assert_eq!(r.status, 404, "{}", r.body);
    let r = cc.unsigned_request(
        "POST",
        "/api/nodes/vault-node-01/rename",
        Some("application/json"),
        r#"{"display_name": "x"}"#,
    );
    assert_eq!(r.status, 400, "{}", r.body);
    // The name it has already: 409, as a second decommission is.
    let r = rename(&cc, node.id, &json!({"display_name": at_limit}).to_string());
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(error(&r).contains("already named"), "{}", r.body);
    // A decommissioned node is out of the views: 409.
    let r = cc.unsigned_request(
        "POST",
        &format!("/api/nodes/{}/decommission", retired.id),
        Some("application/json"),
        "",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let r = rename(&cc, retired.id, r#"{"display_name": "x"}"#);
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(error(&r).contains("decommissioned"), "{}", r.body);
    assert!(renames(&cc, retired.id).is_empty());

    // Markup in a name is text, wherever it is shown.
    let evil = r#"<img src=x onerror=alert(1)>"#;
    let r = rename(&cc, node.id, &json!({"display_name": evil}).to_string());
    assert_eq!(r.status, 200, "{}", r.body);
    for path in [
        "/console/nodes".to_string(),
        format!("/console/nodes/{}", node.id),
        format!("/console?node={}", node.id),
        "/console/feed".to_string(),
        "/".to_string(),
    ] {
        let page = cc.get(&path).body;
        assert!(!page.contains("<img src=x"), "{path}: {page}");
        assert!(
            page.contains("&lt;img src=x onerror=alert(1)&gt;"),
            "{path}: {page}"
        );
    }

    // The console's form, as a browser without the script posts it.
    let client = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let form = |origin: &str, body: &str| {
        client
            .post(format!("{}/console/nodes/{}/rename", cc.url, node.id))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("origin", origin)
            .body(body.to_string())
            .send()
            .unwrap()
    };
    // Another site riding an admin's browser: refused, nothing done.
    let r = form("https://evil.example", "display_name=Hijacked");
    assert_eq!(r.status().as_u16(), 403);
    let r = form(&cc.url, "display_name=x&extra=1");
    assert_eq!(r.status().as_u16(), 400, "an unknown field");
    let r = form(&cc.url, "display_name=edge%E2%80%AE1");
    assert_eq!(r.status().as_u16(), 422);
    let body: Value = r.json().unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("display_name contains U+202E"),
        "{body}"
    );
    let r = form(&cc.url, "display_name=Frankfurt+edge+1");
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(
        r.headers()["location"],
        format!("/console?node={}", node.id).as_str()
    );
    let row = cc.listed("/api/nodes", node.id).unwrap();
    assert_eq!(row["display_name"], NAME);
    assert_eq!(renames(&cc, node.id).last().unwrap()["author"], "console");
    // An empty name clears it.
    let r = form(&cc.url, "display_name=");
    assert_eq!(r.status().as_u16(), 303);
    assert!(cc.listed("/api/nodes", node.id).unwrap()["display_name"].is_null());
    // A decommissioned node's panel offers no rename form.
    let panel = cc.get(&format!("/console/nodes/{}", retired.id)).body;
    assert!(!panel.contains("data-rename"), "{panel}");
}

/// Only an admin renames: without Access's assertion the route is refused (401) and nothing
/// is logged; signed in, the event's author is the Access identity, from the API and from the
/// console's form alike.
#[test]
fn only_a_signed_in_admin_renames_and_the_event_names_them() {
    let certs = Certs::start(&["k1"]);
    let cc = certs.command_center(&[]);
    let alice = mint("k1", &user_claims("alice@example.com"));
    let node = TestNode::new(Uuid::now_v7());
    beat(&cc, &node, HOST, 1, true);
    let post = |token: Option<&str>, body: &str| {
        let mut r = http()
            .post(format!("{}/api/nodes/{}/rename", cc.url, node.id))
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(t) = token {
            r = r.header("cf-access-jwt-assertion", t);
        }
        Reply::from(r.send().unwrap())
    };
    let r = post(None, r#"{"display_name": "Hijacked"}"#);
    assert_eq!(r.status, 401, "{}", r.body);
    let r = post(Some("not-a-token"), r#"{"display_name": "Hijacked"}"#);
    assert_eq!(r.status, 401, "{}", r.body);
    let r = post(Some(&alice), &json!({"display_name": NAME}).to_string());
    assert_eq!(r.status, 200, "{}", r.body);
    let events = http()
        .get(format!(
            "{}/api/events?node_id={}&kind=node_renamed",
            cc.url, node.id
        ))
        .header("cf-access-jwt-assertion", &alice)
        .send()
        .unwrap()
        .json::<Value>()
        .unwrap();
    assert_eq!(events.as_array().unwrap().len(), 1, "{events:#}");
    assert_eq!(events[0]["author"], "alice@example.com");
    assert_eq!(events[0]["body"]["display_name"], NAME);

    // The console's form, signed in as bob.
    let bob = mint("k1", &user_claims("bob@example.com"));
    let r = http()
        .post(format!("{}/console/nodes/{}/rename", cc.url, node.id))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("origin", &cc.url)
        .header("accept", "application/json")
        .header("cf-access-jwt-assertion", &bob)
        .body("display_name=Frankfurt+edge+2")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let reply: Value = r.json().unwrap();
    assert_eq!(reply["event"]["author"], "bob@example.com", "{reply:#}");
    assert_eq!(reply["event"]["body"]["previous"], NAME);
    assert_eq!(reply["display_name"], "Frankfurt edge 2");
}
