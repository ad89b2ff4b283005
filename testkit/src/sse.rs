//! A small Server-Sent Events client over real HTTP, for tests: connect (optionally with
//! `Last-Event-ID`), then take events and keepalive comments as they arrive.

use std::io::{BufRead, BufReader};
use std::sync::mpsc::{Receiver, channel};
use std::time::Duration;

/// One SSE event (`event:`, `id:`, `data:` lines up to a blank line), or a `:` comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseItem {
    Event {
        event: String,
        id: String,
        data: String,
    },
    Comment,
}

/// An open `/events` stream. Dropping it closes the connection.
#[derive(Debug)]
pub struct SseClient {
    rx: Receiver<SseItem>,
    pub status: u16,
}

impl SseClient {
    /// `GET {url}` with `Accept: text/event-stream`.
    pub fn connect(url: &str, last_event_id: Option<&str>) -> SseClient {
        let client = reqwest::blocking::Client::builder()
            .timeout(None)
            .build()
            .expect("client");
        let mut req = client.get(url).header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id);
        }
        let resp = req.send().expect("connect to /events");
        let status = resp.status().as_u16();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(resp);
            let (mut event, mut id, mut data) =
                (String::new(), String::new(), Vec::<String>::new());
            let mut line = String::new();
            loop {
                line.clear();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                let l = line.trim_end_matches(['\r', '\n']);
                if l.is_empty() {
                    if !event.is_empty() || !data.is_empty() {
                        let item = SseItem::Event {
                            event: std::mem::take(&mut event),
                            id: std::mem::take(&mut id),
                            data: data.join("\n"),
                        };
                        data.clear();
                        if tx.send(item).is_err() {
                            return;
                        }
                    }
                } else if l.starts_with(':') {
                    if tx.send(SseItem::Comment).is_err() {
                        return;
                    }
                } else if let Some(v) = l.strip_prefix("event:") {
                    event = v.trim_start().to_string();
                } else if let Some(v) = l.strip_prefix("id:") {
                    id = v.trim_start().to_string();
                } else if let Some(v) = l.strip_prefix("data:") {
                    data.push(v.strip_prefix(' ').unwrap_or(v).to_string());
                }
            }
        });
        SseClient { rx, status }
    }

    /// The next item, or `None` after `timeout`.
    pub fn next_item(&self, timeout: Duration) -> Option<SseItem> {
        self.rx.recv_timeout(timeout).ok()
    }

    /// The next event (skipping comments): `(event, id, data)`.
    pub fn next_event(&self, timeout: Duration) -> Option<(String, String, String)> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.next_item(left)? {
                SseItem::Event { event, id, data } => return Some((event, id, data)),
                SseItem::Comment => continue,
            }
        }
    }
}
