//! Fixture trees for rule tests: a temporary `root` and `proc`.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::sovereign::rule::{RuleError, RuleOutput, ScanContext, ScanRule, run_rule};

pub struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    pub fn new() -> Fixture {
        let f = Fixture {
            dir: tempfile::tempdir().expect("tempdir"),
        };
        std::fs::create_dir_all(f.root()).unwrap();
        std::fs::create_dir_all(f.proc()).unwrap();
        f
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    pub fn proc(&self) -> PathBuf {
        self.dir.path().join("proc")
    }

    /// Writes `node_path` (absolute on the node) under the fixture root.
    pub fn file(&self, node_path: &str, content: &str) -> PathBuf {
        let p = self.root().join(node_path.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, content).unwrap();
        p
    }

    /// Sets the mode of `node_path` under the fixture root.
    pub fn chmod(&self, node_path: &str, mode: u32) {
        let p = self.root().join(node_path.trim_start_matches('/'));
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    pub fn dir(&self, node_path: &str) -> PathBuf {
        let p = self.root().join(node_path.trim_start_matches('/'));
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    /// Writes `rel` (e.g. `net/tcp`, `sys/kernel/kptr_restrict`) under the fixture proc.
    pub fn proc_file(&self, rel: &str, content: &str) {
        let p = self.proc().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }

    pub fn ctx(&self) -> ScanContext {
        ScanContext {
            root: self.root(),
            proc: self.proc(),
            vaultmesh_root: PathBuf::from("/opt/vaultmesh"),
            agent_exe: None,
            agent_config: None,
            deadline: Instant::now() + Duration::from_secs(30),
            max_files: 10_000,
        }
    }

    pub fn run(&self, rule: &dyn ScanRule, name: &'static str) -> (RuleOutput, Option<RuleError>) {
        run_rule(rule, name, &self.ctx())
    }

    /// Runs `rule` with a context the test adjusted (agent paths, `max_files`, ...).
    pub fn run_with(
        &self,
        rule: &dyn ScanRule,
        name: &'static str,
        ctx: &ScanContext,
    ) -> (RuleOutput, Option<RuleError>) {
        run_rule(rule, name, ctx)
    }

    /// The host path of `node_path` under the fixture root.
    pub fn path(&self, node_path: &str) -> PathBuf {
        self.root().join(node_path.trim_start_matches('/'))
    }

    /// Creates a symlink at `node_path` (under the fixture root) pointing at `target` as given.
    pub fn symlink(&self, target: &str, node_path: &str) {
        let p = self.path(node_path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(target, p).unwrap();
    }

    /// The uid and gid that own the files this fixture creates (the test's own, root or not).
    pub fn owner(&self) -> (u32, u32) {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(self.root()).unwrap();
        (m.uid(), m.gid())
    }
}

/// Lowercase hex SHA-256 of `text`.
pub fn sha(text: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// Keys whose value differs between two fact maps (present in `before`).
pub fn changed_keys(
    before: &std::collections::BTreeMap<String, String>,
    after: &std::collections::BTreeMap<String, String>,
) -> Vec<String> {
    before
        .keys()
        .filter(|k| before.get(*k) != after.get(*k))
        .cloned()
        .collect()
}
