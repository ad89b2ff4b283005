//! [`SeenRequests`]: the signed agent requests accepted within the replay window, kept across
//! restarts — so a captured request is accepted at most once, even if the Command Center
//! restarts within the 300 s its signature stays fresh.
//!
//! A request is known by the SHA-256 of its node id and signature. The file store keeps them in
//! memory and appends each to `seen-requests.bin` in the log directory (40 bytes: the time it
//! was accepted, little-endian `i64` Unix seconds, then the digest) **before** the request is
//! acted on. The append is a `write` — in the page cache, so it survives the process however it
//! ends (`kill -9` included); a background thread fsyncs the file every second, so across a
//! power loss at most the last second's requests are forgotten (and could be replayed within
//! their window). A failed append (a full disk) is cut back to the last whole entry, reported to
//! [`StorageHealth`] like a log write, and the request refused (`503`): the file never holds a
//! torn entry that would shift the ones after it. On open, entries outside the window — older
//! than it, or stamped in the future — are dropped and the file is rewritten; the background
//! thread rewrites it again whenever it holds four times what is live. The PostgreSQL store
//! keeps them in a table every instance shares (see `postgres/schema.rs`), so a request
//! accepted by one instance is refused by the others.
//!
//! Memory is bounded: past `max` live entries, requests are refused (`503`) rather than
//! remembered partially.

use std::collections::{HashSet, VecDeque};
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use vaultmesh_proto::auth::MAX_SKEW_SECS;

use super::health::StorageHealth;

/// How long a digest is kept after its request was accepted: a signature stays fresh for
/// `MAX_SKEW_SECS` either side of its timestamp, which is itself within `MAX_SKEW_SECS` of the
/// time it was accepted.
pub const WINDOW_SECS: i64 = 2 * MAX_SKEW_SECS;

/// The file, in the log directory.
pub const FILE: &str = "seen-requests.bin";

const ENTRY: usize = 40;

/// Most live entries by default.
pub const DEFAULT_MAX: usize = 2_000_000;

/// How often the background thread fsyncs (and, when due, rewrites) the file.
const SYNC_EVERY: Duration = Duration::from_secs(1);

/// What [`SeenRequests::first_time`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Never seen in the window: now remembered (durably for this store).
    First,
    /// Seen already: a replay.
    Again,
    /// The guard is full (`max` live entries): the request cannot be remembered.
    Full,
}

#[derive(Debug, Default)]
struct Live {
    set: HashSet<[u8; 32]>,
    order: VecDeque<(i64, [u8; 32])>,
}

impl Live {
    fn expire(&mut self, now: i64) {
        while let Some((t, k)) = self.order.front() {
            if now.saturating_sub(*t) > WINDOW_SECS {
                self.set.remove(k);
                self.order.pop_front();
            } else {
                break;
            }
        }
    }
}

/// The file: its handle, its length up to the last whole entry, and how many entries it holds.
#[derive(Debug)]
struct Log {
    file: File,
    len: u64,
    entries: usize,
    /// A failed append could not be cut back yet: nothing is appended until it is.
    needs_cut: bool,
}

#[derive(Debug)]
struct Shared {
    live: Mutex<Live>,
    /// `None`: memory only, for tests and tools.
    log: Option<(Mutex<Log>, PathBuf)>,
    health: Arc<StorageHealth>,
}

/// The digests of requests accepted within the window.
#[derive(Debug)]
pub struct SeenRequests {
    shared: Arc<Shared>,
    max: usize,
    /// Stops the background thread when dropped.
    _stop: Option<std::sync::mpsc::Sender<()>>,
}

/// The digest a request is known by.
pub fn digest(node: &uuid::Uuid, signature: &str) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut d = Sha256::new();
    d.update(node.as_bytes());
    d.update(signature.as_bytes());
    d.finalize().into()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl SeenRequests {
    /// Remembers in memory only.
    pub fn in_memory(max: usize) -> SeenRequests {
        SeenRequests {
            shared: Arc::new(Shared {
                live: Mutex::default(),
                log: None,
                health: Arc::default(),
            }),
            max,
            _stop: None,
        }
    }

    /// Opens `dir/seen-requests.bin`: keeps what is within the window at `now` (dropping what
    /// is older and what claims to be from the future), rewrites the file with only that,
    /// appends from then on, and starts the thread that fsyncs it every second.
    pub fn open(
        dir: &Path,
        max: usize,
        now: i64,
        health: Arc<StorageHealth>,
    ) -> std::io::Result<SeenRequests> {
        let path = dir.join(FILE);
        let mut live = Live::default();
        match File::open(&path) {
            Ok(mut f) => {
                let mut bytes = Vec::new();
                f.read_to_end(&mut bytes)?;
                // A torn last entry (a crash mid-write) is dropped.
                for e in bytes.chunks_exact(ENTRY) {
                    let mut t = [0u8; 8];
                    t.copy_from_slice(&e[..8]);
                    let at = i64::from_le_bytes(t);
                    let mut k = [0u8; 32];
                    k.copy_from_slice(&e[8..]);
                    let age = now.saturating_sub(at);
                    if (-MAX_SKEW_SECS..=WINDOW_SECS).contains(&age) && live.set.insert(k) {
                        live.order.push_back((at, k));
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let log = rewrite(&path, &live.order)?;
        let shared = Arc::new(Shared {
            live: Mutex::new(live),
            log: Some((Mutex::new(log), path)),
            health,
        });
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let bg = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("seen-requests".into())
            .spawn(move || {
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(SYNC_EVERY)
                {
                    bg.maintain();
                }
                bg.maintain();
            })?;
        Ok(SeenRequests {
            shared,
            max,
            _stop: Some(stop),
        })
    }

    /// Records `digest` as accepted at `now` unless it was seen within the window. The record
    /// is in the file (page cache) when this returns [`Seen::First`]; a write that fails is cut
    /// back and returned as the error.
    pub fn first_time(&self, digest: [u8; 32], now: i64) -> std::io::Result<Seen> {
        let s = &self.shared;
        let mut live = lock(&s.live);
        live.expire(now);
        if live.set.contains(&digest) {
            return Ok(Seen::Again);
        }
        if live.set.len() >= self.max {
            return Ok(Seen::Full);
        }
        if let Some((log, _)) = &s.log {
            let mut log = lock(log);
            let mut e = [0u8; ENTRY];
            e[..8].copy_from_slice(&now.to_le_bytes());
            e[8..].copy_from_slice(&digest);
            let len = log.len;
            let written = if log.needs_cut {
                log.file.set_len(len).map(|()| log.needs_cut = false)
            } else {
                Ok(())
            }
            .and_then(|()| log.file.write_all(&e));
            if let Err(err) = written {
                // Part of the entry may be in the file: cut it, so the entries after it stay
                // aligned. Until the cut succeeds nothing else is written.
                log.needs_cut = log.file.set_len(len).is_err();
                s.health.write_failed(FILE, &err);
                return Err(err);
            }
            log.len += ENTRY as u64;
            log.entries += 1;
            s.health.write_ok(FILE);
        }
        live.set.insert(digest);
        live.order.push_back((now, digest));
        Ok(Seen::First)
    }

    /// Live entries.
    pub fn len(&self) -> usize {
        lock(&self.shared.live).set.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Shared {
    /// The background thread's turn: fsync what was appended, and rewrite the file when it
    /// holds four times what is live.
    fn maintain(&self) {
        let Some((log, path)) = &self.log else {
            return;
        };
        let due = {
            let live = lock(&self.live);
            let log = lock(log);
            log.entries > 4 * live.order.len().max(16_384)
        };
        if due {
            // Appends wait for the rewrite (rare: a few MB at most a window's worth of
            // requests), so no entry can slip between the snapshot and the new file.
            let live = lock(&self.live);
            let mut log = lock(log);
            match rewrite(path, &live.order) {
                Ok(fresh) => *log = fresh,
                Err(e) => {
                    tracing::warn!(error = %e, "Cannot rewrite {FILE}; it keeps growing until it can.")
                }
            }
            return;
        }
        // fsync on a second handle: appends go on meanwhile.
        let handle = lock(log).file.try_clone();
        if let Err(e) = handle.and_then(|f| f.sync_data()) {
            tracing::warn!(error = %e, "Cannot fsync {FILE}.");
        }
    }
}

/// Writes `entries` to a new file, fsyncs it, renames it over `path` (durably) and opens it for
/// appending.
fn rewrite(path: &Path, entries: &VecDeque<(i64, [u8; 32])>) -> std::io::Result<Log> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("bin.tmp");
    {
        let mut out = std::io::BufWriter::new(
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?,
        );
        for (at, k) in entries {
            out.write_all(&at.to_le_bytes())?;
            out.write_all(k)?;
        }
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        super::logdir::sync_dir(dir)?;
    }
    let file = std::fs::OpenOptions::new().append(true).open(path)?;
    Ok(Log {
        len: (entries.len() * ENTRY) as u64,
        entries: entries.len(),
        file,
        needs_cut: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &Path, now: i64) -> SeenRequests {
        SeenRequests::open(dir, 10, now, Arc::default()).unwrap()
    }

    #[test]
    fn remembered_across_a_reopen_within_the_window_and_forgotten_after() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = ([1u8; 32], [2u8; 32]);
        {
            let s = open(dir.path(), 1000);
            assert_eq!(s.first_time(a, 1000).unwrap(), Seen::First);
            assert_eq!(s.first_time(a, 1001).unwrap(), Seen::Again);
            assert_eq!(s.first_time(b, 1100).unwrap(), Seen::First);
            // Dropped without a sync: like a process killed with -9.
        }
        // A torn entry at the end (a crash mid-write) is ignored.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join(FILE))
            .unwrap();
        f.write_all(&[9u8; 17]).unwrap();
        let s = open(dir.path(), 1200);
        assert_eq!(
            s.first_time(a, 1200).unwrap(),
            Seen::Again,
            "after a restart"
        );
        assert_eq!(s.len(), 2);
        drop(s);
        // Past the window, both are forgotten.
        let s = open(dir.path(), 1100 + WINDOW_SECS + 1);
        assert!(s.is_empty());
        assert_eq!(
            std::fs::metadata(dir.path().join(FILE)).unwrap().len(),
            0,
            "the file was rewritten with what is live"
        );
    }

    #[test]
    fn entries_from_the_future_or_the_edge_of_time_are_dropped_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = Vec::new();
        for (at, k) in [
            (i64::MIN, 1u8),
            (i64::MAX, 2),
            (5000 + 10_000, 3),
            (4990, 4),
        ] {
            bytes.extend(at.to_le_bytes());
            bytes.extend([k; 32]);
        }
        std::fs::write(dir.path().join(FILE), bytes).unwrap();
        let s = open(dir.path(), 5000);
        assert_eq!(s.len(), 1, "only the one within the window");
        assert_eq!(s.first_time([4; 32], 5000).unwrap(), Seen::Again);
        // Expiry is not stuck behind anything.
        assert_eq!(
            s.first_time([5; 32], 5000 + WINDOW_SECS + 100).unwrap(),
            Seen::First
        );
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn bounded() {
        let s = SeenRequests::in_memory(2);
        assert_eq!(s.first_time([1; 32], 0).unwrap(), Seen::First);
        assert_eq!(s.first_time([2; 32], 0).unwrap(), Seen::First);
        assert_eq!(s.first_time([3; 32], 0).unwrap(), Seen::Full);
        assert_eq!(s.first_time([3; 32], WINDOW_SECS + 1).unwrap(), Seen::First);
    }
}
