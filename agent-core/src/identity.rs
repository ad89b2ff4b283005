//! The node's identity: a UUID generated on first run and kept in the state directory.
//!
//! The id is written atomically (temp file, fsync, rename, fsync of the directory) so a crash
//! can never leave a half-written id behind. An unreadable or corrupt id file is an error, never
//! a reason to mint a new identity: that would silently turn one node into two.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use uuid::Uuid;

const NODE_ID_FILE: &str = "node_id";

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: does not hold a UUID ({content:?}); fix or remove it to enroll as a new node")]
    Corrupt { path: PathBuf, content: String },
}

/// Reads the node id from `state_dir`, creating the directory (0700) and a new v4 id if absent.
pub fn load_or_create_node_id(state_dir: &Path) -> Result<Uuid, IdentityError> {
    let path = state_dir.join(NODE_ID_FILE);
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| IdentityError::Io { path: p, source }
    };
    match fs::read_to_string(&path) {
        Ok(text) => {
            return Uuid::parse_str(text.trim()).map_err(|_| IdentityError::Corrupt {
                path: path.clone(),
                content: text.chars().take(64).collect(),
            });
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(&path)(e)),
    }

    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(state_dir)
        .map_err(io(state_dir))?;
    let id = Uuid::new_v4();
    let tmp = state_dir.join(format!(".{NODE_ID_FILE}.tmp"));
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io(&tmp))?;
    writeln!(f, "{id}")
        .and_then(|_| f.sync_all())
        .map_err(io(&tmp))?;
    fs::rename(&tmp, &path).map_err(io(&path))?;
    fs::File::open(state_dir)
        .and_then(|d| d.sync_all())
        .map_err(io(state_dir))?;
    tracing::info!(node_id = %id, path = %path.display(), "Generated a new node id.");
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn created_once_then_stable() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("nested/state");
        let a = load_or_create_node_id(&state).unwrap();
        let b = load_or_create_node_id(&state).unwrap();
        assert_eq!(a, b);
        let mode = fs::metadata(&state).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let mode = fs::metadata(state.join(NODE_ID_FILE))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn corrupt_file_is_an_error_not_a_new_identity() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(NODE_ID_FILE), "not-a-uuid").unwrap();
        let err = load_or_create_node_id(dir.path()).unwrap_err().to_string();
        assert!(err.contains("does not hold a UUID"), "{err}");
        assert_eq!(
            fs::read_to_string(dir.path().join(NODE_ID_FILE)).unwrap(),
            "not-a-uuid"
        );
    }
}
