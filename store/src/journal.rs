//! One append-only log file with a single writer thread and group commit.
//!
//! Appenders send whole lines over a bounded channel and wait. The writer takes everything
//! queued, writes it with one `write`, `fdatasync`s once, then — in log order — runs each
//! append's `then` hook (the caller's in-memory update) and acknowledges it. So an acknowledged
//! record is on disk, and memory reflects records in the order they were logged.
//!
//! A file that ends in a partial line (a crash mid-write; that line was never acknowledged) is
//! truncated to its last full line on open, with a warning. Rotation (size or period, for logs
//! that rotate) renames the active file to a timestamped segment and starts a new one; the
//! directory is fsynced after every create, rename and delete. A log whose closed segments are
//! compressed ([`Journal::compress_segments`]) wakes its [`Keeper`] after each rotation: the
//! compression runs on the keeper's thread, never on the writer's.
//!
//! **A failed write or fsync** (a full disk, an I/O error) is not fatal — the monitoring must
//! stay up when disks fill. The writer cuts the file back to its last durable line (so no torn
//! or half-written line stays behind), refuses every append of the failed batch, reports the
//! failure to [`StorageHealth`], and from then on refuses appends at once, trying a real write
//! at most once a [`RETRY_EVERY`]. The first write that succeeds clears the failure: writes
//! resume by themselves. Nothing refused was acknowledged, and nothing acknowledged is lost.
//!
//! **Positions.** The writer knows where the lines it has applied end ([`Position`]: the
//! active file, named by its first line, and its durable length). [`Journal::at_position`]
//! runs a function on the writer between two batches — after every earlier append's `then`
//! hook, before any later one — with that position, so what the function copies of the state
//! the hooks build is exactly the state of the lines up to it (what a snapshot needs). A
//! rotation hook runs the same way right after each rotation.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot};

use super::compress::{Keeper, Waker};
use super::health::StorageHealth;
use super::logdir::{self, FileId, LogName, Position};

/// Most bytes written in one group commit.
const BATCH_BYTES: usize = 4 << 20;
/// Appends that may wait in the queue before appenders wait for room.
const QUEUE: usize = 16_384;

/// While a log's writes fail, how often a real write is tried again (appends in between are
/// refused at once).
pub const RETRY_EVERY: Duration = Duration::from_secs(1);

/// Rotation and retention of one log, and how often its writer may sync.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rotation {
    /// At most one `fdatasync` starts per this window: a busy log's writer waits out the rest
    /// of the window after its last sync, gathering the appends that come meanwhile into the
    /// next one (a group commit, as PostgreSQL's `commit_delay`). A log idle for a window
    /// writes at once. Zero: every batch as soon as the last sync is done.
    pub commit_window: Duration,
    /// Rotate once the active file reaches this size.
    pub max_bytes: Option<u64>,
    /// Rotate when the UTC clock enters a new period of this length (a new hour for 1 h, a
    /// new day for 24 h), if anything was written in the old one.
    pub every: Option<Duration>,
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
    /// The write failed (or the log's writes are failing); nothing of it was kept.
    #[error("{0}")]
    Refused(Arc<str>),
}

/// The file a writer appends to: a [`File`], or in tests one that fails on demand.
pub trait LogFile: Send + 'static {
    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()>;
    fn sync_data(&mut self) -> std::io::Result<()>;
    /// Cuts the file to `len` bytes, durably.
    fn cut(&mut self, len: u64) -> std::io::Result<()>;
}

impl LogFile for File {
    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        Write::write_all(self, buf)
    }

    fn sync_data(&mut self) -> std::io::Result<()> {
        File::sync_data(self)
    }

    fn cut(&mut self, len: u64) -> std::io::Result<()> {
        self.set_len(len)?;
        File::sync_data(self)
    }
}

/// Runs after the append is durable, before it is acknowledged, in log order.
pub type Then = Box<dyn FnOnce() + Send>;

/// Runs on the writer between two batches, with the position of the lines applied so far
/// (`None` while it is unknown: an empty active file after an unreadable segment).
pub type Barrier = Box<dyn FnOnce(Option<&Position>) + Send>;

/// Runs on the writer right after each rotation, with the position then: after the whole of
/// the segment just closed.
pub type RotateHook = Box<dyn FnMut(&Position) + Send>;

struct Append {
    line: Vec<u8>,
    then: Option<Then>,
    done: oneshot::Sender<Result<(), Arc<str>>>,
}

/// What the writer is sent.
enum Msg {
    Append(Append),
    Barrier(Barrier),
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
    tx: Option<mpsc::Sender<Msg>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Where append latency goes (`/metrics`), if anywhere.
    latency: Option<crate::LatencySink>,
    /// Compresses closed segments, if this log's are compressed.
    keeper: Option<Keeper>,
    /// How the writer wakes the keeper after a rotation (set once the keeper runs).
    wake: Arc<std::sync::OnceLock<Waker>>,
}

impl Journal {
    /// Opens (creating if needed) the active file of `log` in `dir` and starts its writer,
    /// which reports write failures and recoveries to `health`.
    pub fn open(
        dir: &Path,
        log: LogName,
        rotation: Rotation,
        health: Arc<StorageHealth>,
    ) -> Result<(Journal, OpenReport), JournalError> {
        Journal::open_with(dir, log, rotation, health, None)
    }

    /// [`Journal::open`], with a hook the writer runs after each rotation.
    pub fn open_with(
        dir: &Path,
        log: LogName,
        rotation: Rotation,
        health: Arc<StorageHealth>,
        on_rotate: Option<RotateHook>,
    ) -> Result<(Journal, OpenReport), JournalError> {
        let path = log.active(dir);
        let (file, report) = open_active(dir, &path)?;
        let size = file.metadata().map_err(io(&path))?.len();
        let position = position_at_open(dir, log, size);
        let journal = Journal::start(
            dir,
            log,
            rotation,
            health,
            (Box::new(file), size, position),
            on_rotate,
        )?;
        Ok((journal, report))
    }

    /// Starts the writer of `log` over `file`, whose first `size` bytes are durable and end
    /// at `position`.
    fn start(
        dir: &Path,
        log: LogName,
        rotation: Rotation,
        health: Arc<StorageHealth>,
        (file, size, position): (Box<dyn LogFile>, u64, Option<Position>),
        on_rotate: Option<RotateHook>,
    ) -> Result<Journal, JournalError> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let wake = Arc::new(std::sync::OnceLock::new());
        let writer = Writer {
            wake: Arc::clone(&wake),
            dir: dir.to_path_buf(),
            log,
            path: log.active(dir),
            name: format!("{}.jsonl", log.stem()),
            file,
            size,
            opened: Utc::now(),
            rotation,
            health,
            failing: None,
            needs_cut: false,
            rotate_failing: false,
            position,
            on_rotate,
        };
        let thread = std::thread::Builder::new()
            .name(format!("log-{}", log.stem()))
            .spawn(move || writer.run(rx))
            .map_err(io(dir))?;
        Ok(Journal {
            log,
            tx: Some(tx),
            thread: Some(thread),
            latency: None,
            keeper: None,
            wake,
        })
    }

    /// From now on compresses the log's closed segments at zstd `level`, in the background:
    /// those left plain now (by a crash, or an older release) and each one rotation closes
    /// (see [`crate::compress`]). Start it after replay, which reads the segments in place.
    pub fn compress_segments(&mut self, dir: &Path, level: i32) -> std::io::Result<()> {
        if self.keeper.is_some() {
            return Ok(());
        }
        let keeper = Keeper::start(dir, self.log, level)?;
        if let Some(w) = keeper.waker() {
            let _ = self.wake.set(w);
        }
        self.keeper = Some(keeper);
        Ok(())
    }

    /// Appends one whole line (ending in `\n`). Returns once it is on disk and `then` has run;
    /// [`JournalError::Refused`] if it could not be written (then `then` never runs).
    pub async fn append(&self, line: Vec<u8>, then: Option<Then>) -> Result<(), JournalError> {
        debug_assert!(line.ends_with(b"\n"));
        let tx = self
            .tx
            .as_ref()
            .ok_or(JournalError::Closed(self.log.stem()))?;
        let start = std::time::Instant::now();
        let (done, wait) = oneshot::channel();
        tx.send(Msg::Append(Append { line, then, done }))
            .await
            .map_err(|_| JournalError::Closed(self.log.stem()))?;
        wait.await
            .map_err(|_| JournalError::Closed(self.log.stem()))?
            .map_err(JournalError::Refused)?;
        if let Some(h) = &self.latency {
            h.record(start.elapsed());
        }
        Ok(())
    }

    /// Runs `f` on the writer after every append sent before this call was applied and before
    /// any sent after, with the position those lines end at (see the module doc), and returns
    /// what it returns. `f` should be quick: appends wait while it runs.
    pub async fn at_position<T: Send + 'static>(
        &self,
        f: impl FnOnce(Option<&Position>) -> T + Send + 'static,
    ) -> Result<T, JournalError> {
        let tx = self
            .tx
            .as_ref()
            .ok_or(JournalError::Closed(self.log.stem()))?;
        let (done, wait) = oneshot::channel();
        let barrier: Barrier = Box::new(move |p| {
            let _ = done.send(f(p));
        });
        tx.send(Msg::Barrier(barrier))
            .await
            .map_err(|_| JournalError::Closed(self.log.stem()))?;
        wait.await
            .map_err(|_| JournalError::Closed(self.log.stem()))
    }

    /// Records every append's latency (queue, write and fdatasync) in `histogram`.
    pub fn observe_latency(&mut self, histogram: crate::LatencySink) {
        self.latency = Some(histogram);
    }

    /// Stops accepting appends, lets the writer drain the queue, and waits for it; then stops
    /// the compression of segments (a compression in progress is abandoned, and done again at
    /// the next start).
    pub fn close(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Some(mut k) = self.keeper.take() {
            k.stop();
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

/// Where the lines of `log` end when it is opened with `size` durable bytes in its active file:
/// in the active file, or after the newest segment if the active file is empty, or the start
/// of an empty log. `None` if the file that says cannot be read.
fn position_at_open(dir: &Path, log: LogName, size: u64) -> Option<Position> {
    let id = |path: &Path| match crate::replay::first_line(path) {
        Ok(Some(line)) => Some(FileId::of_first_line(&line)),
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "Cannot read the first line of a log file; no state snapshot until the next line is logged.");
            None
        }
    };
    if size > 0 {
        return id(&log.active(dir)).map(|file| Position::In { file, offset: size });
    }
    match logdir::segments(dir, log) {
        Ok(segments) => match segments.last() {
            None => Some(Position::Start),
            Some((path, _)) => id(path).map(|file| Position::After { file }),
        },
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "Cannot list log segments; no state snapshot until the next line is logged.");
            None
        }
    }
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
    /// The file name, as failures name it.
    name: String,
    file: Box<dyn LogFile>,
    /// Bytes of the active file known durable.
    size: u64,
    opened: DateTime<Utc>,
    rotation: Rotation,
    health: Arc<StorageHealth>,
    /// Why writes fail, and when a real write was last tried.
    failing: Option<(Arc<str>, std::time::Instant)>,
    /// A failed write could not be cut back yet: nothing is written before it is.
    needs_cut: bool,
    /// Rotation failed (reported once; retried after each batch).
    rotate_failing: bool,
    /// Wakes the segment keeper after a rotation, once it runs.
    wake: Arc<std::sync::OnceLock<Waker>>,
    /// Where the applied lines end (`None`: unknown until the next line is written).
    position: Option<Position>,
    on_rotate: Option<RotateHook>,
}

/// Which period of length `every` (counted from the Unix epoch, so whole UTC hours and days)
/// `t` falls in.
fn period(t: DateTime<Utc>, every: Duration) -> i64 {
    t.timestamp()
        .div_euclid(i64::try_from(every.as_secs().max(1)).unwrap_or(i64::MAX))
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Msg>) {
        let mut buf = Vec::with_capacity(64 * 1024);
        let mut batch: Vec<Append> = Vec::with_capacity(256);
        let window = self.rotation.commit_window;
        let mut last_sync: Option<std::time::Instant> = None;
        loop {
            let next = if self.failing.is_some() {
                self.wait_while_failing(&mut rx)
            } else {
                rx.blocking_recv()
            };
            let first = match next {
                None => return,
                Some(Msg::Barrier(b)) => {
                    b(self.position.as_ref());
                    continue;
                }
                Some(Msg::Append(a)) => a,
            };
            // A sync started within the window: let the appends that follow join this one.
            if let Some(rest) = last_sync.and_then(|at| window.checked_sub(at.elapsed())) {
                std::thread::sleep(rest);
            }
            buf.clear();
            buf.extend_from_slice(&first.line);
            batch.push(first);
            // A barrier ends the batch: it runs once the appends before it are applied.
            let mut barrier = None;
            while buf.len() < BATCH_BYTES {
                match rx.try_recv() {
                    Ok(Msg::Append(next)) => {
                        buf.extend_from_slice(&next.line);
                        batch.push(next);
                    }
                    Ok(Msg::Barrier(b)) => {
                        barrier = Some(b);
                        break;
                    }
                    Err(_) => break,
                }
            }
            last_sync = Some(std::time::Instant::now());
            self.write_batch(&buf, &mut batch);
            if let Some(b) = barrier {
                b(self.position.as_ref());
            }
        }
    }

    /// Writes one batch, then applies and acknowledges its appends, or refuses them all.
    fn write_batch(&mut self, buf: &[u8], batch: &mut Vec<Append>) {
        if let Some((cause, tried)) = &self.failing
            && tried.elapsed() < RETRY_EVERY
        {
            for a in batch.drain(..) {
                let _ = a.done.send(Err(Arc::clone(cause)));
            }
            return;
        }
        match self.commit(buf) {
            Ok(()) => {
                if self.failing.take().is_some() {
                    self.health.write_ok(&self.name);
                }
                self.advance(buf);
                for a in batch.drain(..) {
                    if let Some(then) = a.then {
                        then();
                    }
                    let _ = a.done.send(Ok(()));
                }
                self.maybe_rotate();
            }
            Err(e) => {
                self.health.write_failed(&self.name, &e);
                let cause: Arc<str> = format!(
                    "storage unavailable: {}: {e}; writes resume once the disk can take them",
                    self.name
                )
                .into();
                for a in batch.drain(..) {
                    let _ = a.done.send(Err(Arc::clone(&cause)));
                }
                self.failing = Some((cause, std::time::Instant::now()));
            }
        }
    }

    /// Counts `written` (now durable) in the size and the position.
    fn advance(&mut self, written: &[u8]) {
        let was_empty = self.size == 0;
        self.size += written.len() as u64;
        self.position = match self.position {
            _ if was_empty => {
                let first = written.split(|b| *b == b'\n').next().unwrap_or(written);
                Some(Position::In {
                    file: FileId::of_first_line(first),
                    offset: self.size,
                })
            }
            Some(Position::In { file, .. }) => Some(Position::In {
                file,
                offset: self.size,
            }),
            _ => None,
        };
    }

    /// While writes fail: waits for the next append (`None` once the log is closed), and every
    /// [`RETRY_EVERY`] probes whether the file takes writes again — so the failure clears when
    /// the disk has room, even if no append comes to find out.
    fn wait_while_failing(&mut self, rx: &mut mpsc::Receiver<Msg>) -> Option<Msg> {
        loop {
            match rx.try_recv() {
                Ok(a) => return Some(a),
                Err(mpsc::error::TryRecvError::Disconnected) => return None,
                Err(mpsc::error::TryRecvError::Empty) => {}
            }
            let Some((_, tried)) = &self.failing else {
                return rx.blocking_recv();
            };
            if tried.elapsed() >= RETRY_EVERY {
                if self.probe().is_ok() {
                    self.failing = None;
                    self.health.write_ok(&self.name);
                    return rx.blocking_recv();
                }
                if let Some((_, tried)) = &mut self.failing {
                    *tried = std::time::Instant::now();
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Writes a page of spaces (no newline: were the process to die before the cut, opening
    /// the log would cut it as a torn tail), makes it durable, and cuts it off again.
    fn probe(&mut self) -> std::io::Result<()> {
        self.commit(&[b' '; 4096])?;
        self.file
            .cut(self.size)
            .inspect_err(|_| self.needs_cut = true)
    }

    /// Writes `buf` and makes it durable, or leaves the file as it was.
    fn commit(&mut self, buf: &[u8]) -> std::io::Result<()> {
        if self.needs_cut {
            self.file.cut(self.size)?;
            self.needs_cut = false;
        }
        let written = self
            .file
            .write_all(buf)
            .and_then(|()| self.file.sync_data());
        if written.is_err() {
            // Part of the batch may be in the file (a short write before ENOSPC), or in the
            // page cache with its fsync failed: none of it was acknowledged. Cut back to the
            // last durable line; if even that fails, nothing is written until it succeeds.
            if let Err(e) = self.file.cut(self.size) {
                tracing::error!(file = %self.path.display(), error = %e, "Cannot cut a failed write back; the log stays closed to writes until it can.");
                self.needs_cut = true;
            }
        }
        written
    }

    fn maybe_rotate(&mut self) {
        let now = Utc::now();
        let too_big = self.rotation.max_bytes.is_some_and(|max| self.size >= max);
        let new_period = self
            .rotation
            .every
            .is_some_and(|every| period(now, every) != period(self.opened, every))
            && self.size > 0;
        if !(too_big || new_period) {
            return;
        }
        let segment = logdir::rotated_path(&self.dir, self.log, now);
        match self.rotate_to(&segment) {
            Ok(f) => {
                self.file = Box::new(f);
                self.size = 0;
                self.opened = now;
                self.rotate_failing = false;
                tracing::info!(segment = %segment.display(), "Rotated log.");
                self.position = match self.position {
                    Some(Position::In { file, .. }) => Some(Position::After { file }),
                    _ => None,
                };
                if let (Some(hook), Some(position)) = (&mut self.on_rotate, &self.position) {
                    hook(position);
                }
            }
            Err(e) => {
                // The log keeps growing in its current file; rotation is tried after the next
                // write. Reported once, not once per batch.
                if !self.rotate_failing {
                    tracing::error!(file = %self.path.display(), error = %e, "Log rotation failed; the log stays in its current file until it succeeds.");
                }
                self.rotate_failing = true;
                return;
            }
        }
        if let Some(keep) = self.rotation.retention {
            match logdir::expire(&self.dir, self.log, keep, now) {
                Ok(deleted) if !deleted.is_empty() => {
                    if let Err(e) = logdir::sync_dir(&self.dir) {
                        tracing::error!(dir = %self.dir.display(), error = %e, "Cannot fsync the log directory after deleting segments.");
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
        if let Some(w) = self.wake.get() {
            w.wake();
        }
    }

    /// Renames the active file to `segment` and opens a new one. On failure the active file is
    /// where it was (a rename that went through is undone).
    fn rotate_to(&self, segment: &Path) -> std::io::Result<File> {
        std::fs::rename(&self.path, segment)?;
        let fresh = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&self.path)
            .and_then(|f| logdir::sync_dir(&self.dir).map(|()| f));
        if fresh.is_err() {
            let _ = std::fs::remove_file(&self.path);
            let _ = std::fs::rename(segment, &self.path);
        }
        fresh
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// A disk that takes `room` more bytes (`None`: any), and whose truncation can fail.
    #[derive(Clone, Default)]
    struct Faults {
        room: Arc<Mutex<Option<usize>>>,
        fail_cut: Arc<AtomicBool>,
    }

    /// The fault-injecting writer: a real file behind [`Faults`].
    struct FaultyFile {
        file: File,
        faults: Faults,
    }

    impl LogFile for FaultyFile {
        fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
            let mut room = self.faults.room.lock().unwrap();
            let Some(left) = *room else {
                return Write::write_all(&mut self.file, buf);
            };
            // Like a real full disk: a short write, then ENOSPC.
            let n = left.min(buf.len());
            Write::write_all(&mut self.file, &buf[..n])?;
            *room = Some(left - n);
            if n < buf.len() {
                return Err(std::io::Error::from_raw_os_error(28));
            }
            Ok(())
        }

        fn sync_data(&mut self) -> std::io::Result<()> {
            self.file.sync_data()
        }

        fn cut(&mut self, len: u64) -> std::io::Result<()> {
            if self.faults.fail_cut.load(Ordering::SeqCst) {
                return Err(std::io::Error::from_raw_os_error(5));
            }
            let freed = self.file.metadata()?.len().saturating_sub(len);
            if let Some(r) = self.faults.room.lock().unwrap().as_mut() {
                *r += freed as usize;
            }
            LogFile::cut(&mut self.file, len)
        }
    }

    fn line(i: u32) -> Vec<u8> {
        format!("{{\"n\":{i:04}}}\n").into_bytes()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_disk_refuses_cuts_back_and_resumes_by_itself() {
        let dir = tempfile::tempdir().unwrap();
        let path = LogName::Events.active(dir.path());
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .unwrap();
        let faults = Faults::default();
        let health = Arc::new(StorageHealth::default());
        let j = Journal::start(
            dir.path(),
            LogName::Events,
            Rotation::default(),
            Arc::clone(&health),
            (
                Box::new(FaultyFile {
                    file,
                    faults: faults.clone(),
                }),
                0,
                Some(Position::Start),
            ),
            None,
        )
        .unwrap();
        let ran = Arc::new(AtomicBool::new(false));
        j.append(line(1), None).await.unwrap();

        // The disk fills mid-line, and even the cut fails at first.
        *faults.room.lock().unwrap() = Some(5);
        faults.fail_cut.store(true, Ordering::SeqCst);
        let hook = Arc::clone(&ran);
        let err = j
            .append(
                line(2),
                Some(Box::new(move || hook.store(true, Ordering::SeqCst))),
            )
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("events.jsonl: No space left on device"),
            "{err}"
        );
        assert!(
            !ran.load(Ordering::SeqCst),
            "a refused append is never applied"
        );
        assert!(health.failing().is_some());
        // Refused at once while failing (no write is tried more than once a RETRY_EVERY).
        assert!(j.append(line(3), None).await.is_err());

        // Space returns and the file can be cut: the writer finds out by itself.
        faults.fail_cut.store(false, Ordering::SeqCst);
        *faults.room.lock().unwrap() = None;
        let deadline = std::time::Instant::now() + RETRY_EVERY * 5;
        while health.failing().is_some() && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(health.failing(), None, "recovered without an append");
        j.append(line(4), None).await.unwrap();
        let mut want = line(1);
        want.extend(line(4));
        assert_eq!(
            std::fs::read(&path).unwrap(),
            want,
            "exactly the acknowledged lines: no torn, half or duplicated line"
        );
    }

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
        let (j, _) = Journal::open(
            dir.path(),
            LogName::Events,
            Rotation::default(),
            Arc::default(),
        )
        .unwrap();
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

    /// What `at_position` sees is exactly the lines before its position, all applied: the
    /// guarantee a snapshot's position rests on.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn at_position_sees_every_line_before_it_applied_and_none_after() {
        let dir = tempfile::tempdir().unwrap();
        let (j, _) = Journal::open(
            dir.path(),
            LogName::Heartbeats,
            Rotation::default(),
            Arc::default(),
        )
        .unwrap();
        let j = Arc::new(j);
        assert_eq!(
            j.at_position(|p| p.copied()).await.unwrap(),
            Some(Position::Start)
        );
        let applied = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut appends = Vec::new();
        let mut probes = Vec::new();
        for i in 0..400u32 {
            let (jj, counter) = (j.clone(), applied.clone());
            appends.push(tokio::spawn(async move {
                let hook = Box::new(move || {
                    counter.fetch_add(1, Ordering::SeqCst);
                });
                jj.append(line(i), Some(hook)).await.unwrap();
            }));
            if i % 20 == 10 {
                let (j, applied) = (j.clone(), applied.clone());
                probes.push(tokio::spawn(async move {
                    j.at_position(move |p| (applied.load(Ordering::SeqCst), p.copied()))
                        .await
                        .unwrap()
                }));
            }
        }
        for a in appends {
            a.await.unwrap();
        }
        let text = std::fs::read(LogName::Heartbeats.active(dir.path())).unwrap();
        let first = FileId::of_first_line(text.split(|b| *b == b'\n').next().unwrap());
        for p in probes {
            match p.await.unwrap() {
                (0, Some(Position::Start)) => {}
                (n, Some(Position::In { file, offset })) => {
                    assert_eq!(file, first);
                    let lines = memchr::memchr_iter(b'\n', &text[..offset as usize]).count();
                    assert_eq!(lines as u64, n, "applied = lines before the position");
                }
                other => panic!("{other:?}"),
            }
        }
    }

    /// A real file that counts its syncs.
    struct CountingFile {
        file: File,
        syncs: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl LogFile for CountingFile {
        fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
            Write::write_all(&mut self.file, buf)
        }

        fn sync_data(&mut self) -> std::io::Result<()> {
            self.syncs.fetch_add(1, Ordering::SeqCst);
            self.file.sync_data()
        }

        fn cut(&mut self, len: u64) -> std::io::Result<()> {
            LogFile::cut(&mut self.file, len)
        }
    }

    /// Twenty appends arriving 5 ms apart, each acknowledged once durable: how many syncs
    /// they took, and how long the first append (to a log idle until then) waited.
    async fn twenty_appends_5ms_apart(window: Duration) -> (usize, Duration) {
        let dir = tempfile::tempdir().unwrap();
        let path = LogName::Heartbeats.active(dir.path());
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .open(&path)
            .unwrap();
        let syncs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let j = Arc::new(
            Journal::start(
                dir.path(),
                LogName::Heartbeats,
                Rotation {
                    commit_window: window,
                    ..Rotation::default()
                },
                Arc::default(),
                (
                    Box::new(CountingFile {
                        file,
                        syncs: Arc::clone(&syncs),
                    }),
                    0,
                    Some(Position::Start),
                ),
                None,
            )
            .unwrap(),
        );
        let started = std::time::Instant::now();
        j.append(line(0), None).await.unwrap();
        let idle = started.elapsed();
        let mut tasks = tokio::task::JoinSet::new();
        for i in 1..=20 {
            let j = Arc::clone(&j);
            tasks.spawn(async move { j.append(line(i), None).await });
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap().unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 21, "every append is in the file");
        (syncs.load(Ordering::SeqCst) - 1, idle)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_busy_log_syncs_at_most_once_per_commit_window_and_an_idle_one_at_once() {
        let (without, _) = twenty_appends_5ms_apart(Duration::ZERO).await;
        let (with, idle) = twenty_appends_5ms_apart(Duration::from_millis(200)).await;
        // Without a window each append that finds the writer idle is synced alone; with one,
        // those arriving within 200 ms of the last sync wait for the next, together.
        assert!(without >= 10, "{without} syncs without a window");
        assert!(with <= 2, "{with} syncs with a 200 ms window");
        assert!(
            idle < Duration::from_millis(150),
            "an idle log waited {idle:?} for its first sync"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_rotation_hook_sees_the_position_after_the_closed_segment() {
        let dir = tempfile::tempdir().unwrap();
        let rotation = Rotation {
            max_bytes: Some(30),
            ..Rotation::default()
        };
        let seen = Arc::new(Mutex::new(Vec::new()));
        let hook: RotateHook = {
            let seen = seen.clone();
            Box::new(move |p| seen.lock().unwrap().push(*p))
        };
        let (mut j, _) = Journal::open_with(
            dir.path(),
            LogName::Heartbeats,
            rotation,
            Arc::default(),
            Some(hook),
        )
        .unwrap();
        for i in 0..6 {
            j.append(line(i), None).await.unwrap();
        }
        let after = j.at_position(|p| p.copied()).await.unwrap();
        j.close();
        let segments = logdir::segments(dir.path(), LogName::Heartbeats).unwrap();
        let ids: Vec<Position> = segments
            .iter()
            .map(|(path, _)| Position::After {
                file: FileId::of_first_line(&crate::replay::first_line(path).unwrap().unwrap()),
            })
            .collect();
        assert_eq!(segments.len(), 2, "11-byte lines, rotated every third");
        assert_eq!(*seen.lock().unwrap(), ids, "one call per rotation");
        assert_eq!(after, ids.last().copied(), "an empty active file");
        // Reopened, the writer knows the same position.
        let (j, _) =
            Journal::open(dir.path(), LogName::Heartbeats, rotation, Arc::default()).unwrap();
        assert_eq!(j.at_position(|p| p.copied()).await.unwrap(), after);
    }

    #[tokio::test]
    async fn rotates_by_size_and_expires_old_segments() {
        let dir = tempfile::tempdir().unwrap();
        let rotation = Rotation {
            max_bytes: Some(100),
            every: None,
            retention: Some(Duration::from_secs(3600)),
            commit_window: Duration::ZERO,
        };
        // An old segment that retention must remove at the next rotation.
        let old = logdir::rotated_path(
            dir.path(),
            LogName::Heartbeats,
            Utc::now() - chrono::Duration::days(2),
        );
        std::fs::write(&old, "{}\n").unwrap();
        let (mut j, _) =
            Journal::open(dir.path(), LogName::Heartbeats, rotation, Arc::default()).unwrap();
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

    #[tokio::test]
    async fn rotates_each_period_and_compresses_closed_segments() {
        let dir = tempfile::tempdir().unwrap();
        let rotation = Rotation {
            max_bytes: None,
            every: Some(Duration::from_secs(1)),
            retention: None,
            commit_window: Duration::ZERO,
        };
        let (mut j, _) =
            Journal::open(dir.path(), LogName::Heartbeats, rotation, Arc::default()).unwrap();
        j.compress_segments(dir.path(), 3).unwrap();
        j.append(line(1), None).await.unwrap();
        // Into the next second: the next append closes the first period's file.
        let now = Utc::now();
        let next = 1_000_000_000 - now.timestamp_subsec_nanos() as u64;
        tokio::time::sleep(Duration::from_nanos(next) + Duration::from_millis(50)).await;
        j.append(line(2), None).await.unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let files = loop {
            let files = logdir::files(dir.path(), LogName::Heartbeats).unwrap();
            if files.len() == 2 && logdir::is_compressed(&files[0]) {
                break files;
            }
            assert!(std::time::Instant::now() < deadline, "{files:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        j.close();
        let mut text = String::new();
        for f in &files {
            logdir::open_read(f, 0)
                .unwrap()
                .read_to_string(&mut text)
                .unwrap();
        }
        let mut want = line(1);
        want.extend(line(2));
        assert_eq!(text.as_bytes(), want);
    }
}
