//! Fixture trees for rule tests: a temporary `root` and `proc`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
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

    pub fn run_with(
        &self,
        rule: &dyn ScanRule,
        name: &'static str,
        ctx: &ScanContext,
    ) -> (RuleOutput, Option<RuleError>) {
        let _ = Path::new("");
        run_rule(rule, name, ctx)
    }
}
