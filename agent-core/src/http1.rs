//! The agent's HTTP/1.1 client: hyper's `client::conn::http1` over TCP, or over tokio-rustls
//! for `https://`, with what the agent needs of a client and nothing more (it replaced reqwest
//! to make the shipped binary smaller; docs/PERFORMANCE.md).
//!
//! - **Timeouts**: a connect timeout (name resolution, TCP, the proxy's tunnel and TLS), and a
//!   request timeout from the start of the request until the last byte of its reply's body.
//! - **No redirects**: a `3xx` is a reply like any other (a redirect could carry node data to
//!   another host).
//! - **TLS**: rustls with ring, certificates verified by `rustls-platform-verifier` (on Linux:
//!   the system's CA store, `SSL_CERT_FILE` / `SSL_CERT_DIR`), ALPN `http/1.1`.
//! - **Proxies**: `HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY` and `NO_PROXY` (and their lower-case
//!   forms) from the environment, read once when the client is built, with the rules of
//!   hyper-util's proxy matcher (the ones reqwest applies): a plain `http://` request goes to
//!   the proxy in absolute form, an `https://` one through an HTTP `CONNECT` tunnel; a user
//!   and password in the proxy's URL become a `Proxy-Authorization: Basic` header. A client
//!   built with [`Builder::no_proxy`] always connects directly.
//! - **Keep-alive**: a connection whose reply was read to its end goes back to an idle list per
//!   peer (scheme, host, port; at most `IDLE_PER_PEER`, 2) and carries the next request if it
//!   has been idle for less than [`IDLE_LIMIT`] (90 s); one the server has closed, or idle
//!   longer, is dropped and a new one opened. A request a reused connection could not send is
//!   sent again on a fresh one. Every connection has TCP keepalive (`KEEPALIVE`, 15 s).
//! - **Bounded reads** are the caller's ([`crate::client::read_body`]); [`Response::chunk`]
//!   returns the body as it arrives.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::client::proxy::matcher::{Intercept, Matcher};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0:?} is not a URL the agent can request ({1})")]
    Url(String, String),
    #[error("operation timed out")]
    Timeout,
    #[error("cannot connect to {0}")]
    Connect(String, #[source] std::io::Error),
    #[error("TLS handshake with {0} failed")]
    Tls(String, #[source] std::io::Error),
    #[error("proxy {0}: {1}")]
    Proxy(String, String),
    #[error("HTTP exchange failed")]
    Http(#[from] hyper::Error),
}

impl Error {
    /// A request over its time, or a connection no address of the peer answered in time.
    pub fn is_timeout(&self) -> bool {
        match self {
            Error::Timeout => true,
            Error::Connect(_, e) => e.kind() == std::io::ErrorKind::TimedOut,
            _ => false,
        }
    }
}

/// How a [`Client`] is built ([`crate::client::http_client_builder`]).
#[derive(Debug)]
pub struct Builder {
    timeout: Duration,
    connect_timeout: Duration,
    headers: HeaderMap,
    proxy: bool,
    idle_limit: Duration,
}

impl Builder {
    pub fn new(timeout: Duration, connect_timeout: Duration) -> Builder {
        Builder {
            timeout,
            connect_timeout,
            headers: HeaderMap::new(),
            proxy: true,
            idle_limit: IDLE_LIMIT,
        }
    }

    /// How long an idle connection is kept for the next request ([`IDLE_LIMIT`]).
    pub fn idle_limit(mut self, limit: Duration) -> Builder {
        self.idle_limit = limit;
        self
    }

    /// Headers sent with every request (a request's own headers of the same name win).
    pub fn default_headers(mut self, headers: HeaderMap) -> Builder {
        self.headers.extend(headers);
        self
    }

    pub fn user_agent(mut self, ua: &'static str) -> Builder {
        self.headers
            .insert(header::USER_AGENT, HeaderValue::from_static(ua));
        self
    }

    /// Connect directly, whatever the environment's proxy settings.
    pub fn no_proxy(mut self) -> Builder {
        self.proxy = false;
        self
    }

    pub fn build(self) -> Result<Client, rustls::Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls_platform_verifier::Verifier::new(provider.clone())?;
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let mut headers = self.headers;
        headers
            .entry(header::ACCEPT)
            .or_insert(HeaderValue::from_static("*/*"));
        Ok(Client {
            inner: Arc::new(Inner {
                timeout: self.timeout,
                connect_timeout: self.connect_timeout,
                headers,
                proxy: self.proxy.then(Matcher::from_env),
                idle_limit: self.idle_limit,
                tls: tokio_rustls::TlsConnector::from(Arc::new(tls)),
                idle: Mutex::default(),
            }),
        })
    }
}

/// An HTTP/1.1 client; clones share their settings and idle connections.
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    timeout: Duration,
    connect_timeout: Duration,
    headers: HeaderMap,
    proxy: Option<Matcher>,
    tls: tokio_rustls::TlsConnector,
    idle_limit: Duration,
    /// Idle connections by peer (`scheme://authority`), with when each went idle.
    idle: Mutex<HashMap<String, Vec<(Instant, Sender)>>>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("idle_limit", &self.idle_limit)
            .field("headers", &self.headers)
            // Not the matcher itself: a proxy URL may hold a password.
            .field("proxy", &self.proxy.is_some())
            .finish_non_exhaustive()
    }
}

type Sender = SendRequest<Full<Bytes>>;

/// Idle connections kept per peer: the agent's heartbeat and its command long-poll.
const IDLE_PER_PEER: usize = 2;

/// How long an idle connection is kept (reqwest's 90 s): under the Command Center's 120 s idle
/// timeout, so a heartbeat is not sent on a connection the server is closing at that moment
/// (a request already written there cannot be retried), and no connection a NAT or firewall
/// forgot is used again.
pub const IDLE_LIMIT: Duration = Duration::from_secs(90);

/// TCP keepalive on every connection (reqwest's: first probe after 15 s idle, then every
/// 15 s): a peer that vanished is noticed, and NAT state stays while a long-poll waits.
const KEEPALIVE: Duration = Duration::from_secs(15);

/// Largest proxy reply to a `CONNECT` read.
const CONNECT_REPLY_MAX: usize = 8 * 1024;

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}
type BoxIo = Box<dyn Io>;

/// A reply: its status and headers; the body comes with [`Response::chunk`].
#[derive(Debug)]
pub struct Response {
    status: StatusCode,
    headers: HeaderMap,
    body: Incoming,
    deadline: Instant,
    /// The connection, back to the idle list once the body is read to its end.
    reuse: Option<(Arc<Inner>, String, Sender)>,
}

impl Response {
    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The `Content-Length` the reply announced, if any.
    pub fn content_length(&self) -> Option<u64> {
        hyper::body::Body::size_hint(&self.body).exact()
    }

    /// The next piece of the body, `None` at its end; the request's timeout applies.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, Error> {
        loop {
            let frame = tokio::time::timeout_at(self.deadline, self.body.frame())
                .await
                .map_err(|_| Error::Timeout)?;
            match frame {
                None => {
                    if let Some((inner, key, sender)) = self.reuse.take() {
                        inner.put_idle(key, sender);
                    }
                    return Ok(None);
                }
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data()
                        && !data.is_empty()
                    {
                        return Ok(Some(data));
                    }
                }
                Some(Err(e)) => return Err(Error::Http(e)),
            }
        }
    }
}

impl Inner {
    fn put_idle(&self, key: String, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        let now = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.entry(key).or_default();
        list.retain(|(since, s)| !s.is_closed() && now.duration_since(*since) < self.idle_limit);
        if list.len() < IDLE_PER_PEER {
            list.push((now, sender));
        }
    }

    /// The most recently used idle connection to `key` that is open and idle for less than
    /// the idle limit; older ones are dropped (closed).
    fn take_idle(&self, key: &str) -> Option<Sender> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.get_mut(key)?;
        while let Some((since, s)) = list.pop() {
            if !s.is_closed() && since.elapsed() < self.idle_limit {
                return Some(s);
            }
        }
        None
    }
}

/// The host (IPv6 without brackets) and port of `uri`.
fn host_port(uri: &Uri) -> Option<(&str, u16)> {
    let host = uri.host()?;
    let https = uri.scheme_str() == Some("https");
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    Some((host.trim_start_matches('[').trim_end_matches(']'), port))
}

impl Client {
    /// Sends `method url` with `headers` (on top of the client's) and `body`; `timeout`
    /// overrides the client's request timeout. The reply's body is read with
    /// [`Response::chunk`] before that timeout too.
    pub async fn request(
        &self,
        method: Method,
        url: &str,
        headers: HeaderMap,
        body: Vec<u8>,
        timeout: Option<Duration>,
    ) -> Result<Response, Error> {
        let deadline = Instant::now() + timeout.unwrap_or(self.inner.timeout);
        let uri: Uri = url
            .parse()
            .map_err(|e: http::uri::InvalidUri| Error::Url(url.to_string(), e.to_string()))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => {
                return Err(Error::Url(
                    url.to_string(),
                    "not http:// or https://".into(),
                ));
            }
        };
        let Some(authority) = uri.authority().cloned() else {
            return Err(Error::Url(url.to_string(), "no host".into()));
        };
        let key = format!("{}://{authority}", if https { "https" } else { "http" });
        let proxy = self.inner.proxy.as_ref().and_then(|m| m.intercept(&uri));
        // Through a proxy, plain http goes in absolute form; otherwise the path and query.
        let target = match (&proxy, https) {
            (Some(_), false) => uri.clone(),
            _ => uri
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .parse()
                .map_err(|e: http::uri::InvalidUri| Error::Url(url.to_string(), e.to_string()))?,
        };
        let mut req = Request::builder()
            .method(method)
            .uri(target)
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| Error::Url(url.to_string(), e.to_string()))?;
        let h = req.headers_mut();
        h.insert(
            header::HOST,
            HeaderValue::from_str(authority.as_str())
                .map_err(|e| Error::Url(url.to_string(), e.to_string()))?,
        );
        for (name, value) in &self.inner.headers {
            h.insert(name.clone(), value.clone());
        }
        h.extend(headers);
        if let (Some(p), false) = (&proxy, https)
            && let Some(auth) = p.basic_auth()
        {
            h.insert(header::PROXY_AUTHORIZATION, auth.clone());
        }
        let exchange = async {
            let mut req = req;
            while let Some(mut sender) = self.inner.take_idle(&key) {
                if sender.ready().await.is_err() {
                    continue;
                }
                match sender.try_send_request(req).await {
                    Ok(resp) => return Ok((resp, sender)),
                    Err(mut e) => match e.take_message() {
                        // Not sent (the server closed the connection first): a fresh one.
                        Some(back) => req = back,
                        None => return Err(Error::Http(e.into_error())),
                    },
                }
            }
            let mut sender = tokio::time::timeout(
                self.inner.connect_timeout,
                self.connect(&uri, https, proxy.as_ref()),
            )
            .await
            .map_err(|_| Error::Timeout)??;
            let resp = sender.send_request(req).await?;
            Ok((resp, sender))
        };
        let (resp, sender) = tokio::time::timeout_at(deadline, exchange)
            .await
            .map_err(|_| Error::Timeout)??;
        let (parts, body) = resp.into_parts();
        Ok(Response {
            status: parts.status,
            headers: parts.headers,
            body,
            deadline,
            reuse: Some((self.inner.clone(), key, sender)),
        })
    }

    /// `GET url` with the client's headers and timeout.
    pub async fn get(&self, url: &str) -> Result<Response, Error> {
        self.request(Method::GET, url, HeaderMap::new(), Vec::new(), None)
            .await
    }

    /// A new connection to `uri`'s peer, through `proxy` if any.
    async fn connect(
        &self,
        uri: &Uri,
        https: bool,
        proxy: Option<&Intercept>,
    ) -> Result<Sender, Error> {
        let Some((host, port)) = host_port(uri) else {
            return Err(Error::Url(uri.to_string(), "no host".into()));
        };
        let mut io: BoxIo = match proxy {
            None => Box::new(tcp(host, port, self.inner.connect_timeout).await?),
            Some(p) => {
                // The proxy as errors name it: without a user and password.
                let shown = p
                    .uri()
                    .authority()
                    .map_or("?", |a| a.as_str().rsplit('@').next().unwrap_or("?"))
                    .to_string();
                let Some((phost, pport)) = host_port(p.uri()) else {
                    return Err(Error::Proxy(shown, "has no host".into()));
                };
                let stream = tcp(phost, pport, self.inner.connect_timeout).await?;
                let mut io: BoxIo = match p.uri().scheme_str() {
                    Some("http") | None => Box::new(stream),
                    Some("https") => Box::new(self.tls(phost, stream).await?),
                    Some(other) => {
                        return Err(Error::Proxy(
                            shown,
                            format!("{other}:// proxies are not supported (http:// or https://)"),
                        ));
                    }
                };
                if https {
                    let agent = self.inner.headers.get(header::USER_AGENT);
                    io = tunnel(io, uri, p.basic_auth(), agent, &shown).await?;
                }
                io
            }
        };
        if https {
            io = Box::new(self.tls(host, io).await?);
        }
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
        // The connection's task; it ends when the peer closes or every sender is dropped.
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }

    async fn tls<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        host: &str,
        io: S,
    ) -> Result<tokio_rustls::client::TlsStream<S>, Error> {
        let name = rustls::pki_types::ServerName::try_from(host.to_string()).map_err(|e| {
            Error::Tls(
                host.to_string(),
                std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
            )
        })?;
        self.inner
            .tls
            .connect(name, io)
            .await
            .map_err(|e| Error::Tls(host.to_string(), e))
    }
}

/// A TCP connection to `host:port`, trying each address it resolves to in turn. Each gets an
/// equal share of `budget` (the connect timeout), so an address that swallows packets (an IPv6
/// route to nowhere) leaves time for the next. (reqwest's happy eyeballs tried the other
/// family in parallel after 300 ms; here a black-holed first address costs its share.)
async fn tcp(host: &str, port: u16, budget: Duration) -> Result<tokio::net::TcpStream, Error> {
    use std::io::{Error as IoError, ErrorKind};
    let peer = format!("{host}:{port}");
    let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| Error::Connect(peer.clone(), e))?
        .collect();
    let share = budget / u32::try_from(addrs.len().max(1)).unwrap_or(u32::MAX);
    let mut last = IoError::new(ErrorKind::NotFound, "the name resolved to no address");
    for addr in addrs {
        match tokio::time::timeout(share, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                let keepalive = socket2::TcpKeepalive::new()
                    .with_time(KEEPALIVE)
                    .with_interval(KEEPALIVE);
                let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive);
                return Ok(stream);
            }
            Ok(Err(e)) => last = e,
            Err(_) => {
                last = IoError::new(
                    ErrorKind::TimedOut,
                    format!("{addr} did not answer within {} ms", share.as_millis()),
                )
            }
        }
    }
    Err(Error::Connect(peer, last))
}

/// Asks the proxy on `io` for a tunnel to `uri`'s host and port (`CONNECT`).
async fn tunnel(
    mut io: BoxIo,
    uri: &Uri,
    auth: Option<&HeaderValue>,
    agent: Option<&HeaderValue>,
    shown: &str,
) -> Result<BoxIo, Error> {
    let proxy_err = |why: String| Error::Proxy(shown.to_string(), why);
    let host = uri.host().unwrap_or_default();
    let port = uri.port_u16().unwrap_or(443);
    let mut head = format!("CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n");
    // A proxy that filters or logs by client sees the agent name itself, as on its requests.
    if let Some(agent) = agent.and_then(|a| a.to_str().ok()) {
        head.push_str(&format!("User-Agent: {agent}\r\n"));
    }
    if let Some(auth) = auth.and_then(|a| a.to_str().ok()) {
        head.push_str(&format!("Proxy-Authorization: {auth}\r\n"));
    }
    head.push_str("\r\n");
    io.write_all(head.as_bytes())
        .await
        .map_err(|e| proxy_err(format!("cannot send CONNECT ({e})")))?;
    let mut reply = Vec::with_capacity(256);
    let mut byte = [0u8; 1];
    // Byte by byte: whatever follows the reply's head belongs to the tunnel.
    while !reply.ends_with(b"\r\n\r\n") {
        if reply.len() >= CONNECT_REPLY_MAX {
            return Err(proxy_err(format!(
                "its reply to CONNECT is longer than {CONNECT_REPLY_MAX} bytes"
            )));
        }
        match io.read(&mut byte).await {
            Ok(0) => return Err(proxy_err("closed the connection during CONNECT".into())),
            Ok(_) => reply.push(byte[0]),
            Err(e) => return Err(proxy_err(format!("CONNECT failed ({e})"))),
        }
    }
    let line =
        String::from_utf8_lossy(&reply[..reply.iter().position(|&b| b == b'\r').unwrap_or(0)])
            .chars()
            .filter(|c| !c.is_control())
            .take(120)
            .collect::<String>();
    let status = line.split(' ').nth(1).unwrap_or_default();
    if !(line.starts_with("HTTP/1.") && status.starts_with('2') && status.len() == 3) {
        return Err(proxy_err(format!(
            "refused the tunnel to {host}:{port} ({line:?})"
        )));
    }
    Ok(io)
}

/// A header name for [`Client::request`]'s map.
pub fn name(n: &'static str) -> HeaderName {
    HeaderName::from_static(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn client(timeout: Duration) -> Client {
        Builder::new(timeout, timeout).no_proxy().build().unwrap()
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// Reads one request (head and `content-length` body) from `s`; `None` at EOF.
    fn read_request(s: &mut std::net::TcpStream) -> Option<String> {
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if s.read(&mut b).ok()? == 0 {
                return None;
            }
            head.push(b[0]);
        }
        let head = String::from_utf8(head).ok()?.to_lowercase();
        let len = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .map_or(0, |n| n.trim().parse().unwrap());
        let mut body = vec![0u8; len];
        s.read_exact(&mut body).ok()?;
        Some(head)
    }

    /// A server answering `{}` (by length, then chunked, alternately) that closes the
    /// connection after the third request; counts connections and requests.
    fn server() -> (String, Arc<AtomicUsize>, Arc<Mutex<Vec<String>>>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let conns = Arc::new(AtomicUsize::new(0));
        let heads = Arc::new(Mutex::new(Vec::new()));
        let (c, h) = (conns.clone(), heads.clone());
        std::thread::spawn(move || {
            for s in listener.incoming() {
                let mut s = s.unwrap();
                c.fetch_add(1, Ordering::SeqCst);
                let h = h.clone();
                std::thread::spawn(move || {
                    while let Some(head) = read_request(&mut s) {
                        let n = {
                            let mut h = h.lock().unwrap();
                            h.push(head);
                            h.len()
                        };
                        let reply: &[u8] = match n {
                            3 => b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\n{}",
                            n if n % 2 == 0 => b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
                            _ => b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}",
                        };
                        s.write_all(reply).unwrap();
                        if n == 3 {
                            return;
                        }
                    }
                });
            }
        });
        (url, conns, heads)
    }

    /// `POST {url}/p?i={i}` with a small body; the reply's body.
    fn post(rt: &tokio::runtime::Runtime, c: &Client, url: &str, i: usize) -> Vec<u8> {
        let r = rt
            .block_on(c.request(
                Method::POST,
                &format!("{url}/p?i={i}"),
                HeaderMap::new(),
                b"abc".to_vec(),
                None,
            ))
            .unwrap_or_else(|e| panic!("request {i}: {e}"));
        rt.block_on(body(r))
    }

    async fn body(mut r: Response) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(c) = r.chunk().await.unwrap() {
            out.extend_from_slice(&c);
        }
        out
    }

    #[test]
    fn one_connection_carries_successive_requests_and_a_closed_one_is_replaced() {
        let (url, conns, heads) = server();
        let rt = runtime();
        let c = client(Duration::from_secs(5));
        for i in 0..5 {
            let mut h = HeaderMap::new();
            h.insert(name("x-test"), HeaderValue::from_static("1"));
            let r = rt
                .block_on(c.request(
                    Method::POST,
                    &format!("{url}/p?i={i}"),
                    h,
                    b"abc".to_vec(),
                    None,
                ))
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            assert_eq!(rt.block_on(body(r)), b"{}", "request {i}");
            // The server closed the connection after the third request's reply.
            let want = if i < 3 { 1 } else { 2 };
            assert_eq!(conns.load(Ordering::SeqCst), want, "after request {i}");
        }
        let heads = heads.lock().unwrap();
        assert_eq!(heads.len(), 5);
        let host = url.trim_start_matches("http://");
        assert!(
            heads[0].starts_with("post /p?i=0 http/1.1\r\n"),
            "{}",
            heads[0]
        );
        for h in [
            &format!("host: {host}\r\n"),
            "x-test: 1\r\n",
            "content-length: 3\r\n",
        ] {
            assert!(heads[0].contains(h), "{h}: {}", heads[0]);
        }
    }

    /// A connection idle longer than the idle limit is not used again (the Command Center may
    /// be closing it as the request goes out); one idle for less is.
    #[test]
    fn a_connection_idle_past_the_limit_is_replaced() {
        let (url, conns, _) = server();
        let rt = runtime();
        let c = Builder::new(Duration::from_secs(5), Duration::from_secs(5))
            .no_proxy()
            .idle_limit(Duration::from_millis(150))
            .build()
            .unwrap();
        let get = |i: usize| assert_eq!(post(&rt, &c, &url, i), b"{}", "request {i}");
        get(0);
        get(1);
        assert_eq!(conns.load(Ordering::SeqCst), 1, "reused within the limit");
        std::thread::sleep(Duration::from_millis(400));
        get(2);
        assert_eq!(conns.load(Ordering::SeqCst), 2, "a new one past the limit");
    }

    /// A server that closes an idle connection without saying so (no `connection: close`,
    /// as a proxy or a restarted Command Center may): the next request goes out on a new
    /// connection and succeeds, instead of failing on the dead one.
    #[test]
    fn a_connection_the_server_closed_silently_is_replaced() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let conns = Arc::new(AtomicUsize::new(0));
        let c = conns.clone();
        std::thread::spawn(move || {
            for s in listener.incoming() {
                let mut s = s.unwrap();
                c.fetch_add(1, Ordering::SeqCst);
                // One keep-alive reply, then the socket is closed.
                if read_request(&mut s).is_some() {
                    s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
                        .unwrap();
                }
            }
        });
        let rt = runtime();
        let c = client(Duration::from_secs(5));
        for i in 0..3 {
            assert_eq!(post(&rt, &c, &url, i), b"{}", "request {i}");
            assert_eq!(conns.load(Ordering::SeqCst), i + 1, "after request {i}");
            // The close reaches the idle connection before the next request.
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    #[test]
    fn connections_have_tcp_keepalive() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stream = runtime()
            .block_on(tcp("127.0.0.1", port, Duration::from_secs(5)))
            .unwrap();
        let sock = socket2::SockRef::from(&stream);
        assert!(sock.keepalive().unwrap());
        assert_eq!(sock.tcp_keepalive_time().unwrap(), KEEPALIVE);
        assert_eq!(sock.tcp_keepalive_interval().unwrap(), KEEPALIVE);
    }

    #[test]
    fn a_redirect_is_a_reply_not_followed() {
        let elsewhere = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        elsewhere.set_nonblocking(true).unwrap();
        let location = format!("http://{}/steal", elsewhere.local_addr().unwrap());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            read_request(&mut s);
            let reply = format!(
                "HTTP/1.1 307 Temporary Redirect\r\nlocation: {location}\r\ncontent-length: 0\r\n\r\n"
            );
            s.write_all(reply.as_bytes()).unwrap();
            std::thread::sleep(Duration::from_secs(1));
        });
        let rt = runtime();
        let c = client(Duration::from_secs(5));
        let r = rt
            .block_on(c.request(
                Method::POST,
                &url,
                HeaderMap::new(),
                b"node data".to_vec(),
                None,
            ))
            .unwrap();
        assert_eq!(r.status().as_u16(), 307);
        assert!(rt.block_on(body(r)).is_empty());
        assert!(
            elsewhere.accept().is_err(),
            "nothing went to the redirect's target"
        );
    }

    #[test]
    fn the_request_timeout_covers_the_reply_and_its_body() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            // First connection: never answers. Second: half a body, then nothing.
            let (mut silent, _) = listener.accept().unwrap();
            read_request(&mut silent);
            let (mut s, _) = listener.accept().unwrap();
            read_request(&mut s);
            s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n{}")
                .unwrap();
            std::thread::sleep(Duration::from_secs(5));
            drop(silent);
        });
        let rt = runtime();
        let c = client(Duration::from_millis(300));
        let start = std::time::Instant::now();
        let err = rt.block_on(c.get(&url)).unwrap_err();
        assert!(err.is_timeout(), "{err}");
        let mut r = rt.block_on(c.get(&url)).unwrap();
        assert_eq!(r.content_length(), Some(10));
        assert_eq!(rt.block_on(r.chunk()).unwrap().as_deref(), Some(&b"{}"[..]));
        let err = rt.block_on(r.chunk()).unwrap_err();
        assert!(err.is_timeout(), "{err}");
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn every_address_of_a_name_is_tried() {
        // `localhost` may resolve to ::1 first; only 127.0.0.1 listens.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            read_request(&mut s);
            s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
                .unwrap();
        });
        let rt = runtime();
        let r = rt
            .block_on(client(Duration::from_secs(5)).get(&format!("http://localhost:{port}/")))
            .unwrap();
        assert_eq!(rt.block_on(body(r)), b"{}");
    }

    #[test]
    fn a_refused_connection_names_the_peer_and_the_reason() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let err = runtime()
            .block_on(client(Duration::from_secs(2)).get(&format!("http://127.0.0.1:{port}/ready")))
            .unwrap_err();
        let chain = vaultmesh_process::error_chain(&err);
        assert!(
            chain.starts_with(&format!(
                "cannot connect to 127.0.0.1:{port}: Connection refused"
            )),
            "{chain}"
        );
        for bad in ["ftp://x/", "nope", "http:///x"] {
            let err = runtime()
                .block_on(client(Duration::from_secs(2)).get(bad))
                .unwrap_err();
            assert!(matches!(err, Error::Url(..)), "{bad}: {err}");
        }
    }
}
