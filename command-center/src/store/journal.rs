//! One append-only log file with a single writer thread and group commit.
//!
//! Appenders send whole lines over a bounded channel and wait. The writer takes everything
//! queued, writes it with one `write`, `fdatasync`s once, then — in log order — runs each
//! append's `then` hook (the caller's in-memory update) and acknowledges it. So an acknowledged
//! record is on disk, and memory reflects records in the order they were logged.
//!
//! A file that ends in a partial line (a crash mid-write; that line was never acknowledged) is
//! truncated to its last full line on open, with a warning. Rotation (size or day, for logs
//! that rotate) renames the active file to a timestamped segment and starts a new one; the
//! directory is fsynced after every create, rename and delete. A failed write or fsync is
//! fatal: the process exits rather than acknowledge records whose durability is unknown.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot};

use super::logdir::{self, LogName};

/// Most bytes written in one group commit.
const BATCH_BYTES: usize = 4 << 20;
/// Appends that may wait in the queue before appenders wait for room.
const QUEUE: usize = 16_384;

/// Exit code for a failed write or fsync (EX_IOERR).
const EXIT_IO: i32 = 74;

/// Rotation and retention of one log.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rotation {
    /// Rotate once the active file reaches this size.
    pub max_bytes: Option<u64>,
    /// Rotate when the UTC day changes.
    pub daily: bool,
    /// Delete segments rotated longer ago than this.
    pub retention: Option<Duration>,
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the {0} log is closed")]
    Closed(&'static str),
}

/// Runs after the append is durable, before it is acknowledged, in log order.
pub type Then = Box<dyn FnOnce() + Send>;

struct Append {
    line: Vec<u8>,
    then: Option<Then>,
    done: oneshot::Sender<()>,
}

/// What `open` found and fixed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// Bytes of a torn final line that were cut off.
    pub torn_bytes: u64,
}

/// An open log. Dropping it (and every clone of the sender) lets the writer finish and exit.
#[derive(Debug)]
pub struct Journal {
    log: LogName,
    tx: Option<mpsc::Sender<Append>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Where append latency goes (`/metrics`), if anywhere.
    latency: Option<prometheus::Histogram>,
}

impl Journal {
    /// Opens (creating if needed) the active file of `log` in `dir` and starts its writer.
    pub fn open(
        dir: &Path,
        log: LogName,
        rotation: Rotation,
    ) -> Result<(Journal, OpenReport), JournalError> {
        let path = log.active(dir);
        let (file, report) = open_active(dir, &path)?;
        let size = file.metadata().map_err(io(&path))?.len();
        let (tx, rx) = mpsc::channel(QUEUE);
        let writer = Writer {
            dir: dir.to_path_buf(),
            log,
            path,
            file,
            size,
            opened: Utc::now(),
            rotation,
        };
        let thread = std::thread::Builder::new()
            .name(format!("log-{}", log.stem()))
            .spawn(move || writer.run(rx))
            .map_err(io(dir))?;
        Ok((
            Journal {
                log,
                tx: Some(tx),
                thread: Some(thread),
                latency: None,
            },
            report,
        ))
    }

    /// Appends one whole line (ending in `\n`). Returns once it is on disk and `then` has run.
    pub async fn append(&self, line: Vec<u8>, then: Option<Then>) -> Result<(), JournalError> {
        debug_assert!(line.ends_with(b"\n"));
        let tx = self
            .tx
            .as_ref()
            .ok_or(JournalError::Closed(self.log.stem()))?;
        let start = std::time::Instant::now();
        let (done, wait) = oneshot::channel();
        tx.send(Append { line, then, done })
            .await
            .map_err(|_| JournalError::Closed(self.log.stem()))?;
        wait.await
            .map_err(|_| JournalError::Closed(self.log.stem()))?;
        if let Some(h) = &self.latency {
            h.observe(start.elapsed().as_secs_f64());
        }
        Ok(())
    }

    /// Records every append's latency (queue, write and fdatasync) in `histogram`.
    pub fn observe_latency(&mut self, histogram: prometheus::Histogram) {
        self.latency = Some(histogram);
    }

    /// Stops accepting appends, lets the writer drain the queue, and waits for it.
    pub fn close(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.close();
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> JournalError + '_ {
    move |source| JournalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Opens the active file for appending, creating it (and fsyncing the directory) if needed,
/// and cuts a torn final line.
fn open_active(dir: &Path, path: &Path) -> Result<(File, OpenReport), JournalError> {
    let existed = path.exists();
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
        .map_err(io(path))?;
    if !existed {
        logdir::sync_dir(dir).map_err(io(dir))?;
    }
    let torn_bytes = cut_torn_tail(&mut file).map_err(io(path))?;
    if torn_bytes > 0 {
        tracing::warn!(file = %path.display(), bytes = torn_bytes, "Cut a torn final line (a write interrupted by a crash; it was never acknowledged).");
    }
    Ok((file, OpenReport { torn_bytes }))
}

/// If the file does not end in `\n`, truncates it after its last `\n`. Returns bytes removed.
pub fn cut_torn_tail(file: &mut File) -> std::io::Result<u64> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(0);
    }
    let mut pos = len;
    let mut buf = vec![0u8; 64 * 1024];
    // Walk back from the end to the last newline.
    loop {
        let start = pos.saturating_sub(buf.len() as u64);
        let n = (pos - start) as usize;
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut buf[..n])?;
        if pos == len && buf[n - 1] == b'\n' {
            return Ok(0);
        }
        if let Some(i) = memchr::memrchr(b'\n', &buf[..n]) {
            let keep = start + i as u64 + 1;
            file.set_len(keep)?;
            file.sync_all()?;
            return Ok(len - keep);
        }
        if start == 0 {
            file.set_len(0)?;
            file.sync_all()?;
            return Ok(len);
        }
        pos = start;
    }
}

struct Writer {
    dir: PathBuf,
    log: LogName,
    path: PathBuf,
    file: File,
    size: u64,
    opened: DateTime<Utc>,
    rotation: Rotation,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Append>) {
        let mut buf = Vec::with_capacity(64 * 1024);
        let mut batch: Vec<Append> = Vec::with_capacity(256);
        while let Some(first) = rx.blocking_recv() {
            buf.clear();
            buf.extend_from_slice(&first.line);
            batch.push(first);
            while buf.len() < BATCH_BYTES {
                match rx.try_recv() {
                    Ok(next) => {
                        buf.extend_from_slice(&next.line);
                        batch.push(next);
                    }
                    Err(_) => break,
                }
            }
            if let Err(e) = self
                .file
                .write_all(&buf)
                .and_then(|_| self.file.sync_data())
            {
                fatal(&self.path, "write", &e);
            }
            self.size += buf.len() as u64;
            for a in batch.drain(..) {
                if let Some(then) = a.then {
                    then();
                }
                let _ = a.done.send(());
            }
            self.maybe_rotate();
        }
    }

    fn maybe_rotate(&mut self) {
        let now = Utc::now();
        let too_big = self.rotation.max_bytes.is_some_and(|max| self.size >= max);
        let new_day =
            self.rotation.daily && now.date_naive() != self.opened.date_naive() && self.size > 0;
        if !(too_big || new_day) {
            return;
        }
        let segment = logdir::rotated_path(&self.dir, self.log, now);
        let result = std::fs::rename(&self.path, &segment)
            .and_then(|_| {
                OpenOptions::new()
                    .read(true)
                    .append(true)
                    .create(true)
                    .mode(0o600)
                    .open(&self.path)
            })
            .and_then(|f| logdir::sync_dir(&self.dir).map(|_| f));
        match result {
            Ok(f) => {
                self.file = f;
                self.size = 0;
                self.opened = now;
                tracing::info!(segment = %segment.display(), "Rotated log.");
            }
            Err(e) => fatal(&self.path, "rotate", &e),
        }
        if let Some(keep) = self.rotation.retention {
            match logdir::expire(&self.dir, self.log, keep, now) {
                Ok(deleted) if !deleted.is_empty() => {
                    if let Err(e) = logdir::sync_dir(&self.dir) {
                        fatal(&self.dir, "fsync directory", &e);
                    }
                    for d in deleted {
                        tracing::info!(segment = %d.display(), "Deleted log segment past retention.");
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(error = %e, "Retention sweep failed; will retry at the next rotation.")
                }
            }
        }
    }
}

/// A write or fsync failed: the kernel may have dropped dirty pages, so nothing written since the
/// last good fsync can be trusted. Stop before acknowledging anything else.
fn fatal(path: &Path, what: &str, e: &std::io::Error) -> ! {
    tracing::error!(file = %path.display(), error = %e, "Log {what} failed; exiting to avoid acknowledging data that may not be on disk.");
    eprintln!("fatal: {}: {what} failed: {e}", path.display());
    std::process::exit(EXIT_IO);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torn_tails_are_cut_to_the_last_full_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        for (content, want, cut) in [
            ("a\nb\n", "a\nb\n", 0),
            ("a\nb\n{\"par", "a\nb\n", 5),
            ("{\"only-partial", "", 14),
            ("", "", 0),
        ] {
            std::fs::write(&p, content).unwrap();
            let mut f = OpenOptions::new().read(true).write(true).open(&p).unwrap();
            assert_eq!(cut_torn_tail(&mut f).unwrap(), cut, "{content:?}");
            assert_eq!(std::fs::read_to_string(&p).unwrap(), want);
        }
        // A long torn line spanning several read buffers.
        let long = format!("ok\n{}", "x".repeat(200_000));
        std::fs::write(&p, &long).unwrap();
        let mut f = OpenOptions::new().read(true).write(true).open(&p).unwrap();
        assert_eq!(cut_torn_tail(&mut f).unwrap(), 200_000);
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "ok\n");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn appends_are_durable_ordered_and_run_their_hooks() {
        let dir = tempfile::tempdir().unwrap();
        let (j, _) = Journal::open(dir.path(), LogName::Events, Rotation::default()).unwrap();
        let j = std::sync::Arc::new(j);
        let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..200 {
            let (j, order) = (j.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let line = format!("{{\"n\":{i}}}\n").into_bytes();
                j.append(line, Some(Box::new(move || order.lock().unwrap().push(i))))
                    .await
                    .unwrap();
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let text = std::fs::read_to_string(LogName::Events.active(dir.path())).unwrap();
        let logged: Vec<u32> = text
            .lines()
            .map(|l| l[5..l.len() - 1].parse().unwrap())
            .collect();
        assert_eq!(logged.len(), 200);
        assert_eq!(*order.lock().unwrap(), logged, "hooks run in log order");
    }

    #[tokio::test]
    async fn rotates_by_size_and_expires_old_segments() {
        let dir = tempfile::tempdir().unwrap();
        let rotation = Rotation {
            max_bytes: Some(100),
            daily: false,
            retention: Some(Duration::from_secs(3600)),
        };
        // An old segment that retention must remove at the next rotation.
        let old = logdir::rotated_path(
            dir.path(),
            LogName::Heartbeats,
            Utc::now() - chrono::Duration::days(2),
        );
        std::fs::write(&old, "{}\n").unwrap();
        let (mut j, _) = Journal::open(dir.path(), LogName::Heartbeats, rotation).unwrap();
        for i in 0..10 {
            j.append(format!("{{\"line\":{i:040}}}\n").into_bytes(), None)
                .await
                .unwrap();
        }
        j.close();
        assert!(!old.exists(), "segment past retention was deleted");
        let files = logdir::files(dir.path(), LogName::Heartbeats).unwrap();
        assert!(files.len() >= 4, "{files:?}");
        let all: String = files
            .iter()
            .map(|f| std::fs::read_to_string(f).unwrap())
            .collect();
        assert_eq!(all.lines().count(), 10, "no line lost across rotation");
        for f in &files[..files.len() - 1] {
            assert!(std::fs::metadata(f).unwrap().len() >= 100);
        }
    }
}
