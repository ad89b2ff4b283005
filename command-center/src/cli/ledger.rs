//! `ledger build|verify|prove`: the Merkle ledger over the scan log, offline.

use std::path::PathBuf;

use clap::Subcommand;
use vaultmesh_store::logs;

use super::Failure;
use super::logs::LogDirArg;

#[derive(Debug, Subcommand)]
pub enum LedgerCommand {
    /// Extend the chain with a checkpoint over the whole log (appends a line to
    /// PROOFCHAIN.jsonl, converting a PROOFCHAIN.json first; refuses a log that no longer
    /// matches what was signed).
    Build {
        #[command(flatten)]
        dir: LogDirArg,
        /// The signing key (`keygen`), the same the Command Center signs commands with.
        #[arg(long, env = "VAULTMESH_CC_KEY_FILE", value_name = "FILE")]
        signing_key: PathBuf,
        /// Origin line and key name of new chains.
        #[arg(long, default_value = vaultmesh_store::ledger::DEFAULT_ORIGIN)]
        origin: String,
    },
    /// Recompute everything from the log and check every signature, root, leaf and
    /// consistency proof of PROOFCHAIN.jsonl (or PROOFCHAIN.json); exit 1 naming the first bad
    /// line or proof.
    Verify {
        #[command(flatten)]
        dir: LogDirArg,
        /// Require this signer (base64 Ed25519 public key, as `keygen` prints it).
        #[arg(long, value_name = "BASE64")]
        public_key: Option<String>,
    },
    /// Print a scan's leaf, its inclusion proof and the checkpoint it is proven against (JSON).
    Prove {
        #[command(flatten)]
        dir: LogDirArg,
        #[arg(long, value_name = "UUID")]
        scan_id: String,
    },
}

pub fn ledger(cmd: LedgerCommand) -> Result<(), Failure> {
    use vaultmesh_store::ledger::{self, LedgerError};
    let code = |e: &LedgerError| match e {
        LedgerError::Tampered(_) | LedgerError::Chain(_) => 1,
        LedgerError::NotFound(_) | LedgerError::Io(..) | LedgerError::Busy(_) => 2,
    };
    match cmd {
        LedgerCommand::Build {
            dir,
            signing_key,
            origin,
        } => {
            let text = std::fs::read_to_string(&signing_key)
                .map_err(|e| (2, format!("--signing-key {}: {e}", signing_key.display())))?;
            let key = vaultmesh_proto::auth::NodeKey::from_base64(&text).map_err(|_| {
                (
                    2,
                    format!(
                        "--signing-key {}: not a key written by `keygen`",
                        signing_key.display()
                    ),
                )
            })?;
            logs::require_dir(&dir.log_dir).map_err(|e| (2, e.to_string()))?;
            if origin.trim().is_empty() || origin.contains(['\n', ' ', '+']) {
                return Err((2, "--origin must be one line without spaces or '+'".into()));
            }
            match ledger::build_offline(&dir.log_dir, &origin, &key) {
                Ok(Some(size)) => println!("ok: signed a checkpoint of {size} lines"),
                Ok(None) => println!("ok: nothing new to sign"),
                Err(e) => return Err((code(&e), e.to_string())),
            }
            Ok(())
        }
        LedgerCommand::Verify { dir, public_key } => {
            let pinned = public_key
                .map(|k| {
                    vaultmesh_proto::auth::parse_public_key(&k)
                        .map_err(|e| (2, format!("--public-key: {e}")))
                })
                .transpose()?;
            match ledger::verify_offline(&dir.log_dir, pinned.as_ref()) {
                Ok(v) => {
                    println!(
                        "ok: {} lines, {} checkpoints in {}, every signature, root, leaf and consistency proof verified",
                        v.lines, v.checkpoints, v.file
                    );
                    if v.torn > 0 {
                        println!(
                            "note: the last {} bytes of {} are an unfinished checkpoint line (an append a crash interrupted; ROOT.txt never named it), ignored; the Command Center cuts them when it starts",
                            v.torn, v.file
                        );
                    }
                    Ok(())
                }
                Err(e) => Err((code(&e), e.to_string())),
            }
        }
        LedgerCommand::Prove { dir, scan_id } => {
            let id = uuid::Uuid::parse_str(&scan_id)
                .map_err(|e| (2, format!("--scan-id {scan_id:?}: {e}")))?;
            let proof =
                ledger::prove_offline(&dir.log_dir, id).map_err(|e| (code(&e), e.to_string()))?;
            println!(
                "{}",
                serde_json::to_string_pretty(&proof).map_err(|e| (1, e.to_string()))?
            );
            Ok(())
        }
    }
}
