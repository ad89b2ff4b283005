//! The signed-request headers of agent requests: any header values, method and path parse to
//! a result or a 401, never a panic.
#![no_main]
use http::{HeaderMap, HeaderValue};
use vaultmesh_command_center::agent_auth::SignedParts;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let parts: Vec<&[u8]> = data.splitn(5, |b| *b == b'\n').collect();
    let field = |i: usize| parts.get(i).copied().unwrap_or(b"");
    let mut headers = HeaderMap::new();
    for (name, i) in [
        ("x-vaultmesh-node", 0),
        ("x-vaultmesh-timestamp", 1),
        ("x-vaultmesh-signature", 2),
    ] {
        if let Ok(v) = HeaderValue::from_bytes(field(i)) {
            headers.insert(name, v);
        }
    }
    let method = String::from_utf8_lossy(field(3));
    let path = String::from_utf8_lossy(field(4));
    let _ = SignedParts::from_request(&headers, &method, &path);
});
