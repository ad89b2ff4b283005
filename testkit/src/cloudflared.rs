//! A stand-in for cloudflared's metrics server (the edge of the machine: the real one needs a
//! Cloudflare account). Serves `GET /ready` with whatever the test sets, over real HTTP.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What `/ready` answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadyReply {
    pub status: u16,
    pub body: String,
    /// Wait this long before answering.
    pub delay: Duration,
}

impl ReadyReply {
    /// cloudflared's reply with `n` ready connections (200 if n > 0, else 503).
    pub fn connections(n: u32) -> ReadyReply {
        let status = if n > 0 { 200 } else { 503 };
        ReadyReply {
            status,
            body: format!(
                r#"{{"status":{status},"readyConnections":{n},"connectorId":"7b5a4c5e-6d7f-4a1b-9c2d-3e4f5a6b7c8d"}}"#
            ),
            delay: Duration::ZERO,
        }
    }
}

/// The fake metrics server, on `127.0.0.1:PORT`. Stops when dropped.
#[derive(Debug)]
pub struct FakeCloudflared {
    pub addr: SocketAddr,
    reply: Arc<Mutex<ReadyReply>>,
    stop: Arc<AtomicBool>,
}

impl FakeCloudflared {
    pub fn start(reply: ReadyReply) -> FakeCloudflared {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        listener.set_nonblocking(true).expect("nonblocking");
        let reply = Arc::new(Mutex::new(reply));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, s) = (Arc::clone(&reply), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let r = Arc::clone(&r);
                        std::thread::spawn(move || serve(stream, &r));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        FakeCloudflared { addr, reply, stop }
    }

    /// `http://127.0.0.1:PORT`, for the check's `metrics_url`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set(&self, reply: ReadyReply) {
        *self.reply.lock().unwrap_or_else(|p| p.into_inner()) = reply;
    }
}

impl Drop for FakeCloudflared {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Serves requests on one connection until the client closes it (keep-alive, as cloudflared's
/// Go metrics server does).
fn serve(stream: TcpStream, reply: &Mutex<ReadyReply>) {
    let _ = stream.set_nonblocking(false);
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    });
    let mut stream = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).map_or(true, |n| n == 0) {
            return;
        }
        // Drain headers.
        let mut line = String::new();
        while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
            line.clear();
        }
        let r = reply.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let (status, body) = if request_line.starts_with("GET /ready ") {
            (r.status, r.body)
        } else {
            (404, "404 page not found\n".to_string())
        };
        std::thread::sleep(r.delay);
        let reason = match status {
            200 => "OK",
            503 => "Service Unavailable",
            404 => "Not Found",
            _ => "Status",
        };
        if write!(
            stream,
            "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .is_err()
        {
            return;
        }
    }
}
