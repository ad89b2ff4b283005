//! SVG charts of a node's history (the answer of `GET /api/nodes/{id}/history`, see
//! [`NodeHistory`]), drawn on the server so they work without script.
//!
//! Each chart has a time axis labelled for its range (times of day for 1 h and 24 h, dates
//! beyond; always UTC), a value axis in the metric's unit (load, %, checks) with gridlines, the
//! average line of each series and — when points are rolled up (any tier but raw) — a min–max
//! band behind it. The value scale grows to the highest value drawn, so nothing is clipped: load
//! 8 on 2 CPUs reads 8, with the CPU count as a reference line. A line breaks where points are
//! missing (a node down for a day leaves a gap, not a straight line across). Each SVG carries a
//! `title` and a `desc` (what it shows, over which range, lowest and highest values) for screen
//! readers. Colours come from classes in `app.css`: no inline style, so the console's CSP holds.

use chrono::{DateTime, Datelike, TimeZone, Utc};
use maud::{Markup, html};
use vaultmesh_proto::history::{NodeHistory, Point, Range, Tier, Unit};

/// The drawing's size in SVG units (the page scales it to its column).
pub const W: f64 = 640.0;
pub const H: f64 = 170.0;
/// The plot area's margins: value labels on the left, time labels below.
const LEFT: f64 = 46.0;
const RIGHT: f64 = 24.0;
const TOP: f64 = 14.0;
const BOTTOM: f64 = 22.0;

/// A line breaks where the next point is more than this many usual intervals away.
pub const GAP_INTERVALS: f64 = 2.5;

/// The time window a chart spans, from a history answer: the range's start and end aligned to
/// whole points, so every point sits inside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    pub range: Range,
    /// Unix seconds, the first point's slot start.
    pub from: i64,
    /// Unix seconds, the end of the last point's slot.
    pub to: i64,
    /// Each point's width in seconds.
    pub resolution: i64,
    /// Points summarize several samples (any tier but raw): draw min–max bands.
    pub rolled_up: bool,
}

impl Frame {
    pub fn of(h: &NodeHistory) -> Frame {
        let res = i64::from(h.resolution_secs.max(1));
        let (from, to) = (h.from.timestamp(), h.to.timestamp());
        Frame {
            range: h.range,
            from: from - from.rem_euclid(res),
            to: to - to.rem_euclid(res) + res,
            resolution: res,
            rolled_up: h.tier != Tier::Raw,
        }
    }

    /// The x of an instant.
    fn x(&self, t: i64) -> f64 {
        let span = (self.to - self.from).max(1) as f64;
        LEFT + (t - self.from) as f64 / span * (W - LEFT - RIGHT)
    }

    /// The x of a point: the middle of its slot.
    fn x_of(&self, p: &Point) -> f64 {
        self.x(p.t.timestamp() + self.resolution / 2)
    }
}

/// One series of a chart: its points, its legend label and its colour class.
#[derive(Debug, Clone)]
pub struct Line<'a> {
    pub label: String,
    /// A class of `app.css` giving its colour (`load`, `mem`, `swap`, `disk`, `warn`, ...).
    pub class: &'static str,
    pub points: &'a [Point],
}

/// A chart: a title, the unit of its value axis, its series and an optional reference line.
#[derive(Debug, Clone)]
pub struct Chart<'a> {
    /// What it shows ("Load average (1 min)"); with the range, the SVG's title.
    pub title: String,
    pub unit: Unit,
    pub lines: Vec<Line<'a>>,
    /// A value worth a line of its own, and its label (the CPU count for load).
    pub reference: Option<(f64, String)>,
}

/// The lowest and highest values a series reaches (the band's when rolled up).
fn extremes(points: &[Point]) -> Option<(f64, f64)> {
    points.iter().fold(None, |acc, p| {
        let (lo, hi) = acc.unwrap_or((p.min, p.max));
        Some((lo.min(p.min), hi.max(p.max)))
    })
}

/// The value axis: its top and its tick step, a round number from 1, 2, 2.5, 5 × 10ⁿ that
/// puts at most 5 steps over the highest value (and at least the unit's usual scale: 100 %,
/// load 1, one check).
pub fn value_scale(unit: Unit, highest: f64) -> (f64, f64) {
    let floor = match unit {
        Unit::Percent | Unit::Celsius => 100.0,
        Unit::Load | Unit::Count => 1.0,
        Unit::BytesPerSec => 1000.0,
    };
    let m = if highest.is_finite() {
        highest.max(floor)
    } else {
        floor
    };
    let raw = m / 4.0;
    let p = 10f64.powf(raw.log10().floor());
    let mut step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .map(|k| k * p)
        .find(|s| *s >= raw * (1.0 - 1e-9))
        .unwrap_or(10.0 * p);
    if unit == Unit::Count {
        step = step.max(1.0).round();
    }
    let top = ((m / step) - 1e-9).ceil() * step;
    (top, step)
}

/// A value as the axis writes it: as many decimals as the step needs, `%` for percentages.
fn tick_label(v: f64, step: f64, unit: Unit) -> String {
    let decimals = if (step - step.round()).abs() < 1e-9 {
        0
    } else if (step * 10.0 - (step * 10.0).round()).abs() < 1e-9 {
        1
    } else {
        2
    };
    if unit == Unit::BytesPerSec {
        return bytes_per_s(v);
    }
    let n = format!("{v:.decimals$}");
    match unit {
        Unit::Percent => format!("{n}%"),
        Unit::Celsius => format!("{n}°C"),
        Unit::Load | Unit::Count | Unit::BytesPerSec => n,
    }
}

/// A rate in decimal units, as few digits as read well: `0`, `950 B/s`, `1.5 kB/s`, `12 MB/s`.
pub fn bytes_per_s(v: f64) -> String {
    if v <= 0.0 || !v.is_finite() {
        return "0".into();
    }
    let (scaled, unit) = [(1e12, "TB/s"), (1e9, "GB/s"), (1e6, "MB/s"), (1e3, "kB/s")]
        .into_iter()
        .find(|(k, _)| v >= *k)
        .map_or((v, "B/s"), |(k, u)| (v / k, u));
    if scaled >= 10.0 || (scaled - scaled.round()).abs() < 0.05 {
        format!("{scaled:.0} {unit}")
    } else {
        format!("{scaled:.1} {unit}")
    }
}

/// A value in words, two decimals for load, one for percentages.
fn value(v: f64, unit: Unit) -> String {
    match unit {
        Unit::Percent => format!("{v:.1}%"),
        Unit::Load => format!("{v:.2}"),
        Unit::Count => format!("{v:.1}").trim_end_matches(".0").to_string(),
        Unit::BytesPerSec => bytes_per_s(v),
        Unit::Celsius => format!("{v:.1}°C"),
    }
}

/// The value axis' caption.
fn unit_name(unit: Unit) -> &'static str {
    match unit {
        Unit::Load => "load",
        Unit::Percent => "% used",
        Unit::Count => "checks",
        Unit::BytesPerSec => "bytes/s",
        Unit::Celsius => "°C",
    }
}

/// "the last 30 days", for titles.
pub fn range_words(r: Range) -> &'static str {
    match r {
        Range::Hour => "the last hour",
        Range::Day => "the last 24 hours",
        Range::Week => "the last 7 days",
        Range::Month => "the last 30 days",
        Range::Year => "the last year",
    }
}

/// A point's width in words: "15 s", "5 min", "3 h", "2 days".
pub fn resolution_words(secs: i64) -> String {
    match secs {
        s if s < 60 => format!("{s} s"),
        s if s < 3_600 => format!("{} min", s / 60),
        s if s < 86_400 => format!("{} h", s / 3_600),
        86_400 => "1 day".into(),
        s => format!("{} days", s / 86_400),
    }
}

/// The time axis' ticks: instants (Unix seconds) and their labels — every 10 minutes for 1 h
/// and 3 hours for 24 h (`14:30`), every day for 7 d and every 5 days for 30 d (`Nov 6`), every
/// other month for 1 y (`Mar 2026`). All UTC.
pub fn time_ticks(f: &Frame) -> Vec<(i64, String)> {
    let every = |step: i64, fmt: &str| -> Vec<(i64, String)> {
        let mut t = f.from + (step - f.from.rem_euclid(step)) % step;
        let mut out = Vec::new();
        while t <= f.to {
            out.push((t, at(t).format(fmt).to_string()));
            t += step;
        }
        out
    };
    match f.range {
        Range::Hour => every(600, "%H:%M"),
        Range::Day => every(3 * 3_600, "%H:%M"),
        Range::Week => every(86_400, "%b %-d"),
        Range::Month => every(5 * 86_400, "%b %-d"),
        Range::Year => {
            let start = at(f.from);
            let (mut y, mut m) = (start.year(), start.month());
            let mut out = Vec::new();
            while let Some(first) = Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0).single() {
                let t = first.timestamp();
                if t > f.to {
                    break;
                }
                if t >= f.from && m % 2 == 1 {
                    out.push((t, first.format("%b %Y").to_string()));
                }
                (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
            }
            out
        }
    }
}

fn at(t: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(t, 0).single().unwrap_or_default()
}

/// Runs of points without a gap: a gap is more than [`GAP_INTERVALS`] times the usual
/// interval between points (the median, and at least the resolution) without one.
pub fn segments(points: &[Point], resolution: i64) -> Vec<&[Point]> {
    if points.is_empty() {
        return Vec::new();
    }
    let mut steps: Vec<i64> = points
        .windows(2)
        .map(|w| w[1].t.timestamp() - w[0].t.timestamp())
        .collect();
    steps.sort_unstable();
    // The lower median: with two steps, the shorter one is the usual.
    let usual = steps
        .get(steps.len().saturating_sub(1) / 2)
        .copied()
        .unwrap_or(0)
        .max(resolution);
    let limit = usual as f64 * GAP_INTERVALS;
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..points.len() {
        if (points[i].t.timestamp() - points[i - 1].t.timestamp()) as f64 > limit {
            out.push(&points[start..i]);
            start = i;
        }
    }
    out.push(&points[start..]);
    out
}

/// Renders a chart over `frame`, or says there is nothing to draw.
pub fn chart(frame: &Frame, c: &Chart<'_>) -> Markup {
    let lines: Vec<&Line<'_>> = c.lines.iter().filter(|l| !l.points.is_empty()).collect();
    let when = range_words(frame.range);
    if lines.is_empty() {
        return html! { p class="muted no-data" { "No " (c.title.to_lowercase()) " in " (when) "." } };
    }
    let highest = lines
        .iter()
        .filter_map(|l| extremes(l.points).map(|(_, hi)| hi))
        .chain(c.reference.as_ref().map(|(v, _)| *v))
        .fold(f64::NEG_INFINITY, f64::max);
    let (top, step) = value_scale(c.unit, highest);
    let y = |v: f64| TOP + (1.0 - v / top) * (H - TOP - BOTTOM);
    let bottom = H - BOTTOM;
    let ticks: Vec<f64> = (0..)
        .map(|i| f64::from(i) * step)
        .take_while(|v| *v <= top + step * 1e-6)
        .collect();
    let times = time_ticks(frame);
    let summary: Vec<String> = lines
        .iter()
        .filter_map(|l| {
            let (lo, hi) = extremes(l.points)?;
            Some(format!(
                "{}: lowest {}, highest {}",
                l.label,
                value(lo, c.unit),
                value(hi, c.unit)
            ))
        })
        .collect();
    let points = lines.iter().map(|l| l.points.len()).max().unwrap_or(0);
    let res = resolution_words(frame.resolution);
    let desc = format!(
        "{}. {points} points of {res}{}{}. Times in UTC.",
        summary.join("; "),
        if frame.rolled_up {
            ", each an average line with its min–max band"
        } else {
            ""
        },
        c.reference
            .as_ref()
            .map(|(_, label)| format!(", reference line at {label}"))
            .unwrap_or_default(),
    );
    html! {
        figure class="chart" data-unit=(unit_name(c.unit)) {
            svg viewBox={"0 0 " (W) " " (H)} role="img" data-top=(top) {
                title { (c.title) ", " (when) }
                desc { (desc) }
                g class="grid" {
                    @for v in &ticks {
                        line x1=(LEFT) x2=(W - RIGHT) y1=(fmt(y(*v))) y2=(fmt(y(*v))) {}
                    }
                    @for (t, _) in &times {
                        line class="t" x1=(fmt(frame.x(*t))) x2=(fmt(frame.x(*t))) y1=(TOP) y2=(bottom) {}
                    }
                }
                g class="axis y" {
                    text class="unit" x="4" y="10" { (unit_name(c.unit)) }
                    @for v in &ticks {
                        text x=(LEFT - 5.0) y=(fmt(y(*v) + 3.5)) text-anchor="end" { (tick_label(*v, step, c.unit)) }
                    }
                }
                g class="axis x" {
                    text class="utc" x="4" y=(H - 6.0) { "UTC" }
                    @for (t, label) in &times {
                        text x=(fmt(frame.x(*t))) y=(H - 6.0) text-anchor="middle" data-t=(at(*t).to_rfc3339()) { (label) }
                    }
                }
                @if frame.rolled_up {
                    @for l in &lines {
                        path class={"band " (l.class)} d=(band_path(frame, l.points, &y)) {}
                    }
                }
                @if let Some((v, label)) = &c.reference {
                    line class="ref" x1=(LEFT) x2=(W - RIGHT) y1=(fmt(y(*v))) y2=(fmt(y(*v))) {}
                    text class="ref-label" x=(W - RIGHT) y=(fmt(y(*v) - 3.0)) text-anchor="end" { (label) }
                }
                @for l in &lines {
                    path class={"line " (l.class)} d=(line_path(frame, l.points, &y)) data-points=(l.points.len()) {}
                    @for seg in segments(l.points, frame.resolution) {
                        @if seg.len() == 1 {
                            circle class={"dot " (l.class)} cx=(fmt(frame.x_of(&seg[0]))) cy=(fmt(y(seg[0].avg))) r="2" {}
                        }
                    }
                }
            }
            figcaption {
                @for l in &lines {
                    span class={"swatch " (l.class)} { "━" } " " (l.label) " "
                }
                "· " (points) " points of " (res)
                @if frame.rolled_up { " (line: average; band: lowest to highest)" }
            }
        }
    }
}

/// One decimal: enough for a 640-unit drawing.
fn fmt(v: f64) -> String {
    format!("{v:.1}")
}

/// The average line: one subpath per run of points (see [`segments`]); a lone point is a dot.
fn line_path(frame: &Frame, points: &[Point], y: &dyn Fn(f64) -> f64) -> String {
    let mut d = String::new();
    for seg in segments(points, frame.resolution) {
        for (i, p) in seg.iter().enumerate() {
            d.push(if i == 0 { 'M' } else { 'L' });
            d.push_str(&format!("{},{}", fmt(frame.x_of(p)), fmt(y(p.avg))));
        }
    }
    d
}

/// The min–max band: a closed shape per run of points (a lone point gets a thin one).
fn band_path(frame: &Frame, points: &[Point], y: &dyn Fn(f64) -> f64) -> String {
    let mut d = String::new();
    for seg in segments(points, frame.resolution) {
        let xs: Vec<f64> = seg.iter().map(|p| frame.x_of(p)).collect();
        let mut upper: Vec<(f64, f64)> = seg.iter().zip(&xs).map(|(p, x)| (*x, y(p.max))).collect();
        let mut lower: Vec<(f64, f64)> = seg.iter().zip(&xs).map(|(p, x)| (*x, y(p.min))).collect();
        if seg.len() == 1 {
            upper = vec![(xs[0] - 1.0, upper[0].1), (xs[0] + 1.0, upper[0].1)];
            lower = vec![(xs[0] - 1.0, lower[0].1), (xs[0] + 1.0, lower[0].1)];
        }
        for (i, (x, y)) in upper.iter().chain(lower.iter().rev()).enumerate() {
            d.push(if i == 0 { 'M' } else { 'L' });
            d.push_str(&format!("{},{}", fmt(*x), fmt(*y)));
        }
        d.push('Z');
    }
    d
}
