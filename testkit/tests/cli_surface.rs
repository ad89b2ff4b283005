//! What packages ship from both binaries' clap definitions: `--version` with the git commit,
//! shell completions (bash, zsh, fish) and a man page; and their refusals.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::process::Command;

use vaultmesh_testkit::{AGENT_BIN, CC_BIN, binary, text, workspace_root};

fn run(bin: (&str, &str), args: &[&str]) -> std::process::Output {
    Command::new(binary(bin))
        .args(args)
        .env_remove("VAULTMESH_CONFIG")
        .output()
        .unwrap()
}

#[test]
fn version_names_the_git_commit_it_was_built_from() {
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(workspace_root())
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&head.stdout).trim().to_string();
    assert_eq!(head.len(), 12, "not a git checkout?");
    for (bin, name) in [
        (CC_BIN, "vaultmesh-command-center"),
        (AGENT_BIN, "vaultmesh-node-agent"),
    ] {
        let out = run(bin, &["--version"]);
        assert!(out.status.success(), "{}", text(&out));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            format!("{name} {} ({head})", env!("CARGO_PKG_VERSION"))
        );
    }
}

#[test]
fn completions_and_man_pages_come_from_the_clap_definitions() {
    for (bin, name, sub) in [
        (CC_BIN, "vaultmesh-command-center", "ledger"),
        (AGENT_BIN, "vaultmesh-node-agent", "checks"),
    ] {
        for (shell, marker) in [
            ("bash", format!("-o default {name}")),
            ("zsh", format!("#compdef {name}")),
            ("fish", format!("complete -c {name}")),
        ] {
            let out = run(bin, &["completions", shell]);
            assert!(out.status.success(), "{name} {shell}: {}", text(&out));
            let script = String::from_utf8_lossy(&out.stdout);
            assert!(script.contains(&marker), "{name} {shell}: no {marker:?}");
            assert!(script.contains(sub), "{name} {shell}: no {sub}");
        }
        let out = run(bin, &["man"]);
        assert!(out.status.success(), "{}", text(&out));
        let page = String::from_utf8_lossy(&out.stdout);
        assert!(page.starts_with(".ie") || page.contains(".TH"), "{page}");
        assert!(page.contains(&format!(".TH {name} 1")), "{page}");
        assert!(page.contains(sub), "{name}: the man page lists no {sub}");

        let out = run(bin, &["completions", "tcsh"]);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
}
