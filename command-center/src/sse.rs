//! `GET /events`: the live event stream (Server-Sent Events).
//!
//! Named events (`heartbeat`, `note`, `incident`, ...) with JSON `data:` and an `id:` each;
//! keepalive comments every `--sse-keepalive` (15 s). A client reconnecting with
//! `Last-Event-ID` first gets what it missed from the bus window; if that cannot be done, or if
//! it falls behind the broadcast channel, it gets one `resync` event (`data: {"reason": ...}`)
//! telling it to reload state. Optional filters: `?kinds=heartbeat,incident&node_id=...`
//! (`resync` is always delivered).

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::{self, Stream, StreamExt};
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

use crate::api::{parse_kinds, parse_node_id};
use crate::bus::{BusEvent, Resume};
use crate::error::ApiError;
use crate::server::AppState;

/// Event names a client may filter on.
pub const NAMES: [&str; 10] = [
    "heartbeat",
    "scan",
    "command",
    "attention",
    "note",
    "incident",
    "ack",
    "tag",
    "resolve",
    "silence",
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SseParams {
    kinds: Option<String>,
    node_id: Option<String>,
}

#[derive(Debug, Clone, Default)]
struct SseFilter {
    kinds: Option<BTreeSet<String>>,
    node_id: Option<Uuid>,
}

impl SseFilter {
    fn wants(&self, e: &BusEvent) -> bool {
        self.kinds.as_ref().is_none_or(|k| k.contains(&e.name))
            && self.node_id.is_none_or(|n| e.node_id == Some(n))
    }
}

fn to_sse(bus: &crate::bus::Bus, e: &BusEvent) -> Event {
    Event::default()
        .event(e.name.as_str())
        .id(bus.id_of(e.seq))
        .data(e.data.as_ref())
}

fn resync(id: String, reason: &str, missed: Option<u64>) -> Event {
    let data = match missed {
        Some(n) => format!(r#"{{"reason":"{reason}","missed":{n}}}"#),
        None => format!(r#"{{"reason":"{reason}"}}"#),
    };
    Event::default().event("resync").id(id).data(data)
}

/// Open `/events` streams per signed-in identity, capped (`--sse-per-identity`). Streams of
/// unauthenticated clients (a loopback-only Command Center) are not counted.
#[derive(Debug)]
pub struct StreamSlots {
    per_identity: usize,
    open: std::sync::Mutex<std::collections::HashMap<String, usize>>,
}

/// One open stream; frees its slot when the stream ends.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<StreamSlots>,
    who: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.who) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.who);
            }
        }
    }
}

impl StreamSlots {
    pub fn new(per_identity: usize) -> Arc<StreamSlots> {
        Arc::new(StreamSlots {
            per_identity: per_identity.max(1),
            open: std::sync::Mutex::new(std::collections::HashMap::new()),
        })
    }

    /// Takes a slot for `who`, or `429` when all are in use.
    pub fn acquire(self: &Arc<Self>, who: &str) -> Result<Slot, ApiError> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(who.to_string()).or_insert(0);
        if *n >= self.per_identity {
            return Err(ApiError::TooManyStreams(format!(
                "{who} already has {} open event streams, the limit",
                self.per_identity
            )));
        }
        *n += 1;
        Ok(Slot {
            slots: Arc::clone(self),
            who: who.to_string(),
        })
    }
}

/// `GET /events`.
pub async fn events(
    State(state): State<AppState>,
    identity: Option<axum::Extension<crate::access::Identity>>,
    headers: HeaderMap,
    params: Result<Query<SseParams>, QueryRejection>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let Query(p) =
        params.map_err(|e| ApiError::BadRequest(format!("bad query: {}", e.body_text())))?;
    let kinds = parse_kinds("kinds", p.kinds.as_deref(), &NAMES)?;
    let filter = SseFilter {
        kinds,
        node_id: p.node_id.as_deref().map(parse_node_id).transpose()?,
    };
    let last_id = headers.get("last-event-id").and_then(|v| v.to_str().ok());
    let slot = identity
        .map(|axum::Extension(who)| state.sse_slots.acquire(&who.0))
        .transpose()?;

    let bus = Arc::clone(&state.bus);
    let (rx, resume) = bus.subscribe(last_id);
    let first: Vec<Event> = match resume {
        Resume::Replay(missed) => missed
            .iter()
            .filter(|e| filter.wants(e))
            .map(|e| to_sse(&bus, e))
            .collect(),
        Resume::Resync { reason } => vec![resync(bus.last_id(), reason, None)],
    };

    let live_bus = Arc::clone(&bus);
    let counted = crate::metrics::StreamGauge::open(&state.metrics.sse_clients);
    // The slot and the gauge live in the stream's state: both are freed when the client goes away.
    let live = stream::unfold(
        (rx, filter, live_bus, (slot, counted)),
        |(mut rx, filter, bus, held)| async move {
            loop {
                match rx.recv().await {
                    Ok(e) if filter.wants(&e) => {
                        let ev = to_sse(&bus, &e);
                        return Some((ev, (rx, filter, bus, held)));
                    }
                    Ok(_) => continue,
                    Err(RecvError::Lagged(n)) => {
                        let ev = resync(bus.last_id(), "lagged", Some(n));
                        return Some((ev, (rx, filter, bus, held)));
                    }
                    Err(RecvError::Closed) => return None,
                }
            }
        },
    );
    let shutdown = state.shutdown.clone();
    let stream = stream::iter(first)
        .chain(live)
        .take_until(async move { shutdown.cancelled().await })
        .map(Ok);
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(state.sse_keepalive)))
}
