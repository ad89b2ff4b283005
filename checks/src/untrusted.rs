//! Reading files whose size and contents the agent does not control — hwmon attributes a driver
//! names, package lists a mirror wrote — without letting them take memory or deceive a reader.

use std::io::Read;
use std::path::Path;

/// Reads at most `max` bytes of `path`. `Ok((text, truncated))`: invalid UTF-8 is replaced, and
/// `truncated` says the file held more than `max` bytes (the rest is not read).
pub fn read_prefix(path: &Path, max: usize) -> std::io::Result<(String, bool)> {
    let f = std::fs::File::open(path)?;
    let mut buf = Vec::with_capacity(max.min(64 * 1024) + 1);
    f.take(max as u64 + 1).read_to_end(&mut buf)?;
    let truncated = buf.len() > max;
    buf.truncate(max);
    Ok((String::from_utf8_lossy(&buf).into_owned(), truncated))
}

/// Makes an untrusted name fit a heartbeat text field: trimmed, every control, bidirectional
/// or invisible character ([`vaultmesh_proto::text::deceptive`]) replaced by `?`, and cut to
/// `max` bytes on a character boundary. `None` when nothing is left.
pub fn clean_name(raw: &str, max: usize) -> Option<String> {
    let mut out = String::new();
    for c in raw.trim().chars() {
        let c = if vaultmesh_proto::text::deceptive(c, &[]) {
            '?'
        } else {
            c
        };
        if out.len() + c.len_utf8() > max {
            break;
        }
        out.push(c);
    }
    let out = out.trim().to_string();
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_cleaned_and_bounded() {
        assert_eq!(clean_name("  coretemp\n", 64).as_deref(), Some("coretemp"));
        assert_eq!(
            clean_name("evil\u{1b}[2J\u{202e}board", 64).as_deref(),
            Some("evil?[2J?board")
        );
        assert_eq!(
            clean_name("\u{200b}\n", 64).as_deref(),
            Some("?"),
            "visible, not dropped"
        );
        assert_eq!(clean_name(" \n\t ", 64), None);
        assert_eq!(clean_name("", 64), None);
        // Cut on a character boundary: "é" is two bytes.
        assert_eq!(clean_name("aé", 2).as_deref(), Some("a"));
        assert_eq!(clean_name(&"x".repeat(300), 64).unwrap().len(), 64);
    }

    #[test]
    fn reads_stop_at_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big");
        std::fs::write(&p, "a".repeat(10_000)).unwrap();
        let (t, cut) = read_prefix(&p, 100).unwrap();
        assert_eq!((t.len(), cut), (100, true));
        std::fs::write(&p, "short").unwrap();
        assert_eq!(read_prefix(&p, 100).unwrap(), ("short".to_string(), false));
        assert!(read_prefix(&dir.path().join("missing"), 10).is_err());
    }
}
