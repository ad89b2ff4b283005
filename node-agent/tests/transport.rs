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
        [
            "HTTP_PROXY",
            "http_proxy",
            "HTTPS_PROXY",
            "https_proxy",
            "ALL_PROXY",
            "all_proxy",
            "NO_PROXY",
            "no_proxy",
        ]
        .iter()
        .fold(agent, |a, k| a.env(k, ""))
    };

    // Plain http (allowed explicitly) through HTTP_PROXY: the heartbeat arrives.
    let remote = format!("http://cc.fleet.test:{port}");
    let agent = clear(NodeAgent::new(&remote).config("[agent]\nallow_insecure_http = true\n"))
        .env("HTTP_PROXY", &with_auth);
    let out = agent.run(&["run", "--once"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        fake.requests().0,
        1,
        "the heartbeat arrived through the proxy"
    );
    let heads = proxy.heads();
    assert!(!heads.is_empty());
    for head in &heads {
        let head = head.to_lowercase();
        assert!(
            head.starts_with(&format!("post http://cc.fleet.test:{port}/api/agent/")),
            "absolute form: {head}"
        );
        // base64("fleet:pa55")
        assert!(
            head.contains("proxy-authorization: basic zmxlzxq6cge1nq=="),
            "{head}"
        );
        assert!(
            head.contains(&format!("host: cc.fleet.test:{port}")),
            "{head}"
        );
    }
    let through = heads.len();

    // NO_PROXY names the host: no proxy (and the name does not resolve, so nothing arrives).
    let out = clear(NodeAgent::new(&remote).config("[agent]\nallow_insecure_http = true\n"))
        .env("HTTP_PROXY", &with_auth)
        .env("NO_PROXY", "cc.fleet.test")
        .run(&["run", "--once"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert_eq!(
        proxy.heads().len(),
        through,
        "nothing more went to the proxy"
    );
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
    assert!(
        connect.contains("proxy-authorization: basic zmxlzxq6cge1nq=="),
        "{connect}"
    );
    assert!(
        connect.contains("user-agent: vaultmesh-node-agent/"),
        "CONNECT names the agent: {connect}"
    );
    let tunnelled = proxy.tunnelled();
    assert!(!tunnelled.is_empty());
    assert_eq!(
        tunnelled[0][0], 22,
        "a TLS handshake record went through the tunnel"
    );
    assert!(
        text(&out).contains("TLS handshake with cc.fleet.test failed"),
        "{}",
        text(&out)
    );
    assert!(
        !text(&out).contains("pa55"),
        "the proxy's password is never printed"
    );

    // A proxy that refuses the tunnel: named, without its password.
    let refusing = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let refusing_at = format!("http://fleet:pa55@{}", refusing.local_addr().unwrap());
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for s in refusing.incoming() {
            let mut s = s.unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = s.write_all(
                b"HTTP/1.1 407 Proxy Authentication Required\r\ncontent-length: 0\r\n\r\n",
            );
        }
    });
    let out = clear(NodeAgent::new(&format!("https://cc.fleet.test:{port}")))
        .env("HTTPS_PROXY", &refusing_at)
        .run(&["run", "--once"]);
    assert!(!out.status.success(), "{}", text(&out));
    let shown = refusing_at.trim_start_matches("http://fleet:pa55@");
    assert!(
        text(&out).contains(&format!("proxy {shown}: refused the tunnel to cc.fleet.test:{port} (\"HTTP/1.1 407 Proxy Authentication Required\")")),
        "{}",
        text(&out)
    );
    assert!(!text(&out).contains("pa55"), "{}", text(&out));
}

/// The agent's client verifies an `https://` Command Center as reqwest did: against the
/// system's CA store (`SSL_CERT_FILE` names one here) and for the URL's host name. A TLS
/// server (python3's `ssl`, with a CA and a certificate for `localhost` made by `openssl`)
/// refuses every request with 403, so a refusal read back means TLS was accepted.
#[test]
fn an_https_command_center_is_verified_against_the_system_roots_and_its_name() {
    use std::io::BufRead;
    let agent = NodeAgent::new("https://localhost:1");
    let dir = agent.config_path().parent().unwrap().to_path_buf();
    let sh = |args: &str| {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(args)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args}: {}", text(&out));
    };
    sh(
        "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj '/CN=test CA' \
        && openssl req -newkey rsa:2048 -nodes -keyout key.pem -out leaf.csr -subj '/CN=localhost' \
        && printf 'subjectAltName=DNS:localhost\nbasicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\n' > ext.cnf \
        && openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out cert.pem -days 2 -extfile ext.cnf",
    );
    let server = r#"
import http.server, ssl, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        b = b'{"error":"TLS accepted; refused by the test"}'
        self.send_response(403)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(b)))
        self.end_headers()
        self.wfile.write(b)
    def log_message(self, *a): pass
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
c.load_cert_chain("cert.pem", "key.pem")
s.socket = c.wrap_socket(s.socket, server_side=True)
print(s.server_address[1], flush=True)
s.serve_forever()
"#;
    let mut child = std::process::Command::new("python3")
        .arg("-c")
        .arg(server)
        .current_dir(&dir)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut port = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut port)
        .unwrap();
    let port = port.trim().to_string();
    let ca = dir.join("ca.pem");
    // Only SSL_CERT_FILE's certificates: no directory of others.
    let empty = dir.join("no-certs");
    std::fs::create_dir(&empty).unwrap();
    let run = |url: &str, roots: Option<&std::path::Path>| {
        let mut a = NodeAgent::new(url)
            .env("VAULTMESH_ENROLL_TOKEN", "tls-test-token-0123456789")
            .env("HTTPS_PROXY", "")
            .env("https_proxy", "")
            .env("ALL_PROXY", "")
            .env("all_proxy", "")
            .env("SSL_CERT_DIR", empty.to_str().unwrap());
        if let Some(r) = roots {
            a = a.env("SSL_CERT_FILE", r.to_str().unwrap());
        }
        text(&a.run(&["run", "--once"]))
    };
    let trusted = run(&format!("https://localhost:{port}"), Some(&ca));
    let untrusted = run(
        &format!("https://localhost:{port}"),
        Some(&dir.join("cert.pem")),
    );
    let wrong_name = run(&format!("https://127.0.0.1:{port}"), Some(&ca));
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        trusted.contains(
            "the Command Center refused the request (403): TLS accepted; refused by the test"
        ),
        "{trusted}"
    );
    assert!(
        untrusted.contains("TLS handshake with localhost failed: invalid peer certificate"),
        "{untrusted}"
    );
    assert!(!untrusted.contains("TLS accepted"), "{untrusted}");
    assert!(
        wrong_name.contains("TLS handshake with 127.0.0.1 failed: invalid peer certificate"),
        "{wrong_name}"
    );
    assert!(!wrong_name.contains("TLS accepted"), "{wrong_name}");
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
