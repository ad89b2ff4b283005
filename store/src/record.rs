//! The line format of every log file: one JSON object per line,
//!
//! ```text
//! {"kind":"heartbeat","ts":"2026-11-29T09:29:18.060630562Z","node_id":"550e…","record":{…}}
//! ```
//!
//! `kind` names the record type, `ts` is when the Command Center accepted it, `node_id` is present
//! where a record belongs to a node, `record` is the record exactly as accepted. The header fields
//! come first, in this order, so [`head`] can read them without parsing the record — that is what
//! makes replay and `logs view` fast. Lines written by hand in another field order still parse
//! (through serde), only slower.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Record kinds and the file each lives in.
pub mod kind {
    pub const HEARTBEAT: &str = "heartbeat";
    pub const SCAN: &str = "scan";
}

#[derive(Serialize)]
struct LineOut<'a, T> {
    kind: &'a str,
    ts: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    node_id: Option<Uuid>,
    record: &'a T,
}

/// A whole line, newline included.
pub fn encode<T: Serialize>(
    kind: &str,
    ts: DateTime<Utc>,
    node_id: Option<Uuid>,
    record: &T,
) -> Result<Vec<u8>, serde_json::Error> {
    encode_sized(128, kind, ts, node_id, record)
}

/// Room a heartbeat's line (about 2 KiB) is encoded into: it never grows, so it is never copied.
pub const HEARTBEAT_LINE_ROOM: usize = 4096;

/// [`encode`] into a buffer with room for `capacity` bytes from the start: no copy while a
/// line of about that size grows (a heartbeat's: [`HEARTBEAT_LINE_ROOM`]).
pub fn encode_sized<T: Serialize>(
    capacity: usize,
    kind: &str,
    ts: DateTime<Utc>,
    node_id: Option<Uuid>,
    record: &T,
) -> Result<Vec<u8>, serde_json::Error> {
    let mut line = Vec::with_capacity(capacity);
    serde_json::to_writer(
        &mut line,
        &LineOut {
            kind,
            ts,
            node_id,
            record,
        },
    )?;
    line.push(b'\n');
    Ok(line)
}

/// A parsed line with its record of type `T`.
#[derive(Debug, Deserialize)]
pub struct Line<T> {
    pub kind: String,
    pub ts: DateTime<Utc>,
    #[serde(default)]
    pub node_id: Option<Uuid>,
    pub record: T,
}

/// The header of a line, read without parsing the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head<'a> {
    pub kind: Cow<'a, str>,
    pub ts: Cow<'a, str>,
    pub node_id: Option<Uuid>,
}

impl Head<'_> {
    /// `ts` as a time (None if malformed).
    pub fn time(&self) -> Option<DateTime<Utc>> {
        DateTime::parse_from_rfc3339(&self.ts)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }
}

/// Reads the header of `line` (without the newline). Fast path for lines this crate wrote;
/// falls back to serde for anything else. `None` if the line is not a valid record line.
pub fn head(line: &[u8]) -> Option<Head<'_>> {
    fast_head(line).or_else(|| slow_head(line))
}

fn fast_head(line: &[u8]) -> Option<Head<'_>> {
    let rest = line.strip_prefix(br#"{"kind":""#)?;
    let (kind, rest) = plain_string(rest)?;
    let rest = rest.strip_prefix(br#","ts":""#)?;
    let (ts, rest) = plain_string(rest)?;
    let (node_id, rest) = match rest.strip_prefix(br#","node_id":""#) {
        Some(r) => {
            let id = Uuid::try_parse_ascii(r.get(..36)?).ok()?;
            (Some(id), r.get(36..)?.strip_prefix(b"\"")?)
        }
        None => (None, rest),
    };
    // The record must follow; the line must end its object.
    rest.strip_prefix(br#","record":"#)?;
    if line.last() != Some(&b'}') {
        return None;
    }
    Some(Head {
        kind: Cow::Borrowed(kind),
        ts: Cow::Borrowed(ts),
        node_id,
    })
}

/// A JSON string body with no escapes, and what follows its closing quote.
fn plain_string(bytes: &[u8]) -> Option<(&str, &[u8])> {
    let end = memchr::memchr2(b'"', b'\\', bytes)?;
    if bytes[end] != b'"' {
        return None;
    }
    Some((std::str::from_utf8(&bytes[..end]).ok()?, &bytes[end + 1..]))
}

fn slow_head(line: &[u8]) -> Option<Head<'_>> {
    #[derive(Deserialize)]
    struct Raw<'a> {
        #[serde(borrow)]
        kind: Cow<'a, str>,
        #[serde(borrow)]
        ts: Cow<'a, str>,
        #[serde(default)]
        node_id: Option<Uuid>,
        #[allow(dead_code)]
        record: serde::de::IgnoredAny,
    }
    let raw: Raw<'_> = serde_json::from_slice(line).ok()?;
    Some(Head {
        kind: raw.kind,
        ts: raw.ts,
        node_id: raw.node_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_lines_have_the_header_first_and_parse_back() {
        let ts = DateTime::parse_from_rfc3339("2026-11-29T09:29:18.5Z")
            .unwrap()
            .with_timezone(&Utc);
        let id = Uuid::from_u128(7);
        let line = encode("heartbeat", ts, Some(id), &serde_json::json!({"x": 1})).unwrap();
        let text = std::str::from_utf8(&line).unwrap();
        assert_eq!(
            text,
            "{\"kind\":\"heartbeat\",\"ts\":\"2026-11-29T09:29:18.500Z\",\"node_id\":\"00000000-0000-0000-0000-000000000007\",\"record\":{\"x\":1}}\n"
        );
        let h = head(&line[..line.len() - 1]).unwrap();
        assert_eq!(
            (h.kind.as_ref(), h.node_id, h.time()),
            ("heartbeat", Some(id), Some(ts))
        );
        assert!(matches!(h.kind, Cow::Borrowed(_)), "fast path expected");
        let parsed: Line<serde_json::Value> = serde_json::from_slice(&line).unwrap();
        assert_eq!(parsed.record["x"], 1);
    }

    #[test]
    fn other_field_orders_and_escapes_fall_back_to_serde() {
        let line = br#"{"record":{},"node_id":"00000000-0000-0000-0000-000000000007","ts":"2026-11-29T09:29:18Z","kind":"no\u0074e"}"#;
        let h = head(line).unwrap();
        assert_eq!(
            (h.kind.as_ref(), h.node_id),
            ("note", Some(Uuid::from_u128(7)))
        );
        let no_node = br#"{"kind":"x","ts":"2026-11-29T09:29:18Z","record":1}"#;
        assert_eq!(head(no_node).unwrap().node_id, None);
    }

    #[test]
    fn garbage_has_no_head() {
        for bad in [
            &b""[..],
            b"{",
            b"not json",
            br#"{"kind":"x"}"#,
            br#"{"kind":"x","ts":"t","record":{"#,
        ] {
            assert!(head(bad).is_none(), "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
