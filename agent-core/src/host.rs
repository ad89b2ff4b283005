//! Facts about the host the agent needs for every heartbeat, read straight from `/proc` and
//! `/etc` (no check owns them).

use std::path::Path;

/// The kernel's hostname, or `None` when it cannot be read.
pub fn hostname() -> Option<String> {
    read_trimmed(Path::new("/proc/sys/kernel/hostname"))
        .or_else(|| read_trimmed(Path::new("/etc/hostname")))
}

/// Seconds since boot, from `/proc/uptime` (kept open: the heartbeat reads it every time).
/// The file, not `CLOCK_BOOTTIME`: in a container under lxcfs the file is the container's.
pub fn uptime_s(uptime: &crate::procfile::Kept) -> Option<u64> {
    parse_uptime(&uptime.read().ok()?)
}

fn parse_uptime(text: &str) -> Option<u64> {
    let first = text.split_whitespace().next()?;
    first
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| s as u64)
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

    #[test]
    fn uptime_parsing() {
        assert_eq!(parse_uptime("12345.67 2345.12\n"), Some(12345));
        assert_eq!(parse_uptime(""), None);
        assert_eq!(parse_uptime("nan 1"), None);
        let kept = crate::procfile::Kept::new("/proc/uptime");
        assert!(uptime_s(&kept).is_some_and(|s| s > 0));
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
