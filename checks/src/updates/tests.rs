//! The `updates` check against fixture trees (checks/tests/fixtures/updates/{debian,ubuntu,arch})
//! and hostile ones built here.

use super::*;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/updates")
        .join(name)
}

fn check_with(root: PathBuf, toml: &str) -> UpdatesCheck {
    let t: toml::Table = toml::from_str(toml).unwrap();
    let mut c: UpdatesConfig = parse_table(&t).unwrap();
    c.root = root;
    UpdatesCheck::new(c).unwrap()
}

async fn run(root: PathBuf, toml: &str) -> CheckOutcome {
    let mut ctx = CheckContext::new(uuid::Uuid::nil(), "/");
    ctx.timeout = Some(Duration::from_secs(30));
    check_with(root, toml).run(&ctx).await
}

fn updates(out: &CheckOutcome) -> &Updates {
    out.contribution.metrics.updates.as_ref().unwrap()
}

/// dpkg status against a main, a security and a NotAutomatic backports list: epochs, `~`,
/// multi-arch, removed packages and lower offers all counted as dpkg would.
#[tokio::test]
async fn debian_pending_security_and_reboot_from_the_fixture_tree() {
    let scan = read(&fixture("debian"), &Budget::unlimited())
        .unwrap()
        .unwrap();
    assert_eq!(
        (scan.installed, scan.pending, scan.security, scan.sources),
        (8, 4, Some(3), 2),
        "{scan:?}"
    );
    assert_eq!(
        scan.malformed, 2,
        "the status's `broken` and the security list's `nover`"
    );
    assert!(scan.reboot_required);
    assert_eq!(scan.reboot_pkgs, Some(2));
    assert!(scan.skipped.is_empty(), "{:?}", scan.skipped);

    let out = run(fixture("debian"), "").await;
    assert_eq!(out.status, CheckStatus::Warn);
    assert_eq!(
        out.summary,
        "apt: 4 pending updates (3 security); reboot required (by 2 packages)"
    );
    assert_eq!(
        updates(&out),
        &Updates {
            pending: 4,
            security: Some(3),
            reboot_required: true,
            manager: "apt".into()
        }
    );
    assert_eq!(out.metrics["reboot_pkgs"], 2.0);
    assert_eq!(out.details["malformed"], 2);
}

#[tokio::test]
async fn thresholds_and_the_reboot_verdict_are_configurable() {
    let cases = [
        ("", CheckStatus::Warn),
        ("security_crit = 3", CheckStatus::Crit),
        ("security_crit = 4", CheckStatus::Warn),
        (
            "security_warn = 0\nreboot_required = \"ok\"",
            CheckStatus::Ok,
        ),
        (
            "security_warn = 0\nreboot_required = \"ok\"\npending_warn = 4",
            CheckStatus::Warn,
        ),
        (
            "security_warn = 0\nreboot_required = \"ok\"\npending_warn = 2\npending_crit = 4",
            CheckStatus::Crit,
        ),
        (
            "security_warn = 0\nreboot_required = \"crit\"",
            CheckStatus::Crit,
        ),
    ];
    for (toml, want) in cases {
        assert_eq!(run(fixture("debian"), toml).await.status, want, "{toml}");
    }
}

#[test]
fn bad_config_names_the_key() {
    for (toml, key) in [
        ("security_warn = 5\nsecurity_crit = 2", "security_warn"),
        ("pending_warn = 50\npending_crit = 10", "pending_warn"),
        ("reboot_required = \"maybe\"", "reboot_required"),
        ("pending_warn = -1", "pending_warn"),
        ("root = \"/srv\"", "root"),
    ] {
        let t: toml::Table = toml::from_str(toml).unwrap();
        let err = parse_table::<UpdatesConfig>(&t)
            .and_then(UpdatesCheck::new)
            .unwrap_err();
        assert_eq!(err.key, key, "{toml}: {err:?}");
    }
    let reg = vaultmesh_agent_core::registry::all()
        .into_iter()
        .find(|r| r.name == "updates")
        .unwrap();
    assert_eq!(reg.default_interval, Duration::from_secs(3600));
    (reg.build)(&toml::from_str(reg.example).unwrap()).unwrap();
}

/// Ubuntu's `-security` suite, a gzip'd list, and a corrupt lz4 one that is reported as not read.
#[tokio::test]
async fn ubuntu_security_suite_and_compressed_lists() {
    let out = run(fixture("ubuntu"), "").await;
    assert_eq!(out.status, CheckStatus::Warn, "{}", out.summary);
    assert_eq!(
        out.summary,
        "apt: 2 pending updates (1 security); 1 source not read"
    );
    assert!(!updates(&out).reboot_required);
    let skipped = out.details["skipped"][0].as_str().unwrap();
    assert!(
        skipped
            .starts_with("archive.ubuntu.com_ubuntu_dists_noble_main_binary-amd64_Packages.lz4: "),
        "a corrupt lz4 list is that list's problem: {skipped}"
    );
}

/// pacman's local database against a gzip'd and a plain sync database; a zstd one is not read;
/// the running kernel's modules are gone, so a reboot is due; Arch cannot say what is security.
#[tokio::test]
async fn arch_pending_and_reboot_from_the_fixture_tree() {
    let scan = read(&fixture("arch"), &Budget::unlimited())
        .unwrap()
        .unwrap();
    assert_eq!(
        (scan.installed, scan.pending, scan.security, scan.sources),
        (6, 2, None, 2),
        "linux and python; zstd's offer has a lower epoch: {scan:?}"
    );
    assert_eq!(scan.malformed, 1);
    assert_eq!(scan.skipped, ["core-testing.db: zstd-compressed: not read"]);
    assert!(scan.reboot_required);

    let out = run(fixture("arch"), "").await;
    assert_eq!(out.status, CheckStatus::Warn, "the reboot");
    assert_eq!(
        out.summary,
        "pacman: 2 pending updates; reboot required; 1 source not read"
    );
    assert_eq!(
        updates(&out),
        &Updates {
            pending: 2,
            security: None,
            reboot_required: true,
            manager: "pacman".into()
        }
    );
    let json = serde_json::to_value(&out.contribution).unwrap();
    assert!(
        json["metrics"]["updates"].get("security").is_none(),
        "{json}"
    );
}

#[tokio::test]
async fn arch_running_kernel_present_means_no_reboot() {
    let dir = copy_tree(&fixture("arch"));
    std::fs::create_dir_all(dir.path().join("usr/lib/modules/6.7.0-arch1-1")).unwrap();
    let scan = read(dir.path(), &Budget::unlimited()).unwrap().unwrap();
    assert!(!scan.reboot_required);
    // No modules directory at all (a container): no claim either.
    std::fs::remove_dir_all(dir.path().join("usr/lib/modules")).unwrap();
    assert!(
        !read(dir.path(), &Budget::unlimited())
            .unwrap()
            .unwrap()
            .reboot_required
    );
}

#[tokio::test]
async fn no_package_manager_is_ok_and_says_so() {
    let empty = tempfile::tempdir().unwrap();
    let out = run(empty.path().into(), "").await;
    assert_eq!(out.status, CheckStatus::Ok);
    assert_eq!(
        out.summary,
        "no supported package manager found (neither dpkg/apt nor pacman state)"
    );
    assert!(out.contribution.is_empty());
}

#[tokio::test]
async fn out_of_time_is_unknown_not_a_partial_count() {
    let expired = Budget::until(Instant::now());
    assert_eq!(
        read(&fixture("debian"), &expired).unwrap_err(),
        Budget::EXCEEDED
    );
    assert_eq!(
        read(&fixture("arch"), &expired).unwrap_err(),
        Budget::EXCEEDED
    );
    // Through the check: a timeout of 0 leaves no time.
    let mut ctx = CheckContext::new(uuid::Uuid::nil(), "/");
    ctx.timeout = Some(Duration::ZERO);
    let out = check_with(fixture("debian"), "").run(&ctx).await;
    assert_eq!(out.status, CheckStatus::Unknown);
    assert!(
        out.summary.contains("longer than the check's timeout"),
        "{}",
        out.summary
    );
}

fn copy_tree(from: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut stack = vec![from.to_path_buf()];
    while let Some(p) = stack.pop() {
        let rel = p.strip_prefix(from).unwrap();
        let to = dir.path().join(rel);
        if p.is_dir() {
            std::fs::create_dir_all(&to).unwrap();
            stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        } else {
            std::fs::copy(&p, &to).unwrap();
        }
    }
    dir
}

/// An over-long line, a list whose name carries control characters, stanzas without fields:
/// bounded, read, and nothing deceptive reaches the result.
#[tokio::test]
async fn hostile_apt_state_is_bounded() {
    let dir = copy_tree(&fixture("debian"));
    let status = dir.path().join("var/lib/dpkg/status");
    let mut text = std::fs::read_to_string(&status).unwrap();
    text.push_str(&format!(
        "Package: huge\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1\nDescription: {}\n\n",
        "x".repeat(4 << 20)
    ));
    text.push_str("\n\n\n:::\n\nPackage:\nVersion:\n\n");
    std::fs::write(&status, text).unwrap();
    let lists = dir.path().join("var/lib/apt/lists");
    std::fs::write(
        lists.join("evil\u{1b}[2J\u{202e}_dists_x_main_binary-amd64_Packages.xz"),
        "x",
    )
    .unwrap();
    std::fs::write(
        lists.join("mirror_dists_sid_main_binary-amd64_Packages"),
        format!(
            "Package: huge\nArchitecture: amd64\nVersion: 2\nDescription: {}\n\n",
            "y".repeat(1 << 20)
        ),
    )
    .unwrap();
    let out = run(dir.path().into(), "").await;
    let u = updates(&out);
    assert_eq!(
        (u.pending, u.security),
        (5, Some(3)),
        "huge 1 → 2 is found past its long line"
    );
    let skipped = out.details["skipped"][0].as_str().unwrap();
    assert!(skipped.starts_with("evil?[2J?_dists_x"), "{skipped}");
    assert!(vaultmesh_proto::text::first_deceptive(&out.summary, &[]).is_none());
}

/// A sync database that is not a tar, one that is a truncated gzip, and a `desc` far larger than
/// any real one: each is that database's problem, named, never a panic or an unbounded read.
#[tokio::test]
async fn hostile_pacman_databases_are_skipped_or_bounded() {
    let dir = copy_tree(&fixture("arch"));
    let sync = dir.path().join("var/lib/pacman/sync");
    std::fs::write(sync.join("garbage.db"), vec![0x1f, 0x8b, 8, 0, 1, 2, 3]).unwrap();
    let core = std::fs::read(sync.join("core.db")).unwrap();
    std::fs::write(sync.join("truncated.db"), &core[..core.len() / 2]).unwrap();
    // A desc of 8 MiB whose %NAME% and %VERSION% come first: read up to its bound.
    let mut b = tar::Builder::new(Vec::new());
    let big = format!(
        "%NAME%\nglibc\n\n%VERSION%\n2.40-1\n\n%DESC%\n{}\n",
        "z".repeat(8 << 20)
    );
    let mut h = tar::Header::new_ustar();
    h.set_size(big.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, "glibc-2.40-1/desc", big.as_bytes())
        .unwrap();
    std::fs::write(sync.join("big.db"), b.into_inner().unwrap()).unwrap();

    let scan = read(dir.path(), &Budget::unlimited()).unwrap().unwrap();
    assert_eq!(
        scan.pending, 3,
        "linux, python and the big database's glibc: {scan:?}"
    );
    let skipped: Vec<&str> = scan.skipped.iter().map(String::as_str).collect();
    assert_eq!(skipped.len(), 3, "{skipped:?}");
    assert!(
        skipped[1].starts_with("garbage.db: not a readable tar"),
        "{skipped:?}"
    );
    assert!(
        skipped[2].starts_with("truncated.db: not a readable tar"),
        "{skipped:?}"
    );
}

/// apt keeps its lists lz4-compressed in container images (`Acquire::GzipIndexes`).
#[tokio::test]
async fn lz4_lists_are_read() {
    use std::io::Write;
    let dir = copy_tree(&fixture("ubuntu"));
    let lists = dir.path().join("var/lib/apt/lists");
    let plain =
        lists.join("security.ubuntu.com_ubuntu_dists_noble-security_main_binary-amd64_Packages");
    let mut enc = lz4_flex::frame::FrameEncoder::new(Vec::new());
    enc.write_all(&std::fs::read(&plain).unwrap()).unwrap();
    std::fs::write(format!("{}.lz4", plain.display()), enc.finish().unwrap()).unwrap();
    std::fs::remove_file(&plain).unwrap();
    std::fs::remove_file(
        lists.join("archive.ubuntu.com_ubuntu_dists_noble_main_binary-amd64_Packages.lz4"),
    )
    .unwrap();
    let out = run(dir.path().into(), "").await;
    assert_eq!(out.summary, "apt: 2 pending updates (1 security)");
}

/// No list read: the pending count is unknown, never a reassuring 0.
#[tokio::test]
async fn without_readable_lists_pending_is_not_claimed() {
    let dir = copy_tree(&fixture("ubuntu"));
    let lists = dir.path().join("var/lib/apt/lists");
    for e in std::fs::read_dir(&lists).unwrap() {
        std::fs::remove_file(e.unwrap().path()).unwrap();
    }
    let out = run(dir.path().into(), "").await;
    assert_eq!(out.status, CheckStatus::Ok);
    assert_eq!(
        out.summary,
        "apt: no package lists downloaded yet, pending updates unknown"
    );
    assert!(out.contribution.is_empty());
    std::fs::write(
        lists.join("x_dists_noble_main_binary-amd64_Packages.zst"),
        "x",
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("var/run")).unwrap();
    std::fs::write(dir.path().join("var/run/reboot-required"), "").unwrap();
    let out = run(dir.path().into(), "").await;
    assert_eq!(out.status, CheckStatus::Unknown);
    assert_eq!(
        out.summary,
        "apt: no package list could be read (1 source not read; x_dists_noble_main_binary-amd64_Packages.zst: compressed in a format not read); reboot required"
    );
    assert!(out.contribution.is_empty());
}

#[tokio::test]
async fn runs_on_this_machine() {
    let out = run("/".into(), "").await;
    assert_ne!(out.status, CheckStatus::Unknown, "{}", out.summary);
}
