//! Signed checkpoints (ROOT.txt) and verifier keys: parse and verify, never panic.
#![no_main]
use vaultmesh_proto::auth::{NodeKey, parse_public_key};
use vaultmesh_proto::checkpoint::{Checkpoint, parse_verifier_key};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let key = parse_public_key(&NodeKey::from_seed([5; 32]).public_base64()).unwrap();
    let _ = Checkpoint::verify(text, "vaultmesh/sovereign-scans", &key);
    let _ = parse_verifier_key(text);
});
