//! Why a request was refused, in the log: one `warn` line per refusal of an agent request (a bad
//! enrollment token, an unknown or revoked node, a bad signature, a replay, a stale clock, the
//! rate limit, a body of the wrong shape...) and per admin request refused for its credentials,
//! its rights or its time, naming the reason, the node the request claims to be from, and where
//! it came from.
//!
//! A flood must not fill the journal, so each reason has a budget: at most
//! [`PER_WINDOW`] lines per [`WINDOW`], then one line saying that further refusals of that reason
//! are not logged, and, when the window ends, one line counting how many were not. The reasons are
//! a fixed set of names, so the bookkeeping stays small whatever the traffic.
//!
//! What is logged is chosen so that no secret can appear: the reason, the status, the method, the
//! route template (never the raw path), the node id only when it parses as a UUID, the peer
//! address, the `Cf-Connecting-Ip` header only when it parses as an address (behind cloudflared
//! every peer is 127.0.0.1), and the error message the client got, which never echoes a token.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Lines logged per reason and window before the rest are only counted.
pub const PER_WINDOW: u32 = 10;
/// The window of [`PER_WINDOW`].
pub const WINDOW: Duration = Duration::from_secs(60);
/// How often ended windows are looked for, to report what they did not log.
const FLUSH_EVERY: Duration = Duration::from_secs(5);

/// The header Cloudflare puts the client's address in.
pub const CF_CONNECTING_IP: &str = "cf-connecting-ip";

/// One refused request, as logged.
#[derive(Debug, Clone)]
pub struct Refused<'a> {
    /// Why: a [`vaultmesh_engines::auth::Refusal`] name, or the metrics reason (`rate_limited`, `invalid`...).
    pub reason: &'static str,
    pub status: u16,
    pub method: &'a str,
    /// The route template, or `unmatched`.
    pub route: &'a str,
    /// The node the request says it is from (`X-VaultMesh-Node`); unverified when refused.
    pub node_id: Option<Uuid>,
    pub remote: Option<SocketAddr>,
    pub cf_connecting_ip: Option<IpAddr>,
    /// The message the client got.
    pub detail: &'a str,
}

/// Per reason: when its window began, lines logged in it, refusals not logged.
#[derive(Debug)]
struct Window {
    started: Instant,
    logged: u32,
    suppressed: u64,
}

/// What to do with one refusal.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Log,
    /// Log it, and say that the rest of the window is not logged.
    LogLast,
    Count,
}

/// The per-reason budget of refusal lines.
#[derive(Debug)]
pub struct RefusalLog {
    per_window: u32,
    window: Duration,
    windows: Mutex<HashMap<&'static str, Window>>,
}

impl Default for RefusalLog {
    fn default() -> Self {
        RefusalLog::new(PER_WINDOW, WINDOW)
    }
}

impl RefusalLog {
    pub fn new(per_window: u32, window: Duration) -> RefusalLog {
        RefusalLog {
            per_window: per_window.max(1),
            window,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Logs `r` unless its reason's budget is spent (then it is counted).
    pub fn record(&self, r: &Refused<'_>) {
        let now = Instant::now();
        let (ended, verdict) = {
            let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
            let w = windows.entry(r.reason).or_insert(Window {
                started: now,
                logged: 0,
                suppressed: 0,
            });
            let mut ended = None;
            if now.duration_since(w.started) >= self.window {
                ended = Some(w.suppressed).filter(|n| *n > 0);
                *w = Window {
                    started: now,
                    logged: 0,
                    suppressed: 0,
                };
            }
            let verdict = if w.logged + 1 < self.per_window {
                w.logged += 1;
                Verdict::Log
            } else if w.logged + 1 == self.per_window {
                w.logged += 1;
                Verdict::LogLast
            } else {
                w.suppressed += 1;
                Verdict::Count
            };
            (ended, verdict)
        };
        if let Some(n) = ended {
            self.suppressed(r.reason, n);
        }
        if verdict == Verdict::Count {
            return;
        }
        let node_id = r.node_id.map_or_else(|| "-".to_string(), |n| n.to_string());
        let remote = r.remote.map_or_else(|| "-".to_string(), |a| a.to_string());
        let cf_ip = r
            .cf_connecting_ip
            .map_or_else(|| "-".to_string(), |a| a.to_string());
        tracing::warn!(
            reason = %r.reason,
            status = r.status,
            %node_id,
            %remote,
            cf_connecting_ip = %cf_ip,
            method = %r.method,
            route = %r.route,
            detail = ?r.detail,
            "Request refused."
        );
        if verdict == Verdict::LogLast {
            tracing::warn!(
                reason = %r.reason,
                limit = self.per_window,
                window_s = self.window.as_secs(),
                "Further refusals with this reason are counted, not logged, until the window ends."
            );
        }
    }

    /// Reports and forgets every window that has ended.
    pub fn flush(&self) {
        let now = Instant::now();
        let ended: Vec<(&'static str, u64)> = {
            let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
            let mut ended = Vec::new();
            windows.retain(|reason, w| {
                let over = now.duration_since(w.started) >= self.window;
                if over && w.suppressed > 0 {
                    ended.push((*reason, w.suppressed));
                }
                !over
            });
            ended
        };
        for (reason, n) in ended {
            self.suppressed(reason, n);
        }
    }

    fn suppressed(&self, reason: &'static str, n: u64) {
        tracing::warn!(
            %reason,
            suppressed = n,
            window_s = self.window.as_secs(),
            "Suppressed {n} more refusals with this reason."
        );
    }

    /// Reports ended windows every few seconds until `cancel`.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        let mut tick = tokio::time::interval(FLUSH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => self.flush(),
                () = cancel.cancelled() => return,
            }
        }
    }

    /// Lines logged and refusals counted in `reason`'s current window (for tests).
    pub fn window_of(&self, reason: &str) -> Option<(u32, u64)> {
        let windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        windows.get(reason).map(|w| (w.logged, w.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(reason: &'static str) -> Refused<'static> {
        Refused {
            reason,
            status: 401,
            method: "POST",
            route: "/api/agent/heartbeat",
            node_id: None,
            remote: None,
            cf_connecting_ip: None,
            detail: "x",
        }
    }

    #[test]
    fn each_reason_has_its_own_budget_and_a_new_window_starts_afresh() {
        let log = RefusalLog::new(3, Duration::from_millis(50));
        for _ in 0..10 {
            log.record(&refused("replay"));
        }
        log.record(&refused("revoked"));
        assert_eq!(log.window_of("replay"), Some((3, 7)));
        assert_eq!(
            log.window_of("revoked"),
            Some((1, 0)),
            "budgets are per reason"
        );
        std::thread::sleep(Duration::from_millis(60));
        log.record(&refused("replay"));
        assert_eq!(log.window_of("replay"), Some((1, 0)), "a new window");
        std::thread::sleep(Duration::from_millis(60));
        log.flush();
        assert_eq!(log.window_of("replay"), None, "ended windows are forgotten");
    }
}
