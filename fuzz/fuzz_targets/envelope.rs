//! Events: a posted `NewEvent` (validate) and a stored envelope (hash check, as on replay).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(e) = serde_json::from_slice::<vaultmesh_proto::NewEvent>(data) {
        let _ = e.validate();
    }
    if let Ok(e) = serde_json::from_slice::<vaultmesh_proto::EventEnvelope>(data) {
        let _ = e.verify();
    }
});
