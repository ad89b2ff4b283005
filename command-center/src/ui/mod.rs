//! Server-rendered pages. Templates are maud, which escapes every interpolated string, so
//! hostnames, summaries and other agent-supplied text can never inject markup. Pages load no
//! external resources and the server sends a strict Content-Security-Policy.

mod dashboard;
mod format;

pub use dashboard::dashboard;

use axum::http::header;
use axum::response::IntoResponse;

const STYLESHEET: &str = include_str!("app.css");

/// `GET /assets/app.css`.
pub async fn stylesheet() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        STYLESHEET,
    )
}
