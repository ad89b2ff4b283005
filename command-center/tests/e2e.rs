//! End to end: the real Command Center binary and the real agent binary over loopback HTTP.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::time::Duration;

use vaultmesh_testkit::{CommandCenter, NodeAgent, text, wait_for};

fn kernel_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string()
}

#[test]
fn agent_once_delivers_a_heartbeat_with_real_metrics() {
    let cc = CommandCenter::start();
    let agent = NodeAgent::new(&cc.url).env("VAULTMESH_OS_PROFILE", "ArchVault");
    let out = agent.run(&["run", "--once"]);
    assert!(out.status.success(), "{}", text(&out));
    let node_id = std::fs::read_to_string(agent.state_dir().join("node_id"))
        .unwrap()
        .trim()
        .to_string();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&node_id),
        "{}",
        text(&out)
    );

    let nodes = cc.get_json("/api/nodes");
    let nodes = nodes.as_array().unwrap();
    assert_eq!(nodes.len(), 1, "{nodes:?}");
    let n = &nodes[0];
    assert_eq!(n["node_id"], node_id.as_str());
    assert_eq!(n["hostname"], kernel_hostname().as_str());
    assert_eq!(n["os_profile"], "ArchVault");
    assert_eq!(n["agent_version"], env!("CARGO_PKG_VERSION"));
    // Real measurements of this machine, not placeholders.
    let cpus = std::thread::available_parallelism().unwrap().get() as u64;
    assert!(n["cpu_count"].as_u64().unwrap() >= cpus.min(1), "{n}");
    assert!(n["load1"].as_f64().unwrap() >= 0.0, "{n}");
    let mem = n["mem_used_pct"].as_f64().unwrap();
    assert!(mem > 0.0 && mem <= 100.0, "{n}");
    let disk = n["disk_max_used_pct"].as_f64().unwrap();
    assert!(disk > 0.0 && disk <= 100.0, "{n}");

    let detail = cc.get_json(&format!("/api/nodes/{node_id}"));
    let latest = &detail["latest"];
    let mut checks: Vec<&str> = latest["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    checks.sort();
    assert_eq!(
        checks,
        [
            "cloudflared",
            "cpu",
            "disk",
            "diskio",
            "load",
            "memory",
            "net",
            "systemd",
            "temperature",
            "updates"
        ]
    );
    let metrics = &latest["metrics"];
    assert!(
        metrics["mem_total_bytes"].as_u64().unwrap() > 0,
        "{metrics}"
    );
    assert!(
        !metrics["disks"].as_array().unwrap().is_empty(),
        "{metrics}"
    );
    // The rate checks measured between the agent's start and its first heartbeat.
    let busy = metrics["cpu"]["busy_pct"].as_f64().unwrap();
    assert!((0.0..=100.0).contains(&busy), "{metrics}");
    // Each measurement is on the wire once: the disks are in `metrics`, not again in the disk
    // check's details (docs/PROTOCOL.md#heartbeat-measurements).
    let stored = latest.to_string();
    assert_eq!(stored.matches("\"disks\":").count(), 1, "{stored}");
    assert_eq!(
        stored.matches("\"mem_total_bytes\":").count(),
        1,
        "{stored}"
    );
    assert_eq!(latest["services_ok"], true);
    assert_eq!(detail["history"].as_array().unwrap().len(), 1);

    // A second run keeps the identity and grows the history.
    let out = agent.run(&["run", "--once"]);
    assert!(out.status.success(), "{}", text(&out));
    let detail = cc.get_json(&format!("/api/nodes/{node_id}"));
    assert_eq!(detail["history"].as_array().unwrap().len(), 2);
    assert_eq!(detail["summary"]["heartbeats"], 2);
    assert_eq!(cc.get_json("/api/nodes").as_array().unwrap().len(), 1);
}

#[test]
fn agent_once_fails_cleanly_when_the_command_center_is_unreachable() {
    // Bind then drop a listener to get a port nobody serves.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let agent = NodeAgent::new(&format!("http://127.0.0.1:{port}"));
    let out = agent.run(&["run", "--once"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "cannot reach the Command Center at http://127.0.0.1:{port}"
        )),
        "{err}"
    );
}

#[test]
fn agent_daemon_reports_every_interval_and_never_listens() {
    let cc = CommandCenter::start();
    let agent = NodeAgent::new(&cc.url).env("VAULTMESH_INTERVAL", "1s");
    let mut child = agent.spawn(&[]);
    let beats = wait_for(Duration::from_secs(20), || {
        let nodes = cc.get_json("/api/nodes");
        let n = nodes.as_array()?.first()?["heartbeats"].as_u64()?;
        (n >= 3).then_some(n)
    });
    assert!(beats.is_some(), "agent did not send 3 heartbeats in 20 s");
    assert!(child.0.try_wait().unwrap().is_none(), "agent exited");
    let listening = listening_sockets_of(child.0.id());
    assert!(listening.is_empty(), "agent listens on {listening:?}");
}

/// Inodes of the sockets `pid` holds that are in LISTEN state (TCP or UDP-bound, v4 or v6).
fn listening_sockets_of(pid: u32) -> Vec<String> {
    let mut inodes = std::collections::BTreeSet::new();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
    {
        if let Ok(target) = std::fs::read_link(fd.path()) {
            let t = target.to_string_lossy();
            if let Some(inode) = t.strip_prefix("socket:[").and_then(|s| s.strip_suffix(']')) {
                inodes.insert(inode.to_string());
            }
        }
    }
    let mut found = Vec::new();
    for (table, listen_state) in [("tcp", "0A"), ("tcp6", "0A"), ("udp", "07"), ("udp6", "07")] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() > 9 && cols[3] == listen_state && inodes.contains(cols[9]) {
                found.push(format!("{table} {}", cols[1]));
            }
        }
    }
    found
}

#[test]
fn dashboard_lists_nodes_and_escapes_what_agents_send() {
    let cc = CommandCenter::start();
    let page = cc.get("/");
    assert_eq!(page.status, 200);
    assert!(
        page.content_type.starts_with("text/html"),
        "{}",
        page.content_type
    );
    assert!(
        page.body.contains("No nodes have reported yet"),
        "{}",
        page.body
    );

    let hb = serde_json::json!({
        "node_id": "550e8400-e29b-41d4-a716-446655440000",
        "hostname": "<script>alert(1)</script>",
        "os_profile": "ArchVault\"><img src=x>",
        "cloudflare_ok": false,
        "services_ok": true,
        "vaultmesh_root": "/var/lib/vaultmesh",
        "timestamp": "2024-01-15T10:30:00Z",
        "metrics": {"load": [0.42, 0.3, 0.2], "cpu_count": 2, "mem_total_bytes": 1000, "mem_used_bytes": 420,
                     "disks": [{"mount": "/srv", "fs": "xfs", "total_bytes": 100, "used_bytes": 73}]}
    });
    assert_eq!(cc.post_json("/api/agent/heartbeat", &hb).status, 200);
    // Attention is evaluated as the heartbeat lands; wait for it.
    let page = wait_for(Duration::from_secs(5), || {
        let p = cc.get("/");
        p.body.contains("ATTN").then_some(p)
    })
    .expect("the node needs attention: its tunnel is down");
    assert!(!page.body.contains("<script>alert"), "hostname not escaped");
    assert!(!page.body.contains("<img src=x>"), "profile not escaped");
    assert!(
        page.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{}",
        page.body
    );
    for shown in [
        "0.42",
        "42%",
        "73%",
        "/srv",
        "down",
        "ATTN",
        "Cloudflare Tunnel is down",
    ] {
        assert!(page.body.contains(shown), "{shown:?} not on the dashboard");
    }
    let csp = vaultmesh_testkit::http()
        .get(format!("{}/", cc.url))
        .send()
        .unwrap();
    let csp = csp.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    let css = cc.get("/assets/app.css");
    assert!(css.status == 200 && css.content_type.starts_with("text/css"));
}

#[test]
fn heartbeat_flags_come_from_the_systemd_and_cloudflared_checks() {
    use vaultmesh_testkit::cloudflared::{FakeCloudflared, ReadyReply};
    use vaultmesh_testkit::dbus::{DbusDaemon, FakeSystemd, FakeUnit};

    let cc = CommandCenter::start();
    let bus = DbusDaemon::start();
    let systemd = FakeSystemd::start(
        &bus.address,
        &[
            FakeUnit::new("cloudflared.service", "active", "running"),
            FakeUnit::new("vaultmesh-node-agent.service", "active", "running"),
        ],
    );
    let tunnel = FakeCloudflared::start(ReadyReply::connections(4));
    // The system bus comes from DBUS_SYSTEM_BUS_ADDRESS, as on a real node.
    let agent = NodeAgent::new(&cc.url)
        .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)
        .config(&format!(
            "[checks.systemd]\nunits = [\"cloudflared.service\", \"vaultmesh-*.service\"]\n\
         [checks.cloudflared]\nmetrics_url = {:?}\n",
            tunnel.url()
        ));
    let flags = |agent: &NodeAgent| {
        let out = agent.run(&["run", "--once"]);
        assert!(out.status.success(), "{}", text(&out));
        let nodes = cc.get_json("/api/nodes");
        (
            nodes[0]["services_ok"].as_bool().unwrap(),
            nodes[0]["cloudflare_ok"].as_bool().unwrap(),
        )
    };
    assert_eq!(flags(&agent), (true, true));

    systemd.set(FakeUnit::new(
        "vaultmesh-node-agent.service",
        "failed",
        "failed",
    ));
    tunnel.set(ReadyReply::connections(0));
    assert_eq!(flags(&agent), (false, false));
    let nodes = cc.get_json("/api/nodes");
    let id = nodes[0]["node_id"].as_str().unwrap();
    let detail = cc.get_json(&format!("/api/nodes/{id}"));
    let checks = detail["latest"]["checks"].as_array().unwrap();
    let summary = |name: &str| {
        checks.iter().find(|c| c["name"] == name).unwrap()["summary"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(
        summary("systemd"),
        "vaultmesh-node-agent.service failed (failed)"
    );
    assert_eq!(
        summary("cloudflared"),
        "tunnel down: cloudflared reports 0 ready connections (HTTP 503)"
    );
}

/// An agent that cannot reach D-Bus does not know whether its services run: the node is ATTN
/// "cannot reach systemd", never CRIT "services are down" — even under a policy that requires
/// units (which are then not reported, and must not each raise a reason of their own).
#[test]
fn an_agent_without_dbus_makes_its_node_attn_cannot_reach_systemd_not_crit() {
    use vaultmesh_testkit::cloudflared::{FakeCloudflared, ReadyReply};

    let policies = tempfile::tempdir().unwrap();
    std::fs::write(
        policies.path().join("ArchVault.toml"),
        "[services]\nrequired = [\"sshd.service\", \"cloudflared.service\"]\n\
         [attention]\nraise_after = 1\nclear_after = 1\n",
    )
    .unwrap();
    let cc = CommandCenter::start_with(&["--policy-dir", policies.path().to_str().unwrap()]);
    let tunnel = FakeCloudflared::start(ReadyReply::connections(4));
    let nowhere = tempfile::tempdir().unwrap();
    let bus = format!("unix:path={}", nowhere.path().join("no-bus").display());
    // Only the two flag checks run, so nothing else on this machine can raise a reason (a busy
    // CPU made the node CRIT "cpu is crit" here while the other tests ran).
    let agent = NodeAgent::new(&cc.url)
        .env("VAULTMESH_OS_PROFILE", "ArchVault")
        .env("DBUS_SYSTEM_BUS_ADDRESS", &bus)
        .config(&format!(
            "[checks.systemd]\nunits = [\"sshd.service\", \"cloudflared.service\"]\n\
             [checks.cloudflared]\nmetrics_url = {:?}\n{}",
            tunnel.url(),
            vaultmesh_testkit::host::machine_checks_off()
        ));
    let out = agent.run(&["run", "--once"]);
    assert!(out.status.success(), "{}", text(&out));
    let id = cc.get_json("/api/nodes")[0]["node_id"]
        .as_str()
        .unwrap()
        .to_string();

    let summary = wait_for(Duration::from_secs(10), || {
        let s = cc.get_json(&format!("/api/nodes/{id}"))["summary"].clone();
        (s["attention"]["level"] != "ok").then_some(s)
    })
    .expect("the node needs attention");
    let attention = &summary["attention"];
    assert_eq!(attention["level"], "attn", "{attention}");
    // Reasons about the test machine itself (its pending updates, its load) are not this test's.
    let reasons: Vec<&serde_json::Value> = attention["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| !vaultmesh_testkit::host::is_about_this_machine(r["rule"].as_str().unwrap()))
        .collect();
    assert_eq!(reasons.len(), 1, "{attention}");
    assert_eq!(
        (&reasons[0]["rule"], &reasons[0]["level"]),
        (&"services".into(), &"attn".into()),
        "{attention}"
    );
    let message = reasons[0]["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!(
            "cannot reach systemd: cannot connect to the system bus at {bus}"
        )),
        "{message}"
    );
    // On the wire the flag is not "down"; the summary says what the CC made of it.
    assert_eq!(
        (&summary["services_ok"], &summary["services"]),
        (&true.into(), &"unknown".into()),
        "{summary}"
    );
    let detail = cc.get_json(&format!("/api/nodes/{id}"));
    let systemd = detail["latest"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "systemd")
        .unwrap()
        .clone();
    assert_eq!(systemd["status"], "unknown", "{systemd}");
    assert!(
        cc.get("/")
            .body
            .contains("<span class=\"flag unknown\">unknown</span>"),
        "the dashboard says unknown, not down"
    );
}
