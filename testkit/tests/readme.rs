//! README.md's "Run it for real", run as written on a fresh (temp) machine: the Command Center
//! host's steps, `serve`, a node's steps and `run`, with the real binaries. The node must enroll,
//! be OK under its profile's shipped policy, and answer a signed command. A missing step (the
//! enrollment token, the key the node pins, the policies, the units the profile requires) makes
//! this fail.
//!
//! What the test changes, and nothing else (see `vaultmesh_testkit::docs`):
//! - The first block (build and install) is not run; the freshly built binaries come first on
//!   `PATH` instead.
//! - `/etc/`, `/var/` and `/run/` paths move under a temp dir, and the blocks run in a temp copy
//!   of the checkout (`policies/`, `docs/` linked), so `node.env` lands there.
//! - The placeholder `https://cc.your-domain.example` becomes the Command Center's loopback URL.
//! - The programs' compiled-in paths and port, which the README does not spell out, follow the
//!   temp dir through their environment variables: `VAULTMESH_LISTEN` (a free port),
//!   `VAULTMESH_CONFIG`, `VAULTMESH_STATE_DIR`.
//! - The machine: before `run`, the installed `agent.toml`'s cloudflared `metrics_url` points at a
//!   fake cloudflared (a port) and the scan's `root`/`proc` at a clean fixture (dirs); the
//!   systemd check reaches a fake systemd on a private bus (`DBUS_SYSTEM_BUS_ADDRESS`) running the
//!   units `agent.toml` lists; `VAULTMESH_INTERVAL=1s` so flap damping settles fast. The test
//!   machine's own load, memory and disks are real: reasons about them are reported, not held
//!   against the README.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;
use vaultmesh_testkit::docs::{code_blocks, reroot, section};
use vaultmesh_testkit::host::{HealthyHost, assert_ok_but_for_this_machine};
use vaultmesh_testkit::{
    AGENT_BIN, CC_BIN, CommandCenter, binary, free_port, http, keygen, text, wait_for,
    workspace_root,
};

/// The placeholder the README asks the admin to replace with their Command Center's address.
const CC_PLACEHOLDER: &str = "https://cc.your-domain.example";

/// A fresh machine: a temp root for `/etc` and `/var`, a temp checkout, the test's environment.
struct Machine {
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl Machine {
    fn new() -> Machine {
        let dir = tempfile::tempdir().unwrap();
        let checkout = dir.path().join("checkout");
        std::fs::create_dir_all(&checkout).unwrap();
        for linked in ["policies", "docs", "systemd"] {
            std::os::unix::fs::symlink(workspace_root().join(linked), checkout.join(linked))
                .unwrap();
        }
        std::fs::create_dir_all(dir.path().join("root")).unwrap();
        Machine {
            dir,
            env: Vec::new(),
        }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// `node_path` (absolute on the machine) under the temp root.
    fn at(&self, node_path: &str) -> PathBuf {
        self.root().join(node_path.trim_start_matches('/'))
    }

    fn set_env(&mut self, key: &str, value: &str) {
        self.env.push((key.into(), value.into()));
    }

    /// `bash` running `block` as the README gives it, re-rooted, from the temp checkout.
    fn shell(&self, block: &str, cc_url: &str) -> Command {
        let script = reroot(block, &self.root()).replace(CC_PLACEHOLDER, cc_url);
        let bins = binary(CC_BIN).parent().unwrap().to_path_buf();
        binary(AGENT_BIN);
        let mut cmd = Command::new("bash");
        cmd.args(["-euo", "pipefail", "-c", &script])
            .current_dir(self.dir.path().join("checkout"))
            .env(
                "PATH",
                format!(
                    "{}:{}",
                    bins.display(),
                    std::env::var("PATH").unwrap_or_default()
                ),
            )
            .env("RUST_LOG", "warn");
        // A fresh machine: none of the test runner's settings leak in.
        for (k, _) in std::env::vars() {
            if k.starts_with("VAULTMESH_") || k == "CREDENTIALS_DIRECTORY" {
                cmd.env_remove(k);
            }
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Runs a block to completion; panics with its output if it fails.
    fn run(&self, block: &str, cc_url: &str) {
        let out = self.shell(block, cc_url).output().unwrap();
        assert!(
            out.status.success(),
            "README step failed:\n{block}\n{}",
            text(&out)
        );
    }

    /// Starts a block that does not return (`serve`, `run`) in its own process group.
    fn spawn(&self, block: &str, cc_url: &str) -> Group {
        Group(
            self.shell(block, cc_url)
                .process_group(0)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .spawn()
                .unwrap(),
        )
    }
}

/// A block's shell and what it `exec`ed, killed together (by process group) on drop.
struct Group(Child);

impl Drop for Group {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0.id())])
            .status();
        let _ = self.0.wait();
    }
}

/// README.md's "Run it for real" blocks: build, CC setup, serve, node setup, run.
fn readme_blocks() -> Vec<String> {
    let md = std::fs::read_to_string(workspace_root().join("README.md")).unwrap();
    let blocks = code_blocks(section(&md, "## Run it for real"), "sh");
    assert_eq!(
        blocks.len(),
        5,
        "README \"Run it for real\": build, Command Center, serve, node, run: {blocks:#?}"
    );
    assert!(blocks[0].contains("cargo build"), "{}", blocks[0]);
    assert!(
        blocks[2].contains("vaultmesh-command-center serve"),
        "{}",
        blocks[2]
    );
    assert!(
        blocks[4].contains("vaultmesh-node-agent run"),
        "{}",
        blocks[4]
    );
    blocks
}

#[test]
fn the_readme_production_steps_enroll_a_node_that_is_ok_and_answers_a_command() {
    let blocks = readme_blocks();
    let mut machine = Machine::new();
    let port = free_port();
    let cc_url = format!("http://127.0.0.1:{port}");
    machine.set_env("VAULTMESH_LISTEN", &format!("127.0.0.1:{port}"));
    machine.set_env(
        "VAULTMESH_CONFIG",
        machine.at("/etc/vaultmesh/agent.toml").to_str().unwrap(),
    );
    machine.set_env(
        "VAULTMESH_STATE_DIR",
        machine.at("/var/lib/vaultmesh/agent").to_str().unwrap(),
    );
    machine.set_env("VAULTMESH_INTERVAL", "1s");

    // The Command Center host.
    machine.run(&blocks[1], &cc_url);
    let _cc = machine.spawn(&blocks[2], &cc_url);
    wait_for(Duration::from_secs(30), || {
        http()
            .get(format!("{cc_url}/healthz"))
            .send()
            .ok()
            .filter(|r| r.status().is_success())
    })
    .expect("serve as the README starts it answers /healthz");
    // The empty dashboard tells the admin what a node needs: the token and this key.
    let public = std::fs::read_to_string(machine.dir.path().join("checkout/node.env"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VAULTMESH_CC_PUBKEY="))
        .expect("node.env carries the public key")
        .to_string();
    let page = http()
        .get(format!("{cc_url}/"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(page.contains("No nodes have reported yet"), "{page}");
    assert!(
        page.contains(&format!("VAULTMESH_CC_PUBKEY={public}")),
        "{page}"
    );
    assert!(page.contains("VAULTMESH_ENROLL_TOKEN="), "{page}");

    // A node.
    machine.run(&blocks[3], &cc_url);
    let config_path = machine.at("/etc/vaultmesh/agent.toml");
    let installed = std::fs::read_to_string(&config_path).unwrap();
    let parsed: toml::Table = toml::from_str(&installed).unwrap();
    assert_eq!(
        parsed["agent"]["cc_url"].as_str(),
        Some(cc_url.as_str()),
        "the README's sed set the address"
    );
    let profile = parsed["agent"]["os_profile"].as_str().unwrap().to_string();
    let host = HealthyHost::for_config(&installed);
    std::fs::write(&config_path, host.point(&installed)).unwrap();
    machine.set_env("DBUS_SYSTEM_BUS_ADDRESS", host.bus_address());
    let _agent = machine.spawn(&blocks[4], &cc_url);

    let get = |path: &str| -> serde_json::Value {
        http()
            .get(format!("{cc_url}{path}"))
            .send()
            .unwrap()
            .json()
            .unwrap()
    };
    let detail = wait_for(Duration::from_secs(60), || {
        let id = get("/api/nodes").as_array()?.first()?["node_id"]
            .as_str()?
            .to_string();
        let d = get(&format!("/api/nodes/{id}"));
        (d["history"].as_array()?.len() >= 4 && d["latest_scan"]["scan_id"].is_string())
            .then_some(d)
    })
    .expect("the node enrolled, reported and sent its first scan");
    let node_id = detail["summary"]["node_id"].as_str().unwrap().to_string();
    assert_eq!(detail["summary"]["os_profile"], profile.as_str());
    assert!(
        machine.at("/var/lib/vaultmesh/agent/node.key").exists(),
        "the node enrolled with its own key"
    );
    std::thread::sleep(Duration::from_secs(1));
    let detail = get(&format!("/api/nodes/{node_id}"));
    assert_ok_but_for_this_machine(&detail, &format!("a node set up by the README ({profile})"));

    // A signed command reaches it and comes back answered.
    let issued: serde_json::Value = http()
        .post(format!("{cc_url}/api/commands"))
        .json(&json!({"node_id": node_id, "action": "agent.ping", "issued_by": "readme-test"}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let command_id = issued["command"]["command_id"]
        .as_str()
        .unwrap_or_else(|| panic!("the command was not issued: {issued}"))
        .to_string();
    let done = wait_for(Duration::from_secs(20), || {
        get(&format!("/api/commands?node_id={node_id}"))
            .as_array()?
            .iter()
            .find(|c| c["command"]["command_id"] == command_id.as_str())
            .filter(|c| c["status"] != "issued" && c["status"] != "delivered")
            .cloned()
    })
    .expect("the node answered the command");
    assert_eq!(done["status"], "ok", "{done}");
}

/// Without a signing key the empty dashboard says so (with one, the README test above checks
/// that it shows the public key to pin).
#[test]
fn the_empty_dashboard_says_what_a_node_needs_and_what_is_missing() {
    let cc = CommandCenter::start();
    let page = cc.get("/").body;
    assert!(page.contains("VAULTMESH_ENROLL_TOKEN="), "{page}");
    assert!(
        page.contains("VAULTMESH_CC_PUBKEY=&lt;its public key&gt;"),
        "{page}"
    );
    assert!(page.contains("It has no signing key"), "{page}");
    assert!(
        !page.contains(vaultmesh_testkit::TEST_TOKEN),
        "the token is a secret"
    );
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = keygen(dir.path());
    let cc = CommandCenter::start_with(&["--signing-key", &key]);
    let page = cc.get("/").body;
    assert!(
        page.contains(&format!("VAULTMESH_CC_PUBKEY={public}")),
        "{page}"
    );
    assert!(!page.contains("It has no signing key"), "{page}");
}
