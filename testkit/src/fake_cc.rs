//! A hostile Command Center for agent tests: it accepts any enrollment and heartbeat, hands the
//! real agent whatever commands the test queues (forged, replayed, expired, misrouted …) on its
//! long-poll, and collects the receipts. The agent must not trust it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use vaultmesh_proto::command::{SignedCommand, SignedReceipt};

use crate::page::Served;

#[derive(Debug, Default)]
struct Shared {
    queue: VecDeque<SignedCommand>,
    receipts: Vec<SignedReceipt>,
}

/// The fake server on `127.0.0.1:PORT`, served from its own thread until dropped.
#[derive(Debug)]
pub struct FakeCommandCenter {
    pub url: String,
    shared: Arc<Mutex<Shared>>,
    _served: Served,
}

async fn enroll(Json(req): Json<serde_json::Value>) -> Json<serde_json::Value> {
    Json(
        serde_json::json!({"enrolled": true, "node_id": req["node_id"], "enrolled_at": chrono::Utc::now()}),
    )
}

async fn heartbeat(Json(hb): Json<serde_json::Value>) -> Json<serde_json::Value> {
    Json(
        serde_json::json!({"accepted": true, "node_id": hb["node_id"], "received_at": chrono::Utc::now()}),
    )
}

async fn poll(State(s): State<Arc<Mutex<Shared>>>) -> Json<Vec<SignedCommand>> {
    for _ in 0..20 {
        let batch: Vec<SignedCommand> = s
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .queue
            .drain(..)
            .collect();
        if !batch.is_empty() {
            return Json(batch);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Json(Vec::new())
}

async fn receipt(
    State(s): State<Arc<Mutex<Shared>>>,
    Json(r): Json<SignedReceipt>,
) -> Json<serde_json::Value> {
    s.lock().unwrap_or_else(|p| p.into_inner()).receipts.push(r);
    Json(serde_json::json!({"accepted": true, "chain_ok": true}))
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
        self.shared
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .queue
            .extend(commands);
    }

    /// Receipts received so far.
    pub fn receipts(&self) -> Vec<SignedReceipt> {
        self.shared
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .receipts
            .clone()
    }
}
