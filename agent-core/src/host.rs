//! Facts about the host the agent needs for every heartbeat, read straight from the kernel and
//! `/etc` (no check owns them).

use std::path::Path;

/// The kernel's hostname, or `None` when it cannot be read.
pub fn hostname() -> Option<String> {
    read_trimmed(Path::new("/proc/sys/kernel/hostname"))
        .or_else(|| read_trimmed(Path::new("/etc/hostname")))
}

/// Seconds since boot: `CLOCK_BOOTTIME`, the clock `/proc/uptime` shows (suspended time
/// included), read without a system call or a file.
pub fn uptime_s() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    u64::try_from(now.tv_sec).unwrap_or(0)
}

pub use vaultmesh_proto::heartbeat::PROFILES;

/// A VaultMesh OS profile guessed from `/etc/os-release` (`ArchVault`, `DebianVault`), used when
/// `VAULTMESH_OS_PROFILE` is not set.
pub fn detect_profile() -> String {
    let text = std::fs::read_to_string("/etc/os-release")
        .or_else(|_| std::fs::read_to_string("/usr/lib/os-release"))
        .unwrap_or_default();
    profile_from_os_release(&text)
}

fn profile_from_os_release(text: &str) -> String {
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .map(|v| v.trim().trim_matches('"').to_ascii_lowercase())
            .unwrap_or_default()
    };
    let id = field("ID");
    let like = field("ID_LIKE");
    let is = |name: &str| id == name || like.split_whitespace().any(|l| l == name);
    let [arch, debian, generic] = PROFILES;
    if is("arch") {
        arch.into()
    } else if is("debian") {
        debian.into()
    } else {
        generic.into()
    }
}

fn read_trimmed(path: &Path) -> Option<String> {
    let s = std::fs::read_to_string(path).ok()?;
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The heartbeat's uptime is the kernel's, as `/proc/uptime` shows it.
    #[test]
    fn uptime_is_the_kernels() {
        let before = uptime_s();
        let text = std::fs::read_to_string("/proc/uptime").unwrap();
        let proc: f64 = text.split(' ').next().unwrap().parse().unwrap();
        let after = uptime_s();
        assert!(
            (before as f64 - 1.0..=after as f64 + 1.0).contains(&proc),
            "{before} ≤ {proc} ≤ {after}"
        );
    }

    #[test]
    fn profiles_from_os_release() {
        assert_eq!(profile_from_os_release("ID=arch\n"), "ArchVault");
        assert_eq!(
            profile_from_os_release("NAME=\"Debian\"\nID=debian\n"),
            "DebianVault"
        );
        assert_eq!(
            profile_from_os_release("ID=ubuntu\nID_LIKE=debian\n"),
            "DebianVault"
        );
        assert_eq!(
            profile_from_os_release("ID=endeavouros\nID_LIKE=\"arch\"\n"),
            "ArchVault"
        );
        assert_eq!(profile_from_os_release("ID=fedora\n"), "Generic");
        assert_eq!(profile_from_os_release(""), "Generic");
    }
}
