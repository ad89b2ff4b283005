//! A real SMTP server for the email notifier: Debian's `aiosmtpd` (python3-aiosmtpd) on a
//! loopback port, requiring STARTTLS with a certificate from a throwaway CA (made with
//! `openssl`), delivering into a Maildir the test reads.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

const INSTALL: &str = "apt-get install -y python3-aiosmtpd openssl";

/// The running server. Killed on drop.
#[derive(Debug)]
pub struct SmtpSink {
    child: Child,
    pub port: u16,
    dir: TempDir,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run openssl ({e}); install it: {INSTALL}"));
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl SmtpSink {
    /// Starts the server; STARTTLS is required before any mail.
    pub fn start() -> SmtpSink {
        Self::launch(true)
    }

    /// Starts a server that offers no STARTTLS at all (a client must refuse it).
    pub fn start_plain() -> SmtpSink {
        Self::launch(false)
    }

    fn launch(tls: bool) -> SmtpSink {
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path();
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let mut ca = vec![
            "req",
            "-x509",
            "-days",
            "2",
            "-subj",
            "/CN=vaultmesh-test-ca",
        ];
        ca.extend_from_slice(&ec);
        ca.extend_from_slice(&["-keyout", "ca.key", "-out", "ca.pem"]);
        openssl(d, &ca);
        let mut req = vec!["req", "-subj", "/CN=localhost"];
        req.extend_from_slice(&ec);
        req.extend_from_slice(&["-keyout", "key.pem", "-out", "req.csr"]);
        openssl(d, &req);
        std::fs::write(
            d.join("ext.cnf"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
        )
        .expect("ext");
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                "req.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                "ext.cnf",
                "-out",
                "cert.pem",
            ],
        );
        // The handler creates the Maildir (with cur/, new/ and tmp/).
        for _ in 0..5 {
            let port = crate::free_port();
            let mut cmd = Command::new("/usr/bin/python3");
            cmd.current_dir(d)
                .args(["-m", "aiosmtpd", "-n", "-l"])
                .arg(format!("127.0.0.1:{port}"));
            if tls {
                cmd.args(["--tlscert", "cert.pem", "--tlskey", "key.pem"]);
            }
            let mut child = cmd
                .args(["-c", "aiosmtpd.handlers.Mailbox"])
                .arg(d.join("maildir"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start aiosmtpd ({e}); install it: {INSTALL}"));
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if let Ok(Some(status)) = child.try_wait() {
                    assert!(
                        Path::new("/usr/lib/python3/dist-packages/aiosmtpd").exists(),
                        "aiosmtpd exited ({status}); install it: {INSTALL}"
                    );
                    break; // the port, most likely
                }
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return SmtpSink { child, port, dir };
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("aiosmtpd did not start");
    }

    /// The CA that signed the server's certificate (the notifier's `ca_file`).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// Every mail delivered so far (raw RFC 5322 text).
    pub fn mails(&self) -> Vec<String> {
        let mut out = Vec::new();
        let new = self.dir.path().join("maildir").join("new");
        if let Ok(entries) = std::fs::read_dir(new) {
            let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
            paths.sort();
            for p in paths {
                if let Ok(text) = std::fs::read_to_string(p) {
                    out.push(text);
                }
            }
        }
        out
    }

    /// Waits until at least `n` mails arrived.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let m = self.mails();
            if m.len() >= n || Instant::now() >= deadline {
                return m;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
