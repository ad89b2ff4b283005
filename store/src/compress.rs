//! Compression of closed heartbeat segments, in the background, off the writer thread.
//!
//! After each rotation the writer wakes the [`Keeper`], whose thread compresses every plain
//! segment of the log (`heartbeats-….jsonl` → `heartbeats-….jsonl.zst`), oldest first. One
//! segment goes through these steps, each safe to be interrupted by a crash:
//!
//! 1. compress into `….jsonl.zst.tmp` (a zstd frame with its content checksum), fsync it;
//! 2. decompress the temp file and compare it with the segment byte for byte;
//! 3. rename the temp file to `….jsonl.zst`, fsync the directory;
//! 4. delete the plain segment, fsync the directory.
//!
//! A crash leaves at most a temp file (ignored by every reader, deleted when the keeper
//! starts) or both forms of one segment (readers list the plain one; the keeper deletes the
//! compressed copy at start and compresses the segment again): the plain segment is deleted
//! only once its compressed form is durable and known equal. Tests:
//! `compress::tests::a_crash_at_any_step_leaves_a_readable_segment` and
//! `compress::tests::compressed_segments_read_back_byte_for_byte`.
//!
//! Stopping (the store closing) abandons a compression in progress between two chunks and
//! deletes its temp file; the segment stays plain until the next start.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::time::Instant;

use super::logdir::{self, LogName};

/// The zstd level closed heartbeat segments are compressed at by default. Measured side by side
/// by `store-bench` on this project's live heartbeat lines (1,000 interleaved nodes, one 256 MiB
/// segment; docs/PERFORMANCE.md): level 1 stores 124 bytes a line for 5.1 µs of CPU per
/// heartbeat, level 3 148 bytes for 7.4 µs, level 9 118 bytes for 29.6 µs. Every heartbeat the
/// Command Center logs is compressed once its segment rotates, so that CPU is part of its cost
/// per heartbeat: level 1 spends a sixth of level 9's for 5 % more disk.
pub const DEFAULT_LEVEL: i32 = 1;

/// Suffix of a compression in progress (`….jsonl.zst.tmp`).
const TMP: &str = ".tmp";

/// Bytes read from the plain segment per step; the stop flag is checked between steps.
const CHUNK: usize = 1 << 20;

/// What became of one segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Compressed: `plain` bytes are now `compressed` bytes in the `.zst`.
    Compressed { plain: u64, compressed: u64 },
    /// Stopped before the end; the segment is still plain and the temp file is gone.
    Stopped,
    /// The segment was deleted (retention) while it was being compressed; so is its copy.
    Gone,
}

fn tmp_path(plain: &Path) -> PathBuf {
    let mut name = logdir::compressed_path(plain).into_os_string();
    name.push(TMP);
    PathBuf::from(name)
}

fn dir_of(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Compresses the closed segment `plain` into `plain.zst` at `level`, then deletes `plain`
/// (the steps and their crash safety are in the module docs).
pub fn compress_segment(plain: &Path, level: i32, stop: &AtomicBool) -> std::io::Result<Outcome> {
    let dir = dir_of(plain);
    let zst = logdir::compressed_path(plain);
    let tmp = tmp_path(plain);
    let mut src = match File::open(plain) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Outcome::Gone),
        Err(e) => return Err(e),
    };
    let len = src.metadata()?.len();
    let written = (|| {
        let out = File::create(&tmp)?;
        let mut enc =
            zstd::stream::write::Encoder::new(BufWriter::with_capacity(CHUNK, out), level)?;
        enc.include_checksum(true)?;
        enc.set_pledged_src_size(Some(len))?;
        let mut buf = vec![0u8; CHUNK];
        loop {
            if stop.load(Ordering::Relaxed) {
                return Ok(None);
            }
            let n = src.read(&mut buf)?;
            if n == 0 {
                break;
            }
            enc.write_all(&buf[..n])?;
        }
        let out = enc.finish()?.into_inner().map_err(|e| e.into_error())?;
        out.sync_all()?;
        Ok(Some(out.metadata()?.len()))
    })();
    let compressed = match written {
        Ok(Some(n)) => n,
        Ok(None) => {
            let _ = std::fs::remove_file(&tmp);
            return Ok(Outcome::Stopped);
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    if let Err(e) = same_content(plain, &tmp) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, &zst)?;
    logdir::sync_dir(dir)?;
    match std::fs::remove_file(plain) {
        Ok(()) => {}
        // Retention deleted the segment meanwhile: it is past keeping in any form.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            match std::fs::remove_file(&zst) {
                // Retention may have deleted both forms.
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            logdir::sync_dir(dir)?;
            return Ok(Outcome::Gone);
        }
        Err(e) => return Err(e),
    }
    logdir::sync_dir(dir)?;
    Ok(Outcome::Compressed {
        plain: len,
        compressed,
    })
}

/// Checks that the compressed `zst` decompresses to exactly the bytes of `plain`.
fn same_content(plain: &Path, zst: &Path) -> std::io::Result<()> {
    let mut a = File::open(plain)?;
    let mut b = zstd::stream::read::Decoder::new(File::open(zst)?)?;
    let (mut x, mut y) = (vec![0u8; CHUNK], vec![0u8; CHUNK]);
    loop {
        let n = read_full(&mut a, &mut x)?;
        let m = read_full(&mut b, &mut y)?;
        if n != m || x[..n] != y[..m] {
            return Err(std::io::Error::other(format!(
                "{}: the compressed copy differs from the segment; the segment stays plain",
                zst.display()
            )));
        }
        if n == 0 {
            return Ok(());
        }
    }
}

/// Reads until `buf` is full or the end; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// What [`recover`] cleaned up.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// Temp files of compressions a crash interrupted.
    pub temps: Vec<PathBuf>,
    /// Compressed copies of segments whose plain file was still there.
    pub copies: Vec<PathBuf>,
}

/// Cleans up after a crash mid-compression: deletes leftover temp files, and the compressed
/// copy of any segment that still has its plain file (the plain file wins; the segment is
/// compressed again).
pub fn recover(dir: &Path, log: LogName) -> std::io::Result<Recovered> {
    let mut out = Recovered::default();
    let prefix = format!("{}-", log.stem());
    let suffix = format!(".jsonl{}{TMP}", logdir::COMPRESSED);
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with(&prefix) && name.ends_with(&suffix) {
            let p = dir.join(name);
            std::fs::remove_file(&p)?;
            out.temps.push(p);
        }
    }
    for (path, _) in logdir::segments(dir, log)? {
        let zst = logdir::compressed_path(&path);
        if !logdir::is_compressed(&path) && zst.exists() {
            std::fs::remove_file(&zst)?;
            out.copies.push(zst);
        }
    }
    if !(out.temps.is_empty() && out.copies.is_empty()) {
        logdir::sync_dir(dir)?;
    }
    Ok(out)
}

/// Compresses every plain segment of `log`, oldest first, until done or `stop`.
pub fn sweep(dir: &Path, log: LogName, level: i32, stop: &AtomicBool) -> std::io::Result<()> {
    for (path, _) in logdir::segments(dir, log)? {
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        if logdir::is_compressed(&path) {
            continue;
        }
        let started = Instant::now();
        match compress_segment(&path, level, stop) {
            Ok(Outcome::Compressed { plain, compressed }) => tracing::info!(
                segment = %path.display(),
                plain,
                compressed,
                ms = started.elapsed().as_millis() as u64,
                "Compressed log segment."
            ),
            Ok(Outcome::Stopped) => return Ok(()),
            Ok(Outcome::Gone) => {}
            Err(e) => {
                tracing::error!(segment = %path.display(), error = %e, "Cannot compress a log segment; it stays plain (retried after the next rotation).")
            }
        }
    }
    Ok(())
}

/// The background thread that compresses a log's closed segments; see the module docs.
#[derive(Debug)]
pub struct Keeper {
    stop: Arc<AtomicBool>,
    wake: Option<SyncSender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Keeper {
    /// Starts the thread: it cleans up after a crash ([`recover`]), compresses the segments
    /// left plain, then again each time it is woken.
    pub fn start(dir: &Path, log: LogName, level: i32) -> std::io::Result<Keeper> {
        let stop = Arc::new(AtomicBool::new(false));
        let (wake, woken) = std::sync::mpsc::sync_channel(1);
        let (dir, flag) = (dir.to_path_buf(), Arc::clone(&stop));
        let thread = std::thread::Builder::new()
            .name(format!("compress-{}", log.stem()))
            .spawn(move || run(&dir, log, level, &flag, &woken))?;
        Ok(Keeper {
            stop,
            wake: Some(wake),
            thread: Some(thread),
        })
    }

    /// A handle that wakes the thread (after a rotation).
    pub fn waker(&self) -> Option<Waker> {
        self.wake.clone().map(Waker)
    }

    /// Stops the thread, abandoning a compression in progress, and waits for it.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wakers may outlive the keeper (the writer holds one): wake the thread to see the flag.
        if let Some(w) = self.wake.take() {
            let _ = w.try_send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Wakes a [`Keeper`]; wake-ups while it is busy coalesce into one more sweep.
#[derive(Debug, Clone)]
pub struct Waker(SyncSender<()>);

impl Waker {
    pub fn wake(&self) {
        match self.0.try_send(()) {
            Ok(()) | Err(TrySendError::Full(())) | Err(TrySendError::Disconnected(())) => {}
        }
    }
}

fn run(dir: &Path, log: LogName, level: i32, stop: &AtomicBool, woken: &Receiver<()>) {
    match recover(dir, log) {
        Ok(r) => {
            for p in r.temps.iter().chain(&r.copies) {
                tracing::warn!(file = %p.display(), "Deleted what an interrupted segment compression left; the segment is compressed again.");
            }
        }
        Err(e) => {
            tracing::error!(dir = %dir.display(), error = %e, "Cannot clean up after an interrupted segment compression; segments stay plain.");
            return;
        }
    }
    loop {
        if let Err(e) = sweep(dir, log, level, stop) {
            tracing::error!(dir = %dir.display(), error = %e, "Cannot list the log segments to compress them.");
        }
        if stop.load(Ordering::Relaxed) || woken.recv().is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn lines(n: usize, tag: &str) -> String {
        (0..n)
            .map(|i| {
                format!("{{\"kind\":\"heartbeat\",\"ts\":\"t\",\"record\":{{\"{tag}\":{i}}}}}\n")
            })
            .collect()
    }

    fn read_all(path: &Path) -> String {
        let mut s = String::new();
        logdir::open_read(path, 0)
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        s
    }

    #[test]
    fn compressed_segments_read_back_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let seg = logdir::rotated_path(dir.path(), LogName::Heartbeats, at("2026-11-29T09:30:00Z"));
        let text = lines(50_000, "n");
        std::fs::write(&seg, &text).unwrap();
        let out = compress_segment(&seg, DEFAULT_LEVEL, &AtomicBool::new(false)).unwrap();
        let Outcome::Compressed { plain, compressed } = out else {
            panic!("{out:?}")
        };
        assert_eq!(plain, text.len() as u64);
        assert!(compressed * 10 < plain, "{compressed} of {plain}");
        assert!(!seg.exists(), "the plain segment is gone");
        let zst = logdir::compressed_path(&seg);
        assert_eq!(std::fs::metadata(&zst).unwrap().len(), compressed);
        // Listed under its compressed name, read back whole by either name, from an offset too.
        let listed = logdir::segments(dir.path(), LogName::Heartbeats).unwrap();
        assert_eq!(listed, vec![(zst.clone(), at("2026-11-29T09:30:00Z"))]);
        assert_eq!(read_all(&zst), text);
        assert_eq!(
            read_all(&seg),
            text,
            "the plain name opens the compressed form"
        );
        let mut tail = String::new();
        let mut r = logdir::open_read(&seg, 1000).unwrap();
        assert!(r.is_compressed());
        r.read_to_string(&mut tail).unwrap();
        assert_eq!(tail, text[1000..]);
        assert_eq!(
            logdir::open_read(&seg, text.len() as u64 + 1)
                .unwrap_err()
                .kind(),
            std::io::ErrorKind::UnexpectedEof
        );
    }

    #[test]
    fn a_crash_at_any_step_leaves_a_readable_segment() {
        let dir = tempfile::tempdir().unwrap();
        let log = LogName::Heartbeats;
        let mk = |stamp: &str, tag: &str| {
            let p = logdir::rotated_path(dir.path(), log, at(stamp));
            std::fs::write(&p, lines(2000, tag)).unwrap();
            p
        };
        // 1. Died while writing the temp file: a torn temp file beside the plain segment.
        let a = mk("2026-11-29T01:00:00Z", "a");
        std::fs::write(tmp_path(&a), b"\x28\xb5\x2f\xfd torn").unwrap();
        // 2. Died after the rename, before deleting the plain segment: both forms.
        let b = mk("2026-11-29T02:00:00Z", "b");
        let b_copy = dir.path().join("copy");
        std::fs::copy(&b, &b_copy).unwrap();
        compress_segment(&b_copy, 3, &AtomicBool::new(false)).unwrap();
        std::fs::rename(
            logdir::compressed_path(&b_copy),
            logdir::compressed_path(&b),
        )
        .unwrap();
        // 3. Died before compressing at all: a plain segment.
        let c = mk("2026-11-29T03:00:00Z", "c");

        // Readers before any recovery: each segment once, the temp file ignored, every line.
        let listed = logdir::files(dir.path(), log).unwrap();
        assert_eq!(listed, vec![a.clone(), b.clone(), c.clone()]);
        let want = lines(2000, "a") + &lines(2000, "b") + &lines(2000, "c");
        let all: String = listed.iter().map(|p| read_all(p)).collect();
        assert_eq!(all, want);

        let r = recover(dir.path(), log).unwrap();
        assert_eq!(r.temps, vec![tmp_path(&a)]);
        assert_eq!(r.copies, vec![logdir::compressed_path(&b)]);
        sweep(dir.path(), log, 3, &AtomicBool::new(false)).unwrap();
        let listed = logdir::files(dir.path(), log).unwrap();
        assert!(
            listed.iter().all(|p| logdir::is_compressed(p)),
            "{listed:?}"
        );
        let all: String = listed.iter().map(|p| read_all(p)).collect();
        assert_eq!(all, want);
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("heartbeats-"))
            .collect();
        assert_eq!(
            names.len(),
            3,
            "no temp file or second form left: {names:?}"
        );
    }

    #[test]
    fn stopping_abandons_the_compression_and_keeps_the_segment_plain() {
        let dir = tempfile::tempdir().unwrap();
        let seg = logdir::rotated_path(dir.path(), LogName::Heartbeats, at("2026-11-29T09:30:00Z"));
        std::fs::write(&seg, lines(10, "n")).unwrap();
        let out = compress_segment(&seg, 3, &AtomicBool::new(true)).unwrap();
        assert_eq!(out, Outcome::Stopped);
        assert!(seg.exists());
        assert!(!tmp_path(&seg).exists() && !logdir::compressed_path(&seg).exists());
    }

    #[test]
    fn a_segment_deleted_while_compressed_leaves_no_copy() {
        let dir = tempfile::tempdir().unwrap();
        let seg = logdir::rotated_path(dir.path(), LogName::Heartbeats, at("2026-11-29T09:30:00Z"));
        std::fs::write(&seg, lines(10, "n")).unwrap();
        // Retention ran between listing and opening.
        std::fs::remove_file(&seg).unwrap();
        assert_eq!(
            compress_segment(&seg, 3, &AtomicBool::new(false)).unwrap(),
            Outcome::Gone
        );
        assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());
    }

    #[test]
    fn the_keeper_compresses_what_it_finds_and_what_it_is_woken_for() {
        let dir = tempfile::tempdir().unwrap();
        let log = LogName::Heartbeats;
        let first = logdir::rotated_path(dir.path(), log, at("2026-11-29T01:00:00Z"));
        std::fs::write(&first, lines(100, "a")).unwrap();
        let mut keeper = Keeper::start(dir.path(), log, 3).unwrap();
        let waker = keeper.waker().unwrap();
        let compressed = |n: usize| {
            let deadline = Instant::now() + std::time::Duration::from_secs(10);
            loop {
                let files = logdir::files(dir.path(), log).unwrap();
                if files.len() == n && files.iter().all(|p| logdir::is_compressed(p)) {
                    return;
                }
                assert!(Instant::now() < deadline, "{files:?}");
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        };
        compressed(1);
        let second = logdir::rotated_path(dir.path(), log, at("2026-11-29T02:00:00Z"));
        std::fs::write(&second, lines(100, "b")).unwrap();
        waker.wake();
        compressed(2);
        keeper.stop();
        waker.wake(); // harmless once stopped
    }
}
