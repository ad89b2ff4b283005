//! The few `/proc` and `/sys` files the checks read, parsed directly (no library state). The
//! files are kept open and read again from their start ([`Kept`]); the mount table only when it
//! changed ([`MountTable`]).
//!
//! The parsers take the file's text so tests can feed them fixtures.

/// Memory figures from `/proc/meminfo`, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemInfo {
    pub total: u64,
    /// `MemAvailable` (what the kernel estimates can be allocated without swapping).
    pub available: u64,
    pub swap_total: u64,
    pub swap_free: u64,
}

/// Parses `/proc/meminfo` (`Key:   123 kB` lines).
pub fn parse_meminfo(text: &str) -> Result<MemInfo, String> {
    let field = |name: &str| -> Result<u64, String> {
        text.lines()
            .find_map(|l| {
                let rest = l.strip_prefix(name)?.strip_prefix(':')?;
                let mut parts = rest.split_whitespace();
                let n: u64 = parts.next()?.parse().ok()?;
                Some(match parts.next() {
                    Some("kB") => n * 1024,
                    _ => n,
                })
            })
            .ok_or_else(|| format!("/proc/meminfo has no {name} line"))
    };
    Ok(MemInfo {
        total: field("MemTotal")?,
        available: field("MemAvailable")?,
        swap_total: field("SwapTotal")?,
        swap_free: field("SwapFree")?,
    })
}

/// Parses the first three fields of `/proc/loadavg`.
pub fn parse_loadavg(text: &str) -> Result<[f64; 3], String> {
    let mut it = text.split_whitespace().map(str::parse::<f64>);
    match (it.next(), it.next(), it.next()) {
        (Some(Ok(a)), Some(Ok(b)), Some(Ok(c))) => Ok([a, b, c]),
        _ => Err(format!(
            "/proc/loadavg is not three numbers: {:?}",
            text.trim()
        )),
    }
}

/// Counts the CPUs in a kernel CPU list such as `/sys/devices/system/cpu/online` (`0-3,8,10-11`).
pub fn parse_cpu_list(text: &str) -> Result<u32, String> {
    let bad = || format!("not a CPU list: {:?}", text.trim());
    let mut n = 0u32;
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u32, u32) =
                    (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
                n += b.checked_sub(a).ok_or_else(bad)? + 1;
            }
            None => {
                part.parse::<u32>().map_err(|_| bad())?;
                n += 1;
            }
        }
    }
    if n == 0 { Err(bad()) } else { Ok(n) }
}

/// Mount points and filesystem types from `/proc/self/mounts` (octal escapes such as `\040`
/// for a space decoded).
pub fn parse_mounts(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_dev, mount, fs) = (f.next()?, f.next()?, f.next()?);
            Some((unescape(mount), fs.to_string()))
        })
        .collect()
}

/// Decodes the kernel's `\ooo` escapes in mount fields.
fn unescape(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && (b'0'..=b'3').contains(&b[i + 1])
            && b[i + 2..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = u16::from(b[i + 1] - b'0') * 64
                + u16::from(b[i + 2] - b'0') * 8
                + u16::from(b[i + 3] - b'0');
            out.push(u8::try_from(v).unwrap_or(b'?'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub use vaultmesh_agent_core::procfile::Kept;

/// `/proc/self/mounts`, kept open and read again only when the kernel says the mount table
/// changed: any mount or unmount in this mount namespace since the last look marks the open
/// file with `POLLPRI`, which one `poll` asks (and clears), where reading the table makes the
/// kernel format every mount with its options (the largest cost of the disk check's run,
/// found with `perf`). What a read derives from the table (`derive`) is kept with it.
#[cfg(feature = "disk")]
#[derive(Debug)]
pub struct MountTable<T> {
    path: std::path::PathBuf,
    kept: std::sync::Mutex<Option<(std::fs::File, T)>>,
}

#[cfg(feature = "disk")]
impl<T: Clone> MountTable<T> {
    pub fn new(path: impl Into<std::path::PathBuf>) -> Self {
        MountTable {
            path: path.into(),
            kept: std::sync::Mutex::new(None),
        }
    }

    /// What `derive` made of the table when it last changed; reads and derives again when it
    /// has changed since (or was never read, or its last read failed).
    pub fn get(&self, derive: impl FnOnce(Vec<(String, String)>) -> T) -> Result<T, String> {
        use rustix::event::{PollFd, PollFlags, poll};
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((file, derived)) = &*kept {
            let mut fds = [PollFd::new(file, PollFlags::PRI)];
            let now = rustix::event::Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            if poll(&mut fds, Some(&now)).is_ok() && !fds[0].revents().contains(PollFlags::PRI) {
                return Ok(derived.clone());
            }
        }
        let file = match kept.take() {
            Some((file, _)) => file,
            None => std::fs::File::open(&self.path)
                .map_err(|e| format!("cannot read {}: {e}", self.path.display()))?,
        };
        let text = vaultmesh_agent_core::procfile::read_text(&file, &self.path)?;
        let derived = derive(parse_mounts(&text));
        *kept = Some((file, derived.clone()));
        Ok(derived)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The mount table is read again after a mount or an unmount, and only then. Runs in a
    /// mount namespace of its own (the test binary again, under `unshare`), so the machine's
    /// table is untouched and no root is needed.
    #[cfg(feature = "disk")]
    #[test]
    fn the_mount_table_is_read_again_only_when_a_mount_changes_it() {
        const NAME: &str =
            "procfs::tests::the_mount_table_is_read_again_only_when_a_mount_changes_it";
        if std::env::var_os("VAULTMESH_MOUNT_TABLE_CHILD").is_none() {
            let out = std::process::Command::new("unshare")
                .args([
                    "--user",
                    "--map-root-user",
                    "--mount",
                    "--propagation",
                    "private",
                ])
                .arg(std::env::current_exe().unwrap())
                .args(["--exact", NAME, "--nocapture", "--test-threads", "1"])
                .env("VAULTMESH_MOUNT_TABLE_CHILD", "1")
                .output()
                .expect("this test runs itself under unshare (util-linux)");
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success() && stdout.contains("1 passed"),
                "the test in a mount namespace of its own (it needs user and mount namespaces, \
                 `unshare --user --map-root-user --mount`, and `mount`):\n{stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            return;
        }
        let reads = std::cell::Cell::new(0);
        let mounts = |table: Vec<(String, String)>| {
            reads.set(reads.get() + 1);
            table
                .into_iter()
                .map(|(mount, _)| mount)
                .collect::<Vec<_>>()
        };
        let table = MountTable::new("/proc/self/mounts");
        let dir = tempfile::tempdir().unwrap();
        let at = dir.path().to_str().unwrap().to_string();
        assert!(!table.get(&mounts).unwrap().contains(&at));
        assert_eq!(table.get(&mounts).unwrap(), table.get(&mounts).unwrap());
        assert_eq!(reads.get(), 1, "nothing changed: not read again");
        let run = |args: &[&str]| {
            let status = std::process::Command::new(args[0])
                .args(&args[1..])
                .status();
            assert!(status.unwrap().success(), "{args:?}");
        };
        run(&["mount", "-t", "tmpfs", "tmpfs", &at]);
        assert!(table.get(&mounts).unwrap().contains(&at));
        assert_eq!(reads.get(), 2, "read again after the mount");
        table.get(&mounts).unwrap();
        assert_eq!(reads.get(), 2);
        run(&["umount", &at]);
        assert!(!table.get(&mounts).unwrap().contains(&at));
        assert_eq!(reads.get(), 3, "read again after the unmount");
    }

    #[test]
    fn meminfo() {
        let text = "MemTotal:        8041216 kB\nMemFree:          512000 kB\nMemAvailable:    6021120 kB\nBuffers: 1 kB\nSwapTotal:       2097148 kB\nSwapFree:        2000000 kB\n";
        assert_eq!(
            parse_meminfo(text).unwrap(),
            MemInfo {
                total: 8041216 * 1024,
                available: 6021120 * 1024,
                swap_total: 2097148 * 1024,
                swap_free: 2000000 * 1024,
            }
        );
        assert!(
            parse_meminfo("MemTotal: 1 kB\n")
                .unwrap_err()
                .contains("no MemAvailable")
        );
    }

    #[test]
    fn loadavg() {
        assert_eq!(
            parse_loadavg("0.42 0.31 0.22 1/234 5678\n").unwrap(),
            [0.42, 0.31, 0.22]
        );
        assert!(parse_loadavg("x y z").is_err());
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-3\n").unwrap(), 4);
        assert_eq!(parse_cpu_list("0-3,8,10-11").unwrap(), 7);
        assert_eq!(parse_cpu_list("0").unwrap(), 1);
        assert!(parse_cpu_list("").is_err());
        assert!(parse_cpu_list("3-1").is_err());
    }

    #[test]
    fn mounts_with_escapes() {
        let text = "/dev/vda / ext4 rw,relatime 0 0\nproc /proc proc rw 0 0\n/dev/sdb1 /mnt/my\\040disk vfat rw 0 0\n";
        assert_eq!(
            parse_mounts(text),
            [
                ("/".to_string(), "ext4".to_string()),
                ("/proc".into(), "proc".into()),
                ("/mnt/my disk".into(), "vfat".into())
            ]
        );
        assert_eq!(unescape("a\\134b"), "a\\b");
        assert_eq!(unescape("trailing\\04"), "trailing\\04");
        assert_eq!(unescape("\\777"), "\\777", "not a byte: left as it is");
    }
}
