//! Every request is answered in bounded time, and a request that runs out of time gets a JSON
//! error like any other failure (never an empty body).
//!
//! - The bound is `--request-timeout` (default 30 s) for every route but the agent's long-poll,
//!   which may wait up to [`crate::commands::MAX_WAIT`] (60 s) for a command by design: it gets
//!   that wait plus `--request-timeout`. 60 s + 30 s stays under the 100 s after which
//!   Cloudflare's proxy gives up on an origin.
//! - Who ran out of time decides the status: a client that has not finished sending its body
//!   gets `408 Request Timeout`; a request the Command Center itself did not answer in time
//!   (a stuck disk, a slow Access certs endpoint) gets `503 Service Unavailable`.
//! - The bound covers the time until the response starts: `/events` streams begin at once and
//!   are not cut off.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body::{Frame, SizeHint};

use crate::error::ApiError;
use crate::server::AppState;

/// Default of `--request-timeout`.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a request to `route` may take when requests are bounded by `request_timeout`.
pub fn bound(route: Option<&str>, request_timeout: Duration) -> Duration {
    if route == Some(crate::commands::POLL_ROUTE) {
        request_timeout + crate::commands::MAX_WAIT
    } else {
        request_timeout
    }
}

/// Middleware: answers with [`ApiError::Timeout`] or [`ApiError::BodyTimeout`] when the request
/// is not answered within its [`bound`].
pub async fn limit(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str);
    let limit = bound(route, state.request_timeout);
    let received = Arc::new(AtomicBool::new(req.body().is_end_stream()));
    let req = req.map(|inner| {
        Body::new(Watched {
            inner,
            received: Arc::clone(&received),
        })
    });
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(res) => res,
        Err(_) if received.load(Ordering::Acquire) => ApiError::Timeout { limit }.into_response(),
        Err(_) => ApiError::BodyTimeout { limit }.into_response(),
    }
}

/// A request body that notes when it has been received in full.
struct Watched {
    inner: Body,
    received: Arc<AtomicBool>,
}

impl HttpBody for Watched {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || this.inner.is_end_stream() {
            this.received.store(true, Ordering::Release);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_long_poll_may_wait_longer_than_the_request_timeout() {
        let t = Duration::from_secs(30);
        assert_eq!(bound(Some("/api/nodes"), t), t);
        assert_eq!(bound(None, t), t);
        assert_eq!(
            bound(Some(crate::commands::POLL_ROUTE), t),
            Duration::from_secs(90)
        );
    }
}
