//! The credential headers of agent requests — a signature, or a session id and MAC: any header
//! values, method, path and body parse to a result or a refusal, and a parsed request's
//! credential checks to a verdict, never a panic. Header values reach the parser as the server
//! hands them over: the bytes of a valid header value, as text when they are.
#![no_main]
use std::sync::{Arc, OnceLock};

use http::HeaderValue;
use vaultmesh_engines::auth::{Sessions, SignedParts};
use vaultmesh_proto::auth::{HEADER_NODE, HEADER_SIGNATURE, HEADER_TIMESTAMP, NodeKey};
use vaultmesh_proto::session::{HEADER_MAC, HEADER_SESSION};

const HEADERS: [&str; 5] = [
    HEADER_NODE,
    HEADER_TIMESTAMP,
    HEADER_SIGNATURE,
    HEADER_SESSION,
    HEADER_MAC,
];

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    static SESSIONS: OnceLock<Sessions> = OnceLock::new();
    let sessions =
        SESSIONS.get_or_init(|| Sessions::new(Some(Arc::new(NodeKey::from_seed([3; 32])))));
    let parts: Vec<&[u8]> = data.splitn(8, |b| *b == b'\n').collect();
    let field = |i: usize| parts.get(i).copied().unwrap_or(b"");
    let values: Vec<Option<HeaderValue>> = (0..HEADERS.len())
        .map(|i| HeaderValue::from_bytes(field(i)).ok())
        .collect();
    let header = |name: &'static str| {
        let i = HEADERS.iter().position(|h| *h == name)?;
        values[i].as_ref().and_then(|v| v.to_str().ok())
    };
    let method = String::from_utf8_lossy(field(5));
    let path = String::from_utf8_lossy(field(6));
    if let Ok(parsed) = SignedParts::parse(header, &method, &path) {
        let node = NodeKey::from_seed([7; 32]).public_base64();
        let key = vaultmesh_proto::auth::parse_public_key(&node).expect("a valid key");
        // The seeds' clock: a check against the real one would stop at the timestamp and
        // never reach the session key or the MAC.
        let _ = parsed.check_session(sessions);
        let _ = parsed.check_credential_at(&key, field(7), sessions, 1_764_410_460);
    }
});
