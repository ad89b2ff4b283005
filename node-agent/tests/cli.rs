//! The agent's command line, run as the real binary.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use vaultmesh_testkit::{NodeAgent, text, workspace_root};

/// Checks the agent binary must register. The linker drops plugin crates nothing references;
/// if this fails with an empty list, `use vaultmesh_checks as _;` went missing from main.rs.
const EXPECTED_CHECKS: &[&str] = &[
    "cloudflared",
    "cpu",
    "disk",
    "diskio",
    "load",
    "memory",
    "net",
    "sovereign_scan",
    "systemd",
    "temperature",
    "updates",
];

fn agent() -> NodeAgent {
    NodeAgent::new("http://127.0.0.1:9")
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn registry_of_the_binary_holds_exactly_the_built_in_checks() {
    let out = agent().run(&["checks", "list", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, EXPECTED_CHECKS);
    assert_eq!(vaultmesh_checks::built_in(), EXPECTED_CHECKS);
    for r in &rows {
        assert!(r["description"].as_str().unwrap().len() > 10, "{r}");
        // The test harness turns the scan off (QUIET_SCAN); every built-in is on by default.
        assert_eq!(r["enabled"], r["name"] != "sovereign_scan", "{r}");
    }
}

/// The contract's action list (`vaultmesh_proto::command::ACTIONS`, which the Command Center's
/// policies are checked against) is the registry's, with every check built in.
#[test]
fn registry_of_the_binary_holds_exactly_the_built_in_actions() {
    let out = agent().run(&["actions", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let mut names: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
    names.sort_unstable();
    assert_eq!(names, vaultmesh_proto::command::ACTIONS);
    // Each declares the arguments the Command Center's command form asks for.
    for row in &rows {
        let name = row["name"].as_str().unwrap();
        let args = vaultmesh_proto::command::action_args(name).unwrap();
        let declared = if args.is_empty() {
            "{}".to_string()
        } else {
            let each: Vec<String> = args.iter().map(|a| format!("{a}: string")).collect();
            format!("{{{}}}", each.join(", "))
        };
        assert_eq!(row["args"], declared.as_str(), "{name}");
    }
}

#[test]
fn checks_list_shows_names_and_descriptions() {
    let out = agent().run(&["checks", "list"]);
    let s = stdout(&out);
    assert!(out.status.success(), "{}", text(&out));
    for needle in [
        "disk",
        "Space and inodes",
        "memory",
        "RAM",
        "load",
        "load average",
        "cpu",
        "CPU busy %",
        "net",
        "per physical network interface",
        "diskio",
        "IOPS and busy % per block device",
        "temperature",
        "hwmon temperature sensors",
        "updates",
        "Pending (security) updates",
    ] {
        assert!(s.contains(needle), "{needle:?} missing from:\n{s}");
    }
}

#[test]
fn checks_list_reflects_config() {
    let out = agent()
        .config("[checks.load]\nenabled = false\ninterval = \"2m\"\n")
        .run(&["checks", "list", "--json"]);
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let load = rows.iter().find(|r| r["name"] == "load").unwrap();
    assert_eq!(
        (load["enabled"].as_bool(), load["interval_s"].as_f64()),
        (Some(false), Some(120.0))
    );
}

#[test]
fn checks_run_measures_this_machine() {
    for name in ["disk", "load", "memory"] {
        let out = agent().run(&["checks", "run", name, "--json"]);
        assert!(out.status.success(), "{}", text(&out));
        let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(r["name"], *name);
        assert!(
            ["ok", "warn", "crit"].contains(&r["status"].as_str().unwrap()),
            "{r}"
        );
        assert!(!r["metrics"].as_object().unwrap().is_empty(), "{r}");
        // The sample goes to the heartbeat's typed fields, shown under their names there, and
        // is not repeated in the details.
        let fields = r["contributes"]["metrics"].as_object().unwrap();
        let want: &[&str] = match name {
            "disk" => &["disks"],
            "load" => &["cpu_count", "load"],
            _ => &[
                "mem_total_bytes",
                "mem_used_bytes",
                "swap_total_bytes",
                "swap_used_bytes",
            ],
        };
        assert_eq!(fields.keys().collect::<Vec<_>>(), want, "{r}");
        assert!(r.get("details").is_none(), "{r}");
    }
    let out = agent().run(&["checks", "run", "memory"]);
    assert!(
        stdout(&out).contains("memory") && stdout(&out).contains("% used"),
        "{}",
        text(&out)
    );
    assert!(
        stdout(&out).contains("  heartbeat: {\"metrics\":{\"mem_total_bytes\":"),
        "{}",
        text(&out)
    );
}

/// The rate checks have a value on their first run: a read when the check is built, a second
/// one when it runs (at least a second later).
#[test]
fn rate_checks_measure_on_their_first_run() {
    let config = "[checks.net]\ninclude = [\"lo\"]\n\n[checks.diskio]\ninclude = [\"*\"]\n";
    for (name, field) in [("cpu", "cpu"), ("net", "net"), ("diskio", "diskio")] {
        let out = agent()
            .config(config)
            .run(&["checks", "run", name, "--json"]);
        assert!(out.status.success(), "{}", text(&out));
        let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(
            ["ok", "warn", "crit"].contains(&r["status"].as_str().unwrap()),
            "{r}"
        );
        let fields = r["contributes"]["metrics"].as_object().unwrap();
        assert_eq!(fields.keys().collect::<Vec<_>>(), [field], "{r}");
        assert!(r["duration_ms"].as_u64().unwrap() >= 500, "{r}");
        match name {
            "cpu" => {
                let busy = fields["cpu"]["busy_pct"].as_f64().unwrap();
                assert!((0.0..=100.0).contains(&busy), "{r}");
            }
            "net" => assert_eq!(fields["net"][0]["interface"], "lo", "{r}"),
            _ => assert!(!fields["diskio"].as_array().unwrap().is_empty(), "{r}"),
        }
    }
}

#[test]
fn unknown_check_is_a_usage_error() {
    let out = agent().run(&["checks", "run", "nope"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert_eq!(
        stderr(&out).trim(),
        "error: no check named \"nope\"; registered checks are: cloudflared, cpu, disk, diskio, load, memory, net, sovereign_scan, systemd, temperature, updates"
    );
}

#[test]
fn the_example_config_is_accepted_and_documents_every_check() {
    let example = workspace_root().join("docs/agent.example.toml");
    let out = agent()
        .env("VAULTMESH_CONFIG", example.to_str().unwrap())
        .run(&["config", "check"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(stdout(&out).starts_with("ok: "), "{}", text(&out));

    let text_of_example = std::fs::read_to_string(&example).unwrap();
    for name in EXPECTED_CHECKS {
        assert!(
            text_of_example.contains(&format!("[checks.{name}]")),
            "docs/agent.example.toml lacks [checks.{name}]"
        );
    }
    for reg in vaultmesh_agent_core::registry::all() {
        let keys: toml::Table = toml::from_str(reg.example).unwrap();
        for key in keys.keys() {
            assert!(
                text_of_example.contains(&format!("\n{key} = ")),
                "docs/agent.example.toml lacks checks.{}.{key}",
                reg.name
            );
        }
    }
}

#[test]
fn bad_config_exits_2_with_one_line_naming_file_key_and_reason() {
    let cases = [
        (
            "[checks.disk]\nwarn_pct = \"high\"\n",
            "checks.disk.warn_pct: invalid type: string \"high\", expected f64",
        ),
        (
            "[checks.disk]\nwarn_pct = 99.0\ncrit_pct = 90.0\n",
            "checks.disk.warn_pct: 99 must not exceed crit_pct (90)",
        ),
        (
            "[checks.dsik]\n",
            "checks.dsik: no such check; did you mean \"disk\"?; registered checks are: cloudflared, cpu, disk, diskio, load, memory, net, sovereign_scan, systemd, temperature, updates",
        ),
        (
            "[checks.load]\nwindow = \"7m\"\n",
            "checks.load.window: unknown variant `7m`",
        ),
        (
            "[checks.memory]\ninterval = \"never\"\n",
            "checks.memory.interval: \"never\" is not a duration",
        ),
        (
            "[agent]\ninterval = \"0s\"\n",
            "agent.interval: 0s is outside 1s..24h",
        ),
        ("[agent\n", "line 1 column"),
    ];
    for (toml, want) in cases {
        let a = agent().config(toml);
        let out = a.run(&["config", "check"]);
        assert_eq!(out.status.code(), Some(2), "{toml:?}: {}", text(&out));
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{toml:?}: {err}");
        let file = a.config_path().display().to_string();
        assert!(
            err.starts_with(&format!("error: {file}: ")),
            "{toml:?}: {err}"
        );
        assert!(err.contains(want), "{toml:?}: got {err:?}, want {want:?}");
    }
}

/// An unedited copy of the shipped examples cannot run: `config check` names each placeholder
/// (the URL, the enrollment token, the docs' example key) and says to replace it.
#[test]
fn config_check_refuses_the_examples_placeholders_and_says_to_replace_them() {
    let example =
        std::fs::read_to_string(workspace_root().join("docs/agent.example.toml")).unwrap();
    let env_example =
        std::fs::read_to_string(workspace_root().join("systemd/agent.env.example")).unwrap();
    let env_vars: Vec<(&str, &str)> = env_example
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .collect();
    let placeholder_url = toml::from_str::<toml::Table>(&example).unwrap()["agent"]["cc_url"]
        .as_str()
        .unwrap()
        .to_string();
    let a = agent().config(&example);
    let check = |env: &[(&str, &str)]| {
        let mut cmd = a.command(&["config", "check"]);
        cmd.env_remove("VAULTMESH_CC_URL")
            .env_remove("VAULTMESH_ENROLL_TOKEN");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    };

    // The config file as shipped.
    let out = check(&[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        stderr(&out).contains(&format!(
            "agent.cc_url: {placeholder_url:?} is the example's placeholder: replace it with your Command Center's URL"
        )),
        "{}",
        text(&out)
    );

    // With the environment file as shipped: its URL and its token, both reported at once.
    let out = check(&env_vars);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = stderr(&out);
    let env_url = env_vars
        .iter()
        .find(|(k, _)| *k == "VAULTMESH_CC_URL")
        .unwrap()
        .1;
    for want in [
        format!("environment: VAULTMESH_CC_URL: {env_url:?} is the example's placeholder"),
        "environment: VAULTMESH_ENROLL_TOKEN: is the example's placeholder (change-me-...): replace it with one of the Command Center's enrollment tokens".to_string(),
    ] {
        assert!(err.contains(&want), "{want}: {}", text(&out));
    }

    // The docs' example key, uncommented.
    let pinned = agent().config(&example.replace("# cc_public_key = ", "cc_public_key = "));
    let out = pinned.run(&["config", "check"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        stderr(&out).contains("agent.cc_public_key: is the documentation's example key, whose private key is published"),
        "{}",
        text(&out)
    );

    // Replaced, the example is fine.
    let out = check(&[
        ("VAULTMESH_CC_URL", "https://cc.fleet.test"),
        ("VAULTMESH_ENROLL_TOKEN", "Zm9yIHJlYWw"),
    ]);
    assert!(out.status.success(), "{}", text(&out));
}

/// Names the Command Center or the registry know, in the wrong case or misspelt, are refused
/// with the near name.
#[test]
fn config_check_refuses_a_profile_in_the_wrong_case_and_an_unknown_action() {
    let out = agent()
        .env("VAULTMESH_OS_PROFILE", "archvault")
        .run(&["config", "check"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert_eq!(
        stderr(&out).trim(),
        "error: environment: VAULTMESH_OS_PROFILE: \"archvault\" is not a profile: profiles name policy files, whose case matters; did you mean \"ArchVault\"?"
    );
    // A profile of one's own is fine.
    let out = agent()
        .env("VAULTMESH_OS_PROFILE", "LabVault")
        .run(&["config", "check"]);
    assert!(out.status.success(), "{}", text(&out));

    let a =
        agent().config("[commands]\nallow = [\"agent.ping\", \"servce.restart\", \"reboot\"]\n");
    let out = a.run(&["config", "check"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let file = a.config_path().display().to_string();
    let actions = vaultmesh_checks::built_in_actions().join(", ");
    assert_eq!(
        stderr(&out).lines().collect::<Vec<_>>(),
        [
            format!(
                "error: {file}: commands.allow[1]: no action \"servce.restart\" in this agent; did you mean \"service.restart\"?; its actions are: {actions}"
            ),
            format!(
                "error: {file}: commands.allow[2]: no action \"reboot\" in this agent; its actions are: {actions}"
            ),
        ]
    );
    // `run` refuses the same configuration before it starts.
    let out = a.run(&["run", "--once"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[test]
fn bad_environment_exits_2() {
    let out = agent()
        .env("VAULTMESH_INTERVAL", "often")
        .run(&["run", "--once"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        stderr(&out).contains("environment: VAULTMESH_INTERVAL: \"often\" is not a duration"),
        "{}",
        text(&out)
    );
}

#[test]
fn help_has_examples_and_version_works() {
    let out = agent().run(&["--help"]);
    assert!(stdout(&out).contains("Examples:"), "{}", text(&out));
    let out = agent().run(&["--version"]);
    // The git commit follows (testkit/tests/cli_surface.rs checks it).
    assert!(
        stdout(&out).trim().starts_with(&format!(
            "vaultmesh-node-agent {} (",
            env!("CARGO_PKG_VERSION")
        )),
        "{}",
        text(&out)
    );
}

#[test]
fn checks_run_systemd_reads_the_bus_from_the_environment() {
    use vaultmesh_testkit::dbus::{DbusDaemon, FakeSystemd, FakeUnit};
    let bus = DbusDaemon::start();
    let _systemd = FakeSystemd::start(
        &bus.address,
        &[FakeUnit::new("cloudflared.service", "failed", "failed")],
    );
    let out = agent()
        .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)
        .config("[checks.systemd]\nunits = [\"cloudflared.service\"]\n")
        .run(&["checks", "run", "systemd"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        stdout(&out).starts_with("CRIT systemd: cloudflared.service failed (failed)"),
        "{}",
        text(&out)
    );

    // Without a bus: unknown with the reason, never a hang or a crash.
    let out = agent()
        .env("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent/bus")
        .config("[checks.systemd]\nunits = [\"cloudflared.service\"]\n")
        .run(&["checks", "run", "systemd"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        stdout(&out).starts_with(
            "UNKNOWN systemd: cannot connect to the system bus at unix:path=/nonexistent/bus"
        ),
        "{}",
        text(&out)
    );
}

#[test]
fn the_binary_registers_the_built_in_actions_and_allows_only_read_only_ones_by_default() {
    let out = agent().run(&["actions", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, vaultmesh_checks::built_in_actions());
    let allowed: Vec<&str> = rows
        .iter()
        .filter(|r| r["allowed"] == true)
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(allowed, ["agent.ping", "scan.sovereign"]);
    let out = agent()
        .config("[commands]\nallow = [\"Service Restart\"]\n")
        .run(&["config", "check"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        stderr(&out).contains("commands.allow[0]: \"Service Restart\" is not an action name"),
        "{}",
        text(&out)
    );
}

#[test]
fn config_check_warns_about_permissive_modes_of_config_state_and_key() {
    use std::os::unix::fs::PermissionsExt;
    let a = agent();
    let quiet = a.run(&["config", "check"]);
    assert!(quiet.status.success(), "{}", text(&quiet));
    assert!(!stderr(&quiet).contains("warning"), "{}", text(&quiet));
    std::fs::set_permissions(a.config_path(), std::fs::Permissions::from_mode(0o666)).unwrap();
    std::fs::create_dir_all(a.state_dir()).unwrap();
    std::fs::set_permissions(a.state_dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(a.state_dir().join("node.key"), "x").unwrap();
    std::fs::set_permissions(
        a.state_dir().join("node.key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let out = a.run(&["config", "check"]);
    assert!(out.status.success(), "warnings, not errors: {}", text(&out));
    let err = stderr(&out);
    assert!(
        err.contains("agent.toml is writable by group or others (mode 0666)"),
        "{err}"
    );
    assert!(err.contains("open to group or others (mode 0755)"), "{err}");
    assert!(
        err.contains(
            "node.key (the node's private key) is readable by group or others (mode 0644)"
        ),
        "{err}"
    );
}

#[test]
fn the_agent_logs_what_each_check_costs() {
    let cc = vaultmesh_testkit::CommandCenter::start();
    let agent = NodeAgent::new(&cc.url)
        .env("RUST_LOG", "info")
        .env("VAULTMESH_INTERVAL", "1s")
        .config("[checks.memory]\ninterval = \"1s\"\n");
    let (mut child, captured) = agent.spawn_captured(&["run"]);
    let reported = vaultmesh_testkit::wait_for(std::time::Duration::from_secs(20), || {
        cc.get_json("/api/nodes").as_array()?.first().map(|_| ())
    });
    std::thread::sleep(std::time::Duration::from_secs(2));
    let _ = child.0.kill();
    let _ = child.0.wait();
    // The reader thread has the rest of the pipe a moment later.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let log = captured.text();
    assert!(reported.is_some(), "the agent did not report:\n{log}");
    let line = log
        .lines()
        .find(|l| l.contains("Check durations.") && l.contains("check=\"memory\""))
        .unwrap_or_else(|| panic!("no duration summary for memory in:\n{log}"));
    assert!(
        line.contains("runs=1") && line.contains("mean_ms=") && line.contains("max_ms="),
        "{line}"
    );
}

/// Each heartbeat after the first goes in the wake-up of the checks that share its interval,
/// once they have run, so it carries this tick's runs. (The first goes once the start-up run
/// of every check is done: after the rate checks' one-second first reading.) The node id is one whose splay of a
/// second is about half a second: a heartbeat on a phase of its own (as it was before issue
/// 24's fifth pass) carried runs half a second old.
#[test]
fn a_heartbeat_carries_the_runs_of_its_own_tick() {
    use std::time::Duration;
    use vaultmesh_agent_core::scheduler::splay;

    let fake = vaultmesh_testkit::fake_cc::FakeCommandCenter::start();
    let agent = NodeAgent::new(&fake.url)
        .env("VAULTMESH_INTERVAL", "1s")
        .config("[checks.memory]\ninterval = \"1s\"\n[checks.load]\ninterval = \"1s\"\n");
    let node = (0u128..)
        .map(uuid::Uuid::from_u128)
        .find(|id| (450..550).contains(&splay(*id, Duration::from_secs(1)).as_millis()))
        .unwrap();
    std::fs::create_dir_all(agent.state_dir()).unwrap();
    std::fs::write(agent.state_dir().join("node_id"), format!("{node}\n")).unwrap();
    let _child = agent.spawn(&["run"]);
    let beats = vaultmesh_testkit::wait_for(Duration::from_secs(20), || {
        let beats = fake.heartbeats();
        (beats.len() >= 6).then_some(beats)
    })
    .expect("six heartbeats");
    let time = |v: &serde_json::Value| {
        chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap())
            .unwrap()
            .to_utc()
    };
    // Each heartbeat's age of its memory and load runs. A heartbeat waits at most a quarter
    // interval (250 ms) for them; one held up longer on a busy machine carries the runs of the
    // tick before, so one late heartbeat of four is allowed.
    let mut late = Vec::new();
    for hb in &beats[1..] {
        assert_eq!(hb["node_id"], node.to_string());
        let sent = time(&hb["timestamp"]);
        for check in ["memory", "load"] {
            let run = hb["checks"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["name"] == check)
                .unwrap();
            let age = (sent - time(&run["observed_at"])).num_milliseconds();
            assert!(age >= 0, "{check} observed after the heartbeat: {hb}");
            if age >= 300 {
                late.push(format!(
                    "{check} ran {age} ms before heartbeat {}",
                    hb["seq"]
                ));
            }
        }
    }
    assert!(late.len() <= 2, "{late:#?}");
}
