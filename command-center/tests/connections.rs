//! Connections that never close (issue 21 item 2), through the real binary over loopback:
//! idle, half-header and spent keep-alive connections are closed after `--header-timeout`; a
//! client that stops reading is closed after `--write-timeout`; at a lowered open-file limit,
//! hundreds of idle connections and a full set of event streams cannot lock out `/healthz` or a
//! signed heartbeat; event streams are bounded per address and in all; memory comes back when
//! streams close; the open-file limit must hold the bounds, and the unit's `LimitNOFILE=` does.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use vaultmesh_testkit::auth::TestNode;
use vaultmesh_testkit::{
    CommandCenter, heartbeat_json, http, metric, text, wait_for, workspace_root,
};

fn addr(cc: &CommandCenter) -> SocketAddr {
    cc.url.trim_start_matches("http://").parse().unwrap()
}

/// A raw connection that has sent `bytes` (perhaps nothing, perhaps half a request).
fn connect(cc: &CommandCenter, bytes: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(addr(cc)).unwrap();
    s.write_all(bytes).unwrap();
    s
}

/// The head of an `/events` request. Its `Host` is the Command Center's own address: admin
/// routes answer only the names they know (`tests/guard.rs`).
fn events_request(cc: &CommandCenter) -> Vec<u8> {
    format!(
        "GET /events HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n\r\n",
        addr(cc)
    )
    .into_bytes()
}

/// An `/events` stream on a raw connection; returns once its headers arrived, with its status.
fn event_stream(cc: &CommandCenter) -> (TcpStream, u16) {
    let mut s = connect(cc, &events_request(cc));
    let status = read_status(&mut s);
    (s, status)
}

/// Reads a response's status line (and whatever else came in the same read).
fn read_status(s: &mut TcpStream) -> u16 {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).unwrap();
    let head = String::from_utf8_lossy(&buf[..n]);
    head.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {head:?}"))
}

/// Whether the server closed `s` within `within` (reading everything it sent meanwhile).
fn closed_by_server(s: &mut TcpStream, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false;
            }
            // Reset: closed with unread data.
            Err(_) => return true,
        }
    }
}

fn metrics(cc: &CommandCenter) -> String {
    cc.get("/metrics").body
}

fn closed_total(cc: &CommandCenter, reason: &str) -> f64 {
    metric(
        &metrics(cc),
        &format!("vaultmesh_connections_closed_total{{reason=\"{reason}\"}}"),
    )
    .unwrap_or(0.0)
}

const HALF_A_HEAD: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: local";
const A_REQUEST: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n";

/// Whether `s` is still open: nothing arrives within `for_` and the server has not closed it.
fn still_open(s: &mut TcpStream, for_: Duration) -> bool {
    !closed_by_server(s, for_)
}

/// The probe's three kinds of connection stayed open past 150 s. A connection that sends
/// nothing, or half a request head, is closed after `--header-timeout`; one that stays idle
/// after a response, after `--idle-timeout`; one that begins a new head after a response and
/// never finishes it, `--header-timeout` after its first byte. None is closed much before.
/// The three signature headers of a request, as raw HTTP header lines.
fn signature_header_lines(node: &str, timestamp: &str, signature: &str) -> String {
    use vaultmesh_proto::auth::{HEADER_NODE, HEADER_SIGNATURE, HEADER_TIMESTAMP};
    format!(
        "{HEADER_NODE}: {node}\r\n{HEADER_TIMESTAMP}: {timestamp}\r\n{HEADER_SIGNATURE}: {signature}\r\n"
    )
}

#[test]
fn silent_half_header_and_idle_keep_alive_connections_are_closed_after_their_timeouts() {
    let cc = CommandCenter::start_with(&["--header-timeout", "2s", "--idle-timeout", "6s"]);
    let opened = Instant::now();
    let mut silent = connect(&cc, b"");
    let mut half = connect(&cc, HALF_A_HEAD);
    let mut idle = connect(&cc, A_REQUEST);
    assert_eq!(read_status(&mut idle), 200);
    let mut half_after_response = connect(&cc, A_REQUEST);
    assert_eq!(read_status(&mut half_after_response), 200);
    let responded = Instant::now();
    std::thread::sleep(Duration::from_secs(1));
    half_after_response.write_all(HALF_A_HEAD).unwrap();

    for (what, s) in [
        ("a connection that sent nothing", &mut silent),
        ("half a request head", &mut half),
    ] {
        assert!(
            closed_by_server(s, Duration::from_secs(6)),
            "{what} still open after {:?}",
            opened.elapsed()
        );
        let after = opened.elapsed();
        assert!(
            after >= Duration::from_millis(1500),
            "{what} closed after {after:?}, before the 2 s header timeout"
        );
        eprintln!("{what}: closed after {after:?} (--header-timeout 2s)");
    }
    // Half a head begun 1 s after a response: closed 2 s after its first byte, well before the
    // idle timeout would have closed the connection (6 s after the response).
    assert!(
        closed_by_server(&mut half_after_response, Duration::from_secs(8)),
        "a half head after a response still open after {:?}",
        responded.elapsed()
    );
    let after = responded.elapsed();
    assert!(
        after >= Duration::from_millis(2500) && after < Duration::from_millis(5500),
        "a half head begun 1 s after a response closed {after:?} after it"
    );
    eprintln!("half a head begun 1 s after a response: closed {after:?} after the response");

    // The idle keep-alive connection outlives the header timeout (it is idle, not slow) …
    let idle_since = responded;
    assert!(
        still_open(
            &mut idle,
            Duration::from_secs(4).saturating_sub(idle_since.elapsed())
        ),
        "an idle keep-alive connection closed after {:?}, before the 6 s idle timeout",
        idle_since.elapsed()
    );
    // … and is closed after the idle timeout.
    assert!(
        closed_by_server(&mut idle, Duration::from_secs(8)),
        "an idle keep-alive connection still open after {:?}",
        idle_since.elapsed()
    );
    let after = idle_since.elapsed();
    assert!(after >= Duration::from_millis(5500), "{after:?}");
    eprintln!(
        "idle keep-alive connection: closed {after:?} after its response (--idle-timeout 6s)"
    );

    let m = metrics(&cc);
    assert!(
        closed_total(&cc, "header_timeout") >= 3.0,
        "silent, half and half after a response: {m}"
    );
    assert!(closed_total(&cc, "idle_timeout") >= 1.0, "{m}");
    // The Command Center itself serves on.
    assert_eq!(cc.get("/healthz").status, 200);
}

/// At an open-file limit of 256, the probe's attack — a flood of unauthenticated event streams
/// and hundreds of connections that send nothing, half a head, or nothing after a response —
/// stopped `accept` and with it `/healthz` and heartbeats. Now streams beyond `--sse-total`
/// are refused with a JSON `503`, the connection bound stays below the limit and the connections
/// idle the longest make room: `/healthz` and a signed heartbeat are answered at once, the
/// process never runs out of files, and the streams it took stay open.
#[test]
fn at_a_lowered_open_file_limit_idle_connections_and_streams_lock_out_nothing() {
    let cc = CommandCenter::start_with_open_files(
        256,
        &[
            "--max-connections",
            "128",
            "--sse-total",
            "64",
            "--sse-per-address",
            "100",
            // Longer than the test: eviction, not the timeouts, must make the room.
            "--header-timeout",
            "120s",
            "--idle-timeout",
            "120s",
            "--sse-keepalive",
            "1s",
        ],
    );
    let idle_files = cc.open_files();
    let mut streams = Vec::new();
    let mut refused = 0;
    for _ in 0..200 {
        let (s, status) = event_stream(&cc);
        match status {
            200 => streams.push(s),
            // Dropped: the client closes it.
            503 => refused += 1,
            other => panic!("an event stream got {other}"),
        }
    }
    assert_eq!((streams.len(), refused), (64, 136));
    let mut idle = Vec::new();
    for i in 0..400 {
        let bytes: &[u8] = match i % 3 {
            0 => b"",
            1 => HALF_A_HEAD,
            _ => A_REQUEST,
        };
        idle.push(connect(&cc, bytes));
    }
    std::thread::sleep(Duration::from_millis(500));
    let flooded_files = cc.open_files();
    assert!(
        flooded_files < 256,
        "{flooded_files} files open at a limit of 256"
    );

    let t = Instant::now();
    let health = cc.get("/healthz");
    assert_eq!(health.status, 200, "{}", health.body);
    let node = "00000000-0000-4000-8000-000000000a21";
    let hb = cc.post_json("/api/agent/heartbeat", &heartbeat_json(node, "busy-cc", 1));
    assert_eq!(hb.status, 200, "{}", hb.body);
    let answered = t.elapsed();
    assert!(
        answered < Duration::from_secs(3),
        "/healthz, an enrollment and a heartbeat took {answered:?}"
    );

    let m = metrics(&cc);
    let open = metric(&m, "vaultmesh_connections_open").unwrap();
    assert!(open <= 128.0, "{m}");
    let evicted =
        metric(&m, "vaultmesh_connections_closed_total{reason=\"evicted\"}").unwrap_or(0.0);
    assert!(evicted >= 300.0, "{m}");
    assert_eq!(metric(&m, "vaultmesh_sse_clients"), Some(64.0), "{m}");
    eprintln!(
        "open files: {idle_files} idle, {flooded_files} under 200 stream attempts and 400 idle \
         connections (limit 256); {open} connections open, {evicted} evicted; /healthz, enrollment \
         and a heartbeat answered in {answered:?}"
    );
    let log = cc.stderr();
    assert!(
        !log.contains("Out of open files"),
        "the process ran out of files: {log}"
    );
    // The streams were never closed to make room: each still gets its keepalive.
    for s in &mut streams {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 1024];
        assert!(s.read(&mut buf).unwrap() > 0, "a stream was closed");
    }
    drop(idle);
}

/// With every connection legitimately busy (event streams and an agent's long-poll, which
/// waits for a command by design), a new connection gets `503` with a JSON error at once
/// instead of waiting in the backlog; once one frees up, requests are served again. (A request
/// whose body never comes does not keep its connection busy for long: see
/// `slow_bodies_at_the_bound_lock_out_nothing_and_are_cut_off_at_the_body_timeout`.)
#[test]
fn at_the_bound_with_every_connection_busy_a_new_one_gets_503() {
    let cc = CommandCenter::start_with(&[
        "--max-connections",
        "4",
        "--sse-total",
        "3",
        "--sse-per-address",
        "3",
    ]);
    let node = TestNode::new(uuid::Uuid::from_u128(0x21_0503));
    node.enroll(&cc.url);
    let mut streams: Vec<TcpStream> = (0..3).map(|_| event_stream(&cc).0).collect();
    let poll_path = "/api/agent/commands?wait=60";
    let poll = node
        .signed(&cc.url, "GET", poll_path, None, Vec::new())
        .build()
        .unwrap();
    let mut head = format!("GET {poll_path} HTTP/1.1\r\nHost: {}\r\n", addr(&cc));
    for (name, value) in poll.headers() {
        head.push_str(&format!("{name}: {}\r\n", value.to_str().unwrap()));
    }
    head.push_str("\r\n");
    let _long_poll = connect(&cc, head.as_bytes());
    std::thread::sleep(Duration::from_millis(300));

    let t = Instant::now();
    let mut refused = connect(&cc, A_REQUEST);
    refused
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut answer = String::new();
    refused.read_to_string(&mut answer).unwrap();
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
    assert!(answer.contains("retry-after: 1"), "{answer}");
    let body: serde_json::Value =
        serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("--max-connections"),
        "{body}"
    );

    drop(streams.pop());
    let served = wait_for(Duration::from_secs(10), || {
        let r = http().get(format!("{}/healthz", cc.url)).send().ok()?;
        (r.status() == 200).then_some(())
    });
    assert!(served.is_some(), "a freed connection made room");
    assert!(closed_total(&cc, "refused") >= 1.0);
}

/// A `POST` whose head is sent at once and whose body (`declared` bytes) is sent up to `sent`
/// bytes by a thread, and then never finished. `headers` are extra header lines.
fn slow_post(
    cc: &CommandCenter,
    path: &str,
    headers: &str,
    declared: usize,
    sent: usize,
) -> TcpStream {
    let mut s = connect(
        cc,
        format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n{headers}Content-Length: {declared}\r\n\r\n",
            addr(cc)
        )
        .as_bytes(),
    );
    let mut writer = s.try_clone().unwrap();
    std::thread::spawn(move || {
        // Fails once the server has answered and closed: that is the point.
        let _ = writer.write_all(&vec![b' '; sent]);
    });
    s.set_nodelay(true).unwrap();
    s.flush().unwrap();
    s
}

/// The status the server answered `s` with, or `None` when it reset the connection first.
fn answer(s: &mut TcpStream, within: Duration) -> Option<u16> {
    s.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 4096];
    let n = match s.read(&mut buf) {
        Ok(n) => n,
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            panic!("no answer within {within:?}")
        }
        Err(_) => return None,
    };
    String::from_utf8_lossy(&buf[..n])
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
}

fn rejected(cc: &CommandCenter, reason: &str, route: &str) -> f64 {
    metric(
        &metrics(cc),
        &format!("vaultmesh_requests_rejected_total{{reason=\"{reason}\",route=\"{route}\"}}"),
    )
    .unwrap_or(0.0)
}

/// The review of issue 21 filled `--max-connections 64` with `POST /api/agent/scans` requests
/// carrying junk signature headers and 4,000,000 of 4,000,000 bytes less one: `/healthz` got
/// `503` for the whole 30 s of `--request-timeout` and the Command Center grew by 4.2 MB a
/// connection. Now, at the same bound: junk from an unknown node is refused (401) without its
/// body being read, and closed; an enrolled node's id with valid headers gets at most
/// `BODIES_PER_NODE` (4) bodies read at once (the rest 429), each cut off with 408 at
/// `--body-timeout`; meanwhile `/healthz` and another node's signed heartbeat are answered at
/// once, and memory grows by what the 4 bodies hold, not 64 × 4 MB.
#[test]
fn slow_bodies_at_the_bound_lock_out_nothing_and_are_cut_off_at_the_body_timeout() {
    const BODY: usize = 4_000_000;
    const ROUTE: &str = "/api/agent/scans";
    let cc = CommandCenter::start_with(&[
        "--max-connections",
        "64",
        "--sse-total",
        "8",
        "--body-timeout",
        "3s",
    ]);
    let other = "00000000-0000-4000-8000-000000000b21";
    let hb = cc.post_json("/api/agent/heartbeat", &heartbeat_json(other, "other", 1));
    assert_eq!(hb.status, 200, "{}", hb.body);
    let known = TestNode::new(uuid::Uuid::from_u128(0x21_0b0d));
    known.enroll(&cc.url);
    std::thread::sleep(Duration::from_millis(500));
    let before = cc.rss_kib();

    // A valid timestamp too: the unknown node, not the clock, refuses it.
    let junk = signature_header_lines(
        "00000000-0000-4000-8000-00000000dead",
        &chrono::Utc::now().timestamp().to_string(),
        "junk",
    );
    let started = Instant::now();
    let mut junk: Vec<TcpStream> = (0..48)
        .map(|_| slow_post(&cc, ROUTE, &junk, BODY, BODY - 1))
        .collect();
    let body = vec![b' '; BODY];
    let mut slow: Vec<TcpStream> = (0..16u8)
        .map(|i| {
            let ts = chrono::Utc::now().timestamp() - i64::from(i);
            let h = known.key.sign_request("POST", ROUTE, &known.id, ts, &body);
            let headers = signature_header_lines(&h.node, &h.timestamp, &h.signature);
            slow_post(&cc, ROUTE, &headers, BODY, BODY - 1)
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1000));

    let t = Instant::now();
    let health = cc.get("/healthz");
    assert_eq!(health.status, 200, "{}", health.body);
    let hb = cc.post_json("/api/agent/heartbeat", &heartbeat_json(other, "other", 2));
    assert_eq!(hb.status, 200, "{}", hb.body);
    let answered = t.elapsed();
    let during = cc.rss_kib();
    assert!(
        answered < Duration::from_secs(2),
        "/healthz and a heartbeat took {answered:?}"
    );

    // Junk: refused unread, and closed (the answer may be lost to the reset of the unread body).
    for s in &mut junk {
        assert!(matches!(
            answer(s, Duration::from_secs(5)),
            Some(401) | None
        ));
        assert!(closed_by_server(s, Duration::from_secs(2)));
    }
    assert_eq!(rejected(&cc, "unauthorized", ROUTE), 48.0);
    // The known node's: 4 read until the body timeout, the rest refused at once.
    let mut statuses = Vec::new();
    for s in &mut slow {
        statuses.push(answer(s, Duration::from_secs(10)));
        assert!(closed_by_server(s, Duration::from_secs(2)));
    }
    let cut_off = started.elapsed();
    let peak = cc.rss_kib().max(during);
    let timed_out = statuses.iter().filter(|s| **s == Some(408)).count();
    let refused = statuses
        .iter()
        .filter(|s| matches!(s, Some(429) | None))
        .count();
    assert_eq!((timed_out, refused), (4, 12), "{statuses:?}");
    assert_eq!(rejected(&cc, "body_timeout", ROUTE), 4.0);
    assert!(
        cut_off < Duration::from_secs(8),
        "cut off after {cut_off:?}"
    );
    let grown = peak.saturating_sub(before);
    eprintln!(
        "RSS: {before} KiB before, {during} KiB with 64 slow bodies at the bound (peak {peak} KiB, +{grown} KiB); \
         /healthz and a heartbeat answered in {answered:?}; all slow senders cut off after {cut_off:?}"
    );
    assert!(grown < 40 * 1024, "grew {grown} KiB");
    let health = cc.get("/healthz");
    assert_eq!(health.status, 200, "{}", health.body);
}

/// Bodies being received hold at most `--body-memory` bytes: at its least (the largest body, a
/// scan report), a second node's large body is refused with `503` and `Retry-After` while the
/// first one's is held, and accepted again once it is gone.
#[test]
fn bodies_beyond_body_memory_get_503_with_retry_after() {
    const ROUTE: &str = "/api/agent/scans";
    let least = vaultmesh_proto::scan::limits::REPORT_BODY_MAX.to_string();
    let cc = CommandCenter::start_with(&["--body-memory", &least, "--body-timeout", "2s"]);
    let signed = |n: u128| {
        let node = TestNode::new(uuid::Uuid::from_u128(n));
        node.enroll(&cc.url);
        let body = vec![b' '; 3_000_000];
        let h = node.key.sign_request(
            "POST",
            ROUTE,
            &node.id,
            chrono::Utc::now().timestamp(),
            &body,
        );
        signature_header_lines(&h.node, &h.timestamp, &h.signature)
    };
    let (first, second) = (signed(0x21_0001), signed(0x21_0002));
    let mut holding = slow_post(&cc, ROUTE, &first, 3_000_000, 2_999_999);
    std::thread::sleep(Duration::from_millis(500));
    let mut over = slow_post(&cc, ROUTE, &second, 3_000_000, 2_999_999);
    over.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut answer_text = Vec::new();
    let _ = over.read_to_end(&mut answer_text);
    let answer_text = String::from_utf8_lossy(&answer_text);
    assert!(answer_text.starts_with("HTTP/1.1 503 "), "{answer_text}");
    assert!(answer_text.contains("retry-after: 10"), "{answer_text}");
    assert!(answer_text.contains("--body-memory"), "{answer_text}");
    assert_eq!(answer(&mut holding, Duration::from_secs(5)), Some(408));
    let hb = cc.post_json(
        "/api/agent/heartbeat",
        &heartbeat_json("00000000-0000-4000-8000-000000000c21", "after", 1),
    );
    assert_eq!(hb.status, 200, "{}", hb.body);
}

/// Enrollment counts the source's attempts, and checks the signature headers, before it reads
/// a body: attempts without them or over the rate are refused at once, their declared bodies
/// never sent (the old code waited for the body, up to `--request-timeout`).
#[test]
fn an_enrollment_over_the_source_rate_is_refused_before_its_body() {
    let cc = CommandCenter::start_with(&["--enroll-burst", "1", "--enroll-rate", "0.001"]);
    let mut first = slow_post(&cc, "/api/agent/enroll", "", 1000, 0);
    let mut second = slow_post(&cc, "/api/agent/enroll", "", 1000, 0);
    let t = Instant::now();
    let mut statuses = [
        answer(&mut first, Duration::from_secs(20)),
        answer(&mut second, Duration::from_secs(20)),
    ];
    // Both are answered at once, their bodies unread: the one the server took first (within
    // the rate) for having no signature headers, the other for the rate. Which connection the
    // server takes first is its business, so the order is not asserted.
    statuses.sort();
    assert_eq!(statuses, [Some(401), Some(429)]);
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
}

/// A client that stops reading is closed after `--write-timeout`: here one that pipelines 500
/// requests for a 14 KiB script (7 MiB of answers, more than the kernel's socket buffers hold)
/// and reads none of them.
#[test]
fn a_client_that_stops_reading_is_closed_after_the_write_timeout() {
    let cc = CommandCenter::start_with(&["--write-timeout", "2s"]);
    let requests = "GET /assets/console.js HTTP/1.1\r\nHost: localhost\r\n\r\n".repeat(500);
    let mut stalled = connect(&cc, requests.as_bytes());
    let closed = wait_for(Duration::from_secs(20), || {
        (closed_total(&cc, "write_timeout") >= 1.0).then_some(())
    });
    assert!(closed.is_some(), "{}", metrics(&cc));
    // What was buffered can still be read; then the connection ends.
    assert!(closed_by_server(&mut stalled, Duration::from_secs(10)));
    assert_eq!(
        metric(&metrics(&cc), "vaultmesh_connections_open"),
        Some(1.0),
        "only the /metrics request's own connection"
    );
}

/// Streams of clients that are not signed in (a loopback-only Command Center) are counted per
/// address (`429` beyond) and in all (`503` beyond); closing one frees its slot.
#[test]
fn event_streams_are_bounded_per_address_and_in_total() {
    let cc = CommandCenter::start_with(&[
        "--sse-per-address",
        "2",
        "--sse-total",
        "3",
        "--sse-keepalive",
        "200ms",
    ]);
    let from = |last_octet: u8| {
        reqwest::blocking::Client::builder()
            .timeout(None)
            .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last_octet)))
            .build()
            .unwrap()
            .get(format!("{}/events", cc.url))
            .send()
            .unwrap()
    };
    let first = from(1);
    let second = from(1);
    assert_eq!(
        (first.status().as_u16(), second.status().as_u16()),
        (200, 200)
    );
    let third = from(1);
    assert_eq!(third.status(), 429);
    assert!(third.headers().contains_key("retry-after"));
    let error = third.json::<serde_json::Value>().unwrap()["error"].to_string();
    assert!(error.contains("--sse-per-address"), "{error}");

    let other = from(2);
    assert_eq!(other.status(), 200);
    let full = from(3);
    assert_eq!(full.status(), 503);
    assert!(full.headers().contains_key("retry-after"));
    let error = full.json::<serde_json::Value>().unwrap()["error"].to_string();
    assert!(error.contains("--sse-total"), "{error}");

    drop(first);
    let again = wait_for(Duration::from_secs(5), || {
        let r = from(3);
        (r.status() == 200).then_some(r)
    });
    assert!(again.is_some(), "the slot came back");
    drop((second, other));
}

/// 4,000 idle event streams took the probe's Command Center to 522 MB, and it kept them after
/// they closed (glibc's allocator kept the freed memory). Memory now comes back.
#[test]
fn memory_comes_back_when_event_streams_close() {
    const STREAMS: usize = 2000;
    assert!(
        vaultmesh_testkit::raise_open_file_limit(STREAMS as u64 + 256) > STREAMS as u64,
        "this test needs {STREAMS} open files"
    );
    let n = STREAMS.to_string();
    let cc = CommandCenter::start_with(&["--sse-total", &n, "--sse-per-address", &n]);
    // Warm up: the first requests allocate what every later one reuses.
    for _ in 0..20 {
        cc.get("/api/nodes");
    }
    std::thread::sleep(Duration::from_secs(1));
    let before = cc.rss_kib();
    let head = events_request(&cc);
    let streams: Vec<TcpStream> = (0..STREAMS).map(|_| connect(&cc, &head)).collect();
    let gauge = || metric(&metrics(&cc), "vaultmesh_sse_clients");
    assert!(
        wait_for(Duration::from_secs(30), || (gauge()
            == Some(STREAMS as f64))
        .then_some(()))
        .is_some()
    );
    let open = cc.rss_kib();
    drop(streams);
    assert!(
        wait_for(Duration::from_secs(10), || (gauge() == Some(0.0))
            .then_some(()))
        .is_some()
    );
    let closed = Instant::now();
    let grown = open.saturating_sub(before);
    assert!(grown > 4 * 1024, "{STREAMS} streams took only {grown} KiB");
    // Back to within a quarter of what the streams took (jemalloc's background thread hands
    // freed pages back after about 10 s).
    let back = wait_for(Duration::from_secs(30), || {
        let now = cc.rss_kib();
        (now <= before + grown / 4).then_some(now)
    });
    let (peak, _) = vaultmesh_testkit::memory_kib(cc.pid());
    eprintln!(
        "RSS: {before} KiB before, {open} KiB with {STREAMS} streams (peak {peak} KiB), {} KiB {:?} after they closed",
        back.unwrap_or_else(|| cc.rss_kib()),
        closed.elapsed()
    );
    assert!(
        back.is_some(),
        "RSS {before} KiB before, {open} KiB with {STREAMS} streams, still {} KiB 30 s after they closed",
        cc.rss_kib()
    );
}

/// `LimitNOFILE=` of the Command Center's unit.
fn unit_limit_nofile() -> u64 {
    let unit =
        std::fs::read_to_string(workspace_root().join("systemd/vaultmesh-command-center.service"))
            .unwrap();
    unit.lines()
        .find_map(|l| l.trim().strip_prefix("LimitNOFILE="))
        .expect("the unit sets LimitNOFILE=")
        .trim()
        .parse()
        .unwrap()
}

/// The open-file limit must hold the connection bound and the reserve: below it, `serve` exits
/// 2 naming the flag and the limit. The unit's `LimitNOFILE=` holds the default bounds exactly.
#[test]
fn the_open_file_limit_must_hold_the_bounds_and_the_unit_holds_the_defaults() {
    let limit = unit_limit_nofile();
    let dir = tempfile::tempdir().unwrap();
    let out = CommandCenter::serve_command(dir.path(), &[], Some((limit - 1, limit - 1)))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--max-connections 16256 needs 16384 open files")
            && err.contains(&format!("the limit is {}", limit - 1))
            && err.contains("LimitNOFILE="),
        "{err}"
    );
    // Exactly the unit's limit: serves with every default.
    let cc = CommandCenter::start_with_open_files(limit, &[]);
    assert_eq!(cc.get("/healthz").status, 200);
}

/// A soft limit below what the bound needs is raised (up to the hard limit), as systemd's
/// default of 1024 soft would need.
#[test]
fn a_low_soft_open_file_limit_is_raised_to_what_the_bound_needs() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = CommandCenter::serve_command(
        dir.path(),
        &["--max-connections".into(), "2000".into()],
        Some((1024, 4096)),
    )
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::null())
    .spawn()
    .unwrap();
    // Once it listens, prlimit has long been replaced by the Command Center.
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.contains("listening on"), "{first}");
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id())).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let soft: Option<u64> = line.split_whitespace().nth(3).and_then(|v| v.parse().ok());
    assert_eq!(soft, Some(2128), "2,000 connections + 128");
}

/// Bad values of the connection and stream flags stop `serve` with exit 2 and one message that
/// names the flag (and a typo of a flag gets the near name).
#[test]
fn bad_connection_and_stream_flags_exit_2_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    for (args, says) in [
        (
            &["--max-connections", "0"][..],
            "--max-connections must be at least 1",
        ),
        (&["--sse-total", "0"], "--sse-total must be at least 1"),
        (
            &["--sse-per-address", "0"],
            "--sse-per-address must be at least 1",
        ),
        (
            &["--sse-per-identity", "0"],
            "--sse-per-identity must be at least 1",
        ),
        (
            &["--max-connections", "100", "--sse-total", "100"],
            "--sse-total 100 must be below --max-connections 100",
        ),
        (
            &["--header-timeout", "50ms"],
            "--header-timeout must be at least 100ms",
        ),
        (
            &["--idle-timeout", "50ms"],
            "--idle-timeout must be at least 100ms",
        ),
        (
            &["--write-timeout", "99ms"],
            "--write-timeout must be at least 100ms",
        ),
        (
            &["--write-timeout", "0s"],
            "'--write-timeout <WRITE_TIMEOUT>'",
        ),
        (&["--idle-timeout", "soon"], "--idle-timeout"),
        (&["--max-connections", "many"], "--max-connections"),
        (&["--max-conections", "10"], "'--max-connections'"),
        (
            &["--body-timeout", "10ms"],
            "--body-timeout must be at least 100ms",
        ),
        (
            &["--body-memory", "1MiB"],
            "--body-memory 1048576 must be at least",
        ),
        (&["--body-timout", "10s"], "'--body-timeout'"),
    ] {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let out = CommandCenter::serve_command(dir.path(), &args, None)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}: {}", text(&out));
    }
}
