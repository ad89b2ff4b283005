//! The live event bus behind `GET /events`.
//!
//! Every published event gets an id `"<epoch>-<seq>"`: `epoch` is this process's start time (ms)
//! and `seq` counts up from 1, so an id from before a restart is recognisably stale. The bus
//! keeps a window of the most recent events for clients that reconnect with `Last-Event-ID`,
//! and fans out through a bounded broadcast channel: publishing never waits for a subscriber,
//! and a subscriber that falls behind is told so (it gets `resync`), never silently skipped.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;
use uuid::Uuid;

/// One event on the bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusEvent {
    pub seq: u64,
    /// SSE event name: `heartbeat`, `scan`, `command`, `attention`, or an envelope kind.
    pub name: String,
    pub node_id: Option<Uuid>,
    /// The `data:` payload (JSON).
    pub data: Arc<str>,
}

/// Where a reconnecting client resumes.
#[derive(Debug)]
pub enum Resume {
    /// Everything published after the client's last id (possibly nothing).
    Replay(Vec<Arc<BusEvent>>),
    /// The gap cannot be filled (too old, or from another process): reload state.
    Resync { reason: &'static str },
}

#[derive(Debug)]
struct Window {
    next_seq: u64,
    recent: VecDeque<Arc<BusEvent>>,
}

/// The bus.
#[derive(Debug)]
pub struct Bus {
    epoch: u64,
    tx: broadcast::Sender<Arc<BusEvent>>,
    window: Mutex<Window>,
    window_len: usize,
}

impl Bus {
    /// `window_len` events are kept for resuming; each subscriber may fall `channel_len`
    /// events behind before it is told to resync.
    pub fn new(window_len: usize, channel_len: usize) -> Bus {
        let epoch = u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0);
        let (tx, _) = broadcast::channel(channel_len.max(1));
        Bus {
            epoch,
            tx,
            window: Mutex::new(Window {
                next_seq: 1,
                recent: VecDeque::new(),
            }),
            window_len: window_len.max(1),
        }
    }

    /// The SSE id of `seq`.
    pub fn id_of(&self, seq: u64) -> String {
        format!("{}-{seq}", self.epoch)
    }

    /// Publishes an event; never blocks on subscribers.
    pub fn publish(&self, name: &str, node_id: Option<Uuid>, data: String) {
        let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
        let event = Arc::new(BusEvent {
            seq: w.next_seq,
            name: name.to_string(),
            node_id,
            data: data.into(),
        });
        w.next_seq += 1;
        if w.recent.len() == self.window_len {
            w.recent.pop_front();
        }
        w.recent.push_back(Arc::clone(&event));
        // No receivers is fine; a full channel drops the oldest for laggards, who get resync.
        let _ = self.tx.send(event);
    }

    /// The id of the newest event so far (`"<epoch>-0"` before the first).
    pub fn last_id(&self) -> String {
        let w = self.window.lock().unwrap_or_else(|p| p.into_inner());
        self.id_of(w.next_seq - 1)
    }

    /// Subscribes, and works out what a client that last saw `last_id` missed. Done under the
    /// window lock so the replay and the live stream neither overlap nor leave a gap.
    pub fn subscribe(&self, last_id: Option<&str>) -> (broadcast::Receiver<Arc<BusEvent>>, Resume) {
        let w = self.window.lock().unwrap_or_else(|p| p.into_inner());
        let rx = self.tx.subscribe();
        let resume = match last_id {
            None => Resume::Replay(Vec::new()),
            Some(id) => match parse_id(id) {
                Some((epoch, seq)) if epoch == self.epoch && seq < w.next_seq => {
                    let oldest_kept = w.recent.front().map_or(w.next_seq, |e| e.seq);
                    if seq + 1 >= oldest_kept {
                        Resume::Replay(w.recent.iter().filter(|e| e.seq > seq).cloned().collect())
                    } else {
                        Resume::Resync { reason: "too-old" }
                    }
                }
                Some(_) => Resume::Resync {
                    reason: "restarted",
                },
                None => Resume::Resync {
                    reason: "bad-last-event-id",
                },
            },
        };
        (rx, resume)
    }
}

fn parse_id(id: &str) -> Option<(u64, u64)> {
    let (epoch, seq) = id.trim().split_once('-')?;
    Some((epoch.parse().ok()?, seq.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_replays_what_was_missed_or_asks_for_resync() {
        let bus = Bus::new(3, 16);
        for i in 0..5 {
            bus.publish("note", None, format!("{{\"n\":{i}}}"));
        }
        // Window holds seq 3, 4, 5.
        let (_, r) = bus.subscribe(Some(&bus.id_of(3)));
        let Resume::Replay(v) = r else {
            panic!("expected replay")
        };
        assert_eq!(v.iter().map(|e| e.seq).collect::<Vec<_>>(), [4, 5]);
        let (_, r) = bus.subscribe(Some(&bus.id_of(2)));
        assert!(
            matches!(r, Resume::Replay(ref v) if v.len() == 3),
            "seq 2 is just before the window: {r:?}"
        );
        let (_, r) = bus.subscribe(Some(&bus.id_of(1)));
        assert!(matches!(r, Resume::Resync { reason: "too-old" }));
        let (_, r) = bus.subscribe(Some("1-3"));
        assert!(matches!(
            r,
            Resume::Resync {
                reason: "restarted"
            }
        ));
        let (_, r) = bus.subscribe(Some("garbage"));
        assert!(matches!(
            r,
            Resume::Resync {
                reason: "bad-last-event-id"
            }
        ));
        let (_, r) = bus.subscribe(Some(&bus.id_of(5)));
        assert!(matches!(r, Resume::Replay(ref v) if v.is_empty()));
        assert_eq!(bus.last_id(), bus.id_of(5));
    }

    #[tokio::test]
    async fn a_lagging_subscriber_is_told_and_publishing_never_waits() {
        let bus = Bus::new(8, 4);
        let (mut rx, _) = bus.subscribe(None);
        for i in 0..100 {
            bus.publish("heartbeat", None, i.to_string());
        }
        assert!(matches!(
            rx.recv().await,
            Err(broadcast::error::RecvError::Lagged(96))
        ));
        assert_eq!(rx.recv().await.unwrap().seq, 97);
    }
}
