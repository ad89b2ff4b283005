//! `setuid`: set-uid and set-gid programs.
//!
//! Walks each directory in `dirs` under the scan root (bounded by `max_files`, shared by all
//! of them, and the time budget; no symlinks followed, no other filesystems) for regular files
//! with the set-uid or set-gid bit. Directories that do not exist are skipped, and so are
//! directories that are symlinks (`/bin` → `usr/bin` on merged-usr systems), so nothing is
//! counted twice.
//!
//! Findings, one per program at its worst:
//! - set-uid and writable by group or others: critical (anyone in that group can become its
//!   owner), allowed or not; set-gid only and writable by group or others: high;
//! - set-uid, owned by root, not in `allowed`/`extra_allowed`: high;
//! - set-uid, owned by another user, not allowed: medium;
//! - set-gid only, not allowed: medium.
//!
//! `allowed` entries are node paths or glob patterns (`glob::Pattern`; `*` does not match `/`,
//! `**` matches any number of directories). Setting `allowed` replaces the built-in list of
//! well-known set-uid programs; `extra_allowed` adds to it.
//!
//! Facts (`setuid`): node path = `<mode> <owner> <sha256>` (`4755 root 5f3c…`), so a changed
//! mode, owner or binary is drift; the hash is `too-large:<bytes>` or `unreadable` when it
//! cannot be taken.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use vaultmesh_agent_core::registry::{CheckConfigError, parse_table};
use vaultmesh_proto::Severity;

use crate::sovereign::rule::{RuleError, RuleOutput, ScanContext, ScanRule, ScanRuleRegistration};
use crate::sovereign::rules::fsutil::{self, Names};

pub const NAME: &str = "setuid";

const DEFAULT_DIRS: [&str; 9] = [
    "/usr/bin",
    "/usr/sbin",
    "/usr/local/bin",
    "/usr/local/sbin",
    "/usr/lib",
    "/usr/libexec",
    "/bin",
    "/sbin",
    "/opt",
];

/// Well-known set-uid and set-gid programs of Debian, Ubuntu, Fedora and RHEL.
const DEFAULT_ALLOWED: &[&str] = &[
    "/usr/bin/at",
    "/usr/bin/bsd-write",
    "/usr/bin/chage",
    "/usr/bin/chfn",
    "/usr/bin/chsh",
    "/usr/bin/crontab",
    "/usr/bin/dotlockfile",
    "/usr/bin/expiry",
    "/usr/bin/fusermount",
    "/usr/bin/fusermount3",
    "/usr/bin/gpasswd",
    "/usr/bin/locate",
    "/usr/bin/mlocate",
    "/usr/bin/mount",
    "/usr/bin/newgidmap",
    "/usr/bin/newgrp",
    "/usr/bin/newuidmap",
    "/usr/bin/passwd",
    "/usr/bin/pkexec",
    "/usr/bin/ping",
    "/usr/bin/plocate",
    "/usr/bin/ssh-agent",
    "/usr/bin/su",
    "/usr/bin/sudo",
    "/usr/bin/umount",
    "/usr/bin/unix_chkpwd",
    "/usr/bin/wall",
    "/usr/bin/write",
    "/usr/sbin/grub2-set-bootflag",
    "/usr/sbin/mount.nfs",
    "/usr/sbin/pam_extrausers_chkpwd",
    "/usr/sbin/pam_timestamp_check",
    "/usr/sbin/postdrop",
    "/usr/sbin/postqueue",
    "/usr/sbin/unix_chkpwd",
    "/usr/sbin/userhelper",
    "/usr/lib/dbus-1.0/dbus-daemon-launch-helper",
    "/usr/lib/eject/dmcrypt-get-device",
    "/usr/lib/openssh/ssh-keysign",
    "/usr/lib/polkit-1/polkit-agent-helper-1",
    "/usr/lib/snapd/snap-confine",
    "/usr/lib/*/utempter/utempter",
    "/usr/libexec/dbus-1/dbus-daemon-launch-helper",
    "/usr/libexec/openssh/ssh-keysign",
    "/usr/libexec/polkit-1/polkit-agent-helper-1",
    "/usr/libexec/polkit-agent-helper-1",
    "/usr/libexec/utempter/utempter",
    "/bin/fusermount",
    "/bin/mount",
    "/bin/ping",
    "/bin/su",
    "/bin/umount",
    "/sbin/mount.nfs",
    "/sbin/unix_chkpwd",
];

const MATCH: glob::MatchOptions = glob::MatchOptions {
    case_sensitive: true,
    require_literal_separator: true,
    require_literal_leading_dot: false,
};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Config {
    /// Directories (node paths) to search.
    dirs: Vec<String>,
    /// Programs allowed to be set-uid/set-gid (node paths or globs); replaces the built-in list.
    allowed: Vec<String>,
    /// Added to `allowed`.
    extra_allowed: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            dirs: DEFAULT_DIRS.map(String::from).to_vec(),
            allowed: DEFAULT_ALLOWED.iter().map(|s| s.to_string()).collect(),
            extra_allowed: Vec::new(),
        }
    }
}

#[derive(Debug)]
struct Setuid {
    dirs: Vec<String>,
    allowed: Vec<glob::Pattern>,
}

impl Setuid {
    fn new(c: Config) -> Result<Self, CheckConfigError> {
        for (i, d) in c.dirs.iter().enumerate() {
            if !d.starts_with('/') {
                return Err(CheckConfigError::new(
                    format!("dirs[{i}]"),
                    format!("{d:?} is not an absolute path"),
                ));
            }
        }
        let mut allowed = Vec::new();
        for (field, list) in [("allowed", &c.allowed), ("extra_allowed", &c.extra_allowed)] {
            for (i, p) in list.iter().enumerate() {
                let err = |reason: String| CheckConfigError::new(format!("{field}[{i}]"), reason);
                if !p.starts_with('/') {
                    return Err(err(format!("{p:?} is not an absolute path or pattern")));
                }
                allowed.push(
                    glob::Pattern::new(p)
                        .map_err(|e| err(format!("{p:?} is not a glob pattern: {e}")))?,
                );
            }
        }
        Ok(Setuid {
            dirs: c.dirs,
            allowed,
        })
    }

    fn allows(&self, node_path: &str) -> bool {
        self.allowed
            .iter()
            .any(|p| p.matches_with(node_path, MATCH))
    }
}

/// A set-uid or set-gid regular file.
#[derive(Debug, Clone)]
struct Program {
    host: PathBuf,
    mode: u32,
    uid: u32,
    gid: u32,
}

/// A finding: severity, title, detail.
pub type Verdict = (Severity, String, &'static str);

/// Judges a set-uid/set-gid program at `node` with `mode`, owned by `uid` (`owner` by name).
pub fn judge(node: &str, mode: u32, uid: u32, owner: &str, allowed: bool) -> Option<Verdict> {
    let setuid = mode & 0o4000 != 0;
    let setgid = mode & 0o2000 != 0;
    let writable = mode & 0o022 != 0;
    if setuid && writable {
        return Some((
            Severity::Critical,
            format!("Set-uid program {node} is writable by group or others"),
            "Anyone who can write it can run code as its owner; remove the write bits \
             (chmod go-w) and find out who set them.",
        ));
    }
    if setgid && writable {
        return Some((
            Severity::High,
            format!("Set-gid program {node} is writable by group or others"),
            "Anyone who can write it can run code with its group; remove the write bits \
             (chmod go-w) and find out who set them.",
        ));
    }
    if allowed {
        return None;
    }
    const UNEXPECTED: &str = "Programs that change identity are what local attackers look for; \
                              remove the bit (chmod u-s,g-s) or add the path to the setuid \
                              scan rule's extra_allowed.";
    Some(if setuid && uid == 0 {
        (
            Severity::High,
            format!("Unexpected set-uid root program {node}"),
            UNEXPECTED,
        )
    } else if setuid {
        (
            Severity::Medium,
            format!("Unexpected set-uid program {node} (owner {owner})"),
            UNEXPECTED,
        )
    } else {
        (
            Severity::Medium,
            format!("Unexpected set-gid program {node}"),
            UNEXPECTED,
        )
    })
}

impl Setuid {
    /// Finds set-uid/set-gid programs under every configured directory, keyed by node path.
    fn find(
        &self,
        ctx: &ScanContext,
        found: &mut BTreeMap<String, Program>,
    ) -> Result<(), RuleError> {
        let mut budget = ctx.clone();
        for dir in &self.dirs {
            let host = ctx.path(dir);
            match std::fs::symlink_metadata(&host) {
                Ok(m) if m.is_dir() => {}
                // Missing, a symlink to a directory searched anyway, or not a directory.
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(RuleError::new(format!("{dir}: {e}"))),
            }
            let stats = fsutil::walk(&budget, &host, |p: &Path, m| {
                if m.is_file() && m.mode() & 0o6000 != 0 {
                    found.insert(
                        fsutil::safe_name(&ctx.node_path(p)),
                        Program {
                            host: p.to_path_buf(),
                            mode: m.mode(),
                            uid: m.uid(),
                            gid: m.gid(),
                        },
                    );
                }
            })?;
            budget.max_files = budget.max_files.saturating_sub(stats.visited);
        }
        Ok(())
    }
}

impl ScanRule for Setuid {
    fn scan(&self, ctx: &ScanContext, out: &mut RuleOutput) -> Result<(), RuleError> {
        let mut found = BTreeMap::new();
        // Judge what was found even when the walk stopped early.
        let walked = self.find(ctx, &mut found);
        let names = Names::load(ctx);
        for (node, p) in found {
            ctx.check_deadline()?;
            let owner = names.user(p.uid);
            // Refuse links: the file was found in a directory others may be able to write to,
            // and could have been swapped for a link or a FIFO since the walk saw it.
            let hash = match fsutil::sha256_file(&p.host, fsutil::Symlinks::Refuse, ctx.deadline) {
                Ok(Some(hex)) => hex,
                Ok(None) => format!(
                    "too-large:{}",
                    std::fs::metadata(&p.host).map_or(0, |m| m.len())
                ),
                Err(_) => "unreadable".into(),
            };
            let mode = fsutil::octal_mode(p.mode);
            out.fact(NAME, node.clone(), format!("{mode} {owner} {hash}"));
            if let Some((severity, title, detail)) =
                judge(&node, p.mode, p.uid, &owner, self.allows(&node))
            {
                out.finding(
                    severity,
                    title,
                    detail,
                    format!(
                        "{node} mode {mode} owner {owner} ({}) group {} ({}) sha256 {hash}",
                        p.uid,
                        names.group(p.gid),
                        p.gid
                    ),
                );
            }
        }
        walked
    }
}

inventory::submit! {
    ScanRuleRegistration {
        name: NAME,
        description: "Set-uid and set-gid programs, against an allow list",
        enabled_by_default: true,
        example: "dirs = [\"/usr/bin\", \"/usr/sbin\", \"/usr/local/bin\", \"/usr/local/sbin\", \"/usr/lib\", \"/usr/libexec\", \"/bin\", \"/sbin\", \"/opt\"]\n\
                  # allowed = [\"/usr/bin/sudo\", \"/usr/lib/*/utempter/utempter\"]   # replaces the built-in list\n\
                  extra_allowed = []\n",
        build: |t| Ok(Box::new(Setuid::new(parse_table(t)?)?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sovereign::rules::testutil::{Fixture, changed_keys, sha};

    fn rule() -> Setuid {
        Setuid::new(Config::default()).unwrap()
    }

    /// A merged-usr node with sudo and passwd set-uid, plus ordinary programs.
    fn fixture() -> Fixture {
        let f = Fixture::new();
        for (p, mode) in [
            ("/usr/bin/sudo", 0o4755),
            ("/usr/bin/passwd", 0o4755),
            ("/usr/bin/crontab", 0o2755),
            ("/usr/bin/ls", 0o755),
            ("/usr/lib/x86_64-linux-gnu/utempter/utempter", 0o2755),
            ("/usr/sbin/sshd", 0o755),
        ] {
            f.file(p, p);
            f.chmod(p, mode);
        }
        f.symlink("usr/bin", "/bin");
        f.symlink("usr/sbin", "/sbin");
        f
    }

    fn titles(out: &RuleOutput) -> Vec<(Severity, String)> {
        out.findings()
            .iter()
            .map(|f| (f.severity, f.title.clone()))
            .collect()
    }

    #[test]
    fn known_programs_are_clean_and_symlinked_dirs_are_not_counted_twice() {
        let f = fixture();
        let (out, err) = f.run(&rule(), NAME);
        assert!(err.is_none(), "{err:?}");
        assert!(out.findings().is_empty(), "{:?}", out.findings());
        let facts = out.category(NAME);
        assert_eq!(
            facts.keys().collect::<Vec<_>>(),
            [
                "/usr/bin/crontab",
                "/usr/bin/passwd",
                "/usr/bin/sudo",
                "/usr/lib/x86_64-linux-gnu/utempter/utempter"
            ]
        );
        let (uid, _) = f.owner();
        assert_eq!(
            facts["/usr/bin/sudo"],
            format!("4755 {uid} {}", sha("/usr/bin/sudo"))
        );
    }

    #[test]
    fn unexpected_programs_are_judged_by_bit_and_owner() {
        let f = fixture();
        f.file("/opt/tool/bin/helper", "x");
        f.chmod("/opt/tool/bin/helper", 0o4755);
        f.file("/usr/local/bin/games", "x");
        f.chmod("/usr/local/bin/games", 0o2755);
        let (uid, gid) = f.owner();
        f.file(
            "/etc/passwd",
            &format!("owner:x:{uid}:{gid}::/:/usr/sbin/nologin\n"),
        );
        let (out, _) = f.run(&rule(), NAME);
        let setuid_title = if uid == 0 {
            "Unexpected set-uid root program /opt/tool/bin/helper".to_string()
        } else {
            "Unexpected set-uid program /opt/tool/bin/helper (owner owner)".to_string()
        };
        assert_eq!(
            titles(&out),
            [
                (
                    if uid == 0 {
                        Severity::High
                    } else {
                        Severity::Medium
                    },
                    setuid_title
                ),
                (
                    Severity::Medium,
                    "Unexpected set-gid program /usr/local/bin/games".to_string()
                ),
            ]
        );
        assert_eq!(
            out.findings()[1].evidence,
            format!(
                "/usr/local/bin/games mode 2755 owner owner ({uid}) group {gid} ({gid}) \
                 sha256 {}",
                sha("x")
            )
        );
    }

    #[test]
    fn writable_programs_are_critical_even_when_allowed() {
        let f = fixture();
        f.chmod("/usr/bin/sudo", 0o4757);
        f.chmod("/usr/bin/crontab", 0o2775);
        let (out, _) = f.run(&rule(), NAME);
        assert_eq!(
            titles(&out),
            [
                (
                    Severity::High,
                    "Set-gid program /usr/bin/crontab is writable by group or others".to_string()
                ),
                (
                    Severity::Critical,
                    "Set-uid program /usr/bin/sudo is writable by group or others".to_string()
                ),
            ]
        );
    }

    #[test]
    fn judge_is_pure() {
        assert_eq!(judge("/x", 0o104755, 0, "root", true), None);
        assert_eq!(
            judge("/x", 0o104755, 0, "root", false).unwrap().0,
            Severity::High
        );
        assert_eq!(
            judge("/x", 0o104755, 5, "games", false).unwrap().0,
            Severity::Medium
        );
        assert_eq!(
            judge("/x", 0o106775, 0, "root", true).unwrap().0,
            Severity::Critical
        );
    }

    #[test]
    fn allowed_replaces_extra_allowed_adds_and_globs_match() {
        let f = fixture();
        f.file("/opt/tool/bin/helper", "x");
        f.chmod("/opt/tool/bin/helper", 0o4755);
        let r = Setuid::new(Config {
            extra_allowed: vec!["/opt/*/bin/helper".into()],
            ..Config::default()
        })
        .unwrap();
        let (out, _) = f.run(&r, NAME);
        assert!(out.findings().is_empty(), "{:?}", out.findings());
        let r = Setuid::new(Config {
            extra_allowed: vec!["/opt/*".into()],
            ..Config::default()
        })
        .unwrap();
        let (out, _) = f.run(&r, NAME);
        assert_eq!(out.findings().len(), 1, "`*` does not cross `/`");
        let r = Setuid::new(Config {
            extra_allowed: vec!["/opt/**/helper".into()],
            ..Config::default()
        })
        .unwrap();
        let (out, _) = f.run(&r, NAME);
        assert!(out.findings().is_empty());
        let r = Setuid::new(Config {
            allowed: vec!["/usr/bin/sudo".into()],
            ..Config::default()
        })
        .unwrap();
        let (out, _) = f.run(&r, NAME);
        assert_eq!(
            out.findings().len(),
            4,
            "allowed replaces the built-in list: {:?}",
            titles(&out)
        );
    }

    #[test]
    fn facts_are_stable_and_a_replaced_binary_is_drift() {
        let f = fixture();
        let (a, _) = f.run(&rule(), NAME);
        let (b, _) = f.run(&rule(), NAME);
        assert_eq!(a.facts(), b.facts());
        f.file("/usr/bin/passwd", "trojan");
        f.chmod("/usr/bin/passwd", 0o4755);
        let (c, _) = f.run(&rule(), NAME);
        let (before, after) = (a.category(NAME), c.category(NAME));
        let changed = changed_keys(&before, &after);
        assert_eq!(changed, ["/usr/bin/passwd"]);
        assert!(after["/usr/bin/passwd"].ends_with(&sha("trojan")));
        assert!(c.findings().is_empty(), "the path is still allowed");
    }

    #[test]
    fn non_merged_bin_is_searched_and_missing_dirs_are_skipped() {
        let f = Fixture::new();
        f.file("/bin/su", "su");
        f.chmod("/bin/su", 0o4755);
        f.file("/bin/evil", "evil");
        f.chmod("/bin/evil", 0o6755);
        let (out, err) = f.run(&rule(), NAME);
        assert!(err.is_none(), "{err:?}");
        assert_eq!(out.category(NAME).len(), 2);
        assert_eq!(out.findings().len(), 1);
        assert!(out.findings()[0].title.contains(" /bin/evil"));
        let (out, err) = Fixture::new().run(&rule(), NAME);
        assert!(err.is_none() && out.findings().is_empty() && out.facts().is_empty());
    }

    #[test]
    fn max_files_is_shared_and_stops_with_an_error() {
        // /usr/bin has 5 entries, /usr/sbin 2 and /usr/lib 4: each fits in 8, all do not.
        let f = fixture();
        let mut ctx = f.ctx();
        ctx.max_files = 11;
        let (out, err) = f.run_with(&rule(), NAME, &ctx);
        assert!(err.is_none(), "{err:?}");
        assert_eq!(out.category(NAME).len(), 4);
        ctx.max_files = 8;
        let (out, err) = f.run_with(&rule(), NAME, &ctx);
        assert!(err.unwrap().0.contains("max_files"));
        assert_eq!(
            out.category(NAME).len(),
            3,
            "what was found is still reported"
        );
    }

    #[test]
    fn config_is_validated() {
        let e = Setuid::new(Config {
            dirs: vec!["usr/bin".into()],
            ..Config::default()
        })
        .unwrap_err();
        assert_eq!(e.key, "dirs[0]");
        let e = Setuid::new(Config {
            extra_allowed: vec!["/ok".into(), "/bad/[".into()],
            ..Config::default()
        })
        .unwrap_err();
        assert_eq!(e.key, "extra_allowed[1]");
        let e = Setuid::new(Config {
            allowed: vec!["sudo".into()],
            ..Config::default()
        })
        .unwrap_err();
        assert_eq!(e.key, "allowed[0]");
        let e = parse_table::<Config>(&"allow = []".parse().unwrap()).unwrap_err();
        assert_eq!(e.key, "allow");
    }
}
