//! Build script of both binaries: puts the git commit they are built from in
//! `VAULTMESH_GIT_COMMIT`, for `--version`. A release tarball has no `.git`: packagers set
//! `VAULTMESH_GIT_COMMIT` themselves (the PKGBUILD does); otherwise it is `unknown`.

use std::process::Command;

pub fn main() {
    println!("cargo:rerun-if-env-changed=VAULTMESH_GIT_COMMIT");
    // The package being built, read when the script runs: a build-script binary reused for a
    // checkout elsewhere (a copied target directory) must not ask another checkout's git.
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| ".".into());
    let root = std::path::Path::new(&manifest_dir).join("..");
    // Every commit and checkout moves HEAD's reflog. In a linked worktree `.git` is a file and
    // its HEAD lives under the main repository's `.git/worktrees/NAME/`: git says where.
    let heads: Vec<std::path::PathBuf> = Command::new("git")
        .args(["rev-parse", "--path-format=absolute"])
        .args(["--git-path", "HEAD", "--git-path", "logs/HEAD"])
        .current_dir(&root)
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| {
            // A git older than 2.31 echoes the `--path-format` it does not know and answers
            // relative to the top of the work tree: skip the echo, join the rest to the root.
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|line| !line.starts_with('-'))
                .map(|line| root.join(line))
                .collect()
        })
        .unwrap_or_else(|| vec![root.join(".git/HEAD"), root.join(".git/logs/HEAD")]);
    for path in heads {
        if path.exists() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    let commit = std::env::var("VAULTMESH_GIT_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| {
            let out = Command::new("git")
                .args(["rev-parse", "--short=12", "HEAD"])
                .current_dir(&root)
                .output()
                .ok()?;
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=VAULTMESH_GIT_COMMIT={commit}");
}
