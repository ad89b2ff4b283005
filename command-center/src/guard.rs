//! What every request passes before authentication: the host it names (DNS rebinding) and, for
//! a write, the site it comes from (cross-site request forgery). One layer over the whole router
//! ([`check`]), so a route added later is covered without a line of its own.
//!
//! **The host.** A page on `evil.example` whose name its owner then points at 127.0.0.1 talks to
//! a loopback Command Center *as* `evil.example`: to the browser that is the page's own origin,
//! so neither CORS nor `Origin` can tell. Only `Host` can. Every admin request (everything but
//! `/api/agent/*`, `/healthz` and `/assets/*`) must name one of the [`AllowedHosts`] — the
//! listen address, `localhost`, `127.0.0.1` and `[::1]`, with the listen port, and every
//! `--allowed-host` (the public hostname behind a Cloudflare Tunnel) — or it gets `421
//! Misdirected Request` (`400` without a `Host` at all). Agent requests are exempt: they are
//! signed with their node's key, which no web page holds, and a fleet must keep reporting
//! whatever name its agents were given.
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

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;

use axum::extract::{Request, State};
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
    /// The `Host` is not one this Command Center answers to.
    #[error(
        "this Command Center does not answer to the host {host:?} (a protection against DNS rebinding); if that is its name, start it with --allowed-host {host}"
    )]
    Host { host: String },
    /// No `Host` at all.
    #[error("the request names no host (no Host header)")]
    NoHost,
    /// Admin routes without authentication, reached through Cloudflare.
    #[error(
        "this Command Center has no admin authentication (neither Cloudflare Access nor --admin-token), which is safe on loopback only, but this request came through Cloudflare (its {header} header): configure Cloudflare Access (--access-team-domain, --access-aud) or --admin-token"
    )]
    Unauthenticated { header: &'static str },
}

impl Refused {
    pub fn status(&self) -> StatusCode {
        match self {
            Refused::CrossSite { .. } | Refused::Unauthenticated { .. } => StatusCode::FORBIDDEN,
            Refused::Host { .. } => StatusCode::MISDIRECTED_REQUEST,
            Refused::NoHost => StatusCode::BAD_REQUEST,
        }
    }

    /// The `reason` of the metrics and of the refusal log.
    pub fn reason(&self) -> &'static str {
        match self {
            Refused::CrossSite { .. } => "cross_site",
            Refused::Host { .. } | Refused::NoHost => "misdirected",
            Refused::Unauthenticated { .. } => "unauthenticated_tunnel",
        }
    }
}

impl From<Refused> for ApiError {
    fn from(r: Refused) -> Self {
        ApiError::Guard(r)
    }
}

/// A host name with an optional port: an `--allowed-host` entry, or what a `Host` header names.
/// Names compare without case and without a trailing dot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostName {
    /// Lowercase; an IPv6 address keeps its brackets (`[::1]`).
    name: String,
    port: Option<u16>,
}

impl HostName {
    fn new(name: &str, port: Option<u16>) -> HostName {
        HostName {
            name: name.trim_end_matches('.').to_ascii_lowercase(),
            port,
        }
    }

    /// Whether a request naming `host` is for this entry: the same name, and the same port
    /// unless this entry names none (a `Host` without a port means 80, the Command Center
    /// speaking plain HTTP).
    fn matches(&self, host: &HostName) -> bool {
        self.name == host.name && self.port.is_none_or(|p| p == host.port.unwrap_or(80))
    }
}

impl fmt::Display for HostName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(p) => write!(f, "{}:{p}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

impl FromStr for HostName {
    type Err = String;

    /// `cc.example.com`, `cc.example.com:8443`, `192.0.2.7:8088`, `[2001:db8::7]:8088`.
    fn from_str(s: &str) -> Result<HostName, String> {
        let s = s.trim();
        if s.contains("://") || s.contains('/') {
            return Err(format!(
                "{s:?} is a URL; give the host name only (e.g. cc.example.com, or cc.example.com:8443)"
            ));
        }
        let (name, port) = match s.strip_prefix('[') {
            Some(rest) => {
                let (addr, after) = rest
                    .split_once(']')
                    .ok_or_else(|| format!("{s:?}: an IPv6 address needs its closing ']'"))?;
                addr.parse::<std::net::Ipv6Addr>()
                    .map_err(|e| format!("{s:?}: not an IPv6 address: {e}"))?;
                let port = match after {
                    "" => None,
                    p => Some(p.strip_prefix(':').ok_or_else(|| {
                        format!("{s:?}: write [ADDRESS]:PORT for an IPv6 address with a port")
                    })?),
                };
                (&s[..addr.len() + 2], port)
            }
            None => match s.rsplit_once(':') {
                Some((name, port)) => (name, Some(port)),
                None => (s, None),
            },
        };
        let port = port
            .map(|p| {
                p.parse::<u16>()
                    .map_err(|_| format!("{s:?}: {p:?} is not a port number"))
            })
            .transpose()?;
        let plain = name.trim_end_matches('.');
        let valid = name.starts_with('[')
            || (!plain.is_empty()
                && plain.len() <= 253
                && plain
                    .split('.')
                    .all(|label| !label.is_empty() && label.len() <= 63)
                && plain
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.'));
        if !valid {
            return Err(format!(
                "{s:?} is not a host name (letters, digits, '-' and '.', e.g. cc.example.com)"
            ));
        }
        Ok(HostName::new(name, port))
    }
}

impl HostName {
    /// The host of `url` (`https://cc.example.com/` → `cc.example.com`, any port;
    /// `http://cc.lan:8088` → `cc.lan:8088`), if it has one.
    pub fn of_url(url: &str) -> Option<HostName> {
        let url = reqwest::Url::parse(url).ok()?;
        let name = url.host_str()?;
        Some(HostName::new(name, url.port()))
    }
}

/// The loopback names, answered on the listen port whatever else is configured.
const LOOPBACK: [&str; 3] = ["localhost", "127.0.0.1", "[::1]"];

/// The host names admin requests may name: the listen address, `localhost`, `127.0.0.1` and
/// `[::1]` with the listen port, and the configured ones.
#[derive(Debug, Clone)]
pub struct AllowedHosts {
    all: Vec<HostName>,
    /// How many of `all` were configured (`--allowed-host`, the console URL), after the
    /// loopback names.
    configured: usize,
}

impl AllowedHosts {
    /// For a server listening on `listen` (its actual port) with `configured` extra names:
    /// the `--allowed-host` entries and the public name (the notifications' `console_url`).
    pub fn new(listen: SocketAddr, configured: &[HostName]) -> AllowedHosts {
        let port = Some(listen.port());
        let mut all: Vec<HostName> = LOOPBACK.iter().map(|n| HostName::new(n, port)).collect();
        if !listen.ip().is_unspecified() {
            let ip = match listen {
                SocketAddr::V4(a) => a.ip().to_string(),
                SocketAddr::V6(a) => format!("[{}]", a.ip()),
            };
            let listen = HostName::new(&ip, port);
            if !all.contains(&listen) {
                all.push(listen);
            }
        }
        let defaults = all.len();
        for h in configured {
            if !all.contains(h) {
                all.push(h.clone());
            }
        }
        AllowedHosts {
            configured: all.len() - defaults,
            all,
        }
    }

    /// Whether the `Host` value `host` is one of them.
    pub fn allows(&self, host: &str) -> bool {
        host.parse::<HostName>()
            .is_ok_and(|h| self.all.iter().any(|a| a.matches(&h)))
    }

    /// Whether a name other than a loopback one was configured (a public hostname).
    pub fn has_public(&self) -> bool {
        self.all[self.all.len() - self.configured..]
            .iter()
            .any(|h| !LOOPBACK.contains(&h.name.as_str()))
    }

    /// Every entry, as configured (`localhost:8088`, `cc.example.com`).
    pub fn names(&self) -> Vec<String> {
        self.all.iter().map(ToString::to_string).collect()
    }
}

/// The host a request names: its `Host` header, else the authority of its URI (HTTP/2).
fn request_host(req: &Request) -> Option<String> {
    match req.headers().get(header::HOST) {
        Some(v) => Some(String::from_utf8_lossy(v.as_bytes()).into_owned()),
        None => req.uri().authority().map(|a| a.as_str().to_string()),
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

/// Cloudflare's request headers: any of them means the request came through Cloudflare's
/// edge (a tunnel), never straight from this host. `Cdn-Loop` counts when it names Cloudflare.
const CLOUDFLARE_HEADERS: [&str; 6] = [
    "cf-connecting-ip",
    "cf-ray",
    "cf-visitor",
    "cf-ipcountry",
    "cf-warp-tag-id",
    "cf-access-jwt-assertion",
];

/// The first header that shows a request came through Cloudflare, if one does.
pub fn through_cloudflare(headers: &HeaderMap) -> Option<&'static str> {
    if let Some(h) = CLOUDFLARE_HEADERS
        .iter()
        .find(|h| headers.contains_key(**h))
    {
        return Some(h);
    }
    headers
        .get_all("cdn-loop")
        .iter()
        .any(|v| {
            String::from_utf8_lossy(v.as_bytes())
                .to_ascii_lowercase()
                .contains("cloudflare")
        })
        .then_some("cdn-loop")
}

/// The layer: the host of admin requests, then the site of writes. Its state is the allowed
/// hosts (the server's state provides them through `FromRef`).
pub async fn check(
    State(hosts): State<Arc<AllowedHosts>>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let path = req.uri().path();
    if !crate::access::is_public(path) || crate::oidc::is_sign_in(path) {
        let host = request_host(&req).ok_or(Refused::NoHost)?;
        if !hosts.allows(&host) {
            return Err(Refused::Host {
                host: quoted(&host),
            }
            .into());
        }
    }
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

    fn hosts(extra: &[&str]) -> AllowedHosts {
        let extra: Vec<HostName> = extra.iter().map(|h| h.parse().unwrap()).collect();
        AllowedHosts::new("127.0.0.1:8088".parse().unwrap(), &extra)
    }

    #[test]
    fn the_defaults_are_the_loopback_names_with_the_listen_port() {
        let h = hosts(&[]);
        assert_eq!(
            h.names(),
            ["localhost:8088", "127.0.0.1:8088", "[::1]:8088"]
        );
        let other = AllowedHosts::new("192.0.2.7:8088".parse().unwrap(), &[]);
        assert!(other.allows("192.0.2.7:8088"), "the listen address");
        for ok in [
            "127.0.0.1:8088",
            "localhost:8088",
            "LOCALHOST:8088",
            "localhost.:8088",
            "[::1]:8088",
        ] {
            assert!(h.allows(ok), "{ok}");
        }
        for refused in [
            "evil.example:8088",
            "localhost:9999",
            "localhost",
            "127.0.0.2:8088",
            "localhost.evil.example:8088",
            "",
            "user@localhost:8088",
        ] {
            assert!(!h.allows(refused), "{refused}");
        }
        let any = AllowedHosts::new("0.0.0.0:80".parse().unwrap(), &[]);
        assert!(any.allows("localhost"), "no port is port 80");
        assert!(
            !any.allows("0.0.0.0:80"),
            "an unspecified address is no name"
        );
    }

    #[test]
    fn a_configured_name_without_a_port_matches_any_port() {
        let h = hosts(&["cc.example.com", "admin.example.com:8443"]);
        assert!(h.allows("cc.example.com"));
        assert!(h.allows("CC.Example.com:443"));
        assert!(h.allows("admin.example.com:8443"));
        assert!(!h.allows("admin.example.com"));
        assert!(!h.allows("example.com"));
    }

    #[test]
    fn the_public_name_comes_from_the_console_url() {
        let of = |u: &str| HostName::of_url(u).map(|h| h.to_string());
        assert_eq!(
            of("https://CC.example.com/").as_deref(),
            Some("cc.example.com")
        );
        assert_eq!(
            of("https://cc.example.com:443/x").as_deref(),
            Some("cc.example.com")
        );
        assert_eq!(of("http://cc.lan:8088").as_deref(), Some("cc.lan:8088"));
        assert_eq!(of("http://[::1]:9000").as_deref(), Some("[::1]:9000"));
        assert_eq!(of("not a url"), None);
        let public = |names: &[&str]| hosts(names).has_public();
        assert!(!public(&[]));
        assert!(
            !public(&["localhost:9000", "127.0.0.1:8088"]),
            "loopback is not public"
        );
        assert!(public(&["localhost:9000", "cc.example.com"]));
    }

    #[test]
    fn bad_entries_say_what_to_write() {
        for (bad, says) in [
            ("https://cc.example.com", "give the host name only"),
            ("cc.example.com/console", "give the host name only"),
            ("cc.example.com:http", "not a port number"),
            ("cc.example.com:99999", "not a port number"),
            ("[::1", "closing ']'"),
            ("[nope]:80", "not an IPv6 address"),
            ("cc_example.com", "not a host name"),
            ("", "not a host name"),
            ("a..b", "not a host name"),
        ] {
            let e = bad.parse::<HostName>().unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
        assert_eq!(
            "[2001:DB8::7]:8088"
                .parse::<HostName>()
                .unwrap()
                .to_string(),
            "[2001:db8::7]:8088"
        );
    }

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

    #[test]
    fn cloudflare_is_recognised_by_its_headers() {
        let with = |k: &'static str, v: &str| {
            let mut h = HeaderMap::new();
            h.insert(k, v.parse().unwrap());
            h
        };
        assert_eq!(through_cloudflare(&HeaderMap::new()), None);
        assert_eq!(
            through_cloudflare(&with("cf-ray", "8f1a-LHR")),
            Some("cf-ray")
        );
        assert_eq!(
            through_cloudflare(&with("cdn-loop", "cloudflare; loops=1")),
            Some("cdn-loop")
        );
        assert_eq!(through_cloudflare(&with("cdn-loop", "Fastly")), None);
        assert_eq!(
            through_cloudflare(&with("x-forwarded-for", "192.0.2.1")),
            None
        );
    }
}
