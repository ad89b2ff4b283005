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
/// first, before the new active file. The segment its own file became was read to its end
/// through the open handle: it is recognised by inode while plain, and by its first bytes once
/// compressed (a compressed file is a new inode).
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

impl Follow {
    fn start(dir: &Path, log: LogName) -> Follow {
        let path = log.active(dir);
        let seen = logdir::segments(dir, log)
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

    /// Whether the segment `seg` is the file this follower had open.
    fn is_ours(&self, seg: &Path, prefix: &[u8]) -> std::io::Result<bool> {
        if self.file.is_none() {
            return Ok(false);
        }
        let mut r = match logdir::open_read(seg, 0) {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        if !r.is_compressed() {
            return Ok(std::fs::metadata(r.path())?.ino() == self.inode);
        }
        let mut head = Vec::with_capacity(prefix.len());
        Read::by_ref(&mut r)
            .take(prefix.len() as u64)
            .read_to_end(&mut head)?;
        Ok(head == prefix)
    }

    /// New complete lines since the last poll.
    fn poll(&mut self) -> std::io::Result<Vec<Vec<u8>>> {
        let mut lines = Vec::new();
        self.read_new(&mut lines)?;
        let current = std::fs::metadata(&self.path).ok();
        let rotated = current.as_ref().is_some_and(|m| m.ino() != self.inode);
        if rotated || (self.file.is_none() && current.is_some()) {
            // Our file became a segment (already read to its end above). Read the segments
            // closed since, then switch to the new active file from its start.
            let mut prefix = vec![0u8; PREFIX];
            let n = match &self.file {
                Some(f) => read_prefix(f, &mut prefix)?,
                None => 0,
            };
            prefix.truncate(n);
            for (seg, _) in logdir::segments(&self.dir, self.log)? {
                if !self.seen.insert(logdir::plain_path(&seg)) || self.is_ours(&seg, &prefix)? {
                    continue;
                }
                let mut buf = Vec::new();
                match logdir::open_read(&seg, 0) {
                    Ok(mut r) => {
                        r.read_to_end(&mut buf)?;
                    }
                    // Retention deleted it meanwhile.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                }
                self.split(&buf, &mut lines);
            }
            if let Ok(file) = File::open(&self.path) {
                self.inode = file.metadata()?.ino();
                self.file = Some(file);
                self.offset = 0;
                self.read_new(&mut lines)?;
            }
        }
        Ok(lines)
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
}
