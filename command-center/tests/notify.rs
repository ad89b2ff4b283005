//! Notifications with the real binary and real receivers: an HTTP server capturing webhook and
//! ntfy posts, and a real SMTP server (aiosmtpd) that requires STARTTLS. Grouping, repeats,
//! silences, flapping, retry after the receiver comes back, nothing lost across a restart,
//! `notify test`, and secrets kept out of the API and the console.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::time::Duration;

use serde_json::{Value, json};
use uuid::Uuid;
use vaultmesh_testkit::auth::TestNode;
use vaultmesh_testkit::receiver::{Received, Receiver};
use vaultmesh_testkit::smtp::SmtpSink;
use vaultmesh_testkit::{CommandCenter, cc_command, heartbeat_json, metric, text, wait_for};

const SECRET: &str = "hunter2-webhook-secret";

/// A CC with `--notify-config` holding `toml`; returns it with the config's dir.
fn cc_with(toml: &str) -> (CommandCenter, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.toml");
    std::fs::write(&path, toml).unwrap();
    let cc = CommandCenter::start_with(&[
        "--notify-config",
        path.to_str().unwrap(),
        "--attention-tick",
        "200ms",
    ]);
    (cc, dir)
}

/// Two heartbeats in a row with the services down (CRIT; flap damping raises after two), or
/// back up.
fn services(cc: &CommandCenter, node: &TestNode, host: &str, up: bool, seq: &mut u64) {
    for _ in 0..2 {
        *seq += 1;
        let mut hb = heartbeat_json(&node.id.to_string(), host, *seq);
        hb["services_ok"] = json!(up);
        let r = node.post_heartbeat(&cc.url, &hb).unwrap();
        assert_eq!(r.status().as_u16(), 200);
    }
}

/// A file with one webhook notifier `hook` (to `receiver`) and one route `oncall` to it;
/// `top` and `route` are extra lines for the file and the route.
fn hook_config(receiver: &Receiver, top: &str, route: &str) -> String {
    format!(
        "{top}\n[notifiers.hook]\nkind = \"webhook\"\nurl = \"{}\"\n[[routes]]\nname = \"oncall\"\nnotifier = \"hook\"\n{route}\n",
        receiver.url("/hook")
    )
}

fn alerts(r: &Received) -> Vec<Value> {
    r.json()["alerts"].as_array().cloned().unwrap_or_default()
}

#[test]
fn attention_changes_reach_webhook_slack_ntfy_and_mail_grouped_with_reasons_and_links() {
    let hook = Receiver::start();
    let smtp = SmtpSink::start();
    let secret_dir = tempfile::tempdir().unwrap();
    let url_file = secret_dir.path().join("hook");
    std::fs::write(&url_file, hook.url(&format!("/json/{SECRET}"))).unwrap();
    let config = format!(
        r#"
console_url = "https://cc.example.com"

[notifiers.json]
kind = "webhook"
url_file = "{url_file}"

[notifiers.chat]
kind = "webhook"
url = "{chat}"
format = "slack"

[notifiers.phone]
kind = "ntfy"
url = "{ntfy}"
token = "{SECRET}"

[notifiers.mail]
kind = "email"
server = "127.0.0.1"
port = {smtp_port}
ca_file = "{ca}"
from = "VaultMesh <cc@example.com>"
to = ["ops@example.com"]

[[routes]]
name = "all-json"
notifier = "json"
group_window = "2s"

[[routes]]
name = "chat"
notifier = "chat"
group_window = "1s"

[[routes]]
name = "phone-crit"
notifier = "phone"
min_level = "crit"
group_window = "1s"

[[routes]]
name = "mail"
notifier = "mail"
group_window = "1s"
"#,
        url_file = url_file.display(),
        chat = hook.url("/chat"),
        ntfy = hook.url("/vaultmesh-alerts"),
        smtp_port = smtp.port,
        ca = smtp.ca_file().display(),
    );
    let (cc, _dir) = cc_with(&config);
    let (a, b) = (TestNode::new(Uuid::now_v7()), TestNode::new(Uuid::now_v7()));
    let (mut sa, mut sb) = (0, 0);
    services(&cc, &a, "vault-node-a", false, &mut sa);
    services(&cc, &b, "vault-node-b", false, &mut sb);

    // The JSON route: one message for both nodes (grouped), each alert with its node, level,
    // reasons and a link to the console.
    let has = |got: &[Received], path: &str| got.iter().any(|r| r.path.starts_with(path));
    let got = hook.wait_until(Duration::from_secs(15), |g| {
        has(g, "/json/") && has(g, "/chat") && has(g, "/vaultmesh-alerts")
    });
    let json: Vec<&Received> = got
        .iter()
        .filter(|r| r.path.starts_with("/json/"))
        .collect();
    assert_eq!(json.len(), 1, "{got:?}");
    let body = json[0].json();
    assert_eq!(body["version"], 1);
    assert_eq!(body["route"], "all-json");
    let list = alerts(json[0]);
    assert_eq!(list.len(), 2, "{body}");
    for alert in &list {
        assert_eq!(alert["kind"], "attention");
        assert_eq!(alert["level"], "crit");
        assert_eq!(alert["previous"], "ok");
        let node = alert["node_id"].as_str().unwrap();
        assert_eq!(
            alert["link"],
            format!("https://cc.example.com/console?node={node}")
        );
        assert!(
            alert["reasons"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["rule"] == "services"),
            "{alert}"
        );
    }
    assert!(
        body["text"]
            .as_str()
            .unwrap()
            .contains("vault-node-a is CRIT (was OK)")
    );

    // Slack/Mattermost: {"text"}; ntfy: priority 5, a title, the token as bearer.
    let chat: Vec<&Received> = got.iter().filter(|r| r.path == "/chat").collect();
    assert!(!chat.is_empty());
    assert!(chat[0].json()["text"].as_str().unwrap().contains("CRIT"));
    let ntfy: Vec<&Received> = got
        .iter()
        .filter(|r| r.path == "/vaultmesh-alerts")
        .collect();
    assert!(!ntfy.is_empty());
    assert_eq!(ntfy[0].headers["priority"], "5");
    assert_eq!(ntfy[0].headers["authorization"], format!("Bearer {SECRET}"));
    assert!(ntfy[0].headers["title"].contains("CRIT"));
    assert!(
        ntfy[0]
            .body
            .contains("https://cc.example.com/console?node=")
    );

    // Mail through STARTTLS.
    let mails = smtp.wait_for(1, Duration::from_secs(15));
    assert!(
        mails.iter().all(|m| m.contains("Message-ID: <")),
        "{mails:?}"
    );
    assert!(!mails.is_empty(), "no mail arrived");
    assert!(mails[0].contains("Subject: [VaultMesh]"), "{}", mails[0]);
    assert!(mails[0].contains("vault-node-"), "{}", mails[0]);
    assert!(
        mails[0].contains("https://cc.example.com/console?node="),
        "{}",
        mails[0]
    );

    // Recovery goes to the routes that were told.
    services(&cc, &a, "vault-node-a", true, &mut sa);
    let again = hook.wait_until(Duration::from_secs(15), |g| {
        g.iter()
            .any(|r| r.body.contains("vault-node-a is OK again (was CRIT)"))
    });
    assert!(
        again
            .iter()
            .any(|r| r.body.contains("vault-node-a is OK again (was CRIT)")),
        "{again:?}"
    );

    // Health is visible, and no secret is.
    let health = cc.get("/api/notifiers");
    assert_eq!(health.status, 200);
    assert!(health.json()["notifiers"]["json"]["sent"].as_u64().unwrap() >= 1);
    for page in [
        health.body,
        cc.get("/console").body,
        cc.get("/metrics").body,
    ] {
        assert!(!page.contains(SECRET), "a secret leaked: {page}");
    }
}

#[test]
fn repeats_stop_under_a_silence_and_a_receiver_that_comes_back_gets_what_waited() {
    let hook = Receiver::start();
    let config = hook_config(
        &hook,
        "retry_max = \"1s\"",
        "group_window = \"1s\"\nrepeat_interval = \"2s\"",
    );
    let (cc, _dir) = cc_with(&config);
    let node = TestNode::new(Uuid::now_v7());
    let mut seq = 0;
    services(&cc, &node, "vault-node-r", false, &mut seq);
    // The first message, then "still CRIT" again after the interval.
    let got = hook.wait_for(2, Duration::from_secs(15));
    assert!(got.len() >= 2, "{got:?}");
    assert!(alerts(&got[1])[0]["kind"] == "repeat", "{:?}", got[1]);
    assert!(
        alerts(&got[1])[0]["title"]
            .as_str()
            .unwrap()
            .contains("still CRIT")
    );

    // A silence lowers the level: repeats stop.
    let r = cc.post_json(
        "/api/events",
        &json!({"kind": "silence", "node_id": node.id, "author": "alice",
                "body": {"rule": "services", "until_resolved": true, "text": "working on it"}}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    std::thread::sleep(Duration::from_secs(2));
    let settled = hook.received().len();
    std::thread::sleep(Duration::from_secs(5));
    let after: Vec<Received> = hook.received().into_iter().skip(settled).collect();
    assert!(
        after
            .iter()
            .all(|r| alerts(r).iter().all(|a| a["kind"] != "repeat")),
        "repeated under a silence: {after:?}"
    );

    // The receiver fails: the message waits, the notifier shows as failing (API, metrics,
    // console), and arrives once the receiver is back.
    hook.set_status(503);
    let other = TestNode::new(Uuid::now_v7());
    let mut s2 = 0;
    services(&cc, &other, "vault-node-down", false, &mut s2);
    let failing = wait_for(Duration::from_secs(15), || {
        let h = cc.get_json("/api/notifiers");
        (h["notifiers"]["hook"]["consecutive_failures"].as_u64()? > 0).then_some(h)
    })
    .expect("the notifier is reported failing");
    assert!(failing["pending"].as_u64().unwrap() >= 1);
    let m = cc.get("/metrics").body;
    assert_eq!(
        metric(&m, "vaultmesh_notifier_failing{notifier=\"hook\"}"),
        Some(1.0)
    );
    assert!(cc.get("/console/kpis").body.contains("notifier"));
    let before = hook.received().len();
    hook.set_status(200);
    let back = hook.wait_for(before + 1, Duration::from_secs(15));
    assert!(
        back.iter()
            .skip(before)
            .any(|r| r.body.contains("vault-node-down")),
        "{back:?}"
    );
}

#[test]
fn nothing_queued_or_grouped_is_lost_across_a_restart() {
    let hook = Receiver::start();
    let config = hook_config(&hook, "retry_max = \"1s\"", "group_window = \"5s\"");
    let (mut cc, _dir) = cc_with(&config);
    // An alert still in its group window when the process dies (kill -9) is sent after.
    let grouped = TestNode::new(Uuid::now_v7());
    let mut s = 0;
    services(&cc, &grouped, "vault-node-grouped", false, &mut s);
    let queue_file = cc.log_dir().join("notify-queue.jsonl");
    wait_for(Duration::from_secs(5), || {
        let text = std::fs::read_to_string(&queue_file).ok()?;
        text.contains("\"op\":\"grouped\"").then_some(())
    })
    .expect("the alert is on disk, waiting in its group");
    assert!(hook.received().is_empty(), "sent before the window closed");
    cc.restart();
    let got = hook.wait_for(1, Duration::from_secs(15));
    assert!(
        got.iter().any(|r| r.body.contains("vault-node-grouped")),
        "{got:?}"
    );

    // A queued message the receiver refused is sent once it is back, after a restart.
    hook.set_status(503);
    let queued = TestNode::new(Uuid::now_v7());
    let mut s = 0;
    services(&cc, &queued, "vault-node-queued", false, &mut s);
    wait_for(Duration::from_secs(15), || {
        let h = cc.get_json("/api/notifiers");
        (h["pending"].as_u64()? >= 1).then_some(())
    })
    .expect("the message is queued");
    cc.restart();
    hook.set_status(200);
    let got = hook.wait_for(2, Duration::from_secs(15));
    assert!(
        got.iter().any(|r| r.body.contains("vault-node-queued")),
        "{got:?}"
    );

    // Each sent once, not again after another restart.
    cc.restart();
    std::thread::sleep(Duration::from_secs(4));
    for host in ["vault-node-grouped", "vault-node-queued"] {
        let sent = hook
            .received()
            .into_iter()
            .filter(|r| r.body.contains(host))
            .count();
        assert_eq!(sent, 1, "{host}");
    }
}

#[test]
fn a_flapping_node_is_reported_once_and_its_changes_are_held() {
    let hook = Receiver::start();
    let config = hook_config(
        &hook,
        "flap_changes = 2\nflap_window = \"6s\"",
        "group_window = \"1s\"",
    );
    let (cc, _dir) = cc_with(&config);
    let node = TestNode::new(Uuid::now_v7());
    let mut s = 0;
    for up in [false, true, false, true, false] {
        services(&cc, &node, "vault-node-flap", up, &mut s);
        std::thread::sleep(Duration::from_millis(400));
    }
    // Two changes are told, the third is reported as flapping, the rest are held; once the
    // node has been stable for the window, its settled level is sent.
    let got = hook.wait_until(Duration::from_secs(20), |g| {
        g.iter().any(|r| r.body.contains("stopped flapping"))
    });
    let all: Vec<Value> = got.iter().flat_map(alerts).collect();
    let kinds: Vec<&str> = all.iter().map(|a| a["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["attention", "attention", "flapping", "attention"],
        "{all:?}"
    );
    let settled = &all[3];
    assert!(
        settled["title"]
            .as_str()
            .unwrap()
            .contains("stopped flapping; it is CRIT")
    );
}

#[test]
fn notify_test_sends_through_a_route_and_bad_input_is_one_line_exit_2() {
    let hook = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.toml");
    std::fs::write(&path, hook_config(&hook, "", "")).unwrap();
    let p = path.to_str().unwrap();
    let out = cc_command(&["notify", "test", "oncall", "--notify-config", p]);
    assert!(out.status.success(), "{}", text(&out));
    let got = hook.wait_for(1, Duration::from_secs(5));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].json()["test"], true);
    assert!(
        got[0].json()["subject"]
            .as_str()
            .unwrap()
            .starts_with("[test]")
    );
    let out = cc_command(&["notify", "check", "--notify-config", p]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("oncall → hook"), "{}", text(&out));

    // An unknown route; a bad key; a receiver that fails.
    let out = cc_command(&["notify", "test", "nope", "--notify-config", p]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("no route \"nope\"; routes: oncall"),
        "{}",
        text(&out)
    );
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[notifiers.x]\nkind = \"webhook\"\nurl = \"http://x\"\nproxy = 1\n",
    )
    .unwrap();
    let out = cc_command(&["notify", "check", "--notify-config", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml") && err.contains("notifiers.x") && err.contains("proxy"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    hook.set_status(500);
    let out = cc_command(&["notify", "test", "oncall", "--notify-config", p]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("500"), "{}", text(&out));

    // serve refuses a bad file.
    let out = cc_command(&[
        "serve",
        "--log-dir",
        dir.path().join("logs").to_str().unwrap(),
        "--notify-config",
        bad.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[test]
fn incidents_and_receipt_chain_breaks_are_sent() {
    let hook = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.toml");
    std::fs::write(&path, hook_config(&hook, "", "group_window = \"1s\"")).unwrap();
    let (key, _) = vaultmesh_testkit::keygen(dir.path());
    let policies = vaultmesh_testkit::workspace_root().join("policies");
    let cc = CommandCenter::start_with(&[
        "--notify-config",
        path.to_str().unwrap(),
        "--signing-key",
        &key,
        "--policy-dir",
        policies.to_str().unwrap(),
    ]);
    let node = TestNode::new(Uuid::now_v7());
    let r = node
        .post_heartbeat(
            &cc.url,
            &heartbeat_json(&node.id.to_string(), "vault-node-i", 1),
        )
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);

    // An incident opened, then resolved.
    let r = cc.post_json(
        "/api/events",
        &json!({"kind": "incident", "node_id": node.id, "author": "ops",
                "body": {"title": "disk full", "severity": "critical"}}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let incident = r.json()["id"].as_str().unwrap().to_string();
    let opened = hook.wait_until(Duration::from_secs(10), |g| {
        g.iter().any(|r| {
            r.body
                .contains("Incident opened on vault-node-i: disk full")
        })
    });
    let alert = opened
        .iter()
        .flat_map(alerts)
        .find(|a| a["kind"] == "incident")
        .unwrap();
    assert_eq!(alert["level"], "crit");
    let r = cc.post_json(
        "/api/events",
        &json!({"kind": "resolve", "refs": [incident], "author": "ops", "body": {"text": "cleaned up"}}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let resolved = hook.wait_until(Duration::from_secs(10), |g| {
        g.iter().any(|r| {
            r.body
                .contains("Incident resolved on vault-node-i: disk full")
        })
    });
    assert!(!resolved.is_empty());

    // A fleet-wide incident (as a ledger tamper alarm opens), resolved.
    let r = cc.post_json(
        "/api/events",
        &json!({"kind": "incident", "author": "ops",
                "body": {"title": "ledger tamper alarm", "severity": "critical"}}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let fleet = r.json()["id"].as_str().unwrap().to_string();
    let r = cc.post_json(
        "/api/events",
        &json!({"kind": "resolve", "refs": [fleet], "author": "ops", "body": {"text": "restored"}}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let got = hook.wait_until(Duration::from_secs(10), |g| {
        g.iter().any(|r| {
            r.body
                .contains("Incident resolved on the fleet: ledger tamper alarm")
        })
    });
    assert!(got.iter().any(|r| {
        r.body
            .contains("Incident opened on the fleet: ledger tamper alarm")
    }));

    // A receipt that does not follow the node's chain.
    let r = cc.post_json(
        "/api/commands",
        &json!({"node_id": node.id, "action": "agent.ping", "args": {}, "issued_by": "test"}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let command: Uuid = r.json()["command"]["command_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let forged = node.pong_receipt(command, Some("00".repeat(32)));
    let r = node.post_receipt(&cc.url, forged, &node.key).unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let broke = hook.wait_until(Duration::from_secs(10), |g| {
        g.iter()
            .flat_map(alerts)
            .any(|a| a["kind"] == "chain_break")
    });
    let alert = broke
        .iter()
        .flat_map(alerts)
        .find(|a| a["kind"] == "chain_break")
        .unwrap();
    assert_eq!(alert["level"], "crit");
    assert!(alert["title"].as_str().unwrap().contains("vault-node-i"));
}

#[test]
fn mail_is_never_sent_to_a_server_that_will_not_start_tls() {
    let smtp = SmtpSink::start_plain();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.toml");
    std::fs::write(
        &path,
        format!(
            "[notifiers.mail]\nkind = \"email\"\nserver = \"127.0.0.1\"\nport = {}\nfrom = \"cc@example.com\"\nto = \"ops@example.com\"\n[[routes]]\nname = \"mail\"\nnotifier = \"mail\"\n",
            smtp.port
        ),
    )
    .unwrap();
    let out = cc_command(&[
        "notify",
        "test",
        "mail",
        "--notify-config",
        path.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(smtp.mails().is_empty(), "a mail went out unencrypted");
    // tls = "none" is refused for anything but a relay on this machine.
    std::fs::write(
        &path,
        "[notifiers.mail]\nkind = \"email\"\nserver = \"smtp.example.com\"\ntls = \"none\"\nfrom = \"cc@example.com\"\nto = \"ops@example.com\"\n",
    )
    .unwrap();
    let out = cc_command(&["notify", "check", "--notify-config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("only to a relay on this machine"),
        "{}",
        text(&out)
    );
}

/// A route naming a rule or a profile that does not exist would never fire: `notify check` and
/// `serve` refuse it in one line, with the near name.
#[test]
fn routes_naming_an_unknown_rule_or_profile_are_refused_with_the_near_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.toml");
    let p = path.to_str().unwrap();
    let write = |route: &str| {
        std::fs::write(
            &path,
            format!(
                "[notifiers.hook]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:9/\"\n\n\
                 [[routes]]\nname = \"chat\"\nnotifier = \"hook\"\n{route}\n"
            ),
        )
        .unwrap();
    };
    let policies = tempfile::tempdir().unwrap();
    std::fs::write(policies.path().join("LabVault.toml"), "").unwrap();
    let pol = policies.path().to_str().unwrap();
    for (route, extra, want) in [
        (
            "rules = [\"stale\", \"check\"]",
            &[][..],
            "notify.toml: routes[0] (chat): rules[1]: no attention rule \"check\"; did you mean \"check.\"?",
        ),
        (
            "rules = [\"tunel\"]",
            &[],
            "routes[0] (chat): rules[0]: no attention rule \"tunel\"; did you mean \"tunnel\"?",
        ),
        (
            "profiles = [\"archvault\"]",
            &[],
            "routes[0] (chat): profiles[0]: no policy file for profile \"archvault\"; did you mean \"ArchVault\"?; profiles: ArchVault, DebianVault, Generic",
        ),
        (
            "profiles = [\"LabVault\"]",
            &[],
            "routes[0] (chat): profiles[0]: no policy file for profile \"LabVault\"; profiles: ArchVault, DebianVault, Generic",
        ),
        (
            "profiles = [\"labvault\"]",
            &["--policy-dir", pol][..],
            "profiles[0]: no policy file for profile \"labvault\"; did you mean \"LabVault\"?; profiles: ArchVault, DebianVault, Generic, LabVault",
        ),
    ] {
        write(route);
        let mut args = vec!["notify", "check", "--notify-config", p];
        args.extend_from_slice(extra);
        let out = cc_command(&args);
        assert_eq!(out.status.code(), Some(2), "{route}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{route}: {err}");
        assert!(err.contains(want), "{route}: got {err}, want {want}");
    }

    // Families, members of open families and profiles with a policy file are fine.
    write(
        "rules = [\"check.\", \"check.disk\", \"scan.\", \"required_service.sshd.service\"]\n\
         profiles = [\"ArchVault\", \"LabVault\"]",
    );
    let out = cc_command(&["notify", "check", "--notify-config", p, "--policy-dir", pol]);
    assert!(out.status.success(), "{}", text(&out));

    // serve refuses what notify check refuses, before it opens the log.
    write("profiles = [\"archvault\"]");
    let out = cc_command(&[
        "serve",
        "--log-dir",
        dir.path().join("logs").to_str().unwrap(),
        "--notify-config",
        p,
        "--policy-dir",
        pol,
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("did you mean \"ArchVault\"?"),
        "{}",
        text(&out)
    );
}

/// Issue 22: "an incident of severity `high` or worse makes its node CRIT" is written once
/// (`vaultmesh_proto::event::incident_level`). An incident posted without a severity is `high`,
/// the documented default, and made its node CRIT — but its notification said ATTN, because
/// the notification engine read the severity out of the JSON body by itself.
#[test]
fn an_incident_is_notified_at_the_level_it_gives_its_node() {
    let hook = Receiver::start();
    let (cc, _dir) = cc_with(&hook_config(&hook, "", "group_window = \"1s\""));
    let node = TestNode::new(Uuid::now_v7());
    let hb = heartbeat_json(&node.id.to_string(), "vault-node-s", 1);
    assert_eq!(node.post_heartbeat(&cc.url, &hb).unwrap().status(), 200);
    for (title, severity) in [("no severity", None), ("low", Some("low"))] {
        let mut body = json!({ "title": title });
        if let Some(s) = severity {
            body["severity"] = json!(s);
        }
        let r = cc.post_json(
            "/api/events",
            &json!({"kind": "incident", "node_id": node.id, "body": body}),
        );
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let got = hook.wait_until(Duration::from_secs(10), |g| {
        g.iter()
            .flat_map(alerts)
            .filter(|a| a["kind"] == "incident")
            .count()
            == 2
    });
    let level = |title: &str| {
        got.iter()
            .flat_map(alerts)
            .find(|a| a["title"].as_str().unwrap().ends_with(title))
            .unwrap()["level"]
            .clone()
    };
    assert_eq!(level(": no severity"), "crit", "high by default: CRIT");
    assert_eq!(level(": low"), "attn");
    let reasons = wait_for(Duration::from_secs(10), || {
        let n = cc.get_json(&format!("/api/nodes/{}", node.id));
        let reasons = n["summary"]["attention"]["reasons"].as_array()?.clone();
        (reasons.len() == 2).then_some(reasons)
    })
    .expect("both incidents are reasons on the node");
    let of = |title: &str| {
        reasons
            .iter()
            .find(|r| r["message"].as_str().unwrap().ends_with(title))
            .unwrap()["level"]
            .clone()
    };
    assert_eq!(of(": no severity"), "crit", "the node agrees");
    assert_eq!(of(": low"), "attn");
}
