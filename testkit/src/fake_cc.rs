//! A hostile Command Center for agent tests: it accepts any enrollment and heartbeat, hands the
//! real agent whatever commands the test queues (forged, replayed, expired, misrouted …) on its
//! long-poll, and collects the receipts. It can also answer heartbeats and polls with endless
//! replies ([`FakeCommandCenter::flood`]). The agent must not trust it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use vaultmesh_proto::command::{SignedCommand, SignedReceipt};

use crate::page::Served;

#[derive(Debug, Default)]
struct Shared {
    queue: VecDeque<SignedCommand>,
    receipts: Vec<SignedReceipt>,
    enrollments: usize,
    heartbeats: usize,
    /// The bodies of the last [`KEPT_HEARTBEATS`] heartbeats, oldest first.
    kept: VecDeque<serde_json::Value>,
    polls: usize,
    /// Answer heartbeats and polls with this many bytes instead.
    flood: Option<u64>,
}

type SharedState = Arc<Mutex<Shared>>;

/// How many heartbeat bodies the fake keeps ([`FakeCommandCenter::heartbeats`]).
const KEPT_HEARTBEATS: usize = 64;

fn lock(s: &SharedState) -> std::sync::MutexGuard<'_, Shared> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

/// A `200` JSON reply of `bytes` bytes (a string that never ends), streamed in 64 KiB chunks
/// without a `Content-Length`, so only a reader that stops can bound it.
fn flood_reply(bytes: u64) -> Response {
    const CHUNK: usize = 64 * 1024;
    let chunk = axum::body::Bytes::from(vec![b'x'; CHUNK]);
    let mut left = bytes;
    let chunks = std::iter::from_fn(move || {
        let n = left.min(CHUNK as u64) as usize;
        left -= n as u64;
        (n > 0).then(|| Ok::<_, std::convert::Infallible>(chunk.slice(..n)))
    });
    let body = Body::from_stream(futures_util::stream::iter(
        std::iter::once(Ok(axum::body::Bytes::from_static(b"{\"accepted\":\""))).chain(chunks),
    ));
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

/// The fake server on `127.0.0.1:PORT`, served from its own thread until dropped.
#[derive(Debug)]
pub struct FakeCommandCenter {
    pub url: String,
    shared: Arc<Mutex<Shared>>,
    _served: Served,
}

async fn enroll(
    State(s): State<SharedState>,
    Json(req): Json<serde_json::Value>,
) -> Json<serde_json::Value> {
    lock(&s).enrollments += 1;
    Json(
        serde_json::json!({"enrolled": true, "node_id": req["node_id"], "enrolled_at": chrono::Utc::now()}),
    )
}

async fn heartbeat(State(s): State<SharedState>, Json(hb): Json<serde_json::Value>) -> Response {
    let flood = {
        let mut s = lock(&s);
        s.heartbeats += 1;
        if s.kept.len() == KEPT_HEARTBEATS {
            s.kept.pop_front();
        }
        s.kept.push_back(hb.clone());
        s.flood
    };
    if let Some(bytes) = flood {
        return flood_reply(bytes);
    }
    Json(
        serde_json::json!({"accepted": true, "node_id": hb["node_id"], "received_at": chrono::Utc::now()}),
    )
    .into_response()
}

async fn poll(State(s): State<SharedState>) -> Response {
    let flood = {
        let mut s = lock(&s);
        s.polls += 1;
        s.flood
    };
    if let Some(bytes) = flood {
        return flood_reply(bytes);
    }
    for _ in 0..20 {
        let batch: Vec<SignedCommand> = lock(&s).queue.drain(..).collect();
        if !batch.is_empty() {
            return Json(batch).into_response();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Json(Vec::<SignedCommand>::new()).into_response()
}

async fn receipt(
    State(s): State<SharedState>,
    Json(r): Json<SignedReceipt>,
) -> Json<serde_json::Value> {
    lock(&s).receipts.push(r);
    Json(serde_json::json!({"accepted": true, "chain_ok": true}))
}

/// A command for `node` (sign it with [`SignedCommand::sign`]), issued a second ago and valid
/// for `ttl_s` seconds (negative: expired).
pub fn command(
    node: uuid::Uuid,
    seq: u64,
    action: &str,
    args: serde_json::Value,
    ttl_s: i64,
) -> vaultmesh_proto::command::Command {
    let now = chrono::Utc::now();
    vaultmesh_proto::command::Command {
        command_id: uuid::Uuid::now_v7(),
        node_id: node,
        action: action.into(),
        args,
        nonce: uuid::Uuid::new_v4().to_string(),
        seq: seq.to_string(),
        issued_at: now - chrono::Duration::seconds(1),
        expires_at: now + chrono::Duration::seconds(ttl_s),
        issued_by: "test".into(),
    }
}

impl FakeCommandCenter {
    pub fn start() -> FakeCommandCenter {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let app = Router::new()
            .route("/api/agent/enroll", post(enroll))
            .route("/api/agent/heartbeat", post(heartbeat))
            .route("/api/agent/commands", get(poll))
            .route("/api/agent/receipts", post(receipt))
            .with_state(Arc::clone(&shared));
        let served = Served::start(app, "127.0.0.1");
        FakeCommandCenter {
            url: format!("http://{}", served.addr),
            shared,
            _served: served,
        }
    }

    /// Queues commands for the next long-poll.
    pub fn push(&self, commands: Vec<SignedCommand>) {
        lock(&self.shared).queue.extend(commands);
    }

    /// Receipts received so far.
    pub fn receipts(&self) -> Vec<SignedReceipt> {
        lock(&self.shared).receipts.clone()
    }

    /// Heartbeats and command polls received so far.
    pub fn requests(&self) -> (usize, usize) {
        let s = lock(&self.shared);
        (s.heartbeats, s.polls)
    }

    /// The last 64 heartbeats received, oldest first, as sent.
    pub fn heartbeats(&self) -> Vec<serde_json::Value> {
        lock(&self.shared).kept.iter().cloned().collect()
    }

    /// Enrollments received so far.
    pub fn enrollments(&self) -> usize {
        lock(&self.shared).enrollments
    }

    /// From now on, answer every heartbeat and poll with a `200` of `bytes` bytes (streamed,
    /// without a length); `None` goes back to normal replies.
    pub fn flood(&self, bytes: Option<u64>) {
        lock(&self.shared).flood = bytes;
    }
}
