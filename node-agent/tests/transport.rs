//! What the real agent reads from the Command Center and where it agrees to send: a reply of
//! any size is read only up to a bound (memory stays small, the agent keeps running), and a
//! plain `http://` Command Center is refused unless it is on loopback or explicitly allowed.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::time::Duration;

use vaultmesh_proto::auth::NodeKey;
use vaultmesh_proto::command::{ReceiptStatus, SignedCommand};
use vaultmesh_testkit::fake_cc::{FakeCommandCenter, command};
use vaultmesh_testkit::forward_proxy::ForwardProxy;
use vaultmesh_testkit::{NodeAgent, memory_kib, text, unit_settings, wait_for};

/// The agent unit's `MemoryMax=` (`systemd/vaultmesh-node-agent.service`, in `M`), in KiB.
fn unit_memory_max_kib() -> u64 {
    let values = unit_settings("vaultmesh-node-agent.service", "MemoryMax");
    let value = values.first().expect("the agent unit has MemoryMax=");
    let mib: u64 = value
        .strip_suffix('M')
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| panic!("MemoryMax={value}: expected a size in M"));
    mib * 1024
}

/// Issue 21 item 7: a 512 MiB reply took the agent to 1 GiB. Now every heartbeat ack and
/// every long-poll reply of 512 MiB (streamed, without a length) is dropped after its bound;
/// the agent's peak RSS stays far below the unit's `MemoryMax`, it keeps sending heartbeats,
/// and it works normally once the Command Center does.
#[test]
fn endless_replies_are_refused_with_bounded_memory_and_the_agent_keeps_running() {
    let cc_key = NodeKey::from_seed([1u8; 32]);
    let fake = FakeCommandCenter::start();
    let agent = NodeAgent::new(&fake.url)
        .env("VAULTMESH_CC_PUBKEY", &cc_key.public_base64())
        .env("VAULTMESH_INTERVAL", "1s")
        .env("RUST_LOG", "warn");
    let (mut child, log) = agent.spawn_captured(&["run"]);
    let pid = child.0.id();
    let (node, _) = agent.identity();
    wait_for(Duration::from_secs(20), || {
        (fake.requests().0 >= 1 && fake.requests().1 >= 1).then_some(())
    })
    .expect("a heartbeat and a poll");

    fake.flood(Some(512 * 1024 * 1024));
    let (hb0, polls0) = fake.requests();
    // Five more heartbeats and polls, each answered with 512 MiB.
    wait_for(Duration::from_secs(60), || {
        let (hb, polls) = fake.requests();
        (hb >= hb0 + 5 && polls >= polls0 + 5).then_some(())
    })
    .expect("the agent keeps sending heartbeats and polls while every reply is endless");
    assert!(child.0.try_wait().unwrap().is_none(), "the agent runs");
    let (peak_kib, rss_kib) = memory_kib(pid);
    eprintln!("agent under 512 MiB replies: peak RSS {peak_kib} KiB, now {rss_kib} KiB");
    let memory_max_kib = unit_memory_max_kib();
    assert!(
        peak_kib > 0 && peak_kib < memory_max_kib / 2,
        "peak RSS {peak_kib} KiB against the unit's MemoryMax of {memory_max_kib} KiB"
    );
    // Each refusal is logged, saying which reply and its bound.
    let heartbeat = format!(
        "the Command Center's reply to {}/api/agent/heartbeat is larger than 65536 bytes; not read",
        fake.url
    );
    let poll = format!(
        "is larger than {} bytes; not read",
        vaultmesh_proto::command::POLL_REPLY_MAX
    );
    let logged = wait_for(Duration::from_secs(10), || {
        let text = log.text();
        (text.contains(&heartbeat)
            && text
                .lines()
                .any(|l| l.contains("Command poll reply refused") && l.contains(&poll)))
        .then_some(())
    });
    assert!(logged.is_some(), "{}", log.text());

    // Back to normal: a command gets its receipt.
    fake.flood(None);
    let ping = SignedCommand::sign(
        command(node, 1, "agent.ping", serde_json::json!({}), 300),
        &cc_key,
    );
    fake.push(vec![ping]);
    let receipts = wait_for(Duration::from_secs(90), || {
        let r = fake.receipts();
        (!r.is_empty()).then_some(r)
    })
    .expect("the agent recovered");
    assert_eq!(receipts[0].receipt.status, ReceiptStatus::Ok);
    assert!(child.0.try_wait().unwrap().is_none(), "still running");
}

/// Issue 21 item 7: heartbeats, scan reports and commands must not cross the network in the
/// clear. A plain `http://` Command Center that is not loopback is refused by `config check`,
/// `run --once` and `run`, with one line naming the key; loopback is fine, and so is any host
/// with `allow_insecure_http = true`.
#[test]
fn plain_http_is_refused_unless_loopback_or_explicitly_allowed() {
    let refused = [
        (
            NodeAgent::new("http://cc.fleet.test"),
            "error: environment: VAULTMESH_CC_URL: \"http://cc.fleet.test\" is plain http:// to a host that is not loopback: use https://, or set agent.allow_insecure_http = true",
        ),
        (
            NodeAgent::new("http://10.0.0.5:8088")
                .env("VAULTMESH_CC_URL", "")
                .config("[agent]\ncc_url = \"http://10.0.0.5:8088\"\n"),
            "agent.cc_url: \"http://10.0.0.5:8088\" is plain http:// to a host that is not loopback: use https://, or set agent.allow_insecure_http = true",
        ),
    ];
    for (agent, want) in &refused {
        for args in [&["config", "check"][..], &["run", "--once"], &["run"]] {
            let out = agent.run(args);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
            assert_eq!(err.lines().count(), 1, "{args:?}: one line: {err}");
            assert!(err.trim_end().ends_with(want), "{args:?}: {err}");
        }
    }
    for agent in [
        NodeAgent::new("http://127.0.0.1:9"),
        NodeAgent::new("http://localhost:9"),
        NodeAgent::new("http://[::1]:9"),
        NodeAgent::new("https://cc.fleet.test"),
        NodeAgent::new("http://cc.fleet.test").config("[agent]\nallow_insecure_http = true\n"),
    ] {
        let out = agent.run(&["config", "check"]);
        assert!(out.status.success(), "{}", text(&out));
    }
}

/// Review of issue 21: a proxy from the environment (`HTTP_PROXY`) carried the agent's
/// plain-http exchange with a loopback Command Center off the machine. Loopback is reached
/// directly.
#[test]
fn a_loopback_command_center_is_reached_directly_whatever_the_proxy_settings() {
    // A "proxy" that takes connections and never answers: through it, nothing would arrive.
    let trap = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy = format!("http://{}", trap.local_addr().unwrap());
    let fake = FakeCommandCenter::start();
    let agent = NodeAgent::new(&fake.url)
        .env("HTTP_PROXY", &proxy)
        .env("http_proxy", &proxy)
        .env("ALL_PROXY", &proxy)
        .env("NO_PROXY", "")
        .env("no_proxy", "");
    let out = agent.run(&["run", "--once"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(fake.requests().0, 1, "the heartbeat arrived directly");
    trap.set_nonblocking(true).unwrap();
    assert!(trap.accept().is_err(), "nothing went to the proxy");
}

/// The agent's own HTTP client (agent-core/src/http1.rs) keeps what reqwest did for a remote
/// Command Center: `HTTP_PROXY` carries a plain request in absolute form with the proxy's
/// credentials, `HTTPS_PROXY` a `CONNECT` tunnel with TLS inside it, and `NO_PROXY` sends the
/// request directly.
#[test]
fn a_remote_command_center_is_reached_through_the_environments_proxy() {
    let fake = FakeCommandCenter::start();
    let upstream: std::net::SocketAddr = fake.url.trim_start_matches("http://").parse().unwrap();
    let port = upstream.port();
    let proxy = ForwardProxy::start(upstream);
    let with_auth = proxy.url.replace("http://", "http://fleet:pa55@");
    let clear = |agent: NodeAgent| {
        ["HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"]
            .iter()
            .fold(agent, |a, k| a.env(k, ""))
    };

    // Plain http (allowed explicitly) through HTTP_PROXY: the heartbeat arrives.
    let remote = format!("http://cc.fleet.test:{port}");
    let agent = clear(NodeAgent::new(&remote).config("[agent]\nallow_insecure_http = true\n"))
        .env("HTTP_PROXY", &with_auth);
    let out = agent.run(&["run", "--once"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(fake.requests().0, 1, "the heartbeat arrived through the proxy");
    let heads = proxy.heads();
    assert!(!heads.is_empty());
    for head in &heads {
        let head = head.to_lowercase();
        assert!(
            head.starts_with(&format!("post http://cc.fleet.test:{port}/api/agent/")),
            "absolute form: {head}"
        );
        // base64("fleet:pa55")
        assert!(head.contains("proxy-authorization: basic zmxlzxq6cge1nq=="), "{head}");
        assert!(head.contains(&format!("host: cc.fleet.test:{port}")), "{head}");
    }
    let through = heads.len();

    // NO_PROXY names the host: no proxy (and the name does not resolve, so nothing arrives).
    let out = clear(NodeAgent::new(&remote).config("[agent]\nallow_insecure_http = true\n"))
        .env("HTTP_PROXY", &with_auth)
        .env("NO_PROXY", "cc.fleet.test")
        .run(&["run", "--once"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert_eq!(proxy.heads().len(), through, "nothing more went to the proxy");
    assert_eq!(fake.requests().0, 1);

    // https through HTTPS_PROXY: a CONNECT tunnel with the credentials, and TLS inside it
    // (the fake speaks plain HTTP, so the handshake fails after its first record: a
    // ClientHello, content type 22).
    let out = clear(NodeAgent::new(&format!("https://cc.fleet.test:{port}")))
        .env("HTTPS_PROXY", &with_auth)
        .run(&["run", "--once"]);
    assert!(!out.status.success(), "{}", text(&out));
    let heads = proxy.heads();
    assert!(heads.len() > through, "{heads:?}");
    let connect = heads[through].to_lowercase();
    assert!(
        connect.starts_with(&format!("connect cc.fleet.test:{port} http/1.1\r\n")),
        "{connect}"
    );
    assert!(connect.contains("proxy-authorization: basic zmxlzxq6cge1nq=="), "{connect}");
    let tunnelled = proxy.tunnelled();
    assert!(!tunnelled.is_empty());
    assert_eq!(tunnelled[0][0], 22, "a TLS handshake record went through the tunnel");
    assert!(
        text(&out).contains("TLS handshake with cc.fleet.test failed"),
        "{}",
        text(&out)
    );
}

/// Issue 24: a heartbeat reads no state file. The agent learns that its key is enrolled once
/// (from the Command Center's answer, or from `enrolled` at start) and keeps it in memory, so
/// heartbeats after the file is gone neither read it nor enroll again; a `401` still does
/// (`command-center/tests/agent_auth.rs::a_registry_wiped_by_an_admin_is_healed_by_the_agent_re_enrolling`).
#[test]
fn heartbeats_after_enrolling_read_no_state_file() {
    let fake = FakeCommandCenter::start();
    let agent = NodeAgent::new(&fake.url)
        .env("VAULTMESH_INTERVAL", "1s")
        .env("RUST_LOG", "warn");
    let (mut child, _log) = agent.spawn_captured(&["run"]);
    wait_for(Duration::from_secs(20), || {
        (fake.requests().0 >= 1).then_some(())
    })
    .expect("a heartbeat");
    assert_eq!(fake.enrollments(), 1);
    let enrolled = agent.state_dir().join("enrolled");
    assert!(enrolled.exists());
    std::fs::remove_file(&enrolled).unwrap();
    let (hb0, _) = fake.requests();
    wait_for(Duration::from_secs(20), || {
        (fake.requests().0 >= hb0 + 3).then_some(())
    })
    .expect("three more heartbeats");
    assert_eq!(
        fake.enrollments(),
        1,
        "the heartbeats did not read the missing file and enroll again"
    );
    assert!(!enrolled.exists());
    assert!(child.0.try_wait().unwrap().is_none(), "the agent runs");
}
