//! The one test harness for VaultMesh: temp dirs, loopback ports and the **real** binaries.
//!
//! ```ignore
//! let cc = CommandCenter::start();                 // real binary on 127.0.0.1:0, temp log dir
//! let out = NodeAgent::new(&cc.url).run(&["run", "--once"]);
//! let nodes: serde_json::Value = cc.get_json("/api/nodes");
//! ```
//!
//! Binaries are built on first use with the same cargo and profile as the running test, so a
//! test never runs a stale binary. Every process is killed when its handle drops.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

pub mod access;
pub mod auth;
pub mod browser;
pub mod cloudflared;
pub mod dbus;
pub mod docs;
pub mod fake_cc;
pub mod forward_proxy;
pub mod host;
pub mod notify;
pub mod oidc;
pub mod page;
pub mod postgres;
pub mod proxy;
pub mod receiver;
pub mod segments;
pub mod smtp;
pub mod sse;

pub use tempfile::TempDir;

/// The enrollment token every test Command Center accepts and every test agent presents.
pub const TEST_TOKEN: &str = "vaultmesh-test-enroll-token";

/// The package and binary names of the two programs.
pub const CC_BIN: (&str, &str) = ("vaultmesh-command-center", "vaultmesh-command-center");
pub const AGENT_BIN: (&str, &str) = ("vaultmesh-node-agent", "vaultmesh-node-agent");

/// The workspace's crate folders, in dependency order (`fuzz/` is outside the workspace).
pub const CRATE_DIRS: &[&str] = &[
    "proto",
    "process",
    "agent-core",
    "checks",
    "node-agent",
    "store",
    "engines",
    "command-center",
    "testkit",
    "bench",
];

/// Root of the workspace (where the top-level Cargo.toml lives).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testkit sits in the workspace")
        .to_path_buf()
}

/// Every value of `key` in the shipped unit `systemd/{unit}`, in file order (`MemoryMax=64M` gives
/// `64M`; a key set on several lines, such as `Environment=`, gives each line's value).
pub fn unit_settings(unit: &str, key: &str) -> Vec<String> {
    let path = workspace_root().join("systemd").join(unit);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .filter_map(|l| l.trim().strip_prefix(key)?.strip_prefix('='))
        .map(str::to_string)
        .collect()
}

/// The variable `name` the agent's unit sets with `Environment=name=value`, if it does.
pub fn agent_unit_env(name: &str) -> Option<String> {
    unit_settings("vaultmesh-node-agent.service", "Environment")
        .into_iter()
        .find_map(|v| Some(v.strip_prefix(name)?.strip_prefix('=')?.to_string()))
}

/// The file names in `dir`, sorted; with `ext`, only those ending in `.{ext}`.
pub fn file_names(dir: &Path, ext: Option<&str>) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|n| ext.is_none_or(|x| n.ends_with(&format!(".{x}"))))
        .collect();
    names.sort();
    names
}

/// The shipped policy files (`policies/*.toml`), by file name, sorted.
pub fn shipped_policies() -> Vec<String> {
    file_names(&workspace_root().join("policies"), Some("toml"))
}

/// Whether cargo sets `key` for the test it runs (not a setting of cargo itself): the crate's
/// `CARGO_*` variables, its build script's `OUT_DIR` and what that script exports
/// (`VAULTMESH_GIT_COMMIT`, which the script also reads as an override).
fn set_by_cargo_for_the_test(key: &str) -> bool {
    matches!(
        key,
        "OUT_DIR"
            | "VAULTMESH_GIT_COMMIT"
            | "CARGO_MANIFEST_DIR"
            | "CARGO_MANIFEST_PATH"
            | "CARGO_CRATE_NAME"
            | "CARGO_BIN_NAME"
            | "CARGO_PRIMARY_PACKAGE"
            | "CARGO_TARGET_TMPDIR"
            | "CARGO_RUSTC_CURRENT_DIR"
    ) || key.starts_with("CARGO_PKG_")
        || key.starts_with("CARGO_BIN_EXE_")
}

/// Path to a freshly built workspace binary. Builds it (once per test process) with the
/// profile of the running test executable.
pub fn binary((package, name): (&str, &str)) -> PathBuf {
    static BUILT: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    let exe = std::env::current_exe().expect("current test executable");
    // target/<profile>/deps/<test>  →  target/<profile>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test exe lives in target/<profile>/deps");
    let target_dir = profile_dir.parent().expect("target dir");
    let profile = profile_dir
        .file_name()
        .and_then(|s| s.to_str())
        .expect("profile dir name");
    let path = profile_dir.join(name);

    let built = BUILT.get_or_init(|| Mutex::new(Vec::new()));
    let mut built = built.lock().unwrap_or_else(|p| p.into_inner());
    if !built.iter().any(|b| b == name) {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        // The variables cargo set for this test crate are not the build's: a build script that
        // watches one (ring's watches OUT_DIR and CARGO_MANIFEST_DIR, ours the commit) would see
        // it change between this build and the next `cargo test` (or another crate's test) and
        // rebuild ring, rustls, reqwest and the binaries every time.
        for (key, _) in std::env::vars_os() {
            if key.to_str().is_some_and(set_by_cargo_for_the_test) {
                cmd.env_remove(key);
            }
        }
        cmd.current_dir(workspace_root())
            .args(["build", "--quiet", "-p", package, "--bin", name])
            .arg("--target-dir")
            .arg(target_dir);
        match profile {
            "debug" => {}
            "release" => {
                cmd.arg("--release");
            }
            other => {
                cmd.args(["--profile", other]);
            }
        }
        let status = cmd.status().expect("run cargo build");
        assert!(
            status.success(),
            "cargo build -p {package} --bin {name} failed"
        );
        built.push(name.to_string());
    }
    path
}

/// A running Command Center (the real binary). Killed on drop.
#[derive(Debug)]
pub struct CommandCenter {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub url: String,
    /// Temp dir holding `logs/` (kept alive as long as the handle).
    pub dir: TempDir,
    args: Vec<String>,
    env: Vec<(String, String)>,
    stderr: Captured,
    /// The open-file limit (soft, hard) it runs under, when set.
    open_files: Option<(u64, u64)>,
}

impl CommandCenter {
    /// Starts `serve` on an ephemeral loopback port with a fresh log dir.
    pub fn start() -> CommandCenter {
        Self::start_with(&[])
    }

    /// Like [`CommandCenter::start`] with extra `serve` arguments.
    pub fn start_with(extra: &[&str]) -> CommandCenter {
        Self::start_with_env(extra, &[])
    }

    /// Like [`CommandCenter::start`] with `--notify-config` holding `toml` and a 200 ms
    /// attention tick; returns it with the config's dir (keep it alive).
    pub fn start_notifying(toml: &str) -> (CommandCenter, TempDir) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("notify.toml");
        std::fs::write(&path, toml).expect("write notify.toml");
        let path = path.to_str().expect("a UTF-8 temp path");
        let cc = Self::start_with(&["--notify-config", path, "--attention-tick", "200ms"]);
        (cc, dir)
    }

    /// Like [`CommandCenter::start_with`], with extra environment variables.
    pub fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> CommandCenter {
        Self::start_in(tempfile::tempdir().expect("temp dir"), extra, env)
    }

    /// Like [`CommandCenter::start_with_env`] in `dir` (its log directory is `dir/logs`, which
    /// the caller may have prepared, e.g. as a small filesystem).
    pub fn start_in(dir: TempDir, extra: &[&str], env: &[(&str, &str)]) -> CommandCenter {
        Self::start_limited(dir, extra, env, None)
    }

    /// Like [`CommandCenter::start_with`], run under an open-file limit of `limit` (soft and
    /// hard, set by `prlimit`), as a unit's `LimitNOFILE=` would.
    pub fn start_with_open_files(limit: u64, extra: &[&str]) -> CommandCenter {
        Self::start_limited(
            tempfile::tempdir().expect("temp dir"),
            extra,
            &[],
            Some((limit, limit)),
        )
    }

    fn start_limited(
        dir: TempDir,
        extra: &[&str],
        env: &[(&str, &str)],
        open_files: Option<(u64, u64)>,
    ) -> CommandCenter {
        let args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let (child, url, stderr) = Self::spawn(dir.path(), &args, &env, open_files);
        let cc = CommandCenter {
            child,
            url,
            dir,
            args,
            env,
            stderr,
            open_files,
        };
        cc.wait_healthy();
        cc
    }

    /// `serve` on `dir/logs` with the harness's arguments and `args`; under `prlimit` when an
    /// open-file limit `(soft, hard)` is given (prlimit sets it, then runs the binary in its
    /// place).
    pub fn serve_command(dir: &Path, args: &[String], open_files: Option<(u64, u64)>) -> Command {
        let mut cmd = match open_files {
            None => Command::new(binary(CC_BIN)),
            Some((soft, hard)) => {
                let mut c = Command::new("prlimit");
                c.arg(format!("--nofile={soft}:{hard}"))
                    .arg("--")
                    .arg(binary(CC_BIN));
                c
            }
        };
        cmd.arg("serve").arg("--log-dir").arg(dir.join("logs"));
        if !args.iter().any(|a| a == "--listen") {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        if !args.iter().any(|a| a == "--enroll-token") {
            cmd.args(["--enroll-token", TEST_TOKEN]);
        }
        // Tests post as fast as they can; the rate limit has its own test.
        if !args.iter().any(|a| a == "--agent-rate") {
            cmd.args(["--agent-rate", "1000000", "--agent-burst", "1000000"]);
        }
        if !args.iter().any(|a| a == "--enroll-rate") {
            cmd.args(["--enroll-rate", "1000000", "--enroll-burst", "1000000"]);
        }
        // Likewise the byte budgets (their own test sets them).
        for budget in [
            "--heartbeat-budget",
            "--scan-budget",
            "--receipt-budget",
            "--fleet-heartbeat-budget",
            "--fleet-scan-budget",
            "--fleet-receipt-budget",
        ] {
            if !args.iter().any(|a| a == budget) {
                cmd.args([budget, "1024GiB"]);
            }
        }
        cmd.args(args)
            .stdin(Stdio::null())
            .env_remove("VAULTMESH_ENROLL_TOKEN")
            .env_remove("VAULTMESH_LISTEN")
            .env_remove("VAULTMESH_LOG_DIR")
            .env_remove("VAULTMESH_POLICY_DIR")
            .env_remove("VAULTMESH_STORE_URL")
            .env_remove("VAULTMESH_CC_KEY_FILE")
            // A test run under a systemd unit must not hand its own credentials to `serve`.
            .env_remove("CREDENTIALS_DIRECTORY")
            .env("RUST_LOG", "warn");
        cmd
    }

    fn spawn(
        dir: &Path,
        args: &[String],
        env: &[(String, String)],
        open_files: Option<(u64, u64)>,
    ) -> (Child, String, Captured) {
        let mut cmd = Self::serve_command(dir, args, open_files);
        for (k, v) in env {
            cmd.env(k, v);
        }
        spawn_and_read_url(cmd)
    }

    /// The log directory.
    pub fn log_dir(&self) -> PathBuf {
        self.dir.path().join("logs")
    }

    /// SIGKILL: no shutdown, no flush — a crash.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, as systemd stops it, and waits (up to 20 s) for the clean exit.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        notify::terminate(self.pid());
        self.wait_exit(Duration::from_secs(20))
            .expect("the Command Center did not exit within 20 s of SIGTERM")
    }

    /// Starts the binary again on the same log directory and arguments (after a kill or exit).
    pub fn restart(&mut self) {
        let args = self.args.clone();
        self.restart_with(&args);
    }

    /// Like [`CommandCenter::restart`], with these `serve` arguments from now on instead.
    pub fn restart_with(&mut self, extra: &[impl AsRef<str>]) {
        self.args = extra.iter().map(|a| a.as_ref().to_string()).collect();
        self.kill9();
        let (child, url, stderr) =
            Self::spawn(self.dir.path(), &self.args, &self.env, self.open_files);
        self.child = child;
        self.url = url;
        self.stderr = stderr;
        self.wait_healthy();
    }

    fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(r) = http().get(format!("{}/healthz", self.url)).send()
                && r.status().is_success()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("Command Center at {} did not become healthy", self.url);
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// How many files the process has open (`/proc/PID/fd`).
    pub fn open_files(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// Its resident memory now, in KiB ([`memory_kib`]).
    pub fn rss_kib(&self) -> u64 {
        memory_kib(self.pid()).1
    }

    /// What the process (since its last start) wrote to stderr: its log, at `RUST_LOG=warn`.
    pub fn stderr(&self) -> String {
        self.stderr.text()
    }

    /// The log once it holds every one of `needles` (waiting up to 10 s: stderr is copied by a
    /// thread of its own, so a line the server wrote before it answered may not be here yet).
    /// Panics with the log if a needle never shows.
    pub fn wait_for_log(&self, needles: &[&str]) -> String {
        wait_for(Duration::from_secs(10), || {
            let log = self.stderr();
            needles.iter().all(|n| log.contains(n)).then_some(log)
        })
        .unwrap_or_else(|| panic!("the log never held all of {needles:?}:\n{}", self.stderr()))
    }

    /// The row of node `id` in the JSON array `GET path` answers (`/api/nodes`,
    /// `/api/attention`), if it is listed.
    pub fn listed(&self, path: &str, id: uuid::Uuid) -> Option<serde_json::Value> {
        self.get_json(path)
            .as_array()?
            .iter()
            .find(|n| n["node_id"] == id.to_string())
            .cloned()
    }

    /// `GET path` and parse JSON; panics unless 2xx.
    pub fn get_json(&self, path: &str) -> serde_json::Value {
        let r = self.get(path);
        assert!(
            (200..300).contains(&r.status),
            "GET {path}: {} {}",
            r.status,
            r.body
        );
        r.json()
    }

    pub fn get(&self, path: &str) -> Reply {
        Reply::from(
            http()
                .get(format!("{}{path}", self.url))
                .send()
                .expect("GET"),
        )
    }

    /// Sends any method with an optional content type and raw body. Requests to
    /// `/api/agent/*` (other than enroll) are signed, as an agent would: by the node named in the
    /// body's `node_id` (or a default test node), enrolled on first use with [`TEST_TOKEN`].
    pub fn request(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: impl Into<Vec<u8>>,
    ) -> Reply {
        let body = body.into();
        if path.starts_with("/api/agent/") && path != "/api/agent/enroll" {
            let node = auth::TestNode::for_body(&body);
            node.enroll(&self.url);
            return Reply::from(
                node.signed(&self.url, method, path, content_type, body)
                    .send()
                    .expect("request"),
            );
        }
        self.unsigned_request(method, path, content_type, body)
    }

    /// Like [`CommandCenter::request`] but never signed.
    pub fn unsigned_request(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: impl Into<Vec<u8>>,
    ) -> Reply {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = http()
            .request(method, format!("{}{path}", self.url))
            .body(body.into());
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        Reply::from(req.send().expect("request"))
    }

    /// `POST path` with a JSON body.
    pub fn post_json(&self, path: &str, body: &serde_json::Value) -> Reply {
        self.request(
            "POST",
            path,
            Some("application/json"),
            serde_json::to_vec(body).expect("json"),
        )
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits up to `timeout` for the process to exit; its exit code, or `None` if still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        wait_child(&mut self.child, timeout)
    }
}

impl Drop for CommandCenter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Raises this test process's soft open-file limit to `needed` when it is lower (never above
/// the hard limit), for tests that open thousands of connections (`cargo test` leaves the
/// soft limit as it found it, often 1,024). Returns the soft limit in force.
pub fn raise_open_file_limit(needed: u64) -> u64 {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let soft = limit.current.unwrap_or(u64::MAX);
    if soft >= needed {
        return soft;
    }
    let raised = needed.min(limit.maximum.unwrap_or(u64::MAX));
    let set = setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(raised),
            maximum: limit.maximum,
        },
    );
    if set.is_ok() { raised } else { soft }
}

/// Peak and current resident memory of a process, in KiB (`VmHWM`, `VmRSS`).
pub fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// An HTTP reply: status and body text.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub body: String,
}

impl Reply {
    /// The reply's status, type and body; an event stream's body is not read (it never ends).
    pub fn from(r: reqwest::blocking::Response) -> Reply {
        let status = r.status().as_u16();
        let content_type = r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body = if content_type.starts_with("text/event-stream") {
            String::new()
        } else {
            r.text().unwrap_or_default()
        };
        Reply {
            status,
            content_type,
            body,
        }
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// Appended to every test agent's config unless the test configures the scan itself: a scan of
/// the test machine's real filesystem would be slow and its findings machine-dependent.
pub const QUIET_SCAN: &str = "\n[checks.sovereign_scan]\nenabled = false\n";

/// The real agent binary, configured through its environment into a temp state dir.
#[derive(Debug)]
pub struct NodeAgent {
    pub dir: TempDir,
    cc_url: String,
    env: Vec<(String, String)>,
}

impl NodeAgent {
    /// An agent pointed at `cc_url`, with its own temp state dir and a config file of its own
    /// (so the machine's `/etc/vaultmesh/agent.toml` never leaks into a test) that turns the
    /// sovereign scan off ([`QUIET_SCAN`]).
    pub fn new(cc_url: &str) -> NodeAgent {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("agent.toml"), QUIET_SCAN).expect("write config");
        NodeAgent {
            dir,
            cc_url: cc_url.to_string(),
            env: Vec::new(),
        }
    }

    /// Adds or overrides an environment variable.
    pub fn env(mut self, key: &str, value: &str) -> NodeAgent {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Replaces the agent's config file ([`QUIET_SCAN`] is appended unless `toml` mentions
    /// `sovereign_scan`).
    pub fn config(self, toml: &str) -> NodeAgent {
        let text = if toml.contains("sovereign_scan") {
            toml.to_string()
        } else {
            format!("{toml}{QUIET_SCAN}")
        };
        std::fs::write(self.config_path(), text).expect("write config");
        self
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("agent.toml")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// The node id and key of this agent once it has made them (it was started), waiting up to
    /// 20 s.
    pub fn identity(&self) -> (uuid::Uuid, vaultmesh_proto::auth::NodeKey) {
        let node = wait_for(Duration::from_secs(20), || {
            std::fs::read_to_string(self.state_dir().join("node_id"))
                .ok()?
                .trim()
                .parse()
                .ok()
        })
        .expect("the agent made its node id");
        let key = wait_for(Duration::from_secs(10), || {
            vaultmesh_proto::auth::NodeKey::from_base64(
                &std::fs::read_to_string(self.state_dir().join("node.key")).ok()?,
            )
            .ok()
        })
        .expect("the agent made its node key");
        (node, key)
    }

    /// The command, ready to run with `args`.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(binary(AGENT_BIN));
        for var in [
            "VAULTMESH_CC_URL",
            "VAULTMESH_OS_PROFILE",
            "VAULTMESH_INTERVAL",
            "VAULTMESH_ROOT",
            "VAULTMESH_STATE_DIR",
        ] {
            cmd.env_remove(var);
        }
        cmd.args(args)
            .env("VAULTMESH_CC_URL", &self.cc_url)
            .env("VAULTMESH_CONFIG", self.config_path())
            .env("VAULTMESH_STATE_DIR", self.state_dir())
            .env("VAULTMESH_ROOT", self.dir.path())
            .env("VAULTMESH_ENROLL_TOKEN", TEST_TOKEN)
            .env("RUST_LOG", "warn");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Runs to completion and returns the output.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args)
            .stdin(Stdio::null())
            .output()
            .expect("run agent")
    }

    /// Starts in the background (killed when the returned guard drops).
    pub fn spawn(&self, args: &[&str]) -> ChildGuard {
        self.spawn_captured(args).0
    }

    /// Starts in the background, and keeps what it writes to stderr (its log) as it comes.
    pub fn spawn_captured(&self, args: &[&str]) -> (ChildGuard, Captured) {
        let mut child = self
            .command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn agent");
        // Always read: a pipe nobody drains fills up and blocks the agent's logging.
        let stderr = Captured::start(child.stderr.take().expect("stderr"));
        (ChildGuard(child), stderr)
    }
}

/// Kills the child on drop.
#[derive(Debug)]
pub struct ChildGuard(pub Child);

impl ChildGuard {
    /// Waits up to `timeout` for the process to exit; its status, or `None` if still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        wait_child(&mut self.0, timeout)
    }
}

fn wait_child(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    wait_for(timeout, || child.try_wait().ok().flatten())
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A blocking client with short timeouts for loopback tests.
pub fn http() -> reqwest::blocking::Client {
    static CLIENT: OnceLock<reqwest::blocking::Client> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            let _ = rustls::crypto::ring::default_provider().install_default();
            reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(10))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("http client")
        })
        .clone()
}

/// Polls `f` until it returns `Some` or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A loopback port that was free a moment ago (for a server that must keep its port across a
/// restart).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Runs `vaultmesh-command-center ARGS` to completion (e.g. `logs view ...`).
pub fn cc_command(args: &[&str]) -> Output {
    Command::new(binary(CC_BIN))
        .args(args)
        .env_remove("VAULTMESH_LOG_DIR")
        .env_remove("VAULTMESH_CC_KEY_FILE")
        .env_remove("CREDENTIALS_DIRECTORY")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("run vaultmesh-command-center")
}

/// The value of the sample `name` in a Prometheus exposition, with its labels exactly as
/// rendered (`vaultmesh_nodes{level="ok"}`); `None` if absent.
pub fn metric(exposition: &str, name: &str) -> Option<f64> {
    exposition.lines().find_map(|l| {
        let (n, v) = l.rsplit_once(' ')?;
        (n == name).then(|| v.parse().ok())?
    })
}

/// Runs `keygen` into `dir/cc.key`; returns the key's path and the public key it printed.
pub fn keygen(dir: &Path) -> (String, String) {
    let key = dir.join("cc.key");
    let out = cc_command(&["keygen", "--out", &key.display().to_string()]);
    assert!(out.status.success(), "{}", text(&out));
    let public = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("public key: "))
        .expect("keygen prints the public key")
        .to_string();
    (key.display().to_string(), public)
}

/// A Command Center that can issue commands: a signing key made by [`keygen`] in a temp dir
/// (returned, with the public key agents pin) and the shipped `policies/`, plus `extra`
/// `serve` arguments.
pub fn commanding_center(extra: &[&str]) -> (CommandCenter, TempDir, String) {
    let keys = tempfile::tempdir().expect("temp dir");
    let (key, public) = keygen(keys.path());
    let policies = workspace_root().join("policies");
    let mut args = vec![
        "--signing-key",
        key.as_str(),
        "--policy-dir",
        policies.to_str().expect("UTF-8 path"),
    ];
    args.extend_from_slice(extra);
    (CommandCenter::start_with(&args), keys, public)
}

/// A heartbeat with the seed's fields for `node_id`/`hostname`, plus `seq` — the smallest
/// realistic record for store tests.
pub fn heartbeat_json(node_id: &str, hostname: &str, seq: u64) -> serde_json::Value {
    serde_json::json!({
        "node_id": node_id,
        "hostname": hostname,
        "os_profile": "ArchVault",
        "cloudflare_ok": true,
        "services_ok": true,
        "vaultmesh_root": "/var/lib/vaultmesh",
        "timestamp": "2026-11-29T10:00:00Z",
        "seq": seq.to_string(),
        "metrics": {"load": [0.5, 0.4, 0.3], "cpu_count": 2, "mem_total_bytes": 1000, "mem_used_bytes": 250,
                    "disks": [{"mount": "/", "fs": "ext4", "total_bytes": 100, "used_bytes": 42}]},
        "checks": [{"name": "disk", "status": "ok", "summary": "1 filesystem, fullest / at 42%",
                    "observed_at": "2026-11-29T10:00:00Z", "duration_ms": 1}]
    })
}

/// Output as text, for assertion messages.
pub fn text(out: &Output) -> String {
    format!(
        "status: {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// What a child process wrote to stderr, kept as it arrives (and passed on to the test's own
/// stderr, so it still shows with a failing test's output).
#[derive(Debug, Clone, Default)]
pub struct Captured(std::sync::Arc<Mutex<String>>);

impl Captured {
    /// Starts copying `from` until it closes.
    fn start(from: impl std::io::Read + Send + 'static) -> Captured {
        let captured = Captured::default();
        let into = captured.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(from).lines() {
                let Ok(line) = line else { break };
                eprintln!("{line}");
                let mut text = into.0.lock().unwrap_or_else(|p| p.into_inner());
                text.push_str(&line);
                text.push('\n');
            }
        });
        captured
    }

    /// Everything so far.
    pub fn text(&self) -> String {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Spawns a server that prints `... listening on http://ADDR` on stdout; returns it, the URL
/// and its stderr as it comes.
fn spawn_and_read_url(mut cmd: Command) -> (Child, String, Captured) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stderr = Captured::start(child.stderr.take().expect("stderr"));
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        while let Some(Ok(line)) = lines.next() {
            if let Some(url) = line.split("listening on ").nth(1) {
                let _ = tx.send(url.trim().to_string());
                break;
            }
        }
        // Keep draining so the child never blocks on a full pipe.
        for _ in lines {}
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(url) => (child, url, stderr),
        Err(_) => {
            let _ = child.kill();
            panic!("server did not print its listening address");
        }
    }
}
