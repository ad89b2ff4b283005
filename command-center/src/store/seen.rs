//! [`SeenRequests`]: the signed agent requests accepted within the replay window, kept across
//! restarts — so a captured request is accepted at most once, even if the Command Center
//! restarts within the 300 s its signature stays fresh.
//!
//! A request is known by the SHA-256 of its node id and signature. The file store keeps them in
//! memory and appends each to `seen-requests.bin` in the log directory (40 bytes: the time it
//! was accepted, little-endian `i64` Unix seconds, then the digest) **before** the request is
//! acted on. The append is a `write` — in the page cache, so it survives the process however it
//! ends (`kill -9` included) — and the file is fsynced at most once a second, by the next
//! append after a second has passed: across a power loss, the
//! requests of the last second may be forgotten (and could be replayed within their window).
//! On open, entries older than the window are dropped and the file is rewritten; it is
//! rewritten again whenever it holds four times what is live. The PostgreSQL store keeps them
//! in a table every instance shares (see `postgres/schema.rs`), so a request accepted by one
//! instance is refused by the others.
//!
//! Memory is bounded: past `max` live entries, requests are refused (`503`) rather than
//! remembered partially.

use std::collections::{HashSet, VecDeque};
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use vaultmesh_proto::auth::MAX_SKEW_SECS;

/// How long a digest is kept after its request was accepted: a signature stays fresh for
/// `MAX_SKEW_SECS` either side of its timestamp, which is itself within `MAX_SKEW_SECS` of the
/// time it was accepted.
pub const WINDOW_SECS: i64 = 2 * MAX_SKEW_SECS;

/// The file, in the log directory.
pub const FILE: &str = "seen-requests.bin";

const ENTRY: usize = 40;

/// Most live entries by default.
pub const DEFAULT_MAX: usize = 2_000_000;

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
    /// Entries in the file (live or not).
    in_file: usize,
}

impl Live {
    fn expire(&mut self, now: i64) {
        while let Some((t, k)) = self.order.front() {
            if now - t > WINDOW_SECS {
                self.set.remove(k);
                self.order.pop_front();
            } else {
                break;
            }
        }
    }
}

/// The digests of requests accepted within the window.
#[derive(Debug)]
pub struct SeenRequests {
    live: Mutex<Live>,
    /// The file and its path (none: memory only, for tests and tools).
    file: Option<(Mutex<File>, PathBuf)>,
    max: usize,
    /// When the file was last fsynced.
    synced: Mutex<std::time::Instant>,
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
            live: Mutex::default(),
            file: None,
            max,
            synced: Mutex::new(std::time::Instant::now()),
        }
    }

    /// Opens `dir/seen-requests.bin`: reads what is still within the window at `now`, rewrites
    /// the file with only that, and appends from then on.
    pub fn open(dir: &Path, max: usize, now: i64) -> std::io::Result<SeenRequests> {
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
                    if now - at <= WINDOW_SECS && live.set.insert(k) {
                        live.order.push_back((at, k));
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let file = rewrite(&path, &live.order)?;
        live.in_file = live.order.len();
        Ok(SeenRequests {
            live: Mutex::new(live),
            file: Some((Mutex::new(file), path)),
            max,
            synced: Mutex::new(std::time::Instant::now()),
        })
    }

    /// Records `digest` as accepted at `now` unless it was seen within the window. The record
    /// is in the file (page cache) when this returns [`Seen::First`].
    pub fn first_time(&self, digest: [u8; 32], now: i64) -> std::io::Result<Seen> {
        let mut live = lock(&self.live);
        live.expire(now);
        if live.set.contains(&digest) {
            return Ok(Seen::Again);
        }
        if live.set.len() >= self.max {
            return Ok(Seen::Full);
        }
        if let Some((file, path)) = &self.file {
            let mut f = lock(file);
            let mut e = [0u8; ENTRY];
            e[..8].copy_from_slice(&now.to_le_bytes());
            e[8..].copy_from_slice(&digest);
            f.write_all(&e)?;
            live.in_file += 1;
            let mut synced = lock(&self.synced);
            if synced.elapsed() >= std::time::Duration::from_secs(1) {
                f.sync_data()?;
                *synced = std::time::Instant::now();
            }
            if live.in_file > 4 * live.order.len().max(16_384) {
                *f = rewrite(path, &live.order)?;
                live.in_file = live.order.len();
            }
        }
        live.set.insert(digest);
        live.order.push_back((now, digest));
        Ok(Seen::First)
    }

    /// Live entries.
    pub fn len(&self) -> usize {
        lock(&self.live).set.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Writes `entries` to a new file, fsyncs it, renames it over `path` (durably) and opens it for
/// appending.
fn rewrite(path: &Path, entries: &VecDeque<(i64, [u8; 32])>) -> std::io::Result<File> {
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
    std::fs::OpenOptions::new().append(true).open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembered_across_a_reopen_within_the_window_and_forgotten_after() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = ([1u8; 32], [2u8; 32]);
        {
            let s = SeenRequests::open(dir.path(), 10, 1000).unwrap();
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
        let s = SeenRequests::open(dir.path(), 10, 1200).unwrap();
        assert_eq!(
            s.first_time(a, 1200).unwrap(),
            Seen::Again,
            "after a restart"
        );
        assert_eq!(s.len(), 2);
        // Past the window, both are forgotten.
        let s = SeenRequests::open(dir.path(), 10, 1100 + WINDOW_SECS + 1).unwrap();
        assert!(s.is_empty());
        assert_eq!(
            std::fs::metadata(dir.path().join(FILE)).unwrap().len(),
            0,
            "the file was rewritten with what is live"
        );
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
