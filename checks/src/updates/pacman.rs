//! Arch: pacman's local database against its synced ones, read as files (no `pacman`, no
//! network, no `checkupdates`).
//!
//! - Installed: `/var/lib/pacman/local/<name>-<version>/desc` (`%NAME%`, `%VERSION%`).
//! - Offered: `/var/lib/pacman/sync/*.db`, each a tar (gzip'd, or plain) of `<name>-<version>/desc`;
//!   a package is pending when a sync database holds a higher version
//!   ([`super::version::alpm_cmp`], libalpm's `vercmp`) under the same name. A zstd or xz
//!   compressed database is not read (it is listed under `skipped`).
//! - Security: Arch publishes no security repository, so the field is absent.
//! - Reboot required: the running kernel's modules directory `/usr/lib/modules/<release>`
//!   (release from `/proc/sys/kernel/osrelease`) is gone — pacman removed it when it installed a
//!   newer kernel. Only when `/usr/lib/modules` exists at all (a container has none).

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use super::{Budget, Scan};
use crate::updates::version::alpm_cmp;

/// Bytes of one `desc` read (they are a few hundred bytes; the file list is elsewhere).
const DESC_MAX: usize = 64 * 1024;
/// Entries looked at in one sync database or the local one.
const ENTRIES_MAX: usize = 200_000;
/// Bytes one sync database may inflate to (extra's is about 10 MiB).
const INFLATED_MAX: u64 = 512 << 20;

/// `%NAME%` and `%VERSION%` of a `desc` file.
pub(super) fn parse_desc(text: &str) -> Option<(String, String)> {
    let mut name = None;
    let mut version = None;
    let mut lines = text.lines();
    while let Some(l) = lines.next() {
        match l.trim() {
            "%NAME%" => name = lines.next().map(|v| v.trim().to_string()),
            "%VERSION%" => version = lines.next().map(|v| v.trim().to_string()),
            _ => {}
        }
    }
    match (name, version) {
        (Some(n), Some(v)) if !n.is_empty() && !v.is_empty() => Some((n, v)),
        _ => None,
    }
}

fn installed(
    root: &Path,
    budget: &Budget,
    scan: &mut Scan,
) -> Result<HashMap<String, String>, String> {
    let local = root.join("var/lib/pacman/local");
    let dir =
        std::fs::read_dir(&local).map_err(|e| format!("cannot read {}: {e}", local.display()))?;
    let mut out = HashMap::new();
    for (i, e) in dir.take(ENTRIES_MAX).filter_map(Result::ok).enumerate() {
        if i.is_multiple_of(1024) {
            budget.check()?;
        }
        let desc = e.path().join("desc");
        if !desc.is_file() {
            continue; // ALPM_DB_VERSION and other files
        }
        match crate::untrusted::read_prefix(&desc, DESC_MAX)
            .ok()
            .and_then(|(t, _)| parse_desc(&t))
        {
            Some((n, v)) => {
                out.insert(n, v);
            }
            None => scan.malformed += 1,
        }
    }
    Ok(out)
}

/// Reads one sync database, calling `each(name, version)` for every package in it.
pub(super) fn read_sync_db(
    path: &Path,
    budget: &Budget,
    scan: &mut Scan,
    mut each: impl FnMut(String, String),
) -> Result<(), String> {
    let mut f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut magic = [0u8; 6];
    let n = f.read(&mut magic).map_err(|e| e.to_string())?;
    let f = std::io::Read::chain(std::io::Cursor::new(magic[..n].to_vec()), f);
    let reader: Box<dyn Read> = match magic {
        [0x1f, 0x8b, ..] => Box::new(flate2::read::GzDecoder::new(f)),
        [0x28, 0xb5, 0x2f, 0xfd, ..] => return Err("zstd-compressed: not read".into()),
        [0xfd, b'7', b'z', b'X', b'Z', 0] => return Err("xz-compressed: not read".into()),
        _ => Box::new(f),
    };
    let mut archive = tar::Archive::new(reader.take(INFLATED_MAX));
    let entries = archive.entries().map_err(|e| e.to_string())?;
    for (i, entry) in entries.enumerate() {
        if i >= ENTRIES_MAX {
            return Err(format!("more than {ENTRIES_MAX} entries"));
        }
        if i.is_multiple_of(1024) {
            budget.check()?;
        }
        let entry = entry.map_err(|e| format!("not a readable tar: {e}"))?;
        let is_desc = entry
            .path()
            .ok()
            .is_some_and(|p| p.file_name().is_some_and(|f| f == "desc"));
        if !is_desc {
            continue;
        }
        let mut text = Vec::new();
        entry
            .take(DESC_MAX as u64)
            .read_to_end(&mut text)
            .map_err(|e| format!("not a readable tar: {e}"))?;
        match parse_desc(&String::from_utf8_lossy(&text)) {
            Some((n, v)) => each(n, v),
            None => scan.malformed += 1,
        }
    }
    Ok(())
}

/// Reads the node's pacman state under `root`.
pub(super) fn read(root: &Path, budget: &Budget) -> Result<Scan, String> {
    let mut scan = Scan::new("pacman");
    let installed = installed(root, budget, &mut scan)?;
    let sync = root.join("var/lib/pacman/sync");
    let mut dbs: Vec<String> = std::fs::read_dir(&sync)
        .map(|d| {
            d.take(super::LISTS_MAX)
                .filter_map(Result::ok)
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n.ends_with(".db"))
                .collect()
        })
        .unwrap_or_default();
    vaultmesh_agent_core::sort::sort(&mut dbs);
    let mut pending = std::collections::HashSet::new();
    for db in dbs {
        budget.check()?;
        let r = read_sync_db(&sync.join(&db), budget, &mut scan, |name, version| {
            if let Some(have) = installed.get(&name)
                && alpm_cmp(&version, have) == std::cmp::Ordering::Greater
            {
                pending.insert(name);
            }
        });
        match r {
            Ok(()) => scan.sources += 1,
            // Out of time is the whole run's failure; a bad database is that database's.
            Err(e) if e == Budget::EXCEEDED => return Err(e),
            Err(e) => scan.skipped.push(format!("{db}: {e}")),
        }
    }
    scan.installed = installed.len();
    scan.pending = pending.len();
    scan.security = None;
    let modules = root.join("usr/lib/modules");
    let release = crate::untrusted::read_prefix(&root.join("proc/sys/kernel/osrelease"), 256)
        .ok()
        .map(|(t, _)| t.trim().to_string())
        .filter(|r| !r.is_empty() && !r.contains('/') && r != "." && r != "..");
    scan.reboot_required = match release {
        Some(r) if modules.is_dir() => !modules.join(r).is_dir(),
        _ => false,
    };
    Ok(scan)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn desc_files() {
        assert_eq!(
            parse_desc(
                "%FILENAME%\nlinux-6.7.arch1-1-x86_64.pkg.tar.zst\n\n%NAME%\nlinux\n\n%VERSION%\n6.7.arch1-1\n\n%DESC%\nThe Linux kernel\n"
            ),
            Some(("linux".into(), "6.7.arch1-1".into()))
        );
        assert_eq!(parse_desc("%NAME%\nx\n"), None);
        assert_eq!(parse_desc("%NAME%\n\n%VERSION%\n1-1\n"), None);
        assert_eq!(parse_desc(""), None);
    }
}
