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
    stop: Option<tokio::sync::oneshot::Sender<()>>,
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
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let state = Arc::clone(&shared);
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let app = Router::new()
                    .route("/api/agent/enroll", post(enroll))
                    .route("/api/agent/heartbeat", post(heartbeat))
                    .route("/api/agent/commands", get(poll))
                    .route("/api/agent/receipts", post(receipt))
                    .with_state(state);
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind");
                let _ = addr_tx.send(listener.local_addr().expect("addr"));
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stop_rx.await;
                    })
                    .await;
            });
        });
        let addr = addr_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("fake Command Center started");
        FakeCommandCenter {
            url: format!("http://{addr}"),
            shared,
            stop: Some(stop_tx),
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

impl Drop for FakeCommandCenter {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}
