//! `file_hashes`: a SHA-256 baseline of the files that decide who may do what on the node.
//!
//! Hashes, under the scan root: every path in `files`, every file directly in
//! `/etc/sudoers.d` (when `include_sudoers_d`) and every path pinned in `expect`; and, as they
//! are on the host (not under the scan root), the running agent's binary and configuration file
//! (when `include_agent`). Files larger than [`fsutil::HASH_MAX_BYTES`] are not hashed.
//!
//! Facts (`file_hashes`, the rule's name, so the Command Center compares them as drift): node
//! path (or `agent:binary`, `agent:config`) = lowercase hex SHA-256, `absent`,
//! `too-large:<bytes>` or `unreadable`.
//!
//! Findings: a file whose hash differs from its `expect` pin is high, so is a pinned file that
//! is missing or cannot be hashed; a file that cannot be read is low. A missing file without a
//! pin is only the fact `absent` (not every node has `/etc/sudoers`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use vaultmesh_agent_core::registry::{CheckConfigError, parse_table};
use vaultmesh_proto::Severity;

use crate::sovereign::rule::{RuleError, RuleOutput, ScanContext, ScanRule, ScanRuleRegistration};
use crate::sovereign::rules::fsutil;

pub const NAME: &str = "file_hashes";

/// Fact key of the running agent's executable.
pub const AGENT_BINARY: &str = "agent:binary";
/// Fact key of the running agent's configuration file.
pub const AGENT_CONFIG: &str = "agent:config";

const SUDOERS_D: &str = "/etc/sudoers.d";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Config {
    /// Node paths to hash.
    files: Vec<String>,
    /// Also hash every file in /etc/sudoers.d.
    include_sudoers_d: bool,
    /// Also hash the agent's own binary and configuration file.
    include_agent: bool,
    /// Fact key (node path, `agent:binary`, `agent:config`) → pinned lowercase SHA-256 hex.
    expect: BTreeMap<String, String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            files: [
                "/etc/ssh/sshd_config",
                "/etc/sudoers",
                "/etc/passwd",
                "/etc/group",
            ]
            .map(String::from)
            .to_vec(),
            include_sudoers_d: true,
            include_agent: true,
            expect: BTreeMap::new(),
        }
    }
}

#[derive(Debug)]
struct FileHashes {
    files: Vec<String>,
    include_sudoers_d: bool,
    include_agent: bool,
    expect: BTreeMap<String, String>,
}

impl FileHashes {
    fn new(c: Config) -> Result<Self, CheckConfigError> {
        for (i, f) in c.files.iter().enumerate() {
            if !f.starts_with('/') {
                return Err(CheckConfigError::new(
                    format!("files[{i}]"),
                    format!("{f:?} is not an absolute path"),
                ));
            }
        }
        let mut expect = BTreeMap::new();
        for (key, hex) in c.expect {
            if !key.starts_with('/') && key != AGENT_BINARY && key != AGENT_CONFIG {
                return Err(CheckConfigError::new(
                    format!("expect.{key}"),
                    format!("must be an absolute path, {AGENT_BINARY} or {AGENT_CONFIG}"),
                ));
            }
            if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(CheckConfigError::new(
                    format!("expect.{key}"),
                    "must be a SHA-256 as 64 hex digits (sha256sum's output)",
                ));
            }
            expect.insert(key, hex.to_ascii_lowercase());
        }
        Ok(FileHashes {
            files: c.files,
            include_sudoers_d: c.include_sudoers_d,
            include_agent: c.include_agent,
            expect,
        })
    }
}

/// What hashing one file gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    Hash(String),
    Absent,
    TooLarge(u64),
    Unreadable(String),
}

impl Observed {
    /// Hashes the file at `host` (following a symlink: critical files may legitimately be
    /// links; a FIFO or device is refused, not read).
    pub fn of(host: &std::path::Path, deadline: std::time::Instant) -> Observed {
        match fsutil::sha256_file(host, fsutil::Symlinks::Follow, deadline) {
            Ok(Some(hex)) => Observed::Hash(hex),
            Ok(None) => Observed::TooLarge(std::fs::metadata(host).map_or(0, |m| m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Observed::Absent,
            Err(e) => Observed::Unreadable(e.to_string()),
        }
    }

    /// The fact value.
    pub fn fact(&self) -> String {
        match self {
            Observed::Hash(hex) => hex.clone(),
            Observed::Absent => "absent".into(),
            Observed::TooLarge(n) => format!("too-large:{n}"),
            Observed::Unreadable(_) => "unreadable".into(),
        }
    }
}

/// A finding: severity, title, detail, evidence.
pub type Verdict = (Severity, String, String, String);

/// Judges what was seen at `key` against its pin, if any.
pub fn judge(key: &str, seen: &Observed, pin: Option<&str>) -> Option<Verdict> {
    const UNPINNED: &str = "The file could not be checked against its pinned hash; it may have \
                            been replaced.";
    match (seen, pin) {
        (Observed::Hash(hex), Some(pin)) if hex != pin => Some((
            Severity::High,
            format!("{key} differs from its pinned hash"),
            "The file changed since its hash was pinned. If the change is intended, update \
             expect in the file_hashes scan rule; otherwise find out who changed it."
                .into(),
            format!("expected {pin}\nfound    {hex}"),
        )),
        (Observed::Hash(_), _) | (Observed::Absent | Observed::TooLarge(_), None) => None,
        (Observed::Absent, Some(pin)) => Some((
            Severity::High,
            format!("{key} is missing (it has a pinned hash)"),
            UNPINNED.into(),
            format!("expected {pin}\nfound    nothing (no such file)"),
        )),
        (Observed::TooLarge(n), Some(pin)) => Some((
            Severity::High,
            format!("{key} is too large to check against its pinned hash"),
            UNPINNED.into(),
            format!(
                "expected {pin}\nfound    a file of {n} bytes (hashing stops at {} bytes)",
                fsutil::HASH_MAX_BYTES
            ),
        )),
        (Observed::Unreadable(e), pin) => Some((
            if pin.is_some() {
                Severity::High
            } else {
                Severity::Low
            },
            format!("{key} could not be read"),
            if pin.is_some() {
                UNPINNED.to_string()
            } else {
                "Its hash is not part of the baseline; give the agent read access to it.".into()
            },
            format!("{key}: {e}"),
        )),
    }
}

impl FileHashes {
    /// Fact key → host path of every file to hash.
    fn targets(&self, ctx: &ScanContext, out: &mut RuleOutput) -> BTreeMap<String, PathBuf> {
        let mut t = BTreeMap::new();
        let paths: Vec<String> = (self.files.iter().chain(self.expect.keys()))
            .filter(|f| f.starts_with('/'))
            .cloned()
            .collect();
        for (node, host) in fsutil::under_root(ctx, &paths) {
            t.insert(fsutil::safe_name(&node), host);
        }
        if self.include_sudoers_d {
            let dir = ctx.path(SUDOERS_D);
            match std::fs::read_dir(&dir) {
                Ok(entries) => {
                    for entry in entries.flatten().take(ctx.max_files) {
                        // Follows symlinks: sudo reads what they point to.
                        if entry.path().is_file() {
                            let name = entry.file_name();
                            let key = format!("{SUDOERS_D}/{}", name.to_string_lossy());
                            t.insert(fsutil::safe_name(&key), entry.path());
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    out.fact(NAME, SUDOERS_D, "unreadable");
                    out.finding(
                        Severity::Low,
                        format!("{SUDOERS_D} could not be read"),
                        "Its files are not part of the baseline; give the agent read access.",
                        format!("{SUDOERS_D}: {e}"),
                    );
                }
            }
        }
        let agent = [
            (AGENT_BINARY, &ctx.agent_exe),
            (AGENT_CONFIG, &ctx.agent_config),
        ];
        for (key, path) in agent {
            if self.include_agent || self.expect.contains_key(key) {
                match path {
                    Some(p) => {
                        t.insert(key.to_string(), p.clone());
                    }
                    None => {
                        if let Some(pin) = self.expect.get(key) {
                            out.finding(
                                Severity::High,
                                format!("{key} is missing (it has a pinned hash)"),
                                "The agent runs without one, so it cannot be checked.",
                                format!("expected {pin}\nfound    nothing"),
                            );
                        }
                    }
                }
            }
        }
        t
    }
}

impl ScanRule for FileHashes {
    fn scan(&self, ctx: &ScanContext, out: &mut RuleOutput) -> Result<(), RuleError> {
        for (key, host) in self.targets(ctx, out) {
            ctx.check_deadline()?;
            let seen = Observed::of(&host, ctx.deadline);
            out.fact(NAME, key.clone(), seen.fact());
            let pin = self.expect.get(&key).map(String::as_str);
            if let Some((severity, title, detail, evidence)) = judge(&key, &seen, pin) {
                out.finding(severity, title, detail, evidence);
            }
        }
        Ok(())
    }
}

inventory::submit! {
    ScanRuleRegistration {
        name: NAME,
        description: "SHA-256 baseline of sshd_config, sudoers, passwd, group and the agent itself, with optional pins",
        enabled_by_default: true,
        example: "files = [\"/etc/ssh/sshd_config\", \"/etc/sudoers\", \"/etc/passwd\", \"/etc/group\"]\n\
                  include_sudoers_d = true\n\
                  include_agent = true\n\
                  [expect]\n\
                  # \"/etc/sudoers\" = \"<sha256sum of the approved file>\"\n",
        build: |t| Ok(Box::new(FileHashes::new(parse_table(t)?)?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sovereign::rules::testutil::{Fixture, sha};

    const PASSWD: &str = "root:x:0:0::/root:/bin/sh\n";
    const EMPTY_SHA: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn rule() -> FileHashes {
        FileHashes::new(Config::default()).unwrap()
    }

    fn fixture() -> Fixture {
        let f = Fixture::new();
        f.file("/etc/ssh/sshd_config", "PermitRootLogin no\n");
        f.file("/etc/sudoers", "root ALL=(ALL:ALL) ALL\n");
        f.file("/etc/passwd", PASSWD);
        f.file("/etc/group", "root:x:0:\n");
        f.file("/etc/sudoers.d/README", "");
        f
    }

    #[test]
    fn clean_node_hashes_the_defaults_without_findings() {
        let f = fixture();
        let (out, err) = f.run(&rule(), NAME);
        assert!(err.is_none(), "{err:?}");
        assert!(out.findings().is_empty(), "{:?}", out.findings());
        let facts = out.category(NAME);
        assert_eq!(
            facts.keys().collect::<Vec<_>>(),
            [
                "/etc/group",
                "/etc/passwd",
                "/etc/ssh/sshd_config",
                "/etc/sudoers",
                "/etc/sudoers.d/README"
            ],
            "no agent paths in this context"
        );
        assert_eq!(facts["/etc/passwd"], sha(PASSWD));
        assert_eq!(facts["/etc/sudoers.d/README"], EMPTY_SHA);
    }

    #[test]
    fn missing_files_are_facts_not_findings() {
        let f = Fixture::new();
        let (out, err) = f.run(&rule(), NAME);
        assert!(err.is_none());
        assert!(out.findings().is_empty());
        let facts = out.category(NAME);
        assert_eq!(facts.len(), 4, "no /etc/sudoers.d: nothing from it");
        assert!(facts.values().all(|v| v == "absent"), "{facts:?}");
    }

    #[test]
    fn facts_are_stable_and_a_change_changes_exactly_its_fact() {
        let f = fixture();
        let (a, _) = f.run(&rule(), NAME);
        let (b, _) = f.run(&rule(), NAME);
        assert_eq!(a.facts(), b.facts());
        f.file(
            "/etc/passwd",
            "root:x:0:0::/root:/bin/sh\nmallory:x:0:0::/:/bin/sh\n",
        );
        f.file(
            "/etc/sudoers.d/90-mallory",
            "mallory ALL=(ALL) NOPASSWD: ALL\n",
        );
        let (c, _) = f.run(&rule(), NAME);
        let (before, after) = (a.category(NAME), c.category(NAME));
        let mut changed: Vec<&String> = after
            .keys()
            .filter(|k| before.get(*k) != after.get(*k))
            .collect();
        changed.sort();
        assert_eq!(changed, ["/etc/passwd", "/etc/sudoers.d/90-mallory"]);
    }

    #[test]
    fn pins_are_checked() {
        let f = fixture();
        let r = FileHashes::new(Config {
            expect: BTreeMap::from([
                ("/etc/passwd".into(), sha(PASSWD).to_ascii_uppercase()),
                ("/etc/sudoers".into(), EMPTY_SHA.into()),
                ("/etc/shadow".into(), EMPTY_SHA.into()),
            ]),
            ..Config::default()
        })
        .unwrap();
        let (out, _) = f.run(&r, NAME);
        let got: Vec<(Severity, &str)> = out
            .findings()
            .iter()
            .map(|f| (f.severity, f.title.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    Severity::High,
                    "/etc/shadow is missing (it has a pinned hash)"
                ),
                (Severity::High, "/etc/sudoers differs from its pinned hash"),
            ],
            "uppercase pins are accepted; pinned paths are hashed even if not in files"
        );
        assert_eq!(
            out.findings()[1].evidence,
            format!(
                "expected {EMPTY_SHA}\nfound    {}",
                sha("root ALL=(ALL:ALL) ALL\n")
            )
        );
        assert_eq!(out.category(NAME)["/etc/shadow"], "absent");
    }

    #[test]
    fn agent_files_are_hashed_where_they_are() {
        let f = fixture();
        let outside = f.root().parent().unwrap().join("vaultmesh-agent");
        std::fs::write(&outside, "ELF").unwrap();
        let mut ctx = f.ctx();
        ctx.agent_exe = Some(outside.clone());
        ctx.agent_config = Some(f.root().parent().unwrap().join("no-such.toml"));
        let (out, _) = f.run_with(&rule(), NAME, &ctx);
        let facts = out.category(NAME);
        assert_eq!(facts[AGENT_BINARY], sha("ELF"));
        assert_eq!(facts[AGENT_CONFIG], "absent");
        assert!(out.findings().is_empty());

        let off = FileHashes::new(Config {
            include_agent: false,
            ..Config::default()
        })
        .unwrap();
        let (out, _) = f.run_with(&off, NAME, &ctx);
        assert!(!out.category(NAME).contains_key(AGENT_BINARY));

        // A pin on the binary is checked even with include_agent off.
        let pinned = FileHashes::new(Config {
            include_agent: false,
            expect: BTreeMap::from([(AGENT_BINARY.into(), EMPTY_SHA.into())]),
            ..Config::default()
        })
        .unwrap();
        let (out, _) = f.run_with(&pinned, NAME, &ctx);
        assert_eq!(out.findings().len(), 1);
        assert_eq!(
            out.findings()[0].title,
            "agent:binary differs from its pinned hash"
        );
        ctx.agent_exe = None;
        let (out, _) = f.run_with(&pinned, NAME, &ctx);
        assert_eq!(
            out.findings()[0].title,
            "agent:binary is missing (it has a pinned hash)"
        );
    }

    #[test]
    fn unreadable_and_too_large_files() {
        let f = fixture();
        // A directory opens but cannot be read, for root too (mode 000 would not stop root).
        f.dir("/etc/sudoers.d/not-a-file/x");
        f.dir("/srv/dir");
        let big = f.file("/srv/big", "");
        std::fs::File::options()
            .write(true)
            .open(&big)
            .unwrap()
            .set_len(fsutil::HASH_MAX_BYTES + 1)
            .unwrap();
        let r = FileHashes::new(Config {
            files: vec!["/srv/dir".into(), "/srv/big".into()],
            ..Config::default()
        })
        .unwrap();
        let (out, err) = f.run(&r, NAME);
        assert!(err.is_none());
        let facts = out.category(NAME);
        assert_eq!(facts["/srv/dir"], "unreadable");
        assert_eq!(
            facts["/srv/big"],
            format!("too-large:{}", fsutil::HASH_MAX_BYTES + 1)
        );
        assert!(
            !facts.contains_key("/etc/sudoers.d/not-a-file"),
            "directories in sudoers.d are skipped"
        );
        assert_eq!(out.findings().len(), 1);
        assert_eq!(out.findings()[0].severity, Severity::Low);
        assert_eq!(out.findings()[0].title, "/srv/dir could not be read");

        let pinned = FileHashes::new(Config {
            files: vec![],
            include_sudoers_d: false,
            expect: BTreeMap::from([
                ("/srv/dir".into(), EMPTY_SHA.into()),
                ("/srv/big".into(), EMPTY_SHA.into()),
            ]),
            ..Config::default()
        })
        .unwrap();
        let (out, _) = f.run(&pinned, NAME);
        let sev: Vec<Severity> = out.findings().iter().map(|f| f.severity).collect();
        assert_eq!(sev, [Severity::High, Severity::High]);
    }

    #[test]
    fn config_is_validated() {
        let e = FileHashes::new(Config {
            files: vec!["/etc/passwd".into(), "etc/group".into()],
            ..Config::default()
        })
        .unwrap_err();
        assert_eq!(e.key, "files[1]");
        let e = FileHashes::new(Config {
            expect: BTreeMap::from([("/etc/passwd".into(), "abc".into())]),
            ..Config::default()
        })
        .unwrap_err();
        assert_eq!(e.key, "expect./etc/passwd");
        let e = FileHashes::new(Config {
            expect: BTreeMap::from([("/etc/passwd".into(), "g".repeat(64))]),
            ..Config::default()
        })
        .unwrap_err();
        assert_eq!(e.key, "expect./etc/passwd");
        let e = FileHashes::new(Config {
            expect: BTreeMap::from([("passwd".into(), EMPTY_SHA.into())]),
            ..Config::default()
        })
        .unwrap_err();
        assert_eq!(e.key, "expect.passwd");
        let e = parse_table::<Config>(&"expect = { \"/etc/passwd\" = 1 }".parse().unwrap())
            .unwrap_err();
        assert!(e.key.starts_with("expect"), "{}", e.key);
    }

    #[test]
    fn judge_is_pure() {
        let h = Observed::Hash(EMPTY_SHA.into());
        assert_eq!(judge("/x", &h, None), None);
        assert_eq!(judge("/x", &h, Some(EMPTY_SHA)), None);
        assert_eq!(judge("/x", &Observed::Absent, None), None);
        assert_eq!(judge("/x", &Observed::TooLarge(1), None), None);
        assert_eq!(
            judge("/x", &Observed::Unreadable("denied".into()), None)
                .unwrap()
                .0,
            Severity::Low
        );
    }
}
