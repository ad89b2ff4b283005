//! The history tiers in PostgreSQL: `history_5m` and `history_1h`, one row per node and closed
//! bucket, keyed `(node_id, start)`, the metrics as json — `{"load1": [min, avg, max, n], …}`,
//! what a line of the JSONL store's history files holds ([`crate::history::StoredMetrics`]).
//! `json` keeps the text as written (validated): 495 bytes per 5-minute row with its index,
//! against 951 as `jsonb` (a numeric with its own header per number) and 1,601 as one row per
//! metric (measured with 864,000 realistic buckets; docs/PERFORMANCE.md). Nothing indexes into
//! the metrics; `metrics->'load1'` still works in psql.
//!
//! Every instance applies every heartbeat, so every instance closes the same buckets. Each
//! inserts them with `ON CONFLICT DO NOTHING`: the first copy stored wins, as [`Tiers::store`]
//! requires. One task per instance inserts them in batches, off the request path;
//! [`Tiers::flush`] waits for it. The leader deletes rows past their tier's retention
//! ([`expire`]); a bucket already past it is not inserted at all.
//!
//! At start, [`rebuild`] restores what memory holds of the history — the open buckets, the
//! last hour's raw samples and the disk trend — from each node's heartbeats since its newest
//! stored buckets ([`crate::history::floor`]) and its stored hours. A database from a release
//! without these tables has none stored: every retained heartbeat is rolled up, once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_util::TryStreamExt;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, GenericClient};
use uuid::Uuid;
use vaultmesh_proto::history::{DISK_PREFIX, Tier};

use super::{PgError, writer};
use crate::StoreError;
use crate::history::rebuild::{RebuildReport, roll_up_line};
use crate::history::{self, Bucket, Closed, HistoryOptions, StoredMetrics, TREND_HOURS, Tiers};
use crate::memory::Memory;
use crate::record;

/// Rows per insert statement.
const BATCH: usize = 2_000;

/// Buckets held for a database that does not answer, at most (the oldest are dropped).
const MAX_PENDING: usize = 500_000;

/// How soon a failed insert is tried again.
const RETRY: Duration = Duration::from_secs(2);

/// The table of a stored tier.
fn table(tier: Tier) -> Option<&'static str> {
    match tier {
        Tier::FiveMinutes => Some("history_5m"),
        Tier::Hour => Some("history_1h"),
        Tier::Raw => None,
    }
}

fn at(secs: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp(secs, 0)
        .ok_or_else(|| StoreError::Unavailable(format!("history: no such time {secs}")))
}

enum Msg {
    Store(Vec<Closed>),
    Flush(oneshot::Sender<Result<(), String>>),
}

/// The tiers as tables, written by one task.
#[derive(Debug)]
pub struct PgTiers {
    url: String,
    options: HistoryOptions,
    tx: mpsc::UnboundedSender<Msg>,
    /// The newest bucket start stored or queued per node and tier: a bucket not after it is
    /// not sent again (a start rolls up heartbeats whose buckets are stored).
    last: Mutex<HashMap<(Uuid, Tier), i64>>,
    /// The connection queries are read over (they pipeline on it).
    reader: tokio::sync::Mutex<Option<Arc<Client>>>,
}

impl PgTiers {
    /// Starts the insert task. Must run inside a Tokio runtime.
    pub fn open(url: &str, options: HistoryOptions) -> PgTiers {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(url.to_string(), rx));
        PgTiers {
            url: url.to_string(),
            options,
            tx,
            last: Mutex::default(),
            reader: tokio::sync::Mutex::new(None),
        }
    }

    /// Notes the newest buckets stored for `node`.
    fn remember(&self, node: Uuid, five: Option<i64>, hour: Option<i64>) {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        for (tier, start) in [(Tier::FiveMinutes, five), (Tier::Hour, hour)] {
            if let Some(start) = start {
                let l = last.entry((node, tier)).or_insert(start);
                *l = (*l).max(start);
            }
        }
    }

    async fn reader(&self) -> Result<Arc<Client>, StoreError> {
        let mut reader = self.reader.lock().await;
        if let Some(c) = reader.as_ref().filter(|c| !c.is_closed()) {
            return Ok(Arc::clone(c));
        }
        let c = Arc::new(
            writer::connect(&self.url)
                .await
                .map_err(|e| StoreError::Unavailable(format!("reading history: {e}")))?,
        );
        *reader = Some(Arc::clone(&c));
        Ok(c)
    }
}

#[async_trait]
impl Tiers for PgTiers {
    fn store(&self, closed: Vec<Closed>) {
        if closed.is_empty() {
            return;
        }
        let now = Utc::now().timestamp();
        let fresh: Vec<Closed> = {
            let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
            closed
                .into_iter()
                .filter(|c| {
                    let keep = self.options.retention(c.tier).as_secs() as i64;
                    if table(c.tier).is_none() || c.bucket.start < now.saturating_sub(keep) {
                        return false;
                    }
                    let l = last.entry((c.node, c.tier)).or_insert(i64::MIN);
                    if c.bucket.start <= *l {
                        return false;
                    }
                    *l = c.bucket.start;
                    true
                })
                .collect()
        };
        if !fresh.is_empty() && self.tx.send(Msg::Store(fresh)).is_err() {
            tracing::error!("The history writer has stopped; closed buckets are not stored.");
        }
    }

    async fn flush(&self) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        let stopped = || StoreError::Unavailable("the history writer has stopped".into());
        self.tx.send(Msg::Flush(tx)).map_err(|_| stopped())?;
        rx.await
            .map_err(|_| stopped())?
            .map_err(StoreError::Unavailable)
    }

    fn flush_blocking(&self) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        let stopped = || StoreError::Unavailable("the history writer has stopped".into());
        self.tx.send(Msg::Flush(tx)).map_err(|_| stopped())?;
        rx.blocking_recv()
            .map_err(|_| stopped())?
            .map_err(StoreError::Unavailable)
    }

    async fn read(
        &self,
        node: Uuid,
        tier: Tier,
        from: i64,
        to: i64,
    ) -> Result<Vec<Bucket>, StoreError> {
        let Some(table) = table(tier) else {
            return Ok(Vec::new());
        };
        let client = self.reader().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT start, metrics::text FROM {table} \
                     WHERE node_id = $1 AND start >= $2 AND start < $3 ORDER BY start"
                ),
                &[&node, &at(from)?, &at(to)?],
            )
            .await
            .map_err(|e| StoreError::Unavailable(format!("reading history: {e}")))?;
        rows.iter()
            .map(|r| {
                let start: DateTime<Utc> = r.get(0);
                let metrics: StoredMetrics = serde_json::from_str(r.get(1)).map_err(|e| {
                    StoreError::Unavailable(format!("reading history: {table} at {start}: {e}"))
                })?;
                Ok(Bucket::from_stored(start.timestamp(), metrics))
            })
            .collect()
    }
}

/// The insert task: takes what is queued, inserts it, answers the flushes queued with it; on a
/// failure keeps the buckets and tries again (reconnecting) every [`RETRY`].
async fn run(url: String, mut rx: mpsc::UnboundedReceiver<Msg>) {
    let mut client: Option<Client> = None;
    let mut pending: Vec<Closed> = Vec::new();
    let mut failing = false;
    loop {
        let mut replies = Vec::new();
        let mut stopped = false;
        let got = if pending.is_empty() {
            Some(rx.recv().await)
        } else {
            // Nothing new within RETRY: try the pending buckets again.
            tokio::time::timeout(RETRY, rx.recv()).await.ok()
        };
        let mut take = |m: Msg, pending: &mut Vec<Closed>| match m {
            Msg::Store(c) => pending.extend(c),
            Msg::Flush(reply) => replies.push(reply),
        };
        match got {
            Some(Some(m)) => take(m, &mut pending),
            Some(None) => stopped = true,
            None => {}
        }
        while !stopped && pending.len() < BATCH * 16 {
            match rx.try_recv() {
                Ok(m) => take(m, &mut pending),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => stopped = true,
            }
        }
        let result = insert(&url, &mut client, &mut pending).await;
        match &result {
            Ok(()) if failing => {
                tracing::info!("Stored the history buckets held while the database failed.");
                failing = false;
            }
            Ok(()) => {}
            Err(e) => {
                if !failing {
                    tracing::error!(error = %e, "Cannot store history buckets; holding them and trying again.");
                }
                failing = true;
                client = None;
                if pending.len() > MAX_PENDING {
                    let dropped = pending.len() - MAX_PENDING;
                    pending.drain(..dropped);
                    tracing::error!(
                        buckets = dropped,
                        "Dropped the oldest history buckets the database did not take; they are lost."
                    );
                }
            }
        }
        for reply in replies {
            let _ = reply.send(result.clone());
        }
        if stopped && (pending.is_empty() || result.is_err()) {
            return;
        }
    }
}

/// One table's rows to insert, as columns: node, start, metrics.
type Columns = (Vec<Uuid>, Vec<DateTime<Utc>>, Vec<String>);

/// Inserts `pending` (removing what is stored) in statements of [`BATCH`] rows.
async fn insert(
    url: &str,
    client: &mut Option<Client>,
    pending: &mut Vec<Closed>,
) -> Result<(), String> {
    if pending.is_empty() {
        return Ok(());
    }
    if client.as_ref().is_none_or(Client::is_closed) {
        *client = Some(
            writer::connect(url)
                .await
                .map_err(|e| format!("database: {e}"))?,
        );
    }
    let Some(c) = client.as_ref() else {
        return Ok(());
    };
    while !pending.is_empty() {
        let n = pending.len().min(BATCH);
        let mut rows: [Columns; 2] = Default::default();
        for closed in &pending[..n] {
            let Some(start) = DateTime::from_timestamp(closed.bucket.start, 0) else {
                continue;
            };
            let metrics = serde_json::to_string(&closed.bucket.stored_metrics())
                .map_err(|e| format!("cannot encode a bucket: {e}"))?;
            let r = &mut rows[usize::from(closed.tier == Tier::Hour)];
            r.0.push(closed.node);
            r.1.push(start);
            r.2.push(metrics);
        }
        for (tier, (nodes, starts, metrics)) in
            [Tier::FiveMinutes, Tier::Hour].into_iter().zip(&rows)
        {
            let Some(table) = table(tier).filter(|_| !nodes.is_empty()) else {
                continue;
            };
            c.execute(
                &format!(
                    "INSERT INTO {table} (node_id, start, metrics) \
                     SELECT node_id, start, metrics::json \
                     FROM unnest($1::uuid[], $2::timestamptz[], $3::text[]) AS u(node_id, start, metrics) \
                     ON CONFLICT DO NOTHING"
                ),
                &[nodes, starts, metrics],
            )
            .await
            .map_err(|e| format!("database: {e}"))?;
        }
        pending.drain(..n);
    }
    Ok(())
}

/// The start of the newest stored bucket of each tier, per node.
async fn newest(
    client: &impl GenericClient,
    nodes: &[Uuid],
) -> Result<HashMap<Uuid, (Option<i64>, Option<i64>)>, tokio_postgres::Error> {
    // One index lookup per node and table, whatever is retained.
    let rows = client
        .query(
            "SELECT n, (SELECT max(start) FROM history_5m WHERE node_id = n), \
                       (SELECT max(start) FROM history_1h WHERE node_id = n) \
             FROM unnest($1::uuid[]) AS n",
            &[&nodes],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let secs = |i| r.get::<_, Option<DateTime<Utc>>>(i).map(|t| t.timestamp());
            (r.get(0), (secs(1), secs(2)))
        })
        .collect())
}

/// Heartbeats rolled up between two flushes at start, at most (bounds the buckets queued
/// when a whole database from a release without tiers is rolled up).
const FLUSH_EVERY: u64 = 20_000;

/// Restores the rollup of every node the fleet holds, from the heartbeat rows up to `cursor`
/// (in the caller's snapshot): each node's rows since [`history::floor`] of its newest stored
/// buckets (all of them when none is stored) rolled up in log order, the buckets they close
/// stored, then each node's disk trend seeded from the hours stored in the last 7 days.
/// Returns once the closed buckets are stored, or the database refused them (then the insert
/// task keeps trying).
pub(super) async fn rebuild(
    client: &impl GenericClient,
    memory: &Memory,
    tiers: &PgTiers,
    cursor: i64,
    now: DateTime<Utc>,
) -> Result<RebuildReport, PgError> {
    let started = Instant::now();
    let mut report = RebuildReport::default();
    let nodes = memory.fleet.node_ids();
    let newest = newest(client, &nodes).await?;
    let mut statuses = Vec::new();
    let mut unflushed = 0u64;
    for node in &nodes {
        let (five, hour) = newest.get(node).copied().unwrap_or_default();
        tiers.remember(*node, five, hour);
        let floor = history::floor(five, hour).and_then(|f| DateTime::from_timestamp(f, 0));
        let rows = client
            .query_raw(
                "SELECT ts, line FROM records \
                 WHERE log = 'heartbeats' AND node_id = $1 \
                   AND ts >= COALESCE($2::timestamptz, '-infinity') AND id <= $3 \
                 ORDER BY id",
                [
                    node as &(dyn ToSql + Sync),
                    &floor as &(dyn ToSql + Sync),
                    &cursor,
                ],
            )
            .await?;
        let mut rows = std::pin::pin!(rows);
        while let Some(row) = rows.try_next().await? {
            let (ts, line): (DateTime<Utc>, &str) = (row.get(0), row.get(1));
            // The line's own time, to the nanosecond, as replay and the tail read it (the
            // column holds microseconds).
            let ts = record::head(line.as_bytes())
                .and_then(|h| h.time())
                .unwrap_or(ts);
            if roll_up_line(memory, *node, ts, line.as_bytes(), &mut statuses) {
                report.rolled_up += 1;
                unflushed += 1;
            }
        }
        if unflushed >= FLUSH_EVERY {
            flush_or_warn(tiers).await;
            unflushed = 0;
        }
    }
    let since = now - chrono::Duration::hours(TREND_HOURS as i64);
    let rows = client
        .query(
            "SELECT node_id, start, \
                    (SELECT json_object_agg(key, value) FROM json_each(metrics) \
                     WHERE starts_with(key, $3))::text \
             FROM history_1h WHERE node_id = ANY($1) AND start >= $2 ORDER BY node_id, start",
            &[&nodes, &since, &DISK_PREFIX],
        )
        .await?;
    let mut hours: HashMap<Uuid, Vec<Bucket>> = HashMap::new();
    for r in &rows {
        let (node, start, disks): (Uuid, DateTime<Utc>, Option<&str>) =
            (r.get(0), r.get(1), r.get(2));
        let metrics: StoredMetrics = disks
            .and_then(|d| serde_json::from_str(d).ok())
            .unwrap_or_default();
        hours
            .entry(node)
            .or_default()
            .push(Bucket::from_stored(start.timestamp(), metrics));
    }
    {
        let mut rollup = memory.history();
        for (node, hours) in hours {
            rollup.seed_trend(node, &hours);
        }
    }
    flush_or_warn(tiers).await;
    report.elapsed = started.elapsed();
    Ok(report)
}

/// Waits for the buckets queued; if the database refuses them, says so and starts anyway (the
/// insert task holds them and tries again).
async fn flush_or_warn(tiers: &PgTiers) {
    if let Err(e) = tiers.flush().await {
        tracing::warn!(error = %e, "History buckets rolled up at start are not stored yet; trying again in the background.");
    }
}

/// Deletes the rows past their tier's retention (the leader, hourly).
pub(super) async fn expire(
    client: &Client,
    options: &HistoryOptions,
    now: DateTime<Utc>,
) -> Result<u64, tokio_postgres::Error> {
    let mut deleted = 0;
    for tier in [Tier::FiveMinutes, Tier::Hour] {
        let Some(table) = table(tier) else { continue };
        // A retention too long for a date never expires anything.
        let Some(cutoff) = chrono::Duration::from_std(options.retention(tier))
            .ok()
            .and_then(|keep| now.checked_sub_signed(keep))
        else {
            continue;
        };
        // Per node, along the primary key: no index on `start` alone to maintain.
        deleted += client
            .execute(
                &format!(
                    "DELETE FROM {table} \
                     WHERE node_id = ANY(ARRAY(SELECT node_id FROM heartbeat_nodes)) AND start < $1"
                ),
                &[&cutoff],
            )
            .await?;
    }
    Ok(deleted)
}
