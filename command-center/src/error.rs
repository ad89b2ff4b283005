//! `ApiError`: every way a request can fail, each mapped to one status code and a JSON body
//! `{"error": "..."}`. Messages say what was wrong with the request and never echo secrets.
//!
//! The one place the domain's errors (the store's, the engines': refused credentials, rates,
//! budgets, issuing) become HTTP answers. What the metrics middleware reads from an answer is
//! left in it as a [`Rejected`] extension.

use axum::extract::rejection::{BytesRejection, FormRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use vaultmesh_engines::auth::{AuthError, Refusal, RememberError};
use vaultmesh_engines::limits::{EnrollmentsLimited, EventsLimited, RateLimited};
use vaultmesh_proto::ErrorBody;

/// Largest request body accepted unless a route says otherwise (a heartbeat with 128 checks and
/// 256 disks is ~100 KiB): the server's default body limit, and the limit a `413` names.
pub const BODY_LIMIT: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("request body is larger than the {limit}-byte limit")]
    TooLarge { limit: usize },
    #[error("expected Content-Type: application/json")]
    UnsupportedMediaType,
    #[error("{0}")]
    UnprocessableEntity(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// A request refused for its credentials, with why, for the log ([`Refusal`]).
    #[error("{1}")]
    Unauthorized(Refusal, String),
    #[error("{0}")]
    Forbidden(String),
    /// A revocation forbids it (`403`): an enrollment of a revoked node or key.
    #[error("{0}")]
    Revoked(String),
    /// The identity's role (or token's scopes) does not allow the route (`403`, naming the
    /// role needed).
    #[error("{0}")]
    NotAllowed(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    TooManyStreams(String),
    /// A node past its request rate or its bodies at once (`429`).
    #[error(transparent)]
    TooManyRequests(#[from] RateLimited),
    /// A node past its rate of posted events (`429`, `--agent-event-rate`).
    #[error(transparent)]
    TooManyEvents(#[from] EventsLimited),
    /// A node over its hourly byte budget (`429`), or a record larger than all of it (`413`).
    #[error("{0}")]
    OverBudget(#[from] vaultmesh_engines::budget::OverBudget),
    /// A source past its enrollment rate (`429`).
    #[error(transparent)]
    TooManyEnrollments(#[from] EnrollmentsLimited),
    /// The Command Center did not answer within its time limit (`--request-timeout`).
    #[error(
        "the Command Center did not answer within {} s (its --request-timeout); try again",
        limit.as_secs_f64()
    )]
    Timeout { limit: std::time::Duration },
    /// The client did not send its whole request body within the time limit.
    #[error("the request body did not arrive within {} s", limit.as_secs_f64())]
    BodyTimeout { limit: std::time::Duration },
    /// Refused before authentication: the wrong host, a cross-site write, or admin routes
    /// without authentication reached through Cloudflare ([`crate::guard`]).
    #[error(transparent)]
    Guard(crate::guard::Refused),
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::UnprocessableEntity(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Unauthorized(..) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) | ApiError::Revoked(_) | ApiError::NotAllowed(_) => {
                StatusCode::FORBIDDEN
            }
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::OverBudget(vaultmesh_engines::budget::OverBudget::TooLarge { .. }) => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            ApiError::TooManyRequests(_)
            | ApiError::TooManyEnrollments(_)
            | ApiError::TooManyEvents(_)
            | ApiError::OverBudget(_)
            | ApiError::TooManyStreams(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Timeout { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            ApiError::Guard(r) => r.status(),
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The `reason` label of `vaultmesh_requests_rejected_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::TooLarge { .. } => "too_large",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::UnprocessableEntity(_) => "invalid",
            ApiError::NotFound(_) => "not_found",
            ApiError::Conflict(_) => "conflict",
            ApiError::Unauthorized(..) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::Revoked(_) => "revoked",
            ApiError::NotAllowed(_) => "role",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::TooManyRequests(_) | ApiError::TooManyEnrollments(_) => "rate_limited",
            ApiError::TooManyEvents(_) => "event_rate_limited",
            ApiError::OverBudget(_) => "over_budget",
            ApiError::TooManyStreams(_) => "too_many_streams",
            ApiError::Timeout { .. } => "timeout",
            ApiError::BodyTimeout { .. } => "body_timeout",
            ApiError::Guard(r) => r.reason(),
            ApiError::Internal(_) => "internal",
        }
    }
}

/// `Retry-After` of every `503` (a full disk, a request over `--request-timeout`): when a full
/// disk has room again, writes resume by themselves.
pub const UNAVAILABLE_RETRY_AFTER_S: u64 = 10;
/// `Retry-After` of a `429` for too many event streams: one closes, or the client backs off.
pub const TOO_MANY_STREAMS_RETRY_AFTER_S: u64 = 5;
/// What an [`ApiError`] leaves in its response, for the middleware that counts and logs
/// refusals (`crate::metrics::count_rejections`).
#[derive(Debug, Clone)]
pub struct Rejected {
    /// The metrics reason (`unauthorized`, `invalid`...).
    pub reason: &'static str,
    /// The logged reason: finer for refused credentials (`replay`, `revoked`...).
    pub why: &'static str,
    /// The message the client got (never a secret).
    pub detail: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(detail) = &self {
            tracing::error!(%detail, "Internal error.");
        }
        let body = ErrorBody {
            error: self.to_string(),
        };
        let retry_after = match &self {
            ApiError::TooManyRequests(RateLimited { retry_after_s, .. })
            | ApiError::TooManyEnrollments(EnrollmentsLimited { retry_after_s, .. })
            | ApiError::TooManyEvents(EventsLimited { retry_after_s, .. })
            | ApiError::OverBudget(
                vaultmesh_engines::budget::OverBudget::Spent { retry_after_s, .. }
                | vaultmesh_engines::budget::OverBudget::FleetSpent { retry_after_s, .. },
            ) => Some(*retry_after_s),
            ApiError::Unavailable(_) | ApiError::Timeout { .. } => Some(UNAVAILABLE_RETRY_AFTER_S),
            ApiError::TooManyStreams(_) => Some(TOO_MANY_STREAMS_RETRY_AFTER_S),
            _ => None,
        };
        let mut res = match retry_after {
            Some(s) => {
                let retry = [(axum::http::header::RETRY_AFTER, s.to_string())];
                (self.status(), retry, axum::Json(body)).into_response()
            }
            None => (self.status(), axum::Json(body)).into_response(),
        };
        let why = match &self {
            ApiError::Unauthorized(why, _) => why.as_str(),
            other => other.reason(),
        };
        res.extensions_mut().insert(Rejected {
            reason: self.reason(),
            why,
            detail: self.to_string(),
        });
        res
    }
}

impl From<BytesRejection> for ApiError {
    fn from(r: BytesRejection) -> Self {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge { limit: BODY_LIMIT }
        } else {
            ApiError::BadRequest(format!("cannot read request body: {}", r.body_text()))
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::BadRequest(format!("bad query: {}", r.body_text()))
    }
}

impl From<FormRejection> for ApiError {
    fn from(r: FormRejection) -> Self {
        match r {
            FormRejection::BytesRejection(b) => ApiError::from(b),
            other => ApiError::BadRequest(format!("bad form: {}", other.body_text())),
        }
    }
}

impl From<vaultmesh_store::StoreError> for ApiError {
    fn from(e: vaultmesh_store::StoreError) -> Self {
        use vaultmesh_store::StoreError;
        match e {
            StoreError::NodeLimit(_) | StoreError::Unavailable(_) => {
                ApiError::Unavailable(e.to_string())
            }
            StoreError::Invalid(m) => ApiError::UnprocessableEntity(m),
            StoreError::NotFound(m) => ApiError::NotFound(m),
            StoreError::Revoked(r) => ApiError::Revoked(r.to_string()),
            StoreError::Conflict(m) => ApiError::Conflict(m),
            StoreError::TokenSpent => ApiError::Unauthorized(Refusal::BadToken, e.to_string()),
            // Never said to the agent (no oracle): the handler logs which state it was in.
            StoreError::TokenRefused { .. } => ApiError::Unauthorized(
                Refusal::BadToken,
                vaultmesh_engines::auth::TOKEN_NOT_VALID.to_string(),
            ),
        }
    }
}

impl From<vaultmesh_store::history::HistoryError> for ApiError {
    fn from(e: vaultmesh_store::history::HistoryError) -> Self {
        match e {
            vaultmesh_store::history::HistoryError::Store(e) => e.into(),
            e @ vaultmesh_store::history::HistoryError::UnknownMetric { .. } => {
                ApiError::BadRequest(e.to_string())
            }
        }
    }
}

impl From<vaultmesh_engines::issue::IssueError> for ApiError {
    fn from(e: vaultmesh_engines::issue::IssueError) -> Self {
        use vaultmesh_engines::issue::IssueError;
        match e {
            IssueError::Invalid(_) | IssueError::TooLarge(_) => {
                ApiError::UnprocessableEntity(e.to_string())
            }
            IssueError::NoNode(_) => ApiError::NotFound(e.to_string()),
            IssueError::Revoked { .. } => ApiError::Conflict(e.to_string()),
            IssueError::Refused(m) => ApiError::Forbidden(m),
            IssueError::Store(e) => e.into(),
        }
    }
}

impl From<vaultmesh_proto::display_name::DisplayNameError> for ApiError {
    fn from(e: vaultmesh_proto::display_name::DisplayNameError) -> Self {
        ApiError::UnprocessableEntity(e.to_string())
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        ApiError::Unauthorized(e.refusal, e.message)
    }
}

impl From<RememberError> for ApiError {
    fn from(e: RememberError) -> Self {
        match e {
            RememberError::Refused(e) => e.into(),
            RememberError::Full => ApiError::Unavailable(e.to_string()),
            RememberError::Store(e) => e.into(),
        }
    }
}
