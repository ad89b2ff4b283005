//! Build script of both binaries: puts the git commit they are built from in
//! `VAULTMESH_GIT_COMMIT`, for `--version`. A release tarball has no `.git`: packagers set
//! `VAULTMESH_GIT_COMMIT` themselves (the PKGBUILD does); otherwise it is `unknown`.

use std::process::Command;

pub fn main() {
    println!("cargo:rerun-if-env-changed=VAULTMESH_GIT_COMMIT");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    // Every commit and checkout moves HEAD's reflog.
    for path in [".git/HEAD", ".git/logs/HEAD"] {
        if root.join(path).exists() {
            println!("cargo:rerun-if-changed={}", root.join(path).display());
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
