//! A stand-in for systemd's notification socket: what a `Type=notify` service sends
//! (`READY=1`, `WATCHDOG=1`, `STOPPING=1`), collected for assertions.

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// A bound datagram socket; pass [`NotifySocket::path`] as `NOTIFY_SOCKET`.
#[derive(Debug)]
pub struct NotifySocket {
    socket: UnixDatagram,
    path: PathBuf,
    _dir: TempDir,
    seen: Vec<String>,
}

impl NotifySocket {
    pub fn bind() -> NotifySocket {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).expect("bind notify socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        NotifySocket {
            socket,
            path,
            _dir: dir,
            seen: Vec::new(),
        }
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Waits until a message containing the line `line` (e.g. `READY=1`) arrives; returns
    /// whether it did within `timeout`. Every message is kept for [`NotifySocket::seen`].
    pub fn wait_for(&mut self, line: &str, timeout: Duration) -> bool {
        self.drain();
        let deadline = Instant::now() + timeout;
        while self.count(line) == 0 {
            if Instant::now() >= deadline {
                return false;
            }
            self.recv_one();
        }
        true
    }

    /// Reads every message that has already arrived.
    fn drain(&mut self) {
        while self.recv_one() {}
    }

    /// Waits up to the read timeout for one message; whether one came.
    fn recv_one(&mut self) -> bool {
        let mut buf = [0u8; 4096];
        match self.socket.recv(&mut buf) {
            Ok(n) => {
                self.seen
                    .push(String::from_utf8_lossy(&buf[..n]).into_owned());
                true
            }
            Err(_) => false,
        }
    }

    /// How many received messages contain the line `line`.
    pub fn count(&self, line: &str) -> usize {
        self.seen
            .iter()
            .filter(|m| m.lines().any(|l| l == line))
            .count()
    }

    /// Every message so far.
    pub fn seen(&self) -> &[String] {
        &self.seen
    }
}

/// Sends `SIGTERM` to `pid` (as systemd does on stop).
pub fn terminate(pid: u32) {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -TERM {pid} failed");
}

/// Sends the signal named `name` (`TERM`, `HUP`, ...) to `pid`.
pub fn signal(pid: u32, name: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{name} {pid} failed");
}
