//! `GET /events`: the live event stream (Server-Sent Events).
//!
//! Named events (`heartbeat`, `note`, `incident`, ...) with JSON `data:` and an `id:` each;
//! keepalive comments every `--sse-keepalive` (15 s). A client reconnecting with
//! `Last-Event-ID` first gets what it missed from the bus window; if that cannot be done, or if
//! it falls more than `--sse-buffer` events behind (out of the frame log), it gets one `resync`
//! event (`data: {"reason": ...}`) telling it to reload state. `?since=<id>` does what the
//! header does, for a client that cannot set it (a page's first `EventSource`). Optional
//! filters: `?kinds=heartbeat,incident&node_id=...` (`resync` is always delivered).
//!
//! Each bus event's message is made once ([`vaultmesh_store::bus::BusEvent::message`]), each
//! burst of events is made into one frame once ([`frames`]), and every stream writes the same
//! bytes, so the stream is written here as a plain body rather than through axum's `Sse`, whose
//! `Event` copies every message into each client's buffer. The bytes are those `Sse` wrote,
//! keepalives included (`tests/sse.rs`).

use std::collections::{BTreeSet, HashMap};
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, LazyLock};

use axum::Extension;
use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, StreamExt};
use serde::Deserialize;
use uuid::Uuid;

use crate::api::{parse_kinds, parse_node_id};
use crate::error::ApiError;
use crate::server::AppState;
use vaultmesh_proto::event::{OPERATOR_KINDS, SYSTEM_KINDS};
use vaultmesh_store::bus::{BusEvent, Resume};

pub mod frames;
use frames::{Follower, Frame, Reader};

/// Event names a client may filter on.
pub static NAMES: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
    ["heartbeat", "scan", "command"]
        .into_iter()
        .chain(OPERATOR_KINDS)
        .chain(SYSTEM_KINDS)
        .collect()
});

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SseParams {
    kinds: Option<String>,
    node_id: Option<String>,
    /// The event the client last saw, for a client that cannot send `Last-Event-ID` (a page's
    /// first `EventSource`); the header wins when both are given.
    since: Option<String>,
}

#[derive(Debug, Clone, Default)]
struct SseFilter {
    kinds: Option<BTreeSet<String>>,
    node_id: Option<Uuid>,
}

/// A stream: its filter, and the bus its `resync` ids come from.
struct Stream {
    filter: SseFilter,
    bus: Arc<vaultmesh_store::bus::Bus>,
}

impl Reader for Stream {
    fn wants_all(&self, frame: &Frame) -> bool {
        let f = &self.filter;
        f.node_id.is_none()
            && f.kinds
                .as_ref()
                .is_none_or(|k| frame.names().iter().all(|n| k.contains(n)))
    }

    fn wants(&self, e: &BusEvent) -> bool {
        self.filter.wants(e)
    }

    fn resync(&self, id_before: u64, missed: u64) -> Bytes {
        resync(self.bus.id_of(id_before), "lagged", Some(missed))
    }
}

impl SseFilter {
    fn wants(&self, e: &BusEvent) -> bool {
        self.kinds.as_ref().is_none_or(|k| k.contains(e.name()))
            && self.node_id.is_none_or(|n| e.node_id() == Some(n))
    }
}

/// The event as the stream sends it: the bytes are made once, by whichever client needs them
/// first, and every client sends them without a copy.
fn to_sse(e: &BusEvent) -> Bytes {
    Bytes::from_owner(Shared(Arc::clone(e.message())))
}

/// An [`Arc<str>`] a body frame can hold.
struct Shared(Arc<str>);

impl AsRef<[u8]> for Shared {
    fn as_ref(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

fn resync(id: String, reason: &str, missed: Option<u64>) -> Bytes {
    let data = match missed {
        Some(n) => format!(r#"{{"reason":"{reason}","missed":{n}}}"#),
        None => format!(r#"{{"reason":"{reason}"}}"#),
    };
    format!("event: resync\nid: {id}\ndata: {data}\n\n").into()
}

/// How often a stream opened with an API token checks that the token is still accepted.
const TOKEN_RECHECK: std::time::Duration = std::time::Duration::from_secs(2);

/// A keepalive: an empty comment.
const KEEPALIVE: &[u8] = b":\n\n";

/// Default of `--sse-per-identity`.
pub const DEFAULT_PER_IDENTITY: usize = 32;
/// Default of `--sse-per-address`.
pub const DEFAULT_PER_ADDRESS: usize = 32;
/// Default of `--sse-total`: the 1,000 consoles of docs/PERFORMANCE.md, far below the
/// connection bound (event streams are never closed to make room for other connections).
pub const DEFAULT_TOTAL: usize = 1024;

/// How many `/events` streams may be open (`--sse-per-identity`, `--sse-per-address`,
/// `--sse-total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Args)]
pub struct StreamLimits {
    /// Open /events streams each signed-in admin (Access identity or admin token) may hold
    /// (beyond: 429).
    #[arg(id = "sse_per_identity", value_name = "SSE_PER_IDENTITY", long = "sse-per-identity", default_value_t = DEFAULT_PER_IDENTITY)]
    pub per_identity: usize,
    /// Open /events streams each client address may hold when it is not signed in (a
    /// loopback-only Command Center; beyond: 429).
    #[arg(id = "sse_per_address", value_name = "SSE_PER_ADDRESS", long = "sse-per-address", default_value_t = DEFAULT_PER_ADDRESS)]
    pub per_address: usize,
    /// Open /events streams in all (beyond: 503); below --max-connections.
    #[arg(id = "sse_total", value_name = "SSE_TOTAL", long = "sse-total", default_value_t = DEFAULT_TOTAL)]
    pub total: usize,
}

impl Default for StreamLimits {
    fn default() -> Self {
        vaultmesh_process::cli::defaults()
    }
}

/// Who holds a stream: a signed-in identity, or else the client's address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Holder {
    Identity(String),
    Address(IpAddr),
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Holder::Identity(who) => f.write_str(who),
            Holder::Address(ip) => write!(f, "address {ip}"),
        }
    }
}

/// Why no stream slot was given ([`StreamSlots::acquire`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoStream {
    /// The holder has all of its own (`429`).
    #[error("{holder} already has {limit} open event streams, the limit ({flag})")]
    HolderFull {
        holder: Holder,
        limit: usize,
        flag: &'static str,
    },
    /// Every stream is in use (`503`).
    #[error("all {total} event streams are in use (--sse-total); retry later")]
    AllInUse { total: usize },
}

impl From<NoStream> for ApiError {
    fn from(e: NoStream) -> Self {
        match e {
            NoStream::HolderFull { .. } => ApiError::TooManyStreams(e.to_string()),
            NoStream::AllInUse { .. } => ApiError::Unavailable(e.to_string()),
        }
    }
}

/// Open `/events` streams, per holder and in all, capped by [`StreamLimits`].
#[derive(Debug)]
pub struct StreamSlots {
    limits: StreamLimits,
    open: std::sync::Mutex<Open>,
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    by_holder: HashMap<Holder, usize>,
}

/// One open stream; frees its slot when the stream ends.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<StreamSlots>,
    holder: Holder,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().unwrap_or_else(|p| p.into_inner());
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.by_holder.get_mut(&self.holder) {
            *n -= 1;
            if *n == 0 {
                open.by_holder.remove(&self.holder);
            }
        }
    }
}

impl StreamSlots {
    pub fn new(limits: StreamLimits) -> Arc<StreamSlots> {
        Arc::new(StreamSlots {
            limits: StreamLimits {
                per_identity: limits.per_identity.max(1),
                per_address: limits.per_address.max(1),
                total: limits.total.max(1),
            },
            open: std::sync::Mutex::new(Open::default()),
        })
    }

    /// Takes a slot for `holder`: refused when the holder has all of its own, or when every
    /// stream is in use.
    pub fn acquire(self: &Arc<Self>, holder: Holder) -> Result<Slot, NoStream> {
        let (limit, flag) = match holder {
            Holder::Identity(_) => (self.limits.per_identity, "--sse-per-identity"),
            Holder::Address(_) => (self.limits.per_address, "--sse-per-address"),
        };
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let held = open.by_holder.get(&holder).copied().unwrap_or(0);
        if held >= limit {
            return Err(NoStream::HolderFull {
                holder,
                limit,
                flag,
            });
        }
        if open.total >= self.limits.total {
            return Err(NoStream::AllInUse {
                total: self.limits.total,
            });
        }
        open.total += 1;
        *open.by_holder.entry(holder.clone()).or_insert(0) += 1;
        Ok(Slot {
            slots: Arc::clone(self),
            holder,
        })
    }
}

/// `GET /events`.
pub async fn events(
    State(state): State<AppState>,
    identity: Option<Extension<crate::access::Identity>>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    params: Result<Query<SseParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(p) = params?;
    let kinds = parse_kinds("kinds", p.kinds.as_deref(), &NAMES)?;
    let filter = SseFilter {
        kinds,
        node_id: p.node_id.as_deref().map(parse_node_id).transpose()?,
    };
    let last_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .or(p.since.as_deref());
    // Signed-in clients are counted by identity (behind the tunnel every client has the
    // tunnel's address); the others — a loopback-only Command Center — by address.
    let signed_in = identity
        .as_ref()
        .and_then(|Extension(who)| who.author().map(str::to_string));
    let holder = match (signed_in, peer) {
        (Some(name), _) => Holder::Identity(name),
        (None, Some(Extension(ConnectInfo(addr)))) => Holder::Address(addr.ip()),
        (None, None) => Holder::Address(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)),
    };
    let slot = state.sse_slots.acquire(holder)?;

    let bus = Arc::clone(&state.bus);
    // What the client missed comes from the bus window; from the newest event then on, the
    // stream follows the frames.
    let (resume, newest) = bus.resume(last_id);
    let first: Vec<Bytes> = match resume {
        Resume::Replay(missed) => missed
            .iter()
            .filter(|e| filter.wants(e))
            .map(|e| to_sse(e))
            .collect(),
        Resume::Resync { reason } => vec![resync(bus.id_of(newest), reason, None)],
    };
    let follower = Follower::new(Arc::clone(&state.frames), newest);

    let counted = crate::metrics::StreamGauge::open(&state.metrics.sse_clients);
    let every = state.sse_keepalive;
    // The slot and the gauge live in the stream's state: both are freed when the client goes
    // away. A keepalive goes out after `every` without a message, as axum's `KeepAlive` did.
    let idle = Box::pin(tokio::time::sleep(every));
    let live = stream::unfold(
        (follower, Stream { filter, bus }, idle, (slot, counted)),
        move |(mut follower, stream, mut idle, held)| async move {
            let next = tokio::select! {
                next = follower.next(&stream) => next?,
                () = &mut idle => Bytes::from_static(KEEPALIVE),
            };
            // One timer per stream, moved on after each write (moving a timer later costs no
            // trip through the timer wheel until it would have fired).
            idle.as_mut().reset(tokio::time::Instant::now() + every);
            Some((next, (follower, stream, idle, held)))
        },
    );
    // A stream opened with an API token ends once the token is revoked or expires (and every
    // stream at shutdown, when the frames' log closes).
    let token = identity
        .as_ref()
        .and_then(|Extension(who)| who.token_id.clone());
    let tokens = Arc::clone(&state.admin.api_tokens);
    let withdrawn = async move {
        match token {
            Some(id) => loop {
                tokio::time::sleep(TOKEN_RECHECK).await;
                if !tokens.active(&id) {
                    break;
                }
            },
            None => std::future::pending::<()>().await,
        }
    };
    let stream = stream::iter(first)
        .chain(live)
        .take_until(withdrawn)
        .map(Ok::<_, Infallible>);
    Ok((
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use frames::Frames;
    use vaultmesh_store::bus::{Bus, Event, Stored};

    fn note(node: Option<Uuid>) -> Event {
        let envelope = vaultmesh_proto::EventEnvelope {
            id: Uuid::now_v7(),
            kind: "note".into(),
            ts: chrono::Utc::now(),
            node_id: node,
            author: "test".into(),
            body: serde_json::json!({}),
            refs: Vec::new(),
            hash: String::new(),
        }
        .sealed();
        Event::Envelope(Box::new(Stored::new(envelope)))
    }

    /// A stream's filter on a node writes that node's events of a frame (as runs of it), one on
    /// kinds the frame's events all pass writes the frame whole, and a stream that fell out of
    /// the log gets the `resync` the API documents: the id of the last event it missed and how
    /// many it missed.
    #[tokio::test]
    async fn a_stream_writes_what_its_filter_keeps_and_resyncs_as_documented() {
        let bus = Arc::new(Bus::new(64, 64));
        let node = Uuid::now_v7();
        for owner in [Some(node), None, Some(node), Some(node)] {
            bus.publish(note(owner));
        }
        let vaultmesh_store::bus::Resume::Replay(events) = bus.resume(Some(&bus.id_of(0))).0 else {
            panic!("the window holds them");
        };
        let frames = Frames::new(3);
        frames.push(Frame::new(events[..1].to_vec()));
        frames.push(Frame::new(events[1..].to_vec()));
        let stream = |kinds: Option<&str>, node_id| Stream {
            filter: SseFilter {
                kinds: kinds.map(|k| BTreeSet::from([k.to_string()])),
                node_id,
            },
            bus: Arc::clone(&bus),
        };
        let text = |b: Bytes| String::from_utf8(b.to_vec()).unwrap();

        let mine = stream(None, Some(node));
        let mut f = Follower::new(Arc::clone(&frames), 1);
        let want = events[2].message().to_string() + events[3].message();
        assert_eq!(
            text(f.next(&mine).await.unwrap()),
            want,
            "events 3 and 4, not 2"
        );

        let notes = stream(Some("note"), None);
        let whole = Follower::new(Arc::clone(&frames), 1)
            .next(&notes)
            .await
            .unwrap();
        assert_eq!(
            whole.len(),
            events[1..].iter().map(|e| e.message().len()).sum::<usize>()
        );

        let mut late = Follower::new(Arc::clone(&frames), 0);
        assert_eq!(
            text(late.next(&notes).await.unwrap()),
            format!(
                "event: resync\nid: {}\ndata: {{\"reason\":\"lagged\",\"missed\":1}}\n\n",
                bus.id_of(1)
            ),
            "event 1 left the log (it keeps 3)"
        );
    }
}
