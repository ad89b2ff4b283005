//! The floor for ingest on this machine: a bare axum server whose agent routes only parse the
//! same JSON the Command Center parses (no signature check, no log, no state) and answer 200.
//! `ingest-bench` measures it side by side with the real Command Center.
//!
//! Prints `listening on http://ADDR` like the Command Center, then serves until killed.

use axum::Router;
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::routing::post;
use vaultmesh_proto::{NodeHeartbeat, ScanReport};

async fn heartbeat(body: Bytes) -> (StatusCode, &'static str) {
    match serde_json::from_slice::<NodeHeartbeat>(&body) {
        Ok(_) => (StatusCode::OK, r#"{"accepted":true}"#),
        Err(_) => (StatusCode::UNPROCESSABLE_ENTITY, r#"{"error":"bad json"}"#),
    }
}

async fn scan(body: Bytes) -> (StatusCode, &'static str) {
    match serde_json::from_slice::<ScanReport>(&body) {
        Ok(_) => (StatusCode::OK, r#"{"accepted":true}"#),
        Err(_) => (StatusCode::UNPROCESSABLE_ENTITY, r#"{"error":"bad json"}"#),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let app = Router::new()
        .route("/api/agent/heartbeat", post(heartbeat))
        .route("/api/agent/scans", post(scan));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
