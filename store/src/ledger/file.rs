//! The chain on disk: `PROOFCHAIN.jsonl`, append-only (format version 2), and the
//! `PROOFCHAIN.json` of version 1 it replaces. See `docs/LEDGER.md` for the format.
//!
//! `PROOFCHAIN.jsonl` is a header line (version, origin, log, hashing rule, verifier key), then
//! one line per checkpoint, oldest first, each the JSON of an [`Entry`]. A checkpoint appends
//! its own line — O(new leaves + log n) bytes — and fsyncs it before `ROOT.txt` names it;
//! nothing already written changes. A last line without its newline is a checkpoint whose
//! append a crash interrupted (`ROOT.txt` never named it): readers ignore it, and the writer
//! cuts it when it opens the file.
//!
//! Version 1 was one JSON document rewritten whole at each checkpoint (43 MB at a million
//! scans). The directory's one writer (`serve`, `ledger build`) converts it once, in
//! [`open`], and removes it once the new file is durable; the readers ([`load`]: `ledger
//! verify`, `ledger prove`, a Command Center adopting a chain built offline) take either.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::LedgerError;
use super::chain::{Entry, LEGACY_VERSION, ProofChain, ROOT_FILE, VERSION, write_atomic};
use crate::journal::cut_torn_tail;
use crate::logdir::sync_dir;

/// The chain, append-only (version 2).
pub const CHAIN_FILE: &str = "PROOFCHAIN.jsonl";
/// The chain as version 1 wrote it, rewritten whole at each checkpoint; converted once.
pub const LEGACY_CHAIN_FILE: &str = "PROOFCHAIN.json";

/// The first line of `PROOFCHAIN.jsonl`: the chain's fields but its checkpoints.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    version: u32,
    origin: String,
    log: String,
    leaf: String,
    verifier_key: String,
}

/// A chain read from disk.
#[derive(Debug)]
pub struct Loaded {
    pub chain: ProofChain,
    /// The file it was read from: [`CHAIN_FILE`] or [`LEGACY_CHAIN_FILE`].
    pub file: &'static str,
    /// Bytes of an unfinished last line of [`CHAIN_FILE`] (an interrupted append), not part of
    /// the chain.
    pub torn: u64,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LedgerError + '_ {
    move |e| LedgerError::Io(path.to_path_buf(), e)
}

/// `dir/PROOFCHAIN.jsonl`: its chain (`None` without a complete header line) and the bytes of
/// an unfinished last line; `None` without the file.
fn read_lines(path: &Path) -> Result<Option<(Option<ProofChain>, u64)>, LedgerError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(path)(e)),
    };
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut line = Vec::new();
    let mut chain: Option<ProofChain> = None;
    let mut number = 0u64;
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line).map_err(io(path))?;
        if n == 0 {
            return Ok(Some((chain, 0)));
        }
        if line.last() != Some(&b'\n') {
            return Ok(Some((chain, n as u64)));
        }
        number += 1;
        let bad =
            |e: serde_json::Error| LedgerError::Chain(format!("{CHAIN_FILE} line {number}: {e}"));
        let text = &line[..n - 1];
        match &mut chain {
            None => {
                let h: Header = serde_json::from_slice(text).map_err(bad)?;
                if h.version != VERSION {
                    return Err(LedgerError::Chain(format!(
                        "{CHAIN_FILE}: format version {} is not {VERSION}, the one this program reads",
                        h.version
                    )));
                }
                chain = Some(ProofChain {
                    version: h.version,
                    origin: h.origin,
                    log: h.log,
                    leaf: h.leaf,
                    verifier_key: h.verifier_key,
                    checkpoints: Vec::new(),
                });
            }
            Some(c) => c
                .checkpoints
                .push(serde_json::from_slice(text).map_err(bad)?),
        }
    }
}

/// `dir/PROOFCHAIN.json` (version 1), if there is one.
fn read_legacy(path: &Path) -> Result<Option<ProofChain>, LedgerError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(path)(e)),
    };
    let chain: ProofChain = serde_json::from_slice(&bytes)
        .map_err(|e| LedgerError::Chain(format!("{LEGACY_CHAIN_FILE}: {e}")))?;
    if chain.version != LEGACY_VERSION {
        return Err(LedgerError::Chain(format!(
            "{LEGACY_CHAIN_FILE}: version {} is not {LEGACY_VERSION}",
            chain.version
        )));
    }
    Ok(Some(chain))
}

/// Reads the chain in `dir`, changing nothing: `PROOFCHAIN.jsonl`, or a `PROOFCHAIN.json` not
/// converted yet. When both are there (a conversion interrupted before the old file was
/// removed, or a chain copied back from a machine still on version 1), the one that extends
/// the other is the chain; two different chains are an error naming both files.
pub fn load(dir: &Path) -> Result<Option<Loaded>, LedgerError> {
    let lines = read_lines(&dir.join(CHAIN_FILE))?;
    let legacy = read_legacy(&dir.join(LEGACY_CHAIN_FILE))?;
    let torn = lines.as_ref().map_or(0, |l| l.1);
    let lines = lines.and_then(|l| l.0);
    let from_lines = |chain| Loaded {
        chain,
        file: CHAIN_FILE,
        torn,
    };
    let from_legacy = |chain| Loaded {
        chain,
        file: LEGACY_CHAIN_FILE,
        torn: 0,
    };
    Ok(match (lines, legacy) {
        (None, None) => None,
        (Some(l), None) => Some(from_lines(l)),
        (None, Some(j)) => Some(from_legacy(j)),
        (Some(l), Some(j)) if l.extends(&j) => Some(from_lines(l)),
        (Some(l), Some(j)) if j.extends(&l) => Some(from_legacy(j)),
        (Some(l), Some(j)) => {
            return Err(LedgerError::Chain(format!(
                "{CHAIN_FILE} ({} checkpoints) and {LEGACY_CHAIN_FILE} ({} checkpoints) hold different chains, neither extending the other: keep the one that is the chain and move the other aside",
                l.checkpoints.len(),
                j.checkpoints.len()
            )));
        }
    })
}

/// The whole chain in the line format: the header line, then a line per checkpoint.
pub fn encode(chain: &ProofChain) -> Result<Vec<u8>, LedgerError> {
    let header = Header {
        version: VERSION,
        origin: chain.origin.clone(),
        log: chain.log.clone(),
        leaf: chain.leaf.clone(),
        verifier_key: chain.verifier_key.clone(),
    };
    let mut out = line(&header)?;
    for e in &chain.checkpoints {
        out.extend(line(e)?);
    }
    Ok(out)
}

fn line(value: &impl Serialize) -> Result<Vec<u8>, LedgerError> {
    let mut v = serde_json::to_vec(value)
        .map_err(|e| LedgerError::Chain(format!("cannot encode the chain: {e}")))?;
    v.push(b'\n');
    Ok(v)
}

/// Opens the chain in `dir` for its one writer (the caller holds the directory's lock): cuts an
/// unfinished last line of `PROOFCHAIN.jsonl`, converts a `PROOFCHAIN.json` (atomically:
/// temporary file, fsync, rename, fsync of the directory) and then removes it, and removes a
/// `PROOFCHAIN.json` the new file already holds. Returns the chain and the [`Appender`] that
/// extends it.
pub fn open(dir: &Path) -> Result<(Option<ProofChain>, Appender), LedgerError> {
    let path = dir.join(CHAIN_FILE);
    match OpenOptions::new().read(true).write(true).open(&path) {
        Ok(mut f) => {
            let cut = cut_torn_tail(&mut f).map_err(io(&path))?;
            if cut > 0 {
                tracing::warn!(file = %path.display(), bytes = cut, "Cut an unfinished last checkpoint line (an append interrupted by a crash; ROOT.txt never named it).");
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(&path)(e)),
    }
    let Some(loaded) = load(dir)? else {
        return Ok((None, Appender::at(&path)?));
    };
    let mut chain = loaded.chain;
    if loaded.file == LEGACY_CHAIN_FILE {
        chain.version = VERSION;
        write_atomic(dir, CHAIN_FILE, &encode(&chain)?)?;
        tracing::info!(
            checkpoints = chain.checkpoints.len(),
            size = chain.size(),
            "Converted the ledger chain from {LEGACY_CHAIN_FILE} (rewritten whole at each checkpoint) to the append-only {CHAIN_FILE}; the old file is removed."
        );
    }
    let legacy = dir.join(LEGACY_CHAIN_FILE);
    match std::fs::remove_file(&legacy) {
        Ok(()) => sync_dir(dir).map_err(io(dir))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(&legacy)(e)),
    }
    Ok((Some(chain), Appender::at(&path)?))
}

/// Writes `ROOT.txt` (atomically).
pub fn write_root(dir: &Path, note: &str) -> Result<(), LedgerError> {
    write_atomic(dir, ROOT_FILE, note.as_bytes())
}

/// The writer's end of `PROOFCHAIN.jsonl`: where the file ended after this process last wrote
/// it (length and inode), checked before each append, so a checkpoint never lands after bytes
/// this process did not write, nor in a file replaced or removed under it.
#[derive(Debug, Default)]
pub struct Appender {
    end: Option<(u64, u64)>,
}

impl Appender {
    fn at(path: &Path) -> Result<Appender, LedgerError> {
        match std::fs::metadata(path) {
            Ok(m) => Ok(Appender {
                end: Some((m.len(), m.ino())),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Appender::default()),
            Err(e) => Err(io(path)(e)),
        }
    }

    /// Makes `entry` (from [`ProofChain::next_checkpoint`]) the chain's newest checkpoint: its
    /// line appended and fsynced (the first checkpoint creates the file with its header,
    /// atomically), then pushed onto `chain`, then `ROOT.txt` written. A failed write is cut
    /// off again, so the file never keeps half a line. A file changed under the writer is
    /// [`LedgerError::Tampered`].
    pub fn append(
        &mut self,
        dir: &Path,
        chain: &mut ProofChain,
        entry: Entry,
    ) -> Result<(), LedgerError> {
        let path = dir.join(CHAIN_FILE);
        let bytes = line(&entry)?;
        if chain.checkpoints.is_empty() {
            let mut all = encode(chain)?;
            all.extend_from_slice(&bytes);
            write_atomic(dir, CHAIN_FILE, &all)?;
        } else {
            self.append_line(&path, &bytes)?;
        }
        *self = Appender::at(&path)?;
        let note = entry.signed_note.clone();
        chain.checkpoints.push(entry);
        write_root(dir, &note)
    }

    fn append_line(&self, path: &Path, bytes: &[u8]) -> Result<(), LedgerError> {
        let changed = |what: String| {
            LedgerError::Tampered(format!(
                "{CHAIN_FILE} {what} since the Command Center last appended to it"
            ))
        };
        let (len, ino) = self.end.ok_or_else(|| changed("appeared".into()))?;
        let mut f = match OpenOptions::new().append(true).open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(changed("was removed".into()));
            }
            Err(e) => return Err(io(path)(e)),
        };
        let m = f.metadata().map_err(io(path))?;
        if m.ino() != ino {
            return Err(changed("was replaced".into()));
        }
        if m.len() != len {
            return Err(changed(format!(
                "changed length ({} bytes, {len} expected)",
                m.len()
            )));
        }
        if let Err(e) = f.write_all(bytes).and_then(|()| f.sync_data()) {
            // Never leave half a line for the next append to follow.
            if let Err(cut) = f.set_len(len).and_then(|()| f.sync_data()) {
                tracing::error!(file = %path.display(), error = %cut, "Cannot cut a failed checkpoint append; the writer cuts it at the next start.");
            }
            return Err(io(path)(e));
        }
        Ok(())
    }
}

/// The paths the chain may be in, as [`load`] reads them.
pub fn paths(dir: &Path) -> [PathBuf; 2] {
    [dir.join(CHAIN_FILE), dir.join(LEGACY_CHAIN_FILE)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::chain::tests::{leaves, tree_of};
    use vaultmesh_proto::auth::NodeKey;

    /// Appends a checkpoint over `all[..size]`.
    fn checkpoint(dir: &Path, a: &mut Appender, c: &mut ProofChain, all: &[[u8; 32]], size: usize) {
        let key = NodeKey::from_seed([3; 32]);
        let e = c
            .next_checkpoint(&tree_of(&all[..size]), &key)
            .unwrap()
            .unwrap();
        a.append(dir, c, e).unwrap();
    }

    fn fresh(dir: &Path) -> (ProofChain, Appender) {
        let (none, a) = open(dir).unwrap();
        assert!(none.is_none());
        (
            ProofChain::new("vaultmesh.test/scans", &NodeKey::from_seed([3; 32])),
            a,
        )
    }

    /// What `PROOFCHAIN.json` looked like: today's `ProofChain::save` before the line format,
    /// the whole chain as one pretty-printed document, written atomically.
    fn write_version_1(dir: &Path, c: &ProofChain) {
        let mut v1 = c.clone();
        v1.version = LEGACY_VERSION;
        write_atomic(
            dir,
            LEGACY_CHAIN_FILE,
            &serde_json::to_vec_pretty(&v1).unwrap(),
        )
        .unwrap();
        write_root(dir, &c.checkpoints.last().unwrap().signed_note).unwrap();
    }

    #[test]
    fn a_checkpoint_appends_its_own_line_and_nothing_before_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let all = leaves(40);
        let (mut c, mut a) = fresh(dir.path());
        let path = dir.path().join(CHAIN_FILE);
        let mut before = Vec::new();
        for size in [1, 2, 5, 8, 13, 40] {
            checkpoint(dir.path(), &mut a, &mut c, &all, size);
            let now = std::fs::read(&path).unwrap();
            assert!(
                now.starts_with(&before),
                "size {size}: earlier bytes changed"
            );
            let added = &now[before.len()..];
            let want = line(c.checkpoints.last().unwrap()).unwrap();
            if before.is_empty() {
                assert!(
                    added.ends_with(&want),
                    "the header, then the first checkpoint"
                );
                assert_eq!(added.iter().filter(|b| **b == b'\n').count(), 2);
            } else {
                assert_eq!(added, want.as_slice(), "size {size}: only its own line");
            }
            assert_eq!(
                std::fs::read_to_string(dir.path().join(ROOT_FILE)).unwrap(),
                c.checkpoints.last().unwrap().signed_note
            );
            before = now;
        }
        let loaded = load(dir.path()).unwrap().unwrap();
        assert_eq!((loaded.file, loaded.torn), (CHAIN_FILE, 0));
        assert_eq!(loaded.chain, c);
        loaded.chain.verify(&all, None).unwrap();
        // One checkpoint's line holds its new leaves and an O(log n) proof, not the chain.
        let last = line(c.checkpoints.last().unwrap()).unwrap();
        assert!(last.len() < 2_000 + 27 * 44, "{} bytes", last.len());
    }

    #[test]
    fn an_unfinished_last_line_is_ignored_by_readers_and_cut_by_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let all = leaves(9);
        let (mut c, mut a) = fresh(dir.path());
        for size in [3, 5, 9] {
            checkpoint(dir.path(), &mut a, &mut c, &all, size);
        }
        let path = dir.path().join(CHAIN_FILE);
        let good = std::fs::read(&path).unwrap();
        let root = std::fs::read(dir.path().join(ROOT_FILE)).unwrap();
        // A crash in the middle of the next append (kill -9 or power loss between the write and
        // its fsync): part of the line, no newline; ROOT.txt still names size 9.
        let mut more = leaves(12);
        more.truncate(12);
        let next = c
            .next_checkpoint(&tree_of(&more), &NodeKey::from_seed([3; 32]))
            .unwrap()
            .unwrap();
        let half = &line(&next).unwrap()[..200];
        std::fs::write(&path, [good.as_slice(), half].concat()).unwrap();

        let read = load(dir.path()).unwrap().unwrap();
        assert_eq!((read.chain.checkpoints.len(), read.torn), (3, 200));
        assert_eq!(
            std::fs::read(&path).unwrap().len(),
            good.len() + 200,
            "readers change nothing"
        );

        let (opened, mut a) = open(dir.path()).unwrap();
        let mut opened = opened.unwrap();
        assert_eq!(opened, c);
        assert_eq!(
            std::fs::read(&path).unwrap(),
            good,
            "cut back to the last whole line"
        );
        assert_eq!(std::fs::read(dir.path().join(ROOT_FILE)).unwrap(), root);
        // And the chain goes on from there.
        checkpoint(dir.path(), &mut a, &mut opened, &more, 12);
        let read = load(dir.path()).unwrap().unwrap();
        assert_eq!((read.chain.size(), read.torn), (12, 0));
        read.chain.verify(&more, None).unwrap();

        // A torn header (the file's first write is atomic, so only by hand): no chain.
        std::fs::write(&path, b"{\"version\":2,\"ori").unwrap();
        assert!(load(dir.path()).unwrap().is_none());
        assert!(open(dir.path()).unwrap().0.is_none());
        assert_eq!(std::fs::read(&path).unwrap(), b"");
    }

    #[test]
    fn a_bad_line_in_the_middle_or_an_unknown_version_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let all = leaves(5);
        let (mut c, mut a) = fresh(dir.path());
        for size in [2, 3, 5] {
            checkpoint(dir.path(), &mut a, &mut c, &all, size);
        }
        let path = dir.path().join(CHAIN_FILE);
        let text = std::fs::read_to_string(&path).unwrap();
        let mut lines: Vec<&str> = text.lines().collect();
        lines[2] = "{\"size\": 3, \"root\": ";
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        let err = load(dir.path()).unwrap_err().to_string();
        assert!(err.starts_with("PROOFCHAIN.jsonl line 3: "), "{err}");
        std::fs::write(&path, text.replacen("\"version\":2", "\"version\":3", 1)).unwrap();
        let err = load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("format version 3 is not 2"), "{err}");
    }

    #[test]
    fn a_version_1_chain_is_converted_once_and_verify_reads_both() {
        let dir = tempfile::tempdir().unwrap();
        let all = leaves(13);
        let key = NodeKey::from_seed([3; 32]);
        let (c, _) = crate::ledger::chain::tests::chain_over(&[3, 7, 13], &key);
        write_version_1(dir.path(), &c);

        // Readers take the version 1 file as it is.
        let read = load(dir.path()).unwrap().unwrap();
        assert_eq!(read.file, LEGACY_CHAIN_FILE);
        assert_eq!(read.chain.version, LEGACY_VERSION);
        read.chain.verify(&all, None).unwrap();
        assert!(!dir.path().join(CHAIN_FILE).exists());

        // The writer converts it: same checkpoints, field for field, and the old file goes.
        let (opened, mut a) = open(dir.path()).unwrap();
        let mut opened = opened.unwrap();
        assert_eq!(opened, c);
        assert!(!dir.path().join(LEGACY_CHAIN_FILE).exists());
        assert_eq!(
            std::fs::read(dir.path().join(CHAIN_FILE)).unwrap(),
            encode(&c).unwrap()
        );
        let read = load(dir.path()).unwrap().unwrap();
        assert_eq!((read.file, read.chain.version), (CHAIN_FILE, VERSION));
        read.chain.verify(&all, None).unwrap();
        // Once: opening again converts nothing and changes nothing.
        let bytes = std::fs::read(dir.path().join(CHAIN_FILE)).unwrap();
        assert_eq!(open(dir.path()).unwrap().0.unwrap(), c);
        assert_eq!(std::fs::read(dir.path().join(CHAIN_FILE)).unwrap(), bytes);

        // A conversion interrupted after the rename, before the removal: both files, the same
        // chain. Readers take the new one; the writer removes the old one.
        write_version_1(dir.path(), &c);
        assert_eq!(load(dir.path()).unwrap().unwrap().file, CHAIN_FILE);
        open(dir.path()).unwrap();
        assert!(!dir.path().join(LEGACY_CHAIN_FILE).exists());

        // A version 1 chain that extends the new one (signed by an old `ledger build` and
        // copied back) wins; the appender goes on after it.
        let more = leaves(20);
        let mut longer = c.clone();
        assert!(crate::ledger::chain::tests::extend(
            &mut longer,
            &tree_of(&more),
            &key
        ));
        write_version_1(dir.path(), &longer);
        assert_eq!(load(dir.path()).unwrap().unwrap().file, LEGACY_CHAIN_FILE);
        let (chain, mut a2) = open(dir.path()).unwrap();
        let mut chain = chain.unwrap();
        assert_eq!(chain, longer);
        let evenmore = leaves(25);
        let e = chain
            .next_checkpoint(&tree_of(&evenmore), &key)
            .unwrap()
            .unwrap();
        a2.append(dir.path(), &mut chain, e).unwrap();
        load(dir.path())
            .unwrap()
            .unwrap()
            .chain
            .verify(&evenmore, None)
            .unwrap();
        // The first appender's file was replaced under it.
        let e = opened
            .next_checkpoint(&tree_of(&evenmore), &key)
            .unwrap()
            .unwrap();
        assert!(matches!(
            a.append(dir.path(), &mut opened, e),
            Err(LedgerError::Tampered(_))
        ));

        // Two different chains: neither is taken.
        let (other, _) =
            crate::ledger::chain::tests::chain_over(&[2, 4], &NodeKey::from_seed([4; 32]));
        write_version_1(dir.path(), &other);
        let err = load(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("PROOFCHAIN.jsonl (5 checkpoints) and PROOFCHAIN.json (2 checkpoints) hold different chains"),
            "{err}"
        );
        assert!(open(dir.path()).is_err());
        assert!(
            dir.path().join(LEGACY_CHAIN_FILE).exists(),
            "nothing removed"
        );
    }

    #[test]
    fn an_append_never_follows_bytes_this_writer_did_not_write() {
        let all = leaves(8);
        let key = NodeKey::from_seed([3; 32]);
        for (what, tamper) in [
            (
                "grew",
                &(|p: &Path| {
                    let mut f = OpenOptions::new().append(true).open(p).unwrap();
                    f.write_all(b"{}\n").unwrap();
                }) as &dyn Fn(&Path),
            ),
            ("shrank", &|p: &Path| {
                let f = OpenOptions::new().write(true).open(p).unwrap();
                f.set_len(f.metadata().unwrap().len() - 10).unwrap();
            }),
            ("replaced", &|p: &Path| {
                let copy = p.with_extension("copy");
                std::fs::copy(p, &copy).unwrap();
                std::fs::rename(&copy, p).unwrap();
            }),
            ("removed", &|p: &Path| std::fs::remove_file(p).unwrap()),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let (mut c, mut a) = fresh(dir.path());
            checkpoint(dir.path(), &mut a, &mut c, &all, 4);
            tamper(&dir.path().join(CHAIN_FILE));
            let e = c.next_checkpoint(&tree_of(&all), &key).unwrap().unwrap();
            let err = a
                .append(dir.path(), &mut c, e)
                .err()
                .unwrap_or_else(|| panic!("{what}: appended"));
            assert!(matches!(err, LedgerError::Tampered(_)), "{what}: {err}");
            assert_eq!(
                c.checkpoints.len(),
                1,
                "{what}: not appended in memory either"
            );
        }
    }
}
