//! [`StorageHealth`]: whether the logs can be written, and how much room their volume has.
//!
//! A full disk must not take the monitoring down when it is needed most. A log writer that
//! fails (ENOSPC, EIO) cuts its file back to the last durable line, refuses the writes it could
//! not make, and reports the failure here; the first write that succeeds again reports the
//! recovery. Meanwhile everything that reads memory keeps serving. The volume watcher
//! ([`watch_volume`]) reports free space before it runs out, so an admin is told early.
//!
//! Readers: `/healthz` (`degraded`), `/metrics`, the console banner, and the attention engine,
//! which turns both into the Command Center's own attention reasons (and so notifications).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Why writes are refused, since when.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct WriteFailure {
    /// The first failing log's file name and the error, e.g. `heartbeats.jsonl: No space left
    /// on device (os error 28)`.
    pub cause: String,
    pub since: DateTime<Utc>,
}

/// The log volume's space, as last measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Volume {
    pub free_bytes: u64,
    pub total_bytes: u64,
    /// Below the configured minimum (`--min-free`).
    pub low: bool,
}

impl Volume {
    /// Free space in percent of the volume.
    pub fn free_pct(&self) -> f64 {
        if self.total_bytes == 0 {
            return 0.0;
        }
        self.free_bytes as f64 * 100.0 / self.total_bytes as f64
    }
}

/// What [`StorageHealth::subscribe`] reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StorageState {
    /// Set while any log refuses writes.
    pub failing: Option<WriteFailure>,
    pub volume: Option<Volume>,
    /// The minimum free space configured, for messages (`5%`, `2 GiB`).
    pub min_free: Option<String>,
}

/// Shared by every log writer of one store and everything that reports on them.
#[derive(Debug)]
pub struct StorageHealth {
    /// Failing logs by file name.
    failing: Mutex<BTreeMap<String, WriteFailure>>,
    state: watch::Sender<StorageState>,
    /// Write failures so far, by file name (`/metrics`).
    failures: Mutex<BTreeMap<String, u64>>,
}

impl Default for StorageHealth {
    fn default() -> Self {
        StorageHealth {
            failing: Mutex::default(),
            state: watch::Sender::new(StorageState::default()),
            failures: Mutex::default(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl StorageHealth {
    /// A write to `file` failed with `error`; its writes are refused until one succeeds.
    pub fn write_failed(&self, file: &str, error: &std::io::Error) {
        *lock(&self.failures).entry(file.to_string()).or_default() += 1;
        let mut failing = lock(&self.failing);
        if failing.contains_key(file) {
            return;
        }
        let failure = WriteFailure {
            cause: format!("{file}: {error}"),
            since: Utc::now(),
        };
        tracing::error!(file, error = %error, "Log write failed: writes are refused (503) until the disk can take them again; everything in memory keeps being served.");
        failing.insert(file.to_string(), failure);
        self.publish(&failing);
    }

    /// A write to `file` succeeded.
    pub fn write_ok(&self, file: &str) {
        let mut failing = lock(&self.failing);
        if let Some(f) = failing.remove(file) {
            tracing::warn!(file, since = %f.since, "Log writes resumed.");
            self.publish(&failing);
        }
    }

    fn publish(&self, failing: &BTreeMap<String, WriteFailure>) {
        let first = failing.values().min_by_key(|f| f.since).cloned();
        self.state.send_modify(|s| s.failing = first);
    }

    /// Records the volume's space.
    pub fn volume_measured(&self, volume: Volume, min_free: &str) {
        self.state.send_if_modified(|s| {
            let changed = s.volume.map(|v| v.low) != Some(volume.low);
            s.volume = Some(volume);
            s.min_free = Some(min_free.to_string());
            changed
        });
    }

    /// The current state.
    pub fn state(&self) -> StorageState {
        self.state.borrow().clone()
    }

    /// Why writes are refused, if they are.
    pub fn failing(&self) -> Option<WriteFailure> {
        self.state.borrow().failing.clone()
    }

    /// Told of every change of [`StorageState::failing`] and of the volume going low or back.
    pub fn subscribe(&self) -> watch::Receiver<StorageState> {
        self.state.subscribe()
    }

    /// Write failures so far, by file name.
    pub fn failure_counts(&self) -> BTreeMap<String, u64> {
        lock(&self.failures).clone()
    }
}

/// The minimum free space on the log volume: a share of it or a size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MinFree {
    Percent(f64),
    Bytes(u64),
}

impl MinFree {
    /// Whether `free` of `total` bytes is below the minimum.
    pub fn below(self, free: u64, total: u64) -> bool {
        match self {
            MinFree::Percent(p) => total > 0 && (free as f64) * 100.0 < p * total as f64,
            MinFree::Bytes(b) => free < b,
        }
    }
}

/// `5%` (of the volume) or a size (`2GiB`).
impl std::str::FromStr for MinFree {
    type Err = String;

    fn from_str(s: &str) -> Result<MinFree, String> {
        match s.trim().strip_suffix('%') {
            Some(p) => match p.trim().parse::<f64>() {
                Ok(p) if (0.0..=100.0).contains(&p) => Ok(MinFree::Percent(p)),
                _ => Err(format!("{s:?} is not a share of the volume; write e.g. 5%")),
            },
            None => vaultmesh_process::size::parse(s).map(MinFree::Bytes),
        }
    }
}

impl std::fmt::Display for MinFree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MinFree::Percent(p) => write!(f, "{p}%"),
            MinFree::Bytes(b) => write!(f, "{}", human_bytes(*b)),
        }
    }
}

/// `1.5 GiB`, `512 MiB`, `12 KiB`, `900 B`.
pub fn human_bytes(b: u64) -> String {
    const UNITS: [(&str, u64); 4] = [
        ("TiB", 1 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ];
    for (unit, size) in UNITS {
        if b >= size {
            let v = b as f64 / size as f64;
            return if v >= 10.0 {
                format!("{v:.0} {unit}")
            } else {
                format!("{v:.1} {unit}")
            };
        }
    }
    format!("{b} B")
}

/// Free and total bytes of the filesystem holding `dir` (space an unprivileged writer may use).
pub fn measure(dir: &Path) -> std::io::Result<(u64, u64)> {
    let s = rustix::fs::statvfs(dir).map_err(std::io::Error::from)?;
    Ok((
        s.f_bavail.saturating_mul(s.f_frsize),
        s.f_blocks.saturating_mul(s.f_frsize),
    ))
}

/// Measures the volume holding `dir` every `every` until `cancel`, reporting to `health`.
pub async fn watch_volume(
    dir: PathBuf,
    min_free: MinFree,
    every: Duration,
    health: std::sync::Arc<StorageHealth>,
    cancel: CancellationToken,
) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let shown = min_free.to_string();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = ticker.tick() => {}
        }
        match measure(&dir) {
            Ok((free, total)) => {
                let low = min_free.below(free, total);
                let v = Volume {
                    free_bytes: free,
                    total_bytes: total,
                    low,
                };
                let was_low = health.state().volume.is_some_and(|v| v.low);
                if low && !was_low {
                    tracing::warn!(dir = %dir.display(), free = %human_bytes(free), min_free = %shown, "The log volume is low on space.");
                }
                health.volume_measured(v, &shown);
            }
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "Cannot measure the log volume's free space.");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_reported_once_and_cleared_by_a_good_write() {
        let h = StorageHealth::default();
        let mut rx = h.subscribe();
        let full = std::io::Error::from_raw_os_error(28);
        h.write_failed("heartbeats.jsonl", &full);
        h.write_failed("heartbeats.jsonl", &full);
        h.write_failed("events.jsonl", &full);
        let f = h.failing().unwrap();
        assert!(
            f.cause
                .starts_with("heartbeats.jsonl: No space left on device"),
            "{f:?}"
        );
        assert!(rx.has_changed().unwrap());
        rx.mark_unchanged();
        h.write_ok("heartbeats.jsonl");
        assert!(h.failing().unwrap().cause.starts_with("events.jsonl"));
        h.write_ok("events.jsonl");
        assert_eq!(h.failing(), None);
        assert_eq!(h.failure_counts()["heartbeats.jsonl"], 2);
    }

    #[test]
    fn minimum_free_space() {
        assert!(MinFree::Percent(10.0).below(9, 100));
        assert!(!MinFree::Percent(10.0).below(10, 100));
        assert!(MinFree::Bytes(1 << 30).below(1 << 29, 1 << 40));
        assert_eq!(MinFree::Percent(5.0).to_string(), "5%");
        assert_eq!(MinFree::Bytes(2 << 30).to_string(), "2.0 GiB");
        assert_eq!(human_bytes(900), "900 B");
        assert_eq!(human_bytes(15 << 20), "15 MiB");
    }
}
