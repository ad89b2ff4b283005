//! The ledger: an RFC 9162 Merkle tree over the lines of `sovereign-scans.jsonl`, published as
//! signed checkpoints (`ROOT.txt`) and a chain of them with consistency proofs
//! (`PROOFCHAIN.json`) that anyone can verify offline. See `docs/LEDGER.md`.
//!
//! - [`chain`]: the two files, extending the chain and verifying it.
//! - [`Ledger`] (here): the Command Center's live ledger — it hashes the log's lines as they
//!   land (reading the file, so it hashes exactly the bytes on disk), signs a checkpoint per
//!   batch, serves roots and inclusion proofs, and raises a tamper alarm when the log no longer
//!   matches what was signed. Without a key it signs nothing and adopts a chain that
//!   `ledger build` extended offline, once it verifies against the log and extends the one
//!   served.

pub mod chain;

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use vaultmesh_proto::auth::NodeKey;
use vaultmesh_proto::merkle;

pub use chain::{CHAIN_FILE, LOG_FILE, ProofChain, ROOT_FILE};

/// The default origin (and key name) of the checkpoints.
pub const DEFAULT_ORIGIN: &str = "vaultmesh/sovereign-scans";

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("{path}: {source}", path = .0.display(), source = .1)]
    Io(PathBuf, std::io::Error),
    #[error("{0}")]
    Chain(String),
    /// The log does not match what was signed.
    #[error("tamper alarm: {0}")]
    Tampered(String),
    #[error("{0}")]
    NotFound(String),
    /// Another process holds the ledger.
    #[error("{0}")]
    Busy(String),
}

/// The leaves of the log read so far.
#[derive(Debug, Default, Clone)]
pub struct Leaves {
    /// Leaf hashes, with every complete subtree cached for fast roots and proofs.
    pub tree: merkle::Tree,
    /// `scan_id` of each line (`None` for a line that is not a scan record).
    pub scan_ids: Vec<Option<Uuid>>,
    /// Bytes of complete lines consumed.
    pub offset: u64,
}

#[derive(Deserialize)]
struct IdOnly {
    record: ScanIdOnly,
}
#[derive(Deserialize)]
struct ScanIdOnly {
    scan_id: Uuid,
}

impl Leaves {
    /// Reads the complete lines after `offset`, up to byte `limit` when given (the durable
    /// length: nothing not yet fsynced is hashed), one line at a time. A line without its
    /// newline yet waits for the next call.
    pub fn read_more(&mut self, dir: &Path, limit: Option<u64>) -> Result<usize, LedgerError> {
        use std::io::BufRead;
        let path = dir.join(LOG_FILE);
        let io = |e| LedgerError::Io(path.clone(), e);
        let f = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && self.offset == 0 => return Ok(0),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(LedgerError::Tampered(format!(
                    "{LOG_FILE} disappeared after {} lines were read",
                    self.tree.size()
                )));
            }
            Err(e) => return Err(io(e)),
        };
        let len = f.metadata().map_err(io)?.len();
        if len < self.offset {
            return Err(LedgerError::Tampered(format!(
                "{LOG_FILE} shrank from {} to {len} bytes",
                self.offset
            )));
        }
        let end = limit.map_or(len, |l| l.min(len));
        if end <= self.offset {
            return Ok(0);
        }
        let mut f = f;
        f.seek(SeekFrom::Start(self.offset)).map_err(io)?;
        let mut reader = std::io::BufReader::with_capacity(1 << 20, f.take(end - self.offset));
        let mut line = Vec::new();
        let mut added = 0;
        loop {
            line.clear();
            let n = reader.read_until(b'\n', &mut line).map_err(io)?;
            if n == 0 || line.last() != Some(&b'\n') {
                break; // end, or a line still being written
            }
            let bytes = &line[..n - 1];
            self.tree.push(merkle::leaf_hash(bytes));
            self.scan_ids.push(
                serde_json::from_slice::<IdOnly>(bytes)
                    .ok()
                    .map(|l| l.record.scan_id),
            );
            self.offset += n as u64;
            added += 1;
        }
        Ok(added)
    }

    /// All leaves of the log in `dir`.
    pub fn read(dir: &Path) -> Result<Leaves, LedgerError> {
        let mut l = Leaves::default();
        l.read_more(dir, None)?;
        Ok(l)
    }
}

/// `GET /api/ledger/root`.
#[derive(Debug, Clone, Serialize)]
pub struct RootView {
    pub origin: String,
    /// Tree size of the newest signed checkpoint.
    pub size: u64,
    /// Its root, lowercase hex.
    pub root: Option<String>,
    /// `ROOT.txt`.
    pub signed_note: Option<String>,
    pub verifier_key: Option<String>,
    /// Lines in the log (may be ahead of the checkpoint until the next batch).
    pub log_lines: u64,
    pub checkpoints: usize,
    /// Set when the log does not match what was signed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alarm: Option<String>,
}

/// `GET /api/ledger/proof/{scan_id}` and `ledger prove`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProofView {
    pub scan_id: Uuid,
    /// 0-based leaf index (line number − 1).
    pub index: u64,
    /// SHA-256(0x00 ‖ line), hex.
    pub leaf_hash: String,
    pub tree_size: u64,
    pub root: String,
    /// Inclusion proof, hex hashes, leaf to root.
    pub inclusion: Vec<String>,
    pub signed_note: String,
}

#[derive(Debug)]
struct State {
    leaves: Leaves,
    chain: Option<ProofChain>,
    index: HashMap<Uuid, u64>,
    alarm: Option<String>,
    /// `PROOFCHAIN.json` as last looked at (without a key: a change is a chain built offline).
    chain_file: Option<FileStamp>,
    /// A chain built offline signs lines this process has not read yet: look again.
    chain_waiting: bool,
}

/// Enough of a file's metadata to see that it changed: length, modification time, inode.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp(u64, Option<std::time::SystemTime>, u64);

impl FileStamp {
    fn of(path: &Path) -> Option<FileStamp> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path).ok()?;
        Some(FileStamp(m.len(), m.modified().ok(), m.ino()))
    }
}

/// The Command Center's live ledger.
#[derive(Debug)]
pub struct Ledger {
    dir: PathBuf,
    origin: String,
    key: Option<Arc<NodeKey>>,
    state: Mutex<State>,
}

impl Ledger {
    /// Reads the log and the chain and checks one against the other. A log that no longer
    /// matches what was signed (shorter, or a changed line) raises the alarm, logged loudly; the
    /// chain is then never extended by this process.
    pub fn open(
        dir: &Path,
        origin: &str,
        key: Option<Arc<NodeKey>>,
    ) -> Result<Ledger, LedgerError> {
        // Only a signer writes the chain; a Command Center without a key leaves it to
        // `ledger build`. The caller holds the log directory's lock (`serve` does), so no
        // `ledger build` runs meanwhile.
        let leaves = Leaves::read(dir)?;
        let chain = ProofChain::load(dir)?;
        let pinned = key
            .as_ref()
            .and_then(|k| vaultmesh_proto::auth::parse_public_key(&k.public_base64()).ok());
        let alarm = check(dir, chain.as_ref(), &leaves, pinned.as_ref())
            .err()
            .map(|e| e.to_string());
        if let Some(a) = &alarm {
            tracing::error!(alarm = %a, "LEDGER TAMPER ALARM: the scan log does not match its signed checkpoints; the chain will not be extended.");
        }
        let index = index_of(&leaves);
        let chain_file = FileStamp::of(&dir.join(CHAIN_FILE));
        Ok(Ledger {
            dir: dir.to_path_buf(),
            origin: chain
                .as_ref()
                .map_or_else(|| origin.to_string(), |c| c.origin.clone()),
            key,
            state: Mutex::new(State {
                leaves,
                chain,
                index,
                alarm,
                chain_file,
                chain_waiting: false,
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn alarm(&self) -> Option<String> {
        self.lock().alarm.clone()
    }

    /// Hashes new lines and, if there are any beyond the newest checkpoint, signs and writes a
    /// new one. Returns the new tree size when it checkpointed.
    pub fn refresh(&self, durable: Option<u64>) -> Result<Option<u64>, LedgerError> {
        let mut st = self.lock();
        if st.alarm.is_some() {
            return Ok(None);
        }
        let before = st.leaves.tree.size() as usize;
        if let Err(e) = st.leaves.read_more(&self.dir, durable) {
            if let LedgerError::Tampered(m) = &e {
                tracing::error!(alarm = %m, "LEDGER TAMPER ALARM");
                st.alarm = Some(e.to_string());
            }
            return Err(e);
        }
        for i in before..st.leaves.tree.size() as usize {
            if let Some(id) = st.leaves.scan_ids[i] {
                st.index.entry(id).or_insert(i as u64);
            }
        }
        let Some(key) = &self.key else {
            return self.adopt_offline_chain(&mut st).map(|_| None);
        };
        let State { leaves, chain, .. } = &mut *st;
        let chain = chain.get_or_insert_with(|| ProofChain::new(&self.origin, key));
        if chain.extend(&leaves.tree, key)? {
            chain.save(&self.dir)?;
            return Ok(Some(chain.size()));
        }
        Ok(None)
    }

    /// Without a signing key this process never writes the chain; `ledger build` extends it on
    /// a copy of the log whose `PROOFCHAIN.json` and `ROOT.txt` are copied back here (it cannot
    /// run on this directory while this process holds its lock). When
    /// `PROOFCHAIN.json` changes, the new chain is served once it verifies against the log (by
    /// its own key, as at start) and extends the chain served; one that does not is the tamper
    /// alarm. A file that does not parse (still being copied) is looked at again when it
    /// changes; a chain over lines not read yet, on the next refresh. Returns whether it adopted.
    fn adopt_offline_chain(&self, st: &mut State) -> Result<bool, LedgerError> {
        let stamp = FileStamp::of(&self.dir.join(CHAIN_FILE));
        if stamp == st.chain_file && !st.chain_waiting {
            return Ok(false);
        }
        let changed = stamp != st.chain_file;
        st.chain_file = stamp;
        st.chain_waiting = false;
        let served = st.chain.as_ref().filter(|c| !c.checkpoints.is_empty());
        let new = match ProofChain::load(&self.dir) {
            Ok(Some(c)) if !c.checkpoints.is_empty() => c,
            Ok(_) if served.is_none() => return Ok(false),
            Ok(_) => {
                return Err(self.raise(
                    st,
                    format!(
                        "{CHAIN_FILE} was removed or emptied while the Command Center served it"
                    ),
                ));
            }
            Err(e) => {
                if changed {
                    tracing::warn!(error = %e, "The ledger chain file changed but does not parse (still being copied?); serving the previous chain.");
                }
                return Ok(false);
            }
        };
        if let Some(old) = served {
            if new == *old {
                return Ok(false);
            }
            if new.origin != old.origin
                || new.verifier_key != old.verifier_key
                || !new.checkpoints.starts_with(&old.checkpoints)
            {
                return Err(self.raise(
                    st,
                    format!(
                        "{CHAIN_FILE} was replaced by a chain that does not extend the one served (size {}): rolled back, rewritten or signed by another key",
                        old.size()
                    ),
                ));
            }
        }
        if new.size() > st.leaves.tree.size() {
            st.chain_waiting = true;
            return Ok(false);
        }
        if let Err(e) = new.verify(st.leaves.tree.leaves(), None) {
            return Err(self.raise(st, format!("{CHAIN_FILE} built offline: {e}")));
        }
        tracing::info!(
            size = new.size(),
            checkpoints = new.checkpoints.len(),
            "Ledger chain built offline adopted."
        );
        st.chain = Some(new);
        Ok(true)
    }

    /// Raises the tamper alarm; the error to return ([`Ledger::run`] logs it and opens the
    /// incident).
    fn raise(&self, st: &mut State, alarm: String) -> LedgerError {
        let e = LedgerError::Tampered(alarm);
        st.alarm = Some(e.to_string());
        e
    }

    /// Refreshes every `interval` until `cancel`, hashing only what `store` reports durable. A
    /// tamper alarm raised while running also opens a critical incident.
    pub async fn run(
        self: Arc<Self>,
        store: Arc<dyn crate::Store>,
        interval: Duration,
        cancel: CancellationToken,
    ) {
        if self.key.is_none() {
            tracing::info!("No signing key: the ledger is read but no checkpoint is signed.");
        }
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = ticker.tick() => {}
            }
            let this = Arc::clone(&self);
            let durable = store.scans_durable_len();
            match tokio::task::spawn_blocking(move || this.refresh(Some(durable))).await {
                Ok(Ok(Some(size))) => tracing::info!(size, "Ledger checkpoint signed."),
                Ok(Ok(None)) => {}
                Ok(Err(LedgerError::Tampered(m))) => raise_incident(store.as_ref(), &m).await,
                Ok(Err(e)) => tracing::error!(error = %e, "Ledger update failed."),
                Err(e) => tracing::error!(error = %e, "Ledger task failed."),
            }
        }
    }

    /// The newest checkpoint.
    pub fn root(&self) -> RootView {
        let st = self.lock();
        let last = st.chain.as_ref().and_then(|c| c.checkpoints.last());
        RootView {
            origin: st
                .chain
                .as_ref()
                .map_or_else(|| self.origin.clone(), |c| c.origin.clone()),
            size: last.map_or(0, |e| e.size),
            root: last.map(|e| e.root.clone()),
            signed_note: last.map(|e| e.signed_note.clone()),
            verifier_key: st.chain.as_ref().map(|c| c.verifier_key.clone()),
            log_lines: st.leaves.tree.size(),
            checkpoints: st.chain.as_ref().map_or(0, |c| c.checkpoints.len()),
            alarm: st.alarm.clone(),
        }
    }

    /// The inclusion proof of `scan_id` in the newest checkpoint (refused under the alarm).
    pub fn proof(&self, scan_id: Uuid) -> Result<ProofView, LedgerError> {
        let st = self.lock();
        if let Some(a) = &st.alarm {
            return Err(LedgerError::Tampered(a.clone()));
        }
        prove(&st.leaves, st.chain.as_ref(), &st.index, scan_id)
    }
}

/// Opens a fleet-wide critical incident for a tamper alarm: loud and durable.
pub async fn raise_incident(store: &dyn crate::Store, alarm: &str) {
    tracing::error!(alarm = %alarm, "LEDGER TAMPER ALARM");
    let body = serde_json::json!({
        "title": "Ledger tamper alarm: the scan log does not match its signed checkpoints",
        "severity": "critical",
        "text": alarm,
    });
    if let Err(e) = store
        .record_system_event("incident", None, body, Vec::new())
        .await
    {
        tracing::error!(error = %e, "Cannot record the ledger tamper alarm as an incident.");
    }
}

/// The chain against the log and `ROOT.txt`: the chain verifies (by `pinned` when given); it
/// was signed by `pinned`; `ROOT.txt`, when present, is a note of this chain and not newer than
/// it — so deleting or rolling back `PROOFCHAIN.json` alone is caught. A `ROOT.txt` older than
/// the chain's newest note (a crash between the two writes) is rewritten.
fn check(
    dir: &Path,
    chain: Option<&ProofChain>,
    leaves: &Leaves,
    pinned: Option<&ed25519_dalek::VerifyingKey>,
) -> Result<(), LedgerError> {
    let root_txt = match std::fs::read_to_string(dir.join(ROOT_FILE)) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(LedgerError::Io(dir.join(ROOT_FILE), e)),
    };
    let Some(chain) = chain.filter(|c| !c.checkpoints.is_empty()) else {
        return match root_txt {
            Some(_) => Err(LedgerError::Tampered(format!(
                "{ROOT_FILE} exists but {CHAIN_FILE} is missing or empty: the chain was removed"
            ))),
            None => Ok(()),
        };
    };
    chain.verify(leaves.tree.leaves(), pinned)?;
    let Some(note) = root_txt else {
        return chain.save(dir); // restore ROOT.txt from the chain
    };
    let position = chain.checkpoints.iter().position(|e| e.signed_note == note);
    match position {
        Some(i) if i + 1 == chain.checkpoints.len() => Ok(()),
        Some(_) => chain.save(dir), // ROOT.txt lagged behind (crash between the writes)
        None => Err(LedgerError::Tampered(format!(
            "{ROOT_FILE} is not a checkpoint of {CHAIN_FILE}: the chain was replaced or rolled back"
        ))),
    }
}

fn index_of(leaves: &Leaves) -> HashMap<Uuid, u64> {
    let mut index = HashMap::new();
    for (i, id) in leaves.scan_ids.iter().enumerate() {
        if let Some(id) = id {
            index.entry(*id).or_insert(i as u64);
        }
    }
    index
}

/// The inclusion proof of `scan_id` (its first line) in the newest checkpoint of `chain`.
pub fn prove(
    leaves: &Leaves,
    chain: Option<&ProofChain>,
    index: &HashMap<Uuid, u64>,
    scan_id: Uuid,
) -> Result<ProofView, LedgerError> {
    let i = *index
        .get(&scan_id)
        .ok_or_else(|| LedgerError::NotFound(format!("no scan {scan_id} in {LOG_FILE}")))?;
    let last = chain
        .and_then(|c| c.checkpoints.last())
        .ok_or_else(|| LedgerError::NotFound("no signed checkpoint yet".into()))?;
    if i >= last.size {
        return Err(LedgerError::NotFound(format!(
            "scan {scan_id} (line {}) is not in a signed checkpoint yet (size {}); try again after the next one",
            i + 1,
            last.size
        )));
    }
    let proof = leaves
        .tree
        .inclusion(i, last.size)
        .ok_or_else(|| LedgerError::Chain("inclusion proof out of range".into()))?;
    Ok(ProofView {
        scan_id,
        index: i,
        leaf_hash: hex::encode(leaves.tree.leaves()[i as usize]),
        tree_size: last.size,
        root: last.root.clone(),
        inclusion: proof.iter().map(hex::encode).collect(),
        signed_note: last.signed_note.clone(),
    })
}

/// `ledger prove`: the proof of `scan_id` from the files in `dir`.
pub fn prove_offline(dir: &Path, scan_id: Uuid) -> Result<ProofView, LedgerError> {
    let leaves = Leaves::read(dir)?;
    let chain = ProofChain::load(dir)?;
    prove(&leaves, chain.as_ref(), &index_of(&leaves), scan_id)
}

/// `ledger verify`: checks the chain in `dir` against its log; returns (lines, checkpoints).
pub fn verify_offline(
    dir: &Path,
    pinned: Option<&ed25519_dalek::VerifyingKey>,
) -> Result<(u64, usize), LedgerError> {
    let leaves = Leaves::read(dir)?;
    let chain = ProofChain::load(dir)?
        .ok_or_else(|| LedgerError::NotFound(format!("no {CHAIN_FILE} in {}", dir.display())))?;
    chain.verify(leaves.tree.leaves(), pinned)?;
    let root_txt = std::fs::read_to_string(dir.join(ROOT_FILE))
        .map_err(|e| LedgerError::Io(dir.join(ROOT_FILE), e))?;
    if chain.checkpoints.last().map(|e| e.signed_note.as_str()) != Some(root_txt.as_str()) {
        return Err(LedgerError::Tampered(format!(
            "{ROOT_FILE} is not the newest checkpoint of {CHAIN_FILE}"
        )));
    }
    Ok((leaves.tree.size(), chain.checkpoints.len()))
}

/// `ledger build`: extends the chain in `dir` over its log, signing with `key`. Refuses a log
/// that does not match the chain. Returns the new size, or `None` when nothing was added.
pub fn build_offline(dir: &Path, origin: &str, key: &NodeKey) -> Result<Option<u64>, LedgerError> {
    let _lock =
        crate::dirlock::DirLock::acquire(dir).map_err(|e| LedgerError::Busy(e.to_string()))?;
    let leaves = Leaves::read(dir)?;
    let pinned = vaultmesh_proto::auth::parse_public_key(&key.public_base64())
        .map_err(|e| LedgerError::Chain(e.to_string()))?;
    let chain = ProofChain::load(dir)?;
    check(dir, chain.as_ref(), &leaves, Some(&pinned))?;
    let mut chain = match chain {
        Some(c) if !c.checkpoints.is_empty() => c,
        _ => ProofChain::new(origin, key),
    };
    if chain.extend(&leaves.tree, key)? {
        chain.save(dir)?;
        Ok(Some(chain.size()))
    } else {
        Ok(None)
    }
}
