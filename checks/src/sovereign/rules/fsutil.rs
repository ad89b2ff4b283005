//! Filesystem helpers the rules share: hashing with a size cap and a bounded walk.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::sovereign::rule::{RuleError, ScanContext};

/// Largest file hashed; bigger files are reported by size instead.
pub const HASH_MAX_BYTES: u64 = 256 * 1024 * 1024;

/// How [`sha256_file`] treats a symlink at the path itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Symlinks {
    /// Hash what it points to (configuration files that are legitimately links).
    Follow,
    /// Refuse it (files found in directories others may write to).
    Refuse,
}

/// Lowercase hex SHA-256 of the regular file at `path`, streaming; `Ok(None)` if it is larger
/// than [`HASH_MAX_BYTES`].
///
/// Safe against what a local user may plant: the file is opened non-blocking (a FIFO cannot
/// hang the scan), must be a regular file once open (no devices, FIFOs or sockets), and with
/// [`Symlinks::Refuse`] a symlink is refused rather than followed. Reading stops with an error
/// at `deadline`.
pub fn sha256_file(
    path: &Path,
    symlinks: Symlinks,
    deadline: std::time::Instant,
) -> std::io::Result<Option<String>> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut flags = rustix::fs::OFlags::NONBLOCK.bits() | rustix::fs::OFlags::CLOEXEC.bits();
    if symlinks == Symlinks::Refuse {
        flags |= rustix::fs::OFlags::NOFOLLOW.bits();
    }
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags as i32)
        .open(path)?;
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    if meta.len() > HASH_MAX_BYTES {
        return Ok(None);
    }
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        if std::time::Instant::now() >= deadline {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "time budget spent while hashing",
            ));
        }
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        total += n as u64;
        if total > HASH_MAX_BYTES {
            return Ok(None);
        }
        hasher.update(&buf[..n]);
    }
    Ok(Some(hex::encode(hasher.finalize())))
}

/// Walks `dir` (a host path) without following symlinks or crossing filesystems, calling
/// `visit` for every entry. Stops with an error at the deadline or after `ctx.max_files`
/// entries; unreadable entries are skipped and counted.
pub fn walk(
    ctx: &ScanContext,
    dir: &Path,
    mut visit: impl FnMut(&Path, &std::fs::Metadata),
) -> Result<WalkStats, RuleError> {
    let mut stats = WalkStats::default();
    for entry in walkdir::WalkDir::new(dir)
        .follow_links(false)
        .same_file_system(true)
    {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                // The root itself missing is reported by the caller; deeper errors are skipped.
                if e.depth() == 0 {
                    return Err(RuleError::new(format!("{}: {}", dir.display(), e)));
                }
                stats.unreadable += 1;
                continue;
            }
        };
        stats.visited += 1;
        if stats.visited > ctx.max_files {
            return Err(RuleError::new(format!(
                "{}: stopped after {} entries (max_files); results are partial",
                ctx.node_path(dir),
                ctx.max_files
            )));
        }
        if stats.visited % 1024 == 0 {
            ctx.check_deadline()?;
        }
        match entry.metadata() {
            Ok(m) => visit(entry.path(), &m),
            Err(_) => stats.unreadable += 1,
        }
    }
    Ok(stats)
}

/// What a walk saw.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WalkStats {
    pub visited: usize,
    pub unreadable: usize,
}

/// Resolves user and group names under the scan root (`/etc/passwd`, `/etc/group`).
#[derive(Debug, Default, Clone)]
pub struct Names {
    users: Vec<(String, u32)>,
    groups: Vec<(String, u32)>,
}

impl Names {
    pub fn load(ctx: &ScanContext) -> Names {
        let read = |p: &str| -> Vec<(String, u32)> {
            std::fs::read_to_string(ctx.path(p))
                .unwrap_or_default()
                .lines()
                .filter_map(|l| {
                    let mut it = l.split(':');
                    let name = it.next()?.to_string();
                    let id = it.nth(1)?.parse().ok()?;
                    Some((name, id))
                })
                .collect()
        };
        Names {
            users: read("/etc/passwd"),
            groups: read("/etc/group"),
        }
    }

    pub fn user(&self, uid: u32) -> String {
        self.users
            .iter()
            .find(|(_, id)| *id == uid)
            .map_or_else(|| uid.to_string(), |(n, _)| n.clone())
    }

    pub fn group(&self, gid: u32) -> String {
        self.groups
            .iter()
            .find(|(_, id)| *id == gid)
            .map_or_else(|| gid.to_string(), |(n, _)| n.clone())
    }

    /// The uid of `name`, or `name` parsed as a number.
    pub fn uid(&self, name: &str) -> Option<u32> {
        name.parse().ok().or_else(|| {
            self.users
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, id)| *id)
        })
    }
}

/// `path` joined under the scan root, for a list of node paths.
pub fn under_root(ctx: &ScanContext, paths: &[String]) -> Vec<(String, PathBuf)> {
    paths.iter().map(|p| (p.clone(), ctx.path(p))).collect()
}

/// `s` made safe as a fact key or inside a title: every control character (newline and tab
/// too, which the Command Center refuses there) becomes `?`, and it is cut to
/// [`vaultmesh_proto::scan::limits::NAME_MAX`] bytes. File names are chosen by whoever creates
/// them, so a path must pass through this before it becomes a key or a title.
pub fn safe_name(s: &str) -> String {
    let s: String = s
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    crate::sovereign::rule::clip(s, vaultmesh_proto::scan::limits::NAME_MAX)
}

/// `mode`'s permission bits (set-uid, set-gid, sticky, rwx) as four octal digits: `0755`.
pub fn octal_mode(mode: u32) -> String {
    format!("{:04o}", mode & 0o7777)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    #[test]
    fn hashing_refuses_fifos_devices_and_when_asked_symlinks_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "abc").unwrap();
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(
            sha256_file(&file, Symlinks::Refuse, soon())
                .unwrap()
                .unwrap(),
            abc
        );
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert!(sha256_file(&link, Symlinks::Refuse, soon()).is_err());
        assert_eq!(
            sha256_file(&link, Symlinks::Follow, soon())
                .unwrap()
                .unwrap(),
            abc
        );
        // A FIFO with no writer would block a plain open forever.
        let fifo = dir.path().join("fifo");
        let ok = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mkfifo");
        let t0 = Instant::now();
        let e = sha256_file(&fifo, Symlinks::Follow, soon()).unwrap_err();
        assert!(t0.elapsed() < Duration::from_secs(1));
        assert!(e.to_string().contains("not a regular file"), "{e}");
        assert!(sha256_file(Path::new("/dev/zero"), Symlinks::Follow, soon()).is_err());
        // A spent budget stops the read.
        assert_eq!(
            sha256_file(&file, Symlinks::Follow, Instant::now())
                .unwrap_err()
                .kind(),
            std::io::ErrorKind::TimedOut
        );
    }
}
