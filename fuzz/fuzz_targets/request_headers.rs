//! The signed-request headers of agent requests: any header values, method and path parse to
//! a result or a refusal, never a panic. Header values reach the parser as the server hands
//! them over: the bytes of a valid header value, as text when they are.
#![no_main]
use http::HeaderValue;
use vaultmesh_engines::auth::SignedParts;
use vaultmesh_proto::auth::{HEADER_NODE, HEADER_SIGNATURE, HEADER_TIMESTAMP};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let parts: Vec<&[u8]> = data.splitn(5, |b| *b == b'\n').collect();
    let field = |i: usize| parts.get(i).copied().unwrap_or(b"");
    let values: Vec<Option<HeaderValue>> = (0..3)
        .map(|i| HeaderValue::from_bytes(field(i)).ok())
        .collect();
    let header = |name: &'static str| {
        let i = match name {
            HEADER_NODE => 0,
            HEADER_TIMESTAMP => 1,
            HEADER_SIGNATURE => 2,
            _ => return None,
        };
        values[i].as_ref().and_then(|v| v.to_str().ok())
    };
    let method = String::from_utf8_lossy(field(3));
    let path = String::from_utf8_lossy(field(4));
    let _ = SignedParts::parse(header, &method, &path);
});
