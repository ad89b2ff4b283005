//! `keygen [--out FILE] [--show-public]`: the command-signing key.

use super::Failure;

/// `keygen [--out FILE] [--show-public]`.
pub fn keygen(out: &std::path::Path, show_public: bool) -> Result<(), Failure> {
    use vaultmesh_command_center::commands::{KeyFileError, read_signing_key};
    if show_public {
        let key = read_signing_key(out).map_err(|e| {
            let hint = match &e {
                KeyFileError::Unreadable(io) if io.kind() == std::io::ErrorKind::NotFound => {
                    " (create it with `vaultmesh-command-center keygen --out FILE`)"
                }
                _ => "",
            };
            (2, format!("--out {}: {e}{hint}", out.display()))
        })?;
        print_public(&key.public_base64());
        return Ok(());
    }
    let key = vaultmesh_command_center::commands::create_signing_key(out).map_err(|e| {
        match e.kind() {
            std::io::ErrorKind::AlreadyExists => (
                2,
                format!(
                    "{}: already exists (keygen never overwrites a key)",
                    out.display()
                ),
            ),
            _ => (1, format!("{}: {e}", out.display())),
        }
    })?;
    println!("wrote {} (mode 0600)", out.display());
    print_public(&key.public_base64());
    Ok(())
}

/// What agents need of the key: the public key (`VAULTMESH_CC_PUBKEY`) and its id.
pub fn print_public(public: &str) {
    println!("public key: {public}");
    println!("key id: {}", vaultmesh_proto::command::key_id(public));
    println!("agents pin it with VAULTMESH_CC_PUBKEY={public}");
}
