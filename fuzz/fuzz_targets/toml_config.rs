//! The agent's TOML config (with every check built from it) and a policy file's settings:
//! errors, never panics.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = vaultmesh_agent_core::config::AgentConfig::from_toml_with(
        std::path::Path::new("fuzz.toml"),
        text,
        |_| None,
    ) {
        let _ = vaultmesh_agent_core::registry::configure(&config);
    }
    if let Ok(s) = toml::from_str::<vaultmesh_store::policy::Settings>(text) {
        let _ = s.validate();
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Fuzz.toml"), text).unwrap();
    let _ = vaultmesh_store::policy::Policies::load(Some(dir.path()));
});
