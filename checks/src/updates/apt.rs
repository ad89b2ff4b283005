//! Debian and Ubuntu: installed packages from dpkg's status file against the versions apt's
//! downloaded lists offer, read as files (no `apt`, no network).
//!
//! - Installed: the stanzas of `/var/lib/dpkg/status` whose `Status` ends in `installed`.
//! - Offered: every `/var/lib/apt/lists/*_Packages` (and `.gz`, `.lz4`); a package is pending
//!   when a list offers a higher version ([`super::version::deb_cmp`]) for the same name and
//!   architecture. Lists of a suite whose `Release`/`InRelease` says `NotAutomatic: yes`
//!   (backports, experimental) are skipped, as apt does not upgrade from them by default.
//! - Security: a pending package one of whose higher versions comes from a list of a
//!   `*-security` suite (the file name holds `_dists_<codename>-security_`, also Ubuntu's
//!   `-apps-security`, `-infra-security`) or of a `debian-security` archive (Debian 10's
//!   `<codename>/updates`).
//!
//! Pins and priorities are not read: a pinned-back package counts as pending.

use std::collections::HashMap;
use std::io::BufRead;
use std::path::Path;

use super::{Budget, LINE_MAX, Scan, bounded_line, open_list};
use crate::updates::version::deb_cmp;

/// What one list offers for an installed package.
#[derive(Debug, Default, Clone)]
struct Offer {
    newer: bool,
    security: bool,
}

/// `(name, arch) → installed version`, from dpkg's status file.
pub(super) fn installed(
    text: impl BufRead,
    budget: &Budget,
    scan: &mut Scan,
) -> Result<HashMap<(String, String), String>, String> {
    let mut out = HashMap::new();
    stanzas(text, budget, scan, |f| {
        let (Some(name), Some(arch), Some(version), Some(status)) =
            (f.package, f.architecture, f.version, f.status)
        else {
            return false;
        };
        if status.split_whitespace().nth(2) == Some("installed") {
            out.insert((name, arch), version);
        }
        true
    })?;
    Ok(out)
}

/// The fields of one stanza the check needs.
#[derive(Debug, Default)]
struct Fields {
    package: Option<String>,
    architecture: Option<String>,
    version: Option<String>,
    status: Option<String>,
}

/// Calls `each` for every stanza (blank-line separated `Field: value` blocks); `each` says
/// whether the stanza had what it needed (a stanza that did not counts as malformed).
fn stanzas(
    mut r: impl BufRead,
    budget: &Budget,
    scan: &mut Scan,
    mut each: impl FnMut(Fields) -> bool,
) -> Result<(), String> {
    let mut buf = Vec::with_capacity(256);
    let mut cur = Fields::default();
    let mut any = false;
    let mut lines = 0u64;
    loop {
        let more = bounded_line(&mut r, &mut buf, LINE_MAX).map_err(|e| e.to_string())?;
        lines += 1;
        if lines.is_multiple_of(4096) {
            budget.check()?;
        }
        let mut line: &[u8] = &buf;
        while let [rest @ .., b'\n' | b'\r'] = line {
            line = rest;
        }
        if line.is_empty() {
            if any && !each(std::mem::take(&mut cur)) {
                scan.malformed += 1;
            }
            any = false;
            if !more {
                return Ok(());
            }
            continue;
        }
        any = true;
        if line.starts_with(b" ") || line.starts_with(b"\t") {
            continue; // a continuation line (Description, Conffiles, ...)
        }
        // Only the four fields the check needs are decoded; every other line is skipped as bytes.
        let field = |name: &[u8]| {
            line.strip_prefix(name)
                .and_then(|r| r.strip_prefix(b":"))
                .map(|v| String::from_utf8_lossy(v).trim().to_string())
        };
        match line.first() {
            Some(b'P') => cur.package = field(b"Package").or(cur.package.take()),
            Some(b'A') => cur.architecture = field(b"Architecture").or(cur.architecture.take()),
            Some(b'V') => cur.version = field(b"Version").or(cur.version.take()),
            Some(b'S') => cur.status = field(b"Status").or(cur.status.take()),
            _ => {}
        }
        if !more {
            if !each(std::mem::take(&mut cur)) {
                scan.malformed += 1;
            }
            return Ok(());
        }
    }
}

/// Whether a list file belongs to a security suite (the rule in the module docs).
pub(super) fn is_security_list(file_name: &str) -> bool {
    let suite = file_name
        .split_once("_dists_")
        .map_or("", |(_, rest)| rest.split('_').next().unwrap_or(""));
    suite.ends_with("-security") || file_name.contains("_debian-security_")
}

/// The `Release`/`InRelease` of a list's suite says apt does not upgrade from it by default.
fn not_automatic(lists: &Path, file_name: &str) -> bool {
    let Some((prefix, rest)) = file_name.split_once("_dists_") else {
        return false;
    };
    let suite = rest.split('_').next().unwrap_or("");
    ["InRelease", "Release"].iter().any(|r| {
        let p = lists.join(format!("{prefix}_dists_{suite}_{r}"));
        crate::untrusted::read_prefix(&p, 64 * 1024).is_ok_and(|(t, _)| {
            t.lines()
                .take_while(|l| !l.starts_with("-----BEGIN PGP SIGNATURE"))
                .any(|l| l.trim().eq_ignore_ascii_case("NotAutomatic: yes"))
        })
    })
}

/// Reads the node's apt state under `root`.
pub(super) fn read(root: &Path, budget: &Budget) -> Result<Scan, String> {
    let mut scan = Scan::new("apt");
    let status = root.join("var/lib/dpkg/status");
    let f = std::fs::File::open(&status)
        .map_err(|e| format!("cannot read {}: {e}", status.display()))?;
    let installed = installed(
        std::io::BufReader::new(std::io::Read::take(f, super::FILE_MAX)),
        budget,
        &mut scan,
    )?;
    let lists = root.join("var/lib/apt/lists");
    let mut names: Vec<String> = std::fs::read_dir(&lists)
        .map(|d| {
            d.take(super::LISTS_MAX)
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with("_Packages") || n.contains("_Packages."))
                .collect()
        })
        .unwrap_or_default();
    vaultmesh_agent_core::sort::sort(&mut names);
    let mut offers: HashMap<(String, String), Offer> = HashMap::new();
    for name in names {
        budget.check()?;
        if !["_Packages", "_Packages.gz", "_Packages.lz4"]
            .iter()
            .any(|s| name.ends_with(s))
        {
            // Acquire::GzipIndexes with xz, bzip2 or zstd: not read.
            scan.skipped
                .push(format!("{name}: compressed in a format not read"));
            continue;
        }
        if not_automatic(&lists, &name) {
            continue; // backports, experimental: apt does not upgrade from them by default
        }
        let security = is_security_list(&name);
        let reader = match open_list(&lists.join(&name)) {
            Ok(r) => r,
            Err(e) => {
                scan.skipped.push(format!("{name}: {e}"));
                continue;
            }
        };
        let read = stanzas(reader, budget, &mut scan, |f| {
            let (Some(pkg), Some(arch), Some(version)) = (f.package, f.architecture, f.version)
            else {
                return false;
            };
            let key = (pkg, arch);
            if let Some(have) = installed.get(&key)
                && deb_cmp(&version, have) == Some(std::cmp::Ordering::Greater)
            {
                let o = offers.entry(key).or_default();
                o.newer = true;
                o.security |= security;
            }
            true
        });
        match read {
            Ok(()) => scan.sources += 1,
            Err(e) if e == Budget::EXCEEDED => return Err(e),
            // A corrupt or truncated compressed list is that list's problem.
            Err(e) => scan.skipped.push(format!("{name}: {e}")),
        }
    }
    scan.installed = installed.len();
    scan.pending = offers.values().filter(|o| o.newer).count();
    scan.security = Some(offers.values().filter(|o| o.security).count());
    let run = ["var/run", "run"];
    scan.reboot_required = run
        .iter()
        .any(|d| root.join(d).join("reboot-required").exists());
    scan.reboot_pkgs = run.iter().find_map(|d| {
        let (t, _) =
            crate::untrusted::read_prefix(&root.join(d).join("reboot-required.pkgs"), 1 << 20)
                .ok()?;
        let mut pkgs: Vec<&str> = t.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        vaultmesh_agent_core::sort::sort(&mut pkgs);
        pkgs.dedup();
        Some(pkgs.len())
    });
    Ok(scan)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn security_lists_by_file_name() {
        for (name, want) in [
            (
                "security.debian.org_debian-security_dists_bookworm-security_main_binary-amd64_Packages",
                true,
            ),
            (
                "security.ubuntu.com_ubuntu_dists_noble-security_main_binary-amd64_Packages",
                true,
            ),
            (
                "esm.ubuntu.com_apps_ubuntu_dists_noble-apps-security_main_binary-amd64_Packages",
                true,
            ),
            (
                "security.debian.org_debian-security_dists_buster_updates_main_binary-amd64_Packages",
                true,
            ),
            (
                "deb.debian.org_debian_dists_bookworm-updates_main_binary-amd64_Packages",
                false,
            ),
            (
                "deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages",
                false,
            ),
            // "security" elsewhere than the suite does not count.
            (
                "mirror.example_security-tools_dists_stable_main_binary-amd64_Packages",
                false,
            ),
        ] {
            assert_eq!(is_security_list(name), want, "{name}");
        }
    }

    #[test]
    fn malformed_stanzas_are_counted_and_skipped() {
        let text = "Package: a\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1.0\n\n\
                    Package: b\nStatus: install ok installed\n\n\
                    garbage without colon\n\n\
                    Package: c\nStatus: deinstall ok config-files\nArchitecture: amd64\nVersion: 2\n\n\
                    Package: d\nStatus: install ok installed\nArchitecture: all\nVersion: 3\nDescription: x\n multi\n line\n";
        let mut scan = Scan::new("apt");
        let got = installed(text.as_bytes(), &Budget::unlimited(), &mut scan).unwrap();
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[&("d".to_string(), "all".to_string())], "3");
        assert_eq!(
            scan.malformed, 2,
            "b lacks fields; the garbage stanza has none"
        );
    }
}
