//! The live event bus behind `GET /events`.
//!
//! Every published event gets an id `"<epoch>-<seq>"`: `epoch` is this process's start time (ms)
//! and `seq` counts up from 1, so an id from before a restart is recognisably stale. The bus
//! keeps a window of the most recent events for clients that reconnect with `Last-Event-ID`,
//! and fans out through a bounded broadcast channel: publishing never waits for a subscriber,
//! and a subscriber that falls behind is told so (it gets `resync`), never silently skipped.
//!
//! Events are typed ([`Event`]): the engines that subscribe match on them. The stream's text
//! is made only for the stream, once per event, the first time a client needs it
//! ([`BusEvent::message`]: the whole SSE message, `event:`, `id:` and `data:` lines), and every
//! client (and every resume from the window) sends those same bytes.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::broadcast;
use uuid::Uuid;
use vaultmesh_proto::event::Body;
use vaultmesh_proto::live::{CommandEvent, ScanEvent};
use vaultmesh_proto::{EventEnvelope, NodeSummary};

/// What happened, typed. Its name and `data:` on the stream are in `docs/API.md`.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A heartbeat was stored: the node's summary as of it. It is sent without `attention`
    /// (judged right after the heartbeat: it arrives as an `attention` event when it changes).
    Heartbeat(Box<NodeSummary>),
    /// A scan report was stored.
    Scan(ScanEvent),
    /// A command was issued, delivered or completed.
    Command(CommandEvent),
    /// An event envelope was stored (an operator's, or the Command Center's own), or — for the
    /// Command Center's own attention when its log cannot take it — only published.
    Envelope(Box<Stored>),
}

/// An envelope and its body, read once (the envelope keeps the JSON that is sent).
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    pub envelope: EventEnvelope,
    pub body: Body,
}

impl Stored {
    pub fn new(envelope: EventEnvelope) -> Stored {
        Stored {
            body: Body::read(&envelope.kind, &envelope.body),
            envelope,
        }
    }
}

impl Event {
    /// The SSE event name: `heartbeat`, `scan`, `command`, or the envelope's kind.
    pub fn name(&self) -> &str {
        match self {
            Event::Heartbeat(_) => "heartbeat",
            Event::Scan(_) => "scan",
            Event::Command(_) => "command",
            Event::Envelope(s) => &s.envelope.kind,
        }
    }

    /// The node it concerns (none for a fleet-wide envelope).
    pub fn node_id(&self) -> Option<Uuid> {
        match self {
            Event::Heartbeat(s) => Some(s.node_id),
            Event::Scan(s) => Some(s.node_id),
            Event::Command(c) => Some(c.node_id()),
            Event::Envelope(s) => s.envelope.node_id,
        }
    }

    /// The `data:` payload: one line of JSON.
    fn to_json(&self) -> String {
        let json = match self {
            Event::Heartbeat(s) => return s.heartbeat_event_json(),
            Event::Scan(s) => serde_json::to_string(s),
            Event::Command(c) => serde_json::to_string(c),
            Event::Envelope(s) => serde_json::to_string(&s.envelope),
        };
        // Plain data (string keys, finite numbers) always serializes.
        json.unwrap_or_default()
    }
}

/// One event on the bus.
#[derive(Debug)]
pub struct BusEvent {
    pub seq: u64,
    pub event: Event,
    /// The publishing bus's epoch (for the SSE id).
    epoch: u64,
    /// The SSE message, made on first use, and where its `data:` is in it.
    message: OnceLock<(Arc<str>, Range<usize>)>,
}

impl BusEvent {
    /// The SSE event name.
    pub fn name(&self) -> &str {
        self.event.name()
    }

    pub fn node_id(&self) -> Option<Uuid> {
        self.event.node_id()
    }

    /// The whole SSE message — `event: <name>\nid: <epoch>-<seq>\ndata: <JSON>\n\n` — made
    /// the first time any subscriber asks and shared by all of them after that.
    pub fn message(&self) -> &Arc<str> {
        &self.wire().0
    }

    /// The `data:` payload (one line of JSON), within [`BusEvent::message`].
    pub fn data(&self) -> &str {
        let (message, data) = self.wire();
        &message[data.clone()]
    }

    fn wire(&self) -> &(Arc<str>, Range<usize>) {
        self.message.get_or_init(|| {
            // One line each: event names are the kinds the code declares, and compact JSON
            // escapes every line break.
            let data = self.event.to_json();
            let head = format!(
                "event: {}\nid: {}\ndata: ",
                self.name(),
                id(self.epoch, self.seq)
            );
            let range = head.len()..head.len() + data.len();
            ((head + &data + "\n\n").into(), range)
        })
    }
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
        id(self.epoch, seq)
    }

    /// Publishes an event; never blocks on subscribers, and serializes nothing.
    pub fn publish(&self, event: Event) {
        let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
        let event = Arc::new(BusEvent {
            seq: w.next_seq,
            event,
            epoch: self.epoch,
            message: OnceLock::new(),
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
        (self.tx.subscribe(), self.resume_in(&w, last_id))
    }

    /// What a client that last saw `last_id` missed, and the sequence number of the newest
    /// event published so far (0 before the first): the replay holds every event up to it, and
    /// a client following the bus some other way (the SSE frames) goes on from the next one.
    pub fn resume(&self, last_id: Option<&str>) -> (Resume, u64) {
        let w = self.window.lock().unwrap_or_else(|p| p.into_inner());
        (self.resume_in(&w, last_id), w.next_seq - 1)
    }

    fn resume_in(&self, w: &Window, last_id: Option<&str>) -> Resume {
        match last_id {
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
        }
    }
}

fn id(epoch: u64, seq: u64) -> String {
    format!("{epoch}-{seq}")
}

fn parse_id(id: &str) -> Option<(u64, u64)> {
    let (epoch, seq) = id.trim().split_once('-')?;
    Some((epoch.parse().ok()?, seq.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `note` envelope saying `n`.
    fn note(n: u64) -> Event {
        let envelope = EventEnvelope {
            id: Uuid::now_v7(),
            kind: "note".into(),
            ts: chrono::Utc::now(),
            node_id: None,
            author: "test".into(),
            body: serde_json::json!({ "n": n }),
            refs: Vec::new(),
            hash: String::new(),
        }
        .sealed();
        Event::Envelope(Box::new(Stored::new(envelope)))
    }

    #[test]
    fn resume_replays_what_was_missed_or_asks_for_resync() {
        let bus = Bus::new(3, 16);
        for i in 0..5 {
            bus.publish(note(i));
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
        // Without subscribing: the same answer, and the newest seq the replay runs to.
        let (r, newest) = bus.resume(Some(&bus.id_of(3)));
        assert_eq!(newest, 5);
        assert!(matches!(r, Resume::Replay(ref v) if v.iter().map(|e| e.seq).eq([4, 5])));
        assert_eq!(Bus::new(3, 16).resume(None).1, 0, "nothing published yet");
    }

    #[tokio::test]
    async fn a_lagging_subscriber_is_told_and_publishing_never_waits() {
        let bus = Bus::new(8, 4);
        let (mut rx, _) = bus.subscribe(None);
        for i in 0..100 {
            bus.publish(note(i));
        }
        assert!(matches!(
            rx.recv().await,
            Err(broadcast::error::RecvError::Lagged(96))
        ));
        assert_eq!(rx.recv().await.unwrap().seq, 97);
    }

    /// Issue 22: an event is serialized once, when a subscriber first needs it, and every
    /// subscriber — live or resuming from the window — gets those same bytes.
    #[tokio::test]
    async fn one_event_is_serialized_once_for_every_subscriber() {
        let bus = Bus::new(8, 8);
        let (mut a, _) = bus.subscribe(None);
        let (mut b, _) = bus.subscribe(None);
        let first = bus.last_id();
        bus.publish(note(7));
        let (ea, eb) = (a.recv().await.unwrap(), b.recv().await.unwrap());
        assert!(Arc::ptr_eq(&ea, &eb), "one event, shared");
        assert!(ea.message.get().is_none(), "publishing serializes nothing");
        let (ma, mb) = (Arc::clone(ea.message()), Arc::clone(eb.message()));
        assert!(
            Arc::ptr_eq(&ma, &mb),
            "both subscribers send the same bytes"
        );
        let Resume::Replay(missed) = bus.subscribe(Some(&first)).1 else {
            panic!("expected a replay")
        };
        assert!(
            Arc::ptr_eq(missed[0].message(), &ma),
            "so does a resuming one"
        );
        let Event::Envelope(s) = &ea.event else {
            panic!("a note is an envelope")
        };
        let json = serde_json::to_string(&s.envelope).unwrap();
        assert_eq!(ea.data(), json);
        assert_eq!(
            *ma,
            format!("event: note\nid: {}\ndata: {json}\n\n", bus.id_of(ea.seq)),
            "a whole SSE message, the bytes the stream always sent"
        );
        assert_eq!((ea.name(), ea.node_id()), ("note", None));
    }
}
