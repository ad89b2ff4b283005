//! docs/DEPLOY.md §2 as written, run in a throwaway root: every file it makes has the owner and
//! mode the hardened unit needs. The service runs as a transient user (`DynamicUser=yes`) that
//! must read the policies and nothing secret; systemd itself (root) reads the environment file
//! and the signing key (`EnvironmentFile=`, `LoadCredential=`).
//!
//! What the test changes in the block (see `vaultmesh_testkit::docs`): `/etc/`, `/var/` and
//! `/run/` paths move under a temp dir; the freshly built `vaultmesh-command-center` comes first
//! on `PATH`; `systemctl` and `curl` are shell functions that record their arguments (no
//! systemd runs here). It runs the block under `umask 022` and under `umask 077` (hardened
//! hosts), since the modes must not depend on it. As root, it also reads each file as another
//! user (`setpriv --reuid=65534`); otherwise it judges by the mode bits alone.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use vaultmesh_testkit::docs::{code_blocks, reroot, section};
use vaultmesh_testkit::{CC_BIN, binary, file_names, shipped_policies, text, workspace_root};

const UNIT: &str = "vaultmesh-command-center.service";
/// A user that owns nothing here, standing in for the service's transient user.
const OTHER_UID: &str = "65534";

fn deploy_md() -> String {
    std::fs::read_to_string(workspace_root().join("docs/DEPLOY.md")).unwrap()
}

/// The shell block of DEPLOY.md §2.
fn command_center_block() -> String {
    let md = deploy_md();
    let blocks = code_blocks(section(&md, "## 2. Command Center"), "sh");
    assert!(!blocks.is_empty(), "DEPLOY.md §2 has no sh block");
    blocks[0].clone()
}

/// Runs `block` from the workspace root with its paths under `root`; returns the recorded
/// `systemctl`/`curl` calls.
fn run_block(block: &str, root: &Path, umask: &str) -> String {
    std::fs::create_dir_all(root.join("etc/systemd/system")).unwrap();
    let calls = root.join("calls.log");
    let bin_dir = binary(CC_BIN).parent().unwrap().to_path_buf();
    let script = format!(
        "umask {umask}\n\
         systemctl() {{ echo \"systemctl $*\" >> '{calls}'; }}\n\
         curl() {{ echo \"curl $*\" >> '{calls}'; }}\n\
         {}",
        reroot(block, root),
        calls = calls.display()
    );
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(workspace_root())
        .env(
            "PATH",
            format!(
                "{}:{}",
                bin_dir.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .env_remove("VAULTMESH_CC_KEY_FILE")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "DEPLOY.md §2 failed under umask {umask}:\n{script}\n{}",
        text(&out)
    );
    std::fs::read_to_string(calls).unwrap_or_default()
}

/// `Key=Value` settings of the unit's `[Service]` section, in order.
fn service_settings(unit_text: &str) -> Vec<(String, String)> {
    let mut in_service = false;
    let mut out = Vec::new();
    for line in unit_text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_service = line == "[Service]";
        } else if in_service
            && !line.starts_with('#')
            && let Some((k, v)) = line.split_once('=')
        {
            out.push((k.to_string(), v.to_string()));
        }
    }
    out
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// Reads `path` (or lists it, for a directory) as [`OTHER_UID`]; whether that worked.
fn other_user_can_read(path: &Path) -> bool {
    let cmd = if path.is_dir() { "ls" } else { "cat" };
    Command::new("setpriv")
        .args([
            &format!("--reuid={OTHER_UID}"),
            &format!("--regid={OTHER_UID}"),
            "--clear-groups",
            "--",
            cmd,
        ])
        .arg(path)
        .output()
        .unwrap()
        .status
        .success()
}

struct Expect {
    path: PathBuf,
    mode: u32,
    /// Whether the service's user (anyone but root) must be able to read it.
    service_reads: bool,
}

fn check_root(root: &Path, umask: &str, me: u32) {
    let at = |p: &str| root.join(p.trim_start_matches('/'));
    let unit_path = at(&format!("/etc/systemd/system/{UNIT}"));
    let unit_text = std::fs::read_to_string(&unit_path).unwrap();
    assert_eq!(
        unit_text,
        std::fs::read_to_string(workspace_root().join("systemd").join(UNIT)).unwrap()
    );
    let settings = service_settings(&unit_text);
    let value = |key: &str| -> Vec<&str> {
        settings
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    assert_eq!(value("DynamicUser"), ["yes"]);

    // What the unit names, where the steps must have put it.
    let env_file = value("EnvironmentFile")[0]
        .trim_start_matches('-')
        .to_string();
    let credential = value("LoadCredential");
    assert_eq!(credential.len(), 1, "{credential:?}");
    let (cred_id, cred_path) = credential[0].split_once(':').unwrap();
    assert_eq!(cred_id, "cc.key", "serve looks for the credential cc.key");
    let policy_dir = value("Environment")
        .iter()
        .find_map(|v| v.strip_prefix("VAULTMESH_POLICY_DIR="))
        .unwrap()
        .to_string();

    let mut expect = vec![
        Expect {
            path: at("/etc/vaultmesh"),
            mode: 0o755,
            service_reads: true,
        },
        Expect {
            path: at(&policy_dir),
            mode: 0o755,
            service_reads: true,
        },
        Expect {
            path: at(&env_file),
            mode: 0o600,
            service_reads: false,
        },
        Expect {
            path: at(cred_path),
            mode: 0o600,
            service_reads: false,
        },
        Expect {
            path: unit_path.clone(),
            mode: 0o644,
            service_reads: true,
        },
    ];
    let installed = file_names(&at(&policy_dir), None);
    assert_eq!(
        installed,
        shipped_policies(),
        "every shipped policy is installed"
    );
    for p in &installed {
        expect.push(Expect {
            path: at(&policy_dir).join(p),
            mode: 0o644,
            service_reads: true,
        });
    }

    for e in &expect {
        let meta = std::fs::metadata(&e.path)
            .unwrap_or_else(|err| panic!("umask {umask}: {}: {err}", e.path.display()));
        assert_eq!(
            (meta.uid(), mode(&e.path)),
            (me, e.mode),
            "umask {umask}: {} owner and mode",
            e.path.display()
        );
        // By the bits: readable (and, for a directory, searchable) by others, or not at all.
        let others = mode(&e.path) & 0o007;
        if e.service_reads {
            let need = if meta.is_dir() { 0o005 } else { 0o004 };
            assert_eq!(others & need, need, "{}", e.path.display());
        } else {
            assert_eq!(others, 0, "{} is a secret", e.path.display());
            assert_eq!(mode(&e.path) & 0o070, 0, "{} is a secret", e.path.display());
        }
        if me == 0 {
            assert_eq!(
                other_user_can_read(&e.path),
                e.service_reads,
                "umask {umask}: uid {OTHER_UID} reading {}",
                e.path.display()
            );
        }
    }

    // The contents are what the unit expects: a token serve accepts, a key keygen wrote.
    let env = std::fs::read_to_string(at(&env_file)).unwrap();
    let token = env
        .lines()
        .find_map(|l| l.strip_prefix("VAULTMESH_ENROLL_TOKEN="))
        .unwrap();
    assert!(token.len() >= 16, "{token:?}");
    let show = Command::new(binary(CC_BIN))
        .args(["keygen", "--show-public", "--out"])
        .arg(at(cred_path))
        .output()
        .unwrap();
    assert!(show.status.success(), "{}", text(&show));
    // The service's own user runs `policy check` on what it will load.
    let check = if me == 0 {
        let mut c = Command::new("setpriv");
        c.args([
            &format!("--reuid={OTHER_UID}"),
            &format!("--regid={OTHER_UID}"),
            "--clear-groups",
            "--",
        ])
        .arg(binary(CC_BIN));
        c
    } else {
        Command::new(binary(CC_BIN))
    }
    .args(["policy", "check"])
    .arg(at(&policy_dir))
    .output()
    .unwrap();
    assert!(check.status.success(), "umask {umask}: {}", text(&check));
}

#[test]
fn deploy_section_2_gives_every_file_the_owner_and_mode_the_unit_needs() {
    let block = command_center_block();
    for umask in ["022", "077"] {
        let dir = tempfile::tempdir().unwrap();
        // Let another user walk to the files, as on a real root file system; what they may read
        // below is up to the steps.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let me = std::fs::metadata(dir.path()).unwrap().uid();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        let calls = run_block(&block, &root, umask);
        assert!(
            calls.contains("systemctl enable --now vaultmesh-command-center"),
            "{calls}"
        );
        check_root(&root, umask, me);
        eprintln!(
            "umask {umask}: checked by mode bits{}",
            if me == 0 {
                " and by reading as uid 65534 (running as root)"
            } else {
                " only (not running as root)"
            }
        );
    }
}

/// One place for the signing key in every doc that names it: root-only in `/etc/vaultmesh`,
/// outside the log directory (`/var/lib/vaultmesh/cc`) that is backed up; the unit hands it to
/// the service as the credential `cc.key`.
#[test]
fn the_docs_name_one_path_for_the_signing_key_outside_the_log_directory() {
    let root = workspace_root();
    let files = [
        "README.md",
        "docs/DEPLOY.md",
        "docs/COMMANDS.md",
        "docs/SCALING.md",
        "docs/INSTALL.md",
        "packaging/debian/command-center/postinst",
        "systemd/vaultmesh-command-center.service",
    ];
    let allowed = [
        "/etc/vaultmesh/cc.key",
        "$CREDENTIALS_DIRECTORY/cc.key",
        "cc.key",
    ];
    let mut seen = 0;
    for f in files {
        let text = std::fs::read_to_string(root.join(f)).unwrap();
        for (i, _) in text.match_indices("cc.key") {
            let start = text[..i]
                .rfind(|c: char| !(c.is_alphanumeric() || "/._-$".contains(c)))
                .map_or(0, |s| s + 1);
            let path = &text[start..i + "cc.key".len()];
            assert!(
                allowed.contains(&path),
                "{f}: the signing key at {path:?}; the docs keep it at /etc/vaultmesh/cc.key"
            );
            seen += usize::from(path == "/etc/vaultmesh/cc.key");
        }
    }
    assert!(
        seen >= 4,
        "the key's path appears in the docs ({seen} times)"
    );
    assert!(
        std::fs::read_to_string(root.join("systemd/vaultmesh-command-center.service"))
            .unwrap()
            .contains("\nLoadCredential=cc.key:/etc/vaultmesh/cc.key\n")
    );
}
