//! The persisted notification queue, `notify-queue.jsonl` in the log directory, and the
//! sender that drains it.
//!
//! Three kinds of lines, each appended and fsynced before anything relies on it:
//! `grouped` (an alert waiting in a route's group window), `queued` (a message to send, naming
//! the alerts it covers) and `done` (sent, or dropped after `max_age`). On start the file is
//! replayed: alerts not yet covered go back to their group, messages not yet done are sent.
//! The file is rewritten (atomically) with only what is still pending when it grows past
//! 1 MiB at start.
//!
//! Sending is per notifier, oldest first. A notifier that fails waits (1 s, 2 s, 4 s, … up to
//! `retry_max`) before its next try; the others are not held up. Nothing here runs on the
//! ingest path.

use std::collections::{BTreeMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{Alert, Message, Notifier};

pub const FILE: &str = "notify-queue.jsonl";

/// One line of the file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Record {
    Grouped {
        id: Uuid,
        route: String,
        alert: Alert,
    },
    Queued {
        id: Uuid,
        at: DateTime<Utc>,
        notifier: String,
        message: Message,
        #[serde(default)]
        covers: Vec<Uuid>,
    },
    Done {
        id: Uuid,
        at: DateTime<Utc>,
        sent: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
}

/// A message waiting to be sent.
#[derive(Debug, Clone)]
pub struct Pending {
    pub id: Uuid,
    pub at: DateTime<Utc>,
    pub notifier: String,
    pub message: Message,
}

/// How one notifier is doing (for `/metrics`, `/api/notifiers` and the console).
#[derive(Debug, Clone, Default, Serialize)]
pub struct NotifierHealth {
    pub kind: String,
    pub sent: u64,
    pub failed_attempts: u64,
    /// Failures since the last success.
    pub consecutive_failures: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failing_since: Option<DateTime<Utc>>,
    /// The last error, without secrets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_sent_at: Option<DateTime<Utc>>,
    pub pending: usize,
    #[serde(skip)]
    next_try: Option<DateTime<Utc>>,
}

#[derive(Debug, Default)]
struct State {
    pending: Vec<Pending>,
    health: BTreeMap<String, NotifierHealth>,
}

/// What replay found that the engine needs back.
#[derive(Debug, Default)]
pub struct Restored {
    /// Alerts still in a group window, by route.
    pub grouped: Vec<(Uuid, String, Alert)>,
}

/// The queue.
#[derive(Debug)]
pub struct Queue {
    path: PathBuf,
    file: Mutex<File>,
    state: Mutex<State>,
    wake: tokio::sync::Notify,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Queue {
    /// Opens (replaying) the queue in `dir`.
    pub fn open(dir: &Path) -> std::io::Result<(Queue, Restored)> {
        let path = dir.join(FILE);
        let mut grouped: Vec<(Uuid, String, Alert)> = Vec::new();
        let mut covered: HashSet<Uuid> = HashSet::new();
        let mut queued: Vec<Pending> = Vec::new();
        let mut done: HashSet<Uuid> = HashSet::new();
        if path.exists() {
            vaultmesh_store::replay::for_each_line(&path, |_, _, line| {
                match serde_json::from_slice::<Record>(line) {
                    Ok(Record::Grouped { id, route, alert }) => grouped.push((id, route, alert)),
                    Ok(Record::Queued {
                        id,
                        at,
                        notifier,
                        message,
                        covers,
                    }) => {
                        covered.extend(covers);
                        queued.push(Pending {
                            id,
                            at,
                            notifier,
                            message,
                        });
                    }
                    Ok(Record::Done { id, .. }) => {
                        done.insert(id);
                    }
                    // A torn last line (a crash mid-append) or garbage: skipped.
                    Err(e) => {
                        tracing::warn!(file = %path.display(), error = %e, "Skipped a bad notification queue line.")
                    }
                }
            })?;
        }
        grouped.retain(|(id, ..)| !covered.contains(id));
        queued.retain(|p| !done.contains(&p.id));
        let big = std::fs::metadata(&path).is_ok_and(|m| m.len() > 1 << 20);
        if big {
            compact(&path, &grouped, &queued)?;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)?;
        // A line torn by a crash would have the next record glued to it.
        vaultmesh_store::journal::cut_torn_tail(&mut file)?;
        let queue = Queue {
            path,
            file: Mutex::new(file),
            state: Mutex::new(State {
                pending: queued,
                health: BTreeMap::new(),
            }),
            wake: tokio::sync::Notify::new(),
        };
        Ok((queue, Restored { grouped }))
    }

    /// Appends `record` and fsyncs it.
    pub fn write(&self, record: &Record) -> std::io::Result<()> {
        self.write_all(std::slice::from_ref(record))
    }

    /// Appends `records` with one fsync. On a failed write the file is cut back, so no
    /// partial line is left for the next record to be glued to.
    pub fn write_all(&self, records: &[Record]) -> std::io::Result<()> {
        let mut buf = Vec::new();
        for r in records {
            serde_json::to_writer(&mut buf, r).map_err(std::io::Error::other)?;
            buf.push(b'\n');
        }
        let mut f = lock(&self.file);
        let len = f.metadata()?.len();
        let written = f.write_all(&buf).and_then(|()| f.sync_data());
        if written.is_err() {
            let _ = f.set_len(len);
        }
        written
    }

    /// Queues `message` for `notifier` (durably when the disk takes it, else from memory only);
    /// `covers` are the grouped alerts it sends.
    pub fn push(&self, notifier: &str, message: Message, covers: Vec<Uuid>) -> Uuid {
        let id = Uuid::now_v7();
        let at = Utc::now();
        if let Err(e) = self.write(&Record::Queued {
            id,
            at,
            notifier: notifier.to_string(),
            message: message.clone(),
            covers,
        }) {
            // A full disk is exactly when an admin must hear from us: send it anyway, from
            // memory (a restart before it goes out would lose it).
            tracing::warn!(notifier, error = %e, "Cannot write the notification queue; the message is sent from memory.");
        }
        lock(&self.state).pending.push(Pending {
            id,
            at,
            notifier: notifier.to_string(),
            message,
        });
        self.wake.notify_waiters();
        id
    }

    /// Messages not yet sent.
    pub fn pending(&self) -> usize {
        lock(&self.state).pending.len()
    }

    /// Each configured notifier's health (with its pending count).
    pub fn health(&self) -> BTreeMap<String, NotifierHealth> {
        let st = lock(&self.state);
        let mut h = st.health.clone();
        for p in &st.pending {
            if let Some(n) = h.get_mut(&p.notifier) {
                n.pending += 1;
            }
        }
        h
    }

    /// The file's path (for messages).
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn compact(
    path: &Path,
    grouped: &[(Uuid, String, Alert)],
    queued: &[Pending],
) -> std::io::Result<()> {
    let tmp = path.with_extension("jsonl.tmp");
    let mut out = std::io::BufWriter::new(File::create(&tmp)?);
    for (id, route, alert) in grouped {
        let r = Record::Grouped {
            id: *id,
            route: route.clone(),
            alert: alert.clone(),
        };
        serde_json::to_writer(&mut out, &r).map_err(std::io::Error::other)?;
        out.write_all(b"\n")?;
    }
    for p in queued {
        let r = Record::Queued {
            id: p.id,
            at: p.at,
            notifier: p.notifier.clone(),
            message: p.message.clone(),
            covers: Vec::new(),
        };
        serde_json::to_writer(&mut out, &r).map_err(std::io::Error::other)?;
        out.write_all(b"\n")?;
    }
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        vaultmesh_store::logdir::sync_dir(dir)?;
    }
    Ok(())
}

/// How long a message may wait before it is dropped, and the longest pause between tries.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub max_age: Duration,
    pub retry_max: Duration,
}

/// Starts one sender per notifier, so a slow or failing one never holds up the others.
pub fn spawn_senders(
    queue: &Arc<Queue>,
    notifiers: &BTreeMap<String, Arc<dyn Notifier>>,
    policy: RetryPolicy,
    metrics: Option<Arc<dyn crate::Observer>>,
    cancel: &CancellationToken,
) {
    {
        let mut st = lock(&queue.state);
        for (name, n) in notifiers {
            st.health.entry(name.clone()).or_default().kind = n.kind().to_string();
        }
        // Messages for a notifier no longer configured are dropped (counted, logged).
        let orphans: Vec<Pending> = st
            .pending
            .iter()
            .filter(|p| !notifiers.contains_key(&p.notifier))
            .cloned()
            .collect();
        drop(st);
        for p in orphans {
            let reason = format!("notifier {:?} is no longer configured", p.notifier);
            tracing::error!(notifier = %p.notifier, %reason, "A notification was dropped.");
            finish(queue, &p, false, Some(reason));
        }
    }
    for (name, notifier) in notifiers {
        tokio::spawn(send_loop(
            Arc::clone(queue),
            name.clone(),
            Arc::clone(notifier),
            policy,
            metrics.clone(),
            cancel.clone(),
        ));
    }
}

/// Sends `name`'s messages, oldest first, until `cancel`.
async fn send_loop(
    queue: Arc<Queue>,
    name: String,
    notifier: Arc<dyn Notifier>,
    policy: RetryPolicy,
    metrics: Option<Arc<dyn crate::Observer>>,
    cancel: CancellationToken,
) {
    let count = |outcome: &str| {
        if let Some(m) = &metrics {
            m.notification(&name, outcome);
        }
    };
    loop {
        // Registered before looking, so a push in between is not missed.
        let woken = queue.wake.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let now = Utc::now();
        let next = {
            let st = lock(&queue.state);
            let waiting = st
                .health
                .get(&name)
                .and_then(|h| h.next_try)
                .is_some_and(|t| t > now);
            if waiting {
                None
            } else {
                st.pending.iter().find(|p| p.notifier == name).cloned()
            }
        };
        if let Some(p) = next {
            if (now - p.at).to_std().is_ok_and(|age| age > policy.max_age) {
                let reason = format!("not sent within {}s", policy.max_age.as_secs());
                tracing::error!(notifier = %name, route = %p.message.route, %reason, "A notification was dropped.");
                finish(&queue, &p, false, Some(reason));
                count("dropped");
            } else {
                match notifier.send(&p.message).await {
                    Ok(()) => {
                        finish(&queue, &p, true, None);
                        count("sent");
                        tracing::info!(notifier = %name, route = %p.message.route, alerts = p.message.alerts.len(), "Notification sent.");
                    }
                    Err(e) => {
                        tracing::warn!(notifier = %name, route = %p.message.route, error = %e, "A notification could not be sent; will retry.");
                        record_failure(&queue, &name, &e.0, policy);
                        count("failed");
                    }
                }
            }
            if let Some(m) = &metrics {
                let failing = lock(&queue.state)
                    .health
                    .get(&name)
                    .is_some_and(|h| h.consecutive_failures > 0);
                m.notifier_state(queue.pending(), &name, failing);
            }
            continue; // drain what is due without pausing
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = &mut woken => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

fn record_failure(queue: &Queue, notifier: &str, error: &str, policy: RetryPolicy) {
    let now = Utc::now();
    let mut st = lock(&queue.state);
    let h = st.health.entry(notifier.to_string()).or_default();
    h.failed_attempts += 1;
    h.consecutive_failures = h.consecutive_failures.saturating_add(1);
    h.failing_since.get_or_insert(now);
    h.last_error = Some(error.to_string());
    let wait = Duration::from_secs(1 << h.consecutive_failures.min(20).saturating_sub(1))
        .min(policy.retry_max);
    h.next_try = Some(now + chrono::TimeDelta::from_std(wait).unwrap_or_default());
}

fn finish(queue: &Queue, p: &Pending, sent: bool, reason: Option<String>) {
    let record = Record::Done {
        id: p.id,
        at: Utc::now(),
        sent,
        reason,
    };
    if let Err(e) = queue.write(&record) {
        // Not fatal: at worst the message is sent again after a restart.
        tracing::error!(file = %queue.path.display(), error = %e, "Cannot record a sent notification.");
    }
    let mut st = lock(&queue.state);
    st.pending.retain(|q| q.id != p.id);
    if sent {
        let h = st.health.entry(p.notifier.clone()).or_default();
        h.sent += 1;
        h.consecutive_failures = 0;
        h.failing_since = None;
        h.next_try = None;
        h.last_sent_at = Some(Utc::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_torn_last_line_is_cut_so_the_next_record_is_not_lost() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let done = Record::Done {
            id: Uuid::from_u128(1),
            at: Utc::now(),
            sent: true,
            reason: None,
        };
        let mut text = serde_json::to_string(&done).unwrap_or_default();
        text.push('\n');
        text.push_str("{\"op\":\"queued\",\"id\":"); // torn by a crash
        std::fs::write(dir.path().join(FILE), text).unwrap_or_default();
        let (q, _) = Queue::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let message = Message {
            id: Uuid::from_u128(2),
            route: "r".into(),
            alerts: Vec::new(),
            created_at: Utc::now(),
            test: false,
        };
        q.push("n", message, Vec::new());
        drop(q);
        let (q, _) = Queue::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(q.pending(), 1, "the record after the torn line was lost");
    }
}
