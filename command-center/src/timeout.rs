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
//! - **A body deadline.** A request body must arrive whole within `--body-timeout` (default
//!   10 s) of the request's head, whatever the route: `408` otherwise. So a slow sender holds a
//!   connection, and what it sent, for at most that long, not for `--request-timeout`.
//! - **A bound on buffered bodies.** All request bodies being received hold at most
//!   `--body-memory` bytes at once (default 64 MiB); a body that would go beyond gets `503` with
//!   `Retry-After`. Bytes are counted as they arrive, and freed when the request is answered.
//! - A response sent before its request's body was read (a request refused on its headers,
//!   a body timeout) closes the connection: the unread body is never read.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body::{Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ApiError;

/// How long a request to `route` may take when requests are bounded by `request_timeout`.
pub fn bound(route: Option<&str>, request_timeout: Duration) -> Duration {
    if route == Some(crate::commands::POLL_ROUTE) {
        request_timeout + crate::commands::MAX_WAIT
    } else {
        request_timeout
    }
}

/// What [`limit`] needs of the server's state (which provides it through `FromRef`).
#[derive(Debug, Clone)]
pub struct TimeLimits {
    /// `--request-timeout`.
    pub request_timeout: Duration,
    pub bodies: Arc<Bodies>,
}

/// The bounds on request bodies: how long one may take to arrive, and the bytes all of them
/// may hold at once.
#[derive(Debug)]
pub struct Bodies {
    /// `--body-timeout`.
    pub timeout: Duration,
    /// `--body-memory`.
    pub memory: usize,
    /// One permit per byte of body held.
    budget: Arc<Semaphore>,
}

impl Bodies {
    pub fn new(timeout: Duration, memory: usize) -> Bodies {
        Bodies {
            timeout,
            memory,
            budget: Arc::new(Semaphore::new(memory.min(Semaphore::MAX_PERMITS))),
        }
    }

    /// Bytes of body held now.
    pub fn held(&self) -> usize {
        self.memory
            .min(Semaphore::MAX_PERMITS)
            .saturating_sub(self.budget.available_permits())
    }
}

/// What one request's body has done so far.
#[derive(Debug, Default)]
struct Progress {
    /// Received in full.
    received: AtomicBool,
    /// Refused: it would have gone beyond `--body-memory`.
    over: AtomicBool,
    /// The bytes it holds; freed when the request is answered.
    held: Mutex<Option<OwnedSemaphorePermit>>,
}

/// Middleware: answers with [`ApiError::Timeout`] or [`ApiError::BodyTimeout`] when the request
/// is not answered within its [`bound`], or its body not received within `--body-timeout`;
/// with [`ApiError::Unavailable`] when its body would go beyond `--body-memory`.
pub async fn limit(State(state): State<TimeLimits>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str);
    let limit = bound(route, state.request_timeout);
    let bodies = &state.bodies;
    let started = tokio::time::Instant::now();
    let progress = Arc::new(Progress::default());
    progress
        .received
        .store(req.body().is_end_stream(), Ordering::Release);
    let req = req.map(|inner| {
        Body::new(Watched {
            inner,
            progress: Arc::clone(&progress),
            budget: Arc::clone(&bodies.budget),
        })
    });
    let run = next.run(req);
    tokio::pin!(run);
    let mut res = 'answered: {
        if !progress.received.load(Ordering::Acquire) {
            let body_limit = bodies.timeout.min(limit);
            match tokio::time::timeout(body_limit, &mut run).await {
                Ok(res) => break 'answered res,
                Err(_) if !progress.received.load(Ordering::Acquire) => {
                    break 'answered ApiError::BodyTimeout { limit: body_limit }.into_response();
                }
                Err(_) => {}
            }
        }
        match tokio::time::timeout_at(started + limit, &mut run).await {
            Ok(res) => res,
            Err(_) if progress.received.load(Ordering::Acquire) => {
                ApiError::Timeout { limit }.into_response()
            }
            Err(_) => ApiError::BodyTimeout { limit }.into_response(),
        }
    };
    if progress.over.load(Ordering::Acquire) {
        res = ApiError::Unavailable(format!(
            "request bodies being received hold the Command Center's limit of {} bytes \
             (--body-memory); retry later",
            bodies.memory
        ))
        .into_response();
    }
    drop(
        progress
            .held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take(),
    );
    if !progress.received.load(Ordering::Acquire) {
        // The rest of the body is never read: the connection ends with this response.
        res.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    res
}

/// A request body that notes when it has been received in full, and holds a permit of
/// [`Bodies`] for each byte received.
struct Watched {
    inner: Body,
    progress: Arc<Progress>,
    budget: Arc<Semaphore>,
}

impl Watched {
    /// Takes `n` bytes of the budget; false when it has not that many left.
    fn hold(&self, n: usize) -> bool {
        let Ok(n) = u32::try_from(n) else {
            return false;
        };
        match Arc::clone(&self.budget).try_acquire_many_owned(n) {
            Ok(permit) => {
                let mut held = self.progress.held.lock().unwrap_or_else(|p| p.into_inner());
                match held.as_mut() {
                    Some(h) => h.merge(permit),
                    None => *held = Some(permit),
                }
                true
            }
            Err(_) => false,
        }
    }
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
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
            && !this.hold(data.len())
        {
            this.progress.over.store(true, Ordering::Release);
            return Poll::Ready(Some(Err(axum::Error::new(
                "request bodies being received hold --body-memory bytes",
            ))));
        }
        if matches!(polled, Poll::Ready(None)) || this.inner.is_end_stream() {
            this.progress.received.store(true, Ordering::Release);
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
