//! [`Change`]: one record as the in-memory state applies it.
//!
//! A write builds a `Change`, the backend logs its line ([`Change::encode`]) and, once the line
//! is durable, [`super::Memory::apply`] applies it. Replay and the PostgreSQL tail read lines
//! back with [`Change::decode`]. Both stores log the same lines, so export and import between
//! them are copies.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use vaultmesh_proto::command::SignedCommand;
use vaultmesh_proto::scan::Drift;
use vaultmesh_proto::{EventEnvelope, NodeHeartbeat, ScanReport};

use super::commands::ReceiptRecord;
use super::logdir::LogName;
use super::record::{self, Line, kind};
use super::registry::NodeRecord;
use super::tokens::TokenRecord;

/// Record kinds of `commands.jsonl` and `nodes.jsonl` (those of the other logs:
/// [`record::kind`], and the event kinds of `vaultmesh_proto::event`). Every one is listed in
/// [`kinds_of`] for its log.
pub mod kinds {
    pub const COMMAND: &str = "command";
    pub const DELIVERED: &str = "delivered";
    pub const RECEIPT: &str = "receipt";
    pub const ENROLL: &str = "enroll";
    pub const REVOKE: &str = "revoke";
    pub const READMIT: &str = "readmit";
    pub const TOKEN_CREATED: &str = "token_created";
    pub const TOKEN_REVOKED: &str = "token_revoked";
    pub const API_TOKEN_CREATED: &str = "api_token_created";
    pub const API_TOKEN_REVOKED: &str = "api_token_revoked";
    /// An API token was used (written at most every [`crate::tokens::USED_EVERY`] per token).
    pub const API_TOKEN_USED: &str = "api_token_used";

    /// Every kind of `commands.jsonl`.
    pub const COMMANDS: [&str; 3] = [COMMAND, DELIVERED, RECEIPT];
    /// Every kind of `nodes.jsonl`: replay refuses any other.
    pub const NODES: [&str; 8] = [
        ENROLL,
        REVOKE,
        READMIT,
        TOKEN_CREATED,
        TOKEN_REVOKED,
        API_TOKEN_CREATED,
        API_TOKEN_REVOKED,
        API_TOKEN_USED,
    ];
    /// The kinds of `nodes.jsonl` about a minted enrollment token or an API token (no node id).
    pub const TOKENS: [&str; 5] = [
        TOKEN_CREATED,
        TOKEN_REVOKED,
        API_TOKEN_CREATED,
        API_TOKEN_REVOKED,
        API_TOKEN_USED,
    ];
}

/// Every record kind the Command Center writes to `log`. It writes no other: replay refuses
/// other kinds in the heartbeat, command and node logs, operators post only the operator kinds,
/// and [`super::Store::record_system_event`] refuses a kind not declared in
/// `vaultmesh_proto::event`. `docs/LOGS.md` lists them all (test:
/// `logs_md_lists_every_kind_of_every_log`).
pub fn kinds_of(log: LogName) -> Vec<&'static str> {
    use vaultmesh_proto::event::{OPERATOR_KINDS, SYSTEM_KINDS};
    match log {
        LogName::Heartbeats => vec![kind::HEARTBEAT],
        LogName::Scans => vec![kind::SCAN],
        LogName::Commands => kinds::COMMANDS.to_vec(),
        LogName::Events => OPERATOR_KINDS.into_iter().chain(SYSTEM_KINDS).collect(),
        LogName::Nodes => kinds::NODES.to_vec(),
    }
}

/// One record, typed.
// A heartbeat is most records and the largest: boxing it would add an allocation to every
// heartbeat on the ingest path to save moving a few hundred bytes of a value that lives for one
// append.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Change {
    Heartbeat {
        hb: NodeHeartbeat,
        received_at: DateTime<Utc>,
    },
    /// An operator's or the Command Center's event, already sealed.
    Event(EventEnvelope),
    /// An enrollment, revocation or re-admission (`kind` is one of [`kinds::NODES`]).
    Node {
        kind: String,
        node_id: Uuid,
        ts: DateTime<Utc>,
        record: NodeRecord,
    },
    /// A minted enrollment token made or revoked, or an API token made, revoked or used (`kind`
    /// is one of [`kinds::TOKENS`]).
    Token {
        kind: String,
        ts: DateTime<Utc>,
        record: TokenRecord,
    },
    Command(SignedCommand),
    /// Commands handed to the node's long-poll: never delivered twice, even by another instance.
    Delivered {
        node_id: Uuid,
        at: DateTime<Utc>,
        commands: Vec<Uuid>,
    },
    Receipt {
        rec: ReceiptRecord,
        ts: DateTime<Utc>,
    },
    /// A scan report; `drift` is present when the writer computed it already.
    Scan {
        report: ScanReport,
        received_at: DateTime<Utc>,
        drift: Option<Vec<Drift>>,
    },
}

/// The `record` of a `delivered` line.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct DeliveredRecord {
    commands: Vec<Uuid>,
}

impl Change {
    /// The log the change belongs to.
    pub fn log(&self) -> LogName {
        match self {
            Change::Heartbeat { .. } => LogName::Heartbeats,
            Change::Event(_) => LogName::Events,
            Change::Node { .. } | Change::Token { .. } => LogName::Nodes,
            Change::Command(_) | Change::Delivered { .. } | Change::Receipt { .. } => {
                LogName::Commands
            }
            Change::Scan { .. } => LogName::Scans,
        }
    }

    /// The node it belongs to, if any.
    pub fn node_id(&self) -> Option<Uuid> {
        match self {
            Change::Heartbeat { hb, .. } => Some(hb.node_id),
            Change::Event(e) => e.node_id,
            Change::Node { node_id, .. } | Change::Delivered { node_id, .. } => Some(*node_id),
            Change::Command(c) => Some(c.command.node_id),
            Change::Receipt { rec, .. } => Some(rec.signed.receipt.node_id),
            Change::Scan { report, .. } => Some(report.node_id),
            Change::Token { .. } => None,
        }
    }

    /// The record's kind and time as written in its line header.
    pub fn head(&self) -> (&str, DateTime<Utc>) {
        match self {
            Change::Heartbeat { received_at, .. } => (kind::HEARTBEAT, *received_at),
            Change::Event(e) => (&e.kind, e.ts),
            Change::Node { kind, ts, .. } | Change::Token { kind, ts, .. } => (kind, *ts),
            Change::Command(c) => (kinds::COMMAND, c.command.issued_at),
            Change::Delivered { at, .. } => (kinds::DELIVERED, *at),
            Change::Receipt { ts, .. } => (kinds::RECEIPT, *ts),
            Change::Scan { received_at, .. } => (kind::SCAN, *received_at),
        }
    }

    /// The whole log line, newline included.
    pub fn encode(&self) -> Result<Vec<u8>, serde_json::Error> {
        let (k, ts) = self.head();
        let node = self.node_id();
        match self {
            Change::Heartbeat { hb, .. } => {
                record::encode_sized(record::HEARTBEAT_LINE_ROOM, k, ts, node, hb)
            }
            Change::Event(e) => record::encode(k, ts, node, e),
            Change::Node { record, .. } => record::encode(k, ts, node, record),
            Change::Token { record, .. } => record::encode(k, ts, node, record),
            Change::Command(c) => record::encode(k, ts, node, c),
            Change::Delivered { commands, .. } => record::encode(
                k,
                ts,
                node,
                &DeliveredRecord {
                    commands: commands.clone(),
                },
            ),
            Change::Receipt { rec, .. } => record::encode(k, ts, node, rec),
            Change::Scan { report, .. } => record::encode(k, ts, node, report),
        }
    }

    /// Reads one line of `log` back (without its newline). An event whose hash does not match
    /// its content was not written by us as it stands, and is refused.
    pub fn decode(log: LogName, line: &[u8]) -> Result<Change, String> {
        fn parse<T: serde::de::DeserializeOwned>(
            line: &[u8],
            what: &str,
        ) -> Result<Line<T>, String> {
            serde_json::from_slice(line).map_err(|e| format!("not {what}: {e}"))
        }
        match log {
            LogName::Heartbeats => {
                let l = parse::<NodeHeartbeat>(line, "a heartbeat record")?;
                if l.kind != kind::HEARTBEAT {
                    return Err(format!("a {:?} record in the heartbeat log", l.kind));
                }
                Ok(Change::Heartbeat {
                    hb: l.record,
                    received_at: l.ts,
                })
            }
            LogName::Events => {
                let l = parse::<EventEnvelope>(line, "an event record")?;
                if !l.record.verify() {
                    return Err(format!(
                        "event {} fails its hash check (altered after it was written?)",
                        l.record.id
                    ));
                }
                Ok(Change::Event(l.record))
            }
            LogName::Nodes
                if record::head(line).is_some_and(|h| kinds::TOKENS.contains(&h.kind.as_ref())) =>
            {
                let l = parse::<TokenRecord>(line, "a token record")?;
                Ok(Change::Token {
                    kind: l.kind,
                    ts: l.ts,
                    record: l.record,
                })
            }
            LogName::Nodes => {
                let l = parse::<NodeRecord>(line, "an enroll, revoke or readmit record")?;
                let node_id = l
                    .node_id
                    .ok_or("an enroll, revoke or readmit record without a node id")?;
                if !kinds::NODES.contains(&l.kind.as_str())
                    || kinds::TOKENS.contains(&l.kind.as_str())
                {
                    return Err(format!(
                        "not a node record (kind {:?}, expected one of {})",
                        l.kind,
                        kinds::NODES.join(", ")
                    ));
                }
                Ok(Change::Node {
                    kind: l.kind,
                    node_id,
                    ts: l.ts,
                    record: l.record,
                })
            }
            LogName::Commands => match record::head(line).map(|h| h.kind.to_string()).as_deref() {
                Some(kinds::COMMAND) => Ok(Change::Command(
                    parse::<SignedCommand>(line, "a command record")?.record,
                )),
                Some(kinds::RECEIPT) => {
                    let l = parse::<ReceiptRecord>(line, "a receipt record")?;
                    Ok(Change::Receipt {
                        rec: l.record,
                        ts: l.ts,
                    })
                }
                Some(kinds::DELIVERED) => {
                    let l = parse::<DeliveredRecord>(line, "a delivery record")?;
                    Ok(Change::Delivered {
                        node_id: l.node_id.ok_or("a delivery record without a node id")?,
                        at: l.ts,
                        commands: l.record.commands,
                    })
                }
                _ => Err("not a command, delivery or receipt record".into()),
            },
            LogName::Scans => {
                let l = parse::<ScanReport>(line, "a scan record")?;
                Ok(Change::Scan {
                    report: l.record,
                    received_at: l.ts,
                    drift: None,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delivery_round_trips_through_its_line() {
        let c = Change::Delivered {
            node_id: Uuid::from_u128(7),
            at: Utc::now(),
            commands: vec![Uuid::from_u128(1), Uuid::from_u128(2)],
        };
        let line = c.encode().unwrap();
        let Change::Delivered {
            node_id, commands, ..
        } = Change::decode(LogName::Commands, line.trim_ascii_end()).unwrap()
        else {
            panic!("not a delivery");
        };
        assert_eq!((node_id, commands.len()), (Uuid::from_u128(7), 2));
    }

    #[test]
    fn a_record_of_the_wrong_log_is_refused() {
        let c = Change::Delivered {
            node_id: Uuid::from_u128(7),
            at: Utc::now(),
            commands: vec![],
        };
        let line = c.encode().unwrap();
        assert!(Change::decode(LogName::Heartbeats, line.trim_ascii_end()).is_err());
        assert!(Change::decode(LogName::Nodes, line.trim_ascii_end()).is_err());
    }

    /// The `&str` constants of `mod <name> { … }` in `source`.
    fn constants<'a>(source: &'a str, module: &str) -> Vec<&'a str> {
        let start = source
            .find(&format!("pub mod {module} {{"))
            .unwrap_or_else(|| panic!("no mod {module}"));
        let end = start + source[start..].find("\n}").unwrap();
        source[start..end]
            .lines()
            .filter(|l| l.contains(": &str = \""))
            .filter_map(|l| l.split('"').nth(1))
            .collect()
    }

    /// A kind constant added to the code but to no log's list would be written without being
    /// documented (or replayed): every one — of `commands.jsonl` and `nodes.jsonl` here, of the
    /// heartbeat and scan logs in `record.rs`, of the Command Center's own events in proto — must
    /// belong to a log.
    #[test]
    fn every_kind_constant_belongs_to_a_log() {
        let all: Vec<&str> = LogName::ALL.into_iter().flat_map(kinds_of).collect();
        let events = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../proto/src/event.rs"
        ))
        .unwrap();
        let declared = constants(include_str!("change.rs"), "kinds")
            .into_iter()
            .chain(constants(include_str!("record.rs"), "kind"))
            .chain(constants(&events, "kinds"));
        let mut n = 0;
        for k in declared {
            assert!(all.contains(&k), "kind {k:?} is in no log's kinds_of");
            n += 1;
        }
        assert!(
            n >= 13,
            "found only {n} kind constants: did the modules move?"
        );
    }

    #[test]
    fn logs_md_lists_every_kind_of_every_log() {
        let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/LOGS.md"))
            .unwrap();
        for log in LogName::ALL {
            let file = format!("| `{}.jsonl` |", log.stem());
            let row = doc
                .lines()
                .find(|l| l.starts_with(&file))
                .unwrap_or_else(|| panic!("docs/LOGS.md has no row {file}"));
            let kinds_cell = row.split(" | ").nth(1).unwrap_or_default();
            for k in kinds_of(log) {
                assert!(
                    kinds_cell.contains(&format!("`{k}`")),
                    "docs/LOGS.md's row for {}.jsonl does not list kind `{k}`: {row}",
                    log.stem()
                );
                assert!(
                    doc.lines().any(|l| l.starts_with("| `")
                        && l.split(" | ")
                            .next()
                            .is_some_and(|c| c.contains(&format!("`{k}`")))
                        && l.contains(&format!("`{}.jsonl`", log.stem()))),
                    "docs/LOGS.md's Kinds table has no row for `{k}` in {}.jsonl",
                    log.stem()
                );
            }
        }
    }

    #[test]
    fn a_node_record_of_another_kind_is_refused() {
        let line = br#"{"kind":"rekey","ts":"2026-11-29T10:00:00Z","node_id":"00000000-0000-4000-8000-000000000001","record":{"single_use":false}}"#;
        let err = Change::decode(LogName::Nodes, line).err().unwrap();
        assert!(
            err.contains("\"rekey\"") && err.contains("enroll, revoke"),
            "{err}"
        );
    }
}
