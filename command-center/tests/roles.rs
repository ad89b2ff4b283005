//! Roles and named API tokens (issue 26): every route of the router × every role, walked from
//! `server::routes()` so a route added later is checked too; a viewer cannot issue a command
//! through any route; a bot token with `events:write` posts a note authored by its name; tokens
//! are made, listed (with their last use), revoked, expired and rate-limited; the CLI uses them;
//! and identities signed in through Cloudflare Access get their role from the roles file.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::time::Duration;

use serde_json::{Value, json};
use vaultmesh_command_center::roles::{Permission, Role};
use vaultmesh_command_center::server::routes;
use vaultmesh_testkit::access::{Certs, mint, user_claims};
use vaultmesh_testkit::{CommandCenter, Reply, cc_command, heartbeat_json, http, text, wait_for};

const NODE: &str = "70e00000-0000-4000-8000-000000000001";

/// `method path` with `Authorization: Bearer token` (and a JSON body).
fn send(cc: &CommandCenter, token: &str, method: &str, path: &str, body: Option<&Value>) -> Reply {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = http()
        .request(method, format!("{}{path}", cc.url))
        .bearer_auth(token);
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    Reply::from(req.send().unwrap())
}

/// Makes an API token (as the loopback server's unauthenticated admin); its JSON with `secret`.
fn make(cc: &CommandCenter, body: Value) -> Value {
    let r = cc.post_json("/api/api-tokens", &body);
    assert_eq!(r.status, 201, "{}", r.body);
    r.json()
}

/// A Command Center that can sign commands, with node [`NODE`] reporting under ArchVault.
fn signing_cc(extra: &[&str]) -> (CommandCenter, tempfile::TempDir) {
    let (cc, keys, _) = vaultmesh_testkit::commanding_center(extra);
    let r = cc.post_json("/api/agent/heartbeat", &heartbeat_json(NODE, "alpha", 1));
    assert_eq!(r.status, 200, "{}", r.body);
    (cc, keys)
}

fn ping() -> Value {
    json!({"node_id": NODE, "action": "agent.ping", "args": {}})
}

#[test]
fn every_route_answers_each_role_as_its_declaration_says() {
    let (cc, _keys) = signing_cc(&[]);
    let tokens: Vec<(Role, String)> = Role::ALL
        .into_iter()
        .map(|r| {
            let t = make(&cc, json!({"name": format!("t-{r}"), "role": r.as_str()}));
            (r, t["secret"].as_str().unwrap().to_string())
        })
        .collect();
    let all = routes();
    // The routes outside the admin gate are exactly these: a route that forgot to declare
    // itself cannot slip out of the check.
    let mut public: Vec<String> = all
        .iter()
        .filter(|r| r.needs.is_none())
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    public.sort();
    assert_eq!(
        public,
        [
            "GET /api/agent/commands",
            "GET /assets/add-node.js",
            "GET /assets/app.css",
            "GET /assets/console.js",
            "GET /assets/dashboard.js",
            "GET /auth/callback",
            "GET /auth/login",
            "GET /healthz",
            "POST /api/agent/enroll",
            "POST /api/agent/events",
            "POST /api/agent/heartbeat",
            "POST /api/agent/receipts",
            "POST /api/agent/scans",
            "POST /auth/logout",
        ]
    );
    let guarded: Vec<_> = all.iter().filter(|r| r.needs.is_some()).collect();
    assert!(
        guarded.len() >= 30,
        "the router declares its routes: {guarded:?}"
    );
    // What the issue names: operators write events and issue commands; only admins manage
    // nodes and tokens; everything else a viewer reads.
    let needs = |method: &str, path: &str| {
        all.iter()
            .find(|r| r.method.as_str() == method && r.path == path)
            .and_then(|r| r.needs)
            .unwrap()
    };
    assert_eq!(needs("POST", "/api/events"), Permission::EventsWrite);
    assert_eq!(needs("POST", "/console/events"), Permission::EventsWrite);
    assert_eq!(needs("POST", "/api/commands"), Permission::CommandsIssue);
    assert_eq!(
        needs("POST", "/console/commands"),
        Permission::CommandsIssue
    );
    for admin_only in [
        ("POST", "/api/nodes/{id}/revoke"),
        ("POST", "/api/nodes/{id}/decommission"),
        ("POST", "/api/nodes/{id}/readmit"),
        ("POST", "/api/nodes/{id}/rename"),
        ("POST", "/console/nodes/{id}/decommission"),
        ("POST", "/api/enroll-tokens"),
        ("GET", "/api/enroll-tokens"),
        ("POST", "/api/api-tokens"),
        ("GET", "/api/api-tokens"),
        ("DELETE", "/api/api-tokens/{id}"),
    ] {
        assert_eq!(
            needs(admin_only.0, admin_only.1),
            Permission::Admin,
            "{admin_only:?}"
        );
    }
    assert!(
        all.iter()
            .filter(|r| r.method == reqwest::Method::GET && r.needs.is_some())
            .all(|r| r.needs == Some(Permission::Read) || r.needs == Some(Permission::Admin)),
        "a GET never needs a write permission"
    );

    // Each route × each role: refused with 403 naming the role exactly when the role lacks
    // what the route needs. Bodies name a node nobody enrolled, so nothing changes.
    let stranger = "70e00000-0000-4000-8000-0000000000ee";
    for route in &guarded {
        let path = route
            .path
            .replace("{id}", stranger)
            .replace("{scan_id}", stranger);
        let need = route.needs.unwrap();
        for (role, token) in &tokens {
            if route.path == "/events" {
                continue; // a stream: checked below without holding it open
            }
            let r = send(
                &cc,
                token,
                route.method.as_str(),
                &path,
                Some(&json!({"kind": "note", "node_id": stranger, "body": {"text": "x"}})),
            );
            if route.path == "/api/api-tokens" && route.method == reqwest::Method::POST {
                // No API token makes a token, whatever its role (checked below).
                assert_eq!(r.status, 403, "{route:?} as {role}: {}", r.body);
                continue;
            }
            if role.grants().has(need) {
                assert_ne!(r.status, 403, "{route:?} as {role}: {}", r.body);
                assert_ne!(r.status, 401, "{route:?} as {role}: {}", r.body);
            } else {
                assert_eq!(r.status, 403, "{route:?} as {role}: {}", r.body);
                let e = r.json()["error"].as_str().unwrap().to_string();
                assert!(
                    e.contains(&format!("needs the {} role", Role::least_for(need)))
                        && e.contains(&format!("t-{role} is")),
                    "{route:?} as {role}: {e}"
                );
            }
        }
    }
    // A viewer may follow the stream.
    let r = http()
        .get(format!("{}/events", cc.url))
        .bearer_auth(&tokens[0].1)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
}

#[test]
fn a_viewer_issues_no_command_by_any_route_and_an_operator_does() {
    let (cc, _keys) = signing_cc(&[]);
    let viewer = make(&cc, json!({"name": "watcher", "role": "viewer"}));
    let viewer = viewer["secret"].as_str().unwrap();
    let operator = make(&cc, json!({"name": "oncall", "role": "operator"}));
    let operator = operator["secret"].as_str().unwrap();

    let r = send(&cc, viewer, "POST", "/api/commands", Some(&ping()));
    assert_eq!(r.status, 403, "{}", r.body);
    let form = http()
        .post(format!("{}/console/commands", cc.url))
        .bearer_auth(viewer)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("node_id={NODE}&action=agent.ping"))
        .send()
        .unwrap();
    assert_eq!(form.status().as_u16(), 403);
    assert_eq!(
        cc.get_json("/api/commands"),
        json!([]),
        "nothing was issued"
    );

    // The console offers a viewer no form at all.
    let page = send(&cc, viewer, "GET", &format!("/console?node={NODE}"), None);
    assert_eq!(page.status, 200);
    assert!(
        !page.body.contains("action=\"/console/commands\""),
        "{}",
        page.body
    );
    assert!(!page.body.contains("method=\"post\""), "{}", page.body);
    assert!(page.body.contains("Read only"));

    // An operator issues it, and is its issuer.
    let r = send(&cc, operator, "POST", "/api/commands", Some(&ping()));
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["command"]["issued_by"], "oncall");
    // An operator writes notes, not tags: a tag sets labels, which route notifications.
    let tag = json!({"kind": "tag", "node_id": NODE, "body": {"label": "site", "value": "fra1"}});
    let r = send(&cc, operator, "POST", "/api/events", Some(&tag));
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("needs the admin role"),
        "{}",
        r.body
    );
    let admin = make(&cc, json!({"name": "boss", "role": "admin"}));
    let r = send(
        &cc,
        admin["secret"].as_str().unwrap(),
        "POST",
        "/api/events",
        Some(&tag),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let page = send(&cc, operator, "GET", &format!("/console?node={NODE}"), None);
    assert!(page.body.contains("action=\"/console/commands\""));
    assert!(
        !page.body.contains("/decommission"),
        "only admins retire nodes"
    );
}

#[test]
fn a_bot_token_with_events_write_posts_a_note_authored_by_its_name_and_reads_nothing() {
    let cc = CommandCenter::start();
    assert_eq!(
        cc.post_json("/api/agent/heartbeat", &heartbeat_json(NODE, "alpha", 1))
            .status,
        200
    );
    let bot = make(
        &cc,
        json!({"name": "deploy-bot", "scopes": ["events:write"], "expires_in": "1h"}),
    );
    assert_eq!(bot["scopes"], json!(["events:write"]));
    assert_eq!(bot["role"], Value::Null);
    let secret = bot["secret"].as_str().unwrap();
    assert!(secret.starts_with("vmk_") && secret.len() > 40);

    let note = json!({"kind": "note", "node_id": NODE, "body": {"text": "deployed v2.3.1"}});
    let r = send(&cc, secret, "POST", "/api/events", Some(&note));
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["author"], "deploy-bot");
    let stored = cc.get_json(&format!("/api/events?kind=note&node_id={NODE}"));
    assert_eq!(stored[0]["author"], "deploy-bot");
    // A claimed author in the body changes nothing.
    let forged = json!({"kind": "note", "node_id": NODE, "author": "alice@example.com", "body": {"text": "x"}});
    let r = send(&cc, secret, "POST", "/api/events", Some(&forged));
    assert!(r.status == 201 || r.status == 422, "{}", r.body);
    if r.status == 201 {
        assert_eq!(r.json()["author"], "deploy-bot");
    }
    // Its scope is all it may do.
    let r = send(&cc, secret, "GET", "/api/nodes", None);
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.json()["error"].as_str().unwrap().contains("scope read"));
    let r = send(&cc, secret, "POST", "/api/commands", Some(&ping()));
    assert_eq!(r.status, 403);
    // A bot reports; it does not silence, acknowledge or resolve.
    let silence = json!({"kind": "silence", "node_id": NODE, "body": {"until_resolved": true}});
    let r = send(&cc, secret, "POST", "/api/events", Some(&silence));
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("a token with scopes posts only note and incident"),
        "{}",
        r.body
    );
    let form = http()
        .post(format!("{}/console/events", cc.url))
        .bearer_auth(secret)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("kind=silence&node_id={NODE}&duration=1h"))
        .send()
        .unwrap();
    assert_eq!(form.status().as_u16(), 403);
    // And a token makes no token, whatever its role.
    let admin = make(&cc, json!({"name": "root-bot", "role": "admin"}));
    let r = send(
        &cc,
        admin["secret"].as_str().unwrap(),
        "POST",
        "/api/api-tokens",
        Some(&json!({"name": "child", "role": "admin"})),
    );
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("not by another API token"), "{}", r.body);

    // The listing shows its last use, never its secret or hash; neither does any file.
    let listed = cc.get_json("/api/api-tokens");
    let t = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "deploy-bot")
        .unwrap();
    assert_eq!(t["name"], "deploy-bot");
    assert_eq!(t["state"], "active");
    assert!(t["last_used_at"].is_string(), "{t}");
    assert!(
        t.get("secret").is_none() && t.get("sha256").is_none(),
        "{t}"
    );
    let nodes_log = wait_for(Duration::from_secs(5), || {
        let log = std::fs::read_to_string(cc.log_dir().join("nodes.jsonl")).unwrap();
        log.contains("api_token_used").then_some(log)
    })
    .expect("the first use is logged");
    assert!(nodes_log.contains("api_token_created"));
    for dir in [cc.log_dir()] {
        for f in std::fs::read_dir(dir).unwrap() {
            let path = f.unwrap().path();
            if path.is_file() {
                let bytes = std::fs::read(&path).unwrap();
                assert!(
                    !String::from_utf8_lossy(&bytes).contains(&secret[4..]),
                    "{} holds the secret",
                    path.display()
                );
            }
        }
    }
    assert!(
        !cc.stderr().contains(&secret[4..]),
        "the log holds the secret"
    );
}

#[test]
fn tokens_are_revoked_at_once_expire_survive_a_restart_and_are_rate_limited() {
    // A token whose expiry passed, as nodes.jsonl records one.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("logs")).unwrap();
    let expired_secret = "vmk_expired-secret-0123456789abcdefghijklmnopq";
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(expired_secret.as_bytes()))
    };
    let line = json!({
        "kind": "api_token_created", "ts": "2026-11-01T10:00:00Z",
        "record": {"id": &sha[..16], "by": "alice", "sha256": sha, "name": "old-bot",
                   "expires_at": "2026-11-02T10:00:00Z", "role": "viewer"}
    });
    std::fs::write(dir.path().join("logs/nodes.jsonl"), format!("{line}\n")).unwrap();
    let mut cc = CommandCenter::start_in(
        dir,
        &["--api-token-rate", "1", "--api-token-burst", "5"],
        &[],
    );
    let r = send(&cc, expired_secret, "GET", "/api/nodes", None);
    assert_eq!(r.status, 401);
    assert!(r.json()["error"].as_str().unwrap().contains("expired"));
    let r = send(
        &cc,
        "vmk_nobody-made-this-0123456789",
        "GET",
        "/api/nodes",
        None,
    );
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (401, json!("unknown API token"))
    );

    let t = make(&cc, json!({"name": "grafana", "role": "viewer"}));
    let (id, secret) = (
        t["id"].as_str().unwrap().to_string(),
        t["secret"].as_str().unwrap().to_string(),
    );
    assert_eq!(send(&cc, &secret, "GET", "/api/nodes", None).status, 200);
    // The burst, then 429 with Retry-After.
    let statuses: Vec<u16> = (0..10)
        .map(|_| send(&cc, &secret, "GET", "/api/nodes", None).status)
        .collect();
    assert!(statuses.contains(&429), "{statuses:?}");
    let r = http()
        .get(format!("{}/api/nodes", cc.url))
        .bearer_auth(&secret)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 429);
    assert!(r.headers().contains_key("retry-after"));

    // A name stands for one token, in any case.
    let r = cc.post_json(
        "/api/api-tokens",
        &json!({"name": "Grafana", "role": "viewer"}),
    );
    assert_eq!(r.status, 409, "{}", r.body);
    for (body, field) in [
        (json!({"name": "a b", "role": "viewer"}), "name:"),
        (json!({"name": "x", "role": "god"}), "role:"),
        (
            json!({"name": "x", "scopes": ["read"], "role": "viewer"}),
            "not both",
        ),
        (
            json!({"name": "x", "role": "viewer", "ttl": "1d"}),
            "unknown field",
        ),
    ] {
        let r = cc.post_json("/api/api-tokens", &body);
        assert_eq!(r.status, 422, "{body}: {}", r.body);
        assert!(
            r.json()["error"].as_str().unwrap().contains(field),
            "{}",
            r.body
        );
    }

    // Survives a restart; revoked, it is refused at its next request.
    cc.restart();
    std::thread::sleep(Duration::from_millis(1100)); // the bucket refills
    assert_eq!(send(&cc, &secret, "GET", "/api/nodes", None).status, 200);
    let r = cc.request("DELETE", &format!("/api/api-tokens/{id}"), None, "");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["state"], "revoked");
    let r = send(&cc, &secret, "GET", "/api/nodes", None);
    assert_eq!(r.status, 401);
    assert!(r.json()["error"].as_str().unwrap().contains("revoked"));
    let missing = cc.request("DELETE", "/api/api-tokens/0123456789abcdef", None, "");
    assert_eq!(missing.status, 404);
    // Revoked, it stays revoked after a restart; its name is never reused.
    cc.restart();
    let r = send(&cc, &secret, "GET", "/api/nodes", None);
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(
        cc.post_json(
            "/api/api-tokens",
            &json!({"name": "grafana", "role": "viewer"})
        )
        .status,
        409
    );
    // An uppercase id names the same token.
    let r = cc.request(
        "DELETE",
        &format!("/api/api-tokens/{}", id.to_uppercase()),
        None,
        "",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    cc.wait_for_log(&["reason=api_token"]);
}

#[test]
fn the_cli_makes_lists_and_revokes_tokens_and_runs_with_one() {
    let (cc, _keys) = signing_cc(&[]);
    let cli = |args: &[&str], token: Option<&str>| {
        let mut all = args.to_vec();
        all.extend_from_slice(&["--url", &cc.url]);
        let mut cmd =
            std::process::Command::new(vaultmesh_testkit::binary(vaultmesh_testkit::CC_BIN));
        cmd.args(&all).env_remove("VAULTMESH_ADMIN_TOKEN");
        if let Some(t) = token {
            cmd.env("VAULTMESH_ADMIN_TOKEN", t);
        }
        cmd.output().unwrap()
    };
    let out = cli(
        &[
            "api-token",
            "create",
            "ci-reader",
            "--role",
            "viewer",
            "--json",
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out));
    let made: Value = serde_json::from_slice(&out.stdout).unwrap();
    let secret = made["secret"].as_str().unwrap();

    // Typos and missing choices exit 2 naming the flag.
    let out = cli(&["api-token", "create", "x", "--role", "veiwer"], None);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("--role: \"veiwer\" is not a role; did you mean \"viewer\"?"),
        "{}",
        text(&out)
    );
    let out = cli(
        &["api-token", "create", "x", "--scope", "events:wirte"],
        None,
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = cli(&["api-token", "create", "x"], None);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));

    // The CLI with the viewer's token reads, and cannot issue.
    let out = cli(&["command", "list"], Some(secret));
    assert!(out.status.success(), "{}", text(&out));
    let out = cli(
        &["command", "issue", "--node", NODE, "--action", "agent.ping"],
        Some(secret),
    );
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("needs the operator role"),
        "{}",
        text(&out)
    );

    let out = cli(&["api-token", "list"], None);
    assert!(out.status.success(), "{}", text(&out));
    let table = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        table.contains("ci-reader") && table.contains("role viewer"),
        "{table}"
    );
    assert!(!table.contains(&secret[4..]));
    let id = made["id"].as_str().unwrap();
    let out = cli(&["api-token", "revoke", id], None);
    assert!(out.status.success(), "{}", text(&out));
    let out = cli(&["command", "list"], Some(secret));
    assert!(!out.status.success(), "{}", text(&out));
    let out = cli(&["api-token", "revoke", "nope"], None);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[test]
fn access_identities_get_their_role_from_the_roles_file() {
    let dir = tempfile::tempdir().unwrap();
    let roles = dir.path().join("roles.toml");
    std::fs::write(
        &roles,
        "default = \"none\"\n[admin]\nemails = [\"alice@example.com\"]\n[operator]\ngroups = [\"sre\"]\nnames = [\"3f2a9c0d.access\"]\n[viewer]\ndomains = [\"example.com\"]\n",
    )
    .unwrap();
    let certs = Certs::start(&["k1"]);
    let cc = certs.command_center(&["--roles", roles.to_str().unwrap()]);
    assert_eq!(
        cc.post_json("/api/agent/heartbeat", &heartbeat_json(NODE, "alpha", 1))
            .status,
        200
    );
    let as_user = |claims: &Value, method: &str, path: &str, body: Option<&Value>| {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = http()
            .request(method, format!("{}{path}", cc.url))
            .header("cf-access-jwt-assertion", mint("k1", claims));
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        Reply::from(req.send().unwrap())
    };
    let note = json!({"kind": "note", "node_id": NODE, "body": {"text": "hi"}});
    let viewer = user_claims("bob@example.com");
    assert_eq!(as_user(&viewer, "GET", "/api/nodes", None).status, 200);
    let r = as_user(&viewer, "POST", "/api/events", Some(&note));
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("needs the operator role (scope events:write); bob@example.com is a viewer"),
        "{}",
        r.body
    );
    let mut sre = user_claims("carol@elsewhere.org");
    sre["groups"] = json!(["sre"]);
    let r = as_user(&sre, "POST", "/api/events", Some(&note));
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["author"], "carol@elsewhere.org");
    let r = as_user(&sre, "POST", &format!("/api/nodes/{NODE}/revoke"), None);
    assert_eq!(r.status, 403, "{}", r.body);
    // Groups under `custom` (as Access passes on a provider's claims) count too.
    let mut custom = user_claims("dave@elsewhere.org");
    custom["custom"] = json!({"groups": ["sre"]});
    assert_eq!(
        as_user(&custom, "POST", "/api/events", Some(&note)).status,
        201
    );
    // A service token, by its common name.
    let mut service = user_claims("unused@example.com");
    service.as_object_mut().unwrap().remove("email");
    service["common_name"] = json!("3f2a9c0d.access");
    let r = as_user(&service, "POST", "/api/events", Some(&note));
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["author"], "3f2a9c0d.access");
    let alice = user_claims("Alice@Example.com");
    let r = as_user(&alice, "GET", "/api/api-tokens", None);
    assert_eq!(r.status, 200, "{}", r.body);
    let stranger = user_claims("eve@evil.test");
    let r = as_user(&stranger, "GET", "/api/nodes", None);
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("has no role here")
    );
    cc.wait_for_log(&["reason=role"]);

    // `roles check` says what the file does, and names a bad key.
    let out = cc_command(&["roles", "check", roles.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("admin: 1 rule(s), operator: 2, viewer: 1; anyone else: refused (403)"),
        "{}",
        text(&out)
    );
    std::fs::write(&roles, "[operator]\ngroup = [\"sre\"]\n").unwrap();
    let out = cc_command(&["roles", "check", roles.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("roles.toml: operator.group: unknown field `group`, expected one of `emails`, `groups`, `domains`"),
        "{err}"
    );
    // And serve refuses to start with it, before it touches the log directory.
    let logs = dir.path().join("logs");
    let out = cc_command(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--roles",
        roles.to_str().unwrap(),
        "--log-dir",
        logs.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(!logs.join("vaultmesh.lock").exists(), "no lock, no replay");
    // The server's own admin token cannot be an API token (a shell set up for the CLI).
    let out = cc_command(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--admin-token",
        "vmk_0123456789abcdefghijklmnopqrstuvwxyzABCDEFG",
        "--log-dir",
        logs.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("that is a named API token"),
        "{}",
        text(&out)
    );
}

#[test]
fn an_event_stream_opened_with_a_token_ends_when_the_token_is_revoked() {
    use std::io::Read;
    let cc = CommandCenter::start();
    let t = make(&cc, json!({"name": "wallboard", "role": "viewer"}));
    let (id, secret) = (t["id"].as_str().unwrap(), t["secret"].as_str().unwrap());
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let mut stream = client
        .get(format!("{}/events", cc.url))
        .bearer_auth(secret)
        .send()
        .unwrap();
    assert_eq!(stream.status().as_u16(), 200);
    let started = std::time::Instant::now();
    let r = cc.request("DELETE", &format!("/api/api-tokens/{id}"), None, "");
    assert_eq!(r.status, 200, "{}", r.body);
    // The stream closes (EOF) within a few seconds instead of running on.
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => continue,
            Err(e) => panic!("the stream did not close: {e}"),
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    // A stream without a token (loopback) is not affected by it.
    let other = client.get(format!("{}/events", cc.url)).send().unwrap();
    assert_eq!(other.status().as_u16(), 200);
}
