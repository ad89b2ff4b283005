//! [`DirLock`]: one writer per log directory.
//!
//! Two Command Centers on one log directory would each replay the logs, then append to them
//! independently — their states split (a node enrolled on one is unknown to the other) and
//! their lines interleave. So every writer (`serve`, `demo`, `ledger build`, `store import`
//! and `export`) takes an exclusive `flock` on `vaultmesh.lock` in the directory for as long as
//! it runs, and writes its pid there so a second one can say who holds it. The kernel drops the
//! lock when the holder exits, however it exits (`kill -9` included): there is no stale lock
//! to clean up. Read-only tools (`logs`, `ledger verify|prove`) never take it.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// Name of the lock file inside the log directory.
pub const LOCK_FILE: &str = "vaultmesh.lock";

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds it.
    #[error(
        "log directory {dir} is in use: {lock} is held by {holder}; stop it, or give this one another directory",
        dir = dir.display(),
        lock = lock.display(),
        holder = match pid { Some(p) => format!("pid {p}"), None => "another process".into() }
    )]
    InUse {
        dir: PathBuf,
        lock: PathBuf,
        pid: Option<u32>,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The held lock; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct DirLock {
    _file: File,
    path: PathBuf,
}

impl DirLock {
    /// Takes the lock of `dir` (created, mode 0700, if missing) without waiting.
    pub fn acquire(dir: &Path) -> Result<DirLock, LockError> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| LockError::Io { path, source }
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io(dir))?;
        let path = dir.join(LOCK_FILE);
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io(&path))?;
        if rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            return Err(LockError::InUse {
                dir: dir.to_path_buf(),
                lock: path,
                pid: text.trim().parse().ok(),
            });
        }
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| writeln!(file, "{}", std::process::id()))
            .map_err(io(&path))?;
        Ok(DirLock { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time_and_the_refusal_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().join("logs");
        let held = DirLock::acquire(&logs).unwrap();
        assert_eq!(
            std::fs::read_to_string(held.path()).unwrap().trim(),
            std::process::id().to_string()
        );
        let err = DirLock::acquire(&logs).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("{}", logs.join(LOCK_FILE).display()))
                && msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        drop(held);
        DirLock::acquire(&logs).expect("free again once dropped");
    }
}
