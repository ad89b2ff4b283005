//! What every request passes before authentication, through the real binary: writes from
//! another site are refused on every route of the router (walked from `server::routes()`, so a
//! route added later is checked too), a page on another site cannot revoke a node in a real
//! Chromium, and a name rebound to 127.0.0.1 (DNS rebinding) reaches no admin route.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::time::Duration;

use serde_json::{Value, json};
use vaultmesh_command_center::server::routes;
use vaultmesh_testkit::access::{Certs, mint, user_claims};
use vaultmesh_testkit::auth::TestNode;
use vaultmesh_testkit::browser::Browser;
use vaultmesh_testkit::page::Page;
use vaultmesh_testkit::{CommandCenter, Reply, cc_command, heartbeat_json, http, text, wait_for};

const NODE: &str = "9a000000-0000-4000-8000-000000000001";
/// A node nobody enrolled: what existence checks name, so they change nothing.
const STRANGER: &str = "9a000000-0000-4000-8000-0000000000ee";

/// `template` with its path parameters filled with `id`.
fn fill(template: &str, id: &str) -> String {
    template.replace("{id}", id).replace("{scan_id}", id)
}

fn port(cc: &CommandCenter) -> u16 {
    cc.url.rsplit(':').next().unwrap().parse().unwrap()
}

/// Sends `method path` with `headers` (and a JSON `body`).
fn send(
    cc: &CommandCenter,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> Reply {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = http().request(method, format!("{}{path}", cc.url));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    Reply::from(req.send().unwrap())
}

/// The status of a signed heartbeat `seq` of [`NODE`] sent with one more header.
fn heartbeat_with(cc: &CommandCenter, seq: u64, (name, value): (&str, &str)) -> u16 {
    TestNode::new(NODE.parse().unwrap())
        .heartbeat_request(&cc.url, &heartbeat_json(NODE, "alpha", seq))
        .header(name, value)
        .send()
        .unwrap()
        .status()
        .as_u16()
}

fn heartbeat(cc: &CommandCenter) {
    let r = cc.post_json("/api/agent/heartbeat", &heartbeat_json(NODE, "alpha", 1));
    assert_eq!(r.status, 200, "{}", r.body);
}

/// No write changed anything: the node is not revoked and no operator event was stored.
fn nothing_written(cc: &CommandCenter) {
    let revoked = cc.get_json("/api/events?kind=node_revoked,node_readmitted,note");
    assert_eq!(revoked, json!([]), "a refused write left a trace");
    let r = cc.post_json("/api/agent/heartbeat", &heartbeat_json(NODE, "alpha", 99));
    assert_eq!(r.status, 200, "the node still reports: {}", r.body);
}

#[test]
fn every_write_on_every_route_refuses_a_cross_site_request() {
    let cc = CommandCenter::start();
    heartbeat(&cc);
    let other_port = format!("http://127.0.0.1:{}", port(&cc) + 1);
    let cross_site: [&[(&str, &str)]; 6] = [
        &[
            ("origin", "https://evil.example"),
            ("sec-fetch-site", "cross-site"),
        ],
        &[("origin", "https://evil.example")],
        &[("sec-fetch-site", "cross-site")],
        &[("sec-fetch-site", "same-site")],
        &[("origin", "null")],
        &[("origin", other_port.as_str())],
    ];
    let all = routes();
    let writes: Vec<_> = all.iter().filter(|r| !r.method.is_safe()).collect();
    assert!(writes.len() >= 8, "the router lists its writes: {writes:?}");
    for route in &all {
        // The list is the router: each route is there (not the fallback, not 405). Requests
        // name a node nobody enrolled and carry no body, so they change nothing.
        let path = fill(route.path, STRANGER);
        let r = send(&cc, route.method.as_str(), &path, &[], None);
        assert!(
            r.status != 405 && !r.body.contains("no such route"),
            "{route:?} is not in the router: {} {}",
            r.status,
            r.body
        );
    }
    for route in &writes {
        let path = fill(route.path, NODE);
        for headers in cross_site {
            let r = send(
                &cc,
                route.method.as_str(),
                &path,
                headers,
                Some(&json!({"kind": "note", "node_id": NODE, "body": {"text": "forged"}})),
            );
            assert_eq!(r.status, 403, "{route:?} {headers:?}: {}", r.body);
            assert!(
                r.json()["error"]
                    .as_str()
                    .unwrap()
                    .contains("cross-site request refused"),
                "{route:?}: {}",
                r.body
            );
        }
    }
    // A validly signed agent request is refused too when a browser says it is cross-site.
    assert_eq!(
        heartbeat_with(&cc, 2, ("sec-fetch-site", "cross-site")),
        403
    );
    // The rule is one layer over the router: other methods, and paths no route has yet.
    for (method, path) in [
        ("PUT", format!("/api/nodes/{NODE}")),
        ("DELETE", format!("/api/nodes/{NODE}")),
        ("PATCH", "/api/events".to_string()),
        ("POST", "/api/a-route-added-later".to_string()),
    ] {
        let r = send(&cc, method, &path, cross_site[0], None);
        assert_eq!(r.status, 403, "{method} {path}: {}", r.body);
    }
    nothing_written(&cc);
    // Same-origin browsers and non-browser clients still write.
    let origin = cc.url.clone();
    let r = send(
        &cc,
        "POST",
        "/api/events",
        &[("origin", &origin), ("sec-fetch-site", "same-origin")],
        Some(&json!({"kind": "note", "node_id": NODE, "body": {"text": "same origin"}})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let r = send(&cc, "POST", &format!("/api/nodes/{NODE}/revoke"), &[], None);
    assert_eq!(r.status, 200, "the CLI's way: {}", r.body);
    // Every refusal is in the log with its reason.
    cc.wait_for_log(&["reason=cross_site"]);
}

#[test]
fn a_page_on_another_site_cannot_revoke_a_node_in_a_real_browser() {
    let cc = CommandCenter::start();
    heartbeat(&cc);
    let revoke = format!("{}/api/nodes/{NODE}/revoke", cc.url);
    let readmit = format!("{}/api/nodes/{NODE}/readmit", cc.url);
    let events = format!("{}/api/events", cc.url);
    // What the probe's page did: a form the browser submits, and fetches a page may send
    // without asking (no-cors, text/plain).
    let page = Page::start(format!(
        r#"<!doctype html><title>cats</title>
<iframe name="sink"></iframe>
<form id="f" method="POST" action="{revoke}" target="sink" enctype="text/plain">
<input name='{{"reason":"x' value='"}}'></form>
<script>
window.__sent = 0;
const done = () => {{ window.__sent += 1; }};
fetch("{revoke}", {{method: "POST", mode: "no-cors"}}).then(done, done);
fetch("{readmit}", {{method: "POST", mode: "no-cors"}}).then(done, done);
fetch("{events}", {{method: "POST", mode: "no-cors", headers: {{"Content-Type": "text/plain"}},
  body: JSON.stringify({{kind: "note", node_id: "{NODE}", body: {{text: "forged"}}}})}}).then(done, done);
document.getElementById("f").submit();
</script>"#
    ));
    let mut b = Browser::launch(800, 600);
    // `localhost` is another site than `127.0.0.1`, where the Command Center is.
    b.navigate(&page.url("localhost"));
    b.wait_for("window.__sent === 3", Duration::from_secs(10))
        .expect("the page sent its requests");
    // The form's post and both fetches reached the Command Center and were refused.
    let refusals = wait_for(Duration::from_secs(10), || {
        let log = cc.stderr();
        let n = log
            .lines()
            .filter(|l| l.contains("reason=cross_site") && l.contains("route=/api/nodes/{id}/"))
            .count();
        (n >= 3).then_some(log)
    });
    assert!(refusals.is_some(), "{}", cc.stderr());
    nothing_written(&cc);
}

#[test]
fn a_rebound_name_reaches_no_admin_route() {
    let (cc, _keys, _public) = vaultmesh_testkit::commanding_center(&[]);
    heartbeat(&cc);
    let port = port(&cc);
    let evil = format!("rebind.evil.example:{port}");
    let origin = format!("http://{evil}");
    // To the browser, a page on the rebound name is same-origin with the Command Center.
    let rebound: &[(&str, &str)] = &[
        ("host", &evil),
        ("origin", &origin),
        ("sec-fetch-site", "same-origin"),
    ];
    let note = json!({"kind": "note", "node_id": NODE, "body": {"text": "rebound"}});
    let command = json!({"node_id": NODE, "action": "agent.ping", "args": {}});
    // What the probe did: read the fleet, post an event, issue a command, revoke a node.
    for (method, path, body) in [
        ("GET", "/api/nodes".to_string(), None),
        ("GET", "/console".to_string(), None),
        ("GET", "/events".to_string(), None),
        ("GET", "/metrics".to_string(), None),
        ("POST", "/api/events".to_string(), Some(&note)),
        ("POST", "/api/commands".to_string(), Some(&command)),
        ("POST", format!("/api/nodes/{NODE}/revoke"), None),
    ] {
        let r = send(&cc, method, &path, rebound, body);
        assert_eq!(r.status, 421, "{method} {path}: {}", r.body);
        let e = r.json()["error"].as_str().unwrap().to_string();
        assert!(
            e.contains(&format!("does not answer to the host \"{evil}\""))
                && e.contains("--allowed-host"),
            "{e}"
        );
    }
    nothing_written(&cc);
    assert_eq!(
        cc.get_json("/api/commands"),
        json!([]),
        "a command was issued"
    );
    // The loopback names, with the port, are answered.
    for host in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
    ] {
        let r = send(&cc, "GET", "/api/nodes", &[("host", &host)], None);
        assert_eq!(r.status, 200, "{host}: {}", r.body);
    }
    let r = send(&cc, "GET", "/api/nodes", &[("host", "localhost:1")], None);
    assert_eq!(r.status, 421, "another port: {}", r.body);
    // Signed agent requests and the health check answer whatever name they came by.
    assert_eq!(heartbeat_with(&cc, 3, ("host", &evil)), 200);
    assert_eq!(
        send(&cc, "GET", "/healthz", &[("host", &evil)], None).status,
        200
    );
    cc.wait_for_log(&["reason=misdirected"]);
}

#[test]
fn a_rebound_name_reaches_no_admin_route_in_a_real_browser() {
    let cc = CommandCenter::start();
    heartbeat(&cc);
    let port = port(&cc);
    // The attacker's name now resolves to 127.0.0.1, as after a rebinding.
    let mut b = Browser::launch_with(
        800,
        600,
        &["--host-resolver-rules=MAP rebind.evil.example 127.0.0.1"],
    );
    let origin = format!("http://rebind.evil.example:{port}");
    // A document on the rebound origin (the health check answers under any name): to the
    // browser, its script is same-origin with the Command Center, so CORS and Origin allow all.
    b.navigate(&format!("{origin}/healthz"));
    let statuses = b.eval(&format!(
        r#"(async () => {{
  const json = {{"Content-Type": "application/json"}};
  const send = async (path, init) => (await fetch(path, init)).status;
  return [
    await send("/api/nodes"),
    await send("/console"),
    await send("/api/events", {{method: "POST", headers: json,
      body: JSON.stringify({{kind: "note", node_id: "{NODE}", body: {{text: "rebound"}}}})}}),
    await send("/api/commands", {{method: "POST", headers: json,
      body: JSON.stringify({{node_id: "{NODE}", action: "agent.ping", args: {{}}}})}}),
    await send("/api/nodes/{NODE}/revoke", {{method: "POST"}}),
  ];
}})()"#
    ));
    assert_eq!(statuses, json!([421, 421, 421, 421, 421]), "{statuses}");
    // Opened by that name, the console shows the refusal, not the fleet.
    b.navigate(&format!("{origin}/console"));
    let text = b.eval("document.body.innerText");
    assert!(
        text.as_str()
            .unwrap()
            .contains("does not answer to the host"),
        "{text}"
    );
    nothing_written(&cc);
    // The same browser by a loopback name is answered.
    b.navigate(&format!("{}/healthz", cc.url));
    assert_eq!(
        b.eval("fetch('/api/nodes').then(r => r.status)"),
        json!(200)
    );
}

#[test]
fn a_request_naming_no_host_is_a_json_400() {
    use std::io::{Read, Write};
    let cc = CommandCenter::start();
    let addr = cc.url.trim_start_matches("http://");
    // HTTP/1.0 lets a client leave out Host; an admin route must not guess it.
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /api/nodes HTTP/1.0\r\n\r\n").unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.0 400"), "{reply}");
    let body = reply.split("\r\n\r\n").nth(1).unwrap();
    let v: Value = serde_json::from_str(body).unwrap();
    assert!(
        v["error"].as_str().unwrap().contains("names no host"),
        "{body}"
    );
}

#[test]
fn allowed_hosts_come_from_the_flag_the_environment_or_the_console_url_and_bad_ones_are_refused() {
    let cc =
        CommandCenter::start_with(&["--allowed-host", "cc.example.com,admin.example.com:8443"]);
    let status = |cc: &CommandCenter, host: &str| {
        send(cc, "GET", "/api/nodes", &[("host", host)], None).status
    };
    for (host, want) in [
        ("cc.example.com", 200),
        ("CC.example.com:443", 200),
        ("admin.example.com:8443", 200),
        ("admin.example.com", 421),
        ("example.com", 421),
    ] {
        assert_eq!(status(&cc, host), want, "{host}");
    }
    let cc = CommandCenter::start_with_env(&[], &[("VAULTMESH_ALLOWED_HOST", "cc.example.com")]);
    assert_eq!(status(&cc, "cc.example.com"), 200);
    assert_eq!(status(&cc, "evil.example"), 421);

    // The public name is answered by default when one is configured: where admins open the
    // console (the notifications' console_url). Behind Access without one, serve warns.
    let certs = Certs::start(&["k1"]);
    let warning = "Cloudflare Access is configured but no --allowed-host";
    let cc = certs.command_center(&[]);
    let warned = wait_for(Duration::from_secs(5), || {
        cc.stderr().contains(warning).then_some(())
    });
    assert!(warned.is_some(), "{}", cc.stderr());
    let dir = tempfile::tempdir().unwrap();
    let notify = dir.path().join("notify.toml");
    std::fs::write(&notify, "console_url = \"https://cc.example.com/\"\n").unwrap();
    let cc = certs.command_center(&["--notify-config", notify.to_str().unwrap()]);
    assert!(!cc.stderr().contains(warning), "{}", cc.stderr());
    let token = mint("k1", &user_claims("alice@example.com"));
    for (host, want) in [("cc.example.com", 200), ("evil.example", 421)] {
        let r = send(
            &cc,
            "GET",
            "/api/nodes",
            &[("host", host), ("cf-access-jwt-assertion", &token)],
            None,
        );
        assert_eq!(r.status, want, "{host}: {}", r.body);
    }

    let logs = tempfile::tempdir().unwrap();
    for (bad, says) in [
        ("https://cc.example.com", "give the host name only"),
        ("cc.example.com:http", "not a port number"),
    ] {
        let out = cc_command(&[
            "serve",
            "--log-dir",
            logs.path().to_str().unwrap(),
            "--allowed-host",
            bad,
        ]);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("--allowed-host") && err.contains(says),
            "{bad}: {err}"
        );
    }
}
