//! A forward HTTP proxy on `127.0.0.1`, as `HTTP_PROXY` / `HTTPS_PROXY` name one: a plain
//! request in absolute form (`POST http://host:port/path HTTP/1.1`) is forwarded, and a
//! `CONNECT host:port` opens a tunnel. Every destination is sent to one upstream address (tests
//! name hosts that do not resolve, such as `cc.fleet.test`). It records each request head it
//! received and the first bytes each tunnel carried, for tests to assert on.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// The proxy; its thread lives as long as the test process.
#[derive(Debug, Clone)]
pub struct ForwardProxy {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    heads: Arc<Mutex<Vec<String>>>,
    tunnelled: Arc<Mutex<Vec<Vec<u8>>>>,
}

/// Reads a request head (up to the blank line) one byte at a time.
fn read_head(s: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut b).ok()? == 0 || head.len() > 64 * 1024 {
            return None;
        }
        head.push(b[0]);
    }
    String::from_utf8(head).ok()
}

/// Copies both ways until either side closes; the first bytes from the client are recorded.
fn pipe(client: TcpStream, upstream: TcpStream, first: Option<Arc<Mutex<Vec<Vec<u8>>>>>) {
    let (mut c_read, mut u_write) = (
        client.try_clone().expect("clone"),
        upstream.try_clone().expect("clone"),
    );
    let up = std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        let mut recorded = first.is_none();
        loop {
            match c_read.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if !recorded && let Some(first) = &first {
                        first.lock().expect("lock").push(buf[..n].to_vec());
                        recorded = true;
                    }
                    if u_write.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = u_write.shutdown(std::net::Shutdown::Write);
    });
    let (mut u_read, mut c_write) = (upstream, client);
    let _ = std::io::copy(&mut u_read, &mut c_write);
    let _ = c_write.shutdown(std::net::Shutdown::Both);
    let _ = up.join();
}

impl ForwardProxy {
    /// Sends every request and tunnel to `upstream`.
    pub fn start(upstream: SocketAddr) -> ForwardProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let proxy = ForwardProxy {
            url,
            heads: Arc::default(),
            tunnelled: Arc::default(),
        };
        let p = proxy.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut client) = conn else { continue };
                let p = p.clone();
                std::thread::spawn(move || {
                    let Some(head) = read_head(&mut client) else {
                        return;
                    };
                    p.heads.lock().expect("lock").push(head.clone());
                    let Ok(mut up) = TcpStream::connect(upstream) else {
                        let _ = client
                            .write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n");
                        return;
                    };
                    if head.starts_with("CONNECT ") {
                        let _ = client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n");
                        pipe(client, up, Some(p.tunnelled.clone()));
                    } else {
                        // Origin form for the upstream: `POST http://h:p/path` -> `POST /path`.
                        let mut lines = head.splitn(2, "\r\n");
                        let first = lines.next().unwrap_or_default();
                        let rest = lines.next().unwrap_or_default();
                        let mut parts = first.splitn(3, ' ');
                        let (method, target, version) = (
                            parts.next().unwrap_or_default(),
                            parts.next().unwrap_or_default(),
                            parts.next().unwrap_or_default(),
                        );
                        let path = target
                            .split_once("://")
                            .and_then(|(_, r)| r.find('/').map(|i| &r[i..]))
                            .unwrap_or(target);
                        let head = format!("{method} {path} {version}\r\n{rest}");
                        if up.write_all(head.as_bytes()).is_err() {
                            return;
                        }
                        // One request per connection in this direction is enough for the
                        // agent's single request; later ones on the connection pass through.
                        pipe(client, up, None);
                    }
                });
            }
        });
        proxy
    }

    /// The request heads received, in order (`CONNECT …` or a request in absolute form).
    pub fn heads(&self) -> Vec<String> {
        self.heads.lock().expect("lock").clone()
    }

    /// The first bytes the client sent into each tunnel.
    pub fn tunnelled(&self) -> Vec<Vec<u8>> {
        self.tunnelled.lock().expect("lock").clone()
    }
}
