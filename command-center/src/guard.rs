//! What every request passes before authentication: for a write, the site it comes from
//! (cross-site request forgery). One layer over the whole router ([`check`]), so a route added
//! later is covered without a line of its own.
//!
//! **Cross-site writes.** Every request whose method is not safe (anything but `GET`, `HEAD`,
//! `OPTIONS`, `TRACE`), on every route — agent routes included — is refused with `403` when a
//! browser says it comes from elsewhere: a `Sec-Fetch-Site` other than `same-origin` or `none`
//! (typed in the address bar), or an `Origin` that is `null` or whose host is not the request's
//! `Host`. Clients that send neither — the agent, the CLI, curl — are not browsers riding an
//! admin's session, and go on to authentication (agent requests: their signature).
//!
//! Refusals are JSON errors like every other ([`crate::error::ApiError::Guard`]), counted and
//! logged with their reason ([`crate::refusals`]).

use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

use crate::error::ApiError;

/// Longest header value a refusal quotes back.
const QUOTED_MAX: usize = 80;

/// Why a request was refused before authentication.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// A browser sent a write from another site.
    #[error(
        "cross-site request refused ({header}: {value}): a write must come from this Command Center's own pages, or from a client that is not a browser"
    )]
    CrossSite { header: &'static str, value: String },
}

impl Refused {
    pub fn status(&self) -> StatusCode {
        match self {
            Refused::CrossSite { .. } => StatusCode::FORBIDDEN,
        }
    }

    /// The `reason` of the metrics and of the refusal log.
    pub fn reason(&self) -> &'static str {
        match self {
            Refused::CrossSite { .. } => "cross_site",
        }
    }
}

impl From<Refused> for ApiError {
    fn from(r: Refused) -> Self {
        ApiError::Guard(r)
    }
}

/// `text`, cut to [`QUOTED_MAX`] characters for an error message.
fn quoted(text: &str) -> String {
    text.chars().take(QUOTED_MAX).collect()
}

/// Why a write from a browser comes from another site, if it does (see the module docs).
pub fn cross_site(headers: &HeaderMap) -> Option<Refused> {
    let text = |v: &header::HeaderValue| String::from_utf8_lossy(v.as_bytes()).into_owned();
    if let Some(site) = headers.get("sec-fetch-site").map(text)
        && site != "same-origin"
        && site != "none"
    {
        return Some(Refused::CrossSite {
            header: "Sec-Fetch-Site",
            value: quoted(&site),
        });
    }
    let origin = headers.get(header::ORIGIN).map(text)?;
    let host = headers.get(header::HOST).map(text).unwrap_or_default();
    let origin_host = origin
        .split_once("://")
        .map_or(origin.as_str(), |(_, rest)| rest)
        .trim_end_matches('/');
    (origin == "null" || !origin_host.eq_ignore_ascii_case(&host)).then(|| Refused::CrossSite {
        header: "Origin",
        value: quoted(&origin),
    })
}

/// The layer: the site of writes.
pub async fn check(req: Request, next: Next) -> Result<Response, ApiError> {
    if !req.method().is_safe()
        && let Some(refused) = cross_site(req.headers())
    {
        return Err(refused.into());
    }
    Ok(next.run(req).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_from_another_site_are_told_apart_from_non_browsers() {
        let headers = |pairs: &[(&'static str, &str)]| {
            let mut h = HeaderMap::new();
            h.insert(header::HOST, "127.0.0.1:8088".parse().unwrap());
            for (k, v) in pairs {
                h.insert(*k, v.parse().unwrap());
            }
            h
        };
        for ok in [
            vec![],
            vec![("sec-fetch-site", "same-origin")],
            vec![("sec-fetch-site", "none")],
            vec![("origin", "http://127.0.0.1:8088")],
            vec![
                ("origin", "http://127.0.0.1:8088/"),
                ("sec-fetch-site", "same-origin"),
            ],
        ] {
            assert_eq!(cross_site(&headers(&ok)), None, "{ok:?}");
        }
        for bad in [
            vec![("sec-fetch-site", "cross-site")],
            vec![("sec-fetch-site", "same-site")],
            vec![("origin", "null")],
            vec![("origin", "http://evil.example")],
            vec![("origin", "http://127.0.0.1:9999")],
            vec![
                ("origin", "http://127.0.0.1:8088"),
                ("sec-fetch-site", "cross-site"),
            ],
        ] {
            assert!(cross_site(&headers(&bad)).is_some(), "{bad:?}");
        }
    }
}
