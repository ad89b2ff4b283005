//! `vaultmesh-command-center demo`, the real binary over loopback: this host's agent under the
//! demo's profile, and `--nodes N` simulated nodes that enroll and report through the signed
//! agent API, each with its intended attention; the same fleet after a restart; the console in
//! a real Chromium; `--nodes` refused with exit 2.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use vaultmesh_testkit::browser::{Browser, artifacts_dir};
use vaultmesh_testkit::{CC_BIN, ChildGuard, binary, http, notify, text, wait_for};

/// A running `demo`; killed on drop.
struct Demo {
    child: ChildGuard,
    url: String,
    /// Everything it printed on stdout so far.
    stdout: Arc<Mutex<String>>,
}

impl Demo {
    fn start(data_dir: &Path, nodes: &str) -> Demo {
        let mut child = Command::new(binary(CC_BIN))
            .args(["demo", "--listen", "127.0.0.1:0", "--interval", "1s"])
            .args(["--nodes", nodes])
            .arg("--data-dir")
            .arg(data_dir)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = Arc::new(Mutex::new(String::new()));
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let seen = stdout.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let mut s = seen.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let child = ChildGuard(child);
        let url = wait_for(Duration::from_secs(60), || {
            let s = stdout.lock().unwrap();
            s.split("listening on ")
                .nth(1)
                .and_then(|rest| rest.lines().next())
                .map(|u| u.trim().to_string())
        })
        .expect("the demo prints its URL");
        Demo { child, url, stdout }
    }

    fn printed(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    fn nodes(&self) -> Vec<Value> {
        let r = http()
            .get(format!("{}/api/nodes", self.url))
            .send()
            .unwrap();
        assert!(r.status().is_success());
        r.json::<Vec<Value>>().unwrap()
    }

    /// Issues `action` to `node` through the admin API and waits for its receipt.
    fn command(&self, node: &str, action: &str, args: Value) -> Value {
        let r = http()
            .post(format!("{}/api/commands", self.url))
            .json(&serde_json::json!({"node_id": node, "action": action, "args": args, "issued_by": "test"}))
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 201, "{action}");
        let id = r.json::<Value>().unwrap()["command"]["command_id"].clone();
        wait_for(Duration::from_secs(30), || {
            let all: Vec<Value> = http()
                .get(format!(
                    "{}/api/commands?node_id={node}&limit=1000",
                    self.url
                ))
                .send()
                .unwrap()
                .json()
                .unwrap();
            all.into_iter().find(|c| {
                c["command"]["command_id"] == id
                    && !matches!(c["status"].as_str(), Some("issued" | "delivered"))
            })
        })
        .unwrap_or_else(|| panic!("{action} to {node}: no receipt"))
    }

    /// SIGTERM, and the clean exit.
    fn stop(mut self) {
        notify::terminate(self.child.0.id());
        let status = self
            .child
            .wait_exit(Duration::from_secs(30))
            .expect("the demo exits on SIGTERM");
        assert!(status.success(), "{status:?}");
    }
}

fn by_host(nodes: &[Value]) -> BTreeMap<String, Value> {
    nodes
        .iter()
        .map(|n| (n["hostname"].as_str().unwrap().to_string(), n.clone()))
        .collect()
}

fn level(n: &Value) -> &str {
    n["attention"]["level"].as_str().unwrap()
}

fn rules(n: &Value) -> Vec<String> {
    n["attention"]["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["rule"].as_str().unwrap().to_string())
        .collect()
}

const SIMULATED: [&str; 5] = [
    "fra1-vault-01",
    "fra1-vault-02",
    "ams1-edge-01",
    "ams1-build-01",
    "lab-pi-03",
];

/// Each simulated node's intended level and reasons, exactly.
fn intended(hostname: &str, n: &Value) -> bool {
    let (lvl, r) = (level(n), rules(n));
    match hostname {
        "fra1-vault-01" => lvl == "ok" && r.is_empty(),
        "fra1-vault-02" => lvl == "crit" && r == ["check.disk", "threshold.disk"],
        "ams1-edge-01" => lvl == "crit" && r == ["services"],
        "ams1-build-01" => lvl == "attn" && r == ["check.load", "threshold.load"],
        "lab-pi-03" => lvl != "ok" && r == ["stale"],
        _ => false,
    }
}

/// The reasons of this host's node that the demo's profile would contradict: a tunnel it does
/// not ask for, services it does not check, listeners it does not judge.
fn contradictions(host: &Value, tunnel_runs: bool) -> Vec<String> {
    rules(host)
        .into_iter()
        .filter(|r| {
            (r == "tunnel" && !tunnel_runs)
                || r.starts_with("required_service.")
                || r == "listeners"
                || r == "check.cloudflared" && !tunnel_runs
        })
        .collect()
}

#[test]
fn the_demo_shows_a_simulated_fleet_through_the_signed_api_and_keeps_it_across_a_restart() {
    let data = tempfile::tempdir().unwrap();
    let demo = Demo::start(data.path(), "5");
    let printed = demo.printed();
    assert!(
        printed.contains(&format!("{}/console", demo.url)) && printed.contains("5 simulated nodes"),
        "the demo says where the console is: {printed}"
    );
    let tunnel_runs = !printed.contains("no cloudflared here");

    // Every simulated node enrolled and reports, each with its intended reasons; this host's
    // node reports the demo's profile and nothing the profile does not ask for.
    let mut seen: BTreeMap<String, Value> = BTreeMap::new();
    let fleet = wait_for(Duration::from_secs(90), || {
        let nodes = by_host(&demo.nodes());
        for (h, n) in &nodes {
            if SIMULATED.contains(&h.as_str()) && intended(h, n) {
                seen.entry(h.clone()).or_insert_with(|| n.clone());
            }
        }
        (nodes.len() == 6 && seen.len() == SIMULATED.len()).then_some(nodes)
    })
    .unwrap_or_else(|| {
        panic!(
            "every simulated node shows its intended attention; seen {:?} of {:#?}",
            seen.keys().collect::<Vec<_>>(),
            demo.nodes()
        )
    });
    assert_eq!(level(&seen["fra1-vault-01"]), "ok");
    let host = fleet
        .values()
        .find(|n| !SIMULATED.contains(&n["hostname"].as_str().unwrap()))
        .unwrap()
        .clone();
    assert_eq!(host["os_profile"], "Demo", "{host:#}");
    // A few more heartbeats, so a reason that needs two in a row would have shown.
    let beats = host["heartbeats"].as_u64().unwrap();
    let host = wait_for(Duration::from_secs(30), || {
        demo.nodes().into_iter().find(|n| {
            n["node_id"] == host["node_id"] && n["heartbeats"].as_u64() >= Some(beats + 3)
        })
    })
    .expect("this host's agent keeps reporting");
    assert_eq!(
        contradictions(&host, tunnel_runs),
        Vec::<String>::new(),
        "{host:#}"
    );
    if !tunnel_runs {
        assert!(
            !host["checks_not_ok"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c.as_str().unwrap().starts_with("cloudflared")),
            "no tunnel is checked where none runs: {host:#}"
        );
    }

    // The simulated nodes are the ones whose keys are in the demo's data directory, enrolled
    // through the agent API: the enrollment log binds each id to that key.
    let enrollments = std::fs::read_to_string(data.path().join("logs/nodes.jsonl")).unwrap();
    let mut ids = BTreeMap::new();
    for h in SIMULATED {
        let dir = data.path().join("fleet").join(h);
        let id = std::fs::read_to_string(dir.join("node_id")).unwrap();
        let id = id.trim().to_string();
        assert_eq!(fleet[h]["node_id"], id.as_str(), "{h}");
        let key = std::fs::read_to_string(dir.join("node.key")).unwrap();
        let public = vaultmesh_proto::auth::NodeKey::from_base64(&key)
            .unwrap()
            .public_base64();
        assert!(
            enrollments
                .lines()
                .any(|l| l.contains(&id) && l.contains(&public)),
            "{h} enrolled its own key: {enrollments}"
        );
        ids.insert(h, id);
    }

    // A simulated node answers commands as an agent does: it runs agent.ping, and refuses with
    // a signed receipt what its profile's policy allows but its own allow list does not.
    let node = fleet["fra1-vault-01"]["node_id"]
        .as_str()
        .unwrap()
        .to_string();
    let ping = demo.command(&node, "agent.ping", serde_json::json!({}));
    assert_eq!(ping["status"], "ok", "{ping:#}");
    assert!(
        ping["receipt"]["receipt"]["output"]
            .as_str()
            .unwrap()
            .starts_with("pong from vaultmesh-node-agent"),
        "{ping:#}"
    );
    let status = demo.command(
        &node,
        "service.status",
        serde_json::json!({"unit": "sshd.service"}),
    );
    assert_eq!(status["status"], "rejected", "{status:#}");
    assert!(
        status["receipt"]["receipt"]["reason"]
            .as_str()
            .unwrap()
            .contains("not in this node's [commands] allow list"),
        "{status:#}"
    );
    assert_eq!(status["chain_ok"], true, "{status:#}");

    // A restart is the same fleet: the same ids, no new node, still reporting.
    demo.stop();
    let demo = Demo::start(data.path(), "5");
    let before: Vec<Value> = fleet.values().map(|n| n["node_id"].clone()).collect();
    let counts: BTreeMap<String, u64> = fleet
        .iter()
        .map(|(h, n)| (h.clone(), n["heartbeats"].as_u64().unwrap()))
        .collect();
    let after = wait_for(Duration::from_secs(60), || {
        let nodes = by_host(&demo.nodes());
        // Every node but the stale one heartbeats again after the restart.
        let fresh = nodes
            .iter()
            .filter(|(h, n)| n["heartbeats"].as_u64() > counts.get(*h).copied())
            .count();
        (fresh >= 5).then_some(nodes)
    })
    .unwrap_or_else(|| panic!("the fleet reports again: {:#?}", demo.nodes()));
    assert_eq!(after.len(), 6, "no node is new after a restart: {after:#?}");
    let mut now: Vec<Value> = after.values().map(|n| n["node_id"].clone()).collect();
    let mut was = before.clone();
    now.sort_by_key(ToString::to_string);
    was.sort_by_key(ToString::to_string);
    assert_eq!(now, was);
    for (h, id) in ids {
        assert_eq!(after[h]["node_id"], id.as_str());
    }
    demo.stop();
}

#[test]
fn nodes_zero_is_this_host_alone() {
    let data = tempfile::tempdir().unwrap();
    let demo = Demo::start(data.path(), "0");
    let nodes = wait_for(Duration::from_secs(60), || {
        let n = demo.nodes();
        (!n.is_empty()).then_some(n)
    })
    .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let nodes_later = demo.nodes();
    assert_eq!(nodes_later.len(), 1, "{nodes_later:#?}");
    assert_eq!(nodes[0]["os_profile"], "Demo");
    assert!(!data.path().join("fleet").exists());
    demo.stop();
}

#[test]
fn a_bad_nodes_count_is_a_usage_error_naming_the_flag() {
    for (bad, why) in [
        ("lots", "invalid digit"),
        ("-1", "-1 is not in 0..=200"),
        ("201", "201 is not in 0..=200"),
    ] {
        let out = Command::new(binary(CC_BIN))
            .args(["demo", "--listen", "127.0.0.1:0", "--nodes", bad])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let said = text(&out);
        assert_eq!(out.status.code(), Some(2), "--nodes {bad}: {said}");
        assert!(
            said.contains(&format!("invalid value '{bad}' for '--nodes <N>'")),
            "{said}"
        );
        assert!(said.contains(why), "--nodes {bad}: {said}");
    }
    let help = Command::new(binary(CC_BIN))
        .args(["demo", "--help"])
        .output()
        .unwrap();
    let help = text(&help).split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        help.contains("--nodes <N>") && help.contains("[default: 12]"),
        "{help}"
    );
}

#[test]
fn the_console_shows_the_demo_fleet_in_chromium() {
    let data = tempfile::tempdir().unwrap();
    let demo = Demo::start(data.path(), "12");
    // The fleet with its stories under way: three CRIT (a full disk, a failed unit, a node gone
    // silent) and the ATTN ones (a busy CPU, drift, a filling disk).
    let full = wait_for(Duration::from_secs(90), || {
        let nodes = demo.nodes();
        let count = |l: &str| nodes.iter().filter(|n| level(n) == l).count();
        (nodes.len() == 13 && count("crit") >= 3 && count("attn") >= 2 && count("ok") >= 5)
            .then(|| by_host(&nodes))
    })
    .unwrap_or_else(|| panic!("the demo's fleet: {:#?}", demo.nodes()));
    let selected = full["fra1-vault-02"]["node_id"]
        .as_str()
        .unwrap()
        .to_string();

    let mut b = Browser::launch(1400, 900);
    b.navigate(&format!("{}/console?node={selected}", demo.url));
    b.wait_for(
        "document.getElementById('stream-state').textContent === 'live'",
        Duration::from_secs(10),
    )
    .expect("the stream connects");
    assert_eq!(
        b.eval("document.querySelectorAll('#node-list li[data-node-id]').length"),
        serde_json::json!(13)
    );
    let crit: u64 = b
        .eval("document.querySelector('[data-kpi=\"crit\"]').textContent")
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(crit >= 3, "{crit} CRIT");
    // The simulated nodes' heartbeats keep arriving live.
    b.wait_for(
        "document.querySelector('#node-list li.beat') !== null",
        Duration::from_secs(10),
    )
    .expect("a row glows with a heartbeat");
    // The silent node leads with its staleness, live.
    let pi = full["lab-pi-03"]["node_id"].as_str().unwrap().to_string();
    b.wait_for(
        &format!(
            "(document.querySelector('#node-list li[data-node-id=\"{pi}\"] [data-why] .reason') || {{}}).dataset?.rule === 'stale'"
        ),
        Duration::from_secs(30),
    )
    .expect("lab-pi-03's row says it is stale");

    // The fleet's labels group it into a node tree by site: every site its group, this host
    // (no labels) last.
    b.eval(
        "(() => { const s = document.querySelector('form[data-group-form] select'); \
         s.value = 'label:site'; s.dispatchEvent(new Event('change')); })()",
    );
    let groups = "[...document.querySelectorAll('#node-list > li.group')].map((g) => g.querySelector('.group-name').textContent + ' ' + g.querySelectorAll('li[data-node-id]').length).join(' | ')";
    let grouped = b
        .wait_for(
            &format!("{groups}.startsWith('ams1 ') && {groups}"),
            Duration::from_secs(10),
        )
        .unwrap_or_else(|| panic!("grouped by site: {}", b.eval(groups)));
    assert_eq!(
        grouped,
        serde_json::json!("ams1 3 | fra1 3 | lab 2 | nyc1 3 | sgp1 1 | (no site) 1"),
        "the twelve simulated nodes in five sites, this host apart"
    );
    assert_eq!(
        b.eval("new URL(location.href).searchParams.get('group')"),
        serde_json::json!("label:site")
    );
    let roles = demo
        .nodes()
        .iter()
        .filter_map(|n| n["labels"]["role"].as_str().map(str::to_string))
        .collect::<std::collections::BTreeSet<_>>();
    assert_eq!(
        roles.into_iter().collect::<Vec<_>>(),
        ["build", "cache", "db", "edge", "nas", "pi", "vault"],
        "and by role"
    );
    b.eval("1");
    assert!(
        b.errors.is_empty(),
        "no script errors or CSP violations: {:?}",
        b.errors
    );
    // docs/console-demo.png: the fleet by site, the full-disk node selected.
    b.screenshot(&artifacts_dir().join("console-demo.png"), false);

    // docs/console.png: the silent node selected, its tiles greyed as of its last heartbeat.
    b.navigate(&format!("{}/console?node={pi}", demo.url));
    b.wait_for(
        "document.getElementById('stream-state').textContent === 'live' && !!document.querySelector('#node [data-as-of]')",
        Duration::from_secs(10),
    )
    .expect("the silent node's panel says what it shows is as of its last heartbeat");
    assert_eq!(
        b.eval("!!document.querySelector('#node .tiles.stale')"),
        serde_json::json!(true)
    );
    // Its reason opened in the attention panel: the detail behind the label.
    let detail = b.eval(&format!(
        "(() => {{ const d = document.querySelector('#attention section[data-node-id=\"{pi}\"] li[data-rule=stale] details'); \
         d.open = true; return d.querySelector('p.detail').textContent; }})()"
    ));
    assert!(
        detail.as_str().unwrap().starts_with("no heartbeat for "),
        "{detail}"
    );
    b.screenshot(&artifacts_dir().join("console.png"), false);

    // A node of a changing role changes, live: the failing unit's node turns CRIT or back OK
    // within a cycle (48 heartbeats, its unit failed for 33 of them).
    let edge = full["ams1-edge-01"]["node_id"]
        .as_str()
        .unwrap()
        .to_string();
    let edge_row = format!("document.querySelector('#node-list li[data-node-id=\"{edge}\"]')");
    let was = b.eval(&format!("{edge_row}.dataset.level"));
    b.eval("window.__marker = 1");
    b.wait_for(
        &format!("{edge_row}.dataset.level !== {was}"),
        Duration::from_secs(60),
    )
    .unwrap_or_else(|| panic!("ams1-edge-01 stays {was}"));
    assert_eq!(b.eval("window.__marker"), serde_json::json!(1), "no reload");
    b.eval("1");
    assert!(
        b.errors.is_empty(),
        "no script errors or CSP violations: {:?}",
        b.errors
    );
    demo.stop();
}
