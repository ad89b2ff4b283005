//! `logs view` (the newest matching lines) and `logs tail` (then follow, across rotation).

use std::collections::{HashSet, VecDeque};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::LogsError;
use super::filter::Filter;
use super::render::{self, Format};
use crate::logdir::{self, LogName};
use crate::record;
use crate::replay::for_each_line_tolerant;

/// A stored line with its time.
pub type Timed = (DateTime<Utc>, Vec<u8>);

/// The newest `limit` matching lines (0 = all) of every relevant log, oldest first, as
/// `(time, raw line)`.
pub fn select(dir: &Path, filter: &Filter, limit: usize) -> Result<Vec<Timed>, LogsError> {
    let mut all = Vec::new();
    for log in filter.logs() {
        let mut kept: VecDeque<Timed> = VecDeque::new();
        for path in logdir::files(dir, log).map_err(LogsError::io(dir))? {
            let read = for_each_line_tolerant(&path, 0, |_, _, line| {
                if let Some(head) = filter.matches(line) {
                    if limit > 0 && kept.len() == limit {
                        kept.pop_front();
                    }
                    kept.push_back((head.time().unwrap_or_default(), line.to_vec()));
                }
            })
            .map_err(LogsError::io(&path))?;
            super::warn_broken(&path, read);
        }
        all.extend(kept);
    }
    // Each log is in time order; interleave the logs (stable, so equal times keep log order).
    all.sort_by_key(|(t, _)| *t);
    if limit > 0 && all.len() > limit {
        all.drain(..all.len() - limit);
    }
    Ok(all)
}

/// Prints the selected lines.
pub fn print(out: &mut impl Write, format: Format, lines: &[Timed]) -> std::io::Result<()> {
    render::header(out, format)?;
    for (_, raw) in lines {
        if let Some(head) = record::head(raw) {
            render::line(out, format, &head, raw)?;
        }
    }
    out.flush()
}

/// Where `tail` is in one log. Rotation can close several segments between two polls, so
/// `tail` remembers every segment it has accounted for (by its plain name, which a segment
/// keeps when it is compressed) and, on rotation, reads the segments it has not seen, oldest
/// first, before the new active file.
///
/// The writer renames the active file to a segment and creates a new one; a segment may then be
/// compressed (a new inode, the plain file deleted). Three races are closed here:
/// - lines the writer adds to our file after our last read and before the rename: we look at
///   the path *before* reading, so once it names another file our handle is read to its true end;
/// - a rotation between opening the new active file and listing the segments: the new file is
///   opened *first*, and a segment that turns out to be that very file is followed through the
///   handle instead of being read twice;
/// - a segment that is ours (old or new) in either form: recognised by inode while plain, and by
///   its first bytes once compressed.
struct Follow {
    dir: PathBuf,
    log: LogName,
    path: PathBuf,
    file: Option<File>,
    inode: u64,
    offset: u64,
    partial: Vec<u8>,
    seen: HashSet<PathBuf>,
}

/// Bytes of a file's start that identify it among segments.
const PREFIX: usize = 4096;

/// Whether the segment `seg` is `file`, which we hold open: the same inode while plain, the same
/// first bytes once compressed (a new inode). The bytes are read now, not when the file was
/// opened: a file rotated since is complete. A segment holds at least one whole line (the
/// writer rotates only a file it wrote to, and a torn tail is cut back first), and lines carry
/// their own sequence and time, so two segments never share a first line.
fn is_file(seg: &Path, file: &File) -> std::io::Result<bool> {
    let mut r = match logdir::open_read(seg, 0) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    if !r.is_compressed() {
        return Ok(r.inode()? == file.metadata()?.ino());
    }
    let mut prefix = vec![0u8; PREFIX];
    let n = read_prefix(file, &mut prefix)?;
    prefix.truncate(n);
    if memchr::memchr(b'\n', &prefix).is_none() {
        return Ok(false);
    }
    let mut head = Vec::with_capacity(prefix.len());
    Read::by_ref(&mut r)
        .take(prefix.len() as u64)
        .read_to_end(&mut head)?;
    Ok(head == prefix)
}

impl Follow {
    fn start(dir: &Path, log: LogName) -> Follow {
        let path = log.active(dir);
        let seen = logdir::segments_settled(dir, log)
            .map(|s| s.segments)
            .unwrap_or_default()
            .into_iter()
            .map(|(seg, _)| logdir::plain_path(&seg))
            .collect();
        let mut f = Follow {
            dir: dir.to_path_buf(),
            log,
            path,
            file: None,
            inode: 0,
            offset: 0,
            partial: Vec::new(),
            seen,
        };
        if let Ok(file) = File::open(&f.path)
            && let Ok(meta) = file.metadata()
        {
            f.inode = meta.ino();
            f.offset = meta.len();
            f.file = Some(file);
        }
        f
    }

    /// New complete lines since the last poll.
    fn poll(&mut self) -> std::io::Result<Vec<Vec<u8>>> {
        let mut lines = Vec::new();
        // Look before reading: if the path names another file now, the writer is done with ours.
        let rotated = match std::fs::metadata(&self.path) {
            Ok(m) => self.file.is_none() || m.ino() != self.inode,
            Err(_) => false,
        };
        self.read_new(&mut lines)?;
        if !rotated {
            return Ok(lines);
        }
        // `old`: the file whose lines are all read; its segment is skipped.
        let mut old = self.file.take();
        loop {
            let new = match File::open(&self.path) {
                Ok(f) => Some(f),
                // Between a rename and the new file's creation: the next poll finds it.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(e),
            };
            let mut listing = logdir::segments_settled(&self.dir, self.log)?;
            let cut = listing.trusted < listing.segments.len();
            listing.segments.truncate(listing.trusted);
            let mut new_closed = false;
            for (seg, _) in listing.segments {
                if !self.seen.insert(logdir::plain_path(&seg)) {
                    continue;
                }
                if let Some(o) = &old
                    && is_file(&seg, o)?
                {
                    continue;
                }
                let mut buf = Vec::new();
                if let Some(file) = &new
                    && is_file(&seg, file)?
                {
                    // The file just opened was rotated too: it is complete, and comes before
                    // any segment listed after it.
                    let mut file = file;
                    file.seek(SeekFrom::Start(0))?;
                    file.read_to_end(&mut buf)?;
                    new_closed = true;
                } else {
                    match logdir::open_read(&seg, 0) {
                        Ok(mut r) => {
                            r.read_to_end(&mut buf)?;
                        }
                        // Retention deleted it meanwhile.
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                        Err(e) => return Err(e),
                    }
                }
                self.split(&buf, &mut lines);
            }
            if new_closed {
                old = new;
                if cut {
                    self.hold_read(old)?;
                    break;
                }
                continue;
            }
            if cut {
                // Newer segments wait for the next poll; so does the new file, which comes
                // after them. `old` stays held so its segment is still recognised then.
                self.hold_read(old)?;
                break;
            }
            match new {
                Some(file) => {
                    self.inode = file.metadata()?.ino();
                    self.file = Some(file);
                    self.offset = 0;
                    self.read_new(&mut lines)?;
                }
                None => self.hold_read(old)?,
            }
            break;
        }
        Ok(lines)
    }

    /// Holds `file`, whose lines are all read, as the current file: the next poll sees the path
    /// name another file and carries on from there, skipping this one's segment.
    fn hold_read(&mut self, file: Option<File>) -> std::io::Result<()> {
        self.inode = match &file {
            Some(f) => f.metadata()?.ino(),
            None => 0,
        };
        self.offset = match &file {
            Some(f) => f.metadata()?.len(),
            None => 0,
        };
        self.file = file;
        Ok(())
    }

    fn read_new(&mut self, lines: &mut Vec<Vec<u8>>) -> std::io::Result<()> {
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        let len = file.metadata()?.len();
        // `offset` is always the start of a line: an unfinished line is read again next time,
        // whole. So a torn tail the writer cuts back (and writes over) is never glued to what
        // comes after it, even when the file is longer again by the next poll.
        if len < self.offset {
            self.offset = len;
        }
        if len > self.offset {
            file.seek(SeekFrom::Start(self.offset))?;
            let mut buf = Vec::with_capacity((len - self.offset) as usize);
            Read::by_ref(file)
                .take(len - self.offset)
                .read_to_end(&mut buf)?;
            if let Some(last) = memchr::memrchr(b'\n', &buf) {
                self.split(&buf[..=last], lines);
                self.offset += last as u64 + 1;
            }
        }
        Ok(())
    }

    fn split(&mut self, buf: &[u8], out: &mut Vec<Vec<u8>>) {
        let mut start = 0;
        for nl in memchr::memchr_iter(b'\n', buf) {
            let mut line = std::mem::take(&mut self.partial);
            line.extend_from_slice(&buf[start..nl]);
            out.push(line);
            start = nl + 1;
        }
        self.partial.extend_from_slice(&buf[start..]);
    }
}

/// Reads the start of `file` into `buf`; returns the bytes read.
fn read_prefix(file: &File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], filled as u64)? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// Prints the last `lines` matching lines, then follows every relevant log until `stop` says so.
pub fn tail(
    dir: &Path,
    filter: &Filter,
    lines: usize,
    format: Format,
    out: &mut impl Write,
    poll: Duration,
    stop: impl Fn() -> bool,
) -> Result<(), LogsError> {
    // Start following before reading history, so nothing written in between is missed twice or lost.
    let mut follows: Vec<Follow> = filter
        .logs()
        .into_iter()
        .map(|l| Follow::start(dir, l))
        .collect();
    let history = select(dir, filter, lines.max(1))?;
    let history = if lines == 0 {
        &history[history.len()..]
    } else {
        &history[..]
    };
    print(out, format, history).map_err(LogsError::io(dir))?;
    while !stop() {
        for f in &mut follows {
            for raw in f.poll().map_err(LogsError::io(&f.path.clone()))? {
                if let Some(head) = filter.matches(&raw) {
                    render::line(out, format, &head, &raw).map_err(LogsError::io(dir))?;
                }
            }
        }
        out.flush().map_err(LogsError::io(dir))?;
        std::thread::sleep(poll);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_torn_tail_cut_back_is_forgotten_not_glued_to_the_next_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = LogName::Events.active(dir.path());
        std::fs::write(&path, "").unwrap();
        let mut f = Follow::start(dir.path(), LogName::Events);
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        file.write_all(b"{\"a\":1}\n{\"torn").unwrap();
        assert_eq!(f.poll().unwrap(), vec![b"{\"a\":1}".to_vec()]);
        // The writer cuts the torn tail back and writes the next line whole.
        file.set_len(8).unwrap();
        file.write_all(b"{\"b\":2}\n").unwrap();
        assert_eq!(f.poll().unwrap(), vec![b"{\"b\":2}".to_vec()]);
    }

    /// A writer that rotates every few lines and compresses some segments, as fast as it can,
    /// against a follower polling as fast as it can: every line arrives once, in order. The
    /// races this covers: lines written to our file after we read it and before the rename, a
    /// rotation between opening the new active file and listing the segments, and a segment
    /// compressed (new inode, plain file gone) while we look at it.
    #[test]
    fn a_follower_racing_a_fast_rotating_writer_gets_every_line_once_in_order() {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::{Arc, Mutex};
        const LINES: usize = 3000;
        let dir = tempfile::tempdir().unwrap();
        let log = LogName::Heartbeats;
        let path = log.active(dir.path());
        std::fs::write(&path, "").unwrap();
        let mut f = Follow::start(dir.path(), log);
        let done = Arc::new(AtomicBool::new(false));
        let closed = Arc::new(Mutex::new(Vec::<PathBuf>::new()));
        let writer = {
            let (dir, path, done, closed) = (
                dir.path().to_path_buf(),
                path.clone(),
                done.clone(),
                closed.clone(),
            );
            std::thread::spawn(move || {
                let open = |p: &Path| {
                    std::fs::OpenOptions::new()
                        .append(true)
                        .create(true)
                        .open(p)
                        .unwrap()
                };
                let mut file = open(&path);
                let stop = AtomicBool::new(false);
                for i in 0..LINES {
                    file.write_all(format!("{{\"n\":{i}}}\n").as_bytes())
                        .unwrap();
                    if i % 3 == 2 {
                        let seg = logdir::rotated_path(&dir, log, Utc::now());
                        std::fs::rename(&path, &seg).unwrap();
                        file = open(&path);
                        closed.lock().unwrap().push(seg);
                    }
                    if i % 9 == 8 {
                        let segs = std::mem::take(&mut *closed.lock().unwrap());
                        for seg in segs.iter().step_by(2) {
                            crate::compress::compress_segment(seg, 1, &stop).unwrap();
                        }
                    }
                }
                done.store(true, Ordering::SeqCst);
            })
        };
        let mut got = Vec::new();
        loop {
            let finished = done.load(Ordering::SeqCst);
            for line in f.poll().unwrap() {
                let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
                got.push(v["n"].as_u64().unwrap() as usize);
            }
            if finished {
                break;
            }
        }
        writer.join().unwrap();
        let first_wrong = got.iter().enumerate().position(|(i, &n)| n != i);
        assert!(
            got.len() == LINES && first_wrong.is_none(),
            "{} lines for {LINES}; first out of place at {first_wrong:?}: {:?}",
            got.len(),
            first_wrong.map(|i| &got[i.saturating_sub(3)..(i + 8).min(got.len())])
        );
    }
}
