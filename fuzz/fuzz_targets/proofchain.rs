//! The ledger's chain files over arbitrary bytes: reading `PROOFCHAIN.jsonl` (and a version 1
//! `PROOFCHAIN.json`) never panics; the writer's open (cutting an unfinished last line,
//! converting the old file) never panics either, and yields the chain the reader read.
#![no_main]
use vaultmesh_store::ledger::file;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // A leading `1` makes the rest a version 1 `PROOFCHAIN.json`.
    let (name, bytes) = match data.split_first() {
        Some((b'1', rest)) => (file::LEGACY_CHAIN_FILE, rest),
        _ => (file::CHAIN_FILE, data),
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(name), bytes).unwrap();
    let read = file::load(dir.path());
    let opened = file::open(dir.path());
    if let Ok(read) = read {
        let (chain, _) = opened.expect("what reads, opens");
        assert_eq!(read.map(|l| l.chain.checkpoints), chain.map(|c| c.checkpoints));
    }
});
