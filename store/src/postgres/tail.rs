//! Applying the shared log to this instance's memory, in `id` order, whoever wrote it.
//!
//! [`Applier`] holds the cursor: the id of the last row applied. The writer applies its own rows
//! right after it commits them; [`listen`] applies everyone else's, woken by `NOTIFY` (and once
//! a second regardless, should a notification be lost with its connection). Both hold the
//! cursor's lock while they apply, so every row is applied once, in order.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{Mutex, mpsc};
use tokio_postgres::{AsyncMessage, GenericClient, NoTls};

use super::rows::CHANNEL;
use crate::change::Change;
use crate::journal::Journal;
use crate::logdir::LogName;
use crate::memory::Memory;

/// Rows read per round trip while catching up.
const PAGE: i64 = 500;

/// Memory, the cursor, and the local copy of the scan log the ledger hashes.
#[derive(Debug)]
pub struct Applier {
    pub memory: Arc<Memory>,
    pub cursor: Mutex<i64>,
    /// `sovereign-scans.jsonl` in this instance's log directory: the scan rows in id order.
    pub mirror: Journal,
    pub scans_durable: Arc<AtomicU64>,
}

impl Applier {
    /// Applies one row (publishing it) and copies a scan line to the mirror.
    pub async fn apply(&self, log: LogName, change: Change, line: &str) {
        self.memory.apply(change, true);
        if log == LogName::Scans {
            self.mirror_line(line).await;
        }
    }

    async fn mirror_line(&self, line: &str) {
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        let (durable, len) = (Arc::clone(&self.scans_durable), bytes.len() as u64);
        let bump = Box::new(move || {
            durable.fetch_add(len, Ordering::Release);
        });
        if let Err(e) = self.mirror.append(bytes, Some(bump)).await {
            tracing::error!(error = %e, "Cannot copy a scan report to the local scan log; the ledger falls behind.");
        }
    }

    /// Applies every committed row after `cursor` (whose lock the caller holds). Returns how
    /// many rows it applied.
    pub async fn catch_up(
        &self,
        client: &impl GenericClient,
        cursor: &mut i64,
    ) -> Result<u64, tokio_postgres::Error> {
        let mut applied = 0;
        loop {
            let rows = client
                .query(
                    "SELECT id, log, line FROM records WHERE id > $1 ORDER BY id LIMIT $2",
                    &[&*cursor, &PAGE],
                )
                .await?;
            for row in &rows {
                let (id, log, line): (i64, &str, &str) = (row.get(0), row.get(1), row.get(2));
                *cursor = id;
                let Some(log) = LogName::from_stem(log) else {
                    tracing::warn!(id, log, "Skipped a record of an unknown log.");
                    continue;
                };
                match Change::decode(log, line.as_bytes()) {
                    Ok(change) => {
                        self.apply(log, change, line).await;
                        applied += 1;
                    }
                    Err(reason) => {
                        tracing::warn!(id, %reason, "Skipped a bad record.");
                        // The ledger hashes every scan line, readable or not (a newer
                        // instance may write what this one cannot parse).
                        if log == LogName::Scans {
                            self.mirror_line(line).await;
                        }
                    }
                }
            }
            if (rows.len() as i64) < PAGE {
                return Ok(applied);
            }
        }
    }
}

/// Follows other instances' writes until the process ends: `LISTEN`, then catch up on every
/// notification and at least every `poll`. Reconnects after a lost connection.
pub async fn listen(url: String, applier: Arc<Applier>, poll: Duration) {
    loop {
        match follow(&url, &applier, poll).await {
            Ok(()) => {}
            Err(e) => {
                tracing::warn!(error = %e, "Lost the database connection that follows other instances; reconnecting.")
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn follow(url: &str, applier: &Applier, poll: Duration) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = tokio_postgres::connect(url, NoTls).await?;
    let (wake, mut woken) = mpsc::channel::<()>(1);
    tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(_))) => {
                    let _ = wake.try_send(());
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "Database connection failed.");
                    return;
                }
                None => return,
            }
        }
    });
    client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
    loop {
        {
            let mut cursor = applier.cursor.lock().await;
            applier.catch_up(&client, &mut cursor).await?;
        }
        tokio::select! {
            w = woken.recv() => if w.is_none() {
                return Ok(());
            },
            _ = tokio::time::sleep(poll) => {}
        }
    }
}
