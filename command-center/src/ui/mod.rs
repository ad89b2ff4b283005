//! Server-rendered pages. Templates are maud, which escapes every interpolated string, so
//! hostnames, summaries and other agent-supplied text can never inject markup. Pages load no
//! external resources and the server sends a strict Content-Security-Policy.

pub mod console;
mod dashboard;
pub mod format;

pub use dashboard::dashboard;

use axum::http::header;
use axum::response::IntoResponse;

const STYLESHEET: &str = include_str!("app.css");
const CONSOLE_JS: &str = include_str!("console.js");
const DASHBOARD_JS: &str = include_str!("dashboard.js");

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

/// `GET /assets/console.js`.
pub async fn console_script() -> impl IntoResponse {
    script(CONSOLE_JS)
}

/// `GET /assets/dashboard.js`.
pub async fn dashboard_script() -> impl IntoResponse {
    script(DASHBOARD_JS)
}

fn script(body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
}
