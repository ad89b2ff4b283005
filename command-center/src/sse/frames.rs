//! The frames every event stream writes, each made once.
//!
//! One task, the hub, follows the bus and turns each burst of events into a [`Frame`]: their
//! SSE messages one after the other in one buffer. The frames go into a log that keeps the
//! last `--sse-buffer` events. A stream holds a cursor (the last event it sent) and, when the
//! log moves on, writes what follows its cursor: whole frames, which it shares with every other
//! stream without a copy, or, when its filter leaves some of a frame's events out, the runs of
//! events it keeps, as slices of the same buffer. So a stream costs one wake-up and one write
//! per burst however many events the burst holds, and the bytes are those of the events sent
//! one by one. A stream whose cursor fell out of the log (a client that stopped reading), or
//! that meets a gap (the hub fell behind the bus), gets a `resync` saying how many events it
//! missed, and goes on from the oldest event it can still have.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::body::Bytes;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;
use vaultmesh_store::bus::{Bus, BusEvent};

/// Most bytes of messages one frame gathers (a frame holds at least one event, however big).
pub const GATHER_BYTES: usize = 64 << 10;

/// How long the hub lets a burst gather after a frame that held more than one event. A quiet
/// bus gets each event framed at once, so a note reaches every console without waiting.
pub const BURST_WINDOW: Duration = Duration::from_millis(5);

/// Consecutive bus events as one buffer of SSE messages.
#[derive(Debug)]
pub struct Frame {
    /// Every event's message, one after the other.
    bytes: Bytes,
    /// The events, in bus order without a gap, each with where its message starts in `bytes`.
    events: Vec<(usize, Arc<BusEvent>)>,
    /// The distinct event names in the frame (usually one), for filters on kinds.
    names: Vec<String>,
}

impl Frame {
    /// `events` must be consecutive (`seq` one after the other) and not empty.
    pub fn new(events: Vec<Arc<BusEvent>>) -> Frame {
        debug_assert!(!events.is_empty());
        debug_assert!(events.windows(2).all(|w| w[1].seq == w[0].seq + 1));
        let len = events.iter().map(|e| e.message().len()).sum();
        let mut bytes = Vec::with_capacity(len);
        let mut names: Vec<String> = Vec::new();
        let events = events
            .into_iter()
            .map(|e| {
                let start = bytes.len();
                bytes.extend_from_slice(e.message().as_bytes());
                if !names.iter().any(|n| n == e.name()) {
                    names.push(e.name().to_string());
                }
                (start, e)
            })
            .collect();
        Frame {
            bytes: bytes.into(),
            events,
            names,
        }
    }

    /// The sequence number of the first event.
    pub fn first(&self) -> u64 {
        self.events[0].1.seq
    }

    /// The sequence number of the last event.
    pub fn last(&self) -> u64 {
        self.events[self.events.len() - 1].1.seq
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    pub fn events(&self) -> impl Iterator<Item = &BusEvent> {
        self.events.iter().map(|(_, e)| e.as_ref())
    }

    /// The messages of events `from..to` (indexes into the frame): a slice of the shared
    /// buffer, no copy.
    pub fn slice(&self, from: usize, to: usize) -> Bytes {
        let start = |i: usize| self.events.get(i).map_or(self.bytes.len(), |(s, _)| *s);
        self.bytes.slice(start(from)..start(to))
    }
}

/// The frames of the last `keep` events, and a signal that moves with each new frame.
#[derive(Debug)]
pub struct Frames {
    log: RwLock<Log>,
    keep: usize,
    newest: watch::Sender<u64>,
    /// Set at shutdown: every stream ends.
    closed: AtomicBool,
}

#[derive(Debug, Default)]
struct Log {
    /// Each frame with the sequence number of its last event (kept here, not behind the
    /// pointer, for the search of [`Frames::after`]).
    frames: VecDeque<(u64, Arc<Frame>)>,
    /// Events in `frames`.
    events: usize,
}

impl Frames {
    /// A log of the last `keep` events' frames, with nothing in it yet.
    pub fn new(keep: usize) -> Arc<Frames> {
        Arc::new(Frames {
            log: RwLock::new(Log::default()),
            keep: keep.max(1),
            newest: watch::Sender::new(0),
            closed: AtomicBool::new(false),
        })
    }

    /// [`Frames::new`], and the hub that fills it from `bus` until `shutdown`, when it closes
    /// it. It subscribes before returning, so it frames every event published after this call.
    pub fn start(bus: &Bus, keep: usize, shutdown: CancellationToken) -> Arc<Frames> {
        let frames = Frames::new(keep);
        let (rx, _) = bus.subscribe(None);
        tokio::spawn(hub(Arc::clone(&frames), rx, shutdown));
        frames
    }

    /// Adds a frame (its events after every frame's in the log) and lets the oldest go while
    /// the rest still hold `keep` events.
    pub fn push(&self, frame: Frame) {
        let last = frame.last();
        {
            let mut log = self.log.write().unwrap_or_else(|p| p.into_inner());
            log.events += frame.events.len();
            log.frames.push_back((last, Arc::new(frame)));
            while let Some((_, front)) = log.frames.front() {
                let len = front.events.len();
                if log.events - len < self.keep {
                    break;
                }
                log.events -= len;
                log.frames.pop_front();
            }
        }
        self.newest.send_replace(last);
    }

    /// The oldest frame holding events after `cursor`.
    fn after(&self, cursor: u64) -> Option<Arc<Frame>> {
        let log = self.log.read().unwrap_or_else(|p| p.into_inner());
        let at = log.frames.partition_point(|(last, _)| *last <= cursor);
        log.frames.get(at).map(|(_, f)| Arc::clone(f))
    }

    /// Ends every stream following the log (at their next wake-up, which this gives them).
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.newest.send_modify(|_| {});
    }
}

/// Frames events from `rx` into `frames`: whatever is waiting when an event arrives, up to
/// [`GATHER_BYTES`]; after a frame of several events that was not cut at that limit,
/// [`BURST_WINDOW`] first. When the hub itself falls behind the bus, the frames skip what it
/// missed, and each stream tells its client with a `resync`.
async fn hub(
    frames: Arc<Frames>,
    mut rx: broadcast::Receiver<Arc<BusEvent>>,
    shutdown: CancellationToken,
) {
    /// Closes the log however the hub ends (shutdown, or a panic), so no stream waits for
    /// frames that will not come and shutdown is never held up by one.
    struct CloseOnExit(Arc<Frames>);
    impl Drop for CloseOnExit {
        fn drop(&mut self) {
            self.0.close();
        }
    }
    let frames = CloseOnExit(frames);
    let mut busy = false;
    loop {
        let first = tokio::select! {
            () = shutdown.cancelled() => return,
            got = rx.recv() => match got {
                Ok(e) => e,
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return,
            },
        };
        if busy {
            tokio::time::sleep(BURST_WINDOW).await;
        }
        let mut len = first.message().len();
        let mut events = vec![first];
        while len < GATHER_BYTES {
            match rx.try_recv() {
                Ok(e) => {
                    len += e.message().len();
                    events.push(e);
                }
                // A gap ends the frame: the next one starts after it.
                Err(TryRecvError::Lagged(_) | TryRecvError::Empty | TryRecvError::Closed) => {
                    break;
                }
            }
        }
        // A frame cut at the byte limit leaves events waiting: no pause before the next.
        busy = events.len() > 1 && len < GATHER_BYTES;
        frames.0.push(Frame::new(events));
    }
}

/// What one stream does with the frames: which events it wants, and its `resync` for `missed`
/// events, the last of them `id_before` (the stream goes on from the event after it).
pub trait Reader {
    /// Whether the stream writes every event of `frame` (no filter, or one the frame's events
    /// all pass), so it can write the frame whole.
    fn wants_all(&self, frame: &Frame) -> bool;
    fn wants(&self, event: &BusEvent) -> bool;
    fn resync(&self, id_before: u64, missed: u64) -> Bytes;
}

/// One stream's place in the frames.
#[derive(Debug)]
pub struct Follower {
    frames: Arc<Frames>,
    changed: watch::Receiver<u64>,
    /// The last event sent (or skipped by the filter).
    cursor: u64,
    /// What the last frame gave this stream to write: the frame whole, or the runs of events
    /// its filter keeps, after a `resync` if there was a gap. One frame at a time, so a client
    /// that stops reading holds no more than one frame, and the log alone says how far behind
    /// it is.
    ready: VecDeque<Bytes>,
}

impl Follower {
    /// A stream that has sent every event up to `cursor`.
    pub fn new(frames: Arc<Frames>, cursor: u64) -> Follower {
        Follower {
            changed: frames.newest.subscribe(),
            frames,
            cursor,
            ready: VecDeque::new(),
        }
    }

    /// The next bytes to write: what the log holds after the cursor, or, when it holds
    /// nothing new, the first thing that comes; `None` once the log is closed. Cancel-safe.
    pub async fn next(&mut self, reader: &impl Reader) -> Option<Bytes> {
        loop {
            if self.frames.closed.load(Ordering::Acquire) {
                return None;
            }
            if let Some(b) = self.ready.pop_front() {
                return Some(b);
            }
            self.collect(reader);
            // The sender lives as long as the log, which this follower holds; were it gone,
            // nothing would come any more.
            if self.ready.is_empty() && self.changed.changed().await.is_err() {
                return None;
            }
        }
    }

    /// Moves what the oldest frame after the cursor gives this stream into `ready`, passing
    /// over frames that give it nothing.
    fn collect(&mut self, reader: &impl Reader) {
        self.changed.borrow_and_update();
        while self.ready.is_empty() {
            let Some(frame) = self.frames.after(self.cursor) else {
                return;
            };
            if frame.first() > self.cursor + 1 {
                let missed = frame.first() - self.cursor - 1;
                self.ready
                    .push_back(reader.resync(frame.first() - 1, missed));
                self.cursor = frame.first() - 1;
            }
            // Events of this frame the stream has already sent are skipped.
            let from = usize::try_from(self.cursor + 1 - frame.first()).unwrap_or(usize::MAX);
            let n = frame.events.len();
            if from < n {
                if reader.wants_all(&frame) {
                    self.ready.push_back(frame.slice(from, n));
                } else {
                    let mut run: Option<usize> = None;
                    for (i, e) in frame.events().enumerate().skip(from) {
                        match (reader.wants(e), run) {
                            (true, None) => run = Some(i),
                            (false, Some(start)) => {
                                self.ready.push_back(frame.slice(start, i));
                                run = None;
                            }
                            _ => {}
                        }
                    }
                    if let Some(start) = run {
                        self.ready.push_back(frame.slice(start, n));
                    }
                }
            }
            self.cursor = frame.last();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vaultmesh_store::bus::{Event, Resume, Stored};

    fn note(n: u64, kind: &str) -> Event {
        note_saying(serde_json::json!({ "n": n }), kind)
    }

    fn note_saying(body: serde_json::Value, kind: &str) -> Event {
        let envelope = vaultmesh_proto::EventEnvelope {
            id: uuid::Uuid::now_v7(),
            kind: kind.into(),
            ts: chrono::Utc::now(),
            node_id: None,
            author: "test".into(),
            body,
            refs: Vec::new(),
            hash: String::new(),
        }
        .sealed();
        Event::Envelope(Box::new(Stored::new(envelope)))
    }

    /// Every event of the bus window after `after`.
    fn published(bus: &Bus, after: u64) -> Vec<Arc<BusEvent>> {
        let Resume::Replay(events) = bus.resume(Some(&bus.id_of(after))).0 else {
            panic!("the window holds them");
        };
        events
    }

    /// A bus with `n` notes published, and their events.
    fn notes(n: u64) -> (Bus, Vec<Arc<BusEvent>>) {
        let bus = Bus::new(64, 64);
        for i in 1..=n {
            bus.publish(note(i, "note"));
        }
        let events = published(&bus, 0);
        (bus, events)
    }

    /// Wants the kinds it lists; resyncs as `resync <id> <missed>;`.
    struct Kinds(&'static [&'static str]);

    impl Reader for Kinds {
        fn wants_all(&self, frame: &Frame) -> bool {
            frame.names().iter().all(|n| self.0.contains(&n.as_str()))
        }
        fn wants(&self, event: &BusEvent) -> bool {
            self.0.contains(&event.name())
        }
        fn resync(&self, id_before: u64, missed: u64) -> Bytes {
            format!("resync {id_before} {missed};").into()
        }
    }

    fn messages(events: &[Arc<BusEvent>]) -> String {
        events.iter().map(|e| e.message().to_string()).collect()
    }

    /// A burst is one frame, and two streams that want all of it write the same buffer (the
    /// same bytes in memory, not a copy each), byte for byte the events' messages one after
    /// the other; a stream that has sent part of it writes the rest, still without a copy.
    #[tokio::test]
    async fn a_burst_is_one_buffer_every_stream_shares() {
        let bus = Bus::new(64, 64);
        for n in 0..5 {
            bus.publish(note(n, "note"));
        }
        let frames = Frames::new(64);
        frames.push(Frame::new(published(&bus, 0)));
        let all = Kinds(&["note"]);
        let (mut a, mut b) = (
            Follower::new(Arc::clone(&frames), 0),
            Follower::new(Arc::clone(&frames), 0),
        );
        let (x, y) = (a.next(&all).await.unwrap(), b.next(&all).await.unwrap());
        assert_eq!(
            std::str::from_utf8(&x).unwrap(),
            messages(&published(&bus, 0))
        );
        assert_eq!(x.as_ptr(), y.as_ptr(), "one buffer, shared");
        let mut c = Follower::new(Arc::clone(&frames), 3);
        let rest = c.next(&all).await.unwrap();
        assert_eq!(
            std::str::from_utf8(&rest).unwrap(),
            messages(&published(&bus, 3))
        );
        assert_eq!(
            rest.as_ptr(),
            x[x.len() - rest.len()..].as_ptr(),
            "a slice of it"
        );
    }

    /// A filter that leaves some of a frame's events out writes the runs of events it keeps,
    /// each a slice of the shared buffer.
    #[tokio::test]
    async fn a_filter_writes_the_runs_it_keeps_as_slices() {
        let bus = Bus::new(64, 64);
        for kind in ["note", "note", "incident", "note"] {
            bus.publish(note(0, kind));
        }
        let events = published(&bus, 0);
        let frames = Frames::new(64);
        frames.push(Frame::new(events.clone()));
        let notes = Kinds(&["note"]);
        let mut f = Follower::new(Arc::clone(&frames), 0);
        let first = f.next(&notes).await.unwrap();
        let second = f.next(&notes).await.unwrap();
        assert_eq!(std::str::from_utf8(&first).unwrap(), messages(&events[..2]));
        assert_eq!(
            std::str::from_utf8(&second).unwrap(),
            messages(&events[3..])
        );
        let whole = Follower::new(Arc::clone(&frames), 0)
            .next(&Kinds(&["note", "incident"]))
            .await
            .unwrap();
        assert_eq!(first.as_ptr(), whole.as_ptr());
        assert_eq!(
            second.as_ptr(),
            whole[whole.len() - second.len()..].as_ptr()
        );
        assert!(
            f.ready.is_empty() && f.cursor == 4,
            "the incident was passed over"
        );
    }

    /// The log keeps the last `keep` events: a stream whose cursor fell out of it is told how
    /// many events it missed, with the id of the last of them, and goes on from the oldest
    /// event kept; a gap in the frames (the hub fell behind the bus) is told the same way.
    #[tokio::test]
    async fn a_stream_that_fell_out_of_the_log_or_meets_a_gap_gets_a_resync() {
        let (_bus, events) = notes(12);
        let frames = Frames::new(4);
        for e in &events[..10] {
            frames.push(Frame::new(vec![Arc::clone(e)]));
        }
        assert_eq!(frames.log.read().unwrap().events, 4, "events 7 to 10");
        let all = Kinds(&["note"]);
        let mut f = Follower::new(Arc::clone(&frames), 2);
        assert_eq!(f.next(&all).await.unwrap(), "resync 6 4;");
        for seq in 7..=10 {
            assert_eq!(
                f.next(&all).await.unwrap(),
                events[seq - 1].message().as_bytes()
            );
        }
        // The hub missed event 11.
        frames.push(Frame::new(vec![Arc::clone(&events[11])]));
        assert_eq!(f.next(&all).await.unwrap(), "resync 11 1;");
        assert_eq!(f.next(&all).await.unwrap(), events[11].message().as_bytes());
    }

    /// The hub frames the events waiting when it wakes as one, and a stream waiting for the
    /// log wakes with it; a quiet bus gets each event framed alone; at shutdown the streams end.
    #[tokio::test]
    async fn the_hub_frames_what_is_waiting_and_wakes_the_streams() {
        let bus = Bus::new(64, 64);
        let shutdown = CancellationToken::new();
        let frames = Frames::start(&bus, 64, shutdown.clone());
        let all = Kinds(&["note"]);
        let mut f = Follower::new(Arc::clone(&frames), 0);
        let waiting = tokio::spawn(async move {
            let got = f.next(&all).await.unwrap();
            (f, got)
        });
        for n in 1..=3 {
            bus.publish(note(n, "note"));
        }
        let (mut f, got) = tokio::time::timeout(Duration::from_secs(10), waiting)
            .await
            .expect("woken")
            .unwrap();
        assert_eq!(
            std::str::from_utf8(&got).unwrap(),
            messages(&published(&bus, 0))
        );
        assert_eq!(frames.log.read().unwrap().frames.len(), 1, "one frame");
        bus.publish(note(4, "note"));
        let next = tokio::time::timeout(Duration::from_secs(10), f.next(&Kinds(&["note"])))
            .await
            .expect("framed");
        assert_eq!(next.unwrap(), published(&bus, 3)[0].message().as_bytes());
        assert_eq!(frames.log.read().unwrap().frames.len(), 2, "event 4 alone");
        // Shutdown: the hub closes the log, and a waiting stream ends.
        let waiting = tokio::spawn(async move { f.next(&Kinds(&["note"])).await });
        tokio::task::yield_now().await;
        shutdown.cancel();
        let ended = tokio::time::timeout(Duration::from_secs(10), waiting)
            .await
            .expect("woken")
            .unwrap();
        assert!(ended.is_none(), "the stream ends");
    }

    /// Frames of several events: the log lets a whole frame go only while the rest still hold
    /// `keep` events; a stream behind them gets its resync and then the oldest frame whole,
    /// and a stream whose cursor is inside a frame gets the rest of it. A stream takes one
    /// frame at a time, so one that stops reading holds no more than that frame.
    #[tokio::test]
    async fn frames_of_several_events_leave_the_log_whole_and_are_taken_one_at_a_time() {
        let (_bus, events) = notes(9);
        let frames = Frames::new(4);
        for three in events.chunks(3) {
            frames.push(Frame::new(three.to_vec()));
        }
        {
            let log = frames.log.read().unwrap();
            assert_eq!(
                (log.frames.len(), log.events),
                (2, 6),
                "events 4 to 9 in two frames"
            );
        }
        let all = Kinds(&["note"]);
        let mut behind = Follower::new(Arc::clone(&frames), 1);
        assert_eq!(behind.next(&all).await.unwrap(), "resync 3 2;");
        assert_eq!(
            behind.ready.len(),
            1,
            "the frame after the gap, not the one after it"
        );
        let got = behind.next(&all).await.unwrap();
        assert_eq!(std::str::from_utf8(&got).unwrap(), messages(&events[3..6]));
        assert!(behind.ready.is_empty());
        let mut inside = Follower::new(Arc::clone(&frames), 5);
        let got = inside.next(&all).await.unwrap();
        assert_eq!(std::str::from_utf8(&got).unwrap(), messages(&events[5..6]));
        let got = inside.next(&all).await.unwrap();
        assert_eq!(std::str::from_utf8(&got).unwrap(), messages(&events[6..]));
    }

    /// A frame cut at the byte limit leaves events waiting: the hub frames them at once, not
    /// after the burst's pause (which would hold every stream to 64 KiB per 5 ms and let the
    /// hub fall behind the bus).
    #[tokio::test(start_paused = true)]
    async fn a_frame_cut_at_the_byte_limit_is_followed_at_once() {
        let bus = Bus::new(64, 64);
        let frames = Frames::start(&bus, 64, CancellationToken::new());
        let text = "x".repeat(8 << 10);
        for n in 0..20 {
            bus.publish(note_saying(
                serde_json::json!({ "n": n, "text": text }),
                "note",
            ));
        }
        let started = tokio::time::Instant::now();
        let mut f = Follower::new(Arc::clone(&frames), 0);
        let mut seen = 0;
        while seen < 20 {
            let got = f.next(&Kinds(&["note"])).await.unwrap();
            seen += std::str::from_utf8(&got)
                .unwrap()
                .matches("event: note\n")
                .count();
        }
        assert!(
            frames.log.read().unwrap().frames.len() >= 3,
            "cut at 64 KiB"
        );
        assert!(
            started.elapsed() < BURST_WINDOW,
            "framed without a pause: {:?}",
            started.elapsed()
        );
    }
}
