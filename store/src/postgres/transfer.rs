//! `store export` and `store import`: the same lines, between a log directory and a database.
//!
//! Export writes each log's rows, in id order, to `<stem>.jsonl` in an empty directory; the
//! ledger and every `logs` tool then work on it as on the embedded store's directory (the
//! scan lines are byte for byte those the ledger hashed). Import reads a log directory (rotated
//! heartbeat segments included, oldest first) into an empty database in one transaction.

use std::io::Write as _;
use std::path::Path;

use tokio_postgres::Client;

use super::rows::{self, Row, WRITE_LOCK};
use super::{PgError, connect, schema};
use crate::dirlock::DirLock;
use crate::logdir::{self, LogName};
use crate::replay::{self, BadLine};

/// Lines per log.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counts(pub Vec<(LogName, u64)>);

impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|(log, n)| format!("{} {n}", log.stem()))
            .collect();
        write!(f, "{}", parts.join(", "))
    }
}

/// Writes every log in the database at `url` to `dir` (created if missing; must hold no log).
pub async fn export(url: &str, dir: &Path) -> Result<Counts, PgError> {
    let mut client = connect(url).await?;
    let _lock = DirLock::acquire(dir).map_err(|e| PgError::Transfer(e.to_string()))?;
    for log in LogName::ALL {
        let present = logdir::files(dir, log)
            .map_err(|e| PgError::Transfer(format!("{}: {e}", dir.display())))?;
        if let Some(p) = present.first() {
            return Err(PgError::Transfer(format!(
                "{} already holds {}; export into an empty directory",
                dir.display(),
                p.display()
            )));
        }
    }
    // Read-only: a role that may only read can export, and a mistyped database name is an
    // error rather than an empty export.
    schema::require(&client, url).await?;
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let mut counts = Counts::default();
    for log in LogName::ALL {
        let path = log.active(dir);
        let file = std::fs::File::create(&path)
            .map_err(|e| PgError::Transfer(format!("cannot create {}: {e}", path.display())))?;
        let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
        let io = |e: std::io::Error| PgError::Transfer(format!("writing {}: {e}", path.display()));
        let mut n = 0u64;
        let mut after = 0i64;
        loop {
            let rows = tx
                .query(
                    "SELECT id, line FROM records WHERE log = $1 AND id > $2 ORDER BY id LIMIT 10000",
                    &[&log.stem(), &after],
                )
                .await?;
            for row in &rows {
                after = row.get(0);
                out.write_all(row.get::<_, &str>(1).as_bytes())
                    .map_err(io)?;
                out.write_all(b"\n").map_err(io)?;
                n += 1;
            }
            if rows.len() < 10_000 {
                break;
            }
        }
        let file = out.into_inner().map_err(|e| io(e.into_error()))?;
        file.sync_all().map_err(io)?;
        counts.0.push((log, n));
    }
    tx.commit().await?;
    logdir::sync_dir(dir).map_err(|e| PgError::Transfer(format!("{}: {e}", dir.display())))?;
    Ok(counts)
}

/// Reads every log of `dir` (holding its lock) into the empty database at `url`, all or nothing. Lines that do
/// not decode are skipped and returned, as replay would skip them.
pub async fn import(dir: &Path, url: &str) -> Result<(Counts, Vec<BadLine>), PgError> {
    if !dir.is_dir() {
        return Err(PgError::Transfer(format!(
            "{} is not a directory",
            dir.display()
        )));
    }
    // No Command Center may append to the directory while it is read.
    let _lock = DirLock::acquire(dir).map_err(|e| PgError::Transfer(e.to_string()))?;
    let mut client = connect(url).await?;
    schema::migrate(&mut client).await?;
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])
        .await?;
    let existing: i64 = tx
        .query_one(
            "SELECT count(*) FROM (SELECT 1 FROM records LIMIT 1) r",
            &[],
        )
        .await?
        .get(0);
    if existing > 0 {
        return Err(PgError::Transfer(
            "the database already holds records; import only into an empty one".into(),
        ));
    }
    let mut counts = Counts::default();
    let mut skipped = Vec::new();
    for log in [
        LogName::Nodes,
        LogName::Events,
        LogName::Commands,
        LogName::Scans,
        LogName::Heartbeats,
    ] {
        let mut n = 0u64;
        let files = logdir::files(dir, log)
            .map_err(|e| PgError::Transfer(format!("{}: {e}", dir.display())))?;
        // A reading thread hands batches to the inserts, so memory holds two batches at most.
        let (send, mut batches) = tokio::sync::mpsc::channel::<Vec<Row>>(2);
        let reader = tokio::task::spawn_blocking(move || {
            let mut skipped = Vec::new();
            for path in files {
                let mut batch: Vec<Row> = Vec::new();
                replay::for_each_line(&path, |line_no, _, line| {
                    if line.is_empty() {
                        return;
                    }
                    match Row::from_line(log, line) {
                        Ok(row) => batch.push(row),
                        Err(reason) => skipped.push(BadLine {
                            file: path.clone(),
                            line: line_no,
                            reason,
                        }),
                    }
                    if batch.len() == 5000 {
                        let _ = send.blocking_send(std::mem::take(&mut batch));
                    }
                })
                .map_err(|e| format!("reading {}: {e}", path.display()))?;
                let _ = send.blocking_send(batch);
            }
            Ok::<_, String>(skipped)
        });
        while let Some(rows) = batches.recv().await {
            n += rows.len() as u64;
            rows::insert(&tx, &rows).await?;
        }
        let bad = reader
            .await
            .map_err(|e| PgError::Transfer(e.to_string()))?
            .map_err(PgError::Transfer)?;
        skipped.extend(bad);
        counts.0.push((log, n));
    }
    tx.commit().await?;
    Ok((counts, skipped))
}

/// Lines in the database per log (for `store export`'s report and the tests).
pub async fn count(client: &Client) -> Result<Counts, PgError> {
    let mut counts = Counts::default();
    for log in LogName::ALL {
        let n: i64 = client
            .query_one(
                "SELECT count(*) FROM records WHERE log = $1",
                &[&log.stem()],
            )
            .await?
            .get(0);
        counts.0.push((log, n as u64));
    }
    Ok(counts)
}
