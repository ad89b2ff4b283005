//! The history tiers: rollup, merging, forecasts, tier files and the first start over a log without them.

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use uuid::Uuid;
use vaultmesh_proto::history::{MAX_POINTS, Range, Tier};

use super::files::TierFiles;
use super::*;

fn at(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(secs, 0).unwrap()
}

fn sample(load: f64, disk: f64) -> Vec<Sample> {
    vec![
        ("load1".into(), load),
        (format!("{DISK_PREFIX}/").into(), disk),
    ]
}

/// 2026-12-01T00:00:00Z, a multiple of every bucket width.
const T0: i64 = 1_796_083_200;

#[test]
fn a_bucket_closes_when_a_later_one_starts_with_min_avg_max_of_its_samples() {
    let node = Uuid::from_u128(1);
    let mut r = Rollup::default();
    let mut closed = Vec::new();
    // Every 30 s for 65 minutes, load rising 0, 1, 2, ...
    for i in 0..130 {
        closed.extend(r.add(node, at(T0 + i * 30), &sample(i as f64, 50.0)));
    }
    let five: Vec<_> = closed
        .iter()
        .filter(|c| c.tier == Tier::FiveMinutes)
        .collect();
    assert_eq!(
        five.len(),
        12,
        "12 five-minute buckets closed in the first hour"
    );
    let first = &five[0].bucket;
    assert_eq!(first.start, T0);
    let (_, load) = first.metrics.iter().find(|(n, _)| n == "load1").unwrap();
    assert_eq!((load.min, load.max, load.n), (0.0, 9.0, 10));
    assert_eq!(load.avg(), 4.5);
    let hour: Vec<_> = closed.iter().filter(|c| c.tier == Tier::Hour).collect();
    assert_eq!(hour.len(), 1);
    assert_eq!(hour[0].bucket.start, T0);
    let (_, load) = hour[0]
        .bucket
        .metrics
        .iter()
        .find(|(n, _)| n == "load1")
        .unwrap();
    assert_eq!((load.min, load.max, load.n), (0.0, 119.0, 120));
    // The open buckets hold the rest.
    let node_r = r.node(&node).unwrap();
    assert_eq!(node_r.open(Tier::Hour).unwrap().start, T0 + 3_600);
    assert_eq!(node_r.open(Tier::FiveMinutes).unwrap().start, T0 + 3_600);
}

#[test]
fn raw_samples_keep_the_last_hour_and_absent_metrics_stay_absent() {
    let node = Uuid::from_u128(2);
    let mut r = Rollup::default();
    for i in 0..300 {
        let mut s = sample(1.0, 10.0);
        if i % 2 == 1 {
            s.push(("swap_used_pct".into(), 5.0));
        }
        r.add(node, at(T0 + i * 30), &s);
    }
    let now = T0 + 299 * 30;
    let recent = recent(r.node(&node).unwrap(), Range::Hour, now - 3_600);
    assert_eq!(
        recent.buckets.len(),
        121,
        "an hour of samples at 30 s, both ends in"
    );
    let swaps = recent
        .buckets
        .iter()
        .filter(|b| b.metrics.iter().any(|(n, _)| n == "swap_used_pct"))
        .count();
    assert!((60..=61).contains(&swaps), "{swaps}");
}

#[test]
fn an_answer_merges_stored_and_open_buckets_into_at_most_300_points() {
    let node = Uuid::from_u128(3);
    let mut r = Rollup::default();
    let mut stored = Vec::new();
    // 31 days every 5 minutes.
    let n = 31 * 288;
    for i in 0..n {
        for c in r.add(node, at(T0 + i * 300), &sample((i % 10) as f64, 40.0)) {
            if c.tier == Tier::Hour {
                stored.push(c.bucket);
            }
        }
    }
    let now = at(T0 + (n - 1) * 300 + 10);
    let node_r = r.node(&node).unwrap();
    let from = now.timestamp() - Range::Month.secs();
    let h = answer(
        node,
        Range::Month,
        now,
        stored.clone(),
        recent(node_r, Range::Month, from),
        &[],
    );
    assert_eq!(h.resolution_secs, 10_800);
    assert_eq!(h.tier, Tier::Hour);
    for s in &h.series {
        assert!(
            s.points.len() <= MAX_POINTS,
            "{}: {}",
            s.metric,
            s.points.len()
        );
        assert!(s.points.len() >= 239, "{}: {}", s.metric, s.points.len());
        assert!(s.points.windows(2).all(|w| w[0].t < w[1].t));
    }
    let load = h.series.iter().find(|s| s.metric == "load1").unwrap();
    assert_eq!(
        h.series[0].metric, "load1",
        "fixed metrics first, disks after"
    );
    let full = &load.points[10];
    assert_eq!((full.min, full.max, full.n), (0.0, 9.0, 36));
    assert_eq!(full.avg, 4.5);
    // The newest point includes the open hour.
    let last = load.points.last().unwrap();
    assert!(last.t.timestamp() + 10_800 > now.timestamp());
    // Asking for one metric answers only it.
    let one = answer(
        node,
        Range::Month,
        now,
        stored,
        recent(node_r, Range::Month, from),
        &["load1".into()],
    );
    assert_eq!(one.series.len(), 1);
    assert!(one.forecasts.is_empty());
}

#[test]
fn unknown_metrics_are_refused_with_the_near_name() {
    let e = check_metrics(&["load1".into(), "mem_used".into()]).unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("\"mem_used\"") && text.contains("did you mean \"mem_used_pct\""),
        "{text}"
    );
    check_metrics(&[format!("{DISK_PREFIX}/var")]).unwrap();
}

#[test]
fn a_disk_growing_a_percent_a_day_is_full_when_the_line_says() {
    let node = Uuid::from_u128(4);
    let mut r = Rollup::default();
    // 7 days, hourly: 60 % rising 1 % per day.
    for h in 0..(7 * 24 + 1) {
        let pct = 60.0 + h as f64 / 24.0;
        r.add(node, at(T0 + h * 3_600), &sample(0.5, pct));
    }
    let f = r.node(&node).unwrap().forecasts();
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].mount, "/");
    assert!((f[0].pct_per_day - 1.0).abs() < 1e-6, "{f:?}");
    assert!((f[0].days_until_full.unwrap() - 33.0).abs() < 0.01, "{f:?}");
    // A flat disk is never full.
    let mut r = Rollup::default();
    for h in 0..48 {
        r.add(node, at(T0 + h * 3_600), &sample(0.5, 70.0));
    }
    assert_eq!(r.node(&node).unwrap().forecasts()[0].days_until_full, None);
    // Too little history: no forecast.
    let mut r = Rollup::default();
    for h in 0..3 {
        r.add(node, at(T0 + h * 3_600), &sample(0.5, 70.0));
    }
    assert!(r.node(&node).unwrap().forecasts().is_empty());
}

#[test]
fn a_rollup_begun_mid_hour_takes_the_stored_whole_hours_for_its_trend() {
    let node = Uuid::from_u128(5);
    // A disk rising 1 % per hour, a sample a minute, over 10 hours: the whole log.
    let pct = |m: i64| 50.0 + m as f64 / 60.0;
    let mut whole = Rollup::default();
    let mut stored = Vec::new();
    for m in 0..600 {
        for c in whole.add(node, at(T0 + m * 60), &sample(0.5, pct(m))) {
            if c.tier == Tier::Hour {
                stored.push(c.bucket);
            }
        }
    }
    // A restart whose floor fell at 8:55: the rollup sees 8:55 to 10:00 only, its 8:00 hour
    // holds five minutes. Seeded with the stored hours, it forecasts as the whole log does.
    let mut restarted = Rollup::default();
    for m in 535..600 {
        restarted.add(node, at(T0 + m * 60), &sample(0.5, pct(m)));
    }
    restarted.seed_trend(node, &stored);
    let (a, b) = (
        whole.node(&node).unwrap().forecasts(),
        restarted.node(&node).unwrap().forecasts(),
    );
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].hours, b[0].hours);
    assert!(
        (a[0].pct_per_day - b[0].pct_per_day).abs() < 1e-4,
        "{a:?} {b:?}"
    );
    assert!((a[0].pct_per_day - 24.0).abs() < 1e-3, "{a:?}");
}

fn closed(node: Uuid, tier: Tier, start: i64, load: f64) -> Closed {
    Closed {
        node,
        tier,
        bucket: Bucket {
            start,
            metrics: vec![("load1".into(), Agg::of(load))],
        },
    }
}

#[tokio::test]
async fn tier_files_keep_the_first_copy_of_a_bucket_and_skip_a_torn_line() {
    let dir = tempfile::tempdir().unwrap();
    let node = Uuid::from_u128(5);
    let files = TierFiles::open(dir.path().join("history"), HistoryOptions::default()).unwrap();
    files.store(vec![
        closed(node, Tier::FiveMinutes, T0, 1.0),
        closed(node, Tier::FiveMinutes, T0 + 300, 2.0),
        closed(node, Tier::Hour, T0, 1.5),
    ]);
    // Stored again (a replay after a crash): the first copy stays.
    files.store(vec![closed(node, Tier::FiveMinutes, T0 + 300, 99.0)]);
    files.flush().await.unwrap();
    let got = files
        .read(node, Tier::FiveMinutes, T0, T0 + 600)
        .await
        .unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].metrics[0].1.max, 2.0);
    let path = dir
        .path()
        .join("history")
        .join(node.to_string())
        .join("5m-2026-12-01.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 2);
    // A torn last line (a crash mid-write) is skipped by readers, and a new writer goes on
    // after the newest complete bucket.
    std::fs::write(&path, format!("{text}{{\"t\":{},\"m\":{{\"lo", T0 + 600)).unwrap();
    drop(files);
    let files = TierFiles::open(dir.path().join("history"), HistoryOptions::default()).unwrap();
    assert_eq!(
        files.newest(node, Tier::FiveMinutes).unwrap(),
        Some(T0 + 300)
    );
    let got = files
        .read(node, Tier::FiveMinutes, T0, T0 + 900)
        .await
        .unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(
        files
            .read(node, Tier::Hour, T0, T0 + 1)
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn tier_files_past_their_retention_are_deleted_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let node = Uuid::from_u128(6);
    let now = Utc::now().timestamp();
    let old = now - 40 * 86_400;
    let files = TierFiles::open(dir.path().join("history"), HistoryOptions::default()).unwrap();
    files.store(vec![
        closed(node, Tier::FiveMinutes, old - old % 300, 1.0),
        closed(node, Tier::FiveMinutes, now - now % 300 - 300, 1.0),
        closed(node, Tier::Hour, old - old % 3_600, 1.0),
    ]);
    files.flush().await.unwrap();
    drop(files);
    let files = TierFiles::open(dir.path().join("history"), HistoryOptions::default()).unwrap();
    // The writer expires before it takes anything else.
    files.flush().await.unwrap();
    let all = i64::MIN..i64::MAX;
    assert_eq!(
        files
            .read(node, Tier::FiveMinutes, all.start, all.end)
            .await
            .unwrap()
            .len(),
        1,
        "the 5-minute bucket of 40 days ago is past the 30-day retention"
    );
    assert_eq!(
        files
            .read(node, Tier::Hour, all.start, all.end)
            .await
            .unwrap()
            .len(),
        1,
        "hours are kept 2 years"
    );
}

#[tokio::test]
async fn the_first_start_over_a_log_without_tiers_rolls_its_history_up_once() {
    use crate::record;
    let dir = tempfile::tempdir().unwrap();
    // A heartbeat log as today's main writes it: two nodes, every 30 s for 3 hours, ending now.
    let now = Utc::now().timestamp();
    let start = now - 3 * 3_600;
    let mut log = Vec::new();
    for i in 0..360 {
        for n in 0..2u128 {
            let node = Uuid::from_u128(100 + n);
            let hb: vaultmesh_proto::NodeHeartbeat = serde_json::from_value(serde_json::json!({
                "node_id": node, "hostname": format!("n{n}"), "os_profile": "ArchVault",
                "cloudflare_ok": true, "services_ok": true, "vaultmesh_root": "/var/lib/vaultmesh",
                "timestamp": at(start + i * 30), "agent_version": "0.1.0",
                "metrics": {"load": [i as f64 / 100.0, 0.1, 0.1], "disks": [
                    {"mount": "/", "fs": "ext4", "total_bytes": 1000, "used_bytes": 500 + i}]},
                "checks": [{"name": "disk", "status": "ok", "summary": "fine", "observed_at": at(start + i * 30)}]
            }))
            .unwrap();
            log.extend(record::encode("heartbeat", at(start + i * 30), Some(node), &hb).unwrap());
        }
    }
    std::fs::write(dir.path().join("heartbeats.jsonl"), &log).unwrap();
    let open = || {
        crate::JsonlStore::open(
            &crate::StoreOptions::new(dir.path().to_path_buf()),
            Arc::new(crate::bus::Bus::new(16, 16)),
        )
        .unwrap()
        .0
    };
    let store = open();
    let node = Uuid::from_u128(100);
    let h = crate::Store::history(&store, node, Range::Day, &[])
        .await
        .unwrap()
        .unwrap();
    let disk = h
        .series
        .iter()
        .find(|s| s.metric == "disk_used_pct:/")
        .unwrap();
    assert!(
        (35..=37).contains(&disk.points.len()),
        "3 hours of 5-minute points: {}",
        disk.points.len()
    );
    assert_eq!(disk.points[1].n, 10);
    let checks = h.series.iter().find(|s| s.metric == "checks_ok").unwrap();
    assert!(checks.points.iter().all(|p| p.avg == 1.0));
    crate::Backend::memory(&store.backend)
        .tiers()
        .flush()
        .await
        .unwrap();
    let node_dir = dir.path().join("history").join(node.to_string());
    let lines = |dir: &std::path::Path| -> usize {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                std::fs::read_to_string(e.unwrap().path())
                    .unwrap()
                    .lines()
                    .count()
            })
            .sum()
    };
    let stored = lines(&node_dir);
    assert!(stored >= 36, "{stored}");
    drop(store);
    // A second start (still without a snapshot) stores nothing twice and answers the same.
    let again = open();
    let h2 = crate::Store::history(&again, node, Range::Day, &[])
        .await
        .unwrap()
        .unwrap();
    crate::Backend::memory(&again.backend)
        .tiers()
        .flush()
        .await
        .unwrap();
    assert_eq!(lines(&node_dir), stored);
    assert_eq!(h2.series, h.series);
}

/// A fenced block `<lang> example=<name>` of a document.
fn doc_block(doc: &str, name: &str) -> String {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../docs")
            .join(doc),
    )
    .unwrap();
    let start = text
        .find(&format!(" example={name}\n"))
        .unwrap_or_else(|| panic!("{doc} has no block example={name}"));
    let body = &text[start..];
    let body = &body[body.find('\n').unwrap() + 1..];
    body[..body.find("\n```").unwrap()].to_string()
}

#[test]
fn the_api_example_is_what_the_rollup_answers() {
    let samples: Vec<(DateTime<Utc>, f64)> =
        serde_json::from_str(&doc_block("API.md", "history-samples")).unwrap();
    let printed: serde_json::Value =
        serde_json::from_str(&doc_block("API.md", "history-answer")).unwrap();
    let node: Uuid = printed["node_id"].as_str().unwrap().parse().unwrap();
    let mut r = Rollup::default();
    let mut stored = Vec::new();
    for (at, load) in samples {
        for c in r.add(node, at, &[("load1".into(), load)]) {
            if c.tier == Tier::FiveMinutes {
                stored.push(c.bucket);
            }
        }
    }
    let now: DateTime<Utc> = printed["to"].as_str().unwrap().parse().unwrap();
    let from = now.timestamp() - Range::Day.secs();
    let h = answer(
        node,
        Range::Day,
        now,
        stored,
        recent(r.node(&node).unwrap(), Range::Day, from),
        &["load1".into()],
    );
    assert_eq!(serde_json::to_value(&h).unwrap(), printed);
}
