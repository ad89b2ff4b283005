//! JCS (RFC 8785): any JSON value canonicalizes, and canonicalizing twice changes nothing.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data)
        && let Ok(once) = vaultmesh_proto::canonical::to_jcs(&v)
    {
        let back: serde_json::Value = serde_json::from_slice(&once).expect("JCS output is JSON");
        let twice = vaultmesh_proto::canonical::to_jcs(&back).expect("canonical again");
        assert_eq!(once, twice, "JCS is idempotent");
    }
});
