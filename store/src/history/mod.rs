//! Each node's history in tiers: raw samples, 5-minute and 1-hour buckets with min/avg/max of
//! every metric a heartbeat measures ([`vaultmesh_proto::history::measure`]).
//!
//! [`Rollup`] is in memory and fed in log order by [`super::Memory::apply`] (and by replay):
//! each node's raw samples of the last hour and its two *open* buckets. A bucket closes when a
//! sample of a later bucket arrives; closed buckets go to the backend's [`Tiers`] — files under
//! `history/` for the JSONL store ([`files::TierFiles`]), tables for PostgreSQL — which keep
//! them for their retention ([`HistoryOptions`]). The raw tier on disk is the heartbeat log
//! itself (`--heartbeat-retention`), which is also what rebuilds the open buckets after a
//! crash: storing a closed bucket twice is harmless, [`Tiers::store`] keeps the first.
//!
//! A query ([`answer`]) merges closed buckets, the open one and (for `1h`) the raw samples
//! into points of the range's resolution.

pub mod files;
pub mod rebuild;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use vaultmesh_proto::history::{
    DISK_PREFIX, DiskForecast, METRICS, NodeHistory, Point, Range, Sample, Series, Tier, unit_of,
};

use super::StoreError;

/// How long the rolled-up tiers are kept (`serve` flags; the raw tier is the heartbeat log,
/// kept `--heartbeat-retention`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Args)]
pub struct HistoryOptions {
    /// Keep 5-minute history buckets this long.
    #[arg(
        long = "history-5m-retention",
        value_name = "DURATION",
        default_value = "30d",
        value_parser = vaultmesh_process::duration::parse_nonzero
    )]
    pub five_minutes: Duration,
    /// Keep 1-hour history buckets this long.
    #[arg(
        long = "history-1h-retention",
        value_name = "DURATION",
        default_value = "2y",
        value_parser = vaultmesh_process::duration::parse_nonzero
    )]
    pub hour: Duration,
}

impl Default for HistoryOptions {
    fn default() -> Self {
        vaultmesh_process::cli::defaults()
    }
}

impl HistoryOptions {
    pub fn retention(&self, tier: Tier) -> Duration {
        match tier {
            Tier::FiveMinutes => self.five_minutes,
            Tier::Hour | Tier::Raw => self.hour,
        }
    }
}

/// Raw samples kept in memory per node: the last hour and a bit (the `1h` range), at most this
/// many.
pub const RAW_SECS: i64 = 3_600 + 300;
pub const RAW_MAX: usize = 1_440;

/// Hourly disk averages kept per node for the forecast: 7 days.
pub const TREND_HOURS: usize = 7 * 24;

/// Running min, max and sum of one metric in a bucket.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Agg {
    pub min: f64,
    pub max: f64,
    pub sum: f64,
    pub n: u32,
}

impl Agg {
    pub fn of(v: f64) -> Agg {
        Agg {
            min: v,
            max: v,
            sum: v,
            n: 1,
        }
    }

    pub fn add(&mut self, o: Agg) {
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
        self.sum += o.sum;
        self.n += o.n;
    }

    pub fn avg(&self) -> f64 {
        self.sum / f64::from(self.n.max(1))
    }
}

/// A bucket of one tier: its start (Unix seconds, a multiple of the tier's width) and each
/// metric's aggregate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bucket {
    pub start: i64,
    pub metrics: Vec<(String, Agg)>,
}

/// A bucket's metrics as stored — the JSONL line's `m`, PostgreSQL's `metrics` column — each
/// `[min, avg, max, samples]` to three decimals ([`round`]). Both stores keep exactly this, so
/// they answer a query with the same figures.
pub type StoredMetrics = BTreeMap<String, (f64, f64, f64, u32)>;

impl Bucket {
    /// The metrics as stored.
    pub fn stored_metrics(&self) -> StoredMetrics {
        self.metrics
            .iter()
            .map(|(n, a)| (n.clone(), (round(a.min), round(a.avg()), round(a.max), a.n)))
            .collect()
    }

    /// A stored bucket read back.
    pub fn from_stored(start: i64, metrics: StoredMetrics) -> Bucket {
        Bucket {
            start,
            metrics: metrics
                .into_iter()
                .map(|(n, (min, avg, max, count))| {
                    (
                        n,
                        Agg {
                            min,
                            max,
                            sum: avg * f64::from(count),
                            n: count,
                        },
                    )
                })
                .collect(),
        }
    }

    /// Each filesystem's average, for the trend.
    fn disk_avgs(&self) -> Vec<(String, f32)> {
        self.metrics
            .iter()
            .filter(|(n, _)| n.starts_with(DISK_PREFIX))
            .map(|(n, a)| (n.clone(), a.avg() as f32))
            .collect()
    }

    fn add(&mut self, sample: &[Sample]) {
        for (name, v) in sample {
            if !v.is_finite() {
                continue;
            }
            match self.metrics.iter_mut().find(|(n, _)| n == name) {
                Some((_, agg)) => agg.add(Agg::of(*v)),
                None => self.metrics.push((name.to_string(), Agg::of(*v))),
            }
        }
    }
}

/// A bucket that will not change any more, for [`Tiers::store`].
#[derive(Debug, Clone, PartialEq)]
pub struct Closed {
    pub node: Uuid,
    pub tier: Tier,
    pub bucket: Bucket,
}

/// One node's part of the rollup.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeRollup {
    /// Metric names of the raw samples, by index.
    names: Vec<String>,
    /// Raw samples, oldest first: `(ts, value per name; NaN where absent)`.
    raw: VecDeque<(i64, Vec<f32>)>,
    five: Option<Bucket>,
    hour: Option<Bucket>,
    /// Each closed hour's disk averages, oldest first, at most [`TREND_HOURS`].
    trend: VecDeque<(i64, Vec<(String, f32)>)>,
}

impl NodeRollup {
    fn add(&mut self, node: Uuid, ts: i64, sample: &[Sample], closed: &mut Vec<Closed>) {
        let mut values = vec![f32::NAN; self.names.len()];
        for (name, v) in sample.iter().filter(|(_, v)| v.is_finite()) {
            let i = match self.names.iter().position(|n| n == name) {
                Some(i) => i,
                None => {
                    self.names.push(name.to_string());
                    values.push(f32::NAN);
                    self.names.len() - 1
                }
            };
            values[i] = *v as f32;
        }
        self.raw.push_back((ts, values));
        while self
            .raw
            .front()
            .is_some_and(|(t, _)| *t < ts - RAW_SECS || self.raw.len() > RAW_MAX)
        {
            self.raw.pop_front();
        }
        for tier in [Tier::FiveMinutes, Tier::Hour] {
            let width = i64::from(tier.secs());
            let start = ts - ts.rem_euclid(width);
            let open = match tier {
                Tier::FiveMinutes => &mut self.five,
                _ => &mut self.hour,
            };
            match open {
                // A sample from before the open bucket (the clock stepped back) joins it.
                Some(b) if b.start >= start => b.add(sample),
                _ => {
                    let mut fresh = Bucket {
                        start,
                        metrics: Vec::with_capacity(sample.len()),
                    };
                    fresh.add(sample);
                    if let Some(done) = open.replace(fresh) {
                        if tier == Tier::Hour {
                            self.trend.push_back((done.start, done.disk_avgs()));
                            while self.trend.len() > TREND_HOURS {
                                self.trend.pop_front();
                            }
                        }
                        closed.push(Closed {
                            node,
                            tier,
                            bucket: done,
                        });
                    }
                }
            }
        }
    }

    fn open(&self, tier: Tier) -> Option<&Bucket> {
        match tier {
            Tier::FiveMinutes => self.five.as_ref(),
            Tier::Hour => self.hour.as_ref(),
            Tier::Raw => None,
        }
    }

    /// Each filesystem's trend over the closed hours kept (and the open hour).
    pub fn forecasts(&self) -> Vec<DiskForecast> {
        let mut by_disk: BTreeMap<&str, Vec<(f64, f64)>> = BTreeMap::new();
        let open = self.hour.iter().map(|b| {
            let disks = b
                .metrics
                .iter()
                .filter(|(n, _)| n.starts_with(DISK_PREFIX))
                .map(|(n, a)| (n.as_str(), a.avg()));
            (b.start, disks.collect::<Vec<_>>())
        });
        let closed = self.trend.iter().map(|(t, disks)| {
            (
                *t,
                disks
                    .iter()
                    .map(|(n, v)| (n.as_str(), f64::from(*v)))
                    .collect(),
            )
        });
        let newest = self.hour.as_ref().map(|b| b.start);
        for (t, disks) in closed.chain(open) {
            // Only the last 7 days, counted from the newest hour.
            if newest.is_some_and(|n| t < n - TREND_HOURS as i64 * 3_600) {
                continue;
            }
            for (name, v) in disks {
                by_disk
                    .entry(name)
                    .or_default()
                    .push((t as f64 / 86_400.0, v));
            }
        }
        by_disk
            .into_iter()
            .filter_map(|(name, points)| forecast(&name[DISK_PREFIX.len()..], &points))
            .collect()
    }
}

/// Hours of data below which a trend is not worth a forecast.
pub const FORECAST_MIN_HOURS: u32 = 6;

/// A least-squares line through `(day, used %)` points, and when it reaches 100 %.
fn forecast(mount: &str, points: &[(f64, f64)]) -> Option<DiskForecast> {
    let hours = u32::try_from(points.len()).ok()?;
    if hours < FORECAST_MIN_HOURS {
        return None;
    }
    let n = points.len() as f64;
    let (sx, sy) = points
        .iter()
        .fold((0.0, 0.0), |(sx, sy), (x, y)| (sx + x, sy + y));
    let (mx, my) = (sx / n, sy / n);
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (x, y) in points {
        sxy += (x - mx) * (y - my);
        sxx += (x - mx) * (x - mx);
    }
    let slope = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    let used_pct = points.last()?.1;
    let days_until_full = (slope > 1e-9).then(|| ((100.0 - used_pct) / slope).max(0.0));
    Some(DiskForecast {
        mount: mount.to_string(),
        used_pct,
        pct_per_day: slope,
        days_until_full,
        hours,
    })
}

/// Every node's rollup.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollup {
    nodes: HashMap<Uuid, NodeRollup>,
}

impl Rollup {
    /// Adds one heartbeat's measurements, received at `ts`; returns the buckets it closed.
    pub fn add(&mut self, node: Uuid, ts: DateTime<Utc>, sample: &[Sample]) -> Vec<Closed> {
        let mut closed = Vec::new();
        self.nodes
            .entry(node)
            .or_default()
            .add(node, ts.timestamp(), sample, &mut closed);
        closed
    }

    pub fn node(&self, node: &Uuid) -> Option<&NodeRollup> {
        self.nodes.get(node)
    }

    /// Forgets a node (its stored tiers stay).
    pub fn remove(&mut self, node: &Uuid) {
        self.nodes.remove(node);
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Fills a node's trend from stored hourly buckets (after a replay that did not see them).
    /// A stored hour replaces the rollup's hour of the same start: the rollup after a start
    /// begins at [`floor`], often within an hour, and that first hour holds only the samples
    /// since; the stored one holds them all.
    pub fn seed_trend(&mut self, node: Uuid, hours: &[Bucket]) {
        let r = self.nodes.entry(node).or_default();
        let mut trend: BTreeMap<i64, Vec<(String, f32)>> = r.trend.drain(..).collect();
        for b in hours {
            trend.insert(b.start, b.disk_avgs());
        }
        let skip = trend.len().saturating_sub(TREND_HOURS);
        r.trend = trend.into_iter().skip(skip).collect();
    }
}

/// Where closed buckets are kept: files for the JSONL store, tables for PostgreSQL.
#[async_trait]
pub trait Tiers: Send + Sync + std::fmt::Debug {
    /// Queues closed buckets to be stored; never blocks. A bucket already stored (same node,
    /// tier and start) is kept as it was.
    fn store(&self, closed: Vec<Closed>);

    /// Returns once every bucket queued so far is durable.
    async fn flush(&self) -> Result<(), StoreError>;

    /// [`Tiers::flush`] from a thread outside the async runtime (the snapshot writer: a
    /// snapshot's rollup is past every bucket it closed, so those must be durable first).
    fn flush_blocking(&self) -> Result<(), StoreError>;

    /// One node's stored buckets of `tier` starting in `[from, to)` (Unix seconds), oldest first.
    async fn read(
        &self,
        node: Uuid,
        tier: Tier,
        from: i64,
        to: i64,
    ) -> Result<Vec<Bucket>, StoreError>;
}

/// From when a node's heartbeats must be rolled up again after a replay without a snapshot:
/// the start of its oldest bucket not stored yet, less the raw samples' hour. `None` (roll up
/// everything) when nothing is stored for the node.
pub fn floor(newest_five: Option<i64>, newest_hour: Option<i64>) -> Option<i64> {
    let (five, hour) = (newest_five?, newest_hour?);
    Some((five + 300).min(hour + 3_600) - RAW_SECS)
}

/// Rebuilds the rollup of the nodes `fleet` holds after a full replay of `dir`'s heartbeat log,
/// storing the buckets it closes in `tiers`, and fills each node's disk trend from the hours
/// stored.
pub fn rebuild_after_replay(
    dir: &std::path::Path,
    memory: &super::Memory,
    tiers: &files::TierFiles,
    now: DateTime<Utc>,
) -> std::io::Result<rebuild::RebuildReport> {
    let nodes = memory.fleet.node_ids();
    let mut floors = HashMap::with_capacity(nodes.len());
    for node in &nodes {
        let f = floor(
            tiers.newest(*node, Tier::FiveMinutes)?,
            tiers.newest(*node, Tier::Hour)?,
        );
        floors.insert(*node, f.unwrap_or(i64::MIN));
    }
    let report = rebuild::roll_up_log(dir, memory, &floors)?;
    // Durable before retention may delete the raw segments they were rolled up from (the first
    // start after an upgrade from a release with a longer raw retention).
    if report.rolled_up > 0 {
        tiers.flush_blocking().map_err(std::io::Error::other)?;
    }
    let from = now.timestamp() - TREND_HOURS as i64 * 3_600;
    for node in nodes {
        let hours = tiers.read_now(node, Tier::Hour, from, now.timestamp())?;
        memory.history().seed_trend(node, &hours);
    }
    Ok(report)
}

/// Tiers held in memory only (tests, and tools that open a store read-only).
#[derive(Debug, Default)]
pub struct MemTiers {
    stored: std::sync::Mutex<BTreeMap<(Uuid, Tier, i64), Bucket>>,
}

#[async_trait]
impl Tiers for MemTiers {
    fn store(&self, closed: Vec<Closed>) {
        let mut stored = self.stored.lock().unwrap_or_else(|p| p.into_inner());
        for c in closed {
            stored
                .entry((c.node, c.tier, c.bucket.start))
                .or_insert(c.bucket);
        }
    }

    async fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn flush_blocking(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn read(
        &self,
        node: Uuid,
        tier: Tier,
        from: i64,
        to: i64,
    ) -> Result<Vec<Bucket>, StoreError> {
        let stored = self.stored.lock().unwrap_or_else(|p| p.into_inner());
        Ok(stored
            .range((node, tier, from)..(node, tier, to))
            .map(|(_, b)| b.clone())
            .collect())
    }
}

/// Why a history query was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HistoryError {
    #[error("unknown metric {name:?}{hint} (metrics: {known}, disk_used_pct:<mount>)")]
    UnknownMetric {
        name: String,
        hint: String,
        known: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Checks the metric names a query asks for.
pub fn check_metrics(names: &[String]) -> Result<(), HistoryError> {
    for name in names {
        if unit_of(name).is_none() {
            let known: Vec<&str> = METRICS.iter().map(|(n, ..)| *n).collect();
            return Err(HistoryError::UnknownMetric {
                name: name.clone(),
                hint: vaultmesh_process::suggest::did_you_mean(name, known.iter().copied()),
                known: known.join(", "),
            });
        }
    }
    Ok(())
}

/// What memory holds of one node for a query: the raw samples in the range (raw tier) or the
/// open bucket (other tiers), and the forecasts.
#[derive(Debug, Clone, Default)]
pub struct Recent {
    pub buckets: Vec<Bucket>,
    pub forecasts: Vec<DiskForecast>,
}

/// Takes from `node` what a query of `range` needs from memory.
pub fn recent(node: &NodeRollup, range: Range, from: i64) -> Recent {
    let buckets = match range.tier() {
        Tier::Raw => node
            .raw
            .iter()
            .filter(|(t, _)| *t >= from)
            .map(|(t, values)| Bucket {
                start: *t,
                metrics: node
                    .names
                    .iter()
                    .zip(values)
                    .filter(|(_, v)| !v.is_nan())
                    .map(|(n, v)| (n.clone(), Agg::of(f64::from(*v))))
                    .collect(),
            })
            .collect(),
        tier => node.open(tier).cloned().into_iter().collect(),
    };
    Recent {
        buckets,
        forecasts: node.forecasts(),
    }
}

/// Puts together the answer: `stored` buckets (oldest first) and `recent` ones from memory (a
/// recent bucket replaces a stored one with the same start), merged into points of the range's
/// resolution, the series limited to `metrics` when not empty.
pub fn answer(
    node_id: Uuid,
    range: Range,
    now: DateTime<Utc>,
    stored: Vec<Bucket>,
    recent: Recent,
    metrics: &[String],
) -> NodeHistory {
    let to = now.timestamp();
    let width = i64::from(range.resolution_secs());
    // The first point's slot: the range's start, aligned down.
    let from = to - range.secs();
    let first_slot = from - from.rem_euclid(width);
    // Raw samples may share a second; a stored bucket gives way to the same one in memory.
    let in_memory: std::collections::HashSet<i64> =
        recent.buckets.iter().map(|b| b.start).collect();
    let buckets: Vec<Bucket> = stored
        .into_iter()
        .filter(|b| !in_memory.contains(&b.start))
        .chain(recent.buckets)
        .collect();
    let mut slots: BTreeMap<&str, BTreeMap<i64, Agg>> = BTreeMap::new();
    for b in &buckets {
        if b.start < first_slot || b.start > to {
            continue;
        }
        let slot = b.start - b.start.rem_euclid(width);
        for (name, agg) in &b.metrics {
            if !metrics.is_empty() && !metrics.iter().any(|m| m == name) {
                continue;
            }
            slots
                .entry(name.as_str())
                .or_default()
                .entry(slot)
                .and_modify(|a| a.add(*agg))
                .or_insert(*agg);
        }
    }
    let mut series: Vec<Series> = slots
        .into_iter()
        .filter_map(|(name, points)| {
            Some(Series {
                metric: name.to_string(),
                unit: unit_of(name)?,
                points: points
                    .into_iter()
                    .map(|(t, a)| Point {
                        t: Utc.timestamp_opt(t, 0).single().unwrap_or(now),
                        min: round(a.min),
                        avg: round(a.avg()),
                        max: round(a.max),
                        n: a.n,
                    })
                    .collect(),
            })
        })
        .collect();
    series.sort_by(|a, b| order(&a.metric).cmp(&order(&b.metric)));
    let mut forecasts = recent.forecasts;
    if !metrics.is_empty() {
        forecasts.retain(|f| {
            metrics
                .iter()
                .any(|m| m.strip_prefix(DISK_PREFIX) == Some(f.mount.as_str()))
        });
    }
    NodeHistory {
        node_id,
        range,
        from: Utc.timestamp_opt(from, 0).single().unwrap_or(now),
        to: now,
        tier: range.tier(),
        resolution_secs: range.resolution_secs(),
        series,
        forecasts,
    }
}

/// Series order: the fixed metrics as listed, then disks by mount.
fn order(metric: &str) -> (usize, &str) {
    match METRICS.iter().position(|(n, ..)| *n == metric) {
        Some(i) => (i, ""),
        None => (METRICS.len(), metric),
    }
}

/// Values to three decimals: what a chart can show.
pub fn round(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests;
