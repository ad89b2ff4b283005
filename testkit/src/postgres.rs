//! A throwaway PostgreSQL cluster: `initdb` in a temp dir, `postgres` on a loopback port, trust
//! authentication for the superuser `vaultmesh`. Stopped (fast shutdown) and deleted on drop.
//!
//! Uses the Debian `postgresql` package's binaries (`/usr/lib/postgresql/<version>/bin`). When
//! the tests run as root, the server runs as the `postgres` user the package creates (PostgreSQL
//! refuses to run as root).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

const INSTALL: &str = "apt-get install -y postgresql";

/// A running cluster.
#[derive(Debug)]
pub struct Postgres {
    child: Option<Child>,
    pub port: u16,
    bin: PathBuf,
    dir: TempDir,
}

/// The newest installed server's `bin` directory.
fn bindir() -> PathBuf {
    let mut found: Vec<PathBuf> = glob::glob("/usr/lib/postgresql/*/bin/postgres")
        .map(|g| g.flatten().collect())
        .unwrap_or_default();
    found.sort_by_key(|p| {
        p.parent()
            .and_then(Path::parent)
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    match found.pop() {
        Some(p) => p.parent().map(Path::to_path_buf).unwrap_or_default(),
        None => panic!("PostgreSQL is not installed; install it: {INSTALL}"),
    }
}

fn is_root() -> bool {
    // The effective uid, from /proc.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// `program`, as the `postgres` user when we are root (`setpriv` execs it: no process in
/// between to swallow signals).
fn as_server_user(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=postgres",
            "--regid=postgres",
            "--init-groups",
            "--",
        ])
        .arg(program);
        c
    } else {
        Command::new(program)
    }
}

impl Postgres {
    /// Initializes and starts a cluster; waits until it accepts connections.
    pub fn start() -> Postgres {
        let bin = bindir();
        let dir = tempfile::tempdir().expect("temp dir");
        if is_root() {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .is_ok_and(|s| s.success());
            assert!(
                ok,
                "cannot hand {} to the postgres user",
                dir.path().display()
            );
        }
        let data = dir.path().join("data");
        let out = as_server_user(&bin.join("initdb"))
            .current_dir(dir.path())
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "vaultmesh",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-instructions",
                "-N",
            ])
            .output()
            .unwrap_or_else(|e| panic!("cannot run initdb ({e}); install PostgreSQL: {INSTALL}"));
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut pg = Postgres {
            child: None,
            port: crate::free_port(),
            bin,
            dir,
        };
        pg.spawn();
        pg
    }

    /// Starts the server; on a port taken in the meantime, tries another.
    fn spawn(&mut self) {
        for _ in 0..5 {
            let mut child = as_server_user(&self.bin.join("postgres"))
                .current_dir(self.dir.path())
                .arg("-D")
                .arg(self.dir.path().join("data"))
                .args(["-p", &self.port.to_string()])
                .args(["-c", "listen_addresses=127.0.0.1"])
                .arg("-c")
                .arg(format!(
                    "unix_socket_directories={}",
                    self.dir.path().display()
                ))
                .args(["-c", "max_connections=200", "-c", "logging_collector=off"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start postgres ({e}); install it: {INSTALL}"));
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break; // most likely the port: another process bound it first
                }
                if self.psql("postgres", "SELECT 1").is_ok() {
                    self.child = Some(child);
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
            self.port = crate::free_port();
        }
        panic!("postgres did not start (tried 5 ports)");
    }

    /// `postgres://vaultmesh@127.0.0.1:PORT/DB`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://vaultmesh@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates database `name` and returns its URL.
    pub fn create_db(&self, name: &str) -> String {
        self.psql("postgres", &format!("CREATE DATABASE \"{name}\""))
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        self.url(name)
    }

    /// Runs `sql` with `psql` on `db`; returns its unaligned, tuples-only output.
    pub fn psql(&self, db: &str, sql: &str) -> Result<String, String> {
        let out = Command::new(self.bin.join("psql"))
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "vaultmesh",
            ])
            .args(["-d", db, "-c", sql])
            .output()
            .map_err(|e| format!("cannot run psql: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }

    /// Stops the server (fast shutdown) and starts it again on the same port and data.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Fast shutdown: open connections are cut, committed data stays.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}
