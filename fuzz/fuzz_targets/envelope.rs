//! Events: a posted `NewEvent` (validate, and as a node posts it about itself: `from_node`) and
//! a stored envelope (hash check, as on replay).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(e) = serde_json::from_slice::<vaultmesh_proto::NewEvent>(data) {
        let _ = e.validate();
        // `POST /api/agent/events`: whatever the body, an accepted event is about the signing
        // node and authored by it.
        let node = uuid::Uuid::from_u128(7);
        if let Ok((accepted, author)) = e.from_node(node) {
            assert_eq!(accepted.node_id, Some(node));
            assert_eq!(author, vaultmesh_proto::event::node_author(&node));
            assert!(vaultmesh_proto::event::AGENT_KINDS.contains(&accepted.kind.as_str()));
        }
    }
    if let Ok(e) = serde_json::from_slice::<vaultmesh_proto::EventEnvelope>(data) {
        let _ = e.verify();
    }
});
