//! `logs view` (the newest matching lines) and `logs tail` (then follow, across rotation).

use std::collections::VecDeque;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::LogsError;
use super::filter::Filter;
use super::render::{self, Format};
use crate::store::logdir::{self, LogName};
use crate::store::record;
use crate::store::replay::for_each_line;

/// The newest `limit` matching lines (0 = all) of every relevant log, oldest first, as
/// `(time, raw line)`.
pub fn select(
    dir: &Path,
    filter: &Filter,
    limit: usize,
) -> Result<Vec<(DateTime<Utc>, Vec<u8>)>, LogsError> {
    let mut all = Vec::new();
    for log in filter.logs() {
        let mut kept: VecDeque<(DateTime<Utc>, Vec<u8>)> = VecDeque::new();
        for path in logdir::files(dir, log).map_err(LogsError::io(dir))? {
            for_each_line(&path, |_, _, line| {
                if let Some(head) = filter.matches(line) {
                    if limit > 0 && kept.len() == limit {
                        kept.pop_front();
                    }
                    kept.push_back((head.time().unwrap_or_default(), line.to_vec()));
                }
            })
            .map_err(LogsError::io(&path))?;
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
pub fn print(
    out: &mut impl Write,
    format: Format,
    lines: &[(DateTime<Utc>, Vec<u8>)],
) -> std::io::Result<()> {
    render::header(out, format)?;
    for (_, raw) in lines {
        if let Some(head) = record::head(raw) {
            render::line(out, format, &head, raw)?;
        }
    }
    out.flush()
}

/// Where `tail` is in one log's active file.
struct Follow {
    path: PathBuf,
    file: Option<File>,
    inode: u64,
    offset: u64,
    partial: Vec<u8>,
}

impl Follow {
    fn start(dir: &Path, log: LogName) -> Follow {
        let path = log.active(dir);
        let mut f = Follow {
            path,
            file: None,
            inode: 0,
            offset: 0,
            partial: Vec::new(),
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

    /// New complete lines since the last poll. Finishes a rotated-away file before switching.
    fn poll(&mut self) -> std::io::Result<Vec<Vec<u8>>> {
        let mut lines = Vec::new();
        let current = std::fs::metadata(&self.path).ok();
        let rotated = current.as_ref().is_some_and(|m| m.ino() != self.inode);
        if let Some(file) = self.file.as_mut() {
            let len = file.metadata()?.len();
            if len < self.offset {
                self.offset = len; // cut (torn tail repaired); nothing new
            }
            if len > self.offset {
                file.seek(SeekFrom::Start(self.offset))?;
                let mut buf = Vec::with_capacity((len - self.offset) as usize);
                Read::by_ref(file)
                    .take(len - self.offset)
                    .read_to_end(&mut buf)?;
                self.offset = len;
                self.split(&buf, &mut lines);
            }
        }
        if (rotated || self.file.is_none()) && current.is_some() {
            if let Ok(file) = File::open(&self.path) {
                self.inode = file.metadata()?.ino();
                self.file = Some(file);
                self.offset = 0;
                self.partial.clear();
                return self.poll().map(|mut more| {
                    lines.append(&mut more);
                    lines
                });
            }
        }
        Ok(lines)
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
