//! JSONL replay over arbitrary bytes: line splitting, the fast header parser, and the ledger's
//! line reader never panic, and every complete line is seen once — whether the ledger reads
//! the log itself or is handed the lines by replay (the same leaves, the same offset).
#![no_main]
use vaultmesh_store::ledger::Leaves;
use vaultmesh_store::{record, replay};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sovereign-scans.jsonl");
    std::fs::write(&path, data).unwrap();
    let mut lines = 0u64;
    let mut fed = Leaves::default();
    replay::for_each_line(&path, |_, offset, line| {
        lines += 1;
        let _ = record::head(line);
        fed.feed(offset, line, data.len() as u64);
    })
    .unwrap();
    let complete = data.iter().filter(|b| **b == b'\n').count() as u64;
    let leaves = Leaves::read(dir.path()).unwrap();
    assert_eq!(
        leaves.tree.size(),
        complete,
        "the ledger hashes complete lines only"
    );
    assert!(lines >= complete);
    assert_eq!(fed.tree.leaves(), leaves.tree.leaves(), "fed as read");
    assert_eq!(fed.scan_ids, leaves.scan_ids);
    assert_eq!(fed.offset, leaves.offset);
});
