//! The HTTP client `openidconnect` talks to the provider with: our reqwest 0.13 behind the
//! crate's [`AsyncHttpClient`] trait (the crate's own `reqwest` feature would pull in reqwest
//! 0.12, a second HTTP and TLS stack).
//!
//! Redirects are not followed (the crate's advice against SSRF: a discovery document or token
//! endpoint that redirects is an error), and every exchange has a time limit and a size limit on
//! the reply.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use openidconnect::{AsyncHttpClient, HttpRequest, HttpResponse};

/// Longest a request to the provider may take.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Largest reply read from the provider (a discovery document, a JWKS, a token response).
const REPLY_MAX: usize = 1024 * 1024;

/// Why a request to the provider failed (never holds a secret: the request is not quoted).
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{0}")]
    Request(String),
    #[error("the reply is larger than {REPLY_MAX} bytes")]
    TooLarge,
}

/// reqwest, for `openidconnect`.
#[derive(Debug, Clone)]
pub struct Http(reqwest::Client);

impl Http {
    pub fn new() -> Result<Http, String> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        reqwest::Client::builder()
            .timeout(TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map(Http)
            .map_err(|e| format!("HTTP client: {e}"))
    }

    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let (parts, body) = request.into_parts();
        let mut req = self
            .0
            .request(parts.method, parts.uri.to_string())
            .body(body);
        for (name, value) in &parts.headers {
            req = req.header(name, value);
        }
        let mut reply = req
            .send()
            .await
            // Without the URL: a token request's URL holds nothing secret, but keep errors short.
            .map_err(|e| HttpError::Request(e.without_url().to_string()))?;
        let mut builder = openidconnect::http::Response::builder().status(reply.status());
        for (name, value) in reply.headers() {
            builder = builder.header(name, value);
        }
        let mut body = Vec::new();
        while let Some(chunk) = reply
            .chunk()
            .await
            .map_err(|e| HttpError::Request(e.without_url().to_string()))?
        {
            if body.len() + chunk.len() > REPLY_MAX {
                return Err(HttpError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        builder
            .body(body)
            .map_err(|e| HttpError::Request(e.to_string()))
    }
}

impl<'c> AsyncHttpClient<'c> for Http {
    type Error = HttpError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, HttpError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(self.send(request))
    }
}
