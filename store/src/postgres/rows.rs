//! Rows of `records`: made from a [`Change`] (live writes) or a JSONL line (import), inserted
//! many at a time.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use tokio_postgres::GenericClient;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use crate::change::Change;
use crate::fleet::history_point;
use crate::logdir::LogName;
use crate::record;

/// The channel every insert notifies (at commit).
pub const CHANNEL: &str = "vaultmesh_records";

/// Taken (per transaction) by every write: ids then commit in the order they are allocated,
/// so "every row after the cursor" is always a prefix of what will ever commit.
pub const WRITE_LOCK: i64 = 0x7661_756c_746d_0002;

/// One row to insert.
#[derive(Debug, Clone)]
pub struct Row {
    pub log: LogName,
    pub kind: String,
    pub ts: DateTime<Utc>,
    pub node_id: Option<Uuid>,
    /// Without its newline.
    pub line: String,
    pub point: Option<String>,
}

impl Row {
    /// The row of a live change.
    pub fn of(change: &Change) -> Result<Row, serde_json::Error> {
        let mut line = change.encode()?;
        line.pop(); // the newline
        let (kind, ts) = change.head();
        let point = match change {
            Change::Heartbeat { hb, received_at } => {
                Some(serde_json::to_string(&history_point(hb, *received_at))?)
            }
            _ => None,
        };
        Ok(Row {
            log: change.log(),
            kind: kind.to_string(),
            ts,
            node_id: change.node_id(),
            // serde_json writes UTF-8.
            line: String::from_utf8_lossy(&line).into_owned(),
            point,
        })
    }

    /// The row of a line of `log` read from a JSONL file, exactly as written.
    pub fn from_line(log: LogName, line: &[u8]) -> Result<Row, String> {
        let text = std::str::from_utf8(line).map_err(|_| "not UTF-8".to_string())?;
        let change = Change::decode(log, line)?;
        let head = record::head(line).ok_or("not a log record")?;
        let ts = head.time().ok_or("no readable ts")?;
        let point = match &change {
            Change::Heartbeat { hb, received_at } => Some(
                serde_json::to_string(&history_point(hb, *received_at))
                    .map_err(|e| e.to_string())?,
            ),
            _ => None,
        };
        Ok(Row {
            log,
            kind: head.kind.to_string(),
            ts,
            node_id: change.node_id(),
            line: text.to_string(),
            point,
        })
    }
}

/// Inserts `rows` in order and returns their ids (ascending, in the same order). Callers hold
/// [`WRITE_LOCK`] in the same transaction.
pub async fn insert(
    client: &impl GenericClient,
    rows: &[Row],
) -> Result<Vec<i64>, tokio_postgres::Error> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let logs: Vec<&str> = rows.iter().map(|r| r.log.stem()).collect();
    let kinds: Vec<&str> = rows.iter().map(|r| r.kind.as_str()).collect();
    let ts: Vec<DateTime<Utc>> = rows.iter().map(|r| r.ts).collect();
    let nodes: Vec<Option<Uuid>> = rows.iter().map(|r| r.node_id).collect();
    let lines: Vec<&str> = rows.iter().map(|r| r.line.as_str()).collect();
    let points: Vec<Option<&str>> = rows.iter().map(|r| r.point.as_deref()).collect();
    let mut totals: HashMap<Uuid, i64> = HashMap::new();
    for r in rows.iter().filter(|r| r.log == LogName::Heartbeats) {
        if let Some(n) = r.node_id {
            *totals.entry(n).or_default() += 1;
        }
    }
    let (counted, counts): (Vec<Uuid>, Vec<i64>) = totals.into_iter().unzip();
    // Three statements pipelined in one round trip. ORDER BY ord: ids are drawn from the
    // sequence in the rows' order. The notification carries no payload: listeners read
    // every row after their cursor.
    let (insert_params, count_params): ([&(dyn ToSql + Sync); 6], [&(dyn ToSql + Sync); 2]) = (
        [&logs, &kinds, &ts, &nodes, &lines, &points],
        [&counted, &counts],
    );
    let (ids, _, _) = tokio::try_join!(
        client.query(
            "INSERT INTO records (log, kind, ts, node_id, line, point) \
             SELECT log, kind, ts, node_id, line, point \
             FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::uuid[], $5::text[], $6::text[]) \
                  WITH ORDINALITY AS u(log, kind, ts, node_id, line, point, ord) \
             ORDER BY ord RETURNING id",
            &insert_params,
        ),
        client.execute(
            "INSERT INTO heartbeat_nodes (node_id, total) SELECT * FROM unnest($1::uuid[], $2::int8[]) \
             ON CONFLICT (node_id) DO UPDATE SET total = heartbeat_nodes.total + EXCLUDED.total",
            &count_params,
        ),
        client.execute("SELECT pg_notify($1, '')", &[&CHANNEL]),
    )?;
    let ids: Vec<i64> = ids.iter().map(|r| r.get(0)).collect();
    Ok(ids)
}
