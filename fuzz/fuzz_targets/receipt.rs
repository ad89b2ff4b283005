//! Signed receipts and commands: parse and verify against a fixed key.
#![no_main]
use vaultmesh_proto::auth::{NodeKey, parse_public_key};
use vaultmesh_proto::command::{SignedCommand, SignedReceipt};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let key = parse_public_key(&NodeKey::from_seed([5; 32]).public_base64()).unwrap();
    if let Ok(r) = serde_json::from_slice::<SignedReceipt>(data) {
        let _ = r.verify(&key);
    }
    if let Ok(c) = serde_json::from_slice::<SignedCommand>(data) {
        let _ = c.verify(&key);
    }
});
