//! [`Budgets`]: how many bytes each node may send per hour, per kind of record.
//!
//! A node inside its request rate could still fill the Command Center's disk — maximal scan
//! reports at 5 a second are 23 MiB/s. So each node's heartbeats, scan reports and receipts
//! are also budgeted in bytes: a token bucket per node and kind that holds an hour's budget and
//! refills over the hour. Beyond it the request is refused (`429` with `Retry-After`, counted in
//! `vaultmesh_budget_refusals_total{kind}`), nothing is stored, and the node gets an attention
//! reason (`budget.<kind>`, ATTN) for as long as it keeps being refused. A report larger than
//! the whole hourly budget can never fit and is refused with `413`.
//!
//! Counted after the signature check, so nobody can spend another node's budget.
//!
//! Node ids are cheap for whoever holds a multi-use enrollment token, so the fleet as a whole
//! has a budget per kind too ([`FleetLimits`]): beyond it every node's request of that kind is
//! refused (`429`) until it refills — the disk is protected even from many ids.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::buckets::Buckets;

/// What a budget covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Heartbeats,
    Scans,
    Receipts,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Heartbeats, Kind::Scans, Kind::Receipts];

    /// `heartbeats`, `scans`, `receipts`: the metric label and the attention rule's suffix.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Heartbeats => "heartbeats",
            Kind::Scans => "scans",
            Kind::Receipts => "receipts",
        }
    }

    /// What the node sent, in a sentence.
    fn what(self) -> &'static str {
        match self {
            Kind::Heartbeats => "heartbeats",
            Kind::Scans => "scan reports",
            Kind::Receipts => "command receipts",
        }
    }
}

/// Bytes per hour each node may send, per kind (`--heartbeat-budget`, `--scan-budget`,
/// `--receipt-budget`). A heartbeat every 30 s is about 2.7 KB: 330 KB an hour; a scan report
/// is at most 4.25 MiB and a few an hour is normal; a receipt is at most 64 KiB of output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Args)]
pub struct Limits {
    /// Bytes of heartbeats each node may send an hour (beyond: 429 and an attention reason).
    #[arg(
        id = "heartbeat_budget",
        value_name = "HEARTBEAT_BUDGET",
        long = "heartbeat-budget",
        default_value = "16MiB",
        value_parser = vaultmesh_process::size::parse
    )]
    pub heartbeats: u64,
    /// Bytes of scan reports each node may send an hour (a report is at most 4.25 MiB).
    #[arg(
        id = "scan_budget",
        value_name = "SCAN_BUDGET",
        long = "scan-budget",
        default_value = "64MiB",
        value_parser = vaultmesh_process::size::parse
    )]
    pub scans: u64,
    /// Bytes of command receipts each node may send an hour.
    #[arg(
        id = "receipt_budget",
        value_name = "RECEIPT_BUDGET",
        long = "receipt-budget",
        default_value = "16MiB",
        value_parser = vaultmesh_process::size::parse
    )]
    pub receipts: u64,
}

impl Default for Limits {
    fn default() -> Self {
        vaultmesh_process::cli::defaults()
    }
}

impl Limits {
    pub fn of(&self, kind: Kind) -> u64 {
        match kind {
            Kind::Heartbeats => self.heartbeats,
            Kind::Scans => self.scans,
            Kind::Receipts => self.receipts,
        }
    }
}

/// Bytes per hour the whole fleet may send, per kind (`--fleet-heartbeat-budget`,
/// `--fleet-scan-budget`, `--fleet-receipt-budget`).
///
/// The defaults leave room for `--max-nodes` (10,000) nodes at a heartbeat every 30 s (3.3 GB
/// an hour) and a full-size scan report each every 6 hours (7 GiB an hour).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Args)]
pub struct FleetLimits {
    /// Bytes of heartbeats the whole fleet may send an hour (node ids are cheap with a
    /// multi-use enrollment token; beyond: 429 for every node).
    #[arg(
        id = "fleet_heartbeat_budget",
        value_name = "FLEET_HEARTBEAT_BUDGET",
        long = "fleet-heartbeat-budget",
        default_value = "8GiB",
        value_parser = vaultmesh_process::size::parse
    )]
    pub heartbeats: u64,
    /// Bytes of scan reports the whole fleet may send an hour.
    #[arg(
        id = "fleet_scan_budget",
        value_name = "FLEET_SCAN_BUDGET",
        long = "fleet-scan-budget",
        default_value = "8GiB",
        value_parser = vaultmesh_process::size::parse
    )]
    pub scans: u64,
    /// Bytes of command receipts the whole fleet may send an hour.
    #[arg(
        id = "fleet_receipt_budget",
        value_name = "FLEET_RECEIPT_BUDGET",
        long = "fleet-receipt-budget",
        default_value = "2GiB",
        value_parser = vaultmesh_process::size::parse
    )]
    pub receipts: u64,
}

impl Default for FleetLimits {
    fn default() -> Self {
        vaultmesh_process::cli::defaults()
    }
}

impl From<FleetLimits> for Limits {
    fn from(f: FleetLimits) -> Limits {
        Limits {
            heartbeats: f.heartbeats,
            scans: f.scans,
            receipts: f.receipts,
        }
    }
}

/// A node's refusals of one kind: how many, the first and the last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusals {
    pub count: u64,
    pub since: DateTime<Utc>,
    pub last: DateTime<Utc>,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OverBudget {
    #[error(
        "node {node} sent more {what} than its budget of {budget} an hour; retry in {retry_after_s} s"
    )]
    Spent {
        node: Uuid,
        what: &'static str,
        budget: String,
        retry_after_s: u64,
    },
    #[error(
        "the fleet sent more {what} than the Command Center's budget of {budget} an hour for all nodes; retry in {retry_after_s} s"
    )]
    FleetSpent {
        what: &'static str,
        budget: String,
        retry_after_s: u64,
    },
    #[error("this {what} is {size} bytes, more than the node's whole budget of {budget} an hour")]
    TooLarge {
        what: &'static str,
        size: usize,
        budget: String,
    },
}

/// Every node's budgets, and its recent refusals.
#[derive(Debug)]
pub struct Budgets {
    limits: Limits,
    buckets: [Buckets<Uuid>; 3],
    fleet_limits: Limits,
    fleet: [Buckets<()>; 3],
    refused: Mutex<HashMap<(Uuid, Kind), Refusals>>,
}

/// A budget spent is refilled over this long.
const WINDOW_SECS: f64 = 3600.0;

impl Budgets {
    pub fn new(limits: Limits) -> Budgets {
        Budgets::with_fleet(limits, FleetLimits::default())
    }

    pub fn with_fleet(limits: Limits, fleet_limits: impl Into<Limits>) -> Budgets {
        let fleet_limits = fleet_limits.into();
        fn bucket<K: std::hash::Hash + Eq + Clone>(limits: Limits) -> impl Fn(Kind) -> Buckets<K> {
            move |k: Kind| {
                let b = limits.of(k) as f64;
                Buckets::new(b / WINDOW_SECS, b)
            }
        }
        Budgets {
            limits,
            buckets: Kind::ALL.map(bucket(limits)),
            fleet_limits,
            fleet: Kind::ALL.map(bucket(fleet_limits)),
            refused: Mutex::default(),
        }
    }

    /// Spends `bytes` of `node`'s `kind` budget, or says why not (and remembers the refusal).
    pub fn spend(&self, node: Uuid, kind: Kind, bytes: usize) -> Result<(), OverBudget> {
        let budget = vaultmesh_store::health::human_bytes(self.limits.of(kind));
        let refused = match self.buckets[kind as usize].take(&node, bytes as f64) {
            Ok(()) => {
                // The node is within its own budget; the fleet's is not the node's doing, so
                // it raises no attention reason on the node (the metric counts it).
                return self.fleet[kind as usize].take(&(), bytes as f64).map_err(
                    |retry_after_s| OverBudget::FleetSpent {
                        what: kind.what(),
                        budget: vaultmesh_store::health::human_bytes(self.fleet_limits.of(kind)),
                        retry_after_s: retry_after_s.min(WINDOW_SECS as u64),
                    },
                );
            }
            Err(u64::MAX) => OverBudget::TooLarge {
                what: kind.what(),
                size: bytes,
                budget,
            },
            Err(retry_after_s) => OverBudget::Spent {
                node,
                what: kind.what(),
                budget,
                retry_after_s,
            },
        };
        let now = Utc::now();
        let mut r = self.refused.lock().unwrap_or_else(|p| p.into_inner());
        let e = r.entry((node, kind)).or_insert(Refusals {
            count: 0,
            since: now,
            last: now,
        });
        e.count += 1;
        e.last = now;
        Err(refused)
    }

    /// `node`'s refusals by kind, within the last hour.
    pub fn refusals(&self, node: Uuid, now: DateTime<Utc>) -> Vec<(Kind, Refusals)> {
        let mut r = self.refused.lock().unwrap_or_else(|p| p.into_inner());
        r.retain(|_, v| (now - v.last).num_seconds() < WINDOW_SECS as i64);
        let mut out: Vec<(Kind, Refusals)> = r
            .iter()
            .filter(|((n, _), _)| *n == node)
            .map(|((_, k), v)| (*k, *v))
            .collect();
        out.sort_by_key(|(k, _)| *k);
        out
    }

    /// The budget of `kind`, for messages.
    pub fn limit(&self, kind: Kind) -> u64 {
        self.limits.of(kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn many_nodes_within_their_own_budgets_are_stopped_by_the_fleets() {
        let per_node = Limits {
            heartbeats: 1000,
            scans: 10_000,
            receipts: 1000,
        };
        let fleet = Limits {
            heartbeats: 1000,
            scans: 25_000,
            receipts: 1000,
        };
        let b = Budgets::with_fleet(per_node, fleet);
        // Three ids (as a stolen enrollment token mints them), each within its own budget.
        for i in 0..2 {
            b.spend(Uuid::from_u128(i), Kind::Scans, 10_000).unwrap();
        }
        let err = b
            .spend(Uuid::from_u128(9), Kind::Scans, 10_000)
            .unwrap_err();
        assert!(matches!(err, OverBudget::FleetSpent { .. }), "{err}");
        assert!(err.to_string().contains("for all nodes"), "{err}");
        assert!(
            b.refusals(Uuid::from_u128(9), Utc::now()).is_empty(),
            "not the node's fault: no attention reason"
        );
        b.spend(Uuid::from_u128(9), Kind::Heartbeats, 500)
            .expect("other kinds have their own fleet budget");
    }

    #[test]
    fn a_node_over_its_budget_is_refused_and_remembered_others_are_not() {
        let b = Budgets::new(Limits {
            heartbeats: 1000,
            scans: 10_000,
            receipts: 1000,
        });
        let (n, m) = (Uuid::from_u128(1), Uuid::from_u128(2));
        b.spend(n, Kind::Scans, 9_000).unwrap();
        let err = b.spend(n, Kind::Scans, 2_000).unwrap_err();
        assert!(
            err.to_string()
                .contains("more scan reports than its budget"),
            "{err}"
        );
        assert!(b.spend(m, Kind::Scans, 9_000).is_ok(), "per node");
        assert!(b.spend(n, Kind::Heartbeats, 500).is_ok(), "per kind");
        assert!(matches!(
            b.spend(m, Kind::Receipts, 5_000),
            Err(OverBudget::TooLarge { .. })
        ));
        let now = Utc::now();
        let r = b.refusals(n, now);
        assert_eq!(r.len(), 1);
        assert_eq!((r[0].0, r[0].1.count), (Kind::Scans, 1));
        assert!(
            b.refusals(n, now + chrono::Duration::hours(2)).is_empty(),
            "forgotten after an hour"
        );
    }
}
