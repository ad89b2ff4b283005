//! The command-signing key with the real binary: `keygen --show-public` prints the public key
//! again without touching the key, and `serve` takes the key from the systemd credential `cc.key`
//! (`LoadCredential=`, `$CREDENTIALS_DIRECTORY`) when no `--signing-key` is given.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::json;
use vaultmesh_testkit::{
    CC_BIN, CommandCenter, binary, cc_command, heartbeat_json, keygen, text, workspace_root,
};

const NODE: &str = "6f1c2d3e-4b5a-4c6d-8e7f-0a1b2c3d4e5f";

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn show_public_prints_the_public_key_and_key_id_again_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = keygen(dir.path());
    let before = std::fs::read(&key).unwrap();
    let meta = std::fs::metadata(&key).unwrap();

    let out = cc_command(&["keygen", "--show-public", "--out", &key]);
    assert!(out.status.success(), "{}", text(&out));
    let key_id = vaultmesh_proto::command::key_id(&public);
    assert_eq!(
        stdout(&out),
        format!(
            "public key: {public}\nkey id: {key_id}\nagents pin it with VAULTMESH_CC_PUBKEY={public}\n"
        )
    );
    assert_eq!(stderr(&out), "");
    let after = std::fs::metadata(&key).unwrap();
    assert_eq!(std::fs::read(&key).unwrap(), before, "the key is unchanged");
    assert_eq!(after.permissions().mode() & 0o777, 0o600);
    assert_eq!(after.modified().unwrap(), meta.modified().unwrap());
    // The secret never appears in what is printed.
    let secret = String::from_utf8(before).unwrap();
    assert!(!stdout(&out).contains(secret.trim()));
}

#[test]
fn show_public_of_a_missing_file_or_a_non_key_exits_2_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.key");
    let garbage = dir.path().join("garbage.key");
    std::fs::write(&garbage, "not-a-key-but-a-secret-looking-string\n").unwrap();
    let cases = [
        (
            missing.clone(),
            format!(
                "error: --out {}: cannot read: No such file or directory (os error 2) (create it with `vaultmesh-command-center keygen --out FILE`)",
                missing.display()
            ),
        ),
        (
            garbage.clone(),
            format!(
                "error: --out {}: not a key written by `vaultmesh-command-center keygen`",
                garbage.display()
            ),
        ),
    ];
    for (path, want) in cases {
        let out = cc_command(&["keygen", "--show-public", "--out", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert_eq!(stderr(&out).trim_end(), want);
        assert_eq!(stdout(&out), "", "nothing on stdout");
    }
    assert!(!missing.exists(), "--show-public never creates a key");
    assert_eq!(
        std::fs::read_to_string(&garbage).unwrap(),
        "not-a-key-but-a-secret-looking-string\n"
    );
}

#[test]
fn keygen_writes_the_documented_path_by_default() {
    let out = cc_command(&["keygen", "--help"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        stdout(&out).contains("[default: /etc/vaultmesh/cc.key]"),
        "{}",
        stdout(&out)
    );
}

/// A credentials directory as systemd makes it for `LoadCredential=cc.key:...`.
fn credentials_with(key_text: &[u8]) -> tempfile::TempDir {
    let creds = tempfile::tempdir().unwrap();
    let path = creds.path().join("cc.key");
    std::fs::write(&path, key_text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
    creds
}

/// Issues `agent.ping` to a node that has reported; the signed command's key id.
fn issue_ping(cc: &CommandCenter) -> String {
    assert_eq!(
        cc.post_json("/api/agent/heartbeat", &heartbeat_json(NODE, "n1", 1))
            .status,
        200
    );
    let r = cc.post_json(
        "/api/commands",
        &json!({"node_id": NODE, "action": "agent.ping", "issued_by": "test"}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    r.json()["key_id"].as_str().unwrap().to_string()
}

#[test]
fn serve_signs_with_the_systemd_credential_when_no_signing_key_is_given() {
    let keys = tempfile::tempdir().unwrap();
    let (key, public) = keygen(keys.path());
    let creds = credentials_with(&std::fs::read(&key).unwrap());
    let policies = workspace_root().join("policies");
    let cc = CommandCenter::start_with_env(
        &["--policy-dir", policies.to_str().unwrap()],
        &[("CREDENTIALS_DIRECTORY", creds.path().to_str().unwrap())],
    );
    assert_eq!(issue_ping(&cc), vaultmesh_proto::command::key_id(&public));

    // Without the credential (and without --signing-key) there is no key: 503.
    let bare = CommandCenter::start_with(&["--policy-dir", policies.to_str().unwrap()]);
    bare.post_json("/api/agent/heartbeat", &heartbeat_json(NODE, "n1", 1));
    let r = bare.post_json(
        "/api/commands",
        &json!({"node_id": NODE, "action": "agent.ping"}),
    );
    assert_eq!(r.status, 503, "{}", r.body);
}

#[test]
fn an_explicit_signing_key_wins_over_the_credential() {
    let keys = tempfile::tempdir().unwrap();
    let (flag_key, flag_public) = keygen(keys.path());
    let other = tempfile::tempdir().unwrap();
    let (other_key, _) = keygen(other.path());
    let creds = credentials_with(&std::fs::read(&other_key).unwrap());
    let policies = workspace_root().join("policies");
    let cc = CommandCenter::start_with_env(
        &[
            "--policy-dir",
            policies.to_str().unwrap(),
            "--signing-key",
            &flag_key,
        ],
        &[("CREDENTIALS_DIRECTORY", creds.path().to_str().unwrap())],
    );
    assert_eq!(
        issue_ping(&cc),
        vaultmesh_proto::command::key_id(&flag_public)
    );
}

#[test]
fn a_credential_that_is_not_a_key_is_refused_with_exit_2_naming_it() {
    let creds = credentials_with(b"garbage\n");
    let logs = tempfile::tempdir().unwrap();
    let out = Command::new(binary(CC_BIN))
        .args(["serve", "--listen", "127.0.0.1:0", "--log-dir"])
        .arg(logs.path().join("logs"))
        .env_remove("VAULTMESH_CC_KEY_FILE")
        .env("CREDENTIALS_DIRECTORY", creds.path())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let path = creds.path().join("cc.key");
    assert_eq!(
        stderr(&out).trim_end(),
        format!(
            "error: credential cc.key ({}): not a key written by `vaultmesh-command-center keygen`",
            path.display()
        )
    );
    assert!(!Path::new(&logs.path().join("logs/heartbeats.jsonl")).exists());
}

/// The worked example's keys (docs/PROTOCOL.md) have published private keys: a Command Center
/// that signed with one would let anyone issue commands its nodes run, and pass as any node.
#[test]
fn the_documentations_example_key_is_refused_as_the_signing_key_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("cc.key");
    std::fs::write(&key, "AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM=\n").unwrap();
    let out = Command::new(binary(CC_BIN))
        .args(["serve", "--listen", "127.0.0.1:0", "--log-dir"])
        .arg(dir.path().join("logs"))
        .arg("--signing-key")
        .arg(&key)
        .env_remove("VAULTMESH_CC_KEY_FILE")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert_eq!(
        stderr(&out).trim_end(),
        format!(
            "error: --signing-key {}: is the documentation's example key, whose private key is published (docs/PROTOCOL.md): make this Command Center's own with `vaultmesh-command-center keygen`",
            key.display()
        )
    );
    assert!(!dir.path().join("logs/heartbeats.jsonl").exists());
}
