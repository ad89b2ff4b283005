//! The ledger: an RFC 9162 Merkle tree over the lines of `sovereign-scans.jsonl`, published as
//! signed checkpoints (`ROOT.txt`) and a chain of them with consistency proofs
//! (`PROOFCHAIN.jsonl`) that anyone can verify offline. See `docs/LEDGER.md`.
//!
//! - [`chain`]: the chain, making its next checkpoint and verifying it.
//! - [`file`]: the chain on disk — appended a checkpoint at a time, a torn last line cut, the
//!   version 1 `PROOFCHAIN.json` converted once.
//! - [`Ledger`] (here): the Command Center's live ledger — it hashes the log's lines as they
//!   land (the bytes on disk: at start the lines the store's replay read, then the file), signs
//!   a checkpoint per batch, serves roots and inclusion proofs, and raises a tamper alarm when
//!   the log no longer matches what was signed. Without a key it signs nothing and adopts a
//!   chain that `ledger build` extended offline, once it verifies against the log and extends
//!   the one served.

pub mod chain;
pub mod file;

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

pub use chain::{LOG_FILE, ProofChain, ROOT_FILE};
pub use file::{CHAIN_FILE, LEGACY_CHAIN_FILE};

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
    /// Hashes one complete line (without its newline) that follows the lines hashed so far.
    fn push(&mut self, bytes: &[u8]) {
        self.tree.push(merkle::leaf_hash(bytes));
        self.scan_ids.push(
            serde_json::from_slice::<IdOnly>(bytes)
                .ok()
                .map(|l| l.record.scan_id),
        );
        self.offset += bytes.len() as u64 + 1;
    }

    /// Hashes a line of the log that the store's replay read, so the log is read once at start
    /// for both: `line` (without its newline) at byte `offset`, in a file whose first `durable`
    /// bytes are durable (its length once its torn tail was cut). Taken only when it is the
    /// next line and its newline lies within `durable` — the bytes on disk, complete and
    /// fsynced; anything else is left to [`Leaves::read_more`]. Returns whether it was taken.
    pub fn feed(&mut self, offset: u64, line: &[u8], durable: u64) -> bool {
        if offset != self.offset || offset + line.len() as u64 >= durable {
            return false;
        }
        self.push(line);
        true
    }

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
            self.push(&line[..n - 1]);
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
    /// Where the signer appends checkpoints.
    appender: file::Appender,
    /// `PROOFCHAIN.jsonl` and `PROOFCHAIN.json` as last looked at (without a key: a change is
    /// a chain built offline).
    chain_file: [Option<FileStamp>; 2],
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

    /// The chain's files in `dir`.
    fn of_chain(dir: &Path) -> [Option<FileStamp>; 2] {
        file::paths(dir).map(|p| FileStamp::of(&p))
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
    /// Reads the rest of the log after `leaves` (the lines the store's replay hashed: pass
    /// `Leaves::default()` to read it all here) and the chain (converting a version 1
    /// `PROOFCHAIN.json`, cutting an unfinished last line), and checks one against the other.
    /// A log that no longer matches what was signed (shorter, or a changed line) raises the
    /// alarm, logged loudly; the chain is then never extended by this process.
    pub fn open(
        dir: &Path,
        origin: &str,
        key: Option<Arc<NodeKey>>,
        mut leaves: Leaves,
    ) -> Result<Ledger, LedgerError> {
        // Only a signer appends to the chain; a Command Center without a key leaves it to
        // `ledger build`. The caller holds the log directory's lock (`serve` does), so no
        // `ledger build` runs meanwhile, and this process is the one to convert or cut it.
        let fed = leaves.tree.size();
        let read = leaves.read_more(dir, None)?;
        tracing::info!(
            lines = leaves.tree.size(),
            from_replay = fed,
            read_here = read,
            "Ledger leaves hashed."
        );
        let (chain, appender) = file::open(dir)?;
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
        let chain_file = FileStamp::of_chain(dir);
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
                appender,
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
        let State {
            leaves,
            chain,
            appender,
            ..
        } = &mut *st;
        let chain = chain.get_or_insert_with(|| ProofChain::new(&self.origin, key));
        let signed = match chain.next_checkpoint(&leaves.tree, key) {
            Ok(Some(entry)) => appender
                .append(&self.dir, chain, entry)
                .map(|()| Some(chain.size())),
            Ok(None) => Ok(None),
            Err(e) => Err(e),
        };
        if let Err(e @ LedgerError::Tampered(_)) = &signed {
            st.alarm = Some(e.to_string());
        }
        signed
    }

    /// Without a signing key this process never writes the chain; `ledger build` extends it on
    /// a copy of the log whose `PROOFCHAIN.jsonl` and `ROOT.txt` are copied back here (it
    /// cannot run on this directory while this process holds its lock). When
    /// `PROOFCHAIN.jsonl` (or a `PROOFCHAIN.json` from a version 1 signer) changes, the new chain is served once it verifies against the log (by
    /// its own key, as at start) and extends the chain served; one that does not is the tamper
    /// alarm. A file that does not parse (still being copied) is looked at again when it
    /// changes; a chain over lines not read yet, on the next refresh. Returns whether it adopted.
    fn adopt_offline_chain(&self, st: &mut State) -> Result<bool, LedgerError> {
        let stamp = FileStamp::of_chain(&self.dir);
        if stamp == st.chain_file && !st.chain_waiting {
            return Ok(false);
        }
        let changed = stamp != st.chain_file;
        st.chain_file = stamp;
        st.chain_waiting = false;
        let served = st.chain.as_ref().filter(|c| !c.checkpoints.is_empty());
        let new = match file::load(&self.dir) {
            Ok(Some(l)) if !l.chain.checkpoints.is_empty() => l.chain,
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
            if !new.extends(old) {
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
    let newest = &chain.checkpoints[chain.checkpoints.len() - 1].signed_note;
    let Some(note) = root_txt else {
        return file::write_root(dir, newest); // restore ROOT.txt from the chain
    };
    let position = chain.checkpoints.iter().position(|e| e.signed_note == note);
    match position {
        Some(i) if i + 1 == chain.checkpoints.len() => Ok(()),
        Some(_) => file::write_root(dir, newest), // ROOT.txt lagged behind (crash between the writes)
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

/// `ledger prove`: the proof of `scan_id` from the files in `dir` (either chain format).
pub fn prove_offline(dir: &Path, scan_id: Uuid) -> Result<ProofView, LedgerError> {
    let leaves = Leaves::read(dir)?;
    let chain = file::load(dir)?.map(|l| l.chain);
    prove(&leaves, chain.as_ref(), &index_of(&leaves), scan_id)
}

/// What `ledger verify` checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Lines of the log.
    pub lines: u64,
    pub checkpoints: usize,
    /// The chain file verified: [`CHAIN_FILE`] or [`LEGACY_CHAIN_FILE`].
    pub file: &'static str,
    /// Bytes of an unfinished last line of the chain file, ignored (an append a crash
    /// interrupted; `ROOT.txt` never named it).
    pub torn: u64,
}

/// `ledger verify`: checks the chain in `dir` (`PROOFCHAIN.jsonl`, or a version 1
/// `PROOFCHAIN.json`) against its log and `ROOT.txt`, changing nothing.
pub fn verify_offline(
    dir: &Path,
    pinned: Option<&ed25519_dalek::VerifyingKey>,
) -> Result<Verified, LedgerError> {
    let leaves = Leaves::read(dir)?;
    let loaded = file::load(dir)?.ok_or_else(|| {
        LedgerError::NotFound(format!(
            "no {CHAIN_FILE} (nor {LEGACY_CHAIN_FILE}) in {}",
            dir.display()
        ))
    })?;
    let chain = &loaded.chain;
    chain.verify(leaves.tree.leaves(), pinned)?;
    let root_txt = std::fs::read_to_string(dir.join(ROOT_FILE))
        .map_err(|e| LedgerError::Io(dir.join(ROOT_FILE), e))?;
    if chain.checkpoints.last().map(|e| e.signed_note.as_str()) != Some(root_txt.as_str()) {
        return Err(LedgerError::Tampered(format!(
            "{ROOT_FILE} is not the newest checkpoint of {}",
            loaded.file
        )));
    }
    Ok(Verified {
        lines: leaves.tree.size(),
        checkpoints: chain.checkpoints.len(),
        file: loaded.file,
        torn: loaded.torn,
    })
}

/// `ledger build`: extends the chain in `dir` over its log, signing with `key`. Refuses a log
/// that does not match the chain. Returns the new size, or `None` when nothing was added.
pub fn build_offline(dir: &Path, origin: &str, key: &NodeKey) -> Result<Option<u64>, LedgerError> {
    let _lock =
        crate::dirlock::DirLock::acquire(dir).map_err(|e| LedgerError::Busy(e.to_string()))?;
    let leaves = Leaves::read(dir)?;
    let pinned = vaultmesh_proto::auth::parse_public_key(&key.public_base64())
        .map_err(|e| LedgerError::Chain(e.to_string()))?;
    let (chain, mut appender) = file::open(dir)?;
    check(dir, chain.as_ref(), &leaves, Some(&pinned))?;
    let mut chain = match chain {
        Some(c) if !c.checkpoints.is_empty() => c,
        _ => ProofChain::new(origin, key),
    };
    match chain.next_checkpoint(&leaves.tree, key)? {
        Some(entry) => {
            appender.append(dir, &mut chain, entry)?;
            Ok(Some(chain.size()))
        }
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_line(i: u128) -> String {
        format!(
            r#"{{"kind":"scan","ts":"2026-11-29T10:00:00Z","node_id":"{}","record":{{"scan_id":"{}"}}}}"#,
            Uuid::from_u128(1),
            Uuid::from_u128(0xa0 + i)
        )
    }

    #[test]
    fn a_line_is_fed_only_in_order_and_with_its_newline_durable() {
        let mut l = Leaves::default();
        let (a, b) = (scan_line(1), scan_line(2));
        let a_end = a.len() as u64 + 1;
        assert!(!l.feed(5, a.as_bytes(), 1000), "not the next line");
        assert!(
            !l.feed(0, a.as_bytes(), a.len() as u64),
            "its newline is not durable"
        );
        assert!(l.feed(0, a.as_bytes(), a_end));
        assert!(!l.feed(0, a.as_bytes(), 1000), "not twice");
        assert!(l.feed(a_end, b.as_bytes(), 1000));
        assert_eq!((l.tree.size(), l.offset), (2, a_end + b.len() as u64 + 1));
        assert_eq!(l.scan_ids[1], Some(Uuid::from_u128(0xa2)));
    }

    /// The scan log is read once at start: the store's replay hashes every durable line for
    /// the ledger, and the ledger has nothing left to read.
    #[test]
    fn the_store_replay_hashes_the_whole_scan_log_for_the_ledger() {
        let dir = tempfile::tempdir().unwrap();
        let mut text: String = (0..50).map(|i| scan_line(i) + "\n").collect();
        text.push_str("not json at all\n");
        text.push_str(&scan_line(99)[..40]); // a torn tail: never acknowledged, cut at open
        std::fs::write(dir.path().join(LOG_FILE), &text).unwrap();
        let mut fed = Leaves::default();
        let bus = Arc::new(crate::bus::Bus::new(16, 16));
        let (_store, report) = crate::JsonlStore::open_feeding(
            &crate::StoreOptions::new(dir.path().into()),
            bus,
            Some(&mut fed),
        )
        .unwrap();
        assert!(report.lines >= 51);
        assert_eq!(fed.tree.size(), 51, "every complete line, the torn one cut");
        let mut rest = fed.clone();
        assert_eq!(rest.read_more(dir.path(), None).unwrap(), 0, "nothing left");
        let read = Leaves::read(dir.path()).unwrap();
        assert_eq!(fed.tree.leaves(), read.tree.leaves());
        assert_eq!(fed.scan_ids, read.scan_ids);
        assert_eq!(fed.offset, read.offset);
        assert_eq!(
            fed.offset,
            std::fs::metadata(dir.path().join(LOG_FILE)).unwrap().len()
        );
    }
}
