//! A lossy HTTP proxy in front of the real Command Center: it forwards every request, and can
//! be told to drop the reply to the next requests whose path starts with a prefix — the request
//! reached the server and was handled, the client never hears back (a tunnel that hiccups, a
//! NAT that forgets the connection) — or to answer them `503` itself without forwarding (the
//! Command Center unreachable for that route). One request per connection (`Connection: close`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The proxy, on `127.0.0.1:PORT`. Stops accepting when dropped.
#[derive(Debug)]
pub struct LossyProxy {
    pub url: String,
    drops: Arc<Mutex<Vec<(String, usize)>>>,
    /// Path prefixes answered 503 without forwarding.
    refused: Arc<Mutex<Vec<String>>>,
    /// Paths whose replies were dropped, in order.
    dropped: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl LossyProxy {
    /// Forwards to `upstream` (`http://127.0.0.1:PORT`).
    pub fn start(upstream: &str) -> LossyProxy {
        let target = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        listener.set_nonblocking(true).expect("nonblocking");
        let drops: Arc<Mutex<Vec<(String, usize)>>> = Arc::default();
        let refused: Arc<Mutex<Vec<String>>> = Arc::default();
        let dropped: Arc<Mutex<Vec<String>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (d, r, dd, s) = (
            Arc::clone(&drops),
            Arc::clone(&refused),
            Arc::clone(&dropped),
            Arc::clone(&stop),
        );
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let (d, r, dd, t) = (
                            Arc::clone(&d),
                            Arc::clone(&r),
                            Arc::clone(&dd),
                            target.clone(),
                        );
                        std::thread::spawn(move || {
                            let _ = relay(client, &t, &d, &r, &dd);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        LossyProxy {
            url,
            drops,
            refused,
            dropped,
            stop,
        }
    }

    /// Answers requests whose path starts with `prefix` with `503` without forwarding them,
    /// until [`LossyProxy::forward_all`].
    pub fn refuse(&self, prefix: &str) {
        self.refused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(prefix.to_string());
    }

    /// Forwards every request again.
    pub fn forward_all(&self) {
        self.refused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// Drops the replies to the next `n` requests whose path starts with `prefix`.
    pub fn drop_replies(&self, prefix: &str, n: usize) {
        self.drops
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((prefix.to_string(), n));
    }

    /// Paths whose replies were dropped so far.
    pub fn dropped(&self) -> Vec<String> {
        self.dropped
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Drop for LossyProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// One request: read it whole, forward it, read the whole reply, then pass it on or drop it.
fn relay(
    client: TcpStream,
    target: &str,
    drops: &Mutex<Vec<(String, usize)>>,
    refused: &Mutex<Vec<String>>,
    dropped: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    client.set_nonblocking(false)?;
    let mut reader = BufReader::new(client.try_clone()?);
    let mut head = Vec::new();
    let mut length = 0usize;
    let mut path = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        if path.is_empty() {
            path = line.split(' ').nth(1).unwrap_or("").to_string();
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        if lower.starts_with("connection:") {
            continue;
        }
        if line == "\r\n" {
            head.extend_from_slice(b"Connection: close\r\n\r\n");
            break;
        }
        head.extend_from_slice(line.as_bytes());
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body)?;
    let refuse = refused
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .any(|p| path.starts_with(p.as_str()));
    if refuse {
        let mut client = client;
        let body = br#"{"error":"the proxy refused this request (test)"}"#;
        write!(
            client,
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        )?;
        return client.write_all(body);
    }
    let mut upstream = TcpStream::connect(target)?;
    upstream.write_all(&head)?;
    upstream.write_all(&body)?;
    let mut reply = Vec::new();
    upstream.read_to_end(&mut reply)?;
    let drop_it = {
        let mut d = drops.lock().unwrap_or_else(|p| p.into_inner());
        match d
            .iter_mut()
            .find(|(p, n)| *n > 0 && path.starts_with(p.as_str()))
        {
            Some((_, n)) => {
                *n -= 1;
                true
            }
            None => false,
        }
    };
    let mut client = client;
    if drop_it {
        dropped.lock().unwrap_or_else(|p| p.into_inner()).push(path);
        return client.shutdown(std::net::Shutdown::Both);
    }
    client.write_all(&reply)
}
