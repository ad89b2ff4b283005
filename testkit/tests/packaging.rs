//! The Arch packages install the same files as the Debian ones: each PKGBUILD's `install`
//! destinations against the crate's `[package.metadata.deb] assets` (namcap is not on
//! Debian), and each `.SRCINFO` against its PKGBUILD. `scripts/dist --check` builds the .debs,
//! runs lintian and installs them into a throwaway root.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::collections::BTreeSet;

use vaultmesh_testkit::workspace_root;

/// One spelling for what the two distributions put in different places.
fn normalize(path: &str) -> String {
    let p = path.replacen("/lib/systemd/", "/usr/lib/systemd/", 1);
    let p = p.replace("/usr/usr/", "/usr/");
    let p = p.replace("/zsh/vendor-completions/", "/zsh/site-functions/");
    p.strip_suffix(".gz").unwrap_or(&p).to_string()
}

fn deb_files(krate: &str) -> BTreeSet<String> {
    let text = std::fs::read_to_string(workspace_root().join(krate).join("Cargo.toml")).unwrap();
    let manifest: toml::Table = toml::from_str(&text).unwrap();
    let assets = manifest["package"]["metadata"]["deb"]["assets"]
        .as_array()
        .unwrap();
    assets
        .iter()
        .map(|a| {
            let a = a.as_array().unwrap();
            let (src, dest) = (a[0].as_str().unwrap(), a[1].as_str().unwrap());
            let dest = if dest.ends_with('/') {
                format!("{dest}{}", src.rsplit('/').next().unwrap())
            } else {
                dest.to_string()
            };
            normalize(&format!("/{dest}"))
        })
        .collect()
}

fn pkgbuild(name: &str) -> String {
    std::fs::read_to_string(
        workspace_root()
            .join("packaging/arch")
            .join(name)
            .join("PKGBUILD"),
    )
    .unwrap()
}

fn arch_files(name: &str) -> BTreeSet<String> {
    pkgbuild(name)
        .lines()
        .filter(|l| l.trim_start().starts_with("install -D"))
        .filter_map(|l| l.split("\"$pkgdir").nth(1))
        .map(|rest| rest.trim_end_matches('"').replace("$pkgname", name))
        .filter(|p| !p.starts_with("/usr/share/licenses/"))
        .map(|p| normalize(&p))
        .collect()
}

#[test]
fn the_pkgbuilds_install_the_files_the_debs_do() {
    for (krate, name) in [
        ("command-center", "vaultmesh-command-center"),
        ("node-agent", "vaultmesh-node-agent"),
    ] {
        let (deb, arch) = (deb_files(krate), arch_files(name));
        assert!(deb.contains(&format!("/usr/bin/{name}")), "{deb:?}");
        assert!(deb.contains(&format!("/usr/lib/systemd/system/{name}.service")));
        assert!(deb.contains(&format!("/usr/share/man/man1/{name}.1")));
        assert_eq!(
            deb,
            arch,
            "{name}: only in the .deb: {:?}; only in the PKGBUILD: {:?}",
            deb.difference(&arch).collect::<Vec<_>>(),
            arch.difference(&deb).collect::<Vec<_>>()
        );
        // Every file the packages take from the repository exists.
        for path in pkgbuild(name).lines().filter_map(|l| {
            let l = l.trim_start();
            l.starts_with("install -D")
                .then(|| l.split_whitespace().nth(2))
                .flatten()
        }) {
            if path.starts_with("policies/")
                || path.starts_with("docs/")
                || path.starts_with("systemd/")
                || path == "LICENSE"
            {
                assert!(
                    workspace_root().join(path).exists(),
                    "{name}: {path} is missing"
                );
            }
        }
    }
}

/// Every policy in `policies/` reaches `/etc/vaultmesh/policies` through the Command Center's
/// packages, and pacman keeps an admin's edits to each (`backup`). A node whose profile has no
/// file gets no commands, so a policy left out of the package (Generic.toml was) silently
/// changes what a packaged Command Center does.
#[test]
fn the_command_center_packages_ship_every_policy() {
    let policies = vaultmesh_testkit::shipped_policies();
    assert!(
        policies.contains(&"Generic.toml".to_string()),
        "{policies:?}"
    );
    let (deb, arch) = (
        deb_files("command-center"),
        arch_files("vaultmesh-command-center"),
    );
    let pkgbuild = pkgbuild("vaultmesh-command-center");
    let backup = pkgbuild
        .lines()
        .find_map(|l| l.strip_prefix("backup=("))
        .unwrap();
    for p in &policies {
        let installed = format!("/etc/vaultmesh/policies/{p}");
        assert!(deb.contains(&installed), ".deb lacks {installed}: {deb:?}");
        assert!(arch.contains(&installed), "PKGBUILD lacks {installed}");
        assert!(
            backup.contains(&format!("'etc/vaultmesh/policies/{p}'")),
            "PKGBUILD backup=() lacks {p}: {backup}"
        );
    }
    // The agent's package holds no policy: both packages on one host must not own one file.
    assert!(
        !deb_files("node-agent")
            .iter()
            .any(|f| f.starts_with("/etc/vaultmesh/policies/"))
    );
}

#[test]
fn each_srcinfo_matches_its_pkgbuild() {
    for name in ["vaultmesh-command-center", "vaultmesh-node-agent"] {
        let pkgbuild = pkgbuild(name);
        let srcinfo = std::fs::read_to_string(
            workspace_root()
                .join("packaging/arch")
                .join(name)
                .join(".SRCINFO"),
        )
        .unwrap();
        let field = |key: &str| -> Vec<String> {
            srcinfo
                .lines()
                .filter_map(|l| l.trim().strip_prefix(&format!("{key} = ")))
                .map(str::to_string)
                .collect()
        };
        let scalar = |key: &str| {
            pkgbuild
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{key}=")))
                .map(|v| v.trim_matches(|c| c == '\'' || c == '"').to_string())
                .unwrap()
        };
        let array = |key: &str| -> Vec<String> {
            pkgbuild
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{key}=(")))
                .map(|v| {
                    v.trim_end_matches(')')
                        .split_whitespace()
                        .map(|x| x.trim_matches(|c| c == '\'' || c == '"').to_string())
                        .collect()
                })
                .unwrap_or_default()
        };
        assert_eq!(field("pkgname"), [name]);
        for key in ["pkgver", "pkgrel", "pkgdesc", "url"] {
            assert_eq!(field(key), [scalar(key)], "{name}: {key}");
        }
        for key in ["arch", "license", "depends", "makedepends", "backup"] {
            assert_eq!(field(key), array(key), "{name}: {key}");
        }
        // The version packaged is the workspace's.
        assert_eq!(scalar("pkgver"), env!("CARGO_PKG_VERSION"));
    }
}
