//! Heartbeat segments in a log directory, as tests look at them: waiting for the server's
//! background compression, and undoing it for one segment to get a mix of both forms.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Names of the closed heartbeat segments in `dir` (plain `.jsonl` and compressed `.jsonl.zst`),
/// oldest first as the store orders them (rotation time, then `-1`, `-2` for the same second);
/// temp files of a compression in progress are left out.
pub fn heartbeat_segments(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = crate::file_names(dir, None)
        .into_iter()
        .filter(|n| n.starts_with("heartbeats-") && (n.ends_with(".jsonl") || n.ends_with(".zst")))
        .collect();
    // `heartbeats-20261129T093000Z[-N].jsonl[.zst]`: the stamp, then the plain name first.
    let key = |n: &String| {
        let rest = n.trim_start_matches("heartbeats-");
        let base = rest.split(".jsonl").next().unwrap_or(rest);
        (
            base.get(..16).map(str::to_string),
            base.len(),
            base.to_string(),
        )
    };
    names.sort_by_key(key);
    names
}

/// Waits until `dir` holds at least `min` heartbeat segments and every one is compressed;
/// returns their paths, oldest first. Panics after `timeout`.
pub fn wait_compressed(dir: &Path, min: usize, timeout: Duration) -> Vec<PathBuf> {
    crate::wait_for(timeout, || {
        let names = heartbeat_segments(dir);
        (names.len() >= min && names.iter().all(|n| n.ends_with(".jsonl.zst")))
            .then(|| names.iter().map(|n| dir.join(n)).collect())
    })
    .unwrap_or_else(|| {
        panic!(
            "heartbeat segments not all compressed in {timeout:?}: {:?}",
            heartbeat_segments(dir)
        )
    })
}

/// Turns the compressed segment `zst` back into its plain `.jsonl` (as a release before
/// compression would have left it); returns the plain path.
pub fn decompress(zst: &Path) -> PathBuf {
    let plain = PathBuf::from(
        zst.to_str()
            .and_then(|p| p.strip_suffix(".zst"))
            .unwrap_or_else(|| panic!("{} is not a .zst", zst.display())),
    );
    let bytes =
        zstd::stream::decode_all(std::fs::File::open(zst).expect("open .zst")).expect("decompress");
    std::fs::write(&plain, bytes).expect("write plain segment");
    std::fs::remove_file(zst).expect("remove .zst");
    plain
}
