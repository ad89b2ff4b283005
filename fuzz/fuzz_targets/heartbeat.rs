//! A heartbeat body: parse, then validate — never panic, whatever the bytes.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(hb) = serde_json::from_slice::<vaultmesh_proto::NodeHeartbeat>(data) {
        let _ = hb.validate();
        if let Some(m) = &hb.metrics {
            let _ = (m.mem_used_pct(), m.fullest_disk());
        }
    }
});
