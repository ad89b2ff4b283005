//! The orchestrator: asks nodes for sovereign scans on their profile's schedule.
//!
//! On every tick, a node is sent a signed `scan.sovereign` command when all of these hold:
//! - its profile's `[scan] interval` is not 0, and the policy allows `scan.sovereign`;
//! - the latest scan the Command Center *received* from it finished more than `interval` ago —
//!   or it has sent none and its spread offset (a fixed fraction of `[scan] spread` derived from
//!   its id) has passed since the Command Center started. (A scan the heartbeat names but that
//!   never arrived does not count.)
//! - it is not stale (a command to a silent node would only expire);
//! - no `scan.sovereign` was issued to it in the last `min(interval, 1h)` (one attempt at a
//!   time, and a node that refuses the action is not asked again every tick).
//!
//! At most [`MAX_PER_TICK`] commands go out per tick, so a fleet is never asked all at once.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use vaultmesh_store::Store;
use vaultmesh_store::policy::LivePolicies;
use vaultmesh_store::policy::settings::ScanSchedule;

/// Scan commands issued per tick at most.
pub const MAX_PER_TICK: usize = 20;
/// The action the orchestrator issues.
pub const SCAN_ACTION: &str = "scan.sovereign";
/// Time to live of a scheduled scan command.
const SCAN_TTL: Duration = Duration::from_secs(600);

/// The node's fixed offset within `spread`.
pub fn offset(node_id: Uuid, spread: Duration) -> Duration {
    let ms = spread.as_millis() as u64;
    if ms == 0 {
        return Duration::ZERO;
    }
    let h = node_id.as_u128();
    Duration::from_millis(((h ^ (h >> 64)) as u64) % ms)
}

/// Whether a node is due for a scan at `now`.
pub fn due(
    node_id: Uuid,
    last_scan: Option<DateTime<Utc>>,
    started_at: DateTime<Utc>,
    schedule: &ScanSchedule,
    now: DateTime<Utc>,
) -> bool {
    if schedule.interval.is_zero() {
        return false;
    }
    let since = |t: DateTime<Utc>| (now - t).to_std().unwrap_or_default();
    match last_scan {
        Some(t) => since(t) >= schedule.interval,
        None => since(started_at) >= offset(node_id, schedule.spread),
    }
}

#[derive(Debug)]
pub struct Orchestrator {
    store: Arc<dyn Store>,
    policies: Arc<LivePolicies>,
    key: Option<Arc<vaultmesh_proto::auth::NodeKey>>,
    tick: Duration,
    started_at: DateTime<Utc>,
    metrics: Option<Arc<dyn crate::Observer>>,
}

impl Orchestrator {
    pub fn new(
        store: Arc<dyn Store>,
        policies: Arc<LivePolicies>,
        key: Option<Arc<vaultmesh_proto::auth::NodeKey>>,
        tick: Duration,
    ) -> Self {
        Orchestrator {
            store,
            policies,
            key,
            tick,
            started_at: Utc::now(),
            metrics: None,
        }
    }

    /// Counts the scans it issues in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<dyn crate::Observer>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Runs until `cancel`. Without a signing key there is nothing to do.
    pub async fn run(self, cancel: CancellationToken) {
        if self.key.is_none() {
            tracing::info!("No command-signing key: scheduled scans are off.");
            return;
        }
        let mut ticker = tokio::time::interval(self.tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                // With a shared database, one instance (the leader) schedules for the fleet.
                _ = ticker.tick() => if self.store.leads() { self.tick_once(Utc::now()).await; },
            }
        }
    }

    /// Issues the scans due at `now`; returns how many.
    pub async fn tick_once(&self, now: DateTime<Utc>) -> usize {
        let Some(key) = &self.key else {
            return 0;
        };
        let policies = self.policies.get();
        let mut issued = 0;
        let mut ids = self.store.node_ids();
        ids.sort_by_key(|id| offset(*id, Duration::from_secs(3600)));
        for node_id in ids {
            if issued >= MAX_PER_TICK {
                break;
            }
            let Some(snap) = self.store.snapshot(node_id) else {
                continue;
            };
            if snap.revoked.is_some() {
                continue; // its key is refused: it could not fetch the command
            }
            let settings = policies.settings(&snap.latest.os_profile);
            let stale = (now - snap.last_seen).to_std().unwrap_or_default()
                >= settings.attention.stale_after;
            if stale {
                continue;
            }
            let last = snap.latest_scan.as_ref().map(|s| s.finished_at);
            if !due(node_id, last, self.started_at, &settings.scan, now) {
                continue;
            }
            let retry = settings.scan.interval.min(Duration::from_secs(3600));
            let recently_asked = self
                .store
                .commands(Some(node_id), None, 50)
                .iter()
                .any(|c| {
                    c.signed.command.action == SCAN_ACTION
                        && (now - c.signed.command.issued_at)
                            .to_std()
                            .unwrap_or_default()
                            < retry
                });
            if recently_asked {
                continue;
            }
            let req = crate::issue::IssueRequest {
                node_id,
                action: SCAN_ACTION.to_string(),
                args: serde_json::json!({}),
                ttl: SCAN_TTL,
                issued_by: "orchestrator".to_string(),
            };
            match crate::issue::issue(self.store.as_ref(), &self.policies, Arc::clone(key), req)
                .await
            {
                Ok(_) => {
                    issued += 1;
                    if let Some(m) = &self.metrics {
                        m.command_issued("orchestrator");
                    }
                }
                // The profile's policy does not allow scans: nothing to schedule.
                Err(crate::issue::IssueError::Refused(_)) => {}
                Err(e) => tracing::warn!(%node_id, error = %e, "Cannot schedule a scan."),
            }
        }
        issued
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn due_after_interval_or_spread_offset() {
        let s = ScanSchedule {
            interval: Duration::from_secs(3600),
            spread: Duration::from_secs(600),
        };
        let id = Uuid::from_u128((0xdead_beef << 64) | 12_345_678);
        let off = offset(id, s.spread).as_secs() as i64;
        assert!(off > 0 && off < 600, "{off}");
        assert!(!due(id, None, t(0), &s, t(off - 1)));
        assert!(due(id, None, t(0), &s, t(off + 1)));
        assert!(!due(id, Some(t(0)), t(0), &s, t(3599)));
        assert!(due(id, Some(t(0)), t(0), &s, t(3600)));
        let off = ScanSchedule {
            interval: Duration::ZERO,
            ..s
        };
        assert!(!due(id, None, t(0), &off, t(100_000)));
    }

    /// A real store with one node per profile, and the policies for them.
    fn fleet(policy: &str) -> (tempfile::TempDir, Orchestrator, Arc<dyn Store>) {
        let dir = tempfile::tempdir().unwrap();
        let pol = dir.path().join("policies");
        std::fs::create_dir_all(&pol).unwrap();
        std::fs::write(pol.join("Test.toml"), policy).unwrap();
        std::fs::create_dir_all(dir.path().join("logs")).unwrap();
        let bus = Arc::new(vaultmesh_store::bus::Bus::new(16, 16));
        let (store, _) = vaultmesh_store::JsonlStore::open(
            &vaultmesh_store::StoreOptions::new(dir.path().join("logs")),
            bus,
        )
        .unwrap();
        let store: Arc<dyn Store> = Arc::new(store);
        let policies = Arc::new(LivePolicies::new(
            Some(&pol),
            vaultmesh_store::policy::Policies::load(Some(&pol)).unwrap(),
        ));
        let key = Arc::new(vaultmesh_proto::auth::NodeKey::from_seed([7; 32]));
        let o = Orchestrator::new(
            Arc::clone(&store),
            policies,
            Some(key),
            Duration::from_secs(1),
        );
        (dir, o, store)
    }

    async fn heartbeat(
        store: &Arc<dyn Store>,
        id: u128,
        profile: &str,
        seen: DateTime<Utc>,
        scanned: Option<DateTime<Utc>>,
    ) {
        let hb: vaultmesh_proto::NodeHeartbeat = serde_json::from_value(serde_json::json!({
            "node_id": Uuid::from_u128(id), "hostname": format!("n{id}"), "os_profile": profile,
            "cloudflare_ok": true, "services_ok": true, "vaultmesh_root": "/", "timestamp": seen,
            "last_scan": scanned.map(|t| serde_json::json!({"scan_id": "x", "finished_at": t})),
        }))
        .unwrap();
        store.record_heartbeat(hb, seen).await.unwrap();
    }

    async fn scan(store: &Arc<dyn Store>, id: u128, finished: DateTime<Utc>) {
        let report = vaultmesh_proto::ScanReport {
            scan_id: Uuid::new_v4(),
            node_id: Uuid::from_u128(id),
            profile: "Test".into(),
            started_at: finished,
            finished_at: finished,
            findings: vec![],
            fingerprint: Default::default(),
            counts: Default::default(),
            rules: vec![],
            errors: vec![],
            truncated: false,
        };
        store.record_scan(report, Utc::now()).await.unwrap();
    }

    fn scans_issued(store: &Arc<dyn Store>, id: u128) -> usize {
        store
            .commands(Some(Uuid::from_u128(id)), None, 100)
            .iter()
            .filter(|c| {
                c.signed.command.action == SCAN_ACTION
                    && c.signed.command.issued_by == "orchestrator"
            })
            .count()
    }

    #[tokio::test]
    async fn schedules_signed_scans_for_due_nodes_only_and_once() {
        let policy = "[commands]\nallow = [{ action = \"scan.sovereign\" }]\n[scan]\ninterval = \"1h\"\nspread = \"0s\"\n";
        let (_dir, o, store) = fleet(policy);
        let now = Utc::now();
        heartbeat(&store, 1, "Test", now, None).await; // never scanned: due
        heartbeat(&store, 2, "Test", now, None).await;
        scan(&store, 2, now - chrono::Duration::minutes(5)).await; // fresh scan
        // The heartbeat names a fresh scan that never arrived: only received scans count.
        heartbeat(&store, 3, "Test", now, Some(now)).await;
        scan(&store, 3, now - chrono::Duration::hours(2)).await; // old scan: due
        heartbeat(&store, 4, "Test", now - chrono::Duration::hours(1), None).await; // stale: skipped
        heartbeat(&store, 5, "Other", now, None).await; // no policy allows the action
        assert_eq!(o.tick_once(now).await, 2);
        assert_eq!(
            (1..=5).map(|n| scans_issued(&store, n)).collect::<Vec<_>>(),
            [1, 0, 1, 0, 0]
        );
        let c = &store.commands(Some(Uuid::from_u128(1)), None, 1)[0].signed;
        let key = vaultmesh_proto::auth::NodeKey::from_seed([7; 32]);
        let public = vaultmesh_proto::auth::parse_public_key(&key.public_base64()).unwrap();
        assert!(c.verify(&public).is_ok(), "signed by the CC key");
        // The next tick does not ask again while the first request is recent.
        assert_eq!(o.tick_once(now + chrono::Duration::seconds(30)).await, 0);
        // Once the retry window (min(interval, 1h)) has passed, a node that never answered is
        // asked again; one that went silent meanwhile is not.
        let later = now + chrono::Duration::minutes(61);
        heartbeat(&store, 1, "Test", later, None).await;
        assert_eq!(o.tick_once(later).await, 1);
        assert_eq!(scans_issued(&store, 1), 2);
        assert_eq!(scans_issued(&store, 3), 1);
    }

    #[tokio::test]
    async fn a_zero_interval_turns_scheduled_scans_off() {
        let policy =
            "[commands]\nallow = [{ action = \"scan.sovereign\" }]\n[scan]\ninterval = \"0\"\n";
        let (_dir, o, store) = fleet(policy);
        heartbeat(&store, 1, "Test", Utc::now(), None).await;
        assert_eq!(o.tick_once(Utc::now()).await, 0);
    }

    #[test]
    fn offsets_spread_a_fleet() {
        let spread = Duration::from_secs(600);
        let mut buckets = [0u32; 10];
        for i in 0..1000u128 {
            let o = offset(Uuid::from_u128(i * 7919 + (i << 70)), spread);
            buckets[(o.as_secs() / 60) as usize] += 1;
        }
        assert!(buckets.iter().all(|b| *b > 50), "{buckets:?}");
    }
}
