//! Bad input to every endpoint gets a 4xx with a JSON error body, and never costs the Command
//! Center its process or the data it already accepted. Real binary, real HTTP.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use vaultmesh_testkit::{CommandCenter, Reply};

const SEED: &str = r#"{
"node_id": "550e8400-e29b-41d4-a716-446655440000",
"hostname": "vault-node-01",
"os_profile": "ArchVault",
"cloudflare_ok": true,
"services_ok": true,
"vaultmesh_root": "/var/lib/vaultmesh",
"timestamp": "2024-01-15T10:30:00Z"
}"#;

fn seed() -> serde_json::Value {
    serde_json::from_str(SEED).unwrap()
}

fn with(field: &str, value: serde_json::Value) -> Vec<u8> {
    let mut v = seed();
    v[field] = value;
    serde_json::to_vec(&v).unwrap()
}

fn assert_error(r: &Reply, status: u16, contains: &str, case: &str) {
    assert_eq!(r.status, status, "{case}: {}", r.body);
    assert!(
        r.content_type.starts_with("application/json"),
        "{case}: content-type {}",
        r.content_type
    );
    let err = r.json()["error"]
        .as_str()
        .unwrap_or_else(|| panic!("{case}: no error field in {}", r.body))
        .to_string();
    assert!(
        err.contains(contains),
        "{case}: got {err:?}, want {contains:?}"
    );
}

#[test]
fn a_seed_only_heartbeat_is_accepted() {
    let cc = CommandCenter::start();
    let r = cc.request(
        "POST",
        "/api/agent/heartbeat",
        Some("application/json"),
        SEED,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let body = r.json();
    assert_eq!(body["accepted"], true);
    assert_eq!(body["node_id"], "550e8400-e29b-41d4-a716-446655440000");
    let node = cc.get_json("/api/nodes/550e8400-e29b-41d4-a716-446655440000");
    assert_eq!(node["latest"], seed());
}

#[test]
fn bad_heartbeats_get_4xx_json_errors_and_accepted_data_survives() {
    let cc = CommandCenter::start();
    assert_eq!(
        cc.request(
            "POST",
            "/api/agent/heartbeat",
            Some("application/json"),
            SEED
        )
        .status,
        200
    );

    let json = Some("application/json");
    /// (case, content type, body, status, error contains)
    type Case<'a> = (&'a str, Option<&'a str>, Vec<u8>, u16, &'a str);
    let cases: Vec<Case<'_>> = vec![
        (
            "malformed JSON",
            json,
            b"{\"node_id\": ".to_vec(),
            400,
            "malformed JSON",
        ),
        (
            "not JSON at all",
            json,
            b"hello".to_vec(),
            400,
            "malformed JSON",
        ),
        ("empty body", json, Vec::new(), 400, "malformed JSON"),
        (
            "array instead of object",
            json,
            b"[]".to_vec(),
            422,
            "invalid heartbeat",
        ),
        (
            "missing field",
            json,
            br#"{"node_id":"550e8400-e29b-41d4-a716-446655440000"}"#.to_vec(),
            422,
            "missing field `hostname`",
        ),
        (
            "wrong type",
            json,
            with("cloudflare_ok", "yes".into()),
            422,
            "invalid type: string \"yes\", expected a boolean",
        ),
        (
            "bad UUID",
            json,
            with("node_id", "node-1".into()),
            422,
            "UUID",
        ),
        (
            "bad timestamp",
            json,
            with("timestamp", "yesterday".into()),
            422,
            "invalid heartbeat",
        ),
        (
            "bad check status",
            json,
            with(
                "checks",
                serde_json::json!([{"name":"x","status":"fine","summary":"","observed_at":"2024-01-15T10:30:00Z"}]),
            ),
            422,
            "unknown variant `fine`",
        ),
        (
            "empty hostname",
            json,
            with("hostname", "".into()),
            422,
            "hostname must not be empty",
        ),
        (
            "control characters",
            json,
            with("hostname", "a\u{1b}[31mb".into()),
            422,
            "hostname contains U+001B: a control character",
        ),
        (
            "huge hostname",
            json,
            with("hostname", "h".repeat(1000).into()),
            422,
            "hostname is 1000 bytes",
        ),
        (
            "bad seq",
            json,
            with("seq", "12a".into()),
            422,
            "seq must be a decimal",
        ),
        (
            "negative uptime",
            json,
            with("uptime_s", (-5).into()),
            422,
            "invalid value",
        ),
        (
            "wrong content type",
            Some("text/plain"),
            SEED.as_bytes().to_vec(),
            415,
            "application/json",
        ),
        (
            "no content type",
            None,
            SEED.as_bytes().to_vec(),
            415,
            "application/json",
        ),
        (
            "oversized body",
            json,
            vec![b' '; 300 * 1024],
            413,
            "larger than the 262144-byte limit",
        ),
    ];
    for (case, ct, body, status, contains) in cases {
        let r = cc.request("POST", "/api/agent/heartbeat", ct, body);
        assert_error(&r, status, contains, case);
    }

    // Still up, and the heartbeat accepted before all that is intact.
    let nodes = cc.get_json("/api/nodes");
    assert_eq!(nodes.as_array().unwrap().len(), 1);
    assert_eq!(nodes[0]["hostname"], "vault-node-01");
    assert_eq!(nodes[0]["heartbeats"], 1);
}

#[test]
fn bad_reads_and_routes_get_4xx_json_errors() {
    let cc = CommandCenter::start();
    assert_error(
        &cc.get("/api/nodes/not-a-uuid"),
        400,
        "\"not-a-uuid\" is not a node id (UUID)",
        "bad id",
    );
    assert_error(
        &cc.get("/api/nodes/550e8400-e29b-41d4-a716-446655440000"),
        404,
        "no node 550e8400",
        "unknown node",
    );
    assert_error(&cc.get("/api/nope"), 404, "no such route", "unknown route");
    assert_error(
        &cc.request("DELETE", "/api/nodes", None, ""),
        405,
        "method not allowed",
        "wrong method",
    );
    assert_error(
        &cc.request("GET", "/api/agent/heartbeat", None, ""),
        405,
        "method not allowed",
        "GET on POST route",
    );
    assert_error(
        &cc.request("PUT", "/healthz", None, ""),
        405,
        "method not allowed",
        "PUT healthz",
    );
    let health = cc.get_json("/healthz");
    assert_eq!(health["status"], "ok");
    assert_eq!(health["nodes"], 0);
}

#[test]
fn node_limit_refuses_new_nodes_with_503() {
    let cc = CommandCenter::start_with(&["--max-nodes", "1"]);
    assert_eq!(
        cc.request(
            "POST",
            "/api/agent/heartbeat",
            Some("application/json"),
            SEED
        )
        .status,
        200
    );
    let r = cc.request(
        "POST",
        "/api/agent/heartbeat",
        Some("application/json"),
        with("node_id", "6ba7b810-9dad-11d1-80b4-00c04fd430c8".into()),
    );
    assert_error(&r, 503, "already tracks 1 nodes", "node limit");
}

#[test]
fn deeply_nested_json_is_a_clear_4xx_not_a_crash() {
    let cc = CommandCenter::start();
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    for path in ["/api/agent/heartbeat", "/api/events", "/api/agent/scans"] {
        let body = format!(r#"{{"node_id":"550e8400-e29b-41d4-a716-446655440000","body":{deep}}}"#);
        let r = cc.request("POST", path, Some("application/json"), body);
        assert!(
            (400..500).contains(&r.status),
            "{path}: {} {}",
            r.status,
            &r.body[..r.body.len().min(200)]
        );
        assert!(r.body.contains("\"error\""), "{path}: {}", r.body);
    }
    assert_eq!(cc.get("/healthz").status, 200, "still serving");
}

/// Issue 21 item 7: hostnames with bidi overrides or zero-width characters, and hostnames
/// identical to another node's, were accepted and shown raw. Deceptive characters are now
/// refused at the wire (heartbeats, enrollment, events), and a hostname two nodes share is
/// marked wherever nodes are listed — the node id is the identity.
#[test]
fn deceptive_strings_are_refused_and_shared_hostnames_are_marked() {
    let cc = CommandCenter::start();
    let hb = |host: &str| with("hostname", serde_json::json!(host));
    for (host, ch) in [
        ("vault\u{202e}10-edon", "U+202E"),
        ("vault\u{200b}node", "U+200B"),
        ("\u{2066}vault\u{2069}", "U+2066"),
        ("vault\u{feff}", "U+FEFF"),
    ] {
        let r = cc.request(
            "POST",
            "/api/agent/heartbeat",
            Some("application/json"),
            hb(host),
        );
        assert_error(&r, 422, ch, host);
    }
    let r = cc.post_json(
        "/api/events",
        &serde_json::json!({"kind": "incident", "body": {"title": "disk \u{202e}lluf"}}),
    );
    assert_error(&r, 422, "U+202E", "incident title");
    let r = cc.post_json(
        "/api/events",
        &serde_json::json!({"kind": "note", "body": {"text": "two\nlines are fine\u{200d}"}}),
    );
    assert_error(&r, 422, "U+200D", "note text");
    let r = cc.post_json(
        "/api/events",
        &serde_json::json!({"kind": "note", "body": {"text": "two\nlines\tare fine"}}),
    );
    assert_eq!(r.status, 201, "{}", r.body);

    // Two nodes, one name.
    let twin = "550e8400-e29b-41d4-a716-446655440001";
    for node in ["550e8400-e29b-41d4-a716-446655440000", twin] {
        let body = vaultmesh_testkit::heartbeat_json(node, "vault-node-01", 1);
        assert_eq!(cc.post_json("/api/agent/heartbeat", &body).status, 200);
    }
    let other =
        vaultmesh_testkit::heartbeat_json("550e8400-e29b-41d4-a716-446655440002", "solo", 1);
    assert_eq!(cc.post_json("/api/agent/heartbeat", &other).status, 200);
    // DNS names ignore case and a trailing dot: these two are one name too.
    for (node, name) in [
        ("550e8400-e29b-41d4-a716-446655440003", "Edge-7"),
        ("550e8400-e29b-41d4-a716-446655440004", "edge-7."),
    ] {
        let body = vaultmesh_testkit::heartbeat_json(node, name, 1);
        assert_eq!(cc.post_json("/api/agent/heartbeat", &body).status, 200);
    }
    let nodes = cc.get_json("/api/nodes");
    let shared: Vec<(&str, bool)> = nodes
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["hostname"].as_str().unwrap(),
                n["hostname_shared"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    assert_eq!(
        shared,
        [
            ("Edge-7", true),
            ("edge-7.", true),
            ("solo", false),
            ("vault-node-01", true),
            ("vault-node-01", true)
        ]
    );
    let one = cc.get_json(&format!("/api/nodes/{twin}"));
    assert_eq!(one["summary"]["hostname_shared"], true);
    let console = cc.get("/console").body;
    assert_eq!(
        console.matches("same name · ").count(),
        5,
        "both pairs of twins marked in the list, and the first (shown) node's header"
    );
    let row = cc.get(&format!("/console/nodes/{twin}/row")).body;
    assert!(row.contains("same name · 550e8400"), "{row}");
    assert!(cc.get("/").body.contains("same name"));
}

/// Forward compatibility (API.md): an agent newer than the Command Center may send members the
/// Command Center does not know, at any depth, and query parameters it does not use. Each agent
/// route accepts them; admin routes that refuse unknown fields do so with a 4xx naming them.
#[test]
fn agent_requests_with_unknown_members_at_every_level_are_accepted() {
    use serde_json::json;
    use vaultmesh_testkit::auth::TestNode;

    let (cc, _keydir, _) = vaultmesh_testkit::commanding_center(&[]);
    let node = TestNode::new(uuid::Uuid::new_v4());
    let id = node.id.to_string();
    let post = |path: &str, body: &serde_json::Value| {
        Reply::from(
            node.signed(
                &cc.url,
                "POST",
                path,
                Some("application/json"),
                serde_json::to_vec(body).unwrap(),
            )
            .send()
            .unwrap(),
        )
    };
    let future = json!({"from": "a newer agent", "nested": [{"x": 1.5}]});

    let enroll = json!({
        "node_id": id, "public_key": node.key.public_base64(), "hostname": "compat",
        "os_profile": "ArchVault", "token": vaultmesh_testkit::TEST_TOKEN, "nonce": "n1",
        "capabilities": future,
    });
    let r = post("/api/agent/enroll", &enroll);
    assert_eq!(r.status, 200, "enroll: {}", r.body);

    let heartbeat = json!({
        "node_id": id, "hostname": "compat", "os_profile": "ArchVault", "cloudflare_ok": true,
        "services_ok": true, "vaultmesh_root": "/var/lib/vaultmesh",
        "timestamp": "2026-11-29T10:00:00Z", "seq": "1", "future": future,
        "metrics": {"load": [0.1, 0.2, 0.3], "cpu_count": 2, "psi": future,
                    "disks": [{"mount": "/", "fs": "ext4", "total_bytes": 100, "used_bytes": 42,
                               "device": "/dev/vda1"}]},
        "checks": [{"name": "disk", "status": "ok", "summary": "fine",
                    "observed_at": "2026-11-29T10:00:00Z", "labels": future}],
        "last_scan": {"scan_id": "00000000-0000-4000-8000-0000000000a1",
                      "finished_at": "2026-11-29T09:00:00Z", "counts": {}, "source": "cron"},
    });
    let r = post("/api/agent/heartbeat", &heartbeat);
    assert_eq!(r.status, 200, "heartbeat: {}", r.body);
    let detail = cc.get_json(&format!("/api/nodes/{id}"));
    assert_eq!(detail["latest"]["metrics"]["disks"][0]["used_bytes"], 42);
    assert_eq!(detail["latest"]["checks"][0]["summary"], "fine");

    let scan = json!({
        "scan_id": uuid::Uuid::new_v4(), "node_id": id, "profile": "ArchVault",
        "started_at": "2026-11-29T10:00:00Z", "finished_at": "2026-11-29T10:00:01Z",
        "findings": [{"rule": "sshd", "severity": "high", "title": "root login",
                      "cve": ["CVE-0000-0000"]}],
        "counts": {"high": 1}, "fingerprint": {"sysctl": {"kernel.kptr_restrict": "1"}},
        "rules": ["sshd"], "errors": [{"rule": "setuid", "error": "slow", "elapsed_ms": 9}],
        "engine": future,
    });
    let r = post("/api/agent/scans", &scan);
    assert_eq!(r.status, 200, "scan: {}", r.body);

    let issued = cc.post_json(
        "/api/commands",
        &json!({"node_id": id, "action": "agent.ping", "issued_by": "test"}),
    );
    assert_eq!(issued.status, 201, "{}", issued.body);
    let poll = Reply::from(
        node.signed(
            &cc.url,
            "GET",
            "/api/agent/commands?wait=1s&nonce=p1&since=7",
            None,
            Vec::new(),
        )
        .send()
        .unwrap(),
    );
    assert_eq!(poll.status, 200, "poll: {}", poll.body);
    assert_eq!(poll.json().as_array().unwrap().len(), 1, "{}", poll.body);

    let receipt = json!({
        "command_id": issued.json()["command"]["command_id"], "node_id": id, "status": "ok",
        "output_sha256": vaultmesh_proto::canonical::sha256_hex(b""),
        "started_at": "2026-11-29T10:00:00Z", "finished_at": "2026-11-29T10:00:00Z",
        "runtime": future,
    });
    let mut msg = b"vaultmesh-receipt-v1\n".to_vec();
    msg.extend(vaultmesh_proto::canonical::to_jcs(&receipt).unwrap());
    let envelope = json!({"receipt": receipt, "signature": node.key.sign(&msg), "alg": "ed25519"});
    let r = post("/api/agent/receipts", &envelope);
    assert_eq!(r.status, 200, "receipt: {}", r.body);
    assert_eq!(r.json()["chain_ok"], true);

    // Admin routes that refuse unknown fields say which (API.md lists them).
    for (r, status, case) in [
        (
            cc.post_json(
                "/api/commands",
                &json!({"node_id": id, "action": "agent.ping", "ttl": 60}),
            ),
            422,
            "POST /api/commands",
        ),
        (
            cc.post_json(
                "/api/events",
                &json!({"kind": "note", "body": {"text": "x"}, "ttl": 60}),
            ),
            422,
            "POST /api/events",
        ),
        (
            cc.post_json(&format!("/api/nodes/{id}/revoke"), &json!({"ttl": 60})),
            422,
            "POST /api/nodes/{id}/revoke",
        ),
        (cc.get("/api/events?ttl=60"), 400, "GET /api/events"),
        (cc.get("/api/commands?ttl=60"), 400, "GET /api/commands"),
        (cc.get("/events?ttl=60"), 400, "GET /events"),
    ] {
        assert_error(&r, status, "ttl", case);
    }
}

/// Agents before typed measurements repeated their disk, load and memory samples in the
/// checks' `details` (and the load in the load check's `metrics`); newer agents send each
/// measurement once, in `metrics`. The Command Center reads the typed fields, so a node looks
/// the same whichever agent it runs (docs/PROTOCOL.md#heartbeat-measurements).
#[test]
fn heartbeats_with_and_without_repeated_samples_give_the_same_node() {
    use serde_json::json;

    let disks = json!([
        {"mount": "/", "fs": "ext4", "total_bytes": 100_000_000_000u64, "used_bytes": 96_000_000_000u64,
         "inodes_total": 6_553_600, "inodes_used": 300_000},
        {"mount": "/srv", "fs": "xfs", "total_bytes": 500_000_000_000u64, "used_bytes": 100_000_000_000u64}
    ]);
    let metrics = json!({
        "load": [5.2, 4.0, 2.5], "cpu_count": 2,
        "mem_total_bytes": 8_000_000_000u64, "mem_used_bytes": 7_400_000_000u64,
        "swap_total_bytes": 0, "swap_used_bytes": 0, "disks": disks,
    });
    let check = |name: &str, status: &str, summary: &str, metrics: serde_json::Value| {
        json!({"name": name, "status": status, "summary": summary,
               "observed_at": "2026-11-29T09:59:58Z", "duration_ms": 1, "metrics": metrics})
    };
    let heartbeat = |id: &str, hostname: &str, checks: Vec<serde_json::Value>| {
        json!({
            "node_id": id, "hostname": hostname, "os_profile": "ArchVault",
            "cloudflare_ok": true, "services_ok": true, "vaultmesh_root": "/var/lib/vaultmesh",
            "timestamp": "2026-11-29T10:00:00Z", "agent_version": "0.1.0", "seq": "1",
            "metrics": metrics, "checks": checks,
        })
    };
    let disk_summary = "/ is 96% full (≥ 95%)";
    let load_summary = "load 5.20 4.00 2.50 on 2 CPUs (5m: 2.00 per CPU)";
    let memory_summary = "memory 92.5% used (6.9 GiB of 7.5 GiB), no swap";
    let old_id = "00000000-0000-4000-8000-0000000000a1";
    let old = heartbeat(
        old_id,
        "old-agent",
        vec![
            {
                let mut c = check(
                    "disk",
                    "crit",
                    disk_summary,
                    json!({"filesystems": 2.0, "max_used_pct": 96.0, "max_inodes_used_pct": 4.6}),
                );
                c["details"] = json!({"disks": disks});
                c
            },
            {
                let mut c = check(
                    "load",
                    "warn",
                    load_summary,
                    json!({"load1": 5.2, "load5": 4.0, "load15": 2.5, "cpu_count": 2.0,
                           "load1_per_cpu": 2.6, "load5_per_cpu": 2.0, "load15_per_cpu": 1.25}),
                );
                c["details"] = json!({"load": [5.2, 4.0, 2.5], "cpu_count": 2});
                c
            },
            {
                let mut c = check("memory", "warn", memory_summary, json!({"used_pct": 92.5}));
                c["details"] = json!({"mem_total_bytes": 8_000_000_000u64, "mem_used_bytes": 7_400_000_000u64,
                                      "swap_total_bytes": 0, "swap_used_bytes": 0});
                c
            },
        ],
    );
    let new_id = "00000000-0000-4000-8000-0000000000b2";
    let new = heartbeat(
        new_id,
        "new-agent",
        vec![
            check(
                "disk",
                "crit",
                disk_summary,
                json!({"filesystems": 2.0, "max_used_pct": 96.0, "max_inodes_used_pct": 4.6}),
            ),
            check(
                "load",
                "warn",
                load_summary,
                json!({"load1_per_cpu": 2.6, "load5_per_cpu": 2.0, "load15_per_cpu": 1.25}),
            ),
            check("memory", "warn", memory_summary, json!({"used_pct": 92.5})),
        ],
    );
    assert!(new.to_string().len() < old.to_string().len());

    let cc = CommandCenter::start();
    for hb in [&old, &new] {
        let r = cc.post_json("/api/agent/heartbeat", hb);
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let nodes = cc.get_json("/api/nodes");
    let row = |id: &str| {
        let mut row = nodes
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["node_id"] == id)
            .unwrap_or_else(|| panic!("no {id} in {nodes}"))
            .clone();
        let row_map = row.as_object_mut().unwrap();
        for who in ["node_id", "hostname", "last_seen"] {
            row_map.remove(who);
        }
        row_map["attention"]
            .as_object_mut()
            .unwrap()
            .remove("since");
        row
    };
    let (old_row, new_row) = (row(old_id), row(new_id));
    assert_eq!(old_row, new_row);
    // The figures come from the heartbeat's typed fields, whichever shape carried them.
    assert_eq!(
        (
            &old_row["load1"],
            &old_row["cpu_count"],
            &old_row["mem_used_pct"],
            &old_row["disk_max_used_pct"],
            &old_row["disk_max_mount"],
        ),
        (
            &json!(5.2),
            &json!(2),
            &json!(92.5),
            &json!(96.0),
            &json!("/")
        ),
        "{old_row}"
    );
    let rules: Vec<&str> = old_row["attention"]["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["rule"].as_str())
        .collect();
    for rule in ["threshold.disk", "threshold.load", "threshold.memory"] {
        assert!(rules.contains(&rule), "{rule} in {old_row}");
    }
    for (id, sent) in [(old_id, &old), (new_id, &new)] {
        let detail = cc.get_json(&format!("/api/nodes/{id}"));
        assert_eq!(detail["latest"]["metrics"], metrics);
        assert_eq!(detail["latest"]["checks"], sent["checks"], "kept as sent");
    }
}

/// Issue 22: a node reads the same in `GET /api/nodes` and `GET /api/nodes/{id}` — each put
/// its summary together itself, and the one of the node alone had no `revoked`.
#[test]
fn a_node_reads_the_same_alone_as_in_the_list() {
    let cc = CommandCenter::start();
    let id = seed()["node_id"].as_str().unwrap().to_string();
    let r = cc.post_json("/api/agent/heartbeat", &seed());
    assert_eq!(r.status, 200, "{}", r.body);
    let r = cc.unsigned_request("POST", &format!("/api/nodes/{id}/revoke"), None, "");
    assert_eq!(r.status, 200, "{}", r.body);
    // Attention is judged on its own clock: compare the rest.
    let without_attention = |mut v: serde_json::Value| {
        v.as_object_mut().unwrap().remove("attention");
        v
    };
    let listed = without_attention(cc.get_json("/api/nodes")[0].clone());
    let alone = without_attention(cc.get_json(&format!("/api/nodes/{id}"))["summary"].clone());
    assert_eq!(listed["revoked"]["readmitted"], false, "{listed:#}");
    assert_eq!(alone, listed);
}
