//! The node's identity: a UUID and an Ed25519 key generated on first run and kept in the state
//! directory, and the marker that says the key is enrolled with the Command Center.
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
const NODE_KEY_FILE: &str = "node.key";
const ENROLLED_FILE: &str = "enrolled";

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: does not hold a UUID ({content:?}); fix or remove it to enroll as a new node")]
    Corrupt { path: PathBuf, content: String },
    #[error(
        "{path}: {reason}; fix or remove it (and revoke the node on the Command Center) to enroll a new key"
    )]
    BadKey { path: PathBuf, reason: String },
    /// A state file (replay store, receipt chain) that cannot be read or written.
    #[error("{path}: {reason}")]
    BadState { path: PathBuf, reason: String },
}

/// Writes `content` to `state_dir/name` atomically with mode 0600, creating the directory (0700).
pub(crate) fn write_private(
    state_dir: &Path,
    name: &str,
    content: &str,
) -> Result<(), IdentityError> {
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| IdentityError::Io { path: p, source }
    };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(state_dir)
        .map_err(io(state_dir))?;
    let path = state_dir.join(name);
    let tmp = state_dir.join(format!(".{name}.tmp"));
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io(&tmp))?;
    f.write_all(content.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(io(&tmp))?;
    fs::rename(&tmp, &path).map_err(io(&path))?;
    fs::File::open(state_dir)
        .and_then(|d| d.sync_all())
        .map_err(io(state_dir))
}

/// Reads the node key from `state_dir`, generating one from the OS random source if absent.
pub fn load_or_create_node_key(
    state_dir: &Path,
) -> Result<vaultmesh_proto::auth::NodeKey, IdentityError> {
    use vaultmesh_proto::auth::NodeKey;
    let path = state_dir.join(NODE_KEY_FILE);
    match fs::read_to_string(&path) {
        Ok(text) => {
            return NodeKey::from_base64(&text).map_err(|e| IdentityError::BadKey {
                path,
                reason: e.to_string(),
            });
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(IdentityError::Io { path, source: e }),
    }
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| IdentityError::BadKey {
        path: path.clone(),
        reason: format!("no OS randomness: {e}"),
    })?;
    let key = NodeKey::from_seed(seed);
    write_private(state_dir, NODE_KEY_FILE, &format!("{}\n", key.to_base64()))?;
    tracing::info!(public_key = %key.public_base64(), path = %path.display(), "Generated a new node key.");
    Ok(key)
}

/// Replaces the node key with a new one, for a node re-admitted after revocation: the old key
/// is kept as `node.key.revoked-<unix time>` (mode 0600), the enrollment marker is removed, and
/// the new key is written like [`load_or_create_node_key`] does. Returns the old and new public
/// keys and where the old key went. The node id stays.
pub fn rekey(state_dir: &Path) -> Result<(String, String, PathBuf), IdentityError> {
    let path = state_dir.join(NODE_KEY_FILE);
    let old = load_or_create_node_key(state_dir)?;
    let archived = state_dir.join(format!(
        "{NODE_KEY_FILE}.revoked-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default()
    ));
    fs::rename(&path, &archived).map_err(|source| IdentityError::Io {
        path: path.clone(),
        source,
    })?;
    forget_enrollment(state_dir);
    let new = load_or_create_node_key(state_dir)?;
    Ok((old.public_base64(), new.public_base64(), archived))
}

/// Whether `state_dir` holds a node id and a node key (the agent has run there).
pub fn exists(state_dir: &Path) -> bool {
    state_dir.join(NODE_ID_FILE).is_file() && state_dir.join(NODE_KEY_FILE).is_file()
}

/// Whether this key is recorded as enrolled.
pub fn is_enrolled(state_dir: &Path, public_key: &str) -> bool {
    fs::read_to_string(state_dir.join(ENROLLED_FILE)).is_ok_and(|t| t.trim() == public_key)
}

/// Records that this key is enrolled.
pub fn mark_enrolled(state_dir: &Path, public_key: &str) -> Result<(), IdentityError> {
    write_private(state_dir, ENROLLED_FILE, &format!("{public_key}\n"))
}

/// Forgets the enrollment (the Command Center no longer knows the node).
pub fn forget_enrollment(state_dir: &Path) {
    let _ = fs::remove_file(state_dir.join(ENROLLED_FILE));
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
    use vaultmesh_proto::auth::NodeKey;

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
    fn node_key_is_created_once_private_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create_node_key(dir.path()).unwrap();
        let b = load_or_create_node_key(dir.path()).unwrap();
        assert_eq!(a.public_base64(), b.public_base64());
        let mode = fs::metadata(dir.path().join(NODE_KEY_FILE))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        assert!(!is_enrolled(dir.path(), &a.public_base64()));
        mark_enrolled(dir.path(), &a.public_base64()).unwrap();
        assert!(is_enrolled(dir.path(), &a.public_base64()));
        forget_enrollment(dir.path());
        assert!(!is_enrolled(dir.path(), &a.public_base64()));

        mark_enrolled(dir.path(), &a.public_base64()).unwrap();
        let (old, new, archived) = rekey(dir.path()).unwrap();
        assert_eq!(old, a.public_base64());
        assert_ne!(new, old, "a new key");
        assert_eq!(
            load_or_create_node_key(dir.path()).unwrap().public_base64(),
            new
        );
        assert!(
            !is_enrolled(dir.path(), &new),
            "the new key is not enrolled yet"
        );
        assert_eq!(
            NodeKey::from_base64(&fs::read_to_string(&archived).unwrap())
                .unwrap()
                .public_base64(),
            old,
            "the old key is kept, not destroyed"
        );
        fs::write(dir.path().join(NODE_KEY_FILE), "garbage").unwrap();
        assert!(
            load_or_create_node_key(dir.path())
                .unwrap_err()
                .to_string()
                .contains("revoke the node")
        );
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
