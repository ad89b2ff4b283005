//! What packages ship from both binaries' clap definitions: `--version` with the git commit,
//! shell completions (bash, zsh, fish) and a man page; and their refusals.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::process::Command;

use vaultmesh_testkit::{AGENT_BIN, CC_BIN, binary, text, workspace_root};

fn run(bin: (&str, &str), args: &[&str]) -> std::process::Output {
    Command::new(binary(bin))
        .args(args)
        .env_remove("VAULTMESH_CONFIG")
        .env_remove("VAULTMESH_NOTIFY_CONFIG")
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

/// The agent's completions and man page come from a build-time tool beside it
/// (`vaultmesh-node-agent-dist`, what `scripts/dist` and the PKGBUILD call), so the generators
/// stay out of the shipped agent (docs/PERFORMANCE.md); the Command Center prints its own.
const AGENT_DIST_BIN: (&str, &str) = ("vaultmesh-node-agent", "vaultmesh-node-agent-dist");

#[test]
fn completions_and_man_pages_come_from_the_clap_definitions() {
    for (bin, name, sub) in [
        (CC_BIN, "vaultmesh-command-center", "ledger"),
        (AGENT_DIST_BIN, "vaultmesh-node-agent", "checks"),
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
        assert!(
            err.starts_with("error: invalid value 'tcsh' for '<SHELL>'")
                && err.contains("[possible values: bash, zsh, fish]"),
            "{err}"
        );
    }
}

/// The agent's man page and completions describe the agent: every subcommand its `--help`
/// lists, and not the generator's own `completions` and `man`, which the agent does not have
/// (it refuses them as a usage error, exit 2).
#[test]
fn the_agents_completions_and_man_page_describe_the_agent_itself() {
    let help = run(AGENT_BIN, &["--help"]);
    assert!(help.status.success(), "{}", text(&help));
    let help = String::from_utf8_lossy(&help.stdout).to_string();
    let subcommands: Vec<&str> = help
        .split("Commands:")
        .nth(1)
        .unwrap()
        .split("Options:")
        .next()
        .unwrap()
        .lines()
        // "  name  description"; a description's continuation lines are indented further.
        .filter_map(|l| l.strip_prefix("  ").filter(|r| !r.starts_with(' ')))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| *w != "help")
        .collect();
    assert!(
        subcommands.contains(&"checks") && subcommands.contains(&"rekey"),
        "{help}"
    );
    assert!(
        !subcommands.contains(&"completions") && !subcommands.contains(&"man"),
        "{help}"
    );

    let man = run(AGENT_DIST_BIN, &["man"]);
    assert!(man.status.success(), "{}", text(&man));
    let man = String::from_utf8_lossy(&man.stdout).to_string();
    let fish = run(AGENT_DIST_BIN, &["completions", "fish"]);
    let fish = String::from_utf8_lossy(&fish.stdout).to_string();
    for sub in &subcommands {
        assert!(
            man.contains(&format!("vaultmesh\\-node\\-agent\\-{sub}(1)")),
            "the man page lists no {sub}"
        );
        assert!(fish.contains(&format!("-a \"{sub}\"")), "fish: no {sub}");
    }
    for absent in ["completions", "man"] {
        assert!(
            !fish.contains(&format!("-a \"{absent}\"")),
            "fish: {absent}"
        );
        assert!(!man.contains(&format!("vaultmesh\\-node\\-agent\\-{absent}(1)")));
        let out = run(AGENT_BIN, &[absent]);
        assert_eq!(out.status.code(), Some(2), "{absent}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.starts_with(&format!("error: unrecognized subcommand '{absent}'")),
            "{err}"
        );
    }
}

/// A usage error keeps clap's whole message — the error, the arguments it names, its tip —
/// as one block without blank lines, and exits 2.
#[test]
fn usage_errors_name_the_missing_argument_and_keep_the_similar_argument_tip() {
    for (bin, args, first, then) in [
        (
            CC_BIN,
            &["notify", "check"][..],
            "error: the following required arguments were not provided:",
            "  --notify-config <FILE>",
        ),
        (
            CC_BIN,
            &["keygen", "--outt", "x.key"][..],
            "error: unexpected argument '--outt' found",
            "  tip: a similar argument exists: '--out'",
        ),
        (
            AGENT_BIN,
            &["checks", "run"][..],
            "error: the following required arguments were not provided:",
            "  <NAME>",
        ),
        (
            AGENT_BIN,
            &["run", "--onse"][..],
            "error: unexpected argument '--onse' found",
            "  tip: a similar argument exists: '--once'",
        ),
    ] {
        let out = run(bin, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        assert!(out.stdout.is_empty(), "{args:?}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines[..2], [first, then], "{args:?}: {err}");
        assert!(lines.len() <= 5, "{args:?}: a short block: {err}");
        assert!(
            !lines.iter().any(|l| l.trim().is_empty()),
            "{args:?}: {err}"
        );
        assert_eq!(
            lines.last(),
            Some(&"For more information, try '--help'."),
            "{args:?}: {err}"
        );
    }
}
