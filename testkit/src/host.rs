//! A healthy node's surroundings for the real agent, built from the agent's own config: a fake
//! systemd on a private bus running every unit `[checks.systemd] units` lists, a fake
//! cloudflared with its tunnel up, and a scan fixture with nothing to find (hardened sshd, only
//! SSH listening, the kernel settings the scan expects).
//!
//! ```ignore
//! let host = HealthyHost::for_config(&agent_toml);
//! let agent_toml = host.point(&agent_toml);       // metrics_url, the scan's root and proc
//! agent.env("DBUS_SYSTEM_BUS_ADDRESS", host.bus_address());
//! ```
//!
//! The test machine's own load, memory and disks stay real (the agent reads them from `/proc`):
//! [`is_about_this_machine`] tells those reasons apart.

use std::path::Path;

use tempfile::TempDir;

use crate::cloudflared::{FakeCloudflared, ReadyReply};
use crate::dbus::{DbusDaemon, FakeSystemd, FakeUnit};

/// Keeps the fakes running until dropped.
#[derive(Debug)]
pub struct HealthyHost {
    // Dropped in this order: the fake systemd leaves the bus before the bus goes.
    _systemd: FakeSystemd,
    bus: DbusDaemon,
    cloudflared: FakeCloudflared,
    dir: TempDir,
}

impl HealthyHost {
    /// The host `agent_toml` describes, healthy. A glob in its unit list stands for one unit it
    /// matches (`*` → `example`).
    pub fn for_config(agent_toml: &str) -> HealthyHost {
        let config: toml::Table = toml::from_str(agent_toml).expect("agent config is TOML");
        let units: Vec<FakeUnit> = config
            .get("checks")
            .and_then(|c| c.get("systemd"))
            .and_then(|s| s.get("units"))
            .and_then(|u| u.as_array())
            .map(|units| {
                units
                    .iter()
                    .filter_map(|u| u.as_str())
                    .map(|u| FakeUnit::new(&u.replace('*', "example"), "active", "running"))
                    .collect()
            })
            .unwrap_or_default();
        let bus = DbusDaemon::start();
        let systemd = FakeSystemd::start(&bus.address, &units);
        let cloudflared = FakeCloudflared::start(ReadyReply::connections(4));
        let dir = tempfile::tempdir().expect("temp dir");
        clean_scan_fixture(dir.path());
        HealthyHost {
            _systemd: systemd,
            bus,
            cloudflared,
            dir,
        }
    }

    /// For `DBUS_SYSTEM_BUS_ADDRESS`.
    pub fn bus_address(&self) -> &str {
        &self.bus.address
    }

    /// `agent_toml` with cloudflared's `metrics_url` (a port) and the scan's `root` and `proc`
    /// (dirs) pointed at this host; nothing else changes.
    pub fn point(&self, agent_toml: &str) -> String {
        let text = set_line(agent_toml, "metrics_url", &self.cloudflared.url());
        let text = set_line(&text, "root", &path_str(&self.dir.path().join("root")));
        set_line(&text, "proc", &path_str(&self.dir.path().join("proc")))
    }
}

fn path_str(p: &Path) -> String {
    p.to_str().expect("temp paths are UTF-8").to_string()
}

/// `text` with its one line `KEY = ...` (after indentation) replaced by `KEY = "value"`; panics
/// unless there is exactly one such line.
pub fn set_line(text: &str, key: &str, value: &str) -> String {
    let prefix = format!("{key} = ");
    let hits = text
        .lines()
        .filter(|l| l.trim_start().starts_with(&prefix))
        .count();
    assert_eq!(hits, 1, "{key} appears {hits} times");
    text.lines()
        .map(|l| {
            if l.trim_start().starts_with(&prefix) {
                format!("{key} = {value:?}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect()
}

/// The built-in checks that read the test machine itself: its real load, memory, disks, CPU
/// time, network errors and disk I/O, its sensors and its pending updates (issue 27's).
pub const MACHINE_CHECKS: [&str; 8] = [
    "disk",
    "memory",
    "load",
    "cpu",
    "net",
    "diskio",
    "temperature",
    "updates",
];

/// Agent config that turns off every one of [`MACHINE_CHECKS`]: for a test whose node's
/// attention must come from its fakes alone.
pub fn machine_checks_off() -> String {
    MACHINE_CHECKS
        .iter()
        .map(|c| format!("[checks.{c}]\nenabled = false\n"))
        .collect()
}

/// Attention rules the test machine itself may trip, whatever the config: those of
/// [`MACHINE_CHECKS`] and the heartbeat thresholds on load, memory and disks.
pub fn is_about_this_machine(rule: &str) -> bool {
    matches!(
        rule,
        "threshold.load" | "threshold.memory" | "threshold.disk"
    ) || rule
        .strip_prefix("check.")
        .is_some_and(|c| MACHINE_CHECKS.contains(&c))
}

/// Asserts a node (`GET /api/nodes/{id}` JSON) is OK but for reasons about the test machine,
/// which are printed; `context` names the setup in the failure message.
pub fn assert_ok_but_for_this_machine(detail: &serde_json::Value, context: &str) {
    let attention = &detail["summary"]["attention"];
    let reasons: Vec<(&str, &str)> = attention["reasons"]
        .as_array()
        .expect("reasons")
        .iter()
        .map(|r| {
            (
                r["rule"].as_str().unwrap_or(""),
                r["message"].as_str().unwrap_or(""),
            )
        })
        .collect();
    let others: Vec<&(&str, &str)> = reasons
        .iter()
        .filter(|(rule, _)| !is_about_this_machine(rule))
        .collect();
    assert!(
        others.is_empty(),
        "{context} needs attention: {others:?}\n{detail}"
    );
    if reasons.is_empty() {
        assert_eq!(attention["level"], "ok", "{detail}");
    } else {
        eprintln!(
            "the test machine itself is busy or full (not held against {context}): {reasons:?}"
        );
    }
}

/// A scan root and procfs with nothing to find, under `dir/root` and `dir/proc`.
fn clean_scan_fixture(dir: &Path) {
    let w = |rel: &str, text: &str| {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("fixture dir");
        std::fs::write(p, text).expect("fixture file");
    };
    w(
        "root/etc/ssh/sshd_config",
        "PermitRootLogin no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n",
    );
    w("root/etc/passwd", "root:x:0:0:root:/root:/bin/sh\n");
    w("root/etc/group", "root:x:0:\n");
    w(
        "proc/net/tcp",
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0\n",
    );
    for (key, value) in [
        ("kernel/kptr_restrict", "1"),
        ("kernel/dmesg_restrict", "1"),
        ("kernel/randomize_va_space", "2"),
        ("kernel/yama/ptrace_scope", "1"),
        ("kernel/unprivileged_bpf_disabled", "2"),
        ("fs/protected_symlinks", "1"),
        ("fs/protected_hardlinks", "1"),
        ("fs/protected_fifos", "1"),
        ("fs/protected_regular", "2"),
        ("fs/suid_dumpable", "0"),
        ("net/ipv4/conf/all/accept_redirects", "0"),
        ("net/ipv4/conf/all/send_redirects", "0"),
        ("net/ipv4/conf/all/accept_source_route", "0"),
        ("net/ipv4/tcp_syncookies", "1"),
        ("net/ipv4/conf/all/rp_filter", "1"),
    ] {
        w(&format!("proc/sys/{key}"), &format!("{value}\n"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_line_replaces_the_one_line_and_keeps_the_rest() {
        assert_eq!(
            set_line("a = 1\n  root = \"/\"   # x\nb = 2\n", "root", "/tmp/r"),
            "a = 1\nroot = \"/tmp/r\"\nb = 2\n"
        );
    }

    #[test]
    #[should_panic(expected = "root appears 0 times")]
    fn set_line_refuses_a_missing_key() {
        set_line("a = 1\n", "root", "/x");
    }
}
