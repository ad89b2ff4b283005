//! The PostgreSQL backend: several Command Centers share one log in one database.
//!
//! Every instance keeps the whole state in [`Memory`], like the JSONL store; the database holds
//! the log. At start an instance loads the log (the last `history_len` heartbeats per node, every
//! other record); from then on it applies every row in `id` order, its own right after commit
//! and the others' as `NOTIFY` announces them ([`tail`]). Writes that check state first — the
//! next command `seq`, a receipt's place in its chain, one key per node, a duplicate scan, the
//! incident an ack answers — run under one database-wide lock after catching up ([`writer`]),
//! so two instances can never both hand out seq 7. One instance at a time, holding a session
//! lock, runs the fleet-wide writers (attention log, scheduled scans, heartbeat retention).
//!
//! - [`schema`]: embedded migrations and the append-only trigger.
//! - [`rows`]: the `records` row and the batched insert.
//! - [`writer`], [`tail`]: writing, and following the log.
//! - [`tiers`]: the history tiers (`history_5m`, `history_1h`), their retention, and restoring
//!   the rollup at start.
//! - [`transfer`]: `store export` / `store import` between a log directory and a database.

pub mod rows;
pub mod schema;
pub mod tail;
pub mod tiers;
pub mod transfer;
pub mod writer;

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::Utc;
use futures_util::TryStreamExt;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, IsolationLevel};
use uuid::Uuid;
use vaultmesh_proto::EventEnvelope;
use vaultmesh_proto::api::HistoryPoint;

use super::change::Change;
use super::events::EventQuery;
use super::health::StorageHealth;
use super::journal::{Journal, JournalError, Rotation};
use super::logdir::LogName;
use super::logged::{Backend, Check, Gate, LoggedStore};
use super::memory::Memory;
use super::replay::{self, BadLine, ReplayReport};
use super::{StoreError, StoreOptions};
use crate::bus::Bus;
use tail::Applier;
use writer::{Op, Write};

/// The store over PostgreSQL.
pub type PgStore = LoggedStore<PgBackend>;

/// Held (per session) by the instance that runs the fleet-wide writers.
const LEADER_LOCK: i64 = 0x7661_756c_746d_0003;

/// How often an instance looks for rows without a notification.
const POLL: Duration = Duration::from_secs(1);

/// Why the PostgreSQL store could not open.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("cannot connect to {url}: {source}")]
    Connect {
        url: String,
        source: tokio_postgres::Error,
    },
    #[error("database: {0}")]
    Db(#[from] tokio_postgres::Error),
    #[error(
        "the database has schema version {found}, newer than this binary knows ({known}); upgrade the Command Center"
    )]
    NewerSchema { found: i32, known: i32 },
    #[error("{0}")]
    Journal(#[from] JournalError),
    #[error("{0}")]
    Mirror(String),
    #[error("{0}")]
    Transfer(String),
}

/// `url` without its password (in the user info or a `password=` parameter), for messages
/// and logs.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "(the database URL)".into();
    };
    let (main, query) = match rest.split_once('?') {
        Some((m, q)) => (m, Some(q)),
        None => (rest, None),
    };
    let main = match main.split_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{user}@{host}")
        }
        None => main.to_string(),
    };
    let kept: Vec<&str> = query
        .unwrap_or_default()
        .split('&')
        .filter(|kv| !kv.is_empty() && !kv.to_ascii_lowercase().starts_with("password="))
        .collect();
    if kept.is_empty() {
        format!("{scheme}://{main}")
    } else {
        format!("{scheme}://{main}?{}", kept.join("&"))
    }
}

/// Whether `url` names a PostgreSQL database (what `--store` accepts).
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// The database, this instance's writer and follower, and the local scan log.
#[derive(Debug)]
pub struct PgBackend {
    url: String,
    applier: Arc<Applier>,
    ops: mpsc::Sender<Op>,
    reader: tokio::sync::Mutex<Option<Client>>,
    leads: Arc<AtomicBool>,
    /// The connection `seen_requests` is written over (queries pipeline on it), and when it
    /// was last pruned.
    seen: tokio::sync::Mutex<(Option<Arc<Client>>, Instant)>,
}

async fn connect(url: &str) -> Result<Client, PgError> {
    writer::connect(url)
        .await
        .map_err(|source| PgError::Connect {
            url: redact(url),
            source,
        })
}

impl PgStore {
    /// Connects, migrates, loads the log into memory, brings `opts.dir`'s copy of the scan log
    /// up to date (handing each of its lines to `ledger`, so the copy is read once at start),
    /// and starts following the log. Must run inside a Tokio runtime.
    pub async fn open(
        url: &str,
        opts: &StoreOptions,
        bus: Arc<Bus>,
        ledger: Option<&mut crate::ledger::Leaves>,
    ) -> Result<(PgStore, ReplayReport), PgError> {
        let started = Instant::now();
        let mut client = connect(url).await?;
        schema::migrate(&mut client).await?;
        let tiers = Arc::new(tiers::PgTiers::open(url, opts.history));
        let memory = Arc::new(Memory::new(opts.limits, bus, tiers.clone()));
        let (cursor, mut report) = load(&mut client, &memory, &tiers).await?;
        let (mirror, durable) = mirror(&client, &opts.dir, cursor, &opts.health, ledger).await?;
        report.elapsed = started.elapsed();
        tracing::info!(
            lines = report.lines,
            nodes = report.nodes,
            skipped = report.skipped.len(),
            ms = report.elapsed.as_millis() as u64,
            database = %redact(url),
            "Loaded the log from PostgreSQL."
        );
        let applier = Arc::new(Applier {
            memory,
            cursor: tokio::sync::Mutex::new(cursor),
            mirror,
            scans_durable: Arc::new(AtomicU64::new(durable)),
        });
        let (ops, rx) = mpsc::channel(4096);
        let latency = opts.observer.as_ref().map(|m| m.append_latency("postgres"));
        tokio::spawn(writer::run(
            url.to_string(),
            Some(client),
            rx,
            Arc::clone(&applier),
            latency,
        ));
        tokio::spawn(tail::listen(url.to_string(), Arc::clone(&applier), POLL));
        let leads = Arc::new(AtomicBool::new(false));
        tokio::spawn(lead(
            url.to_string(),
            Arc::clone(&leads),
            opts.heartbeats.retention,
            opts.history,
        ));
        let backend = PgBackend {
            url: url.to_string(),
            applier,
            ops,
            reader: tokio::sync::Mutex::new(None),
            leads,
            seen: tokio::sync::Mutex::new((None, Instant::now())),
        };
        Ok((LoggedStore::new(backend), report))
    }
}

/// Reads a consistent snapshot of the log into `memory`: every record but heartbeats, and per
/// node its heartbeat count, last `history_len` history points and last heartbeat; then
/// restores the history rollup from the heartbeats since the tiers' newest buckets
/// ([`tiers::rebuild`]). Returns the snapshot's newest id (the cursor).
async fn load(
    client: &mut Client,
    memory: &Memory,
    tiers: &tiers::PgTiers,
) -> Result<(i64, ReplayReport), PgError> {
    let mut report = ReplayReport::default();
    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let cursor: i64 = tx
        .query_one("SELECT COALESCE(max(id), 0) FROM records", &[])
        .await?
        .get(0);
    let bad = |id: i64, reason: String| BadLine {
        file: PathBuf::from("postgres:records"),
        line: id as u64,
        reason,
    };
    // Streamed: audit records are kept forever and may be many.
    let rows = tx
        .query_raw(
            "SELECT id, log, line FROM records WHERE log <> 'heartbeats' AND id <= $1 ORDER BY id",
            [&cursor as &(dyn ToSql + Sync)],
        )
        .await?;
    let mut rows = std::pin::pin!(rows);
    while let Some(row) = rows.try_next().await? {
        let (id, log, line): (i64, &str, &str) = (row.get(0), row.get(1), row.get(2));
        report.lines += 1;
        report.bytes += line.len() as u64;
        let Some(log) = LogName::from_stem(log) else {
            report
                .skipped
                .push(bad(id, format!("a record of unknown log {log:?}")));
            continue;
        };
        match Change::decode(log, line.as_bytes()) {
            Ok(c) => {
                if !memory.apply(c, false) {
                    report
                        .skipped
                        .push(bad(id, "a registry record that does not apply".into()));
                }
            }
            Err(reason) => report.skipped.push(bad(id, reason)),
        }
    }
    let history = memory.fleet.limits().history_len.max(1) as i64;
    let mut points: HashMap<Uuid, (u64, VecDeque<HistoryPoint>)> = HashMap::new();
    for row in tx
        .query(
            "SELECT n.node_id, n.total, h.point FROM heartbeat_nodes n CROSS JOIN LATERAL ( \
               SELECT id, point FROM records r \
               WHERE r.log = 'heartbeats' AND r.node_id = n.node_id AND r.id <= $2 \
               ORDER BY r.id DESC LIMIT $1) h \
             ORDER BY n.node_id, h.id",
            &[&history, &cursor],
        )
        .await?
    {
        let (node, total, point): (Uuid, i64, Option<&str>) = (row.get(0), row.get(1), row.get(2));
        report.lines += 1;
        let entry = points
            .entry(node)
            .or_insert((total as u64, VecDeque::new()));
        if let Some(p) = point.and_then(|p| serde_json::from_str::<HistoryPoint>(p).ok()) {
            entry.1.push_back(p);
        }
    }
    for row in tx
        .query(
            "SELECT h.id, h.line FROM heartbeat_nodes n CROSS JOIN LATERAL ( \
               SELECT id, line FROM records r \
               WHERE r.log = 'heartbeats' AND r.node_id = n.node_id AND r.id <= $1 \
               ORDER BY r.id DESC LIMIT 1) h",
            &[&cursor],
        )
        .await?
    {
        let (id, line): (i64, &str) = (row.get(0), row.get(1));
        report.bytes += line.len() as u64;
        match Change::decode(LogName::Heartbeats, line.as_bytes()) {
            Ok(Change::Heartbeat { hb, received_at }) => {
                let (total, history) = points.remove(&hb.node_id).unwrap_or_default();
                memory
                    .fleet
                    .restore_node(hb, received_at, history, total.max(1));
                report.nodes += 1;
            }
            Ok(_) => {}
            Err(reason) => report.skipped.push(bad(id, reason)),
        }
    }
    let rebuilt = tiers::rebuild(&tx, memory, tiers, cursor, Utc::now()).await?;
    tracing::info!(
        rolled_up = rebuilt.rolled_up,
        ms = rebuilt.elapsed.as_millis() as u64,
        "Rebuilt the history rollup from the heartbeats since the newest stored buckets."
    );
    tx.commit().await?;
    for b in &report.skipped {
        tracing::warn!(record = b.line, reason = %b.reason, "Skipped a bad record.");
    }
    Ok((cursor, report))
}

/// Opens `dir/sovereign-scans.jsonl` as the copy of the database's scan lines up to `cursor`:
/// checks that its last line is the database's line of that number, and appends the lines it
/// lacks (streamed), handing every line to `ledger`. Returns it and its durable length.
async fn mirror(
    client: &Client,
    dir: &Path,
    cursor: i64,
    health: &Arc<StorageHealth>,
    mut ledger: Option<&mut crate::ledger::Leaves>,
) -> Result<(Journal, u64), PgError> {
    use std::io::Write as _;
    // Opening cuts a torn final line; the copy is then checked and completed directly.
    Journal::open(dir, LogName::Scans, Rotation::default(), Arc::clone(health))?
        .0
        .close();
    let path = LogName::Scans.active(dir);
    let fail = |e: std::io::Error| PgError::Mirror(format!("{}: {e}", path.display()));
    let mut have = 0i64;
    let mut last = Vec::new();
    // Its torn tail was cut: every complete line is durable.
    let durable = std::fs::metadata(&path).map_err(fail)?.len();
    let end = replay::for_each_line(&path, |_, offset, line| {
        have += 1;
        last.clear();
        last.extend_from_slice(line);
        if let Some(l) = ledger.as_deref_mut() {
            l.feed(offset, line, durable);
        }
    })
    .map_err(fail)?;
    let scans = "FROM records WHERE log = 'sovereign-scans' AND id <= $1 ORDER BY id";
    if have > 0 {
        let theirs = client
            .query_opt(
                &format!("SELECT line {scans} OFFSET $2 LIMIT 1"),
                &[&cursor, &(have - 1)],
            )
            .await?;
        if theirs.is_none_or(|r| r.get::<_, &str>(0).as_bytes() != last.as_slice()) {
            return Err(PgError::Mirror(format!(
                "{}:{have} is not the database's scan record {have}: this log directory belongs to another store; \
                 give each database its own --log-dir",
                path.display()
            )));
        }
    }
    let rows = client
        .query_raw(
            &format!("SELECT line {scans} OFFSET $2"),
            [&cursor as &(dyn ToSql + Sync), &have],
        )
        .await?;
    let mut rows = std::pin::pin!(rows);
    let file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .map_err(fail)?;
    let mut out = std::io::BufWriter::new(file);
    let mut copied = 0u64;
    // Fed as written: if the sync below fails, the store does not open and the leaves go too.
    let mut offset = end;
    while let Some(row) = rows.try_next().await? {
        let line = row.get::<_, &str>(0).as_bytes();
        out.write_all(line)
            .and_then(|()| out.write_all(b"\n"))
            .map_err(fail)?;
        if let Some(l) = ledger.as_deref_mut() {
            l.feed(offset, line, offset + line.len() as u64 + 1);
        }
        offset += line.len() as u64 + 1;
        copied += 1;
    }
    let file = out.into_inner().map_err(|e| fail(e.into_error()))?;
    file.sync_data().map_err(fail)?;
    if copied > 0 {
        tracing::info!(
            lines = copied,
            "Copied scan reports from the database to the local scan log."
        );
    }
    let len = std::fs::metadata(&path).map_or(0, |m| m.len());
    let (journal, _) = Journal::open(dir, LogName::Scans, Rotation::default(), Arc::clone(health))?;
    Ok((journal, len))
}

/// Tries to become the leader every few seconds; holds the session lock while its connection
/// answers. The leader pings the database every second and steps down when a ping fails or
/// takes over 2 s; the session asks the server to end it after 5 s without a ping (and probes
/// the socket), so a leader whose host vanished frees the lock within seconds, and a leader
/// cut off steps down before the server lets another take over. The leader also deletes
/// heartbeats older than `retention` and history buckets past `history`'s retention, hourly.
async fn lead(
    url: String,
    leads: Arc<AtomicBool>,
    retention: Duration,
    history: crate::history::HistoryOptions,
) {
    loop {
        if let Ok((client, connection)) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await
        {
            let mut connection = tokio::spawn(connection);
            // Best effort: idle_session_timeout needs PostgreSQL 14.
            for set in [
                "SET idle_session_timeout = '5s'",
                "SET tcp_keepalives_idle = 5",
                "SET tcp_keepalives_interval = 2",
                "SET tcp_keepalives_count = 2",
            ] {
                let _ = client.batch_execute(set).await;
            }
            let won = client
                .query_one("SELECT pg_try_advisory_lock($1)", &[&LEADER_LOCK])
                .await
                .map(|r| r.get::<_, bool>(0))
                .unwrap_or(false);
            if won {
                tracing::info!("This instance now runs the fleet-wide writers (leader).");
                leads.store(true, Ordering::Release);
                let mut ping = tokio::time::interval(Duration::from_secs(1));
                let mut hourly = tokio::time::interval(Duration::from_secs(3600));
                loop {
                    tokio::select! {
                        _ = &mut connection => break,
                        _ = ping.tick() => {
                            let alive = tokio::time::timeout(Duration::from_secs(2), client.simple_query("SELECT 1")).await;
                            if !matches!(alive, Ok(Ok(_))) {
                                break;
                            }
                        }
                        _ = hourly.tick() => {
                            // Its own connection: a long delete must not hold up the pings.
                            tokio::spawn(expire(url.clone(), retention, history));
                        }
                    }
                }
                leads.store(false, Ordering::Release);
                tracing::warn!(
                    "Stepped down as leader: the database connection holding the lock failed."
                );
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

async fn expire(url: String, retention: Duration, history: crate::history::HistoryOptions) {
    let client = match writer::connect(&url).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "Cannot delete heartbeats and history past retention.");
            return;
        }
    };
    let now = Utc::now();
    // A retention too long for a date never expires anything.
    if let Some(cutoff) = chrono::Duration::from_std(retention)
        .ok()
        .and_then(|age| now.checked_sub_signed(age))
    {
        match client
            .execute(
                "DELETE FROM records WHERE log = 'heartbeats' AND ts < $1",
                &[&cutoff],
            )
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(rows = n, "Deleted heartbeats past retention."),
            Err(e) => tracing::warn!(error = %e, "Cannot delete heartbeats past retention."),
        }
    }
    match tiers::expire(&client, &history, now).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(rows = n, "Deleted history buckets past retention."),
        Err(e) => tracing::warn!(error = %e, "Cannot delete history buckets past retention."),
    }
}

impl PgBackend {
    async fn send(&self, write: Write) -> Result<(), StoreError> {
        let (done, wait) = oneshot::channel();
        self.ops
            .send(Op { write, done })
            .await
            .map_err(|_| StoreError::Unavailable("the database writer stopped".into()))?;
        wait.await
            .map_err(|_| StoreError::Unavailable("the database writer stopped".into()))?
    }
}

#[async_trait]
impl Backend for PgBackend {
    fn memory(&self) -> &Arc<Memory> {
        &self.applier.memory
    }

    async fn append(&self, change: Change) -> Result<(), StoreError> {
        self.send(Write::Plain(Box::new(change))).await
    }

    async fn append_checked(&self, _gate: Gate, check: Check) -> Result<(), StoreError> {
        self.send(Write::Checked(check)).await
    }

    async fn query_log_events(&self, q: EventQuery) -> Result<Vec<EventEnvelope>, StoreError> {
        let unavailable =
            |e: tokio_postgres::Error| StoreError::Unavailable(format!("database: {e}"));
        let mut reader = self.reader.lock().await;
        if reader.as_ref().is_none_or(Client::is_closed) {
            *reader = Some(writer::connect(&self.url).await.map_err(unavailable)?);
        }
        let Some(client) = reader.as_ref() else {
            return Ok(Vec::new());
        };
        let kinds: Option<Vec<String>> = q.kinds.as_ref().map(|k| k.iter().cloned().collect());
        let order = if q.newest_first { "DESC" } else { "ASC" };
        let sql = format!(
            "SELECT line FROM records WHERE log = 'events' \
             AND ($1::text[] IS NULL OR kind = ANY($1)) \
             AND ($2::uuid IS NULL OR node_id = $2) \
             AND ($3::timestamptz IS NULL OR ts >= $3) \
             ORDER BY id {order} LIMIT $4"
        );
        let limit = q.limit.max(1) as i64;
        let rows = client
            .query(&sql, &[&kinds, &q.node_id, &q.since, &limit])
            .await
            .map_err(unavailable)?;
        Ok(rows
            .iter()
            .filter_map(
                |r| match Change::decode(LogName::Events, r.get::<_, &str>(0).as_bytes()) {
                    Ok(Change::Event(e)) if q.matches(&e) => Some(e),
                    _ => None,
                },
            )
            .collect())
    }

    fn scans_durable_len(&self) -> u64 {
        self.applier.scans_durable.load(Ordering::Acquire)
    }

    fn leads(&self) -> bool {
        self.leads.load(Ordering::Acquire)
    }

    async fn first_request(&self, digest: [u8; 32]) -> Result<super::seen::Seen, StoreError> {
        let unavailable =
            |e: tokio_postgres::Error| StoreError::Unavailable(format!("database: {e}"));
        let (client, prune) = {
            let mut seen = self.seen.lock().await;
            if seen.0.as_ref().is_none_or(|c| c.is_closed()) {
                seen.0 = Some(Arc::new(
                    writer::connect(&self.url).await.map_err(unavailable)?,
                ));
            }
            let prune = seen.1.elapsed() >= Duration::from_secs(60);
            if prune {
                seen.1 = Instant::now();
            }
            (seen.0.clone(), prune)
        };
        let Some(client) = client else {
            return Err(StoreError::Unavailable("database: no connection".into()));
        };
        if prune {
            client
                .execute(
                    "DELETE FROM seen_requests WHERE seen_at < now() - make_interval(secs => $1)",
                    &[&(super::seen::WINDOW_SECS as f64)],
                )
                .await
                .map_err(unavailable)?;
        }
        // Atomic across instances: the primary key admits one of two concurrent inserts.
        let inserted = client
            .execute(
                "INSERT INTO seen_requests (digest) VALUES ($1) ON CONFLICT DO NOTHING",
                &[&&digest[..]],
            )
            .await
            .map_err(unavailable)?;
        Ok(if inserted == 1 {
            super::seen::Seen::First
        } else {
            super::seen::Seen::Again
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_drops_every_password() {
        for (url, shown) in [
            (
                "postgres://vm:s3cret@db:5432/vaultmesh",
                "postgres://vm@db:5432/vaultmesh",
            ),
            (
                "postgres:///vaultmesh?host=/run/postgresql&password=s3cret",
                "postgres:///vaultmesh?host=/run/postgresql",
            ),
            (
                "postgresql://vm@db/x?PASSWORD=s3cret&sslmode=disable",
                "postgresql://vm@db/x?sslmode=disable",
            ),
            ("postgres://vm@db/x", "postgres://vm@db/x"),
            ("s3cret", "(the database URL)"),
        ] {
            assert_eq!(redact(url), shown);
            assert!(!redact(url).contains("s3cret"));
        }
    }
}
