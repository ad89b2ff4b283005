//! The listener: accepts TCP connections and serves HTTP/1.1 on each within bounds, so clients
//! that are idle, slow or stalled cannot use up the process's open files (issue 21 item 2).
//!
//! - **A bound.** At most `--max-connections` connections are served at once. A new connection
//!   beyond it closes the connection that has waited longest for a request — one that sent
//!   nothing, half a request head, or nothing since its last response — and takes its place. When
//!   every connection is busy (a request in progress, an event stream), the newcomer gets `503`
//!   with a JSON error and is closed. So `accept` never stops, and a burst of idle connections
//!   cannot lock out `/healthz` or the agents. Event streams are bounded below the connection
//!   bound ([`crate::sse::StreamLimits`]), so they never fill it.
//! - **A header timeout.** A connection must send a whole request head within `--header-timeout`
//!   of connecting, and, once a request head has begun, within `--header-timeout` of its first
//!   byte; otherwise it is closed.
//! - **An idle timeout.** A keep-alive connection that sends nothing for `--idle-timeout` after
//!   its previous response is closed. The default outlasts the idle timeout of cloudflared's
//!   pool of connections to its origin (`keepAliveTimeout`, 90 s), so behind the tunnel it is
//!   cloudflared that closes idle connections, never the Command Center under a request that
//!   cloudflared has just sent on one.
//! - **A write timeout.** A connection whose client stops reading — a response or an event
//!   stream that cannot be written for `--write-timeout` — is closed.
//! - **Open files.** The process's open-file limit must hold the bound and
//!   [`FD_RESERVE`] files for everything else; [`ensure_open_files`] raises the soft limit as far
//!   as needed (up to the hard limit) or refuses to start, naming the flag and the limit.
//!
//! A request body that arrives too slowly is bounded by `--body-timeout`, the bytes of all
//! bodies by `--body-memory`, and a handler that takes too long by `--request-timeout`
//! ([`crate::timeout`]); a signed request is refused on its headers before its body is read
//! ([`crate::agent_auth::Signed`]). So a connection is busy with a stalled body for at most
//! `--body-timeout`.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use prometheus::IntCounterVec;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// Default of `--max-connections`: with [`FD_RESERVE`], 16,384 open files, the units'
/// `LimitNOFILE=`. Each agent keeps one long-poll open, so this holds a fleet of 10,000 nodes
/// (the default `--max-nodes`), the event streams and room for the rest.
pub const DEFAULT_MAX_CONNECTIONS: usize = 16_256;

/// Open files kept for everything but client connections: the logs and the ledger (about a
/// dozen), the listener, the runtime's epoll and event fds, PostgreSQL, outbound HTTPS (Access
/// certificates, notifiers) and SMTP, connections refused at the bound while they are answered
/// ([`LINGERING_REFUSALS`]), and room. A Command Center with no client uses about 20.
pub const FD_RESERVE: u64 = 128;

/// Connections refused at the bound that may be held at once while their `503` is written and
/// the rest of their request read (so the client sees the answer, not a reset). Beyond, a
/// refused connection is closed at once.
pub const LINGERING_REFUSALS: usize = 64;

/// How long `accept` waits at most for a connection closed to make room to be gone.
const EVICTION_WAIT: Duration = Duration::from_secs(1);

/// How long a refused connection is held for its `503` to be read.
const LINGER: Duration = Duration::from_secs(1);

/// Largest buffer hyper keeps per connection (read or write); the least it accepts is 8 KiB.
/// Bounds what a client that stops reading can make the process hold: request heads are far
/// smaller (an Access token is about 1 KiB), and bodies are streamed.
const MAX_BUF: usize = 64 * 1024;

/// The connection bounds and timeouts (`serve` flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Args)]
pub struct ConnLimits {
    /// Client connections served at once. Beyond, the connection idle the longest is closed to
    /// make room, or, with every one busy, the new one gets 503. The open-file limit must hold
    /// this plus 128 (LimitNOFILE=; the soft limit is raised as far as the hard one allows).
    #[arg(long, default_value_t = DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,
    /// Close a connection that has not sent a whole request head within this of connecting, or
    /// of the head's first byte.
    #[arg(long, default_value = "10s", value_parser = vaultmesh_process::duration::parse_nonzero)]
    pub header_timeout: Duration,
    /// Close a keep-alive connection that has sent nothing for this long since its previous
    /// response (keep it above cloudflared's keepAliveTimeout, 90 s by default).
    #[arg(long, default_value = "2m", value_parser = vaultmesh_process::duration::parse_nonzero)]
    pub idle_timeout: Duration,
    /// Close a connection whose client has read nothing of a response or event stream for this
    /// long.
    #[arg(long, default_value = "30s", value_parser = vaultmesh_process::duration::parse_nonzero)]
    pub write_timeout: Duration,
}

impl Default for ConnLimits {
    fn default() -> Self {
        vaultmesh_process::cli::defaults()
    }
}

/// Why the open-file limit cannot hold the connection bound.
#[derive(Debug, thiserror::Error)]
pub enum OpenFilesError {
    #[error(
        "--max-connections {max_connections} needs {needed} open files ({FD_RESERVE} more for \
         the logs and the rest), but the limit is {hard} (LimitNOFILE= in the unit, ulimit -n \
         in a shell): raise the limit{fits}"
    )]
    TooLow {
        max_connections: usize,
        needed: u64,
        hard: u64,
        /// What would fit, as advice: ", or lower --max-connections to N".
        fits: String,
    },
    #[error("cannot raise the open-file limit to {needed}: {source}")]
    Raise { needed: u64, source: io::Error },
}

/// Makes sure the open-file limit holds `max_connections` connections and [`FD_RESERVE`]
/// other files: raises the soft limit to what is needed when it is lower (never above the hard
/// limit), and fails when the hard limit is too low. Returns the soft limit in force.
pub fn ensure_open_files(max_connections: usize) -> Result<u64, OpenFilesError> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let needed = u64::try_from(max_connections)
        .unwrap_or(u64::MAX)
        .saturating_add(FD_RESERVE);
    let limit = getrlimit(Resource::Nofile);
    let soft = limit.current.unwrap_or(u64::MAX);
    if soft >= needed {
        return Ok(soft);
    }
    let hard = limit.maximum.unwrap_or(u64::MAX);
    if hard < needed {
        return Err(OpenFilesError::TooLow {
            max_connections,
            needed,
            hard,
            fits: match hard.saturating_sub(FD_RESERVE) {
                0 => String::new(),
                n => format!(", or lower --max-connections to {n}"),
            },
        });
    }
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(needed),
            maximum: limit.maximum,
        },
    )
    .map_err(|e| OpenFilesError::Raise {
        needed,
        source: e.into(),
    })?;
    Ok(needed)
}

/// Counters of connections closed by the listener, by reason (`vaultmesh_connections_closed_total`).
#[derive(Debug, Clone)]
pub struct ConnMetrics {
    pub open: prometheus::IntGauge,
    pub closed: IntCounterVec,
}

impl ConnMetrics {
    fn closed(&self, reason: &str) {
        self.closed.with_label_values(&[reason]).inc();
    }
}

/// The open connections: how many, and which are idle (waiting for a request), oldest first.
#[derive(Debug)]
struct Connections {
    max: usize,
    table: Mutex<Table>,
    /// Woken when the last connection ends.
    empty: tokio::sync::Notify,
    metrics: ConnMetrics,
}

#[derive(Debug, Default)]
struct Table {
    open: usize,
    next_id: u64,
    /// Idle connections by when they became idle.
    idle: BTreeMap<(Instant, u64), Victim>,
}

/// How to close an idle connection to make room, and learn when it has closed.
#[derive(Debug, Clone)]
struct Victim {
    /// Cancelling it closes the connection.
    evict: CancellationToken,
    /// Cancelled once the connection's socket is closed.
    gone: CancellationToken,
}

impl Victim {
    /// Closes the connection; returns what is cancelled once its socket is closed.
    fn evict(self) -> CancellationToken {
        self.evict.cancel();
        self.gone
    }
}

/// One admitted connection's place in [`Connections`]; frees it when dropped.
#[derive(Debug)]
struct Conn {
    id: u64,
    conns: Arc<Connections>,
    /// Cancelled when the connection is closed to make room (it then hands its place over).
    evict: CancellationToken,
    /// Cancelled when it is dropped, after its socket.
    gone: CancellationToken,
    /// What it waits for, and since when.
    wait: Mutex<Wait>,
    /// Woken when `wait` changes, so that the connection's deadline is read again.
    changed: tokio::sync::Notify,
}

/// Where a connection is between requests.
#[derive(Debug, Clone, Copy)]
struct Wait {
    /// Since when it has waited for a request (`None` while one is in progress).
    idle_since: Option<Instant>,
    /// When the first byte of the request head it waits for arrived.
    head_since: Option<Instant>,
    /// Whether a request has arrived on it before (it is then a keep-alive connection).
    served: bool,
}

/// Why a waiting connection is closed when its deadline passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expiry {
    /// Nothing, or not a whole request head, within `--header-timeout`.
    Header,
    /// No new request within `--idle-timeout` of the previous response.
    Idle,
}

impl Expiry {
    /// Its `reason` label on `vaultmesh_connections_closed_total`.
    fn reason(self) -> &'static str {
        match self {
            Expiry::Header => "header_timeout",
            Expiry::Idle => "idle_timeout",
        }
    }
}

impl Wait {
    /// When the wait ends the connection, and why; `None` while a request is in progress.
    fn deadline(&self, limits: &ConnLimits) -> Option<(Instant, Expiry)> {
        let since = self.idle_since?;
        Some(match (self.head_since, self.served) {
            (Some(first_byte), _) => (first_byte + limits.header_timeout, Expiry::Header),
            (None, false) => (since + limits.header_timeout, Expiry::Header),
            (None, true) => (since + limits.idle_timeout, Expiry::Idle),
        })
    }
}

impl Connections {
    fn new(max: usize, metrics: ConnMetrics) -> Arc<Connections> {
        Arc::new(Connections {
            max: max.max(1),
            table: Mutex::new(Table::default()),
            empty: tokio::sync::Notify::new(),
            metrics,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A place for a new connection: a free one, or the one of the longest-idle connection,
    /// which is closed (then also what is cancelled once the latter's socket is closed). `None`
    /// when every connection is busy.
    fn admit(self: &Arc<Self>) -> Option<(Arc<Conn>, Option<CancellationToken>)> {
        let mut t = self.lock();
        let mut evicted = None;
        if t.open >= self.max {
            let (_, victim) = t.idle.pop_first()?;
            // Under the table lock: the victim's drop sees it and leaves the count alone.
            evicted = Some(victim.evict());
            self.metrics.closed("evicted");
        } else {
            t.open += 1;
            self.metrics
                .open
                .set(i64::try_from(t.open).unwrap_or(i64::MAX));
        }
        let id = t.next_id;
        t.next_id += 1;
        let now = Instant::now();
        let conn = Arc::new(Conn {
            id,
            conns: Arc::clone(self),
            evict: CancellationToken::new(),
            gone: CancellationToken::new(),
            wait: Mutex::new(Wait {
                idle_since: Some(now),
                head_since: None,
                served: false,
            }),
            changed: tokio::sync::Notify::new(),
        });
        t.idle.insert((now, id), conn.victim());
        Some((conn, evicted))
    }

    /// Closes the longest-idle connection, if any (when `accept` runs out of files), and
    /// returns what is cancelled once its socket is closed. Its place is freed here: being
    /// evicted, it will not count itself out.
    fn evict_one(&self) -> Option<CancellationToken> {
        let mut t = self.lock();
        let (_, victim) = t.idle.pop_first()?;
        let gone = victim.evict();
        self.metrics.closed("evicted");
        t.open = t.open.saturating_sub(1);
        self.metrics
            .open
            .set(i64::try_from(t.open).unwrap_or(i64::MAX));
        if t.open == 0 {
            self.empty.notify_waiters();
        }
        Some(gone)
    }

    /// Waits until every connection has ended.
    async fn drained(&self) {
        loop {
            let notified = self.empty.notified();
            if self.lock().open == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Conn {
    fn victim(&self) -> Victim {
        Victim {
            evict: self.evict.clone(),
            gone: self.gone.clone(),
        }
    }

    fn wait(&self) -> std::sync::MutexGuard<'_, Wait> {
        self.wait.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A request arrived: the connection is busy until its response has been written.
    fn busy(&self) {
        self.unlist(&mut self.conns.lock());
        self.changed.notify_one();
    }

    /// Takes the connection off the idle list: it no longer waits.
    fn unlist(&self, t: &mut Table) {
        let mut wait = self.wait();
        if let Some(since) = wait.idle_since.take() {
            t.idle.remove(&(since, self.id));
        }
        wait.head_since = None;
        wait.served = true;
    }

    /// The response has been written: the connection waits for the next request.
    fn idle(&self) {
        let mut t = self.conns.lock();
        // Evictions happen under the table lock: one that happened stays seen.
        if self.evict.is_cancelled() {
            return;
        }
        let now = Instant::now();
        let mut wait = self.wait();
        if let Some(old) = wait.idle_since.replace(now) {
            t.idle.remove(&(old, self.id));
        }
        wait.head_since = None;
        t.idle.insert((now, self.id), self.victim());
        drop(wait);
        self.changed.notify_one();
    }

    /// Bytes arrived: while the connection waits, the first of them begin a request head,
    /// which must then be whole within `--header-timeout`.
    fn bytes_arrived(&self) {
        let mut wait = self.wait();
        if wait.idle_since.is_some() && wait.head_since.is_none() {
            wait.head_since = Some(Instant::now());
            drop(wait);
            self.changed.notify_one();
        }
    }

    /// When the connection's wait ends it, and why ([`Wait::deadline`]).
    fn deadline(&self, limits: &ConnLimits) -> Option<(Instant, Expiry)> {
        self.wait().deadline(limits)
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        let mut t = self.conns.lock();
        self.unlist(&mut t);
        // An evicted connection's place was handed on (or freed) when it was evicted.
        if !self.evict.is_cancelled() {
            t.open = t.open.saturating_sub(1);
            self.conns
                .metrics
                .open
                .set(i64::try_from(t.open).unwrap_or(i64::MAX));
            if t.open == 0 {
                self.conns.empty.notify_waiters();
            }
        }
        self.gone.cancel();
    }
}

/// Serves `router` on `listener` until `stop` completes; then stops accepting, lets every
/// connection finish its request in progress (event streams end through their own shutdown
/// token) and returns when all have closed.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnLimits,
    metrics: ConnMetrics,
    stop: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let conns = Connections::new(limits.max_connections, metrics.clone());
    let mut http = hyper::server::conn::http1::Builder::new();
    // The header and idle timeouts are the listener's own (hyper's one timer cannot tell a
    // keep-alive connection's idle time from a slow request head).
    http.header_read_timeout(None)
        .keep_alive(true)
        .max_buf_size(MAX_BUF);
    let http = Arc::new(http);
    let stopping = CancellationToken::new();
    let lingering = Arc::new(tokio::sync::Semaphore::new(LINGERING_REFUSALS));
    let mut out_of_files = OutOfFiles::default();
    tokio::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    accept_failed(&e, &conns, &mut out_of_files).await;
                    continue;
                }
            },
        };
        match conns.admit() {
            Some((conn, evicted)) => {
                tokio::spawn(serve_connection(
                    stream,
                    peer,
                    conn,
                    router.clone(),
                    Arc::clone(&http),
                    limits,
                    metrics.clone(),
                    stopping.clone(),
                ));
                // Accept no more until the connection closed to make room has closed its
                // socket, so that open files stay within the bound under a burst.
                if let Some(gone) = evicted {
                    closed_soon(gone).await;
                }
            }
            None => {
                metrics.closed("refused");
                refuse(stream, limits.max_connections, &lingering);
            }
        }
    }
    drop(listener);
    stopping.cancel();
    conns.drained().await;
    Ok(())
}

/// Waits for an evicted connection's socket to close, at most [`EVICTION_WAIT`].
async fn closed_soon(gone: CancellationToken) {
    let _ = tokio::time::timeout(EVICTION_WAIT, gone.cancelled()).await;
}

/// How often running out of open files is logged at most.
const OUT_OF_FILES_LOG_EVERY: Duration = Duration::from_secs(60);

/// Failures of `accept` for want of open files, logged at most once a minute.
#[derive(Debug, Default)]
struct OutOfFiles {
    last_logged: Option<Instant>,
    since: u64,
}

/// `accept` failed. Per-connection errors (the client already gave up) are ignored; when the
/// process is out of open files, the longest-idle connection is closed to make room.
async fn accept_failed(e: &io::Error, conns: &Connections, out: &mut OutOfFiles) {
    let out_of_files = matches!(e.raw_os_error(), Some(code) if code == rustix::io::Errno::MFILE.raw_os_error() || code == rustix::io::Errno::NFILE.raw_os_error());
    if !out_of_files {
        tracing::debug!(error = %e, "Accept failed.");
        return;
    }
    out.since += 1;
    let now = Instant::now();
    if out
        .last_logged
        .is_none_or(|t| now.duration_since(t) >= OUT_OF_FILES_LOG_EVERY)
    {
        tracing::warn!(
            error = %e,
            times = out.since,
            "Out of open files accepting a connection (closing the one idle the longest): is something else holding files, or LimitNOFILE= below --max-connections + {FD_RESERVE}?"
        );
        out.last_logged = Some(now);
        out.since = 0;
    }
    match conns.evict_one() {
        Some(gone) => closed_soon(gone).await,
        None => tokio::time::sleep(Duration::from_millis(50)).await,
    }
}

#[allow(clippy::too_many_arguments)]
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    conn: Arc<Conn>,
    router: Router,
    http: Arc<hyper::server::conn::http1::Builder>,
    limits: ConnLimits,
    metrics: ConnMetrics,
    stopping: CancellationToken,
) {
    let io = TokioIo::new(ConnIo::new(
        stream,
        Arc::clone(&conn),
        limits.write_timeout,
        metrics.clone(),
    ));
    let service = ConnService {
        router,
        peer,
        conn: Arc::clone(&conn),
    };
    let served = http.serve_connection(io, service);
    tokio::pin!(served);
    let mut shutting_down = false;
    loop {
        let deadline = conn.deadline(&limits);
        let expired = async move {
            match deadline {
                Some((at, _)) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            result = served.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "Connection ended.");
                }
                break;
            }
            () = conn.evict.cancelled() => break,
            () = stopping.cancelled(), if !shutting_down => {
                shutting_down = true;
                served.as_mut().graceful_shutdown();
            }
            // The wait changed (a request, a response, a first byte): read the deadline again.
            () = conn.changed.notified() => {}
            () = expired => {
                // Closed only if the deadline still stands (a change may have raced the timer).
                if let Some((at, why)) = conn.deadline(&limits)
                    && at <= Instant::now()
                {
                    metrics.closed(why.reason());
                    tracing::debug!(%peer, reason = why.reason(), "Connection closed.");
                    break;
                }
            }
        }
    }
}

/// The canned answer at the bound; written before the request is read.
fn refusal(max_connections: usize) -> Vec<u8> {
    let body = serde_json::json!({
        "error": format!(
            "the Command Center is serving its limit of {max_connections} connections (--max-connections), all busy; retry shortly"
        )
    })
    .to_string();
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n\
         cache-control: no-store\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Answers a connection refused at the bound with `503` and closes it. The answer is written
/// at once; the connection is then held up to [`LINGER`] while the client's request is read and
/// dropped, so closing with unread data does not reset the connection before the client has
/// read the answer. At most [`LINGERING_REFUSALS`] are held; beyond, the connection is closed
/// straight away.
fn refuse(stream: TcpStream, max_connections: usize, lingering: &Arc<tokio::sync::Semaphore>) {
    let Ok(permit) = Arc::clone(lingering).try_acquire_owned() else {
        return;
    };
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = stream;
        let _ = tokio::time::timeout(LINGER, async {
            stream.write_all(&refusal(max_connections)).await?;
            stream.shutdown().await?;
            let mut sink = [0u8; 1024];
            while stream.read(&mut sink).await? > 0 {}
            Ok::<(), io::Error>(())
        })
        .await;
        drop(permit);
    });
}

/// The router for one connection: each request gets the peer's address ([`ConnectInfo`]) and
/// marks the connection busy until its response body has been written.
#[derive(Debug, Clone)]
struct ConnService {
    router: Router,
    peer: SocketAddr,
    conn: Arc<Conn>,
}

impl hyper::service::Service<Request<Incoming>> for ConnService {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        self.conn.busy();
        let busy = Busy(Arc::clone(&self.conn));
        let mut req = req.map(Body::new);
        req.extensions_mut().insert(ConnectInfo(self.peer));
        let router = self.router.clone();
        Box::pin(async move {
            let res = router.oneshot(req).await?;
            // The body owns the guard: the connection stays busy until hyper drops it, written.
            Ok(res.map(|body| {
                Body::new(body.map_frame(move |frame| {
                    let _held = &busy;
                    frame
                }))
            }))
        })
    }
}

/// Marks its connection idle again when dropped (with the response body, once written).
#[derive(Debug)]
struct Busy(Arc<Conn>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.idle();
    }
}

/// A connection's socket: reads tell its [`Conn`] when a request head begins; writes fail with
/// `TimedOut` once one has waited `timeout` for the client to read.
struct ConnIo {
    io: TcpStream,
    conn: Arc<Conn>,
    timeout: Duration,
    /// Running while a write waits.
    blocked: Option<Pin<Box<Sleep>>>,
    metrics: ConnMetrics,
}

impl ConnIo {
    fn new(io: TcpStream, conn: Arc<Conn>, timeout: Duration, metrics: ConnMetrics) -> ConnIo {
        ConnIo {
            io,
            conn,
            timeout,
            blocked: None,
            metrics,
        }
    }

    /// Passes on a write's result; a write still waiting after `timeout` becomes an error.
    fn deadline<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            self.blocked = None;
            return polled;
        }
        let timeout = self.timeout;
        let sleep = self
            .blocked
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        if sleep.as_mut().poll(cx).is_ready() {
            self.blocked = None;
            self.metrics.closed("write_timeout");
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "the client read nothing for {} s (--write-timeout)",
                    timeout.as_secs_f64()
                ),
            )));
        }
        Poll::Pending
    }
}

impl AsyncRead for ConnIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.conn.bytes_arrived();
        }
        polled
    }
}

impl AsyncWrite for ConnIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write(cx, buf);
        this.deadline(cx, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.deadline(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_flush(cx);
        this.deadline(cx, polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_shutdown(cx);
        this.deadline(cx, polled)
    }
}
