//! The writer: one task and one connection per instance, committing writes in batches.
//!
//! Each batch is one transaction: take the database-wide write lock, catch up with rows other
//! instances committed (so checks see them), run the batch's check, insert, `NOTIFY`, commit,
//! then apply the batch to memory. A batch holds any number of plain writes (heartbeats) and at
//! most one checked write, last, so a check always sees the writes before it applied.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio_postgres::{Client, NoTls};

use super::rows::{self, Row, WRITE_LOCK};
use super::tail::Applier;
use crate::StoreError;
use crate::change::Change;
use crate::logged::Check;

/// Writes per transaction, at most.
const BATCH: usize = 512;

/// One write and who waits for it.
pub(super) struct Op {
    pub write: Write,
    pub done: oneshot::Sender<Result<(), StoreError>>,
}

pub(super) enum Write {
    Plain(Box<Change>),
    Checked(Check),
}

impl Op {
    fn is_checked(&self) -> bool {
        matches!(self.write, Write::Checked(_))
    }
}

/// Runs until every sender is dropped.
pub(super) async fn run(
    url: String,
    mut client: Option<Client>,
    mut ops: mpsc::Receiver<Op>,
    applier: Arc<Applier>,
    latency: Option<crate::LatencySink>,
) {
    let mut next: Option<Op> = None;
    loop {
        let Some(first) = next.take().or(ops.recv().await) else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < BATCH && batch.last().is_some_and(|o| !o.is_checked()) {
            match ops.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        // Only the last may be checked; a checked write further in waits for the next batch.
        if let Some(pos) = batch.iter().position(Op::is_checked)
            && pos + 1 < batch.len()
        {
            next = batch.pop();
        }
        if client.as_ref().is_none_or(Client::is_closed) {
            client = match connect(&url).await {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::error!(error = %e, "Cannot reach the database; refusing writes until it is back.");
                    for op in batch {
                        let _ = op
                            .done
                            .send(Err(StoreError::Unavailable(format!("database: {e}"))));
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
        }
        let Some(c) = client.as_mut() else {
            continue;
        };
        let started = Instant::now();
        commit(c, &applier, batch).await;
        if let Some(h) = &latency {
            h.record(started.elapsed());
        }
    }
}

/// A connection whose driver runs on its own task.
pub async fn connect(url: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "Database connection closed.");
        }
    });
    Ok(client)
}

async fn commit(client: &mut Client, applier: &Applier, batch: Vec<Op>) {
    let mut cursor = applier.cursor.lock().await;
    let (writes, dones): (Vec<Write>, Vec<_>) =
        batch.into_iter().map(|o| (o.write, o.done)).unzip();
    let mut dones: Vec<Option<oneshot::Sender<_>>> = dones.into_iter().map(Some).collect();
    let result: Result<Vec<(i64, Change, Row)>, String> = async {
        let tx = client.transaction().await.map_err(|e| e.to_string())?;
        // Strictly after the lock is granted: only then has the previous holder committed
        // everything it allocated, so the catch-up sees it (a query pipelined with the lock
        // statement may reach the server first and read a stale snapshot).
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])
            .await
            .map_err(|e| e.to_string())?;
        applier
            .catch_up(&tx, &mut cursor)
            .await
            .map_err(|e| e.to_string())?;
        let mut staged: Vec<Change> = Vec::new();
        for (write, done) in writes.into_iter().zip(dones.iter_mut()) {
            match write {
                Write::Plain(change) => staged.push(*change),
                Write::Checked(check) => match check(&applier.memory) {
                    Ok(changes) => staged.extend(changes),
                    Err(e) => {
                        if let Some(done) = done.take() {
                            let _ = done.send(Err(e));
                        }
                    }
                },
            }
        }
        let rows: Vec<Row> = staged
            .iter()
            .map(Row::of)
            .collect::<Result<_, _>>()
            .map_err(|e| format!("cannot encode a record: {e}"))?;
        let ids = rows::insert(&tx, &rows).await.map_err(|e| e.to_string())?;
        tx.commit().await.map_err(|e| e.to_string())?;
        Ok(ids
            .into_iter()
            .zip(staged)
            .zip(rows)
            .map(|((id, c), r)| (id, c, r))
            .collect())
    }
    .await;
    let reply = match result {
        Ok(applied) => {
            for (id, change, row) in applied {
                applier.apply(row.log, change, &row.line).await;
                *cursor = id;
            }
            Ok(())
        }
        Err(e) => {
            tracing::error!(error = %e, "A database write failed; nothing of it was acknowledged.");
            Err(StoreError::Unavailable(format!("database: {e}")))
        }
    };
    for done in dones.into_iter().flatten() {
        let _ = done.send(reply.clone());
    }
}
