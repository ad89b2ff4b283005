//! `disk`: space and inodes used on every real mounted filesystem.
//!
//! Mounts come from `/proc/self/mounts`; the numbers come from `statvfs`, computed the way `df` does
//! (`used = blocks - free`, `used% = used / (used + available)`), so operators see the same
//! figures they would on the node. Pseudo filesystems (proc, tmpfs, squashfs snaps, ...) are
//! skipped; more can be ignored by type or mount point.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use vaultmesh_agent_core::registry::{CheckConfigError, CheckRegistration, parse_table};
use vaultmesh_agent_core::{Check, CheckContext, CheckOutcome, Contribution};
use vaultmesh_proto::{CheckStatus, DiskUsage, Metrics};

use crate::thresholds::{Thresholds, round1};

/// Filesystem types that never hold data worth alerting on.
const PSEUDO_FS: &[&str] = &[
    "autofs",
    "binfmt_misc",
    "bpf",
    "cgroup",
    "cgroup2",
    "configfs",
    "debugfs",
    "devpts",
    "devtmpfs",
    "efivarfs",
    "fusectl",
    "fuse.gvfsd-fuse",
    "fuse.portal",
    "hugetlbfs",
    "iso9660",
    "mqueue",
    "nsfs",
    "proc",
    "pstore",
    "ramfs",
    "rpc_pipefs",
    "securityfs",
    "squashfs",
    "sysfs",
    "tmpfs",
    "tracefs",
    "nfsd",
    "overlay-internal",
];

/// Filesystem types on local block devices, whose `statfs` answers from counters in memory
/// and never waits on a network or a user-space server. Not ZFS: a suspended pool can hold it.
const LOCAL_FS: &[&str] = &[
    "bcachefs", "btrfs", "exfat", "ext2", "ext3", "ext4", "f2fs", "hfsplus", "jfs", "msdos",
    "nilfs2", "ntfs", "ntfs3", "reiserfs", "vfat", "xfs",
];

/// Filesystems in memory, safe to walk through on the way to a mount point.
const IN_MEMORY_FS: &[&str] = &["devtmpfs", "ramfs", "tmpfs"];

/// A mounted filesystem the check measures.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Selected {
    mount: String,
    fs: String,
    /// Measured on the agent's own thread: a local disk's filesystem, reached through local
    /// or in-memory ones only (`/` and every other mount point on the way). Any other (NFS,
    /// CIFS, Ceph, 9p, FUSE, overlay, ZFS …, or a local disk under a network mount) is measured
    /// on a blocking thread, where a dead server hangs only that thread.
    inline: bool,
}

/// Whether `mount` is `ancestor` or under it, by path components.
fn is_under(mount: &str, ancestor: &str) -> bool {
    ancestor == "/"
        || mount == ancestor
        || mount
            .strip_prefix(ancestor)
            .is_some_and(|rest| rest.starts_with('/'))
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct DiskConfig {
    /// Space used (%) at which a filesystem is warn / crit.
    warn_pct: f64,
    crit_pct: f64,
    /// Inodes used (%) at which a filesystem is warn / crit.
    inodes_warn_pct: f64,
    inodes_crit_pct: f64,
    /// Extra filesystem types to skip, on top of the built-in pseudo filesystems.
    ignore_fs: Vec<String>,
    /// Mount points to skip (exact paths).
    ignore_mounts: Vec<String>,
    /// If set, only these mount points are checked; a listed mount that is missing is crit.
    mounts: Vec<String>,
}

impl Default for DiskConfig {
    fn default() -> Self {
        DiskConfig {
            warn_pct: 85.0,
            crit_pct: 95.0,
            inodes_warn_pct: 85.0,
            inodes_crit_pct: 95.0,
            ignore_fs: Vec::new(),
            ignore_mounts: Vec::new(),
            mounts: Vec::new(),
        }
    }
}

#[derive(Debug)]
struct Disk {
    space: Thresholds,
    inodes: Thresholds,
    ignore_fs: BTreeSet<String>,
    ignore_mounts: BTreeSet<String>,
    only: Vec<String>,
    /// `/proc/self/mounts`, and the filesystems selected from it.
    mounts: crate::procfs::MountTable<Vec<Selected>>,
}

impl Disk {
    fn new(c: DiskConfig) -> Result<Self, CheckConfigError> {
        let space = Thresholds::new(c.warn_pct, c.crit_pct);
        space.validate("warn_pct", "crit_pct", 100.0)?;
        let inodes = Thresholds::new(c.inodes_warn_pct, c.inodes_crit_pct);
        inodes.validate("inodes_warn_pct", "inodes_crit_pct", 100.0)?;
        let mut ignore_fs: BTreeSet<String> = PSEUDO_FS.iter().map(|s| s.to_string()).collect();
        ignore_fs.extend(c.ignore_fs);
        Ok(Disk {
            space,
            inodes,
            ignore_fs,
            ignore_mounts: c.ignore_mounts.into_iter().collect(),
            only: c.mounts,
            mounts: crate::procfs::MountTable::new("/proc/self/mounts"),
        })
    }

    /// Which of the mounted filesystems to look at, one per mount point: the one mounted last
    /// there, which is the one a path reaches (`statvfs` measures it, and `df` shows it).
    fn select(&self, mounted: Vec<(String, String)>) -> Vec<Selected> {
        let mut seen = BTreeSet::new();
        let mut visible: Vec<(String, String)> = mounted
            .into_iter()
            .rev()
            .filter(|(mount, _)| seen.insert(mount.clone()))
            .collect();
        visible.reverse();
        let reached_safely = |mount: &str| {
            visible.iter().all(|(other, fs)| {
                other == mount
                    || !is_under(mount, other)
                    || LOCAL_FS.contains(&fs.as_str())
                    || IN_MEMORY_FS.contains(&fs.as_str())
            })
        };
        (visible.iter())
            .filter(|(mount, fs)| {
                if !self.only.is_empty() {
                    return self.only.contains(mount);
                }
                !self.ignore_fs.contains(fs) && !self.ignore_mounts.contains(mount)
            })
            .map(|(mount, fs)| Selected {
                mount: mount.clone(),
                fs: fs.clone(),
                inline: LOCAL_FS.contains(&fs.as_str()) && reached_safely(mount),
            })
            .collect()
    }

    /// The verdict over measured disks; `missing` are configured mounts that are not mounted.
    /// The disks themselves go to the heartbeat's `metrics.disks`, not into the details.
    fn evaluate(&self, disks: Vec<DiskUsage>, missing: &[String]) -> CheckOutcome {
        let mut worst = CheckStatus::Ok;
        let mut problems = Vec::new();
        for m in missing {
            worst = CheckStatus::Crit;
            problems.push((CheckStatus::Crit, 101.0, format!("{m} is not mounted")));
        }
        for d in &disks {
            if let Some(pct) = d.used_pct() {
                let s = self.space.classify(pct);
                if s != CheckStatus::Ok {
                    let limit = if s == CheckStatus::Crit {
                        self.space.crit
                    } else {
                        self.space.warn
                    };
                    problems.push((
                        s,
                        pct,
                        format!("{} is {}% full (≥ {limit}%)", d.mount, round1(pct)),
                    ));
                }
                worst = worst.worst(s);
            }
            if let Some(pct) = d.inodes_used_pct() {
                let s = self.inodes.classify(pct);
                if s != CheckStatus::Ok {
                    let limit = if s == CheckStatus::Crit {
                        self.inodes.crit
                    } else {
                        self.inodes.warn
                    };
                    problems.push((
                        s,
                        pct,
                        format!(
                            "{} uses {}% of its inodes (≥ {limit}%)",
                            d.mount,
                            round1(pct)
                        ),
                    ));
                }
                worst = worst.worst(s);
            }
        }
        vaultmesh_agent_core::sort::sort_by(&mut problems, |a, b| {
            b.0.severity()
                .cmp(&a.0.severity())
                .then(b.1.total_cmp(&a.1))
        });
        let summary = if problems.is_empty() {
            match disks
                .iter()
                .filter_map(|d| Some((d, d.used_pct()?)))
                .max_by(|a, b| a.1.total_cmp(&b.1))
            {
                Some((d, pct)) => format!(
                    "{} filesystem{}, fullest {} at {}%",
                    disks.len(),
                    if disks.len() == 1 { "" } else { "s" },
                    d.mount,
                    round1(pct)
                ),
                None => "no filesystems to check".to_string(),
            }
        } else {
            problems
                .iter()
                .map(|p| p.2.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        };
        let mut out = CheckOutcome::new(worst, summary);
        if let Some(max) = disks
            .iter()
            .filter_map(DiskUsage::used_pct)
            .max_by(f64::total_cmp)
        {
            out = out.with_metric("max_used_pct", round1(max));
        }
        if let Some(max) = disks
            .iter()
            .filter_map(DiskUsage::inodes_used_pct)
            .max_by(f64::total_cmp)
        {
            out = out.with_metric("max_inodes_used_pct", round1(max));
        }
        out.with_metric("filesystems", disks.len() as f64)
            .contributing(Contribution::metrics(Metrics {
                disks,
                ..Metrics::default()
            }))
    }
}

/// One filesystem seen through several mount points (bind mounts, and the private `/tmp`,
/// `/var/tmp` and state directory a hardened systemd unit gets) is reported once, under its
/// shortest mount point. `measured` pairs each usage with the mount's device number.
fn dedup_by_device(mut measured: Vec<(DiskUsage, u64)>) -> Vec<DiskUsage> {
    vaultmesh_agent_core::sort::sort_by(&mut measured, |a, b| {
        a.0.mount
            .len()
            .cmp(&b.0.mount.len())
            .then(a.0.mount.cmp(&b.0.mount))
    });
    let mut seen = BTreeSet::new();
    let mut out: Vec<DiskUsage> = measured
        .into_iter()
        .filter(|(_, dev)| seen.insert(*dev))
        .map(|(d, _)| d)
        .collect();
    vaultmesh_agent_core::sort::sort_by(&mut out, |a, b| a.mount.cmp(&b.mount));
    out
}

/// `statvfs` of one mount, as `df` computes it, with the mount's device number. `None` if the
/// mount cannot be read.
fn measure(mount: &str, fs: &str) -> Option<(DiskUsage, u64)> {
    let dev = rustix::fs::stat(mount).ok()?.st_dev;
    let st = rustix::fs::statvfs(PathBuf::from(mount)).ok()?;
    let frsize = if st.f_frsize > 0 {
        st.f_frsize
    } else {
        st.f_bsize
    };
    let used_blocks = st.f_blocks.saturating_sub(st.f_bfree);
    let used = used_blocks.saturating_mul(frsize);
    // df's denominator: what is used plus what an unprivileged user could still write.
    let total = used.saturating_add(st.f_bavail.saturating_mul(frsize));
    if st.f_blocks == 0 {
        return None;
    }
    let (inodes_total, inodes_used) = if st.f_files > 0 {
        (
            Some(st.f_files),
            Some(st.f_files.saturating_sub(st.f_ffree)),
        )
    } else {
        (None, None)
    };
    let usage = DiskUsage {
        mount: mount.to_string(),
        fs: fs.to_string(),
        total_bytes: total,
        used_bytes: used,
        inodes_total,
        inodes_used,
    };
    Some((usage, dev))
}

#[async_trait]
impl Check for Disk {
    async fn run(&self, _ctx: &CheckContext) -> CheckOutcome {
        // Reading the mount table never touches the mounts themselves.
        let selected = match self.mounts.get(|table| self.select(table)) {
            Ok(selected) => selected,
            Err(e) => return CheckOutcome::unknown(e),
        };
        let missing: Vec<String> = self
            .only
            .iter()
            .filter(|m| !selected.iter().any(|s| s.mount == **m))
            .cloned()
            .collect();
        // A local disk's filesystem answers `statvfs` from memory: measured right here. Any
        // other (a network or FUSE mount, which can hang) is measured on a blocking thread.
        let (local, remote): (Vec<_>, Vec<_>) = selected.into_iter().partition(|s| s.inline);
        let mut measured: Vec<(DiskUsage, u64)> = local
            .iter()
            .filter_map(|s| measure(&s.mount, &s.fs))
            .collect();
        if !remote.is_empty() {
            let far = tokio::task::spawn_blocking(move || {
                remote
                    .iter()
                    .filter_map(|s| measure(&s.mount, &s.fs))
                    .collect::<Vec<_>>()
            })
            .await;
            match far {
                Ok(far) => measured.extend(far),
                Err(e) => return CheckOutcome::unknown(format!("statvfs failed: {e}")),
            }
        }
        self.evaluate(dedup_by_device(measured), &missing)
    }
}

inventory::submit! {
    CheckRegistration {
        name: "disk",
        description: "Space and inodes used per mounted filesystem (pseudo filesystems skipped)",
        enabled_by_default: true,
        default_interval: Duration::from_secs(60),
        default_timeout: Duration::from_secs(10),
        example: r#"warn_pct = 85.0
crit_pct = 95.0
inodes_warn_pct = 85.0
inodes_crit_pct = 95.0
ignore_fs = []          # extra filesystem types to skip
ignore_mounts = []      # e.g. ["/boot/efi"]
mounts = []             # if set, check only these (a missing one is crit)
"#,
        build: |t| Ok(Box::new(Disk::new(parse_table(t)?)?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk(mount: &str, total: u64, used: u64, inodes: Option<(u64, u64)>) -> DiskUsage {
        DiskUsage {
            mount: mount.into(),
            fs: "ext4".into(),
            total_bytes: total,
            used_bytes: used,
            inodes_total: inodes.map(|i| i.0),
            inodes_used: inodes.map(|i| i.1),
        }
    }

    fn check(disks: &[DiskUsage], missing: &[&str], want: CheckStatus, summary: &str) {
        let d = Disk::new(DiskConfig::default()).unwrap();
        let missing: Vec<String> = missing.iter().map(|s| s.to_string()).collect();
        let out = d.evaluate(disks.to_vec(), &missing);
        assert_eq!(out.status, want, "{}", out.summary);
        assert_eq!(out.summary, summary);
    }

    #[test]
    fn verdicts() {
        check(&[], &[], CheckStatus::Ok, "no filesystems to check");
        check(
            &[
                disk("/", 100, 42, Some((10, 1))),
                disk("/srv", 100, 10, None),
            ],
            &[],
            CheckStatus::Ok,
            "2 filesystems, fullest / at 42%",
        );
        check(
            &[disk("/", 100, 85, None)],
            &[],
            CheckStatus::Warn,
            "/ is 85% full (≥ 85%)",
        );
        check(
            &[disk("/", 100, 90, None), disk("/var", 1000, 999, None)],
            &[],
            CheckStatus::Crit,
            "/var is 99.9% full (≥ 95%); / is 90% full (≥ 85%)",
        );
        check(
            &[disk("/", 100, 1, Some((100, 96)))],
            &[],
            CheckStatus::Crit,
            "/ uses 96% of its inodes (≥ 95%)",
        );
        check(
            &[disk("/", 100, 1, None)],
            &["/data"],
            CheckStatus::Crit,
            "/data is not mounted",
        );
    }

    #[test]
    fn selection_skips_pseudo_and_ignored_and_dedups() {
        let d = Disk::new(DiskConfig {
            ignore_mounts: vec!["/boot/efi".into()],
            ignore_fs: vec!["vfat".into()],
            ..DiskConfig::default()
        })
        .unwrap();
        let mounts = [
            ("/", "ext4"),
            ("/proc", "proc"),
            ("/run", "tmpfs"),
            ("/snap/x", "squashfs"),
            ("/boot/efi", "ext4"),
            ("/media", "vfat"),
            ("/", "ext4"),
            ("/srv", "xfs"),
        ];
        let got = d.select(
            mounts
                .iter()
                .map(|(m, f)| (m.to_string(), f.to_string()))
                .collect(),
        );
        let names: Vec<_> = got.iter().map(|s| s.mount.as_str()).collect();
        assert_eq!(names, ["/", "/srv"]);
    }

    #[test]
    fn bad_config_names_the_key() {
        let t: toml::Table = toml::from_str("warn_pct = 99\ncrit_pct = 90").unwrap();
        let err = Disk::new(parse_table(&t).unwrap()).unwrap_err();
        assert_eq!(err.key, "warn_pct");
        let t: toml::Table = toml::from_str("crit_pct = 120").unwrap();
        assert_eq!(
            Disk::new(parse_table(&t).unwrap()).unwrap_err().key,
            "crit_pct"
        );
        let t: toml::Table = toml::from_str("warn = 1").unwrap();
        assert_eq!(parse_table::<DiskConfig>(&t).unwrap_err().key, "warn");
        let t: toml::Table = toml::from_str("warn_pct = \"high\"").unwrap();
        assert_eq!(parse_table::<DiskConfig>(&t).unwrap_err().key, "warn_pct");
    }

    #[test]
    fn only_local_disks_reached_through_local_mounts_are_measured_on_the_agents_own_thread() {
        let d = Disk::new(DiskConfig::default()).unwrap();
        let table = |rows: &[(&str, &str)]| {
            d.select(
                rows.iter()
                    .map(|(m, f)| (m.to_string(), f.to_string()))
                    .collect(),
            )
            .into_iter()
            .map(|s| (s.mount, s.fs, s.inline))
            .collect::<Vec<_>>()
        };
        let row = |m: &str, f: &str, inline: bool| (m.to_string(), f.to_string(), inline);
        assert_eq!(
            table(&[
                ("/", "ext4"),
                ("/run", "tmpfs"),
                ("/run/media/usb", "vfat"),
                ("/srv", "xfs"),
                ("/home", "btrfs"),
                ("/tank", "zfs"),
            ]),
            [
                row("/", "ext4", true),
                row("/run/media/usb", "vfat", true),
                row("/srv", "xfs", true),
                row("/home", "btrfs", true),
                row("/tank", "zfs", false),
            ]
        );
        // Network and user-space filesystems can hang statvfs: a blocking thread's.
        for fs in [
            "nfs",
            "nfs4",
            "cifs",
            "smb3",
            "ceph",
            "glusterfs",
            "9p",
            "virtiofs",
            "fuse",
            "fuse.sshfs",
            "fuseblk",
            "overlay",
            "afs",
            "lustre",
            "zfs",
        ] {
            assert_eq!(
                table(&[("/", "ext4"), ("/m", fs)]),
                [row("/", "ext4", true), row("/m", fs, false)],
                "{fs}"
            );
        }
        // A local disk under a network mount, and one hidden under a network mount on the same
        // mount point (the path reaches the network one, mounted last: that is what is measured).
        assert_eq!(
            table(&[
                ("/", "ext4"),
                ("/net", "nfs4"),
                ("/net/scratch", "ext4"),
                ("/data", "ext4"),
                ("/data", "nfs")
            ]),
            [
                row("/", "ext4", true),
                row("/net", "nfs4", false),
                row("/net/scratch", "ext4", false),
                row("/data", "nfs", false),
            ]
        );
        // A network root: nothing under it is measured on the agent's thread.
        assert_eq!(
            table(&[("/", "nfs"), ("/boot", "ext4")]),
            [row("/", "nfs", false), row("/boot", "ext4", false)]
        );
        // Path components, not string prefixes: /srv2 is not under /srv.
        assert_eq!(
            table(&[("/", "ext4"), ("/srv", "cifs"), ("/srv2", "xfs")]),
            [
                row("/", "ext4", true),
                row("/srv", "cifs", false),
                row("/srv2", "xfs", true)
            ]
        );
    }

    #[test]
    fn one_filesystem_under_several_mounts_is_reported_once() {
        let m = vec![
            (disk("/var/lib/vaultmesh/agent", 100, 10, None), 1),
            (disk("/tmp", 100, 10, None), 1),
            (disk("/", 100, 10, None), 1),
            (disk("/srv", 50, 5, None), 2),
        ];
        let mounts: Vec<String> = dedup_by_device(m).into_iter().map(|d| d.mount).collect();
        assert_eq!(mounts, ["/", "/srv"]);
    }

    #[test]
    fn measures_the_root_filesystem_for_real() {
        let (d, _dev) = measure("/", "test").expect("statvfs /");
        assert!(d.total_bytes > 0 && d.used_bytes <= d.total_bytes);
    }
}
