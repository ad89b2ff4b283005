//! Kernel files (`/proc`, `/sys`) read again and again: opened once, read from the start each
//! time.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// A kernel file opened once and read again from its start at every run: `pread` from offset
/// 0 until it returns 0, two system calls where opening the file each time takes four (`openat`,
/// the dearest of them with its path lookup, two `read`s and `close`). The kernel regenerates a
/// `/proc` or `/sys` file on a read from offset 0, so each read is as fresh as a new open's.
/// A read that fails closes the file, and the next read opens it again (a file that was
/// missing may have appeared).
#[derive(Debug)]
pub struct Kept {
    path: PathBuf,
    file: Mutex<Option<File>>,
}

impl Kept {
    /// Opens nothing yet: the first read does.
    pub fn new(path: impl Into<PathBuf>) -> Kept {
        Kept {
            path: path.into(),
            file: Mutex::new(None),
        }
    }

    /// The file's text (not UTF-8: an error naming the file).
    pub fn read(&self) -> Result<String, String> {
        utf8(self.read_bytes()?, &self.path)
    }

    /// The file's text, bytes that are not UTF-8 as U+FFFD (names anyone with the right
    /// capability chose, such as network interfaces').
    pub fn read_lossy(&self) -> Result<String, String> {
        Ok(match String::from_utf8(self.read_bytes()?) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        })
    }

    fn read_bytes(&self) -> Result<Vec<u8>, String> {
        let mut kept = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let read = match &*kept {
            Some(file) => read_from_start(file),
            None => File::open(&self.path).and_then(|file| read_from_start(kept.insert(file))),
        };
        read.map_err(|e| {
            *kept = None;
            format!("cannot read {}: {e}", self.path.display())
        })
    }
}

/// The whole of `file` (opened from `path`, which errors name) as text, read from its start.
pub fn read_text(file: &File, path: &Path) -> Result<String, String> {
    let bytes =
        read_from_start(file).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    utf8(bytes, path)
}

fn utf8(bytes: Vec<u8>, path: &Path) -> Result<String, String> {
    String::from_utf8(bytes).map_err(|_| {
        format!(
            "cannot read {}: stream did not contain valid UTF-8",
            path.display()
        )
    })
}

/// The whole file, read with `pread` from offset 0 until it returns 0.
pub fn read_from_start(file: &File) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    // Larger than most of the files read (a few KiB); doubled when one is longer.
    let mut bytes = vec![0; 8 * 1024];
    let mut len = 0;
    loop {
        if len == bytes.len() {
            bytes.resize(len * 2, 0);
        }
        match file.read_at(&mut bytes[len..], len as u64) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    bytes.truncate(len);
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A kept file reads whole (longer than its first buffer too), fresh at every read,
    /// and names the file when it cannot; once it can be read again, it is.
    #[test]
    fn a_kept_file_is_read_whole_and_fresh_each_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("counters");
        let kept = Kept::new(&path);
        assert!(
            kept.read()
                .unwrap_err()
                .starts_with(&format!("cannot read {}: ", path.display()))
        );
        let long: String = (0..5000).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&path, &long).unwrap();
        assert_eq!(kept.read().unwrap(), long);
        std::fs::write(&path, "short\n").unwrap();
        assert_eq!(kept.read().unwrap(), "short\n");
        std::fs::write(&path, b"eth0\xff\n").unwrap();
        assert_eq!(kept.read_lossy().unwrap(), "eth0\u{fffd}\n");
        assert!(kept.read().unwrap_err().contains("valid UTF-8"));
        // A kernel file: regenerated at each read from its start.
        let uptime = Kept::new("/proc/uptime");
        let seconds = |text: String| text.split(' ').next().unwrap().parse::<f64>().unwrap();
        let before = seconds(uptime.read().unwrap());
        std::thread::sleep(std::time::Duration::from_millis(30));
        assert!(seconds(uptime.read().unwrap()) > before, "the uptime moved");
    }
}
