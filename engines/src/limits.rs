//! How much each node and each source may ask: agent requests a second per node
//! ([`RateLimit`]), enrollment attempts a second per source network ([`SourceRate`]), and signed
//! request bodies being received at once per node ([`BodiesInFlight`]). Each refusal is its own
//! error carrying when to retry; the server answers it `429` with `Retry-After`.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;

use uuid::Uuid;

use crate::buckets::Buckets;

/// A node past its rate ([`RateLimit`]) or its bodies at once ([`BodiesInFlight`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("too many requests from node {node}; retry in {retry_after_s} s")]
pub struct RateLimited {
    pub node: Uuid,
    pub retry_after_s: u64,
}

/// A source past its enrollment rate ([`SourceRate`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("too many enrollment attempts from {}; retry in {retry_after_s} s", shown(.from))]
pub struct EnrollmentsLimited {
    /// Where the attempts come from, if known.
    pub from: Option<IpAddr>,
    pub retry_after_s: u64,
}

fn shown(from: &Option<IpAddr>) -> String {
    from.map_or_else(|| "unknown".into(), |s| s.to_string())
}

/// The network a source address is counted by: an IPv4 address itself, an IPv6 address's
/// /64 — one host usually holds a whole /64, and could rotate through it past any per-address
/// limit.
pub fn network(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
    }
}

/// Enrollment attempts per source network ([`network`]).
#[derive(Debug)]
pub struct SourceRate(Buckets<Option<IpAddr>>);

impl SourceRate {
    pub fn new(rate: f64, burst: u32) -> SourceRate {
        SourceRate(Buckets::new(rate, f64::from(burst)))
    }

    /// One attempt from `source`.
    pub fn check(&self, source: Option<IpAddr>) -> Result<(), EnrollmentsLimited> {
        self.0
            .take(&source.map(network), 1.0)
            .map_err(|retry_after_s| EnrollmentsLimited {
                from: source,
                retry_after_s,
            })
    }
}

/// Per-node rate limit of agent requests: a token bucket per node (`rate` requests a second,
/// up to `burst` at once). Beyond it the agent backs off.
#[derive(Debug)]
pub struct RateLimit(Buckets<Uuid>);

impl RateLimit {
    pub fn new(rate: f64, burst: u32) -> RateLimit {
        RateLimit(Buckets::new(rate, f64::from(burst)))
    }

    /// One request from `node`.
    pub fn check(&self, node: Uuid) -> Result<(), RateLimited> {
        self.0
            .take(&node, 1.0)
            .map_err(|retry_after_s| RateLimited {
                node,
                retry_after_s,
            })
    }
}

/// A node past its rate of posted events ([`EventRate`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "too many events from node {node}: at most {per_minute} a minute, in bursts of {burst} (--agent-event-rate, --agent-event-burst); retry in {retry_after_s} s"
)]
pub struct EventsLimited {
    pub node: Uuid,
    pub per_minute: u32,
    pub burst: u32,
    pub retry_after_s: u64,
}

/// Per-node rate of the notes and incidents agents post about themselves
/// (`POST /api/agent/events`): `per_minute` a minute, up to `burst` at once. On top of
/// [`RateLimit`], which every agent request spends: an event becomes an envelope in the log,
/// on the stream and maybe a notification, so a node gets far fewer of them than requests.
#[derive(Debug)]
pub struct EventRate {
    buckets: Buckets<Uuid>,
    per_minute: u32,
    burst: u32,
}

impl EventRate {
    pub fn new(per_minute: u32, burst: u32) -> EventRate {
        EventRate {
            buckets: Buckets::new(f64::from(per_minute) / 60.0, f64::from(burst)),
            per_minute,
            burst,
        }
    }

    /// One event from `node`.
    pub fn check(&self, node: Uuid) -> Result<(), EventsLimited> {
        self.buckets
            .take(&node, 1.0)
            .map_err(|retry_after_s| EventsLimited {
                node,
                per_minute: self.per_minute,
                burst: self.burst,
                retry_after_s,
            })
    }
}

/// Signed request bodies one node id may have being received at once (beyond: refused, retry
/// in a second). An agent sends one request at a time besides its long-poll, which has no body.
pub const BODIES_PER_NODE: usize = 4;

/// How many signed request bodies each node id has being received.
#[derive(Debug, Default)]
pub struct BodiesInFlight(Mutex<HashMap<Uuid, usize>>);

impl BodiesInFlight {
    /// One more body being received for `node`, counted out when the [`Reading`] is dropped;
    /// refused when the node has [`BODIES_PER_NODE`] already.
    pub fn start(&self, node: Uuid) -> Result<Reading<'_>, RateLimited> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(node).or_default();
        if *n >= BODIES_PER_NODE {
            return Err(RateLimited {
                node,
                retry_after_s: 1,
            });
        }
        *n += 1;
        Ok(Reading { all: self, node })
    }
}

/// One body being received for a node; counted out when dropped.
#[derive(Debug)]
pub struct Reading<'a> {
    all: &'a BodiesInFlight,
    node: Uuid,
}

impl Drop for Reading<'_> {
    fn drop(&mut self) {
        let mut map = self.all.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.node) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.node);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_counted_per_node_within_their_burst() {
        let rate = EventRate::new(1, 2);
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        rate.check(a).unwrap();
        rate.check(a).unwrap();
        let refused = rate.check(a).expect_err("past the burst");
        assert_eq!((refused.node, refused.per_minute, refused.burst), (a, 1, 2));
        assert!(
            (1..=60).contains(&refused.retry_after_s),
            "one event a minute: {}",
            refused.retry_after_s
        );
        assert!(refused.to_string().contains("--agent-event-rate"));
        rate.check(b).expect("another node has its own allowance");
    }

    #[test]
    fn enrollment_sources_are_counted_per_ipv4_address_and_per_ipv6_64() {
        let rate = SourceRate::new(0.001, 2);
        let in_64 = |i: u16| -> IpAddr { format!("2001:db8:1:2:{i:x}::{i:x}").parse().unwrap() };
        rate.check(Some(in_64(1))).unwrap();
        rate.check(Some(in_64(2))).unwrap();
        let refused = rate
            .check(Some(in_64(3)))
            .expect_err("another address in the same /64 is the same source");
        assert_eq!(
            refused.from,
            Some(in_64(3)),
            "the message names the address"
        );
        rate.check(Some("2001:db8:1:3::1".parse().unwrap()))
            .expect("another /64 is another source");
        let v4: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(network(v4), v4);
        rate.check(Some("192.0.2.2".parse().unwrap())).unwrap();
    }

    #[test]
    fn the_rate_limit_answers_with_retry_after() {
        let rl = RateLimit::new(1000.0, 1);
        let n = Uuid::from_u128(1);
        rl.check(n).unwrap();
        assert_eq!(
            rl.check(n),
            Err(RateLimited {
                node: n,
                retry_after_s: 1
            })
        );
    }

    fn reading(all: &BodiesInFlight, node: Uuid) -> usize {
        all.0.lock().unwrap().get(&node).copied().unwrap_or(0)
    }

    #[test]
    fn bodies_in_flight_are_bounded_per_node_and_counted_out_when_dropped() {
        let all = BodiesInFlight::default();
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let held: Vec<_> = (0..BODIES_PER_NODE)
            .map(|_| all.start(a).unwrap())
            .collect();
        assert_eq!(
            all.start(a).unwrap_err(),
            RateLimited {
                node: a,
                retry_after_s: 1
            }
        );
        let other = all.start(b).expect("another node has its own");
        drop(held);
        assert_eq!(reading(&all, a), 0);
        assert_eq!(reading(&all, b), 1);
        drop(other);
        assert_eq!(reading(&all, b), 0);
        all.start(a).expect("room again");
    }
}
