//! The admin CLI (`command issue|list`, `node revoke|readmit`) against the real Command Center
//! started with `--admin-token`, and a real agent: credentials from flags and the environment,
//! a refused token's reason, `--wait` printing the agent's receipt, the table and `--json`,
//! `--node` by hostname (ambiguous or unknown: exit 2), and an Access service token's headers
//! (sent, never shown).

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;
use uuid::Uuid;
use vaultmesh_testkit::auth::TestNode;
use vaultmesh_testkit::receiver::Receiver;
use vaultmesh_testkit::{
    CC_BIN, CommandCenter, NodeAgent, TEST_TOKEN, binary, commanding_center, heartbeat_json, http,
    text, wait_for,
};

const TOKEN: &str = "cli-admin-token-0123456789abcdef";
const ACCESS_SECRET: &str = "access-client-secret-0123456789";

/// `vaultmesh-command-center ARGS` with `env` and no admin settings from the test's own
/// environment.
fn cli(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(binary(CC_BIN));
    for var in [
        "VAULTMESH_ADMIN_URL",
        "VAULTMESH_ADMIN_TOKEN",
        "VAULTMESH_ACCESS_CLIENT_ID",
        "VAULTMESH_ACCESS_CLIENT_SECRET",
        "VAULTMESH_CC_URL",
    ] {
        cmd.env_remove(var);
    }
    cmd.args(args)
        .envs(env.iter().copied())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// `command issue --node NODE --action ACTION EXTRA...`.
fn issue(node: &str, action: &str, extra: &[&str], env: &[(&str, &str)]) -> Output {
    let mut args = vec!["command", "issue", "--node", node, "--action", action];
    args.extend_from_slice(extra);
    cli(&args, env)
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `GET path` with the admin token.
fn admin_get(cc: &CommandCenter, path: &str) -> Value {
    http()
        .get(format!("{}{path}", cc.url))
        .bearer_auth(TOKEN)
        .send()
        .unwrap()
        .json()
        .unwrap()
}

#[test]
fn the_cli_authenticates_and_follows_a_command_to_the_real_agents_receipt() {
    // No scheduled scan during the test: only the commands it issues.
    let (cc, _keys, public) = commanding_center(&["--admin-token", TOKEN, "--scan-tick", "1h"]);
    let agent = NodeAgent::new(&cc.url)
        .env("VAULTMESH_CC_PUBKEY", &public)
        .env("VAULTMESH_OS_PROFILE", "ArchVault")
        .env("VAULTMESH_INTERVAL", "1s")
        .config("[commands]\nallow = [\"agent.ping\", \"checks.run\"]\n");
    let _running = agent.spawn(&["run"]);
    let (node_id, hostname) = wait_for(Duration::from_secs(20), || {
        let nodes = admin_get(&cc, "/api/nodes");
        let n = nodes.as_array()?.first()?.clone();
        Some((
            n["node_id"].as_str()?.to_string(),
            n["hostname"].as_str()?.to_string(),
        ))
    })
    .expect("the agent reported");

    // No credentials, then a wrong token: exit 1 with the Command Center's reason.
    let out = cli(&["command", "list", "--url", &cc.url], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        stderr(&out).starts_with(
            "error: 401: an admin bearer token is required (no credentials were given"
        ),
        "{}",
        text(&out)
    );
    let wrong = "not-the-admin-token-0123456789";
    let out = cli(
        &["command", "list", "--url", &cc.url, "--token", wrong],
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(
        stderr(&out),
        "error: 401: wrong admin token\n",
        "{}",
        text(&out)
    );

    // The right token from the environment, the URL from VAULTMESH_ADMIN_URL (the agent's
    // VAULTMESH_CC_URL is not the admin URL), the node by its hostname: the receipt is printed.
    let env = [
        ("VAULTMESH_ADMIN_URL", cc.url.as_str()),
        ("VAULTMESH_ADMIN_TOKEN", TOKEN),
        ("VAULTMESH_CC_URL", "http://127.0.0.1:9"),
    ];
    let out = issue(&hostname, "agent.ping", &["--wait", "20s"], &env);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let printed = stdout(&out);
    assert!(
        printed.starts_with(&format!(
            "issued agent.ping to {hostname} ({node_id}): command "
        )),
        "{printed}"
    );
    assert!(printed.contains("\nok, exit code 0, "), "{printed}");
    assert!(
        printed.contains("\npong from vaultmesh-node-agent"),
        "{printed}"
    );

    // Allowed by the policy, refused by the agent's own list: the rejection and exit 1.
    let out = issue(
        &node_id,
        "service.status",
        &["--arg", "unit=cloudflared.service", "--wait"],
        &env,
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        stdout(&out).contains(
            "\nrejected: action \"service.status\" is not in this node's [commands] allow list"
        ),
        "{}",
        text(&out)
    );
    assert_eq!(stderr(&out), "", "the outcome is the whole story");

    // --json with --wait: the command with its receipt.
    let out = issue(
        &node_id,
        "checks.run",
        &["--arg", "name=memory", "--wait", "20s", "--json"],
        &env,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let done: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(done["status"], "ok", "{done}");
    assert_eq!(done["receipt"]["receipt"]["node_id"], node_id.as_str());
    assert_eq!(
        done["command"]["issued_by"], "admin",
        "the token's identity issues it"
    );

    // A policy refusal: the 403 reason, exit 1.
    let out = issue(
        &hostname,
        "service.restart",
        &["--arg", "unit=sshd.service"],
        &env,
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(stderr(&out).starts_with("error: 403: "), "{}", text(&out));

    // The table, the JSON, a filter.
    let out = cli(&["command", "list"], &env);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let table = stdout(&out);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("ISSUED (UTC)"), "{table}");
    assert_eq!(lines.len(), 4, "a header and three commands: {table}");
    assert!(
        lines[1].contains("checks.run") && lines[1].contains(" ok "),
        "{table}"
    );
    assert!(
        lines[2].contains("service.status") && lines[2].contains("rejected"),
        "{table}"
    );
    assert!(
        lines[3].contains("agent.ping") && lines[3].contains(&hostname),
        "{table}"
    );
    let out = cli(&["command", "list", "--node", &hostname, "--json"], &env);
    let all: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(all.as_array().unwrap().len(), 3, "{all}");
    let out = cli(&["command", "list", "--status", "rejected", "--json"], &env);
    let rejected: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rejected.as_array().unwrap().len(), 1, "{rejected}");
    let out = cli(&["command", "list", "--status", "done"], &env);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));

    // A node that never polls: --wait gives up with a message, exit 1.
    let silent = Uuid::from_u128(0xad00_0000_0000_4000_8000_0000_0000_0001);
    assert_eq!(
        cc.post_json(
            "/api/agent/heartbeat",
            &heartbeat_json(&silent.to_string(), "silent-node", 1)
        )
        .status,
        200
    );
    let out = issue("silent-node", "agent.ping", &["--wait", "2s"], &env);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        stderr(&out).starts_with("error: no receipt within 2s: command "),
        "{}",
        text(&out)
    );
    assert!(
        stderr(&out).contains(" is issued; follow it with "),
        "{}",
        text(&out)
    );
    assert!(!text(&out).contains(TOKEN), "the token never shows");
}

#[test]
fn nodes_are_named_by_hostname_and_revoked_or_readmitted_and_ambiguity_is_exit_2() {
    let cc = CommandCenter::start_with(&["--admin-token", TOKEN]);
    let id = |n: u128| Uuid::from_u128(0xad00_0000_0000_4000_8000_0000_0000_0100 | n);
    for (n, host) in [(1, "twin"), (2, "twin"), (3, "solo-node")] {
        let r = cc.post_json(
            "/api/agent/heartbeat",
            &heartbeat_json(&id(n).to_string(), host, 1),
        );
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let env = [
        ("VAULTMESH_ADMIN_URL", cc.url.as_str()),
        ("VAULTMESH_ADMIN_TOKEN", TOKEN),
    ];

    // Two nodes by that name: exit 2, naming both.
    let out = cli(&["node", "revoke", "twin"], &env);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let e = stderr(&out);
    assert!(
        e.starts_with("error: --node \"twin\": 2 nodes have that name; give one of their ids: "),
        "{e}"
    );
    assert!(
        e.contains(&id(1).to_string()) && e.contains(&id(2).to_string()),
        "{e}"
    );
    // A typo: exit 2 with the near name.
    let out = cli(&["node", "revoke", "solo-nod"], &env);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert_eq!(
        stderr(&out),
        "error: --node \"solo-nod\": no node has that id, hostname or display name; did you mean solo-node?\n"
    );
    // The same for command issue.
    let out = issue("twin", "agent.ping", &[], &env);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));

    // A wrong token: exit 1 with the reason, nothing revoked.
    let out = cli(
        &[
            "node",
            "revoke",
            &id(3).to_string(),
            "--token",
            "wrong-token-0123456789",
        ],
        &[("VAULTMESH_ADMIN_URL", cc.url.as_str())],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(stderr(&out), "error: 401: wrong admin token\n");

    // Revoke by hostname: its signed requests are refused from then on.
    let solo = TestNode::new(id(3));
    let out = cli(
        &["node", "revoke", "solo-node", "--reason", "sent for repair"],
        &env,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        stdout(&out).starts_with(&format!("revoked solo-node ({}): ", id(3))),
        "{}",
        text(&out)
    );
    let r = solo.post_heartbeat(&cc.url, &heartbeat_json(&id(3).to_string(), "solo-node", 2));
    assert_eq!(r.unwrap().status().as_u16(), 401);
    let events = http()
        .get(format!("{}/api/events?kind=node_revoked", cc.url))
        .bearer_auth(TOKEN)
        .send()
        .unwrap()
        .json::<Value>()
        .unwrap();
    assert_eq!(events[0]["body"]["reason"], "sent for repair", "{events}");
    // Twice: the Command Center's 409 reason, exit 1.
    let out = cli(&["node", "revoke", "solo-node"], &env);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(stderr(&out).starts_with("error: 409: "), "{}", text(&out));

    // Re-admit: with a new key only...
    let out = cli(&["node", "readmit", &id(3).to_string()], &env);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        stdout(&out).contains("it may enroll with a new key"),
        "{}",
        text(&out)
    );
    assert_eq!(
        solo.enroll_with(&cc.url, TEST_TOKEN),
        403,
        "the old key stays out"
    );
    let rekeyed = TestNode::with_key(id(3), 1);
    assert_eq!(rekeyed.enroll_with(&cc.url, TEST_TOKEN), 200);
    // ...or, after a mistaken revocation, with the old one.
    assert_eq!(
        cli(&["node", "revoke", "solo-node"], &env).status.code(),
        Some(0)
    );
    let out = cli(&["node", "readmit", "solo-node", "--allow-old-key"], &env);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(stdout(&out).contains("with its old key"), "{}", text(&out));
    assert_eq!(rekeyed.enroll_with(&cc.url, TEST_TOKEN), 200);
    // A node that is not revoked: 409.
    let out = cli(&["node", "readmit", &id(1).to_string()], &env);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(stderr(&out).starts_with("error: 409: "), "{}", text(&out));
}

#[test]
fn an_access_service_token_is_sent_on_every_request_and_never_shown() {
    // Cloudflare's edge turns the service token into an Access JWT; beyond the machine's edge,
    // so a receiver stands in for it and records what the CLI sends.
    let edge = Receiver::start();
    let out = cli(
        &[
            "command",
            "list",
            "--url",
            &edge.url(""),
            "--access-client-id",
            "0123abcd.access",
        ],
        &[("VAULTMESH_ACCESS_CLIENT_SECRET", ACCESS_SECRET)],
    );
    let got = edge.wait_for(1, Duration::from_secs(5));
    assert_eq!(got.len(), 1, "{}", text(&out));
    assert_eq!(got[0].method, "GET");
    assert_eq!(got[0].path, "/api/nodes?include=decommissioned");
    assert_eq!(got[0].headers["cf-access-client-id"], "0123abcd.access");
    assert_eq!(got[0].headers["cf-access-client-secret"], ACCESS_SECRET);
    assert!(!got[0].headers.contains_key("authorization"));
    // The receiver is not a Command Center: exit 1 saying so, without the secret.
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        stderr(&out).contains("is not what the Command Center sends"),
        "{}",
        text(&out)
    );
    assert!(!text(&out).contains(ACCESS_SECRET));

    // Half a service token is a usage error; --help hides the secret's value.
    let out = cli(
        &["command", "list", "--access-client-id", "0123abcd.access"],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(stderr(&out).contains("required"), "{}", text(&out));
    let out = cli(
        &["node", "revoke", "--help"],
        &[
            ("VAULTMESH_ACCESS_CLIENT_ID", "0123abcd.access"),
            ("VAULTMESH_ACCESS_CLIENT_SECRET", ACCESS_SECRET),
            ("VAULTMESH_ADMIN_TOKEN", TOKEN),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(stdout(&out).contains("VAULTMESH_ACCESS_CLIENT_SECRET"));
    assert!(!text(&out).contains(ACCESS_SECRET) && !text(&out).contains(TOKEN));

    // A Command Center behind Access, reached without Cloudflare's JWT: its reason, exit 1.
    let certs = vaultmesh_testkit::access::Certs::start(&["k1"]);
    let cc = certs.command_center(&[]);
    let out = cli(
        &["node", "revoke", &Uuid::nil().to_string(), "--url", &cc.url],
        &[
            ("VAULTMESH_ACCESS_CLIENT_ID", "0123abcd.access"),
            ("VAULTMESH_ACCESS_CLIENT_SECRET", ACCESS_SECRET),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        stderr(&out).starts_with("error: 401: sign in through Cloudflare Access"),
        "{}",
        text(&out)
    );
}

#[test]
fn tokens_are_minted_listed_and_revoked_from_the_cli_and_bad_flags_are_exit_2() {
    let cc = CommandCenter::start_with(&["--admin-token", TOKEN]);
    let env = [
        ("VAULTMESH_ADMIN_URL", cc.url.as_str()),
        ("VAULTMESH_ADMIN_TOKEN", TOKEN),
    ];
    // Bad flags are refused before anything is sent, naming the flag; a typo gets the near name.
    for (args, says) in [
        (
            &["token", "create", "--name", "x", "--uses", "0"][..],
            "--uses <USES>",
        ),
        (
            &["token", "create", "--name", "x", "--expires-in", "31d"][..],
            "--expires-in <EXPIRES_IN>",
        ),
        (
            &["token", "create", "--name", " "][..],
            "--name: give the token a name",
        ),
        (
            &["token", "craete", "--name", "x"][..],
            "similar subcommand exists: 'create'",
        ),
        (
            &["token", "create", "--nmae", "x"][..],
            "similar argument exists: '--name'",
        ),
        (
            &["token", "revoke", "nope"][..],
            "ID \"nope\": a token id is 16 hex digits",
        ),
    ] {
        let out = cli(args, &env);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        assert!(stderr(&out).contains(says), "{args:?}: {}", text(&out));
    }
    assert!(
        admin_get(&cc, "/api/enroll-tokens")
            .as_array()
            .unwrap()
            .is_empty()
    );

    let out = cli(
        &[
            "token",
            "create",
            "--name",
            "fra1 rack 2",
            "--uses",
            "3",
            "--expires-in",
            "2h",
        ],
        &env,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let printed = stdout(&out);
    let secret = printed
        .lines()
        .find_map(|l| l.strip_prefix("secret (shown this once): "))
        .expect("the secret is printed")
        .to_string();
    assert!(
        printed.contains(&format!(
            "VAULTMESH_CC_URL={} VAULTMESH_ENROLL_TOKEN={secret} ",
            cc.url
        )),
        "{printed}"
    );
    let id = admin_get(&cc, "/api/enroll-tokens")[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        printed.starts_with(&format!(
            "minted enrollment token {id} (\"fra1 rack 2\"): 3 uses"
        )),
        "{printed}"
    );
    assert_eq!(
        TestNode::new(Uuid::from_u128(0x70c1)).enroll_with(&cc.url, &secret),
        200
    );

    // The `tokens` alias lists them; the table never shows the secret.
    let out = cli(&["tokens", "list"], &env);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let table = stdout(&out);
    assert!(table.starts_with("ID "), "{table}");
    assert!(
        table.contains(&id) && table.contains("active") && table.contains("1/3"),
        "{table}"
    );
    assert!(!table.contains(&secret), "{table}");
    let out = cli(&["token", "list", "--json"], &env);
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed[0]["used"], 1);

    let out = cli(&["token", "revoke", &id], &env);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        stdout(&out).starts_with(&format!("revoked enrollment token {id} (\"fra1 rack 2\")")),
        "{}",
        text(&out)
    );
    assert_eq!(
        TestNode::new(Uuid::from_u128(0x70c2)).enroll_with(&cc.url, &secret),
        401
    );
    // An unknown id: the Command Center's 404, exit 1.
    let out = cli(&["token", "revoke", "0123456789abcdef"], &env);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        stderr(&out).contains("404: no enrollment token 0123456789abcdef"),
        "{}",
        text(&out)
    );
}

/// Issue 25: `node rename NODE NAME` gives a node a display name (NODE by id, hostname or
/// display name), `--clear` takes it away; a bad name is exit 2 naming it, before any request;
/// the event's author is the token's admin.
#[test]
fn node_rename_sets_and_clears_a_display_name_and_names_the_node_by_it() {
    let cc = CommandCenter::start_with(&["--admin-token", TOKEN]);
    let id = Uuid::from_u128(0xad00_0000_0000_4000_8000_0000_0000_0201);
    let r = cc.post_json(
        "/api/agent/heartbeat",
        &heartbeat_json(&id.to_string(), "vault-node-01", 1),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let env = [
        ("VAULTMESH_ADMIN_URL", cc.url.as_str()),
        ("VAULTMESH_ADMIN_TOKEN", TOKEN),
    ];
    let display_name = || {
        admin_get(&cc, "/api/nodes")
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["node_id"] == id.to_string())
            .unwrap()["display_name"]
            .clone()
    };

    let out = cli(
        &["node", "rename", "vault-node-01", "Frankfurt edge 1"],
        &env,
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        stdout(&out),
        format!(
            "renamed vault-node-01 ({id}): it is shown as \"Frankfurt edge 1\", its hostname beside it\n"
        )
    );
    assert_eq!(display_name(), "Frankfurt edge 1");
    let events = admin_get(&cc, "/api/events?kind=node_renamed");
    assert_eq!(events[0]["author"], "admin", "{events:#}");

    // Named by its display name (any case), renamed again.
    let out = cli(
        &["node", "rename", "frankfurt EDGE 1", "Frankfurt edge 2"],
        &env,
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        stdout(&out).starts_with(&format!("renamed Frankfurt edge 1 (vault-node-01, {id})")),
        "{}",
        stdout(&out)
    );
    assert_eq!(display_name(), "Frankfurt edge 2");

    // Bad names: exit 2 naming NAME and the reason, nothing sent.
    for (name, says) in [
        (
            "x".repeat(65),
            "error: NAME: display_name is 65 characters; the limit is 64\n",
        ),
        (
            "edge\u{202e}2".to_string(),
            "error: NAME: display_name contains U+202E: a control character, or a bidirectional or invisible one, that could make it read as another node's name\n",
        ),
        (
            "  ".to_string(),
            "error: NAME is empty; to show the node by its hostname again, use --clear\n",
        ),
    ] {
        let out = cli(&["node", "rename", "vault-node-01", &name], &env);
        assert_eq!(out.status.code(), Some(2), "{name:?}: {}", text(&out));
        assert_eq!(stderr(&out), says, "{name:?}");
    }
    // Neither a name nor --clear, or both: usage, exit 2.
    let out = cli(&["node", "rename", "vault-node-01"], &env);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(stderr(&out).contains("<NAME>"), "{}", stderr(&out));
    let out = cli(&["node", "rename", "vault-node-01", "x", "--clear"], &env);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    // A typo of its display name: the near name.
    let out = cli(&["node", "rename", "Frankfurt edge", "x"], &env);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        stderr(&out).ends_with("did you mean Frankfurt edge 2?\n"),
        "{}",
        stderr(&out)
    );
    assert_eq!(display_name(), "Frankfurt edge 2");

    // --clear: the hostname again; a second --clear is the server's 409, exit 1.
    let out = cli(&["node", "rename", &id.to_string(), "--clear"], &env);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        stdout(&out),
        format!(
            "cleared the display name of Frankfurt edge 2 (vault-node-01, {id}): it is shown by its hostname\n"
        )
    );
    assert!(display_name().is_null());
    let out = cli(&["node", "rename", "vault-node-01", "--clear"], &env);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        stderr(&out).contains("409") && stderr(&out).contains("no display name to clear"),
        "{}",
        stderr(&out)
    );
    // Without the token: refused.
    let out = cli(
        &["node", "rename", "vault-node-01", "x"],
        &[("VAULTMESH_ADMIN_URL", cc.url.as_str())],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(display_name().is_null());
}
