//! The log directory's layout: one active file per log (`heartbeats.jsonl`), and for logs that
//! rotate, closed segments named by their rotation time (`heartbeats-20261129T093000Z.jsonl`),
//! which sort in time order. Retention deletes old segments of rotating logs only.
//!
//! A closed segment may be zstd-compressed (`heartbeats-20261129T093000Z.jsonl.zst`, see
//! [`crate::compress`]). Readers need not care: [`segments`] and [`files`] list each segment once,
//! in order, in whichever form it is, and [`open_read`] opens either form as plain lines.
//! A place in a log ([`Position`]) names its file by the file's first line ([`FileId`]), not
//! by its name: the active file is renamed at rotation (and a rotated segment may be stored
//! under another name later), but its first line never changes. [`after`] maps a position back
//! to the files to read.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The logs the Command Center keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogName {
    Heartbeats,
    Scans,
    Commands,
    Events,
    /// Enrollments and revocations: the node registry.
    Nodes,
}

impl LogName {
    pub const ALL: [LogName; 5] = [
        LogName::Heartbeats,
        LogName::Scans,
        LogName::Commands,
        LogName::Events,
        LogName::Nodes,
    ];

    /// Base name of the file (`heartbeats` → `heartbeats.jsonl`).
    pub fn stem(self) -> &'static str {
        match self {
            LogName::Heartbeats => "heartbeats",
            LogName::Scans => "sovereign-scans",
            LogName::Commands => "commands",
            LogName::Events => "events",
            LogName::Nodes => "nodes",
        }
    }

    /// The log whose [`LogName::stem`] this is.
    pub fn from_stem(stem: &str) -> Option<LogName> {
        LogName::ALL.into_iter().find(|l| l.stem() == stem)
    }

    /// Only heartbeats rotate and expire; scans, commands and events are the audit trail.
    pub fn rotates(self) -> bool {
        matches!(self, LogName::Heartbeats)
    }

    pub fn active(self, dir: &Path) -> PathBuf {
        dir.join(format!("{}.jsonl", self.stem()))
    }
}

const STAMP: &str = "%Y%m%dT%H%M%SZ";

/// Name for a segment rotated at `at`, not clashing with an existing file.
pub fn rotated_path(dir: &Path, log: LogName, at: DateTime<Utc>) -> PathBuf {
    let base = format!("{}-{}", log.stem(), at.format(STAMP));
    let mut path = dir.join(format!("{base}.jsonl"));
    let mut n = 1;
    // A compressed segment keeps its name: the plain name is taken while either form exists.
    while path.exists() || compressed_path(&path).exists() {
        path = dir.join(format!("{base}-{n}.jsonl"));
        n += 1;
    }
    path
}

/// Suffix a compressed segment adds to its plain name (`….jsonl.zst`).
pub const COMPRESSED: &str = ".zst";

/// The name a plain segment has once compressed: `….jsonl` → `….jsonl.zst`.
pub fn compressed_path(plain: &Path) -> PathBuf {
    let mut name = plain.as_os_str().to_os_string();
    name.push(COMPRESSED);
    PathBuf::from(name)
}

/// The plain name of a segment in either form: `….jsonl.zst` → `….jsonl`.
pub fn plain_path(path: &Path) -> PathBuf {
    match path.to_str().and_then(|p| p.strip_suffix(COMPRESSED)) {
        Some(plain) => PathBuf::from(plain),
        None => path.to_path_buf(),
    }
}

/// Whether `path` names a compressed segment.
pub fn is_compressed(path: &Path) -> bool {
    path.to_str().is_some_and(|p| p.ends_with(COMPRESSED))
}

/// When a segment was rotated, from its name (plain or compressed).
fn rotated_at(log: LogName, file_name: &str) -> Option<DateTime<Utc>> {
    let name = file_name.strip_suffix(COMPRESSED).unwrap_or(file_name);
    let rest = name
        .strip_prefix(log.stem())?
        .strip_prefix('-')?
        .strip_suffix(".jsonl")?;
    let stamp = rest.get(..16)?;
    NaiveDateTime::parse_from_str(stamp, STAMP)
        .ok()
        .map(|t| t.and_utc())
}

/// Closed segments of `log`, oldest first, with their rotation times: each once, as its plain
/// file (`.jsonl`) or, once compressed, as its `.jsonl.zst`. While a segment is being compressed
/// both forms exist for a moment; it is listed as the plain file then (and [`open_read`] opens
/// the compressed form should the plain one be gone by the time it is opened).
pub fn segments(dir: &Path, log: LogName) -> std::io::Result<Vec<(PathBuf, DateTime<Utc>)>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        if let Some(at) = name.to_str().and_then(|n| rotated_at(log, n)) {
            out.push((entry.path(), at));
        }
    }
    in_order(&mut out);
    Ok(out)
}

/// Sorts segments oldest first and keeps each once. Same second: the plain name came first, then
/// -1, -2, ... Within one segment the plain form sorts before the compressed one, which `dedup`
/// then drops.
fn in_order(out: &mut Vec<(PathBuf, DateTime<Utc>)>) {
    let key = |p: &Path| plain_path(p);
    out.sort_by(|a, b| {
        let (ka, kb) = (key(&a.0), key(&b.0));
        a.1.cmp(&b.1)
            .then(ka.as_os_str().len().cmp(&kb.as_os_str().len()))
            .then(ka.cmp(&kb))
            .then(is_compressed(&a.0).cmp(&is_compressed(&b.0)))
    });
    out.dedup_by(|later, earlier| key(&later.0) == key(&earlier.0));
}

/// Segments as a reader racing the writer and the compressor sees them: see [`segments_settled`].
#[derive(Debug)]
pub struct Settled {
    /// Closed segments oldest first, each once.
    pub segments: Vec<(PathBuf, DateTime<Utc>)>,
    /// How many of the first `segments` are vouched for: none is missing before the last of them.
    pub trusted: usize,
}

/// Listings one after the other that must follow a segment's last event before it is trusted.
const SETTLE_SCANS: usize = 3;

/// [`segments`] for a reader racing the writer and the compressor (`logs view` and `logs tail`
/// while the Command Center runs).
///
/// A directory read is not a snapshot: an entry made while it runs may be missed, and one
/// removed may be missed too. A segment changes its entry three times — created (the active
/// file renamed), compressed (`.zst` renamed in), then its plain file unlinked — and one listing
/// can miss it in both forms only if one of these falls within it. So the union of listings taken
/// one after the other holds every segment older than one first seen [`SETTLE_SCANS`] listings
/// before the last: the older segment existed when those listings began and can spoil at most
/// two of them. Listings stop after three in a row add nothing (then all are trusted), or after
/// 12 (a writer rotating without pause); `trusted` says how far the result is vouched for.
pub fn segments_settled(dir: &Path, log: LogName) -> std::io::Result<Settled> {
    let mut first_seen: HashMap<PathBuf, usize> = HashMap::new();
    let mut all = Vec::new();
    let (mut scans, mut quiet) = (0, 0);
    while quiet < SETTLE_SCANS && scans < 4 * SETTLE_SCANS {
        scans += 1;
        let mut added = false;
        for (path, at) in segments(dir, log)? {
            if let std::collections::hash_map::Entry::Vacant(e) =
                first_seen.entry(plain_path(&path))
            {
                e.insert(scans);
                all.push((path, at));
                added = true;
            }
        }
        quiet = if added { 0 } else { quiet + 1 };
    }
    in_order(&mut all);
    let trusted = all
        .iter()
        .rposition(|(p, _)| first_seen[&plain_path(p)] + SETTLE_SCANS <= scans)
        .map_or(0, |i| i + 1);
    Ok(Settled {
        segments: all,
        trusted,
    })
}

/// Every file of `log` in time order: closed segments, then the active file if it exists. The
/// segments are [settled](segments_settled), as the reader may race the writer's compressor.
pub fn files(dir: &Path, log: LogName) -> std::io::Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = segments_settled(dir, log)?
        .segments
        .into_iter()
        .map(|s| s.0)
        .collect();
    let active = log.active(dir);
    if active.exists() {
        v.push(active);
    }
    Ok(v)
}

/// Deletes closed segments of a rotating `log` rotated more than `keep` before `now`.
/// Returns the deleted paths.
pub fn expire(
    dir: &Path,
    log: LogName,
    keep: Duration,
    now: DateTime<Utc>,
) -> std::io::Result<Vec<PathBuf>> {
    if !log.rotates() {
        return Ok(Vec::new());
    }
    let keep = chrono::Duration::from_std(keep).unwrap_or(chrono::Duration::MAX);
    let mut deleted = Vec::new();
    for (path, at) in segments(dir, log)? {
        if now - at > keep {
            // Both forms, should the segment be in the middle of its compression.
            let plain = plain_path(&path);
            for p in [compressed_path(&plain), plain] {
                match std::fs::remove_file(&p) {
                    Ok(()) => deleted.push(p),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(deleted)
}

/// A log file opened for reading: its lines as written, whether the file is plain or
/// zstd-compressed.
pub struct LogReader {
    path: PathBuf,
    inner: Inner,
}

/// Largest zstd block (decompressed), 128 KiB.
const ZSTD_BLOCK: usize = 128 << 10;

enum Inner {
    Plain(File),
    Zstd(Box<zstd::stream::read::Decoder<'static, BufReader<File>>>),
}

impl std::fmt::Debug for LogReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogReader")
            .field("path", &self.path)
            .field("compressed", &self.is_compressed())
            .finish()
    }
}

impl LogReader {
    /// The file actually opened (the compressed form of a segment listed as plain, say).
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn is_compressed(&self) -> bool {
        matches!(self.inner, Inner::Zstd(_))
    }

    /// The inode of the file opened, in either form.
    pub fn inode(&self) -> std::io::Result<u64> {
        use std::os::unix::fs::MetadataExt;
        Ok(match &self.inner {
            Inner::Plain(f) => f.metadata()?.ino(),
            Inner::Zstd(d) => d.get_ref().get_ref().metadata()?.ino(),
        })
    }
}

impl Read for LogReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match &mut self.inner {
            Inner::Plain(f) => f.read(buf),
            // A block at most per call: a read that fails (a corrupt block) loses what it
            // decoded, so the lines before the break are passed on before it is reached.
            Inner::Zstd(d) => {
                let n = buf.len().min(ZSTD_BLOCK);
                d.read(&mut buf[..n])
            }
        }
    }
}

/// Opens any log file — an active file, or a closed segment plain or compressed — for reading
/// its lines from `offset` on, counted in the bytes of its lines (the decompressed content of a
/// `.jsonl.zst`, so an offset taken in the plain segment holds after its compression).
///
/// A segment may change form between being listed and being opened (compression finishing,
/// or crash recovery removing a leftover compressed copy): given either name, this opens the
/// form that exists. An offset past the end is an `UnexpectedEof` error.
pub fn open_read(path: &Path, offset: u64) -> std::io::Result<LogReader> {
    let other = if is_compressed(path) {
        plain_path(path)
    } else {
        compressed_path(path)
    };
    let (path, file) = match File::open(path) {
        Ok(f) => (path.to_path_buf(), f),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => match File::open(&other) {
            Ok(f) => (other, f),
            Err(_) => return Err(e),
        },
        Err(e) => return Err(e),
    };
    let mut reader = if is_compressed(&path) {
        let decoder = zstd::stream::read::Decoder::new(file)?;
        LogReader {
            path,
            inner: Inner::Zstd(Box::new(decoder)),
        }
    } else {
        LogReader {
            path,
            inner: Inner::Plain(file),
        }
    };
    if offset > 0 {
        let skipped = match &mut reader.inner {
            Inner::Plain(f) => {
                let len = f.metadata()?.len();
                f.seek(SeekFrom::Start(offset.min(len)))?
            }
            Inner::Zstd(d) => std::io::copy(&mut d.by_ref().take(offset), &mut std::io::sink())?,
        };
        if skipped < offset {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "{}: offset {offset} is past the end ({skipped} bytes)",
                    reader.path.display()
                ),
            ));
        }
    }
    Ok(reader)
}

/// One file of a log, whatever it is named now: the SHA-256 of its first line (without the
/// newline). Every line carries its arrival time in nanoseconds and its node, so no two files
/// begin with the same line.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FileId(pub [u8; 32]);

impl FileId {
    pub fn of_first_line(line: &[u8]) -> FileId {
        FileId(Sha256::digest(line).into())
    }
}

impl std::fmt::Debug for FileId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FileId({})", hex::encode(&self.0[..8]))
    }
}

/// Where a log's lines up to some point end: what a snapshot of the state built from them
/// records, so that only the lines after it need reading again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Position {
    /// Before the first line: the log had none.
    Start,
    /// After the first `offset` bytes (always a line boundary) of the file `file`.
    In { file: FileId, offset: u64 },
    /// After all of the closed segment `file`, and before the file that followed it.
    After { file: FileId },
}

/// Why a [`Position`] names no place in the log any more.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Lost {
    #[error(
        "no file of the {0} log begins with the line the position names (retention deleted its segment, or the files were replaced)"
    )]
    FileGone(&'static str),
    #[error("{file} holds {len} bytes, fewer than the position's {offset}")]
    Beyond { file: String, len: u64, offset: u64 },
    #[error("the position names the whole of {0}, but that is the active file")]
    StillActive(String),
}

/// The files holding every line of `log` after `pos`, each with the byte to start reading at:
/// the file `pos` names (from its offset; skipped when the position is after it), then every
/// later file from its start. [`Lost`] when that file is gone or shorter than the position.
/// Whether the offset falls on a line boundary is checked by the reader
/// ([`crate::replay::for_each_line_from`]).
pub fn after(
    dir: &Path,
    log: LogName,
    pos: &Position,
) -> std::io::Result<Result<Vec<(PathBuf, u64)>, Lost>> {
    let files = files(dir, log)?;
    let (want, offset) = match *pos {
        Position::Start => return Ok(Ok(files.into_iter().map(|f| (f, 0)).collect())),
        Position::In { file, offset } => (file, Some(offset)),
        Position::After { file } => (file, None),
    };
    // Newest first: the position is almost always in the active file or the last segment.
    for (i, path) in files.iter().enumerate().rev() {
        let first = match crate::replay::first_line(path) {
            Ok(Some(line)) => line,
            Ok(None) => continue,
            // Deleted (or renamed) between listing and reading: not the one.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            // A compressed segment damaged on disk: not the one (replay reports the damage).
            Err(_) if stored_compressed(path) => continue,
            Err(e) => return Err(e),
        };
        if FileId::of_first_line(&first) != want {
            continue;
        }
        let later = files[i + 1..].iter().map(|f| (f.clone(), 0));
        return Ok(match offset {
            Some(offset) => {
                let len = std::fs::metadata(path)?.len();
                if is_plain(path) && len < offset {
                    Err(Lost::Beyond {
                        file: path.display().to_string(),
                        len,
                        offset,
                    })
                } else {
                    Ok(std::iter::once((path.clone(), offset))
                        .chain(later)
                        .collect())
                }
            }
            None if *path == log.active(dir) => Err(Lost::StillActive(path.display().to_string())),
            None => Ok(later.collect()),
        });
    }
    Ok(Err(Lost::FileGone(log.stem())))
}

/// Whether the segment `path` names is stored compressed: its name says so, or only its
/// compressed form exists.
pub fn stored_compressed(path: &Path) -> bool {
    is_compressed(path) || (!path.exists() && compressed_path(path).exists())
}

/// Whether `path` holds the log's bytes as they are (a compressed segment's size says nothing
/// about its lines).
fn is_plain(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "jsonl")
}

/// fsyncs a directory, so a created, renamed or deleted entry survives a crash.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_maps_a_position_to_the_files_that_follow_it() {
        let dir = tempfile::tempdir().unwrap();
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let log = LogName::Heartbeats;
        let a = rotated_path(dir.path(), log, t("2026-11-01T00:00:00Z"));
        std::fs::write(&a, "a1\na2\n").unwrap();
        let b = rotated_path(dir.path(), log, t("2026-11-02T00:00:00Z"));
        std::fs::write(&b, "b1\n").unwrap();
        let active = log.active(dir.path());
        std::fs::write(&active, "c1\nc2\n").unwrap();
        let id = |l: &str| FileId::of_first_line(l.as_bytes());
        let at = |pos: Position| after(dir.path(), log, &pos).unwrap();

        assert_eq!(
            at(Position::In {
                file: id("a1"),
                offset: 3
            }),
            Ok(vec![(a.clone(), 3), (b.clone(), 0), (active.clone(), 0)])
        );
        assert_eq!(
            at(Position::After { file: id("b1") }),
            Ok(vec![(active.clone(), 0)])
        );
        assert_eq!(
            at(Position::In {
                file: id("c1"),
                offset: 6
            }),
            Ok(vec![(active.clone(), 6)])
        );
        assert_eq!(
            at(Position::Start),
            Ok(vec![(a.clone(), 0), (b.clone(), 0), (active.clone(), 0)])
        );
        assert_eq!(
            at(Position::In {
                file: id("zz"),
                offset: 0
            }),
            Err(Lost::FileGone("heartbeats"))
        );
        assert!(matches!(
            at(Position::In {
                file: id("c1"),
                offset: 7
            }),
            Err(Lost::Beyond {
                len: 6,
                offset: 7,
                ..
            })
        ));
        assert!(matches!(
            at(Position::After { file: id("c1") }),
            Err(Lost::StillActive(_))
        ));
        // The segment a position names was deleted by retention.
        std::fs::remove_file(&a).unwrap();
        assert_eq!(
            at(Position::In {
                file: id("a1"),
                offset: 3
            }),
            Err(Lost::FileGone("heartbeats"))
        );
    }

    #[test]
    fn segments_sort_by_rotation_time_and_expire() {
        let dir = tempfile::tempdir().unwrap();
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let a = rotated_path(dir.path(), LogName::Heartbeats, t("2026-11-01T00:00:00Z"));
        std::fs::write(&a, "").unwrap();
        let b = rotated_path(dir.path(), LogName::Heartbeats, t("2026-11-20T12:00:00Z"));
        std::fs::write(&b, "").unwrap();
        let b2 = rotated_path(dir.path(), LogName::Heartbeats, t("2026-11-20T12:00:00Z"));
        assert!(
            b2.to_string_lossy()
                .ends_with("heartbeats-20261120T120000Z-1.jsonl"),
            "{b2:?}"
        );
        std::fs::write(&b2, "").unwrap();
        std::fs::write(LogName::Heartbeats.active(dir.path()), "").unwrap();
        std::fs::write(dir.path().join("events.jsonl"), "").unwrap();

        let all = files(dir.path(), LogName::Heartbeats).unwrap();
        let names: Vec<_> = all
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "heartbeats-20261101T000000Z.jsonl",
                "heartbeats-20261120T120000Z.jsonl",
                "heartbeats-20261120T120000Z-1.jsonl",
                "heartbeats.jsonl"
            ]
        );
        let gone = expire(
            dir.path(),
            LogName::Heartbeats,
            Duration::from_secs(7 * 86_400),
            t("2026-11-25T00:00:00Z"),
        )
        .unwrap();
        assert_eq!(gone, vec![a]);
        assert!(
            expire(
                dir.path(),
                LogName::Events,
                Duration::ZERO,
                t("2030-01-01T00:00:00Z")
            )
            .unwrap()
            .is_empty()
        );
    }

    #[test]
    fn compressed_segments_list_once_keep_their_name_and_expire() {
        let dir = tempfile::tempdir().unwrap();
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let log = LogName::Heartbeats;
        let a = rotated_path(dir.path(), log, t("2026-11-01T00:00:00Z"));
        std::fs::write(compressed_path(&a), "").unwrap();
        // Same second as a compressed segment: the plain name is still taken.
        let a1 = rotated_path(dir.path(), log, t("2026-11-01T00:00:00Z"));
        assert!(a1.to_string_lossy().ends_with("-1.jsonl"), "{a1:?}");
        // Mid-compression: both forms, and a temp file readers ignore.
        std::fs::write(&a1, "").unwrap();
        std::fs::write(compressed_path(&a1), "").unwrap();
        std::fs::write(
            dir.path()
                .join("heartbeats-20261101T000000Z-1.jsonl.zst.tmp"),
            "",
        )
        .unwrap();
        let b = rotated_path(dir.path(), log, t("2026-11-20T00:00:00Z"));
        std::fs::write(&b, "").unwrap();
        let listed: Vec<PathBuf> = segments(dir.path(), log)
            .unwrap()
            .into_iter()
            .map(|s| s.0)
            .collect();
        assert_eq!(listed, vec![compressed_path(&a), a1.clone(), b.clone()]);
        assert_eq!(plain_path(&compressed_path(&a)), a);
        let gone = expire(
            dir.path(),
            log,
            Duration::from_secs(7 * 86_400),
            t("2026-11-25T00:00:00Z"),
        )
        .unwrap();
        assert_eq!(gone, vec![compressed_path(&a), compressed_path(&a1), a1]);
        assert_eq!(files(dir.path(), log).unwrap(), vec![b]);
    }
}
