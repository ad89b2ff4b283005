//! `world_writable`: modes and owners of everything under the VaultMesh root.
//!
//! Walks `VAULTMESH_ROOT` under the scan root (bounded by `max_files` and the time budget,
//! without following symlinks or leaving its filesystem) and judges every entry but symlinks
//! (whose mode is always 0777):
//! - a world-writable regular file: high;
//! - a world-writable directory without the sticky bit: high; with it: low;
//! - a world-writable socket, FIFO or device: medium;
//! - an entry owned by a user not in `owners` (names or numeric uids, resolved through the
//!   scan root's `/etc/passwd`; `root` is uid 0 even without one): medium.
//!
//! Each offending path is one finding (its worst problem, naming the others), in path order,
//! up to `max_findings`; the rest are summed up in one more finding at their worst severity.
//! Entries the walk could not read are an info finding. A missing VaultMesh root is a single
//! low finding, not an error.
//!
//! Facts (`world_writable`): node path = octal mode (`0777`, `1777`) of every world-writable
//! entry, so a path that becomes world-writable shows as drift.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use serde::Deserialize;
use vaultmesh_agent_core::registry::{CheckConfigError, parse_table};
use vaultmesh_proto::Severity;

use crate::sovereign::rule::{RuleError, RuleOutput, ScanContext, ScanRule, ScanRuleRegistration};
use crate::sovereign::rules::fsutil::{self, Names};

pub const NAME: &str = "world_writable";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Config {
    /// Users who may own entries under the VaultMesh root (names or numeric uids).
    owners: Vec<String>,
    /// Most findings listed one by one; the rest become one summary finding.
    max_findings: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            owners: vec!["root".into()],
            max_findings: 100,
        }
    }
}

#[derive(Debug)]
struct WorldWritable {
    owners: Vec<String>,
    max_findings: usize,
}

impl WorldWritable {
    fn new(c: Config) -> Result<Self, CheckConfigError> {
        if c.owners.is_empty() {
            return Err(CheckConfigError::new(
                "owners",
                "must name at least one user (e.g. [\"root\"])",
            ));
        }
        for (i, o) in c.owners.iter().enumerate() {
            if o.is_empty() || o.contains(|c: char| c == ':' || c.is_whitespace()) {
                return Err(CheckConfigError::new(
                    format!("owners[{i}]"),
                    format!("{o:?} is not a user name or uid"),
                ));
            }
        }
        let limit = vaultmesh_proto::scan::limits::FINDINGS_MAX;
        if c.max_findings == 0 || c.max_findings > limit {
            return Err(CheckConfigError::new(
                "max_findings",
                format!("must be between 1 and {limit}"),
            ));
        }
        Ok(WorldWritable {
            owners: c.owners,
            max_findings: c.max_findings,
        })
    }
}

/// What kind of entry was seen (symlinks are never judged).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    /// Socket, FIFO or device.
    Other(&'static str),
}

/// One walked entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Node path, safe for titles and fact keys.
    pub path: String,
    pub kind: Kind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

impl Entry {
    pub fn world_writable(&self) -> bool {
        self.mode & 0o002 != 0
    }

    /// `None` for symlinks.
    fn from_metadata(path: String, m: &std::fs::Metadata) -> Option<Entry> {
        let t = m.file_type();
        let kind = if t.is_symlink() {
            return None;
        } else if t.is_file() {
            Kind::File
        } else if t.is_dir() {
            Kind::Dir
        } else if t.is_socket() {
            Kind::Other("socket")
        } else if t.is_fifo() {
            Kind::Other("FIFO")
        } else {
            Kind::Other("device")
        };
        Some(Entry {
            path,
            kind,
            mode: m.mode(),
            uid: m.uid(),
            gid: m.gid(),
        })
    }
}

/// A judged entry: its worst severity, title and detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub severity: Severity,
    pub title: String,
    pub detail: String,
}

/// Judges `e` against the allowed owner uids; `owner` is its owner's name for the title.
pub fn judge(e: &Entry, allowed_uids: &[u32], owner: &str) -> Option<Verdict> {
    let writable = if e.world_writable() {
        Some(match e.kind {
            Kind::File => (
                Severity::High,
                format!("World-writable file {}", e.path),
                "Any local user can change this file; remove the write bit for others \
                 (chmod o-w).",
            ),
            Kind::Dir if e.mode & 0o1000 == 0 => (
                Severity::High,
                format!("World-writable directory {}", e.path),
                "Any local user can create, replace or delete entries in it; remove the write \
                 bit for others (chmod o-w).",
            ),
            Kind::Dir => (
                Severity::Low,
                format!("World-writable sticky directory {}", e.path),
                "Any local user can create entries in it (the sticky bit only stops them \
                 deleting other users' entries); VaultMesh directories need not be shared.",
            ),
            Kind::Other(what) => (
                Severity::Medium,
                format!("World-writable {what} {}", e.path),
                "Any local user can write to it; remove the write bit for others (chmod o-w).",
            ),
        })
    } else {
        None
    };
    let foreign = !allowed_uids.contains(&e.uid);
    const OWNER_DETAIL: &str = "Entries under the VaultMesh root should belong to the allowed \
                                owners only: their owner can change them without privileges.";
    match (writable, foreign) {
        (None, false) => None,
        (None, true) => Some(Verdict {
            severity: Severity::Medium,
            title: format!("{} is owned by {owner}", e.path),
            detail: OWNER_DETAIL.to_string(),
        }),
        (Some((severity, title, detail)), false) => Some(Verdict {
            severity,
            title,
            detail: detail.to_string(),
        }),
        (Some((severity, title, detail)), true) => Some(Verdict {
            severity: severity.max(Severity::Medium),
            title: format!("{title}, owned by {owner}"),
            detail: format!("{detail} {OWNER_DETAIL}"),
        }),
    }
}

impl WorldWritable {
    /// The allowed owners as uids, and the names that resolved to none.
    fn owner_uids(&self, names: &Names) -> (Vec<u32>, Vec<String>) {
        let mut uids = Vec::new();
        let mut unknown = Vec::new();
        for o in &self.owners {
            match names.uid(o).or((o == "root").then_some(0)) {
                Some(uid) => uids.push(uid),
                None => unknown.push(o.clone()),
            }
        }
        (uids, unknown)
    }
}

impl ScanRule for WorldWritable {
    fn scan(&self, ctx: &ScanContext, out: &mut RuleOutput) -> Result<(), RuleError> {
        let node_root = ctx.vaultmesh_root.to_string_lossy().into_owned();
        let root = ctx.path(&ctx.vaultmesh_root);
        match std::fs::symlink_metadata(&root) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                out.finding(
                    Severity::Low,
                    "VaultMesh root does not exist",
                    "The scan could not judge the VaultMesh installation; check VAULTMESH_ROOT.",
                    format!("{node_root}: not found"),
                );
                return Ok(());
            }
            Err(e) => return Err(RuleError::new(format!("{node_root}: {e}"))),
            Ok(_) => {}
        }
        let names = Names::load(ctx);
        let (uids, unknown) = self.owner_uids(&names);
        let mut entries = Vec::new();
        let walked = fsutil::walk(ctx, &root, |host: &Path, m| {
            let path = fsutil::safe_name(&ctx.node_path(host));
            entries.extend(Entry::from_metadata(path, m));
        });
        vaultmesh_agent_core::sort::sort_by(&mut entries, |a, b| a.path.cmp(&b.path));
        let mut listed = 0;
        let mut rest: Vec<(Severity, String)> = Vec::new();
        for e in &entries {
            if e.world_writable() {
                out.fact(NAME, e.path.clone(), fsutil::octal_mode(e.mode));
            }
            let owner = names.user(e.uid);
            let Some(v) = judge(e, &uids, &owner) else {
                continue;
            };
            if listed == self.max_findings {
                rest.push((v.severity, e.path.clone()));
                continue;
            }
            listed += 1;
            let mut detail = v.detail;
            if !unknown.is_empty() && !uids.contains(&e.uid) {
                detail.push_str(&format!(
                    " (allowed owners not found in /etc/passwd: {})",
                    unknown.join(", ")
                ));
            }
            out.finding(
                v.severity,
                v.title,
                detail,
                format!(
                    "{} mode {} owner {owner} ({}) group {} ({})",
                    e.path,
                    fsutil::octal_mode(e.mode),
                    e.uid,
                    names.group(e.gid),
                    e.gid
                ),
            );
        }
        if let Some(worst) = rest.iter().map(|(s, _)| *s).max() {
            let paths: Vec<&str> = rest.iter().map(|(_, p)| p.as_str()).collect();
            out.finding(
                worst,
                format!(
                    "{} more world-writable or foreign-owned entries under {}",
                    rest.len(),
                    fsutil::safe_name(&node_root)
                ),
                format!(
                    "Only the first {} are listed one by one (max_findings).",
                    self.max_findings
                ),
                paths.join("\n"),
            );
        }
        let stats = walked?;
        if stats.unreadable > 0 {
            out.finding(
                Severity::Info,
                format!(
                    "{} entries under {} could not be read",
                    stats.unreadable,
                    fsutil::safe_name(&node_root)
                ),
                "They were not judged; run the agent with enough privileges to read them.",
                format!("{} visited, {} unreadable", stats.visited, stats.unreadable),
            );
        }
        Ok(())
    }
}

inventory::submit! {
    ScanRuleRegistration {
        name: NAME,
        description: "World-writable and foreign-owned entries under the VaultMesh root",
        enabled_by_default: true,
        example: "owners = [\"root\"]\nmax_findings = 100\n",
        build: |t| Ok(Box::new(WorldWritable::new(parse_table(t)?)?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sovereign::rules::testutil::Fixture;

    /// A rule that accepts the test's own uid (tests run as root or not).
    fn rule(f: &Fixture) -> WorldWritable {
        WorldWritable::new(Config {
            owners: vec!["root".into(), f.owner().0.to_string()],
            ..Config::default()
        })
        .unwrap()
    }

    fn fixture() -> Fixture {
        let f = Fixture::new();
        f.file("/opt/vaultmesh/bin/agent", "#!/bin/sh\n");
        f.chmod("/opt/vaultmesh/bin/agent", 0o755);
        f.file("/opt/vaultmesh/etc/agent.toml", "x = 1\n");
        f.chmod("/opt/vaultmesh/etc/agent.toml", 0o640);
        f.chmod("/opt/vaultmesh", 0o755);
        f
    }

    fn titles(out: &RuleOutput) -> Vec<(Severity, String)> {
        out.findings()
            .iter()
            .map(|f| (f.severity, f.title.clone()))
            .collect()
    }

    #[test]
    fn clean_tree_has_no_findings_or_facts() {
        let f = fixture();
        let (out, err) = f.run(&rule(&f), NAME);
        assert!(err.is_none(), "{err:?}");
        assert!(out.findings().is_empty(), "{:?}", out.findings());
        assert!(out.category(NAME).is_empty());
    }

    #[test]
    fn world_writable_entries_are_judged_by_kind() {
        let f = fixture();
        f.chmod("/opt/vaultmesh/etc/agent.toml", 0o666);
        f.dir("/opt/vaultmesh/spool");
        f.chmod("/opt/vaultmesh/spool", 0o777);
        f.dir("/opt/vaultmesh/tmp");
        f.chmod("/opt/vaultmesh/tmp", 0o1777);
        f.symlink("/etc/passwd", "/opt/vaultmesh/link");
        let (out, err) = f.run(&rule(&f), NAME);
        assert!(err.is_none(), "{err:?}");
        assert_eq!(
            titles(&out),
            [
                (
                    Severity::High,
                    "World-writable file /opt/vaultmesh/etc/agent.toml".to_string()
                ),
                (
                    Severity::High,
                    "World-writable directory /opt/vaultmesh/spool".to_string()
                ),
                (
                    Severity::Low,
                    "World-writable sticky directory /opt/vaultmesh/tmp".to_string()
                ),
            ],
            "the symlink is not judged"
        );
        let (uid, _) = f.owner();
        assert!(
            out.findings()[0].evidence.starts_with(&format!(
                "/opt/vaultmesh/etc/agent.toml mode 0666 owner {uid} ({uid})"
            )),
            "{}",
            out.findings()[0].evidence
        );
        assert_eq!(
            out.category(NAME),
            [
                ("/opt/vaultmesh/etc/agent.toml", "0666"),
                ("/opt/vaultmesh/spool", "0777"),
                ("/opt/vaultmesh/tmp", "1777"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .into()
        );
    }

    #[test]
    fn world_writable_fifo_is_medium() {
        let f = fixture();
        let p = f.path("/opt/vaultmesh/run.fifo");
        let ok = std::process::Command::new("mkfifo")
            .arg(&p)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            // No mkfifo on this machine: nothing to test.
            return;
        }
        f.chmod("/opt/vaultmesh/run.fifo", 0o666);
        let (out, _) = f.run(&rule(&f), NAME);
        assert_eq!(
            titles(&out),
            [(
                Severity::Medium,
                "World-writable FIFO /opt/vaultmesh/run.fifo".to_string()
            )]
        );
    }

    #[test]
    fn foreign_owners_are_medium_and_names_resolve_through_passwd() {
        let f = fixture();
        let (uid, gid) = f.owner();
        let other = uid.wrapping_add(1);
        let strict = WorldWritable::new(Config {
            owners: vec![other.to_string()],
            ..Config::default()
        })
        .unwrap();
        f.chmod("/opt/vaultmesh/etc/agent.toml", 0o646);
        let (out, _) = f.run(&strict, NAME);
        let t = titles(&out);
        assert_eq!(t.len(), 5, "{t:?}");
        assert_eq!(
            t[0],
            (
                Severity::Medium,
                format!("/opt/vaultmesh is owned by {uid}")
            )
        );
        assert!(t.contains(&(
            Severity::High,
            format!("World-writable file /opt/vaultmesh/etc/agent.toml, owned by {uid}")
        )));
        // A name in the fixture's /etc/passwd, for the owner and in the allow list.
        f.file(
            "/etc/passwd",
            &format!("vaultmesh:x:{uid}:{gid}::/opt/vaultmesh:/usr/sbin/nologin\n"),
        );
        f.file("/etc/group", &format!("vmgroup:x:{gid}:\n"));
        let (out, _) = f.run(&strict, NAME);
        assert_eq!(
            out.findings()[0].title,
            "/opt/vaultmesh is owned by vaultmesh"
        );
        assert!(
            out.findings()[0]
                .evidence
                .ends_with(&format!("owner vaultmesh ({uid}) group vmgroup ({gid})")),
            "{}",
            out.findings()[0].evidence
        );
        let by_name = WorldWritable::new(Config {
            owners: vec!["vaultmesh".into()],
            ..Config::default()
        })
        .unwrap();
        let (out, _) = f.run(&by_name, NAME);
        assert_eq!(titles(&out).len(), 1, "only the world-writable file");
        // A name that resolves to nobody is named in the detail.
        let ghost = WorldWritable::new(Config {
            owners: vec!["ghost".into()],
            ..Config::default()
        })
        .unwrap();
        let (out, _) = f.run(&ghost, NAME);
        assert!(
            out.findings()[0]
                .detail
                .contains("not found in /etc/passwd: ghost")
        );
    }

    #[test]
    fn findings_are_capped_with_a_summary() {
        let f = fixture();
        for i in 0..5 {
            let p = format!("/opt/vaultmesh/data/{i}");
            f.file(&p, "");
            f.chmod(&p, 0o666);
        }
        f.dir("/opt/vaultmesh/data/sticky");
        f.chmod("/opt/vaultmesh/data/sticky", 0o1777);
        let r = WorldWritable::new(Config {
            max_findings: 2,
            ..rule_config(&f)
        })
        .unwrap();
        let (out, err) = f.run(&r, NAME);
        assert!(err.is_none());
        let t = titles(&out);
        assert_eq!(t.len(), 3, "{t:?}");
        assert_eq!(t[0].1, "World-writable file /opt/vaultmesh/data/0");
        assert_eq!(t[1].1, "World-writable file /opt/vaultmesh/data/1");
        assert_eq!(
            t[2],
            (
                Severity::High,
                "4 more world-writable or foreign-owned entries under /opt/vaultmesh".to_string()
            )
        );
        assert_eq!(
            out.findings()[2].evidence,
            "/opt/vaultmesh/data/2\n/opt/vaultmesh/data/3\n/opt/vaultmesh/data/4\n\
             /opt/vaultmesh/data/sticky"
        );
        assert_eq!(out.category(NAME).len(), 6, "facts are not capped");
    }

    fn rule_config(f: &Fixture) -> Config {
        Config {
            owners: vec![f.owner().0.to_string()],
            ..Config::default()
        }
    }

    #[test]
    fn facts_are_stable_and_track_mode_changes() {
        let f = fixture();
        f.chmod("/opt/vaultmesh/etc/agent.toml", 0o666);
        let (a, _) = f.run(&rule(&f), NAME);
        let (b, _) = f.run(&rule(&f), NAME);
        assert_eq!(a.facts(), b.facts());
        f.chmod("/opt/vaultmesh/bin/agent", 0o757);
        let (c, _) = f.run(&rule(&f), NAME);
        let mut expected = a.category(NAME);
        expected.insert("/opt/vaultmesh/bin/agent".into(), "0757".into());
        assert_eq!(c.category(NAME), expected);
    }

    #[test]
    fn odd_file_names_are_safe_keys_and_titles() {
        let f = fixture();
        use std::os::unix::ffi::OsStrExt;
        f.file("/opt/vaultmesh/a\nb\tc", "");
        f.chmod("/opt/vaultmesh/a\nb\tc", 0o666);
        let raw = f
            .path("/opt/vaultmesh")
            .join(std::ffi::OsStr::from_bytes(b"x\xff"));
        std::fs::write(&raw, "").unwrap();
        std::fs::set_permissions(&raw, std::os::unix::fs::PermissionsExt::from_mode(0o666))
            .unwrap();
        let (out, err) = f.run(&rule(&f), NAME);
        assert!(err.is_none());
        let keys: Vec<String> = out.category(NAME).into_keys().collect();
        assert_eq!(keys, ["/opt/vaultmesh/a?b?c", "/opt/vaultmesh/x\u{fffd}"]);
        assert!(out.findings().iter().all(|f| !f.title.contains('\n')));
    }

    #[test]
    fn missing_root_is_one_low_finding() {
        let f = Fixture::new();
        let (out, err) = f.run(&rule(&f), NAME);
        assert!(err.is_none());
        assert_eq!(
            titles(&out),
            [(Severity::Low, "VaultMesh root does not exist".to_string())]
        );
        assert_eq!(out.findings()[0].evidence, "/opt/vaultmesh: not found");
    }

    #[test]
    fn max_files_stops_the_walk_with_an_error_but_keeps_findings() {
        let f = fixture();
        // The root is visited first whatever the directory order.
        f.chmod("/opt/vaultmesh", 0o777);
        let mut ctx = f.ctx();
        ctx.max_files = 2;
        let (out, err) = f.run_with(&rule(&f), NAME, &ctx);
        assert!(err.unwrap().0.contains("max_files"));
        assert_eq!(out.findings().len(), 1);
    }

    #[test]
    fn config_is_validated() {
        let e = WorldWritable::new(Config {
            owners: vec![],
            ..Config::default()
        })
        .unwrap_err();
        assert_eq!(e.key, "owners");
        let e = WorldWritable::new(Config {
            owners: vec!["root".into(), "bad name".into()],
            ..Config::default()
        })
        .unwrap_err();
        assert_eq!(e.key, "owners[1]");
        let e = WorldWritable::new(Config {
            max_findings: 0,
            ..Config::default()
        })
        .unwrap_err();
        assert_eq!(e.key, "max_findings");
        let e = parse_table::<Config>(&"owner = [\"root\"]".parse().unwrap()).unwrap_err();
        assert_eq!(e.key, "owner");
    }

    #[test]
    fn judge_is_pure() {
        let e = Entry {
            path: "/x".into(),
            kind: Kind::Dir,
            mode: 0o40755,
            uid: 0,
            gid: 0,
        };
        assert_eq!(judge(&e, &[0], "root"), None);
        let v = judge(&e, &[1], "root").unwrap();
        assert_eq!(v.severity, Severity::Medium);
        let sticky = Entry {
            mode: 0o41777,
            ..e.clone()
        };
        let v = judge(&sticky, &[1], "root").unwrap();
        assert_eq!(
            (v.severity, v.title.as_str()),
            (
                Severity::Medium,
                "World-writable sticky directory /x, owned by root"
            ),
            "a foreign owner raises a low finding to medium"
        );
    }
}
