//! A scan report: parse, validate, and diff its fingerprint against itself and an empty one.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(r) = serde_json::from_slice::<vaultmesh_proto::ScanReport>(data) {
        let _ = r.validate();
        let _ = r.last_scan();
        assert!(vaultmesh_proto::scan::diff(&r.fingerprint, &r.fingerprint).is_empty());
        let _ = vaultmesh_proto::scan::diff(&Default::default(), &r.fingerprint);
    }
});
